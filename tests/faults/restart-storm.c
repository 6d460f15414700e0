/*
 * Restarts that clients never notice (issue 12), under load.
 *
 * netpolld runs with --fd-store under a fake service manager (tests/fakesm.h)
 * that plays systemd's fd store; the listening socket is bound here and passed
 * at every start, as a .socket unit's would be (--socket names a path nobody
 * uses, so the daemon never binds one of its own).  Three kinds of restart,
 * each N times (100, --quick 5), interleaved in rounds with random pauses of
 * 100-300 ms:
 *   (a) upgrade: SIGUSR2, the daemon re-executes itself in place;
 *   (b) restart: SIGTERM, the old instance exits 0 leaving everything in the
 *       store, then a new one is spawned with it (systemctl restart);
 *   (c) kill -9: SIGKILL at a random moment, reaped, a new one spawned
 *       (Restart=on-failure).
 * An admin connection asks np_status until the new instance answers (its
 * instance count one higher, having resumed every connection and
 * descriptor held); after (b) and (c) the store must hold the state memfd
 * and the carriers of every connection and descriptor held (one per 64
 * slots: daemon/fdcarrier.h) before the next one starts.
 *
 * The load, throughout: C clients (50, --quick 10), each its own np_client,
 * holding D pipes each (100, --quick 20; fewer when RLIMIT_NOFILE cannot
 * hold them: every pipe costs this process two fds, its two ends, and the
 * daemon one).  Per client a tenth of the pipes have a
 * thread parked in np_wait, a twentieth a thread parked in np_wait against a
 * read deadline 50-500 ms ahead (the pipe is never written: the wait must
 * end in NP_ERR_TIMEOUT, never before the deadline), and the rest are armed
 * with np_arm and collected by a poller thread with np_poll.  A writer
 * thread writes one byte to a random pipe every 0-1 ms, only to a pipe
 * with no byte pending, so every byte is owed exactly one wake; whoever is
 * woken reads it and parks or arms again.  Checked per pipe:
 *   - lost readiness: every byte leads to a wake within 5 s;
 *   - duplicated readiness: an np_poll event for a pipe with no arm
 *     outstanding, or a byte read that was never written; a wake that finds
 *     the pipe empty (read() says EAGAIN) is spurious, which Go's poller
 *     allows (a new instance's epoll add reports a byte that the previous
 *     one had already woken for, and a wait that comes after the read
 *     consumes that): counted apart, with how many came within a second of
 *     a restart, and only more than 1% of the wakes (plus 10) fails;
 *   - early timeouts: a deadline wait ending before its deadline (or over
 *     5 s after it);
 *   - errors: any negative return of any np_* call, and any outcome that
 *     has no business there (NP_ERR_CLOSING before the stop).
 * Beside them a churn client connects, registers four pipes, waits on one
 * made ready and on one with a 1 ms deadline, unblocks and closes them and
 * disconnects, in a loop across the restarts: no call may fail.
 *
 * After the storm: the writer stops and every byte is woken, then the
 * daemon holds exactly its fds at the start plus one per connection,
 * descriptor and carrier, np_status agrees, and the store holds the state
 * memfd plus the carriers for the slots in use.  Then the stop that a
 * lame-duck stop was: SIGTERM (the daemon exits 0, leaving the store) and
 * the store emptied (systemctl stop): every parked wait must end with
 * NP_ERR_CLOSING, and every later call fail.  This process is back at its
 * own fd count at the end.
 *
 * The figure: the service gap of each kind, the longest time with no wake
 * delivered to any client from the last wake before the signal until the
 * new instance serves (and 100 ms after), p50/p99/max; a gap over 5 s
 * fails.  The longest gap between restarts is printed beside it, as the
 * control.  Seeded: FAULTS_SEED=N repeats a run's choices (the timing, hence
 * the interleaving, is the machine's).  FAULTS_LOG_LEVEL=debug runs the
 * daemon so, and FAULTS_KEEP=1 keeps its log.
 *
 * Under a real systemd (make check-systemd runs it inside the box):
 * FAULTS_SYSTEMD_SOCKET=PATH makes the program a client of the installed
 * netpolld.service, socket-activated on PATH, instead of running the daemon
 * under the fake: an upgrade is SIGUSR2 to its MainPID, a restart
 * `systemctl restart`, a kill -9 SIGKILL to the MainPID (Restart=on-failure
 * brings it back), the store is read back as NFileDescriptorStore, and the
 * final stop is `systemctl stop`.  FAULTS_RESTARTS=N sets the restarts of
 * each kind.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fakesm.h"
#include "harness.h"

#define FULL_RESTARTS 100
#define QUICK_RESTARTS 5
#define FULL_CLIENTS 50
#define QUICK_CLIENTS 10
#define FULL_DESCS 100
#define QUICK_DESCS 20
#define MIN_DESCS 20
#define CHURN_DESCS 4
#define BOUND_NS (5 * NSEC_PER_SEC_F) /* lost, late, too long a gap */
#define BACK_WITHIN_MS 10000          /* a restart must serve again by then */
#define WRITE_EVERY_US 1000           /* the writer's pause: 0 to this, at random */
#define DEADLINE_MIN_MS 50
#define DEADLINE_MAX_MS 500
#define PAUSE_MIN_MS 100 /* between two restarts */
#define PAUSE_MAX_MS 300
#define GAP_TAIL_NS (100 * NSEC_PER_MSEC_F) /* a gap is looked for up to here after */
#define WAKE_LOG_MAX (4u << 20)
#define THREAD_STACK (256 * 1024)
#define MAX_ERRORS_SHOWN 10

enum { KIND_UPGRADE, KIND_RESTART, KIND_KILL, N_KINDS };
static const char *const kind_names[N_KINDS] = { "upgrade", "restart", "kill -9" };

enum { DESC_WAIT, DESC_DEADLINE, DESC_ARM };

enum { PHASE_RUN, PHASE_STOP };

typedef struct Client Client;

typedef struct Desc {
        Client *cl;
        int kind;     /* DESC_* */
        int rfd, wfd; /* the pipe; rfd registered */
        np_desc d;
        uint64_t idx;       /* in descs[], the np_open user cookie */
        uint64_t rng;       /* its thread's */
        pthread_t th;       /* DESC_WAIT, DESC_DEADLINE */
        atomic_int pending; /* a byte written and not read yet */
        atomic_int lost;    /* that byte was reported lost */
        _Atomic int64_t written_at;
        atomic_int armed; /* DESC_ARM: an arm outstanding */
        /* What the parked thread saw when the daemon stopped for good. */
        int end_result;   /* the last outcome: NP_ERR_CLOSING, or a call's error */
        int later_result; /* the call after NP_ERR_CLOSING */
} Desc;

struct Client {
        int idx;
        np_client *c;
        Desc *descs; /* D of them, in the global array */
        pthread_t poller;
        int poll_end; /* np_poll's return once the store was emptied */
};

