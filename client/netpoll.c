/*
 * libnetpoll: one connection to netpolld, shared by any number of threads.
 *
 * Requests are sent under send_lock, so one thread's calls reach the daemon
 * in the order they were made.  Replies are matched to the calling thread
 * by request id.  Reading is a role, not a thread: whichever waiting thread
 * finds nobody reading becomes the reader, polls the socket (and the break
 * eventfd), decodes what arrives, hands each reply to its caller and queues
 * each event for np_poll, then gives the role up and wakes the others, one
 * of which takes it over if it is still waiting.  So a thread parked in
 * np_wait never delays another thread's call, and no thread of our own is
 * started behind the caller's back.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/clock.h"
#include "../common/fdutil.h"
#include "desctab.h"
#include "wire.h"

#define NP_EXPORT __attribute__((visibility("default")))
#define ARENA_BYTES (1024 * 1024)
#define HANDSHAKE_TIMEOUT_MS 5000
#define BATCH_MAX 256 /* pipelined requests held before a flush */

/* A FIFO of fixed-size items (events for np_poll, watch events). */
typedef struct Ring {
        unsigned char *buf;
        size_t esz, head, len, cap;
} Ring;

typedef struct Pending {
        uint64_t id;
        bool done;
        int result;
        uint64_t desc;
        struct np_session_stats stats;
        struct np_status *status;
        np_client_info *clients; /* lists, accumulated over `more` replies */
        np_desc_info *descs;
        size_t n_items, cap_items;
        struct Pending *next;
} Pending;

struct np_client {
        int sock;
        int evfd;
        atomic_int break_sig;
        atomic_int inside; /* threads waiting (or about to) in the library */

        pthread_mutex_t send_lock; /* protects the socket's send side and: */
        Netpoll__V1__Request batch[BATCH_MAX]; /* pipelined, not yet sent */
        size_t n_batch;

        pthread_mutex_t lock; /* protects everything below */
        pthread_cond_t cond;
        bool reading;
        bool dead;
        bool break_pending;
        uint64_t next_id;
        Pending *pending;
        DescTable descs; /* what this connection has open: enables pipelining */
        Ring events;     /* np_event, for np_poll */
        Ring watch;      /* np_watch_event, for np_watch_read */
        uint64_t connection_id;
        int64_t clock_offset; /* daemon's CLOCK_MONOTONIC minus ours (time namespaces) */

        Arena arena; /* the reader's */
        uint8_t *rbuf;
};

static int64_t deadline_after(int64_t delay)
{
        int64_t d;

        return __builtin_add_overflow(now_ns(), delay, &d) ? INT64_MAX : d;
}

static void pending_remove(np_client *c, Pending *p)
{
        for (Pending **pp = &c->pending; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        return;
                }
}

static int ring_push(Ring *r, const void *item)
{
        if (r->len == r->cap) {
                size_t cap = r->cap ? r->cap * 2 : 64;
                unsigned char *buf = malloc(cap * r->esz);
                if (!buf)
                        return -ENOMEM;
                for (size_t i = 0; i < r->len; i++)
                        memcpy(buf + i * r->esz, r->buf + ((r->head + i) % r->cap) * r->esz,
                               r->esz);
                free(r->buf);
                r->buf = buf;
                r->cap = cap;
                r->head = 0;
        }
        memcpy(r->buf + ((r->head + r->len++) % r->cap) * r->esz, item, r->esz);
        return 0;
}

/* Moves up to max items into out; returns how many. */
static int ring_pop(Ring *r, void *out, int max)
{
        int n = 0;

        while (n < max && r->len > 0) {
                memcpy((unsigned char *)out + (size_t)n * r->esz, r->buf + r->head * r->esz,
                       r->esz);
                r->head = (r->head + 1) % r->cap;
                r->len--;
                n++;
        }
        return n;
}

