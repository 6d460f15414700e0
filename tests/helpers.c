/* Test support; see helpers.h. */
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

void test_daemon_start(TestDaemon *d, const char *const *extra_args, int nofile,
                       bool capture_stderr)
{
        int pipefd[2] = { -1, -1 };
        const char *argv[32];
        int argc = 0;

        memset(d, 0, sizeof(*d));
        d->stderr_fd = -1;
        snprintf(d->dir, sizeof(d->dir), "/tmp/netpolld-test-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(d->dir));
        snprintf(d->sock, sizeof(d->sock), "%s/np.sock", d->dir);
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
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                unsetenv("LISTEN_FDS");
                unsetenv("LISTEN_PID");
                unsetenv("NOTIFY_SOCKET");
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
        /* Wait (at most 10 s) until it accepts connections. */
        for (int i = 0; i < 1000; i++) {
                int fd = test_raw_connect(d->sock);
                if (fd >= 0) {
                        close(fd);
                        return;
                }
                int status;
                if (waitpid(pid, &status, WNOHANG) == pid)
                        ck_abort_msg("netpolld exited at start (status %d)", status);
                usleep(10000);
        }
        kill(pid, SIGKILL);
        ck_abort_msg("netpolld did not start listening on %s", d->sock);
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
        unlink(d->sock);
        rmdir(d->dir);
        return status;
}
