/*
 * Closes the fds clients handed to the daemon, off the loop thread.
 *
 * close() of the last copy of a file can block for as long as the file
 * likes: a TCP socket with unsent data and SO_LINGER waits up to l_linger
 * seconds (INT_MAX is allowed), a serial tty drains its output, a FUSE
 * file sends FLUSH to a server that may never answer.  A client controls
 * all of that, so the loop never closes a client's fd itself: it hands the
 * fd to the closer (closer_close, which never blocks) and goes on.
 *
 * Worker threads take fds from a FIFO queue and close them, a run of one
 * uid's at a time.  The loop queues fds during its turn and wakes a worker
 * once (closer_tick), not per fd.  One worker is started with the first fd;
 * another (up to CLOSER_MAX_WORKERS) when fds wait and every worker has
 * been busy for CLOSER_STUCK_NS.  Workers run at a lower priority than the
 * loop (nice + 19, the kernel's default slice): closing is never urgent.
 * At most CLOSER_PER_ACCOUNT workers work on one uid's fds at a time, so a
 * uid whose closes hang holds that many threads and its own queued fds,
 * and every other uid's fds still close.  Until an fd is closed it stays
 * charged to its uid (Account.fds), so a uid cannot pile up closes beyond
 * its descriptor quota.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "account.h"

#define CLOSER_MAX_WORKERS 64
#define CLOSER_PER_ACCOUNT 4
#define CLOSER_STUCK_NS (2 * 1000000)

typedef struct CloserItem {
        int fd;
        Account *acct;
} CloserItem;

typedef struct CloserWorker {
        struct Closer *closer;
        pthread_t thread;
        int64_t busy_since; /* 0: idle */
        Account *acct;      /* whose fd it is closing */
} CloserWorker;

typedef struct Closer {
        pthread_mutex_t lock;
        pthread_cond_t wake; /* an fd was queued, or stop */
        pthread_cond_t idle; /* the queue became empty */
        Accounts *accounts;
        CloserItem *q; /* ring of cap items */
        uint32_t head, len, cap;
        CloserWorker *workers[CLOSER_MAX_WORKERS];
        uint32_t n_workers, n_waiting; /* started; blocked on `wake` */
        uint64_t closed;               /* fds closed so far */
        uint64_t started;              /* workers started so far */
        bool stop;
        /* Called by a worker after a batch when the loop asked for it
         * (closer_want_wake): the loop's eventfd, so that a connection
         * held for its uid's closes is read again at once. */
        void (*loop_wake)(void *arg);
        void *loop_wake_arg;
        atomic_bool want_wake;
} Closer;

/* 0 or -errno.  accounts (borrowed) is charged back as fds close. */
int closer_init(Closer *c, Accounts *accounts);

/*
 * Consumes fd (a client's, already charged to acct with accounts_fds): it
 * is closed by a worker once the next closer_tick wakes one, and acct
 * uncharged then.  Never blocks on the fd.  Should memory run out, the fd
 * is closed here, as a last resort.
 */
void closer_close(Closer *c, int fd, Account *acct);

/* Wakes a worker for the fds queued since the last call, or starts one
 * when there is none or every one is stuck.  The loop calls it every turn.
 * Returns when it should be called again (CLOCK_MONOTONIC ns), INT64_MAX:
 * not needed. */
int64_t closer_tick(Closer *c, int64_t now);

/* The next batch a worker finishes calls c->loop_wake once. */
void closer_want_wake(Closer *c);

/* Fds queued and not yet taken by a worker (for status and tests). */
uint32_t closer_pending(Closer *c);

/* Waits up to timeout_ns for the queue to empty, then stops the idle
 * workers; workers stuck in a close are left to the process exit.
 * Returns whether every worker is gone (else the closer and the accounts
 * it charges must stay allocated). */
bool closer_done(Closer *c, int64_t timeout_ns);