typedef struct Restart {
        int kind;
        int64_t t_sig, t_back;
        int64_t gap;
} Restart;

/* ---- global state (the threads share it) ---- */

static const char *sock_path;
static atomic_int phase = PHASE_RUN;
static atomic_bool writer_stop, churn_stop;
static Desc *descs;
static size_t n_descs;
static Client *clients;
static int n_clients, per_client;

static atomic_uint_fast64_t n_writes, n_wakes, n_spurious, n_spurious_near, n_timeouts, n_early,
        n_late, n_lost, n_dups, n_phantom, n_errors, n_churn_rounds, n_churn_errors;
static _Atomic int64_t max_latency, max_timeout_late;
static int64_t *wake_log;
static atomic_uint_fast64_t wake_log_n;

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static int errors_shown;
/* The restart last begun, for the errors' context. */
static atomic_int cur_restart = -1, cur_kind;
static _Atomic int64_t cur_sig, cur_back;

/* ---- small helpers ---- */

static void atomic_max(_Atomic int64_t *m, int64_t v)
{
        int64_t cur = atomic_load(m);

        while (v > cur && !atomic_compare_exchange_weak(m, &cur, v))
                ;
}

/* Counts an error (a failed check seen by a thread) and shows the first few. */
static void thread_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void thread_error(const char *fmt, ...)
{
        char buf[512];
        va_list ap;

        atomic_fetch_add(&n_errors, 1);
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        int64_t now = test_now(), sig = atomic_load(&cur_sig), back = atomic_load(&cur_back);
        int k = atomic_load(&cur_kind);
        pthread_mutex_lock(&err_lock);
        if (errors_shown++ < MAX_ERRORS_SHOWN) {
                if (atomic_load(&cur_restart) < 0)
                        fault_say("error: %s (before the first restart)", buf);
                else
                        fault_say("error: %s (restart %d, %s, signalled %.1f ms ago, %s)", buf,
                                  atomic_load(&cur_restart), kind_names[k],
                                  (double)(now - sig) / 1e6,
                                  back >= sig ? "served again" : "not served yet");
        }
        pthread_mutex_unlock(&err_lock);
}

static void log_wake(int64_t t)
{
        uint64_t i = atomic_fetch_add(&wake_log_n, 1);

        if (i < WAKE_LOG_MAX)
                wake_log[i] = t;
}

static bool stopping(void)
{
        return atomic_load(&phase) == PHASE_STOP;
}

static void start_thread(pthread_t *th, void *(*fn)(void *), void *arg)
{
        pthread_attr_t a;

        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, THREAD_STACK);
        int r = pthread_create(th, &a, fn, arg);
        pthread_attr_destroy(&a);
        if (r != 0)
                fault_die("pthread_create: %s", strerror(r));
}

/* Whether t falls in the restart last begun, or in the second after it
 * served again. */
static bool near_restart(int64_t t)
{
        int64_t sig = atomic_load(&cur_sig), back = atomic_load(&cur_back);

        return atomic_load(&cur_restart) >= 0 && (back < sig || t < back + NSEC_PER_SEC_F);
}

/*
 * d was woken with NP_OK at t: reads its pipe.  A byte is a real wake (the
 * one it was owed); none is a spurious wake.  A byte nobody wrote is a
 * duplicated one.
 */
static void consume(Desc *d, int64_t t)
{
        char b[4];
        ssize_t n = read(d->rfd, b, sizeof(b));

        log_wake(t);
        if (n < 0 && errno == EAGAIN) {
                atomic_fetch_add(&n_spurious, 1);
                if (near_restart(t))
                        atomic_fetch_add(&n_spurious_near, 1);
                return;
        }
        if (n != 1) {
                thread_error("desc %" PRIu64 ": read gave %zd (%s)", d->idx, n,
                             n < 0 ? strerror(errno) : "more than the byte written");
                return;
        }
        if (!atomic_load(&d->pending)) {
                atomic_fetch_add(&n_phantom, 1);
                return;
        }
        int64_t lat = t - atomic_load(&d->written_at);
        atomic_max(&max_latency, lat);
        if (lat > BOUND_NS)
                atomic_fetch_add(&n_late, 1);
        atomic_fetch_add(&n_wakes, 1);
        atomic_store(&d->lost, 0);
        atomic_store(&d->pending, 0);
}

/* Joins th, giving up BACK_WITHIN_MS after from (CLOCK_MONOTONIC). */
static bool join_within(pthread_t th, int64_t from)
{
        struct timespec ts;
        int64_t left = from + BACK_WITHIN_MS * NSEC_PER_MSEC_F - test_now();

        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t at = (int64_t)ts.tv_sec * NSEC_PER_SEC_F + ts.tv_nsec + (left > 0 ? left : 0);
        ts = (struct timespec){ .tv_sec = at / NSEC_PER_SEC_F, .tv_nsec = at % NSEC_PER_SEC_F };
        return pthread_timedjoin_np(th, NULL, &ts) == 0;
}

/* ---- parked waits ---- */

/* After the daemon stopped for good: the wait ended with r.  Records it
 * and, after NP_ERR_CLOSING, makes one more call, which must fail. */
static void waiter_end(Desc *d, int r)
{
        d->end_result = r;
        d->later_result = 0;
        if (r == NP_ERR_CLOSING)
                d->later_result = np_wait(d->cl->c, d->d, NP_READ);
}

static void *waiter_main(void *arg)
{
        Desc *d = arg;
        np_client *c = d->cl->c;

        for (;;) {
                int64_t ns = 0, t0 = 0;
                int r;

                if (d->kind == DESC_DEADLINE) {
                        ns = fault_rng_range(&d->rng, DEADLINE_MIN_MS, DEADLINE_MAX_MS) *
                             NSEC_PER_MSEC_F;
                        t0 = test_now();
                        r = np_set_deadline(c, d->d, ns, NP_READ);
                        if (r != 0) {
                                if (stopping()) {
                                        waiter_end(d, r);
                                        return NULL;
                                }
                                thread_error("np_set_deadline (desc %" PRIu64 "): %s", d->idx,
                                             np_strerror(r));
                                fault_sleep_ms(10);
                                continue;
                        }
                }
                r = np_wait(c, d->d, NP_READ);
                int64_t t1 = test_now();
                if (r == NP_OK) {
                        consume(d, t1);
                        continue;
                }
                if (r == NP_ERR_TIMEOUT && d->kind == DESC_DEADLINE) {
                        log_wake(t1);
                        atomic_fetch_add(&n_timeouts, 1);
                        if (t1 < t0 + ns)
                                atomic_fetch_add(&n_early, 1);
                        atomic_max(&max_timeout_late, t1 - (t0 + ns));
                        if (t1 - (t0 + ns) > BOUND_NS)
                                atomic_fetch_add(&n_late, 1);
                        continue;
                }
                if (stopping() && (r == NP_ERR_CLOSING || r < 0)) {
                        waiter_end(d, r);
                        return NULL;
                }
                thread_error("np_wait (desc %" PRIu64 ", %s): %s", d->idx,
                             d->kind == DESC_DEADLINE ? "deadline" : "plain", np_strerror(r));
                fault_sleep_ms(10);
        }
}

