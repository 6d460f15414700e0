/*
 * Fuzz target "session": arbitrary request datagrams, with fds, decoded and
 * dispatched into live sessions of the real daemon code (session.c,
 * session-out.c, session-request.c, pollops.c, pollcache.c, timers.c,
 * admin.c, poller.c, server.c), in one process.
 *
 * Every input gets a fresh Server (server_init, default configuration), a
 * listener on an abstract socket address, and up to FZS_CONNS connections
 * accepted from it, each a Session; the harness holds the client ends,
 * drains them and checks that everything the daemon sends unpacks as a
 * ServerMessage of at most 64 KiB.  Unless the input says otherwise a
 * connection starts with a valid hello.
 *
 * Input: one flags byte, then records of a 5-byte header and a payload:
 *
 *   flags  bit 0/1  no automatic hello on connection 0/1
 *          bit 2    max_descriptors 3 (quota errors)
 *          bit 3    max_output_bytes 65536, the lowest the config allows
 *          bit 4    end with server_done's lame-duck shutdown instead of
 *                   closing every session first
 *          bit 5    admin_users lists our uid and 65534
 *          bit 6    connections look like uid/gid 65534 (SO_PEERCRED
 *                   overridden), so that running as root still reaches the
 *                   paths of clients that are not admins
 *          bit 7    the daemon's end gets the smallest SO_SNDBUF, so a few
 *                   unread datagrams fill it and replies queue in the daemon
 *                   (a connected pair has no datagram count limit)
 *   ctl    bit 0-2  number of fds sent with the datagram (0..7)
 *          bit 3    emfile: the daemon "ran out of fds" receiving it
 *          bit 4    connection 0 or 1 (a dead one is reconnected, at most
 *                   FZS_MAX_CONNECTS times per input)
 *          bit 5    send it through the real socket with SCM_RIGHTS and let
 *                   session_dispatch recvmsg it, instead of session_feed
 *   kinds  bit 0-3  kind of the first fd, bit 4-6 step to the next (below)
 *   act    bit 0    do not drain our ends this turn (the daemon queues)
 *          bit 2-3  expire timers due: 0 no, 1 now, 2 now + 1 s, 3 all
 *          bit 4    epoll_wait(0) on the daemon's poller and dispatch
 *          bit 5    close our end of this connection (a hang-up)
 *          bit 6    session_unblock_all on every connection
 *          bit 7    write a byte into every pipe and socket we kept open
 *   len    2 bytes, little-endian; a payload of len bytes follows (cut short
 *          at the end of the input)
 *
 * fd kinds: 0 pipe read end (write end kept: readable only when written),
 * 1 pipe read end (write end closed), 2 pipe write end (read end kept),
 * 3 eventfd, 4 stream socket (peer kept), 5 /dev/null and 6 a memfd (not
 * pollable), 7 a dup of the daemon's epoll fd and 8 of the client's end of
 * this connection (both refused), 9 pipe write end (read end closed:
 * EPOLLERR | EPOLLOUT), 10 the same with the pipe full (EPOLLERR alone),
 * 11 readable eventfd, 12 a dup of the client's end of the other connection
 * (refused), 13 a dup of the daemon's wakeup eventfd (refused), 14 a
 * timerfd, 15 stream socket (peer closed).  A client end we closed is
 * replaced by an eventfd.
 *
 * After every record: the loop's flush and deferred closes (server_reap), then
 * server_verify() must hold.  After every input no fd may be left open;
 * any failure aborts, which libFuzzer saves as a crash.
 *
 * The replay in tests/test-fuzzcorpus.c #includes this file with
 * LLVMFuzzerTestOneInput renamed; every other name here is static.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdbool.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "admin.h"
#include "clock.h"
#include "codec.h"
#include "config.h"
#include "fuzz.h"
#include "log.h"
#include "netpoll.pb-c.h"
#include "pollcache.h"
#include "server.h"
#include "session.h"
#include "../testlib.h"
#include "token.h"

#define FZS_CONNS 2
#define FZS_MAX_CONNECTS 8
#define FZS_MAX_RECORDS 64
#define FZS_MAX_FDS 7
#define FZS_MAX_KEPT 128
#define FZS_HEADER 5

typedef struct FuzzSession {
        Config config;
        Server srv;
        int peer[FZS_CONNS]; /* our end of each connection, or -1 */
        unsigned connects;
        uint8_t flags;
        int kept[FZS_MAX_KEPT]; /* other ends of fds we passed, kept open */
        size_t n_kept;
        uint8_t rbuf[NP_MAX_MESSAGE_BYTES + 1];
} FuzzSession;

