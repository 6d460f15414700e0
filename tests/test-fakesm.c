/*
 * fakesm: the fake service manager obeys systemd 252's rules (see
 * fakesm.h), each test one rule seen from the service's side.  The
 * service is a forked child that sends with libsystemd's sd_notify calls,
 * a raw datagram where libsystemd would not send the bytes, or, for the
 * parser rules, this test process itself made the main pid; spawning is
 * checked through /bin/sh reporting what it got.  The expected values
 * were checked against a real systemd 252.39 (tools/systemd-box).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "helpers.h"

#include "fakesm.h"
#include "netpoll.h"
#include "test-daemon.h"

#define MS INT64_C(1000000)

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

static FakeSM *sm_new(unsigned store_max)
{
        FakeSM *m = NULL;

        ck_assert_int_eq(fakesm_new(&m, store_max), 0);
        ck_assert_ptr_nonnull(m);
        /* sd_notify in this process and its children goes to the fake. */
        ck_assert_int_eq(setenv("NOTIFY_SOCKET", fakesm_notify_socket(m), 1), 0);
        return m;
}

static ino_t ino_of(int fd)
{
        struct stat st;

        ck_assert_int_eq(fstat(fd, &st), 0);
        return st.st_ino;
}

static FakeSMStats stats_of(FakeSM *m)
{
        FakeSMStats s;

        fakesm_stats(m, &s);
        return s;
}

/* sd_notify with fds from this process (the child's helpers use it too). */
static bool notify_fds(const char *msg, const int *fds, unsigned n)
{
        return sd_pid_notify_with_fds(0, 0, msg, fds, n) > 0;
}

/* One datagram of exactly these bytes to the notify socket, with fds. */
static int raw_notify(FakeSM *m, const void *buf, size_t len, const int *fds, size_t n_fds)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), r;

        if (s < 0)
                return -errno;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fakesm_notify_socket(m));
        r = connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
        if (r == 0)
                r = test_send_fds(s, buf, len, fds, n_fds, 0);
        close(s);
        return r;
}

static void raw_notify_str(FakeSM *m, const char *msg)
{
        ck_assert_int_eq(raw_notify(m, msg, strlen(msg), NULL, 0), 0);
}

/* Whether the write end of a pipe has lost every reader (so the fake closed
 * what it held). */
static bool readers_gone(int wfd)
{
        struct pollfd p = { .fd = wfd, .events = POLLOUT };

        return poll(&p, 1, 0) == 1 && (p.revents & POLLERR);
}

/*
 * A forked service: body runs in the child (its return value is the exit
 * status) once the parent has made it the main pid, as systemd knows its
 * child from the fork on; the child then tells the parent it has sent
 * everything and waits until the parent lets it go, so the test sees it
 * alive.  Children never call ck_assert.
 */
typedef int (*ChildBody)(void *arg);

typedef struct Child {
        pid_t pid;
        int sent; /* read end: a byte once body returned */
        int go;   /* write end: a byte starts the child, another lets it exit */
} Child;

