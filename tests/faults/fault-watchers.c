/*
 * Isolation: a non-admin OP_WATCH must not make every event cost a walk
 * of the connection table.
 *
 * Watch events are generated for each outcome while anyone watches.  The
 * daemon used to look for the subscribers by walking every connection
 * slot per event, so one unprivileged `pollctl watch` (which sees only its
 * own connection) made every other client's every event cost a walk of
 * thousands of slots.  It now keeps a list of the subscribers.
 *
 * 6,000 idle connections fill the table; a storm client arms 256 pipes,
 * makes them all ready and collects the outcomes, over and over; a victim
 * pings every 2 ms.  Attack window: a uid-65534 client subscribes with
 * np_watch(all it may see) for the window; control window: the same client
 * connects without subscribing.  The verdict (probe.h) compares the
 * victim's p99, and the storm's events per second during the attacks must
 * stay above half of those during the controls.  The storm thread and the
 * daemon share one CPU throughout (pin_storm).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "probe.h"

#define IDLE_CONNS 6000
#define STORM_PIPES 256
#define WATCHDOG_USEC 1000000

typedef struct Storm {
        np_client *c;
        int p[STORM_PIPES][2];
        np_desc d[STORM_PIPES];
        atomic_int stop;
        _Atomic uint64_t events;
        atomic_int busy; /* arms refused -EBUSY */
        pthread_t thread;
} Storm;

/* Arms every pipe that has no outcome pending, writes into all of them and
 * collects the outcomes, over and over.  An arm refused with -EBUSY (its
 * previous outcome not delivered yet) is counted and that pipe left armed. */
static void *storm_main(void *arg)
{
        Storm *s = arg;
        np_event ev[STORM_PIPES];
        bool armed[STORM_PIPES] = { false };
        char buf[64];

        fault_load_thread();
        for (int round = 0; round < 10000000 && !atomic_load(&s->stop); round++) {
                int want = 0;
                for (int i = 0; i < STORM_PIPES; i++) {
                        if (!armed[i]) {
                                int r = np_arm(s->c, s->d[i], NP_READ);
                                if (r == -EBUSY)
                                        atomic_fetch_add(&s->busy, 1);
                                else if (r < 0)
                                        fault_die("storm: np_arm: %s", strerror(-r));
                                armed[i] = true;
                        }
                        want++;
                }
                for (int i = 0; i < STORM_PIPES; i++)
                        (void)!write(s->p[i][1], "x", 1);
                int got = 0;
                for (int k = 0; k < 100 && got < want && !atomic_load(&s->stop); k++) {
                        int n = np_poll(s->c, 100 * NSEC_PER_MSEC_F, ev, STORM_PIPES);
                        if (n < 0)
                                fault_die("storm: np_poll: %s", strerror(-n));
                        for (int j = 0; j < n; j++)
                                if (ev[j].user < STORM_PIPES && armed[ev[j].user]) {
                                        armed[ev[j].user] = false;
                                        got++;
                                }
                }
                atomic_fetch_add(&s->events, (uint64_t)got);
                for (int i = 0; i < STORM_PIPES; i++)
                        (void)!read(s->p[i][0], buf, sizeof(buf));
        }
        return NULL;
}

/*
 * The storm thread and the daemon on one CPU, for the whole run.  Where
 * the kernel puts them otherwise flips between windows (on a VM whose idle
 * vCPUs halt, a cross-CPU wake costs ~20 us), and the storm's rate with it,
 * by 3x and more whatever the watcher does; on one CPU both kinds of window
 * see the same placement.  The victim and the watcher still float.
 */
static void pin_storm(Storm *s, pid_t daemon)
{
        cpu_set_t one;
        int r;

        CPU_ZERO(&one);
        CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one);
        if (pthread_setaffinity_np(s->thread, sizeof(one), &one) != 0)
                fault_die("pthread_setaffinity_np failed");
        r = test_pin_threads(daemon, sizeof(one), &one);
        if (r <= 0)
                fault_die("pinning the daemon: %s", r < 0 ? strerror(-r) : "no thread took it");
}

typedef struct Watcher {
        const char *sock;
        uint64_t events[2]; /* storm events in [control, attack] windows */
        int64_t ns[2];
        Storm *storm;
} Watcher;

