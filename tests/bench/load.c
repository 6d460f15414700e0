/*
 * The closed-loop event load; see load.h.
 *
 * Credits are counted in bytes, not events: when a second byte reaches a
 * pipe before the first was drained, the two make one event, and counting
 * events would then leave the writer waiting for a credit that never comes.
 * Every byte is eventually read (edge-triggered epoll and netpolld's
 * latched readiness both report a byte that lands between a drain and the
 * next wait), so the loop cannot stall.
 *
 * A run starts its writer, lets a tenth of the duration pass as warm-up,
 * measures, stops the writer and drains until every written byte is read,
 * so the next run starts from quiet pipes.
 *
 * An event counts when its drain reads data: a readiness that finds the
 * pipe already drained (two bytes that made two edges but one read) costs
 * the consumer a wake-up yet delivers nothing, under either poller.
 */
#include "load.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench.h"

#define MAX_EVENTS 256
#define TICK_NS (100 * NSEC_PER_MSEC) /* longest a consumer blocks */

void load_init(Load *l, size_t n, size_t burst, size_t window)
{
        *l = (Load){ .n = n, .burst = burst, .window = window };
        l->pipes = calloc(n, sizeof(*l->pipes));
        if (!l->pipes)
                bench_die("out of memory");
        for (size_t i = 0; i < n; i++)
                if (pipe2(l->pipes[i], O_CLOEXEC | O_NONBLOCK) < 0)
                        bench_die("pipe2: %s", strerror(errno));
}

void load_done(Load *l)
{
        for (size_t i = 0; i < l->n; i++) {
                close(l->pipes[i][0]);
                close(l->pipes[i][1]);
        }
        free(l->pipes);
}

int load_register(const Load *l, np_client *c, np_desc *descs)
{
        int epfd = epoll_create1(EPOLL_CLOEXEC);

        if (epfd < 0)
                bench_die("epoll_create1: %s", strerror(errno));
        for (size_t i = 0; i < l->n; i++) {
                struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = i };
                if (epoll_ctl(epfd, EPOLL_CTL_ADD, l->pipes[i][0], &ev) < 0)
                        bench_die("epoll_ctl: %s", strerror(errno));
                bench_check(np_open(c, l->pipes[i][0], i, &descs[i]), "np_open");
        }
        return epfd;
}

static void *writer_main(void *arg)
{
        Load *l = arg;
        size_t next = 0;

        for (;;) {
                while (sem_wait(&l->credits) < 0)
                        ;
                if (atomic_load(&l->stop))
                        return NULL;
                for (size_t i = 0; i < l->burst; i++) {
                        if (write(l->pipes[next][1], "x", 1) == 1)
                                atomic_fetch_add(&l->written, 1);
                        next = (next + 1) % l->n;
                }
        }
}

static void writer_start(Load *l)
{
        atomic_store(&l->stop, false);
        atomic_store(&l->written, 0);
        l->consumed = l->credited = 0;
        sem_init(&l->credits, 0, (unsigned)l->window);
        if (pthread_create(&l->writer, NULL, writer_main, l) != 0)
                bench_die("pthread_create failed");
}

static void writer_stop(Load *l)
{
        atomic_store(&l->stop, true);
        sem_post(&l->credits);
        pthread_join(l->writer, NULL);
        sem_destroy(&l->credits);
}

/* Reads pipe i dry; returns the bytes read and updates the credits. */
static size_t drain(Load *l, size_t i)
{
        char buf[256];
        size_t total = 0;
        ssize_t n;

        while ((n = read(l->pipes[i][0], buf, sizeof(buf))) > 0)
                total += (size_t)n;
        if (n < 0 && errno != EAGAIN)
                bench_die("read: %s", strerror(errno));
        l->consumed += total;
        while (l->consumed >= l->credited + l->burst) {
                l->credited += l->burst;
                sem_post(&l->credits);
        }
        return total;
}

static int64_t cpu_now(pid_t daemon_pid)
{
        int64_t t = test_cpu_ns(getpid());

        if (daemon_pid > 0)
                t += test_cpu_ns(daemon_pid);
        return t;
}

/* Phases of a run, shared by both consumers. */
typedef struct Clock {
        int64_t start, measure_from, measure_to;
        uint64_t events_at_from;
        int64_t cpu_at_from;
        LoadResult res;
        bool measuring, done;
        pid_t daemon_pid;
} Clock;

static void clock_start(Clock *k, int64_t duration_ns, pid_t daemon_pid)
{
        *k = (Clock){ .start = now_ns(), .daemon_pid = daemon_pid };
        k->measure_from = k->start + duration_ns / 10;
        k->measure_to = k->measure_from + duration_ns;
}

/* Called after each batch with the running event count; true once the
 * measured part is over. */
static bool clock_tick(Clock *k, uint64_t events)
{
        int64_t t = now_ns();

        if (!k->measuring && t >= k->measure_from) {
                k->measuring = true;
                k->measure_from = t;
                k->events_at_from = events;
                k->cpu_at_from = cpu_now(k->daemon_pid);
        } else if (k->measuring && !k->done && t >= k->measure_to) {
                k->done = true;
                k->res = (LoadResult){
                        .events = events - k->events_at_from,
                        .wall_ns = t - k->measure_from,
                        .cpu_ns = cpu_now(k->daemon_pid) - k->cpu_at_from,
                };
        }
        return k->done;
}

LoadResult load_run_np(Load *l, np_client *c, const np_desc *descs, bool *armed, pid_t daemon_pid,
                       int64_t duration_ns)
{
        np_event ev[MAX_EVENTS];
        uint64_t events = 0;
        bool stopped = false;
        Clock k;

        for (size_t i = 0; i < l->n; i++)
                if (!armed[i]) {
                        bench_check(np_arm(c, descs[i], NP_READ), "np_arm");
                        armed[i] = true;
                }
        writer_start(l);
        clock_start(&k, duration_ns, daemon_pid);
        while (!stopped || l->consumed < atomic_load(&l->written)) {
                int n = np_poll(c, TICK_NS, ev, MAX_EVENTS);
                bench_check(n, "np_poll");
                for (int j = 0; j < n; j++) {
                        size_t i = ev[j].user;
                        if (i >= l->n)
                                continue; /* an idle descriptor: never expected */
                        if (ev[j].result != NP_OK)
                                bench_die("np_poll: %s", np_strerror(ev[j].result));
                        if (drain(l, i) > 0)
                                events++;
                        bench_check(np_arm(c, descs[i], NP_READ), "np_arm");
                }
                if (!stopped && clock_tick(&k, events)) {
                        writer_stop(l);
                        stopped = true;
                }
        }
        return k.res;
}

LoadResult load_run_epoll(Load *l, int epfd, int64_t duration_ns)
{
        struct epoll_event ev[MAX_EVENTS];
        uint64_t events = 0;
        bool stopped = false;
        Clock k;

        writer_start(l);
        clock_start(&k, duration_ns, 0);
        while (!stopped || l->consumed < atomic_load(&l->written)) {
                int n = epoll_wait(epfd, ev, MAX_EVENTS, (int)(TICK_NS / NSEC_PER_MSEC));
                if (n < 0 && errno != EINTR)
                        bench_die("epoll_wait: %s", strerror(errno));
                for (int j = 0; j < n; j++) {
                        size_t i = ev[j].data.u64;
                        if (i >= l->n)
                                continue;
                        if (drain(l, i) > 0)
                                events++;
                }
                if (!stopped && clock_tick(&k, events)) {
                        writer_stop(l);
                        stopped = true;
                }
        }
        return k.res;
}
