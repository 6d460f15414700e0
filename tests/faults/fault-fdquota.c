/*
 * Isolation: one uid must not be able to exhaust the daemon's fd table,
 * neither with live descriptors nor with the descriptors of connections it
 * ended and the daemon is still closing.
 *
 * The daemon runs with RLIMIT_NOFILE = min(8192, ours) (socket_mode 0666,
 * so uid 65534 can connect); the attacker is a child running as uid 65534,
 * the victims are root's connections.
 *
 * Part A (findings "one uid can exhaust the daemon's fd table"):
 * max_descriptors_per_uid = 25%.  The attacker opens a few connections and
 * registers fresh eventfds on them, round robin, until the daemon refuses.
 * Checked: the first refusal is -EDQUOT; what the daemon then holds for
 * the uid (descriptors plus connection sockets) is within 300 of the quota
 * and not over it; a few more opens are refused too; root then still
 * connects, registers 1000 eventfds and pings; the daemon's fd count
 * (sampled every millisecond) stays 100 under its limit; a victim
 * connection pinging every 500 us is served throughout.
 *
 * Part B ("descriptors of ended connections still draining count against
 * nothing"): max_connections_per_uid = 1 and max_descriptors_per_uid =
 * 2000.  The attacker repeats {connect, pipeline opens of quota + 506
 * eventfds (253 a datagram), read the replies, disconnect at once}, back
 * to back, so each new connection opens while the daemon still closes the
 * previous one's fds (a few dozen a loop turn); a connect refused with
 * -EUSERS or -EDQUOT while the last connection is still counted is retried
 * (for at most 2 s).  Checked: the daemon's fd count, sampled every
 * millisecond (its peaks inside and outside the attack windows are
 * printed), never exceeds its baseline + quota + 300: the quota plus one
 * datagram's 253 fds and some slack; every refused open
 * is refused with -EDQUOT (never -EMFILE, never a crash); and the victim's
 * ping p99 during these attack windows against control windows that make
 * the same connections and opens but wait for the daemon to finish closing
 * before each reconnect (fault_ab_verdict).
 *
 * Both parts end with the daemon back at its baseline fds and connections.
 * A daemon that does not know the new [limits] keys refuses the
 * configuration; that is a failed check, and the part then runs without
 * them, to show what the finding is.
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
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../daemon/codec.h" /* NP_MAX_FDS_PER_MESSAGE */
#include "probe.h"

#define WATCHDOG_USEC 1000000 /* WATCHDOG=1 gaps must stay under 500 ms */
static FaultNotify *notify; /* the fake service manager */

#define DAEMON_NOFILE 8192
#define QUOTA_SLACK 300  /* Part A: held within [quota - 300, quota] */
#define LIMIT_MARGIN 100 /* Part A: the daemon's fd count stays this far under its limit */
#define OTHER_OPENS 1000 /* root's descriptors while the attacker is at its quota */
#define MAX_ATTACK_CONNS 8
#define EXTRA_OPENS 16 /* tried after the first refusal */
#define PEAK_SLACK 300 /* Part B: the daemon's fd count stays under baseline + quota + this */
#define VICTIM_INTERVAL_US 500

/* ---- the daemon's fd count, sampled every millisecond ---- */

static struct {
        pid_t pid;
        pthread_t thread;
        atomic_int stop;
        atomic_int peak;
        atomic_int samples;
        atomic_int phase;         /* Part B: 1 inside an attack window, 0 elsewhere */
        atomic_int phase_peak[2]; /* the peak inside ([1]) and outside ([0]) them */
} fds_mon;

static void *fds_sampler(void *arg)
{
        (void)arg;
        for (int i = 0; i < 1000000 && !atomic_load(&fds_mon.stop); i++) {
                int n = fd_count_of(fds_mon.pid), ph = atomic_load(&fds_mon.phase);
                if (n > atomic_load(&fds_mon.peak))
                        atomic_store(&fds_mon.peak, n);
                if (n > atomic_load(&fds_mon.phase_peak[ph]))
                        atomic_store(&fds_mon.phase_peak[ph], n);
                atomic_fetch_add(&fds_mon.samples, 1);
                fault_sleep_ms(1);
        }
        return NULL;
}

