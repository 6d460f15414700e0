/*
 * libnetpoll's own record of the descriptors a connection has open, so the
 * library can answer locally what it already knows (unknown id: -EBADF) and
 * pipeline requests that cannot fail (np_set_deadline, and np_arm when no
 * wait of that mode is outstanding).  Open addressing keyed by np_desc,
 * linear probing with backward-shift deletion.  Not thread-safe: the
 * connection's lock protects it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct DescEntry {
        uint64_t desc; /* 0: empty (the daemon never hands out 0) */
        uint32_t outstanding_r; /* waits of mode 'r' sent whose outcome has not arrived */
        uint32_t outstanding_w;
        /* What the daemon was sent, for a restarted daemon (request.c:
         * request_resume): arms whose event has not come, the last
         * deadline of each mode (as sent: absolute, 0 none, < 0 expired),
         * and whether it was unblocked. */
        uint16_t armed_r, armed_w;
        bool deadline_r_set, deadline_w_set;
        bool unblocked;
        int64_t deadline_r, deadline_w;
} DescEntry;

typedef struct DescTable {
        DescEntry *slots;
        size_t cap; /* power of two, or 0 */
        size_t n;
} DescTable;

/* Adds desc (0 < desc).  Returns 0 or -ENOMEM. */
int desctab_add(DescTable *t, uint64_t desc);

/* The entry of desc, or NULL. */
DescEntry *desctab_find(const DescTable *t, uint64_t desc);

/* Removes desc if present. */
void desctab_remove(DescTable *t, uint64_t desc);

void desctab_done(DescTable *t);

/* The outstanding-wait counter of mode ('r' or 'w') in e. */
static inline uint32_t *desctab_outstanding(DescEntry *e, int mode)
{
        return mode == 'r' ? &e->outstanding_r : &e->outstanding_w;
}

/* The armed counter of mode ('r' or 'w') in e. */
static inline uint16_t *desctab_armed(DescEntry *e, int mode)
{
        return mode == 'r' ? &e->armed_r : &e->armed_w;
}
