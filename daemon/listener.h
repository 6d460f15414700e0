/*
 * The listening socket: AF_UNIX SOCK_SEQPACKET, either passed by systemd
 * (socket activation) or bound here.  Binding refuses a path that a live
 * daemon serves, replaces a stale socket file left by a dead one, and never
 * removes anything that is not a socket.  Accepted connections are admitted
 * here too: peer credentials, [access] allow lists and connection limits.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"

typedef struct Server Server;

/* Sets s->listen_fd.  Returns 0 or -errno with a message in err. */
int listener_open(Server *s, char *err, size_t errlen);

/* Closes the listener and removes the socket file if this process created
 * it and it is still the same file. */
void listener_close(Server *s);

/* Accepts the pending connections, up to a batch per call, and refuses
 * each one or hands it to s->hooks->connection_accepted (the listener knows
 * nothing of sessions).  The loop calls it when the listener is readable. */
void listener_accept(Server *s);

/* Polls the listener again after it was paused for want of fds, once an
 * fd can be reserved again.  The loop calls it every turn; returns when to
 * try again (INT64_MAX: not paused). */
#define LISTENER_RETRY_NS (10 * 1000 * 1000)
int64_t listener_resume(Server *s, int64_t now);
