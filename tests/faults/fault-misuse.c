/*
 * Scenario 5: the misuse matrix, from several threads at once.
 *
 * Two connections, four threads on each, share per connection a small pool
 * of eventfd descriptors (8 slots, so threads collide on purpose) and make
 * thousands of random calls: double waits, unblock twice, close without
 * unblock, waits and arms on stale ids (closed earlier on this connection),
 * on the other connection's ids and on junk ids, bad modes, deadlines in
 * the past and a few ms ahead, resets, np_wait_canceled, np_poll.  A ticker
 * thread writes every live eventfd every 2 ms, so every wait ends (waits
 * have deadlines of at most 5 ms; np_wait_canceled ends on readiness).
 *
 * Every result must be one the API allows for that call; where the answer
 * is certain it must be exactly that (-EBADF for stale, foreign and junk
 * ids; -EINVAL or -EBADF for bad modes; -EBUSY for a close without unblock
 * of a descriptor nobody else knows yet; -EALREADY or -EBADF for a second
 * unblock).  Events from np_poll must name a descriptor this connection
 * opened, with a valid mode and outcome.
 *
 * Afterwards: with every deadline moved into the past and the events
 * drained, np_session_stats and np_status must count exactly the
 * descriptors the clients still hold and no waiters or timers; after
 * closing them and disconnecting, the daemon must be at 0/0/0 with its
 * baseline of open fds.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "harness.h"

#define CONNS 2
#define THREADS_PER_CONN 4
#define POOL 8
#define STALE_RING 256
#define EVER_BITS 15 /* hash set of every id a connection opened */
#define MAX_BAD_REPORTS 12

enum { SLOT_EMPTY, SLOT_OPENING, SLOT_LIVE };

typedef struct Slot {
        int state;
        np_desc id;
        int fd;
} Slot;

typedef struct Conn {
        np_client *c;
        pthread_mutex_t lock;
        Slot slot[POOL];
        np_desc stale[STALE_RING];
        size_t n_stale;
        np_desc *ever; /* open addressing, 0 = empty */
        size_t n_ever;
        atomic_long opens, closes, arms_ok, events, bad_events;
} Conn;

static Conn conns[CONNS];
static atomic_long calls, violations;
static atomic_int stop_ticker;
static int ops_per_thread;

static _Atomic(uint64_t) seed_base;

typedef struct Rng {
        uint64_t s;
} Rng;

static uint64_t rnd(Rng *r)
{
        r->s ^= r->s << 13;
        r->s ^= r->s >> 7;
        r->s ^= r->s << 17;
        return r->s;
}

static bool pick(Rng *r, int percent)
{
        return (int)(rnd(r) % 100) < percent;
}

static void ever_add(Conn *k, np_desc id)
{
        size_t mask = ((size_t)1 << EVER_BITS) - 1, i = (size_t)(id * 0x9e3779b97f4a7c15ULL) & mask;

        if (k->n_ever + 1 >= mask)
                return; /* full: membership checks below then answer "unknown" as known */
        while (k->ever[i] && k->ever[i] != id)
                i = (i + 1) & mask;
        if (!k->ever[i]) {
                k->ever[i] = id;
                k->n_ever++;
        }
}

static bool ever_has(Conn *k, np_desc id)
{
        size_t mask = ((size_t)1 << EVER_BITS) - 1, i = (size_t)(id * 0x9e3779b97f4a7c15ULL) & mask;

        if (k->n_ever + 1 >= mask)
                return true;
        while (k->ever[i]) {
                if (k->ever[i] == id)
                        return true;
                i = (i + 1) & mask;
        }
        return false;
}

/* Checks that result r of a call is in the allowed set (terminated by
 * INT32_MIN); reports the first few violations. */
static void expect(const char *call, const char *about, int r, const int *allowed)
{
        atomic_fetch_add(&calls, 1);
        for (const int *a = allowed; *a != INT32_MIN; a++)
                if (r == *a)
                        return;
        long n = atomic_fetch_add(&violations, 1);
        if (n < MAX_BAD_REPORTS) {
                char set[128] = "";
                size_t len = 0;
                for (const int *a = allowed; *a != INT32_MIN && len < sizeof(set) - 16; a++)
                        len += (size_t)snprintf(set + len, sizeof(set) - len, "%s%d",
                                                a == allowed ? "" : ",", *a);
                fault_say("FAIL: %s on %s returned %d (%s); allowed {%s}", call, about, r,
                          np_strerror(r), set);
        }
}

#define ALLOW(...) ((const int[]){ __VA_ARGS__, INT32_MIN })

