/*
 * What the isolation fault programs (issue: no client can hurt another)
 * measure, shared by all of them (probe.c):
 *
 *  - a victim: a connection of its own, on a thread of its own, that pings
 *    the daemon every interval and records each round trip with the time
 *    it started;
 *  - a fake service manager: a NOTIFY_SOCKET that records when each
 *    WATCHDOG=1 arrived (kernel receive stamps), so a program can give the
 *    longest gap between two of them inside a window;
 *  - an A/B driver that alternates attack windows with control windows of
 *    the same length, so both see the machine in the same state, and a
 *    verdict: the victim's ping p99 during the attacks over its p99 during
 *    the controls must stay under 2 in full mode (a generous bound in quick
 *    mode: the short mode CI gates on), and no WATCHDOG=1 gap may exceed
 *    half the watchdog interval.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"

/* ---- configuration ---- */

/* Writes base + new_keys into buf, or only base when the daemon under test
 * refuses the new keys (netpolld --check-config): that counts as a failed
 * check, and the program goes on to show what the daemon does without
 * them (an older daemon, for the before figure).  Returns buf. */
const char *fault_pick_config(char *buf, size_t len, const char *base, const char *new_keys);

/* ---- load ---- */

/* Makes the calling thread background load: SCHED_IDLE (nice 19 where that
 * is refused).  On a machine of few CPUs a program's own attack or control
 * threads would otherwise hold the victim's CPU (a woken task waits for the
 * running one's slice at equal priority), and the victim is to measure the
 * daemon, not them.  They still get every cycle the others leave. */
void fault_load_thread(void);

/* ---- the daemon's RSS ---- */

typedef struct FaultRss FaultRss;

/* Samples pid's VmRSS every 5 ms on a thread of its own, keeping the peak
 * (at least floor, in bytes). */
FaultRss *rss_start(pid_t pid, int64_t floor);

/* Stops sampling; returns the peak in bytes and how many samples were
 * taken (ret_samples may be NULL); frees r. */
int64_t rss_stop(FaultRss *r, int *ret_samples);

/* ---- the victim ---- */

typedef struct FaultVictim FaultVictim;

/* Connects to sock and starts pinging every interval_us (a ping that takes
 * longer is followed at once by the next).  Dies on failure. */
FaultVictim *victim_start(const char *sock, int interval_us);

/* Stops the pinger, disconnects, frees.  NULL is fine. */
void victim_stop(FaultVictim *v);

typedef struct FaultFigures {
        size_t n;      /* pings that started inside the windows */
        int errors;    /* of those, pings that failed */
        int64_t p50, p99, max; /* round trip, ns */
} FaultFigures;

/* Figures of the pings that started in any window [from[i], to[i]). */
FaultFigures victim_figures(FaultVictim *v, const int64_t *from, const int64_t *to, int nw);

/* ---- the fake service manager ---- */

typedef struct FaultNotify FaultNotify;

/* Binds a notify socket in a directory of its own and starts listening. */
FaultNotify *notify_start(void);

/* Its path, for FaultDaemonOpts.notify_socket. */
const char *notify_path(const FaultNotify *n);

/* How many READY=1, STATUS= and WATCHDOG=1 arrived so far. */
int notify_ready_count(const FaultNotify *n);
int notify_status_count(const FaultNotify *n);
int notify_watchdog_count(const FaultNotify *n);

/* The longest gap between WATCHDOG=1 in [from, to], counting the edges of
 * the window from the last one before it; *ret_count (may be NULL) gets how
 * many arrived inside. */
int64_t notify_watchdog_gap(const FaultNotify *n, int64_t from, int64_t to, int *ret_count);

/* Stops listening, removes the socket, frees.  NULL is fine. */
void notify_stop(FaultNotify *n);

/* ---- alternating attack and control windows ---- */

#define FAULT_AB_MAX 64

typedef struct FaultAB {
        int rounds;
        int64_t from[2][FAULT_AB_MAX], to[2][FAULT_AB_MAX]; /* [0] control, [1] attack */
} FaultAB;

/* One window: run(arg, attack, round) does the attack (attack true) or the
 * control load (false) and returns when the window is over.  The driver
 * records the window around the call. */
typedef void (*FaultWindowFn)(void *arg, bool attack, int round);

/* Runs `rounds` pairs of windows, alternating which of the pair comes
 * first, and records them in ab. */
void fault_ab_run(FaultAB *ab, int rounds, FaultWindowFn run, void *arg);

/*
 * Prints the victim's figures in the control and attack windows and checks
 * them: no ping failed, and the attack p99 is under 2x the control p99 (full
 * mode) or under max(4x, control + 2 ms) (quick mode).  With a notify
 * (may be NULL) and watchdog_usec, also checks that no WATCHDOG=1 gap in
 * any window exceeds half the interval.  `what` names the attack.
 * Returns whether every check held.
 */
bool fault_ab_verdict(const FaultAB *ab, FaultVictim *v, const FaultNotify *n,
                      uint64_t watchdog_usec, const char *what);
