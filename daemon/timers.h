/*
 * Deadline timers: a 4-ary min-heap ordered by (when, order), so timers with
 * equal deadlines fire in the order they were armed.  Insert, delete and
 * move are O(log n); peek is O(1).  A Timer node (embedded in its owner) is
 * 8 bytes: the deadline lives in the heap entry, beside the pointer, so
 * comparisons stay within the heap array and an unarmed node costs little.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIMER_IDX_NONE UINT32_MAX

typedef struct Timer {
        uint32_t order; /* arm sequence, FIFO among equal deadlines (compared
                           modulo 2^32, see timers.c) */
        uint32_t idx;   /* position in the heap, TIMER_IDX_NONE when not armed */
} Timer;

typedef struct TimerEntry {
        int64_t when; /* CLOCK_MONOTONIC deadline, ns */
        Timer *t;
} TimerEntry;

typedef struct Timers {
        TimerEntry *heap;
        uint32_t n;
        uint32_t cap;
        uint32_t next_order;
} Timers;

static inline void timer_init(Timer *t)
{
        *t = (Timer){ .idx = TIMER_IDX_NONE };
}

static inline bool timer_armed(const Timer *t)
{
        return t->idx != TIMER_IDX_NONE;
}

void timers_init(Timers *ts);
void timers_done(Timers *ts);

/* Makes room for n armed timers in all, so arming below that never fails.
 * Returns 0 or -ENOMEM. */
int timers_reserve(Timers *ts, uint32_t n);

/* Arms t at when, or moves it there if armed (it then goes behind timers
 * already armed at the same deadline).  Needs room reserved beforehand. */
void timers_arm(Timers *ts, Timer *t, int64_t when);

/* Disarms t; a no-op for a timer that is not armed. */
void timers_disarm(Timers *ts, Timer *t);

/* The earliest timer, or NULL. */
static inline Timer *timers_peek(const Timers *ts)
{
        return ts->n ? ts->heap[0].t : NULL;
}

/* The earliest deadline, or INT64_MAX when nothing is armed. */
static inline int64_t timers_next(const Timers *ts)
{
        return ts->n ? ts->heap[0].when : INT64_MAX;
}

/* The deadline an armed timer is armed for. */
static inline int64_t timers_when(const Timers *ts, const Timer *t)
{
        return ts->heap[t->idx].when;
}

/* Disarms and returns the earliest timer due at now (when <= now), or NULL. */
Timer *timers_pop_due(Timers *ts, int64_t now);

/* Checks the heap property and back-indexes; for tests and fuzzers. */
bool timers_verify(const Timers *ts);