/* A random live id of k (or 0 when none), and its slot index. */
static np_desc live_id(Conn *k, Rng *r, int *ret_slot)
{
        np_desc id = 0;

        pthread_mutex_lock(&k->lock);
        int i = (int)(rnd(r) % POOL);
        if (k->slot[i].state == SLOT_LIVE)
                id = k->slot[i].id;
        pthread_mutex_unlock(&k->lock);
        if (ret_slot)
                *ret_slot = i;
        return id;
}

static np_desc stale_id(Conn *k, Rng *r)
{
        np_desc id = 0;

        pthread_mutex_lock(&k->lock);
        size_t n = k->n_stale < STALE_RING ? k->n_stale : STALE_RING;
        if (n)
                id = k->stale[rnd(r) % n];
        pthread_mutex_unlock(&k->lock);
        return id;
}

static int rand_mode(Rng *r)
{
        return pick(r, 50) ? NP_READ : NP_WRITE;
}

static int64_t rand_deadline(Rng *r)
{
        return pick(r, 10) ? -1 : (int64_t)(1 + rnd(r) % 5) * NSEC_PER_MSEC_F;
}

/* After np_close(id) returned 0: forget the slot, remember the id. */
static void closed(Conn *k, int i, np_desc id)
{
        pthread_mutex_lock(&k->lock);
        if (k->slot[i].state == SLOT_LIVE && k->slot[i].id == id) {
                close(k->slot[i].fd);
                k->slot[i] = (Slot){ .state = SLOT_EMPTY, .fd = -1 };
        } else {
                for (int j = 0; j < POOL; j++)
                        if (k->slot[j].state == SLOT_LIVE && k->slot[j].id == id) {
                                close(k->slot[j].fd);
                                k->slot[j] = (Slot){ .state = SLOT_EMPTY, .fd = -1 };
                        }
        }
        k->stale[k->n_stale++ % STALE_RING] = id;
        pthread_mutex_unlock(&k->lock);
        atomic_fetch_add(&k->closes, 1);
}

static void op_open(Conn *k, Rng *r)
{
        int i = -1;
        np_desc id;

        pthread_mutex_lock(&k->lock);
        for (int j = 0; j < POOL && i < 0; j++) {
                int s = (int)((rnd(r) + (uint64_t)j) % POOL);
                if (k->slot[s].state == SLOT_EMPTY)
                        i = s;
        }
        if (i >= 0)
                k->slot[i].state = SLOT_OPENING;
        pthread_mutex_unlock(&k->lock);
        if (i < 0)
                return;
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0)
                fault_die("eventfd: %s", strerror(errno));
        int rr = np_open(k->c, fd, (uint64_t)i, &id);
        expect("np_open", "an eventfd", rr, ALLOW(0));
        if (rr < 0) {
                close(fd);
                pthread_mutex_lock(&k->lock);
                k->slot[i].state = SLOT_EMPTY;
                pthread_mutex_unlock(&k->lock);
                return;
        }
        /* Nobody else knows id yet: a close without unblock is -EBUSY. */
        if (pick(r, 50))
                expect("np_close without unblock", "a fresh id", np_close(k->c, id), ALLOW(-EBUSY));
        expect("np_set_deadline", "a fresh id", np_set_deadline(k->c, id, rand_deadline(r), NP_RW),
               ALLOW(0));
        pthread_mutex_lock(&k->lock);
        k->slot[i] = (Slot){ .state = SLOT_LIVE, .id = id, .fd = fd };
        ever_add(k, id);
        pthread_mutex_unlock(&k->lock);
        atomic_fetch_add(&k->opens, 1);
}

static void op_poll(Conn *k, Rng *r)
{
        np_event ev[16];
        int n = np_poll(k->c, pick(r, 50) ? 0 : NSEC_PER_MSEC_F, ev, 16);

        atomic_fetch_add(&calls, 1);
        if (n < 0) {
                expect("np_poll", "its connection", n, ALLOW(0));
                return;
        }
        for (int i = 0; i < n; i++) {
                bool ok = (ev[i].mode == NP_READ || ev[i].mode == NP_WRITE) && ev[i].result >= 0 &&
                          ev[i].result <= NP_ERR_NOT_POLLABLE;
                pthread_mutex_lock(&k->lock);
                ok = ok && ever_has(k, ev[i].desc);
                pthread_mutex_unlock(&k->lock);
                atomic_fetch_add(&k->events, 1);
                if (!ok) {
                        atomic_fetch_add(&k->bad_events, 1);
                        expect("np_poll event", "a descriptor", -1000, ALLOW(0));
                }
        }
}