/* Appends the list entries of a reply to the pending call's array. */
static int pending_append(Pending *p, const Netpoll__V1__Reply *r)
{
        size_t add = r->n_clients + r->n_descs;
        size_t esz = r->n_clients ? sizeof(np_client_info) : sizeof(np_desc_info);
        void **arr = r->n_clients ? (void **)&p->clients : (void **)&p->descs;

        if (add == 0)
                return 0;
        if (p->n_items + add > p->cap_items) {
                size_t cap = p->cap_items ? p->cap_items : 64;
                while (cap < p->n_items + add)
                        cap *= 2;
                void *a = realloc(*arr, cap * esz);
                if (!a)
                        return -ENOMEM;
                *arr = a;
                p->cap_items = cap;
        }
        for (size_t i = 0; i < r->n_clients; i++) {
                const Netpoll__V1__ClientInfo *ci = r->clients[i];
                np_client_info *o = &p->clients[p->n_items++];
                *o = (np_client_info){
                        .id = ci->id, .pid = ci->pid, .uid = ci->uid, .gid = ci->gid,
                        .descriptors = ci->descriptors, .waiters = ci->waiters,
                        .timers = ci->timers, .queued_bytes = ci->queued_bytes,
                        .connected_ns = ci->connected_ns, .requests = ci->requests,
                        .self = ci->self,
                };
                snprintf(o->comm, sizeof(o->comm), "%s", ci->comm ? ci->comm : "");
                snprintf(o->name, sizeof(o->name), "%s", ci->name ? ci->name : "");
        }
        for (size_t i = 0; i < r->n_descs; i++) {
                const Netpoll__V1__DescInfo *di = r->descs[i];
                np_desc_info *o = &p->descs[p->n_items++];
                *o = (np_desc_info){
                        .client = di->client, .desc = di->desc, .user = di->user,
                        .read = di->read, .write = di->write,
                        .read_deadline_ns = di->read_deadline_ns,
                        .write_deadline_ns = di->write_deadline_ns,
                        .event_err = di->event_err,
                };
                snprintf(o->type, sizeof(o->type), "%s", di->type ? di->type : "");
        }
        return 0;
}

/* Hands a decoded datagram's replies to their callers and queues its
 * events.  Called with c->lock held. */
static void apply(np_client *c, const Netpoll__V1__ServerMessage *m)
{
        if (m->error) {
                c->dead = true;
                return;
        }
        for (size_t i = 0; i < m->n_replies; i++) {
                const Netpoll__V1__Reply *r = m->replies[i];
                for (Pending *p = c->pending; p; p = p->next) {
                        if (p->id != r->id || p->done)
                                continue;
                        if (pending_append(p, r) < 0)
                                p->result = -ENOMEM;
                        if (r->more)
                                break; /* the list goes on */
                        p->done = true;
                        if (p->result == 0)
                                p->result = r->result;
                        p->desc = r->desc;
                        if (r->session)
                                p->stats = (struct np_session_stats){
                                        .descriptors = r->session->descriptors,
                                        .waiters = r->session->waiters,
                                        .timers = r->session->timers,
                                };
                        if (r->status && p->status) {
                                const Netpoll__V1__Status *s = r->status;
                                struct np_status *o = p->status;
                                *o = (struct np_status){
                                        .pid = s->pid,
                                        .uptime_ns = s->uptime_ns,
                                        .connections = s->connections,
                                        .descriptors = s->descriptors,
                                        .waiters = s->waiters,
                                        .timers = s->timers,
                                        .events = s->events,
                                        .timeouts = s->timeouts,
                                        .protocol_errors = s->protocol_errors,
                                        .slots_in_use = s->slots_in_use,
                                        .slots_allocated = s->slots_allocated,
                                        .breaks = s->breaks,
                                        .rss_bytes = s->rss_bytes,
                                        .open_fds = s->open_fds,
                                        .fd_limit = s->fd_limit,
                                        .accepted = s->accepted,
                                        .max_connections = s->max_connections,
                                        .max_connections_per_uid = s->max_connections_per_uid,
                                        .max_descriptors = s->max_descriptors,
                                        .max_output_bytes = s->max_output_bytes,
                                        .handshake_timeout_ns = s->handshake_timeout_ns,
                                };
                                snprintf(o->version, sizeof(o->version), "%s",
                                         s->version ? s->version : "");
                        }
                        break;
                }
        }
        for (size_t i = 0; i < m->n_events; i++) {
                const Netpoll__V1__Event *e = m->events[i];
                np_event ev = { .desc = e->desc, .user = e->user, .mode = e->mode,
                                .result = e->result };
                DescEntry *d = desctab_find(&c->descs, e->desc);
                if (d && (e->mode == 'r' || e->mode == 'w') && *desctab_outstanding(d, e->mode))
                        (*desctab_outstanding(d, e->mode))--;
                if (ring_push(&c->events, &ev) < 0)
                        c->dead = true; /* cannot lose an outcome silently */
        }
        for (size_t i = 0; i < m->n_watch; i++) {
                const Netpoll__V1__WatchEvent *w = m->watch[i];
                np_watch_event ev = { .time_ns = (int64_t)w->time_ns, .kind = w->kind,
                                      .client = w->client, .desc = w->desc, .mode = w->mode,
                                      .pid = w->pid };
                snprintf(ev.comm, sizeof(ev.comm), "%s", w->comm ? w->comm : "");
                if (ring_push(&c->watch, &ev) < 0)
                        c->dead = true;
        }
}

