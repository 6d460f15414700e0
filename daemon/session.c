/*
 * One client connection: its lifecycle, its input, and its descriptors'
 * readiness events.  The rest of the session module: session-out.c sends
 * what a turn queued, session-request.c runs the requests (and owns the
 * descriptors they register); session-internal.h is what the three share.
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
 * MSG_CTRUNC means the daemon was out of fds when the datagram came (the
 * control buffer holds the kernel's most, SCM_MAX_FD): its fd-taking
 * requests fail with -EMFILE and the connection lives on.
 *
 * Every descriptor a session registers is owned by it (pd.owner), so a
 * client that goes away, however it goes, has each one unregistered from
 * epoll before the daemon's copy is closed, and its waits and timers dropped:
 * session_close drops the waits and timers at once, session_drain
 * (session-request.c) the registrations and fds in batches.
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
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5; Debian 12's headers predate it */
#endif

#include "../common/cleanup.h"
#include "../common/clock.h"
#include "log.h"
#include "pollcache.h"
#include "env.h"
#include "session-internal.h"
#include "token.h"

#define RECV_BUDGET 32   /* datagrams read per wake, and */
#define OPEN_COST 16     /* units per fd-taking request */
#define GROUP_BUDGET 128 /* descriptor events taken from one connection per turn */
#define BYTES_PER_UNIT 256 /* a 64 KiB datagram is a whole budget */
#define PROTOCOL_LOG_BURST 20 /* protocol errors logged a second */

uint64_t session_token(const Session *s)
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
        /* A pidfd pins the process that connected: if it is still alive
         * after /proc/PID/comm was read, that pid was not reused meanwhile. */
        _cleanup_close_ int pidfd = -1;
        len = sizeof(pidfd);
        if (s->pid <= 0 || getsockopt(s->fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0)
                pidfd = -1; /* before Linux 6.5: the pid alone */
        char path[64], comm[16];
        snprintf(path, sizeof(path), "/proc/%d/comm", (int)s->pid);
        _cleanup_close_ int fd = s->pid > 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
        ssize_t n = fd >= 0 ? read(fd, comm, sizeof(comm)) : -1;
        if (n <= 0)
                return;
        if (pidfd >= 0 && syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0)
                return; /* gone: the name read may be another process's */
        if (comm[n - 1] == '\n')
                n--;
        memcpy(s->comm, comm, (size_t)n);
        s->comm[n] = '\0';
}

int session_new(Server *server, int fd, uint32_t index, Session **ret)
{
        Session *s = calloc(1, sizeof(*s));
        int r;

        if (!s) {
                env_close_client_fd(server, NULL, fd, false);
                return -ENOMEM;
        }
        s->server = server;
        s->index = index;
        s->fd = fd;
        s->group_fd = -1;
        s->id = ++server->next_connection_id;
        s->want_in = true;
        s->connected_ns = now_ns();
        read_peer(s);
        s->acct = accounts_get(&server->accounts, s->uid);
        r = s->acct ? poller_add(&server->poller, fd, EPOLLIN, session_token(s)) : -ENOMEM;
        if (r < 0) {
                env_close_client_fd(server, s->acct, fd, false);
                free(s);
                return r;
        }
        s->acct->connections++;
        accounts_fds(&server->accounts, s->acct, 1); /* its socket */
        /* Kept from the start: a restart before the hello is answered
         * leaves the handshake to the next instance.  A store that is
         * full costs the connection its restarts, not its service. */
        r = fdstore_conn_add(&server->store, index, server->session_gens[index], s->id, 0, "", fd);
        if (r < 0)
                log_warning("client %" PRIu64 " (pid %d, %s): not kept in the fd store (%s); "
                            "a restart will end it",
                            s->id, (int)s->pid, s->comm, strerror(-r));
        s->stored = r == 0;
        *ret = s;
        return 0;
}

