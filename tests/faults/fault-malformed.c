/*
 * Scenario 4: malformed traffic, and fds the daemon must refuse.
 *
 * Every case runs on its own raw connection and ends with a probe (a PING
 * the daemon must answer, or the end of the connection); a connection that
 * neither answers nor ends within 3 s is a hang, which fails.
 *
 *  - every truncation of four valid messages (a hello; requests on unknown
 *    ids; an OPEN carrying an fd; pipelined requests on a live descriptor).
 *    The expected outcome of each prefix is what protobuf-c makes of it: an
 *    undecodable prefix, a first message that is not a hello, or fds that
 *    do not match the decoded requests must end the connection (a protocol
 *    error); a decodable prefix, the empty one included, must be served and
 *    the connection must live on;
 *  - oversized datagrams (64 KiB + 1, 200 000 bytes, with and without fds),
 *    64 KiB of garbage, one request over NP_MAX_REQUESTS_PER_MESSAGE in
 *    one datagram: dropped; exactly 64 KiB and exactly that many requests:
 *    served;
 *  - fds on messages that take none (PING, SESSION_STATS, the hello, an
 *    empty datagram, up to 253 fds), fd_index out of range or used twice,
 *    an OPEN without its fd: dropped, every fd closed;
 *  - non-pollable fds: a regular file, a directory and /dev/null get
 *    -EPERM, the client's own socket -EINVAL (through libnetpoll and raw);
 *  - MSG_CTRUNC: against a daemon with RLIMIT_NOFILE 64, OPENs are sent until
 *    its fd table is full; np_open and raw OPENs must then get -EMFILE with
 *    the connection alive, and after a few descriptors are closed, OPEN
 *    must work again.
 * After each group the daemon's open fd count must be back at its baseline.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../daemon/codec.h" /* NP_MAX_REQUESTS_PER_MESSAGE */
#include "harness.h"

#define MAX_REQUESTS NP_MAX_REQUESTS_PER_MESSAGE
#define MAX_BYTES 65536

static FaultDaemon dm;
static np_client *mon;
static int base_fds;
static int pipefd[2]; /* a pollable fd to pass around */

/* A raw call: sends qs with fds, waits for the reply to id. */
static int raw_call(int sock, Netpoll__V1__Request **qs, size_t n, const int *fds, size_t nfds,
                    uint64_t id, int32_t *result, uint64_t *desc)
{
        int r = raw_send_requests(sock, qs, n, fds, nfds);

        if (r < 0)
                return r;
        r = raw_await_reply(sock, id, 3000, result, desc);
        return r == 1 ? 0 : r == 0 ? -ECONNRESET : r;
}

static uint64_t raw_open(int sock, int fd)
{
        Netpoll__V1__Request q = raw_request(77, NETPOLL__V1__OP__OP_OPEN, 0, 0, 0);
        Netpoll__V1__Request *qs[1] = { &q };
        int32_t result = 0;
        uint64_t desc = 0;

        int r = raw_call(sock, qs, 1, &fd, 1, 77, &result, &desc);
        if (r < 0 || result < 0)
                fault_die("raw OPEN: %s", strerror(-(r < 0 ? r : result)));
        return desc;
}

/* Is the daemon back at its baseline (one connection, the monitor)? */
static void expect_baseline(const char *group)
{
        struct np_status st;
        int fds;
        bool ok = fault_await_baseline(mon, dm.pid, 1, base_fds, 5000, &st, &fds);

        fault_check(ok,
                    "%s: daemon not back at baseline: %d fds (want %d), %llu connections, %llu "
                    "descriptors, %llu waiters, %llu timers",
                    group, fds, base_fds, (unsigned long long)st.connections,
                    (unsigned long long)st.descriptors, (unsigned long long)st.waiters,
                    (unsigned long long)st.timers);
        fault_say("%s: daemon at %d fds (baseline %d), %d leaked", group, fds, base_fds,
                  fds - base_fds);
}

/* ---- truncations ---- */

enum { MSG_HELLO, MSG_REQUESTS, MSG_OPEN, MSG_LIVE };
static const char *const msg_names[] = { "hello", "requests on unknown ids", "OPEN with an fd",
                                         "pipelined requests on a live descriptor" };

