/*
 * Event-loop integration, after sd-bus (sd_bus_get_fd, sd_bus_get_events,
 * sd_bus_get_timeout, sd_bus_process): a caller's own loop polls one fd
 * and, when it is readable, calls np_process, which never waits.
 *
 * The connection socket alone would not do.  np_break's eventfd must wake
 * the loop too; another thread's blocking call may hold the reader role
 * and take this connection's events off the socket, which then no longer
 * shows them; and pipelined requests wait in memory for a datagram to
 * leave with.  So the fd is an epoll set of three: the socket, the break
 * eventfd, and a kick eventfd written by whoever leaves np_process work in
 * memory (loop_kick): events another reader queued, a break it took, a
 * batch that no thread inside the library will send, a dead connection.
 * np_process drains the kick before it looks, so whatever arrives after
 * that kicks again: the fd is readable while np_process has something to
 * do (and at worst once more).  When the socket has no room for the batch,
 * the socket is registered for EPOLLOUT until a flush gets through: a loop
 * neither spins on a full socket nor blocks on it.
 *
 * Epoll data carries a tag, never a pointer, and nothing ever epoll_waits
 * on the set: poll(2) on an epoll fd checks each member on the ready list
 * against its current state, which makes it a level-triggered "something
 * is ready" fd, fit for any loop (sd-event and libuv nest it in theirs).
 */
#include "loop.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "reader.h"
#include "request.h"

#define NP_EXPORT __attribute__((visibility("default")))

enum { TAG_SOCK = 1, TAG_BREAK = 2, TAG_KICK = 3 };

void loop_kick(np_client *c)
{
        uint64_t one = 1;

        if (c->loop_fd < 0 || c->kicked)
                return;
        /* Cannot fail: the count is drained before it could overflow. */
        (void)!write(c->kick_fd, &one, sizeof(one));
        c->kicked = true;
}

void loop_notify(np_client *c)
{
        if (c->loop_fd < 0 || c->processing)
                return;
        if (c->events.len > 0 || c->break_pending || c->dead)
                loop_kick(c);
}

/* Registers the socket for EPOLLOUT too, or no longer.  Called with
 * c->lock held. */
static void loop_want_out(np_client *c, bool out)
{
        struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u32 = TAG_SOCK };

        if (c->loop_fd < 0 || c->loop_out == out)
                return;
        if (epoll_ctl(c->loop_fd, EPOLL_CTL_MOD, c->sock, &ev) < 0) {
                /* Out of memory in the kernel: ask to be called again
                 * rather than miss the room. */
                loop_kick(c);
                return;
        }
        c->loop_out = out;
}

/* Makes the epoll set and the kick eventfd.  Called with c->lock held. */
static int loop_open(np_client *c)
{
        _cleanup_close_ int ep = -1, kick = -1;
        int r;

        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0)
                return -errno;
        kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (kick < 0)
                return -errno;
        const struct {
                int fd;
                uint32_t tag;
        } members[] = { { c->sock, TAG_SOCK }, { c->evfd, TAG_BREAK }, { kick, TAG_KICK } };
        for (size_t i = 0; i < ELEMENTSOF(members); i++) {
                struct epoll_event ev = { .events = EPOLLIN, .data.u32 = members[i].tag };
                r = epoll_ctl(ep, EPOLL_CTL_ADD, members[i].fd, &ev);
                if (r < 0)
                        return -errno;
        }
        c->loop_fd = TAKE_FD(ep);
        c->kick_fd = TAKE_FD(kick);
        c->loop_out = false;
        loop_notify(c); /* what already waits in memory */
        return 0;
}

NP_EXPORT int np_get_fd(np_client *c)
{
        int r = 0;

        if (!c)
                return -EINVAL;
        pthread_mutex_lock(&c->lock);
        bool made = c->loop_fd < 0;
        if (made)
                r = loop_open(c);
        if (r == 0)
                r = c->loop_fd;
        pthread_mutex_unlock(&c->lock);
        /* A batch made before the fd existed kicked nothing; one made from
         * now on kicks by itself (request_send_quiet).  A sender holding
         * send_lock may be about to leave one: kick then too. */
        if (made && r >= 0) {
                bool batched = true;
                if (pthread_mutex_trylock(&c->send_lock) == 0) {
                        batched = c->n_batch > 0;
                        pthread_mutex_unlock(&c->send_lock);
                }
                if (batched) {
                        pthread_mutex_lock(&c->lock);
                        loop_kick(c);
                        pthread_mutex_unlock(&c->lock);
                }
        }
        return r;
}

NP_EXPORT int np_get_events(np_client *c)
{
        if (!c)
                return -EINVAL;
        /* An epoll fd only ever polls readable: a batch waiting for room
         * in the socket is EPOLLOUT inside the set. */
        return POLLIN;
}

NP_EXPORT int np_get_timeout(np_client *c, uint64_t *ret_ns)
{
        if (!c || !ret_ns)
                return -EINVAL;
        /* No timers of its own: deadlines run in the daemon and their
         * outcomes arrive on the socket.  Only work already in memory is
         * due now (and it kicks the fd too). */
        pthread_mutex_lock(&c->lock);
        bool due = c->events.len > 0 || c->break_pending || c->dead;
        pthread_mutex_unlock(&c->lock);
        *ret_ns = due ? 0 : UINT64_MAX;
        return due;
}

int loop_process(np_client *c, np_event *events, int max, bool *ret_break)
{
        bool brk = false;
        uint64_t v;
        int n;

        /* The kick first: whatever leaves work from here on kicks again. */
        pthread_mutex_lock(&c->lock);
        if (c->kicked) {
                (void)!read(c->kick_fd, &v, sizeof(v));
                c->kicked = false;
        }
        pthread_mutex_unlock(&c->lock);

        /* np_break, taken as a blocking reader takes it (reader.c). */
        if (read(c->evfd, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
                atomic_store(&c->break_sig, 0);
                brk = true;
        }

        /* The pipelined batch: its outcomes may be what the caller waits
         * for.  A full socket keeps it, and asks for EPOLLOUT. */
        int r = request_flush_nowait(c);

        pthread_mutex_lock(&c->lock);
        loop_want_out(c, r == -EAGAIN);
        /* What the socket has, unless another thread holds the reader
         * role: that one queues the events and kicks. */
        if (!c->reading && !c->dead) {
                c->processing = true;
                reader_turn(c, 0, false, NULL, NULL);
                c->processing = false;
        }
        if (c->break_pending) {
                c->break_pending = false;
                brk = true;
        }
        n = ring_pop(&c->events, events, max);
        if (n == 0 && c->dead)
                n = -ECONNRESET;
        /* Events beyond max; a dead connection, which every call reports. */
        if (c->events.len > 0 || c->dead)
                loop_kick(c);
        pthread_mutex_unlock(&c->lock);
        *ret_break = brk;
        return n;
}

NP_EXPORT int np_process(np_client *c, np_event *events, int max)
{
        bool brk;

        if (!c || !events || max <= 0)
                return -EINVAL;
        return loop_process(c, events, max, &brk);
}
