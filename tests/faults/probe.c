/*
 * The victim pinger, the fake service manager and the A/B driver of the
 * isolation fault programs (probe.h).  Every loop is bounded in count and
 * in time; sample arrays are fixed-size and a full one stops recording.
 */
#include "probe.h"

#include <errno.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define VICTIM_MAX_SAMPLES 400000
#define NOTIFY_MAX 40000

/* ---- configuration ---- */

/* Whether the daemon accepts the configuration text (netpolld --check-config);
 * its complaint goes to err. */
static bool daemon_takes(const char *config, char *err, size_t errlen)
{
        char path[] = "/tmp/netpolld-probe-conf.XXXXXX";
        int fd = mkstemp(path), p[2], status = 0;

        err[0] = '\0';
        if (fd < 0 || write(fd, config, strlen(config)) != (ssize_t)strlen(config) ||
            pipe2(p, O_CLOEXEC) < 0)
                fault_die("cannot write a configuration file: %s", strerror(errno));
        close(fd);
        pid_t pid = fork();
        if (pid < 0)
                fault_die("fork: %s", strerror(errno));
        if (pid == 0) {
                int null = open("/dev/null", O_WRONLY);
                dup2(null, STDOUT_FILENO);
                dup2(p[1], STDERR_FILENO);
                execl(fault_daemon_bin(), fault_daemon_bin(), "--config", path, "--check-config", (char *)NULL);
                _exit(127);
        }
        close(p[1]);
        size_t len = 0;
        for (int i = 0; i < 64 && len + 1 < errlen; i++) {
                struct pollfd pfd = { .fd = p[0], .events = POLLIN };
                if (poll(&pfd, 1, 10000) <= 0)
                        break;
                ssize_t n = read(p[0], err + len, errlen - 1 - len);
                if (n <= 0)
                        break;
                len += (size_t)n;
        }
        err[len] = '\0';
        err[strcspn(err, "\n")] = '\0';
        close(p[0]);
        waitpid(pid, &status, 0);
        unlink(path);
        return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* The configuration to start the daemon with: base + new_keys, or only base
 * (a failed check) when the daemon does not know the new keys. */
const char *fault_pick_config(char *buf, size_t len, const char *base, const char *new_keys)
{
        char err[512];

        snprintf(buf, len, "%s%s", base, new_keys);
        if (daemon_takes(buf, err, sizeof(err)))
                return buf;
        fault_check(false,
                    "the daemon refuses the configuration (%s); going on without the new "
                    "keys",
                    err);
        snprintf(buf, len, "%s", base);
        return buf;
}

/* ---- load ---- */

void fault_load_thread(void)
{
        struct sched_param idle = { .sched_priority = 0 };

        /* Linux: policy and nice apply to the calling thread. */
        if (sched_setscheduler(0, SCHED_IDLE, &idle) < 0)
                (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
}

/* ---- the daemon's RSS ---- */

struct FaultRss {
        pid_t pid;
        pthread_t thread;
        atomic_int stop;
        _Atomic int64_t peak;
        atomic_int samples;
};

static void *rss_main(void *arg)
{
        FaultRss *r = arg;

        for (int i = 0; i < 10000000 && !atomic_load(&r->stop); i++) {
                int64_t v = test_proc_status_kib(r->pid, "VmRSS") * 1024;
                if (v > atomic_load(&r->peak))
                        atomic_store(&r->peak, v);
                atomic_fetch_add(&r->samples, 1);
                fault_sleep_ms(5);
        }
        return NULL;
}

FaultRss *rss_start(pid_t pid, int64_t floor)
{
        FaultRss *r = calloc(1, sizeof(*r));

        if (!r)
                fault_die("out of memory");
        r->pid = pid;
        r->peak = floor;
        if (pthread_create(&r->thread, NULL, rss_main, r) != 0)
                fault_die("pthread_create");
        return r;
}

int64_t rss_stop(FaultRss *r, int *ret_samples)
{
        atomic_store(&r->stop, 1);
        pthread_join(r->thread, NULL);
        int64_t peak = atomic_load(&r->peak);
        if (ret_samples)
                *ret_samples = atomic_load(&r->samples);
        free(r);
        return peak;
}

/* ---- the victim ---- */

struct FaultVictim {
        np_client *c;
        pthread_t thread;
        int interval_us;
        atomic_int stop;
        atomic_size_t n;
        int64_t *start, *rtt; /* rtt < 0: the ping failed with that error */
};

static void *victim_main(void *arg)
{
        FaultVictim *v = arg;

        for (size_t i = 0; i < VICTIM_MAX_SAMPLES && !atomic_load(&v->stop); i++) {
                int64_t t0 = test_now();
                int r = np_ping(v->c);
                int64_t t1 = test_now();
                size_t n = atomic_load(&v->n);
                v->start[n] = t0;
                v->rtt[n] = r < 0 ? r : t1 - t0;
                atomic_store(&v->n, n + 1);
                int64_t left = (int64_t)v->interval_us * 1000 - (t1 - t0);
                if (left > 0) {
                        struct timespec ts = { .tv_sec = left / NSEC_PER_SEC_F,
                                               .tv_nsec = left % NSEC_PER_SEC_F };
                        nanosleep(&ts, NULL);
                }
        }
        return NULL;
}

FaultVictim *victim_start(const char *sock, int interval_us)
{
        FaultVictim *v = calloc(1, sizeof(*v));

        if (!v)
                fault_die("out of memory");
        v->interval_us = interval_us;
        v->start = malloc(VICTIM_MAX_SAMPLES * sizeof(int64_t));
        v->rtt = malloc(VICTIM_MAX_SAMPLES * sizeof(int64_t));
        if (!v->start || !v->rtt)
                fault_die("out of memory");
        fault_must(fault_connect(sock, &v->c), "connect the victim");
        if (pthread_create(&v->thread, NULL, victim_main, v) != 0)
                fault_die("pthread_create");
        return v;
}

void victim_stop(FaultVictim *v)
{
        if (!v)
                return;
        atomic_store(&v->stop, 1);
        pthread_join(v->thread, NULL);
        np_disconnect(v->c);
        free(v->start);
        free(v->rtt);
        free(v);
}

FaultFigures victim_figures(FaultVictim *v, const int64_t *from, const int64_t *to, int nw)
{
        size_t n = atomic_load(&v->n);
        int64_t *lat = malloc((n ? n : 1) * sizeof(*lat));
        FaultFigures f = { 0 };

        if (!lat)
                fault_die("out of memory");
        for (size_t i = 0; i < n; i++)
                for (int w = 0; w < nw; w++) {
                        if (v->start[i] < from[w] || v->start[i] >= to[w])
                                continue;
                        if (v->rtt[i] < 0)
                                f.errors++;
                        else
                                lat[f.n++] = v->rtt[i];
                        break;
                }
        f.p50 = fault_percentile(lat, f.n, 50);
        f.p99 = fault_percentile(lat, f.n, 99);
        f.max = f.n ? lat[f.n - 1] : 0;
        free(lat);
        return f;
}

/* ---- the fake service manager ---- */

struct FaultNotify {
        int fd;
        char dir[64];
        char path[108];
        pthread_t thread;
        atomic_int stop;
        atomic_int ready, status, n_wd;
        int64_t wd[NOTIFY_MAX];
};

/* CLOCK_REALTIME minus CLOCK_MONOTONIC, to place kernel receive stamps. */
static int64_t realtime_offset(void)
{
        struct timespec r;

        clock_gettime(CLOCK_REALTIME, &r);
        return (int64_t)r.tv_sec * NSEC_PER_SEC_F + r.tv_nsec - test_now();
}

static void notify_take(FaultNotify *n, int64_t offset)
{
        char buf[4096];
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(struct timespec))];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
        struct msghdr mh = { .msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = &control,
                             .msg_controllen = sizeof(control) };
        ssize_t len = recvmsg(n->fd, &mh, MSG_DONTWAIT);

        if (len <= 0)
                return;
        /* When the kernel queued it, not when this thread got to it: our
         * own scheduling must not count as a daemon gap. */
        int64_t at = test_now();
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                        struct timespec ts;
                        memcpy(&ts, CMSG_DATA(c), sizeof(ts));
                        at = (int64_t)ts.tv_sec * NSEC_PER_SEC_F + ts.tv_nsec - offset;
                }
        buf[len] = '\0';
        char *save;
        for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                if (strcmp(l, "WATCHDOG=1") == 0) {
                        int k = atomic_load(&n->n_wd);
                        if (k < NOTIFY_MAX) {
                                n->wd[k] = at;
                                atomic_store(&n->n_wd, k + 1);
                        }
                } else if (strcmp(l, "READY=1") == 0)
                        atomic_fetch_add(&n->ready, 1);
                else if (strncmp(l, "STATUS=", 7) == 0)
                        atomic_fetch_add(&n->status, 1);
        }
}

