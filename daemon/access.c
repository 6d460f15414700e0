/*
 * Admission and access: who may connect ([access] allow_users and
 * allow_groups) and who may see every connection (admin_users and
 * admin_groups), by a peer's credentials.  Checked on accept, on reload for
 * the connections already open, and for introspection requests.
 */
#include "access.h"

#include <sys/socket.h>

#include "env.h"

bool access_peer_matches(int fd, uid_t uid, gid_t gid, const IdList *users, const IdList *groups)
{
        gid_t list[256];
        socklen_t len = sizeof(list);

        if (idlist_contains(users, uid) || idlist_contains(groups, gid))
                return true;
        if (groups->n && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, list, &len) == 0)
                for (size_t i = 0; i < len / sizeof(gid_t); i++)
                        if (idlist_contains(groups, list[i]))
                                return true;
        return false;
}

/* Whether [access] admits a peer: root always; anyone when both allow
 * lists are empty; else a listed uid, primary gid or supplementary gid. */
bool access_allows(const Server *s, int fd, uid_t uid, gid_t gid)
{
        const Config *c = s->config;

        if (uid == 0 || (c->allow_users.n == 0 && c->allow_groups.n == 0))
                return true;
        return access_peer_matches(fd, uid, gid, &c->allow_users, &c->allow_groups);
}
