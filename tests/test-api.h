/*
 * The api suite: one test-api-<case>.c file per case of suite_api(), and
 * the helpers they share (in test-api.c, with suite_api()).  Helpers that
 * other suites need too are in helpers.h.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "helpers.h"
#include "netpoll.h"

#define MS INT64_C(1000000)
#define SEC INT64_C(1000000000)

/* Starts a daemon with default settings and connects one client to it. */
np_client *start(TestDaemon *d);

/* Disconnects c, then stops d, which must exit 0. */
void finish(TestDaemon *d, np_client *c);

/* A pipe, and an AF_UNIX stream socket pair: non-blocking, CLOEXEC. */
void mkpipe(int p[2]);
void mksocketpair(int sv[2]);

/* Closes both fds of a pipe or pair. */
void close2(int p[2]);

/* Writes to a non-blocking fd until it would block. */
void fill(int fd);

/* Reads a non-blocking fd until it would block. */
void drain(int fd);

/* Writes one byte to fd. */
void put(int fd);

/* np_session_stats of c, which must succeed. */
struct np_session_stats stats(np_client *c);

/* Asserts c's descriptors, parked waits and timers. */
void assert_stats(np_client *c, uint64_t descriptors, uint64_t waiters, uint64_t timers);

/* The fd count of the daemon pid once it is idle (three readings agree). */
int daemon_fds(pid_t pid);

/* Polls (at most 10 s) until the daemon pid holds n fds. */
void await_daemon_fds(pid_t pid, int n);

/* np_open(c, fd, user), which must succeed: the descriptor. */
np_desc open_ok(np_client *c, int fd, uint64_t user);

/* np_unblock then np_close of d, which must both succeed. */
void close_desc(np_client *c, np_desc d);

/* What /proc/PID/fd/FD links to ("" on error), into buf (len bytes). */
void fd_link(pid_t pid, int fd, char *buf, size_t len);

/* Connects to sock and reports the two fds np_connect added: the client's
 * socket (*ret_sock) and its break eventfd (*ret_evfd). */
np_client *connect_find_fds(const char *sock, int *ret_sock, int *ret_evfd);

/* Each adds the tests of test-api-<case>.c to tc, in the suite's order. */
void api_connect_tests(TCase *tc);
void api_open_tests(TCase *tc);
void api_unblock_close_reset_tests(TCase *tc);
void api_wait_tests(TCase *tc);
void api_deadline_tests(TCase *tc);
void api_arm_poll_break_tests(TCase *tc);
void api_introspection_tests(TCase *tc);
void api_scenarios_tests(TCase *tc);
