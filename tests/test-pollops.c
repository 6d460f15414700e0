/*
 * pollops: the netpoll.go state machine, driven directly.  Descriptors are
 * slots of a real PollCache, timers live in a real Timers heap, the clock is
 * ops.now (set by the tests), and PollOps.wake records every ended wait and
 * makes the owner->waiters decrement that pollops.h assigns to the callee.
 * Every test checks the owner's counters (descriptors, waiters, timers).
 *
 * Expected values follow runtime/netpoll.go as of Go 1.17, the version
 * pollops.c ports (src/runtime/netpoll.go at the go1.17 tag), and the
 * errno mapping pollops.h documents for what the runtime throws on.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "helpers.h"
#include "pollcache.h"
#include "poller.h"
#include "pollops.h"

#define T0 INT64_C(1000000000)

typedef struct Wake {
        PollDesc *pd;
        int mode;
        PollSem waiter;
        int result;
} Wake;

static PollCache cache;
static Timers timers;
static PollOps ops;
static PollOwner owner, owner2;
static Wake wakes[32];
static unsigned nwakes;

static PollSem *sem_of(PollDesc *pd, int mode)
{
        return mode == POLL_MODE_R ? &pd->rg : &pd->wg;
}

/* The wake callback: checks what pollops.h promises at this point, records
 * the wake and delivers it (the owner->waiters decrement is ours). */
static void record_wake(PollOps *o, PollDesc *pd, int mode, PollSem waiter, int result)
{
        ck_assert_ptr_eq(o, &ops);
        ck_assert_msg(mode == POLL_MODE_R || mode == POLL_MODE_W, "wake with mode %d", mode);
        ck_assert_int_eq(waiter.state, POLL_SEM_PARKED);
        ck_assert_msg(sem_of(pd, mode)->state == POLL_SEM_NIL,
                      "semaphore %c not NIL during wake", mode);
        ck_assert_ptr_nonnull(pd->owner);
        ck_assert_uint_gt(pd->owner->waiters, 0);
        ck_assert_uint_lt(nwakes, sizeof(wakes) / sizeof(wakes[0]));
        pd->owner->waiters--;
        wakes[nwakes++] = (Wake){ .pd = pd, .mode = mode, .waiter = waiter, .result = result };
}

static void env_setup(void)
{
        pollcache_init(&cache);
        timers_init(&timers);
        ops = (PollOps){ .timers = &timers, .now = T0, .wake = record_wake };
        owner = owner2 = (PollOwner){ 0 };
        nwakes = 0;
}

static void env_teardown(void)
{
        timers_done(&timers);
        pollcache_done(&cache);
}

static PollSlot *open_slot(PollOwner *o)
{
        PollSlot *s;

        ck_assert_int_eq(pollcache_alloc(&cache, &s), 0);
        ck_assert_int_eq(timers_reserve(&timers, 2 * pollcache_allocated(&cache)), 0);
        pollops_open(&ops, &s->pd, o, (int)(100 + s->index), 0xabc0 + s->index);
        return s;
}

static PollDesc *open_desc(void)
{
        return &open_slot(&owner)->pd;
}

/* Fires every timer due at ops.now; returns how many were popped. */
static int fire_due(void)
{
        Timer *t;
        int n = 0;

        while ((t = timers_pop_due(&timers, ops.now))) {
                pollops_timer_fire(&ops, t);
                n++;
                ck_assert(timers_verify(&timers));
        }
        return n;
}

static int advance(int64_t dt)
{
        ops.now += dt;
        return fire_due();
}

#define assert_counters(o, d, w, t)                                                               \
        do {                                                                                      \
                ck_assert_uint_eq((o)->descriptors, (d));                                         \
                ck_assert_uint_eq((o)->waiters, (w));                                             \
                ck_assert_uint_eq((o)->timers, (t));                                              \
        } while (0)

#define assert_wake(i, pd_, mode_, kind_, req_, result_)                                          \
        do {                                                                                      \
                ck_assert_uint_gt(nwakes, (i));                                                   \
                ck_assert_ptr_eq(wakes[i].pd, (pd_));                                             \
                ck_assert_int_eq(wakes[i].mode, (mode_));                                         \
                ck_assert_int_eq(wakes[i].waiter.kind, (kind_));                                  \
                ck_assert_uint_eq(wakes[i].waiter.req, (req_));                                   \
                ck_assert_int_eq(wakes[i].result, (result_));                                     \
        } while (0)

static void park(PollDesc *pd, int mode, PollWaitKind kind, uint64_t req)
{
        ck_assert_int_eq(pollops_wait(&ops, pd, mode, kind, req), POLL_PARKED);
        PollSem *sem = sem_of(pd, mode);
        ck_assert_int_eq(sem->state, POLL_SEM_PARKED);
        ck_assert_int_eq(sem->kind, kind);
        ck_assert_uint_eq(sem->req, req);
}

/* ---- open ---------------------------------------------------------------- */

START_TEST(test_pollops_open_initialises_descriptor)
{
        PollSlot *s = open_slot(&owner);
        PollDesc *pd = &s->pd;

        ck_assert_ptr_eq(pd->owner, &owner);
        ck_assert_int_eq(pd->fd, (int)(100 + s->index));
        ck_assert_uint_eq(pd->user, 0xabc0 + s->index);
        ck_assert(!pd->closing);
        ck_assert(!pd->event_err);
        ck_assert_int_eq(pd->rd, 0);
        ck_assert_int_eq(pd->wd, 0);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_NIL);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_NIL);
        ck_assert_int_eq(pd->rt.fn, POLL_TIMER_NONE);
        ck_assert_int_eq(pd->wt.fn, POLL_TIMER_NONE);
        ck_assert(!timer_armed(&pd->rt.node));
        ck_assert(!timer_armed(&pd->wt.node));
        ck_assert_uint_eq(pollops_parked(pd), 0);
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_R), POLL_NO_ERROR);
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_W), POLL_NO_ERROR);
        assert_counters(&owner, 1, 0, 0);
        open_desc();
        assert_counters(&owner, 2, 0, 0);
}
END_TEST

/* ---- netpollcheckerr ------------------------------------------------------ */

START_TEST(test_pollops_checkerr_closing_beats_expired_deadline_and_event_error)
{
        PollDesc *pd = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, -1, POLL_MODE_RW), 0);
        pollops_ready(&ops, pd, POLL_MODE_RW, true);
        ck_assert(pd->event_err);
        ck_assert_int_eq(pollops_unblock(&ops, pd), 0);
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_R), POLL_ERR_CLOSING);
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_W), POLL_ERR_CLOSING);
}
END_TEST

START_TEST(test_pollops_checkerr_expired_deadline_beats_event_error)
{
        PollDesc *pd = open_desc();

        pollops_ready(&ops, pd, POLL_MODE_RW, true);
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_R), POLL_ERR_NOT_POLLABLE);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, -1, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_R), POLL_ERR_TIMEOUT);
}
END_TEST

START_TEST(test_pollops_checkerr_event_error_only_for_read)
{
        PollDesc *pd = open_desc();

        pollops_ready(&ops, pd, POLL_MODE_RW, true);
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_R), POLL_ERR_NOT_POLLABLE);
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_W), POLL_NO_ERROR);
}
END_TEST

START_TEST(test_pollops_checkerr_deadline_is_per_mode)
{
        PollDesc *r = open_desc(), *w = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, r, -1, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_checkerr(r, POLL_MODE_R), POLL_ERR_TIMEOUT);
        ck_assert_int_eq(pollops_checkerr(r, POLL_MODE_W), POLL_NO_ERROR);
        ck_assert_int_eq(pollops_set_deadline(&ops, w, -1, POLL_MODE_W), 0);
        ck_assert_int_eq(pollops_checkerr(w, POLL_MODE_W), POLL_ERR_TIMEOUT);
        ck_assert_int_eq(pollops_checkerr(w, POLL_MODE_R), POLL_NO_ERROR);
        /* A pending (future) deadline is not an error. */
        ck_assert_int_eq(pollops_set_deadline(&ops, w, 100, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_checkerr(w, POLL_MODE_R), POLL_NO_ERROR);
}
END_TEST

/* ---- pollWait -------------------------------------------------------------- */

START_TEST(test_pollops_wait_returns_closing_at_once)
{
        PollDesc *pd = open_desc();

        ck_assert_int_eq(pollops_unblock(&ops, pd), 0);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT, 1), POLL_ERR_CLOSING);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_W, POLL_WAIT, 2), POLL_ERR_CLOSING);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT_ARM, 3), POLL_ERR_CLOSING);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_NIL);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_NIL);
        ck_assert_uint_eq(nwakes, 0);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_wait_returns_timeout_at_once)
{
        PollDesc *pd = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, -1, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT, 1), POLL_ERR_TIMEOUT);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT_ARM, 2), POLL_ERR_TIMEOUT);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_NIL);
        assert_counters(&owner, 1, 0, 0);
        /* The write side has no deadline and parks. */
        park(pd, POLL_MODE_W, POLL_WAIT, 3);
        assert_counters(&owner, 1, 1, 0);
}
END_TEST

