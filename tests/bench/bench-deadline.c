/*
 * Scenario 3, deadline churn: np_set_deadline calls per second, each on
 * the next of 1,000 registered descriptors, every deadline a minute out so
 * that each call moves an armed timer in the daemon's heap.  The clock
 * stops after an np_ping that follows the last call, so the rate counts
 * calls the daemon has applied, not calls the library has merely queued.
 *
 * Baseline: the IPC round-trip rate over AF_UNIX SOCK_SEQPACKET between two
 * processes, i.e. what one synchronous request per call could reach.
 */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "baseline.h"
#include "bench.h"
#include "netpoll.h"

#define SC "deadline_churn"
#define DESCS 1000
#define MAX_REPS 5

static double churn(np_client *c, const np_desc *descs, int64_t duration_ns)
{
        int64_t t0 = now_ns(), t1;
        uint64_t calls = 0;

        do {
                for (int i = 0; i < 1024; i++, calls++) {
                        int64_t ns = 60 * NSEC_PER_SEC + (int64_t)(calls % 4096) * 1000;
                        bench_check(np_set_deadline(c, descs[calls % DESCS], ns, NP_READ),
                                    "np_set_deadline");
                }
        } while (now_ns() - t0 < duration_ns);
        bench_check(np_ping(c), "np_ping");
        t1 = now_ns();
        return (double)calls * 1e9 / (double)(t1 - t0);
}

int main(int argc, char **argv)
{
        double np_rate[MAX_REPS], ipc[MAX_REPS];
        np_desc descs[DESCS];
        int fds[DESCS];
        BenchDaemon d;

        bench_init(argc, argv, "bench-deadline");
        size_t reps = bench_count(5, 1);
        int64_t duration = (int64_t)bench_count(1000, 300) * NSEC_PER_MSEC;

        bench_daemon_start(&d, "deadline");
        np_client *c = bench_connect(&d);
        for (size_t i = 0; i < DESCS; i++) {
                fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (fds[i] < 0)
                        bench_die("eventfd: %s", strerror(errno));
                bench_check(np_open(c, fds[i], i, &descs[i]), "np_open");
        }
        churn(c, descs, duration / 10); /* warm-up: the heap reaches its size */
        for (size_t r = 0; r < reps; r++) {
                ipc[r] = ipc_rate(duration);
                np_rate[r] = churn(c, descs, duration);
        }
        np_disconnect(c);
        bench_daemon_stop(&d);
        for (size_t i = 0; i < DESCS; i++)
                close(fds[i]);

        bench_baseline(SC, "IPC round trips per second (AF_UNIX SOCK_SEQPACKET, two processes)");
        bench_row(SC, "rate", "calls_per_s", median_of(np_rate, reps), median_of(ipc, reps));
        return bench_finish();
}
