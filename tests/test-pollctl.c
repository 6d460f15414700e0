/*
 * pollctl and the supervise example, black-box: the real binaries
 * ($POLLCTL_BIN, and examples/supervise next to it) against the real daemon
 * ($NETPOLLD_BIN) on a temporary socket.  The state they report is created
 * by libnetpoll in the test process, so every figure is known.  JSON is
 * parsed minimally: an object is found by a field it must contain, then
 * its fields are read with strstr/sscanf.  Access control runs a child as
 * nobody (65534) against a daemon whose socket is world-writable.  Timing
 * assertions are never early, with generous upper bounds.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "netpoll.h"

#define NS_PER_MS INT64_C(1000000)
#define NS_PER_S INT64_C(1000000000)
#define NOBODY 65534

/* examples/supervise in the directory of $POLLCTL_BIN. */
static const char *supervise_bin(void)
{
        static char path[PATH_MAX];
        const char *b = test_pollctl_bin(), *slash = strrchr(b, '/');

        if (slash)
                snprintf(path, sizeof(path), "%.*s/examples/supervise", (int)(slash - b), b);
        else
                snprintf(path, sizeof(path), "examples/supervise");
        return path;
}

/* ------------------------------------------------------------------ */
/* Minimal JSON                                                         */

/* Copies the innermost {...} of doc that contains needle into out. */
static bool json_object(const char *doc, const char *needle, char *out, size_t cap)
{
        const char *at = strstr(doc, needle), *b, *e;

        if (!at)
                return false;
        for (b = at; b > doc && *b != '{'; b--)
                ;
        e = strchr(at, '}');
        if (*b != '{' || !e || (size_t)(e - b + 2) > cap)
                return false;
        memcpy(out, b, (size_t)(e - b + 1));
        out[e - b + 1] = '\0';
        return true;
}

/* The integer value of "key" in obj. */
static int64_t json_int(const char *obj, const char *key)
{
        char pat[64];
        long long v;

        snprintf(pat, sizeof(pat), "\"%s\":", key);
        const char *at = strstr(obj, pat);
        ck_assert_msg(at, "no %s in %s", pat, obj);
        ck_assert_msg(sscanf(at + strlen(pat), "%lld", &v) == 1, "%s not a number in %s", key,
                      obj);
        return v;
}

static size_t count_of(const char *s, const char *needle)
{
        size_t n = 0;

        for (; (s = strstr(s, needle)); s += strlen(needle))
                n++;
        return n;
}

#define assert_has(s, needle) ck_assert_msg(strstr((s), (needle)), "no '%s' in:\n%s", (needle), (s))

/* ------------------------------------------------------------------ */
/* Daemon helpers                                                       */