/* Errors are checked before the semaphore: a latched READY is not consumed. */
START_TEST(test_pollops_wait_returns_not_pollable_before_consuming_ready)
{
        PollDesc *pd = open_desc();

        pollops_ready(&ops, pd, POLL_MODE_RW, true); /* latches both, sets event_err */
        ck_assert_int_eq(pd->rg.state, POLL_SEM_READY);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_READY);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT, 1), POLL_ERR_NOT_POLLABLE);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_READY);
        /* Write ignores the event error and consumes its readiness. */
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_W, POLL_WAIT, 2), POLL_NO_ERROR);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_NIL);
        ck_assert_uint_eq(nwakes, 0);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_wait_consumes_latched_ready)
{
        PollDesc *pd = open_desc();

        pollops_ready(&ops, pd, POLL_MODE_R, false);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_READY);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT, 1), POLL_NO_ERROR);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_NIL);
        assert_counters(&owner, 1, 0, 0);
        /* Consumed: the next wait parks. */
        park(pd, POLL_MODE_R, POLL_WAIT, 2);
        ck_assert_uint_eq(nwakes, 0);
        assert_counters(&owner, 1, 1, 0);
}
END_TEST

START_TEST(test_pollops_wait_parked_reader_woken_by_readiness_gets_ok)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 10);
        ck_assert_uint_eq(pollops_parked(pd), 1);
        assert_counters(&owner, 1, 1, 0);
        pollops_ready(&ops, pd, POLL_MODE_R, false);
        ck_assert_uint_eq(nwakes, 1);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 10, POLL_NO_ERROR);
        /* The readiness went to the waiter: nothing is latched. */
        ck_assert_int_eq(pd->rg.state, POLL_SEM_NIL);
        ck_assert_uint_eq(pollops_parked(pd), 0);
        assert_counters(&owner, 1, 0, 0);
        park(pd, POLL_MODE_R, POLL_WAIT, 11);
}
END_TEST

START_TEST(test_pollops_wait_parked_writer_woken_by_readiness_gets_ok)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_W, POLL_WAIT, 20);
        pollops_ready(&ops, pd, POLL_MODE_W, false);
        ck_assert_uint_eq(nwakes, 1);
        assert_wake(0, pd, POLL_MODE_W, POLL_WAIT, 20, POLL_NO_ERROR);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_NIL);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_wait_twice_same_mode_is_ebusy)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT, 2), -EBUSY);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT_ARM, 3), -EBUSY);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT_CANCELED, 4), -EBUSY);
        /* The first waiter is untouched. */
        ck_assert_int_eq(pd->rg.state, POLL_SEM_PARKED);
        ck_assert_int_eq(pd->rg.kind, POLL_WAIT);
        ck_assert_uint_eq(pd->rg.req, 1);
        assert_counters(&owner, 1, 1, 0);
        /* The other mode is independent. */
        park(pd, POLL_MODE_W, POLL_WAIT, 5);
        ck_assert_uint_eq(pollops_parked(pd), 2);
        assert_counters(&owner, 1, 2, 0);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_W, POLL_WAIT, 6), -EBUSY);
        ck_assert_uint_eq(pd->wg.req, 5);
        ck_assert_uint_eq(nwakes, 0);

        pollops_ready(&ops, pd, POLL_MODE_RW, false);
        ck_assert_uint_eq(nwakes, 2);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 1, POLL_NO_ERROR);
        assert_wake(1, pd, POLL_MODE_W, POLL_WAIT, 5, POLL_NO_ERROR);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_wait_rejects_bad_mode)
{
        const int bad[] = { 'x', POLL_MODE_RW, 0, 'R', -1 };
        const PollWaitKind kinds[] = { POLL_WAIT, POLL_WAIT_CANCELED, POLL_WAIT_ARM };
        PollDesc *pd = open_desc();

        pollops_ready(&ops, pd, POLL_MODE_RW, false);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                for (size_t k = 0; k < 3; k++)
                        ck_assert_int_eq(pollops_wait(&ops, pd, bad[i], kinds[k], 1), -EINVAL);
        /* Nothing consumed, nothing parked. */
        ck_assert_int_eq(pd->rg.state, POLL_SEM_READY);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_READY);
        assert_counters(&owner, 1, 0, 0);

        PollDesc *fresh = open_desc();
        ck_assert_int_eq(pollops_wait(&ops, fresh, 'x', POLL_WAIT, 1), -EINVAL);
        ck_assert_int_eq(fresh->rg.state, POLL_SEM_NIL);
        ck_assert_int_eq(fresh->wg.state, POLL_SEM_NIL);
        assert_counters(&owner, 2, 0, 0);
        ck_assert_uint_eq(nwakes, 0);
}
END_TEST

START_TEST(test_pollops_wait_arm_kind_reported_in_wake)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT_ARM, 5);
        park(pd, POLL_MODE_W, POLL_WAIT_ARM, 6);
        assert_counters(&owner, 1, 2, 0);
        pollops_ready(&ops, pd, POLL_MODE_R, false);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT_ARM, 5, POLL_NO_ERROR);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, -1, POLL_MODE_W), 0);
        ck_assert_uint_eq(nwakes, 2);
        assert_wake(1, pd, POLL_MODE_W, POLL_WAIT_ARM, 6, POLL_ERR_TIMEOUT);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_wait_canceled_stays_parked_through_unblock)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT_CANCELED, 3);
        park(pd, POLL_MODE_W, POLL_WAIT_CANCELED, 4);
        ck_assert_int_eq(pollops_unblock(&ops, pd), 0);
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_PARKED);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_PARKED);
        assert_counters(&owner, 1, 2, 0);

        /* Only readiness ends it, with NO_ERROR even though closing. */
        pollops_ready(&ops, pd, POLL_MODE_R, false);
        ck_assert_uint_eq(nwakes, 1);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT_CANCELED, 3, POLL_NO_ERROR);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_PARKED);
        assert_counters(&owner, 1, 1, 0);
        pollops_ready(&ops, pd, POLL_MODE_W, false);
        assert_wake(1, pd, POLL_MODE_W, POLL_WAIT_CANCELED, 4, POLL_NO_ERROR);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_wait_canceled_stays_parked_through_deadline)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT_CANCELED, 7);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        assert_counters(&owner, 1, 1, 1);
        ck_assert_int_eq(advance(100), 1);
        ck_assert_int_lt(pd->rd, 0); /* the deadline did expire */
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_PARKED);
        assert_counters(&owner, 1, 1, 0);
        /* An explicit past deadline does not end it either. */
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, -1, POLL_MODE_RW), 0);
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_PARKED);

        pollops_ready(&ops, pd, POLL_MODE_R, false);
        ck_assert_uint_eq(nwakes, 1);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT_CANCELED, 7, POLL_NO_ERROR);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

/* pollWaitCanceled does not call netpollcheckerr at all. */
START_TEST(test_pollops_wait_canceled_parks_despite_errors)
{
        PollDesc *closing = open_desc(), *expired = open_desc(), *errd = open_desc();

        ck_assert_int_eq(pollops_unblock(&ops, closing), 0);
        park(closing, POLL_MODE_R, POLL_WAIT_CANCELED, 1);
        ck_assert_int_eq(pollops_set_deadline(&ops, expired, -1, POLL_MODE_W), 0);
        park(expired, POLL_MODE_W, POLL_WAIT_CANCELED, 2);
        pollops_ready(&ops, errd, POLL_MODE_RW, true);
        /* Consumes latched readiness even with event_err set. */
        ck_assert_int_eq(pollops_wait(&ops, errd, POLL_MODE_R, POLL_WAIT_CANCELED, 3),
                         POLL_NO_ERROR);
        ck_assert_int_eq(errd->rg.state, POLL_SEM_NIL);
        assert_counters(&owner, 3, 2, 0);
        ck_assert_uint_eq(nwakes, 0);
}
END_TEST

/* ---- netpollready ---------------------------------------------------------- */

/* What the daemon does with an epoll event for a descriptor (server.c,
 * session.c): netpoll_epoll.go's reading of the bits (poller.c), then
 * netpollready.  Only the tests of that reading go through it; the others
 * hand pollops_ready a mode, as the state machine takes. */
static void epoll_ready(PollDesc *pd, uint32_t events)
{
        pollops_ready(&ops, pd, poller_event_mode(events), poller_event_err(events));
}

