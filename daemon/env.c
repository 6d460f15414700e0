/* The daemon's shared state and the connection table; see env.h. */
#include "env.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>

#include "../common/fdutil.h"
#include "filecount.h"

int env_sessions_grow(Server *s, uint32_t need)
{
        if (need <= s->sessions_cap)
                return 0;
        uint32_t cap = s->sessions_cap ? s->sessions_cap : 16;
        while (cap < need)
                cap *= 2;
        Session **sessions = realloc(s->sessions, cap * sizeof(*sessions));
        if (!sessions)
                return -ENOMEM;
        s->sessions = sessions;
        uint32_t *gens = realloc(s->session_gens, cap * sizeof(*gens));
        if (!gens)
                return -ENOMEM;
        s->session_gens = gens;
        for (uint32_t i = s->sessions_cap; i < cap; i++) {
                s->sessions[i] = NULL;
                s->session_gens[i] = 1;
        }
        s->sessions_cap = cap;
        return 0;
}

int env_index_alloc(Server *s, uint32_t *ret)
{
        for (uint32_t i = 0; i < s->sessions_cap; i++)
                if (!s->sessions[i]) {
                        *ret = i;
                        return 0;
                }
        uint32_t i = s->sessions_cap;
        int r = env_sessions_grow(s, i + 1);
        if (r < 0)
                return r;
        *ret = i;
        return 0;
}

void env_join(Server *s, Session *sess, uint32_t index)
{
        s->sessions[index] = sess;
        s->n_sessions++;
}

void env_retire(Server *s, uint32_t index)
{
        /* Frees the token: later events for this connection are stale. */
        s->session_gens[index] += 2;
        s->sessions[index] = NULL;
        s->n_sessions--;
}

void env_close_client_fd(Server *s, Account *acct, int fd, bool charged)
{
        if (fd < 0)
                return;
        if (!charged && acct)
                accounts_fds(&s->accounts, acct, 1);
        closer_close(&s->closer, fd, acct);
}

void env_request_upgrade(Server *s)
{
        s->upgrading = s->stopping = s->handover = true;
}

int env_classify_fd(const Server *s, int fd, uint32_t *ret_key)
{
        struct sockaddr_un peer;
        socklen_t len = sizeof(peer);
        struct statx stx;

        /* One statx sorts the fd; kcmp (about 1.6 us apiece) runs only for
         * the kinds of file the daemon's poller fds are, so the common
         * opens (pipes, sockets, ttys) stay cheap.  AT_STATX_DONT_SYNC: a
         * FUSE or NFS file answers from its cache, not from a server that
         * may never reply. */
        if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE | STATX_INO, &stx) < 0)
                return -errno;
        dev_t dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
        *ret_key = 0;
        switch (stx.stx_mode & S_IFMT) {
        case S_IFREG:
        case S_IFDIR:
        case S_IFBLK:
        case S_IFLNK:
                /* Never pollable on a local file system (epoll_ctl says
                 * EPERM), and on FUSE epoll_ctl itself would ask the file
                 * system's server and wait for it: refused before that. */
                return -EPERM;
        case S_IFIFO:
        case S_IFCHR:
                *ret_key = filecount_key(dev, stx.stx_ino);
                return 0;
        case S_IFSOCK:
                *ret_key = filecount_key(dev, stx.stx_ino);
                break;
        default: /* anonymous inodes (epoll, eventfd, timerfd, signalfd) */
                return poller_owns_file(&s->poller, fd) ||
                       (s->signal_fd >= 0 && fd_same_file(fd, s->signal_fd));
        }
        /* A socket: our listener (sockfs gives every socket its own inode),
         * or any connection to this daemon, the sender's own or another
         * client's, whose peer address is our listener's. */
        if (s->listen_fd >= 0 && dev == s->listen_dev && stx.stx_ino == s->listen_ino)
                return 1;
        return s->listen_addr_len > offsetof(struct sockaddr_un, sun_path) &&
               getpeername(fd, (struct sockaddr *)&peer, &len) == 0 &&
               peer.sun_family == AF_UNIX && len == s->listen_addr_len &&
               memcmp(&peer, &s->listen_addr, len) == 0;
}
