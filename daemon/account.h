/*
 * What each uid holds of the daemon: its connections, the fds the daemon
 * keeps for it and the output queued for it.  One Account per uid that
 * ever connected, kept until the daemon exits (its address is stable: the
 * closer's worker threads update fds after the connection is gone), so
 * a uid that disconnects and comes back finds its charges still there
 * until the last of its fds is really closed.
 *
 * fds is the one field other threads touch (closer.c decrements it after
 * a close); everything else belongs to the loop thread.
 */
#pragma once

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct Account {
        uid_t uid;
        uint32_t connections;
        /* Every fd the daemon holds for this uid: connection sockets and
         * epoll sets, registered descriptors, and fds handed to the closer
         * that are not closed yet. */
        atomic_uint_least64_t fds;
        atomic_uint_least64_t closing_fds; /* of those, handed to the closer */
        uint64_t output_bytes; /* queued for its connections, not yet sent */
        uint32_t closing;      /* closer: workers busy on its fds (closer lock) */
} Account;

typedef struct Accounts {
        Account **v;
        uint32_t n, cap;
        atomic_uint_least64_t fds; /* the sum over every account */
        uint64_t output_bytes;     /* likewise */
} Accounts;

void accounts_init(Accounts *a);
void accounts_done(Accounts *a);

/* The account of uid, made on first use.  NULL: out of memory. */
Account *accounts_get(Accounts *a, uid_t uid);

/* Charges (n > 0) or releases (n < 0) fds to acct and the total.  Safe
 * from any thread. */
void accounts_fds(Accounts *a, Account *acct, int64_t n);

/* Likewise for queued output bytes (loop thread only). */
void accounts_output(Accounts *a, Account *acct, int64_t n);
