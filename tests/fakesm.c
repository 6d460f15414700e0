/*
 * fakesm: the fake service manager; see fakesm.h for what it promises.
 *
 * The store is an array in the order fds were stored; systemd prepends to
 * a list, so spawn passes it from the end.  One mutex guards everything,
 * as the background reader applies messages from its own thread; the
 * notify socket is non-blocking and read under the mutex by whoever holds
 * it, so a caller's fakesm_process(m, 0) always sees every message queued
 * before the call.  The child of fakesm_spawn runs only async-signal-safe
 * code between fork and exec: the parent prepares every array first.
 *
 * Dedup compares (st_dev, st_ino) first and asks kcmp only on a match:
 * the same answer as systemd's same_fd against every stored fd, without
 * systemd's quadratic cost on big stores.
 */
#include "fakesm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* systemd 252: NOTIFY_BUFFER_MAX (PIPE_BUF), NOTIFY_FD_MAX, FDNAME_MAX,
 * STATUS_TEXT_MAX, ERRNO_MAX, EXIT_FDS, EXIT_EXEC. */
#define NOTIFY_BUFFER_MAX 4096
#define NOTIFY_FD_MAX 768
#define FDNAME_MAX 255
#define STATUS_TEXT_MAX (16U * 1024U)
#define ERRNO_MAX 4095
#define EXIT_FDS 202
#define EXIT_EXEC 203
#define DEFAULT_SOCKET_NAME "fakesm.socket"

extern char **environ;

typedef struct Stored {
        int fd;
        bool poll; /* not FDPOLL=0: dropped on POLLHUP/POLLERR */
        dev_t dev;
        ino_t ino;
        char *name;
} Stored;

struct FakeSM {
        pthread_mutex_t lock;
        pthread_cond_t cond; /* broadcast when messages were applied */
        int notify_fd;
        char dir[32];
        char path[64];
        unsigned store_max;
        Stored *store; /* oldest first; passed newest first */
        size_t n_store, n_alloc;

        pid_t main_pid, spawned_pid;
        FakeSMState state;
        bool ready; /* READY=1 from the main pid since the last spawn */
        char *status;
        FakeSMStats stats;

        int out_fd, err_fd;
        uint64_t watchdog_usec;

        pthread_t thread;
        bool thread_on;
        int wake_fd; /* eventfd: stops the thread */
};

/* The lock is not part of what const promises. */
static FakeSM *unconst(const FakeSM *m)
{
        return (FakeSM *)m;
}

#define NSEC_PER_MSEC INT64_C(1000000)

