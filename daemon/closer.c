/*
 * The closer (closer.h): a FIFO of client fds and the threads that close
 * them.  The queue is a ring under one mutex; the loop pushes (O(1)
 * amortised) and workers pop the first fd whose uid has fewer than
 * CLOSER_PER_ACCOUNT workers on it, so a uid whose closes hang is passed
 * over.  Workers block on a condition variable when the queue is empty and
 * leave after a while of idleness, the first one excepted.
 */
#include "closer.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/clock.h"
#include "cpuslice.h"

#define CLOSER_IDLE_EXIT_NS (10 * NSEC_PER_SEC)
#define CLOSER_STACK (64 * 1024)
#define CLOSER_NICE 19
#define CLOSER_BATCH 64 /* fds of one uid a worker takes per lock */

int closer_init(Closer *c, Accounts *accounts)
{
        *c = (Closer){ .accounts = accounts };
        pthread_condattr_t ca;
        int r = -pthread_mutex_init(&c->lock, NULL);

        if (r < 0)
                return r;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        r = -pthread_cond_init(&c->wake, &ca);
        if (r == 0)
                r = -pthread_cond_init(&c->idle, &ca);
        pthread_condattr_destroy(&ca);
        return r;
}

void closer_want_wake(Closer *c)
{
        atomic_store(&c->want_wake, true);
}

/* Takes the first queued fd whose uid may have another worker, and the
 * ones of the same uid right behind it (at most max, so one lock serves a
 * connection's teardown; a close that hangs holds up only its own uid's).
 * The ring keeps the others in order.  Under the lock.  Returns how many. */
static uint32_t closer_pop(Closer *c, CloserItem *ret, uint32_t max)
{
        for (uint32_t i = 0; i < c->len; i++) {
                uint32_t at = (c->head + i) % c->cap;
                Account *acct = c->q[at].acct;
                if (acct && acct->closing >= CLOSER_PER_ACCOUNT)
                        continue;
                uint32_t n = 0;
                while (n < max && i + n < c->len && c->q[(c->head + i + n) % c->cap].acct == acct) {
                        ret[n] = c->q[(c->head + i + n) % c->cap];
                        n++;
                }
                /* Close the gap: shift the ones before it up by n. */
                for (uint32_t k = i; k > 0; k--)
                        c->q[(c->head + k - 1 + n) % c->cap] = c->q[(c->head + k - 1) % c->cap];
                c->head = (c->head + n) % c->cap;
                c->len -= n;
                return n;
        }
        return 0;
}

static void timespec_at(struct timespec *ts, int64_t ns)
{
        ts->tv_sec = (time_t)(ns / NSEC_PER_SEC);
        ts->tv_nsec = (long)(ns % NSEC_PER_SEC);
}

static void *closer_main(void *arg)
{
        CloserWorker *w = arg;
        Closer *c = w->closer;
        CloserItem it[CLOSER_BATCH];
        uint32_t n;
        CpuSlice got;

        /* Closing is never urgent (the fd stays charged to its uid until
         * it is done): a worker yields its CPU to the loop and to clients.
         * It inherits the loop thread's long slice and nice value; it gets
         * the kernel's default slice and nice + 19 (Linux: per thread), which
         * still gets a share of a busy CPU, so closes never stop. */
        (void)!nice(CLOSER_NICE);
        (void)cpuslice_set(0, &got);

        pthread_mutex_lock(&c->lock);
        for (;;) {
                while (!(n = closer_pop(c, it, CLOSER_BATCH))) {
                        if (c->len == 0)
                                pthread_cond_broadcast(&c->idle);
                        if (c->stop)
                                goto out;
                        struct timespec ts;
                        timespec_at(&ts, now_ns() + CLOSER_IDLE_EXIT_NS);
                        c->n_waiting++;
                        int r = pthread_cond_timedwait(&c->wake, &c->lock, &ts);
                        c->n_waiting--;
                        /* Idle for long: all but the first worker leave. */
                        if (r == ETIMEDOUT && c->len == 0 && w != c->workers[0])
                                goto out;
                }
                Account *acct = it[0].acct;
                w->busy_since = now_ns();
                w->acct = acct;
                if (acct)
                        acct->closing++;
                pthread_mutex_unlock(&c->lock);

                for (uint32_t i = 0; i < n; i++) {
                        close(it[i].fd);
                        if (acct) {
                                atomic_fetch_sub(&acct->closing_fds, 1);
                                accounts_fds(c->accounts, acct, -1);
                        }
                }

                if (c->loop_wake && atomic_exchange(&c->want_wake, false))
                        c->loop_wake(c->loop_wake_arg);
                pthread_mutex_lock(&c->lock);
                if (acct)
                        acct->closing--;
                w->busy_since = 0;
                w->acct = NULL;
                c->closed += n;
                pthread_cond_broadcast(&c->idle); /* closer_done may wait for this */
        }
out:
        /* Leave the slot to a later worker; the last one out of a stopping
         * closer frees nothing here (closer_done does). */
        for (uint32_t i = 0; i < c->n_workers; i++)
                if (c->workers[i] == w) {
                        c->workers[i] = c->workers[--c->n_workers];
                        c->workers[c->n_workers] = NULL;
                        break;
                }
        pthread_cond_broadcast(&c->idle);
        pthread_mutex_unlock(&c->lock);
        free(w);
        return NULL;
}

