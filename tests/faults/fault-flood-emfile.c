/*
 * Scenario 3b: a connection flood against a daemon out of file descriptors.
 *
 * The daemon runs with RLIMIT_NOFILE = 64 (socket_mode 0666, handshake
 * timeout 60 s so the flood's silent connections are not swept during the
 * test).  100 raw connections that never say hello fill its fd table; the
 * daemon must keep accepting-and-closing what it cannot hold (its reserve
 * fd) rather than leave the listener readable and spin.  Checked: its fd
 * count never exceeds the limit, its CPU time over 2 s of idle with the
 * table full stays under 100 ms (also after a client tried to connect
 * while it was full), the monitor connection keeps working, and after the
 * flood is closed its fd count returns to the baseline and a new root
 * client and a new uid 65534 client both connect and ping.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define NOFILE 64
#define FLOOD 100
#define IDLE_CPU_BOUND_NS (100 * NSEC_PER_MSEC_F)

/* Whether the daemon closed raw connection fd (EOF or reset pending). */
static bool closed_by_peer(int fd)
{
        struct pollfd pfd = { .fd = fd, .events = POLLIN | POLLRDHUP };
        char b;

        if (poll(&pfd, 1, 0) <= 0)
                return false;
        if (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR))
                return true;
        return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Waits (at most 5 s) until the daemon's fd count stays put for 300 ms. */
static int settle_fds(pid_t pid)
{
        int last = fd_count_of(pid), stable = 0;

        for (int i = 0; i < 500 && stable < 30; i++) {
                fault_sleep_ms(10);
                int n = fd_count_of(pid);
                stable = n == last ? stable + 1 : 0;
                last = n;
        }
        return last;
}

int main(int argc, char **argv)
{
        FaultDaemon dm;
        struct np_status st;
        np_client *mon, *x;
        OtherUid other;
        OtherUidReport rep;
        int raw[FLOOD], base_fds, connected = 0, fds, r;

        fault_init(argc, argv, "flood-emfile");
        fault_daemon_start(&dm, &(FaultDaemonOpts){
                                        .config = "[daemon]\nsocket_mode = 0666\n"
                                                  "[limits]\nhandshake_timeout = 60s\n",
                                        .nofile = NOFILE,
                                });
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");
        base_fds = fault_settle(mon, dm.pid, 1, &st);
        fault_say("daemon RLIMIT_NOFILE %llu, baseline %d fds", (unsigned long long)st.fd_limit,
                  base_fds);
        fault_check(st.fd_limit == NOFILE, "the daemon's fd limit is %llu, not %d",
                    (unsigned long long)st.fd_limit, NOFILE);

        int64_t cpu0 = test_cpu_ns(dm.pid);
        for (int i = 0; i < FLOOD; i++) {
                raw[i] = test_raw_connect(dm.sock);
                connected += raw[i] >= 0;
        }
        fds = settle_fds(dm.pid);
        int64_t flood_cpu = test_cpu_ns(dm.pid) - cpu0;
        int dropped = 0;
        for (int i = 0; i < FLOOD; i++)
                dropped += raw[i] >= 0 && closed_by_peer(raw[i]);
        fault_say("flood: %d of %d raw connections made; the daemon holds %d fds (limit %d) and "
                  "closed %d of them at once (out of fds); %.1f ms of CPU for the flood",
                  connected, FLOOD, fds, NOFILE, dropped, (double)flood_cpu / 1e6);
        fault_check(fds <= NOFILE, "the daemon holds %d fds, over its limit %d", fds, NOFILE);
        fault_check(fds >= NOFILE - 2, "the flood did not fill the daemon's fd table (%d of %d)",
                    fds, NOFILE);
        fault_check(connected == FLOOD, "only %d of %d raw connections were made", connected,
                    FLOOD);
        fault_check(dropped > 0 && dropped < FLOOD,
                    "%d flood connections were closed by the daemon", dropped);

        int64_t cpu = fault_idle_cpu(dm.pid, 2000);
        fault_say("daemon CPU over 2 s idle with its fd table full: %.1f ms (bound %.0f ms)",
                  (double)cpu / 1e6, (double)IDLE_CPU_BOUND_NS / 1e6);
        fault_check(cpu >= 0 && cpu < IDLE_CPU_BOUND_NS, "the daemon spins: %.1f ms over 2 s",
                    (double)cpu / 1e6);
        fault_check(np_ping(mon) == 0, "the monitor cannot ping while the table is full");

        /* A client arriving now is turned away, without a spin. */
        int64_t t0 = test_now();
        r = np_connect(dm.sock, &x);
        int64_t took = test_now() - t0;
        if (r == 0)
                np_disconnect(x);
        cpu = fault_idle_cpu(dm.pid, 2000);
        fault_say("a client connecting while full: %s after %.1f ms; daemon CPU over the next 2 s: "
                  "%.1f ms",
                  r == 0 ? "connected" : strerror(-r), (double)took / 1e6, (double)cpu / 1e6);
        fault_check(r < 0, "a client was admitted with no fd to spare");
        fault_check(took < 6 * NSEC_PER_SEC_F, "np_connect took %.1f s while full",
                    (double)took / 1e9);
        fault_check(cpu >= 0 && cpu < IDLE_CPU_BOUND_NS,
                    "the daemon spins after a refused connection: %.1f ms over 2 s",
                    (double)cpu / 1e6);

        for (int i = 0; i < FLOOD; i++)
                if (raw[i] >= 0)
                        close(raw[i]);
        bool back = fault_await_baseline(mon, dm.pid, 1, base_fds, 5000, &st, &fds);
        fault_check(back,
                    "not back at baseline after the flood: %llu connections, %d fds (want "
                    "%d)",
                    (unsigned long long)st.connections, fds, base_fds);
        cpu = fault_idle_cpu(dm.pid, 1000);

        r = np_connect(dm.sock, &x);
        int ping = r == 0 ? np_ping(x) : r;
        if (r == 0)
                np_disconnect(x);
        other_uid_start(&other, dm.sock, 1, &rep);
        int status = other_uid_release(&other);
        fault_say("after the flood: %d fds (baseline %d), idle CPU %.1f ms/s; new root client: "
                  "%s; new uid %d client: %s",
                  fds, base_fds, (double)cpu / 1e6,
                  ping == 0 ? "connected and pinged" : strerror(-ping), FAULT_OTHER_UID,
                  rep.ok == 1 && rep.ping_failed == 0 ? "connected and pinged"
                  : rep.setuid_error                  ? "cannot setuid"
                  : rep.other                         ? strerror(-rep.other_error)
                                                      : "refused");
        fault_check(ping == 0, "a new root client cannot connect and ping: %s", strerror(-ping));
        fault_check(rep.ok == 1 && rep.ping_failed == 0 && WIFEXITED(status),
                    "a new uid %d client cannot connect and ping", FAULT_OTHER_UID);
        back = fault_await_baseline(mon, dm.pid, 1, base_fds, 5000, &st, &fds);
        fault_check(back, "not back at baseline at the end: %d fds (want %d)", fds, base_fds);
        fault_check(fault_daemon_alive(&dm), "netpolld died");
        np_disconnect(mon);
        fault_daemon_stop(&dm);
        return fault_finish();
}
