/*
 * poller: the idle spin's governor and its bounds.  The spin must pay only
 * where it catches events, back off where it does not, and stop by itself
 * at rest (the daemon at rest spends no CPU), so these tests pin down the
 * governor's rules and that a poller at rest blocks instead of polling.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "poller.h"

#define US 1000LL

static int64_t thread_cpu_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

START_TEST(test_poller_spin_off_when_max_is_zero)
{
        PollerSpin s = { .budget_ns = 40 * US, .misses = 3, .skip = 2 };

        ck_assert_int_eq(poller_spin_take(&s, 0), 0);
        poller_spin_done(&s, 0, false, false, 5 * US);
        ck_assert_int_eq(s.budget_ns, 0);
        ck_assert_uint_eq(s.skip, 0);
}
END_TEST

/* A sleep shorter than the maximum means a longer spin would have caught
 * the event: grow, from a quarter of the maximum, doubling, capped. */
START_TEST(test_poller_spin_grows_after_short_sleeps)
{
        PollerSpin s = { 0 };

        ck_assert_int_eq(poller_spin_take(&s, 100 * US), 0);
        poller_spin_done(&s, 100 * US, false, false, 60 * US);
        ck_assert_int_eq(s.budget_ns, 25 * US);
        poller_spin_done(&s, 100 * US, false, false, 60 * US);
        ck_assert_int_eq(s.budget_ns, 50 * US);
        poller_spin_done(&s, 100 * US, false, false, 60 * US);
        poller_spin_done(&s, 100 * US, false, false, 60 * US);
        ck_assert_int_eq(s.budget_ns, 100 * US);
        ck_assert_int_eq(poller_spin_take(&s, 100 * US), 100 * US);
        /* A reload lowered the maximum. */
        ck_assert_int_eq(poller_spin_take(&s, 30 * US), 30 * US);
}
END_TEST

START_TEST(test_poller_spin_keeps_budget_that_caught)
{
        PollerSpin s = { .budget_ns = 30 * US, .misses = 2 };

        poller_spin_done(&s, 100 * US, true, true, 10 * US);
        ck_assert_int_eq(s.budget_ns, 30 * US);
        ck_assert_uint_eq(s.misses, 0);
        ck_assert_uint_eq(s.hits, 1);
        ck_assert_uint_eq(s.spun, 1);
}
END_TEST

/* Sleeps longer than the maximum halve the budget, to 0 within a few
 * turns: at rest nothing spins. */
START_TEST(test_poller_spin_falls_to_zero_at_rest)
{
        PollerSpin s = { .budget_ns = 1000 * US };
        int turns = 0;

        while (s.budget_ns > 0) {
                int64_t b = poller_spin_take(&s, 1000 * US);
                poller_spin_done(&s, 1000 * US, b > 0, false, 5000000 * US);
                ck_assert_int_le(++turns, 200);
        }
        /* And stays there while sleeps stay long. */
        poller_spin_done(&s, 1000 * US, false, false, 2000 * US);
        ck_assert_int_eq(poller_spin_take(&s, 1000 * US), 0);
}
END_TEST

/* Events that always come just after the spin gave up (a sleep shorter
 * than the maximum, so the budget stays up): spins that catch nothing back
 * off exponentially, to one turn in 64; one that catches ends it. */
START_TEST(test_poller_spin_backs_off_after_misses)
{
        PollerSpin s = { .budget_ns = 50 * US };
        int spins = 0;

        for (int turn = 0; turn < 640; turn++) {
                int64_t b = poller_spin_take(&s, 50 * US);
                spins += b > 0;
                poller_spin_done(&s, 50 * US, b > 0, false, (b > 0 ? b : 0) + 5 * US);
        }
        /* 1 + 2 + 4 + ... turns apart, then every 64th. */
        ck_assert_int_le(spins, 6 + 640 / 64 + 1);
        ck_assert_uint_eq(s.misses, 6);
        while (poller_spin_take(&s, 50 * US) == 0)
                poller_spin_done(&s, 50 * US, false, false, 5 * US);
        poller_spin_done(&s, 50 * US, true, true, 10 * US);
        ck_assert_uint_eq(s.misses, 0);
        ck_assert_uint_eq(s.skip, 0);
        ck_assert_int_gt(poller_spin_take(&s, 50 * US), 0);
}
END_TEST