/* ---- armed waits ---- */

static int arm(Client *cl, Desc *d)
{
        atomic_store(&d->armed, 1);
        int r = np_arm(cl->c, d->d, NP_READ);
        if (r < 0) {
                atomic_store(&d->armed, 0);
                if (!stopping())
                        thread_error("np_arm (desc %" PRIu64 "): %s", d->idx, np_strerror(r));
        }
        return r;
}

static void *poller_main(void *arg)
{
        Client *cl = arg;
        np_event ev[64];

        for (int i = 0; i < per_client; i++)
                if (cl->descs[i].kind == DESC_ARM)
                        (void)arm(cl, &cl->descs[i]);
        for (;;) {
                int n = np_poll(cl->c, 100 * NSEC_PER_MSEC_F, ev, 64);
                int64_t t = test_now();
                if (n < 0) {
                        if (stopping()) {
                                cl->poll_end = n;
                                return NULL;
                        }
                        thread_error("np_poll (client %d): %s", cl->idx, np_strerror(n));
                        fault_sleep_ms(10);
                        continue;
                }
                for (int i = 0; i < n; i++) {
                        if (ev[i].user >= n_descs || descs[ev[i].user].cl != cl ||
                            descs[ev[i].user].d != ev[i].desc) {
                                thread_error("np_poll (client %d): an event for desc %" PRIu64
                                             " user %" PRIu64 " that is not its own",
                                             cl->idx, ev[i].desc, ev[i].user);
                                continue;
                        }
                        Desc *d = &descs[ev[i].user];
                        if (!atomic_exchange(&d->armed, 0)) {
                                atomic_fetch_add(&n_dups, 1);
                                continue;
                        }
                        if (ev[i].result != NP_OK) {
                                if (!stopping())
                                        thread_error("np_poll (desc %" PRIu64 "): outcome %s",
                                                     d->idx, np_strerror(ev[i].result));
                                continue;
                        }
                        consume(d, t);
                        if (!stopping())
                                (void)arm(cl, d);
                }
        }
}

/* ---- the writer ---- */

static void *writer_main(void *arg)
{
        uint64_t rng = *(uint64_t *)arg;

        while (!atomic_load(&writer_stop)) {
                Desc *d = &descs[fault_rng_next(&rng) % n_descs];
                int zero = 0;
                if (d->kind != DESC_DEADLINE &&
                    atomic_compare_exchange_strong(&d->pending, &zero, 1)) {
                        atomic_store(&d->written_at, test_now());
                        if (write(d->wfd, "x", 1) != 1) {
                                thread_error("write (desc %" PRIu64 "): %s", d->idx,
                                             strerror(errno));
                                atomic_store(&d->pending, 0);
                        } else
                                atomic_fetch_add(&n_writes, 1);
                }
                int64_t us = fault_rng_range(&rng, 0, WRITE_EVERY_US);
                if (us > 0)
                        usleep((useconds_t)us);
        }
        return NULL;
}

/* ---- the churn client ---- */

static int churn_round(uint64_t *rng)
{
        np_client *c;
        int p[CHURN_DESCS][2];
        np_desc d[CHURN_DESCS];
        int r, n = 0;
        char b;

#define CHURN_CHECK(call, what)                                                                    \
        do {                                                                                       \
                r = (call);                                                                        \
                if (r < 0) {                                                                       \
                        thread_error("churn: %s: %s", what, np_strerror(r));                       \
                        goto out;                                                                  \
                }                                                                                  \
        } while (0)

        r = np_connect(sock_path, &c);
        if (r < 0) {
                thread_error("churn: np_connect: %s", np_strerror(r));
                return r;
        }
        for (; n < CHURN_DESCS; n++) {
                if (pipe2(p[n], O_CLOEXEC | O_NONBLOCK) < 0)
                        fault_die("pipe2: %s", strerror(errno));
                CHURN_CHECK(np_open(c, p[n][0], (uint64_t)n, &d[n]), "np_open");
        }
        /* Readiness latched before the wait (and perhaps a restart). */
        if (write(p[0][1], "x", 1) != 1)
                fault_die("write: %s", strerror(errno));
        CHURN_CHECK(np_wait(c, d[0], NP_READ), "np_wait");
        if (r != NP_OK) {
                thread_error("churn: np_wait on a ready pipe: %s", np_strerror(r));
                r = -EPROTO;
                goto out;
        }
        (void)!read(p[0][0], &b, 1);
        /* A deadline 1 ms ahead. */
        int64_t t0 = test_now();
        CHURN_CHECK(np_set_deadline(c, d[1], NSEC_PER_MSEC_F, NP_READ), "np_set_deadline");
        CHURN_CHECK(np_wait(c, d[1], NP_READ), "np_wait (deadline)");
        if (r != NP_ERR_TIMEOUT || test_now() - t0 < NSEC_PER_MSEC_F) {
                thread_error("churn: np_wait against a 1 ms deadline: %s after %" PRId64 " us",
                             np_strerror(r), (test_now() - t0) / 1000);
                r = -EPROTO;
                goto out;
        }
        if (fault_rng_next(rng) % 2)
                CHURN_CHECK(np_ping(c), "np_ping");
        r = 0;
out:
        for (int i = 0; i < n; i++) {
                if (r >= 0) {
                        int k = np_unblock(c, d[i]);
                        if (k < 0) {
                                thread_error("churn: np_unblock: %s", np_strerror(k));
                                r = k;
                        } else if ((k = np_close(c, d[i])) < 0) {
                                thread_error("churn: np_close: %s", np_strerror(k));
                                r = k;
                        }
                }
        }
        np_disconnect(c);
        for (int i = 0; i < n; i++) {
                close(p[i][0]);
                close(p[i][1]);
        }
        return r;
#undef CHURN_CHECK
}

static void *churn_main(void *arg)
{
        uint64_t rng = *(uint64_t *)arg;

        while (!atomic_load(&churn_stop)) {
                if (churn_round(&rng) < 0)
                        atomic_fetch_add(&n_churn_errors, 1);
                atomic_fetch_add(&n_churn_rounds, 1);
                fault_sleep_ms(fault_rng_range(&rng, 0, 5));
        }
        return NULL;
}

/* ---- the daemon under the fake service manager ---- */

typedef struct Service {
        FakeSMNetpolld d; /* d.sock: systemd's socket under FAULTS_SYSTEMD_SOCKET */
        char unused[108], conf[128], log[128];
        int log_fd;
        char *argv[12];
        char store_arg[32];
        uint64_t instance;
} Service;

