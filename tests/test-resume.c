/*
 * Restarts that clients never notice (netpoll(3), RESTARTS): the daemon
 * re-executed in place (SIGUSR2) and, under a service manager's fd store,
 * killed and started again; parked waits, armed waits and deadlines carry
 * on as if nothing happened.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/clock.h"
#include "../common/protocol.h"
#include "fakesm.h"
#include "test-daemon.h"
#include "helpers.h"
#include "netpoll.h"

/*
 * The whole scenario against one restart, made by restart(arg): a wait
 * parked on a pipe that becomes readable after the restart, a wait parked
 * against a read deadline that falls after it, an armed wait whose pipe
 * becomes readable after it, and a descriptor with a deadline already
 * past.  Every outcome must be the one it would have been without it.
 */
static void scenario(np_client *c, np_client *admin, void (*restart)(void *), void *arg,
                     uint64_t instance_after)
{
        int p1[2], p2[2], p3[2];
        np_desc d1, d2, d3;
        Waiter w1, w2;
        struct np_status st;

        ck_assert_int_eq(pipe2(p1, O_CLOEXEC | O_NONBLOCK), 0);
        ck_assert_int_eq(pipe2(p2, O_CLOEXEC | O_NONBLOCK), 0);
        ck_assert_int_eq(pipe2(p3, O_CLOEXEC | O_NONBLOCK), 0);
        ck_assert_int_eq(np_open(c, p1[0], 1, &d1), 0);
        ck_assert_int_eq(np_open(c, p2[0], 2, &d2), 0);
        ck_assert_int_eq(np_open(c, p3[0], 3, &d3), 0);
        const int64_t deadline = 1500 * NSEC_PER_MSEC;
        int64_t set_at = now_ns();
        ck_assert_int_eq(np_set_deadline(c, d2, deadline, NP_READ), 0);
        waiter_start(&w1, c, d1, NP_READ, false);
        waiter_start(&w2, c, d2, NP_READ, false);
        ck_assert_int_eq(np_arm(c, d3, NP_READ), 0);
        await_waiters(c, 3);

        restart(arg);
        await_instance(admin, instance_after, &st);
        ck_assert_uint_ge(st.resumed_connections, 2);
        ck_assert_uint_ge(st.resumed_descriptors, 3);

        /* Nothing ended because of the restart. */
        np_event ev[4];
        ck_assert_int_eq(np_poll(c, 0, ev, 4), 0);
        ck_assert_int_eq(w1.result, -1000);

        ck_assert_int_eq(write(p1[1], "x", 1), 1);
        ck_assert_int_eq(write(p3[1], "y", 1), 1);
        ck_assert_int_eq(waiter_join(&w1), NP_OK);
        int n = np_poll(c, 2 * NSEC_PER_SEC, ev, 4);
        ck_assert_int_eq(n, 1);
        ck_assert_uint_eq(ev[0].desc, d3);
        ck_assert_int_eq(ev[0].result, NP_OK);
        ck_assert_uint_eq(ev[0].user, 3);
        /* Exactly once: the arm is not delivered again. */
        ck_assert_int_eq(np_poll(c, 200 * NSEC_PER_MSEC, ev, 4), 0);

        ck_assert_int_eq(waiter_join(&w2), NP_ERR_TIMEOUT);
        ck_assert_int_ge(w2.end - set_at, deadline); /* never early */

        struct np_session_stats ss;
        ck_assert_int_eq(np_session_stats(c, &ss), 0);
        ck_assert_uint_eq(ss.descriptors, 3);
        np_desc all[] = { d1, d2, d3 };
        for (int i = 0; i < 3; i++) {
                ck_assert_int_eq(np_unblock(c, all[i]), 0);
                ck_assert_int_eq(np_close(c, all[i]), 0);
        }
        ck_assert_int_eq(np_session_stats(c, &ss), 0);
        ck_assert_uint_eq(ss.descriptors, 0);
        for (int i = 0; i < 2; i++) {
                close(p1[i]);
                close(p2[i]);
                close(p3[i]);
        }
}

