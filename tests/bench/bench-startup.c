/*
 * Scenario 8, start-up: from just before fork+exec of netpolld until a
 * connect() to its socket succeeds (polled every 50 us, so the poller
 * leaves the daemon a core), each start in a fresh directory.  Baseline:
 * fork+exec of /bin/true until waitpid() returns, the cost of starting
 * any dynamically linked program here.  The two alternate, so both see the
 * same moments of the machine.
 */
#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define SC "startup"
#define POLL_NS (50 * NSEC_PER_USEC)

static int64_t start_netpolld(void)
{
        struct timespec pause = ns_to_timespec(POLL_NS);
        int64_t give_up, t0 = now_ns();
        BenchDaemon d;

        bench_daemon_spawn(&d, "startup");
        give_up = t0 + 10 * NSEC_PER_SEC;
        while (!bench_connectable(d.sock)) {
                if (now_ns() > give_up || waitpid(d.pid, NULL, WNOHANG) == d.pid)
                        bench_die("netpolld did not start; see netpolld-startup.log");
                nanosleep(&pause, NULL);
        }
        int64_t t1 = now_ns();
        bench_daemon_stop(&d);
        return t1 - t0;
}

static int64_t start_true(void)
{
        int64_t t0 = now_ns();
        int status;
        pid_t pid = fork();

        if (pid < 0)
                bench_die("fork: %s", strerror(errno));
        if (pid == 0) {
                execl("/bin/true", "true", (char *)NULL);
                _exit(127);
        }
        waitpid(pid, &status, 0);
        int64_t t1 = now_ns();
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                bench_die("/bin/true failed");
        return t1 - t0;
}

int main(int argc, char **argv)
{
        Samples np = { 0 }, base = { 0 };

        bench_init(argc, argv, "bench-startup");
        size_t runs = bench_count(100, 20);

        (void)start_true(); /* page cache and loader warm for both */
        (void)start_netpolld();
        for (size_t i = 0; i < runs; i++) {
                samples_add(&base, start_true());
                samples_add(&np, start_netpolld());
        }

        bench_baseline(SC, "fork+exec of /bin/true until it has exited");
        bench_row(SC, "p50", "ms", (double)samples_pct(&np, 50) / 1e6,
                  (double)samples_pct(&base, 50) / 1e6);
        bench_row(SC, "p99", "ms", (double)samples_pct(&np, 99) / 1e6,
                  (double)samples_pct(&base, 99) / 1e6);
        bench_row(SC, "max", "ms", (double)samples_max(&np) / 1e6,
                  (double)samples_max(&base) / 1e6);
        bench_info(SC, "runs", "count", (double)runs);
        samples_free(&np);
        samples_free(&base);
        return bench_finish();
}
