/*
 * api, case wait: np_wait consuming latched readiness, checking errors
 * first, blocking until ready, refusing a second parked wait, and ending
 * when the daemon is lost; np_wait_canceled ignoring deadlines and
 * closing.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-api.h"

/* ---- np_wait ---- */

START_TEST(test_api_wait_consumes_latched_readiness_at_once)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        put(p[1]);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_OK);
        assert_stats(c, 1, 0, 0);
        /* Consumed: the next wait has no readiness to take. */
        ck_assert_int_eq(np_set_deadline(c, d1, 50 * MS, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_TIMEOUT);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_wait_checks_errors_before_readiness)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        put(p[1]);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_TIMEOUT);
        /* The timeout did not consume the latched readiness. */
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_OK);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_wait_blocks_until_ready)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter r, w;
        int p[2];

        mkpipe(p);
        np_desc dr = open_ok(c, p[0], 1);
        waiter_start(&r, c, dr, NP_READ, false);
        await_waiters(c, 1);
        ck_assert(!atomic_load(&r.done));
        put(p[1]);
        ck_assert_int_eq(waiter_join(&r), NP_OK);
        assert_stats(c, 1, 0, 0);

        /* A writer on a full pipe parks until the reader makes room. */
        fill(p[1]);
        np_desc dw = open_ok(c, p[1], 2);
        waiter_start(&w, c, dw, NP_WRITE, false);
        await_waiters(c, 1);
        ck_assert(!atomic_load(&w.done));
        drain(p[0]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);

        close_desc(c, dr);
        close_desc(c, dw);
        close2(p);
        finish(&d, c);
}
END_TEST

/* A pipe's write end whose pipe is full and has no reader polls as exactly
 * EPOLLERR (no EPOLLOUT: no room).  Go 1.17+ then reports
 * pollErrNotPollable to reads only. */
START_TEST(test_api_wait_after_epollerr_only_is_not_pollable)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev;
        int p[2];

        mkpipe(p);
        fill(p[1]);
        close(p[0]);
        struct pollfd pfd = { .fd = p[1], .events = POLLIN | POLLOUT };
        ck_assert_int_eq(poll(&pfd, 1, 0), 1);
        ck_assert_int_eq(pfd.revents, POLLERR);

        np_desc d1 = open_ok(c, p[1], 9);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_NOT_POLLABLE);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_ERR_NOT_POLLABLE);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_poll(c, -1, &ev, 1), 1);
        ck_assert_uint_eq(ev.desc, d1);
        ck_assert_uint_eq(ev.user, 9);
        ck_assert_int_eq(ev.result, NP_ERR_NOT_POLLABLE);
        /* The error is readiness to a write. */
        ck_assert_int_eq(np_wait(c, d1, NP_WRITE), NP_OK);

        close_desc(c, d1);
        close(p[1]);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_wait_already_parked_is_ebusy)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w, wc;
        int p[2], q[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), -EBUSY);
        ck_assert_int_eq(np_wait_canceled(c, d1, NP_READ), -EBUSY);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), -EBUSY);
        assert_stats(c, 1, 1, 0);
        put(p[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);

        /* Same with a parked np_wait_canceled. */
        mkpipe(q);
        np_desc d2 = open_ok(c, q[0], 2);
        waiter_start(&wc, c, d2, NP_READ, true);
        await_waiters(c, 1);
        ck_assert_int_eq(np_wait(c, d2, NP_READ), -EBUSY);
        ck_assert_int_eq(np_wait_canceled(c, d2, NP_READ), -EBUSY);
        put(q[1]);
        ck_assert_int_eq(waiter_join(&wc), NP_OK);

        close_desc(c, d1);
        close_desc(c, d2);
        close2(p);
        close2(q);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_wait_invalid_mode_and_desc)
{
        TestDaemon d;
        np_client *c = start(&d);
        const int bad[] = { 0, 'x', NP_RW, -1 };
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ck_assert_int_eq(np_wait(c, d1, bad[i]), -EINVAL);
                ck_assert_int_eq(np_wait_canceled(c, d1, bad[i]), -EINVAL);
        }
        ck_assert_int_eq(np_wait(c, d1 + 12345, NP_READ), -EBADF);
        ck_assert_int_eq(np_wait_canceled(c, d1 + 12345, NP_READ), -EBADF);
        ck_assert_int_eq(np_wait(c, 0, NP_WRITE), -EBADF);
        assert_stats(c, 1, 0, 0);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_wait_daemon_lost_ends_waits_closing)
{
        TestDaemon d;
        np_client *c = start(&d);
        struct np_session_stats st;
        Waiter w, wc;
        np_event ev;
        int p[2], q[2];

        mkpipe(p);
        mkpipe(q);
        np_desc d1 = open_ok(c, p[0], 1), d2 = open_ok(c, q[0], 2);
        waiter_start(&w, c, d1, NP_READ, false);
        waiter_start(&wc, c, d2, NP_READ, true);
        await_waiters(c, 2);
        ck_assert_int_eq(kill(d.pid, SIGKILL), 0);
        /* Parked waits end as on a closing descriptor (what a lame-duck
         * stop gives them too); every later call finds the daemon gone. */
        ck_assert_int_eq(waiter_join(&w), NP_ERR_CLOSING);
        ck_assert_int_eq(waiter_join(&wc), NP_ERR_CLOSING);
        ck_assert_int_eq(np_ping(c), -ECONNRESET);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), -ECONNRESET);
        ck_assert_int_eq(np_session_stats(c, &st), -ECONNRESET);
        ck_assert_int_eq(np_poll(c, -1, &ev, 1), -ECONNRESET);
        np_disconnect(c);
        int status = test_daemon_stop(&d);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        close2(p);
        close2(q);
}
END_TEST