/* A temporary directory for config files and FIFOs. */
static void scratch_dir(char *dir, size_t len)
{
        snprintf(dir, len, "/tmp/pollctl-test-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
}

/* Waits until a `pollctl` connection has had a request served: its watch
 * subscription is then in place. */
static void wait_pollctl_request(np_client *c)
{
        for (int i = 0; i < 1000; i++) {
                np_client_info *v;
                size_t n;
                ck_assert_int_eq(np_list_clients(c, &v, &n), 0);
                bool found = false;
                for (size_t k = 0; k < n; k++)
                        found |= strcmp(v[k].comm, "pollctl") == 0 && v[k].requests >= 1;
                free(v);
                if (found)
                        return;
                usleep(10000);
        }
        ck_abort_msg("pollctl never made a request");
}

/* ------------------------------------------------------------------ */
/* status, clients, descs                                               */

START_TEST(test_pollctl_json_reports_descriptors_and_deadlines)
{
        TestDaemon d;
        np_client *c;
        np_desc d1, d2;
        int p[2], q[2];
        char obj[1024], want[96], id[32];
        TestRun r;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        ck_assert_int_eq(np_open(c, p[0], 7, &d1), 0);
        ck_assert_int_eq(np_open(c, q[1], 8, &d2), 0);
        ck_assert_int_eq(np_set_deadline(c, d1, 10 * NS_PER_S, NP_READ), 0);
        ck_assert_int_eq(np_set_deadline(c, d2, -1, NP_READ), 0);
        ck_assert_int_eq(np_ping(c), 0); /* the pipelined deadlines have arrived */
        uint64_t me = np_connection_id(c);
        snprintf(id, sizeof(id), "%" PRIu64, me);

        const char *status[] = { test_pollctl_bin(), "--socket", d.sock, "--json", "status", NULL };
        test_run(&r, status);
        test_assert_exit(&r, 0);
        ck_assert_int_eq(json_int(r.out, "descriptors"), 2);
        ck_assert_int_eq(json_int(r.out, "slots_in_use"), 2);
        ck_assert_int_eq(json_int(r.out, "timers"), 1); /* d1's; d2's is in the past */
        ck_assert_int_eq(json_int(r.out, "waiters"), 0);
        ck_assert_int_ge(json_int(r.out, "connections"), 2);
        ck_assert_int_gt(json_int(r.out, "rss_bytes"), 0);
        ck_assert_int_gt(json_int(r.out, "open_fds"), 2);
        ck_assert_int_eq(json_int(r.out, "max_descriptors_per_connection"), 4096);
        ck_assert_int_eq(json_int(r.out, "handshake_timeout_ns"), 5 * NS_PER_S);

        const char *clients[] = {
                test_pollctl_bin(), "--socket", d.sock, "--json", "clients", NULL
        };
        test_run(&r, clients);
        test_assert_exit(&r, 0);
        ck_assert_msg(strncmp(r.out, "{\"clients\":[", 12) == 0, "%s", r.out);
        snprintf(want, sizeof(want), "{\"id\":%s,", id);
        ck_assert_msg(json_object(r.out, want, obj, sizeof(obj)), "no %s in %s", want, r.out);
        ck_assert_int_eq(json_int(obj, "pid"), getpid());
        ck_assert_int_eq(json_int(obj, "uid"), getuid());
        ck_assert_int_eq(json_int(obj, "descriptors"), 2);
        ck_assert_int_eq(json_int(obj, "timers"), 1);
        ck_assert_int_ge(json_int(obj, "requests"), 3);
        ck_assert_int_ge(json_int(obj, "connected_ns"), 1);
        assert_has(obj, "\"self\":false");
        ck_assert(json_object(r.out, "\"self\":true", obj, sizeof(obj)));
        assert_has(obj, "\"comm\":\"pollctl\"");
        ck_assert_int_eq(json_int(obj, "descriptors"), 0);

        const char *descs[] = { test_pollctl_bin(), "--socket", d.sock, "--json", "descs",
                                "--client",         id,         NULL };
        test_run(&r, descs);
        test_assert_exit(&r, 0);
        ck_assert_msg(strncmp(r.out, "{\"descs\":[", 10) == 0, "%s", r.out);
        ck_assert_uint_eq(count_of(r.out, "\"desc\":"), 2);
        snprintf(want, sizeof(want), "\"desc\":\"0x%" PRIx64 "\"", d1);
        ck_assert_msg(json_object(r.out, want, obj, sizeof(obj)), "no %s in %s", want, r.out);
        ck_assert_int_eq(json_int(obj, "client"), (int64_t)me);
        ck_assert_int_eq(json_int(obj, "user"), 7);
        assert_has(obj, "\"type\":\"pipe\"");
        assert_has(obj, "\"read\":\"idle\",\"write\":\"idle\"");
        assert_has(obj, "\"read_deadline\":\"pending\"");
        int64_t left = json_int(obj, "read_deadline_ns");
        ck_assert_msg(left > 0 && left <= 10 * NS_PER_S, "read_deadline_ns %" PRId64, left);
        assert_has(obj, "\"write_deadline\":\"none\",\"write_deadline_ns\":0");
        assert_has(obj, "\"event_err\":false");
        snprintf(want, sizeof(want), "\"desc\":\"0x%" PRIx64 "\"", d2);
        ck_assert(json_object(r.out, want, obj, sizeof(obj)));
        ck_assert_int_eq(json_int(obj, "user"), 8);
        assert_has(obj, "\"type\":\"pipe\"");
        assert_has(obj, "\"read_deadline\":\"expired\",\"read_deadline_ns\":-1");

        /* Without --client: every descriptor root may see, the same two. */
        const char *all[] = { test_pollctl_bin(), "--socket", d.sock, "descs", NULL };
        test_run(&r, all);
        test_assert_exit(&r, 0);
        ck_assert_uint_eq(count_of(r.out, "\n"), 3); /* header and two rows */
        assert_has(r.out, "READ-DEADLINE");
        assert_has(r.out, "expired");
        assert_has(r.out, "pipe");
        snprintf(want, sizeof(want), "0x%" PRIx64, d1);
        assert_has(r.out, want);

        /* Direction states: readiness latched (ready), an armed wait parked
         * (waiting), then both closing after an unblock. */
        ck_assert_int_eq(write(p[1], "x", 1), 1);
        ck_assert_int_eq(np_arm(c, d1, NP_WRITE), 0);
        await_daemon_waiters(c, 1);
        test_run(&r, descs);
        test_assert_exit(&r, 0);
        snprintf(want, sizeof(want), "\"desc\":\"0x%" PRIx64 "\"", d1);
        ck_assert(json_object(r.out, want, obj, sizeof(obj)));
        assert_has(obj, "\"read\":\"ready\",\"write\":\"waiting\"");
        ck_assert_int_eq(np_unblock(c, d1), 0);
        np_event ev;
        ck_assert_int_eq(np_poll(c, 10 * NS_PER_S, &ev, 1), 1);
        ck_assert_int_eq(ev.result, NP_ERR_CLOSING);
        test_run(&r, descs);
        test_assert_exit(&r, 0);
        ck_assert(json_object(r.out, want, obj, sizeof(obj)));
        assert_has(obj, "\"read\":\"closing\",\"write\":\"closing\"");
        struct np_session_stats ss;
        ck_assert_int_eq(np_session_stats(c, &ss), 0);
        ck_assert_uint_eq(ss.timers, 0); /* unblock stopped d1's deadline timer */

        ck_assert_int_eq(np_close(c, d1), 0);
        ck_assert_int_eq(np_unblock(c, d2), 0);
        ck_assert_int_eq(np_close(c, d2), 0);
        np_disconnect(c);
        close(p[0]), close(p[1]), close(q[0]), close(q[1]);
        test_daemon_stop_ok(&d);
}
END_TEST

START_TEST(test_pollctl_text_tables_align_with_units)
{
        TestDaemon d;
        np_client *c;
        np_desc dd;
        int p[2];
        TestRun r;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        ck_assert_int_eq(np_open(c, p[0], 1, &dd), 0);
        ck_assert_int_eq(np_set_deadline(c, dd, 5 * NS_PER_S, NP_READ), 0);
        ck_assert_int_eq(np_ping(c), 0);

        const char *status[] = { test_pollctl_bin(), "--socket", d.sock, "status", NULL };
        test_run(&r, status);
        test_assert_exit(&r, 0);
        static const char *const lines[] = { "parked waiters     0\n",
                                             "armed timers       1\n",
                                             "pollcache slots    1 in use / ",
                                             "timeouts fired     0\n",
                                             "protocol errors    0\n",
                                             " MiB\n",
                                             "descriptors per connection" };
        for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
                assert_has(r.out, lines[i]);
        ck_assert(!strchr(r.out, '\033')); /* no colour through a pipe */

        const char *clients[] = { test_pollctl_bin(), "--socket", d.sock, "clients", NULL };
        test_run(&r, clients);
        test_assert_exit(&r, 0);
        /* Every row is as long as the header up to the last column. */
        char *nl = strchr(r.out, '\n');
        ck_assert_ptr_nonnull(nl);
        size_t head = (size_t)(strstr(r.out, "COMMAND") - r.out);
        ck_assert_uint_eq(count_of(r.out, "\n"), 3);
        for (char *row = nl + 1; *row; row = strchr(row, '\n') + 1) {
                ck_assert_msg(row[head - 2] == ' ' && row[head - 1] == ' ' && row[head] != ' ',
                              "misaligned:\n%s", r.out);
        }
        ck_assert(strstr(r.out, " us ") || strstr(r.out, " ms ") || strstr(r.out, " s "));
        assert_has(r.out, "0 B");
        assert_has(r.out, "(this pollctl)");

        const char *descs[] = { test_pollctl_bin(), "--socket", d.sock, "descs", NULL };
        test_run(&r, descs);
        test_assert_exit(&r, 0);
        assert_has(r.out, " s ");
        assert_has(r.out, "none");
        ck_assert_int_eq(np_unblock(c, dd), 0);
        ck_assert_int_eq(np_close(c, dd), 0);
        np_disconnect(c);
        close(p[0]), close(p[1]);
        test_daemon_stop_ok(&d);
}
END_TEST

/* A command name with a quote, a backslash, control characters and a byte
 * that is not UTF-8 stays one valid JSON string and one clean table cell. */
START_TEST(test_pollctl_escapes_command_names)
{
        TestDaemon d;
        TestClientChild cc;
        TestRun r;

        test_daemon_start(&d, NULL, 0, false);
        test_client_child_start(&cc, d.sock, "q\"b\\\t\x01\xff");

        const char *json[] = { test_pollctl_bin(), "--socket", d.sock, "--json", "clients", NULL };
        test_run(&r, json);
        test_assert_exit(&r, 0);
        assert_has(r.out, "\"comm\":\"q\\\"b\\\\\\t\\u0001\\ufffd\"");
        const char *text[] = { test_pollctl_bin(), "--socket", d.sock, "clients", NULL };
        test_run(&r, text);
        test_assert_exit(&r, 0);
        assert_has(r.out, "q\"b\\???\n");

        int status = test_client_child_end(&cc);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        test_daemon_stop_ok(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Access                                                               */

#define CHILD_CHECK(fd, cond, ...)                                                                 \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        dprintf(fd, "line %d: %s: ", __LINE__, #cond);                             \
                        dprintf(fd, __VA_ARGS__);                                                  \
                        _exit(1);                                                                  \
                }                                                                                  \
        } while (0)

/* As nobody, through libnetpoll: what may it see of connection `other`
 * (which has one descriptor)?  Runs in a child; fails the test with the
 * child's message. */
static void check_as_nobody(const char *sock, uint64_t other, bool admin)
{
        int m[2];
        char msg[512] = "";

        ck_assert_int_eq(pipe2(m, O_CLOEXEC), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int fd = m[1];
                np_client *c;
                np_client_info *v;
                np_desc_info *dv;
                struct np_status st;
                size_t n;
                int r;
                CHILD_CHECK(fd, setgroups(0, NULL) == 0 && setgid(NOBODY) == 0, "setgid\n");
                CHILD_CHECK(fd, setuid(NOBODY) == 0, "setuid\n");
                r = np_connect(sock, &c);
                CHILD_CHECK(fd, r == 0, "np_connect: %s\n", np_strerror(r));
                uint64_t me = np_connection_id(c);
                r = np_list_clients(c, &v, &n);
                CHILD_CHECK(fd, r == 0, "np_list_clients: %s\n", np_strerror(r));
                bool other_seen = false;
                for (size_t i = 0; i < n; i++)
                        other_seen |= v[i].id == other;
                if (!admin) {
                        CHILD_CHECK(fd, n == 1, "%zu clients\n", n);
                        CHILD_CHECK(fd, v[0].id == me && v[0].self, "id %" PRIu64 "\n", v[0].id);
                        CHILD_CHECK(fd, v[0].uid == NOBODY, "uid %u\n", v[0].uid);
                        r = np_list_descs(c, other, &dv, &n);
                        CHILD_CHECK(fd, r == -EACCES, "np_list_descs(other): %d\n", r);
                        r = np_list_descs(c, 0, &dv, &n);
                        CHILD_CHECK(fd, r == 0 && n == 0, "np_list_descs(0): %d, %zu\n", r, n);
                        free(dv);
                        r = np_status(c, &st);
                        CHILD_CHECK(fd, r == -EACCES, "np_status: %d\n", r);
                        r = np_watch(c, other);
                        CHILD_CHECK(fd, r == -EACCES, "np_watch(other): %d\n", r);
                } else {
                        CHILD_CHECK(fd, n >= 2 && other_seen, "%zu clients\n", n);
                        r = np_list_descs(c, other, &dv, &n);
                        CHILD_CHECK(fd, r == 0 && n == 1, "np_list_descs(other): %d, %zu\n", r,
                                    n);
                        CHILD_CHECK(fd, dv[0].client == other, "client %" PRIu64 "\n",
                                    dv[0].client);
                        free(dv);
                        r = np_status(c, &st);
                        CHILD_CHECK(fd, r == 0, "np_status: %d\n", r);
                        CHILD_CHECK(fd, st.descriptors == 1, "descriptors %" PRIu64 "\n",
                                    st.descriptors);
                        r = np_watch(c, other);
                        CHILD_CHECK(fd, r == 0, "np_watch(other): %d\n", r);
                }
                free(v);
                np_disconnect(c);
                _exit(0);
        }
        close(m[1]);
        ssize_t k = read(m[0], msg, sizeof(msg) - 1);
        msg[k > 0 ? k : 0] = '\0';
        close(m[0]);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "as nobody (admin %d): %s",
                      admin, msg);
}