START_TEST(test_pollops_ready_mode_computation)
{
        static const struct {
                uint32_t events;
                bool r, w;
        } cases[] = {
                { EPOLLIN, true, false },
                { EPOLLRDHUP, true, false },
                { EPOLLOUT, false, true },
                { EPOLLHUP, true, true },
                { EPOLLERR, true, true },
                { EPOLLIN | EPOLLOUT, true, true },
                { EPOLLRDHUP | EPOLLOUT, true, true },
                { EPOLLPRI, false, false },
                { EPOLLRDNORM | EPOLLWRNORM, false, false },
                { 0, false, false },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                /* No waiter: readiness is latched. */
                PollDesc *pd = open_desc();
                epoll_ready(pd, cases[i].events);
                ck_assert_msg((pd->rg.state == POLL_SEM_READY) == cases[i].r,
                              "events %#x: read latched %d", cases[i].events, pd->rg.state);
                ck_assert_msg((pd->wg.state == POLL_SEM_READY) == cases[i].w,
                              "events %#x: write latched %d", cases[i].events, pd->wg.state);

                /* Parked waiters: exactly the ready modes are woken. */
                PollDesc *pw = open_desc();
                nwakes = 0;
                park(pw, POLL_MODE_R, POLL_WAIT, 1);
                park(pw, POLL_MODE_W, POLL_WAIT, 2);
                epoll_ready(pw, cases[i].events);
                ck_assert_uint_eq(nwakes, (unsigned)cases[i].r + cases[i].w);
                ck_assert((pw->rg.state == POLL_SEM_PARKED) == !cases[i].r);
                ck_assert((pw->wg.state == POLL_SEM_PARKED) == !cases[i].w);
                for (unsigned k = 0; k < nwakes; k++)
                        ck_assert_int_eq(wakes[k].result, POLL_NO_ERROR);
                /* Leave nothing parked for the next case. */
                epoll_ready(pw, EPOLLIN | EPOLLOUT);
                ck_assert_uint_eq(pollops_parked(pw), 0);
        }
        ck_assert_uint_eq(owner.waiters, 0);
}
END_TEST

START_TEST(test_pollops_ready_exact_epollerr_sets_event_err)
{
        PollDesc *pd = open_desc();

        epoll_ready(pd, EPOLLERR);
        ck_assert(pd->event_err);
        epoll_ready(pd, EPOLLERR | EPOLLIN);
        ck_assert(!pd->event_err);
        epoll_ready(pd, EPOLLERR);
        ck_assert(pd->event_err);
        epoll_ready(pd, EPOLLOUT);
        ck_assert(!pd->event_err);
        epoll_ready(pd, EPOLLERR);
        epoll_ready(pd, EPOLLHUP);
        ck_assert(!pd->event_err);
        epoll_ready(pd, EPOLLERR);
        epoll_ready(pd, EPOLLERR | EPOLLHUP);
        ck_assert(!pd->event_err);
        epoll_ready(pd, EPOLLERR);
        epoll_ready(pd, EPOLLERR | EPOLLOUT);
        ck_assert(!pd->event_err);
}
END_TEST

/* Go only touches the bit when the event maps to a mode. */
START_TEST(test_pollops_ready_event_without_mode_keeps_event_err)
{
        PollDesc *pd = open_desc();

        epoll_ready(pd, EPOLLERR);
        ck_assert(pd->event_err);
        epoll_ready(pd, EPOLLPRI);
        ck_assert(pd->event_err);
        epoll_ready(pd, 0);
        ck_assert(pd->event_err);
        pollops_ready(&ops, pd, 0, false);
        ck_assert(pd->event_err);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_READY); /* latched by the first EPOLLERR */
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_R), POLL_ERR_NOT_POLLABLE);
}
END_TEST

START_TEST(test_pollops_ready_latches_once_without_waiter)
{
        PollDesc *pd = open_desc();

        pollops_ready(&ops, pd, POLL_MODE_R, false);
        pollops_ready(&ops, pd, POLL_MODE_R, false);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_READY);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_NIL);
        ck_assert_uint_eq(nwakes, 0);
        /* A binary semaphore: two events, one consumable readiness. */
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT, 1), POLL_NO_ERROR);
        park(pd, POLL_MODE_R, POLL_WAIT, 2);
        assert_counters(&owner, 1, 1, 0);
}
END_TEST

START_TEST(test_pollops_ready_wakes_only_matching_mode)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        park(pd, POLL_MODE_W, POLL_WAIT, 2);
        pollops_ready(&ops, pd, POLL_MODE_W, false);
        ck_assert_uint_eq(nwakes, 1);
        assert_wake(0, pd, POLL_MODE_W, POLL_WAIT, 2, POLL_NO_ERROR);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_PARKED);
        assert_counters(&owner, 1, 1, 0);
        pollops_ready(&ops, pd, POLL_MODE_R, false);
        ck_assert_uint_eq(nwakes, 2);
        assert_wake(1, pd, POLL_MODE_R, POLL_WAIT, 1, POLL_NO_ERROR);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_ready_wakes_one_descriptor_only)
{
        PollDesc *a = open_desc(), *b = open_desc();

        park(a, POLL_MODE_R, POLL_WAIT, 1);
        park(b, POLL_MODE_R, POLL_WAIT, 2);
        pollops_ready(&ops, b, POLL_MODE_R, false);
        ck_assert_uint_eq(nwakes, 1);
        assert_wake(0, b, POLL_MODE_R, POLL_WAIT, 2, POLL_NO_ERROR);
        ck_assert_int_eq(a->rg.state, POLL_SEM_PARKED);
        assert_counters(&owner, 2, 1, 0);
}
END_TEST

START_TEST(test_pollops_timeout_and_closing_never_latch)
{
        PollDesc *expired = open_desc(), *timed = open_desc(), *closed = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, expired, -1, POLL_MODE_RW), 0);
        ck_assert_int_eq(expired->rg.state, POLL_SEM_NIL);
        ck_assert_int_eq(expired->wg.state, POLL_SEM_NIL);

        ck_assert_int_eq(pollops_set_deadline(&ops, timed, 50, POLL_MODE_RW), 0);
        ck_assert_int_eq(advance(50), 1);
        ck_assert_int_lt(timed->rd, 0);
        ck_assert_int_lt(timed->wd, 0);
        ck_assert_int_eq(timed->rg.state, POLL_SEM_NIL);
        ck_assert_int_eq(timed->wg.state, POLL_SEM_NIL);

        ck_assert_int_eq(pollops_unblock(&ops, closed), 0);
        ck_assert_int_eq(closed->rg.state, POLL_SEM_NIL);
        ck_assert_int_eq(closed->wg.state, POLL_SEM_NIL);
        ck_assert_uint_eq(nwakes, 0);

        /* Once the deadlines are cleared, a wait parks: nothing was latched. */
        ck_assert_int_eq(pollops_set_deadline(&ops, expired, 0, POLL_MODE_RW), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, timed, 0, POLL_MODE_RW), 0);
        park(expired, POLL_MODE_R, POLL_WAIT, 1);
        park(expired, POLL_MODE_W, POLL_WAIT, 2);
        park(timed, POLL_MODE_R, POLL_WAIT, 3);
        park(timed, POLL_MODE_W, POLL_WAIT, 4);
        assert_counters(&owner, 3, 4, 0);
}
END_TEST

START_TEST(test_pollops_epollerr_wakes_reader_with_ok_then_read_is_not_pollable)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 9);
        epoll_ready(pd, EPOLLERR);
        ck_assert_uint_eq(nwakes, 1);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 9, POLL_NO_ERROR);
        ck_assert(pd->event_err);
        assert_counters(&owner, 1, 0, 0);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT, 10),
                         POLL_ERR_NOT_POLLABLE);
        /* The error-only event made the write side ready too. */
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_W, POLL_WAIT, 11), POLL_NO_ERROR);
        /* Any other event clears the error: reads work again. */
        epoll_ready(pd, EPOLLIN);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT, 12), POLL_NO_ERROR);
        ck_assert_uint_eq(nwakes, 1);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

/* ---- pollSetDeadline ----------------------------------------------------- */

START_TEST(test_pollops_set_deadline_positive_is_relative_to_now)
{
        PollDesc *pd = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 500, POLL_MODE_R), 0);
        ck_assert_int_eq(pd->rd, T0 + 500);
        ck_assert_int_eq(pd->wd, 0);
        ck_assert(timer_armed(&pd->rt.node));
        ck_assert_int_eq(timers_when(&timers, &pd->rt.node), T0 + 500);
        ck_assert_int_eq(pd->rt.fn, POLL_TIMER_READ);
        ck_assert_uint_eq(pd->rt.seq, pd->rseq);
        ck_assert(!timer_armed(&pd->wt.node));
        assert_counters(&owner, 1, 0, 1);

        ops.now = T0 + 1000;
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 700, POLL_MODE_W), 0);
        ck_assert_int_eq(pd->wd, T0 + 1700);
        ck_assert_int_eq(pd->rd, T0 + 500);
        ck_assert(timer_armed(&pd->wt.node));
        ck_assert_int_eq(timers_when(&timers, &pd->wt.node), T0 + 1700);
        ck_assert_int_eq(pd->wt.fn, POLL_TIMER_WRITE);
        ck_assert_uint_eq(pd->wt.seq, pd->wseq);
        assert_counters(&owner, 1, 0, 2);
}
END_TEST