/* ---- np_wait_canceled ---- */

START_TEST(test_api_wait_canceled_ignores_deadlines_and_closing)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        waiter_start(&w, c, d1, NP_READ, true);
        await_waiters(c, 1);

        /* An expired deadline: a np_wait would end, this one stays. */
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        assert_stats(c, 1, 1, 0);
        /* A deadline that fires: the timer count drops when it does. */
        ck_assert_int_eq(np_set_deadline(c, d1, 30 * MS, NP_READ), 0);
        for (int i = 0; i < 2000 && stats(c).timers != 0; i++)
                usleep(5000);
        assert_stats(c, 1, 1, 0);
        /* Closing. */
        ck_assert_int_eq(np_unblock(c, d1), 0);
        assert_stats(c, 1, 1, 0);
        ck_assert(!atomic_load(&w.done));

        put(p[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        ck_assert_int_eq(np_close(c, d1), 0);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_wait_canceled_takes_latched_readiness)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        put(p[1]);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_wait_canceled(c, d1, NP_READ), NP_OK);
        /* np_wait sees the deadline first, np_wait_canceled never does. */
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_TIMEOUT);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

void api_wait_tests(TCase *tc)
{
        tcase_add_test(tc, test_api_wait_consumes_latched_readiness_at_once);
        tcase_add_test(tc, test_api_wait_checks_errors_before_readiness);
        tcase_add_test(tc, test_api_wait_blocks_until_ready);
        tcase_add_test(tc, test_api_wait_after_epollerr_only_is_not_pollable);
        tcase_add_test(tc, test_api_wait_already_parked_is_ebusy);
        tcase_add_test(tc, test_api_wait_invalid_mode_and_desc);
        tcase_add_test(tc, test_api_wait_daemon_lost_ends_waits_closing);
        tcase_add_test(tc, test_api_wait_canceled_ignores_deadlines_and_closing);
        tcase_add_test(tc, test_api_wait_canceled_takes_latched_readiness);
}
