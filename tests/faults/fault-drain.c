/*
 * Isolation: the watchdog and the handshake timeout keep running while
 * ended connections drain.
 *
 * A connection that ends with thousands of descriptors leaves the daemon
 * an epoll DEL and a close for each of them, which it does in batches over
 * later loop turns.  Those turns must still run the housekeeping: the
 * sd_notify watchdog (WATCHDOG_USEC = 400 ms, so the daemon pings every
 * 100 ms and no gap may exceed 200 ms) and the handshake timeout (200 ms
 * here) of connections that never say hello.
 *
 * Windows last 1 s (1.5 s in quick mode, whose handshake bound is looser).
 * Attack window: raw connections, one after another, each registering as
 * many eventfds as the daemon allows it (max_descriptors, or fewer when a
 * per-uid quota or the fd budget below says no), in datagrams of 253 opens,
 * then disconnecting with all of them registered.  Raw datagrams, not
 * np_open: libnetpoll's np_open is one round trip per fd, at which rate the
 * daemon drains an ended connection long before the next one is full, so
 * nothing would pile up; a datagram of 253 opens is what the protocol
 * allows any client, and it fills faster than the drain empties.  The
 * daemon's open fds are kept under three quarters of its limit: a new
 * connection waits until there is room for it.
 * Control window: the same opens in the same datagrams over one connection
 * each, but every batch is unblocked and closed with requests before the
 * next (the same epoll ADD, DEL and close per fd), so nothing is left to
 * drain.
 * In every window a raw connection that never says hello is opened at the
 * start; the daemon must close it no later than handshake_timeout + 150 ms
 * (quick mode: + 500 ms).  A victim pings every 3 ms throughout; the A/B
 * verdict (probe.h) compares its p99 and checks the WATCHDOG=1 gaps.
 * Afterwards the daemon is back at its baseline of fds and connections.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "probe.h"

#define WATCHDOG_USEC 400000
#define HANDSHAKE_MS 200
#define VICTIM_INTERVAL_US 3000
#define BATCH TEST_MAX_FDS /* fds per datagram: the daemon's per-message cap */
#define REPLY_TIMEOUT_MS 5000
#define HUP_WAIT_MS 5000 /* past the handshake timeout, the longest we wait */
#define SETTLE_MS 5000   /* for the daemon's fds after a window */
#define MAX_CONN_CYCLES 100000

static const char config[] = "[limits]\nhandshake_timeout = 200ms\n";

typedef struct Drain {
        FaultDaemon *dm;
        np_client *mon;
        int *pool;    /* eventfds, registered again by every connection */
        int per_conn; /* how many one connection registers at most */
        int fd_cap;   /* the daemon's open fds a new connection waits under */
        int base_fds;
        int64_t window_ns;
        uint64_t next_id;
        int est_fds; /* the daemon's open fds at most, as far as we know */

        /* figures per kind of window: [0] control, [1] attack */
        int64_t late_max[2]; /* handshake close past the timeout, worst */
        int hs_missed[2];    /* not closed within HUP_WAIT_MS */
        uint64_t opened[2], conns[2], refused[2];
        int unsettled[2];
        int peak_fds;
        int64_t throttled_ns;
} Drain;

/* ---- the ungreeted connection ---- */

typedef struct Ungreeted {
        int fd;
        int64_t connected, closed; /* closed 0: not seen */
        pthread_t thread;
} Ungreeted;

/* Waits for the daemon to end the connection: POLLHUP, or a read of 0
 * (an error datagram before it is read and skipped). */
static void *ungreeted_main(void *arg)
{
        Ungreeted *u = arg;
        int64_t give_up = u->connected + (HANDSHAKE_MS + HUP_WAIT_MS) * NSEC_PER_MSEC_F;
        char buf[512];

        for (int i = 0; i < 10000; i++) {
                int64_t left = (give_up - test_now()) / NSEC_PER_MSEC_F;
                if (left <= 0)
                        break;
                struct pollfd p = { .fd = u->fd, .events = POLLIN | POLLRDHUP };
                int r = poll(&p, 1, (int)left);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        break;
                int64_t at = test_now();
                if (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) {
                        u->closed = at;
                        break;
                }
                ssize_t n = recv(u->fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                        u->closed = at;
                        break;
                }
        }
        return NULL;
}

