/*
 * Scenario 7: one client's backlog after the daemon was stalled.
 *
 * A daemon that is not scheduled for a while (a busy machine, a paused
 * VM) comes back to every event that arrived meanwhile.  In one flat epoll
 * set those wait in a single FIFO, so a client with k ready descriptors
 * would be served entirely before another client's one event.  The daemon
 * gives each connection an epoll set of its own and takes at most a budget
 * of events from each per turn; this program measures that.
 *
 * A "hog" connection registers k pipes (k = min(10000, what the fd limit
 * leaves), 4000 in quick mode) and arms a read wait on every one; a
 * "latency" connection parks np_wait on one pipe.  Then, in each trial:
 * SIGSTOP the daemon, write a byte into each of the hog's k pipes (a
 * backlog trial) or into none (a baseline trial), then into the latency
 * pipe, SIGCONT the daemon and time how long the latency client's np_wait
 * takes to return from that moment.  Backlog and baseline trials alternate,
 * so both see the machine in the same state.
 *
 * The hog's pipes are never read (their read ends exist only in the
 * daemon), so each trial's write lands in a non-empty pipe: that makes a
 * new edge on Linux 5.16 and later (pipe writes always wake pollers).
 *
 * Checked: every trial's wake arrives; the hog receives all k outcomes; the
 * backlog median is at most the baseline median plus 1 ms (a flat set takes
 * several milliseconds here at k = 10,000).  Printed: p50, p90 and max of
 * both, and the hog's drain time.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define TRIALS_FULL 40 /* of each kind */
#define TRIALS_QUICK 12
#define HOG_EVENTS_BATCH 1024

static struct {
        np_client *c;
        np_desc d;
        sem_t go, done;
        atomic_int stop;
        _Atomic int64_t woke;
        atomic_int result;
} lat;

static void *latency_waiter(void *arg)
{
        (void)arg;
        for (;;) {
                sem_wait(&lat.go);
                if (atomic_load(&lat.stop))
                        return NULL;
                int r = np_wait(lat.c, lat.d, NP_READ);
                atomic_store(&lat.woke, test_now());
                atomic_store(&lat.result, r);
                sem_post(&lat.done);
        }
}

/* Waits until the daemon counts `want` waiters (parked waits), at most 5 s. */
static bool await_waiters(np_client *mon, uint64_t want)
{
        struct np_status st;

        for (int i = 0; i < 5000; i++) {
                if (np_status(mon, &st) == 0 && st.waiters >= want)
                        return true;
                fault_sleep_ms(1);
        }
        return false;
}

/* Collects the hog's k outcomes; returns how many came within 10 s. */
static int drain_hog(np_client *hog, int k)
{
        static np_event evs[HOG_EVENTS_BATCH];
        int got = 0;
        int64_t until = test_now() + 10 * NSEC_PER_SEC_F;

        while (got < k && test_now() < until) {
                int n = np_poll(hog, 100 * NSEC_PER_MSEC_F, evs, HOG_EVENTS_BATCH);
                if (n < 0)
                        break;
                got += n;
        }
        return got;
}

static void report(const char *what, int64_t *v, size_t n)
{
        int64_t p50 = fault_percentile(v, n, 50), p90 = fault_percentile(v, n, 90);
        fault_say("%-9s %zu trials: wake after SIGCONT p50 %.0f us, p90 %.0f us, max %.0f us", what,
                  n, (double)p50 / 1e3, (double)p90 / 1e3, n ? (double)v[n - 1] / 1e3 : 0.0);
}

