/*
 * The fd store and the state memfd beside it (fdstore.h).  Every call that
 * talks to systemd is one sd_notify datagram: FDNAME= names every fd of a
 * message, and every fd needs a name of its own to be removed alone, so
 * fds cannot share a message.
 */
#include "fdstore.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "../common/cleanup.h"
#include "log.h"

#define STATE_NAME "state"
#define MANIFEST_ENV "NETPOLLD_MANIFEST_FD"
#define STATE_MAGIC "npstate1"
#define HEADER_BYTES 4096u
#define CONN_OFF ((size_t)HEADER_BYTES)
#define DESC_OFF (CONN_OFF + (size_t)FDSTORE_CONN_MAX * sizeof(FdStoreConn))
#define STATE_BYTES (DESC_OFF + (size_t)FDSTORE_DESC_MAX * sizeof(FdStoreDesc))

_Static_assert(sizeof(FdStoreConn) == 64, "FdStoreConn is a record of the state memfd");
_Static_assert(sizeof(FdStoreDesc) == 32, "FdStoreDesc is a record of the state memfd");

typedef struct StateHeader {
        char magic[8];
        uint64_t instance;
        uint64_t last_connection_id; /* ids are never handed out twice */
} StateHeader;

static StateHeader *header(const FdStore *st)
{
        return (StateHeader *)st->map;
}

static FdStoreConn *conn_at(const FdStore *st, uint32_t index)
{
        return (FdStoreConn *)(st->map + CONN_OFF) + index;
}

static FdStoreDesc *desc_at(const FdStore *st, uint32_t index)
{
        return (FdStoreDesc *)(st->map + DESC_OFF) + index;
}

void fdstore_name(char kind, uint32_t index, uint32_t gen, char *buf, size_t len)
{
        snprintf(buf, len, "%c%" PRIx32 ".%" PRIx32, kind, index, gen);
}

/*
 * One datagram to the service manager, on a socket kept connected to
 * NOTIFY_SOCKET: sd_pid_notify_with_fds() makes, connects and closes a
 * socket per call, three system calls that would double what every
 * np_open and np_close costs here.  The kernel adds our credentials (the
 * manager sets SO_PASSCRED).  A manager that does not read for a second
 * fails the call: the open it was for fails, rather than the loop waiting.
 */
static int notify_connect(FdStore *st)
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
        st->notify_fd = fd;
        return 0;
}

static int notify_send(FdStore *st, const char *msg, int fd)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } ctl = { 0 };
        struct iovec iov = { .iov_base = (void *)msg, .iov_len = strlen(msg) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        int r = 0;

        if (st->notify_fd < 0)
                r = notify_connect(st);
        if (r == 0 && fd >= 0) {
                mh.msg_control = ctl.buf;
                mh.msg_controllen = sizeof(ctl.buf);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &fd, sizeof(int));
        }
        if (r == 0 && sendmsg(st->notify_fd, &mh, MSG_NOSIGNAL) < 0)
                r = errno == EAGAIN ? -ETIMEDOUT : -errno;
        return r;
}

static int notify_store(FdStore *st, const char *name, int fd)
{
        char msg[96];

        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s\nFDPOLL=0", name);
        return notify_send(st, msg, fd);
}

static void notify_remove(FdStore *st, const char *name)
{
        char msg[96];

        snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
        int r = notify_send(st, msg, -1);
        if (r < 0) /* the fd stays in the store; the next instance drops it */
                log_warning("fd store: cannot remove %s: %s", name, strerror(-r));
}

/* Accounts for a name in the store; -ENOSPC past the unit's limit or the
 * names' budget. */
static int reserve(FdStore *st, const char *name)
{
        size_t bytes = strlen(name) + 1;

        if ((st->max && st->stored >= st->max) || st->name_bytes + bytes > FDSTORE_NAMES_BUDGET)
                return -ENOSPC;
        st->stored++;
        st->name_bytes += bytes;
        return 0;
}

