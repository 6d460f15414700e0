/*
 * daemon: black-box tests of the real netpolld and pollctl binaries.
 *
 * Command line and lifecycle: flags, --check-config, sd-daemon log
 * prefixes, SIGTERM/SIGINT, a second daemon, stale and foreign socket
 * paths, pollctl.  Hostile clients: each speaks the raw wire protocol
 * (datagrams packed with the generated protobuf-c code) and misbehaves in
 * one way; the daemon must drop exactly that client, close every fd it
 * sent, and go on serving, with its own fd count back to where it was.
 *
 * The tests are in test-daemon-<part>.c; this file holds the raw wire
 * protocol and the hostile-client frame they share (test-daemon.h), and
 * builds the suite from them.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-daemon.h"

#define MAX_DGRAM (64 * 1024)

int raw_send_bytes(int fd, const void *buf, size_t len, const int *fds, size_t nfds)
{
        ck_assert_uint_le(nfds, TEST_MAX_FDS);
        return test_send_fds(fd, buf, len, fds, nfds, 0);
}

int raw_send_msg(int fd, const Netpoll__V1__ClientMessage *m, const int *fds, size_t nfds)
{
        size_t len = netpoll__v1__client_message__get_packed_size(m);
        uint8_t *buf = malloc(len ? len : 1);

        ck_assert_ptr_nonnull(buf);
        netpoll__v1__client_message__pack(m, buf);
        int r = raw_send_bytes(fd, buf, len, fds, nfds);
        free(buf);
        return r;
}

Netpoll__V1__Request mkreq(uint64_t id, int op)
{
        Netpoll__V1__Request q = NETPOLL__V1__REQUEST__INIT;
        q.id = id;
        q.op = (Netpoll__V1__Op)op;
        return q;
}

/* Sends reqs[0..n) in one datagram with fds attached. */
int raw_send_requests(int fd, Netpoll__V1__Request *reqs, size_t n, const int *fds, size_t nfds)
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

int raw_send_hello_named(int fd, uint32_t version, const char *name, const int *fds, size_t nfds)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Hello h = NETPOLL__V1__HELLO__INIT;

        h.version = version;
        h.name = (char *)name;
        m.hello = &h;
        return raw_send_msg(fd, &m, fds, nfds);
}

int raw_send_hello(int fd, uint32_t version, const int *fds, size_t nfds)
{
        return raw_send_hello_named(fd, version, "test-daemon", fds, nfds);
}

/*
 * Receives one ServerMessage (at most timeout_ms).  Returns 1 and *ret
 * (free with netpoll__v1__server_message__free_unpacked), 0 on EOF,
 * -ETIMEDOUT, or -errno (-ECONNRESET: the daemon closed on us).
 */
int raw_recv(int fd, int timeout_ms, Netpoll__V1__ServerMessage **ret)
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
int raw_hello(const char *sock)
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
int raw_wait_reply(int fd, uint64_t id, uint64_t *ret_desc)
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

void raw_ping(int fd, uint64_t id)
{
        Netpoll__V1__Request q = mkreq(id, NETPOLL__V1__OP__OP_PING);
        ck_assert_int_eq(raw_send_requests(fd, &q, 1, NULL, 0), 0);
        ck_assert_int_eq(raw_wait_reply(fd, id, NULL), 0);
}

/* OP_STATUS over a fresh connection (counted in connections). */
StatusCopy raw_status(const char *sock)
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
void assert_serves(const TestDaemon *d)
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
int daemon_baseline(const TestDaemon *d)
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
void wait_fd_count(const TestDaemon *d, int want)
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
int expect_dropped(int fd)
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
void assert_read_eof(int rfd)
{
        struct pollfd pfd = { .fd = rfd, .events = POLLIN };
        ck_assert_int_eq(poll(&pfd, 1, IO_TIMEOUT_MS), 1);
        char c;
        ck_assert_int_eq(read(rfd, &c, 1), 0);
}

/* The daemon closes a client's fds on its closer threads, so the close
 * may come a moment after the reply or the drop: allow IO_TIMEOUT_MS. */
void assert_write_epipe(int wfd)
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

void hostile_begin(Hostile *h)
{
        test_daemon_start(&h->d, NULL, 0, false);
        h->baseline = daemon_baseline(&h->d);
        h->protocol_errors = raw_status(h->d.sock).protocol_errors;
}

/* After the offender is gone: the daemon serves, its fd count is back, and
 * it counted protocol_errors more protocol errors. */
void hostile_end(Hostile *h, unsigned protocol_errors)
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

Suite *suite_daemon(void)
{
        Suite *s = suite_create("daemon");
        TCase *tc;

        daemon_cli_tests(test_tcase(s, "cli", 60));

        tc = test_tcase(s, "lifecycle", 60);
        daemon_lifecycle_tests(tc);
        daemon_clients_tests(tc);

        daemon_pollctl_tests(test_tcase(s, "pollctl", 60));

        tc = test_tcase(s, "hostile", 120);
        daemon_hostile_tests(tc);
        daemon_hostile_fds_tests(tc);
        daemon_hostile_silent_tests(tc);
        return s;
}
