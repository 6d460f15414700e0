/*
 * Slots live in fixed blocks of POLLCACHE_BLOCK_SLOTS that are never moved
 * or freed before pollcache_done, so a slot's address and index are stable
 * for the daemon's life: an epoll event or a timer that arrives after a
 * descriptor was freed still lands on valid memory, and the generation check
 * turns it away.  Only the array of block pointers is reallocated.
 *
 * Generations are odd while a slot is allocated and even while it is free,
 * so a token (whose generation is always odd) never names a free slot.
 * The free list is linked through pd.user, meaningless in a free slot, so
 * a slot costs the daemon 128 bytes and nothing else.
 */
#include "pollcache.h"

#include <errno.h>
#include <stdlib.h>

#include "token.h"

void pollcache_init(PollCache *c)
{
        *c = (PollCache){ .free_head = POLLCACHE_NONE };
}

void pollcache_done(PollCache *c)
{
        for (uint32_t i = 0; i < c->nblocks; i++)
                free(c->blocks[i]);
        free(c->blocks);
        pollcache_init(c);
}

PollSlot *pollcache_slot(const PollCache *c, uint32_t index)
{
        uint32_t b = index >> POLLCACHE_BLOCK_SHIFT;

        if (b >= c->nblocks)
                return NULL;
        return &c->blocks[b][index & (POLLCACHE_BLOCK_SLOTS - 1)];
}

static int pollcache_grow(PollCache *c)
{
        uint32_t base = pollcache_allocated(c);

        if (base + POLLCACHE_BLOCK_SLOTS - 1 > TOKEN_INDEX_MAX)
                return -ENOSPC;
        PollSlot **blocks = realloc(c->blocks, (c->nblocks + 1) * sizeof(*blocks));
        if (!blocks)
                return -ENOMEM;
        c->blocks = blocks;
        PollSlot *block = calloc(POLLCACHE_BLOCK_SLOTS, sizeof(*block));
        if (!block)
                return -ENOMEM;
        c->blocks[c->nblocks++] = block;
        /* Push in reverse so the lowest index is handed out first. */
        for (uint32_t i = POLLCACHE_BLOCK_SLOTS; i-- > 0;) {
                PollSlot *s = &block[i];
                s->index = base + i;
                s->gen = 0;
                s->pd.fd = -1;
                timer_init(&s->pd.rt.node);
                timer_init(&s->pd.wt.node);
                s->pd.wt.is_write = true;
                s->pd.user = c->free_head;
                c->free_head = s->index;
        }
        return 0;
}

int pollcache_alloc(PollCache *c, PollSlot **ret)
{
        int r;

        if (c->free_head == POLLCACHE_NONE) {
                r = pollcache_grow(c);
                if (r < 0)
                        return r;
        }
        PollSlot *s = pollcache_slot(c, c->free_head);
        c->free_head = (uint32_t)s->pd.user;
        s->pd.user = 0;
        s->gen++;
        c->in_use++;
        *ret = s;
        return 0;
}

int pollcache_restore(PollCache *c, uint32_t index, uint32_t gen, PollSlot **ret)
{
        if (!(gen & 1) || index > TOKEN_INDEX_MAX)
                return -EINVAL;
        while (index >= pollcache_allocated(c)) {
                int r = pollcache_grow(c);
                if (r < 0)
                        return r;
        }
        PollSlot *s = pollcache_slot(c, index);
        if (pollcache_slot_in_use(s))
                return -EEXIST;
        s->gen = gen;
        s->pd.user = 0;
        c->in_use++;
        *ret = s;
        return 0;
}

void pollcache_rebuild_free(PollCache *c)
{
        c->free_head = POLLCACHE_NONE;
        for (uint32_t i = pollcache_allocated(c); i-- > 0;) {
                PollSlot *s = pollcache_slot(c, i);
                if (!pollcache_slot_in_use(s)) {
                        s->pd.user = c->free_head;
                        c->free_head = i;
                }
        }
}

/* The slot named by a list link (index + 1). */
static PollSlot *link_slot(const PollCache *c, uint32_t link)
{
        return pollcache_slot(c, link - 1);
}

void pollcache_link(PollCache *c, PollSlot *s, PollOwner *owner)
{
        uint32_t me = s->index + 1;

        if (!owner->first) {
                s->prev = s->next = me;
                owner->first = me;
        } else {
                PollSlot *first = link_slot(c, owner->first);
                PollSlot *last = link_slot(c, first->prev);
                s->prev = first->prev;
                s->next = owner->first;
                last->next = me;
                first->prev = me;
        }
        owner->linked++;
}

static void pollcache_unlink(PollCache *c, PollSlot *s, PollOwner *owner)
{
        uint32_t me = s->index + 1;

        if (s->next == me) {
                owner->first = 0;
        } else {
                link_slot(c, s->prev)->next = s->next;
                link_slot(c, s->next)->prev = s->prev;
                if (owner->first == me)
                        owner->first = s->next;
        }
        s->prev = s->next = 0;
        owner->linked--;
}

void pollcache_free(PollCache *c, PollSlot *s)
{
        if (s->next && s->pd.owner)
                pollcache_unlink(c, s, s->pd.owner);
        s->gen++;
        s->pd.owner = NULL;
        s->pd.fd = -1;
        s->pd.user = c->free_head;
        c->free_head = s->index;
        c->in_use--;
}

PollSlot *pollcache_next_owned(const PollCache *c, const PollOwner *owner, uint32_t *iter)
{
        /* *iter: 0 before the first, UINT32_MAX past the last, else the
         * link of the next slot to return. */
        if (*iter == 0)
                *iter = owner->first ? owner->first : UINT32_MAX;
        if (*iter == UINT32_MAX)
                return NULL;
        PollSlot *s = link_slot(c, *iter);
        *iter = s->next == owner->first ? UINT32_MAX : s->next;
        return s;
}

PollSlot *pollcache_owned_at(const PollCache *c, const PollOwner *owner, uint32_t pos)
{
        if (pos >= owner->linked)
                return NULL;
        PollSlot *s = link_slot(c, owner->first);
        if (pos > owner->linked / 2) { /* nearer the end: walk back */
                for (uint32_t i = owner->linked; i > pos; i--)
                        s = link_slot(c, s->prev);
                return s;
        }
        for (uint32_t i = 0; i < pos; i++)
                s = link_slot(c, s->next);
        return s;
}

PollSlot *pollcache_lookup(const PollCache *c, uint64_t token)
{
        if (token_tag(token) != TOKEN_DESC)
                return NULL;
        PollSlot *s = pollcache_slot(c, token_index(token));
        if (!s || s->gen != token_gen(token) || !pollcache_slot_in_use(s))
                return NULL;
        return s;
}

uint64_t pollcache_token(const PollSlot *s)
{
        return token_make(TOKEN_DESC, s->index, s->gen);
}
