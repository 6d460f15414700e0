/*
 * One client connection.
 *
 * Input: up to RECV_BUDGET datagrams or WORK_BUDGET units of work per wake
 * (a request is one unit, one that takes an fd OPEN_COST: its fstat and
 * epoll_ctl cost about that much more than decoding an arm).  The socket is
 * level-triggered, so the rest waits for the next turn and other clients
 * are served in between; a datagram is never split, so one turn takes at
 * most the budget plus one datagram.  A datagram is received with MSG_CMSG_CLOEXEC into a
 * control buffer sized for the per-message fd cap; its fds are bound to
 * requests by fd_index.  A datagram that is oversized, undecodable, sent
 * before the hello, or whose fds do not match its requests one to one is a
 * protocol error: every fd it carried is closed and the client dropped.
 * MSG_CTRUNC is a protocol error too, unless the daemon itself is out of
 * fds, in which case the fd-taking requests of that datagram fail with
 * -EMFILE and the connection lives on.
 *
 * Output: replies and events are appended to s->out during the turn and
 * packed into datagrams by session_flush().  What the socket does not take
 * is kept, packed, in s->queue (bounded by max_output_bytes; a client that
 * lets it overflow is dropped) and EPOLLOUT is requested.  A wake's waiter
 * count is dropped only once the datagram carrying it has been sent
 * (golang/go#60782).
 *
 * Every descriptor a session registers is owned by it (pd.owner), so a
 * client that goes away, however it goes, has each one unregistered from
 * epoll before the daemon's copy is closed, and its waits and timers dropped.
 */
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/clock.h"
#include "../common/fdutil.h"
#include "admin.h"
#include "log.h"
#include "pollcache.h"
#include "server.h"
#include "token.h"

#define RECV_BUDGET 32   /* datagrams read per wake, and */
#define WORK_BUDGET 1024 /* units of work (about 0.2 us each): then others get a turn */
#define OPEN_COST 16     /* units per fd-taking request */
#define DESC_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)
#define GROUP_BUDGET 128 /* descriptor events taken from one connection per turn */

/* Queued datagram header in s->queue: length and number of wakes in it. */
typedef struct QueuedHeader {
        uint32_t len;
        uint32_t wakes;
} QueuedHeader;

static uint64_t session_token(const Session *s)
{
        return token_make(TOKEN_SESSION, s->index, s->server->session_gens[s->index]);
}

static void read_peer(Session *s)
{
        struct ucred cred;
        socklen_t len = sizeof(cred);

        s->pid = 0;
        s->uid = (uid_t)-1;
        s->gid = (gid_t)-1;
        if (getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
                s->pid = cred.pid;
                s->uid = cred.uid;
                s->gid = cred.gid;
        }
        snprintf(s->comm, sizeof(s->comm), "?");
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/comm", (int)s->pid);
        _cleanup_close_ int fd = s->pid > 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
        if (fd >= 0) {
                ssize_t n = read(fd, s->comm, sizeof(s->comm) - 1);
                if (n > 0) {
                        s->comm[n] = '\0';
                        s->comm[strcspn(s->comm, "\n")] = '\0';
                }
        }
}

