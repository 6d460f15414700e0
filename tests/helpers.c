/*
 * Test support; see helpers.h.  Every helper a test file needs beyond its
 * own suite is here, once: the daemon started and stopped on a temporary
 * socket, programs run to completion with their output captured, threads
 * parked in np_wait.  Children get a clean environment (test_child_env) so
 * nothing the test runner inherited (a service manager's variables, a
 * signal mask) leaks into what they test.
 */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define NS_PER_MS INT64_C(1000000)
#define NS_PER_S INT64_C(1000000000)
#define NOBODY 65534

/* ---- fd leaks and test cases ---- */

static int fd_baseline = -1;

int fd_count(void)
{
        return fd_count_of(getpid());
}

void fdleak_setup(void)
{
        fd_baseline = fd_count();
}

int fdleak_delta(void)
{
        return fd_count() - fd_baseline;
}

void fdleak_teardown(void)
{
        int delta = fdleak_delta();
        ck_assert_msg(delta == 0, "test leaked %d fd(s)", delta);
}

TCase *test_tcase_default_timeout(Suite *s, const char *name)
{
        TCase *tc = tcase_create(name);

        tcase_add_checked_fixture(tc, fdleak_setup, fdleak_teardown);
        suite_add_tcase(s, tc);
        return tc;
}

TCase *test_tcase(Suite *s, const char *name, double timeout)
{
        TCase *tc = test_tcase_default_timeout(s, name);

        tcase_set_timeout(tc, timeout);
        return tc;
}

/* ---- the daemon ---- */

const char *test_daemon_bin(void)
{
        const char *b = getenv("NETPOLLD_BIN");
        return b && *b ? b : "./build/netpolld";
}

int test_nofile(void)
{
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        return (int)rl.rlim_cur;
}

void test_daemon_start_at(TestDaemon *d, const char *sock, const char *const *extra_args,
                          int nofile, bool capture_stderr)
{
        int pipefd[2] = { -1, -1 };
        const char *argv[32];
        int argc = 0;

        memset(d, 0, sizeof(*d));
        d->stderr_fd = -1;
        ck_assert_uint_lt(strlen(sock), sizeof(d->sock));
        snprintf(d->sock, sizeof(d->sock), "%s", sock);
        argv[argc++] = test_daemon_bin();
        argv[argc++] = "--socket";
        argv[argc++] = d->sock;
        for (int i = 0; extra_args && extra_args[i] && argc < 30; i++)
                argv[argc++] = extra_args[i];
        argv[argc] = NULL;
        if (capture_stderr)
                ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);

        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR);
                dup2(null, STDIN_FILENO);
                dup2(null, STDOUT_FILENO);
                dup2(capture_stderr ? pipefd[1] : null, STDERR_FILENO);
                if (nofile > 0) {
                        rlim_t n = (rlim_t)nofile;
                        struct rlimit rl = { .rlim_cur = n, .rlim_max = n };
                        setrlimit(RLIMIT_NOFILE, &rl);
                }
                /* Do not hand our signal mask or LISTEN_FDS to the daemon. */
                test_child_env();
                /* Only stdio: no fd of Check's or of the outer shell. */
                close_range(3, ~0U, 0);
                execv(argv[0], (char *const *)argv);
                _exit(127);
        }
        d->pid = pid;
        if (capture_stderr) {
                close(pipefd[1]);
                d->stderr_fd = pipefd[0];
                fcntl(d->stderr_fd, F_SETFL, O_NONBLOCK);
        }
        test_await_listening(pid, d->sock, d->stderr_fd);
}

void test_daemon_start(TestDaemon *d, const char *const *extra_args, int nofile,
                       bool capture_stderr)
{
        char dir[sizeof(d->dir)] = "/tmp/netpolld-test-XXXXXX", sock[sizeof(d->sock)];

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/np.sock", dir);
        test_daemon_start_at(d, sock, extra_args, nofile, capture_stderr);
        memcpy(d->dir, dir, sizeof(d->dir));
}

void test_daemon_start_with_config(TestDaemon *d, const char *text, char *conf)
{
        snprintf(conf, 32, "/tmp/netpolld-conf-XXXXXX");
        test_write_temp(conf, text);
        const char *args[] = { "--config", conf, NULL };
        test_daemon_start(d, args, 0, false);
}

