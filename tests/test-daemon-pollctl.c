/*
 * daemon, case pollctl: the pollctl binary against the daemon: ping and
 * status (text and JSON), an unknown command (exit 2), no daemon (exit 1).
 * The pollctl suite (test-pollctl.c) covers the rest of pollctl.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-daemon.h"

START_TEST(test_pollctl_ping)
{
        TestDaemon d;
        TestRun r;

        test_daemon_start(&d, NULL, 0, false);
        const char *argv[] = { test_pollctl_bin(), "--socket", d.sock, "ping", "-c", "3", NULL };
        test_run(&r, argv);
        test_assert_exit(&r, 0);
        ck_assert_msg(strstr(r.out, "3 round trips"), "stdout: %s", r.out);

        const char *argv2[] = {
                test_pollctl_bin(), "--socket", d.sock, "--json", "ping", "-c", "2", NULL
        };
        test_run(&r, argv2);
        test_assert_exit(&r, 0);
        ck_assert_msg(strstr(r.out, "\"count\":2"), "stdout: %s", r.out);
        ck_assert_ptr_nonnull(strstr(r.out, "\"median_ns\":"));

        const char *argv3[] = { test_pollctl_bin(), "--socket", d.sock, "ping", "-c", "0", NULL };
        test_run(&r, argv3);
        test_assert_exit(&r, 2);
        int status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

START_TEST(test_pollctl_status)
{
        TestDaemon d;
        TestRun r;
        char want[64];

        test_daemon_start(&d, NULL, 0, false);
        const char *argv[] = { test_pollctl_bin(), "--socket", d.sock, "status", NULL };
        test_run(&r, argv);
        test_assert_exit(&r, 0);
        static const char *const fields[] = { "version", "pid", "uptime", "connections",
                                              "descriptors", "waiters", "timers", "events",
                                              "timeouts", "protocol errors", "pollcache slots" };
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
                ck_assert_msg(strstr(r.out, fields[i]), "no '%s' in: %s", fields[i], r.out);
        ck_assert_ptr_nonnull(strstr(r.out, NETPOLL_VERSION));
        snprintf(want, sizeof(want), "%d\n", (int)d.pid);
        ck_assert_msg(strstr(r.out, want), "pid %d not in: %s", (int)d.pid, r.out);

        const char *argv2[] = { test_pollctl_bin(), "--socket", d.sock, "--json", "status", NULL };
        test_run(&r, argv2);
        test_assert_exit(&r, 0);
        ck_assert_ptr_nonnull(strstr(r.out, "\"version\":\"" NETPOLL_VERSION "\""));
        snprintf(want, sizeof(want), "\"pid\":%d,", (int)d.pid);
        ck_assert_msg(strstr(r.out, want), "no %s in: %s", want, r.out);
        static const char *const json[] = { "\"uptime_ns\":", "\"connections\":",
                                            "\"descriptors\":0,", "\"waiters\":0,",
                                            "\"timers\":0,", "\"events\":", "\"timeouts\":",
                                            "\"protocol_errors\":0,", "\"slots_in_use\":0,",
                                            "\"slots_allocated\":" };
        for (size_t i = 0; i < sizeof(json) / sizeof(json[0]); i++)
                ck_assert_msg(strstr(r.out, json[i]), "no %s in: %s", json[i], r.out);
        ck_assert(r.out[0] == '{' && strstr(r.out, "}\n"));
        int status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

START_TEST(test_pollctl_unknown_command_exits_2)
{
        TestRun r;
        const char *argv[] = { test_pollctl_bin(), "--socket", "/nonexistent/np.sock", "frobnicate",
                               NULL };

        test_run(&r, argv);
        test_assert_exit(&r, 2);
        ck_assert_ptr_nonnull(strstr(r.err, "frobnicate"));
        const char *argv2[] = { test_pollctl_bin(), NULL };
        test_run(&r, argv2);
        test_assert_exit(&r, 2);
        const char *argv3[] = { test_pollctl_bin(), "--bogus", "status", NULL };
        test_run(&r, argv3);
        test_assert_exit(&r, 2);
}
END_TEST

START_TEST(test_pollctl_no_daemon_exits_1)
{
        char dir[] = "/tmp/netpolld-test-XXXXXX", sock[128];
        TestRun r;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/none.sock", dir);
        const char *argv[] = { test_pollctl_bin(), "--socket", sock, "ping", NULL };
        test_run(&r, argv);
        test_assert_exit(&r, 1);
        ck_assert_ptr_nonnull(strstr(r.err, sock));
        const char *argv2[] = { test_pollctl_bin(), "--socket", sock, "status", NULL };
        test_run(&r, argv2);
        test_assert_exit(&r, 1);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

void daemon_pollctl_tests(TCase *tc)
{
        tcase_add_test(tc, test_pollctl_ping);
        tcase_add_test(tc, test_pollctl_status);
        tcase_add_test(tc, test_pollctl_unknown_command_exits_2);
        tcase_add_test(tc, test_pollctl_no_daemon_exits_1);
}
