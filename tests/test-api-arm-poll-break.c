/*
 * api, case arm-poll-break: np_arm outcomes delivered by np_poll, np_poll
 * never early and keeping excess events queued (also while blocked in
 * another thread), np_break coalesced, waking a blocked np_poll, and safe
 * from a signal handler.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "test-api.h"

/* A thread blocked in np_poll. */
typedef struct Poller {
        np_client *c;
        int64_t delay;
        np_event ev[8];
        int result;
        atomic_int tid;
        atomic_bool done;
        pthread_t thread;
} Poller;

static void *poller_run(void *arg)
{
        Poller *p = arg;

        atomic_store(&p->tid, (int)gettid());
        p->result = np_poll(p->c, p->delay, p->ev, 8);
        atomic_store(&p->done, true);
        return NULL;
}

static void poller_start(Poller *p, np_client *c, int64_t delay)
{
        *p = (Poller){ .c = c, .delay = delay, .result = -1000 };
        atomic_init(&p->tid, 0);
        atomic_init(&p->done, false);
        ck_assert_int_eq(pthread_create(&p->thread, NULL, poller_run, p), 0);
}

/* The syscall number thread tid of this process is blocked in, or -1. */
static long thread_syscall(int tid)
{
        char path[64], buf[256];
        long nr = -1;

        snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        if (fgets(buf, sizeof(buf), f) && sscanf(buf, "%ld", &nr) != 1)
                nr = -1;
        fclose(f);
        return nr;
}

/* Polls (at most 10 s) until the poller thread sleeps in ppoll or on a
 * futex (the condition variable of a non-reading thread). */
static void await_poller_blocked(Poller *p)
{
        for (int i = 0; i < 2000; i++) {
                int tid = atomic_load(&p->tid);
                long nr = tid ? thread_syscall(tid) : -1;
                if (nr == SYS_ppoll || nr == SYS_futex)
                        return;
                ck_assert_msg(!atomic_load(&p->done), "np_poll returned %d early", p->result);
                usleep(5000);
        }
        ck_abort_msg("np_poll thread never blocked");
}

/* ---- np_arm ---- */

START_TEST(test_api_arm_outcome_delivered_by_poll)
{
        TestDaemon d;
        np_client *c = start(&d);
        const uint64_t cookie = UINT64_C(0x0123456789abcdef);
        np_event ev[4];
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], cookie);

        /* Parked, then readiness. */
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_poll(c, 0, ev, 4), 0);
        assert_stats(c, 1, 1, 0);
        put(p[1]);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_uint_eq(ev[0].desc, d1);
        ck_assert_uint_eq(ev[0].user, cookie);
        ck_assert_int_eq(ev[0].mode, NP_READ);
        ck_assert_int_eq(ev[0].result, NP_OK);
        assert_stats(c, 1, 0, 0);
        drain(p[0]);

        /* Latched readiness: an immediate outcome, still through np_poll. */
        put(p[1]);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_uint_eq(ev[0].desc, d1);
        ck_assert_int_eq(ev[0].result, NP_OK);
        drain(p[0]);

        /* An already-expired deadline. */
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_uint_eq(ev[0].desc, d1);
        ck_assert_uint_eq(ev[0].user, cookie);
        ck_assert_int_eq(ev[0].mode, NP_READ);
        ck_assert_int_eq(ev[0].result, NP_ERR_TIMEOUT);

        /* A deadline that expires while armed. */
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, 50 * MS, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_eq(ev[0].result, NP_ERR_TIMEOUT);

        /* Closing, parked and immediate. */
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_int_eq(ev[0].result, NP_ERR_CLOSING);
        ck_assert_int_eq(np_arm(c, d1, NP_WRITE), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_int_eq(ev[0].mode, NP_WRITE);
        ck_assert_int_eq(ev[0].result, NP_ERR_CLOSING);
        ck_assert_int_eq(np_poll(c, 0, ev, 4), 0);
        ck_assert_int_eq(np_close(c, d1), 0);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_arm_errors)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[4];
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 5);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), -EBUSY);
        ck_assert_int_eq(np_arm(c, d1, NP_WRITE), 0); /* the other mode is free */
        ck_assert_int_eq(np_arm(c, d1, NP_WRITE), -EBUSY);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), -EBUSY); /* an armed wait is parked */
        ck_assert_int_eq(np_wait_canceled(c, d1, NP_WRITE), -EBUSY);
        ck_assert_int_eq(np_arm(c, d1, 0), -EINVAL);
        ck_assert_int_eq(np_arm(c, d1, NP_RW), -EINVAL);
        ck_assert_int_eq(np_arm(c, d1, 'x'), -EINVAL);
        ck_assert_int_eq(np_arm(c, d1 + 12345, NP_READ), -EBADF);
        ck_assert_int_eq(np_arm(c, 0, NP_READ), -EBADF);
        assert_stats(c, 1, 2, 0);

        /* The refused arms produced no events; the two accepted ones do. */
        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 2);
        ck_assert_int_ne(ev[0].mode, ev[1].mode);
        for (int i = 0; i < 2; i++) {
                ck_assert_uint_eq(ev[i].desc, d1);
                ck_assert_uint_eq(ev[i].user, 5);
                ck_assert_int_eq(ev[i].result, NP_ERR_CLOSING);
        }
        ck_assert_int_eq(np_poll(c, 0, ev, 4), 0);
        ck_assert_int_eq(np_close(c, d1), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), -EBADF);
        close2(p);
        finish(&d, c);
}
END_TEST

