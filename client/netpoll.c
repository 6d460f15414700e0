/*
 * libnetpoll: one connection to netpolld, shared by any number of threads.
 * This file holds the public entry points: they check their arguments,
 * answer what the library knows locally (its descriptor table, its own
 * fds), and decide which requests may be pipelined; request.c sends,
 * reader.c reads, client.h is the connection they share.
 *
 * np_break follows netpollBreak: a flag coalesces breaks into one eventfd
 * write (async-signal-safe: an atomic exchange and write(2)); a blocking
 * reader consumes it and records a pending break, which the next np_poll
 * with a non-zero delay takes.  np_poll(0) never reads the eventfd.
 */
#include "netpoll.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/clock.h"
#include "../common/fdutil.h"
#include "client.h"
#include "reader.h"
#include "request.h"

#define NP_EXPORT __attribute__((visibility("default")))
#define ARENA_BYTES (1024 * 1024)
#define CONNECT_TRIES 5 /* see np_connect */
#define HANDSHAKE_TIMEOUT_MS 5000

static int simple(np_client *c, Netpoll__V1__Op op, np_desc d, int mode, int64_t ns)
{
        Netpoll__V1__Request q = NETPOLL__V1__REQUEST__INIT;
        Pending p = { 0 };

        if (!c)
                return -EINVAL;
        q.op = op;
        q.desc = d;
        q.mode = mode;
        q.ns = ns;
        return request_call(c, &q, -1, &p);
}

static bool mode_is_rw(int mode)
{
        return mode == NP_READ || mode == NP_WRITE;
}

/*
 * Adjusts the count of outstanding waits of d in mode by delta and returns
 * the count before.  UINT32_MAX when d is not in the table (then nothing is
 * known locally and every call goes to the daemon synchronously).
 */
static uint32_t outstanding_add(np_client *c, np_desc d, int mode, int delta)
{
        uint32_t before = UINT32_MAX;

        pthread_mutex_lock(&c->lock);
        DescEntry *e = desctab_find(&c->descs, d);
        if (e && mode_is_rw(mode)) {
                uint32_t *n = desctab_outstanding(e, mode);
                before = *n;
                if (delta > 0)
                        *n += (uint32_t)delta;
                else if (*n > 0)
                        *n -= (uint32_t)-delta;
        }
        pthread_mutex_unlock(&c->lock);
        return before;
}

static bool desc_known(np_client *c, np_desc d)
{
        pthread_mutex_lock(&c->lock);
        bool known = desctab_find(&c->descs, d) != NULL;
        pthread_mutex_unlock(&c->lock);
        return known;
}

/*
 * Deadlines travel as absolute CLOCK_MONOTONIC times, so the library must
 * know the daemon's clock.  Decided by causality, never by a threshold:
 * the daemon stamped its welcome after our hello left (at `sent`) and
 * before we read it (at `read`), so on one clock sent <= stamp <= read
 * however long either side was held up in between, and the offset is 0.
 * A daemon in another time namespace breaks that; its clock is then ours
 * plus something in [stamp - read, stamp - sent], and the upper end is
 * taken, so that a deadline is late by at most the handshake's round
 * trip, never early.
 */
static int64_t clock_offset(int64_t sent, int64_t stamp, int64_t read)
{
        if (sent <= stamp && stamp <= read)
                return 0;
        return stamp - sent;
}

static int handshake(np_client *c)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Hello h = NETPOLL__V1__HELLO__INIT;
        Netpoll__V1__ServerMessage *w;
        struct pollfd pfd = { .fd = c->sock, .events = POLLIN };
        int r;

        h.version = NP_PROTOCOL_VERSION;
        h.name = program_invocation_short_name;
        m.hello = &h;
        int64_t sent = now_ns();
        r = wire_send(c->sock, &m, -1, 0);
        if (r < 0) {
                /* A daemon that refuses us says why before closing. */
                if (wire_recv(c->sock, c->rbuf, &c->arena, MSG_DONTWAIT, &w) > 0 && w->error)
                        return w->error;
                return r;
        }
        do
                r = poll(&pfd, 1, HANDSHAKE_TIMEOUT_MS);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ETIMEDOUT;
        r = wire_recv(c->sock, c->rbuf, &c->arena, 0, &w);
        /* A daemon that refuses us sends its reason and closes without
         * reading our hello; the kernel then reports ECONNRESET ahead of
         * the reason still queued: read once more to get it. */
        if (r == -ECONNRESET &&
            wire_recv(c->sock, c->rbuf, &c->arena, MSG_DONTWAIT, &w) > 0 && w->error)
                return w->error;
        if (r < 0)
                return r;
        if (w->error)
                return w->error < 0 ? w->error : -EPROTO;
        /* The daemon restarted between taking our hello and answering it:
         * the new instance resumes the connection as welcomed, in our
         * version (only such connections are kept), and drops what we send
         * before an OP_RESUME. */
        if (!w->welcome && w->resumed) {
                c->connection_id = w->resumed->connection_id;
                c->version = NP_PROTOCOL_VERSION;
                c->clock_offset = clock_offset(sent, w->resumed->monotonic_ns, now_ns());
                Netpoll__V1__ClientMessage rm = NETPOLL__V1__CLIENT_MESSAGE__INIT;
                Netpoll__V1__Request q = NETPOLL__V1__REQUEST__INIT;
                Netpoll__V1__Request *qs[1] = { &q };
                q.op = NETPOLL__V1__OP__OP_RESUME;
                q.quiet = true;
                rm.requests = qs;
                rm.n_requests = 1;
                return wire_send(c->sock, &rm, -1, 0);
        }
        if (!w->welcome || w->welcome->version < NP_PROTOCOL_VERSION_MIN ||
            w->welcome->version > NP_PROTOCOL_VERSION)
                return -EPROTO;
        c->version = w->welcome->version;
        c->connection_id = w->welcome->connection_id;
        c->clock_offset = clock_offset(sent, w->welcome->monotonic_ns, now_ns());
        return 0;
}

