/*
 * Scenario 2, event throughput: 1,000 pipes written in bursts by one writer
 * thread (the machine has two cores; more writers would only queue for
 * them), one consumer draining them.  netpolld's consumer arms each pipe,
 * takes outcomes from np_poll and re-arms after each drain; the baseline is
 * the same consumer on an in-process edge-triggered epoll.  Runs alternate
 * between the two and each reports the median of its runs.
 */
#include <unistd.h>

#include "bench.h"
#include "load.h"
#include "netpoll.h"

#define SC "event_throughput"
#define PIPES 1000
#define BURST 100
#define WINDOW 4
#define MAX_REPS 5

int main(int argc, char **argv)
{
        double np_rate[MAX_REPS], ep_rate[MAX_REPS], np_cpu[MAX_REPS], ep_cpu[MAX_REPS];
        np_desc descs[PIPES];
        bool armed[PIPES] = { false };
        BenchDaemon d;
        Load l;

        bench_init(argc, argv, "bench-throughput");
        size_t reps = bench_count(5, 1);
        int64_t duration = (int64_t)bench_count(2000, 500) * NSEC_PER_MSEC;

        /* Two fds a pipe here, one in the daemon. */
        size_t pipes = PIPES, room = ((size_t)bench_nofile() - 256) / 2;
        if (pipes > room) {
                bench_note("event throughput: %zu pipes (fd limit), not %d", room, PIPES);
                pipes = room;
        }
        load_init(&l, pipes, BURST, WINDOW);
        bench_daemon_start(&d, "throughput");
        np_client *c = bench_connect(&d);
        int epfd = load_register(&l, c, descs);

        for (size_t r = 0; r < reps; r++) {
                LoadResult e = load_run_epoll(&l, epfd, duration);
                LoadResult n = load_run_np(&l, c, descs, armed, d.pid, duration);
                if (e.events == 0 || n.events == 0)
                        bench_die("no events delivered");
                ep_rate[r] = (double)e.events * 1e9 / (double)e.wall_ns;
                np_rate[r] = (double)n.events * 1e9 / (double)n.wall_ns;
                ep_cpu[r] = (double)e.cpu_ns / (double)e.events;
                np_cpu[r] = (double)n.cpu_ns / (double)n.events;
        }
        np_disconnect(c);
        bench_daemon_stop(&d);
        close(epfd);
        load_done(&l);

        bench_baseline(SC, "the same consumer on in-process edge-triggered epoll");
        bench_row(SC, "rate", "ev_per_s", median_of(np_rate, reps), median_of(ep_rate, reps));
        bench_info(SC, "cpu_per_event", "ns", median_of(np_cpu, reps));
        bench_info(SC, "epoll_cpu_per_event", "ns", median_of(ep_cpu, reps));
        return bench_finish();
}
