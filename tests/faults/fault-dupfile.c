/*
 * Isolation: one file registered thousands of times by one connection.
 *
 * Each registration of a file adds an entry to its wait queue: a write to
 * it then wakes every entry, and each further registration into a nested
 * epoll set walks all of them (the kernel's wakeup-path check), so opening
 * went quadratic: the last datagram of 253 opens of one pipe took some
 * 6 ms of the loop at 4,096.  The daemon now lets one connection register
 * one file (socket, pipe, FIFO, device node) at most 16 times.
 *
 * Attack window: a raw connection sends datagrams of 253 OPENs, all of the
 * same pipe's read end (253 copies in SCM_RIGHTS), until 4,096 requests
 * went out, writes a byte into the pipe, and disconnects.  Control window:
 * the same datagrams with 253 fresh pipes each (distinct files).  A victim
 * pings every 2 ms (probe.h verdict); each datagram's reply time and the
 * number of registrations of the one file the daemon admitted are printed
 * and checked: at most 16 admitted, the rest -ETOOMANYREFS, and the
 * slowest attack datagram no slower than max(3x the slowest control one,
 * 2 ms).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "probe.h"

#define BATCH 253
#define REQUESTS 4096
#define WATCHDOG_USEC 2000000
#define SAME_FILE_MAX 16

typedef struct Dup {
        FaultDaemon dm;
        int64_t slowest[2]; /* [attack]: slowest datagram's reply, ns */
        int admitted[2], refused[2], other[2];
        int64_t next_id;
} Dup;

/* Reads replies until the one to last_id; counts results of ids > first. */
static int count_replies(Dup *d, int sock, uint64_t first, uint64_t last, bool attack)
{
        uint64_t seen = 0;

        for (int i = 0; i < 10000 && seen < last - first; i++) {
                Netpoll__V1__ServerMessage *m;
                int r = raw_recv(sock, 10000, &m);
                if (r != 1)
                        return r < 0 ? r : -ECONNRESET;
                for (size_t k = 0; k < m->n_replies; k++) {
                        const Netpoll__V1__Reply *rp = m->replies[k];
                        if (rp->id <= first || rp->id > last)
                                continue;
                        seen++;
                        if (rp->result == 0)
                                d->admitted[attack]++;
                        else if (rp->result == -ETOOMANYREFS)
                                d->refused[attack]++;
                        else
                                d->other[attack]++;
                }
                netpoll__v1__server_message__free_unpacked(m, NULL);
        }
        return seen == last - first ? 0 : -ETIMEDOUT;
}

static void window(void *arg, bool attack, int round)
{
        Dup *d = arg;
        Netpoll__V1__Request q[BATCH], *qs[BATCH];
        int fds[BATCH], same[2], fresh[BATCH][2];
        int sock = test_raw_connect(d->dm.sock);

        (void)round;
        fault_load_thread(); /* the A/B driver runs windows on this thread */
        if (sock < 0 || raw_hello(sock, 3000) < 0)
                fault_die("raw connect");
        if (pipe2(same, O_CLOEXEC) < 0)
                fault_die("pipe2: %s", strerror(errno));
        for (int sent = 0; sent < REQUESTS; sent += BATCH) {
                int n = REQUESTS - sent < BATCH ? REQUESTS - sent : BATCH;
                uint64_t first = (uint64_t)d->next_id;
                for (int i = 0; i < n; i++) {
                        q[i] = raw_request(first + 1 + (uint64_t)i, NETPOLL__V1__OP__OP_OPEN, 0,
                                           0, 0);
                        q[i].fd_index = i;
                        qs[i] = &q[i];
                        if (attack)
                                fds[i] = same[0];
                        else if (pipe2(fresh[i], O_CLOEXEC) == 0)
                                fds[i] = fresh[i][0];
                        else
                                fault_die("pipe2: %s", strerror(errno));
                }
                d->next_id += n;
                int64_t t0 = test_now();
                int r = raw_send_requests(sock, qs, (size_t)n, fds, (size_t)n);
                if (r == 0)
                        r = count_replies(d, sock, first, first + (uint64_t)n, attack);
                int64_t took = test_now() - t0;
                if (!attack)
                        for (int i = 0; i < n; i++) {
                                close(fresh[i][0]);
                                close(fresh[i][1]);
                        }
                if (r < 0)
                        fault_die("%s datagram: %s", attack ? "attack" : "control",
                                  strerror(-r));
                if (took > d->slowest[attack])
                        d->slowest[attack] = took;
        }
        (void)!write(same[1], "x", 1); /* every registration of it fires */
        fault_sleep_ms(20);
        close(sock);
        close(same[0]);
        close(same[1]);
        fault_sleep_ms(50); /* the daemon reaps the connection inside the window */
}

int main(int argc, char **argv)
{
        Dup d = { .next_id = 1 };
        struct np_status st;
        np_client *mon;
        FaultAB ab;

        fault_init(argc, argv, "dupfile");
        (void)fault_nofile();
        FaultNotify *n = notify_start();
        fault_daemon_start(&d.dm, &(FaultDaemonOpts){ .notify_socket = notify_path(n),
                                                      .watchdog_usec = WATCHDOG_USEC });
        fault_must(fault_connect(d.dm.sock, &mon), "connect the monitor");
        int base = fault_settle(mon, d.dm.pid, 1, &st);
        FaultVictim *v = victim_start(d.dm.sock, 2000);
        int rounds = fault_quick ? 3 : 10;

        fault_ab_run(&ab, rounds, window, &d);
        fault_ab_verdict(&ab, v, n, WATCHDOG_USEC, "dupfile");
        victim_stop(v);

        int per_round = d.admitted[1] / rounds;
        fault_say("attack: %d requests to register one pipe a round: %d admitted a round, %d "
                  "-ETOOMANYREFS, %d other; slowest datagram %.2f ms",
                  REQUESTS, per_round, d.refused[1], d.other[1], (double)d.slowest[1] / 1e6);
        fault_say("control: %d registrations of distinct pipes a round: %d admitted, %d refused, "
                  "%d other; slowest datagram %.2f ms",
                  REQUESTS, d.admitted[0] / rounds, d.refused[0], d.other[0],
                  (double)d.slowest[0] / 1e6);
        fault_check(d.admitted[1] <= SAME_FILE_MAX * rounds,
                    "%d registrations of one file admitted a round, want at most %d", per_round,
                    SAME_FILE_MAX);
        fault_check(d.other[1] == 0 && d.other[0] == 0 && d.refused[0] == 0,
                    "unexpected results: %d in attacks, %d in controls (%d refused)", d.other[1],
                    d.other[0], d.refused[0]);
        int64_t bound = d.slowest[0] * 3 > 2 * NSEC_PER_MSEC_F ? d.slowest[0] * 3
                                                               : 2 * NSEC_PER_MSEC_F;
        fault_check(d.slowest[1] <= bound,
                    "the slowest attack datagram took %.2f ms, over %.2f ms (3x the control's, "
                    "at least 2 ms)",
                    (double)d.slowest[1] / 1e6, (double)bound / 1e6);
        int fds;
        fault_check(fault_await_baseline(mon, d.dm.pid, 1, base, 5000, &st, &fds),
                    "not back at baseline: %d fds (baseline %d), %llu connections", fds, base,
                    (unsigned long long)st.connections);
        fault_check(fault_daemon_alive(&d.dm), "the daemon died");
        np_disconnect(mon);
        fault_daemon_stop(&d.dm);
        notify_stop(n);
        return fault_finish();
}
