/*
 * Black-box tests of libnetpoll against the real daemon: every call of
 * netpoll.h with its documented outcomes and errors, and the scenarios a
 * runtime built on it depends on (deadlines never early, extended, refreshed
 * or moved into the past while a wait is parked; unblock waking both
 * directions; a killed client's descriptors released; many threads on one
 * connection; np_break from a signal handler; calls taking effect in order).
 *
 * Each test starts its own netpolld on a temporary socket and stops it at
 * the end, asserting a clean exit.  Waits that must park run in threads; the
 * test learns that they are parked from np_session_stats (a round trip to
 * the daemon), never from a sleep.  Readiness is made visible to the daemon
 * before a request by writing first and then making a round trip: epoll
 * reports the descriptor before the connection's later datagram.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "netpoll.h"

#define MS INT64_C(1000000)
#define SEC INT64_C(1000000000)
#define TEST_TIMEOUT 30
#define MAX_FDS 4096

/* ---- helpers ---- */

static void stop_ok(TestDaemon *d)
{
        int st = test_daemon_stop(d);

        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "netpolld did not exit 0 (status %#x)",
                      st);
}

/* Starts a daemon with default settings and connects one client to it. */
static np_client *start(TestDaemon *d)
{
        np_client *c = NULL;

        test_daemon_start(d, NULL, 0, false);
        ck_assert_int_eq(np_connect(d->sock, &c), 0);
        ck_assert_ptr_nonnull(c);
        return c;
}

static void finish(TestDaemon *d, np_client *c)
{
        np_disconnect(c);
        stop_ok(d);
}

static void mkpipe(int p[2])
{
        ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
}

static void mksocketpair(int sv[2])
{
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static void close2(int p[2])
{
        close(p[0]);
        close(p[1]);
}

/* Writes to a non-blocking fd until it would block. */
static void fill(int fd)
{
        static char buf[65536];
        ssize_t n;

        while ((n = write(fd, buf, sizeof(buf))) > 0)
                ;
        ck_assert_int_eq(errno, EAGAIN);
        /* A stream socket may take a few more small writes. */
        while (write(fd, buf, 1) > 0)
                ;
}

static void drain(int fd)
{
        char buf[65536];

        while (read(fd, buf, sizeof(buf)) > 0)
                ;
}

static void put(int fd)
{
        ck_assert_int_eq(write(fd, "x", 1), 1);
}

static struct np_session_stats stats(np_client *c)
{
        struct np_session_stats st;

        memset(&st, 0xff, sizeof(st));
        ck_assert_int_eq(np_session_stats(c, &st), 0);
        return st;
}

static void assert_stats(np_client *c, uint64_t descriptors, uint64_t waiters, uint64_t timers)
{
        struct np_session_stats st = stats(c);

        ck_assert_uint_eq(st.descriptors, descriptors);
        ck_assert_uint_eq(st.waiters, waiters);
        ck_assert_uint_eq(st.timers, timers);
}

/* Polls (at most 10 s) until this connection has n parked waits. */
static void await_waiters(np_client *c, uint64_t n)
{
        struct np_session_stats st = { 0 };

        for (int i = 0; i < 2000; i++) {
                st = stats(c);
                if (st.waiters == n)
                        return;
                usleep(5000);
        }
        ck_abort_msg("waiters stayed %llu, expected %llu", (unsigned long long)st.waiters,
                     (unsigned long long)n);
}

/*
 * The daemon's fd count once it is idle.  Its loop opens files for a moment
 * (/proc/self/... for its status), so a single reading may be one too high:
 * take the value three readings in a row agree on.
 */
static int daemon_fds(pid_t pid)
{
        int last = -1, same = 0;

        for (int i = 0; i < 2000; i++) {
                int n = fd_count_of(pid);
                ck_assert_int_ge(n, 0);
                same = n == last ? same + 1 : 0;
                last = n;
                if (same == 2)
                        return n;
                usleep(1000);
        }
        ck_abort_msg("netpolld's fd count never settled");
        return -1;
}

/* Polls (at most 10 s) until the daemon holds n fds. */
static void await_daemon_fds(pid_t pid, int n)
{
        int have = -1;

        for (int i = 0; i < 2000; i++) {
                have = fd_count_of(pid);
                if (have == n && daemon_fds(pid) == n)
                        return;
                usleep(5000);
        }
        ck_abort_msg("netpolld holds %d fds, expected %d", have, n);
}

static np_desc open_ok(np_client *c, int fd, uint64_t user)
{
        np_desc d = 0;

        ck_assert_int_eq(np_open(c, fd, user, &d), 0);
        ck_assert_uint_ne(d, 0);
        return d;
}

static void close_desc(np_client *c, np_desc d)
{
        ck_assert_int_eq(np_unblock(c, d), 0);
        ck_assert_int_eq(np_close(c, d), 0);
}

/* A thread parked in np_wait or np_wait_canceled. */
typedef struct Waiter {
        np_client *c;
        np_desc d;
        int mode;
        bool canceled;
        int result;
        int64_t end;
        atomic_bool done;
        pthread_t thread;
} Waiter;

static void *waiter_run(void *arg)
{
        Waiter *w = arg;

        if (w->canceled)
                w->result = np_wait_canceled(w->c, w->d, w->mode);
        else
                w->result = np_wait(w->c, w->d, w->mode);
        w->end = test_now();
        atomic_store(&w->done, true);
        return NULL;
}

static void waiter_start(Waiter *w, np_client *c, np_desc d, int mode, bool canceled)
{
        *w = (Waiter){ .c = c, .d = d, .mode = mode, .canceled = canceled, .result = -1000 };
        atomic_init(&w->done, false);
        ck_assert_int_eq(pthread_create(&w->thread, NULL, waiter_run, w), 0);
}

static int waiter_join(Waiter *w)
{
        ck_assert_int_eq(pthread_join(w->thread, NULL), 0);
        return w->result;
}

/* A thread blocked in np_poll. */
typedef struct Poller {
        np_client *c;
        int64_t delay;
        np_event ev[8];
        int result;
        atomic_int tid;
        atomic_bool done;
        pthread_t thread;
} Poller;

static void *poller_run(void *arg)
{
        Poller *p = arg;

        atomic_store(&p->tid, (int)gettid());
        p->result = np_poll(p->c, p->delay, p->ev, 8);
        atomic_store(&p->done, true);
        return NULL;
}

static void poller_start(Poller *p, np_client *c, int64_t delay)
{
        *p = (Poller){ .c = c, .delay = delay, .result = -1000 };
        atomic_init(&p->tid, 0);
        atomic_init(&p->done, false);
        ck_assert_int_eq(pthread_create(&p->thread, NULL, poller_run, p), 0);
}

/* The syscall number thread tid of this process is blocked in, or -1. */
static long thread_syscall(int tid)
{
        char path[64], buf[256];
        long nr = -1;

        snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        if (fgets(buf, sizeof(buf), f) && sscanf(buf, "%ld", &nr) != 1)
                nr = -1;
        fclose(f);
        return nr;
}

/* Polls (at most 10 s) until the poller thread sleeps in ppoll or on a
 * futex (the condition variable of a non-reading thread). */
static void await_poller_blocked(Poller *p)
{
        for (int i = 0; i < 2000; i++) {
                int tid = atomic_load(&p->tid);
                long nr = tid ? thread_syscall(tid) : -1;
                if (nr == SYS_ppoll || nr == SYS_futex)
                        return;
                ck_assert_msg(!atomic_load(&p->done), "np_poll returned %d early", p->result);
                usleep(5000);
        }
        ck_abort_msg("np_poll thread never blocked");
}

/* Lists this process's open fds into set (MAX_FDS entries). */
static void list_fds(bool *set)
{
        DIR *dir = opendir("/proc/self/fd");
        struct dirent *e;

        ck_assert_ptr_nonnull(dir);
        memset(set, 0, MAX_FDS * sizeof(*set));
        while ((e = readdir(dir))) {
                int fd = atoi(e->d_name);
                if (e->d_name[0] != '.' && fd != dirfd(dir) && fd < MAX_FDS)
                        set[fd] = true;
        }
        closedir(dir);
}

/* What /proc/PID/fd/FD links to ("" on error). */
static void fd_link(pid_t pid, int fd, char *buf, size_t len)
{
        char path[64];

        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
        ssize_t n = readlink(path, buf, len - 1);
        buf[n > 0 ? n : 0] = '\0';
}

/* Connects to sock and reports the two fds np_connect added: the client's
 * socket and its break eventfd. */
static np_client *connect_find_fds(const char *sock, int *ret_sock, int *ret_evfd)
{
        static bool before[MAX_FDS], after[MAX_FDS];
        np_client *c = NULL;
        int found = 0;

        *ret_sock = *ret_evfd = -1;
        list_fds(before);
        ck_assert_int_eq(np_connect(sock, &c), 0);
        list_fds(after);
        for (int fd = 0; fd < MAX_FDS; fd++) {
                if (!after[fd] || before[fd])
                        continue;
                char link[128];
                found++;
                fd_link(getpid(), fd, link, sizeof(link));
                if (strncmp(link, "socket:[", 8) == 0)
                        *ret_sock = fd;
                else if (strcmp(link, "anon_inode:[eventfd]") == 0)
                        *ret_evfd = fd;
        }
        ck_assert_int_eq(found, 2);
        ck_assert_int_ge(*ret_sock, 0);
        ck_assert_int_ge(*ret_evfd, 0);
        return c;
}

/* ---- np_connect ---- */

START_TEST(test_api_connect_explicit_path_handshakes)
{
        TestDaemon d;
        np_client *c = start(&d);
        struct np_status st;

        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_status(c, &st), 0);
        ck_assert_int_eq(st.pid, d.pid);
        ck_assert_uint_eq(st.connections, 1);
        ck_assert_str_eq(st.version, NETPOLL_VERSION);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_connect_null_uses_env_socket)
{
        TestDaemon d;
        np_client *c = NULL;
        struct np_status st;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(setenv("NETPOLL_SOCKET", d.sock, 1), 0);
        ck_assert_int_eq(np_connect(NULL, &c), 0);
        ck_assert_int_eq(np_status(c, &st), 0);
        ck_assert_int_eq(st.pid, d.pid);
        np_disconnect(c);
        stop_ok(&d);
}
END_TEST

/* The default path is reached in a private mount namespace with a tmpfs on
 * /run, so the host's /run is never touched.  The tmpfs must not propagate
 * back to the host: the mount it lands on is made private first, "/" or,
 * where "/" is not a mount point (a chroot: EINVAL), /run itself.  Where
 * neither is a mount point the test is skipped, saying so. */
