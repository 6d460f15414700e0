/*
 * The listening socket and admission: set-up and teardown (see listener.h),
 * then accepting connections and deciding, from SO_PEERCRED, which to serve.
 * A connection that is not served ([access] allow lists, max_connections,
 * max_connections_per_uid, or no fd to spare) gets one error datagram and is
 * closed, never left pending: a pending one would keep the listener readable.
 */
#include "listener.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "access.h"
#include "codec.h"
#include "log.h"
#include "env.h"
#include "token.h"

static int errf(char *err, size_t errlen, int r, const char *fmt, const char *a)
{
        char msg[512];

        snprintf(msg, sizeof(msg), fmt, a);
        snprintf(err, errlen, "%s: %s", msg, strerror(-r));
        return r;
}

/* Creates the directories above path (mode 0755), as mkdir -p. */
static int mkdir_parents(const char *path)
{
        char buf[sizeof(((struct sockaddr_un *)0)->sun_path)];

        snprintf(buf, sizeof(buf), "%s", path);
        for (char *p = buf + 1; (p = strchr(p, '/')); p++) {
                *p = '\0';
                if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        return 0;
}

/* Whether a daemon answers on addr: a stale socket file refuses. */
static int probe_live(const struct sockaddr_un *addr)
{
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0)
                return 1;
        return errno == ECONNREFUSED || errno == ENOENT ? 0 : -errno;
}

/* Takes fd (systemd's, or a previous instance's) as the listener.
 * Returns 1 or -errno with a message. */
static int listener_take(Server *s, int fd, char *err, size_t errlen)
{
        int r = sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0);
        if (r <= 0)
                return errf(err, errlen, r < 0 ? r : -EINVAL, "%s",
                            "the socket passed by systemd is not a listening AF_UNIX "
                            "SOCK_SEQPACKET socket");
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
            fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                return errf(err, errlen, -errno, "%s", "passed socket");
        s->listen_fd = fd;
        s->listen_owned = false;
        return 1;
}

static int listener_from_systemd(Server *s, char *err, size_t errlen)
{
        int n = sd_listen_fds(1);

        if (n <= 0)
                return n;
        if (n != 1)
                return errf(err, errlen, -EINVAL, "systemd passed %s sockets, expected one",
                            n > 1 ? "several" : "no");
        return listener_take(s, SD_LISTEN_FDS_START, err, errlen);
}

/* A listener a previous instance of ours bound at socket_path (an upgrade
 * in place without systemd) is ours to remove at exit, as long as the file
 * is still that socket. */