int session_new(Server *server, int fd, uint32_t index, Session **ret)
{
        Session *s = calloc(1, sizeof(*s));
        int r;

        if (!s) {
                safe_close(fd);
                return -ENOMEM;
        }
        s->server = server;
        s->index = index;
        s->fd = fd;
        s->group_fd = -1;
        s->id = ++server->next_connection_id;
        s->connected_ns = now_ns();
        read_peer(s);
        r = poller_add(&server->poller, fd, EPOLLIN, session_token(s));
        if (r < 0) {
                safe_close(fd);
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

void session_hold(Session *s, void *p)
{
        if (s->n_held == s->cap_held) {
                size_t cap = s->cap_held ? s->cap_held * 2 : 8;
                void **held = realloc(s->held, cap * sizeof(*held));
                if (!held) {
                        free(p);
                        s->broken = true;
                        return;
                }
                s->held = held;
                s->cap_held = cap;
        }
        s->held[s->n_held++] = p;
}

static void session_release_held(Session *s)
{
        for (size_t i = 0; i < s->n_held; i++)
                free(s->held[i]);
        s->n_held = 0;
}

void session_free(Session *s)
{
        if (!s)
                return;
        session_release_held(s);
        safe_close(s->group_fd);
        free(s->held);
        free(s->out);
        free(s->queue);
        free(s);
}

/*
 * Queues a reply or event.  On allocation failure the session is marked
 * broken and closed at flush time, not here: this runs inside pollops
 * callbacks, which must not see their descriptor freed under them.
 */
void session_push(Session *s, const Outbound *o)
{
        server_mark_dirty(s->server, s);
        if (s->n_out == s->cap_out) {
                size_t cap = s->cap_out ? s->cap_out * 2 : 64;
                Outbound *out = realloc(s->out, cap * sizeof(*out));
                if (!out) {
                        s->broken = true;
                        return;
                }
                s->out = out;
                s->cap_out = cap;
        }
        s->out[s->n_out++] = *o;
}

static void reply(Session *s, const NpRequest *q, int32_t result)
{
        if (q->quiet) {
                if (result < 0)
                        s->quiet_errors++;
                return;
        }
        session_push(s, &(Outbound){ .kind = OUT_REPLY, .id = q->id, .result = result });
}

void session_wake(PollOps *ops, PollDesc *pd, int mode, PollSem waiter, int result)
{
        Session *s = container_of(pd->owner, Session, owner);
        PollSlot *slot = container_of(pd, PollSlot, pd);
        Outbound o = { .wake = true, .result = result };

        (void)ops;
        if (result == POLL_NO_ERROR)
                s->server->stats.events++;
        else if (result == POLL_ERR_TIMEOUT)
                s->server->stats.timeouts++;
        if (s->server->n_watchers) {
                int kind = result == POLL_NO_ERROR    ? NETPOLL__V1__WATCH_KIND__WATCH_READY
                           : result == POLL_ERR_TIMEOUT ? NETPOLL__V1__WATCH_KIND__WATCH_TIMEOUT
                           : result == POLL_ERR_CLOSING ? NETPOLL__V1__WATCH_KIND__WATCH_CLOSING
                                                        : NETPOLL__V1__WATCH_KIND__WATCH_READY;
                admin_watch(s->server, kind, s, pollcache_token(slot), mode);
        }
        if (waiter.kind == POLL_WAIT_ARM) {
                o.kind = OUT_EVENT;
                o.desc = pollcache_token(slot);
                o.user = pd->user;
                o.mode = mode;
        } else {
                o.kind = OUT_REPLY;
                o.id = waiter.req;
        }
        session_push(s, &o);
}

/* The caller's descriptor, or NULL if the id is not one of this session's. */
static PollSlot *session_desc(Session *s, uint64_t desc)
{
        PollSlot *slot = pollcache_lookup(&s->server->cache, desc);

        return slot && slot->pd.owner == &s->owner ? slot : NULL;
}

/*
 * Registers fd (borrowed) with token in the connection's epoll set, made on
 * first use (a connection that registers nothing costs no fd for it; one
 * made for an open that then fails is dropped again).  Nesting has limits
 * flat sets do not: one file may sit in at most 500 nested sets (dup'd fds
 * count apiece), and epoll fds nest only so deep (EINVAL, ELOOP).  Such a
 * descriptor goes to the main set: served, without the per-connection
 * budget.  0 or -errno (EPERM: regular files and directories, not pollable).
 */
static int desc_register(Session *s, int fd, uint64_t token)
{
        Server *srv = s->server;
        bool made = false;
        int r;

        if (s->group_fd < 0) {
                r = poller_group_open(&srv->poller,
                                      token_make(TOKEN_GROUP, s->index, srv->session_gens[s->index]));
                if (r < 0)
                        return r;
                s->group_fd = r;
                made = true;
        }
        r = poller_group_add(s->group_fd, fd, DESC_EVENTS, token);
        if (r == -EINVAL || r == -ELOOP)
                r = poller_add(&srv->poller, fd, DESC_EVENTS, token);
        if (r < 0 && made) {
                poller_group_detach(&srv->poller, s->group_fd);
                s->group_fd = safe_close(s->group_fd);
        }
        return r;
}

static void desc_unregister(Session *s, int fd)
{
        if (poller_group_del(s->group_fd, fd) < 0)
                (void)poller_del(&s->server->poller, fd); /* it went to the main set */
}

/* Unregisters, closes the daemon's copy and frees the slot. */
static void desc_destroy(Session *s, PollSlot *slot)
{
        Server *srv = s->server;

        desc_unregister(s, slot->pd.fd);
        safe_close(slot->pd.fd);
        pollcache_free(&srv->cache, slot);
}

static int op_open(Session *s, const NpRequest *q, int fd, uint64_t *ret_desc)
{
        Server *srv = s->server;
        PollSlot *slot;
        int r;

        if (s->owner.descriptors >= srv->config->max_descriptors)
                return -EDQUOT;
        if (server_owns_file(srv, fd))
                return -EINVAL;
        r = pollcache_alloc(&srv->cache, &slot);
        if (r < 0)
                return r == -ENOSPC ? -EMFILE : r;
        r = timers_reserve(&srv->timers, 2 * pollcache_allocated(&srv->cache));
        if (r < 0) {
                pollcache_free(&srv->cache, slot);
                return r;
        }
        pollops_open(&srv->ops, &slot->pd, &s->owner, fd, q->user);
        r = desc_register(s, fd, pollcache_token(slot));
        if (r < 0) {
                /* The fd stays the caller's to close. */
                pollops_release(&srv->ops, &slot->pd);
                pollcache_free(&srv->cache, slot);
                return r;
        }
        *ret_desc = pollcache_token(slot);
        if (srv->n_watchers)
                admin_watch(srv, NETPOLL__V1__WATCH_KIND__WATCH_OPEN, s, *ret_desc, 0);
        return 0;
}

static int op_close(Session *s, PollSlot *slot)
{
        int r = pollops_close(&s->server->ops, &slot->pd);

        if (r < 0)
                return r;
        if (s->server->n_watchers)
                admin_watch(s->server, NETPOLL__V1__WATCH_KIND__WATCH_CLOSE, s,
                            pollcache_token(slot), 0);
        desc_destroy(s, slot);
        return 0;
}

static bool op_takes_fd(int op)
{
        return op == NETPOLL__V1__OP__OP_OPEN || op == NETPOLL__V1__OP__OP_IS_POLL_DESCRIPTOR;
}

/* Runs one request.  fd is the fd bound to it (consumed on a successful
 * open: *fd is then -1), or -1. */
static void session_handle(Session *s, const NpRequest *q, int *fd, int fd_error)
{
        Server *srv = s->server;
        PollOps *ops = &srv->ops;
        PollSlot *slot = NULL;
        int r;

        s->requests++;
        s->work += op_takes_fd(q->op) ? OPEN_COST : 1;
        switch (q->op) {
        case NETPOLL__V1__OP__OP_OPEN: {
                uint64_t desc = 0;
                r = fd_error ? fd_error : op_open(s, q, *fd, &desc);
                if (r == 0)
                        *fd = -1; /* the slot owns it now */
                session_push(s, &(Outbound){ .kind = OUT_REPLY, .id = q->id, .result = r,
                                         .desc = desc });
                return;
        }
        case NETPOLL__V1__OP__OP_IS_POLL_DESCRIPTOR:
                reply(s, q, fd_error ? fd_error : server_owns_file(srv, *fd));
                return;
        case NETPOLL__V1__OP__OP_PING:
                reply(s, q, 0);
                return;
        case NETPOLL__V1__OP__OP_SESSION_STATS:
                session_push(s, &(Outbound){ .kind = OUT_REPLY,
                                         .id = q->id,
                                         .has_session = true,
                                         .descriptors = s->owner.descriptors,
                                         .waiters = s->owner.waiters,
                                         .timers = s->owner.timers });
                return;
        case NETPOLL__V1__OP__OP_STATUS:
        case NETPOLL__V1__OP__OP_LIST_CLIENTS:
        case NETPOLL__V1__OP__OP_LIST_DESCS:
        case NETPOLL__V1__OP__OP_WATCH:
                admin_handle(s, q);
                return;
        case NETPOLL__V1__OP__OP_CLOSE:
        case NETPOLL__V1__OP__OP_UNBLOCK:
        case NETPOLL__V1__OP__OP_RESET:
        case NETPOLL__V1__OP__OP_WAIT:
        case NETPOLL__V1__OP__OP_WAIT_CANCELED:
        case NETPOLL__V1__OP__OP_ARM:
        case NETPOLL__V1__OP__OP_SET_DEADLINE:
                slot = session_desc(s, q->desc);
                if (!slot) {
                        reply(s, q, -EBADF);
                        return;
                }
                break;
        default:
                reply(s, q, -EOPNOTSUPP);
                return;
        }

        PollDesc *pd = &slot->pd;
        switch (q->op) {
        case NETPOLL__V1__OP__OP_CLOSE:
                reply(s, q, op_close(s, slot));
                return;
        case NETPOLL__V1__OP__OP_UNBLOCK:
                reply(s, q, pollops_unblock(ops, pd));
                return;
        case NETPOLL__V1__OP__OP_RESET:
                reply(s, q, pollops_reset(ops, pd, q->mode));
                return;
        case NETPOLL__V1__OP__OP_SET_DEADLINE:
                reply(s, q, q->absolute ? pollops_set_deadline_at(ops, pd, q->ns, q->mode)
                                        : pollops_set_deadline(ops, pd, q->ns, q->mode));
                return;
        case NETPOLL__V1__OP__OP_WAIT:
        case NETPOLL__V1__OP__OP_WAIT_CANCELED:
                r = pollops_wait(ops, pd, q->mode,
                                 q->op == NETPOLL__V1__OP__OP_WAIT ? POLL_WAIT : POLL_WAIT_CANCELED,
                                 q->id);
                if (r != POLL_PARKED)
                        reply(s, q, r);
                return;
        case NETPOLL__V1__OP__OP_ARM:
                r = pollops_wait(ops, pd, q->mode, POLL_WAIT_ARM, q->id);
                reply(s, q, r < 0 ? r : 0);
                if (r >= 0 && r != POLL_PARKED)
                        session_push(s, &(Outbound){ .kind = OUT_EVENT, .desc = q->desc,
                                                 .user = pd->user, .mode = q->mode,
                                                 .result = r });
                return;
        }
}

static void close_fds(int *fds, size_t n)
{
        for (size_t i = 0; i < n; i++)
                fds[i] = safe_close(fds[i]);
}

static void protocol_error(Session *s, const char *what)
{
        s->server->stats.protocol_errors++;
        log_warning("client %" PRIu64 " (pid %d, %s): protocol error: %s; dropping it", s->id,
                    (int)s->pid, s->comm, what);
        session_close(s, NULL);
}

static void send_raw(Session *s, const uint8_t *buf, size_t len)
{
        /* Handshake replies: the socket is empty then, so this cannot block
         * or come up short; an error ends the connection as any would. */
        (void)!send(s->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void session_greet(Session *s, const Inbound *in)
{
        if (!in->hello || in->n_requests > 0) {
                protocol_error(s, "first message is not a hello");
                return;
        }
        if (in->version != NP_PROTOCOL_VERSION) {
                log_notice("client %" PRIu64 " (pid %d, %s): protocol version %u, want %u", s->id,
                           (int)s->pid, s->comm, in->version, NP_PROTOCOL_VERSION);
                send_raw(s, s->server->wbuf, codec_encode_error(s->server->wbuf, -EPROTO));
                session_close(s, NULL);
                return;
        }
        snprintf(s->name, sizeof(s->name), "%s", in->name);
        s->greeted = true;
        send_raw(s, s->server->wbuf,
                 codec_encode_welcome(s->server->wbuf, s->server->config->max_descriptors, s->id));
        log_debug("client %" PRIu64 " (pid %d, uid %d, %s) connected as '%s'", s->id, (int)s->pid,
                  (int)s->uid, s->comm, s->name);
}

/* Whether the daemon has no fd to spare (it cannot take passed fds). */
static bool out_of_fds(void)
{
        int probe = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);

        if (probe >= 0) {
                close(probe);
                return false;
        }
        return errno == EMFILE || errno == ENFILE;
}

/* Binds the fds of a datagram to its requests and runs them. */
static void session_process(Session *s, const Inbound *in, int *fds, size_t nfds, bool emfile)
{
        size_t takes = 0;
        uint8_t used[NP_MAX_FDS_PER_MESSAGE] = { 0 };

        for (size_t i = 0; i < in->n_requests; i++) {
                const NpRequest *q = &in->requests[i];
                if (!op_takes_fd(q->op))
                        continue;
                takes++;
                if (emfile)
                        continue;
                if (q->fd_index < 0 || (size_t)q->fd_index >= nfds || used[q->fd_index]) {
                        close_fds(fds, nfds);
                        protocol_error(s, "fd_index does not match the fds sent");
                        return;
                }
                used[q->fd_index] = 1;
        }
        if (!emfile && takes != nfds) {
                close_fds(fds, nfds);
                protocol_error(s, nfds ? "fds on a message that takes none" : "fds missing");
                return;
        }
        s->server->ops.now = now_ns();
        for (size_t i = 0; i < in->n_requests && !s->broken; i++) {
                const NpRequest *q = &in->requests[i];
                int none = -1;
                if (!op_takes_fd(q->op))
                        session_handle(s, q, &none, 0);
                else if (emfile)
                        session_handle(s, q, &none, -EMFILE);
                else
                        session_handle(s, q, &fds[q->fd_index], 0);
        }
        close_fds(fds, nfds); /* those no open took over */
}

void session_feed(Session *s, const uint8_t *buf, size_t len, int *fds, size_t nfds, bool emfile)
{
        Server *srv = s->server;
        Inbound in;
        int r = codec_decode(&srv->arena, buf, len, &in);

        if (r < 0) {
                arena_reset(&srv->arena);
                close_fds(fds, nfds);
                protocol_error(s, r == -E2BIG ? "too many requests in one datagram"
                                              : "undecodable datagram");
                return;
        }
        if (!s->greeted) {
                close_fds(fds, nfds);
                if (nfds)
                        protocol_error(s, "fds on the hello");
                else
                        session_greet(s, &in);
        } else if (in.hello) {
                close_fds(fds, nfds);
                protocol_error(s, "second hello");
        } else
                session_process(s, &in, fds, nfds, emfile);
        arena_reset(&srv->arena);
}

/* A zero-length read is end of file, or an empty datagram from a peer still
 * connected (an empty message: decoded and handled like any other).  Only
 * asked on that rare path. */
static bool peer_hung_up(int fd)
{
        struct pollfd p = { .fd = fd, .events = POLLRDHUP };
        int r = poll(&p, 1, 0);

        return r < 0 || (r == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)));
}

/* Receives and handles one datagram.  Returns 1 if one was handled, 0 when
 * the socket is empty, -1 when the session ended. */
static int session_recv_one(Session *s)
{
        Server *srv = s->server;
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(sizeof(int) * NP_MAX_FDS_PER_MESSAGE)];
        } control;
        struct iovec iov = { .iov_base = srv->rbuf, .iov_len = NP_MAX_MESSAGE_BYTES };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = sizeof(control),
        };
        int fds[NP_MAX_FDS_PER_MESSAGE];
        size_t nfds = 0;

        ssize_t n = recvmsg(s->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                session_close(s, "receive failed");
                return -1;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                        int fd;
                        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        if (nfds < NP_MAX_FDS_PER_MESSAGE)
                                fds[nfds++] = fd;
                        else
                                safe_close(fd);
                }
        }
        if (n == 0 && nfds == 0 && peer_hung_up(s->fd)) {
                session_close(s, "disconnected");
                return -1;
        }
        bool emfile = false;
        if (mh.msg_flags & MSG_CTRUNC) {
                emfile = out_of_fds();
                close_fds(fds, nfds);
                nfds = 0;
                if (!emfile) {
                        protocol_error(s, "truncated SCM_RIGHTS (MSG_CTRUNC)");
                        return -1;
                }
        }
        if (mh.msg_flags & MSG_TRUNC) {
                close_fds(fds, nfds);
                protocol_error(s, "datagram larger than 64 KiB");
                return -1;
        }
        session_feed(s, srv->rbuf, (size_t)n, fds, nfds, emfile);
        return s->dead ? -1 : 1;
}

