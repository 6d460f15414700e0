/*
 * The one encoding of every epoll_event.data word, and of the descriptor ids
 * clients see: tag (8 bits) | index (24 bits) | generation (32 bits).
 *
 * Tokens are compared in full (golang/go#72900): a fixed source such as the
 * timerfd has index 0 and generation 0 and must match exactly; a descriptor
 * or connection token must match its slot's current generation, which
 * changes when the slot is freed, so a stale event for a freed slot is
 * dropped (Go 1.21 fdseq, golang/go#59545).
 */
#pragma once

#include <stdint.h>

typedef enum TokenTag {
        TOKEN_NONE = 0,
        TOKEN_DESC = 1,
        TOKEN_SESSION = 2,
        TOKEN_LISTENER = 3,
        TOKEN_WAKEUP = 4,
        TOKEN_TIMERFD = 5,
        TOKEN_SIGNALFD = 6,
        TOKEN_GROUP = 7, /* a connection's epoll set of descriptors (poller groups) */
} TokenTag;

#define TOKEN_INDEX_MAX ((UINT32_C(1) << 24) - 1)

static inline uint64_t token_make(TokenTag tag, uint32_t index, uint32_t gen)
{
        return (uint64_t)tag << 56 | (uint64_t)(index & TOKEN_INDEX_MAX) << 32 | gen;
}

static inline TokenTag token_tag(uint64_t t)
{
        return (TokenTag)(t >> 56);
}

static inline uint32_t token_index(uint64_t t)
{
        return (uint32_t)(t >> 32) & TOKEN_INDEX_MAX;
}

static inline uint32_t token_gen(uint64_t t)
{
        return (uint32_t)t;
}