/*
 * One turn of the reader role.  Called and returns with c->lock held; drops
 * it while polling.  deadline: -1 wait for input, 0 do not block, else an
 * absolute CLOCK_MONOTONIC time.  watch_break: also wake on np_break.
 * Reading stops early once want is done or q has items.
 */
static void read_turn(np_client *c, int64_t deadline, bool watch_break, const Pending *want,
                      const Ring *q)
{
        struct pollfd pfd[2] = { { .fd = c->sock, .events = POLLIN },
                                 { .fd = c->evfd, .events = POLLIN } };
        bool brk = false;

        c->reading = true;
        pthread_mutex_unlock(&c->lock);

        struct timespec ts, *tsp = NULL;
        if (deadline >= 0) {
                int64_t left = deadline == 0 ? 0 : deadline - now_ns();
                ts = ns_to_timespec(left > 0 ? left : 0);
                tsp = &ts;
        }
        int n = ppoll(pfd, watch_break ? 2 : 1, tsp, NULL);
        if (n > 0 && watch_break && (pfd[1].revents & POLLIN)) {
                uint64_t v;
                (void)!read(c->evfd, &v, sizeof(v));
                atomic_store(&c->break_sig, 0);
                brk = true;
        }
        if (n > 0 && pfd[0].revents) {
                for (int i = 0; i < 64; i++) {
                        Netpoll__V1__ServerMessage *m;
                        int r = wire_recv(c->sock, c->rbuf, &c->arena, MSG_DONTWAIT, &m);
                        if (r == 0)
                                break;
                        pthread_mutex_lock(&c->lock);
                        if (r < 0)
                                c->dead = true;
                        else
                                apply(c, m);
                        /* Stop once what this thread waits for is here:
                         * another recvmsg would only say EAGAIN, and the
                         * role passes on to whoever waits for more. */
                        bool stop = c->dead || (want && want->done) || (q && q->len > 0);
                        pthread_mutex_unlock(&c->lock);
                        if (stop)
                                break;
                }
        }
        pthread_mutex_lock(&c->lock);
        if (brk)
                c->break_pending = true;
        c->reading = false;
        pthread_cond_broadcast(&c->cond);
}

/*
 * Sends the pipelined batch followed by q (NULL: the batch alone) in one
 * datagram, with fd attached for q when >= 0.  Called with send_lock held.
 */
