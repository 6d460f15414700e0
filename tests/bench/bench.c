/*
 * Shared bench support; see bench.h.
 *
 * Every daemon a bench starts is its own: a fresh temporary directory, a
 * configuration that lifts the per-connection limits (the scenarios register
 * up to the fd limit on one connection and let tens of thousands of
 * outcomes queue), and PR_SET_PDEATHSIG so that a bench killed by the
 * make-level timeout leaves no daemon behind.  Live daemons are also
 * remembered, so that a bench that dies through bench_die() (exit) or a
 * SIGTERM/SIGINT still stops its daemon and removes its directory.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"

BenchOptions bench_opt;
static const char *bench_name = "bench";
static FILE *facts;

#define MAX_LIVE 4
static BenchDaemon *live[MAX_LIVE]; /* started and not yet stopped */

/* Stops what is still live without waiting; only async-signal-safe calls,
 * since a signal handler runs it too. */
static void stop_live(void)
{
        for (int i = 0; i < MAX_LIVE; i++) {
                BenchDaemon *d = live[i];
                if (!d)
                        continue;
                live[i] = NULL;
                if (d->pid > 0)
                        kill(d->pid, SIGTERM);
                unlink(d->sock);
                unlink(d->conf);
                rmdir(d->dir);
        }
}

static void on_signal(int sig)
{
        stop_live();
        _exit(128 + sig);
}

/* Limits a benchmark needs lifted; everything else stays at its default. */
static const char bench_config[] = "[limits]\n"
                                   "max_descriptors_per_connection = 1000000\n"
                                   "max_output_bytes = 268435456\n"
                                   "max_output_bytes_per_uid = 2147483648\n"
                                   "max_output_bytes_total = 2147483648\n"
                                   "max_descriptors_per_uid = 100%\n";

const char *bench_daemon_config = "";

void bench_die(const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "%s: ", bench_name);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(1);
}

void bench_check(int r, const char *what)
{
        if (r < 0)
                bench_die("%s: %s", what, strerror(-r));
}

static void usage(void)
{
        fprintf(stderr, "usage: %s -d NETPOLLD -o OUTDIR [-q]\n", bench_name);
        exit(2);
}

void bench_init(int argc, char **argv, const char *name)
{
        struct rlimit rl;
        char path[4096];
        int c;

        bench_name = name;
        while ((c = getopt(argc, argv, "d:o:q")) >= 0) {
                switch (c) {
                case 'd':
                        bench_opt.daemon = optarg;
                        break;
                case 'o':
                        bench_opt.out = optarg;
                        break;
                case 'q':
                        bench_opt.quick = true;
                        break;
                default:
                        usage();
                }
        }
        if (!bench_opt.daemon || !bench_opt.out || optind != argc)
                usage();
        /* Several scenarios hold thousands of fds; the daemon raises its
         * own limit the same way. */
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
        signal(SIGPIPE, SIG_IGN);
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        atexit(stop_live);
        snprintf(path, sizeof(path), "%s/%s.facts", bench_opt.out, name);
        facts = fopen(path, "we");
        if (!facts) {
                fprintf(stderr, "%s: %s: %s\n", name, path, strerror(errno));
                exit(2);
        }
}

int bench_finish(void)
{
        int r = 0;

        if (facts && (ferror(facts) || fclose(facts) != 0))
                r = 1;
        facts = NULL;
        return r;
}

int bench_nofile(void)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                return 1024;
        return rl.rlim_cur > 1 << 30 ? 1 << 30 : (int)rl.rlim_cur;
}

/* ---- daemon ---- */

static void sleep_ns(long ns)
{
        struct timespec ts = { .tv_sec = ns / 1000000000L, .tv_nsec = ns % 1000000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

bool bench_connectable(const char *path)
{
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        bool ok;

        if (fd < 0)
                return false;
        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
        ok = connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
        close(fd);
        return ok;
}

static void live_add(BenchDaemon *d)
{
        for (int i = 0; i < MAX_LIVE; i++)
                if (!live[i]) {
                        live[i] = d;
                        return;
                }
        bench_die("more than %d daemons at once", MAX_LIVE);
}

static void live_remove(BenchDaemon *d)
{
        for (int i = 0; i < MAX_LIVE; i++)
                if (live[i] == d)
                        live[i] = NULL;
}

void bench_daemon_spawn(BenchDaemon *d, const char *tag)
{
        char log[4096];
        pid_t parent = getpid();
        FILE *f;

        *d = (BenchDaemon){ .pid = -1 };
        snprintf(d->dir, sizeof(d->dir), "/tmp/netpolld-bench.XXXXXX");
        if (!mkdtemp(d->dir))
                bench_die("mkdtemp: %s", strerror(errno));
        snprintf(d->sock, sizeof(d->sock), "%s/sock", d->dir);
        snprintf(d->conf, sizeof(d->conf), "%s/netpolld.conf", d->dir);
        snprintf(log, sizeof(log), "%s/netpolld-%s.log", bench_opt.out, tag);
        live_add(d);
        f = fopen(d->conf, "we");
        if (!f || fputs(bench_config, f) < 0 || fputs(bench_daemon_config, f) < 0 || fclose(f) != 0)
                bench_die("%s: %s", d->conf, strerror(errno));

        d->pid = fork();
        if (d->pid < 0)
                bench_die("fork: %s", strerror(errno));
        if (d->pid == 0) {
                int null = open("/dev/null", O_RDWR);
                int err = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != parent)
                        _exit(127);
                dup2(null, 0);
                dup2(null, 1);
                dup2(err >= 0 ? err : null, 2);
                execl(bench_opt.daemon, "netpolld", "--socket", d->sock, "--config", d->conf,
                      (char *)NULL);
                _exit(127);
        }
}

void bench_daemon_start(BenchDaemon *d, const char *tag)
{
        int64_t give_up = now_ns() + 10 * NSEC_PER_SEC;
        int status;

        bench_daemon_spawn(d, tag);
        while (!bench_connectable(d->sock)) {
                if (waitpid(d->pid, &status, WNOHANG) == d->pid)
                        bench_die("netpolld %s %d at start; see %s/netpolld-%s.log",
                                  WIFEXITED(status) ? "exited with status" : "died of signal",
                                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                                  bench_opt.out, tag);
                if (now_ns() > give_up)
                        bench_die("netpolld did not accept connections within 10 s");
                sleep_ns(200 * 1000);
        }
}

int bench_daemon_stop(BenchDaemon *d)
{
        int64_t give_up = now_ns() + 10 * NSEC_PER_SEC;
        int status = 0;

        live_remove(d);
        if (d->pid > 0) {
                kill(d->pid, SIGTERM);
                while (waitpid(d->pid, &status, WNOHANG) == 0) {
                        if (now_ns() > give_up) {
                                kill(d->pid, SIGKILL);
                                waitpid(d->pid, &status, 0);
                                break;
                        }
                        sleep_ns(1000 * 1000);
                }
                d->pid = -1;
        }
        /* The daemon removes the socket it created; a killed one may not. */
        unlink(d->sock);
        unlink(d->conf);
        rmdir(d->dir);
        return status;
}

struct np_client *bench_connect(const BenchDaemon *d)
{
        np_client *c;

        bench_check(np_connect(d->sock, &c), "np_connect");
        return c;
}

/* ---- samples ---- */

void samples_add(Samples *s, int64_t x)
{
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 1024;
                int64_t *v = realloc(s->v, cap * sizeof(*v));
                if (!v)
                        bench_die("out of memory");
                s->v = v;
                s->cap = cap;
        }
        s->v[s->n++] = x;
        s->sorted = false;
}

