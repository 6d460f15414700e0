/*
 * api, case deadline: np_set_deadline never early (also with the daemon
 * busy or a handshake stalled), in the past, zero, far in the future,
 * extended, refreshed, split and moved into the past while a wait is
 * parked, and pipelined behind an fd the library cannot send.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-api.h"

/* ---- np_set_deadline ---- */

START_TEST(test_api_deadline_timeout_is_never_early)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2], sv[2];
        int64_t t0;

        mkpipe(p);
        np_desc dr = open_ok(c, p[0], 1);
        t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, dr, 50 * MS, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, dr, NP_READ), NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_lt(test_now() - t0, 2 * SEC);

        fill(p[1]);
        np_desc dw = open_ok(c, p[1], 2);
        t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, dw, 50 * MS, NP_WRITE), 0);
        ck_assert_int_eq(np_wait(c, dw, NP_WRITE), NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_lt(test_now() - t0, 2 * SEC);

        /* Both directions at once. */
        mksocketpair(sv);
        fill(sv[0]);
        np_desc ds = open_ok(c, sv[0], 3);
        t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, ds, 50 * MS, NP_RW), 0);
        ck_assert_int_eq(np_wait(c, ds, NP_READ), NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_eq(np_wait(c, ds, NP_WRITE), NP_ERR_TIMEOUT);
        ck_assert_int_lt(test_now() - t0, 2 * SEC);

        close_desc(c, dr);
        close_desc(c, dw);
        close_desc(c, ds);
        close2(p);
        close2(sv);
        finish(&d, c);
}
END_TEST

/* The daemon's loop turns for every request; a timer must still not fire
 * before its deadline on any of those turns. */
START_TEST(test_api_deadline_never_early_while_daemon_busy)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[1];
        Waiter w;
        int p[2], q[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, 50 * MS, NP_READ), 0);
        waiter_start(&w, c, d1, NP_READ, false);
        while (!atomic_load(&w.done) && test_now() - t0 < 5 * SEC)
                ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(waiter_join(&w), NP_ERR_TIMEOUT);
        ck_assert_int_ge(w.end - t0, 50 * MS);

        /* An armed wait, with np_poll(0) and pings as the busy work. */
        mkpipe(q);
        np_desc d2 = open_ok(c, q[0], 2);
        t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d2, 50 * MS, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d2, NP_READ), 0);
        int n = 0;
        while (n == 0 && test_now() - t0 < 5 * SEC) {
                ck_assert_int_eq(np_ping(c), 0);
                n = np_poll(c, 0, ev, 1);
        }
        ck_assert_int_eq(n, 1);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_eq(ev[0].result, NP_ERR_TIMEOUT);

        close_desc(c, d1);
        close_desc(c, d2);
        close2(p);
        close2(q);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_deadline_in_past_expires_now)
{
        TestDaemon d;
        np_client *c = start(&d);
        int sv[2];

        mksocketpair(sv);
        fill(sv[0]);
        np_desc d1 = open_ok(c, sv[0], 1);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_WRITE), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_WRITE), NP_ERR_TIMEOUT);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_OK); /* the other mode is untouched */
        ck_assert_int_eq(np_set_deadline(c, d1, INT64_MIN, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_TIMEOUT);
        assert_stats(c, 1, 0, 0);
        close_desc(c, d1);
        close2(sv);
        finish(&d, c);
}
END_TEST