START_TEST(test_api_connect_null_uses_default_socket)
{
        TestDaemon d;
        np_client *c = NULL;
        struct np_status st;

        ck_assert_msg(unshare(CLONE_NEWNS) == 0, "unshare(CLONE_NEWNS): %s", strerror(errno));
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
                ck_assert_msg(errno == EINVAL, "making / private: %s", strerror(errno));
                if (mount(NULL, "/run", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
                        ck_assert_msg(errno == EINVAL || errno == ENOENT, "making /run private: %s",
                                      strerror(errno));
                        fprintf(stderr, "SKIP test_api_connect_null_uses_default_socket: "
                                        "neither / nor /run is a mount point (a chroot?), so "
                                        "a tmpfs on /run could not be kept from the host\n");
                        return;
                }
        }
        ck_assert_int_eq(mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"), 0);
        unsetenv("NETPOLL_SOCKET");

        ck_assert_int_eq(np_connect(NULL, &c), -ENOENT);
        ck_assert_ptr_null(c);

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(mkdir("/run/netpolld", 0755), 0);
        ck_assert_int_eq(symlink(d.sock, NP_DEFAULT_SOCKET), 0);
        ck_assert_int_eq(np_connect(NULL, &c), 0);
        ck_assert_int_eq(np_status(c, &st), 0);
        ck_assert_int_eq(st.pid, d.pid);
        np_disconnect(c);

        /* An empty $NETPOLL_SOCKET means the default too. */
        c = NULL;
        ck_assert_int_eq(setenv("NETPOLL_SOCKET", "", 1), 0);
        ck_assert_int_eq(np_connect(NULL, &c), 0);
        ck_assert_int_eq(np_status(c, &st), 0);
        ck_assert_int_eq(st.pid, d.pid);
        np_disconnect(c);

        unlink(NP_DEFAULT_SOCKET);
        rmdir("/run/netpolld");
        stop_ok(&d);
}
END_TEST

START_TEST(test_api_connect_without_daemon_fails)
{
        static char sentinel;
        char dir[] = "/tmp/np-api-XXXXXX", path[108];
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        np_client *c = (np_client *)&sentinel;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/none.sock", dir);
        ck_assert_int_eq(np_connect(path, &c), -ENOENT);
        ck_assert_ptr_eq(c, &sentinel);

        /* A stale socket file: bound once, nobody listening now. */
        snprintf(path, sizeof(path), "%s/stale.sock", dir);
        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
        int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(s, 0);
        ck_assert_int_eq(bind(s, (struct sockaddr *)&addr, sizeof(addr)), 0);
        close(s);
        ck_assert_int_eq(np_connect(path, &c), -ECONNREFUSED);
        ck_assert_ptr_eq(c, &sentinel);

        /* Through $NETPOLL_SOCKET as well. */
        ck_assert_int_eq(setenv("NETPOLL_SOCKET", path, 1), 0);
        ck_assert_int_eq(np_connect(NULL, &c), -ECONNREFUSED);
        ck_assert_ptr_eq(c, &sentinel);

        unlink(path);
        rmdir(dir);
}
END_TEST

/* ---- np_disconnect ---- */

START_TEST(test_api_disconnect_releases_everything)
{
        TestDaemon d;
        np_client *obs = start(&d), *c = NULL;
        struct np_status st;
        int p[3][2];
        np_desc ds[3];

        signal(SIGPIPE, SIG_IGN);
        int base = daemon_fds(d.pid);
        ck_assert_int_gt(base, 0);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        for (int i = 0; i < 3; i++) {
                mkpipe(p[i]);
                ds[i] = open_ok(c, p[i][0], (uint64_t)i);
                ck_assert_int_eq(np_set_deadline(c, ds[i], 10 * SEC, NP_READ), 0);
                ck_assert_int_eq(np_arm(c, ds[i], NP_READ), 0);
                close(p[i][0]); /* only the daemon's copy of the read end is left */
        }
        assert_stats(c, 3, 3, 3);
        /* The connection, its epoll set and the three pipes. */
        ck_assert_int_eq(daemon_fds(d.pid), base + 1 + 1 + 3);
        ck_assert_int_eq(np_status(obs, &st), 0);
        ck_assert_uint_eq(st.connections, 2);
        ck_assert_uint_eq(st.descriptors, 3);
        ck_assert_uint_eq(st.waiters, 3);
        ck_assert_uint_eq(st.timers, 3);

        np_disconnect(c);
        await_daemon_fds(d.pid, base);
        ck_assert_int_eq(np_status(obs, &st), 0);
        ck_assert_uint_eq(st.connections, 1);
        ck_assert_uint_eq(st.descriptors, 0);
        ck_assert_uint_eq(st.waiters, 0);
        ck_assert_uint_eq(st.timers, 0);
        assert_stats(obs, 0, 0, 0);
        for (int i = 0; i < 3; i++) {
                /* No reader is left anywhere: the daemon closed its copy. */
                ck_assert_int_eq(write(p[i][1], "x", 1), -1);
                ck_assert_int_eq(errno, EPIPE);
                close(p[i][1]);
        }
        finish(&d, obs);
}
END_TEST

/* ---- np_open ---- */

START_TEST(test_api_open_caller_keeps_fd_and_user_comes_back)
{
        TestDaemon d;
        np_client *c = start(&d);
        const uint64_t cookie = UINT64_C(0xfeedface12345678);
        np_event ev[4];
        char b;
        int p[2];

        signal(SIGPIPE, SIG_IGN);
        int base = daemon_fds(d.pid);
        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], cookie);
        ck_assert_int_ge(fcntl(p[0], F_GETFD), 0);
        /* Its copy, and the connection's epoll set made by its first open. */
        ck_assert_int_eq(daemon_fds(d.pid), base + 2);
        assert_stats(c, 1, 0, 0);

        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        put(p[1]);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_uint_eq(ev[0].desc, d1);
        ck_assert_uint_eq(ev[0].user, cookie);
        ck_assert_int_eq(ev[0].mode, NP_READ);
        ck_assert_int_eq(ev[0].result, NP_OK);
        ck_assert_int_eq(read(p[0], &b, 1), 1); /* our fd still works */

        /* The daemon's copy keeps the pipe's read side open... */
        close(p[0]);
        ck_assert_int_eq(write(p[1], "y", 1), 1);
        /* ...until np_close. */
        close_desc(c, d1);
        await_daemon_fds(d.pid, base + 1); /* the epoll set stays with the connection */
        ck_assert_int_eq(write(p[1], "z", 1), -1);
        ck_assert_int_eq(errno, EPIPE);
        close(p[1]);
        assert_stats(c, 0, 0, 0);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_open_bad_fd_is_ebadf)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_desc d1 = 777;
        int fd = dup(STDERR_FILENO);

        ck_assert_int_ge(fd, 0);
        close(fd);
        ck_assert_int_eq(np_open(c, fd, 0, &d1), -EBADF);
        ck_assert_int_eq(np_open(c, -1, 0, &d1), -EBADF);
        ck_assert_uint_eq(d1, 777);
        assert_stats(c, 0, 0, 0);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_open_not_pollable_is_eperm)
{
        TestDaemon d;
        np_client *c = start(&d);
        char path[] = "/tmp/np-api-file-XXXXXX";
        np_desc d1 = 777;
        int fds[3];

        int base = daemon_fds(d.pid);
        fds[0] = mkstemp(path);
        ck_assert_int_ge(fds[0], 0);
        unlink(path);
        fds[1] = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        fds[2] = open("/dev/null", O_RDWR | O_CLOEXEC);
        for (int i = 0; i < 3; i++) {
                ck_assert_int_ge(fds[i], 0);
                ck_assert_int_eq(np_open(c, fds[i], 0, &d1), -EPERM);
                ck_assert_uint_eq(d1, 777);
                ck_assert_int_ge(fcntl(fds[i], F_GETFD), 0); /* still the caller's */
                close(fds[i]);
        }
        assert_stats(c, 0, 0, 0);
        ck_assert_int_eq(daemon_fds(d.pid), base); /* nothing kept by the daemon */
        finish(&d, c);
}
END_TEST

/*
 * The kernel lets one file sit in at most 500 nested epoll sets (each dup'd
 * fd counts); the daemon registers a descriptor past that limit in its
 * main set.  One connection may register a file 16 times, so 33 of them
 * take it past the limit.  Both kinds must deliver readiness and close
 * cleanly.
 */
START_TEST(test_api_same_file_past_the_nesting_limit_is_served)
{
        enum { PER = 16, CONNS = 33, N = PER * CONNS };
        TestDaemon d;
        np_client *c[CONNS];
        np_desc ds[N];
        np_event ev[4];
        int p[2], seen_first = 0, seen_last = 0;

        signal(SIGPIPE, SIG_IGN);
        c[0] = start(&d);
        for (int k = 1; k < CONNS; k++)
                ck_assert_int_eq(np_connect(d.sock, &c[k]), 0);
        mkpipe(p);
        int base = daemon_fds(d.pid);
        for (int i = 0; i < N; i++) /* a new daemon copy each time */
                ds[i] = open_ok(c[i / PER], p[0], (uint64_t)i);
        /* Each connection's epoll set, and the copies. */
        ck_assert_int_eq(daemon_fds(d.pid), base + CONNS + N);
        ck_assert_int_eq(np_arm(c[0], ds[0], NP_READ), 0);
        ck_assert_int_eq(np_arm(c[CONNS - 1], ds[N - 1], NP_READ), 0);
        put(p[1]);
        for (int i = 0; i < 10 && !(seen_first && seen_last); i++) {
                np_client *on = seen_first ? c[CONNS - 1] : c[0];
                int n = np_poll(on, 5 * SEC, ev, 4);
                ck_assert_int_ge(n, 0);
                for (int j = 0; j < n; j++) {
                        ck_assert_int_eq(ev[j].result, NP_OK);
                        seen_first += on == c[0] && ev[j].desc == ds[0];
                        seen_last += on == c[CONNS - 1] && ev[j].desc == ds[N - 1];
                }
        }
        ck_assert_int_eq(seen_first, 1);
        ck_assert_int_eq(seen_last, 1);
        for (int i = 0; i < N; i++)
                close_desc(c[i / PER], ds[i]);
        await_daemon_fds(d.pid, base + CONNS);
        /* Every copy is closed: with ours gone, the write end sees EPIPE. */
        close(p[0]);
        ck_assert_int_eq(write(p[1], "z", 1), -1);
        ck_assert_int_eq(errno, EPIPE);
        close(p[1]);
        for (int k = 1; k < CONNS; k++)
                np_disconnect(c[k]);
        finish(&d, c[0]);
}
END_TEST