static Service *the_service; /* for the exit handler */
static const char *sd_socket;  /* FAULTS_SYSTEMD_SOCKET: a real systemd's service */
#define SD_UNIT "netpolld.service"

/* The first line a shell command prints, as a number (0 when none). */
static uint64_t sd_query(const char *cmd)
{
        char line[64] = "";
        FILE *f = popen(cmd, "re");

        if (!f)
                fault_die("%s: %s", cmd, strerror(errno));
        if (!fgets(line, sizeof(line), f))
                line[0] = '\0';
        pclose(f);
        return strtoull(line, NULL, 10);
}

/* A systemctl command; tried again (3 times in all) when it fails: a busy
 * PID 1 can drop a client's connection (systemctl then says "Transport
 * endpoint is not connected"). */
static int sd_run(const char *cmd)
{
        int r = -1;

        for (int i = 0; i < 3 && r != 0; i++) {
                if (i)
                        fault_say("%s failed (%d); again", cmd, r);
                r = system(cmd);
        }
        return r;
}

static pid_t sd_main_pid(void)
{
        return (pid_t)sd_query("systemctl show -p MainPID --value " SD_UNIT);
}

/* What systemd's fd store holds for the service. */
static size_t sd_store_count(void)
{
        return (size_t)sd_query("systemctl show -p NFileDescriptorStore --value " SD_UNIT);
}

/* Waits for a running main process other than `old` (0: any). */
static pid_t sd_await_main(pid_t old)
{
        int64_t give_up = test_now() + BACK_WITHIN_MS * NSEC_PER_MSEC_F;

        for (;;) {
                pid_t pid = sd_main_pid();
                if (pid > 0 && pid != old)
                        return pid;
                if (test_now() > give_up)
                        fault_die(SD_UNIT " has no new main process after %d ms", BACK_WITHIN_MS);
                fault_sleep_ms(5);
        }
}

static size_t store_count(Service *s)
{
        if (sd_socket)
                return sd_store_count();
        (void)fakesm_process(s->d.m, 0);
        return fakesm_store_count(s->d.m);
}

/*
 * What the store may hold: the state memfd and the carriers, one per 64
 * connection slots and one per 64 descriptor slots in use at the peak
 * (daemon/fdcarrier.h; slots are handed out lowest first).  conns and
 * descs: those held; the churn client may add its connection and its
 * descriptors to the peak, and a connection in its handshake one more.
 */
#define CARRIER_SLOTS 64
static size_t chunks(size_t slots)
{
        return (slots + CARRIER_SLOTS - 1) / CARRIER_SLOTS;
}

static void store_bounds(size_t conns, size_t descs, size_t *lo, size_t *hi)
{
        *lo = 1 + chunks(conns) + chunks(descs);
        *hi = 1 + chunks(conns + 2) + chunks(descs + CHURN_DESCS);
}

static void service_cleanup(Service *s);

/* At exit (fault_die too): nothing stays behind. */
static void kill_service(void)
{
        if (the_service)
                service_cleanup(the_service);
}

static void show_log_tail(const Service *s)
{
        FILE *f = fopen(s->log, "re");
        char line[512];
        static char ring[20][512];
        int n = 0;

        if (!f)
                return;
        while (fgets(line, sizeof(line), f))
                snprintf(ring[n++ % 20], sizeof(ring[0]), "%s", line);
        fclose(f);
        fault_say("the daemon's last log lines:");
        for (int i = n > 20 ? n - 20 : 0; i < n; i++)
                printf("    %s", ring[i % 20]);
}

static void service_spawn(Service *s)
{
        if (sd_socket) { /* systemd starts it, on the first connect or a restart */
                s->d.pid = sd_await_main(s->d.pid);
                return;
        }

        pid_t old = s->d.pid;
        int r = fakesm_netpolld_spawn(&s->d, s->argv, BACK_WITHIN_MS);
        if (r < 0 && s->d.pid == old)
                fault_die("fakesm_spawn: %s", strerror(-r));
        if (r < 0) {
                show_log_tail(s);
                fault_die("the daemon did not say READY=1: %s", strerror(-r));
        }
}

static void service_setup(Service *s, unsigned store_max)
{
        if (sd_socket) {
                s->d = (FakeSMNetpolld){ .listen_fd = -1 };
                snprintf(s->d.sock, sizeof(s->d.sock), "%s", sd_socket);
                s->log_fd = -1;
                if (sd_query("systemctl is-active -q " SD_UNIT " && echo 1"))
                        s->d.pid = sd_main_pid();
                return;
        }

        int r = fakesm_netpolld_new(&s->d, "netpolld-storm", store_max, true);
        if (r < 0)
                fault_die("setting up the socket and the service manager: %s", strerror(-r));
        snprintf(s->unused, sizeof(s->unused), "%s/unused.sock", s->d.dir);
        snprintf(s->conf, sizeof(s->conf), "%s/netpolld.conf", s->d.dir);
        snprintf(s->log, sizeof(s->log), "%s/netpolld.log", s->d.dir);

        /* Every descriptor and connection is one uid's (root's). */
        FILE *f = fopen(s->conf, "we");
        if (!f || fputs("[limits]\nmax_descriptors_per_uid = 100%\n", f) < 0 || fclose(f) != 0)
                fault_die("%s: %s", s->conf, strerror(errno));
        s->log_fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (s->log_fd < 0)
                fault_die("%s: %s", s->log, strerror(errno));
        fakesm_set_output(s->d.m, s->log_fd, s->log_fd);

        snprintf(s->store_arg, sizeof(s->store_arg), "--fd-store=%u", store_max);
        int i = 0;
        s->argv[i++] = (char *)fault_daemon_bin();
        s->argv[i++] = s->store_arg;
        s->argv[i++] = "--socket";
        s->argv[i++] = s->unused;
        s->argv[i++] = "--config";
        s->argv[i++] = s->conf;
        if (getenv("FAULTS_LOG_LEVEL")) { /* debug, to see what each instance did */
                s->argv[i++] = "--log-level";
                s->argv[i++] = getenv("FAULTS_LOG_LEVEL");
        }
        s->argv[i] = NULL;
        the_service = s;
        atexit(kill_service);
}

static void service_cleanup(Service *s)
{
        the_service = NULL;
        if (sd_socket)
                return; /* the service stays systemd's */
        if (s->d.pid > 0) {
                kill(s->d.pid, SIGKILL);
                (void)fakesm_reap_main(s->d.m, 5000, NULL);
                s->d.pid = 0;
        }
        close(s->log_fd);
        if (getenv("FAULTS_VERBOSE"))
                show_log_tail(s);
        unlink(s->unused);
        if (getenv("FAULTS_KEEP")) {
                fault_say("the daemon's log stays in %s", s->log);
        } else {
                unlink(s->conf);
                unlink(s->log);
        }
        fakesm_netpolld_free(&s->d, 0); /* the directory stays if the log does */
}

