/*
 * Test support with no Check dependency, shared by the Check suites
 * (through helpers.h) and the standalone fault programs (tests/faults/).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC ns. */
int64_t test_now(void);

/* Open fds of process pid (/proc/PID/fd; for this process, not counting
 * the directory's own), or -errno. */
int fd_count_of(pid_t pid);

/* Opens a raw SOCK_SEQPACKET connection to path (no handshake): the fd,
 * or -errno. */
int test_raw_connect(const char *path);

/* Sends one datagram of len bytes with nfds fds (at most TEST_MAX_FDS) as
 * SCM_RIGHTS, with MSG_NOSIGNAL and the given extra flags.  0 or -errno
 * (-EINVAL for too many fds). */
#define TEST_MAX_FDS 253
int test_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t nfds, int flags);

/* CPU time (user + system) of process pid so far, in ns, from its process
 * CPU clock; or -errno. */
int64_t test_cpu_ns(pid_t pid);

/* A "Name: N kB" field of /proc/PID/status (VmRSS, RssAnon, ...) in KiB,
 * or -errno (-ENOENT when the field is missing). */
long test_proc_status_kib(pid_t pid, const char *field);

/* The scheduling attributes of pid (0: the caller), from sched_getattr. */
typedef struct TestSched {
        int policy;       /* SCHED_*, without SCHED_RESET_ON_FORK */
        int nice;
        int64_t slice_ns; /* the fair slice (sched_runtime); 0 before Linux 6.12 */
        int reset_on_fork;
} TestSched;

/* 0 or -errno. */
int test_sched_get(pid_t pid, TestSched *ret);

/* The slice a fair task gets when it asks for the kernel's default, found
 * in a child process (a slice is inherited across fork, so the caller's own
 * may not be the default); 0 when the kernel has no per-task slices, or
 * -errno. */
int64_t test_sched_default_slice(void);

/* Sets the CPU affinity of every thread of pid (threads they start later
 * inherit it) to the cpu_set_t set of size bytes, as sched_setaffinity
 * takes them (this file leaves <sched.h> out: testlib.c needs
 * <linux/sched/types.h>, which clashes with it).  Returns how many threads
 * took it, or -errno when pid's threads cannot be listed. */
int test_pin_threads(pid_t pid, size_t size, const void *set);

/* In a child, before exec: an empty signal mask, SIGPIPE back to its
 * default, and none of LISTEN_*, NOTIFY_SOCKET, WATCHDOG_* and
 * NETPOLL_SOCKET inherited from the test. */
void test_child_env(void);
