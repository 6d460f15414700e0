/*
 * loop: libnetpoll inside a caller's event loop (netpoll(3), EVENT LOOPS):
 * np_get_fd, np_get_events, np_get_timeout and np_process driven by
 * poll(2) as any loop would, and np_attach_event under sd-event.  The
 * outcomes are those of the blocking calls (the api suite's cases, through
 * np_process instead of np_poll); the fd is readable while np_process has
 * work and not otherwise, also when another thread's call reads the
 * socket; np_process never waits, not even on a daemon that stops reading;
 * a restart in between changes nothing; and one single-threaded sd-event
 * loop drives a thousand descriptors with deadlines, timers of its own and
 * a child process.
 *
 * Two tests look inside the client (client.h): how many pipelined
 * requests wait, and how many restarts it resumed, which no call reports.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "client.h"
#include "test-api.h"

/* ---- a loop as a caller writes it ---- */

/* Whether np_get_fd is readable now. */
static bool fd_ready(np_client *c)
{
        struct pollfd p = { .fd = np_get_fd(c), .events = (short)np_get_events(c) };

        ck_assert_int_ge(p.fd, 0);
        int r = poll(&p, 1, 0);
        ck_assert_int_ge(r, 0);
        return r > 0;
}

/*
 * Runs a loop over c for at most timeout_ns: poll np_get_fd for
 * np_get_events, until np_get_timeout at the latest, then np_process.
 * Returns the first non-zero result of np_process, or 0 when the time is
 * up.  *ret_wakeups (may be NULL) counts the polls that found it readable.
 */
static int loop_run(np_client *c, np_event *ev, int max, int64_t timeout_ns, int *ret_wakeups)
{
        const int64_t end = test_now() + timeout_ns;
        int wakeups = 0, r;

        for (;;) {
                struct pollfd p = { .fd = np_get_fd(c), .events = (short)np_get_events(c) };
                int64_t now = test_now(), left = end - now;
                uint64_t t;

                ck_assert_int_ge(p.fd, 0);
                if (np_get_timeout(c, &t) > 0 && (int64_t)t - now < left)
                        left = (int64_t)t - now;
                r = poll(&p, 1, left > 0 ? (int)((left + MS - 1) / MS) : 0);
                ck_assert_int_ge(r, 0);
                wakeups += r > 0;
                r = np_process(c, ev, max);
                if (r != 0 || test_now() >= end)
                        break;
        }
        if (ret_wakeups)
                *ret_wakeups = wakeups;
        return r;
}

/* loop_run until one event, which must come within 10 s. */
static np_event loop_one(np_client *c)
{
        np_event ev[1];

        ck_assert_int_eq(loop_run(c, ev, 1, 10 * SEC, NULL), 1);
        return ev[0];
}

/* Runs the loop for ns and fails on any event. */
static void loop_quiet(np_client *c, int64_t ns)
{
        np_event ev[4];

        ck_assert_int_eq(loop_run(c, ev, 4, ns, NULL), 0);
}

/* ---- the calls ---- */

START_TEST(test_loop_fd_events_and_timeout)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[4];
        uint64_t t = 1;
        int p[2];

        int fd = np_get_fd(c);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(np_get_fd(c), fd); /* the same one */
        ck_assert_int_eq(fcntl(fd, F_GETFD), FD_CLOEXEC);
        ck_assert_int_eq(np_get_events(c), POLLIN);
        /* What may already have waited is looked at once, then nothing. */
        ck_assert_int_eq(np_process(c, ev, 4), 0);
        ck_assert(!fd_ready(c));
        ck_assert_int_eq(np_get_timeout(c, &t), 0);
        ck_assert_uint_eq(t, UINT64_MAX);
        int64_t t0 = test_now();
        for (int i = 0; i < 100; i++)
                ck_assert_int_eq(np_process(c, ev, 4), 0);
        ck_assert_int_lt(test_now() - t0, SEC);

        /* Its own fds, as the socket and the break eventfd are. */
        ck_assert_int_eq(np_is_poll_descriptor(c, fd), 1);
        np_desc dd;
        ck_assert_int_eq(np_open(c, fd, 1, &dd), -EINVAL);

        /* An outcome queued in memory is due at once. */
        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 7);
        put(p[1]);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_ping(c), 0); /* its reply comes after the event */
        ck_assert(fd_ready(c));
        ck_assert_int_eq(np_get_timeout(c, &t), 1);
        ck_assert_uint_eq(t, 0);
        ck_assert_int_eq(np_process(c, ev, 4), 1);
        ck_assert_uint_eq(ev[0].user, 7);
        ck_assert_int_eq(np_get_timeout(c, &t), 0);
        ck_assert_uint_eq(t, UINT64_MAX);
        ck_assert(!fd_ready(c));
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