/* An event already pending is taken by the spin's first poll: a hit. */
START_TEST(test_poller_wait_spin_takes_pending_event)
{
        struct epoll_event ev[4];
        int p[2];
        Poller pl;

        ck_assert_int_eq(poller_init(&pl), 0);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        ck_assert_int_eq(poller_add(&pl, p[0], EPOLLIN, 42), 0);
        pl.spin_max_ns = 100 * US;
        pl.spin.budget_ns = 100 * US;
        ck_assert_int_eq(write(p[1], "x", 1), 1);
        ck_assert_int_eq(poller_wait(&pl, ev, 4, 1000), 1);
        ck_assert_uint_eq(ev[0].data.u64, 42);
        ck_assert_uint_eq(pl.spin.hits, 1);
        ck_assert_int_eq(pl.spin.budget_ns, 100 * US);
        close(p[0]);
        close(p[1]);
        poller_done(&pl);
}
END_TEST

/* At rest (every wait times out after far longer than the maximum) the
 * budget reaches 0, then waits block: 20 of them cost far less CPU than
 * the 20 ms a spin of the maximum before each would. */
START_TEST(test_poller_wait_stops_spinning_at_rest)
{
        struct epoll_event ev[4];
        Poller pl;

        ck_assert_int_eq(poller_init(&pl), 0);
        pl.spin_max_ns = 1000 * US;
        pl.spin.budget_ns = 1000 * US;
        for (int i = 0; i < 12 && pl.spin.budget_ns > 0; i++)
                ck_assert_int_eq(poller_wait(&pl, ev, 4, 5), 0);
        ck_assert_int_eq(pl.spin.budget_ns, 0);
        ck_assert_uint_ge(pl.spin.spun, 1);
        ck_assert_uint_eq(pl.spin.hits, 0);
        int64_t c0 = thread_cpu_ns();
        for (int i = 0; i < 20; i++)
                ck_assert_int_eq(poller_wait(&pl, ev, 4, 10), 0);
        ck_assert_int_eq(pl.spin.budget_ns, 0);
        /* Only the sleeps' own cost (a timer wake-up is ~50 us of CPU on a
         * VM), no spin. */
        ck_assert_int_lt(thread_cpu_ns() - c0, 10000 * US);
        poller_done(&pl);
}
END_TEST

/* idle_spin = 0: never a poll before the sleep, whatever the state was. */
START_TEST(test_poller_wait_without_spin_never_polls)
{
        struct epoll_event ev[4];
        Poller pl;

        ck_assert_int_eq(poller_init(&pl), 0);
        pl.spin_max_ns = 0;
        pl.spin.budget_ns = 500 * US;
        ck_assert_int_eq(poller_wait(&pl, ev, 4, 1), 0);
        ck_assert_int_eq(pl.spin.budget_ns, 0);
        ck_assert_uint_eq(pl.spin.spun, 0);
        poller_done(&pl);
}
END_TEST

Suite *suite_poller(void)
{
        Suite *s = suite_create("poller");
        TCase *tc = test_tcase_default_timeout(s, "spin");

        tcase_add_test(tc, test_poller_spin_off_when_max_is_zero);
        tcase_add_test(tc, test_poller_spin_grows_after_short_sleeps);
        tcase_add_test(tc, test_poller_spin_keeps_budget_that_caught);
        tcase_add_test(tc, test_poller_spin_falls_to_zero_at_rest);
        tcase_add_test(tc, test_poller_spin_backs_off_after_misses);
        tcase_add_test(tc, test_poller_wait_spin_takes_pending_event);
        tcase_add_test(tc, test_poller_wait_stops_spinning_at_rest);
        tcase_add_test(tc, test_poller_wait_without_spin_never_polls);
        return s;
}
