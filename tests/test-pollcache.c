/*
 * pollcache: type-stable descriptor slots.  Covers the token encoding, the
 * LIFO free list, generations (odd in use, even free, across the 32-bit
 * wrap), every way pollcache_lookup() must turn a token away, stable slot
 * addresses while the cache grows, and the index limit.
 */
#include <errno.h>
#include <stdlib.h>

#include "helpers.h"
#include "pollcache.h"
#include "token.h"

static PollSlot *alloc_ok(PollCache *c)
{
        PollSlot *s = NULL;

        ck_assert_int_eq(pollcache_alloc(c, &s), 0);
        ck_assert_ptr_nonnull(s);
        ck_assert_msg(pollcache_slot_in_use(s), "slot %u allocated with even gen %u", s->index,
                      s->gen);
        return s;
}

START_TEST(test_pollcache_token_encodes_tag_index_and_generation)
{
        uint64_t t = token_make(TOKEN_DESC, 0x123456, 0x89abcdef);

        ck_assert_uint_eq(t, UINT64_C(0x0112345689abcdef));
        ck_assert_int_eq(token_tag(t), TOKEN_DESC);
        ck_assert_uint_eq(token_index(t), 0x123456);
        ck_assert_uint_eq(token_gen(t), 0x89abcdef);
        /* The index is masked to 24 bits and never spills into the tag. */
        t = token_make(TOKEN_DESC, 0xff000001, 3);
        ck_assert_int_eq(token_tag(t), TOKEN_DESC);
        ck_assert_uint_eq(token_index(t), 1);
}
END_TEST

START_TEST(test_pollcache_alloc_hands_out_lowest_index_first)
{
        PollCache c;

        pollcache_init(&c);
        ck_assert_uint_eq(c.in_use, 0);
        ck_assert_uint_eq(pollcache_allocated(&c), 0);
        for (uint32_t i = 0; i < 3; i++) {
                PollSlot *s = alloc_ok(&c);
                ck_assert_uint_eq(s->index, i);
                ck_assert_uint_eq(s->gen, 1);
                ck_assert_ptr_eq(pollcache_slot(&c, i), s);
                uint64_t t = pollcache_token(s);
                ck_assert_int_eq(token_tag(t), TOKEN_DESC);
                ck_assert_uint_eq(token_index(t), i);
                ck_assert_uint_eq(token_gen(t), 1);
        }
        ck_assert_uint_eq(c.nblocks, 1);
        ck_assert_uint_eq(pollcache_allocated(&c), POLLCACHE_BLOCK_SLOTS);
        ck_assert_uint_eq(c.in_use, 3);
        pollcache_done(&c);
}
END_TEST

START_TEST(test_pollcache_fresh_slot_is_blank)
{
        PollCache c;

        pollcache_init(&c);
        PollSlot *s = alloc_ok(&c);
        ck_assert_int_eq(s->pd.fd, -1);
        ck_assert_ptr_null(s->pd.owner);
        ck_assert(!timer_armed(&s->pd.rt.node));
        ck_assert(!timer_armed(&s->pd.wt.node));
        ck_assert_uint_eq(s->pd.user, 0); /* the free-list link is cleared */
        ck_assert(s->pd.wt.is_write); /* fixed timer identities */
        ck_assert(!s->pd.rt.is_write);
        /* The rest of the block, not yet handed out, is free (gen even). */
        for (uint32_t i = 1; i < POLLCACHE_BLOCK_SLOTS; i++) {
                PollSlot *f = pollcache_slot(&c, i);
                ck_assert(!pollcache_slot_in_use(f));
                ck_assert(!timer_armed(&f->pd.rt.node));
                ck_assert(!timer_armed(&f->pd.wt.node));
        }
        pollcache_done(&c);
}
END_TEST