/* Asks until the daemon says it is instance `want`, having resumed what
 * is held.  Returns when it answered (the restart's end), 0 on failure. */
static int64_t await_instance(np_client *mon, uint64_t want, struct np_status *st)
{
        int64_t give_up = test_now() + BACK_WITHIN_MS * NSEC_PER_MSEC_F;

        for (;;) {
                int r = np_status(mon, st);
                if (r < 0) {
                        fault_check(false, "np_status (admin) after a restart: %s", np_strerror(r));
                        return 0;
                }
                if (st->instance >= want)
                        return test_now();
                if (test_now() > give_up) {
                        fault_check(false, "instance %" PRIu64 " after %d ms, want %" PRIu64,
                                    st->instance, BACK_WITHIN_MS, want);
                        return 0;
                }
                fault_sleep_ms(1);
        }
}

/* One restart of that kind; fills r's times.  Dies when the daemon cannot
 * be brought back. */
static void restart_once(Service *s, np_client *mon, int kind, Restart *rs)
{
        struct np_status st;
        int status = 0, r;

        rs->kind = kind;
        rs->t_sig = test_now();
        atomic_store(&cur_kind, kind);
        atomic_store(&cur_sig, rs->t_sig);
        atomic_fetch_add(&cur_restart, 1);
        switch (kind) {
        case KIND_UPGRADE:
                if (kill(s->d.pid, SIGUSR2) < 0)
                        fault_die("kill SIGUSR2: %s", strerror(errno));
                break;
        case KIND_RESTART:
        case KIND_KILL:
                if (sd_socket) {
                        if (kind == KIND_RESTART) {
                                pid_t old = s->d.pid;
                                if (sd_run("systemctl restart " SD_UNIT) != 0)
                                        fault_die("systemctl restart " SD_UNIT " failed");
                                s->d.pid = sd_await_main(old);
                        } else {
                                if (kill(s->d.pid, SIGKILL) < 0)
                                        fault_die("kill -9 %d: %s", (int)s->d.pid, strerror(errno));
                                s->d.pid = sd_await_main(s->d.pid); /* Restart=on-failure */
                        }
                        break;
                }
                if (kill(s->d.pid, kind == KIND_KILL ? SIGKILL : SIGTERM) < 0)
                        fault_die("kill: %s", strerror(errno));
                r = fakesm_reap_main(s->d.m, BACK_WITHIN_MS, &status);
                if (r < 0)
                        fault_die("the daemon did not exit: %s", strerror(-r));
                s->d.pid = 0;
                if (kind == KIND_RESTART)
                        fault_check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                                    "a handover stop exited with status %#x, want 0", status);
                else
                        fault_check(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                                    "kill -9 ended with status %#x", status);
                /* What it left: the state and the carriers of every
                 * connection and descriptor held, and the churn client's. */
                size_t lo, hi, left = store_count(s);
                store_bounds((size_t)n_clients + 1, n_descs, &lo, &hi);
                fault_check(left >= lo && left <= hi,
                            "%s left %zu fds in the store, want %zu to %zu", kind_names[kind],
                            left, lo, hi);
                service_spawn(s);
                break;
        default:
                abort();
        }
        s->instance++;
        rs->t_back = await_instance(mon, s->instance, &st);
        if (!rs->t_back) {
                show_log_tail(s);
                fault_die("the daemon did not come back after %s", kind_names[kind]);
        }
        atomic_store(&cur_back, rs->t_back);
        s->instance = st.instance;
        /* Every connection and descriptor held, the churn's at most extra. */
        uint64_t conns = (uint64_t)n_clients + 1, held = n_descs;
        fault_check(st.resumed_connections >= conns && st.resumed_connections <= conns + 1 &&
                            st.resumed_descriptors >= held &&
                            st.resumed_descriptors <= held + CHURN_DESCS,
                    "%s: instance %" PRIu64 " resumed %" PRIu64 " connections and %" PRIu64
                    " descriptors, want %" PRIu64 " (+1) and %" PRIu64 " (+%d)",
                    kind_names[kind], st.instance, st.resumed_connections, st.resumed_descriptors,
                    conns, held, CHURN_DESCS);
        if (kind == KIND_UPGRADE)
                fault_check(st.pid == (uint32_t)s->d.pid, "the upgrade changed the pid (%u, was %d)",
                            st.pid, (int)s->d.pid);
}

/* Bytes written more than BOUND_NS ago and never woken: lost (each once). */
static void scan_lost(void)
{
        int64_t now = test_now();

        for (size_t i = 0; i < n_descs; i++) {
                Desc *d = &descs[i];
                if (atomic_load(&d->pending) && now - atomic_load(&d->written_at) > BOUND_NS &&
                    !atomic_exchange(&d->lost, 1)) {
                        atomic_fetch_add(&n_lost, 1);
                        if (atomic_load(&n_lost) <= MAX_ERRORS_SHOWN)
                                fault_say("lost: desc %zu (client %d, %s) written %" PRId64
                                          " ms ago, not woken",
                                          i, d->cl->idx, d->kind == DESC_ARM ? "armed" : "parked",
                                          (now - atomic_load(&d->written_at)) / NSEC_PER_MSEC_F);
                }
        }
}

/* ---- the figure ---- */

/* The longest stretch without a wake, from the last wake before t_sig to
 * the first after t_back + GAP_TAIL_NS (log sorted). */
