/*
 * Isolation and semantics under a random mix of every attack at once.
 *
 * One daemon (RLIMIT_NOFILE 12000, socket_mode 0666, max_descriptors_per_uid
 * 3000, max_output_bytes_per_uid 8 MiB, max_connections_per_uid 64,
 * handshake_timeout 300 ms, under a fake service manager with WATCHDOG_USEC
 * = 2 s) is attacked by 4 to 6 child processes at once, about half of them
 * uid 65534 and the others root, each picking actions at random until the
 * mix is over (10 s with --quick, 40 s without):
 *
 *  - linger (uid 65534 only): a loopback TCP socket with unsent bytes (its
 *    peer, in a listener that never accepts, has a closed window) and
 *    SO_LINGER {1, 5}, registered and then closed with np_unblock +
 *    np_close, left to the disconnect, or put on a raw hello (a protocol
 *    error);
 *  - junk: 20 KiB of unknown fields (0x78 0x00 ...), or one unknown field,
 *    on a greeted raw connection: dropped without a word;
 *  - empty: hundreds to thousands of zero-length datagrams, then a PING
 *    that must be answered;
 *  - malformed: a Request with an unknown field, OPEN with fd_index 1 and
 *    one fd, PING with 3 fds, OPEN without its fd (each dropped without a
 *    word), a hello carrying an fd (dropped);
 *  - lists: a connection holds 1500-2500 eventfds (200-500 as root) and
 *    calls np_list_descs in a loop, each list showing all its own;
 *  - pipeline: datagrams of 255 PINGs on a raw connection that never reads;
 *  - quota (uid 65534 only): eventfds until -EDQUOT (only that), then
 *    disconnect at once and do it again;
 *  - same pipe: one pipe registered 20 times: 16 admitted, then
 *    -ETOOMANYREFS; after closing them, admitted again;
 *  - regular file, directory, /dev/null: -EPERM, the connection lives on;
 *  - no hello: raw connections that say nothing are closed, never before
 *    handshake_timeout, within 3 s after it;
 *  - storm: np_connect until -EUSERS (max_connections_per_uid), hold, drop.
 *
 * Under the mix a uid's own limits may refuse it (-EUSERS, -EDQUOT, and
 * for uid 65534, whose connections wait while it is at its fd quota with
 * closes in flight, a hello not read in time); those are counted, not
 * failed.  Root's attackers stay far from root's fd quota and output
 * budget, which the victim (root) shares by design: they neither fill
 * nor linger (a uid's lingering closes take its share of the closer
 * threads, its other closes then pile up to its quota, and every
 * connection of the uid waits until the lingers end, the victim's too).
 * So nothing may make a root attacker's call wait a second.  The
 * attackers are background load (fault_load_thread: SCHED_IDLE), so the
 * victim measures the daemon rather than this machine's scheduler.
 *
 * The victim, in this process, as root:
 *  (a) pings every 1 ms (probe.h); its p50/p99/max during the mix are
 *      printed against quiet windows before and after it (half the mix's
 *      length each), and the mix's p99 must stay under 20 ms (100 ms with
 *      --quick), with no ping failing;
 *  (b) on its own connection checks Go's poller semantics, continuously:
 *      a deadline of 5-50 ms ends np_wait with NP_ERR_TIMEOUT, never early
 *      nor a second late; a byte written before the deadline (latched
 *      before the wait, or from another thread during it) ends it with
 *      NP_OK (the deadline may win only when the byte went in within 10 ms
 *      of it, 40 ms with --quick: a loop turn's worth); np_arm + np_poll
 *      deliver the timeout and the readiness as events; np_unblock from
 *      another thread ends a parked wait with NP_ERR_CLOSING; np_reset,
 *      np_close and the session's counters say what they should.  Every
 *      check is counted, and none may fail;
 *  (c) the daemon never dies, no WATCHDOG=1 gap over the whole run exceeds
 *      half the interval, it is back at its baseline fds and connections
 *      at the end, and protocol_errors grew by at least the protocol
 *      errors the attackers saw confirmed.
 *
 * Seeded: the seed is printed, and FAULTS_SEED=N repeats a run's choices
 * (the timing, hence the interleaving, is the machine's).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"

#define WATCHDOG_USEC 2000000
#define DAEMON_NOFILE 12000
#define FD_QUOTA 3000
#define MAX_CONNS_PER_UID 64
#define HANDSHAKE_MS 300
#define SAME_FILE_MAX 16 /* the daemon's SESSION_MAX_SAME_FILE */
#define VICTIM_INTERVAL_US 1000
#define MIN_ATTACKERS 4
#define MAX_ATTACKERS 6
#define GRACE_MS 15000   /* attackers end by themselves within this of the mix's end */
#define END_WAIT_MS 8000 /* back at baseline within this, after the quiet window */
#define P99_BOUND_NS (fault_quick ? 100 * NSEC_PER_MSEC_F : 20 * NSEC_PER_MSEC_F)
#define LATE_BOUND_NS NSEC_PER_SEC_F      /* a timeout later than this is a stall */
#define ROOT_CALL_BOUND_NS NSEC_PER_SEC_F /* a root attacker's call, likewise */
/* A write case the deadline won is a failure only if the byte went in this
 * long before the deadline: the daemon checks readiness before timers in a
 * turn, so only a turn this long could let the timer win. */
#define WRITE_MARGIN_NS (fault_quick ? 40 * NSEC_PER_MSEC_F : 10 * NSEC_PER_MSEC_F)
#define PIPELINE_PINGS 255
#define JUNK_BYTES 20480
#define PROBE_ID 999999
#define MAX_NOTES 12

/* ---- the seed of the generator (fault_rng_next) ---- */

static uint64_t pick_seed(void)
{
        const char *e = getenv("FAULTS_SEED");
        uint64_t s;

        if (e && *e) {
                char *end;
                errno = 0;
                s = strtoull(e, &end, 0);
                if (errno || *end)
                        fault_die("FAULTS_SEED=%s is not a number", e);
                return s;
        }
        s = (uint64_t)test_now() ^ ((uint64_t)getpid() << 32);
        (void)fault_rng_next(&s);
        return fault_rng_next(&s) % 1000000000;
}

/* ---- the attackers ---- */

enum {
        A_LINGER,
        A_JUNK,
        A_EMPTY,
        A_MALFORMED,
        A_LISTS,
        A_PIPELINE,
        A_QUOTA,
        A_SAMEPIPE,
        A_NOTPOLLABLE,
        A_NOHELLO,
        A_STORM,
        N_ACTIONS
};

static const char *const action_names[N_ACTIONS] = {
        "linger", "junk",     "empty",        "malformed", "lists", "pipeline",
        "quota",  "samepipe", "not pollable", "no hello",  "storm",
};

typedef struct Tally {
        int runs;
        int refused;    /* a connect or an open the uid's own limits refused */
        int unexpected; /* outcomes the daemon must never give */
        char first[160];
} Tally;

/* What an attacker saw; written to its report pipe when it ends. */
typedef struct Report {
        int actions;
        Tally t[N_ACTIONS];
        int64_t protocol_drops; /* greeted, sent a bad datagram, dropped without a word */
        int64_t lingering;      /* lingering sockets handed to the daemon */
        int64_t close_max_ns;   /* the longest np_close of one */
        int64_t quota_fills;    /* fills that reached -EDQUOT */
        int64_t quota_max;      /* the most one connection got admitted */
        int64_t toomanyrefs;
        int64_t pipeline_datagrams, pipeline_dropped, pipeline_runs;
        int64_t lists, list_entries;
        int64_t empties;
        int64_t handshake_closes, handshake_min_ns, handshake_max_ns;
        int storm_max;
        int64_t call_max_ns; /* the longest libnetpoll call of an action */
} Report;

typedef struct Attacker {
        int idx;
        uid_t uid;
        pid_t pid;
        int rep; /* parent: the report pipe's read end */
        const char *sock;
        const char *file;
        const char *dir;
        uint64_t rng;
        int64_t end, hard_end;
        Report r;
        int listen_fd;
        struct sockaddr_in addr;
        int pending; /* connections waiting in the listener, never accepted */
        int pipe[2]; /* a pollable fd for malformed OPENs */
        bool reported, exited_alone;
        int64_t exited_at;
} Attacker;

