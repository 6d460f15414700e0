/*
 * The fd store's datagrams (fdnotify.h).  sd_pid_notify_with_fds() makes,
 * connects and closes a socket per call, three system calls that would
 * double what every store costs here: one socket stays connected instead.
 * The kernel adds our credentials (the manager sets SO_PASSCRED).  A
 * manager that does not read for a second fails the call, rather than the
 * loop waiting.
 */
#include "fdnotify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "log.h"

static int connect_manager(FdNotify *n);

void fdnotify_init(FdNotify *n, bool on, uint32_t max)
{
        *n = (FdNotify){ .on = on, .max = max, .fd = -1 };
        if (on) /* now, so that every instance holds the same fds (else on first use) */
                (void)connect_manager(n);
}

void fdnotify_done(FdNotify *n)
{
        n->fd = safe_close(n->fd);
}

static int connect_manager(FdNotify *n)
{
        const char *path = getenv("NOTIFY_SOCKET");
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = 1 };

        if (!path || !*path)
                return -ENOTCONN;
        size_t len = strlen(path);
        if ((path[0] != '/' && path[0] != '@') || len >= sizeof(a.sun_path))
                return -EINVAL;
        memcpy(a.sun_path, path, len);
        if (path[0] == '@')
                a.sun_path[0] = '\0';
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *)&a,
                    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0) {
                int r = -errno;
                safe_close(fd);
                return r;
        }
        n->fd = fd;
        return 0;
}

static int send_msg(FdNotify *n, const char *msg, int fd)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } ctl = { 0 };
        struct iovec iov = { .iov_base = (void *)msg, .iov_len = strlen(msg) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        int r = 0;

        if (n->fd < 0)
                r = connect_manager(n);
        if (r == 0 && fd >= 0) {
                mh.msg_control = ctl.buf;
                mh.msg_controllen = sizeof(ctl.buf);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &fd, sizeof(int));
        }
        if (r == 0 && sendmsg(n->fd, &mh, MSG_NOSIGNAL) < 0)
                r = errno == EAGAIN ? -ETIMEDOUT : -errno;
        return r;
}

void fdnotify_count(FdNotify *n, const char *name)
{
        n->stored++;
        n->name_bytes += strlen(name) + 1;
}

static void uncount(FdNotify *n, const char *name)
{
        size_t bytes = strlen(name) + 1;

        if (n->stored)
                n->stored--;
        n->name_bytes = n->name_bytes > bytes ? n->name_bytes - bytes : 0;
}

int fdnotify_store(FdNotify *n, const char *name, int fd, uint32_t spare)
{
        char msg[96];

        if (!n->on)
                return 0;
        if ((n->max && n->stored + spare >= n->max) ||
            n->name_bytes + strlen(name) + 1 > FDNOTIFY_NAMES_BUDGET)
                return -ENOSPC;
        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s\nFDPOLL=0", name);
        int r = send_msg(n, msg, fd);
        if (r == 0)
                fdnotify_count(n, name);
        return r;
}

void fdnotify_name(char kind, uint32_t number, uint32_t gen, char *buf, size_t len)
{
        snprintf(buf, len, "%c%" PRIx32 ".%" PRIx32, kind, number, gen);
}

char fdnotify_parse_name(const char *name, const char *kinds, uint32_t *number, uint32_t *gen)
{
        unsigned long i, g;
        char *end;

        if (!name[0] || !strchr(kinds, name[0]))
                return 0;
        errno = 0;
        i = strtoul(name + 1, &end, 16);
        if (errno || end == name + 1 || *end != '.' || i > UINT32_MAX)
                return 0;
        const char *gp = end + 1;
        g = strtoul(gp, &end, 16);
        if (errno || end == gp || *end || g > UINT32_MAX)
                return 0;
        *number = (uint32_t)i;
        *gen = (uint32_t)g;
        return name[0];
}

void fdnotify_remove(FdNotify *n, const char *name)
{
        char msg[96];

        if (!n->on)
                return;
        uncount(n, name);
        snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
        int r = send_msg(n, msg, -1);
        if (r < 0) /* the fd stays in the store; the next instance drops it */
                log_warning("fd store: cannot remove %s: %s", name, strerror(-r));
}
