/*
 * pollctl: the netpolld debugging CLI, a thin user of libnetpoll.
 *
 * Each command parses its own options before it connects, so `pollctl
 * COMMAND --help` and usage errors never need a daemon.  Output is aligned
 * text (no colour, no terminal queries: the same through a pipe) or, with
 * --json, one JSON document (JSON lines for `watch`) whose field names are
 * documented in pollctl(1) and kept stable.  Strings from the daemon (command
 * names) are untrusted bytes: text output replaces control characters and
 * invalid UTF-8 with '?', JSON escapes them.  Exit status: 0 success, 1
 * error, 2 usage; `wait` exits 124 on a timeout, as timeout(1).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/clock.h"
#include "../common/duration.h"
#include "netpoll.h"
#include "pollctl-format.h"

#define EXIT_USAGE 2
#define EXIT_TIMEDOUT 124 /* as timeout(1) */

/* Option parsing helpers return an exit status, or one of these. */
#define GO_ON (-1)   /* nothing decided: carry on */
#define HANDLED (-2) /* common_opt took the option: next one */

#define ADMIN_HINT                                                                                 \
        "needs root, or a user/group listed in admin_users/admin_groups of netpolld.conf [access]"

typedef struct Ctx {
        const char *socket; /* NULL: $NETPOLL_SOCKET, else the default */
        bool json;
        const char *cmd;
} Ctx;

typedef struct Command {
        const char *name;
        const char *synopsis; /* after "pollctl [...] NAME" */
        const char *help;     /* what it does and its options */
        int (*run)(Ctx *x, int argc, char **argv);
} Command;

static const Command *command_find(const char *name);

/* ------------------------------------------------------------------ */
/* Shared plumbing                                                      */

static void command_usage(const Command *cmd, FILE *f)
{
        fprintf(f, "Usage: pollctl [--socket PATH] [--json] %s%s%s\n", cmd->name,
                *cmd->synopsis ? " " : "", cmd->synopsis);
        if (f == stdout)
                fputs(cmd->help, f);
        else
                fprintf(f, "Try 'pollctl %s --help'.\n", cmd->name);
}

/*
 * Handles what every command accepts: -h/--help, -j/--json and getopt's
 * errors.  Returns HANDLED for --json, the exit status the command should
 * return after --help (0) or an error (2), else GO_ON: the command's own.
 */
static int common_opt(Ctx *x, int opt)
{
        switch (opt) {
        case 'h':
                command_usage(command_find(x->cmd), stdout);
                return 0;
        case 'j':
                x->json = true;
                return HANDLED;
        case '?':
                command_usage(command_find(x->cmd), stderr);
                return EXIT_USAGE;
        }
        return GO_ON;
}

static int usage_error(Ctx *x, const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "pollctl %s: ", x->cmd);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        command_usage(command_find(x->cmd), stderr);
        return EXIT_USAGE;
}

/* A command without positional arguments: GO_ON, or 2 if there are some. */
static int no_operands(Ctx *x, int argc, char **argv)
{
        if (optind < argc)
                return usage_error(x, "unexpected argument '%s'", argv[optind]);
        return GO_ON;
}

/* --client ID (decimal, or 0x hex): GO_ON with *ret set, or 2. */
static int parse_client_id(Ctx *x, const char *s, uint64_t *ret)
{
        char *end;

        errno = 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (errno || end == s || *end || *s == '-' || v == 0)
                return usage_error(x, "--client takes a connection id (see `pollctl clients`)");
        *ret = v;
        return GO_ON;
}

/* The options of status and clients: only the common ones, no operands.
 * Returns GO_ON, or the exit status to return. */
