/*
 * timers: the 4-ary min-heap of deadline timers.  Pop order is checked
 * against a sorted copy (deadline, then arm order) for random deadlines from
 * a fixed-seed PRNG, and a randomized stress compares every pop against a
 * shadow model while timers_verify() checks the heap after every mutation.
 * One test corrupts a heap on purpose to prove timers_verify() can fail.
 */
#include <stdint.h>
#include <stdlib.h>

#include "helpers.h"
#include "timers.h"

/* xorshift64*: fixed seeds make every run identical. */
static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
        rng_state = seed ? seed : 1;
}

static uint64_t rng_next(void)
{
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * UINT64_C(2685821657736338717);
}

static uint32_t rng_below(uint32_t n)
{
        return (uint32_t)(rng_next() % n);
}

static void assert_verified(const Timers *ts)
{
        ck_assert_msg(timers_verify(ts), "heap property or back-index broken (n=%u)", ts->n);
}

/* Expected pop order: by deadline, then by the order the test armed them. */
typedef struct Expect {
        int64_t when;
        uint32_t armed; /* position in arming order */
        Timer *t;
} Expect;

static int expect_cmp(const void *a, const void *b)
{
        const Expect *x = a, *y = b;

        if (x->when != y->when)
                return x->when < y->when ? -1 : 1;
        return x->armed < y->armed ? -1 : x->armed > y->armed;
}

START_TEST(test_timers_empty_heap_has_nothing_due)
{
        Timers ts;

        timers_init(&ts);
        ck_assert_ptr_null(timers_peek(&ts));
        ck_assert_ptr_null(timers_pop_due(&ts, INT64_MAX));
        ck_assert(timers_verify(&ts));
        timers_done(&ts);
}
END_TEST

START_TEST(test_timers_reserve_grows_and_never_shrinks)
{
        Timers ts;

        timers_init(&ts);
        ck_assert_int_eq(timers_reserve(&ts, 0), 0);
        ck_assert_int_eq(timers_reserve(&ts, 100), 0);
        ck_assert_uint_ge(ts.cap, 100);
        uint32_t cap = ts.cap;
        ck_assert_int_eq(timers_reserve(&ts, 10), 0);
        ck_assert_uint_eq(ts.cap, cap);

        /* Arming exactly the reserved number must not trip the assert. */
        Timer t[100];
        for (int i = 0; i < 100; i++) {
                timer_init(&t[i]);
                timers_arm(&ts, &t[i], 100 - i);
        }
        ck_assert_uint_eq(ts.n, 100);
        assert_verified(&ts);
        ck_assert_ptr_eq(timers_peek(&ts), &t[99]);
        timers_done(&ts);
}
END_TEST

START_TEST(test_timers_arm_marks_armed_and_disarm_unmarks)
{
        Timers ts;
        Timer t;

        timers_init(&ts);
        ck_assert_int_eq(timers_reserve(&ts, 1), 0);
        timer_init(&t);
        ck_assert(!timer_armed(&t));
        timers_arm(&ts, &t, 42);
        ck_assert(timer_armed(&t));
        ck_assert_int_eq(timers_when(&ts, &t), 42);
        ck_assert_int_eq(timers_next(&ts), 42);
        ck_assert_ptr_eq(timers_peek(&ts), &t);
        timers_disarm(&ts, &t);
        ck_assert(!timer_armed(&t));
        ck_assert_uint_eq(t.idx, TIMER_IDX_NONE);
        ck_assert_uint_eq(ts.n, 0);
        ck_assert_ptr_null(timers_peek(&ts));
        timers_done(&ts);
}
END_TEST

