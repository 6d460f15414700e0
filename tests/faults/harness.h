/*
 * Support shared by the fault and load tests (tests/faults/fault-*.c);
 * harness.c and raw.c implement it.
 *
 * Each fault test is a standalone program: it starts its own netpolld on a
 * socket in a fresh temporary directory, drives it with libnetpoll and with
 * raw protobuf-c datagrams, prints its figures and ends with one line
 * "PASS name" or "FAIL name: N check(s) failed"; its exit status is 0 only
 * when every check held.  No Check here: these programs fork clients, kill
 * them, change uid and measure timing, all of which a test runner's own
 * fork mode would get in the way of.
 *
 * Every loop in these programs is bounded in count and in time.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "netpoll.h"
#include "testlib.h"
#include "netpoll.pb-c.h"

#define NSEC_PER_MSEC_F INT64_C(1000000)
#define NSEC_PER_SEC_F INT64_C(1000000000)

/* --quick (or FAULTS_QUICK=1): the short mode CI runs. */
extern bool fault_quick;

/* Parses the command line (--quick) and sets the program's name. */
void fault_init(int argc, char **argv, const char *name);

/* Prints "name: <text>" on stdout. */
void fault_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Records a check: when cond is false prints "name: FAIL: <text>" and counts
 * it.  Returns cond. */
bool fault_check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints the verdict line and returns the exit status (0 pass, 1 fail). */
int fault_finish(void);

/* Prints the reason, kills the daemons started so far and exits 1. */
void fault_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Dies with what if r < 0 (r a negative errno). */
void fault_must(int r, const char *what);
void fault_sleep_ms(int64_t ms);

/* The soft RLIMIT_NOFILE of this process, raised to its hard limit first. */
int fault_nofile(void);

/* strerror(-e) for a negative errno e, "none" for 0: a first error in a
 * report, where 0 means there was none. */
const char *fault_strerror(int e);

/* ---- a seeded generator (splitmix64) ---- */

/* The next number of the sequence whose state is *s. */
uint64_t fault_rng_next(uint64_t *s);

/* Uniform in [lo, hi], from the sequence whose state is *s. */
int64_t fault_rng_range(uint64_t *s, int64_t lo, int64_t hi);

/* ---- the daemon under test ---- */

typedef struct FaultDaemon {
        pid_t pid;
        char dir[64];   /* temporary directory (mode 0755) */
        char sock[108]; /* its socket */
        char log[128];  /* its stderr, appended */
        char conf[128]; /* the configuration file, when one was given */
} FaultDaemon;

typedef struct FaultDaemonOpts {
        const char *config;        /* INI text for --config, or NULL */
        int nofile;                /* > 0: RLIMIT_NOFILE soft and hard of the daemon */
        const char *log_level;     /* --log-level, or NULL (the default, info) */
        const char *notify_socket; /* NOTIFY_SOCKET, or NULL */
        uint64_t watchdog_usec;    /* with notify_socket: WATCHDOG_USEC (and WATCHDOG_PID) */
} FaultDaemonOpts;

/* $NETPOLLD_BIN, or ./build/netpolld. */
const char *fault_daemon_bin(void);

/* Starts $NETPOLLD_BIN (default ./build/netpolld) and waits (at most 10 s)
 * until it accepts connections.  Dies on failure. */
void fault_daemon_start(FaultDaemon *d, const FaultDaemonOpts *o);

/* Whether it is still running (reaps it if it exited). */
bool fault_daemon_alive(FaultDaemon *d);

/* SIGTERM, wait at most 10 s (then SIGKILL); removes its directory.
 * Returns the wait status, or -1 if it had already gone. */
int fault_daemon_stop(FaultDaemon *d);

/* What the daemon logged so far (malloc'd, NUL-terminated, never NULL). */
char *fault_daemon_log(const FaultDaemon *d);

/* ---- /proc figures ---- */

/* Waits (at most 2 s) until process pid is stopped ('T' in /proc/PID/stat),
 * or, with stopped false, until it is not.  Returns whether it got there. */
bool fault_await_stopped(pid_t pid, bool stopped);

/* fd_count_of (testlib.h) gives a process's open fds. */

/* The CPU time (ns) process pid uses while this process sleeps ms. */
int64_t fault_idle_cpu(pid_t pid, int64_t ms);

/* test_cpu_ns and test_proc_status_kib (testlib.h) read a process's CPU
 * time and its /proc status fields (VmRSS, in KiB). */

/* ---- statistics ---- */

/* The p-th percentile (0..100) of v[0..n) (sorts v in place); 0 if n == 0. */
int64_t fault_percentile(int64_t *v, size_t n, double p);

/* Sorts v[0..n) in ascending order. */
void fault_sort_i64(int64_t *v, size_t n);

/* ---- libnetpoll helpers ---- */

/* np_connect with a few retries on EAGAIN-like transient errors. */
int fault_connect(const char *path, np_client **ret);

/*
 * Polls the daemon (through mon, a root connection) until it is back at its
 * baseline: `conns` connections, no descriptors, waiters or timers, and
 * `fds` open fds (counted in /proc).  Waits at most timeout_ms.  Fills *st
 * and *ret_fds with the last reading.  Returns whether it got there.
 */
bool fault_await_baseline(np_client *mon, pid_t pid, uint64_t conns, int fds, int timeout_ms,
                          struct np_status *st, int *ret_fds);