START_TEST(test_api_open_own_library_fds_is_einval)
{
        TestDaemon d;
        int sock, evfd;
        np_desc d1 = 777;

        test_daemon_start(&d, NULL, 0, false);
        np_client *c = connect_find_fds(d.sock, &sock, &evfd);
        ck_assert_int_eq(np_open(c, sock, 0, &d1), -EINVAL);
        ck_assert_int_eq(np_open(c, evfd, 0, &d1), -EINVAL);
        /* Another fd number for the same open file is still ours. */
        int dsock = dup(sock), devfd = dup(evfd);
        ck_assert_int_ge(dsock, 0);
        ck_assert_int_ge(devfd, 0);
        ck_assert_int_eq(np_open(c, dsock, 0, &d1), -EINVAL);
        ck_assert_int_eq(np_open(c, devfd, 0, &d1), -EINVAL);
        close(dsock);
        close(devfd);
        ck_assert_uint_eq(d1, 777);
        assert_stats(c, 0, 0, 0);
        ck_assert_int_eq(np_ping(c), 0); /* the connection is fine */
        finish(&d, c);
}
END_TEST

START_TEST(test_api_open_over_quota_is_edquot)
{
        static const char conf_text[] = "[limits]\nmax_descriptors_per_connection = 4\n";
        char conf[] = "/tmp/np-api-conf-XXXXXX";
        TestDaemon d;
        np_client *c = NULL, *c2 = NULL;
        int p[6][2], f = mkstemp(conf);
        np_desc ds[6];

        ck_assert_int_ge(f, 0);
        ssize_t len = (ssize_t)sizeof(conf_text) - 1;
        ck_assert_int_eq(write(f, conf_text, (size_t)len), len);
        close(f);
        const char *const args[] = { "--config", conf, NULL };
        test_daemon_start(&d, args, 0, false);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        ck_assert_int_eq(np_connect(d.sock, &c2), 0);
        for (int i = 0; i < 6; i++)
                mkpipe(p[i]);
        for (int i = 0; i < 4; i++)
                ds[i] = open_ok(c, p[i][0], (uint64_t)i);
        ds[4] = 777;
        ck_assert_int_eq(np_open(c, p[4][0], 4, &ds[4]), -EDQUOT);
        ck_assert_uint_eq(ds[4], 777);
        ck_assert_int_ge(fcntl(p[4][0], F_GETFD), 0);
        assert_stats(c, 4, 0, 0);

        /* The quota is per connection. */
        np_desc other = open_ok(c2, p[5][0], 5);
        close_desc(c2, other);

        /* Closing one makes room for exactly one. */
        close_desc(c, ds[0]);
        ds[0] = open_ok(c, p[4][0], 4);
        ck_assert_int_eq(np_open(c, p[5][0], 5, &ds[5]), -EDQUOT);
        assert_stats(c, 4, 0, 0);

        for (int i = 0; i < 4; i++)
                close_desc(c, ds[i]);
        for (int i = 0; i < 6; i++)
                close2(p[i]);
        np_disconnect(c2);
        finish(&d, c);
        unlink(conf);
}
END_TEST

/* Writes text to a new temporary file named from tmpl (modified). */
static void write_conf(char *tmpl, const char *text)
{
        int f = mkstemp(tmpl);
        ssize_t len = (ssize_t)strlen(text);

        ck_assert_int_ge(f, 0);
        ck_assert_int_eq(write(f, text, (size_t)len), len);
        close(f);
}

/* Opens pipes' read ends on c until np_open fails; returns how many
 * succeeded (their write ends in w[], descriptors in ds[]) and the error. */
static int open_until_refused(np_client *c, int *w, np_desc *ds, int max, int *ret_error)
{
        int n = 0, p[2];

        for (;;) {
                ck_assert_int_lt(n, max);
                mkpipe(p);
                int r = np_open(c, p[0], (uint64_t)n, &ds[n]);
                close(p[0]);
                if (r < 0) {
                        close(p[1]);
                        *ret_error = r;
                        return n;
                }
                w[n++] = p[1];
        }
}

START_TEST(test_api_open_over_uid_quota_is_edquot)
{
        char conf[] = "/tmp/np-api-conf-XXXXXX";
        TestDaemon d;
        np_client *c = NULL, *c2 = NULL;
        int w[32], w2[32], n, n2, r;
        np_desc ds[32], ds2[32];

        /* 20 fds for the uid: each connection's socket and epoll set count. */
        write_conf(conf, "[limits]\nmax_descriptors_per_uid = 20\n");
        const char *const args[] = { "--config", conf, NULL };
        test_daemon_start(&d, args, 0, false);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        n = open_until_refused(c, w, ds, 32, &r);
        ck_assert_int_eq(r, -EDQUOT);
        ck_assert_int_eq(n, 20 - 2);
        /* Another connection of the same uid: its socket is the 21st. */
        ck_assert_int_eq(np_connect(d.sock, &c2), 0);
        n2 = open_until_refused(c2, w2, ds2, 32, &r);
        ck_assert_int_eq(r, -EDQUOT);
        ck_assert_int_eq(n2, 0);
        /* A close frees its share once the fd is really closed (off the
         * loop thread, so allow a moment). */
        np_disconnect(c2);
        close_desc(c, ds[--n]);
        close(w[n]);
        int p[2];
        mkpipe(p);
        for (int i = 0; i < 1000 && (r = np_open(c, p[0], 99, &ds[n])) == -EDQUOT; i++)
                usleep(1000);
        ck_assert_int_eq(r, 0);
        close(p[0]);
        w[n++] = p[1];
        ck_assert_int_eq(np_open(c, p[1], 98, &ds[n]), -EDQUOT);
        close(p[1]);
        w[n - 1] = -1;
        for (int i = 0; i < n; i++) {
                close_desc(c, ds[i]);
                if (w[i] >= 0)
                        close(w[i]);
        }
        finish(&d, c);
        unlink(conf);
}
END_TEST

START_TEST(test_api_open_into_reserved_fds_is_emfile)
{
        char conf[] = "/tmp/np-api-conf-XXXXXX";
        TestDaemon d;
        np_client *c = NULL;
        int w[32], n, r;
        np_desc ds[32];

        /* 400 fds, 390 of them kept back: clients get 10 in all, whatever
         * their uid's share. */
        write_conf(conf, "[limits]\nreserved_fds = 390\nmax_descriptors_per_uid = 100%\n");
        const char *const args[] = { "--config", conf, NULL };
        test_daemon_start(&d, args, 400, false);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        n = open_until_refused(c, w, ds, 32, &r);
        ck_assert_int_eq(r, -EMFILE);
        ck_assert_int_eq(n, 10 - 2);
        ck_assert_int_eq(np_ping(c), 0);
        for (int i = 0; i < n; i++) {
                close_desc(c, ds[i]);
                close(w[i]);
        }
        finish(&d, c);
        unlink(conf);
}
END_TEST

/* One connection may register one file (a pipe end, a socket, a tty) at
 * most 16 times, dup'd fds included: the 17th gets -ETOOMANYREFS.  Another
 * connection has its own count; a close makes room again. */
START_TEST(test_api_open_same_file_17_times_is_etoomanyrefs)
{
        TestDaemon d;
        np_client *c = NULL, *c2 = NULL;
        np_desc ds[17], other;
        int p[2];

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        ck_assert_int_eq(np_connect(d.sock, &c2), 0);
        mkpipe(p);
        for (int i = 0; i < 16; i++) {
                int dup = fcntl(p[0], F_DUPFD_CLOEXEC, 0);
                ck_assert_int_ge(dup, 0);
                ck_assert_int_eq(np_open(c, i % 2 ? dup : p[0], (uint64_t)i, &ds[i]), 0);
                close(dup);
        }
        ck_assert_int_eq(np_open(c, p[0], 16, &ds[16]), -ETOOMANYREFS);
        /* Another pipe is another file. */
        int q[2];
        mkpipe(q);
        ck_assert_int_eq(np_open(c, q[0], 17, &ds[16]), 0);
        close_desc(c, ds[16]);
        close2(q);
        ck_assert_int_eq(np_open(c2, p[0], 1, &other), 0);
        close_desc(c2, other);
        close_desc(c, ds[0]);
        ck_assert_int_eq(np_open(c, p[0], 0, &ds[0]), 0);
        for (int i = 0; i < 16; i++)
                close_desc(c, ds[i]);
        close2(p);
        np_disconnect(c2);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_open_daemon_out_of_fds_is_emfile)
{
        char conf[] = "/tmp/np-api-conf-XXXXXX";
        TestDaemon d;
        np_client *c = NULL;
        int w[64], n = 0, r, p[2];
        np_desc ds[64];

        /* No reserve and no uid share: the kernel's own EMFILE comes first. */
        write_conf(conf, "[limits]\nreserved_fds = 0\nmax_descriptors_per_uid = 100%\n");
        const char *const args[] = { "--config", conf, NULL };
        test_daemon_start(&d, args, 64, false);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        for (;;) {
                ck_assert_int_lt(n, 64);
                mkpipe(p);
                ds[n] = 0;
                r = np_open(c, p[0], (uint64_t)n, &ds[n]);
                if (r == -EMFILE) {
                        ck_assert_int_ge(fcntl(p[0], F_GETFD), 0);
                        close2(p);
                        break;
                }
                ck_assert_int_eq(r, 0);
                close(p[0]);
                w[n++] = p[1];
        }
        ck_assert_int_gt(n, 0);
        /* Every fd number below the limit is taken (the daemon may also
         * hold inherited fds above it). */
        for (int fd = 0; fd < 64; fd++) {
                char link[128];
                fd_link(d.pid, fd, link, sizeof(link));
                ck_assert_msg(link[0], "netpolld's fd %d is free", fd);
        }
        ck_assert_int_eq(np_ping(c), 0);
        assert_stats(c, (uint64_t)n, 0, 0);

        /* One np_close frees one fd (once the closer thread has closed
         * it), and np_open works again, once. */
        close_desc(c, ds[n - 1]);
        close(w[--n]);
        mkpipe(p);
        for (int i = 0; i < 1000 && (r = np_open(c, p[0], (uint64_t)n, &ds[n])) == -EMFILE; i++)
                usleep(1000);
        ck_assert_int_eq(r, 0);
        close(p[0]);
        w[n++] = p[1];
        mkpipe(p);
        ck_assert_int_eq(np_open(c, p[0], (uint64_t)n, &ds[n]), -EMFILE);
        close2(p);

        ck_assert_int_eq(kill(d.pid, 0), 0);
        ck_assert_int_eq(np_ping(c), 0);
        assert_stats(c, (uint64_t)n, 0, 0);
        np_disconnect(c);
        for (int i = 0; i < n; i++)
                close(w[i]);
        stop_ok(&d);
        unlink(conf);
}
END_TEST

/* ---- np_unblock ---- */