static int send_locked(np_client *c, Netpoll__V1__Request *q, int fd)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Request *qs[BATCH_MAX + 1];
        size_t n = 0;
        int r;

        for (size_t i = 0; i < c->n_batch; i++)
                qs[n++] = &c->batch[i];
        if (q) {
                q->fd_index = 0; /* the one fd of this datagram, if any */
                qs[n++] = q;
        }
        if (n == 0)
                return 0;
        m.requests = qs;
        m.n_requests = n;
        r = wire_send(c->sock, &m, fd);
        c->n_batch = 0;
        if (r == -ECONNRESET) {
                pthread_mutex_lock(&c->lock);
                c->dead = true;
                pthread_mutex_unlock(&c->lock);
        }
        return r;
}

/* Sends whatever is pipelined.  Returns 0 or -errno. */
static int flush(np_client *c)
{
        pthread_mutex_lock(&c->send_lock);
        int r = send_locked(c, NULL, -1);
        pthread_mutex_unlock(&c->send_lock);
        return r;
}

/*
 * Pipelines q: no reply comes.  It leaves with the connection's next
 * datagram, or at once when the batch is full or a thread of this
 * connection is waiting in the library (its wake may depend on q).  A
 * thread counts itself in c->inside before it sends, so a request batched
 * after that check-free moment still leaves with that thread's send.
 */
static int send_quiet(np_client *c, const Netpoll__V1__Request *q)
{
        int r = 0;

        pthread_mutex_lock(&c->send_lock);
        c->batch[c->n_batch] = *q;
        c->batch[c->n_batch].quiet = true;
        c->n_batch++;
        if (c->n_batch == BATCH_MAX || atomic_load(&c->inside) > 0)
                r = send_locked(c, NULL, -1);
        pthread_mutex_unlock(&c->send_lock);
        return r;
}

/* Sends q (with fd attached when >= 0) and waits for its reply in *p. */
static int call(np_client *c, Netpoll__V1__Request *q, int fd, Pending *p)
{
        int r;

        pthread_mutex_lock(&c->lock);
        if (c->dead) {
                pthread_mutex_unlock(&c->lock);
                return -ECONNRESET;
        }
        q->id = p->id = ++c->next_id;
        p->done = false;
        p->next = c->pending;
        c->pending = p;
        pthread_mutex_unlock(&c->lock);

        atomic_fetch_add(&c->inside, 1);
        pthread_mutex_lock(&c->send_lock);
        r = send_locked(c, q, fd);
        pthread_mutex_unlock(&c->send_lock);

        pthread_mutex_lock(&c->lock);
        if (r < 0) {
                if (r == -ECONNRESET)
                        c->dead = true;
        } else {
                while (!p->done && !c->dead) {
                        if (!c->reading)
                                read_turn(c, -1, true, p, NULL);
                        else
                                pthread_cond_wait(&c->cond, &c->lock);
                }
                r = p->done ? p->result : -ECONNRESET;
        }
        pending_remove(c, p);
        pthread_mutex_unlock(&c->lock);
        atomic_fetch_sub(&c->inside, 1);
        return r;
}

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
        return call(c, &q, -1, &p);
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
                if (delta > 0 || *n > 0)
                        *n += delta;
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

static int handshake(np_client *c)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Hello h = NETPOLL__V1__HELLO__INIT;
        Netpoll__V1__ServerMessage *w;
        struct pollfd pfd = { .fd = c->sock, .events = POLLIN };
        int r;

        h.version = WIRE_PROTOCOL_VERSION;
        h.name = program_invocation_short_name;
        m.hello = &h;
        r = wire_send(c->sock, &m, -1);
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
        if (!w->welcome || w->welcome->version != WIRE_PROTOCOL_VERSION)
                return -EPROTO;
        c->connection_id = w->welcome->connection_id;
        /* Deadlines travel as absolute CLOCK_MONOTONIC times.  On one host
         * both clocks are the same one and the difference seen here is
         * only the welcome's transit; a daemon in another time namespace
         * shows an offset far beyond that, which is then applied. */
        int64_t offset = w->welcome->monotonic_ns - now_ns();
        c->clock_offset = offset > -NSEC_PER_SEC && offset < NSEC_PER_SEC ? 0 : offset;
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
        c->sock = c->evfd = -1;
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
        c->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        c->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (c->sock < 0 || c->evfd < 0) {
                r = -errno;
                goto fail;
        }
        if (connect(c->sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                r = -errno;
                goto fail;
        }
        r = handshake(c);
        if (r < 0)
                goto fail;
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

static bool own_fd(np_client *c, int fd)
{
        return fd_same_file(fd, c->sock) || fd_same_file(fd, c->evfd);
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
        r = call(c, &q, fd, &p);
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
                return send_quiet(c, &q);
        return call(c, &q, -1, &p);
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
                r = send_quiet(c, &q);
        } else
                r = simple(c, NETPOLL__V1__OP__OP_ARM, d, mode, 0);
        if (r < 0)
                outstanding_add(c, d, mode, -1);
        return r;
}

