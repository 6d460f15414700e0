/*
 * The sending side of a connection (internal to libnetpoll): requests that
 * are pipelined (no reply comes) and calls that wait for their reply.  See
 * request.c.
 */
#pragma once

#include "client.h"

/* Sends whatever is pipelined.  Returns 0 or -errno. */
int request_flush(np_client *c);

/* request_flush without waiting: -EAGAIN when the socket has no room, or
 * another thread is sending, and the batch stays for a later send (whole:
 * a datagram leaves or not).  Returns 0 or -errno otherwise. */
int request_flush_nowait(np_client *c);

/*
 * Pipelines q: no reply comes.  It leaves with the connection's next
 * datagram, or at once when the batch is full or a thread of this
 * connection is waiting in the library (its wake may depend on q).  A
 * thread counts itself in c->inside before it sends, so a request batched
 * after that check-free moment still leaves with that thread's send.
 * Returns 0 or -errno.
 */
int request_send_quiet(np_client *c, const Netpoll__V1__Request *q);

/*
 * Sends q (with fd, borrowed, attached when >= 0) and waits for its reply in
 * *p.  Returns the reply's result, or -errno (-ECONNRESET: the daemon is
 * gone).
 */
int request_call(np_client *c, Netpoll__V1__Request *q, int fd, Pending *p);

/* After a `resumed` notice (c->resume_pending): sends OP_RESUME, then what
 * the daemon was told about each descriptor (unblocks, deadlines as the
 * absolute times sent, arms whose event has not come) and every call that
 * still waits for its reply, with the same ids.  Takes send_lock and lock
 * (neither may be held).  On failure the connection is dead. */
void request_resume(np_client *c);
