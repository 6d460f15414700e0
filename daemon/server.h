/*
 * The daemon's state and its event loop: the poller, the pollDesc cache, the
 * timer heap, the listener and the table of connections.  One thread runs
 * everything; nothing here blocks except epoll_wait.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "env.h"

/* Due timers run per loop turn: bounds the stall a storm of equal deadlines
 * causes every other client (256: bench-storm's longest victim ping 0.4-1.1
 * ms against 1.1-2.9 ms at 1024, the drain alike; at 64 the drain took
 * twice as long). */
#define SERVER_TIMER_BATCH 256

/* Sets up everything but the listener.  Returns 0 or -errno. */
int server_init(Server *s, Config *config, const ConfigSource *source);

/* Builds a configuration from defaults, source->path and the overrides.
 * Returns 0, or -errno with "FILE:LINE: message" in err. */
int server_config_build(const ConfigSource *source, Config *ret, char *err, size_t errlen);

/* Opens the listener: the socket passed by systemd (LISTEN_FDS) when there
 * is one, else binds config->socket_path.  Returns 0 or -errno, with a
 * message for the operator in err. */
int server_listen(Server *s, char *err, size_t errlen);

/* Asks the scheduler for config->scheduler_slice (cpuslice.h) for the
 * calling thread, and logs what the kernel did with it. */
void server_apply_slice(const Server *s);


/* Runs the loop until SIGTERM/SIGINT.  Returns 0 or -errno. */
int server_run(Server *s);

/* Ends every connection, removes the socket file, frees everything. */
void server_done(Server *s);

/* Handles one event of the main epoll set (the loop's dispatch step; the
 * session fuzzer calls it too, so both take the same path). */
void server_dispatch(Server *s, const struct epoll_event *ev);

/* Closes the fds of ended connections, at most a batch per call (all: until
 * done), and frees each connection once all of its are closed.  The loop
 * calls it every turn. */
void server_reap(Server *s, bool all);


/* Checks the cross-module invariants (pollcache vs connections, timer heap
 * vs timer counts, descriptor lists).  NULL when they hold, else what broke.
 * For tests and fuzzers; O(descriptors). */
const char *server_verify(const Server *s);


/* Works out fd_limit_uid and fd_limit_clients from RLIMIT_NOFILE and the
 * configuration (at start and on every reload). */
void server_apply_limits(Server *s);