static void ungreeted_start(Ungreeted *u, const char *sock)
{
        *u = (Ungreeted){ .fd = test_raw_connect(sock) };
        u->connected = test_now();
        if (u->fd < 0)
                fault_die("raw connect: %s", strerror(-u->fd));
        if (pthread_create(&u->thread, NULL, ungreeted_main, u) != 0)
                fault_die("pthread_create");
}

/* Joins the watcher; returns how late the daemon closed the connection
 * (INT64_MAX: not within HUP_WAIT_MS past the timeout). */
static int64_t ungreeted_finish(Ungreeted *u)
{
        pthread_join(u->thread, NULL);
        close(u->fd);
        if (!u->closed)
                return INT64_MAX;
        return u->closed - u->connected - HANDSHAKE_MS * NSEC_PER_MSEC_F;
}

/* ---- raw requests in batches ---- */

/* Sends one datagram of n requests of op, ids id0..: OP_OPEN with the
 * eventfds fds[0..n) (borrowed), else on descs[0..n).  Does not wait. */
static int send_batch(int sock, int op, uint64_t id0, const int *fds, const uint64_t *descs, int n)
{
        Netpoll__V1__Request q[BATCH], *qs[BATCH];
        bool open = op == NETPOLL__V1__OP__OP_OPEN;

        for (int i = 0; i < n; i++) {
                q[i] = raw_request(id0 + (uint64_t)i, op, open ? 0 : descs[i], 0, 0);
                if (open) {
                        q[i].fd_index = i;
                        q[i].user = (uint64_t)i;
                }
                qs[i] = &q[i];
        }
        return raw_send_requests(sock, qs, (size_t)n, open ? fds : NULL, open ? (size_t)n : 0);
}

/* What the replies of one connection said so far. */
typedef struct Replies {
        uint64_t last;       /* highest id answered */
        uint64_t opens_from; /* ids >= this (up to opens_to) are opens ... */
        uint64_t opens_to;
        uint64_t *descs;         /* ... whose descs go to descs[id - opens_from] (or NULL) */
        int opened, open_error;  /* opens that succeeded; the first error */
        int others, other_error; /* other requests that succeeded; the first error */
} Replies;

/* Reads replies until the one to id `upto`.  0, or -errno when the
 * connection failed or the reply did not come within REPLY_TIMEOUT_MS. */
static int await_replies(int sock, Replies *rp, uint64_t upto)
{
        int64_t give_up = test_now() + REPLY_TIMEOUT_MS * NSEC_PER_MSEC_F;

        for (int k = 0; k < 64 * BATCH && rp->last < upto; k++) {
                Netpoll__V1__ServerMessage *m;
                int64_t left = (give_up - test_now()) / NSEC_PER_MSEC_F;
                int r = raw_recv(sock, left > 0 ? (int)left : 0, &m);
                if (r <= 0)
                        return r == 0 ? -ECONNRESET : r;
                for (size_t j = 0; j < m->n_replies; j++) {
                        const Netpoll__V1__Reply *p = m->replies[j];
                        bool open = p->id >= rp->opens_from && p->id <= rp->opens_to;
                        if (open && rp->descs)
                                rp->descs[p->id - rp->opens_from] = p->result >= 0 ? p->desc : 0;
                        if (p->result >= 0)
                                open ? rp->opened++ : rp->others++;
                        else if (open && !rp->open_error)
                                rp->open_error = p->result;
                        else if (!open && !rp->other_error)
                                rp->other_error = p->result;
                        if (p->id > rp->last)
                                rp->last = p->id;
                }
                r = m->error;
                netpoll__v1__server_message__free_unpacked(m, NULL);
                if (r)
                        return r < 0 ? r : -EPROTO;
        }
        return rp->last >= upto ? 0 : -ETIMEDOUT;
}

