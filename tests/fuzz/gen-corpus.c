/*
 * Writes the seed corpus of the fuzz targets: `gen-corpus DIR` creates
 * DIR/codec/seed-* (single ClientMessage datagrams) and DIR/session/seed-*
 * (record streams in the format fuzz-session.c documents) with the
 * generated protobuf-c code.  make fuzz-corpus runs it into tests/fuzz/corpus;
 * the output is deterministic, so the committed seeds are its output.
 *
 * Descriptor ids in the session seeds are the tokens a fresh server hands
 * out: slot index i, generation 1 on first use (token.h, pollcache.c).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "netpoll.pb-c.h"

enum {
        OPEN = 1,
        CLOSE = 2,
        UNBLOCK = 3,
        RESET = 4,
        WAIT = 5,
        WAIT_CANCELED = 6,
        SET_DEADLINE = 7,
        ARM = 8,
        IS_POLL = 9,
        SESSION_STATS = 10,
        PING = 11,
        STATUS = 12,
        LIST_CLIENTS = 13,
        LIST_DESCS = 14,
        WATCH = 15,
};

/* Record header bits (fuzz-session.c). */
#define FDS(n) (n)
#define EMFILE_ 0x08
#define CONN1 0x10
#define SOCKET 0x20
#define KIND(first, step) ((first) | (step) << 4)
#define NODRAIN 0x01
#define EXPIRE_NOW 0x04
#define EXPIRE_1S 0x08
#define EXPIRE_ALL 0x0c
#define POLL 0x10
#define HANGUP 0x20
#define UNBLOCK_ALL 0x40
#define WRITE 0x80

/* Session flags byte. */
#define NO_HELLO0 0x01
#define NO_HELLO1 0x02
#define SMALL_QUOTA 0x04
#define SMALL_OUTPUT 0x08
#define LAME_DUCK 0x10
#define ADMIN 0x20
#define NOBODY 0x40
#define SMALL_SNDBUF 0x80

#define R 'r'
#define W 'w'
#define RW ('r' + 'w')
#define MS INT64_C(1000000)

static uint64_t D(uint32_t index, uint32_t gen)
{
        return (uint64_t)1 << 56 | (uint64_t)index << 32 | gen;
}

typedef struct Buf {
        uint8_t *p;
        size_t len, cap;
} Buf;

static void put(Buf *b, const void *p, size_t n)
{
        if (b->len + n > b->cap) {
                b->cap = (b->len + n) * 2;
                b->p = realloc(b->p, b->cap);
                if (!b->p) {
                        perror("realloc");
                        exit(1);
                }
        }
        memcpy(b->p + b->len, p, n);
        b->len += n;
}

static Netpoll__V1__Request Q(uint64_t id, int op, uint64_t desc, int mode, int64_t ns,
                              uint64_t user, int32_t fd_index, bool quiet)
{
        Netpoll__V1__Request q = NETPOLL__V1__REQUEST__INIT;

        q.id = id;
        q.op = (Netpoll__V1__Op)op;
        q.desc = desc;
        q.mode = mode;
        q.ns = ns;
        q.user = user;
        q.fd_index = fd_index;
        q.quiet = quiet;
        return q;
}

/* Packs a ClientMessage (hello when version > 0) onto b. */
static void pack(Buf *b, uint32_t version, const char *name, size_t n,
                 const Netpoll__V1__Request *qs)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Hello h = NETPOLL__V1__HELLO__INIT;
        Netpoll__V1__Request *reqs = calloc(n ? n : 1, sizeof(*reqs));
        Netpoll__V1__Request **rp = calloc(n ? n : 1, sizeof(*rp));

        if (!reqs || !rp) {
                perror("calloc");
                exit(1);
        }
        if (version) {
                h.version = version;
                h.name = (char *)name;
                m.hello = &h;
        }
        for (size_t i = 0; i < n; i++) {
                reqs[i] = qs[i];
                rp[i] = &reqs[i];
        }
        m.n_requests = n;
        m.requests = rp;
        size_t len = netpoll__v1__client_message__get_packed_size(&m);
        uint8_t *buf = malloc(len ? len : 1);
        netpoll__v1__client_message__pack(&m, buf);
        put(b, buf, len);
        free(buf);
        free(reqs);
        free(rp);
}