int session_restore(Server *server, const StoredFd *sf, const FdStoreConn *rec, Session **ret)
{
        Session *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        s->server = server;
        s->index = sf->index;
        s->fd = sf->fd;
        s->group_fd = -1;
        s->id = rec->id;
        s->version = rec->version;
        snprintf(s->name, sizeof(s->name), "%.*s", (int)sizeof(rec->name), rec->name);
        s->greeted = rec->version != 0; /* else its hello is still to come */
        s->stored = true;
        s->resuming = s->greeted;
        s->want_in = true;
        s->connected_ns = now_ns();
        read_peer(s);
        s->acct = accounts_get(&server->accounts, s->uid);
        r = s->acct ? poller_add(&server->poller, s->fd, EPOLLIN, session_token(s)) : -ENOMEM;
        if (r < 0) {
                free(s);
                return r;
        }
        s->acct->connections++;
        accounts_fds(&server->accounts, s->acct, 1);
        *ret = s;
        return 0;
}

void session_send_resumed(Session *s)
{
        if (!s->resuming)
                return;
        size_t len = codec_encode_resumed(s->server->wbuf, s->id);
        session_send_datagram(s, s->server->wbuf, len); /* may close it */
}

static int resumed_open_cmp(const void *a, const void *b)
{
        uint64_t x = ((const ResumedOpen *)a)->req, y = ((const ResumedOpen *)b)->req;

        return x < y ? -1 : x > y;
}

void session_restore_done(Session *s)
{
        if (s->n_resumed_opens > 1)
                qsort(s->resumed_opens, s->n_resumed_opens, sizeof(ResumedOpen), resumed_open_cmp);
}

void session_free(Session *s)
{
        if (!s)
                return;
        free(s->resumed_opens);
        session_out_release_held(s);
        if (s->group_fd >= 0) {
                s->group_fd = safe_close(s->group_fd);
                accounts_fds(&s->server->accounts, s->acct, -1);
        }
        accounts_output(&s->server->accounts, s->acct, -(int64_t)s->queue_len);
        filecount_done(&s->files);
        free(s->held);
        free(s->out);
        free(s->queue);
        free(s);
}

static bool op_takes_fd(int op)
{
        return op == NETPOLL__V1__OP__OP_OPEN || op == NETPOLL__V1__OP__OP_IS_POLL_DESCRIPTOR;
}

/* Hands the fds a datagram brought and no open took over to the closer. */
static void close_fds(Session *s, int *fds, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                env_close_client_fd(s->server, s->acct, fds[i], false);
                fds[i] = -1;
        }
}

/*
 * Logs a protocol error, at most PROTOCOL_LOG_BURST a second: a client
 * that reconnects and errs in a loop must not flood the journal (a junk
 * flood made some 7,000 lines a second).  What was left out is counted in
 * one line when the next second's first error is logged; np_status counts
 * them all.
 */
static void protocol_error_log(Session *s, const char *what)
{
        static int64_t window;
        static uint32_t logged, skipped;
        int64_t now = now_ns();

        if (now - window >= NSEC_PER_SEC) {
                if (skipped)
                        log_warning("%u more protocol errors in the last second were not logged",
                                    skipped);
                window = now;
                logged = skipped = 0;
        }
        if (logged >= PROTOCOL_LOG_BURST) {
                skipped++;
                return;
        }
        logged++;
        log_warning("client %" PRIu64 " (pid %d, uid %d, %s): protocol error: %s; dropping it",
                    s->id, (int)s->pid, (int)s->uid, s->comm, what);
}

