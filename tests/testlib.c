/* Check-free test support; see testlib.h. */
#include "testlib.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <signal.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <linux/sched/types.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t test_now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int fd_count_of(pid_t pid)
{
        char path[64];
        struct dirent *e;
        DIR *d;
        int n = 0;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
        d = opendir(path);
        if (!d)
                return -errno;
        while ((e = readdir(d)))
                n += e->d_name[0] != '.';
        closedir(d);
        return pid == getpid() ? n - 1 : n;
}

int test_raw_connect(const char *path)
{
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -errno;
        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

int64_t test_cpu_ns(pid_t pid)
{
        struct timespec ts;
        clockid_t clk;
        int r = clock_getcpuclockid(pid, &clk);

        if (r != 0)
                return -r;
        if (clock_gettime(clk, &ts) < 0)
                return -errno;
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

long test_proc_status_kib(pid_t pid, const char *field)
{
        char path[64], line[256];
        size_t len = strlen(field);
        long kib = -ENOENT;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, field, len) == 0 && line[len] == ':' &&
                    sscanf(line + len + 1, "%ld kB", &kib) == 1)
                        break;
        fclose(f);
        return kib;
}

int test_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t nfds, int flags)
{
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(sizeof(int) * TEST_MAX_FDS)];
        } control;
        struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        if (nfds > TEST_MAX_FDS)
                return -EINVAL;
        if (nfds > 0) {
                memset(&control, 0, sizeof(control));
                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
        }
        return sendmsg(sock, &mh, MSG_NOSIGNAL | flags) < 0 ? -errno : 0;
}

int test_sched_get(pid_t pid, TestSched *ret)
{
        struct sched_attr a;

        memset(&a, 0, sizeof(a));
        if (syscall(SYS_sched_getattr, pid, &a, sizeof(a), 0) < 0)
                return -errno;
        *ret = (TestSched){
                .policy = (int)a.sched_policy,
                .nice = a.sched_nice,
                .slice_ns = (int64_t)a.sched_runtime,
                .reset_on_fork = (a.sched_flags & SCHED_FLAG_RESET_ON_FORK) != 0,
        };
        return 0;
}

int64_t test_sched_default_slice(void)
{
        int p[2], status;
        int64_t ns = -EIO;

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0) {
                ns = -errno;
                close(p[0]);
                close(p[1]);
                return ns;
        }
        if (pid == 0) {
                TestSched t = { 0 };
                int64_t v = -EIO;
                if (test_sched_get(0, &t) == 0) {
                        /* Policy and nice as they are: no privilege needed. */
                        struct sched_attr a = { .size = sizeof(a),
                                                .sched_policy = (uint32_t)t.policy,
                                                .sched_nice = t.nice };
                        if (syscall(SYS_sched_setattr, 0, &a, 0) == 0 && test_sched_get(0, &t) == 0)
                                v = t.slice_ns;
                }
                (void)!write(p[1], &v, sizeof(v));
                _exit(0);
        }
        close(p[1]);
        if (read(p[0], &ns, sizeof(ns)) != (ssize_t)sizeof(ns))
                ns = -EIO;
        close(p[0]);
        waitpid(pid, &status, 0);
        return ns;
}

void test_child_env(void)
{
        sigset_t none;

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDNAMES");
        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        unsetenv("NETPOLL_SOCKET");
}

int test_pin_threads(pid_t pid, size_t size, const void *set)
{
        char path[64];
        struct dirent *e;
        int n = 0;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
        d = opendir(path);
        if (!d)
                return -errno;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.' &&
                    syscall(SYS_sched_setaffinity, (pid_t)atoi(e->d_name), size, set) == 0)
                        n++;
        closedir(d);
        return n;
}