/* now + ns saturates instead of wrapping into the past. */
START_TEST(test_api_deadline_far_future_does_not_overflow)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2], q[2];

        mkpipe(p);
        mkpipe(q);
        np_desc d1 = open_ok(c, p[0], 1), d2 = open_ok(c, q[0], 2);
        ck_assert_int_eq(np_set_deadline(c, d1, INT64_MAX, NP_READ), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, INT64_MAX - 1, NP_WRITE), 0);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_OK);
        ck_assert_int_eq(np_reset(c, d1, NP_WRITE), NP_OK);
        /* Both saturate to the same instant and so share one timer. */
        assert_stats(c, 2, 0, 1);
        /* A near deadline still fires on time next to the far ones. */
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d2, 50 * MS, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d2, NP_READ), NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_lt(test_now() - t0, 3 * SEC);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_OK);
        put(p[1]);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_OK);
        close_desc(c, d1);
        close_desc(c, d2);
        close2(p);
        close2(q);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_deadline_zero_means_none)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_set_deadline(c, d1, 30 * MS, NP_READ), 0);
        assert_stats(c, 1, 0, 1);
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        assert_stats(c, 1, 0, 0);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        /* Well past the cleared 30 ms deadline, the wait is still parked. */
        usleep(150000);
        ck_assert(!atomic_load(&w.done));
        assert_stats(c, 1, 1, 0);
        put(p[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

/*
 * A pipelined deadline is not lost when the next request's fd cannot be
 * sent: the kernel refuses to pass an io_uring fd (sendmsg -EINVAL), and
 * the library used to drop the batch that datagram carried with it.  Now
 * the batch goes again alone and only the open fails.
 */
START_TEST(test_api_pipelined_deadline_survives_an_unsendable_fd)
{
        struct io_uring_params params = { 0 };
        TestDaemon d;
        np_client *c = start(&d);
        int p[2];

        int ring = (int)syscall(SYS_io_uring_setup, 2, &params);
        if (ring < 0) {
                fprintf(stderr, "SKIP %s: io_uring_setup: %s\n", __func__, strerror(errno));
                finish(&d, c);
                return;
        }
        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_set_deadline(c, d1, 10 * SEC, NP_READ), 0); /* pipelined */
        np_desc d2;
        int r = np_open(c, ring, 2, &d2);
        ck_assert_msg(r < 0, "an io_uring fd was passed and registered (%d)", r);
        struct np_session_stats st = stats(c);
        ck_assert_uint_eq(st.descriptors, 1);
        ck_assert_uint_eq(st.timers, 1); /* the deadline arrived */
        ck_assert_int_eq(np_ping(c), 0);
        close(ring);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

/*
 * The handshake's clock comparison is decided by causality: a client held
 * up between the daemon's stamp on the welcome and its own reading of the
 * clock (here stopped for 1.5 s) is on the same clock all the same.  The
 * library used to take any difference over 1 s as an offset between
 * clocks, making every deadline of that connection early by the stall.
 */
START_TEST(test_api_stalled_handshake_keeps_deadlines_on_time)
{
        TestDaemon d;
        int report[2];

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(pipe2(report, O_CLOEXEC), 0);
        /* The daemon is stopped while the client connects and sends its
         * hello, so the client is sure to be waiting for the welcome. */
        ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                np_client *c;
                int q[2];
                int64_t waited = -1;
                if (np_connect(d.sock, &c) == 0 && pipe2(q, O_CLOEXEC) == 0) {
                        np_desc dd;
                        int64_t t0 = test_now();
                        if (np_open(c, q[0], 1, &dd) == 0 &&
                            np_set_deadline(c, dd, 300 * MS, NP_READ) == 0 &&
                            np_wait(c, dd, NP_READ) == NP_ERR_TIMEOUT)
                                waited = test_now() - t0;
                }
                (void)!write(report[1], &waited, sizeof(waited));
                _exit(0);
        }
        usleep(200 * 1000); /* it connects, sends its hello and waits */
        ck_assert_int_eq(kill(pid, SIGSTOP), 0);
        ck_assert_int_eq(kill(d.pid, SIGCONT), 0);
        usleep(1500 * 1000); /* the welcome, stamped, waits for it */
        ck_assert_int_eq(kill(pid, SIGCONT), 0);
        int64_t waited = -2;
        ck_assert_int_eq(read(report[0], &waited, sizeof(waited)), (ssize_t)sizeof(waited));
        ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
        close(report[0]);
        close(report[1]);
        ck_assert_msg(waited >= 300 * MS, "the 300 ms deadline fired after %lld ms",
                      (long long)(waited / MS));
        ck_assert_int_lt(waited, 5 * SEC);
        test_daemon_stop(&d);
}
END_TEST

START_TEST(test_api_deadline_extended_while_parked)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, 100 * MS, NP_READ), 0);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        int64_t left = t0 + 20 * MS - test_now();
        if (left > 0)
                usleep((useconds_t)(left / 1000));
        ck_assert(!atomic_load(&w.done));
        int64_t t1 = test_now();
        ck_assert_msg(t1 - t0 < 100 * MS, "too slow to extend in time");
        ck_assert_int_eq(np_set_deadline(c, d1, 300 * MS, NP_READ), 0);
        ck_assert_int_eq(waiter_join(&w), NP_ERR_TIMEOUT);
        ck_assert_int_ge(w.end - t1, 300 * MS);
        ck_assert_int_ge(w.end - t0, 320 * MS);
        ck_assert_int_lt(w.end - t0, 3 * SEC);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_deadline_refreshed_while_parked)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, 200 * MS, NP_READ), 0);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        int64_t left = t0 + 100 * MS - test_now();
        if (left > 0)
                usleep((useconds_t)(left / 1000));
        ck_assert(!atomic_load(&w.done));
        int64_t t1 = test_now();
        ck_assert_msg(t1 - t0 < 200 * MS, "too slow to refresh in time");
        /* The same relative deadline again: it now ends 200 ms from t1. */
        ck_assert_int_eq(np_set_deadline(c, d1, 200 * MS, NP_READ), 0);
        assert_stats(c, 1, 1, 1);
        ck_assert_int_eq(waiter_join(&w), NP_ERR_TIMEOUT);
        ck_assert_int_ge(w.end - t1, 200 * MS);
        ck_assert_int_ge(w.end - t0, 300 * MS);
        ck_assert_int_lt(w.end - t0, 3 * SEC);
        assert_stats(c, 1, 0, 0);

        /* A new deadline after a timeout: waits park again until it. */
        t1 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, 100 * MS, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t1, 100 * MS);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

