/*
 * daemon: black-box tests of the real netpolld and pollctl binaries.
 *
 * Command line and lifecycle: flags, --check-config, sd-daemon log
 * prefixes, SIGTERM/SIGINT, a second daemon, stale and foreign socket
 * paths, pollctl.  Hostile clients: each speaks the raw wire protocol
 * (datagrams packed with the generated protobuf-c code) and misbehaves in
 * one way; the daemon must drop exactly that client, close every fd it
 * sent, and go on serving, with its own fd count back to where it was.
 */
#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "netpoll.h"
#include "netpoll.pb-c.h"

#define MAX_DGRAM (64 * 1024)
#define IO_TIMEOUT_MS 10000

/* ------------------------------------------------------------------ */
/* Running programs                                                     */

typedef struct Run {
        int status;
        char out[16384];
        char err[16384];
} Run;

static const char *pollctl_bin(void)
{
        const char *b = getenv("POLLCTL_BIN");
        return b && *b ? b : "./build/pollctl";
}

static void child_env(void)
{
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        unsetenv("NOTIFY_SOCKET");
        unsetenv("NETPOLL_SOCKET");
}

/* Waits at most timeout_ms for pid; then SIGKILLs it.  Returns the wait
 * status, or -1 when it had to be killed. */
static int wait_exit(pid_t pid, int timeout_ms)
{
        int status;

        for (int waited = 0;; waited += 10) {
                pid_t r = waitpid(pid, &status, WNOHANG);
                if (r == pid)
                        return status;
                ck_assert_int_eq(r, 0);
                if (waited >= timeout_ms)
                        break;
                usleep(10000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
}

/* Runs argv[0] with argv to completion (at most 20 s), capturing stdout and
 * stderr. */
static void run_prog(Run *r, const char *const *argv)
{
        int o[2], e[2];
        size_t no = 0, ne = 0;

        memset(r, 0, sizeof(*r));
        ck_assert_int_eq(pipe2(o, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(e, O_CLOEXEC), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int null = open("/dev/null", O_RDONLY);
                dup2(null, STDIN_FILENO);
                dup2(o[1], STDOUT_FILENO);
                dup2(e[1], STDERR_FILENO);
                child_env();
                execv(argv[0], (char *const *)argv);
                _exit(127);
        }
        close(o[1]);
        close(e[1]);
        struct pollfd pfd[2] = { { .fd = o[0], .events = POLLIN },
                                 { .fd = e[0], .events = POLLIN } };
        int64_t deadline = test_now() + 20 * 1000000000LL;
        while ((pfd[0].fd >= 0 || pfd[1].fd >= 0) && test_now() < deadline) {
                int n = poll(pfd, 2, 100);
                if (n <= 0)
                        continue;
                for (int i = 0; i < 2; i++) {
                        if (pfd[i].fd < 0 || !pfd[i].revents)
                                continue;
                        char *buf = i ? r->err : r->out;
                        size_t *len = i ? &ne : &no;
                        char tmp[4096];
                        ssize_t k = read(pfd[i].fd, tmp, sizeof(tmp));
                        if (k <= 0) {
                                close(pfd[i].fd);
                                pfd[i].fd = -1;
                                continue;
                        }
                        size_t room = sizeof(r->out) - 1 - *len;
                        size_t take = (size_t)k < room ? (size_t)k : room;
                        memcpy(buf + *len, tmp, take);
                        *len += take;
                }
        }
        for (int i = 0; i < 2; i++)
                if (pfd[i].fd >= 0)
                        close(pfd[i].fd);
        r->out[no] = '\0';
        r->err[ne] = '\0';
        r->status = wait_exit(pid, 5000);
        ck_assert_msg(r->status != -1, "%s did not exit (stderr: %s)", argv[0], r->err);
}

static void assert_exit(const Run *r, int code)
{
        ck_assert_msg(WIFEXITED(r->status) && WEXITSTATUS(r->status) == code,
                      "exit status %d (raw 0x%x), want %d\nstdout: %s\nstderr: %s",
                      WIFEXITED(r->status) ? WEXITSTATUS(r->status) : -1, r->status, code,
                      r->out, r->err);
}

/* Starts netpolld on sock (not managed by test_daemon_start) and waits until
 * it accepts connections.  Its stderr is readable (non-blocking) through
 * *ret_err. */
static pid_t spawn_daemon(const char *sock, int *ret_err)
{
        int e[2];

        ck_assert_int_eq(pipe2(e, O_CLOEXEC), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR);
                dup2(null, STDIN_FILENO);
                dup2(null, STDOUT_FILENO);
                dup2(e[1], STDERR_FILENO);
                child_env();
                execl(test_daemon_bin(), test_daemon_bin(), "--socket", sock, (char *)NULL);
                _exit(127);
        }
        close(e[1]);
        fcntl(e[0], F_SETFL, O_NONBLOCK);
        *ret_err = e[0];
        for (int i = 0; i < 1000; i++) {
                int fd = test_raw_connect(sock);
                if (fd >= 0) {
                        close(fd);
                        return pid;
                }
                int status;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        char buf[4096];
                        ssize_t n = read(e[0], buf, sizeof(buf) - 1);
                        buf[n > 0 ? n : 0] = '\0';
                        close(e[0]);
                        ck_abort_msg("netpolld exited at start (status 0x%x): %s", status, buf);
                }
                usleep(10000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(e[0]);
        ck_abort_msg("netpolld did not start listening on %s", sock);
        return -1;
}

/* Reads the daemon's stderr (non-blocking fd) until needle shows up, at
 * most 10 s.  Appends to buf (len bytes).  Returns whether it did. */
static bool read_until(int fd, char *buf, size_t len, const char *needle)
{
        size_t n = strlen(buf);

        for (int i = 0; i < 1000; i++) {
                for (;;) {
                        if (n + 1 >= len)
                                return strstr(buf, needle) != NULL;
                        ssize_t k = read(fd, buf + n, len - 1 - n);
                        if (k <= 0)
                                break;
                        n += (size_t)k;
                        buf[n] = '\0';
                }
                if (strstr(buf, needle))
                        return true;
                usleep(10000);
        }
        return false;
}

/* ------------------------------------------------------------------ */
/* The raw wire protocol                                                */

static int raw_send_bytes(int fd, const void *buf, size_t len, const int *fds, size_t nfds)
{
        ck_assert_uint_le(nfds, TEST_MAX_FDS);
        return test_send_fds(fd, buf, len, fds, nfds, 0);
}

static int raw_send_msg(int fd, const Netpoll__V1__ClientMessage *m, const int *fds, size_t nfds)
{
        size_t len = netpoll__v1__client_message__get_packed_size(m);
        uint8_t *buf = malloc(len ? len : 1);

        ck_assert_ptr_nonnull(buf);
        netpoll__v1__client_message__pack(m, buf);
        int r = raw_send_bytes(fd, buf, len, fds, nfds);
        free(buf);
        return r;
}

static Netpoll__V1__Request mkreq(uint64_t id, int op)
{
        Netpoll__V1__Request q = NETPOLL__V1__REQUEST__INIT;
        q.id = id;
        q.op = (Netpoll__V1__Op)op;
        return q;
}

/* Sends reqs[0..n) in one datagram with fds attached. */
static int raw_send_requests(int fd, Netpoll__V1__Request *reqs, size_t n, const int *fds,
                             size_t nfds)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Request **rp = calloc(n ? n : 1, sizeof(*rp));

        ck_assert_ptr_nonnull(rp);
        for (size_t i = 0; i < n; i++)
                rp[i] = &reqs[i];
        m.n_requests = n;
        m.requests = rp;
        int r = raw_send_msg(fd, &m, fds, nfds);
        free(rp);
        return r;
}

static int raw_send_hello_named(int fd, uint32_t version, const char *name, const int *fds,
                                size_t nfds)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Hello h = NETPOLL__V1__HELLO__INIT;

        h.version = version;
        h.name = (char *)name;
        m.hello = &h;
        return raw_send_msg(fd, &m, fds, nfds);
}

static int raw_send_hello(int fd, uint32_t version, const int *fds, size_t nfds)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Hello h = NETPOLL__V1__HELLO__INIT;

        h.version = version;
        h.name = (char *)"test-daemon";
        m.hello = &h;
        return raw_send_msg(fd, &m, fds, nfds);
}

/*
 * Receives one ServerMessage (at most timeout_ms).  Returns 1 and *ret
 * (free with netpoll__v1__server_message__free_unpacked), 0 on EOF,
 * -ETIMEDOUT, or -errno (-ECONNRESET: the daemon closed on us).
 */
static int raw_recv(int fd, int timeout_ms, Netpoll__V1__ServerMessage **ret)
{
        static uint8_t buf[MAX_DGRAM];
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(sizeof(int) * 8)];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
        struct msghdr mh = {
                .msg_iov = &iov, .msg_iovlen = 1,
                .msg_control = &control, .msg_controllen = sizeof(control),
        };
        struct pollfd pfd = { .fd = fd, .events = POLLIN };

        int n = poll(&pfd, 1, timeout_ms);
        if (n == 0)
                return -ETIMEDOUT;
        if (n < 0)
                return -errno;
        ssize_t k = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (k < 0)
                return -errno;
        ck_assert_msg(mh.msg_controllen == 0, "the daemon sent ancillary data");
        if (k == 0)
                return 0;
        ck_assert_msg(!(mh.msg_flags & MSG_TRUNC), "daemon datagram over 64 KiB");
        Netpoll__V1__ServerMessage *m = netpoll__v1__server_message__unpack(NULL, (size_t)k, buf);
        ck_assert_msg(m != NULL, "undecodable datagram from the daemon (%zd bytes)", k);
        *ret = m;
        return 1;
}

/* Connects and makes the handshake; returns the connection. */
static int raw_hello(const char *sock)
{
        Netpoll__V1__ServerMessage *m;
        int fd = test_raw_connect(sock);

        ck_assert_msg(fd >= 0, "connect %s: %s", sock, strerror(-fd));
        ck_assert_int_eq(raw_send_hello(fd, 1, NULL, 0), 0);
        int r = raw_recv(fd, IO_TIMEOUT_MS, &m);
        ck_assert_msg(r == 1, "no welcome: %d", r);
        ck_assert_int_eq(m->error, 0);
        ck_assert_ptr_nonnull(m->welcome);
        ck_assert_uint_eq(m->welcome->version, 1);
        ck_assert_ptr_nonnull(m->welcome->limits);
        ck_assert_uint_eq(m->welcome->limits->max_fds_per_message, 253);
        netpoll__v1__server_message__free_unpacked(m, NULL);
        return fd;
}

/* Reads until the reply to id arrives; returns its result and, if wanted,
 * the desc.  Events and other replies are skipped. */