/* A daemon with a world-writable socket in a directory nobody can reach,
 * plus root's connection with one descriptor. */
typedef struct AccessSetup {
        TestDaemon d;
        char dir[64], conf[128];
        np_client *c;
        np_desc desc;
        int p[2];
} AccessSetup;

/* Returns false (the test then passes vacuously) when not root: only root
 * can become nobody. */
static bool access_begin(AccessSetup *a, const char *conf_text)
{
        if (geteuid() != 0)
                return false;
        scratch_dir(a->dir, sizeof(a->dir));
        snprintf(a->conf, sizeof(a->conf), "%s/netpolld.conf", a->dir);
        test_write_file(a->conf, conf_text);
        const char *args[] = { "--config", a->conf, NULL };
        test_daemon_start(&a->d, args, 0, false);
        ck_assert_int_eq(chmod(a->d.dir, 0755), 0);
        ck_assert_int_eq(pipe2(a->p, O_CLOEXEC), 0);
        ck_assert_int_eq(np_connect(a->d.sock, &a->c), 0);
        ck_assert_int_eq(np_open(a->c, a->p[0], 1, &a->desc), 0);
        return true;
}

static void access_end(AccessSetup *a)
{
        ck_assert_int_eq(np_unblock(a->c, a->desc), 0);
        ck_assert_int_eq(np_close(a->c, a->desc), 0);
        np_disconnect(a->c);
        close(a->p[0]), close(a->p[1]);
        test_daemon_stop_ok(&a->d);
        ck_assert_int_eq(unlink(a->conf), 0);
        ck_assert_int_eq(rmdir(a->dir), 0);
}

