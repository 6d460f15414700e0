/*
 * Test support shared by every suite: fd-leak checking, a real daemon on a
 * temporary socket, and small I/O helpers.  Suites are Check suites run in
 * fork mode (each test in its own process).
 */
#pragma once

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "testlib.h"

/* The suites; runner.c runs every one of them. */
Suite *suite_fdcheck(void);
Suite *suite_timers(void);
Suite *suite_pollcache(void);
Suite *suite_filecount(void);
Suite *suite_pollops(void);
Suite *suite_codec(void);
Suite *suite_config(void);
Suite *suite_cpuslice(void);
Suite *suite_api(void);
Suite *suite_daemon(void);
Suite *suite_pollctl(void);
Suite *suite_ops(void);
Suite *suite_fuzzcorpus(void);

/* Number of open fds of this process (/proc/self/fd). */
int fd_count(void);


/* Checked fixture: every TCase adds it with tcase_add_checked_fixture
 * (fdleak_setup, fdleak_teardown); teardown fails the test when the test
 * left an fd open that it did not have when it started. */
void fdleak_setup(void);
void fdleak_teardown(void);

/* How many fds this process has now beyond the setup baseline. */
int fdleak_delta(void);

typedef struct TestDaemon {
        pid_t pid;
        char dir[64];   /* temporary directory holding the socket */
        char sock[108]; /* socket path */
        int stderr_fd;  /* read end of the daemon's stderr, or -1 */
} TestDaemon;

/*
 * Starts $NETPOLLD_BIN (default ./build/netpolld) on a socket in a fresh
 * temporary directory with extra_args (NULL-terminated, may be NULL) and
 * waits until it accepts connections.  nofile > 0 sets RLIMIT_NOFILE (soft
 * and hard) of the daemon.  capture_stderr keeps its stderr readable
 * through d->stderr_fd (else it goes to /dev/null).  Fails the test on error.
 */
void test_daemon_start(TestDaemon *d, const char *const *extra_args, int nofile,
                       bool capture_stderr);

/* Sends SIGTERM, waits (at most 10 s, then SIGKILL) and returns the wait
 * status.  Removes the temporary directory. */
int test_daemon_stop(TestDaemon *d);

/* Path of the daemon binary ($NETPOLLD_BIN or ./build/netpolld). */
const char *test_daemon_bin(void);

/* Reads whatever the daemon wrote to stderr so far (non-blocking) into buf
 * (NUL-terminated); returns its length. */
size_t test_daemon_stderr(TestDaemon *d, char *buf, size_t len);


/* The fd limit (soft RLIMIT_NOFILE) of this process. */
int test_nofile(void);