/* Starts one worker.  Under the lock.  0 or -errno. */
static int closer_spawn(Closer *c)
{
        CloserWorker *w;
        pthread_attr_t attr;
        sigset_t all, old;
        int r;

        if (c->n_workers >= CLOSER_MAX_WORKERS)
                return -EAGAIN;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->closer = c;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, CLOSER_STACK);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* Workers take no signals: the loop reads them from its signalfd. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = -pthread_create(&w->thread, &attr, closer_main, w);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        if (r < 0) {
                free(w);
                return r;
        }
        c->workers[c->n_workers++] = w;
        c->started++;
        return 0;
}

/* Whether every worker is stuck (or there is none).  Under the lock. */
static bool closer_all_stuck(const Closer *c, int64_t now)
{
        for (uint32_t i = 0; i < c->n_workers; i++)
                if (!c->workers[i]->busy_since ||
                    now - c->workers[i]->busy_since < CLOSER_STUCK_NS)
                        return false;
        return true;
}

void closer_close(Closer *c, int fd, Account *acct)
{
        if (fd < 0)
                return;
        pthread_mutex_lock(&c->lock);
        if (c->len == c->cap) {
                uint32_t cap = c->cap ? c->cap * 2 : 256;
                CloserItem *q = malloc(cap * sizeof(*q));
                if (!q) {
                        pthread_mutex_unlock(&c->lock);
                        /* Out of memory: better a possible stall than a leak. */
                        close(fd);
                        if (acct)
                                accounts_fds(c->accounts, acct, -1);
                        return;
                }
                for (uint32_t i = 0; i < c->len; i++)
                        q[i] = c->q[(c->head + i) % c->cap];
                free(c->q);
                c->q = q;
                c->head = 0;
                c->cap = cap;
        }
        c->q[(c->head + c->len) % c->cap] = (CloserItem){ .fd = fd, .acct = acct };
        c->len++;
        if (acct)
                atomic_fetch_add(&acct->closing_fds, 1);
        /* The loop wakes a worker once a turn (closer_tick), not per fd. */
        pthread_mutex_unlock(&c->lock);
}

int64_t closer_tick(Closer *c, int64_t now)
{
        int64_t next = INT64_MAX;

        pthread_mutex_lock(&c->lock);
        if (c->len > 0 && c->n_workers == 0)
                (void)closer_spawn(c); /* on failure, the next tick tries again */
        if (c->len > 0 && c->n_waiting > 0)
                pthread_cond_signal(&c->wake);
        else if (c->len > 0) {
                if (closer_all_stuck(c, now))
                        (void)closer_spawn(c);
                /* Look again once the newest busy worker could count as stuck. */
                if (c->n_workers < CLOSER_MAX_WORKERS)
                        next = now + CLOSER_STUCK_NS;
        }
        pthread_mutex_unlock(&c->lock);
        return next;
}

uint32_t closer_pending(Closer *c)
{
        pthread_mutex_lock(&c->lock);
        uint32_t n = c->len;
        pthread_mutex_unlock(&c->lock);
        return n;
}

/* Whether any worker is inside a close.  Under the lock. */
static bool closer_busy(const Closer *c)
{
        for (uint32_t i = 0; i < c->n_workers; i++)
                if (c->workers[i]->busy_since)
                        return true;
        return false;
}

bool closer_done(Closer *c, int64_t timeout_ns)
{
        int64_t until = now_ns() + timeout_ns;
        struct timespec ts;

        pthread_mutex_lock(&c->lock);
        /* Every fd queued and taken is closed, or the time is up (a close
         * that hangs is left to the process exit). */
        for (int64_t now = now_ns(); (c->len > 0 || closer_busy(c)) && now < until;
             now = now_ns()) {
                if (c->len > 0 && (c->n_workers == 0 || closer_all_stuck(c, now)))
                        (void)closer_spawn(c);
                pthread_cond_broadcast(&c->wake);
                timespec_at(&ts, now + CLOSER_STUCK_NS < until ? now + CLOSER_STUCK_NS : until);
                pthread_cond_timedwait(&c->idle, &c->lock, &ts);
        }
        c->stop = true;
        pthread_cond_broadcast(&c->wake);
        /* Idle workers leave at once; wait for them, not for stuck ones. */
        timespec_at(&ts, until);
        while (c->n_workers > 0 && !closer_busy(c) && now_ns() < until)
                pthread_cond_timedwait(&c->idle, &c->lock, &ts);
        bool gone = c->n_workers == 0;
        pthread_mutex_unlock(&c->lock);
        if (gone) {
                free(c->q);
                c->q = NULL;
                pthread_mutex_destroy(&c->lock);
                pthread_cond_destroy(&c->wake);
                pthread_cond_destroy(&c->idle);
        }
        /* Else a stuck worker still uses the closer: the process exit ends it. */
        return gone;
}
