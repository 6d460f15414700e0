/*
 * Scenario 6: a timer storm.
 *
 * One raw connection registers as many eventfds as the fd limit allows (the
 * daemon holds a copy of each, so both sides need one fd per descriptor),
 * arms a read wait on every one and gives every one the same read deadline:
 * one absolute CLOCK_MONOTONIC instant (OP_SET_DEADLINE with `absolute`),
 * in datagrams of as many quiet requests as the daemon takes.  (Raw, not libnetpoll, so nothing
 * but the daemon sits between the requests and the timers.)  When it
 * passes, the daemon has tens of thousands of equal, due timers, which it
 * expires in bounded batches per loop turn (SERVER_TIMER_BATCH in server.h).
 * Meanwhile:
 *  - a second connection pings in a loop; the longest np_ping round trip
 *    during the storm is its longest stall (must stay under 1 s);
 *  - the daemon runs under a fake service manager: NOTIFY_SOCKET is our own
 *    AF_UNIX datagram socket, WATCHDOG_USEC = 200000 and WATCHDOG_PID its
 *    pid, so it sends WATCHDOG=1 every 100 ms from its loop; no gap between
 *    two of them may exceed the 200 ms window.
 * Every wait must end with NP_ERR_TIMEOUT, none before the deadline; the
 * storm's duration (deadline to last outcome received) is printed.
 * Afterwards the connection is dropped with every descriptor still open and
 * the daemon must return to 0/0/0 and its baseline of open fds.
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
#include <sys/un.h>
#include <unistd.h>

#include "../../daemon/codec.h" /* NP_MAX_REQUESTS_PER_MESSAGE */
#include "probe.h"

#define PER_DATAGRAM NP_MAX_REQUESTS_PER_MESSAGE

#define WATCHDOG_USEC 200000
#define STALL_BOUND_NS NSEC_PER_SEC_F
#define MAX_NOTES 20000

static FaultNotify *sm; /* the fake service manager (probe.h) */

/* A PING on raw connection sock, and its reply (everything before it has
 * been processed by then). */
static int sync_ping(int sock)
{
        static uint64_t id = 1u << 30;
        Netpoll__V1__Request q = raw_request(++id, NETPOLL__V1__OP__OP_PING, 0, 0, 0);
        Netpoll__V1__Request *qs[1] = { &q };
        int r = raw_send_requests(sock, qs, 1, NULL, 0);

        if (r < 0)
                return r;
        r = raw_await_reply(sock, id, 10000, NULL, NULL);
        return r == 1 ? 0 : r == 0 ? -ECONNRESET : r;
}

/* ---- the pinger ---- */

static struct {
        np_client *c;
        atomic_int stop;
        int64_t *start, *rtt;
        atomic_int n;
        int cap;
        atomic_int errors;
} pg;

static void *pinger(void *arg)
{
        (void)arg;
        for (int i = 0; i < pg.cap && !atomic_load(&pg.stop); i++) {
                int64_t t0 = test_now();
                int r = np_ping(pg.c);
                int64_t t1 = test_now();
                if (r < 0)
                        atomic_fetch_add(&pg.errors, 1);
                pg.start[i] = t0;
                pg.rtt[i] = t1 - t0;
                atomic_store(&pg.n, i + 1);
                struct timespec ts = { .tv_nsec = 200 * 1000 };
                nanosleep(&ts, NULL);
        }
        return NULL;
}

/* ---- one storm ---- */

static FaultDaemon dm;
static np_client *mon;
static int base_fds; /* with the monitor and the pinger connected */

/* Opens n eventfds on raw connection c (253 per datagram); ids into d. */
static void storm_register(int c, int n, int *efd, uint64_t *d, Netpoll__V1__Request *q,
                           Netpoll__V1__Request **qs)
{
        for (int base = 0; base < n; base += 253) {
                int k = n - base < 253 ? n - base : 253;
                for (int j = 0; j < k; j++) {
                        efd[base + j] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                        if (efd[base + j] < 0)
                                fault_die("eventfd %d: %s", base + j, strerror(errno));
                        q[j] = raw_request((uint64_t)(base + j + 1), NETPOLL__V1__OP__OP_OPEN, 0, 0,
                                           0);
                        q[j].user = (uint64_t)(base + j);
                        q[j].fd_index = j;
                }
                fault_must(raw_send_requests(c, qs, (size_t)k, efd + base, (size_t)k), "OPEN");
                for (int got = 0, i = 0; got < k && i < 1000; i++) {
                        Netpoll__V1__ServerMessage *m;
                        int r = raw_recv(c, 10000, &m);
                        if (r <= 0)
                                fault_die("OPEN replies: %s", r ? strerror(-r) : "disconnected");
                        for (size_t j = 0; j < m->n_replies; j++) {
                                const Netpoll__V1__Reply *rp = m->replies[j];
                                if (rp->result < 0 || rp->id < 1 || rp->id > (uint64_t)n)
                                        fault_die("OPEN %llu: %s", (unsigned long long)rp->id,
                                                  strerror(-rp->result));
                                d[rp->id - 1] = rp->desc;
                                got++;
                        }
                        netpoll__v1__server_message__free_unpacked(m, NULL);
                }
        }
}