/* A raw connection with the hello done: the fd, or -errno. */
static int attacker_connect(Drain *d)
{
        int fd = test_raw_connect(d->dm->sock), r;

        if (fd < 0)
                return fd;
        r = raw_hello(fd, REPLY_TIMEOUT_MS);
        if (r < 0) {
                close(fd);
                return r;
        }
        return fd;
}

/* Waits (at most until give_up) until the daemon has room for one more
 * full connection under fd_cap.  Counting the daemon's fds in /proc takes
 * milliseconds, so it is done only when what was sent since the last count
 * could have reached the cap. */
static void throttle(Drain *d, int64_t give_up)
{
        int64_t t0 = test_now();

        if (d->est_fds + d->per_conn <= d->fd_cap)
                return;
        for (int i = 0; i < 100000; i++) {
                d->est_fds = fd_count_of(d->dm->pid);
                if (d->est_fds > d->peak_fds)
                        d->peak_fds = d->est_fds;
                if (d->est_fds < 0 || d->est_fds + d->per_conn <= d->fd_cap || test_now() > give_up)
                        break;
                fault_sleep_ms(1);
        }
        d->throttled_ns += test_now() - t0;
}

/*
 * One connection of the attack: registers up to per_conn eventfds, in
 * datagrams of BATCH opens with two in flight (so the daemon always has the
 * next one), stopping at the first refusal (a quota), and disconnects with
 * them all registered.  Returns how many it registered.
 */
static int attack_one(Drain *d, int sock)
{
        Replies rp = { .last = d->next_id - 1, .opens_from = d->next_id, .opens_to = UINT64_MAX };
        uint64_t sent_to[2];
        int off = 0, inflight = 0, r;

        for (int i = 0; i < 2 * (d->per_conn / BATCH + 2); i++) {
                while (inflight < 2 && off < d->per_conn && !rp.open_error) {
                        int n = d->per_conn - off < BATCH ? d->per_conn - off : BATCH;
                        r = send_batch(sock, NETPOLL__V1__OP__OP_OPEN, d->next_id, d->pool + off,
                                       NULL, n);
                        if (r < 0)
                                fault_die("attack: send opens: %s", strerror(-r));
                        d->next_id += (uint64_t)n;
                        off += n;
                        sent_to[inflight++] = d->next_id - 1;
                }
                if (!inflight)
                        break;
                r = await_replies(sock, &rp, sent_to[0]);
                if (r < 0)
                        fault_die("attack: opens: %s", strerror(-r));
                sent_to[0] = sent_to[1];
                inflight--;
        }
        /* -EDQUOT or -EMFILE end it early: as many as allowed. */
        d->est_fds += rp.opened;
        return rp.opened;
}

/*
 * One connection of the control: the same datagrams of opens, and after
 * each one a datagram unblocking and one closing what it opened, sent
 * together with the next opens, so the daemon always has work queued here
 * too.  Returns how many it registered.
 */
static int control_one(Drain *d, int sock)
{
        uint64_t descs[BATCH], live[BATCH];
        int off = 0, r;
        Replies rp = { .last = d->next_id - 1, .descs = descs };
        uint64_t last = 0;

        for (int i = 0; i < d->per_conn / BATCH + 2 && off < d->per_conn && !rp.open_error; i++) {
                int n = d->per_conn - off < BATCH ? d->per_conn - off : BATCH;
                rp.opens_from = d->next_id;
                rp.opens_to = d->next_id + (uint64_t)n - 1;
                r = send_batch(sock, NETPOLL__V1__OP__OP_OPEN, d->next_id, d->pool + off, NULL, n);
                d->next_id += (uint64_t)n;
                off += n;
                if (r < 0 || (r = await_replies(sock, &rp, rp.opens_to)) < 0)
                        fault_die("control: opens: %s", strerror(-r));
                int k = 0;
                for (int j = 0; j < n; j++)
                        if (descs[j])
                                live[k++] = descs[j];
                if (!k)
                        continue;
                r = send_batch(sock, NETPOLL__V1__OP__OP_UNBLOCK, d->next_id, NULL, live, k);
                d->next_id += (uint64_t)k;
                if (r >= 0)
                        r = send_batch(sock, NETPOLL__V1__OP__OP_CLOSE, d->next_id, NULL, live, k);
                d->next_id += (uint64_t)k;
                last = d->next_id - 1;
                if (r < 0)
                        fault_die("control: unblock and close: %s", strerror(-r));
        }
        rp.opens_from = rp.opens_to = 0;
        if (last && (r = await_replies(sock, &rp, last)) < 0)
                fault_die("control: unblock and close: %s", strerror(-r));
        if (rp.other_error || rp.others != 2 * rp.opened)
                fault_die("control: %d of %d unblocks and closes succeeded (%s)", rp.others,
                          2 * rp.opened, strerror(-rp.other_error));
        return rp.opened;
}

