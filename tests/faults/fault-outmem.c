/*
 * Isolation: memory the daemon holds for clients that never read.
 *
 * The daemon runs with max_output_bytes = 1 MiB (a connection's queued
 * replies), max_output_bytes_per_uid = 8 MiB and max_output_bytes_total =
 * 32 MiB (socket_mode 0666).  The attacker, a child running as uid 65534,
 * opens many raw connections (128; 80 in quick mode, enough that a daemon
 * without the uid's budget goes well over the bound below) and pipelines
 * datagrams of 255 PINGs on all of them round robin without ever reading,
 * so the daemon queues every reply; a connection the daemon cuts off is
 * left closed until the next window.  Each control window does the same on
 * the same number of fresh connections that read their replies as they
 * come.  Every window ends with the attacker's connections closed and the
 * daemon back at its baseline fds and connections.
 *
 * Checked: the daemon's RSS, sampled every 5 ms, stays under its baseline
 * + the total budget + 24 MiB of slack (without the per-uid budget it
 * grows by about 1 MiB per connection); connections are cut off and the
 * daemon's log names the attacker's pid on a line that drops one; a
 * victim (root, its own connection, pinging every 500 us) keeps being
 * served: its ping p99 during the attacks against the controls
 * (fault_ab_verdict); and at the end the daemon is back at its baseline
 * fds and connections.  A daemon that does not know the new [limits] keys
 * refuses the configuration; that is a failed check, and the test then
 * runs without them, to show what the finding is.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "probe.h"

#define WATCHDOG_USEC 1000000 /* WATCHDOG=1 gaps must stay under 500 ms */
static FaultNotify *notify; /* the fake service manager */

#define MIB (1024 * 1024)
#define MAX_OUTPUT_BYTES (1 * MIB)
#define MAX_OUTPUT_PER_UID (8 * MIB)
#define MAX_OUTPUT_TOTAL (32 * MIB)
#define RSS_SLACK (24 * MIB)
#define PINGS_PER_DATAGRAM 255
#define MAX_CONNS 256
#define VICTIM_INTERVAL_US 500

/* ---- the attacker: a child running as uid 65534 ---- */

typedef struct PumpCmd {
        int attack; /* 1: never read; 0: read every reply (the control) */
        int ms;     /* how long to pump */
} PumpCmd;

typedef struct PumpReport {
        int conns; /* connections made */
        int connect_failed, first_connect_error;
        int cut;                           /* connections the daemon closed */
        int send_failed, first_send_error; /* otherwise than EAGAIN or a cut */
        int64_t datagrams;                 /* of 255 PINGs each, sent */
        int64_t read_bytes;                /* replies read (the control) */
        int64_t all_cut_ns; /* attack: when the last connection was cut (0: not all) */
} PumpReport;

/* Reads what is queued on fd without blocking (at most 64 datagrams);
 * false when the daemon closed it. */
static bool drain_replies(int fd, uint8_t *buf, size_t len, int64_t *bytes)
{
        for (int i = 0; i < 64; i++) {
                ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
                if (n > 0) {
                        *bytes += n;
                        continue;
                }
                return n < 0 && (errno == EAGAIN || errno == EINTR);
        }
        return true;
}

