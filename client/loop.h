/*
 * Event-loop integration (internal to libnetpoll): the fd a caller's loop
 * polls and what makes it readable.  See loop.c.
 */
#pragma once

#include <stdbool.h>

#include "client.h"

/* Makes np_get_fd's fd readable until the next np_process: work waits in
 * memory.  Called with c->lock held; a no-op before np_get_fd and while it
 * is already readable that way. */
void loop_kick(np_client *c);

/* loop_kick if np_process would find something the socket no longer shows:
 * events queued, a break taken, the connection dead.  Called with c->lock
 * held by whoever changed one of those (not np_process itself). */
void loop_notify(np_client *c);

/*
 * np_process's work, also telling in *ret_break whether it took an
 * np_break (np_attach_event hands that on).  Never waits for the daemon.
 * Returns the number of events moved into events (at most max), or
 * -errno once none is left and the connection is dead.
 */
int loop_process(np_client *c, np_event *events, int max, bool *ret_break);