/* Packs message `kind` (for MSG_LIVE about descriptor d) into buf. */
static size_t pack_message(int kind, uint64_t d, uint8_t *buf)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Hello h = NETPOLL__V1__HELLO__INIT;
        Netpoll__V1__Request q[8], *qs[8];
        size_t n = 0;

        switch (kind) {
        case MSG_HELLO:
                h.version = 1;
                h.name = (char *)"truncated-hello";
                m.hello = &h;
                break;
        case MSG_REQUESTS:
                q[n++] = raw_request(1, NETPOLL__V1__OP__OP_PING, 0, 0, 0);
                q[n++] = raw_request(2, NETPOLL__V1__OP__OP_SESSION_STATS, 0, 0, 0);
                q[n++] = raw_request(3, NETPOLL__V1__OP__OP_SET_DEADLINE, 0xdeadbeefULL, 'r',
                                     1000000000);
                q[n++] = raw_request(4, NETPOLL__V1__OP__OP_WAIT, 0xdeadbeefULL, 'r', 0);
                q[n++] = raw_request(5, NETPOLL__V1__OP__OP_RESET, 0x1234, 'w', 0);
                q[n++] = raw_request(6, NETPOLL__V1__OP__OP_UNBLOCK, 77, 0, 0);
                break;
        case MSG_OPEN:
                q[n] = raw_request(7, NETPOLL__V1__OP__OP_OPEN, 0, 0, 0);
                q[n].user = 4242;
                q[n++].fd_index = 0;
                break;
        case MSG_LIVE:
                /* A 5 ms deadline, an arm (ends by it), a write wait on a
                 * pipe's read end (parks until the deadline), a reset. */
                q[n] = raw_request(0, NETPOLL__V1__OP__OP_SET_DEADLINE, d, NP_RW, 5000000);
                q[n++].quiet = true;
                q[n] = raw_request(0, NETPOLL__V1__OP__OP_ARM, d, 'r', 0);
                q[n++].quiet = true;
                q[n++] = raw_request(8, NETPOLL__V1__OP__OP_WAIT, d, 'w', 0);
                q[n++] = raw_request(9, NETPOLL__V1__OP__OP_RESET, d, 'r', 0);
                break;
        }
        for (size_t i = 0; i < n; i++)
                qs[i] = &q[i];
        m.requests = qs;
        m.n_requests = n;
        return netpoll__v1__client_message__pack(&m, buf);
}

/* What the daemon must do with buf[0..k) (plus nfds fds) as its datagram. */
static int expected_outcome(int kind, const uint8_t *buf, size_t k, size_t nfds)
{
        /* The empty prefix is an empty message: a no-op once greeted. */
        Netpoll__V1__ClientMessage *m = netpoll__v1__client_message__unpack(NULL, k, buf);
        if (!m)
                return RAW_CLOSED;
        int o = RAW_ALIVE;
        size_t takes = 0;
        for (size_t i = 0; i < m->n_requests; i++)
                takes += m->requests[i]->op == NETPOLL__V1__OP__OP_OPEN ||
                         m->requests[i]->op == NETPOLL__V1__OP__OP_IS_POLL_DESCRIPTOR;
        if (kind == MSG_HELLO) {
                if (!m->hello || m->hello->version != 1 || m->n_requests > 0 || nfds)
                        o = RAW_CLOSED;
        } else if (m->hello || m->n_requests > MAX_REQUESTS || takes != nfds)
                o = RAW_CLOSED;
        netpoll__v1__client_message__free_unpacked(m, NULL);
        return o;
}

