/*
 * A threaded stress of libnetpoll for make check-tsan, beside the api
 * suite's threaded tests: several threads hammer one np_client with every
 * kind of call at once (blocking waits that time out, waits ended by
 * another thread's unblock, pipelined deadlines and arms, np_poll woken by
 * np_break, round trips), so that ThreadSanitizer sees the library's
 * locking under contention rather than in the orderly sequences of
 * functional tests.  Outcomes are checked too, loosely: each is one the
 * API documents for that call.
 *
 * A Check program of its own (fork mode), against $NETPOLLD_BIN.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../helpers.h"
#include "netpoll.h"

#define MS INT64_C(1000000)
#define THREADS 4
#define ROUNDS 60

typedef struct Shared {
        np_client *c;
        atomic_int running; /* worker threads still going */
        atomic_long events; /* np_poll events seen */
        atomic_long armed;  /* np_arm calls accepted */
} Shared;

/* Opens a pipe's read end (never readable), waits on it until a short
 * deadline, then unblocks and closes it. */
static void round_timeout(np_client *c)
{
        int p[2];
        np_desc d;

        ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        ck_assert_int_eq(np_open(c, p[0], 1, &d), 0);
        ck_assert_int_eq(np_set_deadline(c, d, 2 * MS, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, d, NP_READ), NP_ERR_TIMEOUT);
        ck_assert_int_eq(np_unblock(c, d), 0);
        ck_assert_int_eq(np_close(c, d), 0);
        close(p[0]);
        close(p[1]);
}

typedef struct Parked {
        np_client *c;
        np_desc d;
        int result;
} Parked;

static void *park(void *arg)
{
        Parked *p = arg;

        p->result = np_wait(p->c, p->d, NP_READ);
        return NULL;
}

/* A wait parked in another thread, ended by this thread's unblock. */
static void round_unblock(np_client *c)
{
        int p[2];
        Parked w = { .c = c, .result = -1 };
        pthread_t t;
        struct np_session_stats st;

        ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        ck_assert_int_eq(np_open(c, p[0], 2, &w.d), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, park, &w), 0);
        /* Parked or not yet: unblock ends it either way (a late wait sees
         * closing at once). */
        ck_assert_int_eq(np_session_stats(c, &st), 0);
        ck_assert_int_eq(np_unblock(c, w.d), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_int_eq(w.result, NP_ERR_CLOSING);
        ck_assert_int_eq(np_close(c, w.d), 0);
        close(p[0]);
        close(p[1]);
}

/* Pipelined deadline and arm on an eventfd (writable: the arm's outcome
 * comes from the poller thread's np_poll). */
static void round_arm(Shared *sh)
{
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        np_desc d;

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(np_open(sh->c, fd, 3, &d), 0);
        ck_assert_int_eq(np_set_deadline(sh->c, d, 1000 * MS, NP_RW), 0);
        ck_assert_int_eq(np_arm(sh->c, d, NP_WRITE), 0);
        atomic_fetch_add(&sh->armed, 1);
        ck_assert_int_eq(np_ping(sh->c), 0);
        ck_assert_int_eq(np_unblock(sh->c, d), 0);
        ck_assert_int_eq(np_close(sh->c, d), 0);
        close(fd);
}

static void *worker(void *arg)
{
        Shared *sh = arg;

        for (int i = 0; i < ROUNDS; i++) {
                switch (i % 3) {
                case 0:
                        round_timeout(sh->c);
                        break;
                case 1:
                        round_unblock(sh->c);
                        break;
                default:
                        round_arm(sh);
                        break;
                }
                np_break(sh->c);
        }
        atomic_fetch_sub(&sh->running, 1);
        np_break(sh->c);
        return NULL;
}

static void *poller(void *arg)
{
        Shared *sh = arg;
        np_event ev[16];

        while (atomic_load(&sh->running) > 0) {
                int n = np_poll(sh->c, -1, ev, 16);
                ck_assert_int_ge(n, 0);
                for (int i = 0; i < n; i++) {
                        ck_assert_int_eq(ev[i].user, 3);
                        ck_assert(ev[i].result == NP_OK || ev[i].result == NP_ERR_CLOSING);
                }
                atomic_fetch_add(&sh->events, n);
        }
        return NULL;
}

START_TEST(test_tsan_threads_share_one_client)
{
        TestDaemon d;
        Shared sh = { .running = THREADS };
        pthread_t workers[THREADS], poll_thread;
        np_event ev[16];

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(np_connect(d.sock, &sh.c), 0);
        ck_assert_int_eq(pthread_create(&poll_thread, NULL, poller, &sh), 0);
        for (int i = 0; i < THREADS; i++)
                ck_assert_int_eq(pthread_create(&workers[i], NULL, worker, &sh), 0);
        for (int i = 0; i < THREADS; i++)
                ck_assert_int_eq(pthread_join(workers[i], NULL), 0);
        ck_assert_int_eq(pthread_join(poll_thread, NULL), 0);
        /* Every accepted arm has its one event, some perhaps still queued. */
        for (int n; (n = np_poll(sh.c, 0, ev, 16)) > 0;)
                atomic_fetch_add(&sh.events, n);
        ck_assert_int_eq(atomic_load(&sh.events), atomic_load(&sh.armed));

        struct np_session_stats st;
        ck_assert_int_eq(np_session_stats(sh.c, &st), 0);
        ck_assert_uint_eq(st.descriptors, 0);
        ck_assert_uint_eq(st.waiters, 0);
        ck_assert_uint_eq(st.timers, 0);
        np_disconnect(sh.c);
        int status = test_daemon_stop(&d);
        ck_assert_msg(status == 0, "netpolld exit status %#x", status);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("tsan-threads");
        TCase *tc = tcase_create("threads");

        tcase_add_checked_fixture(tc, fdleak_setup, fdleak_teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_tsan_threads_share_one_client);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_set_fork_status(sr, CK_FORK);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