START_TEST(test_timers_pop_order_matches_sorted_random_deadlines)
{
        enum { N = 2000 };
        Timers ts;
        Timer *t = calloc(N, sizeof(*t));
        Expect *e = calloc(N, sizeof(*e));

        ck_assert_ptr_nonnull(t);
        ck_assert_ptr_nonnull(e);
        rng_seed(0x5eed1234);
        timers_init(&ts);
        ck_assert_int_eq(timers_reserve(&ts, N), 0);
        for (uint32_t i = 0; i < N; i++) {
                /* A narrow range forces many equal deadlines; a few extremes. */
                int64_t when = (int64_t)rng_below(500) - 100;
                if (i == 7)
                        when = INT64_MAX;
                if (i == 11)
                        when = INT64_MIN;
                timer_init(&t[i]);
                timers_arm(&ts, &t[i], when);
                e[i] = (Expect){ .when = when, .armed = i, .t = &t[i] };
                assert_verified(&ts);
        }
        qsort(e, N, sizeof(*e), expect_cmp);
        for (uint32_t i = 0; i < N; i++) {
                Timer *p = timers_pop_due(&ts, INT64_MAX);
                ck_assert_msg(p == e[i].t, "pop %u: got timer %td, expected %td (when %lld)", i,
                              p ? p - t : -1, e[i].t - t, (long long)e[i].when);
                ck_assert(!timer_armed(p));
                assert_verified(&ts);
        }
        ck_assert_ptr_null(timers_pop_due(&ts, INT64_MAX));
        timers_done(&ts);
        free(t);
        free(e);
}
END_TEST

START_TEST(test_timers_equal_deadlines_fire_fifo)
{
        enum { N = 200 };
        Timers ts;
        Timer t[N], other[3];

        timers_init(&ts);
        ck_assert_int_eq(timers_reserve(&ts, N + 3), 0);
        for (int i = 0; i < N; i++) {
                timer_init(&t[i]);
                timers_arm(&ts, &t[i], 1000);
                if (i == N / 3) {
                        /* Interleave unrelated deadlines on both sides. */
                        timer_init(&other[0]);
                        timers_arm(&ts, &other[0], 999);
                        timer_init(&other[1]);
                        timers_arm(&ts, &other[1], 1001);
                }
        }
        timer_init(&other[2]);
        timers_arm(&ts, &other[2], 5);
        assert_verified(&ts);

        ck_assert_ptr_eq(timers_pop_due(&ts, 2000), &other[2]);
        ck_assert_ptr_eq(timers_pop_due(&ts, 2000), &other[0]);
        for (int i = 0; i < N; i++)
                ck_assert_ptr_eq(timers_pop_due(&ts, 2000), &t[i]);
        ck_assert_ptr_eq(timers_pop_due(&ts, 2000), &other[1]);
        ck_assert_ptr_null(timers_pop_due(&ts, 2000));
        timers_done(&ts);
}
END_TEST

/* Arms t[i] at deadline 10 * (i + 1) for i < n. */
static void arm_ladder(Timers *ts, Timer *t, int n)
{
        ck_assert_int_eq(timers_reserve(ts, (uint32_t)n), 0);
        for (int i = 0; i < n; i++) {
                timer_init(&t[i]);
                timers_arm(ts, &t[i], 10 * (i + 1));
        }
        assert_verified(ts);
}

/* Pops everything and checks it comes out as order[0..n). */
static void assert_pops(Timers *ts, Timer *t, const int *order, int n)
{
        for (int i = 0; i < n; i++) {
                Timer *p = timers_pop_due(ts, INT64_MAX);
                ck_assert_msg(p == &t[order[i]], "pop %d: got t[%td], expected t[%d]", i,
                              p ? p - t : -1, order[i]);
                assert_verified(ts);
        }
        ck_assert_ptr_null(timers_pop_due(ts, INT64_MAX));
}

START_TEST(test_timers_rearm_moves_timer_earlier)
{
        Timers ts;
        Timer t[20];

        timers_init(&ts);
        arm_ladder(&ts, t, 20);
        timers_arm(&ts, &t[17], 15); /* between t[0] (10) and t[1] (20) */
        assert_verified(&ts);
        ck_assert_uint_eq(ts.n, 20);
        timers_arm(&ts, &t[19], 1); /* to the front */
        assert_verified(&ts);
        ck_assert_ptr_eq(timers_peek(&ts), &t[19]);
        int order[20] = { 19, 0, 17, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18 };
        assert_pops(&ts, t, order, 20);
        timers_done(&ts);
}
END_TEST

