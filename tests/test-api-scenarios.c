/*
 * api, case scenarios: what a runtime built on libnetpoll depends on: a
 * peer's close waking a reader, a TCP accept-read-shutdown, a killed
 * client's descriptors released, many threads on one connection, a parked
 * wait not delaying other calls, calls taking effect in order.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-api.h"

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

void api_scenarios_tests(TCase *tc)
{
        tcase_add_test(tc, test_api_peer_close_wakes_reader);
        tcase_add_test(tc, test_api_tcp_accept_read_and_peer_shutdown);
        tcase_add_test(tc, test_api_killed_client_descriptors_released);
        tcase_add_test(tc, test_api_many_threads_wait_concurrently);
        tcase_add_test(tc, test_api_parked_wait_does_not_delay_other_calls);
        tcase_add_test(tc, test_api_calls_take_effect_in_order);
}