static void unreserve(FdStore *st, const char *name)
{
        size_t bytes = strlen(name) + 1;

        if (st->stored)
                st->stored--;
        st->name_bytes = st->name_bytes > bytes ? st->name_bytes - bytes : 0;
}

static int store(FdStore *st, const char *name, int fd)
{
        if (!st->systemd)
                return 0;
        int r = reserve(st, name);
        if (r < 0)
                return r;
        r = notify_store(st, name, fd);
        if (r < 0)
                unreserve(st, name);
        return r;
}

static void unstore(FdStore *st, const char *name)
{
        if (!st->systemd)
                return;
        unreserve(st, name);
        notify_remove(st, name);
}

static int map_state(FdStore *st)
{
        void *p = mmap(NULL, STATE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, st->state_fd, 0);

        if (p == MAP_FAILED)
                return -errno;
        st->map = p;
        st->map_len = STATE_BYTES;
        return 0;
}

int fdstore_init(FdStore *st, bool systemd, uint32_t max)
{
        *st = (FdStore){ .systemd = systemd, .max = max, .state_fd = -1, .notify_fd = -1,
                         .instance = 1 };
        /* Sparse: only the pages of slots in use take memory. */
        st->state_fd = memfd_create("netpolld-state", MFD_CLOEXEC);
        if (st->state_fd < 0)
                return -errno;
        if (ftruncate(st->state_fd, (off_t)STATE_BYTES) < 0)
                return -errno;
        int r = map_state(st);
        if (r < 0)
                return r;
        memcpy(header(st)->magic, STATE_MAGIC, 8);
        header(st)->instance = 1;
        return store(st, STATE_NAME, st->state_fd);
}

static bool is_listener(int fd)
{
        int on = 0;
        socklen_t len = sizeof(on);

        return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

static StoredKind parse_name(const char *name, uint32_t *index, uint32_t *gen)
{
        unsigned long i, g;
        char *end;

        if (name[0] != STORED_CONN && name[0] != STORED_DESC)
                return STORED_OTHER;
        errno = 0;
        i = strtoul(name + 1, &end, 16);
        if (errno || end == name + 1 || *end != '.')
                return STORED_OTHER;
        const char *gp = end + 1;
        g = strtoul(gp, &end, 16);
        if (errno || end == gp || *end || i > UINT32_MAX || g > UINT32_MAX)
                return STORED_OTHER;
        *index = (uint32_t)i;
        *gen = (uint32_t)g;
        return (StoredKind)name[0];
}

/* The fds an in-place upgrade passed: "FD NAME" lines in a memfd. */
static int read_manifest(int mfd, int **ret_fds, char ***ret_names, size_t *ret_n)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;
        int *fds = NULL;
        char **names = NULL;
        size_t n = 0;

        for (;;) {
                if (len + 4096 > cap) {
                        cap = cap ? cap * 2 : 65536;
                        char *b = realloc(buf, cap + 1);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                }
                ssize_t k = pread(mfd, buf + len, cap - len, (off_t)len);
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                len += (size_t)k;
        }
        buf[len] = '\0';
        for (char *line = buf, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                char name[64];
                int fd;
                if (sscanf(line, "%d %63s", &fd, name) != 2 || fd < 0)
                        continue;
                int *f = realloc(fds, (n + 1) * sizeof(*fds));
                if (f)
                        fds = f;
                char **nm = f ? realloc(names, (n + 1) * sizeof(*names)) : NULL;
                if (nm)
                        names = nm;
                char *dup = nm ? strdup(name) : NULL;
                if (!dup) {
                        for (size_t i = 0; i < n; i++)
                                free(names[i]);
                        free(names);
                        free(fds);
                        return -ENOMEM;
                }
                fds[n] = fd;
                names[n++] = dup;
        }
        *ret_fds = fds;
        *ret_names = names;
        *ret_n = n;
        return 0;
}