START_TEST(test_timers_rearm_moves_timer_later)
{
        Timers ts;
        Timer t[20];

        timers_init(&ts);
        arm_ladder(&ts, t, 20);
        timers_arm(&ts, &t[0], 1000); /* the root goes to the back */
        assert_verified(&ts);
        timers_arm(&ts, &t[3], 105); /* between t[9] (100) and t[10] (110) */
        assert_verified(&ts);
        ck_assert_uint_eq(ts.n, 20);
        ck_assert_ptr_eq(timers_peek(&ts), &t[1]);
        int order[20] = { 1, 2, 4, 5, 6, 7, 8, 9, 3, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 0 };
        assert_pops(&ts, t, order, 20);
        timers_done(&ts);
}
END_TEST

START_TEST(test_timers_rearm_same_deadline_goes_behind_equals)
{
        Timers ts;
        Timer t[3];

        timers_init(&ts);
        ck_assert_int_eq(timers_reserve(&ts, 3), 0);
        for (int i = 0; i < 3; i++) {
                timer_init(&t[i]);
                timers_arm(&ts, &t[i], 50);
        }
        timers_arm(&ts, &t[0], 50); /* re-armed: now the newest at 50 */
        assert_verified(&ts);
        int order[3] = { 1, 2, 0 };
        assert_pops(&ts, t, order, 3);
        timers_done(&ts);
}
END_TEST

START_TEST(test_timers_disarm_first_middle_last_and_unarmed)
{
        Timers ts;
        Timer t[30], loose;

        timers_init(&ts);
        arm_ladder(&ts, t, 30);

        /* The last heap slot. */
        Timer *last = ts.heap[ts.n - 1].t;
        timers_disarm(&ts, last);
        ck_assert(!timer_armed(last));
        ck_assert_uint_eq(ts.n, 29);
        assert_verified(&ts);

        /* The root. */
        timers_disarm(&ts, &t[0]);
        ck_assert(!timer_armed(&t[0]));
        ck_assert_uint_eq(ts.n, 28);
        assert_verified(&ts);
        ck_assert_ptr_eq(timers_peek(&ts), &t[1]);

        /* Middle ones. */
        timers_disarm(&ts, &t[15]);
        timers_disarm(&ts, &t[7]);
        ck_assert_uint_eq(ts.n, 26);
        assert_verified(&ts);

        /* Unarmed: a no-op, also for one disarmed already. */
        timer_init(&loose);
        timers_disarm(&ts, &loose);
        timers_disarm(&ts, &t[15]);
        ck_assert_uint_eq(ts.n, 26);
        assert_verified(&ts);

        int64_t prev = INT64_MIN;
        int popped = 0;
        for (;;) {
                int64_t when = timers_next(&ts);
                Timer *p = timers_pop_due(&ts, INT64_MAX);
                if (!p)
                        break;
                popped++;
                ck_assert(p != last && p != &t[0] && p != &t[15] && p != &t[7]);
                ck_assert_int_ge(when, prev);
                prev = when;
        }
        ck_assert_int_eq(popped, 26);
        timers_done(&ts);
}
END_TEST

/*
 * The heap's last node replaces a disarmed one in another subtree where it
 * is smaller than its new parent, so disarm has to move it up:
 *   [0]=0; [1]=100 [2]=1 [3]=2 [4]=3; children of [1]: 101..104;
 *   children of [2]: 5..8 (the last node is 8).  Disarming 101 puts 8 under 100.
 */
START_TEST(test_timers_disarm_moves_last_node_up)
{
        static const int64_t when[13] = { 0, 100, 1, 2, 3, 101, 102, 103, 104, 5, 6, 7, 8 };
        static const int order[12] = { 0, 2, 3, 4, 9, 10, 11, 12, 1, 6, 7, 8 };
        Timers ts;
        Timer t[13];

        timers_init(&ts);
        ck_assert_int_eq(timers_reserve(&ts, 13), 0);
        for (int i = 0; i < 13; i++) {
                timer_init(&t[i]);
                timers_arm(&ts, &t[i], when[i]);
                ck_assert_uint_eq(t[i].idx, (unsigned)i); /* the layout above */
        }
        timers_disarm(&ts, &t[5]);
        assert_verified(&ts);
        ck_assert_uint_eq(t[12].idx, 1);
        ck_assert_uint_eq(t[1].idx, 5);
        assert_pops(&ts, t, order, 12);
        timers_done(&ts);
}
END_TEST

