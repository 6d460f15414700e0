/*
 * A closed-loop event load: a writer thread writes one byte to each pipe of
 * a burst, a consumer drains whatever becomes readable, and the writer may
 * run at most `window` bursts ahead of the bytes consumed.  The same load
 * drives the netpolld consumer (np_arm + np_poll, re-armed after each
 * drain) and the in-process one (edge-triggered epoll_wait), so their rates
 * differ only by the path an event takes.
 */
#pragma once

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "netpoll.h"

typedef struct Load {
        size_t n;                 /* active pipes */
        int (*pipes)[2];          /* [i][0] read end (non-blocking), [i][1] write end */
        size_t burst, window;     /* pipes per burst, bursts ahead */
        sem_t credits;            /* bursts the writer may still write */
        atomic_bool stop;         /* the writer's stop flag */
        _Atomic uint64_t written; /* bytes the writer wrote */
        uint64_t consumed;        /* bytes the consumer read (consumer only) */
        uint64_t credited;        /* bytes already turned into credits */
        pthread_t writer;
} Load;

/* What one measured run delivered. */
typedef struct LoadResult {
        uint64_t events;
        int64_t wall_ns;
        int64_t cpu_ns; /* this process (consumer and writer) plus the daemon, if any */
} LoadResult;

/* Creates n non-blocking pipes.  Exits on failure. */
void load_init(Load *l, size_t n, size_t burst, size_t window);
void load_done(Load *l);

/*
 * Registers the read end of each of l's pipes with both consumers, as
 * load_run_np and load_run_epoll take them: opened on c with user i into
 * descs[i], and edge-triggered with data.u64 = i in a new epoll instance,
 * whose fd it returns.  Exits on failure.
 */
int load_register(const Load *l, np_client *c, np_desc *descs);

/*
 * Runs the load through netpolld for warm-up plus duration and measures the
 * duration part.  descs[i] is pipe i's read end opened on c with user i;
 * armed[i] says whether its read wait is armed (kept up to date: every pipe
 * is armed and drained again when this returns).  daemon_pid is charged
 * for CPU time.
 */
LoadResult load_run_np(Load *l, np_client *c, const np_desc *descs, bool *armed, pid_t daemon_pid,
                       int64_t duration_ns);

/*
 * The same through epoll instance epfd, where pipe i's read end is
 * registered edge-triggered with data.u64 = i (other registrations, with
 * data.u64 >= n, are idle and ignored).
 */
LoadResult load_run_epoll(Load *l, int epfd, int64_t duration_ns);
