/*
 * ops: the operations features of netpolld, against the real daemon.
 *
 * Socket activation (the real systemd-socket-activate, and a LISTEN_FDS
 * socket of the wrong type), sd_notify with this test as the service
 * manager (READY, STATUS, WATCHDOG, RELOADING, STOPPING), SIGHUP reloads
 * that keep connections, every configuration key seen from outside (file
 * mode and group of the socket, handshake timeout, connection limits,
 * access lists, --check-config, errors naming FILE:LINE), and the
 * lame-duck SIGTERM.  Where a test needs an environment of its own it
 * forks and execs the daemon itself; its children get PR_SET_PDEATHSIG so
 * a failed test does not leave a daemon behind.  Timing assertions are
 * never early and have generous upper bounds.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "netpoll.h"

#define MSEC INT64_C(1000000)
#define SEC INT64_C(1000000000)
#define SOCKET_ACTIVATE "/usr/bin/systemd-socket-activate"
#define OTHER_UID 1234 /* neither root nor nobody */
#define LISTEN_FDS_START 3 /* SD_LISTEN_FDS_START */

/* ------------------------------------------------------------------ */
/* Temporary files                                                      */

/* Removes dir and the files in it (one level: the tests make no more). */
static void tmpdir_remove(const char *dir)
{
        char path[PATH_MAX];
        DIR *d = opendir(dir);
        struct dirent *e;

        if (d) {
                while ((e = readdir(d)))
                        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                                unlink(path);
                        }
                closedir(d);
        }
        rmdir(dir);
}

/*
 * Directories a failing test would leave behind: Check ends a failing test
 * process with _exit(), so each test lists its directories in a file named
 * after the runner (the test's parent in fork mode), and an unchecked
 * teardown, which runs in the runner after the case, removes them.
 */
static void leftover_list_path(char *buf, size_t len, pid_t runner)
{
        snprintf(buf, len, "/tmp/netpolld-ops-%d.dirs", (int)runner);
}

static void remove_later(const char *dir)
{
        char list[64];
        int fd;

        leftover_list_path(list, sizeof(list), getppid());
        fd = open(list, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        dprintf(fd, "%s\n", dir);
        close(fd);
}

/* Unchecked teardown, in the runner process. */
static void remove_leftover_dirs(void)
{
        char list[64], dir[128];
        FILE *f;

        leftover_list_path(list, sizeof(list), getpid());
        f = fopen(list, "re");
        if (!f)
                return;
        while (fgets(dir, sizeof(dir), f)) {
                dir[strcspn(dir, "\n")] = '\0';
                if (strncmp(dir, "/tmp/netpolld-", 14) == 0)
                        tmpdir_remove(dir);
        }
        fclose(f);
        unlink(list);
}

static void tmpdir_make(char *dir, size_t len)
{
        snprintf(dir, len, "/tmp/netpolld-ops-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
        remove_later(dir);
}

/* test_daemon_start, with its directory removed even when the test fails. */
static void daemon_start(TestDaemon *td, const char *const *args, bool capture_stderr)
{
        test_daemon_start(td, args, 0, capture_stderr);
        remove_later(td->dir);
}

static void write_textf(const char *path, const char *fmt, ...)
{
        va_list ap;
        FILE *f = fopen(path, "we");

        ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
        va_start(ap, fmt);
        vfprintf(f, fmt, ap);
        va_end(ap);
        ck_assert_int_eq(fclose(f), 0);
}

static bool path_exists(const char *path)
{
        struct stat st;

        return lstat(path, &st) == 0;
}

/* ------------------------------------------------------------------ */
/* Child processes                                                      */

/* Runs in the child after the common set-up, before exec. */
typedef void (*ChildSetup)(void *userdata);

/*
 * Forks and execs argv[0] with a clean signal mask and without the
 * inherited LISTEN_*, NOTIFY_SOCKET, WATCHDOG_* and NETPOLL_SOCKET; setup
 * (may be NULL) adjusts the child further.  ret_stdout / ret_stderr (may be
 * NULL: /dev/null) get non-blocking read ends of pipes.
 */
static pid_t spawn(const char *const *argv, ChildSetup setup, void *userdata, int *ret_stdout,
                   int *ret_stderr)
{
        int out[2] = { -1, -1 }, err[2] = { -1, -1 };
        pid_t parent = getpid();

        if (ret_stdout)
                ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
        if (ret_stderr)
                ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);

                dup2(null, STDIN_FILENO);
                dup2(ret_stdout ? out[1] : null, STDOUT_FILENO);
                dup2(ret_stderr ? err[1] : null, STDERR_FILENO);
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(125);
                test_child_env();
                if (setup)
                        setup(userdata);
                execv(argv[0], (char *const *)argv);
                _exit(127);
        }
        if (ret_stdout) {
                close(out[1]);
                fcntl(out[0], F_SETFL, O_NONBLOCK);
                *ret_stdout = out[0];
        }
        if (ret_stderr) {
                close(err[1]);
                fcntl(err[0], F_SETFL, O_NONBLOCK);
                *ret_stderr = err[0];
        }
        return pid;
}

/* SIGTERM, then the exit status (SIGKILL after 10 s: a failure). */
static int stop_daemon(pid_t pid)
{
        kill(pid, SIGTERM);
        int status = test_wait_exit(pid, 10000);
        if (status == -1)
                ck_abort_msg("netpolld did not exit within 10 s of SIGTERM");
        return status;
}

static void assert_exited_0(int status)
{
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "netpolld did not exit 0 (wait status 0x%x)", status);
}

/* The daemon binary as an absolute path (systemd-socket-activate execs it). */
static void daemon_bin_abs(char *buf)
{
        ck_assert_msg(realpath(test_daemon_bin(), buf) != NULL, "no daemon binary at %s",
                      test_daemon_bin());
}

/* ------------------------------------------------------------------ */
/* The daemon's log                                                     */

typedef struct Log {
        int fd; /* read end of the daemon's stderr, non-blocking */
        size_t len;
        char buf[256 * 1024];
} Log;

