/*
 * 4-ary min-heap of {deadline, Timer pointer} entries.  Each node stores its
 * own heap index so disarm and move are O(log n) without a search.  Ordering is by deadline,
 * then by a monotonically increasing arm sequence, which makes equal
 * deadlines fire FIFO.  A 4-ary heap halves the depth of a binary heap and
 * keeps the children of a node on one cache line of pointers.
 *
 * Storage is reserved up front (timers_reserve) so arming never allocates:
 * the state machine that arms timers has no failure path for it.
 */
#include "timers.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ARITY 4

/*
 * Deadline first; among equal deadlines the earlier armed.  The arm
 * sequence is 32 bits (it keeps Timer at 16 bytes, which matters per
 * descriptor) and compared as a wrapping difference, exact while timers of
 * one deadline were armed fewer than 2^31 arms apart; beyond that only the
 * order among those equal deadlines could change, never the deadlines.
 */
static bool entry_less(const TimerEntry *a, const TimerEntry *b)
{
        if (a->when != b->when)
                return a->when < b->when;
        return (int32_t)(a->t->order - b->t->order) < 0;
}

static void heap_set(Timers *ts, uint32_t i, TimerEntry e)
{
        ts->heap[i] = e;
        e.t->idx = i;
}

static void sift_up(Timers *ts, uint32_t i)
{
        TimerEntry e = ts->heap[i];

        while (i > 0) {
                uint32_t parent = (i - 1) / ARITY;
                if (!entry_less(&e, &ts->heap[parent]))
                        break;
                heap_set(ts, i, ts->heap[parent]);
                i = parent;
        }
        heap_set(ts, i, e);
}

static void sift_down(Timers *ts, uint32_t i)
{
        TimerEntry e = ts->heap[i];

        for (;;) {
                uint32_t first = i * ARITY + 1, best = i;
                const TimerEntry *be = &e;

                for (uint32_t c = first; c < first + ARITY && c < ts->n; c++)
                        if (entry_less(&ts->heap[c], be)) {
                                best = c;
                                be = &ts->heap[c];
                        }
                if (best == i)
                        break;
                heap_set(ts, i, *be);
                i = best;
        }
        heap_set(ts, i, e);
}

void timers_init(Timers *ts)
{
        *ts = (Timers){ 0 };
}

void timers_done(Timers *ts)
{
        for (uint32_t i = 0; i < ts->n; i++)
                ts->heap[i].t->idx = TIMER_IDX_NONE;
        free(ts->heap);
        *ts = (Timers){ 0 };
}

int timers_reserve(Timers *ts, uint32_t n)
{
        if (n <= ts->cap)
                return 0;
        uint32_t cap = ts->cap ? ts->cap : 64;
        while (cap < n)
                cap *= 2;
        /* Not realloc: that would copy (and so make resident) the whole old
         * capacity, which is reserved for every descriptor but mostly never
         * used.  Only the armed timers are copied. */
        TimerEntry *heap = malloc((size_t)cap * sizeof(*heap));
        if (!heap)
                return -ENOMEM;
        if (ts->n)
                memcpy(heap, ts->heap, (size_t)ts->n * sizeof(*heap));
        free(ts->heap);
        ts->heap = heap;
        ts->cap = cap;
        return 0;
}

void timers_arm(Timers *ts, Timer *t, int64_t when)
{
        t->order = ts->next_order++;
        if (timer_armed(t)) {
                uint32_t i = t->idx;
                ts->heap[i].when = when;
                sift_up(ts, i);
                if (t->idx == i)
                        sift_down(ts, i);
                return;
        }
        /* Callers reserve room for every timer they can arm. */
        assert(ts->n < ts->cap);
        uint32_t i = ts->n++;
        heap_set(ts, i, (TimerEntry){ .when = when, .t = t });
        sift_up(ts, i);
}

void timers_disarm(Timers *ts, Timer *t)
{
        if (!timer_armed(t))
                return;
        uint32_t i = t->idx;
        TimerEntry last = ts->heap[--ts->n];

        t->idx = TIMER_IDX_NONE;
        if (last.t == t)
                return;
        heap_set(ts, i, last);
        sift_up(ts, i);
        if (last.t->idx == i)
                sift_down(ts, i);
}

Timer *timers_pop_due(Timers *ts, int64_t now)
{
        if (!ts->n || ts->heap[0].when > now)
                return NULL;
        Timer *t = ts->heap[0].t;
        timers_disarm(ts, t);
        return t;
}

bool timers_verify(const Timers *ts)
{
        for (uint32_t i = 0; i < ts->n; i++) {
                if (ts->heap[i].t->idx != i)
                        return false;
                if (i > 0 && entry_less(&ts->heap[i], &ts->heap[(i - 1) / ARITY]))
                        return false;
        }
        return true;
}