static int raw_wait_reply(int fd, uint64_t id, uint64_t *ret_desc)
{
        for (;;) {
                Netpoll__V1__ServerMessage *m;
                int r = raw_recv(fd, IO_TIMEOUT_MS, &m);
                ck_assert_msg(r == 1, "waiting for reply %llu: %d", (unsigned long long)id, r);
                for (size_t i = 0; i < m->n_replies; i++)
                        if (m->replies[i]->id == id) {
                                int result = m->replies[i]->result;
                                if (ret_desc)
                                        *ret_desc = m->replies[i]->desc;
                                netpoll__v1__server_message__free_unpacked(m, NULL);
                                return result;
                        }
                netpoll__v1__server_message__free_unpacked(m, NULL);
        }
}

static void raw_ping(int fd, uint64_t id)
{
        Netpoll__V1__Request q = mkreq(id, NETPOLL__V1__OP__OP_PING);
        ck_assert_int_eq(raw_send_requests(fd, &q, 1, NULL, 0), 0);
        ck_assert_int_eq(raw_wait_reply(fd, id, NULL), 0);
}

typedef struct StatusCopy {
        uint32_t pid;
        uint64_t connections, descriptors, waiters, timers, protocol_errors, slots_in_use;
} StatusCopy;

/* OP_STATUS over a fresh connection (counted in connections). */
static StatusCopy raw_status(const char *sock)
{
        Netpoll__V1__Request q = mkreq(5, NETPOLL__V1__OP__OP_STATUS);
        StatusCopy st = { 0 };
        int fd = raw_hello(sock);

        ck_assert_int_eq(raw_send_requests(fd, &q, 1, NULL, 0), 0);
        for (bool got = false; !got;) {
                Netpoll__V1__ServerMessage *m;
                ck_assert_int_eq(raw_recv(fd, IO_TIMEOUT_MS, &m), 1);
                for (size_t i = 0; i < m->n_replies; i++) {
                        const Netpoll__V1__Reply *r = m->replies[i];
                        if (r->id != 5)
                                continue;
                        ck_assert_ptr_nonnull(r->status);
                        st = (StatusCopy){
                                .pid = r->status->pid,
                                .connections = r->status->connections,
                                .descriptors = r->status->descriptors,
                                .waiters = r->status->waiters,
                                .timers = r->status->timers,
                                .protocol_errors = r->status->protocol_errors,
                                .slots_in_use = r->status->slots_in_use,
                        };
                        got = true;
                }
                netpoll__v1__server_message__free_unpacked(m, NULL);
        }
        close(fd);
        return st;
}

/* A fresh, well-behaved client gets its ping answered. */
static void assert_serves(const TestDaemon *d)
{
        int fd = raw_hello(d->sock);
        raw_ping(fd, 4242);
        raw_ping(fd, 4243);
        close(fd);
}

/* The daemon's fd count with no client connected: measured while only our
 * status connection is there, and the same a moment later (the daemon
 * closes what clients leave behind on its closer threads, so the count
 * must not be racing such a close). */
static int daemon_baseline(const TestDaemon *d)
{
        for (int i = 0; i < 1000; i++) {
                Netpoll__V1__Request q = mkreq(6, NETPOLL__V1__OP__OP_STATUS);
                int fd = raw_hello(d->sock);
                uint64_t connections = 0;
                ck_assert_int_eq(raw_send_requests(fd, &q, 1, NULL, 0), 0);
                for (bool got = false; !got;) {
                        Netpoll__V1__ServerMessage *m;
                        ck_assert_int_eq(raw_recv(fd, IO_TIMEOUT_MS, &m), 1);
                        for (size_t k = 0; k < m->n_replies; k++)
                                if (m->replies[k]->id == 6 && m->replies[k]->status) {
                                        connections = m->replies[k]->status->connections;
                                        got = true;
                                }
                        netpoll__v1__server_message__free_unpacked(m, NULL);
                }
                int n = fd_count_of(d->pid);
                usleep(20000);
                int again = fd_count_of(d->pid);
                close(fd);
                ck_assert_int_gt(n, 0);
                if (connections == 1 && n == again)
                        return n - 1;
                usleep(10000);
        }
        ck_abort_msg("the daemon never got down to one connection");
        return -1;
}

/* Waits (at most 10 s) for the daemon's fd count to come back to want. */
static void wait_fd_count(const TestDaemon *d, int want)
{
        int n = -1;

        for (int i = 0; i < 1000; i++) {
                n = fd_count_of(d->pid);
                if (n == want)
                        return;
                usleep(10000);
        }
        ck_abort_msg("daemon has %d fds open, want its baseline %d", n, want);
}

/* Waits for the daemon to drop the connection.  Returns how many
 * datagrams came before the end (the caller decides whether any may). */
static int expect_dropped(int fd)
{
        int got = 0;

        for (;;) {
                Netpoll__V1__ServerMessage *m;
                int r = raw_recv(fd, IO_TIMEOUT_MS, &m);
                if (r == 0 || r == -ECONNRESET)
                        return got;
                ck_assert_msg(r == 1, "the daemon did not drop the client (%d)", r);
                netpoll__v1__server_message__free_unpacked(m, NULL);
                got++;
        }
}

/* Whether fd (a pipe end) shows that no other copy of the other end is
 * open any more: a read end sees EOF, a write end EPIPE. */
static void assert_read_eof(int rfd)
{
        struct pollfd pfd = { .fd = rfd, .events = POLLIN };
        ck_assert_int_eq(poll(&pfd, 1, IO_TIMEOUT_MS), 1);
        char c;
        ck_assert_int_eq(read(rfd, &c, 1), 0);
}

/* The daemon closes a client's fds on its closer threads, so the close
 * may come a moment after the reply or the drop: allow IO_TIMEOUT_MS. */
static void assert_write_epipe(int wfd)
{
        signal(SIGPIPE, SIG_IGN);
        for (int i = 0; i < IO_TIMEOUT_MS; i++) {
                errno = 0;
                if (write(wfd, "x", 1) < 0)
                        break;
                usleep(1000);
        }
        ck_assert_int_eq(errno, EPIPE);
}

/* Common frame of a hostile-client test. */
typedef struct Hostile {
        TestDaemon d;
        int baseline;
        uint64_t protocol_errors;
} Hostile;

static void hostile_begin(Hostile *h)
{
        test_daemon_start(&h->d, NULL, 0, false);
        h->baseline = daemon_baseline(&h->d);
        h->protocol_errors = raw_status(h->d.sock).protocol_errors;
}

/* After the offender is gone: the daemon serves, its fd count is back, and
 * it counted protocol_errors more protocol errors. */
static void hostile_end(Hostile *h, unsigned protocol_errors)
{
        assert_serves(&h->d);
        wait_fd_count(&h->d, h->baseline);
        StatusCopy st = raw_status(h->d.sock);
        ck_assert_uint_eq(st.protocol_errors, h->protocol_errors + protocol_errors);
        ck_assert_uint_eq(st.descriptors, 0);
        ck_assert_uint_eq(st.waiters, 0);
        ck_assert_uint_eq(st.timers, 0);
        int status = test_daemon_stop(&h->d);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "daemon stopped with status 0x%x", status);
}

/* Starts a daemon with --config, a temporary file holding text; its path
 * goes to conf (32 bytes), for the caller to unlink. */
static void start_with_config(TestDaemon *d, const char *text, char *conf)
{
        snprintf(conf, 32, "/tmp/netpolld-conf-XXXXXX");
        int fd = mkstemp(conf);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
        const char *args[] = { "--config", conf, NULL };
        test_daemon_start(d, args, 0, false);
}

/* ------------------------------------------------------------------ */
/* Command line                                                         */

START_TEST(test_daemon_help_exits_0_with_usage)
{
        Run r;
        const char *argv[] = { test_daemon_bin(), "--help", NULL };

        run_prog(&r, argv);
        assert_exit(&r, 0);
        ck_assert_ptr_nonnull(strstr(r.out, "Usage"));
        ck_assert_ptr_nonnull(strstr(r.out, "--socket"));
        ck_assert_str_eq(r.err, "");

        const char *argv2[] = { test_daemon_bin(), "-h", NULL };
        run_prog(&r, argv2);
        assert_exit(&r, 0);
        ck_assert_ptr_nonnull(strstr(r.out, "Usage"));
}
END_TEST

START_TEST(test_daemon_version_exits_0)
{
        Run r;
        const char *argv[] = { test_daemon_bin(), "--version", NULL };

        run_prog(&r, argv);
        assert_exit(&r, 0);
        ck_assert_ptr_nonnull(strstr(r.out, "netpolld " NETPOLL_VERSION));
        const char *argv2[] = { test_daemon_bin(), "-V", NULL };
        run_prog(&r, argv2);
        assert_exit(&r, 0);
        ck_assert_ptr_nonnull(strstr(r.out, NETPOLL_VERSION));
}
END_TEST

START_TEST(test_daemon_bad_flag_exits_2)
{
        Run r;
        const char *argv[] = { test_daemon_bin(), "--no-such-flag", NULL };

        run_prog(&r, argv);
        assert_exit(&r, 2);
        ck_assert_ptr_nonnull(strstr(r.err, "Usage"));
        ck_assert_str_eq(r.out, "");

        const char *argv2[] = { test_daemon_bin(), "-Z", NULL };
        run_prog(&r, argv2);
        assert_exit(&r, 2);
        ck_assert_ptr_nonnull(strstr(r.err, "Usage"));

        /* A flag missing its argument. */
        const char *argv3[] = { test_daemon_bin(), "--socket", NULL };
        run_prog(&r, argv3);
        assert_exit(&r, 2);
        ck_assert_ptr_nonnull(strstr(r.err, "Usage"));
}
END_TEST

START_TEST(test_daemon_extra_argument_exits_2)
{
        Run r;
        const char *argv[] = { test_daemon_bin(), "--socket", "/tmp/x.sock", "surplus", NULL };

        run_prog(&r, argv);
        assert_exit(&r, 2);
        ck_assert_ptr_nonnull(strstr(r.err, "Usage"));
        ck_assert_ptr_nonnull(strstr(r.err, "surplus"));
        ck_assert_int_ne(access("/tmp/x.sock", F_OK), 0);
}
END_TEST

START_TEST(test_daemon_bad_log_level_exits_2)
{
        Run r;
        const char *argv[] = { test_daemon_bin(), "--log-level", "bogus", NULL };

        run_prog(&r, argv);
        assert_exit(&r, 2);
        ck_assert_ptr_nonnull(strstr(r.err, "bogus"));
}
END_TEST

static void write_file(const char *path, const char *text)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
}

