/*
 * protobuf-c <-> internal structs for the daemon side of the wire: decodes
 * one ClientMessage datagram into a Inbound (allocated in an Arena) and
 * packs queued Outbound items into ServerMessage datagrams.  Pure: no I/O.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/arena.h"
#include "netpoll.pb-c.h"

#include "../common/protocol.h"

typedef struct NpRequest {
        uint64_t id;
        int op; /* Netpoll__V1__Op; unknown values are kept as they came */
        uint64_t desc;
        int32_t mode;
        int64_t ns;
        uint64_t user;
        int32_t fd_index;
        bool quiet;    /* no reply wanted */
        bool absolute; /* OP_SET_DEADLINE: ns > 0 is a CLOCK_MONOTONIC time */
} NpRequest;

typedef struct Inbound {
        bool hello;
        uint32_t version;
        const char *name; /* "" when absent; lives in the arena */
        size_t n_requests;
        NpRequest *requests; /* in the arena */
} Inbound;

typedef enum OutKind {
        OUT_REPLY = 1,
        OUT_EVENT = 2,
        OUT_WATCH = 3,
} OutKind;

typedef struct Outbound {
        uint8_t kind;    /* OutKind */
        bool wake;       /* ends a parked wait: counts in waiters until sent */
        int32_t result;  /* reply result, or event result */
        int32_t mode;    /* event */
        uint64_t id;     /* reply: request id */
        uint64_t desc;   /* reply (OPEN) and event */
        uint64_t user;   /* event */
        bool has_session; /* reply payload of OP_SESSION_STATS: */
        uint64_t descriptors, waiters, timers;
        const Netpoll__V1__Status *status; /* reply payload, or NULL; valid until packed */
        Netpoll__V1__ClientInfo **clients; /* reply payload: a chunk of a list */
        size_t n_clients;
        Netpoll__V1__DescInfo **descs;
        size_t n_descs;
        bool more; /* the list goes on in the next reply with this id */
        /* OUT_WATCH (with desc and mode above): */
        uint8_t watch_kind; /* Netpoll__V1__WatchKind */
        uint32_t pid;
        uint64_t client;
        int64_t time_ns;
        const char *comm; /* valid until packed */
} Outbound;

/* Decodes a datagram.  Returns 0, -EBADMSG (not a ClientMessage, or more
 * than the arena cap to decode), -ENOMSG (a field this protocol version
 * does not define: never skipped, see codec.c), or -E2BIG (too many
 * requests). */
int codec_decode(Arena *a, const uint8_t *buf, size_t len, Inbound *ret);

/*
 * Packs items[0..n) from the front into one ServerMessage of at most cap
 * bytes in buf.  Returns the number of bytes written and sets *ret_used to
 * how many items went in (at least one, if n > 0).
 */
size_t codec_encode(const Outbound *items, size_t n, uint8_t *buf, size_t cap, size_t *ret_used);

/* Packs a ServerMessage carrying only a welcome (for a connection of that
 * protocol version), only an error with the server's version, or only a
 * resumed notice.  Returns the number of bytes (fits in 256). */
size_t codec_encode_welcome(uint8_t *buf, uint32_t version, uint32_t max_descriptors,
                            uint64_t connection_id);
size_t codec_encode_error(uint8_t *buf, int32_t error);
size_t codec_encode_resumed(uint8_t *buf, uint64_t connection_id);