static void fds_sampler_start(pid_t pid)
{
        fds_mon.pid = pid;
        atomic_store(&fds_mon.stop, 0);
        atomic_store(&fds_mon.peak, 0);
        atomic_store(&fds_mon.samples, 0);
        atomic_store(&fds_mon.phase, 0);
        atomic_store(&fds_mon.phase_peak[0], 0);
        atomic_store(&fds_mon.phase_peak[1], 0);
        if (pthread_create(&fds_mon.thread, NULL, fds_sampler, NULL) != 0)
                fault_die("pthread_create");
}

static int fds_sampler_stop(void)
{
        atomic_store(&fds_mon.stop, 1);
        pthread_join(fds_mon.thread, NULL);
        return atomic_load(&fds_mon.peak);
}

/* ---- Part A: registered descriptors ---- */

typedef struct FillReport {
        int conns;         /* connections it holds */
        int connect_error; /* the first failed np_connect */
        int registered;    /* descriptors registered before the first refusal */
        int first_error;   /* that refusal (0: none within max_opens) */
        int after_ok;      /* of EXTRA_OPENS more, admitted */
        int after_other;   /* of EXTRA_OPENS more, refused otherwise than the first */
        int ping_failed;
        int64_t took_ns;
} FillReport;

/* The child of Part A: nconn connections, eventfds registered round robin
 * until the daemon refuses (at most max_opens), then a report; it holds
 * everything until its command pipe closes. */
static void __attribute__((noreturn))
fill_main(const char *sock, int nconn, int max_opens, int cmd, int rep)
{
        np_client *c[MAX_ATTACK_CONNS] = { 0 };
        FillReport r = { 0 };
        char b;

        for (int i = 0; i < nconn; i++) {
                int e = np_connect(sock, &c[i]);
                if (e < 0) {
                        r.connect_error = e;
                        c[i] = NULL;
                        break;
                }
                r.conns++;
        }
        int64_t t0 = test_now();
        for (int i = 0; r.conns > 0 && i < max_opens; i++) {
                int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                np_desc d;
                if (efd < 0) {
                        r.first_error = -errno;
                        break;
                }
                /* The daemon keeps its own copy; ours goes at once. */
                int e = np_open(c[i % r.conns], efd, (uint64_t)i, &d);
                close(efd);
                if (e < 0) {
                        r.first_error = e;
                        break;
                }
                r.registered++;
        }
        r.took_ns = test_now() - t0;
        for (int i = 0; r.first_error && i < EXTRA_OPENS; i++) {
                int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                np_desc d;
                int e = efd < 0 ? -errno : np_open(c[i % r.conns], efd, 0, &d);
                if (efd >= 0)
                        close(efd);
                r.after_ok += e == 0;
                r.after_other += e < 0 && e != r.first_error;
        }
        for (int i = 0; i < r.conns; i++)
                r.ping_failed += np_ping(c[i]) != 0;
        (void)!write(rep, &r, sizeof(r));
        struct pollfd pfd = { .fd = cmd, .events = POLLIN };
        if (poll(&pfd, 1, 120000) > 0)
                (void)!read(cmd, &b, 1);
        for (int i = 0; i < r.conns; i++)
                np_disconnect(c[i]);
        _exit(0);
}

/* Root registers n fresh eventfds on a new connection and pings. */
static void other_fill(const char *sock, int n, int *ret_ok, int *ret_error, int *ret_ping)
{
        np_client *c;
        int r = fault_connect(sock, &c);

        *ret_ok = 0;
        *ret_error = r;
        *ret_ping = r;
        if (r < 0)
                return;
        for (int i = 0; i < n; i++) {
                int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                np_desc d;
                r = efd < 0 ? -errno : np_open(c, efd, (uint64_t)i, &d);
                if (efd >= 0)
                        close(efd);
                if (r < 0) {
                        *ret_error = r;
                        break;
                }
                ++*ret_ok;
        }
        *ret_ping = np_ping(c);
        np_disconnect(c);
}

