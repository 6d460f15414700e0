/*
 * Fault-test support; see harness.h.
 *
 * Every daemon is started with PR_SET_PDEATHSIG, so a test killed by the
 * make-level timeout leaves no daemon behind, and its stderr goes to a file
 * in its own directory (never to a pipe: a test that stops reading must not
 * be able to block the daemon on a full pipe and fake a stall).
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_DAEMONS 8

bool fault_quick;
static const char *fault_name = "fault";
static int failures;
static FaultDaemon *daemons[MAX_DAEMONS];
static pid_t main_pid;

/* SIGTERM (the make-level timeout) or SIGINT: kill the daemons and remove
 * their directories, with async-signal-safe calls only. */
static void on_terminate(int sig)
{
        static const char msg[] = "fault test: terminated, cleaning up\n";

        if (getpid() == main_pid) {
                (void)!write(STDOUT_FILENO, msg, sizeof(msg) - 1);
                for (int i = 0; i < MAX_DAEMONS; i++) {
                        FaultDaemon *d = daemons[i];
                        if (!d)
                                continue;
                        if (d->pid > 0)
                                kill(d->pid, SIGKILL);
                        unlink(d->sock);
                        unlink(d->log);
                        if (d->conf[0])
                                unlink(d->conf);
                        rmdir(d->dir);
                }
        }
        signal(sig, SIG_DFL);
        raise(sig);
}

void fault_init(int argc, char **argv, const char *name)
{
        const char *q = getenv("FAULTS_QUICK");

        fault_name = name;
        main_pid = getpid();
        fault_quick = q && *q && strcmp(q, "0") != 0;
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--quick") == 0 || strcmp(argv[i], "-q") == 0)
                        fault_quick = true;
                else {
                        fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
                        exit(2);
                }
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        signal(SIGPIPE, SIG_IGN);
        signal(SIGTERM, on_terminate);
        signal(SIGINT, on_terminate);
        (void)fault_nofile();
        fault_say("mode %s, fd limit %d", fault_quick ? "quick" : "full", fault_nofile());
}

static void vsay(const char *prefix, const char *fmt, va_list ap)
{
        char buf[2048];

        vsnprintf(buf, sizeof(buf), fmt, ap);
        printf("%s: %s%s\n", fault_name, prefix, buf);
}

void fault_say(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsay("", fmt, ap);
        va_end(ap);
}

bool fault_check(bool cond, const char *fmt, ...)
{
        va_list ap;

        if (cond)
                return true;
        failures++;
        va_start(ap, fmt);
        vsay("FAIL: ", fmt, ap);
        va_end(ap);
        return false;
}

int fault_finish(void)
{
        for (int i = 0; i < MAX_DAEMONS; i++)
                if (daemons[i] && daemons[i]->pid > 0)
                        fault_daemon_stop(daemons[i]);
        if (failures) {
                printf("FAIL %s: %d check(s) failed\n", fault_name, failures);
                return 1;
        }
        printf("PASS %s\n", fault_name);
        return 0;
}

void fault_die(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsay("FAIL: ", fmt, ap);
        va_end(ap);
        /* A forked client must not stop its parent's daemons. */
        if (getpid() != main_pid)
                _exit(1);
        failures++;
        exit(fault_finish());
}

void fault_must(int r, const char *what)
{
        if (r < 0)
                fault_die("%s: %s", what, strerror(-r));
}

void fault_sleep_ms(int64_t ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * NSEC_PER_MSEC_F };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

int fault_nofile(void)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return 1024;
        if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &rl);
                (void)getrlimit(RLIMIT_NOFILE, &rl);
        }
        return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 30) ? 1 << 30
                                                                        : (int)rl.rlim_cur;
}

const char *fault_strerror(int e)
{
        return e ? strerror(-e) : "none";
}

/* ---- a seeded generator ---- */

