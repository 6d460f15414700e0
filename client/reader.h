/*
 * The incoming side of a connection (internal to libnetpoll): the reader
 * role, which hands replies to their callers and queues events, and the
 * wait over those queues behind np_poll and np_watch_read.  See reader.c.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "client.h"

/* Moves up to max items of r into out; returns how many. */
int ring_pop(Ring *r, void *out, int max);

/*
 * One turn of the reader role.  Called and returns with c->lock held; drops
 * it while polling.  deadline: -1 wait for input, 0 do not block, else an
 * absolute CLOCK_MONOTONIC time.  watch_break: also wake on np_break.
 * Reading stops early once want is done or q has items.
 */
void reader_turn(np_client *c, int64_t deadline, bool watch_break, const Pending *want,
                 const Ring *q);

/*
 * netpoll(delay) over one of the connection's queues: returns queued items,
 * else (with breakable) a pending break, else waits as delay says.  The
 * thread counts itself inside the library first and flushes the pipelined
 * batch, since the items it waits for may depend on it.  Called without
 * c->lock.  Moves up to max items of q into out and returns how many (0:
 * none by the end of the delay, or a break), or -errno (-ECONNRESET: the
 * daemon is gone).
 */
int reader_wait_queue(np_client *c, int64_t delay_ns, Ring *q, void *out, int max, bool breakable);