static void part_a(int nofile)
{
        FaultDaemon dm;
        struct np_status st;
        np_client *mon;
        FaultChild ch;
        FillReport r = { 0 };
        char config[512];
        int quota = nofile / 4, nconn = fault_quick ? 4 : MAX_ATTACK_CONNS, cmd, rep;

        fault_say("part A: daemon fd limit %d, max_descriptors_per_uid = 25%% (%d fds); uid %d "
                  "registers eventfds on %d connections until refused",
                  nofile, quota, FAULT_OTHER_UID, nconn);
        fault_pick_config(config, sizeof(config), "[daemon]\nsocket_mode = 0666\n[limits]\n",
                    "max_descriptors_per_uid = 25%\n");
        fault_daemon_start(&dm, &(FaultDaemonOpts){ .config = config,
                                                    .nofile = nofile,
                                                    .notify_socket = notify_path(notify),
                                                    .watchdog_usec = WATCHDOG_USEC });
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");
        FaultVictim *v = victim_start(dm.sock, VICTIM_INTERVAL_US);
        int base_fds = fault_settle(mon, dm.pid, 2, &st);
        fds_sampler_start(dm.pid);

        int64_t from = test_now();
        if (fault_child_fork(&ch, &cmd, &rep))
                fill_main(dm.sock, nconn, nofile + 64, cmd, rep);
        if (!fault_read_full(ch.rep, &r, sizeof(r), 60000))
                fault_die("part A: the uid %d attacker did not report", FAULT_OTHER_UID);
        int held = r.registered + r.conns;
        fault_say("part A: uid %d: %d connections, %d descriptors registered in %.0f ms (%d fds "
                  "held with the sockets), then %s; %d of %d more opens admitted, %d refused "
                  "otherwise; %d pings failed",
                  FAULT_OTHER_UID, r.conns, r.registered, (double)r.took_ns / 1e6, held,
                  fault_strerror(r.first_error), r.after_ok, EXTRA_OPENS, r.after_other,
                  r.ping_failed);
        fault_check(r.conns == nconn, "part A: the attacker got %d of %d connections (%s)", r.conns,
                    nconn, fault_strerror(r.connect_error));
        fault_check(r.first_error == -EDQUOT, "part A: the first refusal is %s, want %s",
                    fault_strerror(r.first_error), strerror(EDQUOT));
        fault_check(held <= quota && held >= quota - QUOTA_SLACK,
                    "part A: the attacker holds %d fds of the daemon, want %d..%d", held,
                    quota - QUOTA_SLACK, quota);
        fault_check(r.after_ok == 0 && r.after_other == 0,
                    "part A: after the first refusal %d opens admitted, %d refused otherwise",
                    r.after_ok, r.after_other);
        fault_check(r.ping_failed == 0, "part A: %d of the attacker's pings failed", r.ping_failed);

        /* Root, another uid, while the attacker sits at its quota. */
        int ok, error, ping;
        other_fill(dm.sock, OTHER_OPENS, &ok, &error, &ping);
        fault_sleep_ms(200); /* the victim goes on while the attacker holds its quota */
        int64_t to = test_now();
        fault_say("part A: root then: %d of %d descriptors registered (%s), ping %s; daemon at "
                  "%d fds now, peak %d (limit %d)",
                  ok, OTHER_OPENS, ok == OTHER_OPENS ? "all" : fault_strerror(error),
                  ping == 0 ? "ok" : fault_strerror(ping), fd_count_of(dm.pid),
                  atomic_load(&fds_mon.peak), nofile);
        fault_check(ok == OTHER_OPENS, "part A: root registered %d of %d descriptors (%s)", ok,
                    OTHER_OPENS, fault_strerror(error));
        fault_check(ping == 0, "part A: root cannot ping: %s", fault_strerror(ping));

        FaultFigures f = victim_figures(v, &from, &to, 1);
        fault_say("part A: victim during the attack: %zu pings, p50 %.1f us, p99 %.1f us, max "
                  "%.1f us, %d failed",
                  f.n, (double)f.p50 / 1e3, (double)f.p99 / 1e3, (double)f.max / 1e3, f.errors);
        fault_check(f.n >= 20 && f.errors == 0,
                    "part A: the victim was not served: %zu pings, %d failed", f.n, f.errors);

        int status = fault_child_end(&ch);
        fault_check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                    "part A: the attacker exited with status %#x", status);
        int fds;
        bool back = fault_await_baseline(mon, dm.pid, 2, base_fds, 10000, &st, &fds);
        int peak = fds_sampler_stop();
        fault_say("part A: daemon fd count peaked at %d over %d samples (bound %d); back to %d fds "
                  "(baseline %d)",
                  peak, atomic_load(&fds_mon.samples), nofile - LIMIT_MARGIN, fds, base_fds);
        fault_check(peak < nofile - LIMIT_MARGIN,
                    "part A: the daemon's fd count reached %d, limit %d", peak, nofile);
        fault_check(back,
                    "part A: not back at baseline: %d fds (want %d), %llu connections, %llu "
                    "descriptors",
                    fds, base_fds, (unsigned long long)st.connections,
                    (unsigned long long)st.descriptors);
        int64_t after_from = test_now();
        fault_sleep_ms(200);
        int64_t after_to = test_now();
        f = victim_figures(v, &after_from, &after_to, 1);
        fault_check(f.n >= 20 && f.errors == 0,
                    "part A: the victim was not served after: %zu pings, %d failed", f.n, f.errors);
        fault_check(fault_daemon_alive(&dm), "part A: netpolld died");
        victim_stop(v);
        np_disconnect(mon);
        fault_daemon_stop(&dm);
}