static int never_called(np_client *c, const np_event *ev, int n, void *userdata)
{
        (void)c;
        (void)ev;
        (void)n;
        (void)userdata;
        ck_abort_msg("handler called");
        return 0;
}

START_TEST(test_loop_invalid_arguments)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[1];
        uint64_t t;

        ck_assert_int_eq(np_get_fd(NULL), -EINVAL);
        ck_assert_int_eq(np_get_events(NULL), -EINVAL);
        ck_assert_int_eq(np_get_timeout(NULL, &t), -EINVAL);
        ck_assert_int_eq(np_get_timeout(c, NULL), -EINVAL);
        ck_assert_int_eq(np_process(NULL, ev, 1), -EINVAL);
        ck_assert_int_eq(np_process(c, NULL, 1), -EINVAL);
        ck_assert_int_eq(np_process(c, ev, 0), -EINVAL);
        ck_assert_int_eq(np_process(c, ev, -1), -EINVAL);
        ck_assert_int_eq(np_attach_event(NULL, NULL, 0, never_called, NULL), -EINVAL);
        ck_assert_int_eq(np_attach_event(c, NULL, 0, NULL, NULL), -EINVAL);
        ck_assert_int_eq(np_detach_event(NULL), -EINVAL);
        ck_assert_int_eq(np_detach_event(c), 0); /* not attached */
        ck_assert_int_eq(np_ping(c), 0);
        finish(&d, c);
}
END_TEST

/* test_api_arm_outcome_delivered_by_poll, through the loop. */
START_TEST(test_loop_arm_outcomes_as_np_poll)
{
        TestDaemon d;
        np_client *c = start(&d);
        const uint64_t cookie = UINT64_C(0x0123456789abcdef);
        np_event ev;
        int p[2], wakeups;

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], cookie);

        /* Parked, then readiness; nothing wakes the loop in between but
         * sending the arm. */
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        np_event none[4];
        ck_assert_int_eq(loop_run(c, none, 4, 200 * MS, &wakeups), 0);
        ck_assert_int_le(wakeups, 2);
        assert_stats(c, 1, 1, 0);
        put(p[1]);
        ev = loop_one(c);
        ck_assert_uint_eq(ev.desc, d1);
        ck_assert_uint_eq(ev.user, cookie);
        ck_assert_int_eq(ev.mode, NP_READ);
        ck_assert_int_eq(ev.result, NP_OK);
        assert_stats(c, 1, 0, 0);
        drain(p[0]);

        /* Latched readiness: an immediate outcome, still an event. */
        put(p[1]);
        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ev = loop_one(c);
        ck_assert_uint_eq(ev.desc, d1);
        ck_assert_int_eq(ev.result, NP_OK);
        drain(p[0]);

        /* An already-expired deadline. */
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ev = loop_one(c);
        ck_assert_uint_eq(ev.user, cookie);
        ck_assert_int_eq(ev.mode, NP_READ);
        ck_assert_int_eq(ev.result, NP_ERR_TIMEOUT);

        /* A deadline that expires while armed: never early. */
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(np_set_deadline(c, d1, 50 * MS, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ev = loop_one(c);
        ck_assert_int_ge(test_now() - t0, 50 * MS);
        ck_assert_int_eq(ev.result, NP_ERR_TIMEOUT);

        /* Closing, parked and immediate. */
        ck_assert_int_eq(np_set_deadline(c, d1, 0, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_unblock(c, d1), 0);
        ev = loop_one(c);
        ck_assert_int_eq(ev.result, NP_ERR_CLOSING);
        ck_assert_int_eq(np_arm(c, d1, NP_WRITE), 0);
        ev = loop_one(c);
        ck_assert_int_eq(ev.mode, NP_WRITE);
        ck_assert_int_eq(ev.result, NP_ERR_CLOSING);
        loop_quiet(c, 100 * MS);
        ck_assert_int_eq(np_close(c, d1), 0);
        close2(p);
        finish(&d, c);
}
END_TEST

/* A pipelined request leaves through np_process: the fd says so at once,
 * with no other call to carry it. */
START_TEST(test_loop_pipelined_batch_makes_fd_readable)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[2];
        int p[2];

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 3);
        ck_assert_int_eq(np_process(c, ev, 2), 0);
        ck_assert(!fd_ready(c));
        ck_assert_int_eq(np_set_deadline(c, d1, 30 * MS, NP_READ), 0);
        ck_assert(fd_ready(c));
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert_int_eq(np_process(c, ev, 2), 0);
        ck_assert_int_eq(loop_run(c, ev, 2, 10 * SEC, NULL), 1);
        ck_assert_uint_eq(ev[0].desc, d1);
        ck_assert_int_eq(ev[0].result, NP_ERR_TIMEOUT);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

/* test_api_poll_excess_events_stay_queued: and the fd stays readable. */
START_TEST(test_loop_excess_events_stay_queued)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[2];
        int p[5][2], seen = 0;
        np_desc ds[5];

        for (int i = 0; i < 5; i++) {
                mkpipe(p[i]);
                ds[i] = open_ok(c, p[i][0], (uint64_t)(100 + i));
                put(p[i][1]);
        }
        ck_assert_int_eq(np_ping(c), 0);
        for (int i = 0; i < 5; i++)
                ck_assert_int_eq(np_arm(c, ds[i], NP_READ), 0);
        ck_assert_int_eq(np_ping(c), 0); /* the five events are in memory */
        const int expect[] = { 2, 2, 1 };
        for (int k = 0; k < 3; k++) {
                ck_assert(fd_ready(c));
                int n = np_process(c, ev, 2);
                ck_assert_int_eq(n, expect[k]);
                for (int i = 0; i < n; i++) {
                        int j = (int)(ev[i].user - 100);
                        ck_assert(j >= 0 && j < 5);
                        ck_assert_uint_eq(ev[i].desc, ds[j]);
                        ck_assert_int_eq(ev[i].result, NP_OK);
                        ck_assert(!(seen & (1 << j)));
                        seen |= 1 << j;
                }
        }
        ck_assert_int_eq(seen, 0x1f);
        ck_assert(!fd_ready(c));
        ck_assert_int_eq(np_process(c, ev, 2), 0);
        for (int i = 0; i < 5; i++) {
                close_desc(c, ds[i]);
                close2(p[i]);
        }
        finish(&d, c);
}
END_TEST