static int parse_plain_opts(Ctx *x, int argc, char **argv)
{
        static const struct option options[] = {
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int opt, r;

        while ((opt = getopt_long(argc, argv, "jh", options, NULL)) >= 0)
                if ((r = common_opt(x, opt)) >= 0)
                        return r;
        return no_operands(x, argc, argv);
}

/* The options of descs and watch: [--client ID] and the common ones.
 * Returns GO_ON, or the exit status to return. */
static int parse_client_opts(Ctx *x, int argc, char **argv, uint64_t *client)
{
        static const struct option options[] = {
                { "client", required_argument, NULL, 'c' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int opt, r;

        while ((opt = getopt_long(argc, argv, "c:jh", options, NULL)) >= 0) {
                if ((r = common_opt(x, opt)) >= 0)
                        return r;
                if (r == GO_ON && (r = parse_client_id(x, optarg, client)) >= 0)
                        return r;
        }
        return no_operands(x, argc, argv);
}

static int connect_daemon(Ctx *x, np_client **ret)
{
        int r = np_connect(x->socket, ret);
        const char *env = getenv("NETPOLL_SOCKET");

        if (r < 0) {
                fprintf(stderr, "pollctl %s: cannot connect to %s: %s%s\n", x->cmd,
                        x->socket ? x->socket : env && *env ? env : NP_DEFAULT_SOCKET,
                        np_strerror(r),
                        r == -EACCES ? " (needs write permission on the socket, and root or a "
                                       "user/group in allow_users/allow_groups of netpolld.conf "
                                       "[access] when those are set)"
                                     : "");
                return 1;
        }
        return 0;
}

/* Reports a failed library call once, with the access hint for -EACCES. */
static int fail(Ctx *x, int r)
{
        if (r == -EACCES)
                fprintf(stderr, "pollctl %s: permission denied: %s\n", x->cmd, ADMIN_HINT);
        else
                fprintf(stderr, "pollctl %s: %s\n", x->cmd, np_strerror(r));
        return 1;
}

/* Flushes stdout; a failed write (full disk, closed pipe) is an error. */
static int finish(Ctx *x, int r)
{
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "pollctl %s: write error: %s\n", x->cmd, strerror(errno));
                return 1;
        }
        return r;
}

/* ------------------------------------------------------------------ */
/* ping                                                                 */

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return (x > y) - (x < y);
}

