/*
 * daemon, case lifecycle (with test-daemon-lifecycle.c): what the daemon
 * keeps of a client's identity.  Text a client controls (its hello name,
 * its command name) reaches the log escaped and the lists as it is; a
 * client is named by the process that connected even when its pid is
 * reused; a reload drops connections whose uid the new access lists leave
 * out.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-daemon.h"

/*
 * What a client controls reaches the log escaped: a hello name with a
 * newline and a priority prefix cannot start a log line of its own, and
 * ESC in a command name (prctl PR_SET_NAME) reaches no terminal.  The
 * lists keep them as they are, for pollctl to escape as it prints (the
 * pollctl suite checks that).
 */
START_TEST(test_daemon_client_text_is_escaped_in_logs_and_lists)
{
        const char *const args[] = { "--log-level", "debug", NULL };
        char log[16384] = "";
        TestDaemon d;
        np_client *mon;
        np_client_info *ci;
        size_t n;

        test_daemon_start(&d, args, 0, true);
        int fd = test_raw_connect(d.sock);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(raw_send_hello_named(fd, 1, "evil\n<0>FAKE EMERGENCY\r\x1b[2J", NULL, 0),
                         0);
        Netpoll__V1__ServerMessage *m;
        ck_assert_int_eq(raw_recv(fd, IO_TIMEOUT_MS, &m), 1);
        ck_assert_ptr_nonnull(m->welcome);
        netpoll__v1__server_message__free_unpacked(m, NULL);

        /* A child whose command name carries ESC connects too. */
        TestClientChild cc;
        test_client_child_start(&cc, d.sock, "x\x1b]0;pwn\x07");

        ck_assert_msg(test_read_until(d.stderr_fd, log, sizeof(log), "FAKE EMERGENCY"), "log: %s",
                      log);
        ck_assert_ptr_nonnull(strstr(log, "evil\\x0a<0>FAKE EMERGENCY\\x0d\\x1b[2J"));
        ck_assert_ptr_null(strstr(log, "\n<0>"));
        ck_assert_ptr_null(strchr(log, '\x1b'));
        ck_assert_ptr_null(strchr(log, '\r'));

        ck_assert_int_eq(np_connect(d.sock, &mon), 0);
        ck_assert_int_eq(np_list_clients(mon, &ci, &n), 0);
        int seen = 0;
        for (size_t i = 0; i < n; i++) {
                if ((pid_t)ci[i].pid == cc.pid) {
                        ck_assert_str_eq(ci[i].comm, "x\x1b]0;pwn\x07");
                        seen++;
                }
                if (strstr(ci[i].name, "FAKE")) {
                        ck_assert_str_eq(ci[i].name, "evil\n<0>FAKE EMERGENCY\r\x1b[2J");
                        seen++;
                }
        }
        ck_assert_int_eq(seen, 2);
        free(ci);
        test_client_child_end(&cc);
        close(fd);
        np_disconnect(mon);
        test_daemon_stop(&d);
}
END_TEST

/*
 * A reload applies [access] allow_users and allow_groups to connections
 * already open: one of a uid the new lists leave out is dropped (with a
 * notice), root's stays.
 */
START_TEST(test_daemon_reload_drops_connections_no_longer_allowed)
{
        TestDaemon d;
        char conf[32];
        int ready[2];
        np_client *c;

        test_daemon_start_with_config(&d, "[daemon]\nsocket_mode = 0666\n", conf);
        ck_assert_int_eq(chmod(d.dir, 0755), 0);
        ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                np_client *other;
                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(10);
                if (np_connect(d.sock, &other) < 0 || np_ping(other) < 0)
                        _exit(11);
                (void)!write(ready[1], "k", 1);
                for (int i = 0; i < 1000; i++) {
                        if (np_ping(other) < 0)
                                _exit(0); /* dropped */
                        usleep(10000);
                }
                _exit(12);
        }
        close(ready[1]);
        char b = 0;
        ck_assert_int_eq(read(ready[0], &b, 1), 1);
        close(ready[0]);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        test_write_file(conf, "[daemon]\nsocket_mode = 0666\n[access]\nallow_users = root\n");
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        int status = test_wait_exit(pid, 15000);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "uid 65534: status 0x%x",
                      status);
        ck_assert_int_eq(np_ping(c), 0);
        np_disconnect(c);
        status = test_daemon_stop(&d);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        unlink(conf);
}
END_TEST

/* The state letter of /proc/PID/stat ('T': stopped), or 0. */
static char proc_state(pid_t pid)
{
        char path[64], buf[512];

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = '\0';
        const char *p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
        return p && p[1] == ' ' ? p[2] : 0;
}

/* Receives one datagram on sock (at most IO_TIMEOUT_MS) carrying exactly
 * one fd as SCM_RIGHTS: that fd, or -1. */
static int recv_passed_fd(int sock)
{
        char byte;
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(sizeof(int))];
        } control;
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr mh = {
                .msg_iov = &iov, .msg_iovlen = 1,
                .msg_control = &control, .msg_controllen = sizeof(control),
        };
        struct pollfd pfd = { .fd = sock, .events = POLLIN };
        int fd;

        if (poll(&pfd, 1, IO_TIMEOUT_MS) != 1 || recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != 1)
                return -1;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
            c->cmsg_len != CMSG_LEN(sizeof(int)))
                return -1;
        memcpy(&fd, CMSG_DATA(c), sizeof(fd));
        return fd;
}