/* ---- Part B: descriptors of ended connections ---- */

typedef struct LoopCmd {
        int iters;
        int opens; /* eventfds to open on each connection */
} LoopCmd;

typedef struct LoopReport {
        int iters;
        int connect_failed, first_connect_error;
        int eusers;          /* connects retried: the last connection still counted */
        int edquot_connects; /* connects retried: the uid at its fd quota */
        int send_failed, first_send_error;
        int64_t ok, edquot, emfile, other, unanswered;
        int first_other;
        int max_ok, min_ok;
        int short_iters; /* iterations held under the quota by a connection still closing */
} LoopReport;

/* Connects and says hello, retrying while the daemon still counts this
 * uid's previous connection (-EUSERS) or its fds put the uid at its quota
 * (-EDQUOT: a connection's socket counts too), at most 2 s. */
static int loop_connect(const char *sock, LoopReport *rp)
{
        int64_t give_up = test_now() + 2 * NSEC_PER_SEC_F;
        int r = -ETIMEDOUT;

        for (int i = 0; i < 20000 && test_now() < give_up; i++) {
                int fd = test_raw_connect(sock);
                if (fd < 0)
                        return fd;
                r = raw_hello(fd, 5000);
                if (r == 0)
                        return fd;
                close(fd);
                if (r != -EUSERS && r != -EDQUOT)
                        return r;
                rp->eusers += r == -EUSERS;
                rp->edquot_connects += r == -EDQUOT;
                struct timespec ts = { .tv_nsec = 100 * 1000 };
                nanosleep(&ts, NULL);
        }
        return r;
}

/* Pipelines n opens of fresh eventfds (NP_MAX_FDS_PER_MESSAGE a datagram),
 * then reads every reply; tallies the outcomes.  Returns the admitted. */
