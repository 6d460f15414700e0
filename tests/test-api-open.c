/*
 * api, case open: np_open keeps the caller's fd and returns its user
 * value, and refuses what it must: bad or unpollable fds, the library's
 * own fds, per-connection and per-uid quotas, the daemon's reserved fds,
 * the kernel's own EMFILE, one file opened more than 16 times.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "test-api.h"

/* ---- np_open ---- */

START_TEST(test_api_open_caller_keeps_fd_and_user_comes_back)
{
        TestDaemon d;
        np_client *c = start(&d);
        const uint64_t cookie = UINT64_C(0xfeedface12345678);
        np_event ev[4];
        char b;
        int p[2];

        signal(SIGPIPE, SIG_IGN);
        int base = daemon_fds(d.pid);
        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], cookie);
        ck_assert_int_ge(fcntl(p[0], F_GETFD), 0);
        /* Its copy only: a connection's first descriptors go to the main
         * epoll set, so it has no set of its own yet. */
        ck_assert_int_eq(daemon_fds(d.pid), base + 1);
        assert_stats(c, 1, 0, 0);

        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        put(p[1]);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_uint_eq(ev[0].desc, d1);
        ck_assert_uint_eq(ev[0].user, cookie);
        ck_assert_int_eq(ev[0].mode, NP_READ);
        ck_assert_int_eq(ev[0].result, NP_OK);
        ck_assert_int_eq(read(p[0], &b, 1), 1); /* our fd still works */

        /* The daemon's copy keeps the pipe's read side open... */
        close(p[0]);
        ck_assert_int_eq(write(p[1], "y", 1), 1);
        /* ...until np_close. */
        close_desc(c, d1);
        await_daemon_fds(d.pid, base);
        ck_assert_int_eq(write(p[1], "z", 1), -1);
        ck_assert_int_eq(errno, EPIPE);
        close(p[1]);
        assert_stats(c, 0, 0, 0);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_open_bad_fd_is_ebadf)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_desc d1 = 777;
        int fd = dup(STDERR_FILENO);

        ck_assert_int_ge(fd, 0);
        close(fd);
        ck_assert_int_eq(np_open(c, fd, 0, &d1), -EBADF);
        ck_assert_int_eq(np_open(c, -1, 0, &d1), -EBADF);
        ck_assert_uint_eq(d1, 777);
        assert_stats(c, 0, 0, 0);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_open_not_pollable_is_eperm)
{
        TestDaemon d;
        np_client *c = start(&d);
        char path[] = "/tmp/np-api-file-XXXXXX";
        np_desc d1 = 777;
        int fds[3];

        int base = daemon_fds(d.pid);
        fds[0] = mkstemp(path);
        ck_assert_int_ge(fds[0], 0);
        unlink(path);
        fds[1] = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        fds[2] = open("/dev/null", O_RDWR | O_CLOEXEC);
        for (int i = 0; i < 3; i++) {
                ck_assert_int_ge(fds[i], 0);
                ck_assert_int_eq(np_open(c, fds[i], 0, &d1), -EPERM);
                ck_assert_uint_eq(d1, 777);
                ck_assert_int_ge(fcntl(fds[i], F_GETFD), 0); /* still the caller's */
                close(fds[i]);
        }
        assert_stats(c, 0, 0, 0);
        ck_assert_int_eq(daemon_fds(d.pid), base); /* nothing kept by the daemon */
        finish(&d, c);
}
END_TEST

/*
 * The kernel lets one file sit in at most 500 nested epoll sets (each dup'd
 * fd counts); the daemon registers a descriptor past that limit in its
 * main set.  A connection's first 16 descriptors (SESSION_FLAT_MAX) go to
 * the main set anyway, so each connection first opens 16 eventfds; then
 * one connection may register a file 16 times, so 33 of them take it past
 * the limit.  Both kinds must deliver readiness and close cleanly.
 */