void test_await_listening(pid_t pid, const char *path, int stderr_fd)
{
        for (int i = 0; i < 1000; i++) {
                int fd = test_raw_connect(path);
                if (fd >= 0) {
                        close(fd);
                        return;
                }
                int status;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        char buf[4096] = "";
                        ssize_t n = stderr_fd >= 0 ? read(stderr_fd, buf, sizeof(buf) - 1) : 0;
                        buf[n > 0 ? n : 0] = '\0';
                        ck_abort_msg("netpolld exited at start (status 0x%x): %s", status, buf);
                }
                usleep(10000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        ck_abort_msg("netpolld did not start listening on %s", path);
}

size_t test_daemon_stderr(TestDaemon *d, char *buf, size_t len)
{
        size_t n = 0;

        while (d->stderr_fd >= 0 && n + 1 < len) {
                ssize_t k = read(d->stderr_fd, buf + n, len - 1 - n);
                if (k <= 0)
                        break;
                n += (size_t)k;
        }
        buf[n] = '\0';
        return n;
}

int test_daemon_stop(TestDaemon *d)
{
        int status = -1;

        if (d->pid > 0) {
                kill(d->pid, SIGTERM);
                for (int i = 0; i < 1000; i++) {
                        if (waitpid(d->pid, &status, WNOHANG) == d->pid)
                                break;
                        if (i == 999) {
                                kill(d->pid, SIGKILL);
                                waitpid(d->pid, &status, 0);
                        }
                        usleep(10000);
                }
                d->pid = 0;
        }
        if (d->stderr_fd >= 0) {
                close(d->stderr_fd);
                d->stderr_fd = -1;
        }
        if (d->dir[0]) {
                unlink(d->sock);
                rmdir(d->dir);
        }
        return status;
}

void test_daemon_stop_ok(TestDaemon *d)
{
        int st = test_daemon_stop(d);

        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "netpolld did not exit 0 (status %#x)",
                      st);
}

/* ---- running programs ---- */

const char *test_pollctl_bin(void)
{
        const char *b = getenv("POLLCTL_BIN");
        return b && *b ? b : "./build/pollctl";
}

int test_wait_exit(pid_t pid, int timeout_ms)
{
        int status;

        for (int waited = 0;; waited += 5) {
                pid_t r = waitpid(pid, &status, WNOHANG);
                if (r == pid)
                        return status;
                ck_assert_int_eq(r, 0);
                if (waited >= timeout_ms)
                        break;
                usleep(5000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
}

void test_proc_spawn(TestProc *p, const char *const *argv, bool as_nobody, const char *sock_env,
                     int stdin_fd)
{
        int o[2], e[2];

        ck_assert_int_eq(pipe2(o, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(e, O_CLOEXEC), 0);
        p->start = test_now();
        p->pid = fork();
        ck_assert_int_ge(p->pid, 0);
        if (p->pid == 0) {
                int in = stdin_fd >= 0 ? stdin_fd : open("/dev/null", O_RDONLY);
                dup2(in, STDIN_FILENO);
                dup2(o[1], STDOUT_FILENO);
                dup2(e[1], STDERR_FILENO);
                test_child_env();
                if (sock_env)
                        setenv("NETPOLL_SOCKET", sock_env, 1);
                if (as_nobody && (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 ||
                                  setuid(NOBODY) < 0))
                        _exit(126);
                execv(argv[0], (char *const *)argv);
                _exit(127);
        }
        close(o[1]);
        close(e[1]);
        p->out = o[0];
        p->err = e[0];
}

void test_proc_collect(TestProc *p, TestRun *r)
{
        struct pollfd pfd[2] = { { .fd = p->out, .events = POLLIN },
                                 { .fd = p->err, .events = POLLIN } };
        size_t len[2] = { 0, 0 };
        int64_t deadline = test_now() + 20 * NS_PER_S;

        while ((pfd[0].fd >= 0 || pfd[1].fd >= 0) && test_now() < deadline) {
                if (poll(pfd, 2, 100) <= 0)
                        continue;
                for (int i = 0; i < 2; i++) {
                        char *buf = i ? r->err : r->out;
                        size_t cap = i ? sizeof(r->err) : sizeof(r->out);
                        if (pfd[i].fd < 0 || !pfd[i].revents)
                                continue;
                        ssize_t k = read(pfd[i].fd, buf + len[i], cap - 1 - len[i]);
                        if (k <= 0 || len[i] + (size_t)k >= cap - 1) {
                                close(pfd[i].fd);
                                pfd[i].fd = -1;
                        }
                        if (k > 0)
                                len[i] += (size_t)k;
                }
        }
        for (int i = 0; i < 2; i++)
                if (pfd[i].fd >= 0)
                        close(pfd[i].fd);
        r->out[len[0]] = '\0';
        r->err[len[1]] = '\0';
        r->status = test_wait_exit(p->pid, 5000);
        r->elapsed_ns = test_now() - p->start;
        ck_assert_msg(r->status != -1, "%s did not exit\nstdout: %s\nstderr: %s", "child",
                      r->out, r->err);
}

void test_run_full(TestRun *r, const char *const *argv, bool as_nobody, const char *sock_env,
                   int stdin_fd)
{
        TestProc p;

        memset(r, 0, sizeof(*r));
        test_proc_spawn(&p, argv, as_nobody, sock_env, stdin_fd);
        test_proc_collect(&p, r);
}

void test_run(TestRun *r, const char *const *argv)
{
        test_run_full(r, argv, false, NULL, -1);
}

void test_assert_exit(const TestRun *r, int code)
{
        ck_assert_msg(WIFEXITED(r->status) && WEXITSTATUS(r->status) == code,
                      "exit status %d (raw 0x%x), want %d\nstdout: %s\nstderr: %s",
                      WIFEXITED(r->status) ? WEXITSTATUS(r->status) : -1, r->status, code,
                      r->out, r->err);
}

bool test_read_until(int fd, char *buf, size_t len, const char *needle)
{
        int64_t deadline = test_now() + 10 * NS_PER_S;
        size_t n = strlen(buf);

        while (!strstr(buf, needle)) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                int64_t left = (deadline - test_now()) / NS_PER_MS;
                if (left <= 0 || n + 1 >= len)
                        return false;
                if (poll(&pfd, 1, (int)left) <= 0)
                        continue;
                ssize_t k = read(fd, buf + n, len - 1 - n);
                if (k < 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                if (k <= 0)
                        return false;
                n += (size_t)k;
                buf[n] = '\0';
        }
        return true;
}

/* ---- files ---- */

void test_write_file(const char *path, const char *text)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ssize_t len = (ssize_t)strlen(text);

        ck_assert_msg(fd >= 0, "cannot write %s: %s", path, strerror(errno));
        ck_assert_int_eq(write(fd, text, (size_t)len), len);
        ck_assert_int_eq(close(fd), 0);
}

void test_write_temp(char *tmpl, const char *text)
{
        int fd = mkstemp(tmpl);
        ssize_t len = (ssize_t)strlen(text);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, text, (size_t)len), len);
        close(fd);
}