static void send_usr2(void *arg)
{
        ck_assert_int_eq(kill(*(pid_t *)arg, SIGUSR2), 0);
}

START_TEST(test_resume_upgrade_in_place_keeps_waits_arms_and_deadlines)
{
        TestDaemon d;
        np_client *c, *admin;
        struct np_status st;

        test_daemon_start(&d, NULL, 0, true);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        ck_assert_int_eq(np_connect(d.sock, &admin), 0);
        ck_assert_int_eq(np_status(admin, &st), 0);
        ck_assert_uint_eq(st.instance, 1);
        ck_assert_uint_eq(st.resumed_connections, 0);
        uint64_t id = np_connection_id(c);

        scenario(c, admin, send_usr2, &d.pid, 2);
        /* Same process, same connection. */
        ck_assert_int_eq(np_status(admin, &st), 0);
        ck_assert_uint_eq(st.pid, (uint32_t)d.pid);
        ck_assert_uint_eq(np_connection_id(c), id);
        /* And again: a second upgrade takes over from the first. */
        scenario(c, admin, send_usr2, &d.pid, 3);
        np_disconnect(c);
        np_disconnect(admin);
        test_daemon_stop_ok(&d);
}
END_TEST

/* A call made while the daemon is away is answered by the next one. */
START_TEST(test_resume_calls_during_the_upgrade_are_answered)
{
        TestDaemon d;
        np_client *c;
        int p[200][2];
        np_desc ds[200];

        test_daemon_start(&d, NULL, 0, true);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        for (int i = 0; i < 200; i++) {
                ck_assert_int_eq(pipe2(p[i], O_CLOEXEC | O_NONBLOCK), 0);
                if (i == 50)
                        ck_assert_int_eq(kill(d.pid, SIGUSR2), 0);
                ck_assert_int_eq(np_open(c, p[i][0], (uint64_t)i, &ds[i]), 0);
                ck_assert_int_eq(np_ping(c), 0);
                if (i % 2) {
                        ck_assert_int_eq(np_unblock(c, ds[i]), 0);
                        ck_assert_int_eq(np_close(c, ds[i]), 0);
                }
        }
        struct np_session_stats ss;
        ck_assert_int_eq(np_session_stats(c, &ss), 0);
        ck_assert_uint_eq(ss.descriptors, 100);
        for (int i = 0; i < 200; i += 2) {
                ck_assert_int_eq(np_unblock(c, ds[i]), 0);
                ck_assert_int_eq(np_close(c, ds[i]), 0);
        }
        ck_assert_int_eq(np_session_stats(c, &ss), 0);
        ck_assert_uint_eq(ss.descriptors, 0);
        for (int i = 0; i < 200; i++) {
                close(p[i][0]);
                close(p[i][1]);
        }
        np_disconnect(c);
        test_daemon_stop_ok(&d);
}
END_TEST

/* The daemon as systemd runs it with the shipped unit: socket-activated,
 * --fd-store, under a (fake) service manager with an fd store. */
typedef struct Managed {
        FakeSMNetpolld d;
        const char *store_arg; /* --fd-store=N (NULL: 16384) */
        int kind; /* how restart_managed restarts it: SIGKILL or SIGTERM */
} Managed;

static void managed_spawn(Managed *x)
{
        char *const argv[] = { (char *)test_daemon_bin(),
                               (char *)(x->store_arg ? x->store_arg : "--fd-store=16384"),
                               (char *)"--socket", x->d.sock, (char *)"--log-level",
                               (char *)"warning", NULL };

        ck_assert_int_eq(fakesm_netpolld_spawn(&x->d, argv, 10000), 0);
}

static void managed_start_with(Managed *x, const char *store_arg)
{
        *x = (Managed){ .store_arg = store_arg };
        ck_assert_int_eq(fakesm_netpolld_new(&x->d, "np-resume", 16384, false), 0);
        managed_spawn(x);
}

static void managed_start(Managed *x)
{
        managed_start_with(x, NULL);
}

/* SIGKILL (Restart=on-failure) or SIGTERM (systemctl restart): the
 * process goes, the store stays, the next instance starts. */