static void truncations(int kind)
{
        uint8_t full[512], buf[512];
        size_t len = pack_message(kind, 0, full);
        int counts[2] = { 0, 0 }, wrong = 0, hung = 0;

        for (size_t k = 0; k <= len; k++) {
                int sock = kind == MSG_HELLO ? test_raw_connect(dm.sock) : raw_greeted(dm.sock);
                if (sock < 0)
                        fault_die("connect: %s", strerror(-sock));
                size_t n = len;
                memcpy(buf, full, len);
                if (kind == MSG_LIVE) {
                        uint64_t d = raw_open(sock, pipefd[0]);
                        n = pack_message(kind, d, buf);
                        if (k > n)
                                break;
                }
                size_t nfds = kind == MSG_OPEN ? 1 : 0;
                int want = expected_outcome(kind, buf, k, nfds);
                int got;
                if (raw_send(sock, buf, k, pipefd, nfds) < 0)
                        got = RAW_CLOSED;
                else if (kind == MSG_HELLO && want == RAW_ALIVE) {
                        Netpoll__V1__ServerMessage *m;
                        int r = raw_recv(sock, 3000, &m);
                        got = r == 1 && m->welcome && !m->error ? raw_probe(sock)
                              : r == -ETIMEDOUT                 ? RAW_HUNG
                                                                : RAW_CLOSED;
                        if (r == 1)
                                netpoll__v1__server_message__free_unpacked(m, NULL);
                } else
                        got = raw_probe(sock);
                close(sock);
                if (got == RAW_HUNG)
                        hung++;
                else
                        counts[got]++;
                if (got != want)
                        wrong++;
                fault_check(got == want, "%s truncated to %zu of %zu bytes: %s, want %s",
                            msg_names[kind], k, n, raw_probe_name(got), raw_probe_name(want));
        }
        fault_say("truncations of %s (%zu bytes): %zu cases, %d served, %d dropped, %d hung, %d "
                  "wrong",
                  msg_names[kind], len, len + 1, counts[RAW_ALIVE], counts[RAW_CLOSED], hung,
                  wrong);
}

/* ---- oversized and fd-carrying datagrams ---- */

/*
 * Packs n PING requests (ids 1..n), into exactly `size` bytes when that is
 * more than they take: the last request is padded with its `user` field
 * repeated (a known field may come again; the last one counts), since the
 * daemon refuses fields the protocol does not define.  Returns the length.
 */
static size_t pack_padded(uint8_t *buf, size_t size, int n)
{
        size_t len;

        if (n < 1)
                fault_die("pack_padded: no request to pack");
        uint8_t *msg = raw_pack_pings(n, &len);
        bool padded = len + 16 <= size;
        if (padded) { /* room to pad: all but the last, then it by hand */
                free(msg);
                msg = raw_pack_pings(n - 1, &len);
        }
        memcpy(buf, msg, len);
        free(msg);
        if (!padded)
                return len;
        if (n > 127)
                fault_die("pack_padded: a padded last request needs an id under 128");
        /* The last request: tag, a 3-byte length L, then L bytes: id, op,
         * and `user = 0` pairs (0x30 0x00), one of them 3 bytes (0x30 0x80
         * 0x00, a longer zero) when L is odd. */
        if (len + 4 + 4 + 2 > size || size - len - 4 >= (1u << 21))
                fault_die("pack_padded: %zu bytes cannot be padded that way", size);
        size_t L = size - len - 4, pad = L - 4;
        buf[len++] = 0x12;
        buf[len++] = (uint8_t)(0x80 | (L & 0x7f));
        buf[len++] = (uint8_t)(0x80 | ((L >> 7) & 0x7f));
        buf[len++] = (uint8_t)(L >> 14);
        buf[len++] = 0x08; /* id = n */
        buf[len++] = (uint8_t)n;
        buf[len++] = 0x10; /* op = OP_PING */
        buf[len++] = NETPOLL__V1__OP__OP_PING;
        if (pad % 2) {
                buf[len++] = 0x30;
                buf[len++] = 0x80;
                buf[len++] = 0x00;
                pad -= 3;
        }
        for (; pad > 0; pad -= 2) {
                buf[len++] = 0x30;
                buf[len++] = 0x00;
        }
        return len;
}

typedef struct Case {
        const char *what;
        int want;
} Case;

static void report_case(const Case *c, int got)
{
        fault_check(got == c->want, "%s: %s, want %s", c->what, raw_probe_name(got),
                    raw_probe_name(c->want));
        fault_say("  %-58s %s", c->what, raw_probe_name(got));
}