static int cmd_ping(Ctx *x, int argc, char **argv)
{
        static const struct option options[] = {
                { "count", required_argument, NULL, 'c' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        long count = 4;
        np_client *c;
        int opt, r;

        while ((opt = getopt_long(argc, argv, "c:jh", options, NULL)) >= 0) {
                if ((r = common_opt(x, opt)) >= 0)
                        return r;
                if (r == HANDLED)
                        continue;
                char *end;
                errno = 0;
                count = strtol(optarg, &end, 10);
                if (errno || *end || end == optarg || count < 1 || count > 10000000)
                        return usage_error(x, "-c takes 1..10000000");
        }
        if ((r = no_operands(x, argc, argv)) >= 0)
                return r;
        int64_t *rtt = calloc(count, sizeof(*rtt));
        if (!rtt)
                oom();
        if (connect_daemon(x, &c)) {
                free(rtt);
                return 1;
        }
        for (long i = 0; i < count; i++) {
                int64_t t0 = now_ns();
                r = np_ping(c);
                if (r < 0) {
                        np_disconnect(c);
                        free(rtt);
                        return fail(x, r);
                }
                rtt[i] = now_ns() - t0;
        }
        np_disconnect(c);
        qsort(rtt, count, sizeof(*rtt), cmp_i64);
        int64_t min = rtt[0], med = rtt[count / 2], p99 = rtt[(count * 99) / 100],
                max = rtt[count - 1];
        if (x->json)
                printf("{\"count\":%ld,\"min_ns\":%" PRId64 ",\"median_ns\":%" PRId64
                       ",\"p99_ns\":%" PRId64 ",\"max_ns\":%" PRId64 "}\n",
                       count, min, med, p99, max);
        else {
                char a[32], b[32], d[32], e[32];
                fmt_duration(a, sizeof(a), min);
                fmt_duration(b, sizeof(b), med);
                fmt_duration(d, sizeof(d), p99);
                fmt_duration(e, sizeof(e), max);
                printf("%ld round trips: min %s, median %s, p99 %s, max %s\n", count, a, b, d, e);
        }
        free(rtt);
        return finish(x, 0);
}

/* ------------------------------------------------------------------ */
/* status                                                               */

static void status_json(const struct np_status *st)
{
        printf("{\"version\":");
        json_string(stdout, st->version);
        printf(",\"pid\":%" PRIu32 ",\"uptime_ns\":%" PRIu64 ",\"connections\":%" PRIu64
               ",\"descriptors\":%" PRIu64 ",\"waiters\":%" PRIu64 ",\"timers\":%" PRIu64
               ",\"events\":%" PRIu64 ",\"timeouts\":%" PRIu64 ",\"protocol_errors\":%" PRIu64
               ",\"slots_in_use\":%" PRIu64 ",\"slots_allocated\":%" PRIu64
               ",\"breaks\":%" PRIu64 ",\"rss_bytes\":%" PRIu64 ",\"open_fds\":%" PRIu64
               ",\"fd_limit\":%" PRIu64 ",\"accepted\":%" PRIu64
               ",\"limits\":{\"max_connections\":%" PRIu32 ",\"max_connections_per_uid\":%" PRIu32
               ",\"max_descriptors_per_connection\":%" PRIu32 ",\"max_output_bytes\":%" PRIu32
               ",\"handshake_timeout_ns\":%" PRIu64 "}}\n",
               st->pid, st->uptime_ns, st->connections, st->descriptors, st->waiters, st->timers,
               st->events, st->timeouts, st->protocol_errors, st->slots_in_use,
               st->slots_allocated, st->breaks, st->rss_bytes, st->open_fds, st->fd_limit,
               st->accepted, st->max_connections, st->max_connections_per_uid,
               st->max_descriptors, st->max_output_bytes, st->handshake_timeout_ns);
}

static void status_text(const struct np_status *st)
{
        char version[64], up[32], rss[32], out[32], hs[32];

        text_clean(version, sizeof(version), st->version);
        fmt_duration(up, sizeof(up), (int64_t)st->uptime_ns);
        fmt_bytes(rss, sizeof(rss), st->rss_bytes);
        fmt_bytes(out, sizeof(out), st->max_output_bytes);
        fmt_duration(hs, sizeof(hs), (int64_t)st->handshake_timeout_ns);
        printf("version            %s\n"
               "pid                %" PRIu32 "\n"
               "uptime             %s\n"
               "connections        %" PRIu64 " (%" PRIu64 " accepted since start)\n"
               "descriptors        %" PRIu64 "\n"
               "parked waiters     %" PRIu64 "\n"
               "armed timers       %" PRIu64 "\n"
               "pollcache slots    %" PRIu64 " in use / %" PRIu64 " allocated\n"
               "events delivered   %" PRIu64 "\n"
               "timeouts fired     %" PRIu64 "\n"
               "breaks             %" PRIu64 "\n"
               "protocol errors    %" PRIu64 "\n"
               "resident memory    %s\n"
               "open fds           %" PRIu64 " (limit %" PRIu64 ")\n"
               "limits             %" PRIu32 " connections, %" PRIu32 " per uid\n"
               "                   %" PRIu32 " descriptors per connection\n"
               "                   %s of queued output per connection\n"
               "                   %s handshake timeout\n",
               version, st->pid, up, st->connections, st->accepted, st->descriptors,
               st->waiters, st->timers, st->slots_in_use, st->slots_allocated, st->events,
               st->timeouts, st->breaks, st->protocol_errors, rss, st->open_fds, st->fd_limit,
               st->max_connections, st->max_connections_per_uid, st->max_descriptors, out, hs);
}

static int cmd_status(Ctx *x, int argc, char **argv)
{
        struct np_status st;
        np_client *c;
        int r;

        if ((r = parse_plain_opts(x, argc, argv)) >= 0)
                return r;
        if (connect_daemon(x, &c))
                return 1;
        r = np_status(c, &st);
        np_disconnect(c);
        if (r < 0)
                return fail(x, r);
        if (x->json)
                status_json(&st);
        else
                status_text(&st);
        return finish(x, 0);
}

/* ------------------------------------------------------------------ */
/* clients                                                              */

static int cmp_client(const void *a, const void *b)
{
        uint64_t x = ((const np_client_info *)a)->id, y = ((const np_client_info *)b)->id;
        return (x > y) - (x < y);
}

static int cmd_clients(Ctx *x, int argc, char **argv)
{
        static const char *const head[] = { "ID",     "PID",       "UID",      "DESCS",
                                            "WAITERS", "TIMERS",   "QUEUED",   "CONNECTED",
                                            "REQUESTS", "COMMAND" };
        np_client_info *v = NULL;
        size_t n = 0;
        np_client *c;
        int r;

        if ((r = parse_plain_opts(x, argc, argv)) >= 0)
                return r;
        if (connect_daemon(x, &c))
                return 1;
        r = np_list_clients(c, &v, &n);
        np_disconnect(c);
        if (r < 0)
                return fail(x, r);
        qsort(v, n, sizeof(*v), cmp_client);
        if (x->json) {
                printf("{\"clients\":[");
                for (size_t i = 0; i < n; i++) {
                        printf("%s{\"id\":%" PRIu64 ",\"pid\":%" PRIu32 ",\"uid\":%" PRIu32
                               ",\"gid\":%" PRIu32 ",\"comm\":",
                               i ? "," : "", v[i].id, v[i].pid, v[i].uid, v[i].gid);
                        json_string(stdout, v[i].comm);
                        printf(",\"name\":");
                        json_string(stdout, v[i].name);
                        printf(",\"descriptors\":%" PRIu64 ",\"waiters\":%" PRIu64
                               ",\"timers\":%" PRIu64 ",\"queued_bytes\":%" PRIu64
                               ",\"connected_ns\":%" PRIu64 ",\"requests\":%" PRIu64
                               ",\"self\":%s}",
                               v[i].descriptors, v[i].waiters, v[i].timers, v[i].queued_bytes,
                               v[i].connected_ns, v[i].requests, v[i].self ? "true" : "false");
                }
                printf("]}\n");
        } else {
                Table t = { .ncols = 10, .head = head, .align = "rrrrrrrrrl" };
                for (size_t i = 0; i < n; i++) {
                        char comm[64], q[32], up[32];
                        text_clean(comm, sizeof(comm), v[i].comm);
                        fmt_bytes(q, sizeof(q), v[i].queued_bytes);
                        fmt_duration(up, sizeof(up), (int64_t)v[i].connected_ns);
                        table_add(&t, "%" PRIu64, v[i].id);
                        table_add(&t, "%" PRIu32, v[i].pid);
                        table_add(&t, "%" PRIu32, v[i].uid);
                        table_add(&t, "%" PRIu64, v[i].descriptors);
                        table_add(&t, "%" PRIu64, v[i].waiters);
                        table_add(&t, "%" PRIu64, v[i].timers);
                        table_add(&t, "%s", q);
                        table_add(&t, "%s", up);
                        table_add(&t, "%" PRIu64, v[i].requests);
                        table_add(&t, "%s%s", comm, v[i].self ? " (this pollctl)" : "");
                }
                table_print(&t, stdout);
        }
        free(v);
        return finish(x, 0);
}

/* ------------------------------------------------------------------ */
/* descs                                                                */

static int cmp_desc(const void *a, const void *b)
{
        const np_desc_info *x = a, *y = b;

        if (x->client != y->client)
                return (x->client > y->client) - (x->client < y->client);
        return (x->desc > y->desc) - (x->desc < y->desc);
}

static int cmd_descs(Ctx *x, int argc, char **argv)
{
        static const char *const head[] = { "CLIENT", "DESC",          "USER",
                                            "TYPE",   "READ",          "WRITE",
                                            "READ-DEADLINE", "WRITE-DEADLINE", "ERR" };
        np_desc_info *v = NULL;
        uint64_t client = 0;
        size_t n = 0;
        np_client *c;
        int r;

        if ((r = parse_client_opts(x, argc, argv, &client)) >= 0)
                return r;
        if (connect_daemon(x, &c))
                return 1;
        r = np_list_descs(c, client, &v, &n);
        np_disconnect(c);
        if (r < 0)
                return fail(x, r);
        qsort(v, n, sizeof(*v), cmp_desc);
        if (x->json) {
                printf("{\"descs\":[");
                for (size_t i = 0; i < n; i++) {
                        printf("%s{\"client\":%" PRIu64 ",\"desc\":\"0x%" PRIx64
                               "\",\"user\":%" PRIu64 ",\"type\":",
                               i ? "," : "", v[i].client, v[i].desc, v[i].user);
                        json_string(stdout, v[i].type);
                        printf(",\"read\":\"%s\",\"write\":\"%s\",\"read_deadline\":\"%s\""
                               ",\"read_deadline_ns\":%" PRId64 ",\"write_deadline\":\"%s\""
                               ",\"write_deadline_ns\":%" PRId64 ",\"event_err\":%s}",
                               dir_name(v[i].read), dir_name(v[i].write),
                               deadline_state(v[i].read_deadline_ns), v[i].read_deadline_ns,
                               deadline_state(v[i].write_deadline_ns), v[i].write_deadline_ns,
                               v[i].event_err ? "true" : "false");
                }
                printf("]}\n");
        } else {
                Table t = { .ncols = 9, .head = head, .align = "rlrllllll" };
                for (size_t i = 0; i < n; i++) {
                        char type[32], rd[32], wd[32];
                        text_clean(type, sizeof(type), v[i].type);
                        fmt_deadline(rd, sizeof(rd), v[i].read_deadline_ns);
                        fmt_deadline(wd, sizeof(wd), v[i].write_deadline_ns);
                        table_add(&t, "%" PRIu64, v[i].client);
                        table_add(&t, "0x%" PRIx64, v[i].desc);
                        table_add(&t, "%" PRIu64, v[i].user);
                        table_add(&t, "%s", type);
                        table_add(&t, "%s", dir_name(v[i].read));
                        table_add(&t, "%s", dir_name(v[i].write));
                        table_add(&t, "%s", rd);
                        table_add(&t, "%s", wd);
                        table_add(&t, "%s", v[i].event_err ? "yes" : "no");
                }
                table_print(&t, stdout);
        }
        free(v);
        return finish(x, 0);
}

/* ------------------------------------------------------------------ */
/* watch                                                                */

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
        stop_signal = sig;
}

static const char *watch_kind(int kind)
{
        static const char *const names[] = {
                [NP_WATCH_READY] = "ready",     [NP_WATCH_TIMEOUT] = "timeout",
                [NP_WATCH_CLOSING] = "closing", [NP_WATCH_OPEN] = "open",
                [NP_WATCH_CLOSE] = "close",     [NP_WATCH_CONNECT] = "connect",
                [NP_WATCH_DISCONNECT] = "disconnect",
        };
        return kind > 0 && kind <= NP_WATCH_DISCONNECT ? names[kind] : "unknown";
}

static bool watch_has_desc(int kind)
{
        return kind != NP_WATCH_CONNECT && kind != NP_WATCH_DISCONNECT;
}

static void watch_print(Ctx *x, const np_watch_event *e)
{
        const char *mode = mode_name(e->mode);

        if (x->json) {
                printf("{\"time_ns\":%" PRId64 ",\"event\":\"%s\",\"client\":%" PRIu64
                       ",\"pid\":%" PRIu32 ",\"comm\":",
                       e->time_ns, watch_kind(e->kind), e->client, e->pid);
                json_string(stdout, e->comm);
                if (watch_has_desc(e->kind))
                        printf(",\"desc\":\"0x%" PRIx64 "\"", e->desc);
                else
                        printf(",\"desc\":null");
                if (mode)
                        printf(",\"mode\":\"%s\"}\n", mode);
                else
                        printf(",\"mode\":null}\n");
                return;
        }
        char comm[64];
        text_clean(comm, sizeof(comm), e->comm);
        printf("%6" PRId64 ".%09" PRId64 "  %-10s  client=%" PRIu64 " pid=%" PRIu32,
               e->time_ns / NSEC_PER_SEC, e->time_ns % NSEC_PER_SEC, watch_kind(e->kind),
               e->client, e->pid);
        if (watch_has_desc(e->kind))
                printf(" desc=0x%" PRIx64, e->desc);
        if (mode)
                printf(" mode=%s", mode);
        printf(" comm=%s\n", comm);
}

static int cmd_watch(Ctx *x, int argc, char **argv)
{
        struct sigaction sa = { .sa_handler = on_stop }; /* no SA_RESTART */
        np_watch_event ev[64];
        uint64_t client = 0;
        np_client *c;
        int r;

        if ((r = parse_client_opts(x, argc, argv, &client)) >= 0)
                return r;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        if (connect_daemon(x, &c))
                return 1;
        r = np_watch(c, client);
        /* np_watch_read is not ended by signals or breaks: look at the flag
         * every 100 ms, which bounds how long an interrupt takes. */
        while (r >= 0 && !stop_signal) {
                r = np_watch_read(c, 100 * NSEC_PER_MSEC, ev, 64);
                for (int i = 0; i < r; i++) {
                        watch_print(x, &ev[i]);
                        /* One line at a time through a pipe, too. */
                        if (fflush(stdout) != 0)
                                break;
                }
                if (ferror(stdout))
                        break;
        }
        np_disconnect(c);
        if (r == -ECONNRESET) {
                fprintf(stderr, "pollctl watch: the daemon closed the connection\n");
                return 1;
        }
        if (r < 0)
                return fail(x, r);
        return finish(x, 0);
}

/* ------------------------------------------------------------------ */
/* wait                                                                 */

/* Opens path for mode, non-blocking.  A FIFO without a reader refuses a
 * non-blocking O_WRONLY open (ENXIO); O_RDWR is then the way to get a
 * writable end, as the FIFO is writable while its buffer has room. */
static int open_for(const char *path, int mode)
{
        int flags = (mode == NP_READ ? O_RDONLY : O_WRONLY) | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
        int fd = open(path, flags);

        if (fd < 0 && errno == ENXIO && mode == NP_WRITE)
                fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        return fd < 0 ? -errno : fd;
}

static int cmd_wait(Ctx *x, int argc, char **argv)
{
        static const struct option options[] = {
                { "read", no_argument, NULL, 'r' },
                { "write", no_argument, NULL, 'w' },
                { "timeout", required_argument, NULL, 't' },
                { "fd", required_argument, NULL, 'f' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *path = NULL;
        char what[64];
        int64_t timeout = 0;
        int mode = 0, fd = 0, opened = -1, opt, r;
        bool have_fd = false;
        np_client *c;
        np_desc d;

        while ((opt = getopt_long(argc, argv, "rwt:f:jh", options, NULL)) >= 0) {
                if ((r = common_opt(x, opt)) >= 0)
                        return r;
                if (r == HANDLED)
                        continue;
                char *end;
                switch (opt) {
                case 'r':
                case 'w':
                        if (mode && mode != opt)
                                return usage_error(x, "--read and --write exclude each other");
                        mode = opt;
                        break;
                case 't':
                        if (parse_duration_ns(optarg, &timeout) < 0)
                                return usage_error(x, "bad duration '%s' (try 500ms, 2s, 1m)",
                                                   optarg);
                        break;
                case 'f': {
                        errno = 0;
                        long v = strtol(optarg, &end, 10);
                        if (errno || end == optarg || *end || v < 0 || v > INT32_MAX)
                                return usage_error(x, "--fd takes a file descriptor number");
                        fd = (int)v;
                        have_fd = true;
                        break;
                }
                }
        }
        if (optind < argc)
                path = argv[optind++];
        if (optind < argc)
                return usage_error(x, "unexpected argument '%s'", argv[optind]);
        if (path && have_fd)
                return usage_error(x, "give --fd or PATH, not both");
        if (!mode)
                mode = NP_READ;
        if (path) {
                opened = open_for(path, mode);
                if (opened < 0) {
                        fprintf(stderr, "pollctl wait: %s: %s\n", path, strerror(-opened));
                        return 1;
                }
                fd = opened;
                snprintf(what, sizeof(what), "%.60s", path);
        } else
                snprintf(what, sizeof(what), "fd %d", fd);
        if (connect_daemon(x, &c)) {
                if (opened >= 0)
                        close(opened);
                return 1;
        }
        r = np_open(c, fd, 0, &d);
        if (r < 0) {
                fprintf(stderr, "pollctl wait: %s: %s\n", what,
                        r == -EPERM ? "not pollable (regular files and directories are always "
                                      "ready)"
                                    : np_strerror(r));
                np_disconnect(c);
                if (opened >= 0)
                        close(opened);
                return 1;
        }
        int64_t t0 = now_ns();
        if (timeout > 0)
                r = np_set_deadline(c, d, timeout, mode);
        if (r >= 0)
                r = np_wait(c, d, mode);
        int64_t elapsed = now_ns() - t0;
        (void)np_unblock(c, d);
        (void)np_close(c, d);
        np_disconnect(c);
        if (opened >= 0)
                close(opened);

        static const char *const result[] = { "ready", "closing", "timeout", "error" };
        if (x->json) {
                printf("{\"result\":\"%s\",\"mode\":\"%s\",\"elapsed_ns\":%" PRId64 "}\n",
                       r >= 0 && r <= NP_ERR_NOT_POLLABLE ? result[r] : "error",
                       mode_name(mode), elapsed);
                (void)finish(x, 0);
        }
        if (r == NP_OK)
                return finish(x, 0);
        if (r == NP_ERR_TIMEOUT)
                return EXIT_TIMEDOUT;
        fprintf(stderr, "pollctl wait: %s: %s\n", what, np_strerror(r));
        return 1;
}

/* ------------------------------------------------------------------ */

static const Command commands[] = {
        { "status", "",
          "Print the daemon's version, uptime, pid, connections, descriptors, parked\n"
          "waiters, armed timers, pollcache slots, events delivered, timeouts fired,\n"
          "breaks, protocol errors, resident memory, open fds and the limits in force.\n"
          "Needs root, or admin_users/admin_groups in netpolld.conf [access].\n",
          cmd_status },
        { "clients", "",
          "One row per connection: id, pid, uid, descriptors, parked waiters, armed\n"
          "timers, queued output, connected for, requests served, command name.\n"
          "Without admin rights only this connection is listed.\n",
          cmd_clients },
        { "descs", "[--client ID]",
          "One row per registered descriptor: connection, id, user cookie, file type,\n"
          "state of each direction (idle, ready, waiting, closing), time left until\n"
          "each deadline (or expired, none), and the event-error flag.\n"
          "\n"
          "  -c, --client ID  only the descriptors of connection ID\n",
          cmd_descs },
        { "watch", "[--client ID]",
          "Print events as they happen, one line each, with the daemon's monotonic\n"
          "time: ready, timeout, closing, open, close, connect, disconnect.  Runs\n"
          "until SIGINT or SIGTERM (exit 0).\n"
          "\n"
          "  -c, --client ID  only the events of connection ID\n",
          cmd_watch },
        { "ping", "[-c N]",
          "Time N round trips to the daemon (default 4); print min, median, p99, max.\n"
          "\n"
          "  -c, --count N    round trips, 1..10000000\n",
          cmd_ping },
        { "wait", "[--read|--write] [--timeout DURATION] [--fd N | PATH]",
          "Register a descriptor with the daemon and wait until it is ready for\n"
          "reading (default) or writing.  The descriptor is fd N (default 0, stdin) or\n"
          "PATH opened non-blocking.  DURATION: 250us, 500ms, 2s, 1m, 1h; none or 0\n"
          "waits forever.\n"
          "\n"
          "  -r, --read              wait until readable (default)\n"
          "  -w, --write             wait until writable\n"
          "  -t, --timeout DURATION  give up after DURATION\n"
          "  -f, --fd N              wait on this process's fd N\n"
          "\n"
          "Exit status: 0 ready, 124 timed out, 1 error, 2 usage.\n",
          cmd_wait },
};

static const Command *command_find(const char *name)
{
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(commands[i].name, name) == 0)
                        return &commands[i];
        return NULL;
}

static void usage(FILE *f)
{
        fprintf(f, "Usage: pollctl [--socket PATH] [--json] COMMAND [ARGS]\n"
                   "Inspect a running netpolld.\n"
                   "\n"
                   "Commands:\n");
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                fprintf(f, "  %s%s%s\n", commands[i].name, *commands[i].synopsis ? " " : "",
                        commands[i].synopsis);
        }
        fprintf(f,
                "\n"
                "Options:\n"
                "  -s, --socket PATH  daemon socket (default $NETPOLL_SOCKET, else %s)\n"
                "  -j, --json         print JSON (JSON lines for watch) instead of text\n"
                "  -h, --help         show this help and exit\n"
                "  -V, --version      show the version and exit\n"
                "\n"
                "`pollctl COMMAND --help` describes a command.  See pollctl(1).\n"
                "Exit status: 0 success, 1 error, 2 usage (wait: 124 timed out).\n",
                NP_DEFAULT_SOCKET);
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        Ctx x = { 0 };
        char prog[64];
        int opt;

        while ((opt = getopt_long(argc, argv, "+s:jhV", options, NULL)) >= 0) {
                switch (opt) {
                case 's':
                        x.socket = optarg;
                        break;
                case 'j':
                        x.json = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("pollctl %s\n", NETPOLL_VERSION);
                        return 0;
                default:
                        usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                fprintf(stderr, "pollctl: missing command\n");
                usage(stderr);
                return EXIT_USAGE;
        }
        const Command *cmd = command_find(argv[optind]);
        if (!cmd) {
                fprintf(stderr, "pollctl: unknown command '%s'\n", argv[optind]);
                usage(stderr);
                return EXIT_USAGE;
        }
        x.cmd = cmd->name;
        /* The command parses the rest afresh; getopt names it in errors. */
        argc -= optind;
        argv += optind;
        snprintf(prog, sizeof(prog), "pollctl %s", cmd->name);
        argv[0] = prog;
        optind = 0;
        return cmd->run(&x, argc, argv);
}