static int loop_open(int sock, int n, LoopReport *r)
{
        Netpoll__V1__Request q[NP_MAX_FDS_PER_MESSAGE], *qs[NP_MAX_FDS_PER_MESSAGE];
        int efd[NP_MAX_FDS_PER_MESSAGE], sent = 0, got = 0, ok = 0;

        for (int base = 0; base < n; base += NP_MAX_FDS_PER_MESSAGE) {
                int k = n - base < NP_MAX_FDS_PER_MESSAGE ? n - base : NP_MAX_FDS_PER_MESSAGE;
                int made = 0;
                for (; made < k; made++) {
                        efd[made] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                        if (efd[made] < 0)
                                break;
                        q[made] = raw_request((uint64_t)(base + made + 1), NETPOLL__V1__OP__OP_OPEN,
                                              0, 0, 0);
                        q[made].fd_index = made;
                        qs[made] = &q[made];
                }
                int e = made == k ? raw_send_requests(sock, qs, (size_t)k, efd, (size_t)k)
                                  : -EMFILE;
                for (int j = 0; j < made; j++)
                        close(efd[j]); /* in flight, or the daemon's now */
                if (e < 0) {
                        if (r->send_failed++ == 0)
                                r->first_send_error = e;
                        break;
                }
                sent += k;
        }
        int64_t give_up = test_now() + 10 * NSEC_PER_SEC_F;
        for (int i = 0; i < 100000 && got < sent && test_now() < give_up; i++) {
                Netpoll__V1__ServerMessage *m;
                if (raw_recv(sock, 10000, &m) <= 0)
                        break;
                for (size_t j = 0; j < m->n_replies; j++) {
                        int32_t res = m->replies[j]->result;
                        got++;
                        if (res >= 0) {
                                ok++;
                                continue;
                        }
                        if (res == -EDQUOT)
                                r->edquot++;
                        else if (res == -EMFILE)
                                r->emfile++;
                        else if (r->other++ == 0)
                                r->first_other = res;
                }
                netpoll__v1__server_message__free_unpacked(m, NULL);
        }
        r->unanswered += sent - got;
        r->ok += ok;
        return ok;
}

/* The child of Part B: per command, `iters` times back to back {connect,
 * open, disconnect}; a report per command.  Ends when the pipe closes. */
static void __attribute__((noreturn)) loop_main(const char *sock, int quota, int cmd, int rep)
{
        LoopCmd c;

        for (int n = 0; n < 10000 && fault_read_full(cmd, &c, sizeof(c), 120000); n++) {
                LoopReport r = { .min_ok = -1 };
                for (int i = 0; i < c.iters; i++) {
                        int fd = loop_connect(sock, &r);
                        if (fd < 0) {
                                if (r.connect_failed++ == 0)
                                        r.first_connect_error = fd;
                                continue;
                        }
                        int ok = loop_open(fd, c.opens, &r);
                        close(fd); /* at once: the daemon closes the fds from here on */
                        r.iters++;
                        r.max_ok = ok > r.max_ok ? ok : r.max_ok;
                        r.min_ok = r.min_ok < 0 || ok < r.min_ok ? ok : r.min_ok;
                        r.short_iters += ok < quota - QUOTA_SLACK;
                }
                (void)!write(rep, &r, sizeof(r));
        }
        _exit(0);
}

typedef struct PartB {
        FaultDaemon *dm;
        FaultChild ch;
        int iters, opens, base_fds;
        LoopReport sum[2]; /* [0] control, [1] attack */
} PartB;

static void add_report(LoopReport *s, const LoopReport *r)
{
        if (s->connect_failed == 0)
                s->first_connect_error = r->first_connect_error;
        if (s->send_failed == 0)
                s->first_send_error = r->first_send_error;
        if (s->other == 0)
                s->first_other = r->first_other;
        s->iters += r->iters;
        s->connect_failed += r->connect_failed;
        s->eusers += r->eusers;
        s->edquot_connects += r->edquot_connects;
        s->send_failed += r->send_failed;
        s->ok += r->ok;
        s->edquot += r->edquot;
        s->emfile += r->emfile;
        s->other += r->other;
        s->unanswered += r->unanswered;
        s->max_ok = r->max_ok > s->max_ok ? r->max_ok : s->max_ok;
        if (r->min_ok >= 0 && (s->min_ok < 0 || r->min_ok < s->min_ok))
                s->min_ok = r->min_ok;
        s->short_iters += r->short_iters;
}