static FuzzSession fzs;
static int fzs_trace = -1;

static void fzs_keep(int fd)
{
        if (fzs.n_kept < FZS_MAX_KEPT)
                fzs.kept[fzs.n_kept++] = fd;
        else
                close(fd);
}

/* A pipe; the end not returned is kept open (keep) or closed. */
static int fzs_pipe(bool want_read, bool keep)
{
        int p[2];

        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                return -1;
        if (keep)
                fzs_keep(p[want_read]);
        else
                close(p[want_read]);
        return p[!want_read];
}

/* A dup of fd, or -1. */
static int fzs_dup(int fd)
{
        return fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
}

/* One fd of the given kind (see the top of the file) for connection conn,
 * or -1. */
static int fzs_make_fd(unsigned conn, unsigned kind)
{
        Server *srv = &fzs.srv;
        int p[2], fd;

        kind &= 15;
        switch (kind) {
        case 0:
                return fzs_pipe(true, true);
        case 1:
                return fzs_pipe(true, false);
        case 2:
                return fzs_pipe(false, true);
        case 3:
                return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        case 4:
        case 15:
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, p) < 0)
                        return -1;
                if (kind == 4)
                        fzs_keep(p[1]);
                else
                        close(p[1]);
                return p[0];
        case 5:
                return open("/dev/null", O_RDONLY | O_CLOEXEC);
        case 6:
                return memfd_create("fuzz", MFD_CLOEXEC);
        case 7:
                return fzs_dup(srv->poller.epfd);
        case 8:
        case 12:
                fd = fzs.peer[kind == 8 ? conn : !conn];
                return fd >= 0 ? fzs_dup(fd) : eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        case 9:
                return fzs_pipe(false, false);
        case 10:
                if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                        return -1;
                while (write(p[1], fzs.rbuf, sizeof(fzs.rbuf)) > 0)
                        ;
                close(p[0]);
                return p[1];
        case 11:
                return eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
        case 13:
                return fzs_dup(srv->poller.wakefd);
        default:
                fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
                return fd;
        }
}

static void fzs_trace_message(unsigned conn, const Netpoll__V1__ServerMessage *m)
{
        fprintf(stderr, "fuzz-session: conn %u <-%s%s", conn, m->welcome ? " welcome" : "",
                m->error ? " error" : "");
        for (size_t i = 0; i < m->n_replies; i++)
                fprintf(stderr, " reply(id %llu, %d, desc %#llx)",
                        (unsigned long long)m->replies[i]->id, m->replies[i]->result,
                        (unsigned long long)m->replies[i]->desc);
        for (size_t i = 0; i < m->n_events; i++)
                fprintf(stderr, " event(desc %#llx, %c, %d)", (unsigned long long)m->events[i]->desc,
                        m->events[i]->mode, m->events[i]->result);
        for (size_t i = 0; i < m->n_watch; i++)
                fprintf(stderr, " watch(kind %d)", m->watch[i]->kind);
        fputc('\n', stderr);
}