/* One timer serves equal read and write deadlines (as in Go); changing one
 * of them must give the other its own timer. */
START_TEST(test_api_deadline_split_from_combined)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        int sv[2];

        mksocketpair(sv);
        fill(sv[0]);
        np_desc d1 = open_ok(c, sv[0], 1);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, 100 * MS, NP_RW), 0);
        assert_stats(c, 1, 0, 1);
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        assert_stats(c, 1, 0, 1);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        ck_assert_int_eq(np_wait(c, d1, NP_WRITE), NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t0, 100 * MS);
        ck_assert_int_lt(test_now() - t0, 3 * SEC);
        /* The read side has no deadline any more: still parked. */
        assert_stats(c, 1, 1, 0);
        ck_assert(!atomic_load(&w.done));
        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(waiter_join(&w), NP_ERR_CLOSING);
        ck_assert_int_eq(np_close(c, d1), 0);
        close2(sv);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_deadline_moved_into_past_wakes_parked)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter r, w;
        int sv[2];

        mksocketpair(sv);
        fill(sv[0]);
        np_desc d1 = open_ok(c, sv[0], 1);
        ck_assert_int_eq(np_set_deadline(c, d1, 10 * SEC, NP_RW), 0);
        waiter_start(&r, c, d1, NP_READ, false);
        waiter_start(&w, c, d1, NP_WRITE, false);
        await_waiters(c, 2);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_RW), 0);
        ck_assert_int_eq(waiter_join(&r), NP_ERR_TIMEOUT);
        ck_assert_int_eq(waiter_join(&w), NP_ERR_TIMEOUT);
        ck_assert_int_lt(test_now() - t0, 5 * SEC); /* not the 10 s deadline */
        assert_stats(c, 1, 0, 0);
        close_desc(c, d1);
        close2(sv);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_deadline_when_closing_and_errors)
{
        TestDaemon d;
        np_client *c = start(&d), *c2 = NULL;
        int p[2];

        ck_assert_int_eq(np_connect(d.sock, &c2), 0);
        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_set_deadline(c, d1, SEC, 0), -EINVAL);
        ck_assert_int_eq(np_set_deadline(c, d1, SEC, 'x'), -EINVAL);
        ck_assert_int_eq(np_set_deadline(c, d1 + 12345, SEC, NP_READ), -EBADF);
        ck_assert_int_eq(np_set_deadline(c2, d1, SEC, NP_READ), -EBADF);
        assert_stats(c, 1, 0, 0);

        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, 10 * SEC, NP_READ), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, 10 * SEC, NP_RW), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_WRITE), 0);
        assert_stats(c, 1, 0, 0); /* no timer armed on a closing descriptor */
        ck_assert_int_eq(np_wait(c, d1, NP_WRITE), NP_ERR_CLOSING);
        ck_assert_int_eq(np_close(c, d1), 0);
        close2(p);
        np_disconnect(c2);
        finish(&d, c);
}
END_TEST

void api_deadline_tests(TCase *tc)
{
        tcase_add_test(tc, test_api_deadline_timeout_is_never_early);
        tcase_add_test(tc, test_api_deadline_never_early_while_daemon_busy);
        tcase_add_test(tc, test_api_deadline_in_past_expires_now);
        tcase_add_test(tc, test_api_deadline_zero_means_none);
        tcase_add_test(tc, test_api_deadline_far_future_does_not_overflow);
        tcase_add_test(tc, test_api_deadline_extended_while_parked);
        tcase_add_test(tc, test_api_deadline_refreshed_while_parked);
        tcase_add_test(tc, test_api_deadline_split_from_combined);
        tcase_add_test(tc, test_api_deadline_moved_into_past_wakes_parked);
        tcase_add_test(tc, test_api_deadline_when_closing_and_errors);
        tcase_add_test(tc, test_api_pipelined_deadline_survives_an_unsendable_fd);
        tcase_add_test(tc, test_api_stalled_handshake_keeps_deadlines_on_time);
}
