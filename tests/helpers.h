/*
 * Test support shared by every suite: fd-leak checking, a real daemon on a
 * temporary socket, running programs (the daemon, pollctl) to completion,
 * threads parked in np_wait, and small I/O helpers.  Suites are Check
 * suites run in fork mode (each test in its own process).  A helper that
 * two test files need lives here (or, within one suite, in the suite's
 * own header), never in a copy.
 */
#pragma once

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "netpoll.h"
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
Suite *suite_resume(void);
Suite *suite_fakesm(void);
Suite *suite_loop(void);
Suite *suite_poller(void);

/* Number of open fds of this process (/proc/self/fd). */
int fd_count(void);


/* Checked fixture: every TCase adds it with tcase_add_checked_fixture
 * (fdleak_setup, fdleak_teardown); teardown fails the test when the test
 * left an fd open that it did not have when it started. */
void fdleak_setup(void);
void fdleak_teardown(void);

/* How many fds this process has now beyond the setup baseline. */
int fdleak_delta(void);

/* Adds to s a new case called name, with the fd-leak fixture above and a
 * timeout of timeout seconds per test; returns it for the tests. */
TCase *test_tcase(Suite *s, const char *name, double timeout);

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
 * (non-blocking) through d->stderr_fd (else it goes to /dev/null).  Fails
 * the test on error.
 */
void test_daemon_start(TestDaemon *d, const char *const *extra_args, int nofile,
                       bool capture_stderr);

/* test_daemon_start on sock, a path in a directory the caller made and
 * removes: d->dir stays empty, and test_daemon_stop leaves both alone. */
void test_daemon_start_at(TestDaemon *d, const char *sock, const char *const *extra_args,
                          int nofile, bool capture_stderr);

/* test_daemon_start with --config FILE, FILE a new temporary file holding
 * text; its path goes to conf (32 bytes), for the caller to rewrite (a
 * reload) and unlink. */
void test_daemon_start_with_config(TestDaemon *d, const char *text, char *conf);

/* Sends SIGTERM, waits (at most 10 s, then SIGKILL) and returns the wait
 * status.  Removes the temporary directory. */
int test_daemon_stop(TestDaemon *d);

/* test_daemon_stop, failing the test unless the daemon exited 0. */
void test_daemon_stop_ok(TestDaemon *d);

/* Waits (at most 10 s) until path accepts connections.  Fails the test if
 * pid exits first (with what it wrote to stderr_fd, a non-blocking read
 * end, when that is not -1) or never listens (pid is then killed). */
void test_await_listening(pid_t pid, const char *path, int stderr_fd);

/* Path of the daemon binary ($NETPOLLD_BIN or ./build/netpolld). */
const char *test_daemon_bin(void);

/* Reads whatever the daemon wrote to stderr so far (non-blocking) into buf
 * (NUL-terminated); returns its length. */
size_t test_daemon_stderr(TestDaemon *d, char *buf, size_t len);


/* The fd limit (soft RLIMIT_NOFILE) of this process. */
int test_nofile(void);

/* Path of pollctl ($POLLCTL_BIN or ./build/pollctl). */
const char *test_pollctl_bin(void);

/* Waits at most timeout_ms for the child pid to exit: its wait status, or
 * -1 when it did not (it is then SIGKILLed and reaped). */
int test_wait_exit(pid_t pid, int timeout_ms);

/* A program started by test_proc_spawn. */
typedef struct TestProc {
        pid_t pid;
        int out, err; /* read ends of its stdout and stderr */
        int64_t start;
} TestProc;

/* What a program run to completion did (its output NUL-terminated, cut
 * to fit). */
typedef struct TestRun {
        int status; /* wait status */
        int64_t elapsed_ns;
        char out[32768];
        char err[16384];
} TestRun;

/*
 * Starts argv (argv[0] a path) with stdout and stderr on pipes and stdin
 * on stdin_fd (-1: /dev/null), through test_child_env.  as_nobody drops to
 * uid/gid 65534 first; sock_env sets $NETPOLL_SOCKET (NULL: unset).
 */
void test_proc_spawn(TestProc *p, const char *const *argv, bool as_nobody, const char *sock_env,
                     int stdin_fd);

/* Reads p's stdout and stderr to EOF (at most 20 s), then waits for its
 * exit (at most 5 s more; the test fails if it does not exit). */
void test_proc_collect(TestProc *p, TestRun *r);

/* test_proc_spawn and test_proc_collect: runs argv to completion. */
void test_run_full(TestRun *r, const char *const *argv, bool as_nobody, const char *sock_env,
                   int stdin_fd);

/* test_run_full as the caller, with NETPOLL_SOCKET unset and stdin
 * /dev/null. */
void test_run(TestRun *r, const char *const *argv);

/* Fails the test (showing both outputs) unless r exited with code. */
void test_assert_exit(const TestRun *r, int code);

/* Appends what fd has to buf (len bytes, NUL-terminated, already holding
 * what earlier calls read) until needle shows up in it: at most 10 s, or
 * until EOF or buf is full.  Returns whether it did. */
bool test_read_until(int fd, char *buf, size_t len, const char *needle);

/* Writes text to path (created 0644 or truncated). */
void test_write_file(const char *path, const char *text);

/* Writes text to a new temporary file named from tmpl (modified, as by
 * mkstemp). */
void test_write_temp(char *tmpl, const char *text);

/* A thread parked in np_wait, or np_wait_canceled when canceled. */
typedef struct Waiter {
        np_client *c;
        np_desc d;
        int mode;
        bool canceled;
        int result;  /* what the call returned (-1000 before) */
        int64_t end; /* test_now() when it returned */
        atomic_bool done;
        pthread_t thread;
} Waiter;

void waiter_start(Waiter *w, np_client *c, np_desc d, int mode, bool canceled);

/* Joins w (however long that takes) and returns its result. */
int waiter_join(Waiter *w);

/* Joins w if it returns within timeout_ns (its result is then in
 * w->result); returns whether it did. */
bool waiter_join_within(Waiter *w, int64_t timeout_ns);

/* Polls (at most 10 s) until c's connection has n parked waits
 * (np_session_stats). */
void await_waiters(np_client *c, uint64_t n);

/* Polls (at most 10 s) until the daemon has n parked waits over all its
 * connections (np_status). */
void await_daemon_waiters(np_client *c, uint64_t n);

/* Polls np_status through admin (at most 10 s) until the daemon says it is
 * instance want or later (a restart counts one more); the last reading goes
 * to *ret when ret is not NULL.  Fails the test if it never does. */
void await_instance(np_client *admin, uint64_t want, struct np_status *ret);

/* test_tcase leaving the timeout at Check's default ($CK_DEFAULT_TIMEOUT,
 * else 4 s): for cases of quick in-process tests. */
TCase *test_tcase_default_timeout(Suite *s, const char *name);

/* A child process holding a connection to a daemon, under a command name
 * of its own. */
typedef struct TestClientChild {
        pid_t pid;
        int hold; /* closing it lets the child exit */
} TestClientChild;

/* Forks a child that sets its command name to comm (PR_SET_NAME), connects
 * to sock and stays connected until test_client_child_end; returns once it
 * is connected (the test fails if it could not connect). */
void test_client_child_start(TestClientChild *cc, const char *sock, const char *comm);

/* Lets the child exit (without disconnecting) and reaps it: its wait
 * status, 0 when it exited 0. */
int test_client_child_end(TestClientChild *cc);