uint64_t fault_rng_next(uint64_t *s)
{
        uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

int64_t fault_rng_range(uint64_t *s, int64_t lo, int64_t hi)
{
        return lo + (int64_t)(fault_rng_next(s) % (uint64_t)(hi - lo + 1));
}

/* ---- daemon ---- */

const char *fault_daemon_bin(void)
{
        const char *b = getenv("NETPOLLD_BIN");

        return b && *b ? b : "./build/netpolld";
}

static bool connectable(const char *path)
{
        int fd = test_raw_connect(path);

        if (fd < 0)
                return false;
        close(fd);
        return true;
}

void fault_daemon_start(FaultDaemon *d, const FaultDaemonOpts *o)
{
        static const FaultDaemonOpts none;
        const char *argv[12];
        pid_t parent = getpid();
        int argc = 0, status;

        if (!o)
                o = &none;
        *d = (FaultDaemon){ .pid = -1 };
        snprintf(d->dir, sizeof(d->dir), "/tmp/netpolld-faults.XXXXXX");
        if (!mkdtemp(d->dir))
                fault_die("mkdtemp: %s", strerror(errno));
        /* Others (the second-uid clients) must reach the socket. */
        if (chmod(d->dir, 0755) < 0)
                fault_die("chmod %s: %s", d->dir, strerror(errno));
        snprintf(d->sock, sizeof(d->sock), "%s/np.sock", d->dir);
        snprintf(d->log, sizeof(d->log), "%s/netpolld.log", d->dir);
        argv[argc++] = fault_daemon_bin();
        argv[argc++] = "--socket";
        argv[argc++] = d->sock;
        if (o->config) {
                snprintf(d->conf, sizeof(d->conf), "%s/netpolld.conf", d->dir);
                FILE *f = fopen(d->conf, "we");
                if (!f || fputs(o->config, f) < 0 || fclose(f) != 0)
                        fault_die("%s: %s", d->conf, strerror(errno));
                argv[argc++] = "--config";
                argv[argc++] = d->conf;
        }
        if (o->log_level) {
                argv[argc++] = "--log-level";
                argv[argc++] = o->log_level;
        }
        argv[argc] = NULL;

        d->pid = fork();
        if (d->pid < 0)
                fault_die("fork: %s", strerror(errno));
        if (d->pid == 0) {
                int null = open("/dev/null", O_RDWR);
                int err = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127);
                dup2(null, 0);
                dup2(null, 1);
                dup2(err >= 0 ? err : null, 2);
                /* Nothing else: an fd inherited from whatever runs the tests
                 * would count against (and beyond) the daemon's limit. */
                close_range(3, ~0U, 0);
                if (o->nofile > 0) {
                        struct rlimit rl = { .rlim_cur = (rlim_t)o->nofile,
                                             .rlim_max = (rlim_t)o->nofile };
                        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                                _exit(126);
                }
                test_child_env();
                if (o->notify_socket) {
                        char buf[32];
                        setenv("NOTIFY_SOCKET", o->notify_socket, 1);
                        if (o->watchdog_usec) {
                                snprintf(buf, sizeof(buf), "%llu",
                                         (unsigned long long)o->watchdog_usec);
                                setenv("WATCHDOG_USEC", buf, 1);
                                /* The pid after exec is ours. */
                                snprintf(buf, sizeof(buf), "%d", (int)getpid());
                                setenv("WATCHDOG_PID", buf, 1);
                        }
                }
                execv(argv[0], (char *const *)argv);
                _exit(127);
        }
        for (int i = 0; i < MAX_DAEMONS; i++)
                if (!daemons[i]) {
                        daemons[i] = d;
                        break;
                }
        int64_t give_up = test_now() + 10 * NSEC_PER_SEC_F;
        while (!connectable(d->sock)) {
                if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
                        d->pid = -1;
                        char *log = fault_daemon_log(d);
                        fault_die("netpolld (%s) exited at start (status %#x): %s", fault_daemon_bin(),
                                  status, log);
                }
                if (test_now() > give_up)
                        fault_die("netpolld did not accept connections within 10 s");
                fault_sleep_ms(5);
        }
}

bool fault_daemon_alive(FaultDaemon *d)
{
        int status;

        if (d->pid <= 0)
                return false;
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
                fault_say("netpolld %d exited: %s %d", (int)d->pid,
                          WIFSIGNALED(status) ? "signal" : "status",
                          WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                d->pid = -1;
                return false;
        }
        return kill(d->pid, 0) == 0;
}

int fault_daemon_stop(FaultDaemon *d)
{
        int status = -1;

        if (d->pid > 0) {
                kill(d->pid, SIGTERM);
                int64_t give_up = test_now() + 10 * NSEC_PER_SEC_F;
                for (;;) {
                        pid_t r = waitpid(d->pid, &status, WNOHANG);
                        if (r == d->pid || (r < 0 && errno != EINTR))
                                break;
                        if (test_now() > give_up) {
                                kill(d->pid, SIGKILL);
                                waitpid(d->pid, &status, 0);
                                break;
                        }
                        fault_sleep_ms(5);
                }
                d->pid = -1;
        }
        for (int i = 0; i < MAX_DAEMONS; i++)
                if (daemons[i] == d)
                        daemons[i] = NULL;
        if (d->dir[0] && getenv("FAULTS_VERBOSE")) {
                char *log = fault_daemon_log(d);
                fault_say("netpolld %d log:", (int)d->pid);
                fputs(log, stdout);
                free(log);
        }
        if (d->dir[0]) {
                unlink(d->sock);
                unlink(d->log);
                if (d->conf[0])
                        unlink(d->conf);
                rmdir(d->dir);
                d->dir[0] = '\0';
        }
        return status;
}