int fdstore_adopt(FdStore *st, bool systemd, uint32_t max, StoredFd **ret, size_t *ret_n,
                  int *ret_listen)
{
        int *fds = NULL;
        char **names = NULL;
        size_t n = 0;
        int r;

        *ret = NULL;
        *ret_n = 0;
        *ret_listen = -1;
        const char *m = getenv(MANIFEST_ENV);
        if (m) {
                int mfd = atoi(m);
                unsetenv(MANIFEST_ENV);
                r = read_manifest(mfd, &fds, &names, &n);
                safe_close(mfd);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < n; i++) /* they were made inheritable for the exec */
                        (void)fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        } else if (systemd) {
                r = sd_listen_fds_with_names(1, &names);
                if (r < 0)
                        return r;
                n = (size_t)r;
                fds = calloc(n ? n : 1, sizeof(*fds));
                if (!fds)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        fds[i] = SD_LISTEN_FDS_START + (int)i;
                        (void)fcntl(fds[i], F_SETFD, FD_CLOEXEC);
                }
        }

        StoredFd *out = calloc(n ? n : 1, sizeof(*out));
        int state = -1;
        size_t k = 0;
        r = out ? 0 : -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *name = names && names[i] ? names[i] : "";
                if (r == 0 && state < 0 && strcmp(name, STATE_NAME) == 0) {
                        state = fds[i];
                        continue;
                }
                if (r == 0 && *ret_listen < 0 && (strcmp(name, "listen") == 0 || is_listener(fds[i]))) {
                        *ret_listen = fds[i];
                        continue;
                }
                if (r < 0) {
                        safe_close(fds[i]);
                        continue;
                }
                StoredFd *s = &out[k++];
                *s = (StoredFd){ .fd = fds[i] };
                s->kind = parse_name(name, &s->index, &s->gen);
                snprintf(s->name, sizeof(s->name), "%s", name);
        }
        for (size_t i = 0; names && i < n; i++)
                free(names[i]);
        free(names);
        free(fds);
        if (r < 0) {
                free(out);
                safe_close(state);
                return r;
        }

        *st = (FdStore){ .systemd = systemd, .max = max, .state_fd = state, .notify_fd = -1 };
        if (state >= 0 && map_state(st) == 0 && memcmp(header(st)->magic, STATE_MAGIC, 8) == 0) {
                st->instance = ++header(st)->instance;
                st->last_connection_id = header(st)->last_connection_id;
                if (systemd) { /* what the store holds now: the state and every fd passed */
                        st->stored = 1;
                        st->name_bytes = sizeof(STATE_NAME);
                        for (size_t i = 0; i < k; i++) {
                                st->stored++;
                                st->name_bytes += strlen(out[i].name) + 1;
                        }
                }
        } else {
                if (state >= 0)
                        log_warning("fd store: the state passed is not netpolld's; starting afresh");
                if (st->map)
                        munmap(st->map, st->map_len);
                safe_close(state);
                r = fdstore_init(st, systemd, max);
                if (r < 0) {
                        for (size_t i = 0; i < k; i++)
                                safe_close(out[i].fd);
                        free(out);
                        return r;
                }
                /* Nothing can be rebuilt without records. */
                for (size_t i = 0; i < k; i++)
                        out[i].kind = STORED_OTHER;
        }
        *ret = out;
        *ret_n = k;
        return 0;
}

void fdstore_done(FdStore *st)
{
        if (st->map)
                munmap(st->map, st->map_len);
        st->map = NULL;
        st->state_fd = safe_close(st->state_fd);
        st->notify_fd = safe_close(st->notify_fd);
}

int fdstore_conn_add(FdStore *st, uint32_t index, uint32_t gen, uint64_t id, uint32_t version,
                     const char *name, int fd)
{
        char n[32];

        if (!st->map)
                return 0;
        if (index >= FDSTORE_CONN_MAX)
                return -ENOSPC;
        if (id > header(st)->last_connection_id)
                header(st)->last_connection_id = id;
        FdStoreConn *c = conn_at(st, index);
        c->gen = 0;
        c->version = version;
        c->id = id;
        snprintf(c->name, sizeof(c->name), "%s", name);
        c->gen = gen;
        fdstore_name(STORED_CONN, index, gen, n, sizeof(n));
        int r = store(st, n, fd);
        if (r < 0)
                c->gen = 0;
        return r;
}