START_TEST(test_timers_pop_due_never_returns_a_future_timer)
{
        enum { N = 1000 };
        Timers ts;
        Timer *t = calloc(N, sizeof(*t));

        ck_assert_ptr_nonnull(t);
        rng_seed(77);
        timers_init(&ts);
        ck_assert_int_eq(timers_reserve(&ts, N), 0);
        for (int i = 0; i < N; i++) {
                timer_init(&t[i]);
                timers_arm(&ts, &t[i], (int64_t)rng_below(100000));
        }
        int popped = 0;
        for (int64_t now = -1; now < 100000; now += 1 + rng_below(997)) {
                for (;;) {
                        int64_t when = timers_next(&ts);
                        if (!timers_pop_due(&ts, now))
                                break;
                        ck_assert_int_le(when, now);
                        popped++;
                        assert_verified(&ts);
                }
                /* What is left is not due: INT64_MAX when nothing is. */
                ck_assert(timers_peek(&ts) == NULL || timers_next(&ts) > now);
        }
        while (timers_pop_due(&ts, INT64_MAX))
                popped++;
        ck_assert_int_eq(popped, N);
        timers_done(&ts);
        free(t);
}
END_TEST

START_TEST(test_timers_pop_due_at_exact_deadline)
{
        Timers ts;
        Timer t;

        timers_init(&ts);
        ck_assert_int_eq(timers_reserve(&ts, 1), 0);
        timer_init(&t);
        timers_arm(&ts, &t, 1000);
        ck_assert_ptr_null(timers_pop_due(&ts, 999));
        ck_assert(timer_armed(&t));
        ck_assert_ptr_eq(timers_pop_due(&ts, 1000), &t);
        ck_assert(!timer_armed(&t));
        timers_done(&ts);
}
END_TEST

/*
 * Random arm / re-arm / disarm / pop_due on a pool of timers, checked after
 * every operation against a shadow model that knows each timer's deadline
 * and arming order, so every pop must return exactly the model's minimum.
 */
START_TEST(test_timers_randomized_stress_keeps_heap_valid)
{
        enum { POOL = 300, OPS = 10000 };
        Timers ts;
        Timer t[POOL];
        bool armed[POOL] = { 0 };
        int64_t when[POOL];
        uint64_t seq[POOL], next_seq = 0;
        uint32_t n_armed = 0;
        int64_t now = 0;

        rng_seed(0xC0FFEE);
        timers_init(&ts);
        ck_assert_int_eq(timers_reserve(&ts, POOL), 0);
        for (int i = 0; i < POOL; i++)
                timer_init(&t[i]);

        for (int op = 0; op < OPS; op++) {
                uint32_t i = rng_below(POOL), what = rng_below(10);

                if (what < 5) {
                        /* arm or re-arm, sometimes at a deadline already due;
                         * far deadlines keep the heap from being sorted by
                         * arming time, so disarm must sift up as well */
                        int64_t w = rng_below(2) ? now + (int64_t)rng_below(2000) - 200
                                                 : now + (int64_t)rng_below(50000);
                        timers_arm(&ts, &t[i], w);
                        n_armed += !armed[i];
                        armed[i] = true;
                        when[i] = w;
                        seq[i] = next_seq++;
                } else if (what < 7) {
                        timers_disarm(&ts, &t[i]);
                        n_armed -= armed[i];
                        armed[i] = false;
                } else {
                        now += rng_below(150);
                        int best = -1;
                        for (int k = 0; k < POOL; k++)
                                if (armed[k] && when[k] <= now &&
                                    (best < 0 || when[k] < when[best] ||
                                     (when[k] == when[best] && seq[k] < seq[best])))
                                        best = k;
                        Timer *p = timers_pop_due(&ts, now);
                        if (best < 0) {
                                ck_assert_ptr_null(p);
                        } else {
                                ck_assert_msg(p == &t[best],
                                              "op %d: popped t[%td], model says t[%d]", op,
                                              p ? p - t : -1, best);
                                armed[best] = false;
                                n_armed--;
                        }
                }
                ck_assert_uint_eq(ts.n, n_armed);
                assert_verified(&ts);
                for (int k = 0; k < POOL; k++)
                        ck_assert(timer_armed(&t[k]) == armed[k]);
        }
        timers_done(&ts);
}
END_TEST