static void restart_managed(void *arg)
{
        Managed *x = arg;
        int status;

        ck_assert_int_eq(kill(x->d.pid, x->kind), 0);
        ck_assert_int_eq(fakesm_reap_main(x->d.m, 10000, &status), 0);
        if (x->kind == SIGTERM)
                ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        else
                ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        managed_spawn(x);
}

static void managed_stop(Managed *x)
{
        fakesm_netpolld_free(&x->d, SIGTERM);
}

START_TEST(test_resume_fd_store_kill9_and_restart_keep_waits_arms_and_deadlines)
{
        Managed x;
        np_client *c, *admin;
        struct np_status st;

        managed_start(&x);
        ck_assert_int_eq(np_connect(x.d.sock, &c), 0);
        ck_assert_int_eq(np_connect(x.d.sock, &admin), 0);
        ck_assert_int_eq(np_status(admin, &st), 0);
        ck_assert(st.fd_store);
        ck_assert_uint_eq(st.instance, 1);
        /* The state, and one carrier for both connections. */
        ck_assert_int_ge(fakesm_process(x.d.m, 0), 0);
        ck_assert_uint_eq(fakesm_store_count(x.d.m), 2);

        x.kind = SIGKILL;
        scenario(c, admin, restart_managed, &x, 2);
        x.kind = SIGTERM;
        scenario(c, admin, restart_managed, &x, 3);
        /* Every descriptor closed: the state, the connections' carrier and
         * the descriptors' (empty, kept for the next ones). */
        ck_assert_int_ge(fakesm_process(x.d.m, 0), 0);
        ck_assert_uint_eq(fakesm_store_count(x.d.m), 3);
        ck_assert_int_ge(fakesm_store_fd(x.d.m, "state"), 0);

        /* systemctl stop: the process exits, systemd empties the store;
         * a parked wait ends as on a lame-duck stop. */
        int p[2];
        np_desc d;
        Waiter w;
        ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        ck_assert_int_eq(np_open(c, p[0], 9, &d), 0);
        waiter_start(&w, c, d, NP_READ, false);
        await_waiters(c, 1);
        ck_assert_int_eq(kill(x.d.pid, SIGTERM), 0);
        ck_assert_int_eq(fakesm_reap_main(x.d.m, 10000, NULL), 0);
        x.d.pid = 0;
        fakesm_store_clear(x.d.m);
        ck_assert_int_eq(waiter_join(&w), NP_ERR_CLOSING);
        ck_assert_int_eq(np_ping(c), -ECONNRESET);
        np_disconnect(c);
        np_disconnect(admin);
        close(p[0]);
        close(p[1]);
        managed_stop(&x);
}
END_TEST

/* A client of protocol version 1 (an older library) is served, but not
 * kept: at a restart its connection ends, cleanly. */
START_TEST(test_resume_fd_store_keeps_no_version_1_connection)
{
        Managed x;
        Netpoll__V1__ServerMessage *m;

        managed_start(&x);
        int fd = test_raw_connect(x.d.sock);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(raw_send_hello(fd, 1, NULL, 0), 0);
        ck_assert_int_eq(raw_recv(fd, 5000, &m), 1);
        ck_assert_ptr_nonnull(m->welcome);
        ck_assert_uint_eq(m->welcome->version, 1);
        netpoll__v1__server_message__free_unpacked(m, NULL);
        ck_assert_int_ge(fakesm_process(x.d.m, 0), 0);
        /* The state, and the carrier the connection was kept in until its
         * hello said version 1. */
        ck_assert_uint_eq(fakesm_store_count(x.d.m), 2);
        x.kind = SIGKILL;
        restart_managed(&x);
        /* The connection ended with the old process: end of file, or a
         * reset (nothing of it was stored). */
        int r = raw_recv(fd, 5000, &m);
        ck_assert_msg(r == 0 || r == -ECONNRESET, "raw_recv: %d", r);
        close(fd);
        managed_stop(&x);
}
END_TEST

typedef struct Unblocker {
        pthread_t th;
        np_client *c;
        np_desc d;
        int result;
} Unblocker;