/* One session record carrying requests (and a hello when version > 0). */
static void rec_msg(Buf *b, uint8_t ctl, uint8_t kinds, uint8_t act, uint32_t version,
                    size_t n, const Netpoll__V1__Request *qs)
{
        Buf m = { 0 };

        pack(&m, version, "seed", n, qs);
        uint8_t h[5] = { ctl, kinds, act, (uint8_t)m.len, (uint8_t)(m.len >> 8) };
        put(b, h, sizeof(h));
        put(b, m.p, m.len);
        free(m.p);
}

#define REC(b, ctl, kinds, act, ...)                                                               \
        do {                                                                                       \
                const Netpoll__V1__Request qs_[] = { __VA_ARGS__ };                                \
                rec_msg(b, ctl, kinds, act, 0, sizeof(qs_) / sizeof(qs_[0]), qs_);                 \
        } while (0)

/* A record with raw bytes as its datagram. */
static void rec_raw(Buf *b, uint8_t ctl, uint8_t kinds, uint8_t act, const void *p, size_t n)
{
        uint8_t h[5] = { ctl, kinds, act, (uint8_t)n, (uint8_t)(n >> 8) };

        put(b, h, sizeof(h));
        put(b, p, n);
}

static const char *outdir;

/* Writes b as seed-NAME of target and empties it. */
static void write_seed(const char *target, const char *name, Buf *b)
{
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", outdir, target);
        if (mkdir(path, 0755) < 0 && errno != EEXIST) {
                perror(path);
                exit(1);
        }
        snprintf(path, sizeof(path), "%s/%s/seed-%s", outdir, target, name);
        f = fopen(path, "we");
        if (!f || fwrite(b->p, 1, b->len, f) != b->len || fclose(f) != 0) {
                perror(path);
                exit(1);
        }
        free(b->p);
        *b = (Buf){ 0 };
}

static Buf session(uint8_t flags)
{
        Buf b = { 0 };

        put(&b, &flags, 1);
        return b;
}

static void codec_seeds(void)
{
        Buf b = { 0 };

        write_seed("codec", "empty", &b);

        pack(&b, 1, "seed-client", 0, NULL);
        write_seed("codec", "hello", &b);

        pack(&b, 2, "", 0, NULL);
        write_seed("codec", "hello-v2", &b);

        Netpoll__V1__Request all[16];
        for (unsigned op = 0; op < 16; op++)
                all[op] = Q(100 + op, (int)op, D(op, 1), op & 1 ? W : R, op * MS, 0xfeed0000 + op,
                            (int32_t)(op % 3), false);
        pack(&b, 0, NULL, 16, all);
        write_seed("codec", "every-op", &b);

        const Netpoll__V1__Request pipelined[] = {
                Q(1, SET_DEADLINE, D(0, 1), RW, 5 * MS, 0, 0, true),
                Q(2, ARM, D(0, 1), R, 0, 0, 0, true),
                Q(3, ARM, D(0, 1), W, 0, 0, 0, true),
                Q(4, WAIT, D(1, 3), R, 0, 0, 0, false),
        };
        pack(&b, 0, NULL, 4, pipelined);
        write_seed("codec", "pipelined", &b);

        const Netpoll__V1__Request odd[] = {
                Q(UINT64_MAX, 99, UINT64_MAX, -1, INT64_MIN, UINT64_MAX, -1, true),
                Q(0, -5, 0, RW, INT64_MAX, 0, INT32_MAX, false),
        };
        pack(&b, 1, "hello-with-requests", 2, odd);
        write_seed("codec", "odd-values", &b);

        /* One request too many (-E2BIG), and a 64 KiB datagram of empty
         * requests, which needs more than the 2 MiB arena (-EBADMSG). */
        static Netpoll__V1__Request empty[32767];
        for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++)
                empty[i] = Q(0, 0, 0, 0, 0, 0, 0, false);
        pack(&b, 0, NULL, 1025, empty);
        write_seed("codec", "too-many-requests", &b);
        pack(&b, 0, NULL, sizeof(empty) / sizeof(empty[0]), empty);
        write_seed("codec", "arena-cap", &b);
}