static void dlog_init(Log *l, int fd)
{
        l->fd = fd;
        l->len = 0;
        l->buf[0] = '\0';
}

/* Appends whatever the daemon wrote so far. */
static void dlog_pump(Log *l)
{
        while (l->fd >= 0 && l->len + 1 < sizeof(l->buf)) {
                ssize_t n = read(l->fd, l->buf + l->len, sizeof(l->buf) - 1 - l->len);
                if (n <= 0)
                        break;
                l->len += (size_t)n;
        }
        l->buf[l->len] = '\0';
}

/* Waits at most timeout_ns until needle shows up at or after offset from;
 * returns its offset, or -1. */
static long dlog_wait(Log *l, size_t from, const char *needle, int64_t timeout_ns)
{
        int64_t end = test_now() + timeout_ns;

        for (;;) {
                dlog_pump(l);
                const char *p = strstr(l->buf + from, needle);
                if (p)
                        return p - l->buf;
                if (test_now() >= end)
                        return -1;
                usleep(10000);
        }
}

static void dlog_close(Log *l)
{
        if (l->fd >= 0)
                close(l->fd);
        l->fd = -1;
}

/* ------------------------------------------------------------------ */
/* Clients                                                              */

/* np_connect, retried while the socket is not there yet (at most 10 s). */
static int connect_retry(const char *path, np_client **ret)
{
        int64_t end = test_now() + 10 * SEC;
        int r;

        while ((r = np_connect(path, ret)) == -ENOENT || r == -ECONNREFUSED) {
                if (test_now() >= end)
                        break;
                usleep(10000);
        }
        return r;
}

/*
 * The first np_connect to a daemon test_daemon_start just started: its
 * readiness probe may still count as a connection for a moment, so a
 * refusal is retried (at most 10 s).  Only for set-up, never for the
 * refusal under test.
 */
static int connect_first(const char *path, np_client **ret)
{
        int64_t end = test_now() + 10 * SEC;
        int r;

        while ((r = np_connect(path, ret)) == -EUSERS || r == -ECONNREFUSED ||
               r == -ECONNRESET) {
                if (test_now() >= end)
                        break;
                usleep(10000);
        }
        return r;
}

/* What a child running as another user saw. */
typedef struct AsResult {
        int stage; /* 0 credentials, 1 np_connect, 2 np_ping, 3 all good */
        int r;
} AsResult;

/* Forks a child that drops to uid/gid (no supplementary groups), connects
 * to path and pings. */
static AsResult connect_as(const char *path, uid_t uid, gid_t gid)
{
        AsResult res = { .stage = -1, .r = 0 };
        int p[2];

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                AsResult a = { .stage = 0, .r = 0 };
                np_client *c;

                if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
                        a.r = -errno;
                } else if ((a.stage = 1, a.r = np_connect(path, &c)) == 0) {
                        a.stage = 2;
                        a.r = np_ping(c);
                        if (a.r == 0)
                                a.stage = 3;
                        np_disconnect(c);
                }
                (void)!write(p[1], &a, sizeof(a));
                _exit(0);
        }
        close(p[1]);
        struct pollfd pfd = { .fd = p[0], .events = POLLIN };
        if (poll(&pfd, 1, 20000) == 1 && read(p[0], &res, sizeof(res)) != sizeof(res))
                res.stage = -1;
        close(p[0]);
        kill(pid, SIGKILL); /* no-op when it is done */
        waitpid(pid, NULL, 0);
        return res;
}

/* ------------------------------------------------------------------ */
/* sd_notify: this test as the service manager                          */

/* An AF_UNIX datagram socket bound to path. */
static int notify_socket_open(const char *path)
{
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
        ck_assert_msg(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0, "bind %s: %s", path,
                      strerror(errno));
        return fd;
}

/* One notification (NUL-terminated) within timeout_ns: its length, 0 on timeout. */
static size_t notify_recv(int fd, char *buf, size_t len, int64_t timeout_ns)
{
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int ms = (int)((timeout_ns + MSEC - 1) / MSEC);

        if (poll(&pfd, 1, ms < 0 ? 0 : ms) != 1)
                return 0;
        ssize_t n = recv(fd, buf, len - 1, MSG_DONTWAIT);
        if (n <= 0)
                return 0;
        buf[n] = '\0';
        return (size_t)n;
}

