/*
 * daemon, case hostile (with test-daemon-hostile-fds.c and
 * test-daemon-hostile-silent.c): clients that speak the raw wire protocol
 * and misbehave in one way: garbage, requests before the hello, a second
 * hello, empty datagrams, a wrong version, every truncation of a request
 * datagram, an oversized one, one that stops reading while its replies
 * pile up.  The daemon must drop exactly that client and go on serving,
 * its fd count back where it was (hostile_begin / hostile_end).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/protocol.h"
#include "test-daemon.h"

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
        /* The connection and the copy of the pipe (in the main epoll set:
         * a connection's first descriptors need no set of its own). */
        wait_fd_count(&h.d, h.baseline + 2);
        Netpoll__V1__Request u[2] = { mkreq(2, NETPOLL__V1__OP__OP_UNBLOCK),
                                      mkreq(3, NETPOLL__V1__OP__OP_CLOSE) };
        u[0].desc = u[1].desc = desc;
        ck_assert_int_eq(raw_send_requests(fd, u, 2, NULL, 0), 0);
        ck_assert_int_eq(raw_wait_reply(fd, 3, NULL), 0);
        wait_fd_count(&h.d, h.baseline + 1); /* the copy is gone */
        close(fd);
        close(p[0]);
        close(p[1]);
        hostile_end(&h, 0);
}
END_TEST

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

START_TEST(test_hostile_hello_version_0_gets_eproto_newer_gets_ours)
{
        Hostile h;
        Netpoll__V1__ServerMessage *m;

        hostile_begin(&h);
        /* A newer client is answered in the daemon's version, for the
         * client to accept or leave (common/protocol.h). */
        int fd = test_raw_connect(h.d.sock);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(raw_send_hello(fd, NP_PROTOCOL_VERSION + 1, NULL, 0), 0);
        ck_assert_int_eq(raw_recv(fd, IO_TIMEOUT_MS, &m), 1);
        ck_assert_int_eq(m->error, 0);
        ck_assert_ptr_nonnull(m->welcome);
        ck_assert_uint_eq(m->welcome->version, NP_PROTOCOL_VERSION);
        netpoll__v1__server_message__free_unpacked(m, NULL);
        close(fd);

        /* Version 0 (no version field at all) is below the oldest served. */
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

void daemon_hostile_tests(TCase *tc)
{
        tcase_add_test(tc, test_daemon_open_holds_one_fd_until_close);
        tcase_add_test(tc, test_hostile_garbage_first_datagram);
        tcase_add_test(tc, test_hostile_requests_before_hello);
        tcase_add_test(tc, test_hostile_second_hello);
        tcase_add_test(tc, test_hostile_empty_datagram_is_a_message_not_eof);
        tcase_add_test(tc, test_hostile_one_introspection_request_per_datagram);
        tcase_add_test(tc, test_hostile_client_that_pauses_reading_gets_every_reply_in_order);
        tcase_add_test(tc, test_hostile_hello_version_0_gets_eproto_newer_gets_ours);
        tcase_add_test(tc, test_hostile_every_truncation_of_a_request_datagram);
        tcase_add_test(tc, test_hostile_oversized_datagram);
}
