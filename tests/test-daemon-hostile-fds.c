/*
 * daemon, case hostile: fds passed where none are allowed (on the hello,
 * on a ping) or not as an OPEN asks (an index out of range, two fds for
 * one OPEN, 253 on one): the client is dropped and the daemon closes every
 * fd it was sent.
 */
#include <fcntl.h>
#include <unistd.h>

#include "test-daemon.h"

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

void daemon_hostile_fds_tests(TCase *tc)
{
        tcase_add_test(tc, test_hostile_fds_on_the_hello);
        tcase_add_test(tc, test_hostile_fds_on_a_ping);
        tcase_add_test(tc, test_hostile_open_fd_index_out_of_range);
        tcase_add_test(tc, test_hostile_two_fds_for_one_open);
        tcase_add_test(tc, test_hostile_253_fds_on_one_open);
}