START_TEST(test_pollcache_realloc_same_slot_gets_new_token)
{
        PollCache c;

        pollcache_init(&c);
        PollSlot *s = alloc_ok(&c);
        uint64_t t1 = pollcache_token(s);
        ck_assert_ptr_eq(pollcache_lookup(&c, t1), s);

        pollcache_free(&c, s);
        ck_assert(!pollcache_slot_in_use(s));
        ck_assert_ptr_null(pollcache_lookup(&c, t1));

        PollSlot *s2 = alloc_ok(&c);
        ck_assert_ptr_eq(s2, s); /* LIFO: the slot just freed */
        uint64_t t2 = pollcache_token(s2);
        ck_assert_uint_ne(t2, t1);
        ck_assert_uint_eq(token_index(t2), token_index(t1));
        ck_assert_uint_ne(token_gen(t2), token_gen(t1));
        ck_assert_ptr_eq(pollcache_lookup(&c, t2), s);
        ck_assert_ptr_null(pollcache_lookup(&c, t1));
        pollcache_done(&c);
}
END_TEST

START_TEST(test_pollcache_free_list_is_lifo)
{
        PollCache c;

        pollcache_init(&c);
        PollSlot *a = alloc_ok(&c), *b = alloc_ok(&c), *d = alloc_ok(&c);
        pollcache_free(&c, a);
        pollcache_free(&c, d);
        ck_assert_ptr_eq(alloc_ok(&c), d);
        ck_assert_ptr_eq(alloc_ok(&c), a);
        /* Then the untouched rest of the block, lowest index first. */
        ck_assert_uint_eq(alloc_ok(&c)->index, 3);
        ck_assert_uint_eq(b->index, 1);
        pollcache_done(&c);
}
END_TEST

START_TEST(test_pollcache_free_clears_owner_and_fd)
{
        PollCache c;
        PollOwner owner = { 0 };

        pollcache_init(&c);
        PollSlot *s = alloc_ok(&c);
        s->pd.owner = &owner;
        s->pd.fd = 9;
        pollcache_free(&c, s);
        ck_assert_ptr_null(s->pd.owner);
        ck_assert_int_eq(s->pd.fd, -1);
        ck_assert_uint_eq(c.free_head, s->index);
        pollcache_done(&c);
}
END_TEST

START_TEST(test_pollcache_lookup_rejects_stale_token)
{
        PollCache c;

        pollcache_init(&c);
        PollSlot *s = alloc_ok(&c);
        uint64_t old = pollcache_token(s);
        pollcache_free(&c, s);
        ck_assert_ptr_eq(alloc_ok(&c), s);
        pollcache_free(&c, s);
        ck_assert_ptr_eq(alloc_ok(&c), s);
        /* Two lives later: the first token still names nothing. */
        ck_assert_ptr_null(pollcache_lookup(&c, old));
        /* Nor does a token from the future. */
        ck_assert_ptr_null(pollcache_lookup(&c, token_make(TOKEN_DESC, s->index, s->gen + 2)));
        ck_assert_ptr_eq(pollcache_lookup(&c, pollcache_token(s)), s);
        pollcache_done(&c);
}
END_TEST

START_TEST(test_pollcache_lookup_rejects_free_slot)
{
        PollCache c;

        pollcache_init(&c);
        PollSlot *s = alloc_ok(&c);
        pollcache_free(&c, s);
        /* A token carrying the free slot's own (even) generation. */
        ck_assert_ptr_null(pollcache_lookup(&c, token_make(TOKEN_DESC, s->index, s->gen)));
        /* A slot of the block never handed out: generation 0. */
        PollSlot *never = pollcache_slot(&c, 5);
        ck_assert_ptr_nonnull(never);
        ck_assert_uint_eq(never->gen, 0);
        ck_assert_ptr_null(pollcache_lookup(&c, token_make(TOKEN_DESC, 5, 0)));
        ck_assert_ptr_null(pollcache_lookup(&c, token_make(TOKEN_DESC, 5, 1)));
        pollcache_done(&c);
}
END_TEST