static void loop_run(PartB *b, bool attack, int iters)
{
        LoopCmd c = { .iters = iters, .opens = b->opens };
        LoopReport r;

        if (write(b->ch.cmd, &c, sizeof(c)) != (ssize_t)sizeof(c) ||
            !fault_read_full(b->ch.rep, &r, sizeof(r), 120000))
                fault_die("part B: the uid %d attacker did not report", FAULT_OTHER_UID);
        add_report(&b->sum[attack], &r);
}

/* Waits (at most 5 s) until the daemon closed every fd of the attacker's
 * connections. */
static void await_drained(PartB *b)
{
        for (int i = 0; i < 5000 && fd_count_of(b->dm->pid) > b->base_fds; i++)
                fault_sleep_ms(1);
}

/* Attack: the iterations back to back.  Control: the same connections and
 * opens, each after the daemon finished closing the previous one's fds. */
static void part_b_window(void *arg, bool attack, int round)
{
        PartB *b = arg;

        (void)round;
        if (attack) {
                atomic_store(&fds_mon.phase, 1);
                loop_run(b, true, b->iters);
                await_drained(b);
                atomic_store(&fds_mon.phase, 0);
                return;
        }
        for (int i = 0; i < b->iters; i++) {
                loop_run(b, false, 1);
                await_drained(b);
        }
}

static void say_loop(const char *kind, const LoopReport *s, int opens)
{
        fault_say("part B: %s: %d iterations of %d opens: %lld admitted (%d..%d per connection, "
                  "%d iterations held back by a closing one), %lld -EDQUOT, %lld -EMFILE, %lld "
                  "other (%s), %lld unanswered; connects retried %d times on -EUSERS, %d on "
                  "-EDQUOT, %d failed (%s); %d sends failed (%s)",
                  kind, s->iters, opens, (long long)s->ok, s->min_ok, s->max_ok, s->short_iters,
                  (long long)s->edquot, (long long)s->emfile, (long long)s->other,
                  fault_strerror(s->first_other), (long long)s->unanswered, s->eusers,
                  s->edquot_connects, s->connect_failed, fault_strerror(s->first_connect_error),
                  s->send_failed, fault_strerror(s->first_send_error));
}

/* Connects root's one connection, retrying while the last one is counted. */
static np_client *connect_single(const char *sock)
{
        np_client *c = NULL;
        int r = -EUSERS;

        for (int i = 0; i < 500 && r == -EUSERS; i++) {
                r = fault_connect(sock, &c);
                if (r == -EUSERS)
                        fault_sleep_ms(10);
        }
        fault_must(r, "part B: connect root's one connection");
        return c;
}