/* A uid-65534 client for one window: subscribes when attack. */
static void window(void *arg, bool attack, int round)
{
        Watcher *w = arg;
        int ready[2], ctl[2];
        char b = 0;

        (void)round;
        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(ctl, O_CLOEXEC) < 0)
                fault_die("pipe2: %s", strerror(errno));
        pid_t pid = fork();
        if (pid < 0)
                fault_die("fork: %s", strerror(errno));
        if (pid == 0) {
                np_client *c;
                close(ready[0]);
                close(ctl[1]);
                if (setgroups(0, NULL) < 0 || setgid(FAULT_OTHER_UID) < 0 ||
                    setuid(FAULT_OTHER_UID) < 0)
                        _exit(10);
                /* After setuid, which clears it. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (np_connect(w->sock, &c) < 0)
                        _exit(11);
                if (attack && np_watch(c, 0) < 0)
                        _exit(12);
                (void)!write(ready[1], "k", 1);
                (void)!read(ctl[0], &b, 1);
                np_disconnect(c);
                _exit(0);
        }
        close(ready[1]);
        close(ctl[0]);
        if (read(ready[0], &b, 1) != 1)
                fault_die("the watcher child failed (%d)", fault_reap(pid, 1000));
        uint64_t e0 = atomic_load(&w->storm->events);
        int64_t t0 = test_now();
        fault_sleep_ms(fault_quick ? 500 : 1500);
        w->events[attack] += atomic_load(&w->storm->events) - e0;
        w->ns[attack] += test_now() - t0;
        close(ctl[1]);
        close(ready[0]);
        int status = fault_reap(pid, 5000);
        fault_check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "watcher child: 0x%x",
                    status);
}

int main(int argc, char **argv)
{
        FaultDaemon dm;
        struct np_status st;
        np_client *mon;
        Storm storm = { 0 };
        FaultAB ab;
        static int idle[IDLE_CONNS];

        fault_init(argc, argv, "watchers");
        if (fault_nofile() < IDLE_CONNS + 2 * STORM_PIPES + 200)
                fault_die("fd limit too low");
        FaultNotify *n = notify_start();
        fault_daemon_start(&dm, &(FaultDaemonOpts){
                                        .config = "[daemon]\nsocket_mode = 0666\n"
                                                  "[limits]\nmax_connections = 8192\n"
                                                  "max_connections_per_uid = 8192\n"
                                                  "max_descriptors_per_uid = 100%\n",
                                        .notify_socket = notify_path(n),
                                        .watchdog_usec = WATCHDOG_USEC });
        if (chmod(dm.dir, 0755) < 0)
                fault_die("chmod: %s", strerror(errno));
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");
        for (int i = 0; i < IDLE_CONNS; i++)
                idle[i] = raw_greeted(dm.sock);
        fault_must(fault_connect(dm.sock, &storm.c), "connect the storm");
        for (int i = 0; i < STORM_PIPES; i++) {
                if (pipe2(storm.p[i], O_CLOEXEC | O_NONBLOCK) < 0)
                        fault_die("pipe2: %s", strerror(errno));
                fault_must(np_open(storm.c, storm.p[i][0], (uint64_t)i, &storm.d[i]), "np_open");
        }
        FaultVictim *v = victim_start(dm.sock, 2000);
        if (pthread_create(&storm.thread, NULL, storm_main, &storm) != 0)
                fault_die("pthread_create");
        pin_storm(&storm, dm.pid);

        Watcher w = { .sock = dm.sock, .storm = &storm };
        int rounds = fault_quick ? 3 : 8;
        fault_say("%d idle connections, a storm of %d armed pipes, %d rounds", IDLE_CONNS,
                  STORM_PIPES, rounds);
        fault_ab_run(&ab, rounds, window, &w);
        atomic_store(&storm.stop, 1);
        pthread_join(storm.thread, NULL);
        fault_ab_verdict(&ab, v, n, WATCHDOG_USEC, "watchers");
        victim_stop(v);
        for (int k = 0; k < 2; k++)
                fault_say("storm events during %-8s %.0f a second", k ? "attacks" : "controls",
                          w.ns[k] ? (double)w.events[k] * 1e9 / (double)w.ns[k] : 0.0);
        fault_check(w.events[1] > 0 && w.events[0] > 0, "the storm delivered nothing");
        /* The watcher sees none of these events: they must cost no more. */
        double rate[2];
        for (int k = 0; k < 2; k++)
                rate[k] = w.ns[k] ? (double)w.events[k] * 1e9 / (double)w.ns[k] : 0.0;
        fault_check(rate[1] >= 0.5 * rate[0],
                    "the storm's events per second fell from %.0f to %.0f with a watcher "
                    "subscribed",
                    rate[0], rate[1]);
        fault_say("storm arms refused -EBUSY (an outcome still on its way): %d",
                  atomic_load(&storm.busy));

        for (int i = 0; i < STORM_PIPES; i++) {
                (void)np_unblock(storm.c, storm.d[i]);
                (void)np_close(storm.c, storm.d[i]);
                close(storm.p[i][0]);
                close(storm.p[i][1]);
        }
        np_disconnect(storm.c);
        for (int i = 0; i < IDLE_CONNS; i++)
                close(idle[i]);
        fault_check(fault_daemon_alive(&dm), "the daemon died");
        (void)np_status(mon, &st);
        np_disconnect(mon);
        fault_daemon_stop(&dm);
        notify_stop(n);
        return fault_finish();
}