/* ---- np_poll ---- */

START_TEST(test_api_poll_zero_never_blocks)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[4];
        int p[2];

        int64_t t0 = test_now();
        ck_assert_int_eq(np_poll(c, 0, ev, 4), 0);
        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        for (int i = 0; i < 10; i++)
                ck_assert_int_eq(np_poll(c, 0, ev, 4), 0);
        ck_assert_int_lt(test_now() - t0, SEC);
        /* The armed wait is still parked, not lost. */
        assert_stats(c, 1, 1, 0);
        put(p[1]);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_int_eq(ev[0].result, NP_OK);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_poll_delay_is_never_early)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[4];
        int p[2];

        int64_t t0 = test_now();
        ck_assert_int_eq(np_poll(c, 100 * MS, ev, 4), 0);
        ck_assert_int_ge(test_now() - t0, 100 * MS);
        ck_assert_int_lt(test_now() - t0, 2 * SEC);

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        t0 = test_now();
        ck_assert_int_eq(np_poll(c, 100 * MS, ev, 4), 0);
        ck_assert_int_ge(test_now() - t0, 100 * MS);
        ck_assert_int_lt(test_now() - t0, 2 * SEC);

        /* With a completion it returns before the delay. */
        ck_assert_int_eq(np_set_deadline(c, d1, 50 * MS, NP_READ), 0);
        t0 = test_now();
        ck_assert_int_eq(np_poll(c, 10 * SEC, ev, 4), 1);
        ck_assert_int_eq(ev[0].result, NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_lt(test_now() - t0, 5 * SEC);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_poll_excess_events_stay_queued)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[2];
        int p[5][2], seen = 0;
        np_desc ds[5];

        for (int i = 0; i < 5; i++) {
                mkpipe(p[i]);
                ds[i] = open_ok(c, p[i][0], (uint64_t)(100 + i));
                put(p[i][1]);
        }
        ck_assert_int_eq(np_ping(c), 0);
        for (int i = 0; i < 5; i++)
                ck_assert_int_eq(np_arm(c, ds[i], NP_READ), 0);
        const int expect[] = { 2, 2, 1 };
        for (int k = 0; k < 3; k++) {
                int n = np_poll(c, -1, ev, 2);
                ck_assert_int_eq(n, expect[k]);
                for (int i = 0; i < n; i++) {
                        int j = (int)(ev[i].user - 100);
                        ck_assert(j >= 0 && j < 5);
                        ck_assert_uint_eq(ev[i].desc, ds[j]);
                        ck_assert_int_eq(ev[i].result, NP_OK);
                        ck_assert_int_eq(ev[i].mode, NP_READ);
                        ck_assert(!(seen & (1 << j)));
                        seen |= 1 << j;
                }
        }
        ck_assert_int_eq(seen, 0x1f);
        ck_assert_int_eq(np_poll(c, 0, ev, 2), 0);
        for (int i = 0; i < 5; i++) {
                close_desc(c, ds[i]);
                close2(p[i]);
        }
        finish(&d, c);
}
END_TEST