static void note(Attacker *a, int act, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void note(Attacker *a, int act, const char *fmt, ...)
{
        Tally *t = &a->r.t[act];
        va_list ap;

        if (t->unexpected++ > 0)
                return;
        va_start(ap, fmt);
        vsnprintf(t->first, sizeof(t->first), fmt, ap);
        va_end(ap);
}

static const char *err_name(int r)
{
        return r == 0 ? "ok" : r > 0 ? np_strerror(r) : strerror(-r);
}

/* Refusals a uid's own limits explain: connection count, fd quota, a full
 * backlog, and for uid 65534 (whose connections may wait at its quota
 * past the handshake timeout) a connection ended before its hello. */
static bool limit_refusal(const Attacker *a, int r)
{
        if (r == -EUSERS || r == -EAGAIN)
                return true;
        if (a->uid == 0)
                return false;
        return r == -EDQUOT || r == -ECONNRESET || r == -EPIPE || r == -ETIMEDOUT;
}

static bool time_left(const Attacker *a, int64_t until)
{
        int64_t now = test_now();

        return now < until && now < a->hard_end;
}

static void call_time(Attacker *a, int64_t t0)
{
        int64_t dt = test_now() - t0;

        if (dt > a->r.call_max_ns)
                a->r.call_max_ns = dt;
}

/* np_connect; a refusal by the uid's limits counts as refused. */
static int att_connect(Attacker *a, int act, np_client **ret)
{
        int64_t t0 = test_now();
        int r = np_connect(a->sock, ret);

        call_time(a, t0);
        if (r == 0)
                return 0;
        if (limit_refusal(a, r))
                a->r.t[act].refused++;
        else
                note(a, act, "np_connect: %s", err_name(r));
        return r;
}

/* A raw connection that said hello, or < 0. */
static int att_greeted(Attacker *a, int act)
{
        int fd = test_raw_connect(a->sock);

        if (fd < 0) {
                if (limit_refusal(a, fd))
                        a->r.t[act].refused++;
                else
                        note(a, act, "connect: %s", err_name(fd));
                return fd;
        }
        int r = raw_hello(fd, 10000);
        if (r == -ECONNRESET) {
                /* A refusal closes without reading our hello: the kernel
                 * reports the reset ahead of the reason still queued. */
                Netpoll__V1__ServerMessage *m;
                if (raw_recv(fd, 0, &m) == 1) {
                        if (m->error < 0)
                                r = m->error;
                        netpoll__v1__server_message__free_unpacked(m, NULL);
                }
        }
        if (r < 0) {
                close(fd);
                if (limit_refusal(a, r))
                        a->r.t[act].refused++;
                else
                        note(a, act, "hello: %s", err_name(r));
                return r;
        }
        return fd;
}

/* What became of a raw connection after it sent something. */
typedef struct Ending {
        bool closed;   /* the daemon closed it */
        bool datagram; /* it said something first */
        bool served;   /* a reply to the probe came */
        bool cut;      /* the run ended before timeout_ms did */
        int64_t at;    /* when it was seen closed or served */
} Ending;

static Ending await_end(Attacker *a, int fd, int timeout_ms)
{
        int64_t until = test_now() + (int64_t)timeout_ms * NSEC_PER_MSEC_F;
        Ending e = { 0 };

        if (until > a->hard_end) {
                until = a->hard_end;
                e.cut = true;
        }
        for (int i = 0; i < 100000; i++) {
                Netpoll__V1__ServerMessage *m;
                int64_t left = (until - test_now()) / NSEC_PER_MSEC_F;
                if (left <= 0)
                        break;
                int r = raw_recv(fd, (int)left, &m);
                if (r == -ETIMEDOUT)
                        break;
                if (r == 0 || (r < 0 && r != -EBADMSG && r != -EINTR)) {
                        e.closed = true;
                        e.at = test_now();
                        e.cut = false;
                        return e;
                }
                if (r != 1)
                        continue;
                e.datagram = true;
                for (size_t k = 0; k < m->n_replies; k++)
                        e.served |= m->replies[k]->id == PROBE_ID;
                netpoll__v1__server_message__free_unpacked(m, NULL);
                if (e.served) {
                        e.at = test_now();
                        e.cut = false;
                        return e;
                }
        }
        return e;
}

static int send_probe(int fd)
{
        Netpoll__V1__Request q = raw_request(PROBE_ID, NETPOLL__V1__OP__OP_PING, 0, 0, 0);
        Netpoll__V1__Request *qs[1] = { &q };

        return raw_send_requests(fd, qs, 1, NULL, 0);
}

/* -- linger -- */

static int listener_open(Attacker *a)
{
        socklen_t len = sizeof(a->addr);
        int small = 4096;

        if (a->listen_fd >= 0)
                close(a->listen_fd); /* its queue is reset: those lingers end */
        a->pending = 0;
        a->addr = (struct sockaddr_in){ .sin_family = AF_INET,
                                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        a->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (a->listen_fd < 0)
                return -errno;
        /* Inherited by the queued connections: their window closes at once. */
        (void)setsockopt(a->listen_fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        if (bind(a->listen_fd, (struct sockaddr *)&a->addr, sizeof(a->addr)) < 0 ||
            listen(a->listen_fd, 128) < 0 ||
            getsockname(a->listen_fd, (struct sockaddr *)&a->addr, &len) < 0) {
                int r = -errno;
                close(a->listen_fd);
                a->listen_fd = -1;
                return r;
        }
        return 0;
}

/* A connected loopback TCP socket with unsent bytes and SO_LINGER {1, 5};
 * ours to close.  < 0 when the machine would not make one. */
static int stuck_socket(Attacker *a)
{
        static char junk[16384];
        int small = 4096, unsent = 0;

        if ((a->listen_fd < 0 || a->pending >= 100) && listener_open(a) < 0)
                return -1;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        if (connect(fd, (struct sockaddr *)&a->addr, sizeof(a->addr)) < 0 ||
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
                close(fd);
                return -1;
        }
        a->pending++;
        for (int round = 0; round < 20 && unsent <= 0; round++) {
                for (int i = 0; i < 1000; i++)
                        if (write(fd, junk, sizeof(junk)) < 0)
                                break;
                if (ioctl(fd, SIOCOUTQNSD, &unsent) < 0)
                        break;
                if (unsent <= 0)
                        fault_sleep_ms(2);
        }
        struct linger lg = { .l_onoff = 1, .l_linger = 5 };
        if (unsent <= 0 || setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

static void act_linger(Attacker *a)
{
        int variant = (int)fault_rng_range(&a->rng, 0, 2);
        int fd = stuck_socket(a);

        if (fd < 0) {
                a->r.t[A_LINGER].refused++;
                return;
        }
        if (variant == 2) {
                /* On a hello: the daemon closes it with the connection. */
                Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
                Netpoll__V1__Hello h = NETPOLL__V1__HELLO__INIT;
                uint8_t buf[64];
                int sock = test_raw_connect(a->sock);
                if (sock < 0) {
                        close(fd);
                        a->r.t[A_LINGER].refused++;
                        return;
                }
                h.version = 1;
                m.hello = &h;
                size_t len = netpoll__v1__client_message__pack(&m, buf);
                int r = raw_send(sock, buf, len, &fd, 1);
                close(fd);
                a->r.lingering += r == 0;
                Ending e = r < 0 ? (Ending){ .closed = true } : await_end(a, sock, 10000);
                if (!e.closed && !e.cut)
                        note(a, A_LINGER, "a hello carrying a lingering socket: not dropped");
                close(sock);
                return;
        }
        np_client *c;
        np_desc d;
        if (att_connect(a, A_LINGER, &c) < 0) {
                close(fd);
                return;
        }
        int64_t t0 = test_now();
        int r = np_open(c, fd, 1, &d);
        call_time(a, t0);
        close(fd); /* the daemon's copy is the last one */
        if (r < 0) {
                if (r == -EDQUOT && a->uid != 0)
                        a->r.t[A_LINGER].refused++;
                else
                        note(a, A_LINGER, "np_open(lingering socket): %s", err_name(r));
                np_disconnect(c);
                return;
        }
        a->r.lingering++;
        if (variant == 0) {
                r = np_unblock(c, d);
                if (r != 0)
                        note(a, A_LINGER, "np_unblock: %s", err_name(r));
                t0 = test_now();
                r = np_close(c, d);
                int64_t dt = test_now() - t0;
                call_time(a, t0);
                if (dt > a->r.close_max_ns)
                        a->r.close_max_ns = dt;
                if (r != 0)
                        note(a, A_LINGER, "np_close: %s", err_name(r));
        }
        np_disconnect(c);
}

/* -- junk and malformed datagrams -- */

static void act_junk(Attacker *a)
{
        static uint8_t junk[JUNK_BYTES];
        size_t len = fault_rng_range(&a->rng, 0, 3) == 0 ? 2 : JUNK_BYTES;
        int fd = att_greeted(a, A_JUNK);

        if (fd < 0)
                return;
        for (size_t i = 0; i < len; i += 2) {
                junk[i] = (15 << 3) | 0; /* field 15, varint */
                junk[i + 1] = 0x00;
        }
        int r = raw_send(fd, junk, len, NULL, 0);
        Ending e = r < 0 ? (Ending){ .closed = true, .datagram = true } : await_end(a, fd, 10000);
        if (e.closed && !e.datagram)
                a->r.protocol_drops++;
        else if (!e.closed && !e.cut)
                note(a, A_JUNK, "%zu bytes of unknown fields: not dropped in 10 s", len);
        else if (e.closed && r == 0)
                note(a, A_JUNK, "%zu bytes of unknown fields: answered before the drop", len);
        close(fd);
}

static void act_empty(Attacker *a)
{
        int n = (int)fault_rng_range(&a->rng, 200, 3000), sent = 0;
        int64_t until = test_now() + 2 * NSEC_PER_SEC_F;
        int fd = att_greeted(a, A_EMPTY);
        bool gone = false;

        if (fd < 0)
                return;
        for (int i = 0; i < 100000 && sent < n && !gone && time_left(a, until); i++) {
                int r = test_send_fds(fd, "", 0, NULL, 0, MSG_DONTWAIT);
                if (r == 0) {
                        sent++;
                        continue;
                }
                if (r != -EAGAIN && r != -EINTR) {
                        gone = true;
                        break;
                }
                struct pollfd pfd = { .fd = fd, .events = POLLOUT };
                if (poll(&pfd, 1, 100) > 0 && (pfd.revents & (POLLHUP | POLLERR)))
                        gone = true;
        }
        a->r.empties += sent;
        Ending e =
                gone || send_probe(fd) < 0 ? (Ending){ .closed = true } : await_end(a, fd, 10000);
        if (e.closed)
                note(a, A_EMPTY, "dropped after %d empty datagrams", sent);
        else if (!e.served && !e.cut)
                note(a, A_EMPTY, "a PING after %d empty datagrams: no reply in 10 s", sent);
        close(fd);
}

static const char *const malformed_names[] = {
        "a Request with an unknown field",
        "OPEN with fd_index 1 and 1 fd",
        "PING with 3 fds",
        "OPEN without its fd",
        "a hello with an fd",
};

static void act_malformed(Attacker *a)
{
        int variant = (int)fault_rng_range(&a->rng, 0, 4);
        const char *what = malformed_names[variant];
        int fds[3] = { a->pipe[0], a->pipe[1], a->pipe[0] };
        uint8_t buf[128];
        int fd, r;

        if (variant == 4) {
                Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
                Netpoll__V1__Hello h = NETPOLL__V1__HELLO__INIT;
                fd = test_raw_connect(a->sock);
                if (fd < 0) {
                        a->r.t[A_MALFORMED].refused++;
                        return;
                }
                h.version = 1;
                m.hello = &h;
                size_t len = netpoll__v1__client_message__pack(&m, buf);
                r = raw_send(fd, buf, len, fds, 1);
                Ending e = r < 0 ? (Ending){ .closed = true } : await_end(a, fd, 10000);
                if (!e.closed && !e.cut)
                        note(a, A_MALFORMED, "%s: not dropped in 10 s", what);
                close(fd);
                return;
        }
        fd = att_greeted(a, A_MALFORMED);
        if (fd < 0)
                return;
        Netpoll__V1__Request q = raw_request(1, NETPOLL__V1__OP__OP_OPEN, 0, 0, 0);
        Netpoll__V1__Request *qs[1] = { &q };
        switch (variant) {
        case 0:
                r = raw_send(fd, buf, raw_pack_ping_with_unknown(buf, 1), NULL, 0);
                break;
        case 1:
                q.fd_index = 1;
                r = raw_send_requests(fd, qs, 1, fds, 1);
                break;
        case 2:
                q.op = NETPOLL__V1__OP__OP_PING;
                r = raw_send_requests(fd, qs, 1, fds, 3);
                break;
        default:
                r = raw_send_requests(fd, qs, 1, NULL, 0);
                break;
        }
        if (r == 0)
                (void)send_probe(fd);
        Ending e = r < 0 ? (Ending){ .closed = true, .datagram = true } : await_end(a, fd, 10000);
        if (e.served)
                note(a, A_MALFORMED, "%s: served", what);
        else if (e.closed && !e.datagram)
                a->r.protocol_drops++;
        else if (!e.closed && !e.cut)
                note(a, A_MALFORMED, "%s: neither dropped nor served in 10 s", what);
        close(fd);
}

/* -- descriptor lists -- */

/* Registers up to n fresh eventfds on c; returns how many, *ret_error the
 * refusal (0: none). */
static int fill_eventfds(Attacker *a, np_client *c, int n, int64_t until, int *ret_error)
{
        int ok = 0;

        *ret_error = 0;
        for (int i = 0; i < n && time_left(a, until); i++) {
                int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                np_desc d;
                if (efd < 0)
                        break;
                int64_t t0 = test_now();
                int r = np_open(c, efd, (uint64_t)i, &d);
                call_time(a, t0);
                close(efd); /* the daemon keeps its own copy */
                if (r < 0) {
                        *ret_error = r;
                        break;
                }
                ok++;
        }
        return ok;
}

static void act_lists(Attacker *a)
{
        int want = a->uid ? (int)fault_rng_range(&a->rng, 1500, 2500)
                          : (int)fault_rng_range(&a->rng, 200, 500);
        int lists = (int)fault_rng_range(&a->rng, 5, 40), err;
        np_client *c;

        if (att_connect(a, A_LISTS, &c) < 0)
                return;
        int held = fill_eventfds(a, c, want, test_now() + 3 * NSEC_PER_SEC_F, &err);
        if (err == -EDQUOT && a->uid != 0)
                a->r.t[A_LISTS].refused++;
        else if (err)
                note(a, A_LISTS, "np_open after %d eventfds: %s", held, err_name(err));
        uint64_t self = np_connection_id(c);
        int64_t until = test_now() + 1500 * NSEC_PER_MSEC_F;
        for (int i = 0; i < lists && time_left(a, until); i++) {
                np_desc_info *v = NULL;
                size_t n = 0, own = 0;
                int64_t t0 = test_now();
                int r = np_list_descs(c, 0, &v, &n);
                call_time(a, t0);
                if (r < 0) {
                        note(a, A_LISTS, "np_list_descs holding %d: %s", held, err_name(r));
                        break;
                }
                for (size_t k = 0; k < n; k++)
                        own += v[k].client == self;
                free(v);
                a->r.lists++;
                a->r.list_entries += (int64_t)n;
                if (own != (size_t)held) {
                        note(a, A_LISTS, "np_list_descs shows %zu of the connection's %d", own,
                             held);
                        break;
                }
        }
        np_disconnect(c);
}

/* -- a connection that never reads -- */

static void act_pipeline(Attacker *a)
{
        static uint8_t *buf;
        static size_t len;
        int64_t until = test_now() + 3 * NSEC_PER_SEC_F;
        bool dropped = false;
        int fd;

        if (!buf)
                buf = raw_pack_pings(PIPELINE_PINGS, &len);
        fd = att_greeted(a, A_PIPELINE);
        if (fd < 0)
                return;
        a->r.pipeline_runs++;
        for (int i = 0; i < 3000 && !dropped && time_left(a, until); i++) {
                int r = test_send_fds(fd, buf, len, NULL, 0, MSG_DONTWAIT);
                if (r == 0) {
                        a->r.pipeline_datagrams++;
                        continue;
                }
                if (r != -EAGAIN && r != -EINTR) {
                        dropped = true;
                        break;
                }
                struct pollfd pfd = { .fd = fd, .events = POLLOUT };
                if (poll(&pfd, 1, 20) > 0 && (pfd.revents & (POLLHUP | POLLERR)))
                        dropped = true;
        }
        a->r.pipeline_dropped += dropped;
        close(fd);
}

/* -- fd quota churn (uid 65534) -- */

static void act_quota(Attacker *a)
{
        int cycles = (int)fault_rng_range(&a->rng, 1, 3);

        for (int k = 0; k < cycles && time_left(a, a->end); k++) {
                np_client *c = NULL;
                int r = -EAGAIN;
                int64_t give_up = test_now() + NSEC_PER_SEC_F;
                for (int i = 0; i < 1000 && time_left(a, give_up); i++) {
                        r = np_connect(a->sock, &c);
                        if (r == 0 || !limit_refusal(a, r))
                                break;
                        fault_sleep_ms(1);
                }
                if (r < 0) {
                        if (limit_refusal(a, r))
                                a->r.t[A_QUOTA].refused++;
                        else
                                note(a, A_QUOTA, "np_connect: %s", err_name(r));
                        return;
                }
                int err, ok = fill_eventfds(a, c, FD_QUOTA + 1000, test_now() + 3 * NSEC_PER_SEC_F,
                                            &err);
                if (ok > a->r.quota_max)
                        a->r.quota_max = ok;
                if (err == -EDQUOT)
                        a->r.quota_fills++;
                else if (err)
                        note(a, A_QUOTA, "np_open after %d eventfds: %s, want %s", ok,
                             err_name(err), strerror(EDQUOT));
                if (ok > FD_QUOTA)
                        note(a, A_QUOTA, "one connection got %d descriptors, quota %d", ok,
                             FD_QUOTA);
                np_disconnect(c); /* at once: the daemon closes them from here on */
        }
}

/* -- one pipe, many times -- */

static void act_samepipe(Attacker *a)
{
        np_desc d[SAME_FILE_MAX + 4];
        int p[2], ok = 0, err = 0, r;
        np_client *c;

        if (att_connect(a, A_SAMEPIPE, &c) < 0)
                return;
        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
                np_disconnect(c);
                return;
        }
        for (int i = 0; i < SAME_FILE_MAX + 4 && !err; i++) {
                int64_t t0 = test_now();
                r = np_open(c, p[0], (uint64_t)i, &d[ok]);
                call_time(a, t0);
                if (r == 0)
                        ok++;
                else
                        err = r;
        }
        bool quota = err == -EDQUOT && a->uid != 0;
        if (quota)
                a->r.t[A_SAMEPIPE].refused++;
        else if (err != -ETOOMANYREFS || ok != SAME_FILE_MAX)
                note(a, A_SAMEPIPE, "one pipe registered %d times, then %s (want %d, then %s)", ok,
                     err_name(err), SAME_FILE_MAX, strerror(ETOOMANYREFS));
        else
                a->r.toomanyrefs++;
        if (err == -ETOOMANYREFS) {
                np_desc extra;
                r = np_open(c, p[0], 99, &extra);
                if (r != -ETOOMANYREFS && !(r == -EDQUOT && a->uid != 0))
                        note(a, A_SAMEPIPE, "the pipe again after -ETOOMANYREFS: %s", err_name(r));
                if (r == 0)
                        d[ok++] = extra;
        }
        if (fault_rng_range(&a->rng, 0, 1)) {
                /* Closed, they count no more. */
                for (int i = 0; i < ok; i++) {
                        r = np_unblock(c, d[i]);
                        if (r == 0)
                                r = np_close(c, d[i]);
                        if (r != 0)
                                note(a, A_SAMEPIPE, "np_unblock + np_close: %s", err_name(r));
                }
                r = np_open(c, p[0], 100, &d[0]);
                if (r != 0 && !(r == -EDQUOT && a->uid != 0))
                        note(a, A_SAMEPIPE, "the pipe after closing its %d descriptors: %s", ok,
                             err_name(r));
        }
        np_disconnect(c);
        close(p[0]);
        close(p[1]);
}

/* -- fds that cannot be polled -- */

static void act_notpollable(Attacker *a)
{
        const char *paths[3] = { a->file, a->dir, "/dev/null" };
        np_client *c;
        np_desc d;

        if (att_connect(a, A_NOTPOLLABLE, &c) < 0)
                return;
        for (int i = 0; i < 3; i++) {
                int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                int r = np_open(c, fd, 1, &d);
                close(fd);
                if (r == -EDQUOT && a->uid != 0)
                        a->r.t[A_NOTPOLLABLE].refused++;
                else if (r != -EPERM)
                        note(a, A_NOTPOLLABLE, "np_open(%s): %s, want %s", paths[i], err_name(r),
                             strerror(EPERM));
        }
        int r = np_ping(c);
        if (r != 0)
                note(a, A_NOTPOLLABLE, "np_ping after the refused opens: %s", err_name(r));
        np_disconnect(c);
}

/* -- connections that never say hello -- */

static void act_nohello(Attacker *a)
{
        int n = (int)fault_rng_range(&a->rng, 1, 6), fd[6];
        int64_t t0[6];
        bool done[6] = { false }, said[6] = { false };
        int left = 0;

        for (int i = 0; i < n; i++) {
                t0[i] = test_now();
                fd[i] = test_raw_connect(a->sock);
                if (fd[i] < 0) {
                        done[i] = true;
                        a->r.t[A_NOHELLO].refused++;
                } else
                        left++;
        }
        int64_t until = test_now() + (HANDSHAKE_MS + 3000) * NSEC_PER_MSEC_F;
        for (int round = 0; round < 10000 && left > 0 && time_left(a, until); round++) {
                struct pollfd pfd[6];
                int idx[6], k = 0;
                for (int i = 0; i < n; i++)
                        if (!done[i]) {
                                pfd[k] = (struct pollfd){ .fd = fd[i], .events = POLLIN };
                                idx[k++] = i;
                        }
                if (poll(pfd, (nfds_t)k, 50) <= 0)
                        continue;
                for (int j = 0; j < k; j++) {
                        if (!pfd[j].revents)
                                continue;
                        int i = idx[j];
                        char b[256];
                        ssize_t got = recv(fd[i], b, sizeof(b), MSG_DONTWAIT);
                        if (got > 0) {
                                said[i] = true; /* a refusal: its reason first */
                                continue;
                        }
                        if (got < 0 && (errno == EAGAIN || errno == EINTR))
                                continue;
                        int64_t dt = test_now() - t0[i];
                        done[i] = true;
                        left--;
                        if (said[i]) {
                                a->r.t[A_NOHELLO].refused++;
                                continue;
                        }
                        a->r.handshake_closes++;
                        if (!a->r.handshake_min_ns || dt < a->r.handshake_min_ns)
                                a->r.handshake_min_ns = dt;
                        if (dt > a->r.handshake_max_ns)
                                a->r.handshake_max_ns = dt;
                        if (dt < HANDSHAKE_MS * NSEC_PER_MSEC_F)
                                note(a, A_NOHELLO,
                                     "closed %.1f ms after connecting, before "
                                     "the %d ms handshake timeout",
                                     (double)dt / 1e6, HANDSHAKE_MS);
                }
        }
        if (left > 0 && test_now() < a->hard_end)
                note(a, A_NOHELLO, "%d silent connections still open %d ms after connecting", left,
                     HANDSHAKE_MS + 3000);
        for (int i = 0; i < n; i++)
                if (fd[i] >= 0)
                        close(fd[i]);
}

/* -- reconnect storms -- */

static void act_storm(Attacker *a)
{
        int rounds = (int)fault_rng_range(&a->rng, 1, 3);
        np_client *c[MAX_CONNS_PER_UID];

        for (int k = 0; k < rounds && time_left(a, a->end); k++) {
                int n = 0, r = 0;
                int64_t until = test_now() + NSEC_PER_SEC_F;
                while (n < MAX_CONNS_PER_UID && time_left(a, until)) {
                        int64_t t0 = test_now();
                        r = np_connect(a->sock, &c[n]);
                        call_time(a, t0);
                        if (r < 0)
                                break;
                        n++;
                }
                if (n > a->r.storm_max)
                        a->r.storm_max = n;
                if (r < 0 && !limit_refusal(a, r))
                        note(a, A_STORM, "np_connect after %d: %s", n, err_name(r));
                fault_sleep_ms(fault_rng_range(&a->rng, 0, 200));
                for (int i = 0; i < n; i++)
                        np_disconnect(c[i]);
        }
}

static void __attribute__((noreturn)) attacker_main(Attacker *a, int rep)
{
        a->listen_fd = -1;
        if (pipe2(a->pipe, O_CLOEXEC) < 0)
                fault_die("pipe: %s", strerror(errno));
        for (int i = 0; i < 100000 && test_now() < a->end; i++) {
                int act = (int)fault_rng_range(&a->rng, 0, N_ACTIONS - 1);
                for (int k = 0; k < 100 && a->uid == 0 && (act == A_QUOTA || act == A_LINGER); k++)
                        act = (int)fault_rng_range(&a->rng, 0, N_ACTIONS - 1);
                a->r.actions++;
                a->r.t[act].runs++;
                switch (act) {
                case A_LINGER:
                        act_linger(a);
                        break;
                case A_JUNK:
                        act_junk(a);
                        break;
                case A_EMPTY:
                        act_empty(a);
                        break;
                case A_MALFORMED:
                        act_malformed(a);
                        break;
                case A_LISTS:
                        act_lists(a);
                        break;
                case A_PIPELINE:
                        act_pipeline(a);
                        break;
                case A_QUOTA:
                        act_quota(a);
                        break;
                case A_SAMEPIPE:
                        act_samepipe(a);
                        break;
                case A_NOTPOLLABLE:
                        act_notpollable(a);
                        break;
                case A_NOHELLO:
                        act_nohello(a);
                        break;
                default:
                        act_storm(a);
                        break;
                }
        }
        (void)!write(rep, &a->r, sizeof(a->r));
        _exit(0);
}

/* Forks attacker a: it becomes background load (fault_load_thread) as
 * a->uid and runs until a->end. */
static void attacker_start(Attacker *a)
{
        int rep[2];

        if (pipe2(rep, O_CLOEXEC) < 0)
                fault_die("pipe: %s", strerror(errno));
        fflush(stdout);
        a->pid = fork();
        if (a->pid < 0)
                fault_die("fork: %s", strerror(errno));
        if (a->pid == 0) {
                /* Nothing of ours: the victim's connections stay the
                 * victim's alone. */
                if (dup2(rep[1], 3) < 0)
                        _exit(1);
                close_range(4, ~0U, 0);
                fault_load_thread();
                if (a->uid != 0 &&
                    (setgroups(0, NULL) < 0 || setgid(a->uid) < 0 || setuid(a->uid) < 0))
                        fault_die("cannot become uid %d: %s", (int)a->uid, strerror(errno));
                /* After setuid, which clears it. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                attacker_main(a, 3);
        }
        close(rep[1]);
        a->rep = rep[0];
}

/* Reaps the attackers that ended by then; SIGKILLs the rest (at most
 * grace_ms after the mix's end).  Returns when every one is gone. */
static void attackers_end(Attacker *at, int n, int64_t deadline)
{
        int alive = n;

        for (int i = 0; i < 1000000 && alive > 0; i++) {
                alive = 0;
                for (int k = 0; k < n; k++) {
                        int status;
                        if (at[k].pid <= 0)
                                continue;
                        pid_t r = waitpid(at[k].pid, &status, WNOHANG);
                        if (r == at[k].pid || (r < 0 && errno != EINTR)) {
                                at[k].exited_alone = r == at[k].pid && WIFEXITED(status) &&
                                                     WEXITSTATUS(status) == 0;
                                at[k].exited_at = test_now();
                                at[k].pid = -1;
                                continue;
                        }
                        if (test_now() > deadline) {
                                kill(at[k].pid, SIGKILL);
                                waitpid(at[k].pid, &status, 0);
                                at[k].exited_at = test_now();
                                at[k].pid = -1;
                                continue;
                        }
                        alive++;
                }
                if (alive)
                        fault_sleep_ms(5);
        }
        for (int k = 0; k < n; k++) {
                struct pollfd pfd = { .fd = at[k].rep, .events = POLLIN };
                at[k].reported =
                        poll(&pfd, 1, 0) > 0 &&
                        read(at[k].rep, &at[k].r, sizeof(at[k].r)) == (ssize_t)sizeof(at[k].r);
                close(at[k].rep);
        }
}

/* ---- the victim's semantic checks ---- */

enum { PH_BEFORE, PH_MIX, PH_AFTER, N_PHASES };

static const char *const phase_names[N_PHASES] = { "quiet before", "mix", "quiet after" };

enum { S_TIMEOUT, S_LATCHED, S_WRITE, S_ARM_TIMEOUT, S_ARM_WRITE, S_UNBLOCK, N_SEM };

static const char *const sem_names[N_SEM] = {
        "deadline",       "write, then wait", "write during the wait",
        "arm + deadline", "arm + write",      "unblock",
};

#define SEM_MAX_LATE 100000

typedef struct SemPhase {
        int64_t checks, failed;
        int64_t runs[N_SEM];
        int64_t ok_before_deadline; /* write cases ended by readiness */
        int64_t late_writes;        /* write cases the deadline won, the byte written after it */
        int64_t lost; /* the deadline won, the byte written before it (within the margin) */
        int64_t lost_ahead_max; /* the most the byte was ahead of the deadline in those */
        size_t n_late;
        int64_t late[SEM_MAX_LATE]; /* how late each timeout came */
} SemPhase;

typedef struct Sem {
        np_client *c;
        pthread_t thread;
        atomic_int stop, phase;
        uint64_t rng;
        int pipe[2];
        np_desc d;
        uint64_t user;
        bool broken; /* lost its connection or its descriptor */
        int notes;
        SemPhase ph[N_PHASES];
} Sem;

static void sem_check(Sem *s, bool cond, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void sem_check(Sem *s, bool cond, const char *fmt, ...)
{
        SemPhase *p = &s->ph[atomic_load(&s->phase)];
        char buf[512];
        va_list ap;

        p->checks++;
        if (cond)
                return;
        p->failed++;
        if (s->notes++ >= MAX_NOTES)
                return;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        fault_say("semantics (%s): FAIL: %s", phase_names[atomic_load(&s->phase)], buf);
}

/* A call's outcome; a lost connection ends the checks. */
static bool sem_expect(Sem *s, int r, int want, const char *what)
{
        sem_check(s, r == want, "%s: %s, want %s", what, err_name(r), err_name(want));
        if (r == -ECONNRESET || r == -EPIPE || r == -ENOTCONN)
                s->broken = true;
        return r == want;
}

/* A fresh pipe, its read end registered. */
static void sem_fresh(Sem *s)
{
        if (pipe2(s->pipe, O_CLOEXEC | O_NONBLOCK) < 0)
                fault_die("pipe: %s", strerror(errno));
        int r = np_open(s->c, s->pipe[0], ++s->user, &s->d);
        if (!sem_expect(s, r, 0, "np_open(pipe)"))
                s->broken = true;
}

/* Unregisters and closes the pipe (a byte written to it must not stay
 * latched into the next case). */
static void sem_retire(Sem *s, bool unblocked)
{
        if (!unblocked)
                sem_expect(s, np_unblock(s->c, s->d), 0, "np_unblock");
        sem_expect(s, np_close(s->c, s->d), 0, "np_close");
        close(s->pipe[0]);
        close(s->pipe[1]);
}

typedef struct Job {
        Sem *s;
        int64_t at;   /* when to act */
        bool unblock; /* np_unblock, else write a byte */
        int result;
        int64_t done; /* when it was done */
        pthread_t thread;
} Job;

static void *job_main(void *arg)
{
        Job *j = arg;
        struct timespec ts = { .tv_sec = j->at / NSEC_PER_SEC_F,
                               .tv_nsec = j->at % NSEC_PER_SEC_F };

        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
        if (j->unblock)
                j->result = np_unblock(j->s->c, j->s->d);
        else
                j->result = write(j->s->pipe[1], "x", 1) == 1 ? 0 : -errno;
        j->done = test_now();
        return NULL;
}

static void job_start(Job *j, Sem *s, int64_t at, bool unblock)
{
        *j = (Job){ .s = s, .at = at, .unblock = unblock };
        if (pthread_create(&j->thread, NULL, job_main, j) != 0)
                fault_die("pthread_create");
}

static void late_add(SemPhase *p, int64_t late)
{
        if (p->n_late < SEM_MAX_LATE)
                p->late[p->n_late++] = late;
}

/* The deadline ends the wait: NP_ERR_TIMEOUT, never early. */
static void sem_timeout(Sem *s, SemPhase *p)
{
        int64_t ns = fault_rng_range(&s->rng, 5, 50) * NSEC_PER_MSEC_F;
        int how = (int)fault_rng_range(&s->rng, 0, 2);
        /* read wait under a read or a both-ways deadline, or a write wait
         * (a pipe's read end is never writable) */
        int dmode = how == 0 ? NP_READ : how == 1 ? NP_RW : NP_WRITE;
        int wmode = how == 2 ? NP_WRITE : NP_READ;
        int64_t t0 = test_now();

        sem_expect(s, np_set_deadline(s->c, s->d, ns, dmode), 0, "np_set_deadline");
        int r = np_wait(s->c, s->d, wmode);
        int64_t dt = test_now() - t0;
        sem_expect(s, r, NP_ERR_TIMEOUT, "np_wait under a deadline");
        if (r == NP_ERR_TIMEOUT) {
                sem_check(s, dt >= ns, "a %.0f ms deadline ended np_wait after %.3f ms: early",
                          (double)ns / 1e6, (double)dt / 1e6);
                sem_check(s, dt - ns < LATE_BOUND_NS,
                          "a %.0f ms deadline ended np_wait %.1f ms "
                          "late",
                          (double)ns / 1e6, (double)(dt - ns) / 1e6);
                late_add(p, dt - ns);
        }
        sem_expect(s, np_set_deadline(s->c, s->d, 0, NP_RW), 0, "np_set_deadline(0)");
        sem_expect(s, np_reset(s->c, s->d, wmode), NP_OK, "np_reset after the deadline cleared");
}

/* A byte before the deadline ends the wait with NP_OK: written before the
 * wait (latched) or from another thread during it. */
static void sem_write(Sem *s, SemPhase *p, bool latched)
{
        int64_t ns = fault_rng_range(&s->rng, 5, 50) * NSEC_PER_MSEC_F;
        int64_t w = (int64_t)(fault_rng_next(&s->rng) % (uint64_t)(ns / 4));
        int64_t t0 = test_now(), wrote;
        Job j;

        sem_expect(s, np_set_deadline(s->c, s->d, ns, NP_READ), 0, "np_set_deadline");
        if (latched) {
                sem_check(s, write(s->pipe[1], "x", 1) == 1, "write: %s", strerror(errno));
                wrote = test_now();
        } else
                job_start(&j, s, t0 + w, false);
        int r = np_wait(s->c, s->d, NP_READ);
        int64_t dt = test_now() - t0;
        if (!latched) {
                pthread_join(j.thread, NULL);
                sem_check(s, j.result == 0, "write: %s", err_name(j.result));
                wrote = j.done;
        }
        int64_t ahead = t0 + ns - wrote; /* the byte was in this long before the deadline */
        if (r == NP_OK)
                p->ok_before_deadline++;
        else if (r == NP_ERR_TIMEOUT) {
                sem_check(s, dt >= ns, "a %.0f ms deadline ended np_wait after %.3f ms: early",
                          (double)ns / 1e6, (double)dt / 1e6);
                sem_check(s, ahead <= WRITE_MARGIN_NS,
                          "np_wait: %s although a byte was written %.1f ms before its %.0f ms "
                          "deadline%s",
                          err_name(r), (double)ahead / 1e6, (double)ns / 1e6,
                          latched ? " (before the wait)" : "");
                if (ahead <= 0)
                        p->late_writes++; /* the writer ran late: the deadline was first */
                else
                        p->lost++;
                if (ahead > p->lost_ahead_max)
                        p->lost_ahead_max = ahead;
        } else
                sem_expect(s, r, NP_OK, "np_wait with a byte written before the deadline");
        sem_retire(s, false);
        sem_fresh(s);
}

static bool event_is(const np_event *e, const Sem *s, int result)
{
        return e->desc == s->d && e->user == s->user && e->mode == NP_READ && e->result == result;
}

/* np_arm + np_poll: the deadline's event, never early. */
static void sem_arm_timeout(Sem *s, SemPhase *p)
{
        int64_t ns = fault_rng_range(&s->rng, 5, 50) * NSEC_PER_MSEC_F;
        int64_t t0 = test_now();
        np_event ev[4];

        sem_expect(s, np_set_deadline(s->c, s->d, ns, NP_READ), 0, "np_set_deadline");
        sem_expect(s, np_arm(s->c, s->d, NP_READ), 0, "np_arm");
        int n = np_poll(s->c, ns + 2 * NSEC_PER_SEC_F, ev, 4);
        int64_t dt = test_now() - t0;
        sem_check(s, n == 1 && event_is(&ev[0], s, NP_ERR_TIMEOUT),
                  "np_poll after np_arm under a %.0f ms deadline: %d events (%s), want its "
                  "timeout",
                  (double)ns / 1e6, n, n > 0 ? err_name(ev[0].result) : err_name(n));
        if (n < 0)
                s->broken = true;
        if (n == 1 && ev[0].result == NP_ERR_TIMEOUT) {
                sem_check(s, dt >= ns, "a %.0f ms deadline's event after %.3f ms: early",
                          (double)ns / 1e6, (double)dt / 1e6);
                sem_check(s, dt - ns < LATE_BOUND_NS, "a %.0f ms deadline's event %.1f ms late",
                          (double)ns / 1e6, (double)(dt - ns) / 1e6);
                late_add(p, dt - ns);
        }
        sem_expect(s, np_set_deadline(s->c, s->d, 0, NP_RW), 0, "np_set_deadline(0)");
        sem_expect(s, np_reset(s->c, s->d, NP_READ), NP_OK, "np_reset after the deadline cleared");
}

/* np_arm + np_poll: readiness from another thread's write. */
static void sem_arm_write(Sem *s)
{
        np_event ev[4];
        Job j;

        sem_expect(s, np_arm(s->c, s->d, NP_READ), 0, "np_arm");
        job_start(&j, s, test_now() + fault_rng_range(&s->rng, 0, 20) * NSEC_PER_MSEC_F, false);
        int n = np_poll(s->c, 2 * NSEC_PER_SEC_F, ev, 4);
        pthread_join(j.thread, NULL);
        sem_check(s, j.result == 0, "write: %s", err_name(j.result));
        sem_check(s, n == 1 && event_is(&ev[0], s, NP_OK),
                  "np_poll after np_arm and a write: %d events (%s), want its readiness", n,
                  n > 0 ? err_name(ev[0].result) : err_name(n));
        if (n < 0)
                s->broken = true;
        sem_retire(s, false);
        sem_fresh(s);
}

/* np_unblock from another thread ends a parked wait with NP_ERR_CLOSING. */
static void sem_unblock(Sem *s)
{
        Job j;

        /* Bounded: a lost unblock ends in a timeout, which fails. */
        sem_expect(s, np_set_deadline(s->c, s->d, 2 * NSEC_PER_SEC_F, NP_READ), 0,
                   "np_set_deadline");
        job_start(&j, s, test_now() + fault_rng_range(&s->rng, 0, 20) * NSEC_PER_MSEC_F, true);
        int r = np_wait(s->c, s->d, NP_READ);
        pthread_join(j.thread, NULL);
        sem_expect(s, j.result, 0, "np_unblock from another thread");
        sem_expect(s, r, NP_ERR_CLOSING, "np_wait ended by np_unblock");
        sem_expect(s, np_unblock(s->c, s->d), -EALREADY, "np_unblock again");
        sem_retire(s, true);
        sem_fresh(s);
}

/* After a failed case: ends whatever of it is left (an armed wait whose
 * event never came, a deadline), collects the events, and starts over on
 * a fresh pipe, so one failure is not counted again by the cases after. */
static void sem_resync(Sem *s)
{
        np_event ev[8];

        (void)np_unblock(s->c, s->d);
        for (int i = 0; i < 16 && np_poll(s->c, 100 * NSEC_PER_MSEC_F, ev, 8) > 0; i++)
                ;
        int r = np_close(s->c, s->d);
        if (r == -ECONNRESET || r == -EPIPE || r == -ENOTCONN)
                s->broken = true;
        close(s->pipe[0]);
        close(s->pipe[1]);
        if (!s->broken)
                sem_fresh(s);
}

static void *sem_main(void *arg)
{
        Sem *s = arg;

        sem_fresh(s);
        for (int i = 0; i < 10000000 && !atomic_load(&s->stop) && !s->broken; i++) {
                SemPhase *p = &s->ph[atomic_load(&s->phase)];
                int kind = (int)fault_rng_range(&s->rng, 0, N_SEM - 1);
                int64_t failed = p->failed;
                p->runs[kind]++;
                switch (kind) {
                case S_TIMEOUT:
                        sem_timeout(s, p);
                        break;
                case S_LATCHED:
                case S_WRITE:
                        sem_write(s, p, kind == S_LATCHED);
                        break;
                case S_ARM_TIMEOUT:
                        sem_arm_timeout(s, p);
                        break;
                case S_ARM_WRITE:
                        sem_arm_write(s);
                        break;
                default:
                        sem_unblock(s);
                        break;
                }
                if (s->broken)
                        break;
                if (p->failed > failed) {
                        sem_resync(s);
                        continue;
                }
                /* Between cases: one descriptor, nothing parked, no timer. */
                struct np_session_stats ss;
                int r = np_session_stats(s->c, &ss);
                sem_check(s, r == 0 && ss.descriptors == 1 && ss.waiters == 0 && ss.timers == 0,
                          "after a %s case: np_session_stats %s, %" PRIu64 " descriptors, %" PRIu64
                          " waiters, %" PRIu64 " timers (want 1, 0, 0)",
                          sem_names[kind], err_name(r), ss.descriptors, ss.waiters, ss.timers);
        }
        if (!s->broken)
                sem_retire(s, false);
        return NULL;
}

/* ---- the run ---- */

typedef struct Peaks {
        int fds;
        uint64_t connections, descriptors;
} Peaks;

/* Watches the daemon for ms: alive, and its peaks.  False if it died. */
static bool watch(FaultDaemon *dm, np_client *mon, int64_t until, Peaks *pk)
{
        for (int i = 0; i < 1000000 && test_now() < until; i++) {
                struct np_status st;
                if (!fault_daemon_alive(dm))
                        return false;
                int n = fd_count_of(dm->pid);
                pk->fds = n > pk->fds ? n : pk->fds;
                if (np_status(mon, &st) == 0) {
                        if (st.connections > pk->connections)
                                pk->connections = st.connections;
                        if (st.descriptors > pk->descriptors)
                                pk->descriptors = st.descriptors;
                }
                int64_t left = (until - test_now()) / NSEC_PER_MSEC_F;
                fault_sleep_ms(left < 100 ? (left > 0 ? left : 0) : 100);
        }
        return true;
}

/* fault_settle, until two readings 50 ms apart agree (closes run off the
 * daemon's loop). */
static int settle_twice(np_client *mon, pid_t pid, uint64_t conns, struct np_status *st)
{
        int n = fault_settle(mon, pid, conns, st);

        for (int i = 0; i < 20; i++) {
                fault_sleep_ms(50);
                int again = fault_settle(mon, pid, conns, st);
                if (again == n)
                        break;
                n = again;
        }
        return n;
}

static void say_pings(const char *what, const FaultFigures *f)
{
        fault_say("victim pings, %-12s %6zu pings, p50 %7.1f us, p99 %8.1f us, max %8.1f us, "
                  "%d failed",
                  what, f->n, (double)f->p50 / 1e3, (double)f->p99 / 1e3, (double)f->max / 1e3,
                  f->errors);
}

static void say_semantics(Sem *s)
{
        for (int k = 0; k < N_PHASES; k++) {
                SemPhase *p = &s->ph[k];
                int64_t runs = 0;
                for (int i = 0; i < N_SEM; i++)
                        runs += p->runs[i];
                int64_t p50 = fault_percentile(p->late, p->n_late, 50);
                int64_t p99 = fault_percentile(p->late, p->n_late, 99);
                int64_t max = p->n_late ? p->late[p->n_late - 1] : 0;
                fault_say("semantics, %-12s %5" PRId64 " cases, %6" PRId64 " checks, %" PRId64
                          " failed; timeouts late by p50 %.2f ms, p99 %.2f ms, max %.2f ms (%zu); "
                          "write cases: %" PRId64 " NP_OK, %" PRId64
                          " timed out with the byte written after the deadline, %" PRId64
                          " with it written up to %.1f ms before (a failure over %.0f ms)",
                          phase_names[k], runs, p->checks, p->failed, (double)p50 / 1e6,
                          (double)p99 / 1e6, (double)max / 1e6, p->n_late, p->ok_before_deadline,
                          p->late_writes, p->lost, (double)p->lost_ahead_max / 1e6,
                          (double)WRITE_MARGIN_NS / 1e6);
                char line[512];
                int len = 0;
                for (int i = 0; i < N_SEM; i++)
                        len += snprintf(line + len, sizeof(line) - (size_t)len, "%s%s %" PRId64,
                                        i ? ", " : "", sem_names[i], p->runs[i]);
                fault_say("semantics, %-12s cases: %s", phase_names[k], line);
        }
}

static void say_attackers(Attacker *at, int n)
{
        Report sum = { 0 };
        int64_t hmin = 0;

        for (int k = 0; k < n; k++) {
                Report *r = &at[k].r;
                fault_say("attacker %d (uid %d): %d actions, its slowest call %.1f ms%s", k,
                          (int)at[k].uid, r->actions, (double)r->call_max_ns / 1e6,
                          at[k].reported ? "" : ", NO REPORT");
                sum.actions += r->actions;
                for (int i = 0; i < N_ACTIONS; i++) {
                        sum.t[i].runs += r->t[i].runs;
                        sum.t[i].refused += r->t[i].refused;
                        sum.t[i].unexpected += r->t[i].unexpected;
                }
                sum.protocol_drops += r->protocol_drops;
                sum.lingering += r->lingering;
                sum.close_max_ns =
                        r->close_max_ns > sum.close_max_ns ? r->close_max_ns : sum.close_max_ns;
                sum.quota_fills += r->quota_fills;
                sum.quota_max = r->quota_max > sum.quota_max ? r->quota_max : sum.quota_max;
                sum.toomanyrefs += r->toomanyrefs;
                sum.pipeline_datagrams += r->pipeline_datagrams;
                sum.pipeline_dropped += r->pipeline_dropped;
                sum.pipeline_runs += r->pipeline_runs;
                sum.lists += r->lists;
                sum.list_entries += r->list_entries;
                sum.empties += r->empties;
                sum.handshake_closes += r->handshake_closes;
                if (r->handshake_min_ns && (!hmin || r->handshake_min_ns < hmin))
                        hmin = r->handshake_min_ns;
                sum.handshake_max_ns = r->handshake_max_ns > sum.handshake_max_ns
                                               ? r->handshake_max_ns
                                               : sum.handshake_max_ns;
                sum.storm_max = r->storm_max > sum.storm_max ? r->storm_max : sum.storm_max;
        }
        for (int i = 0; i < N_ACTIONS; i++)
                fault_say("  %-13s %5d runs, %5d refused by the uid's limits, %d unexpected",
                          action_names[i], sum.t[i].runs, sum.t[i].refused, sum.t[i].unexpected);
        fault_say("  %" PRId64 " lingering sockets handed over (np_close at most %.1f ms); %" PRId64
                  " protocol errors seen dropped; %" PRId64 " empty datagrams",
                  sum.lingering, (double)sum.close_max_ns / 1e6, sum.protocol_drops, sum.empties);
        fault_say("  %" PRId64 " fills to -EDQUOT (at most %" PRId64 " on one connection); %" PRId64
                  " -ETOOMANYREFS after %d; %" PRId64 " lists of %" PRId64 " entries in all",
                  sum.quota_fills, sum.quota_max, sum.toomanyrefs, SAME_FILE_MAX, sum.lists,
                  sum.list_entries);
        fault_say("  %" PRId64 " non-readers sent %" PRId64 " datagrams of %d PINGs, %" PRId64
                  " were dropped; %" PRId64 " silent connections closed %.0f..%.0f ms after "
                  "connecting; storms held up to %d connections",
                  sum.pipeline_runs, sum.pipeline_datagrams, PIPELINE_PINGS, sum.pipeline_dropped,
                  sum.handshake_closes, (double)hmin / 1e6, (double)sum.handshake_max_ns / 1e6,
                  sum.storm_max);
}

int main(int argc, char **argv)
{
        FaultDaemon dm;
        struct np_status st;
        np_client *mon;
        Attacker at[MAX_ATTACKERS];
        Peaks peaks = { 0 };
        char config[512], fdir[64], fpath[128];
        int fds;

        fault_init(argc, argv, "mix");
        uint64_t seed = pick_seed(), rng = seed;
        int n_att = (int)fault_rng_range(&rng, MIN_ATTACKERS, MAX_ATTACKERS);
        int64_t mix_ns = (fault_quick ? 10 : 40) * NSEC_PER_SEC_F, quiet_ns = mix_ns / 2;
        fault_say("seed %" PRIu64 " (FAULTS_SEED=%" PRIu64 " repeats this run's choices)", seed,
                  seed);
        if (fault_nofile() < 4096)
                fault_die("fd limit %d too low", fault_nofile());

        /* What the attackers pass as regular file and directory. */
        snprintf(fdir, sizeof(fdir), "/tmp/netpolld-mix.XXXXXX");
        if (!mkdtemp(fdir) || chmod(fdir, 0755) < 0)
                fault_die("mkdtemp: %s", strerror(errno));
        snprintf(fpath, sizeof(fpath), "%s/regular", fdir);
        int ffd = open(fpath, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (ffd < 0)
                fault_die("%s: %s", fpath, strerror(errno));
        close(ffd);

        snprintf(config, sizeof(config),
                 "[daemon]\nsocket_mode = 0666\n[limits]\nmax_descriptors_per_uid = %d\n"
                 "max_output_bytes_per_uid = 8388608\nmax_connections_per_uid = %d\n"
                 "handshake_timeout = %dms\n",
                 FD_QUOTA, MAX_CONNS_PER_UID, HANDSHAKE_MS);
        FaultNotify *notify = notify_start();
        fault_daemon_start(&dm, &(FaultDaemonOpts){ .config = config,
                                                    .nofile = DAEMON_NOFILE,
                                                    .notify_socket = notify_path(notify),
                                                    .watchdog_usec = WATCHDOG_USEC });
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");

        /* The semantic checker's connection, with one np_open and close
         * before the baseline.  (A connection holding more than 16
         * descriptors keeps an epoll set of its own until it ends; the
         * checker holds fewer, in the main set.) */
        Sem *sem = calloc(1, sizeof(*sem));
        if (!sem)
                fault_die("out of memory");
        sem->rng = seed ^ UINT64_C(0x5e3a17c5);
        fault_must(fault_connect(dm.sock, &sem->c), "connect the semantic checker");
        {
                int efd = eventfd(0, EFD_CLOEXEC);
                np_desc d;
                if (efd < 0)
                        fault_die("eventfd: %s", strerror(errno));
                fault_must(np_open(sem->c, efd, 0, &d), "np_open on the checker");
                fault_must(np_unblock(sem->c, d), "np_unblock on the checker");
                fault_must(np_close(sem->c, d), "np_close on the checker");
                close(efd);
        }
        FaultVictim *victim = victim_start(dm.sock, VICTIM_INTERVAL_US);
        int base_fds = settle_twice(mon, dm.pid, 3, &st);
        uint64_t base_errors = st.protocol_errors;
        bool flip = fault_rng_range(&rng, 0, 1);
        for (int k = 0; k < n_att; k++)
                at[k] = (Attacker){ .idx = k,
                                    .uid = ((k & 1) ^ flip) ? FAULT_OTHER_UID : 0,
                                    .sock = dm.sock,
                                    .file = fpath,
                                    .dir = fdir,
                                    .rng = seed + UINT64_C(0x1000) * (uint64_t)(k + 1) };
        fault_say("daemon: fd limit %d, %d fds per uid, %d connections per uid, %d ms handshake "
                  "timeout, watchdog %d ms; baseline %d fds, 3 connections",
                  DAEMON_NOFILE, FD_QUOTA, MAX_CONNS_PER_UID, HANDSHAKE_MS, WATCHDOG_USEC / 1000,
                  base_fds);
        fault_say("%d attackers, uids alternating from %s; a %.0f s mix between quiet windows "
                  "of %.0f s",
                  n_att, flip ? "65534" : "0", (double)mix_ns / 1e9, (double)quiet_ns / 1e9);

        int64_t run_from = test_now();
        if (pthread_create(&sem->thread, NULL, sem_main, sem) != 0)
                fault_die("pthread_create");
        bool alive = true;
        int64_t from[N_PHASES], to[N_PHASES];

        from[PH_BEFORE] = test_now();
        alive = watch(&dm, mon, from[PH_BEFORE] + quiet_ns, &peaks);
        to[PH_BEFORE] = test_now();

        atomic_store(&sem->phase, PH_MIX);
        from[PH_MIX] = test_now();
        int64_t mix_end = from[PH_MIX] + mix_ns;
        for (int k = 0; k < n_att; k++) {
                at[k].end = mix_end;
                at[k].hard_end = mix_end + 3 * NSEC_PER_SEC_F;
                attacker_start(&at[k]);
        }
        alive = alive && watch(&dm, mon, mix_end, &peaks);
        /* A dead daemon: no point waiting for them. */
        attackers_end(at, n_att, alive ? mix_end + GRACE_MS * NSEC_PER_MSEC_F : 0);
        to[PH_MIX] = test_now();
        int64_t last_exit = 0;
        for (int k = 0; k < n_att; k++)
                last_exit = at[k].exited_at > last_exit ? at[k].exited_at : last_exit;
        fault_say("the attackers ended %.1f s after the mix's end",
                  (double)(last_exit - mix_end) / 1e9);

        atomic_store(&sem->phase, PH_AFTER);
        from[PH_AFTER] = test_now();
        alive = alive && watch(&dm, mon, from[PH_AFTER] + quiet_ns, &peaks);
        to[PH_AFTER] = test_now();
        atomic_store(&sem->stop, 1);
        pthread_join(sem->thread, NULL);
        int64_t run_to = test_now();

        /* ---- verdict ---- */
        say_attackers(at, n_att);
        for (int k = 0; k < n_att; k++) {
                fault_check(at[k].exited_alone && at[k].reported,
                            "attacker %d (uid %d) did not end by itself within %d s of the mix's "
                            "end",
                            k, (int)at[k].uid, GRACE_MS / 1000);
                /* Root is never near its quota (it neither lingers nor fills),
                 * so nothing of uid 65534's may make root's calls wait. */
                fault_check(at[k].uid != 0 || at[k].r.call_max_ns < ROOT_CALL_BOUND_NS,
                            "attacker %d (root) waited %.0f ms for one call", k,
                            (double)at[k].r.call_max_ns / 1e6);
                for (int i = 0; i < N_ACTIONS; i++)
                        fault_check(at[k].r.t[i].unexpected == 0,
                                    "attacker %d (uid %d), %s: %d unexpected outcomes, the first: "
                                    "%s",
                                    k, (int)at[k].uid, action_names[i], at[k].r.t[i].unexpected,
                                    at[k].r.t[i].first);
        }

        FaultFigures quiet = victim_figures(victim, (int64_t[]){ from[PH_BEFORE], from[PH_AFTER] },
                                            (int64_t[]){ to[PH_BEFORE], to[PH_AFTER] }, 2);
        FaultFigures mix = victim_figures(victim, &from[PH_MIX], &to[PH_MIX], 1);
        say_pings("quiet:", &quiet);
        say_pings("mix:", &mix);
        fault_check(quiet.n >= 100 && mix.n >= 100, "too few victim pings (%zu quiet, %zu mix)",
                    quiet.n, mix.n);
        fault_check(quiet.errors == 0 && mix.errors == 0, "%d victim pings failed",
                    quiet.errors + mix.errors);
        fault_check(mix.p99 < P99_BOUND_NS,
                    "the victim's ping p99 during the mix is %.1f ms, not "
                    "under %.0f ms",
                    (double)mix.p99 / 1e6, (double)P99_BOUND_NS / 1e6);

        say_semantics(sem);
        int64_t checks = 0, failed = 0;
        for (int k = 0; k < N_PHASES; k++) {
                checks += sem->ph[k].checks;
                failed += sem->ph[k].failed;
        }
        fault_check(!sem->broken, "the semantic checker lost its connection or descriptor");
        fault_check(sem->ph[PH_MIX].checks >= 50, "only %" PRId64 " semantic checks during the mix",
                    sem->ph[PH_MIX].checks);
        fault_check(failed == 0, "%" PRId64 " of %" PRId64 " semantic checks failed", failed,
                    checks);

        int wd_count;
        int64_t gap = notify_watchdog_gap(notify, run_from, run_to, &wd_count);
        fault_say("longest WATCHDOG=1 gap %.1f ms over the run (%d of them; interval %d ms)",
                  (double)gap / 1e6, wd_count, WATCHDOG_USEC / 1000);
        fault_check(gap <= (int64_t)WATCHDOG_USEC * 500,
                    "a %.1f ms gap between WATCHDOG=1, over half the %d ms interval",
                    (double)gap / 1e6, WATCHDOG_USEC / 1000);
        fault_say("daemon peaks: %d fds (limit %d), %" PRIu64 " connections, %" PRIu64
                  " descriptors",
                  peaks.fds, DAEMON_NOFILE, peaks.connections, peaks.descriptors);

        if (!fault_check(alive && fault_daemon_alive(&dm), "netpolld died")) {
                char *log = fault_daemon_log(&dm);
                size_t len = strlen(log);
                fault_say("its log ends with: %s", log + (len > 2000 ? len - 2000 : 0));
                free(log);
        } else {
                bool back = fault_await_baseline(mon, dm.pid, 3, base_fds, END_WAIT_MS, &st, &fds);
                fault_say("%s baseline %.1f s after the attackers ended: %d fds (baseline %d), "
                          "%" PRIu64 " connections, %" PRIu64 " descriptors",
                          back ? "back at" : "NOT back at", (double)(test_now() - last_exit) / 1e9,
                          fds, base_fds, st.connections, st.descriptors);
                fault_check(back,
                            "not back at baseline: %" PRIu64 " connections (want 3), %" PRIu64
                            " descriptors, %" PRIu64 " waiters, %" PRIu64 " timers, %d fds (want "
                            "%d)",
                            st.connections, st.descriptors, st.waiters, st.timers, fds, base_fds);
                int64_t seen = 0;
                for (int k = 0; k < n_att; k++)
                        seen += at[k].r.protocol_drops;
                uint64_t counted = st.protocol_errors - base_errors;
                fault_say("protocol_errors %" PRIu64 " (the attackers saw %" PRId64
                          " drops after a bad datagram on a greeted connection)",
                          counted, seen);
                fault_check(counted > 0 && counted >= (uint64_t)seen,
                            "protocol_errors grew by %" PRIu64 ", want > 0 and at least %" PRId64,
                            counted, seen);
        }

        victim_stop(victim);
        np_disconnect(sem->c);
        free(sem);
        np_disconnect(mon);
        fault_daemon_stop(&dm);
        notify_stop(notify);
        unlink(fpath);
        rmdir(fdir);
        fault_say("seed %" PRIu64 ": FAULTS_SEED=%" PRIu64 "%s repeats this run", seed, seed,
                  fault_quick ? " with --quick" : "");
        return fault_finish();
}