/* Whether a notification has a line starting with prefix. */
static bool notify_has(const char *msg, const char *prefix)
{
        size_t n = strlen(prefix);

        for (const char *p = msg; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
                if (strncmp(p, prefix, n) == 0)
                        return true;
        return false;
}

/* Receives notifications until one has a line starting with prefix (at
 * most timeout_ns); true with it in buf. */
static bool notify_wait_for(int fd, const char *prefix, char *buf, size_t len, int64_t timeout_ns)
{
        int64_t end = test_now() + timeout_ns;

        while (test_now() < end)
                if (notify_recv(fd, buf, len, end - test_now()) > 0 && notify_has(buf, prefix))
                        return true;
        return false;
}

typedef struct NotifyEnv {
        const char *socket;
        const char *watchdog_usec; /* NULL: no watchdog */
        bool watchdog_pid_self;    /* else WATCHDOG_PID=1, someone else */
} NotifyEnv;

static void setup_notify_env(void *userdata)
{
        const NotifyEnv *e = userdata;
        char pid[32];

        setenv("NOTIFY_SOCKET", e->socket, 1);
        if (e->watchdog_usec) {
                snprintf(pid, sizeof(pid), "%d", e->watchdog_pid_self ? (int)getpid() : 1);
                setenv("WATCHDOG_USEC", e->watchdog_usec, 1);
                setenv("WATCHDOG_PID", pid, 1);
        }
}

/* ------------------------------------------------------------------ */
/* Socket activation                                                    */

START_TEST(test_ops_socket_activation_serves_passed_socket)
{
        static Log log;
        char dir[64], sock[108], bin[PATH_MAX];
        np_client *c = NULL;
        struct np_status st;
        np_desc d;
        int p[2], err_fd, r;
        struct stat sst;

        ck_assert_msg(access(SOCKET_ACTIVATE, X_OK) == 0, "%s is missing", SOCKET_ACTIVATE);
        daemon_bin_abs(bin);
        tmpdir_make(dir, sizeof(dir));
        snprintf(sock, sizeof(sock), "%s/np.sock", dir);
        const char *argv[] = { SOCKET_ACTIVATE, "--seqpacket", "-l", sock, bin,
                               "--log-level", "debug", NULL };
        pid_t pid = spawn(argv, NULL, NULL, NULL, &err_fd);
        dlog_init(&log, err_fd);

        /* systemd-socket-activate binds and listens, and execs netpolld in
         * its own process at the first connection attempt: ours. */
        r = connect_retry(sock, &c);
        ck_assert_msg(r == 0, "np_connect through systemd-socket-activate: %s", np_strerror(r));
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_status(c, &st), 0);
        ck_assert_msg(st.pid == (uint32_t)pid, "served by pid %u, not the activated %d", st.pid,
                      (int)pid);

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        ck_assert_int_eq(np_open(c, p[0], 42, &d), 0);
        ck_assert_int_eq(write(p[1], "x", 1), 1);
        ck_assert_int_eq(np_wait(c, d, NP_READ), NP_OK);
        ck_assert_int_eq(np_unblock(c, d), 0);
        ck_assert_int_eq(np_close(c, d), 0);
        np_disconnect(c);
        close(p[0]);
        close(p[1]);

        ck_assert_msg(dlog_wait(&log, 0, "the socket passed by systemd", 5 * SEC) >= 0,
                      "log does not mention the passed socket:\n%s", log.buf);
        ck_assert_msg(dlog_wait(&log, 0, "connected as", 5 * SEC) >= 0,
                      "--log-level debug did not reach netpolld:\n%s", log.buf);

        assert_exited_0(stop_daemon(pid));
        /* Not its file: the socket unit owns it, netpolld leaves it. */
        ck_assert_msg(stat(sock, &sst) == 0 && S_ISSOCK(sst.st_mode),
                      "netpolld removed the socket file systemd created");
        dlog_close(&log);
        tmpdir_remove(dir);
}
END_TEST

/* In the child: a listening AF_UNIX SOCK_STREAM socket at fd 3, announced
 * through LISTEN_FDS=1 / LISTEN_PID=self. */
static void setup_stream_listen_fd(void *userdata)
{
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        char pid[32];
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);

        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", (const char *)userdata);
        if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 8) < 0)
                _exit(126);
        if (fd != LISTEN_FDS_START) {
                if (dup2(fd, LISTEN_FDS_START) < 0)
                        _exit(126);
                close(fd);
        }
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        setenv("LISTEN_FDS", "1", 1);
        setenv("LISTEN_PID", pid, 1);
}