/* np_break makes the fd readable; np_process takes it (returning 0), so a
 * blocking np_poll afterwards waits its delay. */
START_TEST(test_loop_break_wakes_fd_and_is_taken)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[1];

        ck_assert_int_eq(np_process(c, ev, 1), 0);
        ck_assert(!fd_ready(c));
        ck_assert_int_eq(np_break(c), 0);
        ck_assert_int_eq(np_break(c), 0);
        ck_assert(fd_ready(c));
        ck_assert_int_eq(np_process(c, ev, 1), 0);
        ck_assert(!fd_ready(c));
        int64_t t0 = test_now();
        ck_assert_int_eq(np_poll(c, 100 * MS, ev, 1), 0);
        ck_assert_int_ge(test_now() - t0, 100 * MS);

        /* A break another call took off the eventfd (as a blocking reader
         * does) still reaches the loop. */
        Waiter w;
        int p[2];
        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        ck_assert_int_eq(np_process(c, ev, 1), 0);
        ck_assert_int_eq(np_break(c), 0);
        for (int i = 0; i < 1000 && !fd_ready(c); i++)
                usleep(1000);
        ck_assert(fd_ready(c));
        /* The reader may set the break pending a moment after it took
         * it off the eventfd: 100 ms of loop. */
        for (int i = 0; i < 100; i++) {
                if (fd_ready(c))
                        ck_assert_int_eq(np_process(c, ev, 1), 0);
                usleep(1000);
        }
        ck_assert(!fd_ready(c));
        t0 = test_now();
        ck_assert_int_eq(np_poll(c, 100 * MS, ev, 1), 0);
        ck_assert_int_ge(test_now() - t0, 100 * MS);
        put(p[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

/* Another thread parked in np_wait holds the reader role and reads the
 * loop's events off the socket: they still wake the loop. */
START_TEST(test_loop_events_read_by_another_thread_wake_fd)
{
        TestDaemon d;
        np_client *c = start(&d);
        Waiter w;
        int p1[2], p2[2];

        mkpipe(p1);
        mkpipe(p2);
        np_desc d1 = open_ok(c, p1[0], 1), d2 = open_ok(c, p2[0], 2);
        waiter_start(&w, c, d1, NP_READ, false);
        await_waiters(c, 1);
        for (int i = 0; i < 20; i++) {
                ck_assert_int_eq(np_arm(c, d2, NP_READ), 0);
                loop_quiet(c, 20 * MS);
                put(p2[1]);
                np_event ev = loop_one(c);
                ck_assert_uint_eq(ev.desc, d2);
                ck_assert_int_eq(ev.result, NP_OK);
                drain(p2[0]);
        }
        ck_assert(!atomic_load(&w.done));
        put(p1[1]);
        ck_assert_int_eq(waiter_join(&w), NP_OK);
        loop_quiet(c, 50 * MS);
        close_desc(c, d1);
        close_desc(c, d2);
        close2(p1);
        close2(p2);
        finish(&d, c);
}
END_TEST

/*
 * A daemon that stops reading (SIGSTOP) fills the socket: np_process
 * keeps the batch instead of waiting for room, the fd is then not readable
 * (no busy loop), and readable again once there is room; the batch then
 * leaves whole.
 */
START_TEST(test_loop_process_never_waits_for_a_full_socket)
{
        TestDaemon d;
        np_client *c = start(&d);
        np_event ev[4];
        int p[2], rounds = 0;

        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 1);
        ck_assert_int_ge(np_get_fd(c), 0);
        ck_assert_int_eq(np_process(c, ev, 4), 0);
        ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
        for (; rounds < 2000 && c->n_batch == 0; rounds++) {
                for (int i = 0; i < 100; i++)
                        ck_assert_int_eq(
                                np_set_deadline(c, d1, 60 * SEC + rounds * 100 + i, NP_READ), 0);
                int64_t t0 = test_now();
                ck_assert_int_eq(np_process(c, ev, 4), 0);
                ck_assert_int_lt(test_now() - t0, SEC);
        }
        ck_assert_uint_eq(c->n_batch, 100); /* the last round stayed, whole */
        ck_assert_int_gt(rounds, 1);
        ck_assert(!fd_ready(c));
        ck_assert_int_eq(kill(d.pid, SIGCONT), 0);
        struct pollfd pf = { .fd = np_get_fd(c), .events = POLLIN };
        ck_assert_int_eq(poll(&pf, 1, 10000), 1);
        for (int i = 0; i < 10000 && c->n_batch > 0; i++) {
                ck_assert_int_eq(loop_run(c, ev, 4, 10 * MS, NULL), 0);
        }
        ck_assert_uint_eq(c->n_batch, 0);
        assert_stats(c, 1, 0, 1);
        ck_assert_int_eq(np_set_deadline(c, d1, -1, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        np_event e = loop_one(c);
        ck_assert_int_eq(e.result, NP_ERR_TIMEOUT);
        assert_stats(c, 1, 0, 0);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
}
END_TEST

/* ---- restarts ---- */

/*
 * test-resume's scenario through np_process, in one thread: an armed wait
 * made readable after an in-place upgrade, an armed wait against a
 * deadline that falls after it, and an arm still in the pipelined batch
 * when the upgrade starts.  The loop reads the `resumed` notice itself
 * (np_process resumes the connection), and every outcome comes once.
 */
START_TEST(test_loop_restart_in_between_delivers_each_event_once)
{
        TestDaemon d;
        np_client *c, *admin;
        int p[3][2];
        np_desc ds[3];
        np_event ev[4];

        test_daemon_start(&d, NULL, 0, true);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        ck_assert_int_eq(np_connect(d.sock, &admin), 0);
        for (int i = 0; i < 3; i++) {
                mkpipe(p[i]);
                ds[i] = open_ok(c, p[i][0], (uint64_t)i);
        }
        const int64_t deadline = 2 * SEC;
        int64_t set_at = test_now();
        ck_assert_int_eq(np_set_deadline(c, ds[1], deadline, NP_READ), 0);
        ck_assert_int_eq(np_arm(c, ds[0], NP_READ), 0);
        ck_assert_int_eq(np_arm(c, ds[1], NP_READ), 0);
        ck_assert_int_eq(np_process(c, ev, 4), 0);
        assert_stats(c, 3, 2, 1);

        ck_assert_int_eq(np_arm(c, ds[2], NP_READ), 0); /* batched */
        ck_assert_uint_eq(c->n_batch, 1);
        ck_assert_int_eq(kill(d.pid, SIGUSR2), 0);
        ck_assert_int_eq(np_process(c, ev, 4), 0); /* sent into the upgrade */
        ck_assert_uint_eq(c->n_batch, 0);
        await_instance(admin, 2, NULL);

        /* The notice arrives on the socket; the loop resumes. */
        for (int i = 0; i < 100 && c->resumes == 0; i++)
                ck_assert_int_eq(loop_run(c, ev, 4, 50 * MS, NULL), 0);
        ck_assert_uint_eq(c->resumes, 1);
        loop_quiet(c, 100 * MS);

        put(p[0][1]);
        put(p[2][1]);
        int seen = 0;
        while (seen != 0x5) {
                int n = loop_run(c, ev, 4, 10 * SEC, NULL);
                ck_assert_int_gt(n, 0);
                for (int i = 0; i < n; i++) {
                        ck_assert(ev[i].user == 0 || ev[i].user == 2);
                        ck_assert_uint_eq(ev[i].desc, ds[ev[i].user]);
                        ck_assert_int_eq(ev[i].result, NP_OK);
                        ck_assert(!(seen & (1 << ev[i].user)));
                        seen |= 1 << ev[i].user;
                }
        }
        np_event e = loop_one(c);
        ck_assert_uint_eq(e.desc, ds[1]);
        ck_assert_int_eq(e.result, NP_ERR_TIMEOUT);
        ck_assert_int_ge(test_now() - set_at, deadline); /* never early */
        loop_quiet(c, 200 * MS);                         /* exactly once */
        assert_stats(c, 3, 0, 0);

        for (int i = 0; i < 3; i++) {
                close_desc(c, ds[i]);
                close2(p[i]);
        }
        np_disconnect(admin);
        np_disconnect(c);
        test_daemon_stop_ok(&d);
}
END_TEST

/* ---- sd-event ---- */

typedef struct Small {
        int calls, events, breaks, errors;
        int last_error;
        np_event ev[8];
} Small;

static int small_handler(np_client *c, const np_event *ev, int n, void *userdata)
{
        Small *s = userdata;

        (void)c;
        s->calls++;
        if (n < 0) {
                s->errors++;
                s->last_error = n;
                ck_assert_ptr_null(ev);
                return 0;
        }
        if (n == 0)
                s->breaks++;
        for (int i = 0; i < n; i++)
                s->ev[s->events++ % 8] = ev[i];
        return 0;
}

/* Runs e until pred(s) holds or ns passed; returns whether it held. */
static bool run_until(sd_event *e, Small *s, bool (*pred)(const Small *), int64_t ns)
{
        int64_t end = test_now() + ns;

        while (!pred(s) && test_now() < end)
                ck_assert_int_ge(sd_event_run(e, 10000), 0);
        return pred(s);
}

static bool has_event(const Small *s)
{
        return s->events > 0;
}

static bool has_two_events(const Small *s)
{
        return s->events >= 2;
}

static bool has_break(const Small *s)
{
        return s->breaks > 0;
}

static bool has_error(const Small *s)
{
        return s->errors > 0;
}

START_TEST(test_loop_sd_event_attach_break_detach)
{
        TestDaemon d;
        np_client *c = start(&d);
        sd_event *e = NULL;
        Small s = { 0 };
        int p[2];

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(np_attach_event(c, e, 0, small_handler, &s), 0);
        ck_assert_int_eq(np_attach_event(c, e, 0, small_handler, &s), -EBUSY);

        /* An outcome. */
        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 11);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert(!run_until(e, &s, has_event, 100 * MS));
        put(p[1]);
        ck_assert(run_until(e, &s, has_event, 10 * SEC));
        ck_assert_int_eq(s.events, 1);
        ck_assert_uint_eq(s.ev[0].user, 11);
        ck_assert_int_eq(s.ev[0].result, NP_OK);

        /* A break: the handler with n == 0, once. */
        ck_assert_int_eq(np_break(c), 0);
        ck_assert(run_until(e, &s, has_break, 10 * SEC));
        ck_assert(!run_until(e, &s, has_error, 100 * MS));
        ck_assert_int_eq(s.breaks, 1);
        ck_assert_int_eq(s.calls, 2);

        /* Detached: nothing more is dispatched. */
        ck_assert_int_eq(np_detach_event(c), 0);
        ck_assert_int_eq(np_detach_event(c), 0);
        ck_assert_int_eq(np_break(c), 0);
        ck_assert(!run_until(e, &s, has_error, 100 * MS));
        ck_assert_int_eq(s.calls, 2);
        np_event ev[1];
        ck_assert_int_eq(np_process(c, ev, 1), 0); /* the break, taken */

        /* Attached again, to the default loop, and left attached:
         * np_disconnect detaches. */
        sd_event *def = NULL;
        ck_assert_int_ge(sd_event_default(&def), 0);
        ck_assert_int_eq(np_attach_event(c, NULL, -5, small_handler, &s), 0);
        drain(p[0]);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        put(p[1]);
        ck_assert(run_until(def, &s, has_two_events, 10 * SEC));
        ck_assert_uint_eq(s.ev[1].user, 11);
        ck_assert_int_eq(s.ev[1].result, NP_OK);
        close_desc(c, d1);
        close2(p);
        finish(&d, c);
        ck_assert_int_eq(sd_event_run(def, 0), 0);
        sd_event_unref(def);
        sd_event_unref(e);
}
END_TEST

/* The daemon goes for good: the lame duck's closing outcome, then the
 * error once, and the source stops (the fd stays readable). */
START_TEST(test_loop_sd_event_daemon_gone)
{
        TestDaemon d;
        np_client *c = start(&d);
        sd_event *e = NULL;
        Small s = { 0 };
        int p[2];

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(np_attach_event(c, e, 0, small_handler, &s), 0);
        mkpipe(p);
        np_desc d1 = open_ok(c, p[0], 4);
        ck_assert_int_eq(np_arm(c, d1, NP_READ), 0);
        ck_assert(!run_until(e, &s, has_event, 100 * MS));
        test_daemon_stop_ok(&d);
        ck_assert(run_until(e, &s, has_error, 10 * SEC));
        ck_assert_int_eq(s.events, 1);
        ck_assert_uint_eq(s.ev[0].desc, d1);
        ck_assert_int_eq(s.ev[0].result, NP_ERR_CLOSING);
        ck_assert_int_eq(s.last_error, -ECONNRESET);
        int calls = s.calls;
        for (int i = 0; i < 20; i++)
                ck_assert_int_ge(sd_event_run(e, 5000), 0);
        ck_assert_int_eq(s.calls, calls);
        ck_assert(fd_ready(c));
        np_event ev[1];
        ck_assert_int_eq(np_process(c, ev, 1), -ECONNRESET);
        ck_assert_int_eq(np_ping(c), -ECONNRESET);
        np_disconnect(c);
        close2(p);
        sd_event_unref(e);
}
END_TEST

/*
 * One thread, one sd-event loop, every descriptor's outcome through
 * np_process (np_attach_event).  Descriptors are eventfds (one fd each),
 * in five groups:
 *   0 readable by a timer of the loop's own, then re-armed against a
 *     50 ms deadline: NP_OK, then NP_ERR_TIMEOUT;
 *   1 a deadline of 150-250 ms: NP_ERR_TIMEOUT, never early;
 *   2 readable by a child process (an sd-event child source reaps it): NP_OK;
 *   3 unblocked by another timer, a round trip made inside the loop while
 *     outcomes keep arriving: NP_ERR_CLOSING;
 *   4 armed for writing (ready at once: NP_OK), then for reading against
 *     an expired deadline: NP_ERR_TIMEOUT at once.
 * A third timer ticks every 10 ms throughout.  Once every outcome is in
 * and the child reaped, the loop runs 100 ms more, in which nothing may
 * come.
 */
enum { G_TIMER, G_DEADLINE, G_CHILD, G_UNBLOCK, G_WRITE, N_GROUPS };

typedef struct Big {
        np_client *c;
        sd_event *e;
        int n;
        int *efd;
        np_desc *desc;
        int *phase;   /* outcomes received */
        int64_t *due; /* a deadline outcome not before */
        int finished, events, ticks, handler_calls;
        bool child_reaped, quiet;
        int child_status;
        char fail[256];
} Big;

#define BIG_MAX 1000

/* Descriptors: 1000, or fewer if the fd limits (ours; the daemon's quota
 * per uid, a quarter of the same hard limit) do not allow them. */
static int big_size(void)
{
        struct rlimit rl;

        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &rl);
                ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        }
        rlim_t n = BIG_MAX;
        if (rl.rlim_cur < n + 100)
                n = rl.rlim_cur > 200 ? rl.rlim_cur - 100 : 100;
        if (rl.rlim_max / 4 < n + 100)
                n = rl.rlim_max / 4 > 200 ? rl.rlim_max / 4 - 100 : 100;
        return (int)n;
}

