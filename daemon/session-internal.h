/*
 * What session.c, session-out.c and session-request.c, the three parts of
 * the session module, call of each other.  Not for other modules: they use
 * session.h.
 */
#pragma once

#include <stdint.h>

#include "codec.h"
#include "session.h"

/* Units of work (about 0.2 us each) a connection may use per wake; then
 * other clients get a turn. */
#define WORK_BUDGET 256

/* Registrations of one file (a socket, a pipe, a FIFO, a device node) one
 * connection may hold; one more gets -ETOOMANYREFS (filecount.h). */
#define SESSION_MAX_SAME_FILE 16

/* session.c */

/* The connection socket's epoll token: TOKEN_SESSION, its index and generation. */
uint64_t session_token(const Session *s);

/* session-out.c */

/* Frees what session_hold kept alive for this turn's flush. */
void session_out_release_held(Session *s);

/* Stops or resumes reading the connection's requests as its state says:
 * not while a descriptor listing is under way, nor while its uid waits for
 * the closer (session_quota_check).  Epoll does not report it readable
 * meanwhile. */
void session_update_input(Session *s);

/* Sends one packed datagram after whatever is queued (queueing it when
 * the socket is full).  May close the session. */
void session_send_datagram(Session *s, const uint8_t *buf, size_t len);

/* Sends queued datagrams in order, and asks for EPOLLOUT while any are
 * left.  Returns 1 when the queue is empty, 0 when the socket is full
 * again, -1 when the session ended. */
int session_out_drain(Session *s);

/* session-request.c */

/* Runs one request.  fd is the fd bound to it (consumed on a successful
 * open: *fd is then -1), or -1.  fd_error: if not 0, the -errno an
 * fd-taking request fails with (no fd could be received for it). */
void session_request_handle(Session *s, const NpRequest *q, int *fd, int fd_error);