/* Waits until the daemon is back at its baseline: its fds, its two
 * connections and no descriptor slot in use (what an attack left to drain
 * is drained inside its own window). */
static bool settle(Drain *d)
{
        int64_t give_up = test_now() + SETTLE_MS * NSEC_PER_MSEC_F;
        struct np_status st;

        for (int i = 0; i < 100000; i++) {
                int n = fd_count_of(d->dm->pid);
                if (n >= 0 && n <= d->base_fds && np_status(d->mon, &st) == 0 &&
                    st.connections == 2 && st.slots_in_use == 0)
                        return true;
                if (test_now() > give_up)
                        return false;
                fault_sleep_ms(2);
        }
        return false;
}

static void window(void *arg, bool attack, int round)
{
        Drain *d = arg;
        Ungreeted u;
        int64_t end = test_now() + d->window_ns;

        (void)round;
        ungreeted_start(&u, d->dm->sock);
        for (int i = 0; i < MAX_CONN_CYCLES && test_now() < end; i++) {
                if (attack)
                        throttle(d, end);
                int sock = attacker_connect(d);
                if (sock < 0) { /* a connection limit: not what this tests */
                        d->refused[attack]++;
                        fault_sleep_ms(1);
                        continue;
                }
                int n = attack ? attack_one(d, sock) : control_one(d, sock);
                close(sock);
                d->opened[attack] += (uint64_t)n;
                d->conns[attack]++;
                if (n < d->per_conn)
                        fault_sleep_ms(1); /* at a quota: give the daemon a moment */
        }
        int64_t late = ungreeted_finish(&u);
        if (late == INT64_MAX)
                d->hs_missed[attack]++;
        else if (late > d->late_max[attack])
                d->late_max[attack] = late;
        d->unsettled[attack] += !settle(d);
}