START_TEST(test_pollcache_lookup_rejects_wrong_tag)
{
        PollCache c;

        pollcache_init(&c);
        PollSlot *s = alloc_ok(&c);
        const TokenTag others[] = { TOKEN_NONE,    TOKEN_SESSION,  TOKEN_LISTENER,
                                    TOKEN_WAKEUP,  TOKEN_TIMERFD,  TOKEN_SIGNALFD,
                                    (TokenTag)0x7f, (TokenTag)0xff };
        for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
                ck_assert_ptr_null(pollcache_lookup(&c, token_make(others[i], s->index, s->gen)));
        ck_assert_ptr_eq(pollcache_lookup(&c, token_make(TOKEN_DESC, s->index, s->gen)), s);
        pollcache_done(&c);
}
END_TEST

START_TEST(test_pollcache_lookup_rejects_out_of_range_index)
{
        PollCache c;

        pollcache_init(&c);
        /* Empty cache: nothing at all. */
        ck_assert_ptr_null(pollcache_lookup(&c, token_make(TOKEN_DESC, 0, 1)));
        ck_assert_ptr_null(pollcache_slot(&c, 0));

        alloc_ok(&c);
        uint32_t end = pollcache_allocated(&c);
        ck_assert_ptr_nonnull(pollcache_slot(&c, end - 1));
        ck_assert_ptr_null(pollcache_slot(&c, end));
        ck_assert_ptr_null(pollcache_lookup(&c, token_make(TOKEN_DESC, end, 1)));
        ck_assert_ptr_null(pollcache_lookup(&c, token_make(TOKEN_DESC, TOKEN_INDEX_MAX, 1)));
        ck_assert_ptr_null(pollcache_slot(&c, UINT32_MAX));
        pollcache_done(&c);
}
END_TEST

START_TEST(test_pollcache_slot_addresses_stable_across_growth)
{
        enum { N = 8 * POLLCACHE_BLOCK_SLOTS + 5 };
        PollCache c;
        PollSlot **slots = calloc(N, sizeof(*slots));

        ck_assert_ptr_nonnull(slots);
        pollcache_init(&c);
        PollSlot *first = alloc_ok(&c);
        uint64_t first_token = pollcache_token(first);
        first->pd.user = 0xfeedface;
        slots[0] = first;
        for (uint32_t i = 1; i < N; i++) {
                slots[i] = alloc_ok(&c);
                ck_assert_uint_eq(slots[i]->index, i);
        }
        ck_assert_uint_eq(c.nblocks, N / POLLCACHE_BLOCK_SLOTS + 1);
        ck_assert_uint_eq(c.in_use, N);

        ck_assert_ptr_eq(pollcache_slot(&c, 0), first);
        ck_assert_ptr_eq(pollcache_lookup(&c, first_token), first);
        ck_assert_uint_eq(first->pd.user, 0xfeedface);
        for (uint32_t i = 0; i < N; i++) {
                ck_assert_ptr_eq(pollcache_slot(&c, i), slots[i]);
                ck_assert_ptr_eq(pollcache_lookup(&c, pollcache_token(slots[i])), slots[i]);
        }
        pollcache_done(&c);
        free(slots);
}
END_TEST

START_TEST(test_pollcache_in_use_counts_allocations)
{
        enum { N = 3 * POLLCACHE_BLOCK_SLOTS };
        PollCache c;
        PollSlot *slots[N];

        pollcache_init(&c);
        for (uint32_t i = 0; i < N; i++) {
                slots[i] = alloc_ok(&c);
                ck_assert_uint_eq(c.in_use, i + 1);
        }
        for (uint32_t i = 0; i < N; i += 2)
                pollcache_free(&c, slots[i]);
        ck_assert_uint_eq(c.in_use, N / 2);
        /* Refilling the holes does not grow the cache. */
        for (uint32_t i = 0; i < N / 2; i++)
                alloc_ok(&c);
        ck_assert_uint_eq(c.in_use, N);
        ck_assert_uint_eq(c.nblocks, 3);
        alloc_ok(&c);
        ck_assert_uint_eq(c.nblocks, 4);
        ck_assert_uint_eq(c.in_use, N + 1);
        pollcache_done(&c);
        ck_assert_uint_eq(c.in_use, 0);
        ck_assert_uint_eq(c.nblocks, 0);
        ck_assert_uint_eq(c.free_head, POLLCACHE_NONE);
}
END_TEST

