/*
 * daemon, case cli: netpolld's command line: --help, --version, bad flags
 * and arguments (exit 2), --check-config printing the effective
 * configuration, flags overriding the file, and a bad or missing file
 * (exit 1, naming FILE:LINE).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test-daemon.h"

START_TEST(test_daemon_help_exits_0_with_usage)
{
        TestRun r;
        const char *argv[] = { test_daemon_bin(), "--help", NULL };

        test_run(&r, argv);
        test_assert_exit(&r, 0);
        ck_assert_ptr_nonnull(strstr(r.out, "Usage"));
        ck_assert_ptr_nonnull(strstr(r.out, "--socket"));
        ck_assert_str_eq(r.err, "");

        const char *argv2[] = { test_daemon_bin(), "-h", NULL };
        test_run(&r, argv2);
        test_assert_exit(&r, 0);
        ck_assert_ptr_nonnull(strstr(r.out, "Usage"));
}
END_TEST

START_TEST(test_daemon_version_exits_0)
{
        TestRun r;
        const char *argv[] = { test_daemon_bin(), "--version", NULL };

        test_run(&r, argv);
        test_assert_exit(&r, 0);
        ck_assert_ptr_nonnull(strstr(r.out, "netpolld " NETPOLL_VERSION));
        const char *argv2[] = { test_daemon_bin(), "-V", NULL };
        test_run(&r, argv2);
        test_assert_exit(&r, 0);
        ck_assert_ptr_nonnull(strstr(r.out, NETPOLL_VERSION));
}
END_TEST

START_TEST(test_daemon_bad_flag_exits_2)
{
        TestRun r;
        const char *argv[] = { test_daemon_bin(), "--no-such-flag", NULL };

        test_run(&r, argv);
        test_assert_exit(&r, 2);
        ck_assert_ptr_nonnull(strstr(r.err, "Usage"));
        ck_assert_str_eq(r.out, "");

        const char *argv2[] = { test_daemon_bin(), "-Z", NULL };
        test_run(&r, argv2);
        test_assert_exit(&r, 2);
        ck_assert_ptr_nonnull(strstr(r.err, "Usage"));

        /* A flag missing its argument. */
        const char *argv3[] = { test_daemon_bin(), "--socket", NULL };
        test_run(&r, argv3);
        test_assert_exit(&r, 2);
        ck_assert_ptr_nonnull(strstr(r.err, "Usage"));
}
END_TEST

START_TEST(test_daemon_extra_argument_exits_2)
{
        TestRun r;
        const char *argv[] = { test_daemon_bin(), "--socket", "/tmp/x.sock", "surplus", NULL };

        test_run(&r, argv);
        test_assert_exit(&r, 2);
        ck_assert_ptr_nonnull(strstr(r.err, "Usage"));
        ck_assert_ptr_nonnull(strstr(r.err, "surplus"));
        ck_assert_int_ne(access("/tmp/x.sock", F_OK), 0);
}
END_TEST

START_TEST(test_daemon_bad_log_level_exits_2)
{
        TestRun r;
        const char *argv[] = { test_daemon_bin(), "--log-level", "bogus", NULL };

        test_run(&r, argv);
        test_assert_exit(&r, 2);
        ck_assert_ptr_nonnull(strstr(r.err, "bogus"));
}
END_TEST

START_TEST(test_daemon_check_config_prints_effective_config)
{
        char dir[] = "/tmp/netpolld-test-XXXXXX", conf[128], sock[128];
        TestRun r;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(conf, sizeof(conf), "%s/netpolld.conf", dir);
        snprintf(sock, sizeof(sock), "%s/flag.sock", dir);
        test_write_file(conf, "[daemon]\nsocket_path = /tmp/from-file.sock\n"
                              "[limits]\nmax_connections = 77\nmax_output_bytes = 100000\n"
                              "[log]\nlevel = notice\n");

        const char *argv[] = { test_daemon_bin(), "--check-config", "--config", conf, NULL };
        test_run(&r, argv);
        test_assert_exit(&r, 0);
        ck_assert_ptr_nonnull(strstr(r.out, "socket_path = /tmp/from-file.sock\n"));
        ck_assert_ptr_nonnull(strstr(r.out, "max_connections = 77\n"));
        ck_assert_ptr_nonnull(strstr(r.out, "max_descriptors_per_connection = 4096\n"));
        ck_assert_ptr_nonnull(strstr(r.out, "max_output_bytes = 100000\n"));
        ck_assert_ptr_nonnull(strstr(r.out, "level = notice\n"));

        /* Flags override the file. */
        const char *argv2[] = { test_daemon_bin(), "--config", conf, "--socket", sock,
                                "--log-level", "debug", "--check-config", NULL };
        test_run(&r, argv2);
        test_assert_exit(&r, 0);
        char want[160];
        snprintf(want, sizeof(want), "socket_path = %s\n", sock);
        ck_assert_ptr_nonnull(strstr(r.out, want));
        ck_assert_ptr_nonnull(strstr(r.out, "max_connections = 77\n"));
        ck_assert_ptr_nonnull(strstr(r.out, "level = debug\n"));
        /* Checking does not start serving. */
        ck_assert_int_ne(access(sock, F_OK), 0);

        unlink(conf);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(test_daemon_check_config_bad_file_exits_1)
{
        char dir[] = "/tmp/netpolld-test-XXXXXX", conf[128], want[192];
        TestRun r;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(conf, sizeof(conf), "%s/bad.conf", dir);
        test_write_file(conf, "# comment\n\n[limits]\nmax_connections = 0\n");
        const char *argv[] = { test_daemon_bin(), "--check-config", "--config", conf, NULL };
        test_run(&r, argv);
        test_assert_exit(&r, 1);
        snprintf(want, sizeof(want), "%s:4:", conf);
        ck_assert_msg(strstr(r.err, want), "stderr '%s' lacks '%s'", r.err, want);
        ck_assert_ptr_nonnull(strstr(r.err, "max_connections"));
        ck_assert_ptr_null(strstr(r.out, "[daemon]"));

        /* A missing file is an error too, naming it. */
        snprintf(want, sizeof(want), "%s/missing.conf", dir);
        const char *argv2[] = { test_daemon_bin(), "--check-config", "--config", want, NULL };
        test_run(&r, argv2);
        test_assert_exit(&r, 1);
        ck_assert_ptr_nonnull(strstr(r.err, want));

        unlink(conf);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

void daemon_cli_tests(TCase *tc)
{
        tcase_add_test(tc, test_daemon_help_exits_0_with_usage);
        tcase_add_test(tc, test_daemon_version_exits_0);
        tcase_add_test(tc, test_daemon_bad_flag_exits_2);
        tcase_add_test(tc, test_daemon_extra_argument_exits_2);
        tcase_add_test(tc, test_daemon_bad_log_level_exits_2);
        tcase_add_test(tc, test_daemon_check_config_prints_effective_config);
        tcase_add_test(tc, test_daemon_check_config_bad_file_exits_1);
}