/* Reads and checks everything the daemon sent on connection conn. */
static void fzs_drain(unsigned conn)
{
        int fd = fzs.peer[conn];

        while (fd >= 0) {
                union {
                        struct cmsghdr align;
                        uint8_t buf[CMSG_SPACE(sizeof(int) * 8)];
                } control;
                struct iovec iov = { .iov_base = fzs.rbuf, .iov_len = sizeof(fzs.rbuf) };
                struct msghdr mh = { .msg_iov = &iov,
                                     .msg_iovlen = 1,
                                     .msg_control = &control,
                                     .msg_controllen = sizeof(control) };
                ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n <= 0)
                        return; /* empty, or the daemon closed it */
                fuzz_check(mh.msg_controllen == 0, "the daemon sent control data");
                fuzz_check((size_t)n <= NP_MAX_MESSAGE_BYTES && !(mh.msg_flags & MSG_TRUNC),
                           "the daemon sent a datagram of %zd bytes", n);
                Netpoll__V1__ServerMessage *m =
                        netpoll__v1__server_message__unpack(NULL, (size_t)n, fzs.rbuf);
                fuzz_check(m, "the daemon sent an undecodable datagram of %zd bytes", n);
                if (fzs_trace)
                        fzs_trace_message(conn, m);
                netpoll__v1__server_message__free_unpacked(m, NULL);
        }
}

/* The loop's flush and deferred frees (server.c server_flush and
 * server_free_dead). */
static void fzs_flush(void)
{
        Server *srv = &fzs.srv;

        while (srv->dirty) {
                Session *sess = srv->dirty;
                srv->dirty = sess->next_dirty;
                sess->dirty = false;
                session_flush(sess);
        }
}

/* The loop's deferred closes and frees: a batch of the fds of ended
 * connections per turn (all: every one). */
static void fzs_reap(bool all)
{
        server_reap(&fzs.srv, all);
}

/* server.c server_expire, with a clock of our choosing. */
static void fzs_expire(int64_t now)
{
        Timer *t;

        fzs.srv.ops.now = now;
        for (int i = 0; i < SERVER_TIMER_BATCH && (t = timers_pop_due(&fzs.srv.timers, now)); i++)
                pollops_timer_fire(&fzs.srv.ops, t);
}

/* One epoll_wait(0) and the loop's own dispatch of what it returns:
 * connections, their epoll sets of descriptors, descriptors in the main
 * set, the wakeup eventfd and the timerfd. */
static void fzs_poll(void)
{
        Server *srv = &fzs.srv;
        struct epoll_event evs[64];
        int n = poller_wait(&srv->poller, evs, 64, 0);

        srv->ops.now = now_ns();
        for (int i = 0; i < n; i++)
                server_dispatch(srv, &evs[i]);
        admin_descs_continue(srv, srv->descs_due); /* a page whenever asked */
}

static void fzs_hello(Session *s)
{
        static const uint8_t hello[] = { 0x0a, 0x08, 0x08, 0x01, 0x12, 0x04, 'f', 'u', 'z', 'z' };

        session_feed(s, hello, sizeof(hello), NULL, 0, false);
}

/* The daemon's listener, on an abstract address of our own, so that the
 * daemon recognises connections to itself as it does in service. */
static void fzs_listen(void)
{
        static unsigned serial;
        Server *srv = &fzs.srv;
        struct sockaddr_un *a = &srv->listen_addr;
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        fuzz_check(fd >= 0, "socket: %s", strerror(errno));
        *a = (struct sockaddr_un){ .sun_family = AF_UNIX };
        int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "netpolld-fuzz-%d-%u",
                         (int)getpid(), serial++);
        srv->listen_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
        fuzz_check(bind(fd, (struct sockaddr *)a, srv->listen_addr_len) == 0 &&
                           listen(fd, 16) == 0,
                   "bind or listen: %s", strerror(errno));
        srv->listen_fd = fd;
        struct stat st; /* as server_listen: how server_classify_fd knows it */
        fuzz_check(fstat(fd, &st) == 0, "fstat: %s", strerror(errno));
        srv->listen_dev = st.st_dev;
        srv->listen_ino = st.st_ino;
}

/* A new connection at index conn: connect, accept, then what
 * listener_add_connection does (minus the admission checks). */