static void session_seeds(void)
{
        const uint64_t d0 = D(0, 1), d1 = D(1, 1);
        Buf b;

        /* Round trips without descriptors. */
        b = session(0);
        REC(&b, 0, 0, 0, Q(1, PING, 0, 0, 0, 0, 0, false), Q(2, SESSION_STATS, 0, 0, 0, 0, 0, false));
        REC(&b, CONN1, 0, 0, Q(3, PING, 0, 0, 0, 0, 0, false));
        write_seed("session", "ping", &b);

        /* A wait parked on a pipe that never becomes readable ends by its
         * deadline; then unblock and close. */
        b = session(0);
        REC(&b, FDS(1), KIND(0, 0), 0, Q(1, OPEN, 0, 0, 0, 7, 0, false));
        REC(&b, 0, 0, 0, Q(2, SET_DEADLINE, d0, R, 1 * MS, 0, 0, false),
            Q(3, WAIT, d0, R, 0, 0, 0, false));
        REC(&b, 0, 0, EXPIRE_1S, Q(4, SESSION_STATS, 0, 0, 0, 0, 0, false));
        REC(&b, 0, 0, 0, Q(5, WAIT, d0, R, 0, 0, 0, false), Q(6, SET_DEADLINE, d0, R, 0, 0, 0, false),
            Q(7, RESET, d0, R, 0, 0, 0, false), Q(8, UNBLOCK, d0, 0, 0, 0, 0, false),
            Q(9, CLOSE, d0, 0, 0, 0, 0, false));
        write_seed("session", "deadline-timeout", &b);

        /* Armed waits on an eventfd: readiness from epoll, a deadline in
         * the past, pipelined (quiet) requests. */
        b = session(0);
        REC(&b, FDS(1), KIND(3, 0), 0, Q(1, OPEN, 0, 0, 0, 42, 0, false));
        REC(&b, 0, 0, POLL, Q(2, ARM, d0, W, 0, 0, 0, false), Q(3, ARM, d0, R, 0, 0, 0, false));
        REC(&b, 0, 0, 0, Q(4, SET_DEADLINE, d0, R, -1, 0, 0, true), Q(5, ARM, d0, W, 0, 0, 0, true),
            Q(6, ARM, d0, W, 0, 0, 0, false));
        REC(&b, 0, 0, POLL | EXPIRE_ALL, Q(7, SET_DEADLINE, d0, RW, 2 * MS, 0, 0, true),
            Q(8, ARM, d0, R, 0, 0, 0, true));
        REC(&b, 0, 0, 0, Q(9, UNBLOCK, d0, 0, 0, 0, 0, false), Q(10, CLOSE, d0, 0, 0, 0, 0, false));
        write_seed("session", "arm-events", &b);

        /* Readiness wakes a parked wait; wait_canceled survives unblock and
         * keeps close busy until readiness ends it. */
        b = session(0);
        REC(&b, FDS(2), KIND(0, 2), 0, Q(1, OPEN, 0, 0, 0, 1, 0, false),
            Q(2, OPEN, 0, 0, 0, 2, 1, false));
        REC(&b, 0, 0, WRITE | POLL, Q(3, WAIT, d0, R, 0, 0, 0, false),
            Q(4, WAIT, d1, W, 0, 0, 0, false), Q(5, WAIT, d1, R, 0, 0, 0, false));
        REC(&b, 0, 0, 0, Q(6, WAIT_CANCELED, d0, R, 0, 0, 0, false), Q(7, WAIT, d0, R, 0, 0, 0, false),
            Q(8, UNBLOCK, d0, 0, 0, 0, 0, false), Q(9, CLOSE, d0, 0, 0, 0, 0, false));
        REC(&b, 0, 0, WRITE | POLL, Q(10, CLOSE, d0, 0, 0, 0, 0, false));
        REC(&b, 0, 0, UNBLOCK_ALL, Q(11, UNBLOCK, d1, 0, 0, 0, 0, false),
            Q(12, CLOSE, d1, 0, 0, 0, 0, false), Q(13, CLOSE, d1, 0, 0, 0, 0, false),
            Q(14, CLOSE, d0, 0, 0, 0, 0, false));
        write_seed("session", "readiness", &b);

        /* Introspection: a watcher on connection 1 sees connection 0 open,
         * wait, time out, close and hang up. */
        b = session(ADMIN);
        REC(&b, CONN1, 0, 0, Q(1, WATCH, 0, 0, 0, 0, 0, false));
        REC(&b, FDS(3), KIND(0, 1), 0, Q(2, OPEN, 0, 0, 0, 5, 0, false),
            Q(3, OPEN, 0, 0, 0, 6, 1, false), Q(4, OPEN, 0, 0, 0, 7, 2, false));
        REC(&b, 0, 0, EXPIRE_ALL, Q(5, SET_DEADLINE, d0, R, 1, 0, 0, false),
            Q(6, WAIT, d0, R, 0, 0, 0, false), Q(7, STATUS, 0, 0, 0, 0, 0, false),
            Q(8, LIST_CLIENTS, 0, 0, 0, 0, 0, false), Q(9, LIST_DESCS, 0, 0, 0, 0, 0, false));
        REC(&b, CONN1, 0, 0, Q(10, LIST_DESCS, 1, 0, 0, 0, 0, false),
            Q(11, LIST_DESCS, 77, 0, 0, 0, 0, false), Q(12, WATCH, 1, 0, 0, 0, 0, false));
        REC(&b, 0, 0, HANGUP, Q(13, UNBLOCK, d1, 0, 0, 0, 0, false),
            Q(14, CLOSE, d1, 0, 0, 0, 0, false));
        REC(&b, 0, 0, POLL, Q(15, PING, 0, 0, 0, 0, 0, false));
        write_seed("session", "admin-watch", &b);

        /* Errors that keep the connection: each one's errno, then the ones
         * that drop it. */
        b = session(0);
        REC(&b, FDS(1), KIND(7, 0), 0, Q(1, IS_POLL, 0, 0, 0, 0, 0, false));
        REC(&b, FDS(3), KIND(5, 1), 0, Q(2, OPEN, 0, 0, 0, 0, 0, false),
            Q(3, OPEN, 0, 0, 0, 0, 1, false), Q(4, OPEN, 0, 0, 0, 0, 2, false));
        REC(&b, FDS(2), KIND(7, 1), 0, Q(5, OPEN, 0, 0, 0, 0, 0, false),
            Q(6, OPEN, 0, 0, 0, 0, 1, false));
        REC(&b, EMFILE_, 0, 0, Q(7, OPEN, 0, 0, 0, 0, 0, false), Q(8, IS_POLL, 0, 0, 0, 0, 0, false));
        REC(&b, 0, 0, 0, Q(9, 99, 0, 0, 0, 0, 0, false), Q(10, WAIT, D(9, 1), R, 0, 0, 0, false),
            Q(11, RESET, D(9, 1), 'x', 0, 0, 0, false));
        /* Slot 0 went to the two refused opens above: generation 5. */
        REC(&b, FDS(1), KIND(3, 0), 0, Q(12, OPEN, 0, 0, 0, 0, 0, false));
        REC(&b, 0, 0, 0, Q(13, RESET, D(0, 5), 'x', 0, 0, 0, false),
            Q(14, WAIT, D(0, 5), 0, 0, 0, 0, false),
            Q(15, SET_DEADLINE, D(0, 5), 'x', 5, 0, 0, false),
            Q(16, CLOSE, D(0, 5), 0, 0, 0, 0, false), Q(17, UNBLOCK, D(0, 5), 0, 0, 0, 0, false),
            Q(18, UNBLOCK, D(0, 5), 0, 0, 0, 0, false), Q(19, CLOSE, D(0, 3), 0, 0, 0, 0, false));
        REC(&b, FDS(1), KIND(1, 0), 0, Q(20, OPEN, 0, 0, 0, 0, 3, false));
        REC(&b, 0, 0, 0, Q(21, OPEN, 0, 0, 0, 0, 0, false));
        REC(&b, FDS(2), KIND(1, 1), 0, Q(22, PING, 0, 0, 0, 0, 0, false));
        rec_msg(&b, 0, 0, 0, 1, 0, NULL); /* a second hello */
        rec_raw(&b, 0, 0, 0, "\xff\xff\xff", 3);
        write_seed("session", "errors", &b);

        /* The handshake: a wrong version, requests before the hello, fds
         * on the hello, then a good one. */
        b = session(NO_HELLO0 | NO_HELLO1);
        rec_msg(&b, 0, 0, 0, 2, 0, NULL);
        REC(&b, CONN1, 0, 0, Q(1, PING, 0, 0, 0, 0, 0, false));
        rec_msg(&b, FDS(1), KIND(3, 0), 0, 1, 0, NULL);
        rec_msg(&b, CONN1, 0, 0, 1, 0, NULL);
        REC(&b, CONN1, 0, 0, Q(2, PING, 0, 0, 0, 0, 0, false));
        write_seed("session", "handshake", &b);

        /* The same through the real socket, fds as SCM_RIGHTS. */
        b = session(NO_HELLO1);
        REC(&b, SOCKET | FDS(2), KIND(0, 3), 0, Q(1, OPEN, 0, 0, 0, 1, 0, false),
            Q(2, OPEN, 0, 0, 0, 2, 1, false));
        REC(&b, SOCKET, 0, EXPIRE_ALL, Q(3, SET_DEADLINE, d0, R, MS, 0, 0, false),
            Q(4, WAIT, d0, R, 0, 0, 0, false), Q(5, ARM, d1, W, 0, 0, 0, false));
        REC(&b, SOCKET, 0, POLL, Q(6, UNBLOCK, d0, 0, 0, 0, 0, false),
            Q(7, CLOSE, d0, 0, 0, 0, 0, false));
        rec_msg(&b, SOCKET | CONN1, 0, 0, 1, 0, NULL);
        REC(&b, SOCKET | CONN1 | FDS(1), KIND(7, 0), 0, Q(8, OPEN, 0, 0, 0, 0, 0, false));
        rec_raw(&b, SOCKET | FDS(1), KIND(3, 0), 0, "", 0);
        rec_raw(&b, SOCKET | CONN1, 0, 0, "", 0);
        write_seed("session", "socket", &b);

        /* The per-connection quota. */
        b = session(SMALL_QUOTA);
        REC(&b, FDS(4), KIND(3, 0), 0, Q(1, OPEN, 0, 0, 0, 0, 0, false),
            Q(2, OPEN, 0, 0, 0, 0, 1, false), Q(3, OPEN, 0, 0, 0, 0, 2, false),
            Q(4, OPEN, 0, 0, 0, 0, 3, false));
        write_seed("session", "quota", &b);

        /* Shutdown with parked waits and armed timers (server_done). */
        b = session(LAME_DUCK);
        REC(&b, FDS(2), KIND(0, 0), 0, Q(1, OPEN, 0, 0, 0, 0, 0, false),
            Q(2, OPEN, 0, 0, 0, 0, 1, false));
        REC(&b, 0, 0, 0, Q(3, WAIT, d0, R, 0, 0, 0, false), Q(4, ARM, d1, R, 0, 0, 0, false),
            Q(5, SET_DEADLINE, d1, W, 3600000 * MS, 0, 0, false));
        REC(&b, CONN1 | FDS(1), KIND(2, 0), 0, Q(6, OPEN, 0, 0, 0, 0, 0, false));
        REC(&b, CONN1, 0, 0, Q(7, WAIT, D(2, 1), R, 0, 0, 0, false));
        write_seed("session", "lame-duck", &b);

        /* A client that does not read: descriptor lists fill the socket,
         * then the daemon's queue, until the output cap drops it. */
        b = session(SMALL_OUTPUT);
        for (int i = 0; i < 2; i++)
                REC(&b, FDS(7), KIND(3, 0), 0, Q(1, OPEN, 0, 0, 0, 0, 0, false),
                    Q(2, OPEN, 0, 0, 0, 0, 1, false), Q(3, OPEN, 0, 0, 0, 0, 2, false),
                    Q(4, OPEN, 0, 0, 0, 0, 3, false), Q(5, OPEN, 0, 0, 0, 0, 4, false),
                    Q(6, OPEN, 0, 0, 0, 0, 5, false), Q(7, OPEN, 0, 0, 0, 0, 6, false));
        Netpoll__V1__Request lists[400];
        for (int i = 0; i < 400; i++)
                lists[i] = Q(0, i % 8 ? LIST_DESCS : LIST_CLIENTS, 0, 0, 0, 0, 0, false);
        for (int i = 0; i < 3; i++)
                rec_msg(&b, 0, 0, NODRAIN | POLL, 0, 400, lists);
        REC(&b, CONN1, 0, POLL, Q(1, LIST_CLIENTS, 0, 0, 0, 0, 0, false));
        write_seed("session", "backpressure", &b);

        /* The socket full but the daemon's queue within bounds: a wait's
         * outcome stays counted until the queue drains on EPOLLOUT. */
        b = session(SMALL_SNDBUF);
        REC(&b, FDS(1), KIND(0, 0), 0, Q(1, OPEN, 0, 0, 0, 0, 0, false));
        REC(&b, 0, 0, 0, Q(2, WAIT, d0, R, 0, 0, 0, false));
        for (int i = 0; i < 11; i++)
                REC(&b, 0, 0, NODRAIN, Q((uint64_t)(3 + i), PING, 0, 0, 0, 0, 0, false));
        REC(&b, 0, 0, NODRAIN, Q(20, SET_DEADLINE, d0, R, -1, 0, 0, false),
            Q(21, SESSION_STATS, 0, 0, 0, 0, 0, false));
        REC(&b, 0, 0, POLL, Q(22, SESSION_STATS, 0, 0, 0, 0, 0, false));
        REC(&b, 0, 0, POLL, Q(23, SESSION_STATS, 0, 0, 0, 0, 0, false));
        REC(&b, 0, 0, 0, Q(24, UNBLOCK, d0, 0, 0, 0, 0, false), Q(25, CLOSE, d0, 0, 0, 0, 0, false));
        write_seed("session", "queue", &b);

        /* Clients that are not admins: their own connection only. */
        b = session(NOBODY);
        REC(&b, FDS(2), KIND(3, 1), 0, Q(1, OPEN, 0, 0, 0, 0, 0, false),
            Q(2, OPEN, 0, 0, 0, 0, 1, false));
        REC(&b, 0, 0, 0, Q(3, STATUS, 0, 0, 0, 0, 0, false), Q(4, LIST_CLIENTS, 0, 0, 0, 0, 0, false),
            Q(5, LIST_DESCS, 0, 0, 0, 0, 0, false), Q(6, LIST_DESCS, 1, 0, 0, 0, 0, false),
            Q(7, LIST_DESCS, 2, 0, 0, 0, 0, false), Q(8, WATCH, 2, 0, 0, 0, 0, false),
            Q(9, WATCH, 0, 0, 0, 0, 0, false));
        REC(&b, CONN1 | FDS(1), KIND(3, 0), POLL, Q(10, OPEN, 0, 0, 0, 0, 0, false),
            Q(11, WATCH, 0, 0, 0, 0, 0, false));
        REC(&b, 0, 0, POLL, Q(12, ARM, d0, W, 0, 0, 0, false), Q(13, WAIT, d1, W, 0, 0, 0, false));
        write_seed("session", "nobody", &b);
        b = session(NOBODY | ADMIN);
        REC(&b, 0, 0, 0, Q(1, STATUS, 0, 0, 0, 0, 0, false), Q(2, LIST_DESCS, 2, 0, 0, 0, 0, false),
            Q(3, WATCH, 2, 0, 0, 0, 0, false));
        REC(&b, CONN1 | FDS(1), KIND(4, 0), 0, Q(4, OPEN, 0, 0, 0, 0, 0, false));
        write_seed("session", "nobody-admin", &b);

        /* Every kind of fd, listed, armed and polled. */
        b = session(ADMIN);
        REC(&b, FDS(7), KIND(0, 1), 0, Q(1, OPEN, 0, 0, 0, 0, 0, false),
            Q(2, OPEN, 0, 0, 0, 0, 1, false), Q(3, OPEN, 0, 0, 0, 0, 2, false),
            Q(4, OPEN, 0, 0, 0, 0, 3, false), Q(5, OPEN, 0, 0, 0, 0, 4, false),
            Q(6, OPEN, 0, 0, 0, 0, 5, false), Q(7, OPEN, 0, 0, 0, 0, 6, false));
        REC(&b, FDS(7), KIND(7, 1), 0, Q(8, OPEN, 0, 0, 0, 0, 0, false),
            Q(9, OPEN, 0, 0, 0, 0, 1, false), Q(10, OPEN, 0, 0, 0, 0, 2, false),
            Q(11, OPEN, 0, 0, 0, 0, 3, false), Q(12, OPEN, 0, 0, 0, 0, 4, false),
            Q(13, OPEN, 0, 0, 0, 0, 5, false), Q(14, OPEN, 0, 0, 0, 0, 6, false));
        REC(&b, FDS(2), KIND(14, 1), 0, Q(15, OPEN, 0, 0, 0, 0, 0, false),
            Q(16, OPEN, 0, 0, 0, 0, 1, false));
        Netpoll__V1__Request arms[20];
        size_t n_arms = 0;
        /* Slots 0-9; slot 5 served the two refused opens first. */
        for (uint32_t i = 0; i < 10; i++) {
                arms[n_arms++] = Q(100 + i, ARM, D(i, i == 5 ? 5 : 1), R, 0, 0, 0, false);
                arms[n_arms++] = Q(200 + i, ARM, D(i, i == 5 ? 5 : 1), W, 0, 0, 0, false);
        }
        rec_msg(&b, 0, 0, WRITE | POLL, 0, n_arms, arms);
        REC(&b, 0, 0, POLL | EXPIRE_NOW, Q(17, LIST_DESCS, 0, 0, 0, 0, 0, false),
            Q(18, LIST_CLIENTS, 0, 0, 0, 0, 0, false));
        write_seed("session", "fd-kinds", &b);
}

int main(int argc, char **argv)
{
        if (argc != 2) {
                fprintf(stderr, "usage: %s DIR\n", argv[0]);
                return 2;
        }
        outdir = argv[1];
        if (mkdir(outdir, 0755) < 0 && errno != EEXIST) {
                perror(outdir);
                return 1;
        }
        codec_seeds();
        session_seeds();
        return 0;
}
