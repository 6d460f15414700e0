/*
 * Go's runtime/netpoll.go state machine, single-threaded: the file as of
 * Go 1.17 (src/runtime/netpoll.go at the go1.17 tag).  Later changes that
 * matter here are done elsewhere: Go 1.21's fdseq (golang/go#59545) is the
 * pollcache's generations.  Reading an epoll event's bits as modes is
 * netpoll_epoll.go's part in Go, and poller.c's here (poller_event_mode).
 *
 * The daemon runs one event loop, so the runtime's atomics and per-pollDesc
 * lock become plain fields, and "a goroutine parks on rg/wg" becomes "a
 * client request is recorded in rg/wg until its outcome is known".  The
 * order of checks is the runtime's, so each call returns what the runtime
 * would: pollWait checks errors before it looks at the semaphore, a parked
 * pollWait woken without readiness re-checks errors and parks again when it
 * finds none, and pollWaitCanceled ends on readiness only.
 *
 * Invariants: a semaphore is PARKED only while owner->waiters counts it; a
 * PollTimer's node is armed only while owner->timers counts it; fn != NONE
 * means "a deadline function is set" as rt.f != nil does in Go, whether or
 * not its timer is still armed (it stays set after firing).
 */
#include "pollops.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>

#include "../common/cleanup.h"

static bool mode_is_rw(int mode)
{
        return mode == POLL_MODE_R || mode == POLL_MODE_W;
}

static PollSem *sem_of(PollDesc *pd, int mode)
{
        return mode == POLL_MODE_R ? &pd->rg : &pd->wg;
}

static void timer_arm(PollOps *ops, PollDesc *pd, PollTimer *pt, int64_t when, PollTimerFn fn,
                      uint32_t seq)
{
        if (!pt->counted) {
                pd->owner->timers++;
                pt->counted = true;
        }
        pt->fn = (uint8_t)fn;
        pt->seq = seq;
        timers_arm(ops->timers, &pt->node, when);
}

/* deltimer and "f = nil".  A timer already popped but not yet run stays
 * out of the heap and does nothing when it runs (its seq was bumped). */
static void timer_clear(PollOps *ops, PollDesc *pd, PollTimer *pt)
{
        timers_disarm(ops->timers, &pt->node);
        if (pt->counted) {
                pd->owner->timers--;
                pt->counted = false;
        }
        pt->fn = POLL_TIMER_NONE;
}

int pollops_checkerr(const PollDesc *pd, int mode)
{
        if (pd->closing)
                return POLL_ERR_CLOSING;
        if ((mode == POLL_MODE_R && pd->rd < 0) || (mode == POLL_MODE_W && pd->wd < 0))
                return POLL_ERR_TIMEOUT;
        /* Only reads report an event-scanning error: a write reports a
         * more specific error from the write call itself. */
        if (mode == POLL_MODE_R && pd->event_err)
                return POLL_ERR_NOT_POLLABLE;
        return POLL_NO_ERROR;
}

/*
 * netpollunblock plus what the woken goroutine does next.  ioready: the
 * readiness is latched when nobody waits, or ends the parked wait with
 * NO_ERROR.  Otherwise (timeout, close) nothing is latched and a parked
 * waiter re-runs its loop: pollWait ends with the error it now sees, or
 * parks again if there is none; pollWaitCanceled always parks again.
 */
static void sem_unblock(PollOps *ops, PollDesc *pd, int mode, bool ioready)
{
        PollSem *sem = sem_of(pd, mode);
        int result;

        if (sem->state == POLL_SEM_READY)
                return;
        if (sem->state == POLL_SEM_NIL) {
                if (ioready)
                        sem->state = POLL_SEM_READY;
                return;
        }
        if (ioready)
                result = POLL_NO_ERROR;
        else if (sem->kind == POLL_WAIT_CANCELED)
                return;
        else {
                result = pollops_checkerr(pd, mode);
                if (result == POLL_NO_ERROR)
                        return;
        }
        PollSem waiter = *sem;
        *sem = (PollSem){ .state = POLL_SEM_NIL };
        ops->wake(ops, pd, mode, waiter, result);
}