static int64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Whole milliseconds to wait for ns to pass: rounded up, never early. */
static int ms_until(int64_t left_ns)
{
        int64_t ms = (left_ns + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC;

        return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void close_all(const int *fds, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

/* ------------------------------------------------------------------ */
/* systemd's parsers                                                    */

/* src/basic/fd-util.c fdname_is_valid: printable ASCII but ':', at most
 * 255 bytes; "" is valid. */
static bool fdname_is_valid(const char *s)
{
        const char *p;

        if (!s)
                return false;
        for (p = s; *p; p++)
                if (*p < ' ' || *p >= 127 || *p == ':')
                        return false;
        return p - s <= FDNAME_MAX;
}

/* src/basic/utf8.c utf8_is_valid: no overlong forms, surrogates or
 * non-characters. */
static bool utf8_is_valid(const char *str)
{
        const unsigned char *p = (const unsigned char *)str;

        while (*p) {
                unsigned len, ch;

                if (*p < 0x80)
                        len = 1, ch = *p;
                else if ((*p & 0xe0) == 0xc0)
                        len = 2, ch = *p & 0x1fU;
                else if ((*p & 0xf0) == 0xe0)
                        len = 3, ch = *p & 0x0fU;
                else if ((*p & 0xf8) == 0xf0)
                        len = 4, ch = *p & 0x07U;
                else
                        return false;
                for (unsigned i = 1; i < len; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                        ch = ch << 6 | (p[i] & 0x3fU);
                }
                unsigned need = ch < 0x80 ? 1 : ch < 0x800 ? 2 : ch < 0x10000 ? 3 : 4;
                if (need != len || ch >= 0x110000 || (ch & 0xfffff800U) == 0xd800 ||
                    (ch >= 0xfdd0 && ch <= 0xfdef) || (ch & 0xfffeU) == 0xfffe)
                        return false;
                p += len;
        }
        return true;
}

/*
 * manager_dispatch_notify_fd's strv_split_newlines: extract_first_word
 * with separators "\n\r" and no flags, so separators coalesce, leading
 * ones are skipped, and a backslash escapes the next character and is
 * dropped; a trailing backslash fails the whole message.  Words go to
 * out (at least len + 1 bytes: they never grow), pointers to words (at
 * least len / 2 + 1).  Number of words, or -EINVAL.
 */
static int split_tags(const char *buf, size_t len, char *out, char **words)
{
        size_t i = 0, o = 0;
        int n = 0;

        for (;;) {
                while (i < len && (buf[i] == '\n' || buf[i] == '\r'))
                        i++;
                if (i >= len)
                        return n;
                words[n++] = out + o;
                while (i < len && buf[i] != '\n' && buf[i] != '\r') {
                        if (buf[i] == '\\') {
                                if (++i >= len)
                                        return -EINVAL;
                        }
                        out[o++] = buf[i++];
                }
                out[o++] = '\0';
        }
}

static bool tags_contain(char *const *tags, int n, const char *tag)
{
        for (int i = 0; i < n; i++)
                if (strcmp(tags[i], tag) == 0)
                        return true;
        return false;
}

/* strv_find_startswith: the rest of the first tag starting with prefix. */
static const char *tags_find(char *const *tags, int n, const char *prefix)
{
        size_t l = strlen(prefix);

        for (int i = 0; i < n; i++)
                if (strncmp(tags[i], prefix, l) == 0)
                        return tags[i] + l;
        return NULL;
}

/* A decimal number, all of s, within [min, max]: 0 or -EINVAL/-ERANGE. */
static int parse_number(const char *s, long long min, long long max, long long *ret)
{
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (end == s || *end != '\0')
                return -EINVAL;
        if (errno == ERANGE || v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

/* parse_errno: an errno name ("ENOENT") or number, 0 allowed. */
static int parse_errno(const char *s)
{
        long long v;

        for (int e = 1; e <= ERRNO_MAX && *s == 'E'; e++) {
                const char *name = strerrorname_np(e);
                if (name && strcmp(name, s) == 0)
                        return e;
        }
        if (parse_number(s, 0, ERRNO_MAX, &v) < 0)
                return -ERANGE;
        return (int)v;
}

/* ------------------------------------------------------------------ */
/* Processes                                                            */

/* Parent pid and state letter of pid from /proc: 0, or -errno. */
static int proc_stat(pid_t pid, pid_t *ret_ppid, char *ret_state)
{
        char path[64], buf[512];
        int fd, ppid;
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return -EIO;
        buf[n] = '\0';
        const char *p = strrchr(buf, ')'); /* after the command, which may hold anything */
        if (!p || sscanf(p + 1, " %c %d", ret_state, &ppid) != 2)
                return -EIO;
        *ret_ppid = ppid;
        return 0;
}

/* service_is_suitable_main_pid: > 0 good (a process of the service: here,
 * a descendant of the main pid, for want of a cgroup), 0 doubtful (alive
 * but not ours), < 0 refused (the manager, pid 1, dead or a zombie). */
static int suitable_main_pid(const FakeSM *m, pid_t pid)
{
        pid_t p = pid, ppid;
        char state;

        if (pid == getpid() || pid == 1)
                return -EPERM;
        if (proc_stat(pid, &ppid, &state) < 0 || state == 'Z')
                return -ESRCH;
        for (int depth = 0; depth < 64 && p > 1; depth++) {
                if (p == m->main_pid)
                        return 1;
                if (proc_stat(p, &ppid, &state) < 0)
                        break;
                p = ppid;
        }
        return 0;
}

/* ------------------------------------------------------------------ */
/* The store                                                            */

static void stored_drop(FakeSM *m, size_t i)
{
        close(m->store[i].fd);
        free(m->store[i].name);
        memmove(&m->store[i], &m->store[i + 1], (m->n_store - i - 1) * sizeof(Stored));
        m->n_store--;
}

/* src/basic/fd-util.c same_fd, for two fds of one inode: kcmp, or where it
 * is missing or not allowed, the file type and status flags. */
static int same_fd(int a, int b, mode_t mode)
{
        pid_t self = getpid();
        long r = syscall(SYS_kcmp, self, self, KCMP_FILE, a, b);

        if (r == 0)
                return 1;
        if (r > 0)
                return 0;
        if (errno != ENOSYS && errno != EPERM && errno != EACCES)
                return -errno;
        if (S_ISCHR(mode) || S_ISBLK(mode))
                return 0;
        int fa = fcntl(a, F_GETFL), fb = fcntl(b, F_GETFL);
        if (fa < 0 || fb < 0)
                return -errno;
        return fa == fb;
}

/* Closes stored fds that report POLLHUP/POLLERR (systemd's on_fd_store_io,
 * for every fd not stored with FDPOLL=0). */
static void sweep_locked(FakeSM *m)
{
        struct pollfd *pfd;
        size_t n = 0;

        if (m->n_store == 0)
                return;
        pfd = calloc(m->n_store, sizeof(*pfd));
        if (!pfd)
                return;
        for (size_t i = 0; i < m->n_store; i++)
                pfd[i] = (struct pollfd){ .fd = m->store[i].poll ? m->store[i].fd : -1 };
        if (poll(pfd, m->n_store, 0) > 0)
                /* From the end, so indexes below stay valid. */
                for (size_t i = m->n_store; i-- > 0;)
                        if (pfd[i].revents & (POLLHUP | POLLERR)) {
                                stored_drop(m, i);
                                n++;
                        }
        m->stats.hangups += (unsigned)n;
        free(pfd);
}

/* service_add_fd_store: consumes fd.  1 stored, 0 duplicate, -EXFULL,
 * -errno. */
static int store_add_locked(FakeSM *m, int fd, const char *name, bool do_poll)
{
        struct stat st;
        int r;

        if (m->n_store >= m->store_max) {
                /* systemd would have noticed hang-ups by now. */
                sweep_locked(m);
                if (m->n_store >= m->store_max) {
                        close(fd);
                        m->stats.refused++;
                        return -EXFULL;
                }
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                close(fd);
                m->stats.refused++;
                return r;
        }
        for (size_t i = 0; i < m->n_store; i++) {
                if (m->store[i].ino != st.st_ino || m->store[i].dev != st.st_dev)
                        continue;
                r = same_fd(m->store[i].fd, fd, st.st_mode);
                if (r != 0) {
                        close(fd);
                        if (r < 0) {
                                m->stats.refused++;
                                return r;
                        }
                        m->stats.dedups++;
                        return 0;
                }
        }
        if (m->n_store == m->n_alloc) {
                size_t n = m->n_alloc ? 2 * m->n_alloc : 16;
                Stored *s = realloc(m->store, n * sizeof(*s));
                if (!s) {
                        close(fd);
                        return -ENOMEM;
                }
                m->store = s;
                m->n_alloc = n;
        }
        char *copy = strdup(name ? name : "stored");
        if (!copy) {
                close(fd);
                return -ENOMEM;
        }
        m->store[m->n_store++] = (Stored){
                .fd = fd, .poll = do_poll, .dev = st.st_dev, .ino = st.st_ino, .name = copy,
        };
        m->stats.stores++;
        return 1;
}

static void store_remove_locked(FakeSM *m, const char *name)
{
        for (size_t i = m->n_store; i-- > 0;)
                if (strcmp(m->store[i].name, name) == 0) {
                        stored_drop(m, i);
                        m->stats.removes++;
                }
}

/* ------------------------------------------------------------------ */
/* Messages                                                             */

/* service_notify_message, for a message from the main pid.  Consumes fds
 * (n_fds of them, in message order). */
static void apply_locked(FakeSM *m, const struct ucred *uc, char *const *tags, int n, int *fds,
                         size_t n_fds)
{
        const char *e;
        size_t used = 0;

        m->stats.applied++;

        e = tags_find(tags, n, "MAINPID=");
        if (e && (m->state == FAKESM_STARTING || m->state == FAKESM_RUNNING ||
                  m->state == FAKESM_RELOADING)) {
                long long v;
                if (parse_number(e, 1, INT_MAX, &v) == 0 && (pid_t)v != m->main_pid) {
                        int r = suitable_main_pid(m, (pid_t)v);
                        if (r == 0 && uc->uid == 0)
                                r = 1; /* doubtful, but from a privileged sender */
                        if (r > 0) {
                                m->main_pid = (pid_t)v;
                                m->stats.main_pid_changes++;
                        }
                }
        }

        /* READY=1 / RELOADING=1 / STOPPING=1: the last one wins. */
        for (int i = n; i-- > 0;) {
                if (strcmp(tags[i], "READY=1") == 0) {
                        m->stats.readies++;
                        m->ready = true;
                        if (m->state == FAKESM_STARTING || m->state == FAKESM_RELOADING)
                                m->state = FAKESM_RUNNING;
                } else if (strcmp(tags[i], "RELOADING=1") == 0) {
                        m->stats.reloadings++;
                        if (m->state == FAKESM_RUNNING)
                                m->state = FAKESM_RELOADING;
                } else if (strcmp(tags[i], "STOPPING=1") == 0) {
                        m->stats.stoppings++;
                        if (m->state == FAKESM_RUNNING)
                                m->state = FAKESM_STOPPING;
                } else
                        continue;
                break;
        }

        e = tags_find(tags, n, "STATUS=");
        if (e) {
                if (*e == '\0') {
                        free(m->status);
                        m->status = NULL;
                } else if (strlen(e) <= STATUS_TEXT_MAX && utf8_is_valid(e)) {
                        char *t = strdup(e);
                        if (t) {
                                free(m->status);
                                m->status = t;
                        }
                }
        }

        e = tags_find(tags, n, "ERRNO=");
        if (e) {
                int v = parse_errno(e);
                if (v >= 0)
                        m->stats.status_errno = v;
        }

        e = tags_find(tags, n, "WATCHDOG=");
        if (e && strcmp(e, "1") == 0)
                m->stats.watchdogs++;
        else if (e && strcmp(e, "trigger") == 0)
                m->stats.watchdog_triggers++;

        e = tags_find(tags, n, "WATCHDOG_USEC=");
        if (e) {
                long long v;
                if (parse_number(e, 0, LLONG_MAX, &v) == 0)
                        m->stats.watchdog_usec = (uint64_t)v;
        }

        if (tags_contain(tags, n, "FDSTOREREMOVE=1")) {
                const char *name = tags_find(tags, n, "FDNAME=");
                if (name && fdname_is_valid(name))
                        store_remove_locked(m, name);
                else
                        m->stats.bad_removes++;
        } else if (tags_contain(tags, n, "FDSTORE=1")) {
                const char *name = tags_find(tags, n, "FDNAME=");
                bool do_poll = !tags_contain(tags, n, "FDPOLL=0");

                if (name && !fdname_is_valid(name)) {
                        m->stats.bad_names++;
                        name = NULL;
                }
                for (; used < n_fds; used++) {
                        int r = store_add_locked(m, fds[used], name, do_poll);
                        if (r < 0) {
                                used++;
                                /* systemd stops at the first failure and closes
                                 * the rest of the message's fds. */
                                m->stats.refused += (unsigned)(n_fds - used);
                                close_all(fds + used, n_fds - used);
                                used = n_fds;
                                break;
                        }
                }
        }
        if (used < n_fds) {
                m->stats.stray_fds += (unsigned)(n_fds - used);
                close_all(fds + used, n_fds - used);
        }
}

/*
 * Receives and handles one datagram (manager_dispatch_notify_fd): 1, 0
 * when none is queued, or -errno.
 */
static int receive_one_locked(FakeSM *m)
{
        char buf[NOTIFY_BUFFER_MAX + 1];
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(sizeof(struct ucred)) +
                            CMSG_SPACE(sizeof(int) * NOTIFY_FD_MAX)];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
        struct msghdr mh = {
                .msg_iov = &iov, .msg_iovlen = 1,
                .msg_control = &control, .msg_controllen = sizeof(control),
        };
        struct ucred uc = { 0 };
        bool have_creds = false;
        int fds[NOTIFY_FD_MAX];
        size_t n_fds = 0;
        ssize_t n;

        n = recvmsg(m->notify_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET)
                        continue;
                if (c->cmsg_type == SCM_RIGHTS) {
                        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        if (k > NOTIFY_FD_MAX - n_fds)
                                k = NOTIFY_FD_MAX - n_fds;
                        memcpy(fds + n_fds, CMSG_DATA(c), k * sizeof(int));
                        n_fds += k;
                } else if (c->cmsg_type == SCM_CREDENTIALS &&
                           c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
                        memcpy(&uc, CMSG_DATA(c), sizeof(uc));
                        have_creds = true;
                }
        }

        /* Dropped whole: fds cut off, no credentials, over the buffer, a NUL
         * inside, a bad escape. */
        char *out = NULL, **tags = NULL;
        int n_tags = -1;
        if (!(mh.msg_flags & MSG_CTRUNC) && have_creds && uc.pid > 0 &&
            (size_t)n < sizeof(buf) && !(mh.msg_flags & MSG_TRUNC) &&
            !(n > 1 && memchr(buf, 0, (size_t)n - 1))) {
                size_t len = (size_t)n;
                if (len > 0 && buf[len - 1] == '\0')
                        len--;
                out = malloc(len + 1);
                tags = malloc((len / 2 + 1) * sizeof(char *));
                if (out && tags)
                        n_tags = split_tags(buf, len, out, tags);
        }
        if (n_tags < 0) {
                m->stats.ignored++;
                close_all(fds, n_fds);
        } else if (tags_contain(tags, n_tags, "BARRIER=1")) {
                /* sd_notify_barrier waits for its fd to close. */
                m->stats.barriers++;
                close_all(fds, n_fds);
        } else if (m->main_pid <= 0 || uc.pid != m->main_pid) {
                m->stats.ignored++;
                close_all(fds, n_fds);
        } else
                apply_locked(m, &uc, tags, n_tags, fds, n_fds);
        free(out);
        free(tags);
        return 1;
}

/* Handles every queued datagram: the number handled, or -errno. */
static int drain_locked(FakeSM *m)
{
        int r, n = 0;

        while ((r = receive_one_locked(m)) > 0)
                n++;
        if (r < 0)
                return r;
        if (n > 0)
                pthread_cond_broadcast(&m->cond);
        return n;
}

/* fakesm_process under the lock. */
static int process_locked(FakeSM *m, int timeout_ms)
{
        unsigned start = m->stats.applied;
        int64_t end = now_ns() + (timeout_ms > 0 ? timeout_ms : 0) * NSEC_PER_MSEC;
        int r;

        for (;;) {
                r = drain_locked(m);
                if (r < 0)
                        return r;
                sweep_locked(m);
                if (m->stats.applied != start || timeout_ms <= 0)
                        break;
                int64_t left = end - now_ns();
                if (left <= 0)
                        break;
                if (m->thread_on) {
                        struct timespec ts = {
                                .tv_sec = (time_t)(end / 1000000000),
                                .tv_nsec = (long)(end % 1000000000),
                        };
                        pthread_cond_timedwait(&m->cond, &m->lock, &ts);
                } else {
                        struct pollfd p = { .fd = m->notify_fd, .events = POLLIN };
                        pthread_mutex_unlock(&m->lock);
                        (void)poll(&p, 1, ms_until(left));
                        pthread_mutex_lock(&m->lock);
                }
        }
        return (int)(m->stats.applied - start);
}

static void *reader_thread(void *userdata)
{
        FakeSM *m = userdata;
        struct pollfd p[2] = {
                { .fd = m->notify_fd, .events = POLLIN },
                { .fd = m->wake_fd, .events = POLLIN },
        };

        for (;;) {
                if (poll(p, 2, -1) < 0 && errno != EINTR)
                        break;
                if (p[1].revents)
                        break;
                pthread_mutex_lock(&m->lock);
                (void)drain_locked(m);
                sweep_locked(m);
                pthread_mutex_unlock(&m->lock);
        }
        return NULL;
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                           */

int fakesm_new(FakeSM **ret, unsigned store_max)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        pthread_condattr_t ca;
        FakeSM *m;
        int one = 1, rcvbuf = 8 * 1024 * 1024, r;

        if (!ret)
                return -EINVAL;
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->notify_fd = m->wake_fd = m->out_fd = m->err_fd = -1;
        m->store_max = store_max;
        pthread_mutex_init(&m->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&m->cond, &ca);
        pthread_condattr_destroy(&ca);

        snprintf(m->dir, sizeof(m->dir), "/tmp/fakesm-XXXXXX");
        if (!mkdtemp(m->dir)) {
                r = -errno;
                m->dir[0] = '\0';
                goto fail;
        }
        snprintf(m->path, sizeof(m->path), "%s/notify", m->dir);
        m->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (m->notify_fd < 0) {
                r = -errno;
                goto fail;
        }
        /* The kernel's credentials on every message; systemd's big buffer. */
        if (setsockopt(m->notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) {
                r = -errno;
                goto fail;
        }
        (void)setsockopt(m->notify_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", m->path);
        if (bind(m->notify_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = -errno;
                goto fail;
        }
        /* Anyone may notify, as through /run/systemd/notify: a service that
         * drops privileges still reaches it (mkdtemp made the directory 0700). */
        if (chmod(m->dir, 0755) < 0 || chmod(m->path, 0777) < 0) {
                r = -errno;
                goto fail;
        }
        *ret = m;
        return 0;
fail:
        fakesm_free(m);
        return r;
}

FakeSM *fakesm_free(FakeSM *m)
{
        if (!m)
                return NULL;
        (void)fakesm_background(m, false);
        fakesm_store_clear(m);
        free(m->store);
        free(m->status);
        if (m->notify_fd >= 0)
                close(m->notify_fd);
        if (m->path[0])
                unlink(m->path);
        if (m->dir[0])
                rmdir(m->dir);
        pthread_cond_destroy(&m->cond);
        pthread_mutex_destroy(&m->lock);
        free(m);
        return NULL;
}

const char *fakesm_notify_socket(const FakeSM *m)
{
        return m->path;
}

void fakesm_set_output(FakeSM *m, int stdout_fd, int stderr_fd)
{
        pthread_mutex_lock(&m->lock);
        m->out_fd = stdout_fd;
        m->err_fd = stderr_fd;
        pthread_mutex_unlock(&m->lock);
}

void fakesm_set_watchdog(FakeSM *m, uint64_t usec)
{
        pthread_mutex_lock(&m->lock);
        m->watchdog_usec = usec;
        pthread_mutex_unlock(&m->lock);
}

int fakesm_background(FakeSM *m, bool on)
{
        int r = 0;

        if (on == m->thread_on)
                return 0;
        if (on) {
                m->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (m->wake_fd < 0)
                        return -errno;
                m->thread_on = true;
                r = -pthread_create(&m->thread, NULL, reader_thread, m);
                if (r < 0) {
                        m->thread_on = false;
                        close(m->wake_fd);
                        m->wake_fd = -1;
                }
                return r;
        }
        uint64_t one = 1;
        if (write(m->wake_fd, &one, sizeof(one)) < 0)
                r = -errno;
        pthread_join(m->thread, NULL);
        pthread_mutex_lock(&m->lock);
        m->thread_on = false;
        pthread_mutex_unlock(&m->lock);
        close(m->wake_fd);
        m->wake_fd = -1;
        return r;
}

/* ------------------------------------------------------------------ */
/* Spawning                                                             */

/* What the child needs, all allocated before fork. */
typedef struct Plan {
        char *const *argv;
        char **envp;
        char *listen_pid;   /* the digits of "LISTEN_PID=...", filled in the child */
        char *watchdog_pid; /* likewise "WATCHDOG_PID=..." */
        int *src;           /* src[i] goes to fd 3 + i */
        size_t n, n_extra;
        int *owner;         /* owner[fd]: index of src that is fd, or -1 */
        int bound;          /* every fd the child may see is below it */
        int devnull, out, err;
        pid_t parent;
} Plan;

/* Decimal pid into a 16-byte slot, async-signal-safe. */
static void fill_pid(char *slot, pid_t pid)
{
        char tmp[16];
        int n = 0;
        unsigned v = (unsigned)pid;

        do
                tmp[n++] = (char)('0' + v % 10);
        while ((v /= 10) && n < 15);
        while (n > 0)
                *slot++ = tmp[--n];
        *slot = '\0';
}

/* Moves fd out of [0, lowest) if it is there; the (maybe new) fd. */
static int move_up(Plan *p, int fd, int lowest)
{
        if (fd < 0 || fd >= lowest)
                return fd;
        int nfd = fcntl(fd, F_DUPFD_CLOEXEC, lowest);
        if (nfd < 0 || nfd >= p->bound)
                _exit(EXIT_FDS);
        return nfd;
}

/* The child: never returns. */
static void child_exec(Plan *p)
{
        struct sigaction sa = { .sa_handler = SIG_DFL };
        sigset_t none;
        int first_free = 3 + (int)p->n;

        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != p->parent)
                _exit(EXIT_FDS);
        (void)setsid();
        for (int sig = 1; sig < NSIG; sig++)
                (void)sigaction(sig, &sa, NULL);
        sa.sa_handler = SIG_IGN;
        (void)sigaction(SIGPIPE, &sa, NULL);
        sigemptyset(&none);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);
        umask(0022);
        fill_pid(p->listen_pid, getpid());
        fill_pid(p->watchdog_pid, getpid());

        /* Sources among 0-2 would be lost to the stdio below: move them. */
        for (size_t i = 0; i < p->n; i++)
                if (p->src[i] < 3) {
                        p->owner[p->src[i]] = -1;
                        p->src[i] = move_up(p, p->src[i], first_free);
                        p->owner[p->src[i]] = (int)i;
                }
        if (p->out >= 0 && p->out != STDOUT_FILENO)
                p->out = move_up(p, p->out, 3);
        if (p->err >= 0 && p->err != STDERR_FILENO)
                p->err = move_up(p, p->err, 3);
        if (dup2(p->devnull, STDIN_FILENO) < 0 ||
            (p->out >= 0 && dup2(p->out, STDOUT_FILENO) < 0) ||
            (p->err >= 0 && dup2(p->err, STDERR_FILENO) < 0))
                _exit(EXIT_FDS);

        /* Everything that is not a source goes, which frees the slots the
         * moves below need. */
        for (int fd = 3; fd < p->bound;) {
                if (p->owner[fd] >= 0) {
                        fd++;
                        continue;
                }
                int to = fd;
                while (to + 1 < p->bound && p->owner[to + 1] < 0)
                        to++;
                (void)close_range((unsigned)fd, (unsigned)to, 0);
                fd = to + 1;
        }
        (void)close_range((unsigned)p->bound, ~0U, 0);

        /* Place src[i] at 3 + i, first moving away a later source that sits
         * there. */
        for (size_t i = 0; i < p->n; i++) {
                int t = 3 + (int)i, s = p->src[i];
                if (s != t) {
                        int j = p->owner[t];
                        if (j >= 0) {
                                int nt = move_up(p, t, first_free);
                                p->src[j] = nt;
                                p->owner[nt] = j;
                        }
                        if (dup2(s, t) < 0)
                                _exit(EXIT_FDS);
                        p->owner[s] = -1;
                } else if (fcntl(t, F_SETFD, 0) < 0)
                        _exit(EXIT_FDS);
                p->owner[t] = -1;
                if (i < p->n_extra) {
                        int fl = fcntl(t, F_GETFL);
                        if (fl < 0 || fcntl(t, F_SETFL, fl & ~O_NONBLOCK) < 0)
                                _exit(EXIT_FDS);
                }
        }
        (void)close_range((unsigned)first_free, ~0U, 0);

        execve(p->argv[0], p->argv, p->envp);
        _exit(EXIT_EXEC);
}

/* The highest open fd of this process, or -errno. */
static int highest_fd(void)
{
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int hi = -1;

        if (!d)
                return -errno;
        while ((e = readdir(d))) {
                int fd = atoi(e->d_name);
                if (e->d_name[0] != '.' && fd > hi && fd != dirfd(d))
                        hi = fd;
        }
        closedir(d);
        return hi;
}

static bool env_is_ours(const char *e)
{
        static const char *const vars[] = {
                "LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=", "NOTIFY_SOCKET=",
                "WATCHDOG_USEC=", "WATCHDOG_PID=",
        };

        for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
                if (strncmp(e, vars[i], strlen(vars[i])) == 0)
                        return true;
        return false;
}

pid_t fakesm_spawn(FakeSM *m, char *const argv[], const int *extra,
                   const char *const *extra_names, size_t n_extra)
{
        Plan p = { .argv = argv, .n_extra = n_extra, .devnull = -1 };
        char *names = NULL, *s_fds = NULL, *s_notify = NULL, *s_names = NULL;
        char *s_pid = NULL, *s_wd = NULL, *s_wdpid = NULL;
        size_t n_env = 0, names_len = 0;
        pid_t pid;
        int r;

        if (!m || !argv || !argv[0] || (n_extra > 0 && !extra))
                return -EINVAL;
        for (size_t i = 0; i < n_extra; i++) {
                if (extra_names && !fdname_is_valid(extra_names[i]))
                        return -EINVAL;
                if (fcntl(extra[i], F_GETFD) < 0)
                        return -EBADF;
        }

        pthread_mutex_lock(&m->lock);
        /* What systemd did before it reaped the last main process. */
        r = drain_locked(m);
        if (r < 0)
                goto out;
        sweep_locked(m);

        p.n = n_extra + m->n_store;
        p.src = calloc(p.n + 1, sizeof(int));
        if (!p.src) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n_extra; i++) {
                p.src[i] = extra[i];
                names_len += strlen(extra_names ? extra_names[i] : DEFAULT_SOCKET_NAME) + 1;
        }
        for (size_t i = 0; i < m->n_store; i++) {
                const Stored *st = &m->store[m->n_store - 1 - i];
                p.src[n_extra + i] = st->fd;
                names_len += strlen(st->name) + 1;
        }
        for (size_t i = 0; i < p.n; i++)
                for (size_t j = i + 1; j < p.n; j++)
                        if (p.src[i] == p.src[j]) {
                                r = -EINVAL; /* one fd twice: pass a dup */
                                goto out;
                        }

        /* Environment: ours, then the test's without systemd's variables. */
        names = calloc(names_len + 1, 1);
        if (!names) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < p.n; i++) {
                const char *nm = i < n_extra ? (extra_names ? extra_names[i] : DEFAULT_SOCKET_NAME)
                                             : m->store[m->n_store - 1 - (i - n_extra)].name;
                if (i > 0)
                        strcat(names, ":");
                strcat(names, nm);
        }
        for (char **e = environ; *e; e++)
                n_env++;
        p.envp = calloc(n_env + 8, sizeof(char *));
        if (!p.envp || asprintf(&s_notify, "NOTIFY_SOCKET=%s", m->path) < 0 ||
            asprintf(&s_fds, "LISTEN_FDS=%zu", p.n) < 0 ||
            asprintf(&s_names, "LISTEN_FDNAMES=%s", names) < 0 ||
            asprintf(&s_pid, "LISTEN_PID=%16s", "") < 0 ||
            asprintf(&s_wd, "WATCHDOG_USEC=%llu", (unsigned long long)m->watchdog_usec) < 0 ||
            asprintf(&s_wdpid, "WATCHDOG_PID=%16s", "") < 0) {
                r = -ENOMEM;
                goto out;
        }
        p.listen_pid = s_pid + strlen("LISTEN_PID=");
        p.watchdog_pid = s_wdpid + strlen("WATCHDOG_PID=");
        n_env = 0;
        p.envp[n_env++] = s_notify;
        if (p.n > 0) {
                p.envp[n_env++] = s_fds;
                p.envp[n_env++] = s_names;
                p.envp[n_env++] = s_pid;
        }
        if (m->watchdog_usec > 0) {
                p.envp[n_env++] = s_wd;
                p.envp[n_env++] = s_wdpid;
        }
        for (char **e = environ; *e; e++)
                if (!env_is_ours(*e))
                        p.envp[n_env++] = *e;

        /* The owner table covers every fd the child can have. */
        p.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (p.devnull < 0) {
                r = -errno;
                goto out;
        }
        p.out = m->out_fd;
        p.err = m->err_fd;
        int hi = highest_fd();
        if (hi < 0) {
                r = hi;
                goto out;
        }
        p.bound = (hi > 3 + (int)p.n ? hi : 3 + (int)p.n) + (int)p.n + 8;
        p.owner = malloc((size_t)p.bound * sizeof(int));
        if (!p.owner) {
                r = -ENOMEM;
                goto out;
        }
        for (int fd = 0; fd < p.bound; fd++)
                p.owner[fd] = -1;
        for (size_t i = 0; i < p.n; i++)
                p.owner[p.src[i]] = (int)i;
        p.parent = getpid();

        pid = fork();
        if (pid < 0) {
                r = -errno;
                goto out;
        }
        if (pid == 0)
                child_exec(&p);

        m->main_pid = m->spawned_pid = pid;
        m->state = FAKESM_STARTING;
        m->ready = false;
        free(m->status);
        m->status = NULL;
        m->stats.status_errno = 0;
        r = (int)pid;
out:
        pthread_mutex_unlock(&m->lock);
        if (p.devnull >= 0)
                close(p.devnull);
        free(p.owner);
        free(p.envp);
        free(p.src);
        free(names);
        free(s_fds);
        free(s_notify);
        free(s_names);
        free(s_pid);
        free(s_wd);
        free(s_wdpid);
        return (pid_t)r;
}

void fakesm_set_main_pid(FakeSM *m, pid_t pid)
{
        pthread_mutex_lock(&m->lock);
        m->main_pid = pid;
        m->state = pid > 0 ? FAKESM_STARTING : FAKESM_DEAD;
        m->ready = false;
        pthread_mutex_unlock(&m->lock);
}

pid_t fakesm_main_pid(const FakeSM *m)
{
        FakeSM *w = unconst(m);
        pid_t pid;

        pthread_mutex_lock(&w->lock);
        pid = w->main_pid;
        pthread_mutex_unlock(&w->lock);
        return pid;
}

/* ------------------------------------------------------------------ */
/* Waiting                                                              */

int fakesm_process(FakeSM *m, int timeout_ms)
{
        int r;

        pthread_mutex_lock(&m->lock);
        r = process_locked(m, timeout_ms);
        pthread_mutex_unlock(&m->lock);
        return r;
}

int fakesm_wait_ready(FakeSM *m, int timeout_ms)
{
        int64_t end = now_ns() + (timeout_ms > 0 ? timeout_ms : 0) * NSEC_PER_MSEC;
        siginfo_t si;
        int r = 0;

        pthread_mutex_lock(&m->lock);
        for (;;) {
                r = process_locked(m, 0);
                if (r < 0 || m->ready) {
                        r = r < 0 ? r : 0;
                        break;
                }
                /* Exited (not reaped: WNOWAIT) without READY=1?  What it
                 * queued before is in by now: the drain above ran after. */
                memset(&si, 0, sizeof(si));
                if (m->spawned_pid > 0 && m->spawned_pid == m->main_pid &&
                    waitid(P_PID, (id_t)m->spawned_pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                    si.si_pid == m->spawned_pid) {
                        r = process_locked(m, 0);
                        r = r < 0 ? r : m->ready ? 0 : -ESRCH;
                        break;
                }
                int64_t left = end - now_ns();
                if (left <= 0) {
                        r = -ETIMEDOUT;
                        break;
                }
                r = process_locked(m, left < 20 * NSEC_PER_MSEC ? ms_until(left) : 20);
                if (r < 0)
                        break;
        }
        pthread_mutex_unlock(&m->lock);
        return r;
}

int fakesm_reap_main(FakeSM *m, int timeout_ms, int *ret_status)
{
        int64_t end = now_ns() + (timeout_ms > 0 ? timeout_ms : 0) * NSEC_PER_MSEC;
        pid_t pid;
        int status, r;

        pthread_mutex_lock(&m->lock);
        pid = m->spawned_pid;
        pthread_mutex_unlock(&m->lock);
        if (pid <= 0)
                return -ECHILD;
        for (;;) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                if (w == pid)
                        break;
                if (w < 0)
                        return -errno;
                if (now_ns() >= end)
                        return -ETIMEDOUT;
                usleep(1000);
        }
        pthread_mutex_lock(&m->lock);
        r = process_locked(m, 0);
        m->spawned_pid = 0;
        m->main_pid = 0;
        m->state = FAKESM_DEAD;
        pthread_mutex_unlock(&m->lock);
        if (ret_status)
                *ret_status = status;
        return r < 0 ? r : 0;
}

/* ------------------------------------------------------------------ */
/* State and store access                                               */

FakeSMState fakesm_state(const FakeSM *m)
{
        FakeSM *w = unconst(m);
        FakeSMState s;

        pthread_mutex_lock(&w->lock);
        s = w->state;
        pthread_mutex_unlock(&w->lock);
        return s;
}

void fakesm_stats(const FakeSM *m, FakeSMStats *ret)
{
        FakeSM *w = unconst(m);

        pthread_mutex_lock(&w->lock);
        *ret = w->stats;
        pthread_mutex_unlock(&w->lock);
}

bool fakesm_status(const FakeSM *m, char *buf, size_t len)
{
        FakeSM *w = unconst(m);
        bool set;

        pthread_mutex_lock(&w->lock);
        set = w->status != NULL;
        if (len > 0)
                snprintf(buf, len, "%s", set ? w->status : "");
        pthread_mutex_unlock(&w->lock);
        return set;
}

size_t fakesm_store_count(const FakeSM *m)
{
        FakeSM *w = unconst(m);
        size_t n;

        pthread_mutex_lock(&w->lock);
        sweep_locked(w);
        n = w->n_store;
        pthread_mutex_unlock(&w->lock);
        return n;
}

int fakesm_store_fd(const FakeSM *m, const char *name)
{
        FakeSM *w = unconst(m);
        int fd = -ENOENT;

        pthread_mutex_lock(&w->lock);
        sweep_locked(w);
        for (size_t i = w->n_store; i-- > 0;)
                if (strcmp(w->store[i].name, name) == 0) {
                        fd = w->store[i].fd;
                        break;
                }
        pthread_mutex_unlock(&w->lock);
        return fd;
}

size_t fakesm_store_count_name(const FakeSM *m, const char *name)
{
        FakeSM *w = unconst(m);
        size_t n = 0;

        pthread_mutex_lock(&w->lock);
        sweep_locked(w);
        for (size_t i = 0; i < w->n_store; i++)
                n += strcmp(w->store[i].name, name) == 0;
        pthread_mutex_unlock(&w->lock);
        return n;
}

int fakesm_store_get(const FakeSM *m, size_t i, char *name, size_t len)
{
        FakeSM *w = unconst(m);
        int fd = -ENOENT;

        pthread_mutex_lock(&w->lock);
        sweep_locked(w);
        if (i < w->n_store) {
                const Stored *st = &w->store[w->n_store - 1 - i];
                fd = st->fd;
                if (name && len > 0)
                        snprintf(name, len, "%s", st->name);
        }
        pthread_mutex_unlock(&w->lock);
        return fd;
}

int fakesm_store_names(const FakeSM *m, char *buf, size_t len)
{
        FakeSM *w = unconst(m);
        size_t o = 0;
        int r = 0;

        if (len == 0)
                return -ENOBUFS;
        buf[0] = '\0';
        pthread_mutex_lock(&w->lock);
        sweep_locked(w);
        for (size_t i = w->n_store; i-- > 0;) {
                int k = snprintf(buf + o, len - o, "%s%s", o > 0 || i + 1 < w->n_store ? ":" : "",
                                 w->store[i].name);
                if (k < 0 || (size_t)k >= len - o) {
                        r = -ENOBUFS;
                        break;
                }
                o += (size_t)k;
        }
        pthread_mutex_unlock(&w->lock);
        return r < 0 ? r : (int)o;
}

int fakesm_store_add(FakeSM *m, int fd, const char *name, bool do_poll)
{
        int copy, r;

        copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return -errno;
        pthread_mutex_lock(&m->lock);
        if (name && !fdname_is_valid(name)) {
                m->stats.bad_names++;
                name = NULL;
        }
        r = store_add_locked(m, copy, name, do_poll);
        pthread_mutex_unlock(&m->lock);
        return r;
}

void fakesm_store_clear(FakeSM *m)
{
        pthread_mutex_lock(&m->lock);
        while (m->n_store > 0)
                stored_drop(m, m->n_store - 1);
        pthread_mutex_unlock(&m->lock);
}

int fakesm_netpolld_new(FakeSMNetpolld *ret, const char *name, unsigned store_max,
                        bool background)
{
        FakeSMNetpolld d = { .listen_fd = -1 };
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        int r;

        if (!ret || !name ||
            (size_t)snprintf(d.dir, sizeof(d.dir), "/tmp/%s-XXXXXX", name) >= sizeof(d.dir))
                return -EINVAL;
        if (!mkdtemp(d.dir))
                return -errno;
        snprintf(d.sock, sizeof(d.sock), "%s/np.sock", d.dir);
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", d.sock);
        d.listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (d.listen_fd < 0 || bind(d.listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
            listen(d.listen_fd, SOMAXCONN) < 0) {
                r = -errno;
                goto fail;
        }
        r = fakesm_new(&d.m, store_max);
        if (r < 0)
                goto fail;
        if (background) {
                r = fakesm_background(d.m, true);
                if (r < 0)
                        goto fail;
        }
        *ret = d;
        return 0;
fail:
        fakesm_netpolld_free(&d, 0);
        return r;
}

int fakesm_netpolld_spawn(FakeSMNetpolld *d, char *const argv[], int timeout_ms)
{
        static const char *const names[] = { "netpolld.socket" };

        if (!d || !d->m || d->listen_fd < 0)
                return -EINVAL;
        pid_t pid = fakesm_spawn(d->m, argv, &d->listen_fd, names, 1);
        if (pid < 0)
                return (int)pid;
        d->pid = pid;
        return fakesm_wait_ready(d->m, timeout_ms);
}

void fakesm_netpolld_free(FakeSMNetpolld *d, int sig)
{
        if (d->pid > 0 && d->m && sig) {
                kill(d->pid, sig);
                (void)fakesm_reap_main(d->m, 10000, NULL);
        }
        d->pid = 0;
        d->m = fakesm_free(d->m);
        if (d->listen_fd >= 0) {
                close(d->listen_fd);
                d->listen_fd = -1;
                unlink(d->sock);
        }
        if (d->dir[0])
                rmdir(d->dir);
        d->dir[0] = '\0';
}