void samples_free(Samples *s)
{
        free(s->v);
        *s = (Samples){ 0 };
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

        return x < y ? -1 : x > y;
}

static void samples_sort(Samples *s)
{
        if (!s->sorted)
                qsort(s->v, s->n, sizeof(*s->v), cmp_i64);
        s->sorted = true;
}

int64_t samples_pct(Samples *s, double p)
{
        if (s->n == 0)
                return 0;
        samples_sort(s);
        size_t rank = (size_t)ceil(p / 100.0 * (double)s->n);
        return s->v[rank == 0 ? 0 : rank > s->n ? s->n - 1 : rank - 1];
}

int64_t samples_max(Samples *s)
{
        return samples_pct(s, 100);
}

int64_t samples_min(Samples *s)
{
        return s->n ? (samples_sort(s), s->v[0]) : 0;
}

void samples_dump_cdf(Samples *s, const char *name, double div)
{
        char path[4096];
        FILE *f;

        samples_sort(s);
        snprintf(path, sizeof(path), "%s/%s", bench_opt.out, name);
        f = fopen(path, "we");
        if (!f)
                bench_die("%s: %s", path, strerror(errno));
        fprintf(f, "# value cumulative_fraction (%zu samples)\n", s->n);
        for (size_t i = 0; i < s->n; i++)
                fprintf(f, "%.3f %.6f\n", (double)s->v[i] / div, (double)(i + 1) / (double)s->n);
        if (ferror(f) | (fclose(f) != 0))
                bench_die("%s: write error", path);
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

double median_of(double *v, size_t n)
{
        if (n == 0)
                return NAN;
        qsort(v, n, sizeof(*v), cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- facts ---- */

void bench_row(const char *scenario, const char *metric, const char *unit, double netpolld,
               double baseline)
{
        fprintf(facts, "row\t%s\t%s\t%s\t%.9g\t%.9g\n", scenario, metric, unit, netpolld, baseline);
        fflush(facts);
}

void bench_info(const char *scenario, const char *metric, const char *unit, double value)
{
        fprintf(facts, "info\t%s\t%s\t%s\t%.9g\n", scenario, metric, unit, value);
        fflush(facts);
}

void bench_baseline(const char *scenario, const char *text)
{
        fprintf(facts, "base\t%s\t%s\n", scenario, text);
        fflush(facts);
}

void bench_note(const char *fmt, ...)
{
        va_list ap;

        fputs("note\t", facts);
        va_start(ap, fmt);
        vfprintf(facts, fmt, ap);
        va_end(ap);
        fputc('\n', facts);
        fflush(facts);
}

/* ---- /proc ---- */

char proc_state(pid_t pid, pid_t tid)
{
        char path[64], buf[512];
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = '\0';
        /* "pid (comm) S ...": comm may hold spaces and parentheses. */
        char *p = strrchr(buf, ')');
        return p && p[1] == ' ' ? p[2] : 0;
}

bool wait_until_sleeping(pid_t pid, pid_t tid)
{
        int64_t give_up = now_ns() + NSEC_PER_SEC;

        for (;;) {
                char st = proc_state(pid, tid);
                if (st == 'S' || st == 0)
                        return st == 'S';
                if (now_ns() > give_up)
                        return false;
                sched_yield();
        }
}

/* ---- placement ---- */

int bench_pin(pid_t pid, const cpu_set_t *set)
{
        int n = test_pin_threads(pid, sizeof(*set), set);

        if (n < 0)
                bench_die("/proc/%d/task: %s", (int)pid, strerror(-n));
        if (n == 0)
                bench_die("sched_setaffinity on %d: %s", (int)pid, strerror(errno));
        return n;
}
