/*
 * The sending side of a connection.  Requests are sent under send_lock, so
 * one thread's calls reach the daemon in the order they were made: the
 * pipelined batch first, then the request that makes the datagram leave.
 * Replies are matched to the calling thread by request id: a call links its
 * Pending into c->pending before it sends, and waits, taking the reader
 * role when nobody holds it (reader.c), until the reply has filled it in.
 */
#include "request.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "loop.h"
#include "reader.h"

static void pending_remove(np_client *c, Pending *p)
{
        for (Pending **pp = &c->pending; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        return;
                }
}

static void mark_dead(np_client *c)
{
        pthread_mutex_lock(&c->lock);
        c->dead = true;
        loop_notify(c); /* an event loop learns it from np_process */
        pthread_mutex_unlock(&c->lock);
}

/* Records what the daemon is being sent about a descriptor, so that a
 * restarted daemon can be told again (request_resume).  Called with
 * send_lock held, before the datagram leaves. */
static void note_sent(np_client *c, Netpoll__V1__Request *const *qs, size_t n)
{
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < n; i++) {
                const Netpoll__V1__Request *q = qs[i];
                if (q->op == NETPOLL__V1__OP__OP_WATCH) {
                        c->watch_sent = true;
                        c->watch_filter = q->desc;
                        continue;
                }
                DescEntry *e = desctab_find(&c->descs, q->desc);
                if (!e)
                        continue;
                /* Three ops of many: no switch (-Wswitch-enum would want
                 * every one). */
                if (q->op == NETPOLL__V1__OP__OP_ARM) {
                        if (q->mode == 'r' || q->mode == 'w')
                                (*desctab_armed(e, q->mode))++;
                } else if (q->op == NETPOLL__V1__OP__OP_SET_DEADLINE) {
                        if (q->mode == 'r' || q->mode == NP_RW) {
                                e->deadline_r = q->ns;
                                e->deadline_r_set = true;
                        }
                        if (q->mode == 'w' || q->mode == NP_RW) {
                                e->deadline_w = q->ns;
                                e->deadline_w_set = true;
                        }
                } else if (q->op == NETPOLL__V1__OP__OP_UNBLOCK)
                        e->unblocked = true;
        }
        pthread_mutex_unlock(&c->lock);
}

/* Takes back note_sent for a datagram that did not leave (the socket had
 * no room): its arms are counted again when it does.  Deadlines and
 * watches were recorded as values, which stay right.  Called with
 * send_lock held, so no restart replays the count in between. */
static void note_unsent(np_client *c, Netpoll__V1__Request *const *qs, size_t n)
{
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < n; i++) {
                const Netpoll__V1__Request *q = qs[i];
                DescEntry *e = q->op == NETPOLL__V1__OP__OP_ARM ? desctab_find(&c->descs, q->desc)
                                                                 : NULL;
                if (e && (q->mode == 'r' || q->mode == 'w') && *desctab_armed(e, q->mode))
                        (*desctab_armed(e, q->mode))--;
        }
        pthread_mutex_unlock(&c->lock);
}

/*
 * Sends the pipelined batch followed by q (NULL: the batch alone) in one
 * datagram, with fd attached for q when >= 0.  Called with send_lock held.
 * flags is 0, or MSG_DONTWAIT for the batch alone: then -EAGAIN means the
 * socket had no room and the batch stays, whole, for a later send.
 *
 * The batch is never lost without a word: when a datagram that carries an
 * fd fails, the fd may be what the kernel refused (an io_uring fd cannot
 * be passed: -EINVAL), so the batch is sent again alone and only q fails;
 * any other failure leaves the connection dead, and every later call says
 * so (-ECONNRESET).
 */
static int send_locked(np_client *c, Netpoll__V1__Request *q, int fd, int flags)
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
        note_sent(c, qs, n);
        r = wire_send(c->sock, &m, fd, flags);
        if (r == -EAGAIN && (flags & MSG_DONTWAIT)) {
                assert(!q);
                note_unsent(c, qs, n);
                return r;
        }
        if (r < 0 && fd >= 0 && r != -ECONNRESET) {
                int rb = 0;
                if (c->n_batch > 0) {
                        m.n_requests = c->n_batch;
                        rb = wire_send(c->sock, &m, -1, 0);
                }
                if (rb == 0) {
                        c->n_batch = 0;
                        return r; /* q alone failed, for its fd */
                }
                r = rb;
        }
        c->n_batch = 0;
        if (r < 0)
                mark_dead(c);
        return r;
}

int request_flush(np_client *c)
{
        pthread_mutex_lock(&c->send_lock);
        int r = send_locked(c, NULL, -1, 0);
        pthread_mutex_unlock(&c->send_lock);
        return r;
}

