/*
 * The incoming side of a connection: the reader role and the queues it
 * fills.  Reading is a role, not a thread: whichever waiting thread finds
 * nobody reading becomes the reader, polls the socket (and the break
 * eventfd), decodes what arrives, hands each reply to its caller and queues
 * each event for np_poll, then gives the role up and wakes the others, one
 * of which takes it over if it is still waiting.  So a thread parked in
 * np_wait never delays another thread's call, and no thread of our own is
 * started behind the caller's back.
 *
 * A blocking reader also consumes np_break's eventfd write and records a
 * pending break, which the next np_poll with a non-zero delay takes;
 * np_poll(0) never reads the eventfd.
 *
 * The quiet reader: a thread that waits for its own reply (np_wait and
 * every other call) on a connection that has never had an np_poll or
 * np_watch_read with a delay blocks in recvmsg itself instead of in ppoll
 * and then recvmsg: one system call less per wake, ~0.5 us of a ~9 us
 * pinned wake (tests/bench/README.md).  Only such waits need the break
 * eventfd watched, so none can be stranded: the first one to come marks
 * the connection for good (breakable_seen) and, if a quiet reader is
 * blocked, sends an np_ping, whose reply wakes it and ends its turn; every
 * turn after that polls as before.  A break written meanwhile stays in the
 * eventfd for the next polling turn.  The arena and rbuf belong to whoever
 * holds the role, which uses them with c->lock dropped.  A turn that leaves
 * events queued, a break pending or the connection dead makes an event
 * loop's fd readable (loop.c), since the socket it read no longer shows it.
 */
#include "reader.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/clock.h"
#include "loop.h"
#include "request.h"

static int64_t deadline_after(int64_t delay)
{
        int64_t d;

        return __builtin_add_overflow(now_ns(), delay, &d) ? INT64_MAX : d;
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

int ring_pop(Ring *r, void *out, int max)
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
                        .read = (int)di->read, .write = (int)di->write,
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
        if (m->resumed) /* a new daemon instance: request_resume, once the lock is free */
                c->resume_pending = true;
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
                                        .started_unix_ns = (int64_t)s->started_unix_ns,
                                        .instance = s->instance,
                                        .resumed_connections = s->resumed_connections,
                                        .resumed_descriptors = s->resumed_descriptors,
                                        .fd_store = s->fd_store,
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
                if (d && (e->mode == 'r' || e->mode == 'w') && *desctab_armed(d, e->mode))
                        (*desctab_armed(d, e->mode))--;
                if (ring_push(&c->events, &ev) < 0)
                        c->dead = true; /* cannot lose an outcome silently */
        }
        for (size_t i = 0; i < m->n_watch; i++) {
                const Netpoll__V1__WatchEvent *w = m->watch[i];
                np_watch_event ev = { .time_ns = (int64_t)w->time_ns, .kind = (int)w->kind,
                                      .client = w->client, .desc = w->desc, .mode = w->mode,
                                      .pid = w->pid };
                snprintf(ev.comm, sizeof(ev.comm), "%s", w->comm ? w->comm : "");
                if (ring_push(&c->watch, &ev) < 0)
                        c->dead = true;
        }
}

/* Called and returns with c->lock held; drops it while polling and
 * receiving.  See reader.h. */
void reader_turn(np_client *c, int64_t deadline, bool watch_break, const Pending *want,
                 const Ring *q)
{
        struct pollfd pfd[2] = { { .fd = c->sock, .events = POLLIN },
                                 { .fd = c->evfd, .events = POLLIN } };
        bool brk = false, quiet = want && deadline < 0 && !c->breakable_seen;
        int n = 1;

        c->reading = true;
        c->quiet_reading = quiet;
        pthread_mutex_unlock(&c->lock);

        if (!quiet) {
                struct timespec ts, *tsp = NULL;
                if (deadline >= 0) {
                        int64_t left = deadline == 0 ? 0 : deadline - now_ns();
                        ts = ns_to_timespec(left > 0 ? left : 0);
                        tsp = &ts;
                }
                n = ppoll(pfd, watch_break ? 2 : 1, tsp, NULL);
                /* np_process (loop.c) may have taken it since ppoll saw it. */
                uint64_t v;
                if (n > 0 && watch_break && (pfd[1].revents & POLLIN) &&
                    read(c->evfd, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
                        atomic_store(&c->break_sig, 0);
                        brk = true;
                }
        }
        if (n > 0 && (quiet || pfd[0].revents)) {
                for (int i = 0; i < 64; i++) {
                        Netpoll__V1__ServerMessage *m;
                        /* Quiet: the first blocks, as ppoll would have. */
                        int r = wire_recv(c->sock, c->rbuf, &c->arena,
                                          quiet && i == 0 ? 0 : MSG_DONTWAIT, &m);
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
                        bool stop = c->dead || (want && want->done) || (q && q->len > 0) ||
                                    (quiet && c->breakable_seen);
                        bool resume = c->resume_pending;
                        pthread_mutex_unlock(&c->lock);
                        if (resume)
                                request_resume(c);
                        if (stop)
                                break;
                }
        }
        pthread_mutex_lock(&c->lock);
        if (brk)
                c->break_pending = true;
        c->reading = false;
        c->quiet_reading = false;
        /* What this turn queued, took or learnt is np_process's too. */
        loop_notify(c);
        pthread_cond_broadcast(&c->cond);
}

/* The items waited for may depend on the pipelined batch, so this thread
 * counts itself inside the library and flushes first.  See reader.h. */
int reader_wait_queue(np_client *c, int64_t delay_ns, Ring *q, void *out, int max, bool breakable)
{
        int64_t deadline = delay_ns > 0 ? deadline_after(delay_ns) : delay_ns < 0 ? -1 : 0;
        bool polled = false;
        int n = 0;

        atomic_fetch_add(&c->inside, 1);
        int r = request_flush(c);
        if (r < 0) {
                atomic_fetch_sub(&c->inside, 1);
                return r;
        }
        pthread_mutex_lock(&c->lock);
        bool kicked = false;
        if (breakable && delay_ns != 0)
                c->breakable_seen = true;
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
                        reader_turn(c, 0, false, NULL, q);
                        continue;
                }
                if (delay_ns > 0 && now_ns() >= deadline)
                        break;
                if (!c->reading)
                        reader_turn(c, deadline, true, NULL, q);
                else if (breakable && c->quiet_reading && !kicked) {
                        /* It does not watch the break eventfd: wake it
                         * (see the top of this file). */
                        kicked = true;
                        pthread_mutex_unlock(&c->lock);
                        (void)np_ping(c);
                        pthread_mutex_lock(&c->lock);
                } else if (delay_ns < 0)
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
