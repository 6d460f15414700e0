/*
 * daemon, case hostile: clients that go silent or die: a silent client
 * does not hold up others and is dropped once handshake_timeout has
 * passed; a client killed with parked waits and timers leaves nothing
 * behind; dropping hostile clients does not disturb another's parked wait.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-daemon.h"

START_TEST(test_hostile_silent_client_does_not_block_others)
{
        Hostile h;
        TestRun r;
        char conf[32];

        /* A handshake timeout far beyond the test, so the silent client
         * stays connected however slow the machine is. */
        test_daemon_start_with_config(&h.d, "[limits]\nhandshake_timeout = 1h\n", conf);
        unlink(conf);
        h.baseline = daemon_baseline(&h.d);
        h.protocol_errors = raw_status(h.d.sock).protocol_errors;
        int silent = test_raw_connect(h.d.sock);
        ck_assert_int_ge(silent, 0);
        int greeted_silent = raw_hello(h.d.sock); /* greeted, then silent */
        assert_serves(&h.d);
        const char *argv[] = { test_pollctl_bin(), "--socket", h.d.sock, "ping", "-c", "3", NULL };
        test_run(&r, argv);
        test_assert_exit(&r, 0);
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

        test_daemon_start_with_config(&d, "[limits]\nhandshake_timeout = 300ms\n", conf);
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
                int status = test_wait_exit(child, 1000);
                ck_abort_msg("child failed: status 0x%x (exit %d)", status,
                             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
        close(ready[0]);

        StatusCopy st = raw_status(h.d.sock);
        ck_assert_uint_eq(st.descriptors, 3);
        ck_assert_uint_eq(st.waiters, 4);
        ck_assert_uint_eq(st.timers, 6);
        wait_fd_count(&h.d, h.baseline + 1 + 3); /* connection, pipes (in the main set) */

        ck_assert_int_eq(kill(child, SIGKILL), 0);
        int status = test_wait_exit(child, 10000);
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
        TestRun r;
        const char *argv[] = { test_pollctl_bin(), "--socket", h.d.sock, "--json", "status", NULL };
        test_run(&r, argv);
        test_assert_exit(&r, 0);
        ck_assert_ptr_nonnull(strstr(r.out, "\"descriptors\":0,\"waiters\":0,\"timers\":0,"));
        hostile_end(&h, 0);
}
END_TEST

START_TEST(test_hostile_drop_does_not_disturb_parked_wait)
{
        Hostile h;
        np_client *c;
        np_desc desc;
        int p[2], a[2];
        Waiter w;

        hostile_begin(&h);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        ck_assert_int_eq(np_connect(h.d.sock, &c), 0);
        ck_assert_int_eq(np_open(c, p[0], 9, &desc), 0);
        waiter_start(&w, c, desc, NP_READ, false);
        await_waiters(c, 1);

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
        ck_assert(!atomic_load(&w.done));
        await_waiters(c, 1);
        ck_assert_int_eq(write(p[1], "x", 1), 1);
        ck_assert_msg(waiter_join_within(&w, 10 * INT64_C(1000000000)), "np_wait did not return");
        ck_assert_int_eq(w.result, NP_OK);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_unblock(c, desc), 0);
        ck_assert_int_eq(np_close(c, desc), 0);
        np_disconnect(c);
        close(p[0]);
        close(p[1]);
        hostile_end(&h, 3);
}
END_TEST

void daemon_hostile_silent_tests(TCase *tc)
{
        tcase_add_test(tc, test_hostile_silent_client_does_not_block_others);
        tcase_add_test(tc, test_hostile_silent_client_dropped_after_handshake_timeout);
        tcase_add_test(tc, test_hostile_killed_client_with_parked_waits_and_timers);
        tcase_add_test(tc, test_hostile_drop_does_not_disturb_parked_wait);
}