/* A blocked np_poll may read the socket for other threads' calls; their
 * replies are not completions and must not end it.  An arm made by another
 * thread reaches the daemon at once and its completion does end it. */
START_TEST(test_api_poll_blocked_in_thread_while_others_call)
{
        TestDaemon d;
        np_client *c = start(&d);
        Poller pl;
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 42);
        poller_start(&pl, c, -1);
        await_poller_blocked(&pl);
        for (int i = 0; i < 50; i++) {
                ck_assert_int_eq(np_ping(c), 0);
                assert_stats(c, 1, 0, 0);
        }
        ck_assert(!atomic_load(&pl.done));
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        put(p[1]);
        ck_assert_int_eq(pthread_join(pl.thread, NULL), 0);
        ck_assert_int_eq(pl.result, 1);
        ck_assert_uint_eq(pl.ev[0].desc, d1);
        ck_assert_uint_eq(pl.ev[0].user, 42);
        ck_assert_int_eq(pl.ev[0].result, NP_OK);

        /* With a delay: other calls do not end it before the delay. */
        int64_t t0 = test_now();
        poller_start(&pl, c, 300 * MS);
        await_poller_blocked(&pl);
        while (!atomic_load(&pl.done) && test_now() - t0 < 5 * SEC)
                ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(pthread_join(pl.thread, NULL), 0);
        ck_assert_int_eq(pl.result, 0);
        ck_assert_int_ge(test_now() - t0, 300 * MS);

        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_poll_invalid_arguments)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[1];

        ck_assert_int_eq(np_poll(c, 0, ev, 0), -EINVAL);
        ck_assert_int_eq(np_poll(c, 0, ev, -1), -EINVAL);
        ck_assert_int_eq(np_poll(c, -1, NULL, 1), -EINVAL);
        ck_assert_int_eq(np_ping(c), 0);
        finish(&d, c);
}
END_TEST

/* ---- np_break ---- */

START_TEST(test_api_break_is_coalesced)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[1];

        ck_assert_int_eq(np_break(c), 0);
        ck_assert_int_eq(np_break(c), 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_poll(c, -1, ev, 1), 0);
        ck_assert_int_lt(test_now() - t0, SEC);
        t0 = test_now();
        ck_assert_int_eq(np_poll(c, 200 * MS, ev, 1), 0);
        ck_assert_int_ge(test_now() - t0, 200 * MS);
        ck_assert_int_lt(test_now() - t0, 3 * SEC);
        finish(&d, c);
}
END_TEST

/*
 * A thread parked in np_wait holds the reader role; an np_poll(-1) started
 * behind it is woken by np_break, sent while it waits or (before) just
 * before it starts; the np_wait goes on to its own outcome, and a later
 * delayed poll waits its delay.
 */
