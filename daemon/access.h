/* Admission and access by peer credentials (access.c). */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "config.h"

typedef struct Server Server;

/* Whether a peer (fd borrowed; uid and gid from SO_PEERCRED) is one of
 * users, has its primary gid in groups, or a supplementary one. */
bool access_peer_matches(int fd, uid_t uid, gid_t gid, const IdList *users, const IdList *groups);

/* Whether [access] admits a peer (fd, its uid and gid): root always;
 * anyone when both allow lists are empty; else a listed uid, primary gid
 * or supplementary gid.  Checked on accept and, on reload, again for every
 * connection already open. */
bool access_allows(const Server *s, int fd, uid_t uid, gid_t gid);