static void *unblock_run(void *arg)
{
        Unblocker *u = arg;

        u->result = np_unblock(u->c, u->d);
        return NULL;
}

/* A call in flight when the daemon dies is answered once, by the next
 * instance, as the first would have answered it: here an np_unblock the
 * old instance never read (it was stopped), which the descriptor table
 * also remembers. */
START_TEST(test_resume_call_in_flight_across_kill9_is_answered_once)
{
        Managed x;
        np_client *c;
        np_desc d;
        int p[2];
        Unblocker u;

        managed_start(&x);
        ck_assert_int_eq(np_connect(x.d.sock, &c), 0);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        ck_assert_int_eq(np_open(c, p[0], 1, &d), 0);
        ck_assert_int_eq(kill(x.d.pid, SIGSTOP), 0);
        u = (Unblocker){ .c = c, .d = d, .result = -1000 };
        ck_assert_int_eq(pthread_create(&u.th, NULL, unblock_run, &u), 0);
        usleep(100 * 1000); /* sent, unanswered */
        x.kind = SIGKILL;
        restart_managed(&x);
        ck_assert_int_eq(pthread_join(u.th, NULL), 0);
        ck_assert_int_eq(u.result, 0);
        ck_assert_int_eq(np_wait(c, d, NP_READ), NP_ERR_CLOSING); /* it took effect */
        ck_assert_int_eq(np_close(c, d), 0);
        np_disconnect(c);
        close(p[0]);
        close(p[1]);
        managed_stop(&x);
}
END_TEST

/* A client that went away while the daemon was down is dropped cleanly by
 * the next instance (its notice cannot be sent); one that connected but had
 * not said hello yet is greeted by it; connection ids are never reused. */
START_TEST(test_resume_gone_and_half_connected_clients)
{
        Managed x;
        np_client *a, *b, *admin, *later;
        struct np_status st;
        Netpoll__V1__ServerMessage *m;

        managed_start(&x);
        ck_assert_int_eq(np_connect(x.d.sock, &a), 0);
        ck_assert_int_eq(np_connect(x.d.sock, &b), 0);
        ck_assert_int_eq(np_connect(x.d.sock, &admin), 0);
        uint64_t last = np_connection_id(admin);
        int raw = test_raw_connect(x.d.sock);
        ck_assert_int_ge(raw, 0);
        for (int i = 0; i < 500; i++) { /* accepted, no hello yet */
                ck_assert_int_eq(np_status(admin, &st), 0);
                if (st.accepted >= 4)
                        break;
                usleep(10000);
        }
        ck_assert_uint_ge(st.accepted, 4);
        ck_assert_int_eq(kill(x.d.pid, SIGKILL), 0);
        ck_assert_int_eq(fakesm_reap_main(x.d.m, 10000, NULL), 0);
        np_disconnect(b); /* gone before the next instance starts */
        managed_spawn(&x);
        ck_assert_int_eq(raw_send_hello(raw, NP_PROTOCOL_VERSION, NULL, 0), 0);
        ck_assert_int_eq(raw_recv(raw, 5000, &m), 1);
        ck_assert_ptr_nonnull(m->welcome);
        uint64_t raw_id = m->welcome->connection_id;
        netpoll__v1__server_message__free_unpacked(m, NULL);
        ck_assert_int_eq(np_ping(a), 0);
        for (int i = 0; i < 500; i++) {
                ck_assert_int_eq(np_status(admin, &st), 0);
                if (st.connections == 3)
                        break;
                usleep(10000);
        }
        ck_assert_uint_eq(st.connections, 3); /* a, admin, raw */
        ck_assert_uint_eq(st.instance, 2);
        ck_assert_int_eq(np_connect(x.d.sock, &later), 0);
        ck_assert_uint_gt(np_connection_id(later), last);
        ck_assert_uint_gt(np_connection_id(later), raw_id);
        np_disconnect(later);
        np_disconnect(a);
        np_disconnect(admin);
        close(raw);
        managed_stop(&x);
}
END_TEST