/* One window: n fresh connections, pumped for c->ms, then all closed. */
static void pump(const char *sock, int n, const PumpCmd *c, PumpReport *r)
{
        static int fd[MAX_CONNS];
        static uint8_t rbuf[64 * 1024];
        size_t len;
        uint8_t *msg = raw_pack_pings(PINGS_PER_DATAGRAM, &len);
        int alive = 0;

        *r = (PumpReport){ 0 };
        for (int i = 0; i < n; i++) {
                fd[i] = test_raw_connect(sock);
                int e = fd[i] < 0 ? fd[i] : raw_hello(fd[i], 5000);
                if (e < 0) {
                        if (fd[i] >= 0)
                                close(fd[i]);
                        fd[i] = -1;
                        if (r->connect_failed++ == 0)
                                r->first_connect_error = e;
                        continue;
                }
                r->conns++;
                alive++;
        }
        int64_t start = test_now(), deadline = start + (int64_t)c->ms * NSEC_PER_MSEC_F;
        for (int pass = 0; pass < 10000000 && alive > 0 && test_now() < deadline; pass++) {
                int progress = 0;
                for (int i = 0; i < n; i++) {
                        if (fd[i] < 0)
                                continue;
                        int e = test_send_fds(fd[i], msg, len, NULL, 0, MSG_DONTWAIT);
                        bool gone = e == -EPIPE || e == -ECONNRESET;
                        if (e == 0) {
                                r->datagrams++;
                                progress++;
                        } else if (e != -EAGAIN && !gone && r->send_failed++ == 0)
                                r->first_send_error = e;
                        if (!gone && !c->attack)
                                gone = !drain_replies(fd[i], rbuf, sizeof(rbuf), &r->read_bytes);
                        if (gone) {
                                close(fd[i]);
                                fd[i] = -1;
                                r->cut++;
                                alive--;
                        }
                }
                if (alive == 0 && c->attack)
                        r->all_cut_ns = test_now() - start;
                if (!progress) {
                        /* Every socket full: wait for room (or replies). */
                        struct pollfd pfd[MAX_CONNS];
                        int k = 0;
                        for (int i = 0; i < n; i++)
                                if (fd[i] >= 0)
                                        pfd[k++] = (struct pollfd){
                                                .fd = fd[i],
                                                .events = POLLOUT | (c->attack ? 0 : POLLIN)
                                        };
                        (void)poll(pfd, (nfds_t)k, 1);
                }
        }
        for (int i = 0; i < n; i++)
                if (fd[i] >= 0)
                        close(fd[i]);
        free(msg);
}

/* The child: a window per command, a report per window; ends when the
 * command pipe closes. */
static void __attribute__((noreturn)) attacker_main(const char *sock, int n, int cmd, int rep)
{
        PumpCmd c;
        PumpReport r;

        for (int i = 0; i < 1000 && fault_read_full(cmd, &c, sizeof(c), 300000); i++) {
                pump(sock, n, &c, &r);
                (void)!write(rep, &r, sizeof(r));
        }
        _exit(0);
}

/* Forks the attacker: a child of another uid running attacker_main. */
static void attacker_start(FaultChild *a, const char *sock, int n)
{
        int cmd, rep;

        if (fault_child_fork(a, &cmd, &rep))
                attacker_main(sock, n, cmd, rep);
}

/* ---- the windows ---- */

typedef struct Run {
        FaultDaemon *dm;
        np_client *mon;
        FaultChild a;
        int attack_ms, control_ms, base_fds;
        int not_back;
        int64_t worst_all_cut_ns;
        int all_cut_windows;
        PumpReport sum[2]; /* [0] control, [1] attack */
} Run;

static void run_window(void *arg, bool attack, int round)
{
        Run *run = arg;
        PumpCmd c = { .attack = attack, .ms = attack ? run->attack_ms : run->control_ms };
        PumpReport r;
        struct np_status st;
        int fds;

        if (write(run->a.cmd, &c, sizeof(c)) != (ssize_t)sizeof(c) ||
            !fault_read_full(run->a.rep, &r, sizeof(r), c.ms + 120000))
                fault_die("the uid %d attacker did not report", FAULT_OTHER_UID);
        /* The window covers the daemon's teardown of the connections too. */
        if (!fault_await_baseline(run->mon, run->dm->pid, 2, run->base_fds, 10000, &st, &fds)) {
                run->not_back++;
                fault_say("round %d %s: not back at baseline: %d fds (want %d), %llu "
                          "connections",
                          round, attack ? "attack" : "control", fds, run->base_fds,
                          (unsigned long long)st.connections);
        }
        PumpReport *s = &run->sum[attack];
        if (s->connect_failed == 0)
                s->first_connect_error = r.first_connect_error;
        if (s->send_failed == 0)
                s->first_send_error = r.first_send_error;
        s->conns += r.conns;
        s->connect_failed += r.connect_failed;
        s->cut += r.cut;
        s->send_failed += r.send_failed;
        s->datagrams += r.datagrams;
        s->read_bytes += r.read_bytes;
        if (attack && r.all_cut_ns) {
                run->all_cut_windows++;
                if (r.all_cut_ns > run->worst_all_cut_ns)
                        run->worst_all_cut_ns = r.all_cut_ns;
        }
}