char *fault_daemon_log(const FaultDaemon *d)
{
        FILE *f = fopen(d->log, "re");
        size_t cap = 4096, len = 0;
        char *buf = malloc(cap);

        if (!buf)
                fault_die("out of memory");
        buf[0] = '\0';
        if (!f)
                return buf;
        for (int i = 0; i < 4096; i++) { /* at most 16 MiB */
                if (len + 4096 + 1 > cap) {
                        char *n = realloc(buf, cap * 2);
                        if (!n)
                                break;
                        buf = n;
                        cap *= 2;
                }
                size_t k = fread(buf + len, 1, 4096, f);
                len += k;
                if (k == 0)
                        break;
        }
        buf[len] = '\0';
        fclose(f);
        return buf;
}

/* ---- /proc ---- */

bool fault_await_stopped(pid_t pid, bool stopped)
{
        char path[64], buf[512];

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        for (int i = 0; i < 2000; i++) {
                FILE *f = fopen(path, "re");
                if (!f)
                        return false;
                size_t n = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                buf[n] = '\0';
                char *p = strrchr(buf, ')');
                if (p && p[1] == ' ' && (p[2] == 'T') == stopped)
                        return true;
                fault_sleep_ms(1);
        }
        return false;
}

int64_t fault_idle_cpu(pid_t pid, int64_t ms)
{
        int64_t a = test_cpu_ns(pid);
        fault_sleep_ms(ms);
        return test_cpu_ns(pid) - a;
}

/* ---- statistics ---- */

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

        return x < y ? -1 : x > y;
}

int64_t fault_percentile(int64_t *v, size_t n, double p)
{
        if (n == 0)
                return 0;
        fault_sort_i64(v, n);
        size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
        return v[i < n ? i : n - 1];
}

void fault_sort_i64(int64_t *v, size_t n)
{
        qsort(v, n, sizeof(*v), cmp_i64);
}

/* ---- libnetpoll ---- */

int fault_connect(const char *path, np_client **ret)
{
        int r = -EAGAIN;

        for (int i = 0; i < 20; i++) {
                r = np_connect(path, ret);
                if (r != -EAGAIN && r != -EINTR)
                        return r;
                fault_sleep_ms(10);
        }
        return r;
}

bool fault_await_baseline(np_client *mon, pid_t pid, uint64_t conns, int fds, int timeout_ms,
                          struct np_status *st, int *ret_fds)
{
        int64_t give_up = test_now() + (int64_t)timeout_ms * NSEC_PER_MSEC_F;
        bool ok = false;

        for (;;) {
                int r = np_status(mon, st);
                int n = fd_count_of(pid);
                *ret_fds = n;
                ok = r == 0 && st->connections == conns && st->descriptors == 0 &&
                     st->waiters == 0 && st->timers == 0 && n == fds;
                if (ok || r < 0 || test_now() > give_up)
                        return ok;
                fault_sleep_ms(10);
        }
}

int fault_settle(np_client *mon, pid_t pid, uint64_t conns, struct np_status *st)
{
        int64_t give_up = test_now() + 5 * NSEC_PER_SEC_F;

        for (;;) {
                int r = np_status(mon, st);
                if (r < 0)
                        fault_die("np_status: %s", strerror(-r));
                if (st->connections == conns && st->descriptors == 0 && st->waiters == 0 &&
                    st->timers == 0) {
                        /* Once more, so /proc and the status agree, and
                         * again a moment later: the daemon closes what
                         * clients leave behind on its closer threads, so
                         * the count must not be racing such a close. */
                        int n = fd_count_of(pid);
                        if (np_status(mon, st) == 0 && (int)st->open_fds == n) {
                                fault_sleep_ms(30);
                                if (fd_count_of(pid) == n)
                                        return n;
                        }
                }
                if (test_now() > give_up)
                        fault_die("the daemon did not settle: %llu connections, %llu "
                                  "descriptors, %llu open fds",
                                  (unsigned long long)st->connections,
                                  (unsigned long long)st->descriptors,
                                  (unsigned long long)st->open_fds);
                fault_sleep_ms(5);
        }
}

/* ---- a client of another uid ---- */

