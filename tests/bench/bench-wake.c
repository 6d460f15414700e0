/*
 * Scenario 1, wake latency: one byte written to a pipe while the client is
 * parked in np_wait('r'); the time from just before write() to np_wait's
 * return.
 *
 * The writer starts the clock only once the wait is really parked: the
 * daemon counts it (np_status on a second connection, so the waiter's own
 * connection carries nothing else), the waiting thread sleeps in the
 * library, and the daemon sleeps in epoll_wait.  Without that, a write that
 * beats the wait to the daemon is answered as latched readiness and the
 * figure would mix two different paths.
 *
 * Baseline: the in-process epoll wake plus the IPC one-way floor (RTT/2),
 * percentile by percentile; both measured here, interleaved with netpolld
 * in rounds so that the machine's noise falls on all three alike.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "baseline.h"
#include "bench.h"
#include "netpoll.h"

#define ROUNDS 4
#define SC "wake_latency"

typedef struct NpWake {
        const BenchDaemon *daemon;
        np_client *observer; /* second connection: asks whether the wait is parked */
        int wfd;             /* the pipe's write end */
        size_t n;
        sem_t ready;
        _Atomic pid_t waiter_tid;
        _Atomic int64_t t0;
} NpWake;

/* Waits until the daemon has parked one wait, then until the waiting
 * thread and the daemon both sleep. */
static void wait_parked(NpWake *w)
{
        struct np_status st;
        int64_t give_up = now_ns() + 5 * NSEC_PER_SEC;

        for (;;) {
                bench_check(np_status(w->observer, &st), "np_status");
                if (st.waiters >= 1)
                        break;
                if (now_ns() > give_up)
                        bench_die("np_wait never parked in the daemon");
        }
        wait_until_sleeping(getpid(), atomic_load(&w->waiter_tid));
        wait_until_sleeping(w->daemon->pid, w->daemon->pid);
}

static void *np_writer(void *arg)
{
        NpWake *w = arg;

        for (size_t i = 0; i < w->n; i++) {
                while (sem_wait(&w->ready) < 0)
                        ;
                wait_parked(w);
                atomic_store(&w->t0, now_ns());
                if (write(w->wfd, "x", 1) != 1)
                        bench_die("write: %s", strerror(errno));
        }
        return NULL;
}

/* n wakes through netpolld on a fresh pipe; the first tenth is warm-up. */
static void np_wake(const BenchDaemon *d, np_client *c, np_client *observer, size_t n, Samples *lat)
{
        NpWake w = { .daemon = d, .observer = observer, .n = n + n / 10 };
        int p[2], r;
        pthread_t writer;
        np_desc desc;
        char b;

        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                bench_die("pipe2: %s", strerror(errno));
        bench_check(np_open(c, p[0], 0, &desc), "np_open");
        w.wfd = p[1];
        atomic_store(&w.waiter_tid, gettid());
        sem_init(&w.ready, 0, 0);
        if (pthread_create(&writer, NULL, np_writer, &w) != 0)
                bench_die("pthread_create failed");
        for (size_t i = 0; i < w.n; i++) {
                sem_post(&w.ready);
                r = np_wait(c, desc, NP_READ);
                int64_t t1 = now_ns();
                if (r != NP_OK)
                        bench_die("np_wait: %s", np_strerror(r));
                if (i >= n / 10)
                        samples_add(lat, t1 - atomic_load(&w.t0));
                while (read(p[0], &b, 1) == 1)
                        ;
        }
        pthread_join(writer, NULL);
        sem_destroy(&w.ready);
        bench_check(np_unblock(c, desc), "np_unblock");
        bench_check(np_close(c, desc), "np_close");
        close(p[0]);
        close(p[1]);
}

static void row3(const char *metric, double p, Samples *np, Samples *ep, Samples *oneway)
{
        double floor = (double)(samples_pct(ep, p) + samples_pct(oneway, p));

        bench_row(SC, metric, "us", (double)samples_pct(np, p) / 1e3, floor / 1e3);
}

int main(int argc, char **argv)
{
        Samples np = { 0 }, ep = { 0 }, rtt = { 0 }, oneway = { 0 }, floor = { 0 };
        BenchDaemon d;

        bench_init(argc, argv, "bench-wake");
        size_t per_round = bench_count(6000, 600);

        bench_daemon_start(&d, "wake");
        np_client *c = bench_connect(&d), *observer = bench_connect(&d);
        for (int round = 0; round < ROUNDS; round++) {
                ipc_pingpong(per_round, &rtt);
                epoll_wake(per_round, &ep);
                np_wake(&d, c, observer, per_round, &np);
        }
        np_disconnect(observer);
        np_disconnect(c);
        bench_daemon_stop(&d);

        for (size_t i = 0; i < rtt.n; i++)
                samples_add(&oneway, rtt.v[i] / 2);
        /* The floor's distribution, quantile by quantile: sorted sums. */
        (void)samples_pct(&ep, 50);
        (void)samples_pct(&oneway, 50);
        for (size_t i = 0; i < ep.n && i < oneway.n; i++)
                samples_add(&floor, ep.v[i] + oneway.v[i]);

        bench_baseline(SC, "in-process epoll wake + IPC one-way floor (RTT/2), same percentile");
        row3("p50", 50, &np, &ep, &oneway);
        row3("p99", 99, &np, &ep, &oneway);
        row3("max", 100, &np, &ep, &oneway);
        bench_info(SC, "epoll_p50", "us", (double)samples_pct(&ep, 50) / 1e3);
        bench_info(SC, "epoll_p99", "us", (double)samples_pct(&ep, 99) / 1e3);
        bench_info(SC, "ipc_oneway_p50", "us", (double)samples_pct(&oneway, 50) / 1e3);
        bench_info(SC, "ipc_oneway_p99", "us", (double)samples_pct(&oneway, 99) / 1e3);
        bench_info(SC, "samples", "count", (double)np.n);

        samples_dump_cdf(&np, "wake-netpolld.dat", 1e3);
        samples_dump_cdf(&ep, "wake-epoll.dat", 1e3);
        samples_dump_cdf(&oneway, "wake-ipc-oneway.dat", 1e3);
        samples_dump_cdf(&floor, "wake-floor.dat", 1e3);
        samples_free(&np);
        samples_free(&ep);
        samples_free(&rtt);
        samples_free(&oneway);
        samples_free(&floor);
        return bench_finish();
}
