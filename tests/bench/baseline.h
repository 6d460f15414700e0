/*
 * The baselines that need no daemon: what the same machine does in the
 * same run without netpolld in the way.
 */
#pragma once

#include <stddef.h>

#include "bench.h"

/* Size of every IPC floor message: about what one netpolld request or
 * event datagram carries. */
#define IPC_MSG_BYTES 32

/*
 * The IPC floor: n round trips of IPC_MSG_BYTES over an AF_UNIX
 * SOCK_SEQPACKET socketpair between this process and a forked echo child.
 * Before each round trip it waits until the child sleeps in recv(), so
 * every sample pays a real wake-up, as a parked netpolld client does.
 * Appends each round-trip time (ns) to rtt.
 */
void ipc_pingpong(size_t n, Samples *rtt);

/*
 * The IPC round-trip rate: round trips per second over the same kind of
 * socketpair, back to back for at least min_ns.
 */
double ipc_rate(int64_t min_ns);

/*
 * The in-process wake: a thread blocked in an edge-triggered epoll_wait on
 * a pipe, woken n times by a writer thread that timestamps just before its
 * write() (after the reader is seen sleeping).  Appends each write-to-return
 * latency (ns) to lat.
 */
void epoll_wake(size_t n, Samples *lat);

/*
 * The shape of a poll daemon with none of netpolld's code: a forked relay
 * child owns an edge-triggered epoll set holding a pipe; for each wake this
 * thread sends it an IPC_MSG_BYTES request and blocks in recv(); the relay
 * reads the request, blocks in epoll_wait(), and sends IPC_MSG_BYTES back
 * when the pipe turns readable.  A writer thread timestamps just before its
 * write(), once this thread and the relay both sleep.  So every sample is
 * the two cross-process wakes any out-of-process poller pays, and the
 * difference from netpolld is netpolld's own work.  Appends each
 * write-to-return latency (ns) to lat.
 */
void relay_wake(size_t n, Samples *lat);

/*
 * The in-process timer floor: n deadlines at lead + i * spread / n from now
 * served by one timerfd in an epoll set, armed for the earliest pending
 * deadline (as netpolld arms its own), each delivered when epoll_wait
 * returns.  Appends each lateness (ns) to late.
 */
void timerfd_lateness(size_t n, int64_t lead, int64_t spread, Samples *late);
