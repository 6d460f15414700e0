/*
 * The daemon suite: test-daemon-<part>.c files add the tests of its cases
 * (cli, lifecycle, pollctl, hostile), and test-daemon.c holds what they
 * share: the raw wire protocol (datagrams packed with the generated
 * protobuf-c code, so a test can misbehave in ways libnetpoll never
 * would) and the frame of a hostile-client test.  Helpers that other
 * suites need too are in helpers.h.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "helpers.h"
#include "netpoll.h"
#include "netpoll.pb-c.h"

/* How long a test waits for the daemon to answer or to drop a client. */
#define IO_TIMEOUT_MS 10000

/* Sends buf (len bytes) as one datagram with nfds fds (at most
 * TEST_MAX_FDS): 0 or -errno. */
int raw_send_bytes(int fd, const void *buf, size_t len, const int *fds, size_t nfds);

/* Packs m and sends it as one datagram with fds: 0 or -errno. */
int raw_send_msg(int fd, const Netpoll__V1__ClientMessage *m, const int *fds, size_t nfds);

/* A request with id and op (a Netpoll__V1__Op), the rest unset. */
Netpoll__V1__Request mkreq(uint64_t id, int op);

/* Sends reqs[0..n) in one datagram with fds attached: 0 or -errno. */
int raw_send_requests(int fd, Netpoll__V1__Request *reqs, size_t n, const int *fds, size_t nfds);

/* Sends a hello of version, naming the client name ("test-daemon" for
 * raw_send_hello), with fds attached: 0 or -errno. */
int raw_send_hello_named(int fd, uint32_t version, const char *name, const int *fds, size_t nfds);
int raw_send_hello(int fd, uint32_t version, const int *fds, size_t nfds);

/*
 * Receives one ServerMessage (at most timeout_ms).  Returns 1 and *ret
 * (free with netpoll__v1__server_message__free_unpacked), 0 on EOF,
 * -ETIMEDOUT, or -errno (-ECONNRESET: the daemon closed on us).
 */
int raw_recv(int fd, int timeout_ms, Netpoll__V1__ServerMessage **ret);

/* Connects to sock and makes the handshake; returns the connection. */
int raw_hello(const char *sock);

/* Reads until the reply to id arrives; returns its result and, if ret_desc
 * is not NULL, its desc.  Events and other replies are skipped. */
int raw_wait_reply(int fd, uint64_t id, uint64_t *ret_desc);

/* A PING with id, which must be answered with 0. */
void raw_ping(int fd, uint64_t id);

/* The figures of an OP_STATUS reply. */
typedef struct StatusCopy {
        uint32_t pid;
        uint64_t connections, descriptors, waiters, timers, protocol_errors, slots_in_use;
} StatusCopy;

/* OP_STATUS over a fresh connection (counted in connections). */
StatusCopy raw_status(const char *sock);

/* A fresh, well-behaved client gets its pings answered. */
void assert_serves(const TestDaemon *d);

/* The daemon's fd count with no client connected. */
int daemon_baseline(const TestDaemon *d);

/* Waits (at most 10 s) for the daemon's fd count to come back to want. */
void wait_fd_count(const TestDaemon *d, int want);

/* Waits for the daemon to drop the connection fd.  Returns how many
 * datagrams came before the end (the caller decides whether any may). */
int expect_dropped(int fd);

/* rfd (a pipe's read end) sees EOF: no other copy of the write end is
 * open any more. */
void assert_read_eof(int rfd);

/* wfd (a pipe's write end) gets EPIPE within IO_TIMEOUT_MS: no other copy
 * of the read end is open any more (the daemon closes a client's fds on its
 * closer threads, a moment after the reply or the drop). */
void assert_write_epipe(int wfd);

/* Common frame of a hostile-client test. */
typedef struct Hostile {
        TestDaemon d;
        int baseline;
        uint64_t protocol_errors;
} Hostile;

/* Starts the daemon and takes its fd count and protocol errors. */
void hostile_begin(Hostile *h);

/* After the offender is gone: the daemon serves, its fd count is back, it
 * counted protocol_errors more protocol errors, and it stops with exit 0. */
void hostile_end(Hostile *h, unsigned protocol_errors);

/* Each adds the tests of one test-daemon-<part>.c to tc, in the suite's
 * order: cli to case cli; lifecycle, then clients, to case lifecycle;
 * pollctl to case pollctl; hostile, hostile_fds, then hostile_silent to
 * case hostile. */
void daemon_cli_tests(TCase *tc);
void daemon_lifecycle_tests(TCase *tc);
void daemon_clients_tests(TCase *tc);
void daemon_pollctl_tests(TCase *tc);
void daemon_hostile_tests(TCase *tc);
void daemon_hostile_fds_tests(TCase *tc);
void daemon_hostile_silent_tests(TCase *tc);