START_TEST(test_pollctl_non_admin_sees_only_itself)
{
        AccessSetup a;
        char id[32];
        TestRun r;

        if (!access_begin(&a, "[daemon]\nsocket_mode = 0666\n"))
                return;
        check_as_nobody(a.d.sock, np_connection_id(a.c), false);

        const char *status[] = { test_pollctl_bin(), "--socket", a.d.sock, "status", NULL };
        test_run_full(&r, status, true, NULL, -1);
        test_assert_exit(&r, 1);
        assert_has(r.err, "needs root, or a user/group listed in admin_users/admin_groups of "
                          "netpolld.conf [access]");
        ck_assert_str_eq(r.out, "");

        const char *clients[] = { test_pollctl_bin(), "--socket", a.d.sock,
                                  "--json",           "clients",  NULL };
        test_run_full(&r, clients, true, NULL, -1);
        test_assert_exit(&r, 0);
        ck_assert_uint_eq(count_of(r.out, "\"id\":"), 1);
        assert_has(r.out, "\"uid\":65534");
        assert_has(r.out, "\"self\":true");

        snprintf(id, sizeof(id), "%" PRIu64, np_connection_id(a.c));
        const char *descs[] = { test_pollctl_bin(), "--socket", a.d.sock, "descs",
                                "--client",         id,         NULL };
        test_run_full(&r, descs, true, NULL, -1);
        test_assert_exit(&r, 1);
        assert_has(r.err, "admin_users");
        const char *watch[] = { test_pollctl_bin(), "--socket", a.d.sock, "watch",
                                "--client",         id,         NULL };
        test_run_full(&r, watch, true, NULL, -1);
        test_assert_exit(&r, 1);
        assert_has(r.err, "admin_groups");
        access_end(&a);
}
END_TEST