static Session *fzs_connect(unsigned conn)
{
        Server *srv = &fzs.srv;
        Session *s;
        int peer, fd;

        if (fzs.connects >= FZS_MAX_CONNECTS)
                return NULL;
        fzs.connects++;
        if (fzs.peer[conn] >= 0)
                fzs.peer[conn] = (close(fzs.peer[conn]), -1);
        peer = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (peer < 0)
                return NULL;
        if (connect(peer, (struct sockaddr *)&srv->listen_addr, srv->listen_addr_len) < 0 ||
            (fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) < 0) {
                close(peer);
                return NULL;
        }
        if (fzs.flags & 0x80)
                (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &(int){ 1 }, sizeof(int));
        if (session_new(srv, fd, conn, &s) < 0) {
                close(peer);
                return NULL;
        }
        fzs.peer[conn] = peer;
        srv->sessions[conn] = s;
        srv->n_sessions++;
        srv->stats.accepted++;
        srv->handshake_due = 0; /* sweep on the next housekeeping */
        if (fzs.flags & 0x40) {
                s->uid = 65534;
                s->gid = 65534;
        }
        if (srv->n_watchers)
                admin_watch(srv, NETPOLL__V1__WATCH_KIND__WATCH_CONNECT, s, 0, 0);
        if (!(fzs.flags & (1u << conn)))
                fzs_hello(s);
        return s;
}

/* Sends a datagram and its fds through our end; false if it could not. */
static bool fzs_send(unsigned conn, const uint8_t *buf, size_t len, const int *fds, size_t nfds)
{
        return fzs.peer[conn] >= 0 &&
               test_send_fds(fzs.peer[conn], buf, len, fds, nfds, MSG_DONTWAIT) == 0;
}

static void fzs_verify(void)
{
        const char *why = server_verify(&fzs.srv);

        fuzz_check(why == NULL, "server_verify: %s", why);
}

/* One record: a datagram into connection conn, then the loop's chores. */
static void fzs_record(uint8_t ctl, uint8_t kinds, uint8_t act, const uint8_t *buf, size_t len)
{
        Server *srv = &fzs.srv;
        unsigned conn = (ctl >> 4) & 1;
        Session *s = srv->sessions[conn];
        int fds[FZS_MAX_FDS];
        size_t nfds = 0;

        if (!s && !(s = fzs_connect(conn)))
                return;
        for (size_t i = 0; i < (size_t)(ctl & 7); i++) {
                int fd = fzs_make_fd(conn, (unsigned)((kinds & 15) + i * ((kinds >> 4) & 7)));
                if (fd >= 0)
                        fds[nfds++] = fd;
        }
        if ((ctl & 0x20) && fzs.peer[conn] >= 0) {
                bool sent = fzs_send(conn, buf, len, fds, nfds);
                for (size_t i = 0; i < nfds; i++)
                        close(fds[i]);
                if (sent)
                        session_dispatch(s, EPOLLIN);
        } else
                session_feed(s, buf, len, fds, nfds, ctl & 8);

        if (act & 0x80)
                for (size_t i = 0; i < fzs.n_kept; i++)
                        (void)!write(fzs.kept[i], "x", 1);
        if (act & 0x10)
                fzs_poll();
        switch ((act >> 2) & 3) {
        case 1:
                fzs_expire(now_ns());
                break;
        case 2:
                fzs_expire(now_ns() + NSEC_PER_SEC);
                break;
        case 3:
                fzs_expire(INT64_MAX);
                break;
        }
        if (act & 0x40)
                for (unsigned i = 0; i < FZS_CONNS; i++)
                        if (srv->sessions[i])
                                session_unblock_all(srv->sessions[i]);
        fzs_flush();
        if ((act & 0x20) && fzs.peer[conn] >= 0) {
                fzs.peer[conn] = (close(fzs.peer[conn]), -1);
                fzs_poll(); /* the session sees the hang-up */
                fzs_flush();
        }
        if (!(act & 1))
                for (unsigned i = 0; i < FZS_CONNS; i++)
                        fzs_drain(i);
        fzs_reap(false);
        fzs_verify();
}

