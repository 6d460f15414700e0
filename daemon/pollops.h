/*
 * The netpoll state machine of Go's runtime/netpoll.go, as pure logic.
 *
 * A PollDesc is one registered descriptor.  Its read and write semaphores
 * (rg, wg) are NIL, READY (readiness latched, nobody waiting) or PARKED (a
 * client request is waiting on it); its deadlines rd/wd are 0 (none), a
 * CLOCK_MONOTONIC time, or -1 (expired).  Nothing here makes a system call:
 * the caller registers the fd with epoll, closes it and frees the slot, and
 * learns of every ended wait through PollOps.wake.
 *
 * Where the runtime throws (double wait, unblock twice, close without
 * unblock, close with a parked waiter) these functions return a negative
 * errno and change nothing.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "timers.h"

/* Outcomes, as internal/poll defines them (NP_OK ... NP_ERR_NOT_POLLABLE). */
enum {
        POLL_NO_ERROR = 0,
        POLL_ERR_CLOSING = 1,
        POLL_ERR_TIMEOUT = 2,
        POLL_ERR_NOT_POLLABLE = 3,
};

/* pollops_wait() result meaning "parked; the outcome comes through wake". */
#define POLL_PARKED 0x100

enum { POLL_MODE_R = 'r', POLL_MODE_W = 'w', POLL_MODE_RW = 'r' + 'w' };

typedef enum PollSemState {
        POLL_SEM_NIL = 0,
        POLL_SEM_READY = 1,
        POLL_SEM_PARKED = 2,
} PollSemState;

/* How a parked waiter ends (Go: pollWait, pollWaitCanceled; ARM is an
 * asynchronous pollWait whose outcome the caller reports as an event). */
typedef enum PollWaitKind {
        POLL_WAIT = 1,
        POLL_WAIT_CANCELED = 2,
        POLL_WAIT_ARM = 3,
} PollWaitKind;

/* Packed: 10 bytes instead of 16, two per descriptor. */
typedef struct __attribute__((packed)) PollSem {
        uint8_t state; /* PollSemState */
        uint8_t kind;  /* PollWaitKind of the parked waiter */
        uint64_t req;  /* caller's id of the parked request */
} PollSem;

/* Which deadline function a timer runs (Go: rt.f / wt.f); NONE = nil. */
typedef enum PollTimerFn {
        POLL_TIMER_NONE = 0,
        POLL_TIMER_READ = 1,
        POLL_TIMER_WRITE = 2,
        POLL_TIMER_BOTH = 3,
} PollTimerFn;

typedef struct PollTimer {
        Timer node;
        uint32_t seq;     /* rseq / wseq when armed */
        uint8_t fn;       /* PollTimerFn */
        uint8_t is_write; /* fixed: this is the descriptor's wt (else rt) */
        uint8_t counted;  /* counted in owner->timers: armed, or popped and not yet run */
} PollTimer;

/* Per-connection counters, and the owner identity of a descriptor. */
typedef struct PollOwner {
        uint64_t descriptors;
        uint64_t waiters; /* parked waits whose outcome is not yet delivered */
        uint64_t timers;  /* armed deadline timers */
        uint32_t first;   /* pollcache's list of its slots: index + 1, 0: empty */
        uint32_t linked;  /* slots on that list */
} PollOwner;

/* Laid out to fit with the pollcache's slot header in 128 bytes. */
typedef struct PollDesc {
        PollOwner *owner; /* NULL while the slot is free */
        uint64_t user;    /* while free: the pollcache's free-list link */
        int64_t rd, wd;
        PollTimer rt, wt;
        uint32_t rseq, wseq;
        int fd;
        PollSem rg, wg;
        bool closing;
        bool event_err;
        uint8_t kind; /* what file it is, for introspection (admin-descs.c); 0: not known yet */
        uint32_t file_key; /* its file in the owner's FileCount (filecount.h), 0: none */
} PollDesc;

typedef struct PollOps PollOps;

/*
 * Called for every parked waiter whose wait ended: mode 'r' or 'w', the
 * waiter as it was parked, and the outcome (POLL_NO_ERROR .. ERR_NOT_POLLABLE).
 * The semaphore is already NIL again.  The callee owns the owner->waiters
 * decrement, which it makes once the outcome is delivered.
 */
typedef void (*PollWakeFn)(PollOps *ops, PollDesc *pd, int mode, PollSem waiter, int result);

struct PollOps {
        Timers *timers;
        int64_t now; /* CLOCK_MONOTONIC ns; the caller refreshes it */
        PollWakeFn wake;
};

/* pollOpen's initialisation of a fresh slot for fd (borrowed) and owner. */
void pollops_open(PollOps *ops, PollDesc *pd, PollOwner *owner, int fd, uint64_t user);

/* pollClose's checks.  Returns 0 when the caller may unregister, close and
 * free the descriptor; -EBUSY when not unblocked or a waiter is parked. */
int pollops_close(PollOps *ops, PollDesc *pd);

/* Releases a descriptor whose connection is gone: waiters are dropped
 * without wake, timers disarmed.  The caller then closes and frees it. */
void pollops_release(PollOps *ops, PollDesc *pd);

/* netpollcheckerr: POLL_ERR_CLOSING, _TIMEOUT, _NOT_POLLABLE or NO_ERROR. */
int pollops_checkerr(const PollDesc *pd, int mode);

/* pollReset.  Returns the check's code, or -EINVAL for a bad mode. */
int pollops_reset(PollOps *ops, PollDesc *pd, int mode);

/* pollWait / pollWaitCanceled / arm.  Returns an outcome code if the wait
 * ends at once, POLL_PARKED if it parked (req is handed back to wake), or
 * -EBUSY (a wait of that mode is already parked) / -EINVAL (bad mode). */
int pollops_wait(PollOps *ops, PollDesc *pd, int mode, PollWaitKind kind, uint64_t req);

/* pollSetDeadline with a relative d (ns): >0 now+d, <0 expired, 0 none.
 * Returns 0, or -EINVAL for a bad mode. */
int pollops_set_deadline(PollOps *ops, PollDesc *pd, int64_t d, int mode);

/* The same with d > 0 an absolute CLOCK_MONOTONIC time (what pollSetDeadline
 * computes as nanotime() + d); a time already past expires at the next timer
 * run, as in Go. */
int pollops_set_deadline_at(PollOps *ops, PollDesc *pd, int64_t d, int mode);

/* pollUnblock.  Returns 0, or -EALREADY when already closing. */
int pollops_unblock(PollOps *ops, PollDesc *pd);

/* What netpoll does with one event once it has read it as a mode
 * (poller_event_mode, poller_event_err): setEventErr(event_err), then
 * netpollready.  mode is POLL_MODE_R, _W or _RW; 0 changes nothing, not
 * even event_err, as netpoll calls neither for an event without a mode. */
void pollops_ready(PollOps *ops, PollDesc *pd, int mode, bool event_err);

/* Runs a due timer popped from ops->timers (netpolldeadlineimpl).  Safe
 * however the descriptor changed after the pop: a timer whose descriptor
 * was reset, unblocked, released or reused since it was armed does nothing
 * (its seq no longer matches), and the timer count it was charged to is
 * released exactly once. */
void pollops_timer_fire(PollOps *ops, Timer *t);

/* Number of parked waiters on pd (0..2). */
unsigned pollops_parked(const PollDesc *pd);