/* A store that is full costs a connection its restarts, not its service:
 * its opens go on, and a restart ends it cleanly (a parked wait ends
 * closing) while a connection that fitted is resumed.  A store of 4
 * entries: the state, the connections' carrier, the first 64 descriptor
 * slots' carrier; descriptor slot 64 needs a new carrier, which does not
 * fit (a new chunk leaves the store's last place free). */
START_TEST(test_resume_store_full_ends_that_connection_at_a_restart)
{
        enum { BIG = 70 };
        Managed x;
        np_client *fits, *big;
        np_desc d1, ds[BIG];
        int p1[2], p[BIG][2];
        Waiter w1, wb;

        managed_start_with(&x, "--fd-store=4");
        ck_assert_int_eq(np_connect(x.d.sock, &fits), 0);
        ck_assert_int_eq(np_connect(x.d.sock, &big), 0);
        ck_assert_int_eq(pipe2(p1, O_CLOEXEC | O_NONBLOCK), 0);
        ck_assert_int_eq(np_open(fits, p1[0], 1, &d1), 0);
        for (int i = 0; i < BIG; i++) {
                ck_assert_int_eq(pipe2(p[i], O_CLOEXEC | O_NONBLOCK), 0);
                ck_assert_int_eq(np_open(big, p[i][0], 10 + (uint64_t)i, &ds[i]), 0);
        }
        ck_assert_int_ge(fakesm_process(x.d.m, 0), 0);
        ck_assert_uint_eq(fakesm_store_count(x.d.m), 3);
        waiter_start(&w1, fits, d1, NP_READ, false);
        waiter_start(&wb, big, ds[BIG - 1], NP_READ, false);
        await_waiters(fits, 1);
        await_waiters(big, 1);
        x.kind = SIGKILL;
        restart_managed(&x);
        ck_assert_int_eq(waiter_join(&wb), NP_ERR_CLOSING);
        ck_assert_int_eq(np_ping(big), -ECONNRESET);
        ck_assert_int_eq(write(p1[1], "x", 1), 1);
        ck_assert_int_eq(waiter_join(&w1), NP_OK);
        /* big's descriptors left the carriers with it: their files go. */
        for (int i = 0; i < BIG; i++)
                close(p[i][0]);
        for (int i = 0; i < BIG; i++) {
                assert_write_epipe(p[i][1]);
                close(p[i][1]);
        }
        ck_assert_int_eq(np_unblock(fits, d1), 0);
        ck_assert_int_eq(np_close(fits, d1), 0);
        np_disconnect(fits);
        np_disconnect(big);
        close(p1[0]);
        close(p1[1]);
        managed_stop(&x);
}
END_TEST

/* Hundreds of descriptors in a handful of store entries, all back after a
 * kill -9; a descriptor closed gives its file up at once, before and after
 * the restart. */
START_TEST(test_resume_carriers_hold_many_fds_and_let_closed_ones_go)
{
        enum { N = 300 };
        Managed x;
        np_client *c;
        np_desc ds[N];
        int p[N][2];
        struct np_session_stats ss;

        managed_start(&x);
        ck_assert_int_eq(np_connect(x.d.sock, &c), 0);
        for (int i = 0; i < N; i++) {
                ck_assert_int_eq(pipe2(p[i], O_CLOEXEC | O_NONBLOCK), 0);
                ck_assert_int_eq(np_open(c, p[i][0], (uint64_t)i, &ds[i]), 0);
        }
        ck_assert_int_ge(fakesm_process(x.d.m, 0), 0);
        /* the state, one connections' carrier, ceil(300 / 64) = 5 */
        ck_assert_uint_eq(fakesm_store_count(x.d.m), 7);

        /* Closed before the restart: the file goes. */
        close(p[0][0]);
        ck_assert_int_eq(np_unblock(c, ds[0]), 0);
        ck_assert_int_eq(np_close(c, ds[0]), 0);
        assert_write_epipe(p[0][1]);

        x.kind = SIGKILL;
        restart_managed(&x);
        ck_assert_int_eq(np_session_stats(c, &ss), 0);
        ck_assert_uint_eq(ss.descriptors, N - 1);
        /* Every one still works, through the new instance. */
        for (int i = 1; i < N; i++) {
                ck_assert_int_eq(write(p[i][1], "x", 1), 1);
                ck_assert_int_eq(np_wait(c, ds[i], NP_READ), NP_OK);
        }
        /* Closed after it: the file goes too (the carriers were taken
         * over, not copied). */
        for (int i = 1; i < N; i += 7) {
                close(p[i][0]);
                p[i][0] = -1;
                ck_assert_int_eq(np_unblock(c, ds[i]), 0);
                ck_assert_int_eq(np_close(c, ds[i]), 0);
                assert_write_epipe(p[i][1]);
        }
        ck_assert_int_ge(fakesm_process(x.d.m, 0), 0);
        ck_assert_uint_eq(fakesm_store_count(x.d.m), 7);
        np_disconnect(c);
        for (int i = 0; i < N; i++) {
                if (i > 0 && p[i][0] >= 0)
                        close(p[i][0]);
                close(p[i][1]);
        }
        managed_stop(&x);
}
END_TEST