/* Lines of the log that name pid and drop a client; the first in *ret_line. */
static int dropped_lines(const FaultDaemon *dm, pid_t pid, char *ret_line, size_t len)
{
        char *log = fault_daemon_log(dm), needle[32];
        int n = 0;

        ret_line[0] = '\0';
        snprintf(needle, sizeof(needle), "(pid %d,", (int)pid);
        for (char *l = log, *end; *l; l = end + (*end != '\0')) {
                end = strchr(l, '\n');
                if (!end)
                        end = l + strlen(l);
                char save = *end;
                *end = '\0';
                if (strstr(l, needle) && strstr(l, "drop")) {
                        if (n++ == 0)
                                snprintf(ret_line, len, "%s", l);
                }
                *end = save;
        }
        free(log);
        return n;
}

int main(int argc, char **argv)
{
        FaultDaemon dm;
        struct np_status st;
        FaultAB ab;
        Run run = { .dm = &dm };
        char config[512], line[512];
        int limit, n, rounds;

        fault_init(argc, argv, "outmem");
        limit = fault_nofile();
        n = fault_quick ? 80 : 128;
        /* Ours: n sockets; the daemon's: n plus its own. */
        if (n > limit / 2 - 64)
                n = limit / 2 - 64;
        if (n < 48)
                fault_die("fd limit %d too low", limit);
        /* An attack window ends when every connection was cut off, at the
         * latest after attack_ms: at some 15 MiB of replies a second (this
         * 2-core VM), a daemon without the uid's budget needs about 6 s to
         * queue 1 MiB for each of 80 connections. */
        rounds = fault_quick ? 1 : 3;
        run.attack_ms = fault_quick ? 10000 : 15000;
        run.control_ms = fault_quick ? 3000 : 4000;

        char keys[128];
        snprintf(keys, sizeof(keys), "max_output_bytes_per_uid = %d\nmax_output_bytes_total = %d\n",
                 MAX_OUTPUT_PER_UID, MAX_OUTPUT_TOTAL);
        fault_pick_config(config, sizeof(config),
                          "[daemon]\nsocket_mode = 0666\n[limits]\nmax_output_bytes = 1048576\n",
                          keys);
        notify = notify_start();
        fault_daemon_start(&dm, &(FaultDaemonOpts){ .config = config,
                                                    .notify_socket = notify_path(notify),
                                                    .watchdog_usec = WATCHDOG_USEC });
        fault_must(fault_connect(dm.sock, &run.mon), "connect the monitor");
        int end_fds = fault_settle(run.mon, dm.pid, 1, &st);
        FaultVictim *v = victim_start(dm.sock, VICTIM_INTERVAL_US);
        run.base_fds = fault_settle(run.mon, dm.pid, 2, &st);
        int64_t base_rss = test_proc_status_kib(dm.pid, "VmRSS") * 1024;
        int64_t cap = base_rss + MAX_OUTPUT_TOTAL + RSS_SLACK;
        fault_say("uid %d: %d connections pipelining %d PINGs a datagram, attacks until all are "
                  "cut off (at most %d ms), controls of %d ms, %d rounds; budgets: %d MiB a "
                  "connection, %d MiB a uid, %d MiB in all; daemon "
                  "baseline %d fds, RSS %.1f MiB, cap %.1f MiB",
                  FAULT_OTHER_UID, n, PINGS_PER_DATAGRAM, run.attack_ms, run.control_ms, rounds,
                  MAX_OUTPUT_BYTES / MIB, MAX_OUTPUT_PER_UID / MIB, MAX_OUTPUT_TOTAL / MIB,
                  run.base_fds, (double)base_rss / MIB, (double)cap / MIB);

        FaultRss *rss = rss_start(dm.pid, base_rss);
        attacker_start(&run.a, dm.sock, n);
        pid_t attacker = run.a.pid;
        fault_ab_run(&ab, rounds, run_window, &run);
        int samples;
        int64_t peak = rss_stop(rss, &samples);
        int status = fault_child_end(&run.a);

        for (int k = 1; k >= 0; k--) {
                const PumpReport *s = &run.sum[k];
                fault_say("%s: %d connections (%d failed: %s), %lld datagrams sent (%.1f MiB of "
                          "replies read), %d cut off, %d sends failed otherwise (%s)",
                          k ? "attacks" : "controls", s->conns, s->connect_failed,
                          fault_strerror(s->first_connect_error), (long long)s->datagrams,
                          (double)s->read_bytes / MIB, s->cut, s->send_failed,
                          fault_strerror(s->first_send_error));
        }
        if (run.all_cut_windows)
                fault_say("attacks: all %d connections cut off in %d of %d windows, at most "
                          "%.0f ms in",
                          n, run.all_cut_windows, rounds, (double)run.worst_all_cut_ns / 1e6);
        int named = dropped_lines(&dm, attacker, line, sizeof(line));
        fault_say("daemon log: %d lines drop a client of pid %d%s%s", named, (int)attacker,
                  named ? ", the first: " : "", line);
        fault_say("daemon RSS: baseline %.1f MiB, peak %.1f MiB over %d samples (cap %.1f MiB = "
                  "baseline + %d MiB total budget + %d MiB)",
                  (double)base_rss / MIB, (double)peak / MIB, samples,
                  (double)cap / MIB, MAX_OUTPUT_TOTAL / MIB, RSS_SLACK / MIB);
        fault_check(peak < cap, "daemon RSS peaked at %.1f MiB, over the %.1f MiB cap",
                    (double)peak / MIB, (double)cap / MIB);
        for (int k = 1; k >= 0; k--) {
                const PumpReport *s = &run.sum[k];
                const char *kind = k ? "attacks" : "controls";
                fault_check(s->connect_failed == 0 && s->send_failed == 0,
                            "%s: %d connects failed (%s), %d sends failed (%s)", kind,
                            s->connect_failed, fault_strerror(s->first_connect_error),
                            s->send_failed, fault_strerror(s->first_send_error));
        }
        fault_check(run.sum[1].cut > 0, "no attacking connection was cut off");
        fault_check(named > 0, "no line of the daemon's log names pid %d dropping a client",
                    (int)attacker);
        fault_check(run.sum[0].cut == 0, "%d reading connections were cut off", run.sum[0].cut);
        fault_check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                    "the attacker exited with status %#x", status);
        fault_check(run.not_back == 0, "%d windows did not end at the baseline", run.not_back);
        fault_ab_verdict(&ab, v, notify, WATCHDOG_USEC, "outmem");
        fault_check(fault_daemon_alive(&dm), "netpolld died");
        victim_stop(v);

        int fds;
        bool back = fault_await_baseline(run.mon, dm.pid, 1, end_fds, 10000, &st, &fds);
        fault_say("at the end: %d fds (baseline %d), %llu connections", fds, end_fds,
                  (unsigned long long)st.connections);
        fault_check(back,
                    "not back at baseline at the end: %d fds (want %d), %llu connections, %llu "
                    "descriptors",
                    fds, end_fds, (unsigned long long)st.connections,
                    (unsigned long long)st.descriptors);
        np_disconnect(run.mon);
        fault_daemon_stop(&dm);
        notify_stop(notify);
        return fault_finish();
}