static void part_b(int nofile)
{
        FaultDaemon dm;
        struct np_status st;
        np_client *mon;
        FaultAB ab;
        PartB b = { .dm = &dm, .sum = { { .min_ok = -1 }, { .min_ok = -1 } } };
        char config[512], base[256];
        int quota = nofile / 4 / 100 * 100, rounds = fault_quick ? 4 : 12, cmd, rep;

        b.iters = fault_quick ? 6 : 5;
        b.opens = quota + 2 * NP_MAX_FDS_PER_MESSAGE;
        fault_say("part B: daemon fd limit %d, max_connections_per_uid = 1, "
                  "max_descriptors_per_uid = %d; uid %d: {connect, %d opens, disconnect} x %d "
                  "back to back, %d rounds",
                  nofile, quota, FAULT_OTHER_UID, b.opens, b.iters, rounds);
        snprintf(base, sizeof(base),
                 "[daemon]\nsocket_mode = 0666\n[limits]\nmax_connections_per_uid = 1\n");
        char keys[64];
        snprintf(keys, sizeof(keys), "max_descriptors_per_uid = %d\n", quota);
        fault_pick_config(config, sizeof(config), base, keys);
        fault_daemon_start(&dm, &(FaultDaemonOpts){ .config = config,
                                                    .nofile = nofile,
                                                    .notify_socket = notify_path(notify),
                                                    .watchdog_usec = WATCHDOG_USEC });

        /* Root has one connection: the monitor at both ends, the victim
         * in between (the harness's probe for the socket may still count). */
        mon = connect_single(dm.sock);
        b.base_fds = fault_settle(mon, dm.pid, 1, &st);
        np_disconnect(mon);
        for (int i = 0; i < 2000 && fd_count_of(dm.pid) >= b.base_fds; i++)
                fault_sleep_ms(1);
        fault_sleep_ms(50);
        FaultVictim *v = victim_start(dm.sock, VICTIM_INTERVAL_US);
        fault_sleep_ms(20);
        fds_sampler_start(dm.pid);
        if (fault_child_fork(&b.ch, &cmd, &rep))
                loop_main(dm.sock, quota, cmd, rep);
        fault_ab_run(&ab, rounds, part_b_window, &b);
        int peak = fds_sampler_stop();
        int status = fault_child_end(&b.ch);

        say_loop("attacks", &b.sum[1], b.opens);
        say_loop("controls", &b.sum[0], b.opens);
        int bound = b.base_fds + quota + PEAK_SLACK;
        fault_say("part B: daemon fd count peaked at %d over %d samples: %d in the attacks, %d "
                  "in the controls (baseline %d, bound %d, limit %d)",
                  peak, atomic_load(&fds_mon.samples), atomic_load(&fds_mon.phase_peak[1]),
                  atomic_load(&fds_mon.phase_peak[0]), b.base_fds, bound, nofile);
        fault_check(peak < bound,
                    "part B: the daemon's fd count reached %d, over baseline + quota + %d = %d",
                    peak, PEAK_SLACK, bound);
        for (int k = 1; k >= 0; k--) {
                const LoopReport *s = &b.sum[k];
                const char *kind = k ? "attacks" : "controls";
                fault_check(s->connect_failed == 0 && s->send_failed == 0,
                            "part B: %s: %d connects failed (%s), %d sends failed (%s)", kind,
                            s->connect_failed, fault_strerror(s->first_connect_error),
                            s->send_failed, fault_strerror(s->first_send_error));
                fault_check(s->emfile == 0 && s->other == 0 && s->unanswered == 0,
                            "part B: %s: opens refused otherwise than -EDQUOT: %lld -EMFILE, "
                            "%lld other (%s), %lld unanswered",
                            kind, (long long)s->emfile, (long long)s->other,
                            fault_strerror(s->first_other), (long long)s->unanswered);
                fault_check(s->edquot > 0 && s->max_ok <= quota,
                            "part B: %s: a connection got %d descriptors (quota %d), %lld "
                            "-EDQUOT in all",
                            kind, s->max_ok, quota, (long long)s->edquot);
        }
        fault_check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                    "part B: the attacker exited with status %#x", status);
        fault_ab_verdict(&ab, v, notify, WATCHDOG_USEC, "part B");
        fault_check(fault_daemon_alive(&dm), "part B: netpolld died");

        victim_stop(v);
        mon = connect_single(dm.sock);
        int fds;
        bool back = fault_await_baseline(mon, dm.pid, 1, b.base_fds, 10000, &st, &fds);
        int ping = np_ping(mon);
        fault_say("part B: after: %d fds (baseline %d), %llu connections, ping %s", fds, b.base_fds,
                  (unsigned long long)st.connections, ping ? fault_strerror(ping) : "ok");
        fault_check(back,
                    "part B: not back at baseline: %d fds (want %d), %llu connections, %llu "
                    "descriptors",
                    fds, b.base_fds, (unsigned long long)st.connections,
                    (unsigned long long)st.descriptors);
        fault_check(ping == 0, "part B: root cannot ping after: %s", fault_strerror(ping));
        np_disconnect(mon);
        fault_daemon_stop(&dm);
}

int main(int argc, char **argv)
{
        fault_init(argc, argv, "fdquota");
        int limit = fault_nofile();
        /* The daemon's table, and room for ours: Part B's attacker has
         * quota + 506 fds in flight at a time. */
        int nofile = limit - 256 < DAEMON_NOFILE ? limit - 256 : DAEMON_NOFILE;
        if (nofile < 2048)
                fault_die("fd limit %d too low", limit);
        notify = notify_start();
        part_a(nofile);
        part_b(nofile);
        notify_stop(notify);
        return fault_finish();
}