/* A store whose "state" is not netpolld's (another program's memfd, a
 * format from the future) cannot be rebuilt: the daemon starts afresh, and
 * what was passed leaves the store, carriers included, so that it does not
 * come back at every start. */
START_TEST(test_resume_foreign_state_starts_afresh_and_empties_the_store)
{
        Managed x = { 0 };
        int sv[2], mfd;
        char names[256];

        ck_assert_int_eq(fakesm_netpolld_new(&x.d, "np-resume", 16384, false), 0);
        mfd = memfd_create("not-netpolld", MFD_CLOEXEC);
        ck_assert_int_ge(mfd, 0);
        ck_assert_int_eq(write(mfd, "something else entirely", 23), 23);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
        ck_assert_int_eq(fakesm_store_add(x.d.m, mfd, "state", false), 1);
        ck_assert_int_eq(fakesm_store_add(x.d.m, sv[0], "D0.7", false), 1);
        ck_assert_int_eq(fakesm_store_add(x.d.m, sv[1], "c0.1", false), 1);
        close(mfd);
        close(sv[0]);
        close(sv[1]);
        managed_spawn(&x);

        np_client *c;
        struct np_status st;
        ck_assert_int_eq(np_connect(x.d.sock, &c), 0);
        ck_assert_int_eq(np_status(c, &st), 0);
        ck_assert_uint_eq(st.instance, 1);
        ck_assert_uint_eq(st.resumed_connections, 0);
        /* Left: the new state and the carrier of this connection. */
        ck_assert_int_ge(fakesm_process(x.d.m, 0), 0);
        ck_assert_int_gt(fakesm_store_names(x.d.m, names, sizeof(names)), 0);
        ck_assert_uint_eq(fakesm_store_count(x.d.m), 2);
        ck_assert_uint_eq(fakesm_store_count_name(x.d.m, "D0.7"), 0);
        ck_assert_uint_eq(fakesm_store_count_name(x.d.m, "c0.1"), 0);
        ck_assert_uint_eq(fakesm_store_count_name(x.d.m, "C0.1"), 1);
        ck_assert_uint_eq(fakesm_store_count_name(x.d.m, "state"), 1);
        char magic[8];
        int sfd = fakesm_store_fd(x.d.m, "state");
        ck_assert_int_ge(sfd, 0);
        ck_assert_int_eq(pread(sfd, magic, sizeof(magic), 0), (ssize_t)sizeof(magic));
        ck_assert_int_eq(memcmp(magic, "npstate1", 8), 0); /* ours, not the one passed */
        np_disconnect(c);
        managed_stop(&x);
}
END_TEST

