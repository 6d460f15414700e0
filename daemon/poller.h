/*
 * The kernel side of polling: one epoll instance, a wakeup eventfd
 * (netpollBreak for the daemon's loop) and a timerfd that carries the
 * earliest deadline with nanosecond precision (golang/go#44343: never round
 * a deadline to epoll_wait's milliseconds).  Every registration carries a
 * token (token.h) as its data word.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

/* The idle spin's adaptive state (see poller.c). */
typedef struct PollerSpin {
        int64_t budget_ns;  /* how long the next spin may last, within the maximum */
        uint32_t misses;    /* spins in a row that caught nothing */
        uint32_t skip;      /* turns left without a spin (back-off after misses) */
        uint64_t hits, spun; /* spins that caught an event, spins in all */
} PollerSpin;

typedef struct Poller {
        int epfd;
        int wakefd;
        int timerfd;
        int64_t timer_when; /* what the timerfd is armed for; INT64_MAX: disarmed */
        atomic_int wake_sig; /* coalesces poller_wake() calls, as netpollWakeSig */
        /* Idle spin (poller_wait): the caller sets spin_max_ns (config
         * idle_spin, 0: never spin); spin is the adaptive state within it. */
        int64_t spin_max_ns;
        PollerSpin spin;
} Poller;

/* Creates the epoll instance, eventfd and timerfd and registers the latter
 * two.  Returns 0 or -errno; on failure nothing is left open. */
int poller_init(Poller *p);

/* Closes everything; accepts a zeroed or half-initialised poller (fds -1). */
void poller_done(Poller *p);

/* Registers fd (borrowed) for events with the given token.  -errno. */
int poller_add(Poller *p, int fd, uint32_t events, uint64_t token);
int poller_mod(Poller *p, int fd, uint32_t events, uint64_t token);

/* Unregisters fd; call it before closing the daemon's copy of a client fd,
 * since the registration outlives close() while the client's copy lives. */
int poller_del(Poller *p, int fd);

/*
 * Groups: an epoll set of its own, registered (level-triggered, EPOLLIN) in
 * the main set with the given token, so the loop sees one event for a whole
 * group and takes its members' events with poller_group_take.  Returns the
 * group's fd (owned by the caller) or -errno.
 */
int poller_group_open(Poller *p, uint64_t token);

/* Takes a group out of the main set (its members' events no longer reach
 * the loop); the caller still closes its fd, once its members are gone. */
void poller_group_detach(Poller *p, int gfd);

/* Registers / unregisters a member fd (borrowed) of a group.  -errno.  As
 * with the main set, unregister before closing the daemon's copy. */
int poller_group_add(int gfd, int fd, uint32_t events, uint64_t token);
int poller_group_del(int gfd, int fd);

/* Takes up to max ready member events without blocking; count or -errno. */
int poller_group_take(int gfd, struct epoll_event *evs, int max);

/* Arms the timerfd for an absolute CLOCK_MONOTONIC time (INT64_MAX
 * disarms).  A no-op when already armed for that time.  -errno. */
int poller_set_timer(Poller *p, int64_t when);

/* Drains the timerfd / the wakeup eventfd after they fired. */
void poller_ack_timer(Poller *p);
void poller_ack_wakeup(Poller *p);

/* Wakes poller_wait from any thread or a signal handler; coalesced. */
void poller_wake(Poller *p);

/*
 * epoll_wait; returns the number of events or -errno (EINTR passed on).
 * With spin_max_ns > 0 and a timeout other than 0, it may poll the set
 * without blocking for as long as the adaptive state allows (at most
 * spin_max_ns) before it blocks; see poller.c for the rules.
 */
int poller_wait(Poller *p, struct epoll_event *evs, int max, int timeout_ms);

/* The spin governor, exposed for its unit test.  poller_spin_take: how
 * long this turn may spin (0: not at all; a turn in back-off counts down
 * here).  poller_spin_done: after the turn, given whether it spun, whether
 * the spin caught the event and how long the loop was idle in all (ns, from
 * the start of the wait to its return). */
int64_t poller_spin_take(PollerSpin *s, int64_t max_ns);
void poller_spin_done(PollerSpin *s, int64_t max_ns, bool spun, bool caught, int64_t idle_ns);

/* Whether fd (borrowed) refers to the same open file as one of the
 * poller's own fds (epoll instance, eventfd, timerfd). */
bool poller_owns_file(const Poller *p, int fd);

/* netpoll_epoll.go's reading of a descriptor's event bits: the directions
 * they make ready, POLL_MODE_R, POLL_MODE_W or POLL_MODE_RW (pollops.h),
 * or 0 when neither (EPOLLPRI alone, say).  For pollops_ready. */
int poller_event_mode(uint32_t events);

/* Whether the event reports an error polling the descriptor: it is exactly
 * EPOLLERR (Go 1.17+), as pollops_ready's event_err. */
bool poller_event_err(uint32_t events);