START_TEST(test_pollctl_admin_users_grants_access)
{
        AccessSetup a;
        TestRun r;

        if (!access_begin(&a, "[daemon]\nsocket_mode = 0666\n[access]\nadmin_users = nobody\n"))
                return;
        check_as_nobody(a.d.sock, np_connection_id(a.c), true);

        const char *status[] = {
                test_pollctl_bin(), "--socket", a.d.sock, "--json", "status", NULL
        };
        test_run_full(&r, status, true, NULL, -1);
        test_assert_exit(&r, 0);
        ck_assert_int_eq(json_int(r.out, "descriptors"), 1);
        const char *clients[] = { test_pollctl_bin(), "--socket", a.d.sock,
                                  "--json",           "clients",  NULL };
        test_run_full(&r, clients, true, NULL, -1);
        test_assert_exit(&r, 0);
        ck_assert_uint_eq(count_of(r.out, "\"id\":"), 2);
        access_end(&a);
}
END_TEST

/* ------------------------------------------------------------------ */
/* wait                                                                 */

START_TEST(test_pollctl_wait_fifo_ready_when_written)
{
        TestDaemon d;
        char dir[64], fifo[128];
        np_client *c;
        TestProc p;
        TestRun r = { 0 };

        test_daemon_start(&d, NULL, 0, false);
        scratch_dir(dir, sizeof(dir));
        snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
        ck_assert_int_eq(mkfifo(fifo, 0600), 0);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);

        const char *argv[] = { test_pollctl_bin(), "--socket", d.sock, "wait", "--read",
                               "--timeout",        "20s",      fifo,   NULL };
        test_proc_spawn(&p, argv, false, NULL, -1);
        await_daemon_waiters(c, 1); /* parked in the daemon, on the FIFO without writer */
        int w = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        ck_assert_int_ge(w, 0);
        int64_t t0 = test_now();
        ck_assert_int_eq(write(w, "x", 1), 1);
        test_proc_collect(&p, &r);
        test_assert_exit(&r, 0);
        ck_assert_int_lt(test_now() - t0, 5 * NS_PER_S);
        ck_assert_str_eq(r.out, "");

        /* --write on a FIFO without reader: opened read-write, ready at once. */
        close(w);
        const char *wr[] = { test_pollctl_bin(), "--socket", d.sock, "--json", "wait",
                             "--write",          "-t",       "20s",  fifo,     NULL };
        test_run(&r, wr);
        test_assert_exit(&r, 0);
        assert_has(r.out, "\"result\":\"ready\",\"mode\":\"write\"");

        np_disconnect(c);
        ck_assert_int_eq(unlink(fifo), 0);
        ck_assert_int_eq(rmdir(dir), 0);
        test_daemon_stop_ok(&d);
}
END_TEST

START_TEST(test_pollctl_wait_times_out_with_124_never_early)
{
        TestDaemon d;
        char dir[64], fifo[128];
        TestRun r;

        test_daemon_start(&d, NULL, 0, false);
        scratch_dir(dir, sizeof(dir));
        snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
        ck_assert_int_eq(mkfifo(fifo, 0600), 0);
        const char *argv[] = { test_pollctl_bin(), "--socket", d.sock, "wait",
                               "--timeout",        "500ms",    fifo,   NULL };
        test_run(&r, argv);
        test_assert_exit(&r, 124);
        ck_assert_msg(r.elapsed_ns >= 500 * NS_PER_MS, "after %" PRId64 " ns", r.elapsed_ns);
        ck_assert_msg(r.elapsed_ns < 5 * NS_PER_S, "after %" PRId64 " ns", r.elapsed_ns);
        ck_assert_str_eq(r.err, "");

        const char *json[] = { test_pollctl_bin(), "--socket", d.sock, "--json", "wait",
                               "--timeout",        "250ms",    fifo,   NULL };
        test_run(&r, json);
        test_assert_exit(&r, 124);
        assert_has(r.out, "\"result\":\"timeout\",\"mode\":\"read\",\"elapsed_ns\":");
        ck_assert_int_ge(json_int(r.out, "elapsed_ns"), 250 * NS_PER_MS);
        ck_assert_int_eq(unlink(fifo), 0);
        ck_assert_int_eq(rmdir(dir), 0);
        test_daemon_stop_ok(&d);
}
END_TEST