void pollops_open(PollOps *ops, PollDesc *pd, PollOwner *owner, int fd, uint64_t user)
{
        (void)ops;
        /* Slots are type-stable: rseq/wseq keep counting across reuse, so a
         * timer of a previous life can never match. */
        pd->owner = owner;
        pd->user = user;
        pd->fd = fd;
        pd->closing = false;
        pd->event_err = false;
        pd->kind = 0;
        pd->rseq++;
        pd->rg = (PollSem){ .state = POLL_SEM_NIL };
        pd->rd = 0;
        pd->wseq++;
        pd->wg = (PollSem){ .state = POLL_SEM_NIL };
        pd->wd = 0;
        if (!timer_armed(&pd->rt.node))
                timer_init(&pd->rt.node);
        if (!timer_armed(&pd->wt.node))
                timer_init(&pd->wt.node);
        pd->rt.fn = pd->wt.fn = POLL_TIMER_NONE;
        pd->rt.is_write = false;
        pd->wt.is_write = true;
        pd->rt.counted = pd->wt.counted = false;
        owner->descriptors++;
}

int pollops_close(PollOps *ops, PollDesc *pd)
{
        (void)ops;
        if (!pd->closing)
                return -EBUSY; /* runtime: close polldesc w/o unblock */
        if (pd->wg.state == POLL_SEM_PARKED || pd->rg.state == POLL_SEM_PARKED)
                return -EBUSY; /* runtime: blocked read/write on closing polldesc */
        pd->owner->descriptors--;
        return 0;
}

void pollops_release(PollOps *ops, PollDesc *pd)
{
        pd->closing = true;
        pd->rseq++;
        pd->wseq++;
        timer_clear(ops, pd, &pd->rt);
        timer_clear(ops, pd, &pd->wt);
        if (pd->rg.state == POLL_SEM_PARKED)
                pd->owner->waiters--;
        if (pd->wg.state == POLL_SEM_PARKED)
                pd->owner->waiters--;
        pd->rg = pd->wg = (PollSem){ .state = POLL_SEM_NIL };
        pd->owner->descriptors--;
}

int pollops_reset(PollOps *ops, PollDesc *pd, int mode)
{
        (void)ops;
        if (!mode_is_rw(mode))
                return -EINVAL;
        int errcode = pollops_checkerr(pd, mode);
        if (errcode != POLL_NO_ERROR)
                return errcode;
        PollSem *sem = sem_of(pd, mode);
        /* Go stores nil unconditionally, which in the runtime only ever
         * discards a latched pdReady (internal/poll resets before it waits,
         * under its fdMutex).  Here another thread's wait may be parked: it
         * holds no latched readiness, so it is left parked, not lost. */
        if (sem->state == POLL_SEM_READY)
                sem->state = POLL_SEM_NIL;
        return POLL_NO_ERROR;
}

int pollops_wait(PollOps *ops, PollDesc *pd, int mode, PollWaitKind kind, uint64_t req)
{
        (void)ops;
        if (!mode_is_rw(mode))
                return -EINVAL;
        if (kind != POLL_WAIT_CANCELED) {
                int errcode = pollops_checkerr(pd, mode);
                if (errcode != POLL_NO_ERROR)
                        return errcode;
        }
        /* netpollblock */
        PollSem *sem = sem_of(pd, mode);
        if (sem->state == POLL_SEM_READY) {
                sem->state = POLL_SEM_NIL;
                return POLL_NO_ERROR;
        }
        if (sem->state == POLL_SEM_PARKED)
                return -EBUSY; /* runtime: double wait */
        *sem = (PollSem){ .state = POLL_SEM_PARKED, .kind = (uint8_t)kind, .req = req };
        pd->owner->waiters++;
        return POLL_PARKED;
}

int pollops_set_deadline(PollOps *ops, PollDesc *pd, int64_t d, int mode)
{
        /* now + d, clamped to the maximum on overflow */
        if (d > 0 && __builtin_add_overflow(d, ops->now, &d))
                d = INT64_MAX;
        return pollops_set_deadline_at(ops, pd, d, mode);
}