static void protocol_error(Session *s, const char *what)
{
        s->server->stats.protocol_errors++;
        protocol_error_log(s, what);
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
        if (in->version < NP_PROTOCOL_VERSION_MIN) {
                log_notice("client %" PRIu64 " (pid %d, %s): protocol version %u, want %u to %u",
                           s->id, (int)s->pid, s->comm, in->version, NP_PROTOCOL_VERSION_MIN,
                           NP_PROTOCOL_VERSION);
                send_raw(s, s->server->wbuf, codec_encode_error(s->server->wbuf, -EPROTO));
                session_close(s, NULL);
                return;
        }
        snprintf(s->name, sizeof(s->name), "%s", in->name);
        s->version = in->version < NP_PROTOCOL_VERSION ? in->version : NP_PROTOCOL_VERSION;
        /* Recorded before it is welcomed: a restart from here on resumes it
         * (the library takes a resumed notice for a welcome).  A version 1
         * library knows no resume: its connection is not kept. */
        uint32_t gen = s->server->session_gens[s->index];
        if (s->stored && s->version >= NP_PROTOCOL_VERSION_RESUME)
                fdstore_conn_greeted(&s->server->store, s->index, gen, s->version, s->name);
        else if (s->stored) {
                fdstore_conn_remove(&s->server->store, s->index, gen);
                s->stored = false;
        }
        s->greeted = true;
        send_raw(s, s->server->wbuf,
                 codec_encode_welcome(s->server->wbuf, s->version, s->server->config->max_descriptors,
                                      s->id));
        log_debug("client %" PRIu64 " (pid %d, uid %d, %s) connected as '%s'", s->id, (int)s->pid,
                  (int)s->uid, s->comm, s->name);
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
                        close_fds(s, fds, nfds);
                        protocol_error(s, "fd_index does not match the fds sent");
                        return;
                }
                used[q->fd_index] = 1;
        }
        if (!emfile && takes != nfds) {
                close_fds(s, fds, nfds);
                protocol_error(s, nfds ? "fds on a message that takes none" : "fds missing");
                return;
        }
        if (s->resuming) {
                /* Sent before the client saw the resumed notice: it sends
                 * again what still matters, after an OP_RESUME. */
                if (in->n_requests == 0 || in->requests[0].op != NETPOLL__V1__OP__OP_RESUME) {
                        s->resume_dropped++;
                        close_fds(s, fds, nfds);
                        return;
                }
                s->resuming = false;
                log_debug("client %" PRIu64 " (pid %d, %s): resumed after %" PRIu64
                          " datagrams dropped",
                          s->id, (int)s->pid, s->comm, s->resume_dropped);
        }
        s->server->ops.now = now_ns();
        s->introspected = false;
        for (size_t i = 0; i < in->n_requests && !s->broken; i++) {
                const NpRequest *q = &in->requests[i];
                int none = -1;
                s->requests++;
                s->work += op_takes_fd(q->op) ? OPEN_COST : 1;
                if (!op_takes_fd(q->op))
                        session_request_handle(s, q, &none, 0);
                else if (emfile)
                        session_request_handle(s, q, &none, -EMFILE);
                else
                        session_request_handle(s, q, &fds[q->fd_index], 0);
        }
        close_fds(s, fds, nfds); /* those no open took over */
}

void session_feed(Session *s, const uint8_t *buf, size_t len, int *fds, size_t nfds, bool emfile)
{
        Server *srv = s->server;
        Inbound in;
        int r = codec_decode(&srv->arena, buf, len, &in);

        if (r < 0) {
                arena_reset(&srv->arena);
                close_fds(s, fds, nfds);
                protocol_error(s, r == -E2BIG    ? "too many requests in one datagram"
                                  : r == -ENOMSG ? "a field this protocol version does not have"
                                                 : "undecodable datagram");
                return;
        }
        if (!s->greeted) {
                close_fds(s, fds, nfds);
                if (nfds)
                        protocol_error(s, "fds on the hello");
                else
                        session_greet(s, &in);
        } else if (in.hello) {
                close_fds(s, fds, nfds);
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

        return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
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
                                env_close_client_fd(srv, s->acct, fd, false);
                }
        }
        if (n == 0 && nfds == 0 && peer_hung_up(s->fd)) {
                session_close(s, "disconnected");
                return -1;
        }
        /* Every datagram costs its bytes (decoding is some 0.2 us per 50
         * bytes), an empty one a unit: what a turn spends on a connection
         * is bounded in time, whatever its datagrams carry. */
        s->work += 1 + (size_t)n / BYTES_PER_UNIT;
        /* Truncated fds: the buffer has room for the most one message can
         * carry (SCM_MAX_FD, 253), so the daemon was out of fds.  Probing
         * for a free fd now would not tell: the closer may have freed one
         * since. */
        bool emfile = false;
        if (mh.msg_flags & MSG_CTRUNC) {
                emfile = true;
                close_fds(s, fds, nfds);
                nfds = 0;
        }
        if (mh.msg_flags & MSG_TRUNC) {
                close_fds(s, fds, nfds);
                protocol_error(s, "datagram larger than 64 KiB");
                return -1;
        }
        session_feed(s, srv->rbuf, (size_t)n, fds, nfds, emfile);
        return s->dead ? -1 : 1;
}