START_TEST(test_pollctl_wait_on_stdin_and_errors)
{
        TestDaemon d;
        int p[2];
        TestRun r;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        /* stdin (fd 0 by default, and --fd 0) a pipe: empty times out, then
         * readable once it has data. */
        const char *def[] = { test_pollctl_bin(), "--socket", d.sock, "wait", "-t", "200ms", NULL };
        test_run_full(&r, def, false, NULL, p[0]);
        test_assert_exit(&r, 124);
        ck_assert_int_ge(r.elapsed_ns, 200 * NS_PER_MS);
        ck_assert_int_eq(write(p[1], "x", 1), 1);
        const char *fd0[] = {
                test_pollctl_bin(), "--socket", d.sock, "wait", "--fd", "0", "-t", "20s", NULL
        };
        test_run_full(&r, fd0, false, NULL, p[0]);
        test_assert_exit(&r, 0);

        /* /dev/null cannot be polled; a missing path; a closed fd. */
        test_run(&r, def);
        test_assert_exit(&r, 1);
        assert_has(r.err, "not pollable");
        const char *missing[] = { test_pollctl_bin(), "--socket", d.sock, "wait",
                                  "/nonexistent/x",   NULL };
        test_run(&r, missing);
        test_assert_exit(&r, 1);
        assert_has(r.err, "/nonexistent/x");
        const char *badfd[] = {
                test_pollctl_bin(), "--socket", d.sock, "wait", "--fd", "77", NULL
        };
        test_run(&r, badfd);
        test_assert_exit(&r, 1);
        assert_has(r.err, "fd 77");
        close(p[0]), close(p[1]);
        test_daemon_stop_ok(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* watch                                                                */

START_TEST(test_pollctl_watch_json_streams_events_in_order)
{
        TestDaemon d;
        np_client *c;
        np_desc dd;
        int p[2];
        char buf[16384] = "", id[32], want[128];
        TestProc w;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        snprintf(id, sizeof(id), "%" PRIu64, np_connection_id(c));
        const char *argv[] = { test_pollctl_bin(), "--socket", d.sock, "--json", "watch",
                               "--client",         id,         NULL };
        test_proc_spawn(&w, argv, false, NULL, -1);
        wait_pollctl_request(c);

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        ck_assert_int_eq(np_open(c, p[0], 5, &dd), 0);
        ck_assert_int_eq(np_set_deadline(c, dd, 50 * NS_PER_MS, NP_READ), 0);
        ck_assert_int_eq(np_wait(c, dd, NP_READ), NP_ERR_TIMEOUT);
        ck_assert_int_eq(np_unblock(c, dd), 0);
        ck_assert_int_eq(np_close(c, dd), 0);

        ck_assert_msg(test_read_until(w.out, buf, sizeof(buf), "\"event\":\"close\""),
                      "watch printed: %s", buf);
        const char *open = strstr(buf, "\"event\":\"open\""),
                   *timeout = strstr(buf, "\"event\":\"timeout\""),
                   *close_ = strstr(buf, "\"event\":\"close\"");
        ck_assert_msg(open && timeout && open < timeout && timeout < close_, "%s", buf);
        ck_assert_uint_eq(count_of(buf, "\n"), 3); /* one line each, nothing else */
        snprintf(want, sizeof(want), "\"client\":%s,\"pid\":%d,\"comm\":", id, (int)getpid());
        ck_assert_uint_eq(count_of(buf, want), 3);
        snprintf(want, sizeof(want), "\"desc\":\"0x%" PRIx64 "\"", dd);
        ck_assert_uint_eq(count_of(buf, want), 3);
        char obj[512];
        ck_assert(json_object(buf, "\"event\":\"timeout\"", obj, sizeof(obj)));
        assert_has(obj, "\"mode\":\"read\"");
        ck_assert_int_gt(json_int(obj, "time_ns"), 0);
        ck_assert(json_object(buf, "\"event\":\"open\"", obj, sizeof(obj)));
        assert_has(obj, "\"mode\":null");
        /* Monotonic timestamps, in order. */
        long long t1, t2, t3;
        ck_assert_int_eq(sscanf(buf, "{\"time_ns\":%lld", &t1), 1);
        ck_assert_int_eq(sscanf(strchr(buf, '\n') + 1, "{\"time_ns\":%lld", &t2), 1);
        ck_assert_int_eq(sscanf(strchr(strchr(buf, '\n') + 1, '\n') + 1, "{\"time_ns\":%lld",
                                &t3), 1);
        ck_assert(t1 <= t2 && t2 <= t3);
        ck_assert_int_ge(t2 - t1, 50 * NS_PER_MS); /* the deadline between them */

        ck_assert_int_eq(kill(w.pid, SIGINT), 0);
        TestRun r = { 0 };
        test_proc_collect(&w, &r);
        test_assert_exit(&r, 0);
        np_disconnect(c);
        close(p[0]), close(p[1]);
        test_daemon_stop_ok(&d);
}
END_TEST

START_TEST(test_pollctl_watch_text_sees_connects_and_stops_on_sigterm)
{
        TestDaemon d;
        np_client *c, *other;
        char buf[16384] = "";
        TestProc w;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        const char *argv[] = { test_pollctl_bin(), "--socket", d.sock, "watch", NULL };
        test_proc_spawn(&w, argv, false, NULL, -1);
        wait_pollctl_request(c);
        ck_assert_int_eq(np_connect(d.sock, &other), 0);
        np_disconnect(other);
        ck_assert_msg(test_read_until(w.out, buf, sizeof(buf), "disconnect "), "watch printed: %s",
                      buf);
        assert_has(buf, "connect     client=");
        assert_has(buf, "comm=run-tests\n");
        ck_assert(!strstr(buf, "desc=")); /* connect and disconnect have none */
        ck_assert_int_eq(kill(w.pid, SIGTERM), 0);
        TestRun r = { 0 };
        test_proc_collect(&w, &r);
        test_assert_exit(&r, 0);
        np_disconnect(c);
        test_daemon_stop_ok(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* supervise                                                            */

START_TEST(test_supervise_kills_silent_child_and_relays_lines)
{
        TestDaemon d;
        np_client *c;
        np_watch_event ev[64];
        int opens = 0, closes = 0, disconnects = 0;
        TestRun r;

        test_daemon_start(&d, NULL, 0, false);
        ck_assert_int_eq(np_connect(d.sock, &c), 0);
        ck_assert_int_eq(np_watch(c, 0), 0);
        const char *argv[] = { supervise_bin(), "--silence", "500ms", "--", "sh", "-c",
                               "sleep 5", "--", "sh", "-c", "echo a; echo b; echo c", NULL };
        test_run_full(&r, argv, false, d.sock, -1);
        test_assert_exit(&r, 1); /* one child was killed */
        ck_assert_msg(r.elapsed_ns >= 500 * NS_PER_MS, "after %" PRId64 " ns", r.elapsed_ns);
        ck_assert_msg(r.elapsed_ns < 4 * NS_PER_S, "after %" PRId64 " ns", r.elapsed_ns);
        assert_has(r.out, "[sh] a\n[sh] b\n[sh] c\n");
        const char *msg = strstr(r.err, "supervise: sh (pid ");
        int kpid;
        double quiet;
        char tail[16];
        ck_assert_msg(msg && sscanf(msg, "supervise: sh (pid %d) silent for %lf s, %8s", &kpid,
                                    &quiet, tail) == 3,
                      "stderr: %s", r.err);
        ck_assert_msg(quiet >= 0.5 && quiet < 4 && strcmp(tail, "killed") == 0 && kpid > 0,
                      "stderr: %s", r.err);

        /* It unblocked and closed its four pipes before it disconnected. */
        while (!disconnects) {
                int n = np_watch_read(c, 10 * NS_PER_S, ev, 64);
                ck_assert_int_gt(n, 0);
                for (int i = 0; i < n; i++) {
                        if (strcmp(ev[i].comm, "supervise") != 0)
                                continue;
                        opens += ev[i].kind == NP_WATCH_OPEN;
                        closes += ev[i].kind == NP_WATCH_CLOSE;
                        if (ev[i].kind == NP_WATCH_DISCONNECT) {
                                ck_assert_int_eq(closes, 4);
                                disconnects++;
                        }
                }
        }
        ck_assert_int_eq(opens, 4);
        np_disconnect(c);
        test_daemon_stop_ok(&d);
}
END_TEST

START_TEST(test_supervise_exit_status_and_partial_lines)
{
        TestDaemon d;
        TestRun r;

        test_daemon_start(&d, NULL, 0, false);
        const char *ok[] = { supervise_bin(), "--", "true", "--", "sh", "-c",
                             "printf 'x\\npartial'; echo oops >&2", NULL };
        test_run_full(&r, ok, false, d.sock, -1);
        test_assert_exit(&r, 0);
        assert_has(r.out, "[sh] x\n[sh] partial\n");
        assert_has(r.err, "[sh] oops\n");

        const char *bad[] = { supervise_bin(), "--silence", "10s", "--", "true", "--",
                              "sh", "-c", "exit 3", NULL };
        test_run_full(&r, bad, false, d.sock, -1);
        test_assert_exit(&r, 1);
        assert_has(r.err, "exited with status 3");
        ck_assert_int_lt(r.elapsed_ns, 5 * NS_PER_S);
        test_daemon_stop_ok(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Usage                                                                */

START_TEST(test_pollctl_usage_errors_exit_2)
{
        static const char *const cases[][6] = {
                { NULL },
                { "frobnicate" },
                { "--bogus", "status" },
                { "status", "extra" },
                { "clients", "--bogus" },
                { "descs", "--client", "abc" },
                { "descs", "--client" },
                { "watch", "--client", "0" },
                { "ping", "-c", "0" },
                { "wait", "--read", "--write" },
                { "wait", "--timeout", "5parsecs" },
                { "wait", "--timeout", "-1s" },
                { "wait", "--fd", "x" },
                { "wait", "--fd", "0", "/tmp" },
                { "wait", "a", "b" },
        };
        TestRun r;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const char *argv[10] = { test_pollctl_bin(), "--socket", "/nonexistent/np.sock" };
                for (int k = 0; k < 6 && cases[i][k]; k++)
                        argv[3 + k] = cases[i][k];
                test_run(&r, argv);
                ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 2,
                              "case %zu (%s %s): status 0x%x, stderr: %s", i, argv[3], argv[4],
                              r.status, r.err);
                ck_assert_msg(r.err[0] && !r.out[0], "case %zu: %s", i, r.out);
        }
        static const char *const sup[][4] = {
                { NULL }, { "sh" }, { "--silence", "soon", "--", "true" }, { "--", "--" },
        };
        for (size_t i = 0; i < sizeof(sup) / sizeof(sup[0]); i++) {
                const char *argv[6] = { supervise_bin() };
                for (int k = 0; k < 4 && sup[i][k]; k++)
                        argv[1 + k] = sup[i][k];
                test_run(&r, argv);
                ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 2,
                              "supervise case %zu: status 0x%x, stderr: %s", i, r.status, r.err);
        }
}
END_TEST

START_TEST(test_pollctl_every_command_help_exits_0)
{
        static const char *const cmds[] = { "status", "clients", "descs", "watch", "ping",
                                            "wait" };
        char want[64];
        TestRun r;

        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
                const char *argv[] = {
                        test_pollctl_bin(), "--socket", "/nonexistent/np.sock", cmds[i],
                        "--help",           NULL
                };
                test_run(&r, argv);
                test_assert_exit(&r, 0);
                snprintf(want, sizeof(want), "Usage: pollctl [--socket PATH] [--json] %s",
                         cmds[i]);
                ck_assert_msg(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
                ck_assert_uint_gt(count_of(r.out, "\n"), 1);
        }
        const char *top[] = { test_pollctl_bin(), "--help", NULL };
        test_run(&r, top);
        test_assert_exit(&r, 0);
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
                assert_has(r.out, cmds[i]);
        const char *sup[] = { supervise_bin(), "--help", NULL };
        test_run(&r, sup);
        test_assert_exit(&r, 0);
        assert_has(r.out, "Usage: supervise");
}
END_TEST

START_TEST(test_pollctl_no_daemon_exits_1)
{
        static const char *const cmds[] = { "status", "clients", "descs", "watch", "ping",
                                            "wait" };
        TestRun r;

        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
                const char *argv[] = { test_pollctl_bin(), "--socket", "/nonexistent/np.sock",
                                       cmds[i], NULL };
                test_run(&r, argv);
                test_assert_exit(&r, 1);
                assert_has(r.err, "cannot connect to /nonexistent/np.sock");
        }
}
END_TEST

Suite *suite_pollctl(void)
{
        Suite *s = suite_create("pollctl");
        TCase *tc;

        tc = test_tcase(s, "introspection", 60);
        tcase_add_test(tc, test_pollctl_json_reports_descriptors_and_deadlines);
        tcase_add_test(tc, test_pollctl_text_tables_align_with_units);
        tcase_add_test(tc, test_pollctl_escapes_command_names);

        tc = test_tcase(s, "access", 60);
        tcase_add_test(tc, test_pollctl_non_admin_sees_only_itself);
        tcase_add_test(tc, test_pollctl_admin_users_grants_access);

        tc = test_tcase(s, "wait", 60);
        tcase_add_test(tc, test_pollctl_wait_fifo_ready_when_written);
        tcase_add_test(tc, test_pollctl_wait_times_out_with_124_never_early);
        tcase_add_test(tc, test_pollctl_wait_on_stdin_and_errors);

        tc = test_tcase(s, "watch", 60);
        tcase_add_test(tc, test_pollctl_watch_json_streams_events_in_order);
        tcase_add_test(tc, test_pollctl_watch_text_sees_connects_and_stops_on_sigterm);

        tc = test_tcase(s, "supervise", 60);
        tcase_add_test(tc, test_supervise_kills_silent_child_and_relays_lines);
        tcase_add_test(tc, test_supervise_exit_status_and_partial_lines);

        tc = test_tcase(s, "usage", 60);
        tcase_add_test(tc, test_pollctl_usage_errors_exit_2);
        tcase_add_test(tc, test_pollctl_every_command_help_exits_0);
        tcase_add_test(tc, test_pollctl_no_daemon_exits_1);
        return s;
}
