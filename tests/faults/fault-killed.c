/*
 * Scenario 1: clients killed with SIGKILL while parked in waits with
 * deadlines.
 *
 * In waves of up to 100 forked children, each child connects, opens a few
 * pipes (the daemon holds a copy of each read end), sets a 60 s read
 * deadline on each, parks synchronous np_wait calls in threads on the
 * first ones and np_arm on the rest, checks through np_session_stats that
 * every wait is parked with its timer armed, and reports ready.  One child
 * in ten is instead killed at a random moment of its set-up (connecting,
 * opening, mid-request).  Then the whole wave is killed with SIGKILL.
 * After each wave the daemon must be back at its baseline exactly: one
 * connection (the monitor), no descriptors, waiters or timers, and the same
 * number of open fds as before the first wave.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define MAX_PIPES 16
#define MAX_WAVE 100
#define WAIT_THREADS 3
#define DEADLINE_NS (60 * NSEC_PER_SEC_F)

typedef struct Waiter {
        np_client *c;
        np_desc d;
} Waiter;

static void *wait_thread(void *arg)
{
        Waiter *w = arg;

        (void)np_wait(w->c, w->d, NP_READ); /* never returns: killed while parked */
        return NULL;
}

/* A child: parks npipes waits with deadlines and reports 'r' (or 'f') on
 * ready_fd unless it is -1. */
static void __attribute__((noreturn)) child_main(const char *sock, int npipes, int ready_fd)
{
        struct np_session_stats st = { 0 };
        Waiter w[WAIT_THREADS];
        pthread_t t[WAIT_THREADS];
        np_desc d[MAX_PIPES];
        np_client *c;
        bool ok = false;
        int p[2];

        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        if (np_connect(sock, &c) < 0)
                _exit(2);
        for (int i = 0; i < npipes; i++) {
                /* The write end stays open (a pipe without writers is
                 * readable: HUP); the daemon has its own read end. */
                if (pipe2(p, O_CLOEXEC) < 0 || np_open(c, p[0], (uint64_t)i, &d[i]) < 0)
                        _exit(3);
                close(p[0]);
                if (np_set_deadline(c, d[i], DEADLINE_NS, NP_READ) < 0)
                        _exit(3);
        }
        for (int i = 0; i < npipes; i++) {
                if (i < WAIT_THREADS) {
                        w[i] = (Waiter){ .c = c, .d = d[i] };
                        if (pthread_create(&t[i], NULL, wait_thread, &w[i]) != 0)
                                _exit(4);
                } else if (np_arm(c, d[i], NP_READ) < 0)
                        _exit(4);
        }
        for (int i = 0; i < 1000 && !ok; i++) {
                if (np_session_stats(c, &st) < 0)
                        _exit(5);
                ok = st.descriptors == (uint64_t)npipes && st.waiters == (uint64_t)npipes &&
                     st.timers == (uint64_t)npipes;
                if (!ok)
                        fault_sleep_ms(5);
        }
        if (ready_fd >= 0)
                (void)!write(ready_fd, ok ? "r" : "f", 1);
        fault_sleep_ms(120 * 1000); /* the parent kills us long before */
        _exit(6);
}

static uint64_t rng_state;