/* Waits (at most 5 s) until the daemon serves exactly `conns` connections
 * with no descriptors and its fd count holds still for 30 ms, then returns
 * that count (the baseline), with the status in *st.  Dies if it does not
 * settle. */
int fault_settle(np_client *mon, pid_t pid, uint64_t conns, struct np_status *st);

/* Reads exactly len bytes from fd (a child's report pipe) within
 * timeout_ms; false on timeout or EOF. */
bool fault_read_full(int fd, void *buf, size_t len, int timeout_ms);

/* Waits for child pid to end, at most timeout_ms (then SIGKILLs it);
 * returns its wait status, or -1. */
int fault_reap(pid_t pid, int timeout_ms);

/* ---- a client of another uid ---- */

#define FAULT_OTHER_UID 65534

typedef struct OtherUidReport {
        int ok;           /* np_connect succeeded (and np_ping on it) */
        int eusers;       /* -EUSERS */
        int econnrefused; /* -ECONNREFUSED */
        int other;        /* any other error */
        int other_error;  /* the first of those */
        int ping_failed;
        int setuid_error; /* could not become FAULT_OTHER_UID: -errno */
} OtherUidReport;

typedef struct OtherUid {
        pid_t pid;
        int ctl; /* write a byte: disconnect and exit */
} OtherUid;

/*
 * Forks a child that becomes uid/gid FAULT_OTHER_UID, makes `attempts`
 * np_connect calls to sock, pings over each connection it gets, and keeps
 * them until other_uid_release().  Returns once it reported (at most 30 s).
 */
void other_uid_start(OtherUid *o, const char *sock, int attempts, OtherUidReport *ret);

/* Lets the child disconnect and exit; returns its exit status. */
int other_uid_release(OtherUid *o);

/* A child process of uid/gid FAULT_OTHER_UID driven over two pipes. */
typedef struct FaultChild {
        pid_t pid;
        int cmd; /* write end: commands to it */
        int rep; /* read end: its reports */
} FaultChild;

/*
 * Forks a child that drops its supplementary groups, becomes uid/gid
 * FAULT_OTHER_UID (or dies saying why) and is SIGKILLed when this process
 * dies.  In the child returns true, with *ret_cmd and *ret_rep its ends of
 * the two pipes; in the parent false, with ch filled in.
 */
bool fault_child_fork(FaultChild *ch, int *ret_cmd, int *ret_rep);

/* Closes both pipes (the child's cue to end) and reaps the child within
 * 10 s (then SIGKILLs it): its wait status, or -1. */
int fault_child_end(FaultChild *ch);

/* ---- raw protocol (raw.c) ---- */

/* test_raw_connect (testlib.h) opens a connection without a handshake. */

/* Sends buf[0..len) as one datagram with fds (borrowed) as SCM_RIGHTS. */
int raw_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds);

/* Packs a ClientMessage with these requests and sends it. */
int raw_send_requests(int sock, Netpoll__V1__Request *const *qs, size_t n, const int *fds,
                      size_t nfds);

/* Opens a raw connection to sock and says hello; dies on failure. */
int raw_greeted(const char *sock);

/* Sends a hello and waits (timeout_ms) for the welcome: 0, the daemon's
 * error (< 0), -ECONNRESET when it closed, -ETIMEDOUT. */
int raw_hello(int sock, int timeout_ms);

/*
 * Receives one datagram within timeout_ms.  Returns 1 and the message
 * (free with netpoll__v1__server_message__free_unpacked(m, NULL)), 0 when
 * the daemon closed the connection, -ETIMEDOUT, -EBADMSG, or -errno.
 */
int raw_recv(int sock, int timeout_ms, Netpoll__V1__ServerMessage **ret);

/*
 * Reads datagrams until the reply to request `id` (1: *ret_result and
 * *ret_desc set), the end of the connection (0), or timeout_ms (-ETIMEDOUT).
 * Other replies and events are skipped; an error datagram is skipped too
 * (the daemon closes after it).
 */
int raw_await_reply(int sock, uint64_t id, int timeout_ms, int32_t *ret_result, uint64_t *ret_desc);

/* A malloc'd datagram of n PINGs, ids 1..n (replies counted, not
 * matched; n may be 0: an empty message); its length in *ret_len. */
uint8_t *raw_pack_pings(int n, size_t *ret_len);

/* Packs into buf (>= 80 bytes) a datagram of one PING (id) whose Request
 * also carries field 15, which the protocol does not define.  Returns its
 * length. */
size_t raw_pack_ping_with_unknown(uint8_t *buf, uint64_t id);

/* A request with the given fields (the others zero). */
Netpoll__V1__Request raw_request(uint64_t id, int op, uint64_t desc, int mode, int64_t ns);

/* What raw_probe finds a raw connection to be. */
enum { RAW_HUNG = -1, RAW_CLOSED = 0, RAW_ALIVE = 1 };

/* The id of raw_probe's PING. */
#define RAW_PROBE_ID 999999

/* Sends a PING (id RAW_PROBE_ID) on a greeted raw connection and waits (at
 * most 3 s) for its reply: RAW_ALIVE; RAW_CLOSED when the daemon closed
 * the connection (or sent an error) instead; RAW_HUNG when neither came. */
int raw_probe(int sock);

/* "served", "dropped" or "HUNG", for a raw_probe outcome. */
const char *raw_probe_name(int o);