static int64_t gap_of(const int64_t *log, size_t n, int64_t t_sig, int64_t t_back, int64_t end)
{
        size_t lo = 0, hi = n;

        while (lo < hi) { /* the first wake after t_sig */
                size_t mid = lo + (hi - lo) / 2;
                if (log[mid] <= t_sig)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        int64_t prev = lo > 0 ? log[lo - 1] : t_sig, gap = 0;
        for (size_t j = lo; j < n; j++) {
                if (log[j] - prev > gap)
                        gap = log[j] - prev;
                prev = log[j];
                if (log[j] > t_back + GAP_TAIL_NS)
                        return gap;
        }
        return end - prev > gap ? end - prev : gap;
}

/* The longest gap between two wakes with no restart window (signal to
 * served again + GAP_TAIL_NS) between or around them: the control. */
static int64_t quiet_gap(const int64_t *log, size_t n, const Restart *rs, int n_rs, int64_t from,
                         int64_t to, size_t *ret_wakes)
{
        int64_t gap = 0;
        int k = 0;

        *ret_wakes = 0;
        for (size_t j = 1; j < n; j++) {
                if (log[j - 1] < from || log[j] > to)
                        continue;
                ++*ret_wakes;
                while (k < n_rs && rs[k].t_back + GAP_TAIL_NS < log[j - 1])
                        k++;
                if (k < n_rs && rs[k].t_sig <= log[j])
                        continue; /* restart k overlaps [log[j-1], log[j]] */
                if (log[j] - log[j - 1] > gap)
                        gap = log[j] - log[j - 1];
        }
        return gap;
}

static void ms_cell(char *buf, size_t len, int64_t ns)
{
        snprintf(buf, len, "%.1f ms", (double)ns / 1e6);
}

static void print_table(Restart *rs, int n_rs)
{
        int64_t *v = malloc((size_t)n_rs * sizeof(*v));
        int64_t *back = malloc((size_t)n_rs * sizeof(*back));

        if (!v || !back)
                fault_die("out of memory");
        fault_say("%-9s %8s %10s %10s %10s %12s %12s", "kind", "restarts", "gap p50", "gap p99",
                  "gap max", "back p50", "back max");
        for (int k = 0; k < N_KINDS; k++) {
                size_t n = 0;
                for (int i = 0; i < n_rs; i++)
                        if (rs[i].kind == k) {
                                v[n] = rs[i].gap;
                                back[n++] = rs[i].t_back - rs[i].t_sig;
                        }
                char c[5][32];
                ms_cell(c[0], sizeof(c[0]), fault_percentile(v, n, 50));
                ms_cell(c[1], sizeof(c[1]), fault_percentile(v, n, 99));
                ms_cell(c[2], sizeof(c[2]), n ? v[n - 1] : 0);
                ms_cell(c[3], sizeof(c[3]), fault_percentile(back, n, 50));
                ms_cell(c[4], sizeof(c[4]), n ? back[n - 1] : 0);
                fault_say("%-9s %8zu %10s %10s %10s %12s %12s", kind_names[k], n, c[0], c[1], c[2],
                          c[3], c[4]);
                fault_check(n == 0 || v[n - 1] <= BOUND_NS, "%s: a service gap of %s (over 5 s)",
                            kind_names[k], c[2]);
        }
        fault_say("(gap: the longest time with no wake delivered to any client, from the last "
                  "wake before the signal; back: from the signal until the new instance "
                  "answered np_status)");
        free(v);
        free(back);
}

/* ---- main ---- */

static uint64_t pick_seed(void)
{
        const char *s = getenv("FAULTS_SEED");

        if (s && *s)
                return strtoull(s, NULL, 10);
        return (uint64_t)test_now() ^ ((uint64_t)getpid() << 32);
}

int main(int argc, char **argv)
{
        Service svc = { 0 };
        np_client *mon;
        struct np_status st;

        fault_init(argc, argv, "restart-storm");
        int own_fds = fd_count_of(getpid());
        uint64_t seed = pick_seed(), rng = seed;
        fault_say("seed %" PRIu64 " (FAULTS_SEED=%" PRIu64 " repeats this run's choices)", seed,
                  seed);
        int n_restarts = fault_quick ? QUICK_RESTARTS : FULL_RESTARTS;
        sd_socket = getenv("FAULTS_SYSTEMD_SOCKET");
        if (getenv("FAULTS_RESTARTS"))
                n_restarts = atoi(getenv("FAULTS_RESTARTS"));
        if (n_restarts < 1)
                fault_die("FAULTS_RESTARTS must be at least 1");
        n_clients = fault_quick ? QUICK_CLIENTS : FULL_CLIENTS;
        per_client = fault_quick ? QUICK_DESCS : FULL_DESCS;
        if (getenv("FAULTS_CLIENTS")) /* to size a run by hand */
                n_clients = atoi(getenv("FAULTS_CLIENTS"));
        if (getenv("FAULTS_DESCS"))
                per_client = atoi(getenv("FAULTS_DESCS"));
        if (n_clients < 1 || per_client < MIN_DESCS)
                fault_die("FAULTS_CLIENTS must be at least 1 and FAULTS_DESCS at least %d", MIN_DESCS);

        /* This process holds both ends of each pipe (and, in the fake
         * store, a copy of each carrier); the daemon holds one per
         * descriptor and connection.  Keep 1024 spare on both sides. */
        int nofile = fault_nofile();
        int fit = ((nofile - 1024) / n_clients - 3) / 2;
        if (fit < per_client) {
                fault_say("RLIMIT_NOFILE %d holds %d descriptors per client, not %d", nofile, fit,
                          per_client);
                per_client = fit;
        }
        if (per_client < MIN_DESCS)
                fault_die("fd limit %d too low for %d clients", nofile, n_clients);
        n_descs = (size_t)n_clients * (size_t)per_client;
        unsigned store_max = (unsigned)(n_descs + (size_t)n_clients + 1024);

        descs = calloc(n_descs, sizeof(*descs));
        clients = calloc((size_t)n_clients, sizeof(*clients));
        wake_log = malloc(WAKE_LOG_MAX * sizeof(*wake_log));
        Restart *rs = calloc((size_t)n_restarts * N_KINDS, sizeof(*rs));
        if (!descs || !clients || !wake_log || !rs)
                fault_die("out of memory");

        service_setup(&svc, store_max);
        sock_path = svc.d.sock;
        if (!sd_socket)
                service_spawn(&svc);
        svc.instance = 1;
        fault_must(fault_connect(svc.d.sock, &mon), "connect the admin connection");
        if (sd_socket && !svc.d.pid)
                svc.d.pid = sd_await_main(0); /* activated by that connect */
        fault_must(np_status(mon, &st), "np_status");
        if (!fault_check(st.fd_store && st.instance == 1 && st.resumed_connections == 0,
                         "a fresh daemon with --fd-store says fd_store %d, instance %" PRIu64
                         ", resumed %" PRIu64,
                         st.fd_store, st.instance, st.resumed_connections))
                fault_die("not the daemon this program tests");

        /* The clients and their pipes: a tenth parked, a twentieth parked
         * against deadlines, the rest armed. */
        int n_wait = per_client / 10, n_deadline = per_client / 20;
        for (int i = 0; i < n_clients; i++) {
                Client *cl = &clients[i];
                cl->idx = i;
                cl->descs = &descs[(size_t)i * (size_t)per_client];
                fault_must(fault_connect(svc.d.sock, &cl->c), "np_connect");
                for (int k = 0; k < per_client; k++) {
                        Desc *d = &cl->descs[k];
                        int p[2];
                        d->cl = cl;
                        d->idx = (uint64_t)(d - descs);
                        d->rng = fault_rng_next(&rng);
                        d->kind = k < n_wait                ? DESC_WAIT
                                  : k < n_wait + n_deadline ? DESC_DEADLINE
                                                            : DESC_ARM;
                        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                                fault_die("pipe2: %s", strerror(errno));
                        d->rfd = p[0];
                        d->wfd = p[1];
                        fault_must(np_open(cl->c, d->rfd, d->idx, &d->d), "np_open");
                }
        }
        uint64_t conns = (uint64_t)n_clients + 1;
        fault_must(np_status(mon, &st), "np_status");
        int dfds = fd_count_of(svc.d.pid);
        /* The daemon holds each connection, each descriptor and each
         * carrier (every entry of the store but the state). */
        size_t carriers = store_count(&svc) - 1;
        int base_fds = dfds - (int)conns - (int)n_descs - (int)carriers;
        fault_say("%d clients of %d descriptors (%d parked, %d parked against deadlines, %d "
                  "armed), %d restarts of each kind; daemon pid %d: %d fds, %d without them",
                  n_clients, per_client, n_wait, n_deadline, per_client - n_wait - n_deadline,
                  n_restarts, (int)svc.d.pid, dfds, base_fds);
        fault_check(st.connections == conns && st.descriptors == n_descs,
                    "the daemon serves %" PRIu64 " connections and %" PRIu64
                    " descriptors, want %" PRIu64 " and %zu",
                    st.connections, st.descriptors, conns, n_descs);

        /* Under a real systemd, PID 1 compares each fd stored with every
         * one already there (it drops duplicates): thousands take it many
         * seconds, during which it may not even answer systemctl.  Wait
         * until it holds them all, and say how long that took. */
        {
                size_t lo, hi, have = store_count(&svc);
                store_bounds(conns, n_descs, &lo, &hi);
                fault_say("the fd store holds %zu entries for %" PRIu64 " connections and %zu "
                          "descriptors", have, conns, n_descs);
                fault_check(have >= lo && have <= hi, "the fd store holds %zu entries, want %zu to %zu",
                            have, lo, hi);
        }

        /* The load. */
        for (size_t i = 0; i < n_descs; i++)
                if (descs[i].kind != DESC_ARM)
                        start_thread(&descs[i].th, waiter_main, &descs[i]);
        for (int i = 0; i < n_clients; i++)
                start_thread(&clients[i].poller, poller_main, &clients[i]);
        uint64_t wseed = fault_rng_next(&rng), cseed = fault_rng_next(&rng);
        pthread_t writer, churn;
        start_thread(&writer, writer_main, &wseed);
        start_thread(&churn, churn_main, &cseed);
        fault_sleep_ms(500);

        /* The storm: rounds of one restart of each kind, in rotating order. */
        int64_t storm_from = test_now();
        int n_rs = 0;
        for (int round = 0; round < n_restarts; round++)
                for (int j = 0; j < N_KINDS; j++) {
                        int kind = (round + j) % N_KINDS;
                        fault_sleep_ms(fault_rng_range(&rng, PAUSE_MIN_MS, PAUSE_MAX_MS));
                        restart_once(&svc, mon, kind, &rs[n_rs++]);
                        scan_lost();
                }
        int64_t storm_ns = test_now() - storm_from;
        fault_sleep_ms(300);

        /* Quiet: the churn and the writer stop, every byte is woken. */
        atomic_store(&churn_stop, true);
        if (!join_within(churn, test_now()))
                fault_die("the churn client is stuck (a call did not return in %d ms)",
                          BACK_WITHIN_MS);
        atomic_store(&writer_stop, true);
        pthread_join(writer, NULL);
        int64_t drain_until = test_now() + BOUND_NS + NSEC_PER_SEC_F;
        for (;;) {
                size_t pending = 0;
                for (size_t i = 0; i < n_descs; i++)
                        pending += atomic_load(&descs[i].pending) != 0;
                if (pending == 0 || test_now() > drain_until)
                        break;
                fault_sleep_ms(20);
                scan_lost();
        }
        scan_lost();
        size_t pending_end = 0;
        for (size_t i = 0; i < n_descs; i++)
                pending_end += atomic_load(&descs[i].pending) != 0;

        /* Nothing leaked: the daemon's fds, its counts, the store. */
        size_t store_lo, store_hi;
        store_bounds(conns, n_descs, &store_lo, &store_hi);
        int64_t settle_until = test_now() + BOUND_NS;
        size_t store_n;
        int want_fds;
        for (;;) {
                store_n = store_count(&svc);
                dfds = fd_count_of(svc.d.pid);
                want_fds = base_fds + (int)conns + (int)n_descs + (int)store_n - 1;
                int r = np_status(mon, &st);
                if (r < 0)
                        fault_die("np_status: %s", np_strerror(r));
                if ((store_n >= store_lo && store_n <= store_hi && dfds == want_fds &&
                     st.connections == conns && st.descriptors == n_descs) ||
                    test_now() > settle_until)
                        break;
                fault_sleep_ms(20);
        }
        fault_say("after the storm: daemon instance %" PRIu64 ", %d fds (%d + %" PRIu64
                  " connections + %zu descriptors + %zu carriers), store %zu entries",
                  st.instance, dfds, base_fds, conns, n_descs, store_n - 1, store_n);
        fault_check(dfds == want_fds, "the daemon holds %d fds, want %d", dfds, want_fds);
        fault_check(st.connections == conns && st.descriptors == n_descs,
                    "the daemon serves %" PRIu64 " connections and %" PRIu64
                    " descriptors, want %" PRIu64 " and %zu",
                    st.connections, st.descriptors, conns, n_descs);
        fault_check(store_n >= store_lo && store_n <= store_hi,
                    "the fd store holds %zu entries, want %zu to %zu (%" PRIu64
                    " connections, %zu descriptors)",
                    store_n, store_lo, store_hi, conns, n_descs);
        FakeSMStats sms = { 0 };
        if (!sd_socket)
                fakesm_stats(svc.d.m, &sms);
        fault_check(sms.ignored == 0 && sms.refused == 0 && sms.bad_names == 0 &&
                            sms.bad_removes == 0 && sms.stray_fds == 0 && sms.dedups == 0,
                    "the fake store saw %u ignored messages, %u refused fds, %u bad names, %u bad "
                    "removes, %u stray fds, %u duplicates",
                    sms.ignored, sms.refused, sms.bad_names, sms.bad_removes, sms.stray_fds,
                    sms.dedups);

        /* systemctl stop: the daemon exits (leaving the store), the store is
         * emptied, and the clients see a lame-duck stop. */
        atomic_store(&phase, PHASE_STOP);
        int status = 0;
        if (sd_socket) {
                if (sd_run("systemctl stop " SD_UNIT) != 0)
                        fault_die("systemctl stop " SD_UNIT " failed");
                svc.d.pid = 0;
                fault_check(sd_store_count() == 0, "the store holds %zu fds after systemctl stop",
                            sd_store_count());
        } else {
                kill(svc.d.pid, SIGTERM);
                int r = fakesm_reap_main(svc.d.m, BACK_WITHIN_MS, &status);
                if (r < 0)
                        fault_die("the daemon did not exit on SIGTERM: %s", strerror(-r));
                svc.d.pid = 0;
                fault_check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                            "the final stop exited with status %#x, want 0", status);
                fakesm_store_clear(svc.d.m);
                fault_check(fakesm_store_count(svc.d.m) == 0, "the store is not empty after clearing");
        }
        int64_t stop_at = test_now();
        for (size_t i = 0; i < n_descs; i++)
                if (descs[i].kind != DESC_ARM && !join_within(descs[i].th, stop_at))
                        fault_die("desc %zu: its parked wait did not end within %d ms of the "
                                  "stop",
                                  i, BACK_WITHIN_MS);
        for (int i = 0; i < n_clients; i++)
                if (!join_within(clients[i].poller, stop_at))
                        fault_die("client %d: np_poll did not end within %d ms of the stop", i,
                                  BACK_WITHIN_MS);
        int64_t joined_ns = test_now() - stop_at;
        size_t closing = 0, not_closing = 0, later_ok = 0, deadline_failed = 0;
        for (size_t i = 0; i < n_descs; i++) {
                Desc *d = &descs[i];
                if (d->kind == DESC_ARM)
                        continue;
                if (d->end_result == NP_ERR_CLOSING) {
                        closing++;
                        later_ok += d->later_result >= 0;
                } else if (d->kind == DESC_DEADLINE && d->end_result < 0)
                        deadline_failed++; /* between two waits: np_set_deadline failed */
                else {
                        not_closing++;
                        if (not_closing <= MAX_ERRORS_SHOWN)
                                fault_say("desc %zu: the parked wait ended with %s at the stop", i,
                                          np_strerror(d->end_result));
                }
        }
        size_t poll_ok = 0;
        for (int i = 0; i < n_clients; i++)
                poll_ok += clients[i].poll_end >= 0;
        int ping = np_ping(mon);
        fault_say("stop: %zu parked waits ended with NP_ERR_CLOSING, %zu deadline waiters "
                  "failed between waits, in %.1f ms; np_poll: %s; np_ping after: %s",
                  closing, deadline_failed, (double)joined_ns / 1e6,
                  np_strerror(clients[0].poll_end), np_strerror(ping));
        fault_check(not_closing == 0, "%zu parked waits did not end with NP_ERR_CLOSING",
                    not_closing);
        fault_check(later_ok == 0, "%zu calls after NP_ERR_CLOSING did not fail", later_ok);
        fault_check(poll_ok == 0, "%zu pollers' np_poll did not fail after the stop", poll_ok);
        fault_check(ping < 0, "np_ping after the stop: %s", np_strerror(ping));
        fault_check(closing > 0, "no parked wait ended with NP_ERR_CLOSING");

        /* The figures. */
        size_t n_log =
                atomic_load(&wake_log_n) < WAKE_LOG_MAX ? atomic_load(&wake_log_n) : WAKE_LOG_MAX;
        fault_sort_i64(wake_log, n_log);
        fault_check(atomic_load(&wake_log_n) <= WAKE_LOG_MAX, "the wake log overflowed");
        for (int i = 0; i < n_rs; i++)
                rs[i].gap = gap_of(wake_log, n_log, rs[i].t_sig, rs[i].t_back, stop_at);
        print_table(rs, n_rs);
        uint64_t wakes = atomic_load(&n_wakes), spurious = atomic_load(&n_spurious);
        fault_say("storm %.1f s: %" PRIu64 " bytes written, %" PRIu64 " woken (latency max %.1f "
                  "ms), %" PRIu64 " spurious wakes (%" PRIu64 " within a restart or the second "
                  "after), %" PRIu64 " duplicated, %" PRIu64 " deadline timeouts (%" PRIu64
                  " early, at most %.1f ms late), %" PRIu64 " lost",
                  (double)storm_ns / 1e9, atomic_load(&n_writes), wakes,
                  (double)atomic_load(&max_latency) / 1e6, spurious, atomic_load(&n_spurious_near),
                  atomic_load(&n_dups) + atomic_load(&n_phantom), atomic_load(&n_timeouts),
                  atomic_load(&n_early), (double)atomic_load(&max_timeout_late) / 1e6,
                  atomic_load(&n_lost));
        size_t storm_wakes;
        int64_t qgap = quiet_gap(wake_log, n_log, rs, n_rs, storm_from, storm_from + storm_ns,
                                 &storm_wakes);
        fault_say("between restarts the longest gap was %.1f ms (%.0f wakes/s); churn: %" PRIu64
                  " rounds, %" PRIu64 " failed; client errors: %" PRIu64,
                  (double)qgap / 1e6, (double)storm_wakes / ((double)storm_ns / 1e9),
                  atomic_load(&n_churn_rounds), atomic_load(&n_churn_errors),
                  atomic_load(&n_errors));
        fault_say("fake store: %u fds stored, %u removed, %u messages applied", sms.stores,
                  sms.removes, sms.applied);
        fault_check(atomic_load(&n_errors) == 0, "%" PRIu64 " errors seen by the clients",
                    atomic_load(&n_errors));
        fault_check(atomic_load(&n_churn_errors) == 0, "%" PRIu64 " churn rounds failed",
                    atomic_load(&n_churn_errors));
        fault_check(atomic_load(&n_churn_rounds) > 0, "the churn client made no round");
        fault_check(atomic_load(&n_lost) == 0, "%" PRIu64 " bytes lost (not woken within 5 s)",
                    atomic_load(&n_lost));
        fault_check(atomic_load(&n_late) == 0, "%" PRIu64 " wakes or timeouts over 5 s late",
                    atomic_load(&n_late));
        fault_check(atomic_load(&n_dups) == 0, "%" PRIu64 " duplicated events (no arm outstanding)",
                    atomic_load(&n_dups));
        fault_check(atomic_load(&n_phantom) == 0, "%" PRIu64 " bytes read that were not pending",
                    atomic_load(&n_phantom));
        fault_check(atomic_load(&n_early) == 0, "%" PRIu64 " early timeouts",
                    atomic_load(&n_early));
        fault_check(atomic_load(&n_writes) == wakes + pending_end,
                    "%" PRIu64 " bytes written, %" PRIu64 " woken, %zu never",
                    atomic_load(&n_writes), wakes, pending_end);
        fault_check(spurious <= wakes / 100 + 10, "%" PRIu64 " spurious wakes of %" PRIu64,
                    spurious, wakes);
        fault_check(atomic_load(&n_timeouts) > 0, "no deadline ever expired");

        /* Everything goes; this process is back where it started. */
        np_disconnect(mon);
        for (int i = 0; i < n_clients; i++)
                np_disconnect(clients[i].c);
        for (size_t i = 0; i < n_descs; i++) {
                close(descs[i].rfd);
                close(descs[i].wfd);
        }
        service_cleanup(&svc);
        int end_fds = fd_count_of(getpid());
        fault_check(end_fds == own_fds, "this process holds %d fds at the end, %d at the start",
                    end_fds, own_fds);
        free(rs);
        free(wake_log);
        free(clients);
        free(descs);
        return fault_finish();
}