START_TEST(test_daemon_check_config_prints_effective_config)
{
        char dir[] = "/tmp/netpolld-test-XXXXXX", conf[128], sock[128];
        Run r;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(conf, sizeof(conf), "%s/netpolld.conf", dir);
        snprintf(sock, sizeof(sock), "%s/flag.sock", dir);
        write_file(conf, "[daemon]\nsocket_path = /tmp/from-file.sock\n"
                         "[limits]\nmax_connections = 77\nmax_output_bytes = 100000\n"
                         "[log]\nlevel = notice\n");

        const char *argv[] = { test_daemon_bin(), "--check-config", "--config", conf, NULL };
        run_prog(&r, argv);
        assert_exit(&r, 0);
        ck_assert_ptr_nonnull(strstr(r.out, "socket_path = /tmp/from-file.sock\n"));
        ck_assert_ptr_nonnull(strstr(r.out, "max_connections = 77\n"));
        ck_assert_ptr_nonnull(strstr(r.out, "max_descriptors_per_connection = 4096\n"));
        ck_assert_ptr_nonnull(strstr(r.out, "max_output_bytes = 100000\n"));
        ck_assert_ptr_nonnull(strstr(r.out, "level = notice\n"));

        /* Flags override the file. */
        const char *argv2[] = { test_daemon_bin(), "--config", conf, "--socket", sock,
                                "--log-level", "debug", "--check-config", NULL };
        run_prog(&r, argv2);
        assert_exit(&r, 0);
        char want[160];
        snprintf(want, sizeof(want), "socket_path = %s\n", sock);
        ck_assert_ptr_nonnull(strstr(r.out, want));
        ck_assert_ptr_nonnull(strstr(r.out, "max_connections = 77\n"));
        ck_assert_ptr_nonnull(strstr(r.out, "level = debug\n"));
        /* Checking does not start serving. */
        ck_assert_int_ne(access(sock, F_OK), 0);

        unlink(conf);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(test_daemon_check_config_bad_file_exits_1)
{
        char dir[] = "/tmp/netpolld-test-XXXXXX", conf[128], want[192];
        Run r;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(conf, sizeof(conf), "%s/bad.conf", dir);
        write_file(conf, "# comment\n\n[limits]\nmax_connections = 0\n");
        const char *argv[] = { test_daemon_bin(), "--check-config", "--config", conf, NULL };
        run_prog(&r, argv);
        assert_exit(&r, 1);
        snprintf(want, sizeof(want), "%s:4:", conf);
        ck_assert_msg(strstr(r.err, want), "stderr '%s' lacks '%s'", r.err, want);
        ck_assert_ptr_nonnull(strstr(r.err, "max_connections"));
        ck_assert_ptr_null(strstr(r.out, "[daemon]"));

        /* A missing file is an error too, naming it. */
        snprintf(want, sizeof(want), "%s/missing.conf", dir);
        const char *argv2[] = { test_daemon_bin(), "--check-config", "--config", want, NULL };
        run_prog(&r, argv2);
        assert_exit(&r, 1);
        ck_assert_ptr_nonnull(strstr(r.err, want));

        unlink(conf);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Lifecycle                                                            */

START_TEST(test_daemon_logs_carry_sd_daemon_prefixes)
{
        TestDaemon d;
        char log[16384] = "";

        test_daemon_start(&d, NULL, 0, true);
        ck_assert_msg(read_until(d.stderr_fd, log, sizeof(log), "<6>netpolld"),
                      "no '<6>netpolld' in: %s", log);
        /* A protocol error is a warning: <4>. */
        int fd = test_raw_connect(d.sock);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(raw_send_bytes(fd, "\xff\xff\xff", 3, NULL, 0), 0);
        expect_dropped(fd);
        close(fd);
        ck_assert_msg(read_until(d.stderr_fd, log, sizeof(log), "<4>"), "no '<4>' in: %s", log);
        ck_assert_ptr_nonnull(strstr(log, "protocol error"));
        /* Every line is prefixed. */
        for (const char *p = log; *p; p = strchr(p, '\n') + 1) {
                ck_assert_msg(p[0] == '<' && p[1] >= '0' && p[1] <= '7' && p[2] == '>',
                              "line without prefix: %s", p);
                if (!strchr(p, '\n'))
                        break;
        }
        int status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

static void check_stop_signal(int sig)
{
        TestDaemon d;
        struct stat st;

        test_daemon_start(&d, NULL, 0, false);
        assert_serves(&d);
        ck_assert_int_eq(lstat(d.sock, &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        /* A connected client does not keep it from stopping. */
        int idle = raw_hello(d.sock);
        ck_assert_int_eq(kill(d.pid, sig), 0);
        int status = wait_exit(d.pid, 10000);
        ck_assert_msg(status != -1, "netpolld did not exit on signal %d", sig);
        d.pid = 0;
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "signal %d: status 0x%x, want exit 0", sig, status);
        ck_assert_msg(lstat(d.sock, &st) < 0 && errno == ENOENT, "socket file %s left behind",
                      d.sock);
        expect_dropped(idle);
        close(idle);
        test_daemon_stop(&d);
}

START_TEST(test_daemon_sigterm_exits_0_and_removes_socket)
{
        check_stop_signal(SIGTERM);
}
END_TEST

START_TEST(test_daemon_sigint_exits_0_and_removes_socket)
{
        check_stop_signal(SIGINT);
}
END_TEST

START_TEST(test_daemon_sighup_does_not_stop)
{
        TestDaemon d;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        assert_serves(&d);
        ck_assert_int_eq(waitpid(d.pid, NULL, WNOHANG), 0);
        int status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

/* The slice pid's main thread holds (sched_getattr), or -errno. */
static int64_t slice_of(pid_t pid)
{
        TestSched t;
        int r = test_sched_get(pid, &t);

        return r < 0 ? r : t.slice_ns;
}

/* Waits (at most 5 s) until pid's slice is want; returns the last one read. */
static int64_t await_slice(pid_t pid, int64_t want)
{
        int64_t ns = -1;

        for (int i = 0; i < 500 && (ns = slice_of(pid)) != want; i++)
                usleep(10000);
        return ns;
}

/*
 * scheduler_slice: the daemon asks for it at start-up (default 20 ms) and
 * on every reload; 0 gives it the kernel's default slice; a refused reload
 * keeps the slice in force.  On a kernel without per-task slices it must
 * say so in a notice, and keep serving.
 */
START_TEST(test_daemon_applies_scheduler_slice_and_reloads_it)
{
        TestDaemon d;
        char conf[32], log[16384] = "";
        int64_t dflt = test_sched_default_slice();

        ck_assert_msg(dflt >= 0, "default slice: %s", strerror((int)-dflt));
        if (dflt == 0) {
                const char *args[] = { "--log-level", "notice", NULL };
                test_daemon_start(&d, args, 0, true);
                ck_assert_msg(read_until(d.stderr_fd, log, sizeof(log), "scheduler_slice ignored"),
                              "no notice that the slice was ignored in: %s", log);
                assert_serves(&d);
                test_daemon_stop(&d);
                return;
        }
        ck_assert_int_ne(dflt, 7000000);
        ck_assert_int_ne(dflt, 20000000);
        start_with_config(&d, "[daemon]\nscheduler_slice = 7ms\n", conf);
        ck_assert_int_eq(await_slice(d.pid, 7000000), 7000000);

        write_file(conf, "# the default\n");
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        ck_assert_int_eq(await_slice(d.pid, 20000000), 20000000);

        /* A refused reload keeps the slice in force. */
        write_file(conf, "[daemon]\nscheduler_slice = 1s\n");
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        assert_serves(&d);
        ck_assert_int_eq(slice_of(d.pid), 20000000);

        write_file(conf, "[daemon]\nscheduler_slice = 0\n");
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        ck_assert_int_eq(await_slice(d.pid, dflt), dflt);
        int status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        unlink(conf);
}
END_TEST

/*
 * A reload applies [access] allow_users and allow_groups to connections
 * already open: one of a uid the new lists leave out is dropped (with a
 * notice), root's stays.
 */
START_TEST(test_daemon_reload_drops_connections_no_longer_allowed)
{
        TestDaemon d;
        char conf[32];
        int ready[2];
        np_client *c;

        start_with_config(&d, "[daemon]\nsocket_mode = 0666\n", conf);
        ck_assert_int_eq(chmod(d.dir, 0755), 0);
        ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                np_client *other;
                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(10);
                if (np_connect(d.sock, &other) < 0 || np_ping(other) < 0)
                        _exit(11);
                (void)!write(ready[1], "k", 1);
                for (int i = 0; i < 1000; i++) {
                        if (np_ping(other) < 0)
                                _exit(0); /* dropped */
                        usleep(10000);
                }
                _exit(12);
        }
        close(ready[1]);
        char b = 0;
        ck_assert_int_eq(read(ready[0], &b, 1), 1);
        close(ready[0]);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        write_file(conf, "[daemon]\nsocket_mode = 0666\n[access]\nallow_users = root\n");
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        int status = wait_exit(pid, 15000);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "uid 65534: status 0x%x",
                      status);
        ck_assert_int_eq(np_ping(c), 0);
        np_disconnect(c);
        status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        unlink(conf);
}
END_TEST

typedef struct WaitArg {
        np_client *c;
        np_desc desc;
        int result;
        bool done;
} WaitArg;

static void *wait_thread(void *p)
{
        WaitArg *a = p;
        a->result = np_wait(a->c, a->desc, NP_READ);
        __atomic_store_n(&a->done, true, __ATOMIC_SEQ_CST);
        return NULL;
}

/* Waits until the connection has `want` parked waiters (at most 10 s). */
static void wait_parked(np_client *c, uint64_t want)
{
        struct np_session_stats st = { 0 };

        for (int i = 0; i < 1000; i++) {
                ck_assert_int_eq(np_session_stats(c, &st), 0);
                if (st.waiters == want)
                        return;
                usleep(10000);
        }
        ck_abort_msg("%llu waiters parked, want %llu", (unsigned long long)st.waiters,
                     (unsigned long long)want);
}

static void join_within(pthread_t t, WaitArg *a)
{
        for (int i = 0; i < 1000 && !__atomic_load_n(&a->done, __ATOMIC_SEQ_CST); i++)
                usleep(10000);
        ck_assert_msg(__atomic_load_n(&a->done, __ATOMIC_SEQ_CST), "np_wait did not return");
        pthread_join(t, NULL);
}

START_TEST(test_daemon_sigterm_ends_parked_wait_with_closing)
{
        TestDaemon d;
        np_client *c;
        int p[2];
        pthread_t t;
        WaitArg a = { 0 };

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        a.c = c;
        ck_assert_int_eq(np_open(c, p[0], 7, &a.desc), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, wait_thread, &a), 0);
        wait_parked(c, 1);
        ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
        join_within(t, &a);
        ck_assert_int_eq(a.result, NP_ERR_CLOSING);
        int status = wait_exit(d.pid, 10000);
        d.pid = 0;
        ck_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        np_disconnect(c);
        close(p[0]);
        close(p[1]);
        test_daemon_stop(&d);
}
END_TEST

START_TEST(test_daemon_second_daemon_refuses)
{
        TestDaemon d;
        struct stat before, after;
        Run r;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(lstat(d.sock, &before), 0);
        const char *argv[] = { test_daemon_bin(), "--socket", d.sock, NULL };
        run_prog(&r, argv);
        ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) != 0,
                      "second daemon: status 0x%x", r.status);
        ck_assert_msg(strstr(r.err, "already serves"), "stderr: %s", r.err);
        /* The first one still owns the socket file and serves. */
        ck_assert_int_eq(lstat(d.sock, &after), 0);
        ck_assert_uint_eq(before.st_ino, after.st_ino);
        ck_assert_int_eq(waitpid(d.pid, NULL, WNOHANG), 0);
        assert_serves(&d);
        int status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

START_TEST(test_daemon_replaces_stale_socket)
{
        char dir[] = "/tmp/netpolld-test-XXXXXX", sock[128], log[8192] = "";
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        struct stat st;
        int errfd;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/np.sock", dir);
        ck_assert_uint_lt(strlen(sock), sizeof(addr.sun_path));
        memcpy(addr.sun_path, sock, strlen(sock));
        int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(s, 0);
        ck_assert_int_eq(bind(s, (struct sockaddr *)&addr, sizeof(addr)), 0);
        ck_assert_int_eq(listen(s, 1), 0);
        close(s);
        ck_assert_int_eq(lstat(sock, &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        ck_assert_int_eq(test_raw_connect(sock), -ECONNREFUSED);

        pid_t pid = spawn_daemon(sock, &errfd);
        ck_assert_msg(read_until(errfd, log, sizeof(log), "stale"), "log: %s", log);
        int fd = raw_hello(sock);
        raw_ping(fd, 1);
        close(fd);
        ck_assert_int_eq(kill(pid, SIGTERM), 0);
        int status = wait_exit(pid, 10000);
        ck_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ck_assert_int_ne(access(sock, F_OK), 0);
        close(errfd);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(test_daemon_refuses_path_that_is_not_a_socket)
{
        char dir[] = "/tmp/netpolld-test-XXXXXX", path[128], sub[128], buf[64] = "";
        struct stat st;
        Run r;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/np.sock", dir);
        write_file(path, "precious data\n");
        const char *argv[] = { test_daemon_bin(), "--socket", path, NULL };
        run_prog(&r, argv);
        assert_exit(&r, 1);
        ck_assert_msg(strstr(r.err, "not a socket"), "stderr: %s", r.err);
        ck_assert_int_eq(lstat(path, &st), 0);
        ck_assert(S_ISREG(st.st_mode));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(read(fd, buf, sizeof(buf) - 1), 14);
        close(fd);
        ck_assert_str_eq(buf, "precious data\n");

        /* A directory in the way is refused too, and left alone. */
        snprintf(sub, sizeof(sub), "%s/dir.sock", dir);
        ck_assert_int_eq(mkdir(sub, 0755), 0);
        const char *argv2[] = { test_daemon_bin(), "--socket", sub, NULL };
        run_prog(&r, argv2);
        ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 1, "status 0x%x: %s",
                      r.status, r.err);
        ck_assert_int_eq(lstat(sub, &st), 0);
        ck_assert(S_ISDIR(st.st_mode));

        ck_assert_int_eq(rmdir(sub), 0);
        ck_assert_int_eq(unlink(path), 0);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/*
 * What a client controls reaches the log escaped: a hello name with a
 * newline and a priority prefix cannot start a log line of its own, and
 * ESC in a command name (prctl PR_SET_NAME) reaches no terminal.  The
 * lists keep them as they are, for pollctl to escape as it prints (the
 * pollctl suite checks that).
 */
START_TEST(test_daemon_client_text_is_escaped_in_logs_and_lists)
{
        const char *const args[] = { "--log-level", "debug", NULL };
        char log[16384] = "";
        TestDaemon d;
        np_client *mon;
        np_client_info *ci;
        size_t n;

        test_daemon_start(&d, args, 0, true);
        int fd = test_raw_connect(d.sock);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(raw_send_hello_named(fd, 1, "evil\n<0>FAKE EMERGENCY\r\x1b[2J", NULL, 0),
                         0);
        Netpoll__V1__ServerMessage *m;
        ck_assert_int_eq(raw_recv(fd, IO_TIMEOUT_MS, &m), 1);
        ck_assert_ptr_nonnull(m->welcome);
        netpoll__v1__server_message__free_unpacked(m, NULL);

        /* A child whose command name carries ESC connects too. */
        int ready[2], go[2];
        ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                np_client *c;
                char b;
                prctl(PR_SET_NAME, "x\x1b]0;pwn\x07", 0, 0, 0);
                if (np_connect(d.sock, &c) == 0)
                        (void)!write(ready[1], "k", 1);
                (void)!read(go[0], &b, 1);
                _exit(0);
        }
        char b = 0;
        ck_assert_int_eq(read(ready[0], &b, 1), 1);

        ck_assert_msg(read_until(d.stderr_fd, log, sizeof(log), "FAKE EMERGENCY"), "log: %s",
                      log);
        ck_assert_ptr_nonnull(strstr(log, "evil\\x0a<0>FAKE EMERGENCY\\x0d\\x1b[2J"));
        ck_assert_ptr_null(strstr(log, "\n<0>"));
        ck_assert_ptr_null(strchr(log, '\x1b'));
        ck_assert_ptr_null(strchr(log, '\r'));

        ck_assert_int_eq(np_connect(d.sock, &mon), 0);
        ck_assert_int_eq(np_list_clients(mon, &ci, &n), 0);
        int seen = 0;
        for (size_t i = 0; i < n; i++) {
                if ((pid_t)ci[i].pid == pid) {
                        ck_assert_str_eq(ci[i].comm, "x\x1b]0;pwn\x07");
                        seen++;
                }
                if (strstr(ci[i].name, "FAKE")) {
                        ck_assert_str_eq(ci[i].name, "evil\n<0>FAKE EMERGENCY\r\x1b[2J");
                        seen++;
                }
        }
        ck_assert_int_eq(seen, 2);
        free(ci);
        (void)!write(go[1], "g", 1);
        ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
        close(ready[0]);
        close(ready[1]);
        close(go[0]);
        close(go[1]);
        close(fd);
        np_disconnect(mon);
        test_daemon_stop(&d);
}
END_TEST

/* The state letter of /proc/PID/stat ('T': stopped), or 0. */
static char proc_state(pid_t pid)
{
        char path[64], buf[512];

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = '\0';
        const char *p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
        return p && p[1] == ' ' ? p[2] : 0;
}

/* Receives one datagram on sock (at most IO_TIMEOUT_MS) carrying exactly
 * one fd as SCM_RIGHTS: that fd, or -1. */
static int recv_passed_fd(int sock)
{
        char byte;
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(sizeof(int))];
        } control;
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr mh = {
                .msg_iov = &iov, .msg_iovlen = 1,
                .msg_control = &control, .msg_controllen = sizeof(control),
        };
        struct pollfd pfd = { .fd = sock, .events = POLLIN };
        int fd;

        if (poll(&pfd, 1, IO_TIMEOUT_MS) != 1 || recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != 1)
                return -1;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
            c->cmsg_len != CMSG_LEN(sizeof(int)))
                return -1;
        memcpy(&fd, CMSG_DATA(c), sizeof(fd));
        return fd;
}

