/*
 * api: black-box tests of libnetpoll against the real daemon: every call of
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
 *
 * The tests are in test-api-<case>.c, one file per case; this file holds
 * the helpers they share (test-api.h) and builds the suite from them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test-api.h"

#define MAX_FDS 4096

/* Starts a daemon with default settings and connects one client to it. */
np_client *start(TestDaemon *d)
{
        np_client *c = NULL;

        test_daemon_start(d, NULL, 0, false);
        ck_assert_int_eq(np_connect(d->sock, &c), 0);
        ck_assert_ptr_nonnull(c);
        return c;
}

void finish(TestDaemon *d, np_client *c)
{
        np_disconnect(c);
        test_daemon_stop_ok(d);
}

void mkpipe(int p[2])
{
        ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
}

void mksocketpair(int sv[2])
{
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

void close2(int p[2])
{
        close(p[0]);
        close(p[1]);
}

/* Writes to a non-blocking fd until it would block. */
void fill(int fd)
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

void drain(int fd)
{
        char buf[65536];

        while (read(fd, buf, sizeof(buf)) > 0)
                ;
}

void put(int fd)
{
        ck_assert_int_eq(write(fd, "x", 1), 1);
}

struct np_session_stats stats(np_client *c)
{
        struct np_session_stats st;

        memset(&st, 0xff, sizeof(st));
        ck_assert_int_eq(np_session_stats(c, &st), 0);
        return st;
}

void assert_stats(np_client *c, uint64_t descriptors, uint64_t waiters, uint64_t timers)
{
        struct np_session_stats st = stats(c);

        ck_assert_uint_eq(st.descriptors, descriptors);
        ck_assert_uint_eq(st.waiters, waiters);
        ck_assert_uint_eq(st.timers, timers);
}

/*
 * The daemon's fd count once it is idle.  Its loop opens files for a moment
 * (/proc/self/... for its status), so a single reading may be one too high:
 * take the value three readings in a row agree on.
 */
int daemon_fds(pid_t pid)
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
void await_daemon_fds(pid_t pid, int n)
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

np_desc open_ok(np_client *c, int fd, uint64_t user)
{
        np_desc d = 0;

        ck_assert_int_eq(np_open(c, fd, user, &d), 0);
        ck_assert_uint_ne(d, 0);
        return d;
}

void close_desc(np_client *c, np_desc d)
{
        ck_assert_int_eq(np_unblock(c, d), 0);
        ck_assert_int_eq(np_close(c, d), 0);
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
void fd_link(pid_t pid, int fd, char *buf, size_t len)
{
        char path[64];

        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
        ssize_t n = readlink(path, buf, len - 1);
        buf[n > 0 ? n : 0] = '\0';
}

/* Connects to sock and reports the two fds np_connect added: the client's
 * socket and its break eventfd. */
np_client *connect_find_fds(const char *sock, int *ret_sock, int *ret_evfd)
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

#define TEST_TIMEOUT 30

Suite *suite_api(void)
{
        static const struct {
                const char *name;
                void (*add_tests)(TCase *tc);
        } cases[] = {
                { "connect", api_connect_tests },
                { "open", api_open_tests },
                { "unblock-close-reset", api_unblock_close_reset_tests },
                { "wait", api_wait_tests },
                { "deadline", api_deadline_tests },
                { "arm-poll-break", api_arm_poll_break_tests },
                { "introspection", api_introspection_tests },
                { "scenarios", api_scenarios_tests },
        };
        Suite *s = suite_create("api");

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                cases[i].add_tests(test_tcase(s, cases[i].name, TEST_TIMEOUT));
        return s;
}
