/*
 * epoll, eventfd and timerfd, wrapped with -errno returns.
 *
 * The timerfd is armed with TFD_TIMER_ABSTIME on CLOCK_MONOTONIC for the
 * earliest heap deadline, so the kernel wakes us at the right nanosecond;
 * the loop still re-reads the clock after every wake and runs only timers
 * that are due by then, so nothing fires early whatever wakes the loop.
 * Re-arming is skipped when the earliest deadline did not change.
 *
 * A connection's first SESSION_FLAT_MAX descriptors are in the main set
 * (one epoll_wait per wake instead of two); the rest are in its own epoll
 * set (a group), nested in the main one, and the loop takes at most a
 * budget of events from a group per turn.  In one flat set, epoll's ready
 * list is a FIFO shared by everyone, so a burst of 10,000 events for one
 * client would queue ahead of every other client's single event; this way
 * no connection has more than SESSION_FLAT_MAX + 1 entries on it.
 *
 * The idle spin: on a VM whose idle vCPUs halt at once (cpuidle haltpoll
 * with guest_halt_poll_ns=0), waking a task that sleeps on another vCPU is
 * an IPI to a halted vCPU, about 20 us until the handler runs there
 * (tests/bench/README.md has the trace).  An event that comes while the
 * loop still polls costs no wake at all.  A spin costs CPU, so it adapts:
 * - its length, as the haltpoll cpuidle governor adapts its poll window:
 *   kept when the spin caught the event; doubled (from a quarter of the
 *   maximum) when the loop slept but woke within the maximum, since a
 *   longer spin would have caught it; halved when it slept longer, down
 *   to 0.  At rest every sleep is long, so it reaches 0 within a few turns
 *   and nothing spins until a sleep turns out short again;
 * - whether to spin at all, as glibc's adaptive mutexes back off: after n
 *   spins in a row that caught nothing, the next 2^n - 1 turns (at most 63)
 *   sleep at once; a spin that catches something ends the back-off.  So
 *   events that keep coming just after the spin gave up cost at most 1/64
 *   of a spin per turn.
 * The spin does not yield the CPU: a client the turn woke onto the daemon's
 * CPU preempts it anyway (its long scheduler_slice, cpuslice.h), and a
 * sched_yield() between polls, or one before the spin, made the parked wake
 * 0.2-3 us slower with everything pinned to one CPU (the daemon's spin
 * shows in its lag).  With scheduler_slice = 0 such a client may wait up to
 * one spin; the spin then catches nothing, and backs off.
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

/* Below this a spin is not worth its first poll. */
#define SPIN_MIN_NS 1000
#define SPIN_MAX_MISSES 6

int64_t poller_spin_take(PollerSpin *s, int64_t max_ns)
{
        if (max_ns <= 0 || s->budget_ns <= 0)
                return 0;
        if (s->skip > 0) {
                s->skip--;
                return 0;
        }
        return s->budget_ns < max_ns ? s->budget_ns : max_ns;
}

void poller_spin_done(PollerSpin *s, int64_t max_ns, bool spun, bool caught, int64_t idle_ns)
{
        int64_t b;

        if (max_ns <= 0) {
                *s = (PollerSpin){ .hits = s->hits, .spun = s->spun };
                return;
        }
        if (spun) {
                s->spun++;
                if (caught) {
                        s->hits++;
                        s->misses = 0;
                } else {
                        if (s->misses < SPIN_MAX_MISSES)
                                s->misses++;
                        s->skip = (1u << s->misses) - 1;
                }
        }
        if (caught)
                b = s->budget_ns < max_ns ? s->budget_ns : max_ns;
        else if (idle_ns <= max_ns) {
                b = s->budget_ns > 0 ? s->budget_ns * 2 : max_ns / 4;
                b = b > max_ns ? max_ns : b < SPIN_MIN_NS ? SPIN_MIN_NS : b;
        } else {
                b = s->budget_ns / 2;
                b = b < SPIN_MIN_NS ? 0 : b;
        }
        s->budget_ns = b;
}

int poller_wait(Poller *p, struct epoll_event *evs, int max, int timeout_ms)
{
        bool caught = false;
        int64_t start, spin;
        int n = 0;

        if (timeout_ms == 0 || p->spin_max_ns <= 0) {
                /* A turn that does not block says nothing about the spin;
                 * idle_spin = 0 forgets it. */
                if (p->spin_max_ns <= 0)
                        poller_spin_done(&p->spin, 0, false, false, 0);
                n = epoll_wait(p->epfd, evs, max, timeout_ms);
                return n < 0 ? -errno : n;
        }
        start = now_ns();
        spin = poller_spin_take(&p->spin, p->spin_max_ns);
        if (spin > 0) {
                int64_t until = start + spin;
                do
                        n = epoll_wait(p->epfd, evs, max, 0);
                while (n == 0 && now_ns() < until);
                if (n < 0)
                        return -errno;
                caught = n > 0;
        }
        if (!caught) {
                n = epoll_wait(p->epfd, evs, max, timeout_ms);
                if (n < 0)
                        return -errno;
        }
        poller_spin_done(&p->spin, p->spin_max_ns, spin > 0, caught, now_ns() - start);
        return n;
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