START_TEST(test_api_unblock_wakes_reader_and_writer_and_stops_timers)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter r, w;
        int sv[2];

        mksocketpair(sv);
        fill(sv[0]); /* before np_open: nothing latched for either mode */
        np_desc d1 = open_ok(c, sv[0], 1);
        ck_assert_int_eq(np_set_deadline(c, d1, 10 * SEC, NP_READ), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, 20 * SEC, NP_WRITE), 0);
        waiter_start(&r, c, d1, NP_READ, false);
        waiter_start(&w, c, d1, NP_WRITE, false);
        await_waiters(c, 2);
        assert_stats(c, 1, 2, 2);
        ck_assert(!atomic_load(&r.done) && !atomic_load(&w.done));

        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(waiter_join(&r), NP_ERR_CLOSING);
        ck_assert_int_eq(waiter_join(&w), NP_ERR_CLOSING);
        assert_stats(c, 1, 0, 0);

        /* Closing sticks. */
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_CLOSING);
        ck_assert_int_eq(np_wait(c, d1, NP_WRITE), NP_ERR_CLOSING);
        ck_assert_int_eq(np_unblock(c, d1), -EALREADY);
        ck_assert_int_eq(np_close(c, d1), 0);
        close2(sv);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_unblock_errors)
{
        TestDaemon d;
        np_client *c = start(&d), *c2 = NULL;
        int p[2];

        ck_assert_int_eq(np_connect(d.sock, &c2), 0);
        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_unblock(c, 0), -EBADF);
        ck_assert_int_eq(np_unblock(c, d1 + 12345), -EBADF);
        ck_assert_int_eq(np_unblock(c2, d1), -EBADF); /* another connection's */
        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(np_unblock(c, d1), -EALREADY);
        ck_assert_int_eq(np_close(c, d1), 0);
        ck_assert_int_eq(np_unblock(c, d1), -EBADF);
        close2(p);
        np_disconnect(c2);
        finish(&d, c);
}
END_TEST

/* ---- np_close ---- */

START_TEST(test_api_close_invalidates_the_id)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_desc d2 = 777;
        np_event ev;
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        close_desc(c, d1);
        ck_assert_int_eq(np_close(c, d1), -EBADF);
        ck_assert_int_eq(np_unblock(c, d1), -EBADF);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), -EBADF);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), -EBADF);
        ck_assert_int_eq(np_wait_canceled(c, d1, NP_READ), -EBADF);
        ck_assert_int_eq(np_set_deadline(c, d1, SEC, NP_READ), -EBADF);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), -EBADF);
        ck_assert_int_eq(np_poll(c, 0, &ev, 1), 0);

        /* A new descriptor may reuse the slot, never the id. */
        d2 = open_ok(c, p[0], 2);
        ck_assert_uint_ne(d2, d1);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), -EBADF);
        ck_assert_int_eq(np_close(c, d1), -EBADF);
        ck_assert_int_eq(np_reset(c, d2, NP_READ), NP_OK);
        close_desc(c, d2);
        ck_assert_int_eq(np_close(c, 0), -EBADF);
        ck_assert_int_eq(np_close(c, UINT64_MAX), -EBADF);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_close_without_unblock_is_ebusy)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_close(c, d1), -EBUSY);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_OK); /* still valid */
        assert_stats(c, 1, 0, 0);
        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(np_close(c, d1), 0);
        assert_stats(c, 0, 0, 0);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_close_with_wait_canceled_parked_is_ebusy)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        waiter_start(&w, c, d1, NP_READ, true);
        await_waiters(c, 1);
        ck_assert_int_eq(np_unblock(c, d1), 0);
        /* The unblock's reply came after the daemon handled it: a
         * pollWaitCanceled ignores closing and is still parked. */
        assert_stats(c, 1, 1, 0);
        ck_assert(!atomic_load(&w.done));
        ck_assert_int_eq(np_close(c, d1), -EBUSY);
        put(p[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        ck_assert_int_eq(np_close(c, d1), 0);
        assert_stats(c, 0, 0, 0);
        close2(p);
        finish(&d, c);
}
END_TEST

/* ---- np_reset ---- */

START_TEST(test_api_reset_discards_latched_readiness)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2], q[2];

        /* Control: without a reset, the latched readiness ends a wait. */
        mkpipe(q);
        np_desc dq = open_ok(c, q[0], 2);
        put(q[1]);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_set_deadline(c, dq, 5 * SEC, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, dq, NP_READ), NP_OK);

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        put(p[1]);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_OK);
        ck_assert_int_eq(np_set_deadline(c, d1, 100 * MS, NP_READ), 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t0, 100 * MS);

        close_desc(c, d1);
        close_desc(c, dq);
        close2(p);
        close2(q);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_reset_returns_the_error_check)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_OK);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_ERR_TIMEOUT);
        ck_assert_int_eq(np_reset(c, d1, NP_WRITE), NP_OK);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_WRITE), 0);
        ck_assert_int_eq(np_reset(c, d1, NP_WRITE), NP_ERR_TIMEOUT);
        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_ERR_CLOSING);
        ck_assert_int_eq(np_reset(c, d1, NP_WRITE), NP_ERR_CLOSING);
        ck_assert_int_eq(np_close(c, d1), 0);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_reset_invalid_mode_and_desc)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_reset(c, d1, 0), -EINVAL);
        ck_assert_int_eq(np_reset(c, d1, 'x'), -EINVAL);
        ck_assert_int_eq(np_reset(c, d1, NP_RW), -EINVAL);
        ck_assert_int_eq(np_reset(c, d1 + 12345, NP_READ), -EBADF);
        ck_assert_int_eq(np_reset(c, 0, NP_READ), -EBADF);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

/* ---- np_wait ---- */

START_TEST(test_api_wait_consumes_latched_readiness_at_once)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        put(p[1]);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_OK);
        assert_stats(c, 1, 0, 0);
        /* Consumed: the next wait has no readiness to take. */
        ck_assert_int_eq(np_set_deadline(c, d1, 50 * MS, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_TIMEOUT);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_wait_checks_errors_before_readiness)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        put(p[1]);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_TIMEOUT);
        /* The timeout did not consume the latched readiness. */
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_OK);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_wait_blocks_until_ready)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter r, w;
        int p[2];

        mkpipe(p);
        np_desc dr = open_ok(c, p[0], 1);
        waiter_start(&r, c, dr, NP_READ, false);
        await_waiters(c, 1);
        ck_assert(!atomic_load(&r.done));
        put(p[1]);
        ck_assert_int_eq(waiter_join(&r), NP_OK);
        assert_stats(c, 1, 0, 0);

        /* A writer on a full pipe parks until the reader makes room. */
        fill(p[1]);
        np_desc dw = open_ok(c, p[1], 2);
        waiter_start(&w, c, dw, NP_WRITE, false);
        await_waiters(c, 1);
        ck_assert(!atomic_load(&w.done));
        drain(p[0]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);

        close_desc(c, dr);
        close_desc(c, dw);
        close2(p);
        finish(&d, c);
}
END_TEST

/* A pipe's write end whose pipe is full and has no reader polls as exactly
 * EPOLLERR (no EPOLLOUT: no room).  Go 1.17+ then reports
 * pollErrNotPollable to reads only. */
START_TEST(test_api_wait_after_epollerr_only_is_not_pollable)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev;
        int p[2];

        mkpipe(p);
        fill(p[1]);
        close(p[0]);
        struct pollfd pfd = { .fd = p[1], .events = POLLIN | POLLOUT };
        ck_assert_int_eq(poll(&pfd, 1, 0), 1);
        ck_assert_int_eq(pfd.revents, POLLERR);

        np_desc d1 = open_ok(c, p[1], 9);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_NOT_POLLABLE);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_ERR_NOT_POLLABLE);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_poll(c, -1, &ev, 1), 1);
        ck_assert_uint_eq(ev.desc, d1);
        ck_assert_uint_eq(ev.user, 9);
        ck_assert_int_eq(ev.result, NP_ERR_NOT_POLLABLE);
        /* The error is readiness to a write. */
        ck_assert_int_eq(np_wait(c, d1, NP_WRITE), NP_OK);

        close_desc(c, d1);
        close(p[1]);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_wait_already_parked_is_ebusy)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w, wc;
        int p[2], q[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), -EBUSY);
        ck_assert_int_eq(np_wait_canceled(c, d1, NP_READ), -EBUSY);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), -EBUSY);
        assert_stats(c, 1, 1, 0);
        put(p[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);

        /* Same with a parked np_wait_canceled. */
        mkpipe(q);
        np_desc d2 = open_ok(c, q[0], 2);
        waiter_start(&wc, c, d2, NP_READ, true);
        await_waiters(c, 1);
        ck_assert_int_eq(np_wait(c, d2, NP_READ), -EBUSY);
        ck_assert_int_eq(np_wait_canceled(c, d2, NP_READ), -EBUSY);
        put(q[1]);
        ck_assert_int_eq(waiter_join(&wc), NP_OK);

        close_desc(c, d1);
        close_desc(c, d2);
        close2(p);
        close2(q);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_wait_invalid_mode_and_desc)
{
        TestDaemon d;
        np_client *c = start(&d);
        const int bad[] = { 0, 'x', NP_RW, -1 };
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ck_assert_int_eq(np_wait(c, d1, bad[i]), -EINVAL);
                ck_assert_int_eq(np_wait_canceled(c, d1, bad[i]), -EINVAL);
        }
        ck_assert_int_eq(np_wait(c, d1 + 12345, NP_READ), -EBADF);
        ck_assert_int_eq(np_wait_canceled(c, d1 + 12345, NP_READ), -EBADF);
        ck_assert_int_eq(np_wait(c, 0, NP_WRITE), -EBADF);
        assert_stats(c, 1, 0, 0);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_wait_daemon_lost_is_econnreset)
{
        TestDaemon d;
        np_client *c = start(&d);
        struct np_session_stats st;
        Waiter w, wc;
        np_event ev;
        int p[2], q[2];

        mkpipe(p);
        mkpipe(q);
        np_desc d1 = open_ok(c, p[0], 1), d2 = open_ok(c, q[0], 2);
        waiter_start(&w, c, d1, NP_READ, false);
        waiter_start(&wc, c, d2, NP_READ, true);
        await_waiters(c, 2);
        ck_assert_int_eq(kill(d.pid, SIGKILL), 0);
        ck_assert_int_eq(waiter_join(&w), -ECONNRESET);
        ck_assert_int_eq(waiter_join(&wc), -ECONNRESET);
        ck_assert_int_eq(np_ping(c), -ECONNRESET);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), -ECONNRESET);
        ck_assert_int_eq(np_session_stats(c, &st), -ECONNRESET);
        ck_assert_int_eq(np_poll(c, -1, &ev, 1), -ECONNRESET);
        np_disconnect(c);
        int status = test_daemon_stop(&d);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        close2(p);
        close2(q);
}
END_TEST

/* ---- np_wait_canceled ---- */