/* One call on an id the daemon must not know for this connection. */
static void op_unknown(Conn *k, Rng *r, np_desc id, const char *about)
{
        int m = rand_mode(r);

        switch (rnd(r) % 7) {
        case 0:
                expect("np_wait", about, np_wait(k->c, id, m), ALLOW(-EBADF));
                break;
        case 1:
                expect("np_arm", about, np_arm(k->c, id, m), ALLOW(-EBADF));
                break;
        case 2:
                expect("np_reset", about, np_reset(k->c, id, m), ALLOW(-EBADF));
                break;
        case 3:
                expect("np_close", about, np_close(k->c, id), ALLOW(-EBADF));
                break;
        case 4:
                expect("np_unblock", about, np_unblock(k->c, id), ALLOW(-EBADF));
                break;
        case 5:
                expect("np_set_deadline", about, np_set_deadline(k->c, id, rand_deadline(r), NP_RW),
                       ALLOW(-EBADF));
                break;
        case 6:
                expect("np_wait_canceled", about, np_wait_canceled(k->c, id, m), ALLOW(-EBADF));
                break;
        }
}

static void *worker(void *arg)
{
        int t = (int)(intptr_t)arg;
        Conn *k = &conns[t / THREADS_PER_CONN], *other = &conns[(t / THREADS_PER_CONN + 1) % CONNS];
        Rng r = { .s = atomic_fetch_add(&seed_base, 0x9e3779b97f4a7c15ULL) | 1 };
        const int *waits =
                ALLOW(NP_OK, NP_ERR_CLOSING, NP_ERR_TIMEOUT, NP_ERR_NOT_POLLABLE, -EBUSY, -EBADF);

        for (int n = 0; n < ops_per_thread; n++) {
                int slot, m = rand_mode(&r);
                unsigned op = (unsigned)(rnd(&r) % 100);
                np_desc id;

                if (op < 10) {
                        op_open(k, &r);
                        continue;
                }
                if (op < 16) {
                        op_poll(k, &r);
                        continue;
                }
                if (op < 22) {
                        if ((id = stale_id(k, &r)))
                                op_unknown(k, &r, id, "a stale id");
                        continue;
                }
                if (op < 28) {
                        if ((id = live_id(other, &r, NULL)) || (id = stale_id(other, &r)))
                                op_unknown(k, &r, id, "the other connection's id");
                        continue;
                }
                if (op < 30) {
                        op_unknown(k, &r, rnd(&r), "a junk id");
                        continue;
                }
                id = live_id(k, &r, &slot);
                if (!id)
                        continue;
                if (op < 36) {
                        /* Bad modes. */
                        static const int bad[] = { 0, 'x', NP_RW, -1, 'R' };
                        int b = bad[rnd(&r) % 5];
                        switch (rnd(&r) % 4) {
                        case 0:
                                expect("np_wait(bad mode)", "a live id", np_wait(k->c, id, b),
                                       ALLOW(-EINVAL, -EBADF));
                                break;
                        case 1:
                                expect("np_arm(bad mode)", "a live id", np_arm(k->c, id, b),
                                       ALLOW(-EINVAL, -EBADF));
                                break;
                        case 2:
                                expect("np_reset(bad mode)", "a live id", np_reset(k->c, id, b),
                                       ALLOW(-EINVAL, -EBADF));
                                break;
                        case 3:
                                if (b != NP_RW)
                                        expect("np_set_deadline(bad mode)", "a live id",
                                               np_set_deadline(k->c, id, 1000, b),
                                               ALLOW(-EINVAL, -EBADF));
                                break;
                        }
                } else if (op < 48) {
                        expect("np_set_deadline", "a live id",
                               np_set_deadline(k->c, id, rand_deadline(&r),
                                               pick(&r, 30) ? NP_RW : m),
                               ALLOW(0, -EBADF));
                } else if (op < 62) {
                        expect("np_wait", "a live id", np_wait(k->c, id, m), waits);
                } else if (op < 64) {
                        expect("np_wait_canceled", "a live id", np_wait_canceled(k->c, id, m),
                               ALLOW(NP_OK, -EBUSY, -EBADF));
                } else if (op < 74) {
                        int rr = np_arm(k->c, id, m);
                        expect("np_arm", "a live id", rr, ALLOW(0, -EBUSY, -EBADF));
                        if (rr == 0)
                                atomic_fetch_add(&k->arms_ok, 1);
                } else if (op < 80) {
                        expect("np_reset", "a live id", np_reset(k->c, id, m),
                               ALLOW(NP_OK, NP_ERR_CLOSING, NP_ERR_TIMEOUT, NP_ERR_NOT_POLLABLE,
                                     -EBADF));
                } else if (op < 86) {
                        int rr = np_unblock(k->c, id);
                        expect("np_unblock", "a live id", rr, ALLOW(0, -EALREADY, -EBADF));
                        /* Unblock twice: never 0 the second time. */
                        expect("np_unblock (second)", "a live id", np_unblock(k->c, id),
                               ALLOW(-EALREADY, -EBADF));
                } else if (op < 92) {
                        /* Close, with or without unblock first. */
                        int rr = np_close(k->c, id);
                        expect("np_close", "a live id", rr, ALLOW(0, -EBUSY, -EBADF));
                        if (rr == 0)
                                closed(k, slot, id);
                } else {
                        /* The right way: unblock, then close. */
                        expect("np_unblock", "a live id", np_unblock(k->c, id),
                               ALLOW(0, -EALREADY, -EBADF));
                        int rr = np_close(k->c, id);
                        expect("np_close after unblock", "a live id", rr, ALLOW(0, -EBUSY, -EBADF));
                        if (rr == 0)
                                closed(k, slot, id);
                }
        }
        return NULL;
}