int main(int argc, char **argv)
{
        FaultDaemon dm;
        FaultNotify *notify;
        FaultVictim *victim;
        FaultAB ab;
        struct np_status st;
        np_client *mon;
        Drain d = { .dm = &dm, .next_id = 1, .est_fds = INT32_MAX / 2 };
        int fds;

        fault_init(argc, argv, "drain");
        int nofile = fault_nofile();
        notify = notify_start();
        fault_daemon_start(&dm, &(FaultDaemonOpts){ .config = config,
                                                    .notify_socket = notify_path(notify),
                                                    .watchdog_usec = WATCHDOG_USEC });
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");
        fault_must(np_status(mon, &st), "np_status");
        d.mon = mon;
        victim = victim_start(dm.sock, VICTIM_INTERVAL_US);
        d.base_fds = fault_settle(mon, dm.pid, 2, &st);

        /* Both sides hold a copy of every eventfd: ours (the pool) counts
         * against our limit, the daemon's against its own. */
        int daemon_limit = st.fd_limit ? (int)st.fd_limit : nofile;
        d.fd_cap = daemon_limit / 4 * 3;
        d.per_conn = (int)st.max_descriptors;
        if (d.per_conn > (nofile - 256) / 2)
                d.per_conn = (nofile - 256) / 2;
        if (d.per_conn > (d.fd_cap - d.base_fds) / 2)
                d.per_conn = (d.fd_cap - d.base_fds) / 2;
        if (d.per_conn < BATCH)
                fault_die("fd limits too low (ours %d, the daemon's %d)", nofile, daemon_limit);
        d.pool = calloc((size_t)d.per_conn, sizeof(int));
        if (!d.pool)
                fault_die("out of memory");
        for (int i = 0; i < d.per_conn; i++) {
                d.pool[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (d.pool[i] < 0)
                        fault_die("eventfd: %s", strerror(errno));
        }
        /* Quick mode's looser handshake bound (+500 ms) needs a longer
         * window to tell a stalled sweep from a late one. */
        d.window_ns = (fault_quick ? 1500 : 1000) * NSEC_PER_MSEC_F;
        int rounds = fault_quick ? 2 : 8;
        fault_say("handshake_timeout %.0f ms, watchdog %d ms; %d eventfds per connection in "
                  "datagrams of %d; daemon fd limit %d, kept under %d; baseline %d fds; %d "
                  "rounds of %.0f ms windows",
                  (double)st.handshake_timeout_ns / 1e6, WATCHDOG_USEC / 1000, d.per_conn, BATCH,
                  daemon_limit, d.fd_cap, d.base_fds, rounds, (double)d.window_ns / 1e6);

        fault_ab_run(&ab, rounds, window, &d);

        static const char *const kind[2] = { "control", "attack" };
        int64_t bound = (fault_quick ? 500 : 150) * NSEC_PER_MSEC_F;
        for (int k = 0; k < 2; k++) {
                int64_t gap = 0;
                for (int i = 0; i < ab.rounds; i++) {
                        int64_t g = notify_watchdog_gap(notify, ab.from[k][i], ab.to[k][i], NULL);
                        gap = g > gap ? g : gap;
                }
                fault_say("%s windows: %llu connections, %llu fds registered (%.0f per "
                          "window), %llu refused; ungreeted connection closed at most %.1f ms "
                          "past the timeout (%d not at all); longest WATCHDOG=1 gap %.1f ms",
                          kind[k], (unsigned long long)d.conns[k], (unsigned long long)d.opened[k],
                          (double)d.opened[k] / ab.rounds, (unsigned long long)d.refused[k],
                          (double)d.late_max[k] / 1e6, d.hs_missed[k], (double)gap / 1e6);
                fault_check(d.hs_missed[k] == 0 && d.late_max[k] <= bound,
                            "%s windows: the handshake timeout fired %s (bound +%.0f ms)", kind[k],
                            d.hs_missed[k] ? "not at all" : "late", (double)bound / 1e6);
                fault_check(d.unsettled[k] == 0,
                            "%s windows: %d times the daemon's fds were not back at baseline "
                            "%.0f s after the window",
                            kind[k], d.unsettled[k], SETTLE_MS / 1e3);
        }
        fault_say("attack: the daemon had up to %d open fds when counted; new connections "
                  "waited %.0f ms for room (counting included)",
                  d.peak_fds, (double)d.throttled_ns / 1e6);
        fault_check(d.opened[1] >= (uint64_t)d.per_conn * (uint64_t)ab.rounds,
                    "the attack registered only %llu fds over %d windows",
                    (unsigned long long)d.opened[1], ab.rounds);
        fault_ab_verdict(&ab, victim, notify, WATCHDOG_USEC, "drain");

        bool back = fault_await_baseline(mon, dm.pid, 2, d.base_fds, 5000, &st, &fds);
        fault_check(back,
                    "not back at baseline: %llu connections, %llu descriptors, %d fds (want %d)",
                    (unsigned long long)st.connections, (unsigned long long)st.descriptors, fds,
                    d.base_fds);
        fault_check(fault_daemon_alive(&dm), "netpolld died");
        victim_stop(victim);
        np_disconnect(mon);
        fault_daemon_stop(&dm);
        notify_stop(notify);
        for (int i = 0; i < d.per_conn; i++)
                close(d.pool[i]);
        free(d.pool);
        return fault_finish();
}
