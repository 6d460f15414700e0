/*
 * Per-uid accounts (account.h).  A handful of uids connect to a daemon in
 * practice, and the lookup runs once per accepted connection (the session
 * keeps its account), so a linear search serves.
 */
#include "account.h"

#include <errno.h>
#include <stdlib.h>

void accounts_init(Accounts *a)
{
        *a = (Accounts){ 0 };
}

void accounts_done(Accounts *a)
{
        for (uint32_t i = 0; i < a->n; i++)
                free(a->v[i]);
        free(a->v);
        *a = (Accounts){ 0 };
}

Account *accounts_get(Accounts *a, uid_t uid)
{
        for (uint32_t i = 0; i < a->n; i++)
                if (a->v[i]->uid == uid)
                        return a->v[i];
        if (a->n == a->cap) {
                uint32_t cap = a->cap ? a->cap * 2 : 8;
                Account **v = realloc(a->v, cap * sizeof(*v));
                if (!v)
                        return NULL;
                a->v = v;
                a->cap = cap;
        }
        Account *acct = calloc(1, sizeof(*acct));
        if (!acct)
                return NULL;
        acct->uid = uid;
        a->v[a->n++] = acct;
        return acct;
}

void accounts_fds(Accounts *a, Account *acct, int64_t n)
{
        atomic_fetch_add(&acct->fds, (uint64_t)n);
        atomic_fetch_add(&a->fds, (uint64_t)n);
}

void accounts_output(Accounts *a, Account *acct, int64_t n)
{
        acct->output_bytes += (uint64_t)n;
        a->output_bytes += (uint64_t)n;
}