static void oversized(void)
{
        uint8_t *buf = malloc(200000);
        int sock, got;

        if (!buf)
                fault_die("out of memory");
        fault_say("oversized datagrams:");

        /* Exactly 64 KiB, valid: served (the PING is answered). */
        sock = raw_greeted(dm.sock);
        size_t len = pack_padded(buf, MAX_BYTES, 1);
        got = raw_send(sock, buf, len, NULL, 0) < 0 ? RAW_CLOSED : raw_probe(sock);
        report_case(&(Case){ "valid, exactly 65536 bytes", RAW_ALIVE }, got);
        close(sock);

        /* 64 KiB + 1: dropped. */
        sock = raw_greeted(dm.sock);
        len = pack_padded(buf, MAX_BYTES + 1, 1);
        got = raw_send(sock, buf, len, NULL, 0) < 0 ? RAW_CLOSED : raw_probe(sock);
        report_case(&(Case){ "valid, 65537 bytes", RAW_CLOSED }, got);
        close(sock);

        /* 200 000 bytes with 3 fds: dropped, the fds closed. */
        sock = raw_greeted(dm.sock);
        len = pack_padded(buf, 200000, 1);
        int fds3[3] = { pipefd[0], pipefd[0], pipefd[1] };
        int r = raw_send(sock, buf, len, fds3, 3);
        if (r == -EMSGSIZE)
                fault_say("  200000 bytes: the kernel refuses to send it (EMSGSIZE), skipped");
        else {
                got = r < 0 ? RAW_CLOSED : raw_probe(sock);
                report_case(&(Case){ "200000 bytes with 3 fds", RAW_CLOSED }, got);
        }
        close(sock);

        /* 64 KiB of garbage: dropped. */
        sock = raw_greeted(dm.sock);
        memset(buf, 0xff, MAX_BYTES);
        got = raw_send(sock, buf, MAX_BYTES, NULL, 0) < 0 ? RAW_CLOSED : raw_probe(sock);
        report_case(&(Case){ "65536 bytes of 0xff", RAW_CLOSED }, got);
        close(sock);

        /* Exactly the most requests a datagram may hold: all answered. */
        sock = raw_greeted(dm.sock);
        len = pack_padded(buf, 0, MAX_REQUESTS);
        int answered = 0;
        if (raw_send(sock, buf, len, NULL, 0) == 0) {
                for (int i = 0; i < 2000 && answered < MAX_REQUESTS; i++) {
                        Netpoll__V1__ServerMessage *m;
                        if (raw_recv(sock, 3000, &m) != 1)
                                break;
                        answered += (int)m->n_replies;
                        netpoll__v1__server_message__free_unpacked(m, NULL);
                }
        }
        got = answered == MAX_REQUESTS ? raw_probe(sock) : RAW_CLOSED;
        char what[64];
        snprintf(what, sizeof(what), "%d PINGs in one datagram (all answered)", MAX_REQUESTS);
        report_case(&(Case){ what, RAW_ALIVE }, got);
        close(sock);

        /* One more: dropped. */
        sock = raw_greeted(dm.sock);
        len = pack_padded(buf, 0, MAX_REQUESTS + 1);
        got = raw_send(sock, buf, len, NULL, 0) < 0 ? RAW_CLOSED : raw_probe(sock);
        snprintf(what, sizeof(what), "%d PINGs in one datagram", MAX_REQUESTS + 1);
        report_case(&(Case){ what, RAW_CLOSED }, got);
        close(sock);
        free(buf);
        expect_baseline("oversized");
}