START_TEST(test_api_wait_canceled_ignores_deadlines_and_closing)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        waiter_start(&w, c, d1, NP_READ, true);
        await_waiters(c, 1);

        /* An expired deadline: a np_wait would end, this one stays. */
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        assert_stats(c, 1, 1, 0);
        /* A deadline that fires: the timer count drops when it does. */
        ck_assert_int_eq(np_set_deadline(c, d1, 30 * MS, NP_READ), 0);
        for (int i = 0; i < 2000 && stats(c).timers != 0; i++)
                usleep(5000);
        assert_stats(c, 1, 1, 0);
        /* Closing. */
        ck_assert_int_eq(np_unblock(c, d1), 0);
        assert_stats(c, 1, 1, 0);
        ck_assert(!atomic_load(&w.done));

        put(p[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        ck_assert_int_eq(np_close(c, d1), 0);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_wait_canceled_takes_latched_readiness)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        put(p[1]);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_wait_canceled(c, d1, NP_READ), NP_OK);
        /* np_wait sees the deadline first, np_wait_canceled never does. */
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_TIMEOUT);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

/* ---- np_set_deadline ---- */

START_TEST(test_api_deadline_timeout_is_never_early)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2], sv[2];
        int64_t t0;

        mkpipe(p);
        np_desc dr = open_ok(c, p[0], 1);
        t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, dr, 50 * MS, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, dr, NP_READ), NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_lt(test_now() - t0, 2 * SEC);

        fill(p[1]);
        np_desc dw = open_ok(c, p[1], 2);
        t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, dw, 50 * MS, NP_WRITE), 0);
        ck_assert_int_eq(np_wait(c, dw, NP_WRITE), NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_lt(test_now() - t0, 2 * SEC);

        /* Both directions at once. */
        mksocketpair(sv);
        fill(sv[0]);
        np_desc ds = open_ok(c, sv[0], 3);
        t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, ds, 50 * MS, NP_RW), 0);
        ck_assert_int_eq(np_wait(c, ds, NP_READ), NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_eq(np_wait(c, ds, NP_WRITE), NP_ERR_TIMEOUT);
        ck_assert_int_lt(test_now() - t0, 2 * SEC);

        close_desc(c, dr);
        close_desc(c, dw);
        close_desc(c, ds);
        close2(p);
        close2(sv);
        finish(&d, c);
}
END_TEST

/* The daemon's loop turns for every request; a timer must still not fire
 * before its deadline on any of those turns. */
START_TEST(test_api_deadline_never_early_while_daemon_busy)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[1];
        Waiter w;
        int p[2], q[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, 50 * MS, NP_READ), 0);
        waiter_start(&w, c, d1, NP_READ, false);
        while (!atomic_load(&w.done) && test_now() - t0 < 5 * SEC)
                ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(waiter_join(&w), NP_ERR_TIMEOUT);
        ck_assert_int_ge(w.end - t0, 50 * MS);

        /* An armed wait, with np_poll(0) and pings as the busy work. */
        mkpipe(q);
        np_desc d2 = open_ok(c, q[0], 2);
        t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d2, 50 * MS, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d2, NP_READ), 0);
        int n = 0;
        while (n == 0 && test_now() - t0 < 5 * SEC) {
                ck_assert_int_eq(np_ping(c), 0);
                n = np_poll(c, 0, ev, 1);
        }
        ck_assert_int_eq(n, 1);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_eq(ev[0].result, NP_ERR_TIMEOUT);

        close_desc(c, d1);
        close_desc(c, d2);
        close2(p);
        close2(q);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_deadline_in_past_expires_now)
{
        TestDaemon d;
        np_client *c = start(&d);
        int sv[2];

        mksocketpair(sv);
        fill(sv[0]);
        np_desc d1 = open_ok(c, sv[0], 1);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_WRITE), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_WRITE), NP_ERR_TIMEOUT);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_OK); /* the other mode is untouched */
        ck_assert_int_eq(np_set_deadline(c, d1, INT64_MIN, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_TIMEOUT);
        assert_stats(c, 1, 0, 0);
        close_desc(c, d1);
        close2(sv);
        finish(&d, c);
}
END_TEST

/* now + ns saturates instead of wrapping into the past. */
START_TEST(test_api_deadline_far_future_does_not_overflow)
{
        TestDaemon d;
        np_client *c = start(&d);
        int p[2], q[2];

        mkpipe(p);
        mkpipe(q);
        np_desc d1 = open_ok(c, p[0], 1), d2 = open_ok(c, q[0], 2);
        ck_assert_int_eq(np_set_deadline(c, d1, INT64_MAX, NP_READ), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, INT64_MAX - 1, NP_WRITE), 0);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_OK);
        ck_assert_int_eq(np_reset(c, d1, NP_WRITE), NP_OK);
        /* Both saturate to the same instant and so share one timer. */
        assert_stats(c, 2, 0, 1);
        /* A near deadline still fires on time next to the far ones. */
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d2, 50 * MS, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d2, NP_READ), NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_lt(test_now() - t0, 3 * SEC);
        ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_OK);
        put(p[1]);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_OK);
        close_desc(c, d1);
        close_desc(c, d2);
        close2(p);
        close2(q);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_deadline_zero_means_none)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_set_deadline(c, d1, 30 * MS, NP_READ), 0);
        assert_stats(c, 1, 0, 1);
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        assert_stats(c, 1, 0, 0);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        /* Well past the cleared 30 ms deadline, the wait is still parked. */
        usleep(150000);
        ck_assert(!atomic_load(&w.done));
        assert_stats(c, 1, 1, 0);
        put(p[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

/*
 * A pipelined deadline is not lost when the next request's fd cannot be
 * sent: the kernel refuses to pass an io_uring fd (sendmsg -EINVAL), and
 * the library used to drop the batch that datagram carried with it.  Now
 * the batch goes again alone and only the open fails.
 */
START_TEST(test_api_pipelined_deadline_survives_an_unsendable_fd)
{
        struct io_uring_params params = { 0 };
        TestDaemon d;
        np_client *c = start(&d);
        int p[2];

        int ring = (int)syscall(SYS_io_uring_setup, 2, &params);
        if (ring < 0) {
                fprintf(stderr, "SKIP %s: io_uring_setup: %s\n", __func__, strerror(errno));
                finish(&d, c);
                return;
        }
        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_set_deadline(c, d1, 10 * SEC, NP_READ), 0); /* pipelined */
        np_desc d2;
        int r = np_open(c, ring, 2, &d2);
        ck_assert_msg(r < 0, "an io_uring fd was passed and registered (%d)", r);
        struct np_session_stats st = stats(c);
        ck_assert_uint_eq(st.descriptors, 1);
        ck_assert_uint_eq(st.timers, 1); /* the deadline arrived */
        ck_assert_int_eq(np_ping(c), 0);
        close(ring);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

/*
 * The handshake's clock comparison is decided by causality: a client held
 * up between the daemon's stamp on the welcome and its own reading of the
 * clock (here stopped for 1.5 s) is on the same clock all the same.  The
 * library used to take any difference over 1 s as an offset between
 * clocks, making every deadline of that connection early by the stall.
 */
START_TEST(test_api_stalled_handshake_keeps_deadlines_on_time)
{
        TestDaemon d;
        int report[2];

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(pipe2(report, O_CLOEXEC), 0);
        /* The daemon is stopped while the client connects and sends its
         * hello, so the client is sure to be waiting for the welcome. */
        ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                np_client *c;
                int q[2];
                int64_t waited = -1;
                if (np_connect(d.sock, &c) == 0 && pipe2(q, O_CLOEXEC) == 0) {
                        np_desc dd;
                        int64_t t0 = test_now();
                        if (np_open(c, q[0], 1, &dd) == 0 &&
                            np_set_deadline(c, dd, 300 * MS, NP_READ) == 0 &&
                            np_wait(c, dd, NP_READ) == NP_ERR_TIMEOUT)
                                waited = test_now() - t0;
                }
                (void)!write(report[1], &waited, sizeof(waited));
                _exit(0);
        }
        usleep(200 * 1000); /* it connects, sends its hello and waits */
        ck_assert_int_eq(kill(pid, SIGSTOP), 0);
        ck_assert_int_eq(kill(d.pid, SIGCONT), 0);
        usleep(1500 * 1000); /* the welcome, stamped, waits for it */
        ck_assert_int_eq(kill(pid, SIGCONT), 0);
        int64_t waited = -2;
        ck_assert_int_eq(read(report[0], &waited, sizeof(waited)), (ssize_t)sizeof(waited));
        ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
        close(report[0]);
        close(report[1]);
        ck_assert_msg(waited >= 300 * MS, "the 300 ms deadline fired after %lld ms",
                      (long long)(waited / MS));
        ck_assert_int_lt(waited, 5 * SEC);
        test_daemon_stop(&d);
}
END_TEST

START_TEST(test_api_deadline_extended_while_parked)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, 100 * MS, NP_READ), 0);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        int64_t left = t0 + 20 * MS - test_now();
        if (left > 0)
                usleep((useconds_t)(left / 1000));
        ck_assert(!atomic_load(&w.done));
        int64_t t1 = test_now();
        ck_assert_msg(t1 - t0 < 100 * MS, "too slow to extend in time");
        ck_assert_int_eq(np_set_deadline(c, d1, 300 * MS, NP_READ), 0);
        ck_assert_int_eq(waiter_join(&w), NP_ERR_TIMEOUT);
        ck_assert_int_ge(w.end - t1, 300 * MS);
        ck_assert_int_ge(w.end - t0, 320 * MS);
        ck_assert_int_lt(w.end - t0, 3 * SEC);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_deadline_refreshed_while_parked)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, 200 * MS, NP_READ), 0);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        int64_t left = t0 + 100 * MS - test_now();
        if (left > 0)
                usleep((useconds_t)(left / 1000));
        ck_assert(!atomic_load(&w.done));
        int64_t t1 = test_now();
        ck_assert_msg(t1 - t0 < 200 * MS, "too slow to refresh in time");
        /* The same relative deadline again: it now ends 200 ms from t1. */
        ck_assert_int_eq(np_set_deadline(c, d1, 200 * MS, NP_READ), 0);
        assert_stats(c, 1, 1, 1);
        ck_assert_int_eq(waiter_join(&w), NP_ERR_TIMEOUT);
        ck_assert_int_ge(w.end - t1, 200 * MS);
        ck_assert_int_ge(w.end - t0, 300 * MS);
        ck_assert_int_lt(w.end - t0, 3 * SEC);
        assert_stats(c, 1, 0, 0);

        /* A new deadline after a timeout: waits park again until it. */
        t1 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, 100 * MS, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t1, 100 * MS);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

/* One timer serves equal read and write deadlines (as in Go); changing one
 * of them must give the other its own timer. */