NP_EXPORT int np_connect(const char *path, np_client **ret)
{
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        pthread_condattr_t ca;
        int r;

        if (!ret)
                return -EINVAL;
        if (!path)
                path = secure_getenv("NETPOLL_SOCKET");
        if (!path || !*path)
                path = NP_DEFAULT_SOCKET;
        if (strlen(path) >= sizeof(addr.sun_path))
                return -ENAMETOOLONG;
        memcpy(addr.sun_path, path, strlen(path));

        np_client *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->sock = c->evfd = c->loop_fd = c->kick_fd = -1;
        c->events.esz = sizeof(np_event);
        c->watch.esz = sizeof(np_watch_event);
        pthread_mutex_init(&c->lock, NULL);
        pthread_mutex_init(&c->send_lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&c->cond, &ca);
        pthread_condattr_destroy(&ca);
        r = arena_init(&c->arena, ARENA_BYTES);
        if (r < 0)
                goto fail;
        c->rbuf = malloc(WIRE_MAX_MESSAGE_BYTES);
        if (!c->rbuf) {
                r = -ENOMEM;
                goto fail;
        }
        c->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (c->evfd < 0) {
                r = -errno;
                goto fail;
        }
        /* A daemon that goes away between accepting us and keeping our
         * connection (a restart, a crash it is restarted from) resets it
         * without a word: nothing was registered yet, so connect again, as
         * often as CONNECT_TRIES, a little later each time.  A daemon that
         * refuses us says why, and that is final. */
        for (int try = 1;; try++) {
                c->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
                if (c->sock < 0) {
                        r = -errno;
                        goto fail;
                }
                if (connect(c->sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                        r = -errno;
                        goto fail;
                }
                r = handshake(c);
                if (r == 0)
                        break;
                if ((r != -ECONNRESET && r != -EPIPE) || try == CONNECT_TRIES)
                        goto fail;
                c->sock = safe_close(c->sock);
                struct timespec pause = ns_to_timespec((int64_t)try * 20 * NSEC_PER_MSEC);
                nanosleep(&pause, NULL);
        }
        *ret = c;
        return 0;
fail:
        np_disconnect(c);
        return r;
}

NP_EXPORT void np_disconnect(np_client *c)
{
        if (!c)
                return;
        if (c->loop_detach) /* np_attach_event's, before its fd goes */
                c->loop_detach(c);
        safe_close(c->loop_fd);
        safe_close(c->kick_fd);
        safe_close(c->sock);
        safe_close(c->evfd);
        pthread_mutex_destroy(&c->lock);
        pthread_mutex_destroy(&c->send_lock);
        pthread_cond_destroy(&c->cond);
        arena_done(&c->arena);
        free(c->rbuf);
        free(c->events.buf);
        free(c->watch.buf);
        desctab_done(&c->descs);
        free(c);
}

/* The connection's socket, its break eventfd, and np_get_fd's epoll fd
 * and kick eventfd once made. */
static bool own_fd(np_client *c, int fd)
{
        pthread_mutex_lock(&c->lock);
        int loop_fd = c->loop_fd, kick_fd = c->kick_fd;
        pthread_mutex_unlock(&c->lock);
        return fd_same_file(fd, c->sock) || fd_same_file(fd, c->evfd) ||
               (loop_fd >= 0 && fd_same_file(fd, loop_fd)) ||
               (kick_fd >= 0 && fd_same_file(fd, kick_fd));
}

NP_EXPORT int np_open(np_client *c, int fd, uint64_t user, np_desc *ret)
{
        Netpoll__V1__Request q = NETPOLL__V1__REQUEST__INIT;
        Pending p = { 0 };
        int r;

        if (!c || !ret)
                return -EINVAL;
        if (fd < 0 || fcntl(fd, F_GETFD) < 0)
                return -EBADF;
        if (own_fd(c, fd))
                return -EINVAL;
        q.op = NETPOLL__V1__OP__OP_OPEN;
        q.user = user;
        r = request_call(c, &q, fd, &p);
        if (r < 0)
                return r;
        /* Without an entry (out of memory) calls on it are simply never
         * pipelined: the daemon stays the authority. */
        pthread_mutex_lock(&c->lock);
        (void)desctab_add(&c->descs, p.desc);
        pthread_mutex_unlock(&c->lock);
        *ret = p.desc;
        return 0;
}

NP_EXPORT int np_unblock(np_client *c, np_desc d)
{
        return simple(c, NETPOLL__V1__OP__OP_UNBLOCK, d, 0, 0);
}

NP_EXPORT int np_close(np_client *c, np_desc d)
{
        int r = simple(c, NETPOLL__V1__OP__OP_CLOSE, d, 0, 0);

        if (r == 0) {
                pthread_mutex_lock(&c->lock);
                desctab_remove(&c->descs, d);
                pthread_mutex_unlock(&c->lock);
        }
        return r;
}

NP_EXPORT int np_reset(np_client *c, np_desc d, int mode)
{
        return simple(c, NETPOLL__V1__OP__OP_RESET, d, mode, 0);
}

/* A synchronous wait: counted as outstanding while it is parked, so a
 * concurrent np_arm of the same mode is not pipelined past it. */
static int wait_op(np_client *c, Netpoll__V1__Op op, np_desc d, int mode)
{
        if (!c)
                return -EINVAL;
        outstanding_add(c, d, mode, +1);
        int r = simple(c, op, d, mode, 0);
        outstanding_add(c, d, mode, -1);
        return r;
}

NP_EXPORT int np_wait(np_client *c, np_desc d, int mode)
{
        return wait_op(c, NETPOLL__V1__OP__OP_WAIT, d, mode);
}

NP_EXPORT int np_wait_canceled(np_client *c, np_desc d, int mode)
{
        return wait_op(c, NETPOLL__V1__OP__OP_WAIT_CANCELED, d, mode);
}

/*
 * pollSetDeadline cannot fail on an open descriptor with a valid mode (it is
 * a no-op when closing), so for a descriptor this connection knows it is
 * pipelined: sent in order, with no round trip.  Otherwise the daemon
 * answers (-EBADF, -EINVAL).
 */
NP_EXPORT int np_set_deadline(np_client *c, np_desc d, int64_t ns, int mode)
{
        Netpoll__V1__Request q = NETPOLL__V1__REQUEST__INIT;
        Pending p = { 0 };

        if (!c)
                return -EINVAL;
        /* pollSetDeadline's now + ns, taken now: the time the request then
         * spends batched or in the socket does not move the deadline. */
        if (ns > 0 && (__builtin_add_overflow(now_ns(), ns, &ns) ||
                       __builtin_add_overflow(ns, c->clock_offset, &ns)))
                ns = INT64_MAX;
        q.op = NETPOLL__V1__OP__OP_SET_DEADLINE;
        q.desc = d;
        q.mode = mode;
        q.ns = ns;
        q.absolute = true;
        if ((mode_is_rw(mode) || mode == NP_RW) && desc_known(c, d))
                return request_send_quiet(c, &q);
        return request_call(c, &q, -1, &p);
}

/*
 * An arm is accepted unless the descriptor is unknown, the mode is bad, or a
 * wait of that mode is parked.  When the library knows the descriptor and
 * has no wait of that mode outstanding, none can be parked, so the arm is
 * pipelined; its outcome arrives as an event either way.  In every other
 * case the daemon decides, synchronously.
 */
NP_EXPORT int np_arm(np_client *c, np_desc d, int mode)
{
        int r;

        if (!c)
                return -EINVAL;
        uint32_t before = outstanding_add(c, d, mode, +1);
        if (before == 0) {
                Netpoll__V1__Request q = NETPOLL__V1__REQUEST__INIT;
                q.op = NETPOLL__V1__OP__OP_ARM;
                q.desc = d;
                q.mode = mode;
                r = request_send_quiet(c, &q);
        } else
                r = simple(c, NETPOLL__V1__OP__OP_ARM, d, mode, 0);
        if (r < 0) {
                outstanding_add(c, d, mode, -1);
                /* Refused after it left: no event will come for it. */
                pthread_mutex_lock(&c->lock);
                DescEntry *e = desctab_find(&c->descs, d);
                if (e && mode_is_rw(mode) && *desctab_armed(e, mode))
                        (*desctab_armed(e, mode))--;
                pthread_mutex_unlock(&c->lock);
        }
        return r;
}

NP_EXPORT int np_upgrade(np_client *c)
{
        return simple(c, NETPOLL__V1__OP__OP_UPGRADE, 0, 0, 0);
}

NP_EXPORT int np_ping(np_client *c)
{
        return simple(c, NETPOLL__V1__OP__OP_PING, 0, 0, 0);
}

NP_EXPORT int np_poll(np_client *c, int64_t delay_ns, np_event *events, int max)
{
        if (!c || max <= 0 || !events)
                return -EINVAL;
        return reader_wait_queue(c, delay_ns, &c->events, events, max, true);
}

NP_EXPORT int np_watch_read(np_client *c, int64_t delay_ns, np_watch_event *events, int max)
{
        if (!c || max <= 0 || !events)
                return -EINVAL;
        return reader_wait_queue(c, delay_ns, &c->watch, events, max, true);
}

NP_EXPORT uint64_t np_connection_id(np_client *c)
{
        return c ? c->connection_id : 0;
}

/* A list request: the reply's entries in a malloc'd array for the caller. */
static int list_call(np_client *c, Netpoll__V1__Op op, uint64_t client, void **ret, size_t *ret_n)
{
        Netpoll__V1__Request q = NETPOLL__V1__REQUEST__INIT;
        Pending p = { 0 };
        int r;

        if (!c || !ret || !ret_n)
                return -EINVAL;
        q.op = op;
        q.desc = client;
        r = request_call(c, &q, -1, &p);
        void *items = op == NETPOLL__V1__OP__OP_LIST_CLIENTS ? (void *)p.clients : (void *)p.descs;
        if (r < 0) {
                free(items);
                return r;
        }
        *ret = items;
        *ret_n = p.n_items;
        return 0;
}

NP_EXPORT int np_list_clients(np_client *c, np_client_info **ret, size_t *ret_n)
{
        return list_call(c, NETPOLL__V1__OP__OP_LIST_CLIENTS, 0, (void **)ret, ret_n);
}

NP_EXPORT int np_list_descs(np_client *c, uint64_t client, np_desc_info **ret, size_t *ret_n)
{
        return list_call(c, NETPOLL__V1__OP__OP_LIST_DESCS, client, (void **)ret, ret_n);
}

NP_EXPORT int np_watch(np_client *c, uint64_t client)
{
        return simple(c, NETPOLL__V1__OP__OP_WATCH, client, 0, 0);
}

NP_EXPORT int np_break(np_client *c)
{
        int expected = 0, saved = errno;
        uint64_t one = 1;

        if (!c)
                return -EINVAL;
        if (atomic_compare_exchange_strong(&c->break_sig, &expected, 1))
                (void)!write(c->evfd, &one, sizeof(one));
        errno = saved;
        return 0;
}

NP_EXPORT int np_is_poll_descriptor(np_client *c, int fd)
{
        Netpoll__V1__Request q = NETPOLL__V1__REQUEST__INIT;
        Pending p = { 0 };

        if (!c)
                return -EINVAL;
        if (fd < 0 || fcntl(fd, F_GETFD) < 0)
                return -EBADF;
        if (own_fd(c, fd))
                return 1;
        q.op = NETPOLL__V1__OP__OP_IS_POLL_DESCRIPTOR;
        return request_call(c, &q, fd, &p);
}

NP_EXPORT int np_session_stats(np_client *c, struct np_session_stats *ret)
{
        Netpoll__V1__Request q = NETPOLL__V1__REQUEST__INIT;
        Pending p = { 0 };
        int r;

        if (!c || !ret)
                return -EINVAL;
        q.op = NETPOLL__V1__OP__OP_SESSION_STATS;
        r = request_call(c, &q, -1, &p);
        if (r < 0)
                return r;
        *ret = p.stats;
        return 0;
}

NP_EXPORT int np_status(np_client *c, struct np_status *ret)
{
        Netpoll__V1__Request q = NETPOLL__V1__REQUEST__INIT;
        struct np_status st = { 0 };
        Pending p = { .status = &st };
        int r;

        if (!c || !ret)
                return -EINVAL;
        q.op = NETPOLL__V1__OP__OP_STATUS;
        r = request_call(c, &q, -1, &p);
        if (r < 0)
                return r;
        *ret = st;
        return 0;
}

NP_EXPORT const char *np_strerror(int code)
{
        switch (code) {
        case NP_OK:
                return "ready";
        case NP_ERR_CLOSING:
                return "descriptor is closing";
        case NP_ERR_TIMEOUT:
                return "i/o timeout";
        case NP_ERR_NOT_POLLABLE:
                return "error polling descriptor";
        }
        if (code < 0) {
                const char *s = strerrordesc_np(-code);
                if (s)
                        return s;
        }
        return "unknown error";
}
