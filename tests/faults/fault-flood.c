/*
 * Scenario 3a: a connection flood up to and past the connection limits.
 *
 * The daemon runs with max_connections = 50 and max_connections_per_uid =
 * 30 (socket_mode 0666, so a second uid can connect).  Root (holding the
 * monitor connection) connects until refused: exactly 29 more succeed, the
 * rest get -EUSERS.  A child running as uid 65534 then gets exactly the 20
 * connections left and -ECONNREFUSED beyond; root now gets -ECONNREFUSED
 * too.  While full: 200 raw connections each get one error datagram
 * (-ECONNREFUSED) and are closed, and 4 threads hammer np_connect
 * concurrently (every attempt refused).  The daemon must not spin (its
 * CPU time over 2 s of idle afterwards stays under 100 ms) and must
 * recover: after the flood is closed, a root client and a uid 65534 client
 * connect and ping, the limits hold exactly as before in a second round,
 * and the daemon's fd count is back at its baseline.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define MAX_CONN 50
#define MAX_PER_UID 30
#define HAMMER_THREADS 4
#define HAMMER_ATTEMPTS 100
#define RAW_FLOOD 200
#define ROOT_ATTEMPTS (MAX_PER_UID + 20)
#define IDLE_CPU_BOUND_NS (100 * NSEC_PER_MSEC_F)

static const char *sock_path;
static atomic_int hammer_ok, hammer_refused, hammer_other;

static void *hammer(void *arg)
{
        (void)arg;
        for (int i = 0; i < HAMMER_ATTEMPTS; i++) {
                np_client *c;
                int r = np_connect(sock_path, &c);
                if (r == 0) {
                        atomic_fetch_add(&hammer_ok, 1);
                        np_disconnect(c);
                } else if (r == -ECONNREFUSED || r == -EUSERS)
                        atomic_fetch_add(&hammer_refused, 1);
                else
                        atomic_fetch_add(&hammer_other, 1);
        }
        return NULL;
}

/* Root connects until refused; returns how many it got into c[]. */
static int root_flood(np_client **c, int max, int *refusals, int *eusers, int *first_error)
{
        int n = 0;

        *refusals = *eusers = *first_error = 0;
        for (int i = 0; i < max; i++) {
                int r = np_connect(sock_path, &c[n]);
                if (r == 0) {
                        if (*refusals == 0) {
                                n++;
                                continue;
                        }
                        np_disconnect(c[n]);
                        r = 1; /* admitted after a refusal: counts as a wrong answer */
                }
                if (*refusals == 0)
                        *first_error = r;
                (*refusals)++;
                *eusers += r == -EUSERS;
        }
        return n;
}

