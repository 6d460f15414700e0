/*
 * api, case connect: np_connect by explicit path, $NETPOLL_SOCKET and the
 * default path (in a private mount namespace), its errors without a
 * daemon, and np_disconnect releasing everything the connection held in
 * the daemon.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "test-api.h"

/* ---- np_connect ---- */

START_TEST(test_api_connect_explicit_path_handshakes)
{
        TestDaemon d;
        np_client *c = start(&d);
        struct np_status st;

        ck_assert_int_eq(np_ping(c), 0);
        ck_assert_int_eq(np_status(c, &st), 0);
        ck_assert_int_eq(st.pid, d.pid);
        ck_assert_uint_eq(st.connections, 1);
        ck_assert_str_eq(st.version, NETPOLL_VERSION);
        finish(&d, c);
}
END_TEST

START_TEST(test_api_connect_null_uses_env_socket)
{
        TestDaemon d;
        np_client *c = NULL;
        struct np_status st;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(setenv("NETPOLL_SOCKET", d.sock, 1), 0);
        ck_assert_int_eq(np_connect(NULL, &c), 0);
        ck_assert_int_eq(np_status(c, &st), 0);
        ck_assert_int_eq(st.pid, d.pid);
        np_disconnect(c);
        test_daemon_stop_ok(&d);
}
END_TEST

/* The default path is reached in a private mount namespace with a tmpfs on
 * /run, so the host's /run is never touched.  The tmpfs must not propagate
 * back to the host: the mount it lands on is made private first, "/" or,
 * where "/" is not a mount point (a chroot: EINVAL), /run itself.  Where
 * neither is a mount point the test is skipped, saying so. */
START_TEST(test_api_connect_null_uses_default_socket)
{
        TestDaemon d;
        np_client *c = NULL;
        struct np_status st;

        ck_assert_msg(unshare(CLONE_NEWNS) == 0, "unshare(CLONE_NEWNS): %s", strerror(errno));
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
                ck_assert_msg(errno == EINVAL, "making / private: %s", strerror(errno));
                if (mount(NULL, "/run", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
                        ck_assert_msg(errno == EINVAL || errno == ENOENT, "making /run private: %s",
                                      strerror(errno));
                        fprintf(stderr, "SKIP test_api_connect_null_uses_default_socket: "
                                        "neither / nor /run is a mount point (a chroot?), so "
                                        "a tmpfs on /run could not be kept from the host\n");
                        return;
                }
        }
        ck_assert_int_eq(mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"), 0);
        unsetenv("NETPOLL_SOCKET");

        ck_assert_int_eq(np_connect(NULL, &c), -ENOENT);
        ck_assert_ptr_null(c);

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(mkdir("/run/netpolld", 0755), 0);
        ck_assert_int_eq(symlink(d.sock, NP_DEFAULT_SOCKET), 0);
        ck_assert_int_eq(np_connect(NULL, &c), 0);
        ck_assert_int_eq(np_status(c, &st), 0);
        ck_assert_int_eq(st.pid, d.pid);
        np_disconnect(c);

        /* An empty $NETPOLL_SOCKET means the default too. */
        c = NULL;
        ck_assert_int_eq(setenv("NETPOLL_SOCKET", "", 1), 0);
        ck_assert_int_eq(np_connect(NULL, &c), 0);
        ck_assert_int_eq(np_status(c, &st), 0);
        ck_assert_int_eq(st.pid, d.pid);
        np_disconnect(c);

        unlink(NP_DEFAULT_SOCKET);
        rmdir("/run/netpolld");
        test_daemon_stop_ok(&d);
}
END_TEST

START_TEST(test_api_connect_without_daemon_fails)
{
        static char sentinel;
        char dir[] = "/tmp/np-api-XXXXXX", path[108];
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        np_client *c = (np_client *)&sentinel;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/none.sock", dir);
        ck_assert_int_eq(np_connect(path, &c), -ENOENT);
        ck_assert_ptr_eq(c, &sentinel);

        /* A stale socket file: bound once, nobody listening now. */
        snprintf(path, sizeof(path), "%s/stale.sock", dir);
        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
        int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(s, 0);
        ck_assert_int_eq(bind(s, (struct sockaddr *)&addr, sizeof(addr)), 0);
        close(s);
        ck_assert_int_eq(np_connect(path, &c), -ECONNREFUSED);
        ck_assert_ptr_eq(c, &sentinel);

        /* Through $NETPOLL_SOCKET as well. */
        ck_assert_int_eq(setenv("NETPOLL_SOCKET", path, 1), 0);
        ck_assert_int_eq(np_connect(NULL, &c), -ECONNREFUSED);
        ck_assert_ptr_eq(c, &sentinel);

        unlink(path);
        rmdir(dir);
}
END_TEST

/* ---- np_disconnect ---- */

START_TEST(test_api_disconnect_releases_everything)
{
        TestDaemon d;
        np_client *obs = start(&d), *c = NULL;
        struct np_status st;
        int p[3][2];
        np_desc ds[3];

        signal(SIGPIPE, SIG_IGN);
        int base = daemon_fds(d.pid);
        ck_assert_int_gt(base, 0);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        for (int i = 0; i < 3; i++) {
                mkpipe(p[i]);
                ds[i] = open_ok(c, p[i][0], (uint64_t)i);
                ck_assert_int_eq(np_set_deadline(c, ds[i], 10 * SEC, NP_READ), 0);
                ck_assert_int_eq(np_arm(c, ds[i], NP_READ), 0);
                close(p[i][0]); /* only the daemon's copy of the read end is left */
        }
        assert_stats(c, 3, 3, 3);
        /* The connection and the three pipes (in the main epoll set: no
         * set of its own below SESSION_FLAT_MAX descriptors). */
        ck_assert_int_eq(daemon_fds(d.pid), base + 1 + 3);
        ck_assert_int_eq(np_status(obs, &st), 0);
        ck_assert_uint_eq(st.connections, 2);
        ck_assert_uint_eq(st.descriptors, 3);
        ck_assert_uint_eq(st.waiters, 3);
        ck_assert_uint_eq(st.timers, 3);

        np_disconnect(c);
        await_daemon_fds(d.pid, base);
        ck_assert_int_eq(np_status(obs, &st), 0);
        ck_assert_uint_eq(st.connections, 1);
        ck_assert_uint_eq(st.descriptors, 0);
        ck_assert_uint_eq(st.waiters, 0);
        ck_assert_uint_eq(st.timers, 0);
        assert_stats(obs, 0, 0, 0);
        for (int i = 0; i < 3; i++) {
                /* No reader is left anywhere: the daemon closed its copy. */
                ck_assert_int_eq(write(p[i][1], "x", 1), -1);
                ck_assert_int_eq(errno, EPIPE);
                close(p[i][1]);
        }
        finish(&d, obs);
}
END_TEST

void api_connect_tests(TCase *tc)
{
        tcase_add_test(tc, test_api_connect_explicit_path_handshakes);
        tcase_add_test(tc, test_api_connect_null_uses_env_socket);
        tcase_add_test(tc, test_api_connect_null_uses_default_socket);
        tcase_add_test(tc, test_api_connect_without_daemon_fails);
        tcase_add_test(tc, test_api_disconnect_releases_everything);
}
