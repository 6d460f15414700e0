/*
 * What admin.c and admin-descs.c, the two parts of the introspection
 * module, share.  Not for other modules: they use admin.h.
 */
#pragma once

#include <stddef.h>

#include "codec.h"

typedef struct Session Session;

/* Answers q with -EACCES, logging why at debug level. */
void admin_deny(Session *s, const NpRequest *q);

/* Lays out n protobuf structs of size sz and an array of pointers to them
 * in one allocation the session holds until the flush.  NULL: no memory. */
void **admin_alloc_list(Session *s, size_t n, size_t sz);

/* OP_LIST_DESCS: checks access and starts the paged listing. */
void admin_descs_start(Session *s, const NpRequest *q);