START_TEST(test_pollcache_generation_wrap_never_yields_even_in_use)
{
        PollCache c;

        pollcache_init(&c);
        PollSlot *s = alloc_ok(&c);
        pollcache_free(&c, s);
        /* Free, just below the wrap. */
        s->gen = UINT32_MAX - 5;
        uint64_t prev = 0;
        for (int i = 0; i < 6; i++) {
                ck_assert_ptr_eq(alloc_ok(&c), s);
                ck_assert_uint_ne(s->gen, 0);
                ck_assert_uint_eq(s->gen & 1, 1);
                uint64_t t = pollcache_token(s);
                ck_assert_ptr_eq(pollcache_lookup(&c, t), s);
                if (prev)
                        ck_assert_ptr_null(pollcache_lookup(&c, prev));
                prev = t;
                pollcache_free(&c, s);
                ck_assert_uint_eq(s->gen & 1, 0);
                ck_assert_ptr_null(pollcache_lookup(&c, t));
        }
        /* It did wrap: UINT32_MAX-5 + 12 increments. */
        ck_assert_uint_eq(s->gen, 6);
        pollcache_done(&c);
}
END_TEST

START_TEST(test_pollcache_generation_at_max_is_valid_then_wraps_to_one)
{
        PollCache c;

        pollcache_init(&c);
        PollSlot *s = alloc_ok(&c);
        pollcache_free(&c, s);
        s->gen = UINT32_MAX - 1;
        ck_assert_ptr_eq(alloc_ok(&c), s);
        ck_assert_uint_eq(s->gen, UINT32_MAX);
        uint64_t at_max = pollcache_token(s);
        ck_assert_ptr_eq(pollcache_lookup(&c, at_max), s);
        pollcache_free(&c, s);
        ck_assert_uint_eq(s->gen, 0);
        ck_assert_ptr_null(pollcache_lookup(&c, at_max));
        ck_assert_ptr_null(pollcache_lookup(&c, token_make(TOKEN_DESC, s->index, 0)));
        ck_assert_ptr_eq(alloc_ok(&c), s);
        ck_assert_uint_eq(s->gen, 1);
        ck_assert_ptr_null(pollcache_lookup(&c, at_max));
        pollcache_done(&c);
}
END_TEST

/* Reaching 2^24 slots for real would take gigabytes: pretend the cache
 * already spans the whole index space (nothing free) and ask for one more. */
START_TEST(test_pollcache_alloc_past_index_limit_is_enospc)
{
        PollCache c;

        pollcache_init(&c);
        alloc_ok(&c);
        for (uint32_t i = 1; i < POLLCACHE_BLOCK_SLOTS; i++)
                alloc_ok(&c);
        ck_assert_uint_eq(c.free_head, POLLCACHE_NONE);
        uint32_t real = c.nblocks;
        c.nblocks = (TOKEN_INDEX_MAX + 1) / POLLCACHE_BLOCK_SLOTS;

        PollSlot *untouched = (PollSlot *)0x1;
        ck_assert_int_eq(pollcache_alloc(&c, &untouched), -ENOSPC);
        ck_assert_ptr_eq(untouched, (PollSlot *)0x1);
        ck_assert_uint_eq(c.in_use, POLLCACHE_BLOCK_SLOTS);

        c.nblocks = real;
        pollcache_done(&c);
}
END_TEST

START_TEST(test_pollcache_usable_again_after_done)
{
        PollCache c;

        pollcache_init(&c);
        for (int i = 0; i < 70; i++)
                alloc_ok(&c);
        pollcache_done(&c);
        PollSlot *s = alloc_ok(&c);
        ck_assert_uint_eq(s->index, 0);
        ck_assert_uint_eq(s->gen, 1);
        ck_assert_uint_eq(c.in_use, 1);
        pollcache_done(&c);
}
END_TEST