static void fds_where_none(void)
{
        int many[253];
        int sock, got;

        for (int i = 0; i < 253; i++)
                many[i] = pipefd[i % 2];
        fault_say("fds on messages that take none, and mismatched fd_index:");

        struct {
                const char *what;
                int op, op2, fd_index, fd_index2, nfds, want;
        } cases[] = {
                { "PING with 1 fd", NETPOLL__V1__OP__OP_PING, 0, 0, 0, 1, RAW_CLOSED },
                { "PING with 253 fds", NETPOLL__V1__OP__OP_PING, 0, 0, 0, 253, RAW_CLOSED },
                { "SESSION_STATS with 2 fds", NETPOLL__V1__OP__OP_SESSION_STATS, 0, 0, 0, 2,
                  RAW_CLOSED },
                { "OPEN with fd_index 1 and 1 fd", NETPOLL__V1__OP__OP_OPEN, 0, 1, 0, 1,
                  RAW_CLOSED },
                { "OPEN with fd_index -1 and 1 fd", NETPOLL__V1__OP__OP_OPEN, 0, -1, 0, 1,
                  RAW_CLOSED },
                { "two OPENs on fd_index 0, 2 fds", NETPOLL__V1__OP__OP_OPEN,
                  NETPOLL__V1__OP__OP_OPEN, 0, 0, 2, RAW_CLOSED },
                { "OPEN without its fd", NETPOLL__V1__OP__OP_OPEN, 0, 0, 0, 0, RAW_CLOSED },
                { "OPEN with 2 fds", NETPOLL__V1__OP__OP_OPEN, 0, 0, 0, 2, RAW_CLOSED },
                { "OPEN + PING with 253 fds", NETPOLL__V1__OP__OP_OPEN, NETPOLL__V1__OP__OP_PING, 0,
                  0, 253, RAW_CLOSED },
                { "IS_POLL_DESCRIPTOR with its fd", NETPOLL__V1__OP__OP_IS_POLL_DESCRIPTOR, 0, 0, 0,
                  1, RAW_ALIVE },
                { "two OPENs on fd_index 1 and 0, 2 fds", NETPOLL__V1__OP__OP_OPEN,
                  NETPOLL__V1__OP__OP_OPEN, 1, 0, 2, RAW_ALIVE },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                Netpoll__V1__Request q[2], *qs[2] = { &q[0], &q[1] };
                sock = raw_greeted(dm.sock);
                q[0] = raw_request(1, cases[i].op, 0, 0, 0);
                q[0].fd_index = cases[i].fd_index;
                q[1] = raw_request(2, cases[i].op2, 0, 0, 0);
                q[1].fd_index = cases[i].fd_index2;
                int r = raw_send_requests(sock, qs, cases[i].op2 ? 2 : 1, many,
                                          (size_t)cases[i].nfds);
                got = r < 0 ? RAW_CLOSED : raw_probe(sock);
                report_case(&(Case){ cases[i].what, cases[i].want }, got);
                close(sock);
        }

        /* The hello with an fd; an empty datagram with an fd. */
        sock = test_raw_connect(dm.sock);
        {
                Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
                Netpoll__V1__Hello h = NETPOLL__V1__HELLO__INIT;
                uint8_t b[64];
                h.version = 1;
                m.hello = &h;
                size_t len = netpoll__v1__client_message__pack(&m, b);
                got = raw_send(sock, b, len, pipefd, 1) < 0 ? RAW_CLOSED : raw_probe(sock);
                report_case(&(Case){ "hello with 1 fd", RAW_CLOSED }, got);
        }
        close(sock);
        sock = raw_greeted(dm.sock);
        got = raw_send(sock, "", 0, pipefd, 2) < 0 ? RAW_CLOSED : raw_probe(sock);
        report_case(&(Case){ "empty datagram with 2 fds", RAW_CLOSED }, got);
        close(sock);
        expect_baseline("fds where none belong");
}

/* ---- non-pollable fds and the client's own socket ---- */

