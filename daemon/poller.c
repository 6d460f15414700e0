/*
 * epoll, eventfd and timerfd, wrapped with -errno returns.
 *
 * The timerfd is armed with TFD_TIMER_ABSTIME on CLOCK_MONOTONIC for the
 * earliest heap deadline, so the kernel wakes us at the right nanosecond;
 * the loop still re-reads the clock after every wake and runs only timers
 * that are due by then, so nothing fires early whatever wakes the loop.
 * Re-arming is skipped when the earliest deadline did not change.
 *
 * Client descriptors are not in the main set: each connection has its own
 * epoll set (a group), nested in the main one, and the loop takes at most a
 * budget of events from a group per turn.  In one flat set, epoll's ready
 * list is a FIFO shared by everyone, so a burst of 10,000 events for one
 * client would queue ahead of every other client's single event.
 */
#include "poller.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/clock.h"
#include "../common/fdutil.h"
#include "pollops.h"
#include "token.h"

int poller_init(Poller *p)
{
        int r;

        *p = (Poller){ .epfd = -1, .wakefd = -1, .timerfd = -1, .timer_when = INT64_MAX };
        p->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (p->epfd < 0)
                goto fail;
        p->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->wakefd < 0)
                goto fail;
        p->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (p->timerfd < 0)
                goto fail;
        r = poller_add(p, p->wakefd, EPOLLIN, token_make(TOKEN_WAKEUP, 0, 0));
        if (r < 0)
                goto fail_r;
        r = poller_add(p, p->timerfd, EPOLLIN, token_make(TOKEN_TIMERFD, 0, 0));
        if (r < 0)
                goto fail_r;
        return 0;
fail:
        r = -errno;
fail_r:
        poller_done(p);
        return r;
}

void poller_done(Poller *p)
{
        p->epfd = safe_close(p->epfd);
        p->wakefd = safe_close(p->wakefd);
        p->timerfd = safe_close(p->timerfd);
}

static int epoll_op(int epfd, int op, int fd, uint32_t events, uint64_t token)
{
        struct epoll_event ev = { .events = events, .data.u64 = token };

        if (epoll_ctl(epfd, op, fd, &ev) < 0)
                return -errno;
        return 0;
}

int poller_add(Poller *p, int fd, uint32_t events, uint64_t token)
{
        return epoll_op(p->epfd, EPOLL_CTL_ADD, fd, events, token);
}

int poller_mod(Poller *p, int fd, uint32_t events, uint64_t token)
{
        return epoll_op(p->epfd, EPOLL_CTL_MOD, fd, events, token);
}

int poller_del(Poller *p, int fd)
{
        return epoll_op(p->epfd, EPOLL_CTL_DEL, fd, 0, 0);
}

int poller_group_open(Poller *p, uint64_t token)
{
        int gfd = epoll_create1(EPOLL_CLOEXEC);

        if (gfd < 0)
                return -errno;
        /* Level-triggered: the set stays ready in the main one for as long
         * as it holds events, so what one turn leaves comes back the next. */
        int r = poller_add(p, gfd, EPOLLIN, token);
        if (r < 0) {
                safe_close(gfd);
                return r;
        }
        return gfd;
}

void poller_group_detach(Poller *p, int gfd)
{
        if (gfd >= 0)
                (void)poller_del(p, gfd);
}

int poller_group_add(int gfd, int fd, uint32_t events, uint64_t token)
{
        return epoll_op(gfd, EPOLL_CTL_ADD, fd, events, token);
}

int poller_group_del(int gfd, int fd)
{
        return epoll_op(gfd, EPOLL_CTL_DEL, fd, 0, 0);
}

int poller_group_take(int gfd, struct epoll_event *evs, int max)
{
        int n = epoll_wait(gfd, evs, max, 0);

        return n < 0 ? -errno : n;
}

int poller_set_timer(Poller *p, int64_t when)
{
        struct itimerspec its = { 0 };

        if (when == p->timer_when)
                return 0;
        if (when != INT64_MAX)
                /* 0 would disarm: a deadline at or before the epoch of the
                 * monotonic clock is simply due, so ask for 1 ns. */
                its.it_value = ns_to_timespec(when > 0 ? when : 1);
        if (timerfd_settime(p->timerfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
                return -errno;
        p->timer_when = when;
        return 0;
}

void poller_ack_timer(Poller *p)
{
        uint64_t ticks;

        /* EAGAIN when re-armed since it fired: nothing to drain. */
        (void)!read(p->timerfd, &ticks, sizeof(ticks));
        p->timer_when = INT64_MAX;
}

void poller_ack_wakeup(Poller *p)
{
        uint64_t n;

        (void)!read(p->wakefd, &n, sizeof(n));
        atomic_store(&p->wake_sig, 0);
}

void poller_wake(Poller *p)
{
        int expected = 0;
        uint64_t one = 1;

        if (!atomic_compare_exchange_strong(&p->wake_sig, &expected, 1))
                return; /* a wake is already pending */
        (void)!write(p->wakefd, &one, sizeof(one));
}

int poller_wait(Poller *p, struct epoll_event *evs, int max, int timeout_ms)
{
        int n = epoll_wait(p->epfd, evs, max, timeout_ms);

        return n < 0 ? -errno : n;
}

bool poller_owns_file(const Poller *p, int fd)
{
        return fd_same_file(fd, p->epfd) || fd_same_file(fd, p->wakefd) || fd_same_file(fd, p->timerfd);
}

int poller_event_mode(uint32_t events)
{
        int mode = 0;

        /* A hang-up or an error wakes both directions: the next read or
         * write reports it. */
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                mode += POLL_MODE_R;
        if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
                mode += POLL_MODE_W;
        return mode;
}

bool poller_event_err(uint32_t events)
{
        /* Go 1.17+: set only by an event that is exactly EPOLLERR
         * (netpoll_epoll.go: pd.setEventErr(ev.Events == _EPOLLERR)). */
        return events == EPOLLERR;
}