/* Makes `want` the pid the next fork in this pid namespace gets, unless
 * another fork comes first: 0, or -errno from writing ns_last_pid. */
static int set_next_pid(pid_t want)
{
        char buf[32];
        int len = snprintf(buf, sizeof(buf), "%d", (int)want - 1);
        int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        ssize_t k = write(fd, buf, (size_t)len);
        int r = k == len ? 0 : k < 0 ? -errno : -EIO;
        close(fd);
        return r;
}

/*
 * A client is named by the command of the process that connected, never by
 * another process's that got its pid since.  With the daemon stopped, child
 * A ("victim-a") connects (the connection waits in the listen backlog),
 * hands the connection to us and exits; child B ("impostor") is forked onto
 * A's pid through ns_last_pid.  When the daemon accepts, /proc/A's pid/comm
 * says "impostor", but A's pidfd (SO_PEERPIDFD) shows the connecting
 * process gone: the name is "?".  Needs root (ns_last_pid); skipped when
 * ns_last_pid cannot be written or the pid could not be reused in 20 tries.
 */
START_TEST(test_daemon_client_name_survives_pid_reuse)
{
        TestDaemon d;
        int sv[2], ready[2], status;
        np_client *mon;
        np_client_info *ci;
        size_t n;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
        for (int i = 0; i < 1000 && proc_state(d.pid) != 'T'; i++)
                usleep(10000);
        ck_assert_int_eq(proc_state(d.pid), 'T');

        /* A connects, passes the connection over and is reaped. */
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        pid_t a = fork();
        ck_assert_int_ge(a, 0);
        if (a == 0) {
                prctl(PR_SET_NAME, "victim-a", 0, 0, 0);
                int fd = test_raw_connect(d.sock);
                _exit(fd >= 0 && test_send_fds(sv[1], "c", 1, &fd, 1, 0) == 0 ? 0 : 1);
        }
        close(sv[1]);
        int conn = recv_passed_fd(sv[0]);
        close(sv[0]);
        ck_assert_int_eq(waitpid(a, &status, 0), a);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child A: status 0x%x",
                      status);
        ck_assert_int_ge(conn, 0);

        /* B takes A's pid (another fork may come between; then again). */
        pid_t b = -1;
        int err = 0, tries = 0;
        ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
        for (; tries < 20 && b != a; tries++) {
                if (b > 0) {
                        kill(b, SIGKILL);
                        ck_assert_int_eq(waitpid(b, NULL, 0), b);
                        b = -1;
                }
                err = set_next_pid(a);
                if (err < 0)
                        break;
                b = fork();
                ck_assert_int_ge(b, 0);
                if (b == 0) {
                        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
                        prctl(PR_SET_NAME, "impostor", 0, 0, 0);
                        (void)!write(ready[1], "r", 1);
                        close_range(3, ~0U, 0);
                        for (;;)
                                pause();
                }
                char c;
                ck_assert_int_eq(read(ready[0], &c, 1), 1); /* named by now */
        }
        close(ready[0]);
        close(ready[1]);
        if (b != a) {
                if (b > 0) {
                        kill(b, SIGKILL);
                        ck_assert_int_eq(waitpid(b, NULL, 0), b);
                }
                close(conn);
                kill(d.pid, SIGCONT);
                test_daemon_stop(&d);
                ck_assert_msg(err == 0 || err == -EPERM || err == -EROFS || err == -EACCES ||
                                      err == -ENOENT,
                              "writing ns_last_pid: %s", strerror(-err));
                fprintf(stderr, "SKIP test_daemon_client_name_survives_pid_reuse: %s\n",
                        err < 0 ? "cannot write /proc/sys/kernel/ns_last_pid"
                                : "pid not reused in 20 tries");
                return;
        }

        /* The daemon now accepts A's connection, B alive on A's pid. */
        ck_assert_int_eq(raw_send_hello(conn, 1, NULL, 0), 0);
        ck_assert_int_eq(kill(d.pid, SIGCONT), 0);
        Netpoll__V1__ServerMessage *m;
        ck_assert_int_eq(raw_recv(conn, IO_TIMEOUT_MS, &m), 1);
        ck_assert_ptr_nonnull(m->welcome);
        netpoll__v1__server_message__free_unpacked(m, NULL);

        ck_assert_int_eq(np_connect(d.sock, &mon), 0);
        ck_assert_int_eq(np_list_clients(mon, &ci, &n), 0);
        char comm[sizeof(ci->comm)] = "";
        int seen = 0;
        for (size_t i = 0; i < n; i++)
                if ((pid_t)ci[i].pid == a) {
                        memcpy(comm, ci[i].comm, sizeof(comm));
                        comm[sizeof(comm) - 1] = '\0';
                        seen++;
                }
        free(ci);
        kill(b, SIGKILL);
        ck_assert_int_eq(waitpid(b, NULL, 0), b);
        np_disconnect(mon);
        close(conn);
        test_daemon_stop(&d);

        ck_assert_int_eq(seen, 1);
        ck_assert_msg(strcmp(comm, "?") == 0,
                      "the client of pid %d (reaped; pid reused by \"impostor\" after %d "
                      "tries) is named \"%s\", want \"?\"",
                      (int)a, tries, comm);
}
END_TEST

void daemon_clients_tests(TCase *tc)
{
        tcase_add_test(tc, test_daemon_client_text_is_escaped_in_logs_and_lists);
        tcase_add_test(tc, test_daemon_reload_drops_connections_no_longer_allowed);
        tcase_add_test(tc, test_daemon_client_name_survives_pid_reuse);
}