static void not_pollable(void)
{
        char path[128];
        np_client *c;
        np_desc d;
        int32_t result;
        uint64_t desc;

        fault_say("fds that cannot be polled:");
        snprintf(path, sizeof(path), "%s/regular", dm.dir);
        int file = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        int dir = open(dm.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (file < 0 || dir < 0 || null < 0)
                fault_die("open: %s", strerror(errno));
        fault_must(fault_connect(dm.sock, &c), "connect");

        struct {
                const char *what;
                int fd, want;
        } lib[] = {
                { "np_open(regular file)", file, -EPERM },
                { "np_open(directory)", dir, -EPERM },
                { "np_open(/dev/null)", null, -EPERM },
                { "np_open(closed fd)", 1000000, -EBADF },
                { "np_open(-1)", -1, -EBADF },
        };
        for (size_t i = 0; i < sizeof(lib) / sizeof(lib[0]); i++) {
                int r = np_open(c, lib[i].fd, 1, &d);
                fault_check(r == lib[i].want, "%s: %s, want %s", lib[i].what, strerror(-r),
                            strerror(-lib[i].want));
                fault_say("  %-58s %s", lib[i].what, r ? strerror(-r) : "opened");
        }
        /* The library's own socket: found through np_is_poll_descriptor. */
        int own = -1;
        for (int fd = 3; fd < 1024 && own < 0; fd++)
                if (fcntl(fd, F_GETFD) >= 0 && fd != file && fd != dir && fd != null &&
                    np_is_poll_descriptor(c, fd) == 1) {
                        struct stat st;
                        if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
                                own = fd;
                }
        if (fault_check(own >= 0, "np_is_poll_descriptor recognises none of our fds as the "
                                  "connection's socket")) {
                int r = np_open(c, own, 1, &d);
                fault_check(r == -EINVAL, "np_open(own socket): %s, want %s", strerror(-r),
                            strerror(EINVAL));
                fault_say("  %-58s %s", "np_open(the connection's own socket)",
                          r ? strerror(-r) : "opened");
        }
        fault_check(np_is_poll_descriptor(c, pipefd[0]) == 0,
                    "np_is_poll_descriptor(pipe) is not 0");
        fault_check(np_ping(c) == 0, "the connection did not survive the refused opens");

        /* Raw: the daemon itself must refuse them (the library is bypassed). */
        int sock = raw_greeted(dm.sock);
        struct {
                const char *what;
                int fd, want;
        } raw[] = {
                { "raw OPEN(regular file)", file, -EPERM },
                { "raw OPEN(directory)", dir, -EPERM },
                { "raw OPEN(/dev/null)", null, -EPERM },
                { "raw OPEN(the connection's own socket)", sock, -EINVAL },
        };
        for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
                Netpoll__V1__Request q = raw_request(10 + i, NETPOLL__V1__OP__OP_OPEN, 0, 0, 0);
                Netpoll__V1__Request *qs[1] = { &q };
                result = 1;
                int r = raw_call(sock, qs, 1, &raw[i].fd, 1, 10 + i, &result, &desc);
                fault_check(r == 0 && result == raw[i].want, "%s: %s, want %s", raw[i].what,
                            r < 0 ? strerror(-r) : strerror(-result), strerror(-raw[i].want));
                fault_say("  %-58s %s", raw[i].what,
                          r < 0    ? strerror(-r)
                          : result ? strerror(-result)
                                   : "opened");
        }
        int got = raw_probe(sock);
        report_case(&(Case){ "raw connection after the refused opens", RAW_ALIVE }, got);
        close(sock);
        /* Had the daemon taken the connection's own socket, it would now
         * hold that connection open itself: it could never end. */
        struct np_status st;
        bool ended = false;
        for (int i = 0; i < 200 && !ended; i++) {
                ended = np_status(mon, &st) == 0 && st.connections == 2; /* mon and c */
                if (!ended)
                        fault_sleep_ms(10);
        }
        fault_check(ended,
                    "the raw connection is still open 2 s after its client closed it (%llu "
                    "connections, %llu descriptors): the daemon holds its client end",
                    (unsigned long long)st.connections, (unsigned long long)st.descriptors);
        struct np_session_stats ss;
        fault_check(np_session_stats(c, &ss) == 0 && ss.descriptors == 0,
                    "refused opens left %llu descriptors", (unsigned long long)ss.descriptors);
        np_disconnect(c);
        close(file);
        close(dir);
        close(null);
        unlink(path);
        expect_baseline("not pollable");
}

/* ---- MSG_CTRUNC: the daemon out of fds ---- */