static int big_fail(Big *b, const char *what, int i, const np_event *ev)
{
        if (!b->fail[0])
                snprintf(b->fail, sizeof(b->fail),
                         "%s: descriptor %d (group %d, phase %d): mode %c result %d", what, i,
                         i % N_GROUPS, b->phase[i], ev ? ev->mode : '-', ev ? ev->result : 0);
        return sd_event_exit(b->e, 1);
}

static int on_quiet_end(sd_event_source *s, uint64_t usec, void *userdata)
{
        Big *b = userdata;

        (void)s;
        (void)usec;
        return sd_event_exit(b->e, 0);
}

static void big_check_finished(Big *b)
{
        if (b->quiet || b->finished < b->n || !b->child_reaped)
                return;
        b->quiet = true;
        ck_assert_int_ge(
                sd_event_add_time_relative(b->e, NULL, CLOCK_MONOTONIC, 100000, 0, on_quiet_end, b),
                0);
}

/* What event i must be in its phase; then the next step. */
static int big_on_event(Big *b, const np_event *ev)
{
        if (ev->user >= (uint64_t)b->n)
                return big_fail(b, "unknown user", -1, ev);
        int i = (int)ev->user, g = i % N_GROUPS, want_mode = NP_READ, want;
        bool last = true;

        if (b->quiet)
                return big_fail(b, "event after the end", i, ev);
        if (ev->desc != b->desc[i])
                return big_fail(b, "wrong desc", i, ev);
        switch (g) {
        case G_TIMER:
                want = b->phase[i] == 0 ? NP_OK : NP_ERR_TIMEOUT;
                last = b->phase[i] == 1;
                break;
        case G_DEADLINE:
                want = NP_ERR_TIMEOUT;
                break;
        case G_CHILD:
                want = NP_OK;
                break;
        case G_UNBLOCK:
                want = NP_ERR_CLOSING;
                break;
        default:
                want = b->phase[i] == 0 ? NP_OK : NP_ERR_TIMEOUT;
                want_mode = b->phase[i] == 0 ? NP_WRITE : NP_READ;
                last = b->phase[i] == 1;
                break;
        }
        if (b->phase[i] > 1 || (b->phase[i] == 1 && g != G_TIMER && g != G_WRITE))
                return big_fail(b, "one outcome too many", i, ev);
        if (ev->result != want || ev->mode != want_mode)
                return big_fail(b, "wrong outcome", i, ev);
        if (want == NP_ERR_TIMEOUT && b->due[i] && test_now() < b->due[i])
                return big_fail(b, "deadline early", i, ev);
        b->phase[i]++;
        if (g == G_TIMER && !last) {
                uint64_t v;
                if (read(b->efd[i], &v, sizeof(v)) != sizeof(v))
                        return big_fail(b, "eventfd not readable", i, ev);
                b->due[i] = test_now() + 50 * MS;
                if (np_set_deadline(b->c, b->desc[i], 50 * MS, NP_READ) < 0 ||
                    np_arm(b->c, b->desc[i], NP_READ) < 0)
                        return big_fail(b, "re-arm", i, ev);
        } else if (g == G_WRITE && !last) {
                if (np_set_deadline(b->c, b->desc[i], -1, NP_READ) < 0 ||
                    np_arm(b->c, b->desc[i], NP_READ) < 0)
                        return big_fail(b, "re-arm", i, ev);
        }
        if (last) {
                b->finished++;
                big_check_finished(b);
        }
        return 0;
}