static void break_behind_parked_wait(np_client *c, bool before)
{
        Poller p;
        Waiter w;
        np_event ev[1];
        int q[2];

        mkpipe(q);
        np_desc d1 = open_ok(c, q[0], 1);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        if (before)
                ck_assert_int_eq(np_break(c), 0);
        int64_t t0 = test_now();
        poller_start(&p, c, -1);
        if (!before) {
                await_poller_blocked(&p);
                ck_assert_int_eq(np_break(c), 0);
        }
        ck_assert_int_eq(pthread_join(p.thread, NULL), 0);
        ck_assert_int_eq(p.result, 0);
        ck_assert_int_lt(test_now() - t0, 5 * SEC);
        ck_assert(!atomic_load(&w.done));
        put(q[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        t0 = test_now();
        ck_assert_int_eq(np_poll(c, 100 * MS, ev, 1), 0);
        ck_assert_int_ge(test_now() - t0, 100 * MS);
        close_desc(c, d1);
        close2(q);
}

START_TEST(test_api_break_wakes_blocked_poll)
{
        TestDaemon d;
        np_client *c = start(&d);
        Poller p;

        poller_start(&p, c, -1);
        await_poller_blocked(&p);
        ck_assert_int_eq(np_break(c), 0);
        ck_assert_int_eq(pthread_join(p.thread, NULL), 0);
        ck_assert_int_eq(p.result, 0);

        /* Also when the poller is not the thread reading the socket: here a
         * parked np_wait holds that role. */
        break_behind_parked_wait(c, false);
        finish(&d, c);
}
END_TEST

/*
 * A thread waiting for its reply on a connection that has had no delayed
 * np_poll blocks in recvmsg and does not watch the break eventfd (the
 * quiet reader, client/reader.c).  The first np_poll must still be woken
 * by np_break, whether the break comes while it waits or came before it,
 * and the parked np_wait must go on to its own outcome.
 */
START_TEST(test_api_break_reaches_poll_behind_a_quiet_reader)
{
        for (int before = 0; before < 2; before++) {
                TestDaemon d;
                np_client *c = start(&d);
                break_behind_parked_wait(c, before);
                finish(&d, c);
        }
}
END_TEST

START_TEST(test_api_break_before_poll_returns_at_once)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[1];

        ck_assert_int_eq(np_break(c), 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_poll(c, 10 * SEC, ev, 1), 0);
        ck_assert_int_lt(test_now() - t0, 5 * SEC);
        ck_assert_int_eq(np_break(c), 0);
        t0 = test_now();
        ck_assert_int_eq(np_poll(c, -1, ev, 1), 0);
        ck_assert_int_lt(test_now() - t0, 5 * SEC);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_break_not_consumed_by_poll_zero)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[1];

        ck_assert_int_eq(np_break(c), 0);
        ck_assert_int_eq(np_poll(c, 0, ev, 1), 0);
        ck_assert_int_eq(np_poll(c, 0, ev, 1), 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_poll(c, -1, ev, 1), 0);
        ck_assert_int_lt(test_now() - t0, 5 * SEC);
        finish(&d, c);
}
END_TEST

static np_client *alarm_client;
static volatile sig_atomic_t alarm_result = 1;

static void on_alarm(int sig)
{
        (void)sig;
        alarm_result = np_break(alarm_client);
}

START_TEST(test_api_break_from_signal_handler)
{
        TestDaemon d;
        np_client *c = start(&d);
        struct sigaction sa = { .sa_handler = on_alarm };
        struct itimerval it = { .it_value = { .tv_sec = 0, .tv_usec = 100000 } };
        np_event ev[1];

        alarm_client = c;
        sigemptyset(&sa.sa_mask);
        ck_assert_int_eq(sigaction(SIGALRM, &sa, NULL), 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 1), 0);
        ck_assert_int_eq(alarm_result, 0);
        ck_assert_int_ge(test_now() - t0, 90 * MS);
        ck_assert_int_lt(test_now() - t0, 5 * SEC);
        /* The break was taken: the next delayed poll waits its delay. */
        t0 = test_now();
        ck_assert_int_eq(np_poll(c, 100 * MS, ev, 1), 0);
        ck_assert_int_ge(test_now() - t0, 100 * MS);
        signal(SIGALRM, SIG_DFL);
        finish(&d, c);
}
END_TEST

void api_arm_poll_break_tests(TCase *tc)
{
        tcase_add_test(tc, test_api_arm_outcome_delivered_by_poll);
        tcase_add_test(tc, test_api_arm_errors);
        tcase_add_test(tc, test_api_poll_zero_never_blocks);
        tcase_add_test(tc, test_api_poll_delay_is_never_early);
        tcase_add_test(tc, test_api_poll_excess_events_stay_queued);
        tcase_add_test(tc, test_api_poll_blocked_in_thread_while_others_call);
        tcase_add_test(tc, test_api_poll_invalid_arguments);
        tcase_add_test(tc, test_api_break_is_coalesced);
        tcase_add_test(tc, test_api_break_wakes_blocked_poll);
        tcase_add_test(tc, test_api_break_before_poll_returns_at_once);
        tcase_add_test(tc, test_api_break_reaches_poll_behind_a_quiet_reader);
        tcase_add_test(tc, test_api_break_not_consumed_by_poll_zero);
        tcase_add_test(tc, test_api_break_from_signal_handler);
}