START_TEST(test_pollops_set_deadline_overflow_clamps_to_max)
{
        PollDesc *huge = open_desc(), *exact = open_desc(), *over = open_desc(),
                 *fits = open_desc();

        ops.now = INT64_MAX - 10;
        ck_assert_int_eq(pollops_set_deadline(&ops, huge, INT64_MAX, POLL_MODE_R), 0);
        ck_assert_int_eq(huge->rd, INT64_MAX);
        ck_assert_int_eq(timers_when(&timers, &huge->rt.node), INT64_MAX);
        ck_assert_int_eq(pollops_set_deadline(&ops, exact, 10, POLL_MODE_W), 0);
        ck_assert_int_eq(exact->wd, INT64_MAX);
        ck_assert_int_eq(pollops_set_deadline(&ops, over, 11, POLL_MODE_W), 0);
        ck_assert_int_eq(over->wd, INT64_MAX);
        ck_assert_int_eq(pollops_set_deadline(&ops, fits, 3, POLL_MODE_RW), 0);
        ck_assert_int_eq(fits->rd, INT64_MAX - 7);
        ck_assert_int_eq(fits->wd, INT64_MAX - 7);
        /* A clamped deadline is in the future, not expired. */
        ck_assert_int_eq(pollops_checkerr(huge, POLL_MODE_R), POLL_NO_ERROR);
        ck_assert_int_eq(pollops_checkerr(over, POLL_MODE_W), POLL_NO_ERROR);
        assert_counters(&owner, 4, 0, 4);
        ck_assert_int_eq(fire_due(), 0);
        ck_assert_uint_eq(nwakes, 0);
}
END_TEST

START_TEST(test_pollops_set_deadline_negative_expires_and_wakes_only_that_mode)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        park(pd, POLL_MODE_W, POLL_WAIT, 2);
        assert_counters(&owner, 1, 2, 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, -5, POLL_MODE_R), 0);
        ck_assert_int_lt(pd->rd, 0);
        ck_assert_int_eq(pd->wd, 0);
        ck_assert_uint_eq(nwakes, 1);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 1, POLL_ERR_TIMEOUT);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_PARKED);
        ck_assert(!timer_armed(&pd->rt.node));
        assert_counters(&owner, 1, 1, 0);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT, 3), POLL_ERR_TIMEOUT);

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, -1, POLL_MODE_W), 0);
        ck_assert_uint_eq(nwakes, 2);
        assert_wake(1, pd, POLL_MODE_W, POLL_WAIT, 2, POLL_ERR_TIMEOUT);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_set_deadline_negative_rw_wakes_both)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        park(pd, POLL_MODE_W, POLL_WAIT_ARM, 2);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, -1, POLL_MODE_RW), 0);
        ck_assert_uint_eq(nwakes, 2);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 1, POLL_ERR_TIMEOUT);
        assert_wake(1, pd, POLL_MODE_W, POLL_WAIT_ARM, 2, POLL_ERR_TIMEOUT);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_set_deadline_negative_disarms_pending_timer)
{
        PollDesc *pd = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        uint32_t rseq = pd->rseq;
        assert_counters(&owner, 1, 0, 1);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, -1, POLL_MODE_R), 0);
        ck_assert(!timer_armed(&pd->rt.node));
        ck_assert_int_eq(pd->rt.fn, POLL_TIMER_NONE);
        ck_assert_uint_eq(pd->rseq, rseq + 1);
        assert_counters(&owner, 1, 0, 0);
        ck_assert_int_eq(timers.n, 0);
        ck_assert_int_eq(advance(1000), 0);
        ck_assert_int_lt(pd->rd, 0);
}
END_TEST

START_TEST(test_pollops_set_deadline_zero_clears)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        uint32_t rseq = pd->rseq;
        assert_counters(&owner, 1, 1, 1);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 0, POLL_MODE_R), 0);
        ck_assert_int_eq(pd->rd, 0);
        ck_assert(!timer_armed(&pd->rt.node));
        ck_assert_int_eq(pd->rt.fn, POLL_TIMER_NONE);
        ck_assert_uint_eq(pd->rseq, rseq + 1);
        assert_counters(&owner, 1, 1, 0);
        ck_assert_int_eq(advance(10000), 0);
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_PARKED);
        pollops_ready(&ops, pd, POLL_MODE_R, false);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 1, POLL_NO_ERROR);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_set_deadline_zero_after_expiry_allows_waiting)
{
        PollDesc *pd = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, -1, POLL_MODE_RW), 0);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT, 1), POLL_ERR_TIMEOUT);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 0, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_R), POLL_NO_ERROR);
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_W), POLL_ERR_TIMEOUT);
        park(pd, POLL_MODE_R, POLL_WAIT, 2);
        assert_counters(&owner, 1, 1, 0);
}
END_TEST

START_TEST(test_pollops_separate_read_and_write_deadlines_fire_independently)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        park(pd, POLL_MODE_W, POLL_WAIT, 2);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 200, POLL_MODE_W), 0);
        ck_assert_int_eq(pd->rt.fn, POLL_TIMER_READ);
        ck_assert_int_eq(pd->wt.fn, POLL_TIMER_WRITE);
        ck_assert(timer_armed(&pd->rt.node) && timer_armed(&pd->wt.node));
        assert_counters(&owner, 1, 2, 2);

        ck_assert_int_eq(advance(99), 0);
        ck_assert_int_eq(advance(1), 1);
        ck_assert_uint_eq(nwakes, 1);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 1, POLL_ERR_TIMEOUT);
        ck_assert_int_lt(pd->rd, 0);
        ck_assert_int_eq(pd->wd, T0 + 200);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_PARKED);
        assert_counters(&owner, 1, 1, 1);

        ck_assert_int_eq(advance(100), 1);
        ck_assert_uint_eq(nwakes, 2);
        assert_wake(1, pd, POLL_MODE_W, POLL_WAIT, 2, POLL_ERR_TIMEOUT);
        ck_assert_int_lt(pd->wd, 0);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_equal_deadlines_share_one_combined_timer)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        park(pd, POLL_MODE_W, POLL_WAIT, 2);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_RW), 0);
        ck_assert_int_eq(pd->rd, T0 + 100);
        ck_assert_int_eq(pd->wd, T0 + 100);
        ck_assert_int_eq(pd->rt.fn, POLL_TIMER_BOTH);
        ck_assert(timer_armed(&pd->rt.node));
        ck_assert(!timer_armed(&pd->wt.node));
        ck_assert_int_eq(pd->wt.fn, POLL_TIMER_NONE);
        ck_assert_uint_eq(timers.n, 1);
        assert_counters(&owner, 1, 2, 1);

        ck_assert_int_eq(advance(99), 0);
        ck_assert_int_eq(advance(1), 1);
        ck_assert_uint_eq(nwakes, 2);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 1, POLL_ERR_TIMEOUT);
        assert_wake(1, pd, POLL_MODE_W, POLL_WAIT, 2, POLL_ERR_TIMEOUT);
        ck_assert_int_lt(pd->rd, 0);
        ck_assert_int_lt(pd->wd, 0);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_equal_deadlines_set_separately_combine)
{
        PollDesc *pd = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        uint32_t rseq = pd->rseq, wseq = pd->wseq;
        ck_assert_int_eq(pd->rt.fn, POLL_TIMER_READ);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_W), 0);
        /* Combining re-arms the read timer as the combined one. */
        ck_assert_uint_eq(pd->rseq, rseq + 1);
        ck_assert_uint_eq(pd->wseq, wseq);
        ck_assert_int_eq(pd->rt.fn, POLL_TIMER_BOTH);
        ck_assert_uint_eq(pd->rt.seq, pd->rseq);
        ck_assert(timer_armed(&pd->rt.node));
        ck_assert(!timer_armed(&pd->wt.node));
        assert_counters(&owner, 1, 0, 1);

        /* The other order: the armed write timer gives way to the combined one. */
        PollDesc *wr = open_desc();
        ck_assert_int_eq(pollops_set_deadline(&ops, wr, 100, POLL_MODE_W), 0);
        ck_assert(timer_armed(&wr->wt.node));
        rseq = wr->rseq;
        wseq = wr->wseq;
        ck_assert_int_eq(pollops_set_deadline(&ops, wr, 100, POLL_MODE_R), 0);
        ck_assert_int_eq(wr->rt.fn, POLL_TIMER_BOTH);
        ck_assert(timer_armed(&wr->rt.node));
        ck_assert(!timer_armed(&wr->wt.node));
        ck_assert_int_eq(wr->wt.fn, POLL_TIMER_NONE);
        ck_assert_uint_eq(wr->wseq, wseq + 1);
        ck_assert_uint_eq(wr->rseq, rseq); /* rt was unset: armed, no bump */
        ck_assert_uint_eq(wr->rt.seq, wr->rseq);
        assert_counters(&owner, 2, 0, 2);

        park(pd, POLL_MODE_W, POLL_WAIT, 5);
        park(wr, POLL_MODE_R, POLL_WAIT, 6);
        ck_assert_int_eq(advance(100), 2);
        ck_assert_uint_eq(nwakes, 2);
        assert_wake(0, pd, POLL_MODE_W, POLL_WAIT, 5, POLL_ERR_TIMEOUT);
        assert_wake(1, wr, POLL_MODE_R, POLL_WAIT, 6, POLL_ERR_TIMEOUT);
        ck_assert_int_lt(pd->rd, 0);
        ck_assert_int_lt(pd->wd, 0);
        ck_assert_int_lt(wr->rd, 0);
        ck_assert_int_lt(wr->wd, 0);
        assert_counters(&owner, 2, 0, 0);
}
END_TEST

