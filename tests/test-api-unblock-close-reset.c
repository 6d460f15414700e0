/*
 * api, case unblock-close-reset: np_unblock waking both directions and
 * stopping timers, np_close invalidating the id (and refusing while a wait
 * is parked), np_reset discarding latched readiness and reporting errors.
 */
#include <errno.h>
#include <stdatomic.h>

#include "test-api.h"

/* ---- np_unblock ---- */

START_TEST(test_api_unblock_wakes_reader_and_writer_and_stops_timers)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter r, w;
        int sv[2];

        mksocketpair(sv);
        fill(sv[0]); /* before np_open: nothing latched for either mode */
        np_desc d1 = open_ok(c, sv[0], 1);
        ck_assert_int_eq(np_set_deadline(c, d1, 10 * SEC, NP_READ), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, 20 * SEC, NP_WRITE), 0);
        waiter_start(&r, c, d1, NP_READ, false);
        waiter_start(&w, c, d1, NP_WRITE, false);
        await_waiters(c, 2);
        assert_stats(c, 1, 2, 2);
        ck_assert(!atomic_load(&r.done) && !atomic_load(&w.done));

        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(waiter_join(&r), NP_ERR_CLOSING);
        ck_assert_int_eq(waiter_join(&w), NP_ERR_CLOSING);
        assert_stats(c, 1, 0, 0);

        /* Closing sticks. */
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_CLOSING);
        ck_assert_int_eq(np_wait(c, d1, NP_WRITE), NP_ERR_CLOSING);
        ck_assert_int_eq(np_unblock(c, d1), -EALREADY);
        ck_assert_int_eq(np_close(c, d1), 0);
        close2(sv);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_unblock_errors)
{
        TestDaemon d;
        np_client *c = start(&d), *c2 = NULL;
        int p[2];

        ck_assert_int_eq(np_connect(d.sock, &c2), 0);
        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_unblock(c, 0), -EBADF);
        ck_assert_int_eq(np_unblock(c, d1 + 12345), -EBADF);
        ck_assert_int_eq(np_unblock(c2, d1), -EBADF); /* another connection's */
        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(np_unblock(c, d1), -EALREADY);
        ck_assert_int_eq(np_close(c, d1), 0);
        ck_assert_int_eq(np_unblock(c, d1), -EBADF);
        close2(p);
        np_disconnect(c2);
        finish(&d, c);
}
END_TEST

/* ---- np_close ---- */

START_TEST(test_api_close_invalidates_the_id)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_desc d2 = 777;
        np_event ev;
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        close_desc(c, d1);
        ck_assert_int_eq(np_close(c, d1), -EBADF);
        ck_assert_int_eq(np_unblock(c, d1), -EBADF);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), -EBADF);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), -EBADF);
        ck_assert_int_eq(np_wait_canceled(c, d1, NP_READ), -EBADF);
        ck_assert_int_eq(np_set_deadline(c, d1, SEC, NP_READ), -EBADF);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), -EBADF);
        ck_assert_int_eq(np_poll(c, 0, &ev, 1), 0);

        /* A new descriptor may reuse the slot, never the id. */
        d2 = open_ok(c, p[0], 2);
        ck_assert_uint_ne(d2, d1);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), -EBADF);
        ck_assert_int_eq(np_close(c, d1), -EBADF);
        ck_assert_int_eq(np_reset(c, d2, NP_READ), NP_OK);
        close_desc(c, d2);
        ck_assert_int_eq(np_close(c, 0), -EBADF);
        ck_assert_int_eq(np_close(c, UINT64_MAX), -EBADF);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_close_without_unblock_is_ebusy)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_close(c, d1), -EBUSY);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_OK); /* still valid */
        assert_stats(c, 1, 0, 0);
        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(np_close(c, d1), 0);
        assert_stats(c, 0, 0, 0);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_close_with_wait_canceled_parked_is_ebusy)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        waiter_start(&w, c, d1, NP_READ, true);
        await_waiters(c, 1);
        ck_assert_int_eq(np_unblock(c, d1), 0);
        /* The unblock's reply came after the daemon handled it: a
         * pollWaitCanceled ignores closing and is still parked. */
        assert_stats(c, 1, 1, 0);
        ck_assert(!atomic_load(&w.done));
        ck_assert_int_eq(np_close(c, d1), -EBUSY);
        put(p[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        ck_assert_int_eq(np_close(c, d1), 0);
        assert_stats(c, 0, 0, 0);
        close2(p);
        finish(&d, c);
}
END_TEST

/* ---- np_reset ---- */

START_TEST(test_api_reset_discards_latched_readiness)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2], q[2];

        /* Control: without a reset, the latched readiness ends a wait. */
        mkpipe(q);
        np_desc dq = open_ok(c, q[0], 2);
        put(q[1]);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_set_deadline(c, dq, 5 * SEC, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, dq, NP_READ), NP_OK);

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        put(p[1]);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_OK);
        ck_assert_int_eq(np_set_deadline(c, d1, 100 * MS, NP_READ), 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t0, 100 * MS);

        close_desc(c, d1);
        close_desc(c, dq);
        close2(p);
        close2(q);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_reset_returns_the_error_check)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_OK);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_ERR_TIMEOUT);
        ck_assert_int_eq(np_reset(c, d1, NP_WRITE), NP_OK);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_WRITE), 0);
        ck_assert_int_eq(np_reset(c, d1, NP_WRITE), NP_ERR_TIMEOUT);
        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_ERR_CLOSING);
        ck_assert_int_eq(np_reset(c, d1, NP_WRITE), NP_ERR_CLOSING);
        ck_assert_int_eq(np_close(c, d1), 0);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_reset_invalid_mode_and_desc)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_reset(c, d1, 0), -EINVAL);
        ck_assert_int_eq(np_reset(c, d1, 'x'), -EINVAL);
        ck_assert_int_eq(np_reset(c, d1, NP_RW), -EINVAL);
        ck_assert_int_eq(np_reset(c, d1 + 12345, NP_READ), -EBADF);
        ck_assert_int_eq(np_reset(c, 0, NP_READ), -EBADF);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

void api_unblock_close_reset_tests(TCase *tc)
{
        tcase_add_test(tc, test_api_unblock_wakes_reader_and_writer_and_stops_timers);
        tcase_add_test(tc, test_api_unblock_errors);
        tcase_add_test(tc, test_api_close_invalidates_the_id);
        tcase_add_test(tc, test_api_close_without_unblock_is_ebusy);
        tcase_add_test(tc, test_api_close_with_wait_canceled_parked_is_ebusy);
        tcase_add_test(tc, test_api_reset_discards_latched_readiness);
        tcase_add_test(tc, test_api_reset_returns_the_error_check);
        tcase_add_test(tc, test_api_reset_invalid_mode_and_desc);
}