/* Makes `want` the pid the next fork in this pid namespace gets, unless
 * another fork comes first: 0, or -errno from writing ns_last_pid. */
static int set_next_pid(pid_t want)
{
        char buf[32];
        int len = snprintf(buf, sizeof(buf), "%d", (int)want - 1);
        int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        ssize_t k = write(fd, buf, (size_t)len);
        int r = k == len ? 0 : k < 0 ? -errno : -EIO;
        close(fd);
        return r;
}

/*
 * A client is named by the command of the process that connected, never by
 * another process's that got its pid since.  With the daemon stopped, child
 * A ("victim-a") connects (the connection waits in the listen backlog),
 * hands the connection to us and exits; child B ("impostor") is forked onto
 * A's pid through ns_last_pid.  When the daemon accepts, /proc/A's pid/comm
 * says "impostor", but A's pidfd (SO_PEERPIDFD) shows the connecting
 * process gone: the name is "?".  Needs root (ns_last_pid); skipped when
 * ns_last_pid cannot be written or the pid could not be reused in 20 tries.
 */
START_TEST(test_daemon_client_name_survives_pid_reuse)
{
        TestDaemon d;
        int sv[2], ready[2], status;
        np_client *mon;
        np_client_info *ci;
        size_t n;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
        for (int i = 0; i < 1000 && proc_state(d.pid) != 'T'; i++)
                usleep(10000);
        ck_assert_int_eq(proc_state(d.pid), 'T');

        /* A connects, passes the connection over and is reaped. */
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        pid_t a = fork();
        ck_assert_int_ge(a, 0);
        if (a == 0) {
                prctl(PR_SET_NAME, "victim-a", 0, 0, 0);
                int fd = test_raw_connect(d.sock);
                _exit(fd >= 0 && test_send_fds(sv[1], "c", 1, &fd, 1, 0) == 0 ? 0 : 1);
        }
        close(sv[1]);
        int conn = recv_passed_fd(sv[0]);
        close(sv[0]);
        ck_assert_int_eq(waitpid(a, &status, 0), a);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child A: status 0x%x",
                      status);
        ck_assert_int_ge(conn, 0);

        /* B takes A's pid (another fork may come between; then again). */
        pid_t b = -1;
        int err = 0, tries = 0;
        ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
        for (; tries < 20 && b != a; tries++) {
                if (b > 0) {
                        kill(b, SIGKILL);
                        ck_assert_int_eq(waitpid(b, NULL, 0), b);
                        b = -1;
                }
                err = set_next_pid(a);
                if (err < 0)
                        break;
                b = fork();
                ck_assert_int_ge(b, 0);
                if (b == 0) {
                        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
                        prctl(PR_SET_NAME, "impostor", 0, 0, 0);
                        (void)!write(ready[1], "r", 1);
                        close_range(3, ~0U, 0);
                        for (;;)
                                pause();
                }
                char c;
                ck_assert_int_eq(read(ready[0], &c, 1), 1); /* named by now */
        }
        close(ready[0]);
        close(ready[1]);
        if (b != a) {
                if (b > 0) {
                        kill(b, SIGKILL);
                        ck_assert_int_eq(waitpid(b, NULL, 0), b);
                }
                close(conn);
                kill(d.pid, SIGCONT);
                test_daemon_stop(&d);
                ck_assert_msg(err == 0 || err == -EPERM || err == -EROFS || err == -EACCES ||
                                      err == -ENOENT,
                              "writing ns_last_pid: %s", strerror(-err));
                fprintf(stderr, "SKIP test_daemon_client_name_survives_pid_reuse: %s\n",
                        err < 0 ? "cannot write /proc/sys/kernel/ns_last_pid"
                                : "pid not reused in 20 tries");
                return;
        }

        /* The daemon now accepts A's connection, B alive on A's pid. */
        ck_assert_int_eq(raw_send_hello(conn, 1, NULL, 0), 0);
        ck_assert_int_eq(kill(d.pid, SIGCONT), 0);
        Netpoll__V1__ServerMessage *m;
        ck_assert_int_eq(raw_recv(conn, IO_TIMEOUT_MS, &m), 1);
        ck_assert_ptr_nonnull(m->welcome);
        netpoll__v1__server_message__free_unpacked(m, NULL);

        ck_assert_int_eq(np_connect(d.sock, &mon), 0);
        ck_assert_int_eq(np_list_clients(mon, &ci, &n), 0);
        char comm[sizeof(ci->comm)] = "";
        int seen = 0;
        for (size_t i = 0; i < n; i++)
                if ((pid_t)ci[i].pid == a) {
                        memcpy(comm, ci[i].comm, sizeof(comm));
                        comm[sizeof(comm) - 1] = '\0';
                        seen++;
                }
        free(ci);
        kill(b, SIGKILL);
        ck_assert_int_eq(waitpid(b, NULL, 0), b);
        np_disconnect(mon);
        close(conn);
        test_daemon_stop(&d);

        ck_assert_int_eq(seen, 1);
        ck_assert_msg(strcmp(comm, "?") == 0,
                      "the client of pid %d (reaped; pid reused by \"impostor\" after %d "
                      "tries) is named \"%s\", want \"?\"",
                      (int)a, tries, comm);
}
END_TEST

