/*
 * Scenario 5, timer storm: as many eventfds as the fd limit allows (less
 * headroom; the daemon holds a copy of each, in its own process under the
 * same hard limit; 5,000 in a QUICK run) all get the same absolute
 * deadline and are armed.
 * Reported: the time from that deadline until the client has the last
 * timeout, and the longest stall of the daemon's loop meanwhile, seen as
 * the longest np_ping round trip of a second client pinging in a loop.
 *
 * Baselines: for the drain, the same number of timerfds with that deadline
 * in one in-process epoll set; for the stall, the longest ping round trip
 * over an equally long idle window right after the storm.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "bench.h"
#include "netpoll.h"

#define SC "timer_storm"
/* fds each process keeps for everything else; the daemon's own share
 * (reserved_fds, 512 by default) comes out of its limit first. */
#define HEADROOM 512
#define DAEMON_RESERVED 512
#define LEAD_NS NSEC_PER_SEC /* > set-up, even on a busy machine */
#define MAX_EVENTS 256
#define QUICK_MAX 5000 /* descriptors in a QUICK run */
#define SYNC_EVERY 128 /* descriptors: one library batch of set-deadline + arm */

typedef struct Pinger {
        np_client *c;
        atomic_bool stop;
        Samples start, rtt; /* start time and round trip of each ping */
        pthread_t thread;
} Pinger;

static void *pinger_main(void *arg)
{
        Pinger *p = arg;

        while (!atomic_load(&p->stop)) {
                int64_t t0 = now_ns();
                bench_check(np_ping(p->c), "np_ping");
                int64_t t1 = now_ns();
                samples_add(&p->start, t0);
                samples_add(&p->rtt, t1 - t0);
        }
        return NULL;
}

/* The longest round trip of a ping that overlapped [from, to]. */
static int64_t longest_ping(const Pinger *p, int64_t from, int64_t to)
{
        int64_t worst = 0;

        for (size_t i = 0; i < p->rtt.n; i++) {
                int64_t s = p->start.v[i], e = s + p->rtt.v[i];
                if (s <= to && e >= from && p->rtt.v[i] > worst)
                        worst = p->rtt.v[i];
        }
        return worst;
}

static void sleep_until(int64_t t)
{
        struct timespec ts = ns_to_timespec(t);

        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
}

/* The in-process storm: n timerfds due at one instant; ns from the
 * deadline until the last one is read. */
static int64_t timerfd_storm(size_t n)
{
        struct epoll_event ev[MAX_EVENTS];
        int epfd = epoll_create1(EPOLL_CLOEXEC);
        int *fds = calloc(n, sizeof(*fds));
        int64_t due = now_ns() + LEAD_NS, last = 0;
        struct itimerspec its = { .it_value = ns_to_timespec(due) };
        size_t got = 0;
        uint64_t ticks;

        if (epfd < 0 || !fds)
                bench_die("timerfd storm set-up: %s", strerror(errno));
        for (size_t i = 0; i < n; i++) {
                struct epoll_event e = { .events = EPOLLIN | EPOLLET, .data.u64 = i };
                fds[i] = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
                if (fds[i] < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, fds[i], &e) < 0 ||
                    timerfd_settime(fds[i], TFD_TIMER_ABSTIME, &its, NULL) < 0)
                        bench_die("timerfd storm set-up: %s", strerror(errno));
        }
        if (now_ns() > due)
                bench_note("timer storm: timerfd set-up outlasted its %.0f ms lead",
                           (double)LEAD_NS / 1e6);
        while (got < n) {
                int k = epoll_wait(epfd, ev, MAX_EVENTS, 5000);
                if (k < 0 && errno != EINTR)
                        bench_die("epoll_wait: %s", strerror(errno));
                if (k == 0)
                        bench_die("timerfd storm: nothing for 5 s");
                for (int j = 0; j < k; j++)
                        if (read(fds[ev[j].data.u64], &ticks, sizeof(ticks)) == sizeof(ticks))
                                got++;
                last = now_ns();
        }
        for (size_t i = 0; i < n; i++)
                close(fds[i]);
        free(fds);
        close(epfd);
        return last - due;
}

