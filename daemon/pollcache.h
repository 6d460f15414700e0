/*
 * The pollDesc cache: type-stable descriptor slots allocated in blocks and
 * never freed while the daemon runs, a LIFO free list, and a generation per
 * slot that changes on every free.  A slot is named by a TOKEN_DESC token
 * (index + generation), which is both its epoll data word and the id its
 * client sees; a token whose generation is not the slot's is stale.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "pollops.h"

#define POLLCACHE_NONE UINT32_MAX

/* 120 bytes: what the daemon spends per registered descriptor. */
typedef struct PollSlot {
        PollDesc pd; /* pd.user links the free list while the slot is free */
        uint32_t index;
        uint32_t gen; /* odd while allocated, even while free: never 0 when in use */
        /* Its owner's list, circular (first's prev is the last): index + 1,
         * 0 while not on one. */
        uint32_t prev, next;
} PollSlot;

typedef struct PollCache {
        PollSlot **blocks;
        uint32_t nblocks;
        uint32_t free_head;
        uint32_t in_use;
} PollCache;

void pollcache_init(PollCache *c);

/* Frees every block; every slot must have been released first. */
void pollcache_done(PollCache *c);

/* Takes a slot from the free list, growing by a block when it is empty.
 * Returns 0 and the slot in *ret, -ENOMEM, or -ENOSPC past the index limit. */
int pollcache_alloc(PollCache *c, PollSlot **ret);

/* Restarts: takes slot index with generation gen (odd), as a previous
 * instance had it, growing the cache to hold it.  The free list is wrong
 * until pollcache_rebuild_free, which must come before the next
 * pollcache_alloc.  Returns 0, -EEXIST (taken), -EINVAL, -ENOMEM or
 * -ENOSPC. */
int pollcache_restore(PollCache *c, uint32_t index, uint32_t gen, PollSlot **ret);
void pollcache_rebuild_free(PollCache *c);

/* Returns the slot to the free list and changes its generation (taking
 * it off its owner's list first, if it is on one). */
void pollcache_free(PollCache *c, PollSlot *s);

/* Puts an allocated slot at the end of owner's list (pd.owner is set by
 * pollops_open; the list is the pollcache's). */
void pollcache_link(PollCache *c, PollSlot *s, PollOwner *owner);

/* The slot a TOKEN_DESC token names, or NULL if stale or out of range. */
PollSlot *pollcache_lookup(const PollCache *c, uint64_t token);

/* Walks owner's list, oldest first: start with *iter = 0; returns the
 * next slot, or NULL at the end.  The returned slot may be freed before
 * the next call, but no other slot of owner's may (the cursor names the
 * next one).  O(owner's slots) per full walk. */
PollSlot *pollcache_next_owned(const PollCache *c, const PollOwner *owner, uint32_t *iter);

/* The slot at position pos (0: oldest) of owner's list, or NULL: O(pos). */
PollSlot *pollcache_owned_at(const PollCache *c, const PollOwner *owner, uint32_t pos);

/* The slot at index (allocated or not), or NULL past the end. */
PollSlot *pollcache_slot(const PollCache *c, uint32_t index);

uint64_t pollcache_token(const PollSlot *s);


#define POLLCACHE_BLOCK_SHIFT 6
#define POLLCACHE_BLOCK_SLOTS (1u << POLLCACHE_BLOCK_SHIFT)

static inline uint32_t pollcache_allocated(const PollCache *c)
{
        return c->nblocks * POLLCACHE_BLOCK_SLOTS;
}

static inline bool pollcache_slot_in_use(const PollSlot *s)
{
        return s->gen & 1;
}