static void fzs_run(const uint8_t *data, size_t size)
{
        Server *srv = &fzs.srv;
        ConfigSource source = { .path = NULL, .socket_override = NULL, .log_level_override = -1 };
        int r;

        fzs.flags = size ? data[0] : 0;
        fzs.connects = 0;
        fzs.n_kept = 0;
        for (unsigned i = 0; i < FZS_CONNS; i++)
                fzs.peer[i] = -1;
        fuzz_check(config_init(&fzs.config) == 0, "out of memory");
        if (fzs.flags & 4)
                fzs.config.max_descriptors = 3;
        if (fzs.flags & 8)
                fzs.config.max_output_bytes = 65536;
        if (fzs.flags & 0x20) {
                fzs.config.admin_users.n = 2;
                fzs.config.admin_users.ids[0] = (uint32_t)getuid();
                fzs.config.admin_users.ids[1] = 65534;
        }
        r = server_init(srv, &fzs.config, &source);
        fuzz_check(r == 0, "server_init: %s", strerror(-r));
        fzs_listen();
        /* The connection table listener_add_connection would grow. */
        srv->sessions_cap = 16;
        srv->sessions = calloc(srv->sessions_cap, sizeof(*srv->sessions));
        srv->session_gens = malloc(srv->sessions_cap * sizeof(*srv->session_gens));
        fuzz_check(srv->sessions && srv->session_gens, "out of memory");
        for (uint32_t i = 0; i < srv->sessions_cap; i++)
                srv->session_gens[i] = 1;
        for (unsigned i = 0; i < FZS_CONNS; i++)
                fzs_connect(i);
        fzs_flush();
        fzs_reap(false);
        fzs_verify();

        size_t off = size ? 1 : 0;
        for (int rec = 0; rec < FZS_MAX_RECORDS && size - off >= FZS_HEADER; rec++) {
                const uint8_t *h = data + off;
                size_t len = (size_t)h[3] | (size_t)h[4] << 8;
                off += FZS_HEADER;
                if (len > size - off)
                        len = size - off;
                fzs_record(h[0], h[1], h[2], data + off, len);
                off += len;
        }

        fzs_flush();
        for (unsigned i = 0; i < FZS_CONNS; i++)
                fzs_drain(i);
        fzs_reap(false);
        fzs_verify();
        if (!(fzs.flags & 0x10)) {
                /* Every connection goes as a client that hangs up would:
                 * nothing may be left registered, armed or counted. */
                for (uint32_t i = 0; i < srv->sessions_cap; i++)
                        if (srv->sessions[i])
                                session_close(srv->sessions[i], NULL);
                fzs_flush();
                fzs_reap(true);
                fzs_verify();
                fuzz_check(srv->n_sessions == 0 && srv->n_watchers == 0,
                           "%u connections, %u watchers left", srv->n_sessions, srv->n_watchers);
                fuzz_check(srv->cache.in_use == 0 && srv->timers.n == 0,
                           "%u descriptors, %u timers left", srv->cache.in_use, srv->timers.n);
        }
        server_done(srv);
        for (unsigned i = 0; i < FZS_CONNS; i++)
                fzs_drain(i); /* the lame duck's last words */
        config_done(&fzs.config);
        for (unsigned i = 0; i < FZS_CONNS; i++)
                if (fzs.peer[i] >= 0)
                        fzs.peer[i] = (close(fzs.peer[i]), -1);
        for (size_t i = 0; i < fzs.n_kept; i++)
                close(fzs.kept[i]);
        fzs.n_kept = 0;
}

/* The libFuzzer entry point (renamed by the replay). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (fzs_trace < 0) {
                const char *t = getenv("NETPOLL_FUZZ_TRACE");
                fzs_trace = t && *t && *t != '0';
                /* Writes into kept pipes whose read end the daemon closed. */
                signal(SIGPIPE, SIG_IGN);
                /* Never talk to a service manager we may run under. */
                unsetenv("NOTIFY_SOCKET");
                unsetenv("WATCHDOG_USEC");
                unsetenv("WATCHDOG_PID");
        }
        log_set_level(fzs_trace ? LOG_DEBUG : LOG_ERR);

        int before = fuzz_fd_count();
        fzs_run(data, size);
        int after = fuzz_fd_count();
        fuzz_check(after == before, "%d fd(s) leaked", after - before);
        return 0;
}