/* ---- parked waits ---- */

static void *waiter_run(void *arg)
{
        Waiter *w = arg;

        if (w->canceled)
                w->result = np_wait_canceled(w->c, w->d, w->mode);
        else
                w->result = np_wait(w->c, w->d, w->mode);
        w->end = test_now();
        atomic_store(&w->done, true);
        return NULL;
}

void waiter_start(Waiter *w, np_client *c, np_desc d, int mode, bool canceled)
{
        *w = (Waiter){ .c = c, .d = d, .mode = mode, .canceled = canceled, .result = -1000 };
        atomic_init(&w->done, false);
        ck_assert_int_eq(pthread_create(&w->thread, NULL, waiter_run, w), 0);
}

int waiter_join(Waiter *w)
{
        ck_assert_int_eq(pthread_join(w->thread, NULL), 0);
        return w->result;
}

bool waiter_join_within(Waiter *w, int64_t timeout_ns)
{
        int64_t end = test_now() + timeout_ns;

        while (!atomic_load(&w->done) && test_now() < end)
                usleep(2000);
        if (!atomic_load(&w->done))
                return false;
        pthread_join(w->thread, NULL);
        return true;
}

static void await_waits(np_client *c, uint64_t n, bool daemon_wide)
{
        int64_t end = test_now() + 10 * NS_PER_S;
        uint64_t have;

        for (;;) {
                if (daemon_wide) {
                        struct np_status st;
                        ck_assert_int_eq(np_status(c, &st), 0);
                        have = st.waiters;
                } else {
                        struct np_session_stats st;
                        ck_assert_int_eq(np_session_stats(c, &st), 0);
                        have = st.waiters;
                }
                if (have == n)
                        return;
                if (test_now() >= end)
                        break;
                usleep(5000);
        }
        ck_abort_msg("%s has %llu parked waits, expected %llu",
                     daemon_wide ? "the daemon" : "the connection", (unsigned long long)have,
                     (unsigned long long)n);
}

void await_waiters(np_client *c, uint64_t n)
{
        await_waits(c, n, false);
}

void await_daemon_waiters(np_client *c, uint64_t n)
{
        await_waits(c, n, true);
}

/* ---- restarts ---- */

void await_instance(np_client *admin, uint64_t want, struct np_status *ret)
{
        struct np_status st = { 0 };

        for (int i = 0; i < 1000; i++) {
                if (np_status(admin, &st) == 0 && st.instance >= want) {
                        if (ret)
                                *ret = st;
                        return;
                }
                usleep(10000);
        }
        ck_abort_msg("instance %llu, want %llu", (unsigned long long)st.instance,
                     (unsigned long long)want);
}

/* ---- a client in a child process ---- */

void test_client_child_start(TestClientChild *cc, const char *sock, const char *comm)
{
        int ready[2], hold[2];
        char c;

        ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(hold, O_CLOEXEC), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                np_client *nc;
                close(hold[1]);
                close(ready[0]);
                prctl(PR_SET_NAME, comm, 0, 0, 0);
                if (np_connect(sock, &nc) < 0)
                        _exit(1);
                (void)!write(ready[1], "x", 1);
                (void)!read(hold[0], &c, 1); /* until the parent is done */
                _exit(0);
        }
        close(hold[0]);
        close(ready[1]);
        ck_assert_int_eq(read(ready[0], &c, 1), 1);
        close(ready[0]);
        *cc = (TestClientChild){ .pid = pid, .hold = hold[1] };
}

int test_client_child_end(TestClientChild *cc)
{
        int status;

        close(cc->hold);
        ck_assert_int_eq(waitpid(cc->pid, &status, 0), cc->pid);
        return status;
}