int pollops_set_deadline_at(PollOps *ops, PollDesc *pd, int64_t d, int mode)
{
        if (!mode_is_rw(mode) && mode != POLL_MODE_RW)
                return -EINVAL;
        if (pd->closing)
                return 0;
        int64_t rd0 = pd->rd, wd0 = pd->wd;
        bool combo0 = rd0 > 0 && rd0 == wd0;
        if (mode == POLL_MODE_R || mode == POLL_MODE_RW)
                pd->rd = d;
        if (mode == POLL_MODE_W || mode == POLL_MODE_RW)
                pd->wd = d;
        bool combo = pd->rd > 0 && pd->rd == pd->wd;
        PollTimerFn rtf = combo ? POLL_TIMER_BOTH : POLL_TIMER_READ;

        if (pd->rt.fn == POLL_TIMER_NONE) {
                if (pd->rd > 0)
                        timer_arm(ops, pd, &pd->rt, pd->rd, rtf, pd->rseq);
        } else if (pd->rd != rd0 || combo != combo0) {
                pd->rseq++; /* invalidate current timers */
                if (pd->rd > 0)
                        timer_arm(ops, pd, &pd->rt, pd->rd, rtf, pd->rseq);
                else
                        timer_clear(ops, pd, &pd->rt);
        }
        if (pd->wt.fn == POLL_TIMER_NONE) {
                if (pd->wd > 0 && !combo)
                        timer_arm(ops, pd, &pd->wt, pd->wd, POLL_TIMER_WRITE, pd->wseq);
        } else if (pd->wd != wd0 || combo != combo0) {
                pd->wseq++;
                if (pd->wd > 0 && !combo)
                        timer_arm(ops, pd, &pd->wt, pd->wd, POLL_TIMER_WRITE, pd->wseq);
                else
                        timer_clear(ops, pd, &pd->wt);
        }
        /* A deadline in the past unblocks pending I/O. */
        if (pd->rd < 0)
                sem_unblock(ops, pd, POLL_MODE_R, false);
        if (pd->wd < 0)
                sem_unblock(ops, pd, POLL_MODE_W, false);
        return 0;
}

int pollops_unblock(PollOps *ops, PollDesc *pd)
{
        if (pd->closing)
                return -EALREADY; /* runtime: unblock on closing polldesc */
        pd->closing = true;
        pd->rseq++;
        pd->wseq++;
        sem_unblock(ops, pd, POLL_MODE_R, false);
        sem_unblock(ops, pd, POLL_MODE_W, false);
        timer_clear(ops, pd, &pd->rt);
        timer_clear(ops, pd, &pd->wt);
        return 0;
}

void pollops_ready(PollOps *ops, PollDesc *pd, int mode, bool event_err)
{
        assert(mode == 0 || mode_is_rw(mode) || mode == POLL_MODE_RW);
        if (mode == 0)
                return; /* netpoll calls neither setEventErr nor netpollready */
        pd->event_err = event_err;
        if (mode == POLL_MODE_R || mode == POLL_MODE_RW)
                sem_unblock(ops, pd, POLL_MODE_R, true);
        if (mode == POLL_MODE_W || mode == POLL_MODE_RW)
                sem_unblock(ops, pd, POLL_MODE_W, true);
}

void pollops_timer_fire(PollOps *ops, Timer *t)
{
        PollTimer *pt = container_of(t, PollTimer, node);
        /* Which descriptor, from the node's fixed identity, never from its
         * current function: that may have changed since the pop. */
        PollDesc *pd = pt->is_write ? container_of(pt, PollDesc, wt) : container_of(pt, PollDesc, rt);

        /* The node has left the heap; fn stays set, as rt.f does in Go. */
        if (pt->counted) {
                pd->owner->timers--;
                pt->counted = false;
        }
        if (pt->seq != (pt->is_write ? pd->wseq : pd->rseq))
                return; /* descriptor reused or timers reset */
        /* The seq matches, so fn is the one the timer was armed with. */
        bool read = pt->fn == POLL_TIMER_READ || pt->fn == POLL_TIMER_BOTH;
        bool write = pt->fn == POLL_TIMER_WRITE || pt->fn == POLL_TIMER_BOTH;
        if (read) {
                if (pd->rd <= 0)
                        return; /* inconsistent read deadline: ignore */
                pd->rd = -1;
                sem_unblock(ops, pd, POLL_MODE_R, false);
        }
        if (write) {
                if (pd->wd <= 0)
                        return;
                pd->wd = -1;
                sem_unblock(ops, pd, POLL_MODE_W, false);
        }
}

unsigned pollops_parked(const PollDesc *pd)
{
        return (unsigned)(pd->rg.state == POLL_SEM_PARKED) +
               (unsigned)(pd->wg.state == POLL_SEM_PARKED);
}
