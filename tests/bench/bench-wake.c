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
 *
 * Placement: where the kernel puts each woken task decides most of the
 * figure on a VM whose idle vCPUs halt (an IPI to a halted vCPU is ~20 us;
 * README.md has the trace).  So every series is taken twice in one run:
 * unpinned, then with the bench and both daemons pinned to one CPU; and the
 * in-process epoll wake tells which state the machine was in.
 *
 * A third series, the relay (baseline.h), is the same two hops through a
 * minimal process of our own with no protocol: what any out-of-process
 * poller pays on this machine.  It is a diagnostic, not the target's floor.
 *
 * Two daemons run side by side: the shipped configuration (its idle spin,
 * poller.c) and one with idle_spin = 0 (nospin_*).  Besides the parked wake
 * (which no spin can shorten: the daemon sleeps by construction), they are
 * compared where a spin can pay, an event 20 us after the wait was sent,
 * and for what it costs: CPU per second at rest with 100 clients parked and
 * under a 1 kHz wake rate.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "baseline.h"
#include "bench.h"
#include "netpoll.h"

#define ROUNDS 4
#define SC "wake_latency"
#define GAP_NS (20 * 1000)
#define REST_CLIENTS 100

typedef struct NpWake {
        const BenchDaemon *daemon;
        np_client *observer; /* second connection: asks whether the wait is parked */
        int wfd;             /* the pipe's write end */
        size_t n;
        int64_t gap; /* < 0: write once parked and asleep; else this long after t_sent */
        sem_t ready;
        _Atomic pid_t waiter_tid;
        _Atomic int64_t t_sent; /* the waiter's time just before np_wait */
        _Atomic int64_t t0;
} NpWake;

/* One daemon under test, with its two connections. */
typedef struct Target {
        BenchDaemon d;
        np_client *c, *observer;
} Target;

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
                if (w->gap < 0)
                        wait_parked(w);
                else
                        while (now_ns() < atomic_load(&w->t_sent) + w->gap)
                                ;
                atomic_store(&w->t0, now_ns());
                if (write(w->wfd, "x", 1) != 1)
                        bench_die("write: %s", strerror(errno));
        }
        return NULL;
}