int request_flush_nowait(np_client *c)
{
        /* A thread holding send_lock is sending, and takes the batch with
         * its datagram; if the socket is full it waits for room, which is
         * what -EAGAIN asks the caller to wait for too. */
        if (pthread_mutex_trylock(&c->send_lock) != 0)
                return -EAGAIN;
        int r = send_locked(c, NULL, -1, MSG_DONTWAIT);
        pthread_mutex_unlock(&c->send_lock);
        return r;
}

int request_send_quiet(np_client *c, const Netpoll__V1__Request *q)
{
        int r = 0;

        pthread_mutex_lock(&c->lock);
        bool dead = c->dead;
        pthread_mutex_unlock(&c->lock);
        if (dead)
                return -ECONNRESET;
        pthread_mutex_lock(&c->send_lock);
        c->batch[c->n_batch] = *q;
        c->batch[c->n_batch].quiet = true;
        c->n_batch++;
        if (c->n_batch == BATCH_MAX || atomic_load(&c->inside) > 0)
                r = send_locked(c, NULL, -1, 0);
        else {
                /* An event loop's np_process sends it (loop.c). */
                pthread_mutex_lock(&c->lock);
                loop_kick(c);
                pthread_mutex_unlock(&c->lock);
        }
        pthread_mutex_unlock(&c->send_lock);
        return r;
}

/* What a call gets when the daemon went away for good before answering:
 * a parked wait ends as on a closing descriptor (systemctl stop with the
 * fd store ends waits that way, as a lame-duck stop does); anything else
 * finds the connection gone. */
static int lost_result(const Netpoll__V1__Request *q)
{
        if (q->op == NETPOLL__V1__OP__OP_WAIT || q->op == NETPOLL__V1__OP__OP_WAIT_CANCELED)
                return NP_ERR_CLOSING;
        return -ECONNRESET;
}

/* Whether one of the calls ps[0..n) is op on desc (and mode, if not 0). */
static bool pending_has(Pending *const *ps, size_t n, int op, uint64_t desc, int mode)
{
        for (size_t i = 0; i < n; i++)
                if (ps[i]->req->op == (Netpoll__V1__Op)op && ps[i]->req->desc == desc &&
                    (!mode || ps[i]->req->mode == mode))
                        return true;
        return false;
}

static int pending_cmp(const void *a, const void *b)
{
        uint64_t x = (*(Pending *const *)a)->id, y = (*(Pending *const *)b)->id;

        return x < y ? -1 : x > y;
}

/* Sends reqs[0..n) in datagrams of at most BATCH_MAX + 1, fds alone. */
static int send_all(np_client *c, Netpoll__V1__Request **reqs, const int *fds, size_t n)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;

        for (size_t i = 0; i < n;) {
                size_t k = 0;
                int fd = -1;
                if (fds[i] >= 0) {
                        fd = fds[i];
                        reqs[i]->fd_index = 0;
                        k = 1;
                } else
                        while (i + k < n && k < BATCH_MAX + 1 && fds[i + k] < 0)
                                k++;
                m.requests = reqs + i;
                m.n_requests = k;
                int r = wire_send(c->sock, &m, fd, 0);
                /* A fd the kernel refuses now was passed before: the
                 * replayed open fails alone, as it would have. */
                if (r < 0 && (fd < 0 || r == -ECONNRESET))
                        return r;
                i += k;
        }
        return 0;
}