/*
 * The socket file is made safely: a directory others may write (where the
 * file could be swapped for a link between bind and chmod) is refused
 * unless sticky, and the file is born with socket_mode (0660 by default)
 * instead of being chmod'ed by path afterwards.
 */
START_TEST(test_daemon_socket_dir_others_can_write_is_refused)
{
        char dir[] = "/tmp/netpolld-test-XXXXXX", sock[128];
        struct stat st;
        Run r;
        int errfd;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/np.sock", dir);
        ck_assert_int_eq(chmod(dir, 0777), 0);
        const char *argv[] = { test_daemon_bin(), "--socket", sock, NULL };
        run_prog(&r, argv);
        assert_exit(&r, 1);
        ck_assert_msg(strstr(r.err, "others may write to the socket directory"), "stderr: %s",
                      r.err);
        ck_assert_int_ne(lstat(sock, &st), 0);

        /* Sticky (as /tmp): nobody else can remove or rename our file. */
        ck_assert_int_eq(chmod(dir, 01777), 0);
        pid_t pid = spawn_daemon(sock, &errfd);
        ck_assert_int_eq(lstat(sock, &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        ck_assert_uint_eq(st.st_mode & 07777, 0660);
        ck_assert_uint_eq(st.st_uid, geteuid());
        ck_assert_int_eq(kill(pid, SIGTERM), 0);
        int status = wait_exit(pid, 10000);
        ck_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        close(errfd);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* pollctl                                                              */

START_TEST(test_pollctl_ping)
{
        TestDaemon d;
        Run r;

        test_daemon_start(&d, NULL, 0, false);
        const char *argv[] = { pollctl_bin(), "--socket", d.sock, "ping", "-c", "3", NULL };
        run_prog(&r, argv);
        assert_exit(&r, 0);
        ck_assert_msg(strstr(r.out, "3 round trips"), "stdout: %s", r.out);

        const char *argv2[] = { pollctl_bin(), "--socket", d.sock, "--json", "ping", "-c", "2",
                                NULL };
        run_prog(&r, argv2);
        assert_exit(&r, 0);
        ck_assert_msg(strstr(r.out, "\"count\":2"), "stdout: %s", r.out);
        ck_assert_ptr_nonnull(strstr(r.out, "\"median_ns\":"));

        const char *argv3[] = { pollctl_bin(), "--socket", d.sock, "ping", "-c", "0", NULL };
        run_prog(&r, argv3);
        assert_exit(&r, 2);
        int status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

START_TEST(test_pollctl_status)
{
        TestDaemon d;
        Run r;
        char want[64];

        test_daemon_start(&d, NULL, 0, false);
        const char *argv[] = { pollctl_bin(), "--socket", d.sock, "status", NULL };
        run_prog(&r, argv);
        assert_exit(&r, 0);
        static const char *const fields[] = { "version", "pid", "uptime", "connections",
                                              "descriptors", "waiters", "timers", "events",
                                              "timeouts", "protocol errors", "pollcache slots" };
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
                ck_assert_msg(strstr(r.out, fields[i]), "no '%s' in: %s", fields[i], r.out);
        ck_assert_ptr_nonnull(strstr(r.out, NETPOLL_VERSION));
        snprintf(want, sizeof(want), "%d\n", (int)d.pid);
        ck_assert_msg(strstr(r.out, want), "pid %d not in: %s", (int)d.pid, r.out);

        const char *argv2[] = { pollctl_bin(), "--socket", d.sock, "--json", "status", NULL };
        run_prog(&r, argv2);
        assert_exit(&r, 0);
        ck_assert_ptr_nonnull(strstr(r.out, "\"version\":\"" NETPOLL_VERSION "\""));
        snprintf(want, sizeof(want), "\"pid\":%d,", (int)d.pid);
        ck_assert_msg(strstr(r.out, want), "no %s in: %s", want, r.out);
        static const char *const json[] = { "\"uptime_ns\":", "\"connections\":",
                                            "\"descriptors\":0,", "\"waiters\":0,",
                                            "\"timers\":0,", "\"events\":", "\"timeouts\":",
                                            "\"protocol_errors\":0,", "\"slots_in_use\":0,",
                                            "\"slots_allocated\":" };
        for (size_t i = 0; i < sizeof(json) / sizeof(json[0]); i++)
                ck_assert_msg(strstr(r.out, json[i]), "no %s in: %s", json[i], r.out);
        ck_assert(r.out[0] == '{' && strstr(r.out, "}\n"));
        int status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

START_TEST(test_pollctl_unknown_command_exits_2)
{
        Run r;
        const char *argv[] = { pollctl_bin(), "--socket", "/nonexistent/np.sock", "frobnicate",
                               NULL };

        run_prog(&r, argv);
        assert_exit(&r, 2);
        ck_assert_ptr_nonnull(strstr(r.err, "frobnicate"));
        const char *argv2[] = { pollctl_bin(), NULL };
        run_prog(&r, argv2);
        assert_exit(&r, 2);
        const char *argv3[] = { pollctl_bin(), "--bogus", "status", NULL };
        run_prog(&r, argv3);
        assert_exit(&r, 2);
}
END_TEST

START_TEST(test_pollctl_no_daemon_exits_1)
{
        char dir[] = "/tmp/netpolld-test-XXXXXX", sock[128];
        Run r;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/none.sock", dir);
        const char *argv[] = { pollctl_bin(), "--socket", sock, "ping", NULL };
        run_prog(&r, argv);
        assert_exit(&r, 1);
        ck_assert_ptr_nonnull(strstr(r.err, sock));
        const char *argv2[] = { pollctl_bin(), "--socket", sock, "status", NULL };
        run_prog(&r, argv2);
        assert_exit(&r, 1);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Hostile clients                                                      */

START_TEST(test_hostile_garbage_first_datagram)
{
        static const char *const garbage[] = { "\xff\xff\xff\xff", "GET / HTTP/1.1\r\n\r\n",
                                               "\x12\x7f\x08" };
        Hostile h;

        hostile_begin(&h);
        for (size_t i = 0; i < 3; i++) {
                int fd = test_raw_connect(h.d.sock);
                ck_assert_int_ge(fd, 0);
                ck_assert_int_eq(raw_send_bytes(fd, garbage[i], strlen(garbage[i]), NULL, 0), 0);
                ck_assert_int_eq(expect_dropped(fd), 0);
                close(fd);
        }
        hostile_end(&h, 3);
}
END_TEST

START_TEST(test_hostile_requests_before_hello)
{
        Hostile h;
        Netpoll__V1__Request q = mkreq(1, NETPOLL__V1__OP__OP_PING);

        hostile_begin(&h);
        int fd = test_raw_connect(h.d.sock);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(raw_send_requests(fd, &q, 1, NULL, 0), 0);
        ck_assert_int_eq(expect_dropped(fd), 0); /* no welcome, no reply */
        close(fd);

        /* A hello with requests in the same datagram is not a hello. */
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Hello hello = NETPOLL__V1__HELLO__INIT;
        Netpoll__V1__Request *rp[1] = { &q };
        hello.version = 1;
        m.hello = &hello;
        m.n_requests = 1;
        m.requests = rp;
        fd = test_raw_connect(h.d.sock);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(raw_send_msg(fd, &m, NULL, 0), 0);
        ck_assert_int_eq(expect_dropped(fd), 0);
        close(fd);
        hostile_end(&h, 2);
}
END_TEST

START_TEST(test_hostile_second_hello)
{
        Hostile h;

        hostile_begin(&h);
        int fd = raw_hello(h.d.sock);
        raw_ping(fd, 1);
        ck_assert_int_eq(raw_send_hello(fd, 1, NULL, 0), 0);
        ck_assert_int_eq(expect_dropped(fd), 0);
        close(fd);
        hostile_end(&h, 1);
}
END_TEST

/* A zero-length datagram is an empty message, not end of file: before the
 * hello it is a protocol error like any non-hello; after it, a no-op that
 * leaves the connection served. */
START_TEST(test_hostile_empty_datagram_is_a_message_not_eof)
{
        Hostile h;

        hostile_begin(&h);
        int fd = test_raw_connect(h.d.sock);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(raw_send_bytes(fd, "", 0, NULL, 0), 0);
        ck_assert_int_eq(expect_dropped(fd), 0);
        close(fd);

        fd = raw_hello(h.d.sock);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(raw_send_bytes(fd, "", 0, NULL, 0), 0);
        raw_ping(fd, 7); /* still served, and in order */
        close(fd);
        hostile_end(&h, 1);
}
END_TEST

/* A status or list request builds a list the size of what it describes:
 * one per datagram, the rest of that datagram's get -EBUSY; other requests
 * in it are served as usual. */
/*
 * A client that stops reading while its replies pile up, then reads again,
 * gets every reply, in order.  Its 200 descriptors make each descriptor
 * list some 10 KB, so 60 of them (one a datagram: each its own reply) fill
 * the daemon's socket buffer and the daemon queues the rest.  It sends
 * them when EPOLLOUT says the socket has room, not before, so a lost
 * EPOLLOUT would strand them (raw_recv times out).
 */
START_TEST(test_hostile_client_that_pauses_reading_gets_every_reply_in_order)
{
        enum { DESCS = 200, LISTS = 60 };
        Netpoll__V1__Request opens[DESCS];
        int p[DESCS][2], fds[DESCS], pages = 0;
        size_t listed = 0;
        uint64_t next = DESCS + 1;
        Hostile h;

        hostile_begin(&h);
        for (int i = 0; i < DESCS; i++) {
                opens[i] = mkreq((uint64_t)i + 1, NETPOLL__V1__OP__OP_OPEN);
                opens[i].fd_index = i;
                ck_assert_int_eq(pipe2(p[i], O_CLOEXEC), 0); /* a file may go 16 times */
                fds[i] = p[i][0];
        }
        int fd = raw_hello(h.d.sock);
        ck_assert_int_eq(raw_send_requests(fd, opens, DESCS, fds, DESCS), 0);
        ck_assert_int_eq(raw_wait_reply(fd, DESCS, NULL), 0);
        for (uint64_t id = next; id < next + LISTS; id++) {
                Netpoll__V1__Request q = mkreq(id, NETPOLL__V1__OP__OP_LIST_DESCS);
                ck_assert_int_eq(raw_send_requests(fd, &q, 1, NULL, 0), 0);
        }
        usleep(200 * 1000); /* the daemon answers them all into a full socket */
        StatusCopy st = raw_status(h.d.sock);
        ck_assert_uint_eq(st.descriptors, DESCS);
        while (next <= DESCS + LISTS) {
                Netpoll__V1__ServerMessage *m;
                ck_assert_msg(raw_recv(fd, IO_TIMEOUT_MS, &m) == 1, "reply %llu never came",
                              (unsigned long long)next);
                for (size_t i = 0; i < m->n_replies; i++) {
                        ck_assert_uint_eq(m->replies[i]->id, next);
                        ck_assert_int_eq(m->replies[i]->result, 0);
                        pages++;
                        listed += m->replies[i]->n_descs;
                        if (m->replies[i]->more)
                                continue; /* a page; the list goes on */
                        ck_assert_uint_eq(listed, DESCS);
                        listed = 0;
                        next++;
                }
                netpoll__v1__server_message__free_unpacked(m, NULL);
        }
        /* Each list came in pages, as many as a list of 200 takes. */
        ck_assert_int_ge(pages, LISTS * 2);
        raw_ping(fd, DESCS + LISTS + 1); /* and it goes on serving */
        close(fd);
        for (int i = 0; i < DESCS; i++) {
                close(p[i][0]);
                close(p[i][1]);
        }
        hostile_end(&h, 0);
}
END_TEST

START_TEST(test_hostile_one_introspection_request_per_datagram)
{
        Hostile h;
        Netpoll__V1__Request q[4] = { mkreq(1, NETPOLL__V1__OP__OP_LIST_DESCS),
                                      mkreq(2, NETPOLL__V1__OP__OP_LIST_DESCS),
                                      mkreq(3, NETPOLL__V1__OP__OP_STATUS),
                                      mkreq(4, NETPOLL__V1__OP__OP_PING) };
        int32_t result[5] = { 1, 1, 1, 1, 1 };
        int got = 0;

        hostile_begin(&h);
        int fd = raw_hello(h.d.sock);
        ck_assert_int_eq(raw_send_requests(fd, q, 4, NULL, 0), 0);
        while (got < 4) {
                Netpoll__V1__ServerMessage *m;
                ck_assert_int_eq(raw_recv(fd, IO_TIMEOUT_MS, &m), 1);
                for (size_t i = 0; i < m->n_replies; i++) {
                        uint64_t id = m->replies[i]->id;
                        ck_assert(id >= 1 && id <= 4 && result[id] == 1);
                        result[id] = m->replies[i]->result;
                        got++;
                }
                netpoll__v1__server_message__free_unpacked(m, NULL);
        }
        ck_assert_int_eq(result[1], 0);
        ck_assert_int_eq(result[2], -EBUSY);
        ck_assert_int_eq(result[3], -EBUSY);
        ck_assert_int_eq(result[4], 0);
        Netpoll__V1__Request again = mkreq(5, NETPOLL__V1__OP__OP_LIST_DESCS);
        ck_assert_int_eq(raw_send_requests(fd, &again, 1, NULL, 0), 0);
        ck_assert_int_eq(raw_wait_reply(fd, 5, NULL), 0); /* the next datagram may ask again */
        close(fd);
        hostile_end(&h, 0);
}
END_TEST

START_TEST(test_hostile_hello_version_2_gets_eproto)
{
        Hostile h;
        Netpoll__V1__ServerMessage *m;

        hostile_begin(&h);
        int fd = test_raw_connect(h.d.sock);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(raw_send_hello(fd, 2, NULL, 0), 0);
        ck_assert_int_eq(raw_recv(fd, IO_TIMEOUT_MS, &m), 1);
        ck_assert_int_eq(m->error, -EPROTO);
        ck_assert_int_eq(m->error, -71);
        ck_assert_uint_eq(m->n_replies, 0);
        netpoll__v1__server_message__free_unpacked(m, NULL);
        ck_assert_int_eq(expect_dropped(fd), 0);
        close(fd);

        /* Version 0 (no version field at all) likewise. */
        fd = test_raw_connect(h.d.sock);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(raw_send_hello(fd, 0, NULL, 0), 0);
        ck_assert_int_eq(raw_recv(fd, IO_TIMEOUT_MS, &m), 1);
        ck_assert_int_eq(m->error, -EPROTO);
        netpoll__v1__server_message__free_unpacked(m, NULL);
        ck_assert_int_eq(expect_dropped(fd), 0);
        close(fd);

        /* A version mismatch is answered, not counted as a protocol error. */
        hostile_end(&h, 0);
}
END_TEST

/*
 * Every prefix of a request datagram after the hello.  A cut between two
 * requests leaves a valid, shorter datagram: its requests are answered and
 * the connection lives; so does the empty prefix, an empty message.  Any
 * other cut is undecodable: dropped.
 */
START_TEST(test_hostile_every_truncation_of_a_request_datagram)
{
        enum { N = 5 };
        Hostile h;
        Netpoll__V1__Request reqs[N];
        static const int ops[N] = { NETPOLL__V1__OP__OP_PING, NETPOLL__V1__OP__OP_SESSION_STATS,
                                    NETPOLL__V1__OP__OP_PING, NETPOLL__V1__OP__OP_CLOSE,
                                    NETPOLL__V1__OP__OP_PING };
        size_t bounds[N + 1];
        unsigned drops = 0;

        hostile_begin(&h);
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Request *rp[N];
        bounds[0] = 0;
        for (size_t i = 0; i < N; i++) {
                reqs[i] = mkreq(100 + i, ops[i]);
                reqs[i].desc = 0x0100000012345678ull; /* not ours: CLOSE gets -EBADF */
                reqs[i].user = 0xfffffffffffull;
                reqs[i].ns = -123456789;
                rp[i] = &reqs[i];
                m.n_requests = i + 1;
                m.requests = rp;
                bounds[i + 1] = netpoll__v1__client_message__get_packed_size(&m);
        }
        size_t len = bounds[N];
        uint8_t *full = malloc(len);
        ck_assert_ptr_nonnull(full);
        netpoll__v1__client_message__pack(&m, full);

        for (size_t cut = 0; cut < len; cut++) {
                int k = -1; /* requests in this prefix, or -1: undecodable */
                for (int i = 0; i <= N; i++)
                        if (bounds[i] == cut)
                                k = i;
                int fd = raw_hello(h.d.sock);
                ck_assert_int_eq(raw_send_bytes(fd, full, cut, NULL, 0), 0);
                /* A marker ping after it: answered only if we live. */
                Netpoll__V1__Request mark = mkreq(999, NETPOLL__V1__OP__OP_PING);
                (void)raw_send_requests(fd, &mark, 1, NULL, 0);
                bool answered[N] = { false }, marker = false, dropped = false;
                while (!marker && !dropped) {
                        Netpoll__V1__ServerMessage *sm;
                        int r = raw_recv(fd, IO_TIMEOUT_MS, &sm);
                        if (r == 0 || r == -ECONNRESET) {
                                dropped = true;
                                break;
                        }
                        ck_assert_msg(r == 1, "cut %zu: neither answered nor dropped (%d)", cut,
                                      r);
                        for (size_t i = 0; i < sm->n_replies; i++) {
                                uint64_t id = sm->replies[i]->id;
                                if (id == 999) {
                                        marker = true;
                                        continue;
                                }
                                ck_assert_msg(id >= 100 && id < 100 + N, "cut %zu: reply %llu",
                                              cut, (unsigned long long)id);
                                ck_assert(!answered[id - 100]);
                                answered[id - 100] = true;
                                if (ops[id - 100] == NETPOLL__V1__OP__OP_CLOSE)
                                        ck_assert_int_eq(sm->replies[i]->result, -EBADF);
                                else
                                        ck_assert_int_eq(sm->replies[i]->result, 0);
                        }
                        netpoll__v1__server_message__free_unpacked(sm, NULL);
                }
                if (k >= 0) {
                        ck_assert_msg(marker, "cut %zu (%d whole requests): dropped", cut, k);
                        for (int i = 0; i < N; i++)
                                ck_assert_msg(answered[i] == (i < k),
                                              "cut %zu: request %d answered=%d", cut, i,
                                              answered[i]);
                } else {
                        ck_assert_msg(dropped, "cut %zu: undecodable prefix not dropped", cut);
                        for (int i = 0; i < N; i++)
                                ck_assert(!answered[i]);
                        drops++;
                }
                close(fd);
                wait_fd_count(&h.d, h.baseline);
        }
        free(full);
        ck_assert_uint_eq(drops, len - N);
        hostile_end(&h, drops);
}
END_TEST

START_TEST(test_hostile_oversized_datagram)
{
        enum { N = 1000 };
        Hostile h;
        Netpoll__V1__Request *reqs = calloc(N, sizeof(*reqs));
        int sndbuf = 1 << 20;

        hostile_begin(&h);
        ck_assert_ptr_nonnull(reqs);
        for (size_t i = 0; i < N; i++) {
                reqs[i] = mkreq(UINT64_MAX - i, NETPOLL__V1__OP__OP_PING);
                reqs[i].desc = UINT64_MAX;
                reqs[i].user = UINT64_MAX;
                reqs[i].ns = INT64_MIN;
                reqs[i].mode = -1;
                reqs[i].fd_index = -1;
        }
        int fd = raw_hello(h.d.sock);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        /* A well-formed message (N <= the request cap), only too big. */
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Request **rp = calloc(N, sizeof(*rp));
        ck_assert_ptr_nonnull(rp);
        for (size_t i = 0; i < N; i++)
                rp[i] = &reqs[i];
        m.n_requests = N;
        m.requests = rp;
        size_t len = netpoll__v1__client_message__get_packed_size(&m);
        ck_assert_uint_gt(len, 64 * 1024);
        ck_assert_int_eq(raw_send_msg(fd, &m, NULL, 0), 0);
        ck_assert_int_eq(expect_dropped(fd), 0); /* not one request answered */
        close(fd);
        free(rp);
        free(reqs);
        hostile_end(&h, 1);
}
END_TEST

START_TEST(test_hostile_fds_on_the_hello)
{
        Hostile h;
        int p[2];

        hostile_begin(&h);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        int fd = test_raw_connect(h.d.sock);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(raw_send_hello(fd, 1, &p[1], 1), 0);
        close(p[1]);
        ck_assert_int_eq(expect_dropped(fd), 0); /* no welcome */
        close(fd);
        assert_read_eof(p[0]); /* the daemon closed its copy of the write end */
        close(p[0]);
        hostile_end(&h, 1);
}
END_TEST

START_TEST(test_hostile_fds_on_a_ping)
{
        Hostile h;
        int a[2], b[2], c[2];
        Netpoll__V1__Request q = mkreq(1, NETPOLL__V1__OP__OP_PING);

        hostile_begin(&h);
        ck_assert_int_eq(pipe2(a, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(b, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(c, O_CLOEXEC), 0);
        int fd = raw_hello(h.d.sock);
        int sent[3] = { a[0], b[1], c[0] };
        ck_assert_int_eq(raw_send_requests(fd, &q, 1, sent, 3), 0);
        close(a[0]);
        close(b[1]);
        close(c[0]);
        ck_assert_int_eq(expect_dropped(fd), 0); /* the ping is not answered */
        close(fd);
        wait_fd_count(&h.d, h.baseline);
        /* Every passed fd was closed by the daemon. */
        assert_write_epipe(a[1]);
        assert_read_eof(b[0]);
        assert_write_epipe(c[1]);
        close(a[1]);
        close(b[0]);
        close(c[1]);
        hostile_end(&h, 1);
}
END_TEST

START_TEST(test_hostile_open_fd_index_out_of_range)
{
        static const int32_t bad_index[] = { 1, -1, 253, INT32_MAX };
        Hostile h;

        hostile_begin(&h);
        for (size_t i = 0; i < sizeof(bad_index) / sizeof(bad_index[0]); i++) {
                int p[2];
                ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
                int fd = raw_hello(h.d.sock);
                Netpoll__V1__Request q = mkreq(1, NETPOLL__V1__OP__OP_OPEN);
                q.fd_index = bad_index[i];
                ck_assert_int_eq(raw_send_requests(fd, &q, 1, &p[1], 1), 0);
                close(p[1]);
                ck_assert_msg(expect_dropped(fd) == 0, "fd_index %d answered", bad_index[i]);
                close(fd);
                assert_read_eof(p[0]);
                close(p[0]);
        }
        /* Two OPENs naming the same fd (one fd short for two). */
        int p[2], fd;
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        fd = raw_hello(h.d.sock);
        Netpoll__V1__Request two[2] = { mkreq(1, NETPOLL__V1__OP__OP_OPEN),
                                        mkreq(2, NETPOLL__V1__OP__OP_OPEN) };
        int fds[2] = { p[0], p[0] };
        ck_assert_int_eq(raw_send_requests(fd, two, 2, fds, 2), 0); /* indexes 0 and 0 */
        close(p[0]);
        ck_assert_int_eq(expect_dropped(fd), 0);
        close(fd);
        assert_write_epipe(p[1]);
        close(p[1]);
        /* An OPEN with no fd at all. */
        fd = raw_hello(h.d.sock);
        ck_assert_int_eq(raw_send_requests(fd, two, 1, NULL, 0), 0);
        ck_assert_int_eq(expect_dropped(fd), 0);
        close(fd);
        hostile_end(&h, 6);
}
END_TEST

START_TEST(test_hostile_two_fds_for_one_open)
{
        Hostile h;
        int a[2], b[2];
        Netpoll__V1__Request q = mkreq(1, NETPOLL__V1__OP__OP_OPEN);

        hostile_begin(&h);
        ck_assert_int_eq(pipe2(a, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(b, O_CLOEXEC), 0);
        int fd = raw_hello(h.d.sock);
        int fds[2] = { a[0], b[0] };
        ck_assert_int_eq(raw_send_requests(fd, &q, 1, fds, 2), 0);
        close(a[0]);
        close(b[0]);
        ck_assert_int_eq(expect_dropped(fd), 0); /* the OPEN is not run either */
        close(fd);
        wait_fd_count(&h.d, h.baseline);
        assert_write_epipe(a[1]);
        assert_write_epipe(b[1]);
        close(a[1]);
        close(b[1]);
        hostile_end(&h, 1);
}
END_TEST

START_TEST(test_hostile_253_fds_on_one_open)
{
        Hostile h;
        int p[2], fds[253];
        Netpoll__V1__Request q = mkreq(1, NETPOLL__V1__OP__OP_OPEN);

        hostile_begin(&h);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        for (int i = 0; i < 253; i++)
                fds[i] = p[1];
        int fd = raw_hello(h.d.sock);
        ck_assert_int_eq(raw_send_requests(fd, &q, 1, fds, 253), 0);
        close(p[1]);
        ck_assert_int_eq(expect_dropped(fd), 0);
        close(fd);
        wait_fd_count(&h.d, h.baseline);
        assert_read_eof(p[0]); /* all 253 copies were closed */
        close(p[0]);
        hostile_end(&h, 1);
}
END_TEST

START_TEST(test_hostile_silent_client_does_not_block_others)
{
        Hostile h;
        Run r;
        char conf[32];

        /* A handshake timeout far beyond the test, so the silent client
         * stays connected however slow the machine is. */
        start_with_config(&h.d, "[limits]\nhandshake_timeout = 1h\n", conf);
        unlink(conf);
        h.baseline = daemon_baseline(&h.d);
        h.protocol_errors = raw_status(h.d.sock).protocol_errors;
        int silent = test_raw_connect(h.d.sock);
        ck_assert_int_ge(silent, 0);
        int greeted_silent = raw_hello(h.d.sock); /* greeted, then silent */
        assert_serves(&h.d);
        const char *argv[] = { pollctl_bin(), "--socket", h.d.sock, "ping", "-c", "3", NULL };
        run_prog(&r, argv);
        assert_exit(&r, 0);
        StatusCopy st = raw_status(h.d.sock);
        ck_assert_uint_ge(st.connections, 3);
        wait_fd_count(&h.d, h.baseline + 2);
        close(silent);
        close(greeted_silent);
        hostile_end(&h, 0);
}
END_TEST

/* A connection that never says hello is dropped once handshake_timeout has
 * passed (never before), and only that one: a greeted idle client stays. */
START_TEST(test_hostile_silent_client_dropped_after_handshake_timeout)
{
        char conf[32];
        TestDaemon d;

        start_with_config(&d, "[limits]\nhandshake_timeout = 300ms\n", conf);
        int baseline = daemon_baseline(&d);

        int greeted = raw_hello(d.sock);
        int64_t t0 = test_now();
        int silent = test_raw_connect(d.sock);
        ck_assert_int_ge(silent, 0);
        ck_assert_int_eq(expect_dropped(silent), 0);
        int64_t waited = test_now() - t0;
        ck_assert_msg(waited >= 300 * 1000000LL, "dropped after %lld ns, before the timeout",
                      (long long)waited);
        close(silent);
        /* The greeted one, idle for longer than the timeout, is served. */
        raw_ping(greeted, 77);
        wait_fd_count(&d, baseline + 1);
        close(greeted);
        assert_serves(&d);
        wait_fd_count(&d, baseline);
        unlink(conf);
        int status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

/*
 * The child: registers three pipe read ends, arms read and write deadlines
 * on each, parks a read wait on each and an armed write wait on the first,
 * then reports ready and waits to be killed.  Exit codes name the failing
 * step (no Check calls in here).
 */
static void parked_child(const char *sock, int ready, const int *rfds)
{
        Netpoll__V1__Request q[16];
        uint64_t desc[3] = { 0 };
        size_t n = 0;
        int fd = test_raw_connect(sock);
        Netpoll__V1__ServerMessage *m;

        if (fd < 0 || raw_send_hello(fd, 1, NULL, 0) < 0)
                _exit(10);
        if (raw_recv(fd, IO_TIMEOUT_MS, &m) != 1 || !m->welcome)
                _exit(11);
        netpoll__v1__server_message__free_unpacked(m, NULL);
        for (int i = 0; i < 3; i++) {
                q[i] = mkreq((uint64_t)(1 + i), NETPOLL__V1__OP__OP_OPEN);
                q[i].fd_index = i;
                q[i].user = (uint64_t)(50 + i);
        }
        if (raw_send_requests(fd, q, 3, rfds, 3) < 0)
                _exit(12);
        for (int got = 0; got < 3;) {
                if (raw_recv(fd, IO_TIMEOUT_MS, &m) != 1)
                        _exit(13);
                for (size_t i = 0; i < m->n_replies; i++) {
                        const Netpoll__V1__Reply *r = m->replies[i];
                        if (r->id < 1 || r->id > 3 || r->result != 0)
                                _exit(14);
                        desc[r->id - 1] = r->desc;
                        got++;
                }
                netpoll__v1__server_message__free_unpacked(m, NULL);
        }
        for (int i = 0; i < 3; i++) {
                /* Different read and write deadlines: two timers (equal
                 * ones would share one, as in Go). */
                q[n] = mkreq((uint64_t)(10 + i), NETPOLL__V1__OP__OP_SET_DEADLINE);
                q[n].desc = desc[i];
                q[n].mode = NP_READ;
                q[n++].ns = 600LL * 1000000000;
                q[n] = mkreq((uint64_t)(50 + i), NETPOLL__V1__OP__OP_SET_DEADLINE);
                q[n].desc = desc[i];
                q[n].mode = NP_WRITE;
                q[n++].ns = 700LL * 1000000000;
                q[n] = mkreq((uint64_t)(20 + i), NETPOLL__V1__OP__OP_WAIT);
                q[n].desc = desc[i];
                q[n++].mode = NP_READ;
        }
        q[n] = mkreq(30, NETPOLL__V1__OP__OP_ARM);
        q[n].desc = desc[0];
        q[n++].mode = NP_WRITE;
        q[n++] = mkreq(40, NETPOLL__V1__OP__OP_SESSION_STATS);
        if (raw_send_requests(fd, q, n, NULL, 0) < 0)
                _exit(15);
        for (bool done = false; !done;) {
                if (raw_recv(fd, IO_TIMEOUT_MS, &m) != 1)
                        _exit(16);
                if (m->n_events > 0)
                        _exit(17); /* nothing may have ended yet */
                for (size_t i = 0; i < m->n_replies; i++) {
                        const Netpoll__V1__Reply *r = m->replies[i];
                        if (r->id >= 20 && r->id < 30)
                                _exit(18); /* a wait ended */
                        if (r->result != 0)
                                _exit(19);
                        if (r->id == 40) {
                                if (!r->session || r->session->descriptors != 3 ||
                                    r->session->waiters != 4 || r->session->timers != 6)
                                        _exit(20);
                                done = true;
                        }
                }
                netpoll__v1__server_message__free_unpacked(m, NULL);
        }
        if (write(ready, "k", 1) != 1)
                _exit(21);
        for (;;)
                pause();
}

START_TEST(test_hostile_killed_client_with_parked_waits_and_timers)
{
        Hostile h;
        int p[3][2], ready[2];

        hostile_begin(&h);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(pipe2(p[i], O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
        pid_t child = fork();
        ck_assert_int_ge(child, 0);
        if (child == 0) {
                int rfds[3] = { p[0][0], p[1][0], p[2][0] };
                for (int i = 0; i < 3; i++)
                        close(p[i][1]);
                close(ready[0]);
                parked_child(h.d.sock, ready[1], rfds);
                _exit(1);
        }
        /* The daemon's and the child's copies are the only read ends. */
        for (int i = 0; i < 3; i++)
                close(p[i][0]);
        close(ready[1]);
        struct pollfd pfd = { .fd = ready[0], .events = POLLIN };
        ck_assert_int_eq(poll(&pfd, 1, 20000), 1);
        char c = 0;
        if (read(ready[0], &c, 1) != 1) {
                int status = wait_exit(child, 1000);
                ck_abort_msg("child failed: status 0x%x (exit %d)", status,
                             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
        close(ready[0]);

        StatusCopy st = raw_status(h.d.sock);
        ck_assert_uint_eq(st.descriptors, 3);
        ck_assert_uint_eq(st.waiters, 4);
        ck_assert_uint_eq(st.timers, 6);
        wait_fd_count(&h.d, h.baseline + 1 + 1 + 3); /* connection, its epoll set, pipes */

        ck_assert_int_eq(kill(child, SIGKILL), 0);
        int status = wait_exit(child, 10000);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        wait_fd_count(&h.d, h.baseline);
        st = raw_status(h.d.sock);
        ck_assert_uint_eq(st.descriptors, 0);
        ck_assert_uint_eq(st.waiters, 0);
        ck_assert_uint_eq(st.timers, 0);
        ck_assert_uint_eq(st.slots_in_use, 0);
        /* The daemon closed its copies of the read ends. */
        for (int i = 0; i < 3; i++) {
                assert_write_epipe(p[i][1]);
                close(p[i][1]);
        }
        /* And pollctl agrees. */
        Run r;
        const char *argv[] = { pollctl_bin(), "--socket", h.d.sock, "--json", "status", NULL };
        run_prog(&r, argv);
        assert_exit(&r, 0);
        ck_assert_ptr_nonnull(strstr(r.out, "\"descriptors\":0,\"waiters\":0,\"timers\":0,"));
        hostile_end(&h, 0);
}
END_TEST

START_TEST(test_hostile_drop_does_not_disturb_parked_wait)
{
        Hostile h;
        np_client *c;
        int p[2], a[2];
        pthread_t t;
        WaitArg w = { 0 };

        hostile_begin(&h);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        ck_assert_int_eq(np_connect(h.d.sock, &c), 0);
        w.c = c;
        ck_assert_int_eq(np_open(c, p[0], 9, &w.desc), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, wait_thread, &w), 0);
        wait_parked(c, 1);

        /* Hostile clients come and go: garbage, fds on a ping, a second hello. */
        int fd = raw_hello(h.d.sock);
        ck_assert_int_eq(raw_send_bytes(fd, "\x0f\x01", 2, NULL, 0), 0);
        ck_assert_int_eq(expect_dropped(fd), 0);
        close(fd);
        ck_assert_int_eq(pipe2(a, O_CLOEXEC), 0);
        fd = raw_hello(h.d.sock);
        Netpoll__V1__Request q = mkreq(1, NETPOLL__V1__OP__OP_PING);
        ck_assert_int_eq(raw_send_requests(fd, &q, 1, a, 2), 0);
        ck_assert_int_eq(expect_dropped(fd), 0);
        close(fd);
        close(a[0]);
        close(a[1]);
        fd = raw_hello(h.d.sock);
        ck_assert_int_eq(raw_send_hello(fd, 1, NULL, 0), 0);
        ck_assert_int_eq(expect_dropped(fd), 0);
        close(fd);

        /* The wait is still parked, and ends normally on readiness. */
        ck_assert(!__atomic_load_n(&w.done, __ATOMIC_SEQ_CST));
        wait_parked(c, 1);
        ck_assert_int_eq(write(p[1], "x", 1), 1);
        join_within(t, &w);
        ck_assert_int_eq(w.result, NP_OK);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_unblock(c, w.desc), 0);
        ck_assert_int_eq(np_close(c, w.desc), 0);
        np_disconnect(c);
        close(p[0]);
        close(p[1]);
        hostile_end(&h, 3);
}
END_TEST

/* A well-behaved client registering fds does not count as a leak: the
 * baseline checks above would pass vacuously if OPEN never held an fd. */
START_TEST(test_daemon_open_holds_one_fd_until_close)
{
        Hostile h;
        int p[2];
        uint64_t desc = 0;

        hostile_begin(&h);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        int fd = raw_hello(h.d.sock);
        Netpoll__V1__Request q = mkreq(1, NETPOLL__V1__OP__OP_OPEN);
        q.fd_index = 0;
        ck_assert_int_eq(raw_send_requests(fd, &q, 1, &p[0], 1), 0);
        ck_assert_int_eq(raw_wait_reply(fd, 1, &desc), 0);
        ck_assert_uint_ne(desc, 0);
        /* The connection, its epoll set (made by its first open, kept until
         * it ends) and the copy of the pipe. */
        wait_fd_count(&h.d, h.baseline + 3);
        Netpoll__V1__Request u[2] = { mkreq(2, NETPOLL__V1__OP__OP_UNBLOCK),
                                      mkreq(3, NETPOLL__V1__OP__OP_CLOSE) };
        u[0].desc = u[1].desc = desc;
        ck_assert_int_eq(raw_send_requests(fd, u, 2, NULL, 0), 0);
        ck_assert_int_eq(raw_wait_reply(fd, 3, NULL), 0);
        wait_fd_count(&h.d, h.baseline + 2); /* the copy is gone */
        close(fd);
        close(p[0]);
        close(p[1]);
        hostile_end(&h, 0);
}
END_TEST

Suite *suite_daemon(void)
{
        Suite *s = suite_create("daemon");
        TCase *tc;

        tc = tcase_create("cli");
        tcase_add_checked_fixture(tc, fdleak_setup, fdleak_teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_daemon_help_exits_0_with_usage);
        tcase_add_test(tc, test_daemon_version_exits_0);
        tcase_add_test(tc, test_daemon_bad_flag_exits_2);
        tcase_add_test(tc, test_daemon_extra_argument_exits_2);
        tcase_add_test(tc, test_daemon_bad_log_level_exits_2);
        tcase_add_test(tc, test_daemon_check_config_prints_effective_config);
        tcase_add_test(tc, test_daemon_check_config_bad_file_exits_1);
        suite_add_tcase(s, tc);

        tc = tcase_create("lifecycle");
        tcase_add_checked_fixture(tc, fdleak_setup, fdleak_teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_daemon_logs_carry_sd_daemon_prefixes);
        tcase_add_test(tc, test_daemon_sigterm_exits_0_and_removes_socket);
        tcase_add_test(tc, test_daemon_sigint_exits_0_and_removes_socket);
        tcase_add_test(tc, test_daemon_sighup_does_not_stop);
        tcase_add_test(tc, test_daemon_applies_scheduler_slice_and_reloads_it);
        tcase_add_test(tc, test_daemon_sigterm_ends_parked_wait_with_closing);
        tcase_add_test(tc, test_daemon_second_daemon_refuses);
        tcase_add_test(tc, test_daemon_replaces_stale_socket);
        tcase_add_test(tc, test_daemon_refuses_path_that_is_not_a_socket);
        tcase_add_test(tc, test_daemon_socket_dir_others_can_write_is_refused);
        tcase_add_test(tc, test_daemon_client_text_is_escaped_in_logs_and_lists);
        tcase_add_test(tc, test_daemon_reload_drops_connections_no_longer_allowed);
        tcase_add_test(tc, test_daemon_client_name_survives_pid_reuse);
        suite_add_tcase(s, tc);

        tc = tcase_create("pollctl");
        tcase_add_checked_fixture(tc, fdleak_setup, fdleak_teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_pollctl_ping);
        tcase_add_test(tc, test_pollctl_status);
        tcase_add_test(tc, test_pollctl_unknown_command_exits_2);
        tcase_add_test(tc, test_pollctl_no_daemon_exits_1);
        suite_add_tcase(s, tc);

        tc = tcase_create("hostile");
        tcase_add_checked_fixture(tc, fdleak_setup, fdleak_teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_daemon_open_holds_one_fd_until_close);
        tcase_add_test(tc, test_hostile_garbage_first_datagram);
        tcase_add_test(tc, test_hostile_requests_before_hello);
        tcase_add_test(tc, test_hostile_second_hello);
        tcase_add_test(tc, test_hostile_empty_datagram_is_a_message_not_eof);
        tcase_add_test(tc, test_hostile_one_introspection_request_per_datagram);
        tcase_add_test(tc, test_hostile_client_that_pauses_reading_gets_every_reply_in_order);
        tcase_add_test(tc, test_hostile_hello_version_2_gets_eproto);
        tcase_add_test(tc, test_hostile_every_truncation_of_a_request_datagram);
        tcase_add_test(tc, test_hostile_oversized_datagram);
        tcase_add_test(tc, test_hostile_fds_on_the_hello);
        tcase_add_test(tc, test_hostile_fds_on_a_ping);
        tcase_add_test(tc, test_hostile_open_fd_index_out_of_range);
        tcase_add_test(tc, test_hostile_two_fds_for_one_open);
        tcase_add_test(tc, test_hostile_253_fds_on_one_open);
        tcase_add_test(tc, test_hostile_silent_client_does_not_block_others);
        tcase_add_test(tc, test_hostile_silent_client_dropped_after_handshake_timeout);
        tcase_add_test(tc, test_hostile_killed_client_with_parked_waits_and_timers);
        tcase_add_test(tc, test_hostile_drop_does_not_disturb_parked_wait);
        suite_add_tcase(s, tc);
        return s;
}