START_TEST(test_pollops_combined_timer_splits_when_one_side_changes)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        park(pd, POLL_MODE_W, POLL_WAIT, 2);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_RW), 0);
        uint32_t rseq = pd->rseq;
        assert_counters(&owner, 1, 2, 1);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 200, POLL_MODE_W), 0);
        ck_assert_uint_eq(pd->rseq, rseq + 1);
        ck_assert_int_eq(pd->rt.fn, POLL_TIMER_READ);
        ck_assert_int_eq(timers_when(&timers, &pd->rt.node), T0 + 100);
        ck_assert_int_eq(pd->wt.fn, POLL_TIMER_WRITE);
        ck_assert(timer_armed(&pd->wt.node));
        ck_assert_int_eq(timers_when(&timers, &pd->wt.node), T0 + 200);
        assert_counters(&owner, 1, 2, 2);

        ck_assert_int_eq(advance(100), 1);
        ck_assert_uint_eq(nwakes, 1);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 1, POLL_ERR_TIMEOUT);
        ck_assert_int_eq(pd->wd, T0 + 200);
        assert_counters(&owner, 1, 1, 1);
        ck_assert_int_eq(advance(100), 1);
        assert_wake(1, pd, POLL_MODE_W, POLL_WAIT, 2, POLL_ERR_TIMEOUT);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_combined_timer_splits_when_read_side_cleared)
{
        PollDesc *pd = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_RW), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 0, POLL_MODE_R), 0);
        ck_assert_int_eq(pd->rd, 0);
        ck_assert(!timer_armed(&pd->rt.node));
        ck_assert_int_eq(pd->rt.fn, POLL_TIMER_NONE);
        ck_assert(timer_armed(&pd->wt.node));
        ck_assert_int_eq(pd->wt.fn, POLL_TIMER_WRITE);
        ck_assert_int_eq(timers_when(&timers, &pd->wt.node), T0 + 100);
        assert_counters(&owner, 1, 0, 1);

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        park(pd, POLL_MODE_W, POLL_WAIT, 2);
        ck_assert_int_eq(advance(100), 1);
        ck_assert_uint_eq(nwakes, 1);
        assert_wake(0, pd, POLL_MODE_W, POLL_WAIT, 2, POLL_ERR_TIMEOUT);
        ck_assert_int_eq(pd->rd, 0);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_PARKED);
        assert_counters(&owner, 1, 1, 0);
}
END_TEST

START_TEST(test_pollops_combined_timer_moves_to_new_common_deadline)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_RW), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 300, POLL_MODE_RW), 0);
        ck_assert_int_eq(pd->rt.fn, POLL_TIMER_BOTH);
        ck_assert_int_eq(timers_when(&timers, &pd->rt.node), T0 + 300);
        ck_assert(!timer_armed(&pd->wt.node));
        assert_counters(&owner, 1, 1, 1);
        ck_assert_int_eq(advance(100), 0);
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(advance(200), 1);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 1, POLL_ERR_TIMEOUT);
        ck_assert_int_lt(pd->wd, 0);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

/* netpollDeadline checks rseq only: wseq does not guard a combined timer. */
START_TEST(test_pollops_combined_timer_is_guarded_by_rseq)
{
        PollDesc *a = open_desc(), *b = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, a, 100, POLL_MODE_RW), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, b, 100, POLL_MODE_RW), 0);
        a->wseq++;
        b->rseq++;
        ck_assert_int_eq(advance(100), 2);
        ck_assert_int_lt(a->rd, 0);
        ck_assert_int_lt(a->wd, 0);
        ck_assert_int_eq(b->rd, T0 + 100);
        ck_assert_int_eq(b->wd, T0 + 100);
        assert_counters(&owner, 2, 0, 0);
}
END_TEST

START_TEST(test_pollops_set_deadline_extension_moves_timer_later)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        uint32_t rseq = pd->rseq;
        /* Fifty ns later, the same relative deadline ends later. */
        ops.now += 50;
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        ck_assert_int_eq(pd->rd, T0 + 150);
        ck_assert_uint_eq(pd->rseq, rseq + 1);
        ck_assert_uint_eq(pd->rt.seq, pd->rseq);
        ck_assert_int_eq(timers_when(&timers, &pd->rt.node), T0 + 150);
        ck_assert_uint_eq(timers.n, 1);
        assert_counters(&owner, 1, 1, 1);

        ck_assert_int_eq(advance(50), 0); /* T0 + 100: the old deadline */
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(pd->rd, T0 + 150);
        ck_assert_int_eq(advance(49), 0);
        ck_assert_int_eq(advance(1), 1);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 1, POLL_ERR_TIMEOUT);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_set_deadline_shortening_moves_timer_earlier)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_W, POLL_WAIT, 1);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 300, POLL_MODE_W), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_W), 0);
        ck_assert_int_eq(timers_when(&timers, &pd->wt.node), T0 + 100);
        assert_counters(&owner, 1, 1, 1);
        ck_assert_int_eq(advance(100), 1);
        assert_wake(0, pd, POLL_MODE_W, POLL_WAIT, 1, POLL_ERR_TIMEOUT);
        assert_counters(&owner, 1, 0, 0);
        ck_assert_int_eq(advance(1000), 0);
}
END_TEST

START_TEST(test_pollops_set_deadline_refresh_keeps_timer)
{
        PollDesc *pd = open_desc(), *combo = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 200, POLL_MODE_W), 0);
        uint32_t rseq = pd->rseq, wseq = pd->wseq;
        uint64_t rorder = pd->rt.node.order, worder = pd->wt.node.order;
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 200, POLL_MODE_W), 0);
        ck_assert_uint_eq(pd->rseq, rseq);
        ck_assert_uint_eq(pd->wseq, wseq);
        ck_assert_uint_eq(pd->rt.node.order, rorder); /* not re-armed */
        ck_assert_uint_eq(pd->wt.node.order, worder);

        ck_assert_int_eq(pollops_set_deadline(&ops, combo, 100, POLL_MODE_RW), 0);
        rseq = combo->rseq;
        wseq = combo->wseq;
        rorder = combo->rt.node.order;
        ck_assert_int_eq(pollops_set_deadline(&ops, combo, 100, POLL_MODE_RW), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, combo, 100, POLL_MODE_R), 0);
        ck_assert_uint_eq(combo->rseq, rseq);
        ck_assert_uint_eq(combo->wseq, wseq);
        ck_assert_uint_eq(combo->rt.node.order, rorder);
        ck_assert_int_eq(combo->rt.fn, POLL_TIMER_BOTH);
        ck_assert(!timer_armed(&combo->wt.node));
        assert_counters(&owner, 2, 0, 3);

        /* Still fires as set. */
        ck_assert_int_eq(advance(100), 2);
        ck_assert_int_lt(pd->rd, 0);
        ck_assert_int_lt(combo->rd, 0);
        ck_assert_int_lt(combo->wd, 0);
        ck_assert_int_eq(advance(100), 1);
        ck_assert_int_lt(pd->wd, 0);
        assert_counters(&owner, 2, 0, 0);
}
END_TEST

START_TEST(test_pollops_set_deadline_after_expiry_rearms)
{
        PollDesc *pd = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        ck_assert_int_eq(advance(100), 1);
        ck_assert_int_lt(pd->rd, 0);
        ck_assert(!timer_armed(&pd->rt.node));
        assert_counters(&owner, 1, 0, 0);
        uint32_t rseq = pd->rseq;
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        ck_assert_int_eq(pd->rd, T0 + 200);
        ck_assert(timer_armed(&pd->rt.node));
        ck_assert_uint_eq(pd->rseq, rseq + 1);
        ck_assert_uint_eq(pd->rt.seq, pd->rseq);
        assert_counters(&owner, 1, 0, 1);
        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        ck_assert_int_eq(advance(100), 1);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 1, POLL_ERR_TIMEOUT);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_set_deadline_is_noop_when_closing)
{
        PollDesc *pd = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_unblock(&ops, pd), 0);
        uint32_t rseq = pd->rseq, wseq = pd->wseq;
        int64_t rd = pd->rd, wd = pd->wd;
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 500, POLL_MODE_RW), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, -1, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 0, POLL_MODE_W), 0);
        ck_assert_int_eq(pd->rd, rd);
        ck_assert_int_eq(pd->wd, wd);
        ck_assert_uint_eq(pd->rseq, rseq);
        ck_assert_uint_eq(pd->wseq, wseq);
        ck_assert(!timer_armed(&pd->rt.node));
        ck_assert(!timer_armed(&pd->wt.node));
        assert_counters(&owner, 1, 0, 0);
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_R), POLL_ERR_CLOSING);
}
END_TEST