START_TEST(test_ops_socket_activation_refuses_stream_socket)
{
        static Log log;
        char dir[64], stream[108], sock[108];
        int err_fd, status;

        tmpdir_make(dir, sizeof(dir));
        snprintf(stream, sizeof(stream), "%s/stream.sock", dir);
        snprintf(sock, sizeof(sock), "%s/np.sock", dir);
        const char *argv[] = { test_daemon_bin(), "--socket", sock, NULL };
        pid_t pid = spawn(argv, setup_stream_listen_fd, stream, NULL, &err_fd);
        dlog_init(&log, err_fd);

        status = test_wait_exit(pid, 10000);
        if (status == -1) {
                dlog_pump(&log);
                ck_abort_msg("netpolld kept running on a passed SOCK_STREAM socket:\n%s",
                             log.buf);
        }
        dlog_pump(&log);
        ck_assert_msg(!(WIFEXITED(status) && WEXITSTATUS(status) == 126),
                      "could not set up the stream socket");
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1,
                      "wait status 0x%x, expected exit 1; log:\n%s", status, log.buf);
        ck_assert_msg(strstr(log.buf, "AF_UNIX SOCK_SEQPACKET") != NULL,
                      "no message about AF_UNIX SOCK_SEQPACKET:\n%s", log.buf);
        ck_assert_msg(!path_exists(sock), "netpolld fell back to its own socket");
        dlog_close(&log);
        tmpdir_remove(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* sd_notify                                                            */

START_TEST(test_ops_sd_notify_ready_watchdog_status_reload_stopping)
{
        char dir[64], sock[108], npath[108], msg[4096];
        np_client *c;
        int p[2], status;
        size_t n;

        tmpdir_make(dir, sizeof(dir));
        snprintf(sock, sizeof(sock), "%s/np.sock", dir);
        snprintf(npath, sizeof(npath), "%s/notify", dir);
        int nfd = notify_socket_open(npath);
        NotifyEnv env = { .socket = npath, .watchdog_usec = "200000", .watchdog_pid_self = true };
        const char *argv[] = { test_daemon_bin(), "--socket", sock, NULL };
        pid_t pid = spawn(argv, setup_notify_env, &env, NULL, NULL);

        /* READY=1 first, with a STATUS= line, once it serves. */
        n = notify_recv(nfd, msg, sizeof(msg), 10 * SEC);
        ck_assert_msg(n > 0, "no notification within 10 s of the start");
        ck_assert_msg(notify_has(msg, "READY=1"), "first notification is not READY=1: '%s'", msg);
        ck_assert_msg(notify_has(msg, "STATUS="), "READY=1 without STATUS=: '%s'", msg);
        int fd = test_raw_connect(sock);
        ck_assert_msg(fd >= 0, "READY=1 before the socket accepts connections");
        close(fd);

        /* WATCHDOG=1 every quarter of WATCHDOG_USEC (50 ms); nothing changes,
         * so no STATUS=. */
        int pings = 0, statuses = 0;
        int64_t t0 = test_now();
        while (test_now() - t0 < 2 * SEC) {
                if (notify_recv(nfd, msg, sizeof(msg), t0 + 2 * SEC - test_now()) == 0)
                        continue;
                pings += notify_has(msg, "WATCHDOG=1");
                statuses += notify_has(msg, "STATUS=");
        }
        int64_t elapsed = test_now() - t0;
        ck_assert_msg(pings >= 6, "%d WATCHDOG=1 in 2 s with WATCHDOG_USEC=200000", pings);
        ck_assert_msg(pings <= elapsed / (40 * MSEC) + 1,
                      "%d WATCHDOG=1 in %lld ms: more often than every 40 ms", pings,
                      (long long)(elapsed / MSEC));
        ck_assert_msg(statuses == 0, "%d STATUS= while nothing changed", statuses);

        /* A connection changes the status; churn it for 3 s: STATUS= at most
         * once a second. */
        ck_assert_int_eq(np_connect(sock, &c), 0);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        bool open = false, saw_connection = false;
        np_desc d = 0;
        statuses = 0;
        t0 = test_now();
        while (test_now() - t0 < 3 * SEC) {
                if (!open) {
                        ck_assert_int_eq(np_open(c, p[0], 1, &d), 0);
                } else {
                        ck_assert_int_eq(np_unblock(c, d), 0);
                        ck_assert_int_eq(np_close(c, d), 0);
                }
                open = !open;
                if (notify_recv(nfd, msg, sizeof(msg), 10 * MSEC) > 0 &&
                    notify_has(msg, "STATUS=")) {
                        statuses++;
                        saw_connection |= strstr(msg, "STATUS=1 connections") != NULL;
                }
        }
        elapsed = test_now() - t0;
        if (open) {
                ck_assert_int_eq(np_unblock(c, d), 0);
                ck_assert_int_eq(np_close(c, d), 0);
        }
        close(p[0]);
        close(p[1]);
        ck_assert_msg(saw_connection, "no STATUS= with 1 connection after a client connected");
        ck_assert_msg(statuses <= elapsed / SEC + 2, "%d STATUS= in %lld ms of churn", statuses,
                      (long long)(elapsed / MSEC));

        /* SIGHUP: RELOADING=1 (with MONOTONIC_USEC=), then READY=1. */
        kill(pid, SIGHUP);
        ck_assert_msg(notify_wait_for(nfd, "RELOADING=1", msg, sizeof(msg), 10 * SEC),
                      "no RELOADING=1 after SIGHUP");
        ck_assert_msg(notify_has(msg, "MONOTONIC_USEC="), "RELOADING=1 without MONOTONIC_USEC=");
        ck_assert_msg(notify_wait_for(nfd, "READY=1", msg, sizeof(msg), 10 * SEC),
                      "no READY=1 after RELOADING=1");
        ck_assert_int_eq(np_ping(c), 0);
        np_disconnect(c);

        /* SIGTERM: STOPPING=1, exit 0. */
        kill(pid, SIGTERM);
        ck_assert_msg(notify_wait_for(nfd, "STOPPING=1", msg, sizeof(msg), 10 * SEC),
                      "no STOPPING=1 after SIGTERM");
        status = test_wait_exit(pid, 10000);
        ck_assert_msg(status != -1, "no exit within 10 s of SIGTERM");
        assert_exited_0(status);
        close(nfd);
        tmpdir_remove(dir);
}
END_TEST

START_TEST(test_ops_sd_notify_no_watchdog_for_another_pid)
{
        char dir[64], sock[108], npath[108], msg[4096];
        int pings = 0;

        tmpdir_make(dir, sizeof(dir));
        snprintf(sock, sizeof(sock), "%s/np.sock", dir);
        snprintf(npath, sizeof(npath), "%s/notify", dir);
        int nfd = notify_socket_open(npath);
        NotifyEnv env = { .socket = npath, .watchdog_usec = "200000", .watchdog_pid_self = false };
        const char *argv[] = { test_daemon_bin(), "--socket", sock, NULL };
        pid_t pid = spawn(argv, setup_notify_env, &env, NULL, NULL);

        ck_assert_msg(notify_wait_for(nfd, "READY=1", msg, sizeof(msg), 10 * SEC),
                      "no READY=1");
        int64_t t0 = test_now();
        while (test_now() - t0 < 1 * SEC)
                if (notify_recv(nfd, msg, sizeof(msg), t0 + SEC - test_now()) > 0)
                        pings += notify_has(msg, "WATCHDOG=1");
        ck_assert_msg(pings == 0, "%d WATCHDOG=1 though WATCHDOG_PID names another process",
                      pings);
        assert_exited_0(stop_daemon(pid));
        close(nfd);
        tmpdir_remove(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* SIGHUP reload                                                        */

START_TEST(test_ops_reload_keeps_connections_and_applies_limits)
{
        static Log log;
        char dir[64], sock[108], other[108], cfg[128], needle[200];
        np_client *c, *c2, *c3;
        struct np_session_stats st;
        int p[3][2], extra[2], err_fd;
        np_desc d[3], dx;
        Waiter w;
        size_t from;

        tmpdir_make(dir, sizeof(dir));
        snprintf(sock, sizeof(sock), "%s/np.sock", dir);
        snprintf(other, sizeof(other), "%s/other.sock", dir);
        snprintf(cfg, sizeof(cfg), "%s/netpolld.conf", dir);
        /* No --socket and no --log-level: the file decides both. */
        write_textf(cfg,
                    "[daemon]\nsocket_path = %s\n[limits]\nmax_descriptors_per_connection = 4\n"
                    "[log]\nlevel = info\n",
                    sock);
        const char *argv[] = { test_daemon_bin(), "--config", cfg, NULL };
        pid_t pid = spawn(argv, NULL, NULL, NULL, &err_fd);
        dlog_init(&log, err_fd);
        test_await_listening(pid, sock, -1);

        ck_assert_int_eq(np_connect(sock, &c), 0);
        for (int i = 0; i < 3; i++) {
                ck_assert_int_eq(pipe2(p[i], O_CLOEXEC), 0);
                ck_assert_int_eq(np_open(c, p[i][0], (uint64_t)i, &d[i]), 0);
        }
        ck_assert_int_eq(pipe2(extra, O_CLOEXEC), 0);
        waiter_start(&w, c, d[0], NP_READ, false);
        await_waiters(c, 1);
        dlog_pump(&log);
        ck_assert_msg(strstr(log.buf, "connected as") == NULL,
                      "debug line logged at level info:\n%s", log.buf);

        /* Reload: lower quota, debug, and a socket_path that needs a restart. */
        write_textf(cfg,
                    "[daemon]\nsocket_path = %s\n[limits]\nmax_descriptors_per_connection = 2\n"
                    "[log]\nlevel = debug\n",
                    other);
        from = log.len;
        kill(pid, SIGHUP);
        ck_assert_msg(dlog_wait(&log, from, "configuration reloaded", 10 * SEC) >= 0,
                      "no reload logged:\n%s", log.buf + from);
        ck_assert_msg(strstr(log.buf + from, "restart") != NULL,
                      "changed socket_path not reported as needing a restart:\n%s",
                      log.buf + from);

        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_session_stats(c, &st), 0);
        ck_assert_uint_eq(st.descriptors, 3);
        ck_assert_uint_eq(st.waiters, 1);
        ck_assert_msg(!atomic_load(&w.done), "parked np_wait ended by the reload (%d)", w.result);
        ck_assert_int_eq(np_open(c, extra[0], 9, &dx), -EDQUOT);

        /* debug applies: a new connection is logged; the old path serves. */
        from = log.len;
        ck_assert_int_eq(np_connect(sock, &c2), 0);
        ck_assert_msg(dlog_wait(&log, from, "connected as", 10 * SEC) >= 0,
                      "log level debug not applied:\n%s", log.buf + from);
        ck_assert_msg(!path_exists(other), "reload bound the new socket_path");

        /* The parked wait survived: readiness still reaches it. */
        ck_assert_int_eq(write(p[0][1], "x", 1), 1);
        ck_assert_msg(waiter_join_within(&w, 10 * SEC), "parked np_wait did not end on readiness");
        ck_assert_int_eq(w.result, NP_OK);

        /* A bad file is refused with FILE:LINE and the key; the running
         * configuration (quota 2, debug) stays. */
        write_textf(cfg,
                    "[daemon]\nsocket_path = %s\n[limits]\nmax_descriptors_per_connection = 10\n"
                    "no_such_key = 1\n[log]\nlevel = info\n",
                    sock);
        from = log.len;
        kill(pid, SIGHUP);
        snprintf(needle, sizeof(needle), "%s:5:", cfg);
        ck_assert_msg(dlog_wait(&log, from, needle, 10 * SEC) >= 0,
                      "bad reload not reported as %s:\n%s", needle, log.buf + from);
        ck_assert_msg(strstr(log.buf + from, "no_such_key") != NULL, "key not named:\n%s",
                      log.buf + from);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_open(c, extra[0], 9, &dx), -EDQUOT);
        from = log.len;
        ck_assert_int_eq(np_connect(sock, &c3), 0);
        ck_assert_msg(dlog_wait(&log, from, "connected as", 10 * SEC) >= 0,
                      "log level changed by a refused reload:\n%s", log.buf + from);

        np_disconnect(c3);
        np_disconnect(c2);
        for (int i = 0; i < 3; i++) {
                ck_assert_int_eq(np_unblock(c, d[i]), 0);
                ck_assert_int_eq(np_close(c, d[i]), 0);
                close(p[i][0]);
                close(p[i][1]);
        }
        close(extra[0]);
        close(extra[1]);
        np_disconnect(c);
        assert_exited_0(stop_daemon(pid));
        ck_assert_msg(!path_exists(sock), "socket file left behind");
        dlog_close(&log);
        tmpdir_remove(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Configuration keys through the daemon                                */

/* Starts a daemon with --config dir/netpolld.conf holding text. */
static void start_with_config(TestDaemon *td, char *cfgdir, size_t len, const char *text,
                              bool capture_stderr)
{
        char cfg[128];

        tmpdir_make(cfgdir, len);
        snprintf(cfg, sizeof(cfg), "%s/netpolld.conf", cfgdir);
        write_textf(cfg, "%s", text);
        const char *args[] = { "--config", cfg, NULL };
        daemon_start(td, args, capture_stderr);
}

START_TEST(test_ops_config_socket_mode_sets_file_mode)
{
        TestDaemon td;
        char cfgdir[64];
        struct stat st;

        daemon_start(&td, NULL, false);
        ck_assert_int_eq(stat(td.sock, &st), 0);
        ck_assert_msg((st.st_mode & 07777) == 0660, "default mode %04o, expected 0660",
                      (unsigned)(st.st_mode & 07777));
        assert_exited_0(test_daemon_stop(&td));

        start_with_config(&td, cfgdir, sizeof(cfgdir), "[daemon]\nsocket_mode = 0600\n", false);
        ck_assert_int_eq(stat(td.sock, &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        ck_assert_msg((st.st_mode & 07777) == 0600, "mode %04o, expected 0600",
                      (unsigned)(st.st_mode & 07777));
        assert_exited_0(test_daemon_stop(&td));
        tmpdir_remove(cfgdir);
}
END_TEST

START_TEST(test_ops_config_socket_group_sets_file_group)
{
        TestDaemon td;
        char cfgdir[64], text[128];
        struct stat st;
        struct group *g = getgrnam("nogroup");

        if (!g)
                g = getgrnam("daemon");
        ck_assert_msg(g != NULL, "neither group nogroup nor daemon exists");
        gid_t gid = g->gr_gid;
        ck_assert_uint_ne(gid, getegid());
        snprintf(text, sizeof(text), "[daemon]\nsocket_group = %s\n", g->gr_name);
        start_with_config(&td, cfgdir, sizeof(cfgdir), text, false);
        ck_assert_int_eq(stat(td.sock, &st), 0);
        ck_assert_msg(st.st_gid == gid, "socket group %u, expected %u", (unsigned)st.st_gid,
                      (unsigned)gid);
        ck_assert_msg((st.st_mode & 07777) == 0660, "mode %04o, expected the default 0660",
                      (unsigned)(st.st_mode & 07777));
        assert_exited_0(test_daemon_stop(&td));
        tmpdir_remove(cfgdir);
}
END_TEST

START_TEST(test_ops_config_handshake_timeout_drops_silent_connection)
{
        TestDaemon td;
        char cfgdir[64], b[256];
        np_client *c;
        ssize_t n;

        start_with_config(&td, cfgdir, sizeof(cfgdir), "[limits]\nhandshake_timeout = 300ms\n",
                          false);
        ck_assert_int_eq(np_connect(td.sock, &c), 0);
        int64_t t0 = test_now();
        int fd = test_raw_connect(td.sock);
        ck_assert_int_ge(fd, 0);
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        do {
                ck_assert_msg(poll(&pfd, 1, 10000) == 1, "silent connection not closed in 10 s");
                n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
        } while (n > 0);
        int64_t elapsed = test_now() - t0;
        ck_assert_msg(n == 0, "recv: %s, expected the end of the connection", strerror(errno));
        ck_assert_msg(elapsed >= 300 * MSEC, "closed after %lld ms, before 300 ms",
                      (long long)(elapsed / MSEC));
        ck_assert_msg(elapsed < 3 * SEC, "closed after %lld ms, expected about 300 ms",
                      (long long)(elapsed / MSEC));
        close(fd);
        /* A client that said hello is not subject to it. */
        ck_assert_int_eq(np_ping(c), 0);
        np_disconnect(c);
        assert_exited_0(test_daemon_stop(&td));
        tmpdir_remove(cfgdir);
}
END_TEST

START_TEST(test_ops_config_max_connections_refuses_the_next)
{
        TestDaemon td;
        char cfgdir[64];
        np_client *c1, *c2, *c3 = NULL;
        int r;

        start_with_config(&td, cfgdir, sizeof(cfgdir), "[limits]\nmax_connections = 2\n", false);
        ck_assert_int_eq(connect_first(td.sock, &c1), 0);
        ck_assert_int_eq(np_connect(td.sock, &c2), 0);
        r = np_connect(td.sock, &c3);
        ck_assert_msg(r == -ECONNREFUSED, "third connection: %d (%s), expected -ECONNREFUSED", r,
                      np_strerror(r));
        ck_assert_int_eq(np_ping(c1), 0);
        ck_assert_int_eq(np_ping(c2), 0);
        /* A freed place is taken again once the daemon has seen the close. */
        np_disconnect(c2);
        int64_t end = test_now() + 10 * SEC;
        while (((r = np_connect(td.sock, &c3)) == -ECONNREFUSED || r == -ECONNRESET) &&
               test_now() < end)
                usleep(10000);
        ck_assert_msg(r == 0, "connection after a disconnect: %s", np_strerror(r));
        np_disconnect(c3);
        np_disconnect(c1);
        assert_exited_0(test_daemon_stop(&td));
        tmpdir_remove(cfgdir);
}
END_TEST

START_TEST(test_ops_config_max_connections_per_uid_gets_eusers)
{
        TestDaemon td;
        char cfgdir[64];
        np_client *c1, *c2 = NULL;
        int r;

        start_with_config(&td, cfgdir, sizeof(cfgdir),
                          "[daemon]\nsocket_mode = 0666\n[limits]\nmax_connections_per_uid = 1\n",
                          false);
        ck_assert_int_eq(chmod(td.dir, 0755), 0);
        ck_assert_int_eq(connect_first(td.sock, &c1), 0);
        r = np_connect(td.sock, &c2);
        ck_assert_msg(r == -EUSERS, "second connection of uid 0: %d (%s), expected -EUSERS", r,
                      np_strerror(r));
        /* Another uid has its own count. */
        AsResult a = connect_as(td.sock, OTHER_UID, OTHER_UID);
        ck_assert_msg(a.stage == 3, "uid %d: stage %d, %s", OTHER_UID, a.stage,
                      np_strerror(a.r));
        ck_assert_int_eq(np_ping(c1), 0);
        np_disconnect(c1);
        assert_exited_0(test_daemon_stop(&td));
        tmpdir_remove(cfgdir);
}
END_TEST

START_TEST(test_ops_config_allow_users_refuses_others_with_eacces)
{
        static Log log;
        TestDaemon td;
        char cfgdir[64];
        np_client *c;
        struct passwd *pw = getpwnam("nobody");

        ck_assert_msg(pw != NULL, "no user nobody");
        uid_t nobody = pw->pw_uid;
        gid_t nobody_gid = pw->pw_gid;
        ck_assert_uint_ne(nobody, OTHER_UID);
        start_with_config(&td, cfgdir, sizeof(cfgdir),
                          "[daemon]\nsocket_mode = 0666\n[access]\nallow_users = nobody\n", true);
        dlog_init(&log, td.stderr_fd);
        /* Let anyone reach the socket: only [access] decides. */
        ck_assert_int_eq(chmod(td.dir, 0755), 0);

        AsResult other = connect_as(td.sock, OTHER_UID, OTHER_UID);
        ck_assert_msg(other.stage == 1 && other.r == -EACCES,
                      "uid %d not in allow_users: stage %d, %d (%s), expected -EACCES from "
                      "np_connect",
                      OTHER_UID, other.stage, other.r, np_strerror(other.r));
        AsResult allowed = connect_as(td.sock, nobody, nobody_gid);
        ck_assert_msg(allowed.stage == 3, "nobody (allowed): stage %d, %s", allowed.stage,
                      np_strerror(allowed.r));
        ck_assert_int_eq(np_connect(td.sock, &c), 0); /* root always */
        ck_assert_int_eq(np_ping(c), 0);
        np_disconnect(c);
        ck_assert_msg(dlog_wait(&log, 0, "allow_users", 5 * SEC) >= 0,
                      "refusal not logged:\n%s", log.buf);
        td.stderr_fd = -1; /* the Log owns it now */
        dlog_close(&log);
        assert_exited_0(test_daemon_stop(&td));
        tmpdir_remove(cfgdir);
}
END_TEST

static void assert_has_line(const char *text, const char *line)
{
        char want[256];
        size_t n = strlen(line);

        snprintf(want, sizeof(want), "\n%s\n", line);
        ck_assert_msg(strncmp(text, want + 1, n + 1) == 0 || strstr(text, want) != NULL,
                      "no line '%s' in:\n%s", line, text);
}

START_TEST(test_ops_check_config_prints_every_key)
{
        static TestRun run, again;
        char dir[64], cfg[128], cfg2[128], sock[108], line[256];
        uid_t nobody_uid, daemon_uid;
        gid_t nogroup_gid, daemon_gid;
        struct passwd *pw;
        struct group *gr;

        /* getpw* and getgr* return static storage: copy each at once. */
        ck_assert_ptr_nonnull(pw = getpwnam("nobody"));
        nobody_uid = pw->pw_uid;
        ck_assert_ptr_nonnull(pw = getpwnam("daemon"));
        daemon_uid = pw->pw_uid;
        ck_assert_ptr_nonnull(gr = getgrnam("nogroup"));
        nogroup_gid = gr->gr_gid;
        ck_assert_ptr_nonnull(gr = getgrnam("daemon"));
        daemon_gid = gr->gr_gid;
        tmpdir_make(dir, sizeof(dir));
        snprintf(cfg, sizeof(cfg), "%s/netpolld.conf", dir);
        snprintf(cfg2, sizeof(cfg2), "%s/printed.conf", dir);
        snprintf(sock, sizeof(sock), "%s/np.sock", dir);
        write_textf(cfg,
                    "[daemon]\nsocket_path = %s\nsocket_mode = 0640\nsocket_group = daemon\n"
                    "[limits]\nmax_connections = 7\nmax_connections_per_uid = 3\n"
                    "max_descriptors_per_connection = 99\nmax_output_bytes = 65536\n"
                    "handshake_timeout = 300ms\n"
                    "[access]\nallow_users = nobody\nallow_groups = nogroup\n"
                    "admin_users = daemon\nadmin_groups = daemon\n"
                    "[log]\nlevel = debug\n",
                    sock);
        const char *argv[] = { test_daemon_bin(), "--check-config", "--config", cfg, NULL };
        test_run(&run, argv);
        ck_assert_msg(WIFEXITED(run.status) && WEXITSTATUS(run.status) == 0,
                      "wait status 0x%x, stderr:\n%s", run.status, run.err);

        snprintf(line, sizeof(line), "socket_path = %s", sock);
        assert_has_line(run.out, line);
        assert_has_line(run.out, "socket_mode = 0640");
        snprintf(line, sizeof(line), "socket_group = %u", (unsigned)daemon_gid);
        assert_has_line(run.out, line);
        assert_has_line(run.out, "max_connections = 7");
        assert_has_line(run.out, "max_connections_per_uid = 3");
        assert_has_line(run.out, "max_descriptors_per_connection = 99");
        assert_has_line(run.out, "max_output_bytes = 65536");
        assert_has_line(run.out, "handshake_timeout = 300ms");
        snprintf(line, sizeof(line), "allow_users = %u", (unsigned)nobody_uid);
        assert_has_line(run.out, line);
        snprintf(line, sizeof(line), "allow_groups = %u", (unsigned)nogroup_gid);
        assert_has_line(run.out, line);
        snprintf(line, sizeof(line), "admin_users = %u", (unsigned)daemon_uid);
        assert_has_line(run.out, line);
        snprintf(line, sizeof(line), "admin_groups = %u", (unsigned)daemon_gid);
        assert_has_line(run.out, line);
        assert_has_line(run.out, "level = debug");
        ck_assert_msg(!path_exists(sock), "--check-config created the socket");

        /* What it prints is a configuration file meaning the same. */
        write_textf(cfg2, "%s", run.out);
        const char *argv2[] = { test_daemon_bin(), "--check-config", "--config", cfg2, NULL };
        test_run(&again, argv2);
        ck_assert_msg(WIFEXITED(again.status) && WEXITSTATUS(again.status) == 0,
                      "printed configuration refused: %s", again.err);
        ck_assert_str_eq(again.out, run.out);

        /* Flags override the file. */
        const char *argv3[] = { test_daemon_bin(), "--check-config", "--config", cfg,
                                "--socket", "/tmp/elsewhere.sock", "--log-level", "err", NULL };
        test_run(&again, argv3);
        ck_assert_msg(WIFEXITED(again.status) && WEXITSTATUS(again.status) == 0,
                      "wait status 0x%x", again.status);
        assert_has_line(again.out, "socket_path = /tmp/elsewhere.sock");
        assert_has_line(again.out, "level = err");
        assert_has_line(again.out, "max_connections = 7");
        tmpdir_remove(dir);
}
END_TEST

static const struct BadConfig {
        const char *text;
        int line;
        const char *key;
} bad_configs[] = {
        { "[limits]\nmax_connections = 2\nhandshake_timeout = 5 parsecs\n", 3,
          "handshake_timeout" },
        { "# comment\n[access]\nallow_users = root, no-such-user-netpolld\n", 3, "allow_users" },
        { "[daemon]\nsocket_mode = 0999\n", 2, "socket_mode" },
        { "[limits]\nmax_connections_per_uid = 0\n", 2, "max_connections_per_uid" },
        { "[log]\nlevel = loud\n", 2, "level" },
};

START_TEST(test_ops_config_error_names_file_line_and_key)
{
        static TestRun run;
        const struct BadConfig *b = &bad_configs[_i];
        char dir[64], cfg[128], sock[108], want[200];

        tmpdir_make(dir, sizeof(dir));
        snprintf(cfg, sizeof(cfg), "%s/netpolld.conf", dir);
        snprintf(sock, sizeof(sock), "%s/np.sock", dir);
        write_textf(cfg, "%s", b->text);
        snprintf(want, sizeof(want), "%s:%d:", cfg, b->line);

        const char *argv[] = { test_daemon_bin(), "--config", cfg, "--socket", sock, NULL };
        test_run(&run, argv);
        ck_assert_msg(WIFEXITED(run.status) && WEXITSTATUS(run.status) == 1,
                      "wait status 0x%x, expected exit 1", run.status);
        ck_assert_msg(strstr(run.err, want) != NULL, "no '%s' in:\n%s", want, run.err);
        ck_assert_msg(strstr(run.err, b->key) != NULL, "key %s not named in:\n%s", b->key,
                      run.err);
        ck_assert_msg(!path_exists(sock), "socket created despite the bad configuration");

        const char *argv2[] = { test_daemon_bin(), "--check-config", "--config", cfg, NULL };
        test_run(&run, argv2);
        ck_assert_msg(WIFEXITED(run.status) && WEXITSTATUS(run.status) == 1,
                      "--check-config: wait status 0x%x, expected exit 1", run.status);
        ck_assert_msg(strstr(run.err, want) != NULL, "--check-config: no '%s' in:\n%s", want,
                      run.err);
        tmpdir_remove(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Lame-duck SIGTERM                                                    */

static const char *outcome(int r)
{
        return r == NP_ERR_CLOSING ? "NP_ERR_CLOSING" : r == -ECONNRESET ? "-ECONNRESET" : "other";
}

START_TEST(test_ops_sigterm_ends_parked_waits_and_exits_0)
{
        TestDaemon td;
        np_client *c;
        np_desc dr, dw;
        int rp[2], wp[2], status;
        Waiter reader, writer;
        struct stat st;

        daemon_start(&td, NULL, false);
        ck_assert_int_eq(np_connect(td.sock, &c), 0);
        ck_assert_int_eq(pipe2(rp, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(wp, O_CLOEXEC | O_NONBLOCK), 0);
        while (write(wp[1], "xxxxxxxxxxxxxxxx", 16) > 0) /* full: not writable */
                ;
        ck_assert_int_eq(np_open(c, rp[0], 1, &dr), 0);
        ck_assert_int_eq(np_open(c, wp[1], 2, &dw), 0);
        waiter_start(&reader, c, dr, NP_READ, false);
        waiter_start(&writer, c, dw, NP_WRITE, false);
        await_waiters(c, 2);

        int64_t t0 = test_now();
        kill(td.pid, SIGTERM);
        ck_assert_msg(waiter_join_within(&reader, 10 * SEC),
                      "parked read wait not ended by SIGTERM");
        ck_assert_msg(waiter_join_within(&writer, 10 * SEC),
                      "parked write wait not ended by SIGTERM");
        fprintf(stderr, "ops: SIGTERM ended the parked waits with %s (read) and %s (write)\n",
                outcome(reader.result), outcome(writer.result));
        /* The daemon flushes the closing outcomes before it closes. */
        ck_assert_msg(reader.result == NP_ERR_CLOSING, "read wait: %d (%s)", reader.result,
                      np_strerror(reader.result));
        ck_assert_msg(writer.result == NP_ERR_CLOSING, "write wait: %d (%s)", writer.result,
                      np_strerror(writer.result));

        status = test_wait_exit(td.pid, 10000);
        ck_assert_msg(status != -1, "no exit within 10 s of SIGTERM");
        int64_t elapsed = test_now() - t0;
        td.pid = 0;
        assert_exited_0(status);
        ck_assert_msg(elapsed < 5 * SEC, "exit took %lld ms", (long long)(elapsed / MSEC));
        ck_assert_msg(stat(td.sock, &st) < 0 && errno == ENOENT, "socket file left behind");
        ck_assert_int_lt(np_ping(c), 0);

        np_disconnect(c);
        close(rp[0]);
        close(rp[1]);
        close(wp[0]);
        close(wp[1]);
        test_daemon_stop(&td);
}
END_TEST

Suite *suite_ops(void)
{
        Suite *s = suite_create("ops");
        struct {
                const char *name;
                const TTest *tests[8];
        } cases[] = {
                { "activation",
                  { test_ops_socket_activation_serves_passed_socket,
                    test_ops_socket_activation_refuses_stream_socket } },
                { "notify",
                  { test_ops_sd_notify_ready_watchdog_status_reload_stopping,
                    test_ops_sd_notify_no_watchdog_for_another_pid } },
                { "reload", { test_ops_reload_keeps_connections_and_applies_limits } },
                { "config",
                  { test_ops_config_socket_mode_sets_file_mode,
                    test_ops_config_socket_group_sets_file_group,
                    test_ops_config_handshake_timeout_drops_silent_connection,
                    test_ops_config_max_connections_refuses_the_next,
                    test_ops_config_max_connections_per_uid_gets_eusers,
                    test_ops_config_allow_users_refuses_others_with_eacces,
                    test_ops_check_config_prints_every_key } },
                { "lameduck", { test_ops_sigterm_ends_parked_waits_and_exits_0 } },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                TCase *tc = test_tcase(s, cases[i].name, 60);
                tcase_add_unchecked_fixture(tc, NULL, remove_leftover_dirs);
                for (size_t j = 0; j < 8 && cases[i].tests[j]; j++)
                        tcase_add_test(tc, cases[i].tests[j]);
                if (strcmp(cases[i].name, "config") == 0)
                        tcase_add_loop_test(tc, test_ops_config_error_names_file_line_and_key, 0,
                                            (int)(sizeof(bad_configs) / sizeof(bad_configs[0])));
        }
        return s;
}
