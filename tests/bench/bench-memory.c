/*
 * Scenario 7, memory: the daemon's RssAnon (/proc/PID/status) idle, and
 * its growth per registered descriptor: one descriptor registered first
 * (so the connection's own buffers are already counted), then N more,
 * growth divided by N.  RssAnon counts pages the daemon touched, so the
 * kernel's own cost (struct file, epoll item) is not in it, only what
 * netpolld itself keeps per descriptor.
 *
 * Baselines: idle, a minimal C process (/bin/sleep) on the same libc; per
 * descriptor, Go's runtime (os.File plus pollDesc) from the Go program
 * when Go is installed.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "netpoll.h"

#define SC "memory"

/* RssAnon of an idle /bin/sleep, in KiB. */
static long sleep_rss(void)
{
        pid_t pid = fork();
        long kib;

        if (pid < 0)
                bench_die("fork: %s", strerror(errno));
        if (pid == 0) {
                execl("/bin/sleep", "sleep", "30", (char *)NULL);
                _exit(127);
        }
        /* Until exec has replaced our image, the child's RssAnon is ours. */
        int64_t give_up = now_ns() + 5 * NSEC_PER_SEC;
        char exe[64], target[64] = "";
        snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)pid);
        while (now_ns() < give_up) {
                ssize_t n = readlink(exe, target, sizeof(target) - 1);
                target[n > 0 ? n : 0] = '\0';
                if (strstr(target, "sleep"))
                        break;
        }
        usleep(50 * 1000); /* let the dynamic loader finish */
        kib = test_proc_status_kib(pid, "RssAnon");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        if (kib < 0)
                bench_die("RssAnon of /bin/sleep: %s", strerror((int)-kib));
        return kib;
}

int main(int argc, char **argv)
{
        BenchDaemon d;
        np_desc desc;

        bench_init(argc, argv, "bench-memory");
        size_t n = bench_count(10000, 2000);
        size_t room = (size_t)bench_nofile() - 256;
        if (n > room)
                n = room;
        int *fds = calloc(n + 1, sizeof(*fds));
        if (!fds)
                bench_die("out of memory");

        bench_daemon_start(&d, "memory");
        long idle = test_proc_status_kib(d.pid, "RssAnon");
        np_client *c = bench_connect(&d);
        for (size_t i = 0; i <= n; i++) {
                fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (fds[i] < 0)
                        bench_die("eventfd: %s", strerror(errno));
        }
        bench_check(np_open(c, fds[0], 0, &desc), "np_open");
        bench_check(np_ping(c), "np_ping");
        long before = test_proc_status_kib(d.pid, "RssAnon");
        for (size_t i = 1; i <= n; i++)
                bench_check(np_open(c, fds[i], i, &desc), "np_open");
        bench_check(np_ping(c), "np_ping");
        long after = test_proc_status_kib(d.pid, "RssAnon");
        if (idle < 0 || before < 0 || after < 0)
                bench_die("cannot read the daemon's RssAnon");
        np_disconnect(c);
        bench_daemon_stop(&d);
        for (size_t i = 0; i <= n; i++)
                close(fds[i]);
        free(fds);

        bench_baseline(SC, "idle: /bin/sleep; per descriptor: Go os.File + pollDesc (Go column)");
        bench_row(SC, "idle", "kib", (double)idle, (double)sleep_rss());
        bench_row(SC, "per_descriptor", "bytes", (double)(after - before) * 1024.0 / (double)n,
                  NAN);
        bench_info(SC, "descriptors", "count", (double)n);
        return bench_finish();
}