START_TEST(test_pollops_set_deadline_rejects_bad_mode)
{
        const int bad[] = { 'x', 0, 'w' + 'w', 'r' + 'r', -1 };
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, bad[i]), -EINVAL);
                ck_assert_int_eq(pollops_set_deadline(&ops, pd, -1, bad[i]), -EINVAL);
        }
        ck_assert_int_eq(pd->rd, 0);
        ck_assert_int_eq(pd->wd, 0);
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_uint_eq(timers.n, 0);
        assert_counters(&owner, 1, 1, 0);
}
END_TEST

/* ---- deadline timers ------------------------------------------------------ */

START_TEST(test_pollops_stale_read_timer_does_nothing)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        pd->rseq++; /* as if the timers had been reset meanwhile */
        ck_assert_int_eq(advance(100), 1);
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(pd->rd, T0 + 100);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_PARKED);
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_R), POLL_NO_ERROR);
        assert_counters(&owner, 1, 1, 0);
}
END_TEST

START_TEST(test_pollops_stale_write_timer_does_nothing)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_W, POLL_WAIT, 1);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_W), 0);
        pd->wseq++;
        ck_assert_int_eq(advance(100), 1);
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(pd->wd, T0 + 100);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_PARKED);
        assert_counters(&owner, 1, 1, 0);
}
END_TEST

START_TEST(test_pollops_timer_never_fires_early)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 1000, POLL_MODE_R), 0);
        ops.now = T0 + 999;
        ck_assert_ptr_null(timers_pop_due(&timers, ops.now));
        ck_assert(timer_armed(&pd->rt.node));
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_R), POLL_NO_ERROR);
        ops.now = T0 + 1000;
        ck_assert_int_eq(fire_due(), 1);
        ck_assert_uint_eq(nwakes, 1);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 1, POLL_ERR_TIMEOUT);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_timer_fire_without_waiter_only_expires)
{
        PollDesc *pd = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 10, POLL_MODE_W), 0);
        ck_assert_int_eq(advance(10), 1);
        ck_assert_int_lt(pd->wd, 0);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_NIL);
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_W, POLL_WAIT, 1), POLL_ERR_TIMEOUT);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

/* ---- pollUnblock ---------------------------------------------------------- */

START_TEST(test_pollops_unblock_wakes_waiters_with_closing)
{
        PollDesc *pd = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 200, POLL_MODE_W), 0);
        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        park(pd, POLL_MODE_W, POLL_WAIT_ARM, 2);
        uint32_t rseq = pd->rseq, wseq = pd->wseq;
        assert_counters(&owner, 1, 2, 2);

        ck_assert_int_eq(pollops_unblock(&ops, pd), 0);
        ck_assert(pd->closing);
        ck_assert_uint_eq(nwakes, 2);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 1, POLL_ERR_CLOSING);
        assert_wake(1, pd, POLL_MODE_W, POLL_WAIT_ARM, 2, POLL_ERR_CLOSING);
        ck_assert_uint_eq(pd->rseq, rseq + 1);
        ck_assert_uint_eq(pd->wseq, wseq + 1);
        ck_assert(!timer_armed(&pd->rt.node));
        ck_assert(!timer_armed(&pd->wt.node));
        ck_assert_int_eq(pd->rt.fn, POLL_TIMER_NONE);
        ck_assert_int_eq(pd->wt.fn, POLL_TIMER_NONE);
        ck_assert_uint_eq(timers.n, 0);
        assert_counters(&owner, 1, 0, 0);
        ck_assert_int_eq(advance(1000), 0);
        ck_assert_uint_eq(nwakes, 2);
}
END_TEST

START_TEST(test_pollops_unblock_disarms_combined_timer)
{
        PollDesc *pd = open_desc(), *other = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_RW), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, other, 100, POLL_MODE_R), 0);
        assert_counters(&owner, 2, 0, 2);
        ck_assert_int_eq(pollops_unblock(&ops, pd), 0);
        ck_assert(!timer_armed(&pd->rt.node));
        assert_counters(&owner, 2, 0, 1);
        ck_assert(timer_armed(&other->rt.node));
        ck_assert_int_eq(advance(100), 1);
        ck_assert_int_lt(other->rd, 0);
        ck_assert_int_eq(pd->rd, T0 + 100); /* never expired */
        assert_counters(&owner, 2, 0, 0);
}
END_TEST

START_TEST(test_pollops_unblock_twice_is_ealready)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT_CANCELED, 1);
        ck_assert_int_eq(pollops_unblock(&ops, pd), 0);
        uint32_t rseq = pd->rseq, wseq = pd->wseq;
        ck_assert_int_eq(pollops_unblock(&ops, pd), -EALREADY);
        ck_assert_uint_eq(pd->rseq, rseq);
        ck_assert_uint_eq(pd->wseq, wseq);
        ck_assert(pd->closing);
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_PARKED);
        assert_counters(&owner, 1, 1, 0);
}
END_TEST

/* ---- pollClose ----------------------------------------------------------- */

START_TEST(test_pollops_close_before_unblock_is_ebusy)
{
        PollDesc *pd = open_desc();

        ck_assert_int_eq(pollops_close(&ops, pd), -EBUSY);
        ck_assert(!pd->closing);
        assert_counters(&owner, 1, 0, 0);
        /* Still fully usable. */
        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        assert_counters(&owner, 1, 1, 0);
}
END_TEST

START_TEST(test_pollops_close_with_parked_wait_canceled_is_ebusy)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_W, POLL_WAIT_CANCELED, 1);
        ck_assert_int_eq(pollops_unblock(&ops, pd), 0);
        ck_assert_int_eq(pollops_close(&ops, pd), -EBUSY);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_PARKED);
        assert_counters(&owner, 1, 1, 0);
        pollops_ready(&ops, pd, POLL_MODE_W, false);
        assert_wake(0, pd, POLL_MODE_W, POLL_WAIT_CANCELED, 1, POLL_NO_ERROR);
        ck_assert_int_eq(pollops_close(&ops, pd), 0);
        assert_counters(&owner, 0, 0, 0);

        PollDesc *rd = open_desc();
        park(rd, POLL_MODE_R, POLL_WAIT_CANCELED, 2);
        ck_assert_int_eq(pollops_unblock(&ops, rd), 0);
        ck_assert_int_eq(pollops_close(&ops, rd), -EBUSY);
        assert_counters(&owner, 1, 1, 0);
}
END_TEST

START_TEST(test_pollops_close_after_unblock_succeeds)
{
        PollDesc *a = open_desc(), *b = open_desc();

        park(a, POLL_MODE_R, POLL_WAIT, 1);
        assert_counters(&owner, 2, 1, 0);
        ck_assert_int_eq(pollops_unblock(&ops, a), 0);
        ck_assert_int_eq(pollops_close(&ops, a), 0);
        assert_counters(&owner, 1, 0, 0);
        /* Latched readiness does not block a close (pdReady is allowed). */
        pollops_ready(&ops, b, POLL_MODE_RW, false);
        ck_assert_int_eq(pollops_unblock(&ops, b), 0);
        ck_assert_int_eq(pollops_close(&ops, b), 0);
        assert_counters(&owner, 0, 0, 0);
}
END_TEST

/* ---- pollReset ------------------------------------------------------------- */

START_TEST(test_pollops_reset_returns_check_code)
{
        PollDesc *ok = open_desc(), *closing = open_desc(), *expired = open_desc(),
                 *errd = open_desc();

        ck_assert_int_eq(pollops_reset(&ops, ok, POLL_MODE_R), POLL_NO_ERROR);
        ck_assert_int_eq(pollops_reset(&ops, ok, POLL_MODE_W), POLL_NO_ERROR);
        ck_assert_int_eq(pollops_unblock(&ops, closing), 0);
        ck_assert_int_eq(pollops_reset(&ops, closing, POLL_MODE_R), POLL_ERR_CLOSING);
        ck_assert_int_eq(pollops_reset(&ops, closing, POLL_MODE_W), POLL_ERR_CLOSING);
        ck_assert_int_eq(pollops_set_deadline(&ops, expired, -1, POLL_MODE_W), 0);
        ck_assert_int_eq(pollops_reset(&ops, expired, POLL_MODE_W), POLL_ERR_TIMEOUT);
        ck_assert_int_eq(pollops_reset(&ops, expired, POLL_MODE_R), POLL_NO_ERROR);
        pollops_ready(&ops, errd, POLL_MODE_RW, true);
        ck_assert_int_eq(pollops_reset(&ops, errd, POLL_MODE_R), POLL_ERR_NOT_POLLABLE);
        ck_assert_int_eq(pollops_reset(&ops, errd, POLL_MODE_W), POLL_NO_ERROR);
}
END_TEST

START_TEST(test_pollops_reset_discards_latched_ready_of_that_mode_only)
{
        PollDesc *pd = open_desc();

        pollops_ready(&ops, pd, POLL_MODE_RW, false);
        ck_assert_int_eq(pollops_reset(&ops, pd, POLL_MODE_R), POLL_NO_ERROR);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_NIL);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_READY);
        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_W, POLL_WAIT, 2), POLL_NO_ERROR);
        assert_counters(&owner, 1, 1, 0);

        /* And the other way round. */
        PollDesc *other = open_desc();
        pollops_ready(&ops, other, POLL_MODE_RW, false);
        ck_assert_int_eq(pollops_reset(&ops, other, POLL_MODE_W), POLL_NO_ERROR);
        ck_assert_int_eq(other->wg.state, POLL_SEM_NIL);
        ck_assert_int_eq(other->rg.state, POLL_SEM_READY);
}
END_TEST