static int big_handler(np_client *c, const np_event *ev, int n, void *userdata)
{
        Big *b = userdata;

        (void)c;
        b->handler_calls++;
        if (n <= 0)
                return big_fail(b, n < 0 ? "connection lost" : "unexpected break", -1, NULL);
        for (int k = 0; k < n; k++) {
                b->events++;
                int r = big_on_event(b, &ev[k]);
                if (r < 0 || b->fail[0])
                        return r;
        }
        return 0;
}

static int on_make_ready(sd_event_source *s, uint64_t usec, void *userdata)
{
        Big *b = userdata;
        uint64_t one = 1;

        (void)s;
        (void)usec;
        for (int i = G_TIMER; i < b->n; i += N_GROUPS)
                if (write(b->efd[i], &one, sizeof(one)) != sizeof(one))
                        return big_fail(b, "eventfd write", i, NULL);
        return 0;
}

static int on_unblock(sd_event_source *s, uint64_t usec, void *userdata)
{
        Big *b = userdata;

        (void)s;
        (void)usec;
        for (int i = G_UNBLOCK; i < b->n; i += N_GROUPS)
                if (np_unblock(b->c, b->desc[i]) != 0)
                        return big_fail(b, "np_unblock", i, NULL);
        return 0;
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata)
{
        Big *b = userdata;

        b->ticks++;
        int r = sd_event_source_set_time(s, usec + 10000);
        return r < 0 ? r : sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int on_watchdog(sd_event_source *s, uint64_t usec, void *userdata)
{
        Big *b = userdata;

        (void)s;
        (void)usec;
        snprintf(b->fail, sizeof(b->fail), "stalled: %d of %d finished, %d events, child %s",
                 b->finished, b->n, b->events, b->child_reaped ? "reaped" : "running");
        return sd_event_exit(b->e, 1);
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata)
{
        Big *b = userdata;

        (void)s;
        b->child_reaped = true;
        b->child_status = si->si_code == CLD_EXITED ? si->si_status : 128 + si->si_status;
        big_check_finished(b);
        return 0;
}

START_TEST(test_loop_sd_event_drives_1000_descriptors_timers_and_a_child)
{
        TestDaemon d;
        Big b = { 0 };
        sigset_t ss;
        uint64_t now_usec;

        b.n = big_size();
        ck_assert_int_ge(b.n, 100);
        b.efd = calloc((size_t)b.n, sizeof(*b.efd));
        b.desc = calloc((size_t)b.n, sizeof(*b.desc));
        b.phase = calloc((size_t)b.n, sizeof(*b.phase));
        b.due = calloc((size_t)b.n, sizeof(*b.due));
        ck_assert(b.efd && b.desc && b.phase && b.due);
        b.c = start(&d);
        ck_assert_int_ge(sd_event_new(&b.e), 0);
        ck_assert_int_eq(np_attach_event(b.c, b.e, 0, big_handler, &b), 0);

        for (int i = 0; i < b.n; i++) {
                b.efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                ck_assert_int_ge(b.efd[i], 0);
                b.desc[i] = open_ok(b.c, b.efd[i], (uint64_t)i);
        }
        for (int i = 0; i < b.n; i++) {
                switch (i % N_GROUPS) {
                case G_DEADLINE: {
                        int64_t ns = (150 + i % 101) * MS;
                        b.due[i] = test_now() + ns;
                        ck_assert_int_eq(np_set_deadline(b.c, b.desc[i], ns, NP_READ), 0);
                        ck_assert_int_eq(np_arm(b.c, b.desc[i], NP_READ), 0);
                        break;
                }
                case G_WRITE:
                        ck_assert_int_eq(np_arm(b.c, b.desc[i], NP_WRITE), 0);
                        break;
                default:
                        ck_assert_int_eq(np_arm(b.c, b.desc[i], NP_READ), 0);
                        break;
                }
        }

        /* The child: makes group 2 readable after 150 ms, exits 0. */
        sigemptyset(&ss);
        sigaddset(&ss, SIGCHLD);
        ck_assert_int_eq(sigprocmask(SIG_BLOCK, &ss, NULL), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                uint64_t one = 1;
                usleep(150000);
                for (int i = G_CHILD; i < b.n; i += N_GROUPS)
                        if (write(b.efd[i], &one, sizeof(one)) != sizeof(one))
                                _exit(1);
                _exit(0);
        }
        ck_assert_int_ge(sd_event_add_child(b.e, NULL, pid, WEXITED, on_child, &b), 0);

        ck_assert_int_ge(sd_event_now(b.e, CLOCK_MONOTONIC, &now_usec), 0);
        ck_assert_int_ge(sd_event_add_time(b.e, NULL, CLOCK_MONOTONIC, now_usec + 100000, 0,
                                           on_make_ready, &b),
                         0);
        ck_assert_int_ge(
                sd_event_add_time(b.e, NULL, CLOCK_MONOTONIC, now_usec + 200000, 0, on_unblock, &b),
                0);
        ck_assert_int_ge(
                sd_event_add_time(b.e, NULL, CLOCK_MONOTONIC, now_usec + 10000, 0, on_tick, &b), 0);
        ck_assert_int_ge(sd_event_add_time(b.e, NULL, CLOCK_MONOTONIC, now_usec + 30000000, 0,
                                           on_watchdog, &b),
                         0);
        /* sd_event_add_time's sources above are floating: owned by the loop. */
        int r = sd_event_loop(b.e);
        ck_assert_msg(r == 0 && !b.fail[0], "loop: %d: %s", r, b.fail);
        ck_assert_int_eq(b.finished, b.n);
        ck_assert_int_eq(b.child_status, 0);
        ck_assert_int_ge(b.ticks, 5);
        /* Batched dispatch: far fewer handler calls than outcomes. */
        ck_assert_int_lt(b.handler_calls, b.events);

        assert_stats(b.c, (uint64_t)b.n, 0, 0);
        for (int i = 0; i < b.n; i++) {
                if (i % N_GROUPS != G_UNBLOCK)
                        ck_assert_int_eq(np_unblock(b.c, b.desc[i]), 0);
                ck_assert_int_eq(np_close(b.c, b.desc[i]), 0);
                close(b.efd[i]);
        }
        assert_stats(b.c, 0, 0, 0);
        ck_assert_int_eq(np_detach_event(b.c), 0);
        sd_event_unref(b.e);
        finish(&d, b.c);
        free(b.efd);
        free(b.desc);
        free(b.phase);
        free(b.due);
}
END_TEST

Suite *suite_loop(void)
{
        Suite *s = suite_create("loop");
        TCase *tc = test_tcase(s, "calls", 30);

        tcase_add_test(tc, test_loop_fd_events_and_timeout);
        tcase_add_test(tc, test_loop_invalid_arguments);
        tcase_add_test(tc, test_loop_arm_outcomes_as_np_poll);
        tcase_add_test(tc, test_loop_pipelined_batch_makes_fd_readable);
        tcase_add_test(tc, test_loop_excess_events_stay_queued);
        tcase_add_test(tc, test_loop_break_wakes_fd_and_is_taken);
        tcase_add_test(tc, test_loop_events_read_by_another_thread_wake_fd);
        tcase_add_test(tc, test_loop_process_never_waits_for_a_full_socket);
        tc = test_tcase(s, "restart", 60);
        tcase_add_test(tc, test_loop_restart_in_between_delivers_each_event_once);
        tc = test_tcase(s, "sd-event", 60);
        tcase_add_test(tc, test_loop_sd_event_attach_break_detach);
        tcase_add_test(tc, test_loop_sd_event_daemon_gone);
        tcase_add_test(tc, test_loop_sd_event_drives_1000_descriptors_timers_and_a_child);
        return s;
}
