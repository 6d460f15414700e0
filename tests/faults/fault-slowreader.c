/*
 * Scenario 2: a client that never reads while many of its descriptors
 * become ready.
 *
 * The daemon runs with max_descriptors_per_connection = 10000 and an
 * explicit max_output_bytes (256 KiB).  A forked "slow" client speaks the
 * raw protocol: it opens K pipes (K = min(10000, what the fd limit leaves),
 * 253 per datagram; the daemon keeps its copy of each read end and the
 * client closes its own at once, holding only the write ends), then never
 * reads another byte.  In rounds 20 ms apart it sends a quiet OP_ARM for
 * every descriptor and writes one byte into every pipe, so each round makes
 * K readiness events the daemon must queue for it, until the daemon cuts it
 * off (its sends then fail with EPIPE).
 *
 * Checked: the slow client is cut off, and the daemon logs a warning naming
 * its pid; the daemon's RSS (sampled every 5 ms from /proc) stays under a
 * stated cap (baseline + 16 MiB); all K of its fds are released; and another
 * client's wake latency (np_wait on a pipe a thread writes 300 us later)
 * does not degrade.  Its baseline is measured in the same run, alternately
 * with the storms: under a control load (load_control_main in
 * slowreader-load.c) that creates, sends away over SCM_RIGHTS, makes ready
 * and frees as many pipes from SCHED_IDLE processes, without the daemon.  The
 * p99 during the storms must stay under 2x the control's in full mode; in
 * quick mode (CI) only 10x AND 5 ms worse fails.  The p99 before any load
 * is printed too.  A storm's window runs from the slow client's last open
 * to 60 ms after it was cut off and killed, so the daemon's teardown of its
 * fds is measured too; a control window likewise ends 60 ms after its
 * process was killed.  Storms repeat (with a fresh slow client: at least 2 in
 * quick mode, 16 in full) and go on until at least 200 (quick) or 4000 (full)
 * latency samples fell inside them.  FAULTS_TRACE=1 prints every sample and
 * window in CLOCK_MONOTONIC seconds, to lay over a scheduler trace taken
 * with perf sched record -k CLOCK_MONOTONIC.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "probe.h"
#include "slowreader-load.h"

#define MAX_OUTPUT_BYTES 262144
#define RSS_HEADROOM (16 * 1024 * 1024) /* the stated cap: baseline RSS + 16 MiB */
#define BEFORE_SAMPLES 500
#define DURING_SAMPLES 200       /* quick mode; full mode wants DURING_SAMPLES_FULL */
#define DURING_SAMPLES_FULL 4000 /* a p99 over this many moves less from run to run */
#define MAX_STORMS 24
#define MAX_SAMPLES 200000
#define TEARDOWN_MS 60   /* measured after the cut, while the daemon closes its fds */

/* ---- measurements in the parent ---- */

typedef struct Sample {
        int64_t at;  /* when the pipe was written */
        int64_t lat; /* until np_wait returned */
} Sample;

static struct {
        np_client *c;
        np_desc d;
        int pipe[2];
        sem_t go, written;
        atomic_int stop;
        _Atomic int64_t t_write;
        Sample *v;
        atomic_size_t n;
        atomic_int errors;
} lat;

static void *latency_writer(void *arg)
{
        (void)arg;
        for (size_t i = 0; i < MAX_SAMPLES; i++) {
                sem_wait(&lat.go);
                if (atomic_load(&lat.stop)) {
                        sem_post(&lat.written);
                        break;
                }
                /* Let the wait park first: this measures a wake. */
                struct timespec ts = { .tv_nsec = 300 * 1000 };
                nanosleep(&ts, NULL);
                atomic_store(&lat.t_write, test_now());
                (void)!write(lat.pipe[1], "x", 1);
                sem_post(&lat.written);
        }
        return NULL;
}

static void *latency_sampler(void *arg)
{
        char buf[64];

        (void)arg;
        for (size_t i = 0; i < MAX_SAMPLES && !atomic_load(&lat.stop); i++) {
                sem_post(&lat.go);
                int r = np_wait(lat.c, lat.d, NP_READ);
                int64_t t = test_now();
                sem_wait(&lat.written);
                (void)!read(lat.pipe[0], buf, sizeof(buf));
                if (r != NP_OK) {
                        atomic_fetch_add(&lat.errors, 1);
                        continue;
                }
                int64_t tw = atomic_load(&lat.t_write);
                size_t n = atomic_load(&lat.n);
                lat.v[n] = (Sample){ .at = tw, .lat = t - tw };
                atomic_store(&lat.n, n + 1);
        }
        atomic_store(&lat.stop, 1);
        sem_post(&lat.go); /* release the writer */
        return NULL;
}