START_TEST(test_api_same_file_past_the_nesting_limit_is_served)
{
        enum { FLAT = 16, PER = 16, CONNS = 33, N = PER * CONNS };
        TestDaemon d;
        np_client *c[CONNS];
        np_desc ds[N], fill[CONNS][FLAT];
        int efd[CONNS][FLAT];
        np_event ev[4];
        int p[2], seen_first = 0, seen_last = 0;

        signal(SIGPIPE, SIG_IGN);
        c[0] = start(&d);
        for (int k = 1; k < CONNS; k++)
                ck_assert_int_eq(np_connect(d.sock, &c[k]), 0);
        mkpipe(p);
        int base = daemon_fds(d.pid);
        for (int k = 0; k < CONNS; k++)
                for (int i = 0; i < FLAT; i++) {
                        efd[k][i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                        ck_assert_int_ge(efd[k][i], 0);
                        fill[k][i] = open_ok(c[k], efd[k][i], 0);
                }
        for (int i = 0; i < N; i++) /* a new daemon copy each time */
                ds[i] = open_ok(c[i / PER], p[0], (uint64_t)i);
        /* Each connection's epoll set, and the copies. */
        ck_assert_int_eq(daemon_fds(d.pid), base + CONNS * FLAT + CONNS + N);
        ck_assert_int_eq(np_arm(c[0], ds[0], NP_READ), 0);
        ck_assert_int_eq(np_arm(c[CONNS - 1], ds[N - 1], NP_READ), 0);
        put(p[1]);
        for (int i = 0; i < 10 && !(seen_first && seen_last); i++) {
                np_client *on = seen_first ? c[CONNS - 1] : c[0];
                int n = np_poll(on, 5 * SEC, ev, 4);
                ck_assert_int_ge(n, 0);
                for (int j = 0; j < n; j++) {
                        ck_assert_int_eq(ev[j].result, NP_OK);
                        seen_first += on == c[0] && ev[j].desc == ds[0];
                        seen_last += on == c[CONNS - 1] && ev[j].desc == ds[N - 1];
                }
        }
        ck_assert_int_eq(seen_first, 1);
        ck_assert_int_eq(seen_last, 1);
        for (int i = 0; i < N; i++)
                close_desc(c[i / PER], ds[i]);
        for (int k = 0; k < CONNS; k++)
                for (int i = 0; i < FLAT; i++) {
                        close_desc(c[k], fill[k][i]);
                        close(efd[k][i]);
                }
        await_daemon_fds(d.pid, base + CONNS);
        /* Every copy is closed: with ours gone, the write end sees EPIPE. */
        close(p[0]);
        ck_assert_int_eq(write(p[1], "z", 1), -1);
        ck_assert_int_eq(errno, EPIPE);
        close(p[1]);
        for (int k = 1; k < CONNS; k++)
                np_disconnect(c[k]);
        finish(&d, c[0]);
}
END_TEST

START_TEST(test_api_open_own_library_fds_is_einval)
{
        TestDaemon d;
        int sock, evfd;
        np_desc d1 = 777;

        test_daemon_start(&d, NULL, 0, false);
        np_client *c = connect_find_fds(d.sock, &sock, &evfd);
        ck_assert_int_eq(np_open(c, sock, 0, &d1), -EINVAL);
        ck_assert_int_eq(np_open(c, evfd, 0, &d1), -EINVAL);
        /* Another fd number for the same open file is still ours. */
        int dsock = dup(sock), devfd = dup(evfd);
        ck_assert_int_ge(dsock, 0);
        ck_assert_int_ge(devfd, 0);
        ck_assert_int_eq(np_open(c, dsock, 0, &d1), -EINVAL);
        ck_assert_int_eq(np_open(c, devfd, 0, &d1), -EINVAL);
        close(dsock);
        close(devfd);
        ck_assert_uint_eq(d1, 777);
        assert_stats(c, 0, 0, 0);
        ck_assert_int_eq(np_ping(c), 0); /* the connection is fine */
        finish(&d, c);
}
END_TEST

START_TEST(test_api_open_over_quota_is_edquot)
{
        static const char conf_text[] = "[limits]\nmax_descriptors_per_connection = 4\n";
        char conf[] = "/tmp/np-api-conf-XXXXXX";
        TestDaemon d;
        np_client *c = NULL, *c2 = NULL;
        int p[6][2], f = mkstemp(conf);
        np_desc ds[6];

        ck_assert_int_ge(f, 0);
        ssize_t len = (ssize_t)sizeof(conf_text) - 1;
        ck_assert_int_eq(write(f, conf_text, (size_t)len), len);
        close(f);
        const char *const args[] = { "--config", conf, NULL };
        test_daemon_start(&d, args, 0, false);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        ck_assert_int_eq(np_connect(d.sock, &c2), 0);
        for (int i = 0; i < 6; i++)
                mkpipe(p[i]);
        for (int i = 0; i < 4; i++)
                ds[i] = open_ok(c, p[i][0], (uint64_t)i);
        ds[4] = 777;
        ck_assert_int_eq(np_open(c, p[4][0], 4, &ds[4]), -EDQUOT);
        ck_assert_uint_eq(ds[4], 777);
        ck_assert_int_ge(fcntl(p[4][0], F_GETFD), 0);
        assert_stats(c, 4, 0, 0);

        /* The quota is per connection. */
        np_desc other = open_ok(c2, p[5][0], 5);
        close_desc(c2, other);

        /* Closing one makes room for exactly one. */
        close_desc(c, ds[0]);
        ds[0] = open_ok(c, p[4][0], 4);
        ck_assert_int_eq(np_open(c, p[5][0], 5, &ds[5]), -EDQUOT);
        assert_stats(c, 4, 0, 0);

        for (int i = 0; i < 4; i++)
                close_desc(c, ds[i]);
        for (int i = 0; i < 6; i++)
                close2(p[i]);
        np_disconnect(c2);
        finish(&d, c);
        unlink(conf);
}
END_TEST

/* Opens pipes' read ends on c until np_open fails; returns how many
 * succeeded (their write ends in w[], descriptors in ds[]) and the error. */
static int open_until_refused(np_client *c, int *w, np_desc *ds, int max, int *ret_error)
{
        int n = 0, p[2];

        for (;;) {
                ck_assert_int_lt(n, max);
                mkpipe(p);
                int r = np_open(c, p[0], (uint64_t)n, &ds[n]);
                close(p[0]);
                if (r < 0) {
                        close(p[1]);
                        *ret_error = r;
                        return n;
                }
                w[n++] = p[1];
        }
}

START_TEST(test_api_open_over_uid_quota_is_edquot)
{
        char conf[] = "/tmp/np-api-conf-XXXXXX";
        TestDaemon d;
        np_client *c = NULL, *c2 = NULL;
        int w[32], w2[32], n, n2, r;
        np_desc ds[32], ds2[32];

        /* 20 fds for the uid: each connection's socket and epoll set count. */
        test_write_temp(conf, "[limits]\nmax_descriptors_per_uid = 20\n");
        const char *const args[] = { "--config", conf, NULL };
        test_daemon_start(&d, args, 0, false);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        n = open_until_refused(c, w, ds, 32, &r);
        ck_assert_int_eq(r, -EDQUOT);
        ck_assert_int_eq(n, 20 - 2);
        /* Another connection of the same uid: its socket is the 21st. */
        ck_assert_int_eq(np_connect(d.sock, &c2), 0);
        n2 = open_until_refused(c2, w2, ds2, 32, &r);
        ck_assert_int_eq(r, -EDQUOT);
        ck_assert_int_eq(n2, 0);
        /* A close frees its share once the fd is really closed (off the
         * loop thread, so allow a moment). */
        np_disconnect(c2);
        close_desc(c, ds[--n]);
        close(w[n]);
        int p[2];
        mkpipe(p);
        for (int i = 0; i < 1000 && (r = np_open(c, p[0], 99, &ds[n])) == -EDQUOT; i++)
                usleep(1000);
        ck_assert_int_eq(r, 0);
        close(p[0]);
        w[n++] = p[1];
        ck_assert_int_eq(np_open(c, p[1], 98, &ds[n]), -EDQUOT);
        close(p[1]);
        w[n - 1] = -1;
        for (int i = 0; i < n; i++) {
                close_desc(c, ds[i]);
                if (w[i] >= 0)
                        close(w[i]);
        }
        finish(&d, c);
        unlink(conf);
}
END_TEST

/*
 * A connection's first 16 descriptors (SESSION_FLAT_MAX) go to the daemon's
 * main epoll set: no set of its own, one fd each.  The 17th makes the
 * connection's own set (two fds: the set and the copy), which stays; a
 * place freed in the main set is taken by the next open.  Readiness comes
 * from both kinds alike.
 */
START_TEST(test_api_open_first_16_in_the_main_set_then_a_set_of_its_own)
{
        enum { FLAT = 16 };
        TestDaemon d;
        np_client *c = start(&d);
        np_desc ds[FLAT + 2];
        np_event ev[4];
        int p[FLAT + 2][2];

        signal(SIGPIPE, SIG_IGN);
        int base = daemon_fds(d.pid);
        for (int i = 0; i < FLAT; i++) {
                mkpipe(p[i]);
                ds[i] = open_ok(c, p[i][0], (uint64_t)i);
        }
        ck_assert_int_eq(daemon_fds(d.pid), base + FLAT);
        mkpipe(p[FLAT]);
        ds[FLAT] = open_ok(c, p[FLAT][0], FLAT);
        ck_assert_int_eq(daemon_fds(d.pid), base + FLAT + 2);

        /* One in the main set, one in the connection's set: both wake. */
        ck_assert_int_eq(np_arm(c, ds[0], NP_READ), 0);
        ck_assert_int_eq(np_arm(c, ds[FLAT], NP_READ), 0);
        put(p[0][1]);
        put(p[FLAT][1]);
        int seen = 0;
        for (int i = 0; i < 10 && seen != 3; i++) {
                int n = np_poll(c, 5 * SEC, ev, 4);
                ck_assert_int_ge(n, 0);
                for (int j = 0; j < n; j++) {
                        ck_assert_int_eq(ev[j].result, NP_OK);
                        seen |= ev[j].desc == ds[0] ? 1 : ev[j].desc == ds[FLAT] ? 2 : 4;
                }
        }
        ck_assert_int_eq(seen, 3);

        /* The 17th goes; its set stays.  A freed place in the main set
         * takes the next open: one fd more, not a second set. */
        close_desc(c, ds[FLAT]);
        await_daemon_fds(d.pid, base + FLAT + 1);
        close_desc(c, ds[1]);
        await_daemon_fds(d.pid, base + FLAT);
        mkpipe(p[FLAT + 1]);
        ds[FLAT + 1] = open_ok(c, p[FLAT + 1][0], FLAT + 1);
        ck_assert_int_eq(daemon_fds(d.pid), base + FLAT + 1);
        put(p[FLAT + 1][1]);
        ck_assert_int_eq(np_wait(c, ds[FLAT + 1], NP_READ), NP_OK);
        finish(&d, c);
        for (int i = 0; i < FLAT + 2; i++) {
                close(p[i][0]);
                close(p[i][1]);
        }
}
END_TEST

START_TEST(test_api_open_into_reserved_fds_is_emfile)
{
        char conf[] = "/tmp/np-api-conf-XXXXXX";
        TestDaemon d;
        np_client *c = NULL;
        int w[32], n, r;
        np_desc ds[32];

        /* 400 fds, 390 of them kept back: clients get 10 in all, whatever
         * their uid's share. */
        test_write_temp(conf, "[limits]\nreserved_fds = 390\nmax_descriptors_per_uid = 100%\n");
        const char *const args[] = { "--config", conf, NULL };
        test_daemon_start(&d, args, 400, false);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        n = open_until_refused(c, w, ds, 32, &r);
        ck_assert_int_eq(r, -EMFILE);
        /* Its socket is one; fewer than SESSION_FLAT_MAX descriptors need no
         * epoll set of their own. */
        ck_assert_int_eq(n, 10 - 1);
        ck_assert_int_eq(np_ping(c), 0);
        for (int i = 0; i < n; i++) {
                close_desc(c, ds[i]);
                close(w[i]);
        }
        finish(&d, c);
        unlink(conf);
}
END_TEST

/* One connection may register one file (a pipe end, a socket, a tty) at
 * most 16 times, dup'd fds included: the 17th gets -ETOOMANYREFS.  Another
 * connection has its own count; a close makes room again. */
START_TEST(test_api_open_same_file_17_times_is_etoomanyrefs)
{
        TestDaemon d;
        np_client *c = NULL, *c2 = NULL;
        np_desc ds[17], other;
        int p[2];

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        ck_assert_int_eq(np_connect(d.sock, &c2), 0);
        mkpipe(p);
        for (int i = 0; i < 16; i++) {
                int dup = fcntl(p[0], F_DUPFD_CLOEXEC, 0);
                ck_assert_int_ge(dup, 0);
                ck_assert_int_eq(np_open(c, i % 2 ? dup : p[0], (uint64_t)i, &ds[i]), 0);
                close(dup);
        }
        ck_assert_int_eq(np_open(c, p[0], 16, &ds[16]), -ETOOMANYREFS);
        /* Another pipe is another file. */
        int q[2];
        mkpipe(q);
        ck_assert_int_eq(np_open(c, q[0], 17, &ds[16]), 0);
        close_desc(c, ds[16]);
        close2(q);
        ck_assert_int_eq(np_open(c2, p[0], 1, &other), 0);
        close_desc(c2, other);
        close_desc(c, ds[0]);
        ck_assert_int_eq(np_open(c, p[0], 0, &ds[0]), 0);
        for (int i = 0; i < 16; i++)
                close_desc(c, ds[i]);
        close2(p);
        np_disconnect(c2);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_open_daemon_out_of_fds_is_emfile)
{
        char conf[] = "/tmp/np-api-conf-XXXXXX";
        TestDaemon d;
        np_client *c = NULL;
        int w[64], n = 0, r, p[2];
        np_desc ds[64];

        /* No reserve and no uid share: the kernel's own EMFILE comes first. */
        test_write_temp(conf, "[limits]\nreserved_fds = 0\nmax_descriptors_per_uid = 100%\n");
        const char *const args[] = { "--config", conf, NULL };
        test_daemon_start(&d, args, 64, false);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        for (;;) {
                ck_assert_int_lt(n, 64);
                mkpipe(p);
                ds[n] = 0;
                r = np_open(c, p[0], (uint64_t)n, &ds[n]);
                if (r == -EMFILE) {
                        ck_assert_int_ge(fcntl(p[0], F_GETFD), 0);
                        close2(p);
                        break;
                }
                ck_assert_int_eq(r, 0);
                close(p[0]);
                w[n++] = p[1];
        }
        ck_assert_int_gt(n, 0);
        /* Every fd number below the limit is taken (the daemon may also
         * hold inherited fds above it). */
        for (int fd = 0; fd < 64; fd++) {
                char link[128];
                fd_link(d.pid, fd, link, sizeof(link));
                ck_assert_msg(link[0], "netpolld's fd %d is free", fd);
        }
        ck_assert_int_eq(np_ping(c), 0);
        assert_stats(c, (uint64_t)n, 0, 0);

        /* One np_close frees one fd (once the closer thread has closed
         * it), and np_open works again, once. */
        close_desc(c, ds[n - 1]);
        close(w[--n]);
        mkpipe(p);
        for (int i = 0; i < 1000 && (r = np_open(c, p[0], (uint64_t)n, &ds[n])) == -EMFILE; i++)
                usleep(1000);
        ck_assert_int_eq(r, 0);
        close(p[0]);
        w[n++] = p[1];
        mkpipe(p);
        ck_assert_int_eq(np_open(c, p[0], (uint64_t)n, &ds[n]), -EMFILE);
        close2(p);

        ck_assert_int_eq(kill(d.pid, 0), 0);
        ck_assert_int_eq(np_ping(c), 0);
        assert_stats(c, (uint64_t)n, 0, 0);
        np_disconnect(c);
        for (int i = 0; i < n; i++)
                close(w[i]);
        test_daemon_stop_ok(&d);
        unlink(conf);
}
END_TEST

void api_open_tests(TCase *tc)
{
        tcase_add_test(tc, test_api_open_caller_keeps_fd_and_user_comes_back);
        tcase_add_test(tc, test_api_open_bad_fd_is_ebadf);
        tcase_add_test(tc, test_api_open_not_pollable_is_eperm);
        tcase_add_test(tc, test_api_same_file_past_the_nesting_limit_is_served);
        tcase_add_test(tc, test_api_open_own_library_fds_is_einval);
        tcase_add_test(tc, test_api_open_over_quota_is_edquot);
        tcase_add_test(tc, test_api_open_daemon_out_of_fds_is_emfile);
        tcase_add_test(tc, test_api_open_over_uid_quota_is_edquot);
        tcase_add_test(tc, test_api_open_into_reserved_fds_is_emfile);
        tcase_add_test(tc, test_api_open_first_16_in_the_main_set_then_a_set_of_its_own);
        tcase_add_test(tc, test_api_open_same_file_17_times_is_etoomanyrefs);
}