/* Sends one packed datagram; returns 1 sent, 0 the socket is full, -1 the
 * session ended. */
static int session_send(Session *s, const uint8_t *buf, size_t len)
{
        if (send(s->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
                return 1;
        if (errno == EAGAIN || errno == ENOBUFS)
                return 0;
        session_close(s, "send failed");
        return -1;
}

static int queue_push(Session *s, const uint8_t *buf, size_t len, uint32_t wakes)
{
        size_t need = s->queue_len + sizeof(QueuedHeader) + len;

        if (need > s->server->config->max_output_bytes) {
                log_warning("client %" PRIu64 " (pid %d, %s) does not read its replies: "
                            "%zu bytes queued; dropping it",
                            s->id, (int)s->pid, s->comm, s->queue_len);
                session_close(s, NULL);
                return -1;
        }
        if (need > s->queue_cap) {
                size_t cap = s->queue_cap ? s->queue_cap : 4096;
                while (cap < need)
                        cap *= 2;
                uint8_t *q = realloc(s->queue, cap);
                if (!q) {
                        session_close(s, "out of memory");
                        return -1;
                }
                s->queue = q;
                s->queue_cap = cap;
        }
        QueuedHeader h = { .len = (uint32_t)len, .wakes = wakes };
        memcpy(s->queue + s->queue_len, &h, sizeof(h));
        memcpy(s->queue + s->queue_len + sizeof(h), buf, len);
        s->queue_len = need;
        return 0;
}

static void set_want_out(Session *s, bool on)
{
        if (s->want_out == on)
                return;
        if (poller_mod(&s->server->poller, s->fd, EPOLLIN | (on ? EPOLLOUT : 0),
                       session_token(s)) == 0)
                s->want_out = on;
}

/* Sends queued datagrams in order.  Returns 1 when the queue is empty, 0
 * when the socket is full again, -1 when the session ended. */
static int queue_drain(Session *s)
{
        size_t off = 0;
        int r = 1;

        while (off < s->queue_len) {
                QueuedHeader h;
                memcpy(&h, s->queue + off, sizeof(h));
                r = session_send(s, s->queue + off + sizeof(h), h.len);
                if (r <= 0)
                        break;
                s->owner.waiters -= h.wakes;
                off += sizeof(h) + h.len;
        }
        if (r < 0)
                return -1;
        memmove(s->queue, s->queue + off, s->queue_len - off);
        s->queue_len -= off;
        set_want_out(s, s->queue_len > 0);
        return s->queue_len == 0;
}

void session_flush(Session *s)
{
        Server *srv = s->server;
        size_t done = 0;

        if (s->dead)
                return;
        if (s->broken) {
                log_warning("client %" PRIu64 " (pid %d, %s): out of memory; dropping it", s->id,
                            (int)s->pid, s->comm);
                session_close(s, NULL);
                return;
        }
        bool blocked = s->queue_len > 0 && queue_drain(s) <= 0;
        if (s->dead)
                return;
        while (done < s->n_out) {
                size_t used;
                size_t len = codec_encode(s->out + done, s->n_out - done, srv->wbuf,
                                          NP_MAX_MESSAGE_BYTES, &used);
                uint32_t wakes = 0;
                for (size_t i = done; i < done + used; i++)
                        wakes += s->out[i].wake;
                done += used;
                int r = blocked ? 0 : session_send(s, srv->wbuf, len);
                if (r < 0)
                        return;
                if (r > 0) {
                        s->owner.waiters -= wakes;
                        continue;
                }
                blocked = true;
                if (queue_push(s, srv->wbuf, len, wakes) < 0)
                        return;
        }
        s->n_out = 0;
        session_release_held(s);
        if (blocked)
                set_want_out(s, true);
}

void session_dispatch(Session *s, uint32_t events)
{
        if (events & EPOLLOUT) {
                if (queue_drain(s) < 0)
                        return;
        }
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                uint64_t start = s->work;
                for (int i = 0; i < RECV_BUDGET && !s->broken && s->work - start < WORK_BUDGET;
                     i++)
                        if (session_recv_one(s) <= 0)
                                break;
        }
}

void session_take_events(Session *s)
{
        struct epoll_event evs[GROUP_BUDGET];
        Server *srv = s->server;
        int n = poller_group_take(s->group_fd, evs, GROUP_BUDGET);

        for (int i = 0; i < n; i++) {
                PollSlot *slot = pollcache_lookup(&srv->cache, evs[i].data.u64);
                if (slot) /* else: stale, the descriptor was closed */
                        pollops_ready(&srv->ops, &slot->pd, evs[i].events);
        }
}

uint32_t session_drain(Session *s, uint32_t budget)
{
        PollCache *c = &s->server->cache;
        uint32_t done = 0;

        for (PollSlot *slot; s->draining && done < budget &&
                             (slot = pollcache_next_owned(c, &s->owner, &s->drain_iter));) {
                desc_destroy(s, slot);
                s->draining--;
                done++;
        }
        return done;
}

void session_unblock_all(Session *s)
{
        uint32_t iter = 0;

        for (PollSlot *slot; (slot = pollcache_next_owned(&s->server->cache, &s->owner, &iter));)
                if (!slot->pd.closing)
                        pollops_unblock(&s->server->ops, &slot->pd);
}

void session_close(Session *s, const char *why)
{
        Server *srv = s->server;
        PollCache *c = &srv->cache;

        if (s->dead)
                return;
        if (s->watching) {
                s->watching = false;
                srv->n_watchers--;
        }
        if (srv->n_watchers && s->greeted)
                admin_watch(srv, NETPOLL__V1__WATCH_KIND__WATCH_DISCONNECT, s, 0, 0);
        s->dead = true;
        if (why)
                log_debug("client %" PRIu64 " (pid %d, %s): %s", s->id, (int)s->pid, s->comm,
                          why);
        /* Waits and timers go at once (cheap, and nothing may fire for a
         * connection that is gone); the epoll DEL and close of each fd, two
         * system calls apiece, are left to session_drain in batches, so a
         * client with thousands of descriptors cannot stall the loop.  A
         * walk of the whole cache, but only on disconnect: it saves every
         * descriptor the links an owner list would cost. */
        uint32_t iter = 0;
        for (PollSlot *slot; s->owner.descriptors && (slot = pollcache_next_owned(c, &s->owner, &iter));) {
                pollops_release(&srv->ops, &slot->pd);
                s->draining++;
        }
        poller_del(&srv->poller, s->fd);
        s->fd = safe_close(s->fd);
        poller_group_detach(&srv->poller, s->group_fd); /* closed once drained */
        s->n_out = 0;
        s->owner.waiters = 0;
        s->next_dead = srv->dead;
        srv->dead = s;
        /* Frees the token: later events for this connection are stale. */
        srv->session_gens[s->index] += 2;
        srv->sessions[s->index] = NULL;
        srv->n_sessions--;
}