void other_uid_start(OtherUid *o, const char *sock, int attempts, OtherUidReport *ret)
{
        int rep[2], ctl[2];

        *ret = (OtherUidReport){ 0 };
        if (pipe2(rep, O_CLOEXEC) < 0 || pipe2(ctl, O_CLOEXEC) < 0)
                fault_die("pipe: %s", strerror(errno));
        o->pid = fork();
        if (o->pid < 0)
                fault_die("fork: %s", strerror(errno));
        if (o->pid == 0) {
                OtherUidReport r = { 0 };
                np_client **c = calloc((size_t)attempts, sizeof(*c));
                char b;

                close(rep[0]);
                close(ctl[1]);
                if (setgroups(0, NULL) < 0 || setgid(FAULT_OTHER_UID) < 0 ||
                    setuid(FAULT_OTHER_UID) < 0 || !c) {
                        r.setuid_error = -errno;
                        (void)!write(rep[1], &r, sizeof(r));
                        _exit(1);
                }
                /* After setuid, which clears it. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                for (int i = 0; i < attempts; i++) {
                        int e = np_connect(sock, &c[i]);
                        if (e == 0) {
                                r.ok++;
                                r.ping_failed += np_ping(c[i]) != 0;
                        } else {
                                c[i] = NULL;
                                if (e == -EUSERS)
                                        r.eusers++;
                                else if (e == -ECONNREFUSED)
                                        r.econnrefused++;
                                else if (r.other++ == 0)
                                        r.other_error = e;
                        }
                }
                (void)!write(rep[1], &r, sizeof(r));
                struct pollfd pfd = { .fd = ctl[0], .events = POLLIN };
                if (poll(&pfd, 1, 120000) > 0)
                        (void)!read(ctl[0], &b, 1);
                for (int i = 0; i < attempts; i++)
                        np_disconnect(c[i]);
                _exit(0);
        }
        close(rep[1]);
        close(ctl[0]);
        o->ctl = ctl[1];
        struct pollfd pfd = { .fd = rep[0], .events = POLLIN };
        if (poll(&pfd, 1, 30000) <= 0 || read(rep[0], ret, sizeof(*ret)) != sizeof(*ret))
                fault_die("the uid %d client did not report", FAULT_OTHER_UID);
        close(rep[0]);
}

int other_uid_release(OtherUid *o)
{
        int status = -1;

        if (o->pid <= 0)
                return -1;
        (void)!write(o->ctl, "x", 1);
        close(o->ctl);
        status = fault_reap(o->pid, 10000);
        o->pid = -1;
        return status;
}

int fault_reap(pid_t pid, int timeout_ms)
{
        int status = -1;
        int64_t give_up = test_now() + (int64_t)timeout_ms * NSEC_PER_MSEC_F;

        for (;;) {
                pid_t r = waitpid(pid, &status, WNOHANG);
                if (r == pid || (r < 0 && errno != EINTR))
                        return status;
                if (test_now() > give_up) {
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                        return status;
                }
                fault_sleep_ms(5);
        }
}

bool fault_read_full(int fd, void *buf, size_t len, int timeout_ms)
{
        int64_t give_up = test_now() + (int64_t)timeout_ms * NSEC_PER_MSEC_F;
        size_t got = 0;

        for (int i = 0; i < 10000 && got < len; i++) {
                int64_t left = (give_up - test_now()) / NSEC_PER_MSEC_F;
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
                        return false;
                ssize_t n = read(fd, (char *)buf + got, len - got);
                if (n <= 0)
                        return false;
                got += (size_t)n;
        }
        return got == len;
}

bool fault_child_fork(FaultChild *ch, int *ret_cmd, int *ret_rep)
{
        int cmd[2], rep[2];

        if (pipe2(cmd, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0)
                fault_die("pipe: %s", strerror(errno));
        ch->pid = fork();
        if (ch->pid < 0)
                fault_die("fork: %s", strerror(errno));
        if (ch->pid == 0) {
                close(cmd[1]);
                close(rep[0]);
                if (setgroups(0, NULL) < 0 || setgid(FAULT_OTHER_UID) < 0 ||
                    setuid(FAULT_OTHER_UID) < 0)
                        fault_die("cannot become uid %d: %s", FAULT_OTHER_UID, strerror(errno));
                /* After setuid, which clears it. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                *ret_cmd = cmd[0];
                *ret_rep = rep[1];
                return true;
        }
        close(cmd[0]);
        close(rep[1]);
        ch->cmd = cmd[1];
        ch->rep = rep[0];
        return false;
}

int fault_child_end(FaultChild *ch)
{
        int status;

        close(ch->cmd);
        close(ch->rep);
        status = fault_reap(ch->pid, 10000);
        ch->pid = -1;
        return status;
}
