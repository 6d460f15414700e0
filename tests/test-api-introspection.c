/*
 * api, case introspection: np_is_poll_descriptor naming the library's own
 * fds, and np_session_stats counting exactly.
 */
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "test-api.h"

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

void api_introspection_tests(TCase *tc)
{
        tcase_add_test(tc, test_api_is_poll_descriptor);
        tcase_add_test(tc, test_api_session_stats_are_exact);
}