static uint64_t rng(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

int main(int argc, char **argv)
{
        FaultDaemon dm;
        struct np_status st;
        np_client *mon;
        int limit, npipes, wave, total, waves, base_fds, fds = 0;
        int killed = 0, killed_parked = 0, killed_setup = 0, not_ready = 0;
        uint64_t peak_desc = 0, peak_waiters = 0, peak_timers = 0;
        int64_t t_start;
        bool clean = true;

        fault_init(argc, argv, "killed");
        rng_state = (uint64_t)test_now() | 1;
        fault_say("seed %llu", (unsigned long long)rng_state);
        limit = fault_nofile();
        npipes = fault_quick ? 4 : MAX_PIPES;
        /* The daemon holds npipes + 1 fds per child of a wave. */
        wave = MAX_WAVE;
        while (wave > 10 && wave * (npipes + 1) + 128 > limit)
                wave /= 2;
        if (wave * (npipes + 1) + 128 > limit)
                fault_die("fd limit %d too low for a wave", limit);
        /* Quick: 1000.  Full: half the fd limit, 1000 to 10000. */
        total = fault_quick         ? 1000
                : limit / 2 < 1000  ? 1000
                : limit / 2 > 10000 ? 10000
                                    : limit / 2;
        waves = (total + wave - 1) / wave;
        fault_say("%d waves of %d children, %d pipes each (the daemon holds up to %d fds)", waves,
                  wave, npipes, wave * (npipes + 1));

        fault_daemon_start(&dm, &(FaultDaemonOpts){
                                        .config = "[limits]\n"
                                                  "max_connections = 4096\n"
                                                  "max_connections_per_uid = 4096\n"
                                                  "max_descriptors_per_uid = 100%\n",
                                });
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");
        base_fds = fault_settle(mon, dm.pid, 1, &st);
        fault_say("baseline: %d open fds, %llu connection(s)", base_fds,
                  (unsigned long long)st.connections);

        t_start = test_now();
        for (int w = 0; w < waves && clean; w++) {
                pid_t pids[MAX_WAVE];
                bool racy[MAX_WAVE];
                int ready[2], n = total - w * wave < wave ? total - w * wave : wave;
                int expect = 0, got = 0, good = 0;

                if (pipe2(ready, O_CLOEXEC) < 0)
                        fault_die("pipe: %s", strerror(errno));
                for (int i = 0; i < n; i++) {
                        racy[i] = i % 10 == 9;
                        expect += !racy[i];
                        pids[i] = fork();
                        if (pids[i] < 0)
                                fault_die("fork: %s", strerror(errno));
                        if (pids[i] == 0) {
                                close(ready[0]);
                                /* A racy child may get as far as parking
                                 * before its kill: it reports nothing, so
                                 * the count of parked waits stays exact. */
                                child_main(dm.sock, npipes, racy[i] ? -1 : ready[1]);
                        }
                }
                close(ready[1]);
                /* The racy ones die somewhere in their set-up. */
                for (int i = 0; i < n; i++)
                        if (racy[i]) {
                                fault_sleep_ms((int64_t)(rng() % 4));
                                kill(pids[i], SIGKILL);
                        }
                int64_t give_up = test_now() + 30 * NSEC_PER_SEC_F;
                while (got < expect && test_now() < give_up) {
                        struct pollfd pfd = { .fd = ready[0], .events = POLLIN };
                        char buf[MAX_WAVE];
                        if (poll(&pfd, 1, 100) <= 0)
                                continue;
                        ssize_t k = read(ready[0], buf, sizeof(buf));
                        if (k <= 0)
                                break;
                        for (ssize_t j = 0; j < k; j++) {
                                got++;
                                good += buf[j] == 'r';
                        }
                }
                close(ready[0]);
                not_ready += expect - good;
                if (np_status(mon, &st) == 0) {
                        uint64_t want = (uint64_t)good * (uint64_t)npipes;
                        fault_check(st.descriptors >= want && st.waiters >= want &&
                                            st.timers >= want,
                                    "wave %d: %d children parked %llu waits, but the daemon "
                                    "counts %llu descriptors, %llu waiters, %llu timers",
                                    w, good, (unsigned long long)want,
                                    (unsigned long long)st.descriptors,
                                    (unsigned long long)st.waiters, (unsigned long long)st.timers);
                        if (st.descriptors > peak_desc) {
                                peak_desc = st.descriptors;
                                peak_waiters = st.waiters;
                                peak_timers = st.timers;
                        }
                }
                for (int i = 0; i < n; i++)
                        kill(pids[i], SIGKILL);
                for (int i = 0; i < n; i++) {
                        int status;
                        while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR)
                                ;
                        killed++;
                        if (racy[i])
                                killed_setup++;
                        else
                                killed_parked++;
                }
                clean = fault_await_baseline(mon, dm.pid, 1, base_fds, 10000, &st, &fds);
                fault_check(clean,
                            "wave %d: not back at baseline 10 s after the kill: %llu "
                            "connections, %llu descriptors, %llu waiters, %llu timers, %d fds "
                            "(baseline %d)",
                            w, (unsigned long long)st.connections,
                            (unsigned long long)st.descriptors, (unsigned long long)st.waiters,
                            (unsigned long long)st.timers, fds, base_fds);
                if (!fault_check(fault_daemon_alive(&dm), "wave %d: netpolld died", w))
                        break;
        }
        int64_t took = test_now() - t_start;

        fault_check(not_ready == 0, "%d children could not park their waits", not_ready);
        fault_check(killed >= 1000, "only %d clients killed", killed);
        int end_fds = fd_count_of(dm.pid);
        (void)np_status(mon, &st);
        fault_say("peak while parked: %llu descriptors, %llu waiters, %llu timers",
                  (unsigned long long)peak_desc, (unsigned long long)peak_waiters,
                  (unsigned long long)peak_timers);
        fault_say("clients killed: %d (%d parked in waits, %d mid-setup) in %.1f s", killed,
                  killed_parked, killed_setup, (double)took / 1e9);
        fault_say("after: %d open fds (baseline %d), fds leaked: %d; descriptors %llu, waiters "
                  "%llu, timers %llu, connections %llu, accepted %llu",
                  end_fds, base_fds, end_fds - base_fds, (unsigned long long)st.descriptors,
                  (unsigned long long)st.waiters, (unsigned long long)st.timers,
                  (unsigned long long)st.connections, (unsigned long long)st.accepted);
        fault_check(end_fds == base_fds, "fds leaked: %d", end_fds - base_fds);
        np_disconnect(mon);
        int status = fault_daemon_stop(&dm);
        fault_check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                    "netpolld did not exit 0 on SIGTERM (status %#x)", status);
        return fault_finish();
}
