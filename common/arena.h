/*
 * A byte-capped bump allocator for protobuf-c unpacking.
 *
 * protobuf_c_message_unpack() allocates every sub-message and repeated array
 * separately; with this allocator those allocations come from one buffer that
 * is reset after each datagram, so decoding costs no malloc, and a hostile
 * datagram that would need more than the cap fails to decode instead of
 * growing the heap.  Not thread-safe: one arena per decoding thread.
 */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

typedef struct Arena {
        ProtobufCAllocator allocator; /* pass &arena->allocator to unpack */
        unsigned char *buf;
        size_t used;
        size_t cap;
} Arena;

/* Allocates the arena's buffer of cap bytes.  Returns 0 or -ENOMEM. */
int arena_init(Arena *a, size_t cap);

/* Frees the buffer; accepts an arena that was never initialised (zeroed). */
void arena_done(Arena *a);

/* Forgets every allocation: call after each unpacked message is done with. */
static inline void arena_reset(Arena *a)
{
        a->used = 0;
}