/* Sends `op` (quiet) for every descriptor, NP_MAX_REQUESTS_PER_MESSAGE per
 * datagram; with a
 * deadline (OP_SET_DEADLINE) that absolute CLOCK_MONOTONIC instant. */
static void storm_send_all(int c, int n, const uint64_t *d, int op, int64_t deadline,
                           Netpoll__V1__Request *q, Netpoll__V1__Request **qs)
{
        for (int base = 0; base < n; base += PER_DATAGRAM) {
                int k = n - base < PER_DATAGRAM ? n - base : PER_DATAGRAM;
                for (int j = 0; j < k; j++) {
                        q[j] = raw_request(0, op, d[base + j], NP_READ, deadline);
                        q[j].absolute = deadline != 0;
                        q[j].quiet = true;
                }
                fault_must(raw_send_requests(c, qs, (size_t)k, NULL, 0), "quiet requests");
        }
}

static void storm(int round, int n)
{
        struct np_status st;
        pthread_t t_pg;
        int fds;
        int *efd = malloc((size_t)n * sizeof(*efd));
        uint64_t *d = malloc((size_t)n * sizeof(*d));
        uint8_t *seen = calloc((size_t)n, 1);
        Netpoll__V1__Request *q = calloc(PER_DATAGRAM, sizeof(*q));
        Netpoll__V1__Request **qs = calloc(PER_DATAGRAM, sizeof(*qs));

        if (!efd || !d || !seen || !q || !qs)
                fault_die("out of memory");
        for (int i = 0; i < PER_DATAGRAM; i++)
                qs[i] = &q[i];
        int c = test_raw_connect(dm.sock);
        if (c < 0 || raw_hello(c, 5000) < 0)
                fault_die("connect the storm client");

        /* Register n eventfds and arm a read wait on each. */
        int64_t t_reg = test_now();
        storm_register(c, n, efd, d, q, qs);
        storm_send_all(c, n, d, NETPOLL__V1__OP__OP_ARM, 0, q, qs);
        fault_must(sync_ping(c), "ping after the arms");
        int64_t reg_took = test_now() - t_reg;

        /* One absolute deadline for all, 500 ms ahead. */
        int64_t t_set = test_now();
        int64_t deadline = t_set + 500 * NSEC_PER_MSEC_F;
        storm_send_all(c, n, d, NETPOLL__V1__OP__OP_SET_DEADLINE, deadline, q, qs);
        fault_must(sync_ping(c), "ping after the deadlines");
        int64_t set_took = test_now() - t_set, set_left = deadline - test_now();
        fault_check(set_left > 100 * NSEC_PER_MSEC_F,
                    "storm %d: setting %d deadlines took too long (%.0f ms left)", round, n,
                    (double)set_left / 1e6);
        (void)np_status(mon, &st);
        fault_say("storm %d: registered and armed %d descriptors in %.0f ms; %llu timers armed, "
                  "%llu waiters parked; one absolute deadline sent to all and processed within "
                  "%.2f ms, %.0f ms before it",
                  round, n, (double)reg_took / 1e6, (unsigned long long)st.timers,
                  (unsigned long long)st.waiters, (double)set_took / 1e6, (double)set_left / 1e6);
        fault_check(st.timers == (uint64_t)n && st.waiters == (uint64_t)n,
                    "storm %d: before it %llu timers and %llu waiters, want %d of each", round,
                    (unsigned long long)st.timers, (unsigned long long)st.waiters, n);

        /* The pinger runs from now to past the storm. */
        atomic_store(&pg.stop, 0);
        atomic_store(&pg.n, 0);
        atomic_store(&pg.errors, 0);
        pthread_create(&t_pg, NULL, pinger, NULL);

        /* Collect the outcomes. */
        int got = 0, timeouts = 0, wrong = 0, early = 0, dup = 0;
        int64_t first = 0, last = 0, give_up = deadline + 60 * NSEC_PER_SEC_F;
        while (got < n && test_now() < give_up) {
                Netpoll__V1__ServerMessage *m;
                int r = raw_recv(c, 1000, &m);
                int64_t now = test_now();
                if (r == -ETIMEDOUT)
                        continue;
                if (r <= 0)
                        fault_die("storm events: %s", r ? strerror(-r) : "disconnected");
                for (size_t i = 0; i < m->n_events; i++) {
                        const Netpoll__V1__Event *e = m->events[i];
                        if (e->user >= (uint64_t)n || seen[e->user]) {
                                dup++;
                                continue;
                        }
                        seen[e->user] = 1;
                        got++;
                        timeouts += e->result == NP_ERR_TIMEOUT;
                        wrong += e->result != NP_ERR_TIMEOUT || e->mode != NP_READ;
                        early += now < deadline;
                        if (!first)
                                first = now;
                        last = now;
                }
                netpoll__v1__server_message__free_unpacked(m, NULL);
        }
        fault_sleep_ms(300); /* the pinger and watchdog past the end */
        atomic_store(&pg.stop, 1);
        pthread_join(t_pg, NULL);

        /* Figures: the storm is from the deadline to the last outcome. */
        int pings = atomic_load(&pg.n), in_storm = 0;
        int64_t stall = 0, stall_at = 0;
        for (int i = 0; i < pings; i++) {
                if (pg.start[i] + pg.rtt[i] < deadline || pg.start[i] > last)
                        continue;
                in_storm++;
                if (pg.rtt[i] > stall) {
                        stall = pg.rtt[i];
                        stall_at = pg.start[i] - deadline;
                }
        }
        int wd_count;
        int64_t wd_gap = notify_watchdog_gap(sm, deadline - 200 * NSEC_PER_MSEC_F,
                                             last + 300 * NSEC_PER_MSEC_F, &wd_count);
        (void)np_status(mon, &st);
        fault_say("storm %d: %d of %d waits ended (%d timeouts, %d other, %d early, %d "
                  "duplicate); first outcome %.1f ms after the deadline, last %.1f ms after: the "
                  "storm took %.1f ms",
                  round, got, n, timeouts, wrong, early, dup, (double)(first - deadline) / 1e6,
                  (double)(last - deadline) / 1e6, (double)(last - first) / 1e6);
        fault_say("storm %d: %d pings during it (%d in all, %d errors); longest stall (ping "
                  "round trip) %.2f ms, %.1f ms into the storm (bound %.0f ms)",
                  round, in_storm, pings, atomic_load(&pg.errors), (double)stall / 1e6,
                  (double)stall_at / 1e6, (double)STALL_BOUND_NS / 1e6);
        fault_say("storm %d: %d WATCHDOG=1 from 200 ms before the deadline to 300 ms after the "
                  "storm, longest gap %.1f ms (window %d ms)",
                  round, wd_count, (double)wd_gap / 1e6, WATCHDOG_USEC / 1000);
        fault_check(got == n, "storm %d: only %d of %d waits ended", round, got, n);
        fault_check(wrong == 0 && dup == 0,
                    "storm %d: %d outcomes were not read timeouts, %d duplicates", round, wrong,
                    dup);
        fault_check(early == 0, "storm %d: %d timeouts arrived before the deadline", round, early);
        fault_check(in_storm > 0, "storm %d: no ping completed during the storm", round);
        fault_check(stall < STALL_BOUND_NS, "storm %d: the daemon stalled a ping for %.1f ms",
                    round, (double)stall / 1e6);
        fault_check(atomic_load(&pg.errors) == 0, "storm %d: %d pings failed", round,
                    atomic_load(&pg.errors));
        fault_check(wd_gap <= WATCHDOG_USEC * 500LL,
                    "storm %d: a %.1f ms gap between WATCHDOG=1, over half the %d ms interval",
                    round, (double)wd_gap / 1e6, WATCHDOG_USEC / 1000);
        fault_check(st.timers == 0 && st.waiters == 0,
                    "storm %d: after it %llu timers, %llu waiters", round,
                    (unsigned long long)st.timers, (unsigned long long)st.waiters);

        if (round == 0) {
                /* Not part of the verdict: how long one admin listing of
                 * every descriptor holds the loop (the watchdog shows it). */
                np_desc_info *di = NULL;
                size_t nd = 0;
                int64_t t_list = test_now();
                int lr = np_list_descs(mon, 0, &di, &nd);
                int64_t list_took = test_now() - t_list;
                free(di);
                fault_sleep_ms(250);
                int64_t list_gap = notify_watchdog_gap(sm, t_list - 100 * NSEC_PER_MSEC_F,
                                                       test_now(), &wd_count);
                fault_say("(info) np_list_descs of %zu descriptors: %s in %.0f ms; longest "
                          "WATCHDOG=1 gap around it %.0f ms",
                          nd, lr ? strerror(-lr) : "listed", (double)list_took / 1e6,
                          (double)list_gap / 1e6);
        }

        /* Drop the storm connection with everything still registered. */
        int64_t t_drop = test_now();
        close(c);
        for (int i = 0; i < n; i++)
                close(efd[i]);
        bool back = fault_await_baseline(mon, dm.pid, 2, base_fds, 10000, &st, &fds);
        fault_say("storm %d: after dropping its connection (%.0f ms): %llu descriptors, %llu "
                  "waiters, %llu timers, %d fds (baseline %d), %d leaked",
                  round, (double)(test_now() - t_drop) / 1e6, (unsigned long long)st.descriptors,
                  (unsigned long long)st.waiters, (unsigned long long)st.timers, fds, base_fds,
                  fds - base_fds);
        fault_check(back, "storm %d: not back at baseline", round);
        free(efd);
        free(d);
        free(seen);
        free(q);
        free(qs);
}