START_TEST(test_pollcache_next_owned_walks_only_the_owners_slots)
{
        PollCache c;
        PollOwner a = { 0 }, b = { 0 };
        PollSlot *mine[3];
        uint32_t iter = 0, seen = 0;

        pollcache_init(&c);
        for (int i = 0; i < 200; i++) {
                PollSlot *s = alloc_ok(&c);
                s->pd.owner = &b;
                if (i == 3 || i == 70 || i == 199)
                        mine[seen++] = s, s->pd.owner = &a;
                pollcache_link(&c, s, s->pd.owner);
        }
        ck_assert_uint_eq(a.linked, 3);
        ck_assert_uint_eq(b.linked, 197);
        pollcache_free(&c, mine[1]); /* freed: no longer a's */
        ck_assert_uint_eq(a.linked, 2);
        seen = 0;
        for (PollSlot *s; (s = pollcache_next_owned(&c, &a, &iter));) {
                ck_assert_ptr_eq(s, mine[seen ? 2 : 0]); /* oldest first */
                seen++;
        }
        ck_assert_uint_eq(seen, 2);
        ck_assert_ptr_null(pollcache_next_owned(&c, &a, &iter)); /* stays at the end */
        ck_assert_ptr_eq(pollcache_owned_at(&c, &a, 0), mine[0]);
        ck_assert_ptr_eq(pollcache_owned_at(&c, &a, 1), mine[2]);
        ck_assert_ptr_null(pollcache_owned_at(&c, &a, 2));
        ck_assert_ptr_eq(pollcache_owned_at(&c, &b, 150), pollcache_slot(&c, 152));
        /* Freeing each slot as the walk returns it (how a connection's
         * descriptors are drained) visits every one exactly once. */
        iter = 0;
        seen = 0;
        for (PollSlot *s; (s = pollcache_next_owned(&c, &b, &iter));) {
                ck_assert_ptr_eq(s->pd.owner, &b);
                pollcache_free(&c, s);
                seen++;
        }
        ck_assert_uint_eq(seen, 197);
        ck_assert_uint_eq(b.linked, 0);
        ck_assert_uint_eq(b.first, 0);
        pollcache_free(&c, mine[0]);
        pollcache_free(&c, mine[2]);
        ck_assert_uint_eq(a.first, 0);
        ck_assert_uint_eq(c.in_use, 0);
        pollcache_done(&c);
}
END_TEST

Suite *suite_pollcache(void)
{
        Suite *s = suite_create("pollcache");
        TCase *tc = test_tcase_default_timeout(s, "slots");

        tcase_add_test(tc, test_pollcache_token_encodes_tag_index_and_generation);
        tcase_add_test(tc, test_pollcache_alloc_hands_out_lowest_index_first);
        tcase_add_test(tc, test_pollcache_fresh_slot_is_blank);
        tcase_add_test(tc, test_pollcache_realloc_same_slot_gets_new_token);
        tcase_add_test(tc, test_pollcache_free_list_is_lifo);
        tcase_add_test(tc, test_pollcache_free_clears_owner_and_fd);
        tcase_add_test(tc, test_pollcache_in_use_counts_allocations);
        tcase_add_test(tc, test_pollcache_slot_addresses_stable_across_growth);
        tcase_add_test(tc, test_pollcache_alloc_past_index_limit_is_enospc);
        tcase_add_test(tc, test_pollcache_usable_again_after_done);
        tcase_add_test(tc, test_pollcache_next_owned_walks_only_the_owners_slots);

        TCase *lk = test_tcase_default_timeout(s, "lookup");
        tcase_add_test(lk, test_pollcache_lookup_rejects_stale_token);
        tcase_add_test(lk, test_pollcache_lookup_rejects_free_slot);
        tcase_add_test(lk, test_pollcache_lookup_rejects_wrong_tag);
        tcase_add_test(lk, test_pollcache_lookup_rejects_out_of_range_index);

        TCase *gen = test_tcase_default_timeout(s, "generation");
        tcase_add_test(gen, test_pollcache_generation_wrap_never_yields_even_in_use);
        tcase_add_test(gen, test_pollcache_generation_at_max_is_valid_then_wraps_to_one);
        return s;
}