START_TEST(test_api_deadline_split_from_combined)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        int sv[2];

        mksocketpair(sv);
        fill(sv[0]);
        np_desc d1 = open_ok(c, sv[0], 1);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, 100 * MS, NP_RW), 0);
        assert_stats(c, 1, 0, 1);
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        assert_stats(c, 1, 0, 1);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        ck_assert_int_eq(np_wait(c, d1, NP_WRITE), NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t0, 100 * MS);
        ck_assert_int_lt(test_now() - t0, 3 * SEC);
        /* The read side has no deadline any more: still parked. */
        assert_stats(c, 1, 1, 0);
        ck_assert(!atomic_load(&w.done));
        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(waiter_join(&w), NP_ERR_CLOSING);
        ck_assert_int_eq(np_close(c, d1), 0);
        close2(sv);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_deadline_moved_into_past_wakes_parked)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter r, w;
        int sv[2];

        mksocketpair(sv);
        fill(sv[0]);
        np_desc d1 = open_ok(c, sv[0], 1);
        ck_assert_int_eq(np_set_deadline(c, d1, 10 * SEC, NP_RW), 0);
        waiter_start(&r, c, d1, NP_READ, false);
        waiter_start(&w, c, d1, NP_WRITE, false);
        await_waiters(c, 2);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_RW), 0);
        ck_assert_int_eq(waiter_join(&r), NP_ERR_TIMEOUT);
        ck_assert_int_eq(waiter_join(&w), NP_ERR_TIMEOUT);
        ck_assert_int_lt(test_now() - t0, 5 * SEC); /* not the 10 s deadline */
        assert_stats(c, 1, 0, 0);
        close_desc(c, d1);
        close2(sv);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_deadline_when_closing_and_errors)
{
        TestDaemon d;
        np_client *c = start(&d), *c2 = NULL;
        int p[2];

        ck_assert_int_eq(np_connect(d.sock, &c2), 0);
        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_set_deadline(c, d1, SEC, 0), -EINVAL);
        ck_assert_int_eq(np_set_deadline(c, d1, SEC, 'x'), -EINVAL);
        ck_assert_int_eq(np_set_deadline(c, d1 + 12345, SEC, NP_READ), -EBADF);
        ck_assert_int_eq(np_set_deadline(c2, d1, SEC, NP_READ), -EBADF);
        assert_stats(c, 1, 0, 0);

        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, 10 * SEC, NP_READ), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, 10 * SEC, NP_RW), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_WRITE), 0);
        assert_stats(c, 1, 0, 0); /* no timer armed on a closing descriptor */
        ck_assert_int_eq(np_wait(c, d1, NP_WRITE), NP_ERR_CLOSING);
        ck_assert_int_eq(np_close(c, d1), 0);
        close2(p);
        np_disconnect(c2);
        finish(&d, c);
}
END_TEST

/* ---- np_arm ---- */

START_TEST(test_api_arm_outcome_delivered_by_poll)
{
        TestDaemon d;
        np_client *c = start(&d);
        const uint64_t cookie = UINT64_C(0x0123456789abcdef);
        np_event ev[4];
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], cookie);

        /* Parked, then readiness. */
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_poll(c, 0, ev, 4), 0);
        assert_stats(c, 1, 1, 0);
        put(p[1]);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_uint_eq(ev[0].desc, d1);
        ck_assert_uint_eq(ev[0].user, cookie);
        ck_assert_int_eq(ev[0].mode, NP_READ);
        ck_assert_int_eq(ev[0].result, NP_OK);
        assert_stats(c, 1, 0, 0);
        drain(p[0]);

        /* Latched readiness: an immediate outcome, still through np_poll. */
        put(p[1]);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_uint_eq(ev[0].desc, d1);
        ck_assert_int_eq(ev[0].result, NP_OK);
        drain(p[0]);

        /* An already-expired deadline. */
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_uint_eq(ev[0].desc, d1);
        ck_assert_uint_eq(ev[0].user, cookie);
        ck_assert_int_eq(ev[0].mode, NP_READ);
        ck_assert_int_eq(ev[0].result, NP_ERR_TIMEOUT);

        /* A deadline that expires while armed. */
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, 50 * MS, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_eq(ev[0].result, NP_ERR_TIMEOUT);

        /* Closing, parked and immediate. */
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_int_eq(ev[0].result, NP_ERR_CLOSING);
        ck_assert_int_eq(np_arm(c, d1, NP_WRITE), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_int_eq(ev[0].mode, NP_WRITE);
        ck_assert_int_eq(ev[0].result, NP_ERR_CLOSING);
        ck_assert_int_eq(np_poll(c, 0, ev, 4), 0);
        ck_assert_int_eq(np_close(c, d1), 0);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_arm_errors)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[4];
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 5);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), -EBUSY);
        ck_assert_int_eq(np_arm(c, d1, NP_WRITE), 0); /* the other mode is free */
        ck_assert_int_eq(np_arm(c, d1, NP_WRITE), -EBUSY);
        ck_assert_int_eq(np_wait(c, d1, NP_READ), -EBUSY); /* an armed wait is parked */
        ck_assert_int_eq(np_wait_canceled(c, d1, NP_WRITE), -EBUSY);
        ck_assert_int_eq(np_arm(c, d1, 0), -EINVAL);
        ck_assert_int_eq(np_arm(c, d1, NP_RW), -EINVAL);
        ck_assert_int_eq(np_arm(c, d1, 'x'), -EINVAL);
        ck_assert_int_eq(np_arm(c, d1 + 12345, NP_READ), -EBADF);
        ck_assert_int_eq(np_arm(c, 0, NP_READ), -EBADF);
        assert_stats(c, 1, 2, 0);

        /* The refused arms produced no events; the two accepted ones do. */
        ck_assert_int_eq(np_unblock(c, d1), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 2);
        ck_assert_int_ne(ev[0].mode, ev[1].mode);
        for (int i = 0; i < 2; i++) {
                ck_assert_uint_eq(ev[i].desc, d1);
                ck_assert_uint_eq(ev[i].user, 5);
                ck_assert_int_eq(ev[i].result, NP_ERR_CLOSING);
        }
        ck_assert_int_eq(np_poll(c, 0, ev, 4), 0);
        ck_assert_int_eq(np_close(c, d1), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), -EBADF);
        close2(p);
        finish(&d, c);
}
END_TEST

/* ---- np_poll ---- */

START_TEST(test_api_poll_zero_never_blocks)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[4];
        int p[2];

        int64_t t0 = test_now();
        ck_assert_int_eq(np_poll(c, 0, ev, 4), 0);
        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        for (int i = 0; i < 10; i++)
                ck_assert_int_eq(np_poll(c, 0, ev, 4), 0);
        ck_assert_int_lt(test_now() - t0, SEC);
        /* The armed wait is still parked, not lost. */
        assert_stats(c, 1, 1, 0);
        put(p[1]);
        ck_assert_int_eq(np_poll(c, -1, ev, 4), 1);
        ck_assert_int_eq(ev[0].result, NP_OK);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_poll_delay_is_never_early)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[4];
        int p[2];

        int64_t t0 = test_now();
        ck_assert_int_eq(np_poll(c, 100 * MS, ev, 4), 0);
        ck_assert_int_ge(test_now() - t0, 100 * MS);
        ck_assert_int_lt(test_now() - t0, 2 * SEC);

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        t0 = test_now();
        ck_assert_int_eq(np_poll(c, 100 * MS, ev, 4), 0);
        ck_assert_int_ge(test_now() - t0, 100 * MS);
        ck_assert_int_lt(test_now() - t0, 2 * SEC);

        /* With a completion it returns before the delay. */
        ck_assert_int_eq(np_set_deadline(c, d1, 50 * MS, NP_READ), 0);
        t0 = test_now();
        ck_assert_int_eq(np_poll(c, 10 * SEC, ev, 4), 1);
        ck_assert_int_eq(ev[0].result, NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_lt(test_now() - t0, 5 * SEC);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_poll_excess_events_stay_queued)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[2];
        int p[5][2], seen = 0;
        np_desc ds[5];

        for (int i = 0; i < 5; i++) {
                mkpipe(p[i]);
                ds[i] = open_ok(c, p[i][0], (uint64_t)(100 + i));
                put(p[i][1]);
        }
        ck_assert_int_eq(np_ping(c), 0);
        for (int i = 0; i < 5; i++)
                ck_assert_int_eq(np_arm(c, ds[i], NP_READ), 0);
        const int expect[] = { 2, 2, 1 };
        for (int k = 0; k < 3; k++) {
                int n = np_poll(c, -1, ev, 2);
                ck_assert_int_eq(n, expect[k]);
                for (int i = 0; i < n; i++) {
                        int j = (int)(ev[i].user - 100);
                        ck_assert(j >= 0 && j < 5);
                        ck_assert_uint_eq(ev[i].desc, ds[j]);
                        ck_assert_int_eq(ev[i].result, NP_OK);
                        ck_assert_int_eq(ev[i].mode, NP_READ);
                        ck_assert(!(seen & (1 << j)));
                        seen |= 1 << j;
                }
        }
        ck_assert_int_eq(seen, 0x1f);
        ck_assert_int_eq(np_poll(c, 0, ev, 2), 0);
        for (int i = 0; i < 5; i++) {
                close_desc(c, ds[i]);
                close2(p[i]);
        }
        finish(&d, c);
}
END_TEST

/* A blocked np_poll may read the socket for other threads' calls; their
 * replies are not completions and must not end it.  An arm made by another
 * thread reaches the daemon at once and its completion does end it. */
START_TEST(test_api_poll_blocked_in_thread_while_others_call)
{
        TestDaemon d;
        np_client *c = start(&d);
        Poller pl;
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 42);
        poller_start(&pl, c, -1);
        await_poller_blocked(&pl);
        for (int i = 0; i < 50; i++) {
                ck_assert_int_eq(np_ping(c), 0);
                assert_stats(c, 1, 0, 0);
        }
        ck_assert(!atomic_load(&pl.done));
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        put(p[1]);
        ck_assert_int_eq(pthread_join(pl.thread, NULL), 0);
        ck_assert_int_eq(pl.result, 1);
        ck_assert_uint_eq(pl.ev[0].desc, d1);
        ck_assert_uint_eq(pl.ev[0].user, 42);
        ck_assert_int_eq(pl.ev[0].result, NP_OK);

        /* With a delay: other calls do not end it before the delay. */
        int64_t t0 = test_now();
        poller_start(&pl, c, 300 * MS);
        await_poller_blocked(&pl);
        while (!atomic_load(&pl.done) && test_now() - t0 < 5 * SEC)
                ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(pthread_join(pl.thread, NULL), 0);
        ck_assert_int_eq(pl.result, 0);
        ck_assert_int_ge(test_now() - t0, 300 * MS);

        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_poll_invalid_arguments)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[1];

        ck_assert_int_eq(np_poll(c, 0, ev, 0), -EINVAL);
        ck_assert_int_eq(np_poll(c, 0, ev, -1), -EINVAL);
        ck_assert_int_eq(np_poll(c, -1, NULL, 1), -EINVAL);
        ck_assert_int_eq(np_ping(c), 0);
        finish(&d, c);
}
END_TEST

/* ---- np_break ---- */

