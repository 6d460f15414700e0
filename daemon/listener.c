/* Listening socket set-up and teardown; see listener.h. */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "log.h"
#include "server.h"

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

static int listener_from_systemd(Server *s, char *err, size_t errlen)
{
        int n = sd_listen_fds(1);

        if (n <= 0)
                return n;
        if (n != 1)
                return errf(err, errlen, -EINVAL, "systemd passed %s sockets, expected one",
                            n > 1 ? "several" : "no");
        int fd = SD_LISTEN_FDS_START;
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

int listener_open(Server *s, char *err, size_t errlen)
{
        const char *path = s->config->socket_path;
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        struct stat st;
        int r;

        r = listener_from_systemd(s, err, errlen);
        if (r != 0)
                return r < 0 ? r : 0;
        if (strlen(path) >= sizeof(addr.sun_path))
                return errf(err, errlen, -ENAMETOOLONG, "socket path %s", path);
        memcpy(addr.sun_path, path, strlen(path));
        r = mkdir_parents(path);
        if (r < 0)
                return errf(err, errlen, r, "cannot create the directory of %s", path);

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return errf(err, errlen, -errno, "%s", "socket");
        /* Bind under a umask that admits nobody, then open it up to exactly
         * socket_mode: no window with wider permissions. */
        mode_t old_umask = umask(0777);
        r = bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ? -errno : 0;
        umask(old_umask);
        if (r < 0) {
                if (r != -EADDRINUSE)
                        return errf(err, errlen, r, "cannot bind %s", path);
                if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
                        return errf(err, errlen, -EEXIST, "%s exists and is not a socket",
                                    path);
                r = probe_live(&addr);
                if (r > 0)
                        return errf(err, errlen, -EADDRINUSE,
                                    "another netpolld already serves %s", path);
                if (r < 0)
                        return errf(err, errlen, r, "cannot probe %s", path);
                log_notice("removing stale socket %s", path);
                if (unlink(path) < 0 && errno != ENOENT)
                        return errf(err, errlen, -errno, "cannot remove stale socket %s", path);
                old_umask = umask(0777);
                r = bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ? -errno : 0;
                umask(old_umask);
                if (r < 0)
                        return errf(err, errlen, r, "cannot bind %s", path);
        }
        if (s->config->socket_group >= 0 && chown(path, (uid_t)-1, (gid_t)s->config->socket_group) < 0) {
                r = -errno;
                unlink(path);
                return errf(err, errlen, r, "cannot give %s to its socket_group", path);
        }
        if (chmod(path, s->config->socket_mode) < 0) {
                r = -errno;
                unlink(path);
                return errf(err, errlen, r, "cannot set socket_mode on %s", path);
        }
        if (stat(path, &st) == 0) {
                s->sock_dev = st.st_dev;
                s->sock_ino = st.st_ino;
        }
        s->listen_owned = true;
        if (listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                unlink(path);
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
        if (s->listen_owned && stat(s->config->socket_path, &st) == 0 &&
            st.st_dev == s->sock_dev && st.st_ino == s->sock_ino)
                unlink(s->config->socket_path);
        s->listen_owned = false;
}