static void *notify_main(void *arg)
{
        FaultNotify *n = arg;
        int64_t offset = realtime_offset();

        for (int i = 0; i < 10000000 && !atomic_load(&n->stop); i++) {
                struct pollfd pfd = { .fd = n->fd, .events = POLLIN };
                if (poll(&pfd, 1, 50) > 0)
                        notify_take(n, offset);
        }
        return NULL;
}

FaultNotify *notify_start(void)
{
        FaultNotify *n = calloc(1, sizeof(*n));
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        int big = 4 << 20, on = 1;

        if (!n)
                fault_die("out of memory");
        snprintf(n->dir, sizeof(n->dir), "/tmp/netpolld-notify.XXXXXX");
        if (!mkdtemp(n->dir))
                fault_die("mkdtemp: %s", strerror(errno));
        snprintf(n->path, sizeof(n->path), "%s/notify", n->dir);
        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", n->path);
        n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (n->fd < 0 || bind(n->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
                fault_die("notify socket: %s", strerror(errno));
        (void)setsockopt(n->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
        if (setsockopt(n->fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) < 0)
                fault_die("SO_TIMESTAMPNS: %s", strerror(errno));
        if (pthread_create(&n->thread, NULL, notify_main, n) != 0)
                fault_die("pthread_create");
        return n;
}

const char *notify_path(const FaultNotify *n)
{
        return n->path;
}

int notify_ready_count(const FaultNotify *n)
{
        return atomic_load(&((FaultNotify *)n)->ready);
}

int notify_status_count(const FaultNotify *n)
{
        return atomic_load(&((FaultNotify *)n)->status);
}

int notify_watchdog_count(const FaultNotify *n)
{
        return atomic_load(&((FaultNotify *)n)->n_wd);
}

int64_t notify_watchdog_gap(const FaultNotify *n, int64_t from, int64_t to, int *ret_count)
{
        int total = notify_watchdog_count(n), k = 0;
        int64_t prev = -1, gap = 0;

        for (int i = 0; i < total; i++) {
                if (n->wd[i] < from) {
                        prev = n->wd[i];
                        continue;
                }
                if (n->wd[i] > to)
                        break;
                if (prev >= 0 && n->wd[i] - prev > gap)
                        gap = n->wd[i] - prev;
                prev = n->wd[i];
                k++;
        }
        if (prev >= 0 && to - prev > gap)
                gap = to - prev;
        if (prev < 0)
                gap = to - from; /* none at all, not even before the window */
        if (ret_count)
                *ret_count = k;
        return gap;
}

void notify_stop(FaultNotify *n)
{
        if (!n)
                return;
        atomic_store(&n->stop, 1);
        pthread_join(n->thread, NULL);
        close(n->fd);
        unlink(n->path);
        rmdir(n->dir);
        free(n);
}

/* ---- alternating windows ---- */

void fault_ab_run(FaultAB *ab, int rounds, FaultWindowFn run, void *arg)
{
        if (rounds > FAULT_AB_MAX)
                rounds = FAULT_AB_MAX;
        ab->rounds = rounds;
        for (int i = 0; i < rounds; i++)
                for (int k = 0; k < 2; k++) {
                        /* control first on even rounds, attack first on odd ones */
                        int attack = (i & 1) ^ k;
                        ab->from[attack][i] = test_now();
                        run(arg, attack, i);
                        ab->to[attack][i] = test_now();
                }
}

static void say_figures(const char *what, const char *kind, const FaultFigures *f)
{
        fault_say("%s: victim ping during %-8s %6zu pings, p50 %7.1f us, p99 %8.1f us, max %8.1f "
                  "us, %d failed",
                  what, kind, f->n, (double)f->p50 / 1e3, (double)f->p99 / 1e3,
                  (double)f->max / 1e3, f->errors);
}

bool fault_ab_verdict(const FaultAB *ab, FaultVictim *v, const FaultNotify *n,
                      uint64_t watchdog_usec, const char *what)
{
        FaultFigures ctl = victim_figures(v, ab->from[0], ab->to[0], ab->rounds);
        FaultFigures att = victim_figures(v, ab->from[1], ab->to[1], ab->rounds);
        double ratio = ctl.p99 > 0 ? (double)att.p99 / (double)ctl.p99 : 0;
        bool ok = true;

        say_figures(what, "controls", &ctl);
        say_figures(what, "attacks", &att);
        fault_say("%s: attack/control p99 ratio %.2f over %d rounds", what, ratio, ab->rounds);
        ok &= fault_check(ctl.n >= 20 && att.n >= 20, "%s: too few pings (%zu, %zu)", what, ctl.n,
                          att.n);
        ok &= fault_check(ctl.errors == 0 && att.errors == 0, "%s: %d pings failed", what,
                          ctl.errors + att.errors);
        if (fault_quick) {
                int64_t bound = ctl.p99 * 4 > ctl.p99 + 2 * NSEC_PER_MSEC_F
                                        ? ctl.p99 * 4
                                        : ctl.p99 + 2 * NSEC_PER_MSEC_F;
                ok &= fault_check(att.p99 < bound,
                                  "%s: victim p99 %.1f us during the attacks, over the quick "
                                  "bound %.1f us",
                                  what, (double)att.p99 / 1e3, (double)bound / 1e3);
        } else
                ok &= fault_check(ratio < 2.0, "%s: victim p99 ratio %.2f, not under 2", what,
                                  ratio);
        if (n && watchdog_usec) {
                int64_t worst = 0;
                for (int k = 0; k < 2; k++)
                        for (int i = 0; i < ab->rounds; i++) {
                                int64_t g = notify_watchdog_gap(n, ab->from[k][i], ab->to[k][i],
                                                                NULL);
                                worst = g > worst ? g : worst;
                        }
                fault_say("%s: longest WATCHDOG=1 gap %.1f ms (interval %.0f ms)", what,
                          (double)worst / 1e6, (double)watchdog_usec / 1e3);
                ok &= fault_check(worst <= (int64_t)watchdog_usec * 500,
                                  "%s: a %.1f ms gap between WATCHDOG=1, over half the %.0f ms "
                                  "interval",
                                  what, (double)worst / 1e6, (double)watchdog_usec / 1e3);
        }
        return ok;
}
