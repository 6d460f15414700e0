/*
 * Scenario 6, scale: the cost of one delivered event with 100, 1,000 and
 * 10,000 descriptors registered, of which ACTIVE pipes carry the load of
 * load.h and the rest are idle eventfds, each with a read wait armed and
 * an hour-long deadline (an idle server connection: parked, with a timer).
 *
 * Cost is CPU time per event, the client process (consumer and writer)
 * plus the daemon, rather than wall time: on two shared cores the wall
 * clock mostly measures the neighbours.  Baseline: the same load on an
 * in-process edge-triggered epoll set holding the same idle eventfds.  The
 * target compares netpolld with itself: cost at 10,000 over cost at 100.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bench.h"
#include "load.h"
#include "netpoll.h"

#define SC "scale"
#define ACTIVE 32
#define BURST 16
#define WINDOW 2
#define MAX_REPS 5
#define IDLE_DEADLINE_NS (3600 * NSEC_PER_SEC)

static const size_t sizes[] = { 100, 1000, 10000 };
#define N_SIZES (sizeof(sizes) / sizeof(sizes[0]))

int main(int argc, char **argv)
{
        double np_cost[N_SIZES], ep_cost[N_SIZES];
        np_desc active[ACTIVE];
        bool armed[ACTIVE] = { false };
        size_t n_idle = 0;
        BenchDaemon d;
        Load l;

        bench_init(argc, argv, "bench-scale");
        size_t reps = bench_count(3, 1);
        int64_t duration = (int64_t)bench_count(1000, 400) * NSEC_PER_MSEC;
        int *idle = calloc(sizes[N_SIZES - 1], sizeof(*idle));
        if (!idle)
                bench_die("out of memory");

        load_init(&l, ACTIVE, BURST, WINDOW);
        bench_daemon_start(&d, "scale");
        np_client *c = bench_connect(&d);
        int epfd = load_register(&l, c, active);

        size_t n_sizes = N_SIZES;
        while (n_sizes > 1 && sizes[n_sizes - 1] + 256 > (size_t)bench_nofile())
                n_sizes--;
        if (n_sizes < N_SIZES)
                bench_note("scale: the fd limit stops it at %zu descriptors", sizes[n_sizes - 1]);
        for (size_t s = 0; s < n_sizes; s++) {
                /* Grow both sets to sizes[s] registered descriptors. */
                for (; ACTIVE + n_idle < sizes[s]; n_idle++) {
                        struct epoll_event ev = { .events = EPOLLIN | EPOLLET,
                                                  .data.u64 = ACTIVE + n_idle };
                        np_desc desc;
                        idle[n_idle] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                        if (idle[n_idle] < 0 ||
                            epoll_ctl(epfd, EPOLL_CTL_ADD, idle[n_idle], &ev) < 0)
                                bench_die("idle set-up: %s", strerror(errno));
                        bench_check(np_open(c, idle[n_idle], ACTIVE + n_idle, &desc), "np_open");
                        bench_check(np_set_deadline(c, desc, IDLE_DEADLINE_NS, NP_READ),
                                    "np_set_deadline");
                        bench_check(np_arm(c, desc, NP_READ), "np_arm");
                }
                double np_runs[MAX_REPS], ep_runs[MAX_REPS];
                for (size_t r = 0; r < reps; r++) {
                        LoadResult e = load_run_epoll(&l, epfd, duration);
                        LoadResult n = load_run_np(&l, c, active, armed, d.pid, duration);
                        if (e.events == 0 || n.events == 0)
                                bench_die("no events delivered");
                        ep_runs[r] = (double)e.cpu_ns / (double)e.events;
                        np_runs[r] = (double)n.cpu_ns / (double)n.events;
                }
                np_cost[s] = median_of(np_runs, reps);
                ep_cost[s] = median_of(ep_runs, reps);
        }
        np_disconnect(c);
        bench_daemon_stop(&d);
        close(epfd);
        load_done(&l);
        for (size_t i = 0; i < n_idle; i++)
                close(idle[i]);
        free(idle);

        bench_baseline(SC, "the same load on in-process edge-triggered epoll, same registrations");
        for (size_t s = 0; s < n_sizes; s++) {
                char metric[32];
                snprintf(metric, sizeof(metric), "cost_%zu", sizes[s]);
                bench_row(SC, metric, "ns_per_ev", np_cost[s], ep_cost[s]);
        }
        /* Growth from the smallest set to the largest, netpolld against
         * the growth epoll shows on the same machine. */
        if (n_sizes == N_SIZES)
                bench_row(SC, "growth", "x", np_cost[N_SIZES - 1] / np_cost[0],
                          ep_cost[N_SIZES - 1] / ep_cost[0]);
        bench_info(SC, "active", "count", ACTIVE);
        return bench_finish();
}