NP_EXPORT int np_ping(np_client *c)
{
        return simple(c, NETPOLL__V1__OP__OP_PING, 0, 0, 0);
}

/*
 * netpoll(delay) over one of the connection's queues: returns queued items,
 * else (with breakable) a pending break, else waits as delay says.  The
 * thread counts itself inside the library first and flushes the pipelined
 * batch, since the items it waits for may depend on it.
 */
static int wait_queue(np_client *c, int64_t delay_ns, Ring *q, void *out, int max, bool breakable)
{
        int64_t deadline = delay_ns > 0 ? deadline_after(delay_ns) : delay_ns < 0 ? -1 : 0;
        bool polled = false;
        int n = 0;

        atomic_fetch_add(&c->inside, 1);
        int r = flush(c);
        if (r < 0) {
                atomic_fetch_sub(&c->inside, 1);
                return r;
        }
        pthread_mutex_lock(&c->lock);
        for (;;) {
                if (q->len > 0) {
                        n = ring_pop(q, out, max);
                        break;
                }
                if (breakable && delay_ns != 0 && c->break_pending) {
                        c->break_pending = false;
                        break;
                }
                if (c->dead) {
                        n = -ECONNRESET;
                        break;
                }
                if (delay_ns == 0) {
                        /* One non-blocking look at the socket, without
                         * touching the break eventfd. */
                        if (polled || c->reading)
                                break;
                        polled = true;
                        read_turn(c, 0, false, NULL, q);
                        continue;
                }
                if (delay_ns > 0 && now_ns() >= deadline)
                        break;
                if (!c->reading)
                        read_turn(c, deadline, true, NULL, q);
                else if (delay_ns < 0)
                        pthread_cond_wait(&c->cond, &c->lock);
                else {
                        struct timespec ts = ns_to_timespec(deadline);
                        pthread_cond_timedwait(&c->cond, &c->lock, &ts);
                }
        }
        pthread_mutex_unlock(&c->lock);
        atomic_fetch_sub(&c->inside, 1);
        return n;
}

NP_EXPORT int np_poll(np_client *c, int64_t delay_ns, np_event *events, int max)
{
        if (!c || max <= 0 || !events)
                return -EINVAL;
        return wait_queue(c, delay_ns, &c->events, events, max, true);
}

NP_EXPORT int np_watch_read(np_client *c, int64_t delay_ns, np_watch_event *events, int max)
{
        if (!c || max <= 0 || !events)
                return -EINVAL;
        return wait_queue(c, delay_ns, &c->watch, events, max, true);
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
        r = call(c, &q, -1, &p);
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
        return call(c, &q, fd, &p);
}

NP_EXPORT int np_session_stats(np_client *c, struct np_session_stats *ret)
{
        Netpoll__V1__Request q = NETPOLL__V1__REQUEST__INIT;
        Pending p = { 0 };
        int r;

        if (!c || !ret)
                return -EINVAL;
        q.op = NETPOLL__V1__OP__OP_SESSION_STATS;
        r = call(c, &q, -1, &p);
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
        r = call(c, &q, -1, &p);
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