static void out_of_fds(void)
{
        FaultDaemon db;
        struct np_status st;
        np_client *m2, *c;
        static np_desc d[128];
        int n = 0, r = 0, fds;

        fault_say("MSG_CTRUNC (daemon with RLIMIT_NOFILE 64):");
        fault_daemon_start(&db, &(FaultDaemonOpts){ .nofile = 64,
                                                    .config = "[limits]\nreserved_fds = 0\n"
                                                              "max_descriptors_per_uid = 100%\n" });
        fault_must(fault_connect(db.sock, &m2), "connect the monitor");
        fault_must(fault_connect(db.sock, &c), "connect");
        int sock = test_raw_connect(db.sock);
        if (sock < 0 || raw_hello(sock, 3000) < 0)
                fault_die("raw connect");
        int base = fault_settle(m2, db.pid, 3, &st);

        /* A pipe each: one connection may register one file 16 times. */
        int held[128][2];
        for (n = 0; n < 128; n++) {
                if (pipe2(held[n], O_CLOEXEC) < 0)
                        fault_die("pipe2: %s", strerror(errno));
                r = np_open(c, held[n][0], (uint64_t)n, &d[n]);
                close(held[n][0]);
                close(held[n][1]);
                if (r < 0)
                        break;
        }
        fds = fd_count_of(db.pid);
        fault_say("  np_open until refused: %d opened (daemon at %d fds of 64, baseline %d), "
                  "then %s",
                  n, fds, base, r ? strerror(-r) : "none refused");
        fault_check(r == -EMFILE, "np_open with the daemon's table full: %s, want %s", strerror(-r),
                    strerror(EMFILE));
        fault_check(fds == 64, "the daemon holds %d fds, not its limit 64", fds);
        r = np_open(c, pipefd[1], 1, &d[127]);
        fault_check(r == -EMFILE, "np_open again: %s, want %s", strerror(-r), strerror(EMFILE));
        fault_check(np_ping(c) == 0, "the np_open connection did not survive -EMFILE");

        /* Raw: one OPEN, then two OPENs with two fds, in one datagram each. */
        Netpoll__V1__Request q[2], *qs[2] = { &q[0], &q[1] };
        int32_t result = 0, result2 = 0;
        q[0] = raw_request(21, NETPOLL__V1__OP__OP_OPEN, 0, 0, 0);
        r = raw_call(sock, qs, 1, pipefd, 1, 21, &result, NULL);
        fault_check(r == 0 && result == -EMFILE, "raw OPEN while full: %s",
                    r < 0    ? strerror(-r)
                    : result ? strerror(-result)
                             : "opened");
        fault_say("  %-58s %s", "raw OPEN while full",
                  r < 0    ? strerror(-r)
                  : result ? strerror(-result)
                           : "opened");
        q[0] = raw_request(22, NETPOLL__V1__OP__OP_OPEN, 0, 0, 0);
        q[1] = raw_request(23, NETPOLL__V1__OP__OP_OPEN, 0, 0, 0);
        q[1].fd_index = 1;
        result = result2 = 1;
        r = raw_send_requests(sock, qs, 2, pipefd, 2);
        for (int i = 0; i < 10 && r == 0 && (result == 1 || result2 == 1); i++) {
                Netpoll__V1__ServerMessage *m;
                if (raw_recv(sock, 3000, &m) != 1) {
                        r = -ECONNRESET;
                        break;
                }
                for (size_t k = 0; k < m->n_replies; k++) {
                        if (m->replies[k]->id == 22)
                                result = m->replies[k]->result;
                        if (m->replies[k]->id == 23)
                                result2 = m->replies[k]->result;
                }
                netpoll__v1__server_message__free_unpacked(m, NULL);
        }
        fault_check(r == 0 && result == -EMFILE && result2 == -EMFILE,
                    "raw 2 OPENs while full: %s / %s", r < 0 ? strerror(-r) : strerror(-result),
                    strerror(-result2));
        fault_say("  %-58s %s, %s", "raw 2 OPENs with 2 fds while full",
                  r < 0    ? strerror(-r)
                  : result ? strerror(-result)
                           : "opened",
                  result2 ? strerror(-result2) : "opened");
        int got = raw_probe(sock);
        report_case(&(Case){ "raw connection after -EMFILE", RAW_ALIVE }, got);
        fault_check(fd_count_of(db.pid) <= 64, "daemon over its fd limit");

        /* Release a few: OPEN works again. */
        int released = 0;
        for (int i = 0; i < 4 && i < n; i++)
                if (np_unblock(c, d[n - 1 - i]) == 0 && np_close(c, d[n - 1 - i]) == 0)
                        released++;
        n -= released;
        /* The daemon closes its copies on its closer threads: a moment. */
        for (int i = 0; i < 200 && fd_count_of(db.pid) > 64 - released; i++)
                fault_sleep_ms(5);
        r = np_open(c, pipefd[0], 999, &d[n]);
        fault_check(r == 0, "np_open after releasing %d: %s", released, strerror(-r));
        if (r == 0)
                n++;
        q[0] = raw_request(24, NETPOLL__V1__OP__OP_OPEN, 0, 0, 0);
        r = raw_call(sock, qs, 1, pipefd, 1, 24, &result, NULL);
        fault_check(r == 0 && result == 0, "raw OPEN after releasing: %s",
                    r < 0 ? strerror(-r) : strerror(-result));
        fault_say("  after closing %d descriptors: np_open %s, raw OPEN %s", released,
                  n > 0 ? "works" : "fails", r == 0 && result == 0 ? "works" : "fails");
        for (int i = 0; i < n; i++) {
                np_unblock(c, d[i]);
                np_close(c, d[i]);
        }
        close(sock);
        np_disconnect(c);
        bool back = fault_await_baseline(m2, db.pid, 1, base - 2, 5000, &st, &fds);
        fault_check(back, "MSG_CTRUNC: not back at baseline: %d fds (want %d)", fds, base - 2);
        fault_say("MSG_CTRUNC: daemon at %d fds (baseline %d), %d leaked", fds, base - 2,
                  fds - (base - 2));
        fault_check(fault_daemon_alive(&db), "the nofile=64 daemon died");
        np_disconnect(m2);
        fault_daemon_stop(&db);
}

