/*
 * Isolation: closing a client's fd must never block the loop.
 *
 * A loopback TCP socket whose peer never reads, with unsent bytes in its
 * send queue and SO_LINGER {1, 5}, makes the close() of its last copy wait
 * up to 5 s for the bytes to leave.  When a client hands such a socket to
 * the daemon and then drops its own copy, the daemon's copy is the last
 * one, and the daemon closes it in three places, each an attack window:
 *   (a) np_open, the client closes its copy, np_unblock + np_close: the
 *       np_close itself must return within 500 ms;
 *   (b) the socket rides on the hello datagram of a raw connection (fds on
 *       a hello are a protocol error: the daemon closes them and drops the
 *       connection), which must be dropped within 500 ms;
 *   (c) np_open among ordinary descriptors, the client closes its copy and
 *       disconnects: the daemon closes it while reaping the connection, and
 *       another connection's pings over the next 100 ms must each come
 *       back within 500 ms;
 *   (d) it rides on a datagram the daemon never reads: the one before it
 *       is a protocol error, and closing the connection's socket releases
 *       the fds of what was still queued on it (found by fault-mix: the
 *       loop used to close connection sockets itself); the connection
 *       must be dropped within 500 ms.
 * The control window of each makes exactly the same requests with the same
 * kind of socket, stuck with unsent bytes too, but without SO_LINGER (its
 * close never waits).  Rounds go (a), (b), (c), (d), (a), ...
 *
 * A victim pings every 3 ms throughout, and the daemon runs under a fake
 * service manager with WATCHDOG_USEC = 2 s; the A/B verdict (probe.h)
 * compares the victim's p99 in attack and control windows and checks the
 * WATCHDOG=1 gaps, and no victim ping in an attack window may take 1 s.
 * Every window ends with a ping through the daemon, so a stall it caused
 * stays inside it.  At the end the daemon must still run and be back at its
 * baseline of fds and connections once the lingers have expired (5 s after
 * the last, plus a margin); only then are the peers closed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "probe.h"

#define WATCHDOG_USEC 2000000
#define VICTIM_INTERVAL_US 3000
#define LINGER_S 5
#define SMALL_BUF 4096
#define CLOSE_BOUND_NS (500 * NSEC_PER_MSEC_F)
#define VICTIM_MAX_BOUND_NS NSEC_PER_SEC_F
#define PROBE_NS (100 * NSEC_PER_MSEC_F)    /* (c): pings after the disconnect */
#define HUP_WAIT_MS ((LINGER_S + 5) * 1000) /* (b): the longest we wait for the drop */
#define END_WAIT_MS ((LINGER_S + 3) * 1000) /* lingers expired, plus a margin */
#define MAX_PEERS 64
#define MAX_FILLERS 256

enum { VAR_CLOSE, VAR_HELLO, VAR_REAP, VAR_UNREAD, N_VARIANTS };

static const char *const variant_names[N_VARIANTS] = {
        "(a) np_close",
        "(b) fds on the hello",
        "(c) reaped on disconnect",
        "(d) on a datagram never read",
};

typedef struct Linger {
        FaultDaemon *dm;
        np_client *worker; /* makes (a)'s requests, and pings for (c) */
        int listen_fd;
        struct sockaddr_in addr;
        int peers[MAX_PEERS]; /* accepted sides, never read, closed at the end */
        int n_peers;
        int fillers[MAX_FILLERS]; /* eventfds registered beside the socket in (c) */
        int n_fillers;
        int64_t window_ns;
        int64_t last_linger; /* when the last lingering socket went to the daemon */

        /* [variant][0 control, 1 attack]: the worst latency seen, and failures */
        int64_t worst[N_VARIANTS][2];
        int runs[N_VARIANTS][2];
        int errors[N_VARIANTS][2];
        int first_error[N_VARIANTS][2];
        int64_t min_unsent;
        uint64_t protocol_errors; /* the ones (b) and (d) make */
} Linger;