int main(int argc, char **argv)
{
        static np_client *c[MAX_CONN + 64];
        FaultDaemon dm;
        struct np_status st;
        np_client *mon;
        OtherUid other;
        OtherUidReport rep;
        int base_fds, n, refusals, eusers, first, fds;

        fault_init(argc, argv, "flood");
        char config[256];
        snprintf(config, sizeof(config),
                 "[daemon]\nsocket_mode = 0666\n[limits]\nmax_connections = %d\n"
                 "max_connections_per_uid = %d\n",
                 MAX_CONN, MAX_PER_UID);
        fault_daemon_start(&dm, &(FaultDaemonOpts){ .config = config });
        sock_path = dm.sock;
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");
        base_fds = fault_settle(mon, dm.pid, 1, &st);
        fault_say("limits: max_connections %u, max_connections_per_uid %u; baseline %d fds",
                  st.max_connections, st.max_connections_per_uid, base_fds);

        for (int round = 0; round < 2; round++) {
                /* Root: up to its per-uid cap (the monitor is one). */
                n = root_flood(c, ROOT_ATTEMPTS, &refusals, &eusers, &first);
                fault_say("round %d: root got %d connections (+1 monitor), then %d refusals, "
                          "%d of them -EUSERS (first: %s)",
                          round, n, refusals, eusers, first ? strerror(-first) : "none");
                fault_check(n == MAX_PER_UID - 1, "root got %d connections, want %d", n,
                            MAX_PER_UID - 1);
                int want = ROOT_ATTEMPTS - (MAX_PER_UID - 1);
                fault_check(refusals == want && eusers == refusals,
                            "root past its cap: %d refusals, %d -EUSERS (want %d and %d)", refusals,
                            eusers, want, want);

                /* Another uid: what is left of max_connections. */
                other_uid_start(&other, dm.sock, MAX_CONN, &rep);
                fault_check(rep.setuid_error == 0, "cannot become uid %d: %s", FAULT_OTHER_UID,
                            strerror(-rep.setuid_error));
                fault_say("round %d: uid %d got %d connections, then %d -ECONNREFUSED, %d "
                          "-EUSERS, %d other (%s); %d pings failed",
                          round, FAULT_OTHER_UID, rep.ok, rep.econnrefused, rep.eusers, rep.other,
                          rep.other ? strerror(-rep.other_error) : "-", rep.ping_failed);
                int left = MAX_CONN - MAX_PER_UID;
                fault_check(rep.ok == left && rep.econnrefused == MAX_CONN - left &&
                                    rep.ping_failed == 0,
                            "uid %d: %d connections and %d -ECONNREFUSED, want %d and %d",
                            FAULT_OTHER_UID, rep.ok, rep.econnrefused, left, MAX_CONN - left);

                /* Full: root is refused for max_connections now. */
                np_client *x;
                int r = np_connect(dm.sock, &x);
                fault_check(r == -ECONNREFUSED, "root at max_connections: %s, want %s",
                            r ? strerror(-r) : "connected", strerror(ECONNREFUSED));
                if (r == 0)
                        np_disconnect(x);

                /* Raw connections while full: one error datagram, then closed. */
                int raw_refused = 0, raw_other = 0;
                for (int i = 0; i < RAW_FLOOD; i++) {
                        int fd = test_raw_connect(dm.sock);
                        if (fd < 0) {
                                raw_other++;
                                continue;
                        }
                        Netpoll__V1__ServerMessage *m;
                        int e = raw_recv(fd, 2000, &m);
                        bool refused = false;
                        if (e == 1) {
                                refused = m->error == -ECONNREFUSED;
                                netpoll__v1__server_message__free_unpacked(m, NULL);
                                refused = refused && raw_recv(fd, 2000, &m) == 0;
                        }
                        raw_refused += refused;
                        raw_other += !refused;
                        close(fd);
                }
                fault_check(raw_refused == RAW_FLOOD,
                            "raw flood: %d of %d refused with -ECONNREFUSED and closed",
                            raw_refused, RAW_FLOOD);

                /* Concurrent hammering while full. */
                pthread_t t[HAMMER_THREADS];
                atomic_store(&hammer_ok, 0);
                atomic_store(&hammer_refused, 0);
                atomic_store(&hammer_other, 0);
                int64_t t0 = test_now();
                for (int i = 0; i < HAMMER_THREADS; i++)
                        pthread_create(&t[i], NULL, hammer, NULL);
                for (int i = 0; i < HAMMER_THREADS; i++)
                        pthread_join(t[i], NULL);
                int64_t took = test_now() - t0;
                fault_say("round %d: while full, %d raw connections refused; %d threads x %d "
                          "np_connect in %.0f ms: %d refused, %d admitted, %d other",
                          round, raw_refused, HAMMER_THREADS, HAMMER_ATTEMPTS, (double)took / 1e6,
                          atomic_load(&hammer_refused), atomic_load(&hammer_ok),
                          atomic_load(&hammer_other));
                fault_check(atomic_load(&hammer_refused) == HAMMER_THREADS * HAMMER_ATTEMPTS,
                            "hammer: %d admitted and %d failed otherwise while full",
                            atomic_load(&hammer_ok), atomic_load(&hammer_other));

                /* No spin while full and idle. */
                int64_t cpu = fault_idle_cpu(dm.pid, 2000);
                fault_say("round %d: daemon CPU over 2 s idle while full: %.1f ms (bound %.0f "
                          "ms)",
                          round, (double)cpu / 1e6, (double)IDLE_CPU_BOUND_NS / 1e6);
                fault_check(cpu >= 0 && cpu < IDLE_CPU_BOUND_NS,
                            "daemon used %.1f ms of CPU over 2 s idle while full",
                            (double)cpu / 1e6);
                fault_check(np_ping(mon) == 0, "the monitor cannot ping while full");

                /* Release the flood; the daemon recovers. */
                for (int i = 0; i < n; i++)
                        np_disconnect(c[i]);
                int status = other_uid_release(&other);
                fault_check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                            "uid %d client exited with status %#x", FAULT_OTHER_UID, status);
                bool back = fault_await_baseline(mon, dm.pid, 1, base_fds, 5000, &st, &fds);
                fault_check(back,
                            "round %d: not back at baseline: %llu connections, %d fds (want "
                            "%d)",
                            round, (unsigned long long)st.connections, fds, base_fds);
                cpu = fault_idle_cpu(dm.pid, 1000);
                fault_check(cpu >= 0 && cpu < IDLE_CPU_BOUND_NS / 2,
                            "daemon used %.1f ms of CPU over 1 s idle after the flood",
                            (double)cpu / 1e6);

                r = np_connect(dm.sock, &x);
                int ping = r == 0 ? np_ping(x) : r;
                if (r == 0)
                        np_disconnect(x);
                other_uid_start(&other, dm.sock, 1, &rep);
                other_uid_release(&other);
                fault_say("round %d: after the flood: %d fds (baseline %d), idle CPU %.1f ms/s; "
                          "new root client: %s; new uid %d client: %s",
                          round, fds, base_fds, (double)cpu / 1e6,
                          ping == 0 ? "connected and pinged" : strerror(-ping), FAULT_OTHER_UID,
                          rep.ok == 1 && rep.ping_failed == 0 ? "connected and pinged" : "FAILED");
                fault_check(ping == 0, "a new root client cannot connect and ping: %s",
                            strerror(-ping));
                fault_check(rep.ok == 1 && rep.ping_failed == 0,
                            "a new uid %d client cannot connect and ping (%s)", FAULT_OTHER_UID,
                            rep.other ? strerror(-rep.other_error) : "refused");
                fault_await_baseline(mon, dm.pid, 1, base_fds, 5000, &st, &fds);
        }
        (void)np_status(mon, &st);
        fault_say("accepted %llu connections in all; %d fds at the end (baseline %d)",
                  (unsigned long long)st.accepted, fd_count_of(dm.pid), base_fds);
        fault_check(fault_daemon_alive(&dm), "netpolld died");
        np_disconnect(mon);
        fault_daemon_stop(&dm);
        return fault_finish();
}