START_TEST(test_api_break_is_coalesced)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[1];

        ck_assert_int_eq(np_break(c), 0);
        ck_assert_int_eq(np_break(c), 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_poll(c, -1, ev, 1), 0);
        ck_assert_int_lt(test_now() - t0, SEC);
        t0 = test_now();
        ck_assert_int_eq(np_poll(c, 200 * MS, ev, 1), 0);
        ck_assert_int_ge(test_now() - t0, 200 * MS);
        ck_assert_int_lt(test_now() - t0, 3 * SEC);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_break_wakes_blocked_poll)
{
        TestDaemon d;
        np_client *c = start(&d);
        Poller p;

        poller_start(&p, c, -1);
        await_poller_blocked(&p);
        ck_assert_int_eq(np_break(c), 0);
        ck_assert_int_eq(pthread_join(p.thread, NULL), 0);
        ck_assert_int_eq(p.result, 0);

        /* Also when the poller is not the thread reading the socket: here a
         * parked np_wait holds that role. */
        Waiter w;
        int q[2];
        mkpipe(q);
        np_desc d1 = open_ok(c, q[0], 1);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        poller_start(&p, c, -1);
        await_poller_blocked(&p);
        ck_assert_int_eq(np_break(c), 0);
        ck_assert_int_eq(pthread_join(p.thread, NULL), 0);
        ck_assert_int_eq(p.result, 0);
        ck_assert(!atomic_load(&w.done));
        put(q[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        close_desc(c, d1);
        close2(q);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_break_before_poll_returns_at_once)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[1];

        ck_assert_int_eq(np_break(c), 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_poll(c, 10 * SEC, ev, 1), 0);
        ck_assert_int_lt(test_now() - t0, 5 * SEC);
        ck_assert_int_eq(np_break(c), 0);
        t0 = test_now();
        ck_assert_int_eq(np_poll(c, -1, ev, 1), 0);
        ck_assert_int_lt(test_now() - t0, 5 * SEC);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_break_not_consumed_by_poll_zero)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[1];

        ck_assert_int_eq(np_break(c), 0);
        ck_assert_int_eq(np_poll(c, 0, ev, 1), 0);
        ck_assert_int_eq(np_poll(c, 0, ev, 1), 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_poll(c, -1, ev, 1), 0);
        ck_assert_int_lt(test_now() - t0, 5 * SEC);
        finish(&d, c);
}
END_TEST

static np_client *alarm_client;
static volatile sig_atomic_t alarm_result = 1;

static void on_alarm(int sig)
{
        (void)sig;
        alarm_result = np_break(alarm_client);
}

START_TEST(test_api_break_from_signal_handler)
{
        TestDaemon d;
        np_client *c = start(&d);
        struct sigaction sa = { .sa_handler = on_alarm };
        struct itimerval it = { .it_value = { .tv_sec = 0, .tv_usec = 100000 } };
        np_event ev[1];

        alarm_client = c;
        sigemptyset(&sa.sa_mask);
        ck_assert_int_eq(sigaction(SIGALRM, &sa, NULL), 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 1), 0);
        ck_assert_int_eq(alarm_result, 0);
        ck_assert_int_ge(test_now() - t0, 90 * MS);
        ck_assert_int_lt(test_now() - t0, 5 * SEC);
        /* The break was taken: the next delayed poll waits its delay. */
        t0 = test_now();
        ck_assert_int_eq(np_poll(c, 100 * MS, ev, 1), 0);
        ck_assert_int_ge(test_now() - t0, 100 * MS);
        signal(SIGALRM, SIG_DFL);
        finish(&d, c);
}
END_TEST

/* ---- np_is_poll_descriptor ---- */

START_TEST(test_api_is_poll_descriptor)
{
        TestDaemon d;
        int sock, evfd, p[2], found = 0;
        np_desc d1 = 777;

        test_daemon_start(&d, NULL, 0, false);
        np_client *c = connect_find_fds(d.sock, &sock, &evfd);
        ck_assert_int_eq(np_is_poll_descriptor(c, sock), 1);
        ck_assert_int_eq(np_is_poll_descriptor(c, evfd), 1);
        mkpipe(p);
        ck_assert_int_eq(np_is_poll_descriptor(c, p[0]), 0);
        ck_assert_int_eq(np_is_poll_descriptor(c, p[1]), 0);
        ck_assert_int_eq(np_is_poll_descriptor(c, -1), -EBADF);
        close2(p);
        ck_assert_int_eq(np_is_poll_descriptor(c, p[0]), -EBADF);

        /* The daemon's own epoll, eventfd and timerfd, fetched with
         * pidfd_getfd(2). */
        int pidfd = (int)syscall(SYS_pidfd_open, d.pid, 0);
        ck_assert_msg(pidfd >= 0, "pidfd_open: %s", strerror(errno));
        for (int fd = 0; fd < 1024; fd++) {
                char link[128];
                fd_link(d.pid, fd, link, sizeof(link));
                if (strcmp(link, "anon_inode:[eventpoll]") != 0 &&
                    strcmp(link, "anon_inode:[timerfd]") != 0 &&
                    strcmp(link, "anon_inode:[eventfd]") != 0)
                        continue;
                int mine = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
                ck_assert_msg(mine >= 0, "pidfd_getfd: %s", strerror(errno));
                ck_assert_msg(np_is_poll_descriptor(c, mine) == 1, "daemon fd %d (%s) not reported",
                              fd, link);
                ck_assert_int_eq(np_open(c, mine, 0, &d1), -EINVAL);
                if (strcmp(link, "anon_inode:[eventpoll]") == 0)
                        found++;
                close(mine);
        }
        close(pidfd);
        ck_assert_int_ge(found, 1);
        ck_assert_uint_eq(d1, 777);
        assert_stats(c, 0, 0, 0);
        finish(&d, c);
}
END_TEST

/* ---- np_session_stats ---- */