int main(int argc, char **argv)
{
        np_event ev[MAX_EVENTS];
        Pinger ping = { 0 };
        BenchDaemon d;

        bench_init(argc, argv, "bench-storm");
        int limit = bench_nofile();
        int keep = HEADROOM + DAEMON_RESERVED;
        size_t n = (size_t)(limit > 2 * keep ? limit - keep : limit / 2);
        if (bench_opt.quick && n > QUICK_MAX)
                n = QUICK_MAX;
        int *fds = calloc(n, sizeof(*fds));
        np_desc *descs = calloc(n, sizeof(*descs));
        if (!fds || !descs)
                bench_die("out of memory");

        bench_daemon_start(&d, "storm");
        np_client *c = bench_connect(&d);
        ping.c = bench_connect(&d);
        for (size_t i = 0; i < n; i++) {
                fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (fds[i] < 0)
                        bench_die("eventfd: %s", strerror(errno));
                bench_check(np_open(c, fds[i], i, &descs[i]), "np_open");
        }
        /* One absolute deadline for all: each call passes what is left of
         * the way to it.  The daemon starts a relative deadline when it
         * reads it, so requests queued behind a backlog would spread the
         * storm out; an np_ping every SYNC_EVERY descriptors keeps the
         * queue short, and the deadlines within a millisecond or so. */
        int64_t due = now_ns() + LEAD_NS, setup = now_ns();
        for (size_t i = 0; i < n; i++) {
                bench_check(np_set_deadline(c, descs[i], due - now_ns(), NP_READ),
                            "np_set_deadline");
                bench_check(np_arm(c, descs[i], NP_READ), "np_arm");
                if (i % SYNC_EVERY == SYNC_EVERY - 1)
                        bench_check(np_ping(c), "np_ping");
        }
        bench_check(np_ping(c), "np_ping");
        setup = now_ns() - setup;
        if (setup > LEAD_NS)
                bench_note("timer storm: set-up took %.0f ms, longer than the %.0f ms lead",
                           (double)setup / 1e6, (double)LEAD_NS / 1e6);
        /* Only now: a pinger competing with the set-up for the two cores
         * would slow it down. */
        if (pthread_create(&ping.thread, NULL, pinger_main, &ping) != 0)
                bench_die("pthread_create failed");

        /* Each deadline is the clock read just before its call plus the ns
         * passed, i.e. due itself: an outcome before due is early. */
        int64_t first = 0, last = 0;
        size_t early = 0;
        for (size_t got = 0; got < n;) {
                int k = np_poll(c, 5 * NSEC_PER_SEC, ev, MAX_EVENTS);
                bench_check(k, "np_poll");
                if (k == 0)
                        bench_die("no outcome for 5 s with %zu of %zu outstanding", n - got, n);
                last = now_ns();
                if (!first)
                        first = last;
                for (int j = 0; j < k; j++)
                        if (ev[j].result != NP_ERR_TIMEOUT)
                                bench_die("unexpected outcome: %s", np_strerror(ev[j].result));
                got += (size_t)k;
                if (last < due)
                        early += (size_t)k;
        }
        /* The idle window: as long as the storm, after a short pause. */
        int64_t idle_from = last + 20 * NSEC_PER_MSEC, idle_to = idle_from + (last - due);
        sleep_until(idle_to);
        atomic_store(&ping.stop, true);
        pthread_join(ping.thread, NULL);
        int64_t stall = longest_ping(&ping, due, last);
        int64_t idle = longest_ping(&ping, idle_from, idle_to);
        np_disconnect(ping.c);
        np_disconnect(c);
        bench_daemon_stop(&d);
        for (size_t i = 0; i < n; i++)
                close(fds[i]);

        int64_t base = timerfd_storm(n);

        bench_baseline(SC, "drain: as many in-process timerfds in one epoll set; "
                           "stall: longest ping over as long an idle window");
        bench_row(SC, "drain", "ms", (double)(last - due) / 1e6, (double)base / 1e6);
        bench_row(SC, "stall", "us", (double)stall / 1e3, (double)idle / 1e3);
        bench_info(SC, "early", "count", (double)early);
        bench_info(SC, "descriptors", "count", (double)n);
        bench_info(SC, "first", "ms", (double)(first - due) / 1e6);
        bench_info(SC, "setup", "ms", (double)setup / 1e6);
        samples_free(&ping.start);
        samples_free(&ping.rtt);
        free(fds);
        free(descs);
        return bench_finish();
}