/* pollReset returns the error before it touches the semaphore. */
START_TEST(test_pollops_reset_failing_check_keeps_latched_ready)
{
        PollDesc *pd = open_desc();

        pollops_ready(&ops, pd, POLL_MODE_R, false);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, -1, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_reset(&ops, pd, POLL_MODE_R), POLL_ERR_TIMEOUT);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_READY);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 0, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_wait(&ops, pd, POLL_MODE_R, POLL_WAIT, 1), POLL_NO_ERROR);
}
END_TEST

START_TEST(test_pollops_reset_leaves_parked_waiter_parked)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 4);
        ck_assert_int_eq(pollops_reset(&ops, pd, POLL_MODE_R), POLL_NO_ERROR);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_PARKED);
        ck_assert_uint_eq(pd->rg.req, 4);
        ck_assert_uint_eq(nwakes, 0);
        assert_counters(&owner, 1, 1, 0);
        pollops_ready(&ops, pd, POLL_MODE_R, false);
        assert_wake(0, pd, POLL_MODE_R, POLL_WAIT, 4, POLL_NO_ERROR);
        assert_counters(&owner, 1, 0, 0);
}
END_TEST

START_TEST(test_pollops_reset_rejects_bad_mode)
{
        PollDesc *pd = open_desc();

        pollops_ready(&ops, pd, POLL_MODE_RW, false);
        ck_assert_int_eq(pollops_reset(&ops, pd, 'x'), -EINVAL);
        ck_assert_int_eq(pollops_reset(&ops, pd, POLL_MODE_RW), -EINVAL);
        ck_assert_int_eq(pollops_reset(&ops, pd, 0), -EINVAL);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_READY);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_READY);
}
END_TEST

/* ---- release --------------------------------------------------------------- */

START_TEST(test_pollops_release_drops_waiters_without_wake)
{
        PollDesc *pd = open_desc(), *other = open_desc();

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 200, POLL_MODE_W), 0);
        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        park(pd, POLL_MODE_W, POLL_WAIT_CANCELED, 2);
        park(other, POLL_MODE_R, POLL_WAIT, 3);
        uint32_t rseq = pd->rseq, wseq = pd->wseq;
        assert_counters(&owner, 2, 3, 2);

        pollops_release(&ops, pd);
        ck_assert_uint_eq(nwakes, 0);
        ck_assert(pd->closing);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_NIL);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_NIL);
        ck_assert(!timer_armed(&pd->rt.node));
        ck_assert(!timer_armed(&pd->wt.node));
        ck_assert_uint_gt(pd->rseq, rseq);
        ck_assert_uint_gt(pd->wseq, wseq);
        ck_assert_uint_eq(timers.n, 0);
        assert_counters(&owner, 1, 1, 0);
        ck_assert_int_eq(advance(1000), 0);
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(other->rg.state, POLL_SEM_PARKED);

        pollops_release(&ops, other);
        assert_counters(&owner, 0, 0, 0);
        ck_assert_uint_eq(nwakes, 0);
}
END_TEST

START_TEST(test_pollops_release_after_unblock)
{
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT_CANCELED, 1);
        ck_assert_int_eq(pollops_unblock(&ops, pd), 0);
        assert_counters(&owner, 1, 1, 0);
        pollops_release(&ops, pd);
        ck_assert_uint_eq(nwakes, 0);
        assert_counters(&owner, 0, 0, 0);
}
END_TEST

/* ---- counters and slot reuse ------------------------------------------------ */

START_TEST(test_pollops_owner_counters_exact_through_lifecycle)
{
        PollDesc *a = open_desc(), *b = open_desc();
        PollDesc *c = &open_slot(&owner2)->pd;

        assert_counters(&owner, 2, 0, 0);
        assert_counters(&owner2, 1, 0, 0);
        park(a, POLL_MODE_R, POLL_WAIT, 1);
        park(c, POLL_MODE_W, POLL_WAIT, 2);
        assert_counters(&owner, 2, 1, 0);
        assert_counters(&owner2, 1, 1, 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, a, 100, POLL_MODE_RW), 0); /* combined */
        ck_assert_int_eq(pollops_set_deadline(&ops, b, 100, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, c, 50, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, c, 60, POLL_MODE_W), 0);
        assert_counters(&owner, 2, 1, 2);
        assert_counters(&owner2, 1, 1, 2);
        ck_assert_int_eq(pollops_set_deadline(&ops, a, 150, POLL_MODE_W), 0); /* split */
        assert_counters(&owner, 2, 1, 3);
        ck_assert_int_eq(advance(50), 1);
        assert_counters(&owner2, 1, 1, 1);
        ck_assert_int_eq(advance(10), 1);
        assert_counters(&owner2, 1, 0, 0);
        assert_wake(0, c, POLL_MODE_W, POLL_WAIT, 2, POLL_ERR_TIMEOUT);
        ck_assert_int_eq(advance(40), 2);
        assert_counters(&owner, 2, 0, 1);
        assert_wake(1, a, POLL_MODE_R, POLL_WAIT, 1, POLL_ERR_TIMEOUT);
        ck_assert_int_eq(pollops_unblock(&ops, a), 0);
        assert_counters(&owner, 2, 0, 0);
        ck_assert_int_eq(pollops_close(&ops, a), 0);
        assert_counters(&owner, 1, 0, 0);
        pollops_release(&ops, b);
        pollops_release(&ops, c);
        assert_counters(&owner, 0, 0, 0);
        assert_counters(&owner2, 0, 0, 0);
}
END_TEST

START_TEST(test_pollops_open_resets_reused_slot)
{
        PollSlot *s = open_slot(&owner);
        PollDesc *pd = &s->pd;

        pollops_ready(&ops, pd, POLL_MODE_RW, true);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, -1, POLL_MODE_RW), 0);
        ck_assert_int_eq(pollops_unblock(&ops, pd), 0);
        ck_assert_int_eq(pollops_close(&ops, pd), 0);
        pollcache_free(&cache, s);
        assert_counters(&owner, 0, 0, 0);

        PollSlot *s2 = open_slot(&owner2);
        ck_assert_ptr_eq(s2, s);
        ck_assert_ptr_eq(pd->owner, &owner2);
        ck_assert(!pd->closing);
        ck_assert(!pd->event_err);
        ck_assert_int_eq(pd->rd, 0);
        ck_assert_int_eq(pd->wd, 0);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_NIL);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_NIL);
        ck_assert_int_eq(pd->rt.fn, POLL_TIMER_NONE);
        ck_assert_int_eq(pd->wt.fn, POLL_TIMER_NONE);
        ck_assert_int_eq(pollops_checkerr(pd, POLL_MODE_R), POLL_NO_ERROR);
        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        assert_counters(&owner, 0, 0, 0);
        assert_counters(&owner2, 1, 1, 0);
}
END_TEST

START_TEST(test_pollops_open_on_reused_slot_bumps_seqs)
{
        PollSlot *s = open_slot(&owner);
        PollDesc *pd = &s->pd;

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 200, POLL_MODE_W), 0);
        uint32_t old_rt_seq = pd->rt.seq, old_wt_seq = pd->wt.seq;
        ck_assert_int_eq(pollops_unblock(&ops, pd), 0);
        ck_assert_int_eq(pollops_close(&ops, pd), 0);
        pollcache_free(&cache, s);
        uint32_t rseq = pd->rseq, wseq = pd->wseq;

        ck_assert_ptr_eq(open_slot(&owner2), s);
        ck_assert_uint_eq(pd->rseq, rseq + 1);
        ck_assert_uint_eq(pd->wseq, wseq + 1);
        ck_assert_uint_ne(pd->rseq, old_rt_seq);
        ck_assert_uint_ne(pd->wseq, old_wt_seq);

        /* New life: deadlines and waiters.  Make the armed nodes carry the
         * previous life's sequence numbers, as timers of that life would. */
        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        park(pd, POLL_MODE_W, POLL_WAIT, 2);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 200, POLL_MODE_W), 0);
        pd->rt.seq = old_rt_seq;
        pd->wt.seq = old_wt_seq;
        assert_counters(&owner2, 1, 2, 2);
        ck_assert_int_eq(advance(200), 2);
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(pd->rd, T0 + 100);
        ck_assert_int_eq(pd->wd, T0 + 200);
        ck_assert_uint_eq(pollops_parked(pd), 2);
        assert_counters(&owner2, 1, 2, 0);
        assert_counters(&owner, 0, 0, 0);
}
END_TEST