START_TEST(test_api_session_stats_are_exact)
{
        TestDaemon d;
        np_client *c = start(&d), *c2 = NULL;
        np_event ev[2];
        Waiter w;
        int p1[2], p2[2];

        ck_assert_int_eq(np_connect(d.sock, &c2), 0);
        assert_stats(c, 0, 0, 0);
        mkpipe(p1);
        mkpipe(p2);
        np_desc d1 = open_ok(c, p1[0], 1);
        assert_stats(c, 1, 0, 0);
        np_desc d2 = open_ok(c, p2[0], 2);
        assert_stats(c, 2, 0, 0);

        ck_assert_int_eq(np_set_deadline(c, d1, 10 * SEC, NP_READ), 0);
        assert_stats(c, 2, 0, 1);
        ck_assert_int_eq(np_set_deadline(c, d1, 20 * SEC, NP_WRITE), 0);
        assert_stats(c, 2, 0, 2);
        /* Equal read and write deadlines share one timer, as in Go. */
        ck_assert_int_eq(np_set_deadline(c, d1, 30 * SEC, NP_RW), 0);
        assert_stats(c, 2, 0, 1);
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_RW), 0);
        assert_stats(c, 2, 0, 0);

        waiter_start(&w, c, d2, NP_READ, false);
        await_waiters(c, 1);
        assert_stats(c, 2, 1, 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        assert_stats(c, 2, 2, 0);
        ck_assert_int_eq(np_set_deadline(c, d2, 10 * SEC, NP_READ), 0);
        assert_stats(c, 2, 2, 1);
        assert_stats(c2, 0, 0, 0); /* per connection */

        put(p2[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        assert_stats(c, 2, 1, 1);
        put(p1[1]);
        ck_assert_int_eq(np_poll(c, -1, ev, 2), 1);
        assert_stats(c, 2, 0, 1);

        close_desc(c, d1);
        assert_stats(c, 1, 0, 1);
        close_desc(c, d2);
        assert_stats(c, 0, 0, 0);
        close2(p1);
        close2(p2);
        np_disconnect(c2);
        finish(&d, c);
}
END_TEST

/* ---- scenarios ---- */

START_TEST(test_api_peer_close_wakes_reader)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        char b;
        int sv[2];

        mksocketpair(sv);
        np_desc d1 = open_ok(c, sv[0], 1);
        ck_assert_int_eq(np_wait(c, d1, NP_WRITE), NP_OK); /* writable at registration */
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        close(sv[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        ck_assert_int_eq(read(sv[0], &b, 1), 0);
        close_desc(c, d1);
        close(sv[0]);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_tcp_accept_read_and_peer_shutdown)
{
        TestDaemon d;
        np_client *c = start(&d);
        struct sockaddr_in addr = { .sin_family = AF_INET,
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(addr);
        Waiter w;
        char buf[16];

        int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(l, 0);
        ck_assert_int_eq(bind(l, (struct sockaddr *)&addr, sizeof(addr)), 0);
        ck_assert_int_eq(listen(l, 4), 0);
        ck_assert_int_eq(getsockname(l, (struct sockaddr *)&addr, &len), 0);
        np_desc dl = open_ok(c, l, 1);

        /* A connection makes the listener readable. */
        waiter_start(&w, c, dl, NP_READ, false);
        await_waiters(c, 1);
        int cl = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(cl, 0);
        int r = connect(cl, (struct sockaddr *)&addr, sizeof(addr));
        ck_assert(r == 0 || errno == EINPROGRESS);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        int a = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        ck_assert_int_ge(a, 0);

        np_desc dc = open_ok(c, cl, 2), da = open_ok(c, a, 3);
        ck_assert_int_eq(np_wait(c, dc, NP_WRITE), NP_OK); /* connected */

        /* Data makes the client readable. */
        waiter_start(&w, c, dc, NP_READ, false);
        await_waiters(c, 1);
        ck_assert_int_eq(write(a, "hello", 5), 5);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        ck_assert_int_eq(read(cl, buf, sizeof(buf)), 5);

        /* The peer's FIN makes the server side readable. */
        waiter_start(&w, c, da, NP_READ, false);
        await_waiters(c, 1);
        ck_assert_int_eq(shutdown(cl, SHUT_WR), 0);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        ck_assert_int_eq(read(a, buf, sizeof(buf)), 0);

        close_desc(c, dl);
        close_desc(c, dc);
        close_desc(c, da);
        close(a);
        close(cl);
        close(l);
        finish(&d, c);
}
END_TEST

/* A client killed while parked: the daemon must close its copy of the
 * client's descriptor, which the other end of the socketpair sees as EOF. */
START_TEST(test_api_killed_client_descriptors_released)
{
        TestDaemon d;
        np_client *obs = NULL;
        struct np_status st = { 0 };
        int sv[2], status;
        char b;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        pid_t child = fork();
        ck_assert_int_ge(child, 0);
        if (child == 0) {
                np_client *cc;
                np_desc dd;
                close(sv[1]);
                if (np_connect(d.sock, &cc) < 0)
                        _exit(2);
                if (np_open(cc, sv[0], 7, &dd) < 0)
                        _exit(3);
                close(sv[0]); /* only the daemon's copy is left */
                np_wait(cc, dd, NP_READ);
                _exit(4);
        }
        close(sv[0]);
        ck_assert_int_eq(np_connect(d.sock, &obs), 0);
        for (int i = 0; i < 2000; i++) {
                ck_assert_int_eq(np_status(obs, &st), 0);
                if (st.descriptors == 1 && st.waiters == 1)
                        break;
                ck_assert_int_eq(waitpid(child, &status, WNOHANG), 0);
                usleep(5000);
        }
        ck_assert_uint_eq(st.waiters, 1);
        ck_assert_int_eq(kill(child, SIGKILL), 0);
        ck_assert_int_eq(waitpid(child, &status, 0), child);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        struct pollfd pfd = { .fd = sv[1], .events = POLLIN };
        ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
        ck_assert_int_eq(read(sv[1], &b, 1), 0);
        for (int i = 0; i < 2000; i++) {
                ck_assert_int_eq(np_status(obs, &st), 0);
                if (st.connections == 1)
                        break;
                usleep(5000);
        }
        ck_assert_uint_eq(st.connections, 1);
        ck_assert_uint_eq(st.descriptors, 0);
        ck_assert_uint_eq(st.waiters, 0);
        close(sv[1]);
        finish(&d, obs);
}
END_TEST

#define N_THREADS 16

START_TEST(test_api_many_threads_wait_concurrently)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w[N_THREADS];
        int p[N_THREADS][2];
        np_desc ds[N_THREADS];

        for (int i = 0; i < N_THREADS; i++) {
                mkpipe(p[i]);
                ds[i] = open_ok(c, p[i][0], (uint64_t)i);
                waiter_start(&w[i], c, ds[i], NP_READ, false);
        }
        await_waiters(c, N_THREADS);
        for (int i = 0; i < N_THREADS; i++)
                ck_assert(!atomic_load(&w[i].done));
        /* Wake them one by one: each ends with its own readiness. */
        for (int i = 0; i < N_THREADS; i++) {
                put(p[i][1]);
                ck_assert_int_eq(waiter_join(&w[i]), NP_OK);
                for (int j = i + 1; j < N_THREADS; j++)
                        ck_assert_msg(!atomic_load(&w[j].done), "waiter %d woke with %d", j,
                                      w[j].result);
        }
        assert_stats(c, N_THREADS, 0, 0);
        /* And all at once. */
        for (int i = 0; i < N_THREADS; i++) {
                drain(p[i][0]);
                waiter_start(&w[i], c, ds[i], NP_READ, false);
        }
        await_waiters(c, N_THREADS);
        for (int i = 0; i < N_THREADS; i++)
                put(p[i][1]);
        for (int i = 0; i < N_THREADS; i++)
                ck_assert_int_eq(waiter_join(&w[i]), NP_OK);
        assert_stats(c, N_THREADS, 0, 0);
        for (int i = 0; i < N_THREADS; i++) {
                close_desc(c, ds[i]);
                close2(p[i]);
        }
        finish(&d, c);
}
END_TEST

START_TEST(test_api_parked_wait_does_not_delay_other_calls)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        int p[2], q[2];

        mkpipe(p);
        mkpipe(q);
        np_desc d1 = open_ok(c, p[0], 1), d2 = open_ok(c, q[0], 2);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        int64_t t0 = test_now();
        for (int i = 0; i < 200; i++) {
                ck_assert_int_eq(np_ping(c), 0);
                ck_assert_int_eq(np_set_deadline(c, d2, 10 * SEC, NP_READ), 0);
                ck_assert_int_eq(np_reset(c, d2, NP_READ), NP_OK);
                assert_stats(c, 2, 1, 1);
        }
        /* A second blocking call completes too. */
        ck_assert_int_eq(np_set_deadline(c, d2, 20 * MS, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d2, NP_READ), NP_ERR_TIMEOUT);
        put(q[1]);
        ck_assert_int_eq(np_set_deadline(c, d2, 0, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d2, NP_READ), NP_OK);
        ck_assert_int_lt(test_now() - t0, 10 * SEC);
        ck_assert(!atomic_load(&w.done));
        assert_stats(c, 2, 1, 0);
        put(p[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        close_desc(c, d1);
        close_desc(c, d2);
        close2(p);
        close2(q);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_calls_take_effect_in_order)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[2];
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        for (int i = 0; i < 100; i++) {
                ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
                ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
                ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_OK);
                ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
                ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
                ck_assert_int_eq(np_reset(c, d1, NP_READ), NP_ERR_TIMEOUT);
        }
        /* Pipelined requests before an np_poll: the arm sees no deadline. */
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_poll(c, 100 * MS, ev, 2), 0);
        /* ... and an expired deadline after an arm ends it. */
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        ck_assert_int_eq(np_poll(c, -1, ev, 2), 1);
        ck_assert_int_eq(ev[0].result, NP_ERR_TIMEOUT);
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        put(p[1]);
        ck_assert_int_eq(np_poll(c, -1, ev, 2), 1);
        ck_assert_int_eq(ev[0].result, NP_OK);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

static TCase *tcase(Suite *s, const char *name)
{
        TCase *tc = tcase_create(name);

        tcase_add_checked_fixture(tc, fdleak_setup, fdleak_teardown);
        tcase_set_timeout(tc, TEST_TIMEOUT);
        suite_add_tcase(s, tc);
        return tc;
}

Suite *suite_api(void)
{
        Suite *s = suite_create("api");
        TCase *tc;

        tc = tcase(s, "connect");
        tcase_add_test(tc, test_api_connect_explicit_path_handshakes);
        tcase_add_test(tc, test_api_connect_null_uses_env_socket);
        tcase_add_test(tc, test_api_connect_null_uses_default_socket);
        tcase_add_test(tc, test_api_connect_without_daemon_fails);
        tcase_add_test(tc, test_api_disconnect_releases_everything);

        tc = tcase(s, "open");
        tcase_add_test(tc, test_api_open_caller_keeps_fd_and_user_comes_back);
        tcase_add_test(tc, test_api_open_bad_fd_is_ebadf);
        tcase_add_test(tc, test_api_open_not_pollable_is_eperm);
        tcase_add_test(tc, test_api_same_file_past_the_nesting_limit_is_served);
        tcase_add_test(tc, test_api_open_own_library_fds_is_einval);
        tcase_add_test(tc, test_api_open_over_quota_is_edquot);
        tcase_add_test(tc, test_api_open_daemon_out_of_fds_is_emfile);
        tcase_add_test(tc, test_api_open_over_uid_quota_is_edquot);
        tcase_add_test(tc, test_api_open_into_reserved_fds_is_emfile);
        tcase_add_test(tc, test_api_open_same_file_17_times_is_etoomanyrefs);

        tc = tcase(s, "unblock-close-reset");
        tcase_add_test(tc, test_api_unblock_wakes_reader_and_writer_and_stops_timers);
        tcase_add_test(tc, test_api_unblock_errors);
        tcase_add_test(tc, test_api_close_invalidates_the_id);
        tcase_add_test(tc, test_api_close_without_unblock_is_ebusy);
        tcase_add_test(tc, test_api_close_with_wait_canceled_parked_is_ebusy);
        tcase_add_test(tc, test_api_reset_discards_latched_readiness);
        tcase_add_test(tc, test_api_reset_returns_the_error_check);
        tcase_add_test(tc, test_api_reset_invalid_mode_and_desc);

        tc = tcase(s, "wait");
        tcase_add_test(tc, test_api_wait_consumes_latched_readiness_at_once);
        tcase_add_test(tc, test_api_wait_checks_errors_before_readiness);
        tcase_add_test(tc, test_api_wait_blocks_until_ready);
        tcase_add_test(tc, test_api_wait_after_epollerr_only_is_not_pollable);
        tcase_add_test(tc, test_api_wait_already_parked_is_ebusy);
        tcase_add_test(tc, test_api_wait_invalid_mode_and_desc);
        tcase_add_test(tc, test_api_wait_daemon_lost_is_econnreset);
        tcase_add_test(tc, test_api_wait_canceled_ignores_deadlines_and_closing);
        tcase_add_test(tc, test_api_wait_canceled_takes_latched_readiness);

        tc = tcase(s, "deadline");
        tcase_add_test(tc, test_api_deadline_timeout_is_never_early);
        tcase_add_test(tc, test_api_deadline_never_early_while_daemon_busy);
        tcase_add_test(tc, test_api_deadline_in_past_expires_now);
        tcase_add_test(tc, test_api_deadline_zero_means_none);
        tcase_add_test(tc, test_api_deadline_far_future_does_not_overflow);
        tcase_add_test(tc, test_api_deadline_extended_while_parked);
        tcase_add_test(tc, test_api_deadline_refreshed_while_parked);
        tcase_add_test(tc, test_api_deadline_split_from_combined);
        tcase_add_test(tc, test_api_deadline_moved_into_past_wakes_parked);
        tcase_add_test(tc, test_api_deadline_when_closing_and_errors);
        tcase_add_test(tc, test_api_pipelined_deadline_survives_an_unsendable_fd);
        tcase_add_test(tc, test_api_stalled_handshake_keeps_deadlines_on_time);

        tc = tcase(s, "arm-poll-break");
        tcase_add_test(tc, test_api_arm_outcome_delivered_by_poll);
        tcase_add_test(tc, test_api_arm_errors);
        tcase_add_test(tc, test_api_poll_zero_never_blocks);
        tcase_add_test(tc, test_api_poll_delay_is_never_early);
        tcase_add_test(tc, test_api_poll_excess_events_stay_queued);
        tcase_add_test(tc, test_api_poll_blocked_in_thread_while_others_call);
        tcase_add_test(tc, test_api_poll_invalid_arguments);
        tcase_add_test(tc, test_api_break_is_coalesced);
        tcase_add_test(tc, test_api_break_wakes_blocked_poll);
        tcase_add_test(tc, test_api_break_before_poll_returns_at_once);
        tcase_add_test(tc, test_api_break_not_consumed_by_poll_zero);
        tcase_add_test(tc, test_api_break_from_signal_handler);

        tc = tcase(s, "introspection");
        tcase_add_test(tc, test_api_is_poll_descriptor);
        tcase_add_test(tc, test_api_session_stats_are_exact);

        tc = tcase(s, "scenarios");
        tcase_add_test(tc, test_api_peer_close_wakes_reader);
        tcase_add_test(tc, test_api_tcp_accept_read_and_peer_shutdown);
        tcase_add_test(tc, test_api_killed_client_descriptors_released);
        tcase_add_test(tc, test_api_many_threads_wait_concurrently);
        tcase_add_test(tc, test_api_parked_wait_does_not_delay_other_calls);
        tcase_add_test(tc, test_api_calls_take_effect_in_order);
        return s;
}
