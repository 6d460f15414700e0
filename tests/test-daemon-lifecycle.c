/*
 * daemon, case lifecycle (with test-daemon-clients.c): sd-daemon log
 * prefixes, SIGTERM and SIGINT (exit 0, socket removed, a parked wait
 * ended with closing), SIGHUP not stopping, the scheduler slice applied
 * and reloaded, a second daemon refused, a stale socket replaced, a path
 * that is not a socket or a directory others may write refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-daemon.h"

START_TEST(test_daemon_logs_carry_sd_daemon_prefixes)
{
        TestDaemon d;
        char log[16384] = "";

        test_daemon_start(&d, NULL, 0, true);
        ck_assert_msg(test_read_until(d.stderr_fd, log, sizeof(log), "<6>netpolld"),
                      "no '<6>netpolld' in: %s", log);
        /* A protocol error is a warning: <4>. */
        int fd = test_raw_connect(d.sock);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(raw_send_bytes(fd, "\xff\xff\xff", 3, NULL, 0), 0);
        expect_dropped(fd);
        close(fd);
        ck_assert_msg(test_read_until(d.stderr_fd, log, sizeof(log), "<4>"), "no '<4>' in: %s",
                      log);
        ck_assert_ptr_nonnull(strstr(log, "protocol error"));
        /* Every line is prefixed. */
        for (const char *p = log; *p; p = strchr(p, '\n') + 1) {
                ck_assert_msg(p[0] == '<' && p[1] >= '0' && p[1] <= '7' && p[2] == '>',
                              "line without prefix: %s", p);
                if (!strchr(p, '\n'))
                        break;
        }
        int status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