/* Reads one report (what, value) from the slow client within timeout_ms. */
static char read_report(int ctl, int timeout_ms, int *value)
{
        struct pollfd pfd = { .fd = ctl, .events = POLLIN };
        char buf[1 + sizeof(int)];

        if (poll(&pfd, 1, timeout_ms) <= 0)
                return 0;
        if (read(ctl, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
                return 0;
        memcpy(value, buf + 1, sizeof(int));
        return buf[0];
}

/* Latency figures over the samples whose write fell inside one of nw
 * windows [from[i], to[i]). */
typedef struct Figures {
        size_t n;
        int64_t p50, p99, max;
} Figures;

static Figures window_stats(const Sample *s, size_t n, const int64_t *from, const int64_t *to,
                            int nw)
{
        int64_t *v = malloc((n ? n : 1) * sizeof(*v));
        Figures f = { 0 };

        if (!v)
                fault_die("out of memory");
        for (size_t i = 0; i < n; i++)
                for (int w = 0; w < nw; w++)
                        if (s[i].at >= from[w] && s[i].at < to[w]) {
                                v[f.n++] = s[i].lat;
                                break;
                        }
        f.p50 = fault_percentile(v, f.n, 50);
        f.p99 = fault_percentile(v, f.n, 99);
        f.max = f.n ? v[f.n - 1] : 0;
        free(v);
        return f;
}

static size_t samples_in(int64_t from, int64_t to)
{
        size_t n = atomic_load(&lat.n), inside = 0;

        for (size_t i = 0; i < n; i++)
                inside += lat.v[i].at >= from && lat.v[i].at < to;
        return inside;
}

/* Runs one control load (load_control_main in a child) and records its window. */
static void run_control(int k, int i, int64_t *from, int64_t *to)
{
        int rd, wr, value = 0, status;
        pid_t pid = load_fork(&rd, &wr);

        if (pid == 0)
                load_control_main(k, wr);
        char what = read_report(rd, 60000, &value);
        *from = test_now();
        if (what == 'o')
                what = read_report(rd, 60000, &value);
        close(rd);
        /* Its end and the same wait as a storm's, inside the window. */
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fault_sleep_ms(TEARDOWN_MS);
        *to = test_now();
        if (what != 'd')
                fault_die("control %d: the control load failed (%c %s)", i, what ? what : '-',
                          strerror(-value));
}

static void say_figures(const char *what, const Figures *f)
{
        fault_say("wake latency %-8s %4zu samples, p50 %.0f us, p99 %.0f us, max %.0f us", what,
                  f->n, (double)f->p50 / 1e3, (double)f->p99 / 1e3, (double)f->max / 1e3);
}

int main(int argc, char **argv)
{
        FaultDaemon dm;
        struct np_status st;
        np_client *mon;
        pthread_t t_w, t_s;
        char config[256];
        int limit, k, base_fds, storms = 0, cut = 0;
        int64_t storm_from[MAX_STORMS], storm_to[MAX_STORMS];
        int64_t control_from[MAX_STORMS], control_to[MAX_STORMS];
        size_t inside_storms = 0;
        int64_t storm_cpu = 0; /* the daemon's CPU time inside the storm windows */

        fault_init(argc, argv, "slowreader");
        limit = fault_nofile();
        k = fault_quick ? 4000 : 10000;
        /* The slow client holds k write ends plus a batch of read ends; the
         * daemon k copies plus its own. */
        if (k > limit - 2 * FDS_PER_OPEN - 64)
                k = limit - 2 * FDS_PER_OPEN - 64;
        if (k < 1000)
                fault_die("fd limit %d too low", limit);
        snprintf(config, sizeof(config),
                 "[limits]\nmax_descriptors_per_connection = 10000\nmax_output_bytes = %d\n"
                 "max_descriptors_per_uid = 100%%\n",
                 MAX_OUTPUT_BYTES);
        fault_daemon_start(&dm, &(FaultDaemonOpts){ .config = config });
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");
        fault_must(fault_connect(dm.sock, &lat.c), "connect the latency client");
        base_fds = fault_settle(mon, dm.pid, 2, &st);
        int end_fds = base_fds - 1; /* when the latency client is gone */
        if (pipe2(lat.pipe, O_CLOEXEC | O_NONBLOCK) < 0)
                fault_die("pipe: %s", strerror(errno));
        fault_must(np_open(lat.c, lat.pipe[0], 1, &lat.d), "np_open (latency pipe)");
        base_fds += 1; /* the daemon's copy of the latency pipe (in the main epoll set) */
        int64_t base_rss = test_proc_status_kib(dm.pid, "VmRSS") * 1024;
        int64_t cap = base_rss + RSS_HEADROOM;
        fault_say("slow client: %d pipes, max_output_bytes %d; daemon baseline %d fds, RSS %.1f "
                  "MiB, cap %.1f MiB (baseline + 16 MiB)",
                  k, MAX_OUTPUT_BYTES, base_fds, (double)base_rss / 1048576.0,
                  (double)cap / 1048576.0);

        lat.v = calloc(MAX_SAMPLES, sizeof(*lat.v));
        if (!lat.v)
                fault_die("out of memory");
        sem_init(&lat.go, 0, 0);
        sem_init(&lat.written, 0, 0);
        FaultRss *rss = rss_start(dm.pid, base_rss);
        pthread_create(&t_w, NULL, latency_writer, NULL);
        pthread_create(&t_s, NULL, latency_sampler, NULL);

        int64_t before_from = test_now();
        for (int i = 0; i < 2000 && atomic_load(&lat.n) < BEFORE_SAMPLES; i++)
                fault_sleep_ms(5);
        int64_t before_to = test_now();

        int min_storms = fault_quick ? 2 : 16;
        size_t want_samples = fault_quick ? DURING_SAMPLES : DURING_SAMPLES_FULL;
        for (; storms < MAX_STORMS && (inside_storms < want_samples || storms < min_storms); storms++) {
                /* The control load first, then the storm: alternating, so
                 * both see the machine in the same state. */
                run_control(k, storms, &control_from[storms], &control_to[storms]);
                int rd, wr, value = 0, status;
                pid_t pid = load_fork(&rd, &wr);
                if (pid == 0)
                        load_slow_main(dm.sock, k, wr);
                char what = read_report(rd, 60000, &value);
                if (what != 'o') {
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                        fault_die("storm %d: the slow client could not open its pipes (%c %s)",
                                  storms, what ? what : '-', strerror(-value));
                }
                storm_from[storms] = test_now();
                int64_t cpu0 = test_cpu_ns(dm.pid);
                what = read_report(rd, 90000, &value);
                close(rd);
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                /* The window also covers the slow client's exit (the kernel
                 * closing its 10,000 fds) and the daemon's teardown: it
                 * closes the client's fds DRAIN_BATCH a turn, some 30 ms
                 * for 10,000 here.  A control window ends the same way. */
                fault_sleep_ms(TEARDOWN_MS);
                storm_to[storms] = test_now();
                storm_cpu += test_cpu_ns(dm.pid) - cpu0;
                cut += what == 'c';
                fault_check(what == 'c',
                            "storm %d: the slow client (pid %d) was not cut off after %d rounds",
                            storms, (int)pid, value);
                char *log = fault_daemon_log(&dm);
                char needle[64];
                snprintf(needle, sizeof(needle), "(pid %d,", (int)pid);
                char *line = strstr(log, needle);
                bool named = line && strstr(line, "does not read its replies") &&
                             strstr(line, "does not read its replies") < strchr(line, '\n');
                fault_check(named, "storm %d: no warning naming pid %d in the daemon's log", storms,
                            (int)pid);
                if (named && storms == 0) {
                        char *end = strchr(line, '\n');
                        char *start = line;
                        while (start > log && start[-1] != '\n')
                                start--;
                        fault_say("daemon: %.*s", (int)(end - start), start);
                }
                free(log);
                /* Every fd of the slow client released. */
                int fds = -1;
                bool back = false;
                for (int i = 0; i < 500 && !back; i++) {
                        fds = fd_count_of(dm.pid);
                        back = np_status(mon, &st) == 0 && st.connections == 2 &&
                               st.descriptors == 1 && fds == base_fds;
                        if (!back)
                                fault_sleep_ms(10);
                }
                fault_check(back,
                            "storm %d: daemon not back at baseline: %d fds (want %d), %llu "
                            "connections, %llu descriptors",
                            storms, fds, base_fds, (unsigned long long)st.connections,
                            (unsigned long long)st.descriptors);
                size_t inside = samples_in(storm_from[storms], storm_to[storms]);
                inside_storms += inside;
                fault_say("storm %d: slow client pid %d %s after %d rounds of %d events in %.0f "
                          "ms; %zu latency samples inside (control before it: %.0f ms, %zu "
                          "samples)",
                          storms, (int)pid, what == 'c' ? "cut off" : "NOT cut off", value, k,
                          (double)(storm_to[storms] - storm_from[storms]) / 1e6, inside,
                          (double)(control_to[storms] - control_from[storms]) / 1e6,
                          samples_in(control_from[storms], control_to[storms]));
                if (!fault_daemon_alive(&dm))
                        break;
        }
        atomic_store(&lat.stop, 1);
        (void)!write(lat.pipe[1], "x", 1); /* ends a wait the writer will not */
        pthread_join(t_s, NULL);
        pthread_join(t_w, NULL);
        int rss_samples;
        int64_t peak = rss_stop(rss, &rss_samples);

        /* Latency figures: before, under the control load, inside the storms. */
        size_t n = atomic_load(&lat.n);
        Figures before = window_stats(lat.v, n, &before_from, &before_to, 1);
        Figures control = window_stats(lat.v, n, control_from, control_to, storms);
        Figures during = window_stats(lat.v, n, storm_from, storm_to, storms);
        if (getenv("FAULTS_VERBOSE"))
                for (size_t i = 0; i < n; i++)
                        for (int s = 0; s < storms; s++)
                                if (lat.v[i].at >= storm_from[s] && lat.v[i].at < storm_to[s] &&
                                    lat.v[i].lat > NSEC_PER_MSEC_F)
                                        fault_say("  storm %d +%.1f ms: wake took %.2f ms", s,
                                                  (double)(lat.v[i].at - storm_from[s]) / 1e6,
                                                  (double)lat.v[i].lat / 1e6);
        if (getenv("FAULTS_TRACE")) {
                for (int w = 0; w < storms; w++)
                        fprintf(stderr, "TRACE window storm %d %.6f %.6f control %.6f %.6f\n", w,
                                storm_from[w] / 1e9, storm_to[w] / 1e9, control_from[w] / 1e9,
                                control_to[w] / 1e9);
                for (size_t i = 0; i < n; i++)
                        fprintf(stderr, "TRACE sample %.6f %.0f\n", lat.v[i].at / 1e9,
                                lat.v[i].lat / 1e3);
        }
        (void)np_status(mon, &st);
        say_figures("before", &before);
        say_figures("control", &control);
        say_figures("during", &during);
        fault_say("p99 during / control %.2f (limit %s), during / before %.2f",
                  control.p99 ? (double)during.p99 / (double)control.p99 : 0.0,
                  fault_quick ? "10x and 5 ms" : "2x",
                  before.p99 ? (double)during.p99 / (double)before.p99 : 0.0);
        fault_say("daemon RSS: baseline %.1f MiB, peak %.1f MiB over %d samples (cap %.1f MiB); "
                  "np_status rss now %.1f MiB",
                  (double)base_rss / 1048576.0, (double)peak / 1048576.0, rss_samples,
                  (double)cap / 1048576.0, (double)st.rss_bytes / 1048576.0);
        fault_say("slow clients cut off: %d of %d; wake errors: %d; daemon CPU %.1f ms a storm "
                  "(%d descriptors armed and made ready each round, then closed)",
                  cut, storms, atomic_load(&lat.errors),
                  storms ? (double)storm_cpu / 1e6 / storms : 0.0, k);
        fault_check(before.n >= BEFORE_SAMPLES, "only %zu latency samples before the storm",
                    before.n);
        fault_check(during.n >= want_samples, "only %zu latency samples during the storms",
                    during.n);
        /* The criterion: the other client's p99 during the storms against
         * its p99 under the control load, the same machine load without
         * the daemon's part, measured alternately in the same run: under
         * 2x in full mode.  Against the idle figure from before, on this
         * 2-core shared VM the storm's own load alone moves a p99 of a few
         * hundred samples by milliseconds, which is not the daemon's
         * doing.  Quick mode (CI) fails only a gross regression, 10x and
         * 5 ms worse than the control; the figures are printed either way. */
        if (fault_quick)
                fault_check(!(during.p99 > 10 * control.p99 &&
                              during.p99 - control.p99 > 5 * NSEC_PER_MSEC_F),
                            "wake latency p99 %.0f us during the storms, %.0f us under the "
                            "control load (limit 10x and 5 ms)",
                            during.p99 / 1e3, control.p99 / 1e3);
        else
                fault_check(during.p99 < 2 * control.p99,
                            "wake latency p99 %.0f us during the storms, %.0f us under the "
                            "control load (limit 2x)",
                            during.p99 / 1e3, control.p99 / 1e3);
        fault_check(peak < cap, "daemon RSS peaked at %.1f MiB, over the %.1f MiB cap",
                    (double)peak / 1048576.0, (double)cap / 1048576.0);
        fault_check(atomic_load(&lat.errors) <= 1, "%d latency waits failed",
                    atomic_load(&lat.errors));
        fault_check(fault_daemon_alive(&dm), "netpolld died");

        np_unblock(lat.c, lat.d);
        np_close(lat.c, lat.d);
        np_disconnect(lat.c);
        close(lat.pipe[0]);
        close(lat.pipe[1]);
        int fds;
        bool back = fault_await_baseline(mon, dm.pid, 1, end_fds, 5000, &st, &fds);
        fault_check(back,
                    "daemon not back at baseline at the end: %d fds (want %d), %llu "
                    "connections, %llu descriptors, %llu waiters, %llu timers",
                    fds, end_fds, (unsigned long long)st.connections,
                    (unsigned long long)st.descriptors, (unsigned long long)st.waiters,
                    (unsigned long long)st.timers);
        np_disconnect(mon);
        fault_daemon_stop(&dm);
        return fault_finish();
}