/* n wakes through netpolld on a fresh pipe; the first tenth is warm-up. */
static void np_wake(Target *t, size_t n, int64_t gap, Samples *lat)
{
        NpWake w = { .daemon = &t->d, .observer = t->observer, .n = n + n / 10, .gap = gap };
        int p[2], r;
        pthread_t writer;
        np_desc desc;
        char b;

        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                bench_die("pipe2: %s", strerror(errno));
        bench_check(np_open(t->c, p[0], 0, &desc), "np_open");
        w.wfd = p[1];
        atomic_store(&w.waiter_tid, gettid());
        sem_init(&w.ready, 0, 0);
        if (pthread_create(&writer, NULL, np_writer, &w) != 0)
                bench_die("pthread_create failed");
        for (size_t i = 0; i < w.n; i++) {
                atomic_store(&w.t_sent, now_ns());
                sem_post(&w.ready);
                r = np_wait(t->c, desc, NP_READ);
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
        bench_check(np_unblock(t->c, desc), "np_unblock");
        bench_check(np_close(t->c, desc), "np_close");
        close(p[0]);
        close(p[1]);
}

/* ---- CPU cost: at rest, and at a 1 kHz wake rate ---- */

typedef struct Rate {
        np_client *c;
        np_desc desc;
        int rfd;
        _Atomic bool stop;
        _Atomic int64_t t0;
        int64_t cpu_ns; /* the waiting thread's CPU time over its loop */
        Samples *lat;
} Rate;

static void nap(int64_t ns)
{
        struct timespec ts = { .tv_sec = ns / NSEC_PER_SEC, .tv_nsec = ns % NSEC_PER_SEC };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int64_t thread_cpu_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

static void *rate_waiter(void *arg)
{
        Rate *rt = arg;
        int64_t c0 = thread_cpu_ns();
        char b;

        while (!atomic_load(&rt->stop)) {
                int r = np_wait(rt->c, rt->desc, NP_READ);
                int64_t t1 = now_ns();
                if (r == NP_ERR_CLOSING)
                        break;
                if (r != NP_OK)
                        bench_die("np_wait: %s", np_strerror(r));
                samples_add(rt->lat, t1 - atomic_load(&rt->t0));
                while (read(rt->rfd, &b, 1) == 1)
                        ;
        }
        rt->cpu_ns = thread_cpu_ns() - c0;
        return NULL;
}

/* A write every millisecond for dur ns, each woken through np_wait by a
 * thread of its own.  Returns the daemon's CPU ms per second; *ret_lib the
 * waiting thread's (the library's, and its read of the pipe). */
static double rate_1khz(Target *t, int64_t dur, Samples *lat, double *ret_lib)
{
        Rate rt = { .c = t->c, .lat = lat };
        int p[2];
        pthread_t th;
        struct timespec next;

        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                bench_die("pipe2: %s", strerror(errno));
        bench_check(np_open(t->c, p[0], 0, &rt.desc), "np_open");
        rt.rfd = p[0];
        if (pthread_create(&th, NULL, rate_waiter, &rt) != 0)
                bench_die("pthread_create failed");
        nap(10 * NSEC_PER_MSEC);
        int64_t d0 = test_cpu_ns(t->d.pid), start = now_ns();
        clock_gettime(CLOCK_MONOTONIC, &next);
        while (now_ns() - start < dur) {
                next.tv_nsec += NSEC_PER_MSEC;
                if (next.tv_nsec >= NSEC_PER_SEC) {
                        next.tv_nsec -= NSEC_PER_SEC;
                        next.tv_sec++;
                }
                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
                        ;
                atomic_store(&rt.t0, now_ns());
                if (write(p[1], "x", 1) != 1)
                        bench_die("write: %s", strerror(errno));
        }
        int64_t d1 = test_cpu_ns(t->d.pid), end = now_ns();
        atomic_store(&rt.stop, true);
        bench_check(np_unblock(t->c, rt.desc), "np_unblock");
        pthread_join(th, NULL);
        bench_check(np_close(t->c, rt.desc), "np_close");
        close(p[0]);
        close(p[1]);
        *ret_lib = (double)rt.cpu_ns / 1e6 / ((double)(end - start) / 1e9);
        return (double)(d1 - d0) / 1e6 / ((double)(end - start) / 1e9);
}

/* REST_CLIENTS connections, each with a read wait armed on a pipe that
 * never becomes ready; the daemon's CPU ms per second over dur. */
static double rest_cpu(Target *t, int64_t dur)
{
        np_client *cs[REST_CLIENTS];
        int pipes[REST_CLIENTS][2];

        for (int i = 0; i < REST_CLIENTS; i++) {
                np_desc desc;
                cs[i] = bench_connect(&t->d);
                if (pipe2(pipes[i], O_CLOEXEC | O_NONBLOCK) < 0)
                        bench_die("pipe2: %s", strerror(errno));
                bench_check(np_open(cs[i], pipes[i][0], 0, &desc), "np_open");
                bench_check(np_arm(cs[i], desc, NP_READ), "np_arm");
                bench_check(np_ping(cs[i]), "np_ping");
        }
        nap(50 * NSEC_PER_MSEC); /* let the spin budget settle */
        int64_t d0 = test_cpu_ns(t->d.pid), start = now_ns();
        nap(dur);
        int64_t d1 = test_cpu_ns(t->d.pid), end = now_ns();
        for (int i = 0; i < REST_CLIENTS; i++) {
                np_disconnect(cs[i]);
                close(pipes[i][0]);
                close(pipes[i][1]);
        }
        return (double)(d1 - d0) / 1e6 / ((double)(end - start) / 1e9);
}

/* ---- the run ---- */

/* Every series of one placement. */
typedef struct Series {
        Samples np, nospin, ep, rtt, oneway, relay;
} Series;

static void rounds(Target *spin, Target *nospin, size_t per_round, Series *s)
{
        for (int round = 0; round < ROUNDS; round++) {
                ipc_pingpong(per_round, &s->rtt);
                epoll_wake(per_round, &s->ep);
                relay_wake(per_round, &s->relay);
                /* Alternating which goes first: placement drifts. */
                np_wake(round % 2 ? nospin : spin, per_round, -1, round % 2 ? &s->nospin : &s->np);
                np_wake(round % 2 ? spin : nospin, per_round, -1, round % 2 ? &s->np : &s->nospin);
        }
        for (size_t i = 0; i < s->rtt.n; i++)
                samples_add(&s->oneway, s->rtt.v[i] / 2);
}

static void series_free(Series *s)
{
        samples_free(&s->np);
        samples_free(&s->nospin);
        samples_free(&s->ep);
        samples_free(&s->rtt);
        samples_free(&s->oneway);
        samples_free(&s->relay);
}

static double us(Samples *s, double p)
{
        return (double)samples_pct(s, p) / 1e3;
}

static void row3(const char *metric, double p, Series *s)
{
        double floor = (double)(samples_pct(&s->ep, p) + samples_pct(&s->oneway, p));

        bench_row(SC, metric, "us", us(&s->np, p), floor / 1e3);
}

static void target_start(Target *t, const char *tag, const char *config)
{
        bench_daemon_config = config;
        bench_daemon_start(&t->d, tag);
        bench_daemon_config = "";
        t->c = bench_connect(&t->d);
        t->observer = bench_connect(&t->d);
}

static void target_stop(Target *t)
{
        np_disconnect(t->observer);
        np_disconnect(t->c);
        bench_daemon_stop(&t->d);
}

int main(int argc, char **argv)
{
        Series un = { 0 }, pin = { 0 };
        Samples floor = { 0 }, gap = { 0 }, gap0 = { 0 }, khz = { 0 }, khz0 = { 0 };
        Target spin, nospin;
        cpu_set_t all, one;

        bench_init(argc, argv, "bench-wake");
        size_t per_round = bench_count(4000, 500);
        int64_t dur = bench_opt.quick ? 500 * NSEC_PER_MSEC : 2 * NSEC_PER_SEC;

        target_start(&spin, "wake", "");
        target_start(&nospin, "wake-nospin", "[daemon]\nidle_spin = 0\n");

        rounds(&spin, &nospin, per_round, &un);

        /* The same rounds with everything on the CPU this thread is on. */
        if (sched_getaffinity(0, sizeof(all), &all) < 0)
                bench_die("sched_getaffinity: %s", strerror(errno));
        CPU_ZERO(&one);
        CPU_SET(sched_getcpu(), &one);
        bench_pin(getpid(), &one);
        bench_pin(spin.d.pid, &one);
        bench_pin(nospin.d.pid, &one);
        rounds(&spin, &nospin, per_round, &pin);
        bench_pin(getpid(), &all);
        bench_pin(spin.d.pid, &all);
        bench_pin(nospin.d.pid, &all);

        /* Where a spin can pay: the event 20 us after the wait was sent;
         * and what it costs at 1 kHz.  The two settings take turns,
         * each round in another order (placement drifts over a run). */
        Target *var[2] = { &spin, &nospin };
        Samples *gaps[2] = { &gap, &gap0 }, *khzs[2] = { &khz, &khz0 };
        double dcpu[2] = { 0 }, lcpu[2] = { 0 };
        for (int round = 0; round < 6; round++)
                for (int k = 0; k < 2; k++) {
                        int v = (k + round) % 2;
                        double lib;
                        np_wake(var[v], per_round / 3, GAP_NS, gaps[v]);
                        dcpu[v] += rate_1khz(var[v], dur / 6, khzs[v], &lib) / 6;
                        lcpu[v] += lib / 6;
                }
        double khz_cpu = dcpu[0], khz_cpu0 = dcpu[1];
        double lib = lcpu[0], lib0 = lcpu[1];
        double rest = rest_cpu(&spin, dur), rest0 = rest_cpu(&nospin, dur);

        target_stop(&nospin);
        target_stop(&spin);

        /* The floor's distribution, quantile by quantile: sorted sums. */
        (void)samples_pct(&un.ep, 50);
        (void)samples_pct(&un.oneway, 50);
        for (size_t i = 0; i < un.ep.n && i < un.oneway.n; i++)
                samples_add(&floor, un.ep.v[i] + un.oneway.v[i]);

        bench_baseline(SC, "in-process epoll wake + IPC one-way floor (RTT/2), same percentile; "
                           "pinned_*: bench and daemon on one CPU, floor measured pinned too");
        row3("p50", 50, &un);
        row3("p99", 99, &un);
        row3("max", 100, &un);
        row3("pinned_p50", 50, &pin);
        row3("pinned_p99", 99, &pin);
        row3("pinned_max", 100, &pin);
        bench_info(SC, "epoll_p50", "us", us(&un.ep, 50));
        bench_info(SC, "epoll_p99", "us", us(&un.ep, 99));
        bench_info(SC, "ipc_oneway_p50", "us", us(&un.oneway, 50));
        bench_info(SC, "ipc_oneway_p99", "us", us(&un.oneway, 99));
        bench_info(SC, "pinned_epoll_p50", "us", us(&pin.ep, 50));
        bench_info(SC, "pinned_ipc_oneway_p50", "us", us(&pin.oneway, 50));
        bench_info(SC, "relay_p50", "us", us(&un.relay, 50));
        bench_info(SC, "relay_p99", "us", us(&un.relay, 99));
        bench_info(SC, "pinned_relay_p50", "us", us(&pin.relay, 50));
        bench_info(SC, "pinned_relay_p99", "us", us(&pin.relay, 99));
        bench_info(SC, "relay_p50_ratio", "x", us(&un.np, 50) / us(&un.relay, 50));
        bench_info(SC, "pinned_relay_p50_ratio", "x", us(&pin.np, 50) / us(&pin.relay, 50));
        bench_info(SC, "nospin_p50", "us", us(&un.nospin, 50));
        bench_info(SC, "nospin_p99", "us", us(&un.nospin, 99));
        bench_info(SC, "nospin_pinned_p50", "us", us(&pin.nospin, 50));
        bench_info(SC, "nospin_pinned_p99", "us", us(&pin.nospin, 99));
        bench_info(SC, "gap20_p50", "us", us(&gap, 50));
        bench_info(SC, "gap20_p99", "us", us(&gap, 99));
        bench_info(SC, "gap20_nospin_p50", "us", us(&gap0, 50));
        bench_info(SC, "gap20_nospin_p99", "us", us(&gap0, 99));
        bench_info(SC, "1khz_p50", "us", us(&khz, 50));
        bench_info(SC, "1khz_nospin_p50", "us", us(&khz0, 50));
        bench_info(SC, "1khz_daemon_cpu", "ms/s", khz_cpu);
        bench_info(SC, "1khz_nospin_daemon_cpu", "ms/s", khz_cpu0);
        bench_info(SC, "1khz_library_cpu", "ms/s", lib);
        bench_info(SC, "1khz_nospin_library_cpu", "ms/s", lib0);
        bench_info(SC, "rest_daemon_cpu", "ms/s", rest);
        bench_info(SC, "rest_nospin_daemon_cpu", "ms/s", rest0);
        bench_info(SC, "samples", "count", (double)un.np.n);
        double ep50 = us(&un.ep, 50);
        bench_note("wake latency: machine state: in-process epoll wake p50 %.1f us unpinned, "
                   "%.1f us pinned (%s)",
                   ep50, us(&pin.ep, 50),
                   ep50 <= 2 * us(&pin.ep, 50) + 1
                           ? "fast: the baseline's wakes stay on one CPU or reach a polling one"
                           : "slow: the baseline's wakes IPI a halted vCPU");

        samples_dump_cdf(&un.np, "wake-netpolld.dat", 1e3);
        samples_dump_cdf(&un.nospin, "wake-netpolld-nospin.dat", 1e3);
        samples_dump_cdf(&un.ep, "wake-epoll.dat", 1e3);
        samples_dump_cdf(&un.oneway, "wake-ipc-oneway.dat", 1e3);
        samples_dump_cdf(&un.relay, "wake-relay.dat", 1e3);
        samples_dump_cdf(&floor, "wake-floor.dat", 1e3);
        samples_dump_cdf(&pin.np, "wake-netpolld-pinned.dat", 1e3);
        series_free(&un);
        series_free(&pin);
        samples_free(&floor);
        samples_free(&gap);
        samples_free(&gap0);
        samples_free(&khz);
        samples_free(&khz0);
        return bench_finish();
}