void request_resume(np_client *c)
{
        pthread_mutex_lock(&c->send_lock);
        pthread_mutex_lock(&c->lock);
        if (!c->resume_pending || c->dead) {
                pthread_mutex_unlock(&c->lock);
                pthread_mutex_unlock(&c->send_lock);
                return;
        }
        c->resume_pending = false;
        c->resumes++;

        size_t np = 0, n = 0;
        for (Pending *p = c->pending; p; p = p->next)
                np += p->sent && !p->done;
        /* OP_RESUME, then per descriptor an unblock, two deadlines and two
         * arms at most, then the calls still waiting for their replies. */
        size_t cap = 2 + 5 * c->descs.n + np;
        Netpoll__V1__Request *qs = calloc(cap, sizeof(*qs));
        Netpoll__V1__Request **ptrs = calloc(cap, sizeof(*ptrs));
        int *fds = calloc(cap, sizeof(*fds));
        Pending **ps = calloc(np ? np : 1, sizeof(*ps));
        int r = qs && ptrs && fds && ps ? 0 : -ENOMEM;
        if (r == 0) {
#define ADD(OP, D, MODE, NS)                                                                       \
        do {                                                                                       \
                qs[n] = (Netpoll__V1__Request)NETPOLL__V1__REQUEST__INIT;                          \
                qs[n].op = (OP);                                                                   \
                qs[n].desc = (D);                                                                  \
                qs[n].mode = (MODE);                                                               \
                qs[n].ns = (NS);                                                                   \
                qs[n].absolute = true;                                                             \
                qs[n].quiet = true;                                                                \
                ptrs[n] = &qs[n];                                                                  \
                fds[n] = -1;                                                                       \
                n++;                                                                               \
        } while (0)
                size_t k = 0;
                for (Pending *p = c->pending; p; p = p->next)
                        if (p->sent && !p->done)
                                ps[k++] = p;
                qsort(ps, k, sizeof(*ps), pending_cmp);
                ADD(NETPOLL__V1__OP__OP_RESUME, 0, 0, 0);
                for (size_t i = 0; i < c->descs.cap; i++) {
                        const DescEntry *e = &c->descs.slots[i];
                        if (!e->desc)
                                continue;
                        /* What a call still waiting for its reply asks is
                         * sent once, as that call (below). */
                        if (e->unblocked && !pending_has(ps, k, NETPOLL__V1__OP__OP_UNBLOCK, e->desc, 0))
                                ADD(NETPOLL__V1__OP__OP_UNBLOCK, e->desc, 0, 0);
                        if (e->deadline_r_set)
                                ADD(NETPOLL__V1__OP__OP_SET_DEADLINE, e->desc, 'r', e->deadline_r);
                        if (e->deadline_w_set)
                                ADD(NETPOLL__V1__OP__OP_SET_DEADLINE, e->desc, 'w', e->deadline_w);
                        if (e->armed_r && !pending_has(ps, k, NETPOLL__V1__OP__OP_ARM, e->desc, 'r'))
                                ADD(NETPOLL__V1__OP__OP_ARM, e->desc, 'r', 0);
                        if (e->armed_w && !pending_has(ps, k, NETPOLL__V1__OP__OP_ARM, e->desc, 'w'))
                                ADD(NETPOLL__V1__OP__OP_ARM, e->desc, 'w', 0);
                }
                /* A subscription: its reply goes to an id nobody waits for. */
                if (c->watch_sent) {
                        ADD(NETPOLL__V1__OP__OP_WATCH, c->watch_filter, 0, 0);
                        qs[n - 1].quiet = false;
                        qs[n - 1].absolute = false;
                        qs[n - 1].id = ++c->next_id;
                }
#undef ADD
                for (size_t i = 0; i < k; i++) {
                        ps[i]->replayed = true;
                        ps[i]->n_items = 0; /* a list is sent again from its start */
                        ptrs[n] = (Netpoll__V1__Request *)ps[i]->req;
                        fds[n++] = ps[i]->fd;
                }
                pthread_mutex_unlock(&c->lock);
                r = send_all(c, ptrs, fds, n);
                pthread_mutex_lock(&c->lock);
        }
        if (r < 0) {
                c->dead = true; /* cannot resume: every call says so */
                loop_notify(c);
        }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
        pthread_mutex_unlock(&c->send_lock);
        free(qs);
        free(ptrs);
        free(fds);
        free(ps);
}

int request_call(np_client *c, Netpoll__V1__Request *q, int fd, Pending *p)
{
        int r;

        pthread_mutex_lock(&c->lock);
        if (c->dead) {
                pthread_mutex_unlock(&c->lock);
                return -ECONNRESET;
        }
        q->id = p->id = ++c->next_id;
        p->req = q;
        p->fd = fd;
        p->sent = false;
        p->replayed = false;
        p->done = false;
        p->next = c->pending;
        c->pending = p;
        pthread_mutex_unlock(&c->lock);

        atomic_fetch_add(&c->inside, 1);
        pthread_mutex_lock(&c->send_lock);
        r = send_locked(c, q, fd, 0);
        p->sent = r >= 0;
        pthread_mutex_unlock(&c->send_lock);

        pthread_mutex_lock(&c->lock);
        if (r >= 0) {
                while (!p->done && !c->dead) {
                        if (!c->reading)
                                reader_turn(c, -1, true, p, NULL);
                        else
                                pthread_cond_wait(&c->cond, &c->lock);
                }
                r = p->done ? p->result : lost_result(q);
                /* The previous instance closed it and went before it could
                 * say so: the replay finds nothing to close. */
                if (p->done && p->replayed && q->op == NETPOLL__V1__OP__OP_CLOSE && r == -EBADF)
                        r = 0;
        }
        pending_remove(c, p);
        pthread_mutex_unlock(&c->lock);
        atomic_fetch_sub(&c->inside, 1);
        return r;
}