/* Every 2 ms, one write into every live eventfd: a readiness edge for
 * both modes, so np_wait_canceled always ends. */
static void *ticker(void *arg)
{
        uint64_t one = 1;

        (void)arg;
        for (int n = 0; n < 600000 && !atomic_load(&stop_ticker); n++) {
                int fds[CONNS * POOL], k = 0;
                for (int c = 0; c < CONNS; c++) {
                        pthread_mutex_lock(&conns[c].lock);
                        for (int i = 0; i < POOL; i++)
                                if (conns[c].slot[i].state == SLOT_LIVE)
                                        fds[k++] = conns[c].slot[i].fd;
                        for (int i = 0; i < k; i++)
                                (void)!write(fds[i], &one, sizeof(one));
                        k = 0;
                        pthread_mutex_unlock(&conns[c].lock);
                }
                fault_sleep_ms(2);
        }
        return NULL;
}

int main(int argc, char **argv)
{
        FaultDaemon dm;
        struct np_status st;
        np_client *mon;
        pthread_t t[CONNS * THREADS_PER_CONN], tick;
        int base_fds, fds;

        fault_init(argc, argv, "misuse");
        ops_per_thread = fault_quick ? 4000 : 50000;
        atomic_store(&seed_base, (uint64_t)test_now());
        fault_say("seed %llu; %d connections x %d threads x %d random calls, %d shared slots "
                  "per connection",
                  (unsigned long long)atomic_load(&seed_base), CONNS, THREADS_PER_CONN,
                  ops_per_thread, POOL);
        fault_daemon_start(&dm, NULL);
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");
        base_fds = fault_settle(mon, dm.pid, 1, &st);
        for (int c = 0; c < CONNS; c++) {
                pthread_mutex_init(&conns[c].lock, NULL);
                conns[c].ever = calloc((size_t)1 << EVER_BITS, sizeof(np_desc));
                if (!conns[c].ever)
                        fault_die("out of memory");
                for (int i = 0; i < POOL; i++)
                        conns[c].slot[i] = (Slot){ .state = SLOT_EMPTY, .fd = -1 };
                fault_must(fault_connect(dm.sock, &conns[c].c), "connect");
        }
        int64_t t0 = test_now();
        pthread_create(&tick, NULL, ticker, NULL);
        for (int i = 0; i < CONNS * THREADS_PER_CONN; i++)
                pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
        for (int i = 0; i < CONNS * THREADS_PER_CONN; i++)
                pthread_join(t[i], NULL);
        int64_t took = test_now() - t0;
        atomic_store(&stop_ticker, 1);
        pthread_join(tick, NULL);
        fault_say("%ld calls in %.1f s; %ld results outside the allowed sets", atomic_load(&calls),
                  (double)took / 1e9, atomic_load(&violations));
        fault_check(atomic_load(&violations) == 0, "%ld calls returned what the API does not allow",
                    atomic_load(&violations));
        fault_check(fault_daemon_alive(&dm), "netpolld died");
        fault_check(np_ping(mon) == 0, "the monitor cannot ping");

        /* Invariants: deadlines into the past end every parked arm; drain. */
        uint64_t held_total = 0;
        for (int c = 0; c < CONNS; c++) {
                Conn *k = &conns[c];
                uint64_t held = 0;
                for (int i = 0; i < POOL; i++)
                        if (k->slot[i].state == SLOT_LIVE) {
                                held++;
                                expect("np_set_deadline(-1)", "a held id",
                                       np_set_deadline(k->c, k->slot[i].id, -1, NP_RW), ALLOW(0));
                        }
                held_total += held;
                int quiet = 0;
                for (int i = 0; i < 500 && quiet < 3; i++) {
                        np_event ev[64];
                        int n = np_poll(k->c, 20 * NSEC_PER_MSEC_F, ev, 64);
                        quiet = n == 0 ? quiet + 1 : 0;
                        for (int j = 0; j < n; j++) {
                                atomic_fetch_add(&k->events, 1);
                                if (!ever_has(k, ev[j].desc))
                                        atomic_fetch_add(&k->bad_events, 1);
                        }
                }
                struct np_session_stats ss = { 0 };
                int r = np_session_stats(k->c, &ss);
                fault_say("connection %d: %ld opened, %ld closed, holds %llu; %ld arms accepted, "
                          "%ld events, %ld foreign or malformed; daemon says %llu descriptors, "
                          "%llu waiters, %llu timers",
                          c, atomic_load(&k->opens), atomic_load(&k->closes),
                          (unsigned long long)held, atomic_load(&k->arms_ok),
                          atomic_load(&k->events), atomic_load(&k->bad_events),
                          (unsigned long long)ss.descriptors, (unsigned long long)ss.waiters,
                          (unsigned long long)ss.timers);
                fault_check(r == 0 && ss.descriptors == held && ss.waiters == 0 && ss.timers == 0,
                            "connection %d: the daemon counts %llu descriptors, %llu waiters, "
                            "%llu timers; the client holds %llu descriptors and nothing parked",
                            c, (unsigned long long)ss.descriptors, (unsigned long long)ss.waiters,
                            (unsigned long long)ss.timers, (unsigned long long)held);
                fault_check(atomic_load(&k->bad_events) == 0,
                            "connection %d: %ld events for descriptors it never opened", c,
                            atomic_load(&k->bad_events));
                fault_check(atomic_load(&k->events) <= atomic_load(&k->arms_ok),
                            "connection %d: more events (%ld) than accepted arms (%ld)", c,
                            atomic_load(&k->events), atomic_load(&k->arms_ok));
        }
        int r = np_status(mon, &st);
        fault_say("daemon: %llu connections, %llu descriptors, %llu waiters, %llu timers "
                  "(clients hold %llu descriptors)",
                  (unsigned long long)st.connections, (unsigned long long)st.descriptors,
                  (unsigned long long)st.waiters, (unsigned long long)st.timers,
                  (unsigned long long)held_total);
        fault_check(r == 0 && st.connections == CONNS + 1 && st.descriptors == held_total &&
                            st.waiters == 0 && st.timers == 0,
                    "np_status disagrees with what the clients hold");

        /* Close what is left, disconnect: 0/0/0 and the baseline fds. */
        for (int c = 0; c < CONNS; c++) {
                Conn *k = &conns[c];
                for (int i = 0; i < POOL; i++)
                        if (k->slot[i].state == SLOT_LIVE) {
                                expect("np_unblock", "a held id", np_unblock(k->c, k->slot[i].id),
                                       ALLOW(0, -EALREADY));
                                expect("np_close", "a held id", np_close(k->c, k->slot[i].id),
                                       ALLOW(0));
                                close(k->slot[i].fd);
                                k->slot[i].state = SLOT_EMPTY;
                        }
                struct np_session_stats ss = { 0 };
                fault_check(np_session_stats(k->c, &ss) == 0 && ss.descriptors == 0 &&
                                    ss.waiters == 0 && ss.timers == 0,
                            "connection %d after closing everything: %llu/%llu/%llu", c,
                            (unsigned long long)ss.descriptors, (unsigned long long)ss.waiters,
                            (unsigned long long)ss.timers);
                np_disconnect(k->c);
                free(k->ever);
        }
        bool back = fault_await_baseline(mon, dm.pid, 1, base_fds, 5000, &st, &fds);
        fault_say("after disconnecting: %llu descriptors, %llu waiters, %llu timers; %d fds "
                  "(baseline %d), %d leaked",
                  (unsigned long long)st.descriptors, (unsigned long long)st.waiters,
                  (unsigned long long)st.timers, fds, base_fds, fds - base_fds);
        fault_check(back, "not back at 0/0/0 and the baseline fds");
        fault_check(atomic_load(&violations) == 0, "violations after the run");
        np_disconnect(mon);
        fault_daemon_stop(&dm);
        return fault_finish();
}
