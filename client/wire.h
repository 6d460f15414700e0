/*
 * The client side of the wire (internal to libnetpoll and pollctl): sends
 * one ClientMessage datagram with an optional fd, and receives one
 * ServerMessage datagram decoded into an arena.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "../common/arena.h"
#include "netpoll.pb-c.h"

#include "../common/protocol.h"

#define WIRE_MAX_MESSAGE_BYTES NP_MAX_MESSAGE_BYTES

/* Packs m and sends it on sock, with fd (borrowed) attached as SCM_RIGHTS
 * when fd >= 0.  flags: 0 waits for room in the socket, MSG_DONTWAIT does
 * not (-EAGAIN: nothing was sent).  Returns 0 or -errno. */
int wire_send(int sock, const Netpoll__V1__ClientMessage *m, int fd, int flags);

/* Receives one datagram into buf (WIRE_MAX_MESSAGE_BYTES) with flags and
 * decodes it into a (reset first).  Returns 1 and the message, 0 when
 * nothing is there (MSG_DONTWAIT), -ECONNRESET when the daemon is gone,
 * -EBADMSG for an undecodable one, or -errno. */
int wire_recv(int sock, uint8_t *buf, Arena *a, int flags, Netpoll__V1__ServerMessage **ret);