/* The daemon's fds a child would inherit (no FD_CLOEXEC), beyond 0-2. */
static int inheritable_fds(pid_t pid)
{
        char dir[64];
        int n = 0;

        snprintf(dir, sizeof(dir), "/proc/%d/fdinfo", (int)pid);
        DIR *d = opendir(dir);
        ck_assert_ptr_nonnull(d);
        for (struct dirent *e; (e = readdir(d));) {
                char path[320], line[128];
                if (e->d_name[0] == '.' || atoi(e->d_name) <= 2)
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                FILE *f = fopen(path, "re");
                if (!f)
                        continue; /* gone meanwhile */
                while (fgets(line, sizeof(line), f))
                        if (strncmp(line, "flags:", 6) == 0 && !(strtoul(line + 6, NULL, 8) & O_CLOEXEC))
                                n++;
                fclose(f);
        }
        closedir(d);
        return n;
}

/* An upgrade whose binary is gone: this instance goes on serving, and what
 * the manifest made inheritable (the state, the carriers, every fd) is
 * close-on-exec again. */
START_TEST(test_resume_failed_upgrade_goes_on_and_leaves_nothing_inheritable)
{
        enum { N = 70 };
        Managed x = { 0 };
        char bin[96];
        np_client *c;
        np_desc ds[N];
        int p[N][2];
        struct np_status st;

        ck_assert_int_eq(fakesm_netpolld_new(&x.d, "np-resume", 16384, false), 0);
        snprintf(bin, sizeof(bin), "%s/netpolld-copy", x.d.dir);
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", test_daemon_bin(), bin);
        ck_assert_int_eq(system(cmd), 0);
        char *const argv[] = { bin, (char *)"--fd-store=16384", (char *)"--socket", x.d.sock,
                               (char *)"--log-level", (char *)"warning", NULL };
        ck_assert_int_eq(fakesm_netpolld_spawn(&x.d, argv, 10000), 0);
        ck_assert_int_eq(np_connect(x.d.sock, &c), 0);
        for (int i = 0; i < N; i++) {
                ck_assert_int_eq(pipe2(p[i], O_CLOEXEC | O_NONBLOCK), 0);
                ck_assert_int_eq(np_open(c, p[i][0], (uint64_t)i, &ds[i]), 0);
        }
        int before = inheritable_fds(x.d.pid);

        ck_assert_int_eq(unlink(bin), 0);
        ck_assert_int_eq(kill(x.d.pid, SIGUSR2), 0);
        /* It answers, as the same instance, once the attempt is over. */
        for (int i = 0; i < 50; i++) {
                usleep(20000);
                ck_assert_int_eq(np_status(c, &st), 0);
        }
        ck_assert_uint_eq(st.instance, 1);
        ck_assert_uint_eq(st.descriptors, N);
        ck_assert_int_eq(inheritable_fds(x.d.pid), before);
        ck_assert_int_eq(write(p[N - 1][1], "x", 1), 1);
        ck_assert_int_eq(np_wait(c, ds[N - 1], NP_READ), NP_OK);
        np_disconnect(c);
        for (int i = 0; i < N; i++) {
                close(p[i][0]);
                close(p[i][1]);
        }
        managed_stop(&x);
}
END_TEST

Suite *suite_resume(void)
{
        Suite *s = suite_create("resume");
        TCase *tc = test_tcase(s, "upgrade", 60);

        tcase_add_test(tc, test_resume_upgrade_in_place_keeps_waits_arms_and_deadlines);
        tcase_add_test(tc, test_resume_calls_during_the_upgrade_are_answered);
        tc = test_tcase(s, "fdstore", 60);
        tcase_add_test(tc, test_resume_fd_store_kill9_and_restart_keep_waits_arms_and_deadlines);
        tcase_add_test(tc, test_resume_fd_store_keeps_no_version_1_connection);
        tcase_add_test(tc, test_resume_call_in_flight_across_kill9_is_answered_once);
        tcase_add_test(tc, test_resume_gone_and_half_connected_clients);
        tcase_add_test(tc, test_resume_store_full_ends_that_connection_at_a_restart);
        tcase_add_test(tc, test_resume_carriers_hold_many_fds_and_let_closed_ones_go);
        tcase_add_test(tc, test_resume_foreign_state_starts_afresh_and_empties_the_store);
        tcase_add_test(tc, test_resume_failed_upgrade_goes_on_and_leaves_nothing_inheritable);
        return s;
}