START_TEST(test_timers_done_leaves_nodes_unarmed)
{
        Timers ts;
        Timer t[40];

        timers_init(&ts);
        arm_ladder(&ts, t, 40);
        timers_disarm(&ts, &t[5]);
        timers_done(&ts);
        for (int i = 0; i < 40; i++)
                ck_assert_msg(!timer_armed(&t[i]), "t[%d] still armed after done", i);
        ck_assert_uint_eq(ts.n, 0);
        ck_assert_uint_eq(ts.cap, 0);
        ck_assert_ptr_null(ts.heap);

        /* The nodes and the heap are usable again. */
        timers_init(&ts);
        ck_assert_int_eq(timers_reserve(&ts, 1), 0);
        timers_arm(&ts, &t[3], 7);
        ck_assert_ptr_eq(timers_pop_due(&ts, 7), &t[3]);
        timers_done(&ts);
}
END_TEST

/* The stress test relies on timers_verify(); prove it sees corruption. */
START_TEST(test_timers_verify_detects_corruption)
{
        Timers ts;
        Timer t[10];

        timers_init(&ts);
        arm_ladder(&ts, t, 10);
        ck_assert(timers_verify(&ts));

        /* A wrong back-index. */
        uint32_t saved = ts.heap[3].t->idx;
        ts.heap[3].t->idx = 4;
        ck_assert(!timers_verify(&ts));
        ts.heap[3].t->idx = saved;
        ck_assert(timers_verify(&ts));

        /* A child earlier than its parent (indices kept consistent). */
        int64_t w = ts.heap[5].when;
        ts.heap[5].when = ts.heap[1].when - 1;
        ck_assert(!timers_verify(&ts));
        ts.heap[5].when = w;
        ck_assert(timers_verify(&ts));
        timers_done(&ts);
}
END_TEST

Suite *suite_timers(void)
{
        Suite *s = suite_create("timers");
        TCase *tc = test_tcase_default_timeout(s, "heap");

        tcase_add_test(tc, test_timers_empty_heap_has_nothing_due);
        tcase_add_test(tc, test_timers_reserve_grows_and_never_shrinks);
        tcase_add_test(tc, test_timers_arm_marks_armed_and_disarm_unmarks);
        tcase_add_test(tc, test_timers_pop_order_matches_sorted_random_deadlines);
        tcase_add_test(tc, test_timers_equal_deadlines_fire_fifo);
        tcase_add_test(tc, test_timers_rearm_moves_timer_earlier);
        tcase_add_test(tc, test_timers_rearm_moves_timer_later);
        tcase_add_test(tc, test_timers_rearm_same_deadline_goes_behind_equals);
        tcase_add_test(tc, test_timers_disarm_first_middle_last_and_unarmed);
        tcase_add_test(tc, test_timers_disarm_moves_last_node_up);
        tcase_add_test(tc, test_timers_pop_due_never_returns_a_future_timer);
        tcase_add_test(tc, test_timers_pop_due_at_exact_deadline);
        tcase_add_test(tc, test_timers_done_leaves_nodes_unarmed);
        tcase_add_test(tc, test_timers_verify_detects_corruption);

        TCase *stress = test_tcase(s, "stress", 60);
        tcase_add_test(stress, test_timers_randomized_stress_keeps_heap_valid);
        return s;
}