/*
 * A deadline timer popped from the heap but not yet run when its descriptor
 * is unblocked, closed, freed and reopened (Go: a timer function already
 * running while pollUnblock/pollClose/pollOpen proceed; the seq check is
 * what protects the new life).  Running it afterwards must neither wake nor
 * expire anything of the new life, nor touch the new owner's counters.
 * (server.c fires each timer right after popping it, so the daemon does not
 * open this window today; pollops_timer_fire's contract does not require it.)
 */
START_TEST(test_pollops_popped_write_timer_from_previous_life_is_ignored)
{
        PollSlot *s = open_slot(&owner);
        PollDesc *pd = &s->pd;

        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_W), 0);
        ops.now += 100;
        Timer *t = timers_pop_due(&timers, ops.now);
        ck_assert_ptr_eq(t, &pd->wt.node);

        ck_assert_int_eq(pollops_unblock(&ops, pd), 0);
        ck_assert_int_eq(pollops_close(&ops, pd), 0);
        pollcache_free(&cache, s);
        ck_assert_ptr_eq(open_slot(&owner2), s);
        park(pd, POLL_MODE_W, POLL_WAIT, 1);
        assert_counters(&owner2, 1, 1, 0);

        pollops_timer_fire(&ops, t);
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(pd->wd, 0);
        ck_assert_int_eq(pd->wg.state, POLL_SEM_PARKED);
        assert_counters(&owner2, 1, 1, 0);
}
END_TEST

/*
 * The same for a read timer, within one life: popped, then the read
 * deadline is cleared (rt.fn becomes NONE) before the timer runs.
 */
START_TEST(test_pollops_popped_read_timer_after_deadline_cleared_is_ignored)
{
        PollSlot *first = open_slot(&owner);
        PollDesc *pd = open_desc();

        park(pd, POLL_MODE_R, POLL_WAIT, 1);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 100, POLL_MODE_R), 0);
        ops.now += 100;
        Timer *t = timers_pop_due(&timers, ops.now);
        ck_assert_ptr_eq(t, &pd->rt.node);
        ck_assert_int_eq(pollops_set_deadline(&ops, pd, 0, POLL_MODE_R), 0);

        pollops_timer_fire(&ops, t);
        ck_assert_uint_eq(nwakes, 0);
        ck_assert_int_eq(pd->rd, 0);
        ck_assert_int_eq(pd->rg.state, POLL_SEM_PARKED);
        ck_assert_int_eq(first->pd.wg.state, POLL_SEM_NIL);
        assert_counters(&owner, 2, 1, 0);
}
END_TEST

static TCase *tcase_new(Suite *s, const char *name)
{
        TCase *tc = test_tcase_default_timeout(s, name);

        tcase_add_checked_fixture(tc, env_setup, env_teardown);
        return tc;
}

Suite *suite_pollops(void)
{
        Suite *s = suite_create("pollops");
        TCase *tc;

        tc = tcase_new(s, "checkerr");
        tcase_add_test(tc, test_pollops_open_initialises_descriptor);
        tcase_add_test(tc, test_pollops_checkerr_closing_beats_expired_deadline_and_event_error);
        tcase_add_test(tc, test_pollops_checkerr_expired_deadline_beats_event_error);
        tcase_add_test(tc, test_pollops_checkerr_event_error_only_for_read);
        tcase_add_test(tc, test_pollops_checkerr_deadline_is_per_mode);

        tc = tcase_new(s, "wait");
        tcase_add_test(tc, test_pollops_wait_returns_closing_at_once);
        tcase_add_test(tc, test_pollops_wait_returns_timeout_at_once);
        tcase_add_test(tc, test_pollops_wait_returns_not_pollable_before_consuming_ready);
        tcase_add_test(tc, test_pollops_wait_consumes_latched_ready);
        tcase_add_test(tc, test_pollops_wait_parked_reader_woken_by_readiness_gets_ok);
        tcase_add_test(tc, test_pollops_wait_parked_writer_woken_by_readiness_gets_ok);
        tcase_add_test(tc, test_pollops_wait_twice_same_mode_is_ebusy);
        tcase_add_test(tc, test_pollops_wait_rejects_bad_mode);
        tcase_add_test(tc, test_pollops_wait_arm_kind_reported_in_wake);
        tcase_add_test(tc, test_pollops_wait_canceled_stays_parked_through_unblock);
        tcase_add_test(tc, test_pollops_wait_canceled_stays_parked_through_deadline);
        tcase_add_test(tc, test_pollops_wait_canceled_parks_despite_errors);

        tc = tcase_new(s, "ready");
        tcase_add_test(tc, test_pollops_ready_mode_computation);
        tcase_add_test(tc, test_pollops_ready_exact_epollerr_sets_event_err);
        tcase_add_test(tc, test_pollops_ready_event_without_mode_keeps_event_err);
        tcase_add_test(tc, test_pollops_ready_latches_once_without_waiter);
        tcase_add_test(tc, test_pollops_ready_wakes_only_matching_mode);
        tcase_add_test(tc, test_pollops_ready_wakes_one_descriptor_only);
        tcase_add_test(tc, test_pollops_timeout_and_closing_never_latch);
        tcase_add_test(tc, test_pollops_epollerr_wakes_reader_with_ok_then_read_is_not_pollable);

        tc = tcase_new(s, "deadline");
        tcase_add_test(tc, test_pollops_set_deadline_positive_is_relative_to_now);
        tcase_add_test(tc, test_pollops_set_deadline_overflow_clamps_to_max);
        tcase_add_test(tc, test_pollops_set_deadline_negative_expires_and_wakes_only_that_mode);
        tcase_add_test(tc, test_pollops_set_deadline_negative_rw_wakes_both);
        tcase_add_test(tc, test_pollops_set_deadline_negative_disarms_pending_timer);
        tcase_add_test(tc, test_pollops_set_deadline_zero_clears);
        tcase_add_test(tc, test_pollops_set_deadline_zero_after_expiry_allows_waiting);
        tcase_add_test(tc, test_pollops_separate_read_and_write_deadlines_fire_independently);
        tcase_add_test(tc, test_pollops_equal_deadlines_share_one_combined_timer);
        tcase_add_test(tc, test_pollops_equal_deadlines_set_separately_combine);
        tcase_add_test(tc, test_pollops_combined_timer_splits_when_one_side_changes);
        tcase_add_test(tc, test_pollops_combined_timer_splits_when_read_side_cleared);
        tcase_add_test(tc, test_pollops_combined_timer_moves_to_new_common_deadline);
        tcase_add_test(tc, test_pollops_combined_timer_is_guarded_by_rseq);
        tcase_add_test(tc, test_pollops_set_deadline_extension_moves_timer_later);
        tcase_add_test(tc, test_pollops_set_deadline_shortening_moves_timer_earlier);
        tcase_add_test(tc, test_pollops_set_deadline_refresh_keeps_timer);
        tcase_add_test(tc, test_pollops_set_deadline_after_expiry_rearms);
        tcase_add_test(tc, test_pollops_set_deadline_is_noop_when_closing);
        tcase_add_test(tc, test_pollops_set_deadline_rejects_bad_mode);

        tc = tcase_new(s, "timers");
        tcase_add_test(tc, test_pollops_stale_read_timer_does_nothing);
        tcase_add_test(tc, test_pollops_stale_write_timer_does_nothing);
        tcase_add_test(tc, test_pollops_timer_never_fires_early);
        tcase_add_test(tc, test_pollops_timer_fire_without_waiter_only_expires);

        tc = tcase_new(s, "unblock-close");
        tcase_add_test(tc, test_pollops_unblock_wakes_waiters_with_closing);
        tcase_add_test(tc, test_pollops_unblock_disarms_combined_timer);
        tcase_add_test(tc, test_pollops_unblock_twice_is_ealready);
        tcase_add_test(tc, test_pollops_close_before_unblock_is_ebusy);
        tcase_add_test(tc, test_pollops_close_with_parked_wait_canceled_is_ebusy);
        tcase_add_test(tc, test_pollops_close_after_unblock_succeeds);

        tc = tcase_new(s, "reset");
        tcase_add_test(tc, test_pollops_reset_returns_check_code);
        tcase_add_test(tc, test_pollops_reset_discards_latched_ready_of_that_mode_only);
        tcase_add_test(tc, test_pollops_reset_failing_check_keeps_latched_ready);
        tcase_add_test(tc, test_pollops_reset_leaves_parked_waiter_parked);
        tcase_add_test(tc, test_pollops_reset_rejects_bad_mode);

        tc = tcase_new(s, "release");
        tcase_add_test(tc, test_pollops_release_drops_waiters_without_wake);
        tcase_add_test(tc, test_pollops_release_after_unblock);

        tc = tcase_new(s, "lifecycle");
        tcase_add_test(tc, test_pollops_owner_counters_exact_through_lifecycle);
        tcase_add_test(tc, test_pollops_open_resets_reused_slot);
        tcase_add_test(tc, test_pollops_open_on_reused_slot_bumps_seqs);
        tcase_add_test(tc, test_pollops_popped_write_timer_from_previous_life_is_ignored);
        tcase_add_test(tc, test_pollops_popped_read_timer_after_deadline_cleared_is_ignored);
        return s;
}