static void child_start(Child *c, FakeSM *m, bool main_pid, ChildBody body, void *arg)
{
        int sent[2], go[2];

        ck_assert_int_eq(pipe2(sent, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
        c->pid = fork();
        ck_assert_int_ge(c->pid, 0);
        if (c->pid == 0) {
                char b;
                close(sent[0]);
                close(go[1]);
                if (read(go[0], &b, 1) != 1)
                        _exit(99);
                int rc = body(arg);
                (void)!write(sent[1], "x", 1);
                /* A byte, not EOF: a sibling may hold the write end. */
                (void)!read(go[0], &b, 1);
                _exit(rc);
        }
        /* What systemd knows from its fork. */
        if (main_pid)
                fakesm_set_main_pid(m, c->pid);
        close(sent[1]);
        close(go[0]);
        c->sent = sent[0];
        c->go = go[1];
        ck_assert_int_eq(write(c->go, "s", 1), 1);
}

/* Waits (at most 10 s) until the child's body has returned. */
static void child_wait_sent(Child *c)
{
        struct pollfd p = { .fd = c->sent, .events = POLLIN };
        char b;

        ck_assert_msg(poll(&p, 1, 10000) == 1, "the child did not finish sending");
        ck_assert_int_eq(read(c->sent, &b, 1), 1);
}

/* Lets the child exit and reaps it: its exit status must be 0. */
static void child_finish(Child *c)
{
        int status;

        ck_assert_int_eq(write(c->go, "g", 1), 1);
        close(c->go);
        ck_assert_int_eq(waitpid(c->pid, &status, 0), c->pid);
        close(c->sent);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "child failed: status %#x (exit %d = the step that failed)", status,
                      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* Runs argv through fakesm_spawn with stdout to a pipe; returns everything
 * it wrote and its wait status, after fakesm_reap_main. */
static void spawn_capture(FakeSM *m, char *const argv[], const int *extra,
                          const char *const *names, size_t n_extra, char *out, size_t len,
                          pid_t *ret_pid, int *ret_status)
{
        int p[2];
        size_t n = 0;

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        fakesm_set_output(m, p[1], -1);
        pid_t pid = fakesm_spawn(m, argv, extra, names, n_extra);
        ck_assert_msg(pid > 0, "fakesm_spawn: %s", strerror(-pid));
        close(p[1]);
        fakesm_set_output(m, -1, -1);
        for (;;) {
                struct pollfd pf = { .fd = p[0], .events = POLLIN };
                ck_assert_msg(poll(&pf, 1, 10000) == 1, "no output from the spawned process");
                ssize_t k = read(p[0], out + n, len - 1 - n);
                ck_assert_int_ge(k, 0);
                if (k == 0)
                        break;
                n += (size_t)k;
                ck_assert_uint_lt(n, len - 1);
        }
        out[n] = '\0';
        close(p[0]);
        ck_assert_int_eq(fakesm_reap_main(m, 10000, ret_status), 0);
        *ret_pid = pid;
}

/* The target of fd in the `ls -l /proc/self/fd` of REPORT_SCRIPT, or NULL
 * (also for the directory ls itself reads). */
static const char *fd_target(const char *out, int fd, char *buf, size_t len)
{
        char key[32];
        const char *p;

        snprintf(key, sizeof(key), " %d -> ", fd);
        p = strstr(out, key);
        if (!p)
                return NULL;
        p += strlen(key);
        snprintf(buf, len, "%.*s", (int)strcspn(p, "\n"), p);
        return strncmp(buf, "/proc/", 6) == 0 ? NULL : buf;
}

/* How many fds REPORT_SCRIPT's service had. */
static int fd_lines(const char *out)
{
        char buf[128];
        int n = 0;

        for (int fd = 0; fd < 64; fd++)
                n += fd_target(out, fd, buf, sizeof(buf)) != NULL;
        return n;
}

/* What a spawned service got: environment, then its fds, listed by ls in
 * its place (exec: no pipe of the shell's in the list). */
#define REPORT_SCRIPT                                                                      \
        "echo \"fds=${LISTEN_FDS-unset} names=${LISTEN_FDNAMES-unset} "                    \
        "pid=${LISTEN_PID-unset} self=$$\"; "                                              \
        "echo \"notify=${NOTIFY_SOCKET-unset} wd=${WATCHDOG_USEC-unset} "                  \
        "wdpid=${WATCHDOG_PID-unset}\"; "                                                  \
        "exec ls -l /proc/self/fd"

/* ------------------------------------------------------------------ */
/* The fd store                                                         */

typedef struct StorePipes {
        int r[8], w[8];
} StorePipes;

/* Steps exit with their number, so a failure names the step. */
static int send_store_rules(void *arg)
{
        StorePipes *p = arg;
        int dup0 = dup(p->r[0]);

        if (!notify_fds("FDSTORE=1\nFDNAME=a", &p->r[0], 1))
                return 1;
        if (!notify_fds("FDSTORE=1\nFDNAME=b", &p->r[1], 1))
                return 2;
        if (!notify_fds("FDSTORE=1\nFDNAME=c", &p->r[2], 1))
                return 3;
        if (!notify_fds("FDSTOREREMOVE=1\nFDNAME=b", NULL, 0))
                return 4;
        /* The same fd again, then a dup of it: one open file description. */
        if (!notify_fds("FDSTORE=1\nFDNAME=a-again", &p->r[0], 1))
                return 5;
        if (dup0 < 0 || !notify_fds("FDSTORE=1\nFDNAME=a-dup", &dup0, 1))
                return 6;
        /* Invalid: stored, under "stored". */
        if (!notify_fds("FDSTORE=1\nFDNAME=bad:name", &p->r[3], 1))
                return 7;
        int two[2] = { p->r[4], p->r[5] };
        if (!notify_fds("FDSTORE=1\nFDNAME=multi", two, 2))
                return 8;
        /* The store (max 5) is full now: both refused. */
        int more[2] = { p->r[6], p->r[7] };
        if (!notify_fds("FDSTORE=1\nFDNAME=over", more, 2))
                return 9;
        return 0;
}

START_TEST(test_fakesm_store_keeps_names_dedups_refuses_and_passes_newest_first)
{
        FakeSM *m = sm_new(5);
        StorePipes p;
        Child c;
        char names[256], buf[8];

        for (int i = 0; i < 8; i++) {
                int fds[2];
                ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
                p.r[i] = fds[0];
                p.w[i] = fds[1];
        }
        child_start(&c, m, true, send_store_rules, &p);
        child_wait_sent(&c);
        /* Only the fake holds the read ends now (and the waiting child). */
        for (int i = 0; i < 8; i++)
                close(p.r[i]);
        ck_assert_int_eq(fakesm_process(m, 0), 9);

        FakeSMStats s = stats_of(m);
        ck_assert_uint_eq(s.applied, 9);
        ck_assert_uint_eq(s.ignored, 0);
        ck_assert_uint_eq(s.stores, 6);
        ck_assert_uint_eq(s.removes, 1);
        ck_assert_uint_eq(s.dedups, 2);
        ck_assert_uint_eq(s.bad_names, 1);
        ck_assert_uint_eq(s.refused, 2);
        ck_assert_uint_eq(fakesm_store_count(m), 5);
        /* Newest first; one message's fds in reverse. */
        ck_assert_int_gt(fakesm_store_names(m, names, sizeof(names)), 0);
        ck_assert_str_eq(names, "multi:multi:stored:c:a");
        const int order[5] = { 5, 4, 3, 2, 0 };
        for (size_t i = 0; i < 5; i++) {
                int fd = fakesm_store_get(m, i, NULL, 0);
                ck_assert_int_ge(fd, 0);
                ck_assert_msg(ino_of(fd) == ino_of(p.w[order[i]]), "store[%zu] is not pipe %d", i,
                              order[i]);
                ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
        }
        ck_assert_int_eq(fakesm_store_fd(m, "b"), -ENOENT);
        ck_assert_int_eq(fakesm_store_fd(m, "a-dup"), -ENOENT);
        ck_assert_uint_eq(fakesm_store_count_name(m, "multi"), 2);
        /* "a" really is pipe 0. */
        ck_assert_int_eq(write(p.w[0], "A", 1), 1);
        ck_assert_int_eq(read(fakesm_store_fd(m, "a"), buf, sizeof(buf)), 1);
        ck_assert_int_eq(buf[0], 'A');
        child_finish(&c);
        /* Removed, refused and duplicate fds were closed, kept ones not. */
        ck_assert(readers_gone(p.w[1]));
        ck_assert(readers_gone(p.w[6]));
        ck_assert(readers_gone(p.w[7]));
        ck_assert(!readers_gone(p.w[0]));
        fakesm_free(m);
        ck_assert(readers_gone(p.w[0]));
        for (int i = 0; i < 8; i++)
                close(p.w[i]);
}
END_TEST

START_TEST(test_fakesm_remove_wins_over_store_and_unstored_fds_are_closed)
{
        FakeSM *m = sm_new(10);
        int a[2], b[2], c[2];

        fakesm_set_main_pid(m, getpid());
        ck_assert_int_eq(pipe2(a, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(b, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(c, O_CLOEXEC), 0);
        ck_assert(notify_fds("FDSTORE=1\nFDNAME=x", &a[0], 1));
        ck_assert(notify_fds("FDSTORE=1\nFDSTOREREMOVE=1\nFDNAME=x", &b[0], 1));
        ck_assert(notify_fds("WATCHDOG=1", &c[0], 1));
        ck_assert(notify_fds("FDSTOREREMOVE=1", NULL, 0));
        ck_assert(notify_fds("FDSTOREREMOVE=1\nFDNAME=bad:name", NULL, 0));
        close(a[0]);
        close(b[0]);
        close(c[0]);
        ck_assert_int_eq(fakesm_process(m, 0), 5);

        FakeSMStats s = stats_of(m);
        ck_assert_uint_eq(s.stores, 1);
        ck_assert_uint_eq(s.removes, 1);
        ck_assert_uint_eq(s.stray_fds, 2);
        ck_assert_uint_eq(s.bad_removes, 2);
        ck_assert_uint_eq(fakesm_store_count(m), 0);
        ck_assert(readers_gone(a[1]));
        ck_assert(readers_gone(b[1]));
        ck_assert(readers_gone(c[1]));
        close(a[1]);
        close(b[1]);
        close(c[1]);
        fakesm_free(m);
}
END_TEST

START_TEST(test_fakesm_fdname_empty_is_a_name_and_missing_is_stored)
{
        FakeSM *m = sm_new(10);
        int a[2], b[2];
        char names[64];

        fakesm_set_main_pid(m, getpid());
        ck_assert_int_eq(pipe2(a, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(b, O_CLOEXEC), 0);
        ck_assert(notify_fds("FDSTORE=1\nFDNAME=", &a[0], 1));
        ck_assert(notify_fds("FDSTORE=1", &b[0], 1));
        ck_assert_int_eq(fakesm_process(m, 0), 2);
        ck_assert_int_eq(fakesm_store_names(m, names, sizeof(names)), 7);
        ck_assert_str_eq(names, "stored:");
        ck_assert_int_ge(fakesm_store_fd(m, ""), 0);
        ck_assert_uint_eq(ino_of(fakesm_store_fd(m, "")), ino_of(a[0]));
        ck_assert_uint_eq(stats_of(m).bad_names, 0);
        fakesm_free(m);
        close(a[0]);
        close(a[1]);
        close(b[0]);
        close(b[1]);
}
END_TEST

START_TEST(test_fakesm_dedup_is_by_open_file_description_not_by_inode)
{
        FakeSM *m = sm_new(10);
        char path[64];
        int p[2];

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        int mfd = memfd_create("fakesm-test", MFD_CLOEXEC);
        ck_assert_int_ge(mfd, 0);
        ck_assert_int_eq(fakesm_store_add(m, p[0], "pipe", false), 1);
        ck_assert_int_eq(fakesm_store_add(m, p[0], "pipe-dup", false), 0);
        /* A second open of the same pipe and file: new descriptions. */
        snprintf(path, sizeof(path), "/proc/self/fd/%d", p[0]);
        int again = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        ck_assert_int_ge(again, 0);
        ck_assert_uint_eq(ino_of(again), ino_of(p[0]));
        ck_assert_int_eq(fakesm_store_add(m, again, "pipe-reopened", false), 1);
        ck_assert_int_eq(fakesm_store_add(m, mfd, "memfd", true), 1);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
        int mfd2 = open(path, O_RDWR | O_CLOEXEC);
        ck_assert_int_ge(mfd2, 0);
        ck_assert_int_eq(fakesm_store_add(m, mfd2, "memfd-reopened", true), 1);
        ck_assert_int_eq(fakesm_store_add(m, mfd2, "memfd-again", true), 0);
        ck_assert_uint_eq(fakesm_store_count(m), 4);
        ck_assert_uint_eq(stats_of(m).dedups, 2);
        fakesm_free(m);
        close(again);
        close(mfd);
        close(mfd2);
        close(p[0]);
        close(p[1]);
}
END_TEST

/* Stores two read ends whose only writers die with it; one with FDPOLL=0. */
static int send_pipes_then_exit(void *arg)
{
        (void)arg;
        int h[2], k[2];

        if (pipe(h) < 0 || pipe(k) < 0)
                return 1;
        if (!notify_fds("FDSTORE=1\nFDNAME=hangs-up", &h[0], 1))
                return 2;
        if (!notify_fds("FDSTORE=1\nFDNAME=kept\nFDPOLL=0", &k[0], 1))
                return 3;
        return 0;
}

START_TEST(test_fakesm_hung_up_fds_leave_the_store_unless_fdpoll_0)
{
        FakeSM *m = sm_new(10);
        int lsock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char names[64];
        Child c;

        /* A listening socket never hangs up. */
        ck_assert_int_ge(lsock, 0);
        ck_assert_int_eq(bind(lsock, (struct sockaddr *)&sa, sizeof(sa_family_t)), 0);
        ck_assert_int_eq(listen(lsock, 1), 0);
        ck_assert_int_eq(fakesm_store_add(m, lsock, "listener", true), 1);
        child_start(&c, m, true, send_pipes_then_exit, NULL);
        child_wait_sent(&c);
        ck_assert_int_eq(fakesm_process(m, 0), 2);
        ck_assert_uint_eq(fakesm_store_count(m), 3);
        child_finish(&c); /* the writers are gone now */
        ck_assert_uint_eq(fakesm_store_count(m), 2);
        ck_assert_int_gt(fakesm_store_names(m, names, sizeof(names)), 0);
        ck_assert_str_eq(names, "kept:listener");
        ck_assert_uint_eq(stats_of(m).hangups, 1);
        fakesm_free(m);
        close(lsock);
}
END_TEST

START_TEST(test_fakesm_store_clear_closes_every_fd)
{
        FakeSM *m = sm_new(3);
        int p[3][2];

        for (int i = 0; i < 3; i++) {
                ck_assert_int_eq(pipe2(p[i], O_CLOEXEC), 0);
                ck_assert_int_eq(fakesm_store_add(m, p[i][0], "x", false), 1);
                close(p[i][0]);
        }
        ck_assert_int_eq(fakesm_store_add(m, p[0][1], "full", false), -EXFULL);
        ck_assert_uint_eq(stats_of(m).refused, 1);
        ck_assert_uint_eq(fakesm_store_count_name(m, "x"), 3);
        fakesm_store_clear(m);
        ck_assert_uint_eq(fakesm_store_count(m), 0);
        for (int i = 0; i < 3; i++) {
                ck_assert(readers_gone(p[i][1]));
                close(p[i][1]);
        }
        fakesm_free(m);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Who may notify                                                       */

static int send_ready_and_store(void *arg)
{
        int *fd = arg;

        return notify_fds("READY=1\nSTATUS=main\nFDSTORE=1\nFDNAME=main", fd, 1) ? 0 : 1;
}

static int send_as_intruder(void *arg)
{
        int *fd = arg;

        return notify_fds("READY=1\nSTATUS=intruder\nFDSTORE=1\nFDNAME=intruder", fd, 1) ? 0 : 1;
}

START_TEST(test_fakesm_only_the_main_pid_counts)
{
        FakeSM *m = sm_new(10);
        int p[2], q[2];
        char status[64];
        Child main_child, other;

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
        child_start(&main_child, m, true, send_ready_and_store, &p[0]);
        child_start(&other, m, false, send_as_intruder, &q[0]);
        child_wait_sent(&main_child);
        child_wait_sent(&other);
        /* This process is not the main pid either. */
        ck_assert(notify_fds("STOPPING=1\nSTATUS=test\nFDSTORE=1\nFDNAME=test", &q[0], 1));
        close(p[0]);
        close(q[0]);
        ck_assert_int_eq(fakesm_process(m, 0), 1);

        FakeSMStats s = stats_of(m);
        ck_assert_uint_eq(s.applied, 1);
        ck_assert_uint_eq(s.ignored, 2);
        ck_assert_uint_eq(s.readies, 1);
        ck_assert_uint_eq(s.stoppings, 0);
        ck_assert_int_eq(fakesm_state(m), FAKESM_RUNNING);
        ck_assert(fakesm_status(m, status, sizeof(status)));
        ck_assert_str_eq(status, "main");
        ck_assert_uint_eq(fakesm_store_count(m), 1);
        ck_assert_int_ge(fakesm_store_fd(m, "main"), 0);
        child_finish(&main_child);
        child_finish(&other);
        /* The ignored messages' fds were closed. */
        ck_assert(readers_gone(q[1]));
        ck_assert(!readers_gone(p[1]));
        fakesm_free(m);
        close(p[1]);
        close(q[1]);
}
END_TEST

START_TEST(test_fakesm_notify_socket_is_open_to_every_user)
{
        FakeSM *m = sm_new(0);
        char dir[128];
        struct stat st;

        /* A service that drops privileges must still reach it. */
        ck_assert_int_eq(stat(fakesm_notify_socket(m), &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        ck_assert_int_eq(st.st_mode & 0777, 0777);
        snprintf(dir, sizeof(dir), "%s", fakesm_notify_socket(m));
        *strrchr(dir, '/') = '\0';
        ck_assert_int_eq(stat(dir, &st), 0);
        ck_assert_int_eq(st.st_mode & 0777, 0755);
        fakesm_free(m);
        ck_assert_int_eq(stat(dir, &st), -1);
}
END_TEST

/* Stores, says goodbye, and dies at once: kill -9 in mid-flight. */
static int send_then_die(void *arg)
{
        int *fd = arg;

        if (!notify_fds("FDSTORE=1\nFDNAME=last-words", fd, 1) ||
            !notify_fds("STATUS=dying", NULL, 0))
                return 1;
        raise(SIGKILL);
        return 2;
}

START_TEST(test_fakesm_applies_what_a_killed_main_pid_queued)
{
        FakeSM *m = sm_new(10);
        int p[2], status;
        char text[32];

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
                _exit(send_then_die(&p[0]));
        fakesm_set_main_pid(m, pid);
        close(p[0]);
        /* Reaped before a single message was read. */
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        ck_assert_uint_eq(stats_of(m).applied, 0);
        ck_assert_int_eq(fakesm_process(m, 0), 2);
        ck_assert_int_ge(fakesm_store_fd(m, "last-words"), 0);
        ck_assert(fakesm_status(m, text, sizeof(text)));
        ck_assert_str_eq(text, "dying");
        fakesm_free(m);
        close(p[1]);
}
END_TEST

START_TEST(test_fakesm_spawn_first_applies_the_last_main_pids_messages)
{
        FakeSM *m = sm_new(10);
        char *argv[] = { "/bin/sh", "-c", "echo \"names=$LISTEN_FDNAMES\"", NULL };
        char out[256];
        int p[2], status;
        pid_t pid;

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        pid_t dead = fork();
        ck_assert_int_ge(dead, 0);
        if (dead == 0)
                _exit(send_then_die(&p[0]));
        fakesm_set_main_pid(m, dead);
        close(p[0]);
        ck_assert_int_eq(waitpid(dead, &status, 0), dead);
        /* No fakesm_process: the restart itself must see them. */
        spawn_capture(m, argv, NULL, NULL, 0, out, sizeof(out), &pid, &status);
        ck_assert_str_eq(out, "names=last-words\n");
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        fakesm_free(m);
        close(p[1]);
}
END_TEST

START_TEST(test_fakesm_mainpid_moves_what_counts)
{
        FakeSM *m = sm_new(10);
        char msg[64];
        int go[2];

        ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
        fakesm_set_main_pid(m, getpid());
        pid_t kid = fork();
        ck_assert_int_ge(kid, 0);
        if (kid == 0) {
                char b;
                close(go[1]);
                if (read(go[0], &b, 1) != 1)
                        _exit(1);
                _exit(notify_fds("READY=1\nSTATUS=new main", NULL, 0) ? 0 : 2);
        }
        close(go[0]);
        /* pid 1 and the manager itself are refused; a child of the service
         * is taken. */
        ck_assert(notify_fds("MAINPID=1", NULL, 0));
        ck_assert_int_eq(fakesm_process(m, 0), 1);
        ck_assert_int_eq(fakesm_main_pid(m), getpid());
        snprintf(msg, sizeof(msg), "MAINPID=%d", (int)kid);
        ck_assert(notify_fds(msg, NULL, 0));
        ck_assert_int_eq(fakesm_process(m, 0), 1);
        ck_assert_int_eq(fakesm_main_pid(m), kid);
        ck_assert_uint_eq(stats_of(m).main_pid_changes, 1);
        /* The old main pid no longer counts, the new one does. */
        ck_assert(notify_fds("READY=1\nSTATUS=old main", NULL, 0));
        ck_assert_int_eq(fakesm_process(m, 0), 0);
        ck_assert_int_eq(write(go[1], "x", 1), 1);
        ck_assert_int_eq(fakesm_wait_ready(m, 5000), 0);
        ck_assert(fakesm_status(m, msg, sizeof(msg)));
        ck_assert_str_eq(msg, "new main");
        int status;
        ck_assert_int_eq(waitpid(kid, &status, 0), kid);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        close(go[1]);
        fakesm_free(m);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Message contents                                                     */

START_TEST(test_fakesm_ready_reloading_stopping_last_one_wins)
{
        FakeSM *m = sm_new(0);

        fakesm_set_main_pid(m, getpid());
        ck_assert_int_eq(fakesm_state(m), FAKESM_STARTING);
        raw_notify_str(m, "STOPPING=1\nREADY=1");
        ck_assert_int_eq(fakesm_process(m, 0), 1);
        ck_assert_int_eq(fakesm_state(m), FAKESM_RUNNING);
        ck_assert_uint_eq(stats_of(m).stoppings, 0);
        raw_notify_str(m, "RELOADING=1");
        ck_assert_int_eq(fakesm_process(m, 0), 1);
        ck_assert_int_eq(fakesm_state(m), FAKESM_RELOADING);
        raw_notify_str(m, "READY=1");
        ck_assert_int_eq(fakesm_process(m, 0), 1);
        ck_assert_int_eq(fakesm_state(m), FAKESM_RUNNING);
        raw_notify_str(m, "READY=1\nSTOPPING=1");
        ck_assert_int_eq(fakesm_process(m, 0), 1);
        ck_assert_int_eq(fakesm_state(m), FAKESM_STOPPING);

        FakeSMStats s = stats_of(m);
        ck_assert_uint_eq(s.readies, 2);
        ck_assert_uint_eq(s.reloadings, 1);
        ck_assert_uint_eq(s.stoppings, 1);
        fakesm_free(m);
}
END_TEST

START_TEST(test_fakesm_watchdog_errno_and_watchdog_usec)
{
        FakeSM *m = sm_new(0);

        fakesm_set_main_pid(m, getpid());
        raw_notify_str(m, "WATCHDOG=1");
        raw_notify_str(m, "WATCHDOG=1\nERRNO=ENOENT");
        raw_notify_str(m, "WATCHDOG=trigger");
        raw_notify_str(m, "WATCHDOG=2\nWATCHDOG_USEC=1500000");
        ck_assert_int_eq(fakesm_process(m, 0), 4);

        FakeSMStats s = stats_of(m);
        ck_assert_uint_eq(s.watchdogs, 2);
        ck_assert_uint_eq(s.watchdog_triggers, 1);
        ck_assert_int_eq(s.status_errno, ENOENT);
        ck_assert_uint_eq(s.watchdog_usec, 1500000);
        raw_notify_str(m, "ERRNO=7");
        raw_notify_str(m, "ERRNO=nonsense");
        ck_assert_int_eq(fakesm_process(m, 0), 2);
        ck_assert_int_eq(stats_of(m).status_errno, 7);
        fakesm_free(m);
}
END_TEST

START_TEST(test_fakesm_parses_escapes_and_drops_bad_messages_whole)
{
        FakeSM *m = sm_new(0);
        char status[8192];
        static char big[5000];

        fakesm_set_main_pid(m, getpid());
        raw_notify_str(m, "STATUS=x\\y");
        ck_assert_int_eq(fakesm_process(m, 0), 1);
        ck_assert(fakesm_status(m, status, sizeof(status)));
        ck_assert_str_eq(status, "xy");

        /* Dropped whole: a lone trailing backslash, a NUL inside, too long. */
        raw_notify_str(m, "READY=1\nSTATUS=bad\\");
        static const char nul[] = "READY=1\nSTATUS=n\0ul";
        ck_assert_int_eq(raw_notify(m, nul, sizeof(nul) - 1, NULL, 0), 0);
        memcpy(big, "READY=1\nSTATUS=", 15);
        memset(big + 15, 'a', sizeof(big) - 15);
        ck_assert_int_eq(raw_notify(m, big, sizeof(big), NULL, 0), 0);
        ck_assert_int_eq(fakesm_process(m, 0), 0);
        ck_assert_uint_eq(stats_of(m).ignored, 3);
        ck_assert_uint_eq(stats_of(m).readies, 0);

        /* 4096 bytes is still fine; a trailing NUL too. */
        ck_assert_int_eq(raw_notify(m, big, 4096, NULL, 0), 0);
        ck_assert_int_eq(fakesm_process(m, 0), 1);
        ck_assert_uint_eq(stats_of(m).readies, 1);
        ck_assert(fakesm_status(m, status, sizeof(status)));
        ck_assert_uint_eq(strlen(status), 4096 - 15);
        ck_assert_int_eq(raw_notify(m, "STATUS=nul\0", 11, NULL, 0), 0);
        ck_assert_int_eq(fakesm_process(m, 0), 1);
        ck_assert(fakesm_status(m, status, sizeof(status)));
        ck_assert_str_eq(status, "nul");

        /* CR and empty lines separate; an escaped newline stays in. */
        raw_notify_str(m, "\r\n\nREADY=1\r\nSTATUS=r\\\nx\n");
        ck_assert_int_eq(fakesm_process(m, 0), 1);
        ck_assert_uint_eq(stats_of(m).readies, 2);
        ck_assert(fakesm_status(m, status, sizeof(status)));
        ck_assert_str_eq(status, "r\nx");

        /* Not UTF-8: applied, status kept; empty: cleared. */
        raw_notify_str(m, "STATUS=\xff\xfe");
        ck_assert_int_eq(fakesm_process(m, 0), 1);
        ck_assert(fakesm_status(m, status, sizeof(status)));
        ck_assert_str_eq(status, "r\nx");
        raw_notify_str(m, "STATUS=");
        ck_assert_int_eq(fakesm_process(m, 0), 1);
        ck_assert(!fakesm_status(m, status, sizeof(status)));
        fakesm_free(m);
}
END_TEST

static int send_barrier(void *arg)
{
        (void)arg;
        return sd_notify_barrier(0, 5 * 1000000) >= 0 ? 0 : 1;
}

START_TEST(test_fakesm_answers_sd_notify_barrier)
{
        FakeSM *m = sm_new(0);
        Child c;

        ck_assert_int_eq(fakesm_background(m, true), 0);
        child_start(&c, m, true, send_barrier, NULL);
        child_wait_sent(&c);
        child_finish(&c);
        FakeSMStats s = stats_of(m);
        ck_assert_uint_eq(s.barriers, 1);
        ck_assert_uint_eq(s.applied, 0);
        ck_assert_uint_eq(s.stray_fds, 0);
        fakesm_free(m);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Spawning                                                             */

START_TEST(test_fakesm_spawn_passes_extra_then_store_newest_first)
{
        FakeSM *m = sm_new(10);
        char *argv[] = { "/bin/sh", "-c", REPORT_SCRIPT, NULL };
        char out[8192], line[256], target[128], expect[128];
        int a[2], b[2], status;
        pid_t pid;

        ck_assert_int_eq(pipe2(a, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(b, O_CLOEXEC), 0);
        ck_assert_int_eq(fakesm_store_add(m, a[0], "a", true), 1);
        ck_assert_int_eq(fakesm_store_add(m, b[0], "b", true), 1);
        int lsock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        ck_assert_int_ge(lsock, 0);
        const char *names[] = { "listen" };
        fakesm_set_watchdog(m, 5000000);
        /* What the test process has must not reach the service. */
        ck_assert_int_eq(setenv("LISTEN_FDS", "42", 1), 0);
        sigset_t usr1;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        ck_assert_int_eq(sigprocmask(SIG_BLOCK, &usr1, NULL), 0);
        signal(SIGUSR2, SIG_IGN);
        signal(SIGPIPE, SIG_DFL);

        spawn_capture(m, argv, &lsock, names, 1, out, sizeof(out), &pid, &status);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s", status, out);
        snprintf(line, sizeof(line), "fds=3 names=listen:b:a pid=%d self=%d\n", (int)pid, (int)pid);
        ck_assert_msg(strncmp(out, line, strlen(line)) == 0, "got:\n%s", out);
        snprintf(line, sizeof(line), "\nnotify=%s wd=5000000 wdpid=%d\n", fakesm_notify_socket(m),
                 (int)pid);
        ck_assert_msg(strstr(out, line), "got:\n%s", out);
        ck_assert_str_eq(fd_target(out, 0, target, sizeof(target)), "/dev/null");
        snprintf(expect, sizeof(expect), "socket:[%lu]", (unsigned long)ino_of(lsock));
        ck_assert_str_eq(fd_target(out, 3, target, sizeof(target)), expect);
        snprintf(expect, sizeof(expect), "pipe:[%lu]", (unsigned long)ino_of(b[0]));
        ck_assert_str_eq(fd_target(out, 4, target, sizeof(target)), expect);
        snprintf(expect, sizeof(expect), "pipe:[%lu]", (unsigned long)ino_of(a[0]));
        ck_assert_str_eq(fd_target(out, 5, target, sizeof(target)), expect);
        ck_assert_msg(fd_target(out, 6, target, sizeof(target)) == NULL, "fd 6 leaked:\n%s", out);
        /* Nothing else: 0, 1, 2 and 3 to 5. */
        ck_assert_msg(fd_lines(out) == 6, "%d fds passed:\n%s", fd_lines(out), out);
        /* The signal state as exec'd (a shell blocks signals around its
         * forks, so grep reads its own). */
        char *sigs[] = { "/bin/grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status", NULL };
        spawn_capture(m, sigs, NULL, NULL, 0, out, sizeof(out), &pid, &status);
        ck_assert_msg(strstr(out, "SigBlk:\t0000000000000000\n"), "mask kept:\n%s", out);
        /* Signals 1..31: glibc keeps 32 and 33 for itself, and sigaction()
         * cannot reset them when the runner inherited them ignored. */
        const char *ign = strstr(out, "SigIgn:\t");
        ck_assert_ptr_nonnull(ign);
        unsigned long long ignored = strtoull(ign + strlen("SigIgn:\t"), NULL, 16);
        ck_assert_msg((ignored & 0x7fffffffULL) == 0x1000ULL, "only SIGPIPE ignored:\n%s", out);
        /* NonBlocking=no: the socket's description lost O_NONBLOCK. */
        ck_assert_int_eq(fcntl(lsock, F_GETFL) & O_NONBLOCK, 0);
        /* The store stays with the manager. */
        ck_assert_uint_eq(fakesm_store_count(m), 2);
        fakesm_free(m);
        close(lsock);
        close(a[0]);
        close(a[1]);
        close(b[0]);
        close(b[1]);
}
END_TEST

START_TEST(test_fakesm_spawn_without_fds_sets_no_listen_variables)
{
        FakeSM *m = sm_new(10);
        char *argv[] = { "/bin/sh", "-c", REPORT_SCRIPT, NULL };
        char out[8192], line[256];
        int status;
        pid_t pid;

        ck_assert_int_eq(setenv("LISTEN_FDS", "42", 1), 0);
        ck_assert_int_eq(setenv("LISTEN_FDNAMES", "x", 1), 0);
        ck_assert_int_eq(setenv("WATCHDOG_USEC", "9", 1), 0);
        spawn_capture(m, argv, NULL, NULL, 0, out, sizeof(out), &pid, &status);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        snprintf(line, sizeof(line), "fds=unset names=unset pid=unset self=%d\n", (int)pid);
        ck_assert_msg(strncmp(out, line, strlen(line)) == 0, "got:\n%s", out);
        ck_assert_msg(strstr(out, "wd=unset wdpid=unset\n"), "got:\n%s", out);
        ck_assert_msg(fd_lines(out) == 3, "fds beyond stdio:\n%s", out);
        fakesm_free(m);
}
END_TEST

START_TEST(test_fakesm_spawn_rejects_bad_arguments_and_reports_exec_failure)
{
        FakeSM *m = sm_new(10);
        char *missing[] = { "/nonexistent/netpolld", NULL };
        char *sh[] = { "/bin/sh", "-c", "true", NULL };
        const char *bad[] = { "a:b" };
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), status;

        ck_assert_int_eq(fakesm_spawn(m, sh, &s, bad, 1), -EINVAL);
        int closed = dup(s);
        close(closed);
        ck_assert_int_eq(fakesm_spawn(m, sh, &closed, NULL, 1), -EBADF);
        ck_assert_int_eq(fakesm_reap_main(m, 0, NULL), -ECHILD);
        ck_assert_int_gt(fakesm_spawn(m, missing, NULL, NULL, 0), 0);
        ck_assert_int_eq(fakesm_reap_main(m, 10000, &status), 0);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 203, "status %#x", status);
        ck_assert_int_eq(fakesm_state(m), FAKESM_DEAD);
        ck_assert_int_eq(fakesm_main_pid(m), 0);
        close(s);
        fakesm_free(m);
}
END_TEST

START_TEST(test_fakesm_wait_ready_times_out_never_early_and_sees_an_exit)
{
        FakeSM *m = sm_new(0);
        char *sleeper[] = { "/bin/sh", "-c", "exec sleep 30", NULL };
        char *quitter[] = { "/bin/sh", "-c", "exit 3", NULL };
        int status;

        pid_t pid = fakesm_spawn(m, sleeper, NULL, NULL, 0);
        ck_assert_int_gt(pid, 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(fakesm_wait_ready(m, 200), -ETIMEDOUT);
        int64_t took = test_now() - t0;
        ck_assert_msg(took >= 200 * MS && took < 5000 * MS, "took %lld ms", (long long)(took / MS));
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        ck_assert_int_eq(fakesm_reap_main(m, 10000, &status), 0);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        ck_assert_int_gt(fakesm_spawn(m, quitter, NULL, NULL, 0), 0);
        t0 = test_now();
        ck_assert_int_eq(fakesm_wait_ready(m, 20000), -ESRCH);
        ck_assert_int_lt(test_now() - t0, 10000 * MS);
        ck_assert_int_eq(fakesm_reap_main(m, 10000, &status), 0);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3);
        fakesm_free(m);
}
END_TEST

static int send_ready_late(void *arg)
{
        (void)arg;
        usleep(100 * 1000);
        return notify_fds("READY=1", NULL, 0) ? 0 : 1;
}

START_TEST(test_fakesm_wait_ready_returns_on_ready)
{
        FakeSM *m = sm_new(0);
        Child c;

        child_start(&c, m, true, send_ready_late, NULL);
        ck_assert_int_eq(fakesm_wait_ready(m, 10000), 0);
        ck_assert_int_eq(fakesm_state(m), FAKESM_RUNNING);
        /* Already ready: at once. */
        ck_assert_int_eq(fakesm_wait_ready(m, 0), 0);
        child_wait_sent(&c);
        child_finish(&c);
        fakesm_free(m);
}
END_TEST

/* More messages than a notify socket queues (net.unix.max_dgram_qlen). */
#define CHATTY_MESSAGES 3000

static int send_many(void *arg)
{
        (void)arg;
        for (int i = 0; i < CHATTY_MESSAGES; i++)
                if (!notify_fds("WATCHDOG=1", NULL, 0))
                        return 1;
        return 0;
}

START_TEST(test_fakesm_background_reader_keeps_a_chatty_service_running)
{
        FakeSM *m = sm_new(0);
        Child c;

        ck_assert_int_eq(fakesm_background(m, true), 0);
        child_start(&c, m, true, send_many, NULL);
        /* No fakesm_process here: the child must not block anyway. */
        child_wait_sent(&c);
        child_finish(&c);
        ck_assert_int_ge(fakesm_process(m, 0), 0);
        ck_assert_uint_eq(stats_of(m).watchdogs, CHATTY_MESSAGES);
        ck_assert_int_eq(fakesm_background(m, false), 0);
        fakesm_free(m);
}
END_TEST

/* The set-up the restart tests share: the daemon serves on the socket
 * bound here, and free leaves no process, fd or file behind. */
START_TEST(test_fakesm_netpolld_serves_on_the_passed_socket_and_cleans_up)
{
        FakeSMNetpolld d;
        np_client *c;
        struct stat st;
        char dir[sizeof(d.dir)], too_long[sizeof(d.dir)];

        memset(too_long, 'n', sizeof(too_long) - 1);
        too_long[sizeof(too_long) - 1] = '\0';
        ck_assert_int_eq(fakesm_netpolld_new(&d, too_long, 16, false), -EINVAL);
        ck_assert_int_eq(fakesm_netpolld_new(&d, "np-fakesm", 16, false), 0);
        snprintf(dir, sizeof(dir), "%s", d.dir);
        char *const argv[] = { (char *)test_daemon_bin(), (char *)"--fd-store=16",
                               (char *)"--socket", d.sock, (char *)"--log-level",
                               (char *)"warning", NULL };
        ck_assert_int_eq(fakesm_netpolld_spawn(&d, argv, 10000), 0);
        ck_assert_int_gt(d.pid, 0);
        ck_assert_int_eq(fakesm_state(d.m), FAKESM_RUNNING);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        ck_assert_int_eq(np_ping(c), 0);
        np_disconnect(c);

        fakesm_netpolld_free(&d, SIGTERM);
        ck_assert_ptr_null(d.m);
        ck_assert_int_eq(d.listen_fd, -1);
        ck_assert_int_eq(d.pid, 0);
        ck_assert_int_eq(stat(dir, &st), -1);
        ck_assert_int_eq(errno, ENOENT);
}
END_TEST

Suite *suite_fakesm(void)
{
        Suite *s = suite_create("fakesm");
        TCase *store = test_tcase(s, "store", 60), *who = test_tcase(s, "who", 60);
        TCase *msg = test_tcase(s, "messages", 60), *spawn = test_tcase(s, "spawn", 60);

        tcase_add_test(store, test_fakesm_store_keeps_names_dedups_refuses_and_passes_newest_first);
        tcase_add_test(store, test_fakesm_remove_wins_over_store_and_unstored_fds_are_closed);
        tcase_add_test(store, test_fakesm_fdname_empty_is_a_name_and_missing_is_stored);
        tcase_add_test(store, test_fakesm_dedup_is_by_open_file_description_not_by_inode);
        tcase_add_test(store, test_fakesm_hung_up_fds_leave_the_store_unless_fdpoll_0);
        tcase_add_test(store, test_fakesm_store_clear_closes_every_fd);
        tcase_add_test(who, test_fakesm_notify_socket_is_open_to_every_user);
        tcase_add_test(who, test_fakesm_only_the_main_pid_counts);
        tcase_add_test(who, test_fakesm_applies_what_a_killed_main_pid_queued);
        tcase_add_test(who, test_fakesm_spawn_first_applies_the_last_main_pids_messages);
        tcase_add_test(who, test_fakesm_mainpid_moves_what_counts);
        tcase_add_test(msg, test_fakesm_ready_reloading_stopping_last_one_wins);
        tcase_add_test(msg, test_fakesm_watchdog_errno_and_watchdog_usec);
        tcase_add_test(msg, test_fakesm_parses_escapes_and_drops_bad_messages_whole);
        tcase_add_test(msg, test_fakesm_answers_sd_notify_barrier);
        tcase_add_test(spawn, test_fakesm_spawn_passes_extra_then_store_newest_first);
        tcase_add_test(spawn, test_fakesm_spawn_without_fds_sets_no_listen_variables);
        tcase_add_test(spawn, test_fakesm_spawn_rejects_bad_arguments_and_reports_exec_failure);
        tcase_add_test(spawn, test_fakesm_wait_ready_times_out_never_early_and_sees_an_exit);
        tcase_add_test(spawn, test_fakesm_wait_ready_returns_on_ready);
        tcase_add_test(spawn, test_fakesm_background_reader_keeps_a_chatty_service_running);
        tcase_add_test(spawn, test_fakesm_netpolld_serves_on_the_passed_socket_and_cleans_up);
        return s;
}