static int listener_from_previous(Server *s, char *err, size_t errlen)
{
        int fd = s->adopted_listen;
        struct sockaddr_un addr;
        socklen_t len = sizeof(addr);
        struct stat st, fst;

        s->adopted_listen = -1;
        int r = listener_take(s, fd, err, errlen);
        if (r < 0) {
                safe_close(fd);
                return r;
        }
        /* systemd's socket (the fd store passes it back with the rest) is
         * the socket unit's to remove, never ours. */
        if (!s->store.systemd && getsockname(fd, (struct sockaddr *)&addr, &len) == 0 &&
            len > offsetof(struct sockaddr_un, sun_path) + 1 &&
            strncmp(addr.sun_path, s->config->socket_path, sizeof(addr.sun_path)) == 0 &&
            lstat(s->config->socket_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
            fstat(fd, &fst) == 0) {
                s->sock_dev = st.st_dev;
                s->sock_ino = st.st_ino;
                s->listen_owned = true;
        }
        return 1;
}

/* Opens the directory of path (which mkdir_parents made) and checks that
 * nobody but its owner, root or us, can put a file in it or take ours out:
 * group- or world-writable is refused unless sticky.  Returns the
 * directory fd and the file name's offset in path, or -errno. */
static int socket_dir_open(const char *path, size_t *ret_name, char *err, size_t errlen)
{
        char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
        const char *slash = strrchr(path, '/');
        struct stat st;

        if (!slash)
                snprintf(dir, sizeof(dir), ".");
        else if (slash == path)
                snprintf(dir, sizeof(dir), "/");
        else
                snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return errf(err, errlen, -errno, "cannot open the socket directory %s", dir);
        if (st.st_uid != 0 && st.st_uid != geteuid())
                return errf(err, errlen, -EPERM,
                            "the socket directory %s belongs to another user", dir);
        if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
                return errf(err, errlen, -EPERM,
                            "others may write to the socket directory %s (and so swap the "
                            "socket file for a link); use a directory only its owner can write",
                            dir);
        *ret_name = slash ? (size_t)(slash - path) + 1 : 0;
        return TAKE_FD(fd);
}

/* Binds fd to addr so that the file is created with exactly `mode`: the
 * socket inode's own mode is 0777, and bind applies the umask to it. */
static int bind_with_mode(int fd, const struct sockaddr_un *addr, mode_t mode)
{
        mode_t old = umask(~mode & 0777);
        int r = bind(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 ? -errno : 0;

        umask(old);
        return r;
}

int listener_open(Server *s, char *err, size_t errlen)
{
        const char *path = s->config->socket_path;
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        struct stat st;
        size_t name_at = 0;
        int r;

        r = s->adopted_listen >= 0 ? listener_from_previous(s, err, errlen)
                                   : listener_from_systemd(s, err, errlen);
        if (r != 0)
                return r < 0 ? r : 0;
        if (strlen(path) >= sizeof(addr.sun_path))
                return errf(err, errlen, -ENAMETOOLONG, "socket path %s", path);
        memcpy(addr.sun_path, path, strlen(path));
        r = mkdir_parents(path);
        if (r < 0)
                return errf(err, errlen, r, "cannot create the directory of %s", path);
        _cleanup_close_ int dirfd = socket_dir_open(path, &name_at, err, errlen);
        if (dirfd < 0)
                return dirfd;
        const char *name = path + name_at;

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return errf(err, errlen, -errno, "%s", "socket");
        /* The file is born with socket_mode; nobody can connect before
         * listen(), after its group is set. */
        r = bind_with_mode(fd, &addr, s->config->socket_mode);
        if (r < 0) {
                if (r != -EADDRINUSE)
                        return errf(err, errlen, r, "cannot bind %s", path);
                if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode))
                        return errf(err, errlen, -EEXIST, "%s exists and is not a socket",
                                    path);
                r = probe_live(&addr);
                if (r > 0)
                        return errf(err, errlen, -EADDRINUSE,
                                    "another netpolld already serves %s", path);
                if (r < 0)
                        return errf(err, errlen, r, "cannot probe %s", path);
                log_notice("removing stale socket %s", path);
                if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
                        return errf(err, errlen, -errno, "cannot remove stale socket %s", path);
                r = bind_with_mode(fd, &addr, s->config->socket_mode);
                if (r < 0)
                        return errf(err, errlen, r, "cannot bind %s", path);
        }
        /* What we bound, through the directory we checked, never through a
         * link: the file must be our socket before its group is changed. */
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode) ||
            st.st_uid != geteuid()) {
                r = -EEXIST;
                unlinkat(dirfd, name, 0);
                return errf(err, errlen, r, "%s changed under us after bind", path);
        }
        if (s->config->socket_group >= 0 &&
            fchownat(dirfd, name, (uid_t)-1, (gid_t)s->config->socket_group,
                     AT_SYMLINK_NOFOLLOW) < 0) {
                r = -errno;
                unlinkat(dirfd, name, 0);
                return errf(err, errlen, r, "cannot give %s to its socket_group", path);
        }
        s->sock_dev = st.st_dev;
        s->sock_ino = st.st_ino;
        s->listen_owned = true;
        if (listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                unlinkat(dirfd, name, 0);
                s->listen_owned = false;
                return errf(err, errlen, r, "listen on %s", path);
        }
        s->listen_fd = TAKE_FD(fd);
        return 0;
}

void listener_close(Server *s)
{
        struct stat st;

        if (s->listen_fd < 0)
                return;
        poller_del(&s->poller, s->listen_fd);
        s->listen_fd = safe_close(s->listen_fd);
        if (s->listen_owned && lstat(s->config->socket_path, &st) == 0 &&
            st.st_dev == s->sock_dev && st.st_ino == s->sock_ino)
                unlink(s->config->socket_path);
        s->listen_owned = false;
}

/* Answers a connection that will not be served with one error datagram
 * (np_connect returns it) and closes it. */
