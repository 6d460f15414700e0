/*
 * What every bench program shares: its command line, a private netpolld,
 * sample statistics, the facts file the report reads, raw sample dumps for
 * the plots, and small /proc readers.
 *
 * A bench program measures; it does not format the table.  It writes facts
 * (tab-separated lines, see bench_row() and friends) to OUT/NAME.facts, and
 * bench-report turns every facts file of a run into the table and
 * results.json.  So a program that dies half-way leaves no half-written
 * table behind, only a short facts file and a non-zero exit.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sched.h>
#include <stdint.h>
#include <sys/types.h>

#include "clock.h"
#include "testlib.h"

/* What bench_init() parsed from the command line. */
typedef struct BenchOptions {
        const char *daemon; /* -d: the netpolld binary */
        const char *out;    /* -o: where facts, logs and .dat files go */
        bool quick;         /* -q: CI's smaller iteration counts */
} BenchOptions;

extern BenchOptions bench_opt;

/*
 * Parses "-d NETPOLLD -o OUTDIR [-q]", raises RLIMIT_NOFILE to its hard
 * limit and opens OUTDIR/name.facts.  Exits 2 on a bad command line or an
 * unwritable OUTDIR: a bench that cannot record must not look like a pass.
 */
void bench_init(int argc, char **argv, const char *name);

/* Closes the facts file; returns 0, or 1 if writing it failed. */
int bench_finish(void);

/* Prints "name: message" to stderr and exits 1. */
__attribute__((noreturn, format(printf, 1, 2))) void bench_die(const char *fmt, ...);

/* Like bench_die() when r < 0, naming what failed and strerror(-r). */
void bench_check(int r, const char *what);

/* Picks between the full and the quick count. */
static inline size_t bench_count(size_t full, size_t quick)
{
        return bench_opt.quick ? quick : full;
}

/* The soft RLIMIT_NOFILE after bench_init() raised it. */
int bench_nofile(void);

/* ---- a private daemon ---- */

typedef struct BenchDaemon {
        pid_t pid;
        char dir[64];   /* temporary directory: socket and configuration */
        char sock[108]; /* socket path */
        char conf[128]; /* the configuration written for it */
} BenchDaemon;

/* Appended to the configuration bench_daemon_start() writes (INI text,
 * "" by default), e.g. "[daemon]\nidle_spin = 0\n". */
extern const char *bench_daemon_config;

/*
 * Starts bench_opt.daemon on a socket in a fresh temporary directory with
 * limits raised for benchmarking (see the configuration it writes), its
 * stderr going to OUT/netpolld-<tag>.log, and waits until the socket
 * accepts connections.  The daemon gets SIGTERM if this process dies,
 * exits or is stopped by SIGTERM/SIGINT, so d must stay valid until
 * bench_daemon_stop().  Exits through bench_die() when it cannot start.
 */
void bench_daemon_start(BenchDaemon *d, const char *tag);

/* Forks and execs the daemon, returning at once with d->pid set.  For the
 * start-up scenario, which times the rest itself. */
void bench_daemon_spawn(BenchDaemon *d, const char *tag);

/* Whether path accepts a SOCK_SEQPACKET connection now (connect(2) and
 * close: the daemon sees a peer that went away before its hello). */
bool bench_connectable(const char *path);

/* SIGTERM, wait (10 s, then SIGKILL); removes the directory.  Returns the
 * wait status. */
int bench_daemon_stop(BenchDaemon *d);

/* Connects an np_client to d, exiting on failure. */
struct np_client *bench_connect(const BenchDaemon *d);

/* ---- samples ---- */

/* A growing array of int64 samples (nanoseconds unless said otherwise). */
typedef struct Samples {
        int64_t *v;
        size_t n, cap;
        bool sorted;
} Samples;

void samples_add(Samples *s, int64_t x);
void samples_free(Samples *s);
/* The p-th percentile (0..100), nearest rank; sorts in place.  0 if empty. */
int64_t samples_pct(Samples *s, double p);
int64_t samples_max(Samples *s);
int64_t samples_min(Samples *s);

/*
 * Writes OUT/name as "value cumulative_fraction" lines, values divided by
 * div (1000: ns to us), sorted: a CDF gnuplot can draw as it is.
 */
void samples_dump_cdf(Samples *s, const char *name, double div);

/* Median of a small array of doubles (sorts it). */
double median_of(double *v, size_t n);

/* ---- facts for bench-report (bench-report.c documents the format) ---- */

/* A row: the netpolld figure and its baseline (NAN: none) in unit. */
void bench_row(const char *scenario, const char *metric, const char *unit, double netpolld,
               double baseline);
/* A figure shown for context, with no ratio. */
void bench_info(const char *scenario, const char *metric, const char *unit, double value);
/* What the baseline of scenario is, in words. */
void bench_baseline(const char *scenario, const char *text);
/* A line printed under the table. */
__attribute__((format(printf, 1, 2))) void bench_note(const char *fmt, ...);

/* ---- /proc ---- */

/* The scheduler state letter of thread tid of process pid ('S' sleeping,
 * 'R' running...), or 0 when it cannot be read. */
char proc_state(pid_t pid, pid_t tid);

/* Spins (yielding) until thread tid of pid sleeps, at most 1 s; false on
 * timeout.  Used so that every wake-up we time really is a wake-up. */
bool wait_until_sleeping(pid_t pid, pid_t tid);

/* test_cpu_ns and test_proc_status_kib (testlib.h) read a process's CPU
 * time and its /proc status fields. */

/* ---- placement ---- */

/* Sets the CPU affinity of every thread of pid (threads it starts later
 * inherit it from theirs).  Returns how many threads it set; exits through
 * bench_die() when none. */
int bench_pin(pid_t pid, const cpu_set_t *set);