/*
 * Whether s must wait before reading more: its uid holds its fd quota and
 * part of that is fds on their way to the closer.  Reading on would take
 * in up to NP_MAX_FDS_PER_MESSAGE more fds a datagram, only to refuse
 * them and queue them for the closer too, so a uid that churns could make
 * the daemon hold far past its quota.  Registered descriptors alone never
 * hold a connection (it must be able to close them).
 */
static bool session_over_quota(const Session *s)
{
        return atomic_load(&s->acct->fds) >= s->server->fd_limit_uid &&
               atomic_load(&s->acct->closing_fds) > 0;
}

bool session_quota_release(Server *srv)
{
        for (Session **pp = &srv->held; *pp;) {
                Session *s = *pp;
                if (!s->dead && session_over_quota(s)) {
                        pp = &s->next_held;
                        continue;
                }
                *pp = s->next_held;
                s->next_held = NULL;
                s->quota_held = false;
                if (!s->dead)
                        session_update_input(s);
        }
        return srv->held != NULL;
}

void session_dispatch(Session *s, uint32_t events)
{
        if (events & EPOLLOUT) {
                if (session_out_drain(s) < 0)
                        return;
        }
        if (!s->want_in) {
                /* A listing holds its input back (admin-descs.c); the
                 * client hanging up meanwhile is the end of it. */
                if (events & (EPOLLHUP | EPOLLERR))
                        session_close(s, "disconnected");
                return;
        }
        if (session_over_quota(s) && !(events & (EPOLLHUP | EPOLLERR))) {
                s->quota_held = true;
                s->next_held = s->server->held;
                s->server->held = s;
                session_update_input(s);
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
                        pollops_ready(&srv->ops, &slot->pd, poller_event_mode(evs[i].events),
                                      poller_event_err(evs[i].events));
        }
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
        srv->hooks->session_ending(s);
        if (srv->n_watchers && s->greeted)
                srv->hooks->watch(srv, NETPOLL__V1__WATCH_KIND__WATCH_DISCONNECT, s, 0, 0);
        if (s->quota_held)
                for (Session **pp = &srv->held; *pp; pp = &(*pp)->next_held)
                        if (*pp == s) {
                                *pp = s->next_held;
                                break;
                        }
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
        if (s->stored)
                fdstore_conn_remove(&srv->store, s->index, srv->session_gens[s->index]);
        poller_del(&srv->poller, s->fd);
        /* Datagrams it did not read may carry fds: the closer closes it,
         * perhaps behind other closes of its uid; the client sees the end
         * at once. */
        (void)shutdown(s->fd, SHUT_RDWR);
        env_close_client_fd(srv, s->acct, s->fd, true);
        s->fd = -1;
        s->acct->connections--;
        poller_group_detach(&srv->poller, s->group_fd); /* closed once drained */
        s->n_out = 0;
        s->owner.waiters = 0;
        s->next_dead = srv->dead;
        srv->dead = s;
        env_retire(srv, s->index);
}