int main(int argc, char **argv)
{
        struct np_status st;
        int limit, n, rounds;

        fault_init(argc, argv, "timerstorm");
        rounds = fault_quick ? 1 : 3;
        limit = fault_nofile();
        /* Both we and the daemon hold one fd per descriptor, plus ~30 own. */
        n = limit - 128;
        if (fault_quick && n > 10000)
                n = 10000;
        if (n < 4096)
                fault_die("fd limit %d too low for a storm", limit);

        sm = notify_start();

        fault_daemon_start(&dm, &(FaultDaemonOpts){
                                        .config = "[limits]\n"
                                                  "max_descriptors_per_connection = 1000000\n"
                                                  "max_output_bytes = 268435456\n"
                                                  "max_output_bytes_per_uid = 2147483648\n"
                                                  "max_output_bytes_total = 2147483648\n"
                                                  "max_descriptors_per_uid = 100%\n"
                                                  /* the storm takes all but 128 */
                                                  "reserved_fds = 64\n",
                                        .notify_socket = notify_path(sm),
                                        .watchdog_usec = WATCHDOG_USEC,
                                });
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");
        fault_must(fault_connect(dm.sock, &pg.c), "connect the pinger");
        base_fds = fault_settle(mon, dm.pid, 2, &st);
        for (int i = 0; i < 100 && notify_watchdog_count(sm) < 2; i++)
                fault_sleep_ms(10);
        fault_say("%d storm(s) of %d timers (fd limit %d); daemon baseline %d fds; watchdog %d "
                  "us: READY=1 %s, %d WATCHDOG=1 so far",
                  rounds, n, limit, base_fds, WATCHDOG_USEC,
                  notify_ready_count(sm) ? "seen" : "MISSING", notify_watchdog_count(sm));
        fault_check(notify_ready_count(sm) > 0, "no READY=1 from the daemon");
        fault_check(notify_watchdog_count(sm) >= 2, "no WATCHDOG=1 from the daemon");
        pg.cap = 2000000;
        pg.start = malloc((size_t)pg.cap * sizeof(int64_t));
        pg.rtt = malloc((size_t)pg.cap * sizeof(int64_t));
        if (!pg.start || !pg.rtt)
                fault_die("out of memory");

        for (int round = 0; round < rounds; round++)
                storm(round, n);

        int wd_all;
        int64_t wd_gap_all = notify_watchdog_gap(sm, 0, test_now(), &wd_all);
        fault_say("watchdog over the whole run (registration included, not part of the "
                  "verdict): %d WATCHDOG=1, longest gap %.1f ms; %d STATUS= lines",
                  wd_all, (double)wd_gap_all / 1e6, notify_status_count(sm));
        fault_check(fault_daemon_alive(&dm), "netpolld died");
        np_disconnect(pg.c);
        np_disconnect(mon);
        fault_daemon_stop(&dm);
        notify_stop(sm);
        free(pg.start);
        free(pg.rtt);
        return fault_finish();
}
