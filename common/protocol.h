/*
 * The wire protocol's version and limits, the one definition both the
 * daemon and libnetpoll use (proto/netpoll.proto describes the messages).
 *
 * Versions: a client says the highest it speaks in its hello; the daemon
 * answers with the version of the connection, the lower of the two, or
 * refuses a client below NP_PROTOCOL_VERSION_MIN with -EPROTO.  Version 2
 * adds restarts: the `resumed` notice and OP_RESUME (netpoll(3), RESTARTS).
 * A connection of version 1 is not taken over by a restarted daemon: the
 * new instance closes it with -EPROTO, and its client sees the connection
 * end as after any daemon exit.
 */
#pragma once

#define NP_PROTOCOL_VERSION 2
#define NP_PROTOCOL_VERSION_MIN 1
#define NP_PROTOCOL_VERSION_RESUME 2 /* the first version a restart keeps */

#define NP_MAX_MESSAGE_BYTES (64 * 1024)
#define NP_MAX_FDS_PER_MESSAGE 253
/* A datagram is decoded and run in one piece (protobuf-c, about 0.16 us a
 * request): 256 bound that piece to some 40 us of the loop for plain
 * requests.  Opens cost more (fstat, epoll_ctl: about 3 us each), so a
 * datagram of NP_MAX_FDS_PER_MESSAGE opens still takes some 0.8 ms.  The
 * library's batch (client/client.h: BATCH_MAX) plus one request fits. */
#define NP_MAX_REQUESTS_PER_MESSAGE 256

_Static_assert(NP_PROTOCOL_VERSION_MIN <= NP_PROTOCOL_VERSION_RESUME &&
                       NP_PROTOCOL_VERSION_RESUME <= NP_PROTOCOL_VERSION,
               "protocol versions out of order");
/* SCM_RIGHTS carries at most 253 fds (SCM_MAX_FD) in one message. */
_Static_assert(NP_MAX_FDS_PER_MESSAGE <= 253, "more fds than SCM_MAX_FD");
_Static_assert(NP_MAX_FDS_PER_MESSAGE <= NP_MAX_REQUESTS_PER_MESSAGE,
               "every fd belongs to a request");