static void check_stop_signal(int sig)
{
        TestDaemon d;
        struct stat st;

        test_daemon_start(&d, NULL, 0, false);
        assert_serves(&d);
        ck_assert_int_eq(lstat(d.sock, &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        /* A connected client does not keep it from stopping. */
        int idle = raw_hello(d.sock);
        ck_assert_int_eq(kill(d.pid, sig), 0);
        int status = test_wait_exit(d.pid, 10000);
        ck_assert_msg(status != -1, "netpolld did not exit on signal %d", sig);
        d.pid = 0;
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "signal %d: status 0x%x, want exit 0", sig, status);
        ck_assert_msg(lstat(d.sock, &st) < 0 && errno == ENOENT, "socket file %s left behind",
                      d.sock);
        expect_dropped(idle);
        close(idle);
        test_daemon_stop(&d);
}

START_TEST(test_daemon_sigterm_exits_0_and_removes_socket)
{
        check_stop_signal(SIGTERM);
}
END_TEST

START_TEST(test_daemon_sigint_exits_0_and_removes_socket)
{
        check_stop_signal(SIGINT);
}
END_TEST

START_TEST(test_daemon_sighup_does_not_stop)
{
        TestDaemon d;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        assert_serves(&d);
        ck_assert_int_eq(waitpid(d.pid, NULL, WNOHANG), 0);
        int status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

/* The slice pid's main thread holds (sched_getattr), or -errno. */
static int64_t slice_of(pid_t pid)
{
        TestSched t;
        int r = test_sched_get(pid, &t);

        return r < 0 ? r : t.slice_ns;
}

/* Waits (at most 5 s) until pid's slice is want; returns the last one read. */
static int64_t await_slice(pid_t pid, int64_t want)
{
        int64_t ns = -1;

        for (int i = 0; i < 500 && (ns = slice_of(pid)) != want; i++)
                usleep(10000);
        return ns;
}

/*
 * scheduler_slice: the daemon asks for it at start-up (default 20 ms) and
 * on every reload; 0 gives it the kernel's default slice; a refused reload
 * keeps the slice in force.  On a kernel without per-task slices it must
 * say so in a notice, and keep serving.
 */
START_TEST(test_daemon_applies_scheduler_slice_and_reloads_it)
{
        TestDaemon d;
        char conf[32], log[16384] = "";
        int64_t dflt = test_sched_default_slice();

        ck_assert_msg(dflt >= 0, "default slice: %s", strerror((int)-dflt));
        if (dflt == 0) {
                const char *args[] = { "--log-level", "notice", NULL };
                test_daemon_start(&d, args, 0, true);
                ck_assert_msg(
                        test_read_until(d.stderr_fd, log, sizeof(log), "scheduler_slice ignored"),
                        "no notice that the slice was ignored in: %s", log);
                assert_serves(&d);
                test_daemon_stop(&d);
                return;
        }
        ck_assert_int_ne(dflt, 7000000);
        ck_assert_int_ne(dflt, 20000000);
        test_daemon_start_with_config(&d, "[daemon]\nscheduler_slice = 7ms\n", conf);
        ck_assert_int_eq(await_slice(d.pid, 7000000), 7000000);

        test_write_file(conf, "# the default\n");
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        ck_assert_int_eq(await_slice(d.pid, 20000000), 20000000);

        /* A refused reload keeps the slice in force. */
        test_write_file(conf, "[daemon]\nscheduler_slice = 1s\n");
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        assert_serves(&d);
        ck_assert_int_eq(slice_of(d.pid), 20000000);

        test_write_file(conf, "[daemon]\nscheduler_slice = 0\n");
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        ck_assert_int_eq(await_slice(d.pid, dflt), dflt);
        int status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        unlink(conf);
}
END_TEST

START_TEST(test_daemon_sigterm_ends_parked_wait_with_closing)
{
        TestDaemon d;
        np_client *c;
        np_desc desc;
        int p[2];
        Waiter w;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        ck_assert_int_eq(np_open(c, p[0], 7, &desc), 0);
        waiter_start(&w, c, desc, NP_READ, false);
        await_waiters(c, 1);
        ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
        ck_assert_msg(waiter_join_within(&w, 10 * INT64_C(1000000000)), "np_wait did not return");
        ck_assert_int_eq(w.result, NP_ERR_CLOSING);
        int status = test_wait_exit(d.pid, 10000);
        d.pid = 0;
        ck_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        np_disconnect(c);
        close(p[0]);
        close(p[1]);
        test_daemon_stop(&d);
}
END_TEST

START_TEST(test_daemon_second_daemon_refuses)
{
        TestDaemon d;
        struct stat before, after;
        TestRun r;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(lstat(d.sock, &before), 0);
        const char *argv[] = { test_daemon_bin(), "--socket", d.sock, NULL };
        test_run(&r, argv);
        ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) != 0,
                      "second daemon: status 0x%x", r.status);
        ck_assert_msg(strstr(r.err, "already serves"), "stderr: %s", r.err);
        /* The first one still owns the socket file and serves. */
        ck_assert_int_eq(lstat(d.sock, &after), 0);
        ck_assert_uint_eq(before.st_ino, after.st_ino);
        ck_assert_int_eq(waitpid(d.pid, NULL, WNOHANG), 0);
        assert_serves(&d);
        int status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

START_TEST(test_daemon_replaces_stale_socket)
{
        char dir[] = "/tmp/netpolld-test-XXXXXX", sock[128], log[8192] = "";
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        struct stat st;
        TestDaemon d;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/np.sock", dir);
        ck_assert_uint_lt(strlen(sock), sizeof(addr.sun_path));
        memcpy(addr.sun_path, sock, strlen(sock));
        int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(s, 0);
        ck_assert_int_eq(bind(s, (struct sockaddr *)&addr, sizeof(addr)), 0);
        ck_assert_int_eq(listen(s, 1), 0);
        close(s);
        ck_assert_int_eq(lstat(sock, &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        ck_assert_int_eq(test_raw_connect(sock), -ECONNREFUSED);

        test_daemon_start_at(&d, sock, NULL, 0, true);
        ck_assert_msg(test_read_until(d.stderr_fd, log, sizeof(log), "stale"), "log: %s", log);
        int fd = raw_hello(sock);
        raw_ping(fd, 1);
        close(fd);
        ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
        int status = test_wait_exit(d.pid, 10000);
        d.pid = 0;
        ck_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ck_assert_int_ne(access(sock, F_OK), 0);
        test_daemon_stop(&d);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(test_daemon_refuses_path_that_is_not_a_socket)
{
        char dir[] = "/tmp/netpolld-test-XXXXXX", path[128], sub[128], buf[64] = "";
        struct stat st;
        TestRun r;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/np.sock", dir);
        test_write_file(path, "precious data\n");
        const char *argv[] = { test_daemon_bin(), "--socket", path, NULL };
        test_run(&r, argv);
        test_assert_exit(&r, 1);
        ck_assert_msg(strstr(r.err, "not a socket"), "stderr: %s", r.err);
        ck_assert_int_eq(lstat(path, &st), 0);
        ck_assert(S_ISREG(st.st_mode));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(read(fd, buf, sizeof(buf) - 1), 14);
        close(fd);
        ck_assert_str_eq(buf, "precious data\n");

        /* A directory in the way is refused too, and left alone. */
        snprintf(sub, sizeof(sub), "%s/dir.sock", dir);
        ck_assert_int_eq(mkdir(sub, 0755), 0);
        const char *argv2[] = { test_daemon_bin(), "--socket", sub, NULL };
        test_run(&r, argv2);
        ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 1, "status 0x%x: %s",
                      r.status, r.err);
        ck_assert_int_eq(lstat(sub, &st), 0);
        ck_assert(S_ISDIR(st.st_mode));

        ck_assert_int_eq(rmdir(sub), 0);
        ck_assert_int_eq(unlink(path), 0);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/*
 * The socket file is made safely: a directory others may write (where the
 * file could be swapped for a link between bind and chmod) is refused
 * unless sticky, and the file is born with socket_mode (0660 by default)
 * instead of being chmod'ed by path afterwards.
 */
START_TEST(test_daemon_socket_dir_others_can_write_is_refused)
{
        char dir[] = "/tmp/netpolld-test-XXXXXX", sock[128];
        struct stat st;
        TestRun r;
        TestDaemon d;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/np.sock", dir);
        ck_assert_int_eq(chmod(dir, 0777), 0);
        const char *argv[] = { test_daemon_bin(), "--socket", sock, NULL };
        test_run(&r, argv);
        test_assert_exit(&r, 1);
        ck_assert_msg(strstr(r.err, "others may write to the socket directory"), "stderr: %s",
                      r.err);
        ck_assert_int_ne(lstat(sock, &st), 0);

        /* Sticky (as /tmp): nobody else can remove or rename our file. */
        ck_assert_int_eq(chmod(dir, 01777), 0);
        test_daemon_start_at(&d, sock, NULL, 0, true);
        ck_assert_int_eq(lstat(sock, &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        ck_assert_uint_eq(st.st_mode & 07777, 0660);
        ck_assert_uint_eq(st.st_uid, geteuid());
        ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
        int status = test_wait_exit(d.pid, 10000);
        d.pid = 0;
        ck_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        test_daemon_stop(&d);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

void daemon_lifecycle_tests(TCase *tc)
{
        tcase_add_test(tc, test_daemon_logs_carry_sd_daemon_prefixes);
        tcase_add_test(tc, test_daemon_sigterm_exits_0_and_removes_socket);
        tcase_add_test(tc, test_daemon_sigint_exits_0_and_removes_socket);
        tcase_add_test(tc, test_daemon_sighup_does_not_stop);
        tcase_add_test(tc, test_daemon_applies_scheduler_slice_and_reloads_it);
        tcase_add_test(tc, test_daemon_sigterm_ends_parked_wait_with_closing);
        tcase_add_test(tc, test_daemon_second_daemon_refuses);
        tcase_add_test(tc, test_daemon_replaces_stale_socket);
        tcase_add_test(tc, test_daemon_refuses_path_that_is_not_a_socket);
        tcase_add_test(tc, test_daemon_socket_dir_others_can_write_is_refused);
}
