/*
 * Bump allocator behind protobuf-c's ProtobufCAllocator interface: alloc
 * hands out 16-byte aligned pieces of one buffer and returns NULL past the
 * cap (protobuf-c then fails the unpack cleanly); free does nothing, the
 * whole arena is reset at once.
 */
#include "arena.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

static void *arena_alloc(void *data, size_t size)
{
        Arena *a = data;
        size_t need = (size + 15) & ~(size_t)15;

        if (need < size || need > a->cap - a->used)
                return NULL;
        void *p = a->buf + a->used;
        a->used += need;
        return p;
}

static void arena_free(void *data, void *p)
{
        (void)data;
        (void)p;
}

int arena_init(Arena *a, size_t cap)
{
        unsigned char *buf = aligned_alloc(16, (cap + 15) & ~(size_t)15);

        if (!buf)
                return -ENOMEM;
        *a = (Arena){
                .allocator = { .alloc = arena_alloc, .free = arena_free, .allocator_data = a },
                .buf = buf,
                .cap = cap,
        };
        return 0;
}

void arena_done(Arena *a)
{
        free(a->buf);
        a->buf = NULL;
        a->used = a->cap = 0;
}