void fdstore_conn_greeted(FdStore *st, uint32_t index, uint32_t gen, uint32_t version,
                          const char *name)
{
        if (!st->map || index >= FDSTORE_CONN_MAX || conn_at(st, index)->gen != gen)
                return;
        FdStoreConn *c = conn_at(st, index);
        snprintf(c->name, sizeof(c->name), "%s", name);
        c->version = version; /* last: a restart from here on resumes it */
}

void fdstore_conn_remove(FdStore *st, uint32_t index, uint32_t gen)
{
        char n[32];

        if (!st->map || index >= FDSTORE_CONN_MAX || conn_at(st, index)->gen != gen)
                return;
        conn_at(st, index)->gen = 0;
        fdstore_name(STORED_CONN, index, gen, n, sizeof(n));
        unstore(st, n);
}

int fdstore_desc_add(FdStore *st, uint32_t index, uint32_t gen, uint32_t conn_index,
                     uint32_t conn_gen, uint64_t user, uint64_t open_req, int fd)
{
        char n[32];

        if (!st->map)
                return 0;
        if (index >= FDSTORE_DESC_MAX)
                return -ENOSPC;
        FdStoreDesc *d = desc_at(st, index);
        *d = (FdStoreDesc){ .conn_index = conn_index, .conn_gen = conn_gen, .user = user,
                            .open_req = open_req };
        d->gen = gen;
        fdstore_name(STORED_DESC, index, gen, n, sizeof(n));
        int r = store(st, n, fd);
        if (r < 0)
                d->gen = 0;
        return r;
}

void fdstore_desc_remove(FdStore *st, uint32_t index, uint32_t gen)
{
        char n[32];

        if (!st->map || index >= FDSTORE_DESC_MAX || desc_at(st, index)->gen != gen)
                return;
        desc_at(st, index)->gen = 0;
        fdstore_name(STORED_DESC, index, gen, n, sizeof(n));
        unstore(st, n);
}

const FdStoreConn *fdstore_conn_record(const FdStore *st, uint32_t index, uint32_t gen)
{
        if (!st->map || index >= FDSTORE_CONN_MAX || gen == 0 || conn_at(st, index)->gen != gen)
                return NULL;
        return conn_at(st, index);
}

const FdStoreDesc *fdstore_desc_record(const FdStore *st, uint32_t index, uint32_t gen)
{
        if (!st->map || index >= FDSTORE_DESC_MAX || gen == 0 || desc_at(st, index)->gen != gen)
                return NULL;
        return desc_at(st, index);
}

void fdstore_forget(FdStore *st, const char *name)
{
        unstore(st, name);
}

int fdstore_exec_manifest(FdStore *st, const StoredFd *fds, size_t n, int listen_fd, char *env,
                          size_t envlen)
{
        int mfd = memfd_create("netpolld-manifest", 0); /* inherited by the exec */
        if (mfd < 0)
                return -errno;
        FILE *f = fdopen(dup(mfd), "w");
        if (!f) {
                safe_close(mfd);
                return -ENOMEM;
        }
        if (st->state_fd >= 0) {
                fprintf(f, "%d %s\n", st->state_fd, STATE_NAME);
                (void)fcntl(st->state_fd, F_SETFD, 0);
        }
        if (listen_fd >= 0) {
                fprintf(f, "%d listen\n", listen_fd);
                (void)fcntl(listen_fd, F_SETFD, 0);
        }
        for (size_t i = 0; i < n; i++) {
                fprintf(f, "%d %s\n", fds[i].fd, fds[i].name);
                (void)fcntl(fds[i].fd, F_SETFD, 0);
        }
        if (fclose(f) != 0) {
                safe_close(mfd);
                return -EIO;
        }
        snprintf(env, envlen, MANIFEST_ENV "=%d", mfd);
        return 0;
}