/* Not part of the verdict: two connections that register each other's
 * client socket.  When both clients close, each daemon-side session is kept
 * open by the other's registered copy: a cycle nothing ever breaks. */
static void socket_cycle(void)
{
        FaultDaemon dc;
        struct np_status st;
        np_client *m3;
        int32_t result;
        uint64_t desc;

        fault_daemon_start(&dc, NULL);
        fault_must(fault_connect(dc.sock, &m3), "connect the monitor");
        int base = fault_settle(m3, dc.pid, 1, &st);
        int a = test_raw_connect(dc.sock), b = test_raw_connect(dc.sock);
        if (a < 0 || b < 0 || raw_hello(a, 3000) < 0 || raw_hello(b, 3000) < 0)
                fault_die("raw connect");
        Netpoll__V1__Request q = raw_request(31, NETPOLL__V1__OP__OP_OPEN, 0, 0, 0);
        Netpoll__V1__Request *qs[1] = { &q };
        int ra = raw_call(a, qs, 1, &b, 1, 31, &result, &desc);
        int32_t result_a = result;
        int rb = raw_call(b, qs, 1, &a, 1, 31, &result, &desc);
        close(a);
        close(b);
        bool ended = false;
        for (int i = 0; i < 200 && !ended; i++) {
                ended = np_status(m3, &st) == 0 && st.connections == 1;
                if (!ended)
                        fault_sleep_ms(10);
        }
        int fds = fd_count_of(dc.pid);
        fault_say("(info) two connections registering each other's socket: OPEN %s / %s; 2 s "
                  "after both clients closed: %llu connections, %llu descriptors, %d fds "
                  "(baseline %d)%s",
                  ra < 0     ? strerror(-ra)
                  : result_a ? strerror(-result_a)
                             : "accepted",
                  rb < 0   ? strerror(-rb)
                  : result ? strerror(-result)
                           : "accepted",
                  (unsigned long long)st.connections, (unsigned long long)st.descriptors, fds, base,
                  ended ? "" : ": both sessions are pinned for the daemon's lifetime");
        np_disconnect(m3);
        fault_daemon_stop(&dc);
}

int main(int argc, char **argv)
{
        struct np_status st;

        fault_init(argc, argv, "malformed");
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                fault_die("pipe: %s", strerror(errno));
        fault_daemon_start(&dm, NULL);
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");
        base_fds = fault_settle(mon, dm.pid, 1, &st);
        fault_say("baseline: %d fds", base_fds);

        for (int kind = MSG_HELLO; kind <= MSG_LIVE; kind++)
                truncations(kind);
        expect_baseline("truncations");
        oversized();
        fds_where_none();
        not_pollable();
        out_of_fds();
        socket_cycle();

        (void)np_status(mon, &st);
        fault_say("protocol errors counted by the daemon: %llu",
                  (unsigned long long)st.protocol_errors);
        fault_check(fault_daemon_alive(&dm), "netpolld died");
        np_disconnect(mon);
        fault_daemon_stop(&dm);
        return fault_finish();
}