static void listener_refuse(Server *s, int fd, int error)
{
        size_t len = codec_encode_error(s->wbuf, error);
        struct ucred cred = { .uid = (uid_t)-1 };
        socklen_t clen = sizeof(cred);
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(sizeof(int) * NP_MAX_FDS_PER_MESSAGE)];
        } control;
        struct iovec iov = { .iov_base = s->rbuf, .iov_len = NP_MAX_MESSAGE_BYTES };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control) };

        (void)getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen);
        Account *acct = accounts_get(&s->accounts, cred.uid); /* NULL: uncharged */
        (void)!send(fd, s->wbuf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        /* Read the hello if it is already there: closing with unread data
         * makes the kernel reset the connection ahead of our reason.  With
         * its fds, if it brought any: dropped unread, they would be closed
         * right here, and a client's fd may take long to close.  Not when
         * out of fds: the kernel would drop the fds it cannot install in
         * this very call (the client library reads the reason after the
         * reset anyway). */
        if (error != -EMFILE && recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) >= 0)
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                                continue;
                        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                                int passed;
                                memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                                env_close_client_fd(s, acct, passed, false);
                        }
                }
        /* Later datagrams may carry fds too: the socket closes off the loop
         * (the client sees the end at once). */
        (void)shutdown(fd, SHUT_RDWR);
        env_close_client_fd(s, acct, fd, false);
}

/* Decides whether to serve an accepted connection.  0 or a negative errno
 * for the client. */
static int listener_admit(Server *s, int fd)
{
        struct ucred cred = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
        socklen_t len = sizeof(cred);

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -EACCES;
        if (!access_allows(s, fd, cred.uid, cred.gid)) {
                log_notice("refused pid %d uid %d: not in [access] allow_users or allow_groups",
                           (int)cred.pid, (int)cred.uid);
                return -EACCES;
        }
        if (s->n_sessions >= s->config->max_connections) {
                log_warning("refused pid %d: max_connections (%u) reached", (int)cred.pid,
                            s->config->max_connections);
                return -ECONNREFUSED;
        }
        Account *acct = accounts_get(&s->accounts, cred.uid);
        if (!acct)
                return -ENOMEM;
        if (acct->connections >= s->config->max_connections_per_uid) {
                log_warning("refused pid %d uid %d: max_connections_per_uid (%u) reached",
                            (int)cred.pid, (int)cred.uid, s->config->max_connections_per_uid);
                return -EUSERS;
        }
        return 0;
}

/* Takes ownership of an accepted connection fd: refuses it, or hands it to
 * the daemon (EnvHooks.connection_accepted) under a free index. */
static void listener_add_connection(Server *s, int fd)
{
        uint32_t index;
        int r;

        r = listener_admit(s, fd);
        if (r < 0) {
                listener_refuse(s, fd, r);
                return;
        }
        r = env_index_alloc(s, &index);
        if (r < 0) {
                listener_refuse(s, fd, r);
                return;
        }
        r = s->hooks->connection_accepted(s, fd, index);
        if (r < 0) {
                log_warning("cannot set up a connection: %s", strerror(-r));
                return;
        }
        s->stats.accepted++;
}

/* Out of fds with no reserve to spend: stop polling the listener (a
 * pending connection would keep it readable, and the loop spinning) until
 * listener_resume finds an fd again. */
static void listener_pause(Server *s)
{
        if (s->listen_paused)
                return;
        if (poller_mod(&s->poller, s->listen_fd, 0, token_make(TOKEN_LISTENER, 0, 0)) == 0) {
                s->listen_paused = true;
                log_warning("out of file descriptors: not accepting until some are closed");
        }
}

int64_t listener_resume(Server *s, int64_t now)
{
        if (!s->listen_paused)
                return INT64_MAX;
        if (s->reserve_fd < 0)
                s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (s->reserve_fd < 0)
                return now + LISTENER_RETRY_NS;
        if (poller_mod(&s->poller, s->listen_fd, EPOLLIN, token_make(TOKEN_LISTENER, 0, 0)) < 0)
                return now + LISTENER_RETRY_NS;
        s->listen_paused = false;
        log_notice("accepting connections again");
        return INT64_MAX;
}

void listener_accept(Server *s)
{
        for (int i = 0; i < 64; i++) {
                int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd >= 0) {
                        listener_add_connection(s, fd);
                        continue;
                }
                if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                        return;
                if ((errno == EMFILE || errno == ENFILE) && s->reserve_fd >= 0) {
                        /* Out of fds: the pending connection would keep the
                         * listener readable forever.  Spend the reserve fd to
                         * accept it and refuse it, then re-reserve (which
                         * waits for the closer when the refused one was the
                         * last fd: the listener pauses meanwhile). */
                        log_warning("out of file descriptors: refusing a connection");
                        s->reserve_fd = safe_close(s->reserve_fd);
                        fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                        if (fd >= 0)
                                listener_refuse(s, fd, -EMFILE);
                        s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                        continue;
                }
                if (errno == EMFILE || errno == ENFILE) {
                        listener_pause(s);
                        return;
                }
                log_warning("accept: %s", strerror(errno));
                return;
        }
}
