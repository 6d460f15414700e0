/*
 * The sending side of a connection.  Requests are sent under send_lock, so
 * one thread's calls reach the daemon in the order they were made: the
 * pipelined batch first, then the request that makes the datagram leave.
 * Replies are matched to the calling thread by request id: a call links its
 * Pending into c->pending before it sends, and waits, taking the reader
 * role when nobody holds it (reader.c), until the reply has filled it in.
 */
#include "request.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

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
        pthread_mutex_unlock(&c->lock);
}

/*
 * Sends the pipelined batch followed by q (NULL: the batch alone) in one
 * datagram, with fd attached for q when >= 0.  Called with send_lock held.
 *
 * The batch is never lost without a word: when a datagram that carries an
 * fd fails, the fd may be what the kernel refused (an io_uring fd cannot
 * be passed: -EINVAL), so the batch is sent again alone and only q fails;
 * any other failure leaves the connection dead, and every later call says
 * so (-ECONNRESET).
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
        if (r < 0 && fd >= 0 && r != -ECONNRESET) {
                int rb = 0;
                if (c->n_batch > 0) {
                        m.n_requests = c->n_batch;
                        rb = wire_send(c->sock, &m, -1);
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
        int r = send_locked(c, NULL, -1);
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
                r = send_locked(c, NULL, -1);
        pthread_mutex_unlock(&c->send_lock);
        return r;
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
        p->done = false;
        p->next = c->pending;
        c->pending = p;
        pthread_mutex_unlock(&c->lock);

        atomic_fetch_add(&c->inside, 1);
        pthread_mutex_lock(&c->send_lock);
        r = send_locked(c, q, fd);
        pthread_mutex_unlock(&c->send_lock);

        pthread_mutex_lock(&c->lock);
        if (r >= 0) {
                while (!p->done && !c->dead) {
                        if (!c->reading)
                                reader_turn(c, -1, true, p, NULL);
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