static void note_error(Linger *l, int v, bool attack, int r)
{
        if (!l->errors[v][attack]++)
                l->first_error[v][attack] = r;
}

static void note_latency(Linger *l, int v, bool attack, int64_t ns)
{
        l->runs[v][attack]++;
        if (ns > l->worst[v][attack])
                l->worst[v][attack] = ns;
}

static void listener_open(Linger *l)
{
        socklen_t len = sizeof(l->addr);
        int small = SMALL_BUF;

        l->addr = (struct sockaddr_in){ .sin_family = AF_INET,
                                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        l->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (l->listen_fd < 0)
                fault_die("socket: %s", strerror(errno));
        /* Inherited by the accepted sides: a small window fills at once. */
        (void)setsockopt(l->listen_fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        if (bind(l->listen_fd, (struct sockaddr *)&l->addr, sizeof(l->addr)) < 0 ||
            listen(l->listen_fd, MAX_PEERS) < 0 ||
            getsockname(l->listen_fd, (struct sockaddr *)&l->addr, &len) < 0)
                fault_die("listener on 127.0.0.1: %s", strerror(errno));
}

/*
 * A connected loopback TCP socket whose peer never reads, written to until
 * bytes stay unsent in its send queue; with SO_LINGER {1, LINGER_S} when
 * linger is set.  The peer is kept in l->peers.  Returns the socket (ours
 * to close).
 */
static int stuck_socket(Linger *l, bool linger)
{
        static char junk[16384];
        int small = SMALL_BUF, unsent = 0;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                fault_die("socket: %s", strerror(errno));
        if (l->n_peers == MAX_PEERS)
                fault_die("more than %d stuck sockets", MAX_PEERS);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        if (connect(fd, (struct sockaddr *)&l->addr, sizeof(l->addr)) < 0)
                fault_die("connect to 127.0.0.1:%d: %s", ntohs(l->addr.sin_port), strerror(errno));
        int peer = accept4(l->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (peer < 0)
                fault_die("accept: %s", strerror(errno));
        l->peers[l->n_peers++] = peer;
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
                fault_die("O_NONBLOCK: %s", strerror(errno));
        /* The peer's window closes after a few writes; what follows stays
         * in our send queue, unsent.  A few rounds, as the window may take
         * a moment to be advertised shut. */
        for (int round = 0; round < 50 && unsent <= 0; round++) {
                for (int i = 0; i < 1000; i++)
                        if (write(fd, junk, sizeof(junk)) < 0)
                                break;
                if (ioctl(fd, SIOCOUTQNSD, &unsent) < 0)
                        fault_die("SIOCOUTQNSD: %s", strerror(errno));
                if (unsent <= 0)
                        fault_sleep_ms(2);
        }
        if (unsent <= 0)
                fault_die("no unsent bytes stay in a loopback socket's send queue");
        if (l->min_unsent == 0 || unsent < l->min_unsent)
                l->min_unsent = unsent;
        if (linger) {
                struct linger lg = { .l_onoff = 1, .l_linger = LINGER_S };
                if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
                        fault_die("SO_LINGER: %s", strerror(errno));
        }
        return fd;
}

/* (a) The daemon closes it on np_close. */
static void run_close(Linger *l, bool attack)
{
        int fd = stuck_socket(l, attack);
        np_desc d;
        int r = np_open(l->worker, fd, 1, &d);

        close(fd); /* the daemon's copy is the last one now */
        if (r == 0)
                r = np_unblock(l->worker, d);
        if (r < 0) {
                note_error(l, VAR_CLOSE, attack, r);
                return;
        }
        l->last_linger = test_now();
        int64_t t0 = test_now();
        r = np_close(l->worker, d);
        note_latency(l, VAR_CLOSE, attack, test_now() - t0);
        if (r < 0)
                note_error(l, VAR_CLOSE, attack, r);
}

/* Times how long the daemon takes to drop connection sock (closes it). */
static void await_drop(Linger *l, int v, bool attack, int sock)
{
        int64_t t0 = test_now(), give_up = t0 + HUP_WAIT_MS * NSEC_PER_MSEC_F;
        int r = -ETIMEDOUT;

        /* Anything it says before it closes (an error) is skipped. */
        for (int i = 0; i < 100 && test_now() < give_up; i++) {
                Netpoll__V1__ServerMessage *msg;
                int64_t left = (give_up - test_now()) / NSEC_PER_MSEC_F;
                r = raw_recv(sock, left > 0 ? (int)left : 0, &msg);
                if (r != 1)
                        break;
                netpoll__v1__server_message__free_unpacked(msg, NULL);
                r = -ETIMEDOUT;
        }
        note_latency(l, v, attack, test_now() - t0);
        if (r != 0) /* 0: closed */
                note_error(l, v, attack, r < 0 ? r : -EPROTO);
        close(sock);
}

/* (b) The daemon closes it as an fd on the hello, and drops the
 * connection. */
static void run_hello(Linger *l, bool attack)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Hello h = NETPOLL__V1__HELLO__INIT;
        uint8_t buf[256];
        int fd = stuck_socket(l, attack);
        int sock = test_raw_connect(l->dm->sock), r;

        if (sock < 0)
                fault_die("raw connect: %s", strerror(-sock));
        h.version = 1;
        h.name = (char *)"linger";
        m.hello = &h;
        size_t len = netpoll__v1__client_message__pack(&m, buf);
        r = raw_send(sock, buf, len, &fd, 1);
        close(fd);
        if (r < 0) {
                note_error(l, VAR_HELLO, attack, r);
                close(sock);
                return;
        }
        l->last_linger = test_now();
        l->protocol_errors++;
        await_drop(l, VAR_HELLO, attack, sock);
}

/* (d) A datagram the daemon never reads carries it: the one before it is a
 * protocol error (an unknown field), so the daemon drops the connection,
 * and closing its socket releases the fds of what was still queued. */
static void run_unread(Linger *l, bool attack)
{
        static const uint8_t junk[] = { 0x78, 0x00 }; /* field 15: not in the protocol */
        int fd = stuck_socket(l, attack);
        int sock = raw_greeted(l->dm->sock);
        Netpoll__V1__Request q = raw_request(1, NETPOLL__V1__OP__OP_OPEN, 0, 0, 0);
        Netpoll__V1__Request *qs[1] = { &q };
        /* Both queued before the daemon reads either: it is stopped. */
        if (kill(l->dm->pid, SIGSTOP) < 0 || !fault_await_stopped(l->dm->pid, true))
                fault_die("cannot stop the daemon");
        int r = raw_send(sock, junk, sizeof(junk), NULL, 0);
        if (r == 0)
                r = raw_send_requests(sock, qs, 1, &fd, 1);
        close(fd);
        kill(l->dm->pid, SIGCONT);
        if (r < 0) {
                note_error(l, VAR_UNREAD, attack, r);
                close(sock);
                return;
        }
        l->last_linger = test_now();
        l->protocol_errors++;
        await_drop(l, VAR_UNREAD, attack, sock);
}

/* (c) The daemon closes it while reaping a connection that ended with it
 * registered among the fillers; the worker pings meanwhile. */
static void run_reap(Linger *l, bool attack)
{
        np_client *c;
        np_desc d;
        int fd = stuck_socket(l, attack);
        int r = fault_connect(l->dm->sock, &c);

        if (r < 0) {
                close(fd);
                note_error(l, VAR_REAP, attack, r);
                return;
        }
        /* Half the fillers before it, half after: the drain reaches it in
         * the middle. */
        for (int i = 0; i < l->n_fillers / 2 && r == 0; i++)
                r = np_open(c, l->fillers[i], 0, &d);
        if (r == 0)
                r = np_open(c, fd, 1, &d);
        for (int i = l->n_fillers / 2; i < l->n_fillers && r == 0; i++)
                r = np_open(c, l->fillers[i], 0, &d);
        close(fd);
        if (r < 0)
                note_error(l, VAR_REAP, attack, r);
        np_disconnect(c);
        l->last_linger = test_now();
        int64_t t0 = test_now(), worst = 0;
        for (int i = 0; i < 10000 && test_now() - t0 < PROBE_NS; i++) {
                int64_t p0 = test_now();
                r = np_ping(l->worker);
                int64_t rtt = test_now() - p0;
                worst = rtt > worst ? rtt : worst;
                if (r < 0) {
                        note_error(l, VAR_REAP, attack, r);
                        break;
                }
                fault_sleep_ms(1);
        }
        note_latency(l, VAR_REAP, attack, worst);
}

static void window(void *arg, bool attack, int round)
{
        Linger *l = arg;
        int64_t end = test_now() + l->window_ns;

        switch (round % N_VARIANTS) {
        case VAR_CLOSE:
                run_close(l, attack);
                break;
        case VAR_HELLO:
                run_hello(l, attack);
                break;
        case VAR_REAP:
                run_reap(l, attack);
                break;
        default:
                run_unread(l, attack);
                break;
        }
        int64_t left = (end - test_now()) / NSEC_PER_MSEC_F;
        if (left > 0)
                fault_sleep_ms(left);
        /* Through the daemon once more: a stall this window caused ends
         * inside it. */
        int r = np_ping(l->worker);
        if (r < 0)
                fault_die("worker ping: %s", strerror(-r));
}

int main(int argc, char **argv)
{
        FaultDaemon dm;
        FaultNotify *notify;
        FaultVictim *victim;
        FaultAB ab;
        struct np_status st;
        np_client *mon;
        Linger l = { .dm = &dm };
        int fds;

        fault_init(argc, argv, "linger");
        int nofile = fault_nofile();
        /* A few fds per window, both sides; the fillers take what is left
         * of a small limit. */
        l.n_fillers = (nofile - 256) / 8;
        if (l.n_fillers > MAX_FILLERS)
                l.n_fillers = MAX_FILLERS;
        if (l.n_fillers < 0)
                fault_die("fd limit %d too low", nofile);
        listener_open(&l);
        for (int i = 0; i < l.n_fillers; i++) {
                l.fillers[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (l.fillers[i] < 0)
                        fault_die("eventfd: %s", strerror(errno));
        }
        notify = notify_start();
        fault_daemon_start(&dm, &(FaultDaemonOpts){ .notify_socket = notify_path(notify),
                                                    .watchdog_usec = WATCHDOG_USEC });
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");
        fault_must(fault_connect(dm.sock, &l.worker), "connect the worker");
        /* One np_open and close on the worker before the baseline, so its
         * first one is not part of what is measured.  (It holds one
         * descriptor at a time: in the main epoll set, with no set of its
         * own, so it keeps no fd either way.) */
        {
                int efd = eventfd(0, EFD_CLOEXEC);
                np_desc d;
                fault_must(efd, "eventfd");
                fault_must(np_open(l.worker, efd, 0, &d), "np_open on the worker");
                fault_must(np_unblock(l.worker, d), "np_unblock on the worker");
                fault_must(np_close(l.worker, d), "np_close on the worker");
                close(efd);
        }
        victim = victim_start(dm.sock, VICTIM_INTERVAL_US);
        int base_fds = fault_settle(mon, dm.pid, 3, &st);
        uint64_t base_errors = st.protocol_errors;

        int rounds = fault_quick ? N_VARIANTS : 2 * N_VARIANTS;
        l.window_ns = (fault_quick ? 300 : 1000) * NSEC_PER_MSEC_F;
        fault_say("SO_LINGER {1, %d} on loopback TCP sockets with unsent bytes; %d rounds of "
                  "%.0f ms windows, %d fillers beside the socket in (c); watchdog %d ms; "
                  "baseline %d fds",
                  LINGER_S, rounds, (double)l.window_ns / 1e6, l.n_fillers, WATCHDOG_USEC / 1000,
                  base_fds);

        fault_ab_run(&ab, rounds, window, &l);

        fault_say("every stuck socket had at least %lld unsent bytes", (long long)l.min_unsent);
        for (int v = 0; v < N_VARIANTS; v++) {
                const char *what = v == VAR_CLOSE  ? "np_close took"
                                   : v == VAR_REAP ? "the worker's pings took at most"
                                                   : "the connection was dropped after";
                fault_say("%s: %s %.1f ms with SO_LINGER (%d runs), %.1f ms without (%d runs); "
                          "%d and %d failed",
                          variant_names[v], what, (double)l.worst[v][1] / 1e6, l.runs[v][1],
                          (double)l.worst[v][0] / 1e6, l.runs[v][0], l.errors[v][1],
                          l.errors[v][0]);
                for (int k = 0; k < 2; k++) {
                        fault_check(l.errors[v][k] == 0, "%s%s: %s", variant_names[v],
                                    k ? "" : " (control)", np_strerror(l.first_error[v][k]));
                        fault_check(l.runs[v][k] == 0 || l.worst[v][k] < CLOSE_BOUND_NS,
                                    "%s%s: %s %.1f ms, over %.0f ms: the loop blocked in close()",
                                    variant_names[v], k ? " with SO_LINGER" : " (control)", what,
                                    (double)l.worst[v][k] / 1e6, (double)CLOSE_BOUND_NS / 1e6);
                }
        }
        FaultFigures att = victim_figures(victim, ab.from[1], ab.to[1], ab.rounds);
        fault_check(att.max < VICTIM_MAX_BOUND_NS,
                    "a victim ping took %.1f ms during the attacks (bound %.0f ms)",
                    (double)att.max / 1e6, (double)VICTIM_MAX_BOUND_NS / 1e6);
        fault_ab_verdict(&ab, victim, notify, WATCHDOG_USEC, "linger");

        /* Fds on the hello, and an unknown field, are protocol errors, in
         * both windows of (b) and (d). */
        fault_must(np_status(mon, &st), "np_status");
        uint64_t want = l.protocol_errors;
        fault_check(st.protocol_errors - base_errors == want,
                    "%llu protocol errors, want %llu (the hellos with an fd, the unknown fields)",
                    (unsigned long long)(st.protocol_errors - base_errors),
                    (unsigned long long)want);

        /* Every linger has expired by now or soon: the daemon holds nothing. */
        int64_t since = (test_now() - l.last_linger) / NSEC_PER_MSEC_F;
        int wait = END_WAIT_MS - (int)since;
        bool back = fault_await_baseline(mon, dm.pid, 3, base_fds, wait > 1000 ? wait : 1000, &st,
                                         &fds);
        fault_say("%s baseline %.1f s after the last lingering close: %d fds (baseline %d), "
                  "%llu connections",
                  back ? "back at" : "NOT back at", (double)(test_now() - l.last_linger) / 1e9, fds,
                  base_fds, (unsigned long long)st.connections);
        fault_check(back,
                    "not back at baseline: %llu connections, %llu descriptors, %d fds "
                    "(want %d)",
                    (unsigned long long)st.connections, (unsigned long long)st.descriptors, fds,
                    base_fds);
        fault_check(fault_daemon_alive(&dm), "netpolld died");

        victim_stop(victim);
        np_disconnect(l.worker);
        np_disconnect(mon);
        fault_daemon_stop(&dm);
        notify_stop(notify);
        for (int i = 0; i < l.n_peers; i++)
                close(l.peers[i]);
        for (int i = 0; i < l.n_fillers; i++)
                close(l.fillers[i]);
        close(l.listen_fd);
        return fault_finish();
}
