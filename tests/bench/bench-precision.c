/*
 * Scenario 4, timer precision: 10,000 descriptors (eventfds, which never
 * become readable; fewer if the fd limit is lower: the daemon holds its own
 * copy of each) get deadlines spread over one second, set in a scrambled
 * order and armed with np_arm.  For each NP_ERR_TIMEOUT the lateness is its
 * delivery at the client (np_poll's return) minus the deadline, where the
 * deadline is the time read just BEFORE the np_set_deadline call plus its
 * ns: the daemon reads its clock later, so a negative lateness can only be
 * a timer that fired early.
 *
 * Baseline: the IPC one-way floor (RTT/2, same percentile), the least any
 * outcome needs to reach the client; Go's own deadlines come from the Go
 * program when Go is installed.  Two diagnostics are reported beside it:
 * the same machine's in-process timerfd lateness (what the kernel's timers
 * give here at all), and a second pass that sends each np_set_deadline at
 * once (an np_ping after it) instead of leaving it in the library's batch,
 * which separates the lateness the batching adds (a relative deadline
 * starts when the daemon reads it) from the daemon's own.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "baseline.h"
#include "bench.h"
#include "netpoll.h"

#define SC "timer_precision"
#define SPREAD_NS NSEC_PER_SEC
#define LEAD_NS (300 * NSEC_PER_MSEC) /* > pipelined set-up: the client polls by then */
#define MAX_EVENTS 256

typedef struct Pass {
        np_client *c;
        size_t n;
        const np_desc *descs;
        int64_t *deadline;
        Samples late;
        size_t early;
        int64_t setup_ns;
} Pass;

static size_t gcd(size_t a, size_t b)
{
        while (b) {
                size_t t = a % b;
                a = b;
                b = t;
        }
        return a;
}

/* Takes what np_poll(delay) returns, timestamped on return; returns how
 * many outcomes that was. */
static size_t collect(Pass *p, int64_t delay)
{
        np_event ev[MAX_EVENTS];
        int k = np_poll(p->c, delay, ev, MAX_EVENTS);
        int64_t t = now_ns();

        bench_check(k, "np_poll");
        for (int j = 0; j < k; j++) {
                if (ev[j].result != NP_ERR_TIMEOUT || ev[j].user >= p->n)
                        bench_die("unexpected outcome: %s", np_strerror(ev[j].result));
                int64_t l = t - p->deadline[ev[j].user];
                p->early += l < 0;
                samples_add(&p->late, l);
        }
        return (size_t)k;
}

/* Sets and arms every deadline, then collects every outcome.  sync: an
 * np_ping after each descriptor's calls, so each leaves at once; set-up
 * then takes a round trip per descriptor and may outlast the lead, so it
 * also takes in the outcomes that have arrived after each ping. */
static void pass_run(Pass *p, bool sync)
{
        /* Scrambled, as a server's connections set them, rather than
         * sorted: a stride coprime to n visits each slot of the spread once. */
        size_t n = p->n, stride = 7919, got = 0;

        while (gcd(stride, n) != 1)
                stride += 2;
        p->setup_ns = now_ns();
        for (size_t i = 0; i < n; i++) {
                int64_t ns = LEAD_NS + (int64_t)((i * stride) % n) * (SPREAD_NS / (int64_t)n);
                int64_t before = now_ns();
                bench_check(np_set_deadline(p->c, p->descs[i], ns, NP_READ), "np_set_deadline");
                p->deadline[i] = before + ns;
                bench_check(np_arm(p->c, p->descs[i], NP_READ), "np_arm");
                if (sync) {
                        bench_check(np_ping(p->c), "np_ping");
                        got += collect(p, 0);
                }
        }
        p->setup_ns = now_ns() - p->setup_ns;
        if (!sync && p->setup_ns > LEAD_NS)
                bench_note("timer precision: set-up took %.0f ms, longer than the %.0f ms lead",
                           (double)p->setup_ns / 1e6, (double)LEAD_NS / 1e6);
        while (got < n) {
                size_t k = collect(p, 5 * NSEC_PER_SEC);
                if (k == 0)
                        bench_die("no outcome for 5 s with %zu of %zu outstanding", n - got, n);
                got += k;
        }
}

static double us(int64_t ns)
{
        return (double)ns / 1e3;
}

int main(int argc, char **argv)
{
        Samples rtt = { 0 }, oneway = { 0 }, tfd = { 0 };
        BenchDaemon d;

        bench_init(argc, argv, "bench-precision");
        size_t n = bench_count(10000, 2000);
        size_t room = (size_t)bench_nofile() - 256;
        if (n > room) {
                bench_note("timer precision: %zu descriptors (fd limit), not %zu", room, n);
                n = room;
        }
        int *fds = calloc(n, sizeof(*fds));
        np_desc *descs = calloc(n, sizeof(*descs));
        int64_t *deadline = calloc(n, sizeof(*deadline));
        if (!fds || !descs || !deadline)
                bench_die("out of memory");

        ipc_pingpong(bench_count(10000, 2000), &rtt);
        for (size_t i = 0; i < rtt.n; i++)
                samples_add(&oneway, rtt.v[i] / 2);
        timerfd_lateness(n, LEAD_NS, SPREAD_NS, &tfd);

        bench_daemon_start(&d, "precision");
        np_client *c = bench_connect(&d);
        for (size_t i = 0; i < n; i++) {
                fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (fds[i] < 0)
                        bench_die("eventfd: %s", strerror(errno));
                bench_check(np_open(c, fds[i], i, &descs[i]), "np_open");
        }
        /* Every wait of the first pass ends in an outcome, so the second
         * can set and arm the same descriptors again. */
        Pass batched = { .c = c, .n = n, .descs = descs, .deadline = deadline };
        Pass sync = batched;
        pass_run(&batched, false);
        pass_run(&sync, true);
        np_disconnect(c);
        bench_daemon_stop(&d);
        for (size_t i = 0; i < n; i++)
                close(fds[i]);

        Samples *late = &batched.late;
        bench_baseline(SC, "IPC one-way floor (RTT/2), same percentile");
        bench_row(SC, "p50", "us", us(samples_pct(late, 50)), us(samples_pct(&oneway, 50)));
        bench_row(SC, "p99", "us", us(samples_pct(late, 99)), us(samples_pct(&oneway, 99)));
        bench_row(SC, "max", "us", us(samples_max(late)), us(samples_max(&oneway)));
        bench_info(SC, "early", "count", (double)(batched.early + sync.early));
        bench_info(SC, "min", "us", us(samples_min(late)));
        bench_info(SC, "descriptors", "count", (double)n);
        bench_info(SC, "setup", "ms", (double)batched.setup_ns / 1e6);
        bench_info(SC, "unbatched_p50", "us", us(samples_pct(&sync.late, 50)));
        bench_info(SC, "unbatched_p99", "us", us(samples_pct(&sync.late, 99)));
        bench_info(SC, "timerfd_p50", "us", us(samples_pct(&tfd, 50)));
        bench_info(SC, "timerfd_p99", "us", us(samples_pct(&tfd, 99)));
        samples_dump_cdf(late, "lateness-netpolld.dat", 1e3);
        samples_dump_cdf(&sync.late, "lateness-netpolld-unbatched.dat", 1e3);
        samples_dump_cdf(&tfd, "lateness-timerfd.dat", 1e3);
        samples_free(&batched.late);
        samples_free(&sync.late);
        samples_free(&rtt);
        samples_free(&oneway);
        samples_free(&tfd);
        free(fds);
        free(descs);
        free(deadline);
        return bench_finish();
}