int main(int argc, char **argv)
{
        FaultDaemon dm;
        np_client *mon, *hog;
        pthread_t t;
        char config[256];
        int lp[2];

        fault_init(argc, argv, "backlog");
        int limit = fault_nofile();
        int k = fault_quick ? 4000 : 10000;
        if (k > limit - 256)
                k = limit - 256;
        /* Fewer, and a flat set's backlog would be too short to fail the
         * check below: the test would prove nothing. */
        if (k < 3000)
                fault_die("fd limit %d too low for a backlog that tells", limit);
        int trials = fault_quick ? TRIALS_QUICK : TRIALS_FULL;
        snprintf(config, sizeof(config),
                 "[limits]\nmax_descriptors_per_connection = 10000\nmax_descriptors_per_uid = 100%%\n"
                 "max_output_bytes = 8388608\n");
        fault_daemon_start(&dm, &(FaultDaemonOpts){ .config = config });
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");
        fault_must(fault_connect(dm.sock, &hog), "connect the hog");
        fault_must(fault_connect(dm.sock, &lat.c), "connect the latency client");

        int *w = calloc((size_t)k, sizeof(*w));
        np_desc *d = calloc((size_t)k, sizeof(*d));
        int64_t *base = calloc((size_t)trials, sizeof(*base));
        int64_t *back = calloc((size_t)trials, sizeof(*back));
        if (!w || !d || !base || !back)
                fault_die("out of memory");
        for (int i = 0; i < k; i++) {
                int p[2];
                if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                        fault_die("pipe: %s", strerror(errno));
                fault_must(np_open(hog, p[0], (uint64_t)i, &d[i]), "np_open (hog)");
                close(p[0]); /* the daemon keeps its copy; a write still makes an edge */
                w[i] = p[1];
        }
        if (pipe2(lp, O_CLOEXEC | O_NONBLOCK) < 0)
                fault_die("pipe: %s", strerror(errno));
        fault_must(np_open(lat.c, lp[0], 0, &lat.d), "np_open (latency)");
        fault_say("hog: %d pipes; %d trials of each kind, alternating", k, trials);

        sem_init(&lat.go, 0, 0);
        sem_init(&lat.done, 0, 0);
        pthread_create(&t, NULL, latency_waiter, NULL);

        size_t nb = 0, nk = 0;
        int lost = 0, hog_short = 0, stuck = 0;
        int64_t drain_max = 0;
        char buf[64];
        for (int i = 0; i < 2 * trials; i++) {
                bool backlog = i % 2 == 1;
                if (backlog) {
                        for (int j = 0; j < k; j++)
                                fault_must(np_arm(hog, d[j], NP_READ), "np_arm (hog)");
                        fault_must(np_ping(hog), "np_ping (hog)");
                }
                sem_post(&lat.go);
                if (!await_waiters(mon, backlog ? (uint64_t)k + 1 : 1)) {
                        stuck++;
                        fault_say("trial %d: the waits did not park", i);
                        break;
                }
                if (kill(dm.pid, SIGSTOP) < 0 || !fault_await_stopped(dm.pid, true))
                        fault_die("cannot stop the daemon: %s", strerror(errno));
                if (backlog)
                        for (int j = 0; j < k; j++)
                                (void)!write(w[j], "x", 1);
                (void)!write(lp[1], "x", 1);
                int64_t t_cont = test_now();
                kill(dm.pid, SIGCONT);
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += 10;
                if (sem_timedwait(&lat.done, &until) < 0) {
                        lost++;
                        fault_say("trial %d: no wake within 10 s", i);
                        break;
                }
                int64_t v = atomic_load(&lat.woke) - t_cont;
                if (atomic_load(&lat.result) != NP_OK)
                        lost++;
                else if (backlog)
                        back[nk++] = v;
                else
                        base[nb++] = v;
                (void)!read(lp[0], buf, sizeof(buf));
                if (backlog) {
                        int64_t t0 = test_now();
                        int got = drain_hog(hog, k);
                        int64_t took = test_now() - t0 + v;
                        hog_short += got != k;
                        if (took > drain_max)
                                drain_max = took;
                }
        }
        atomic_store(&lat.stop, 1);
        sem_post(&lat.go);
        pthread_join(t, NULL);

        report("baseline", base, nb);
        report("backlog", back, nk);
        fault_say("hog: all %d outcomes delivered within %.1f ms of SIGCONT (worst trial)", k,
                  (double)drain_max / 1e6);
        int64_t b50 = fault_percentile(base, nb, 50), k50 = fault_percentile(back, nk, 50);
        fault_check(stuck == 0 && lost == 0, "%d trials lost their wake, %d did not park", lost,
                    stuck);
        fault_check(hog_short == 0, "%d trials: the hog missed some of its %d outcomes", hog_short,
                    k);
        fault_check(nb == (size_t)trials && nk == (size_t)trials, "only %zu + %zu trials ran", nb,
                    nk);
        fault_check(k50 <= b50 + NSEC_PER_MSEC_F,
                    "behind a %d-event backlog the other client's wake median is %.0f us, more "
                    "than 1 ms over the baseline's %.0f us",
                    k, (double)k50 / 1e3, (double)b50 / 1e3);
        fault_check(fault_daemon_alive(&dm), "netpolld died");

        for (int i = 0; i < k; i++) {
                np_close(hog, d[i]);
                close(w[i]);
        }
        np_close(lat.c, lat.d);
        close(lp[0]);
        close(lp[1]);
        np_disconnect(lat.c);
        np_disconnect(hog);
        np_disconnect(mon);
        free(w);
        free(d);
        free(base);
        free(back);
        fault_daemon_stop(&dm);
        return fault_finish();
}
