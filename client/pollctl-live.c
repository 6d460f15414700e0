/*
 * pollctl ping, watch and wait: the commands that see the daemon at work
 * over time rather than print one snapshot.  ping times round trips, watch
 * streams events until SIGINT or SIGTERM, wait registers one descriptor
 * and blocks until it is ready, with the exit status of timeout(1) when a
 * deadline fires first.
 */
#include "pollctl-live.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/clock.h"
#include "../common/duration.h"
#include "netpoll.h"
#include "pollctl-format.h"
#include "pollctl.h"

#define EXIT_TIMEDOUT 124 /* as timeout(1) */

/* ------------------------------------------------------------------ */
/* ping                                                                 */

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return (x > y) - (x < y);
}

int cmd_ping(Ctx *x, int argc, char **argv)
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
                if ((r = pollctl_common_opt(x, opt)) >= 0)
                        return r;
                if (r == HANDLED)
                        continue;
                char *end;
                errno = 0;
                count = strtol(optarg, &end, 10);
                if (errno || *end || end == optarg || count < 1 || count > 10000000)
                        return pollctl_usage_error(x, "-c takes 1..10000000");
        }
        if ((r = pollctl_no_operands(x, argc, argv)) >= 0)
                return r;
        int64_t *rtt = calloc((size_t)count, sizeof(*rtt));
        if (!rtt)
                oom();
        if (pollctl_connect(x, &c)) {
                free(rtt);
                return 1;
        }
        for (long i = 0; i < count; i++) {
                int64_t t0 = now_ns();
                r = np_ping(c);
                if (r < 0) {
                        np_disconnect(c);
                        free(rtt);
                        return pollctl_fail(x, r);
                }
                rtt[i] = now_ns() - t0;
        }
        np_disconnect(c);
        qsort(rtt, (size_t)count, sizeof(*rtt), cmp_i64);
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
        return pollctl_finish(x, 0);
}

/* ------------------------------------------------------------------ */
/* watch                                                                */

static volatile sig_atomic_t stop_signal;
/* The connection the handler breaks, or NULL.  np_break is async-signal-safe
 * (a lock-free atomic and write(2) on its eventfd).  pollctl has one thread,
 * so the handler runs between two of cmd_watch's steps: once this is NULL
 * again, no handler holds the connection cmd_watch goes on to free. */
static np_client *_Atomic stop_client;

static void on_stop(int sig)
{
        np_client *c = atomic_load(&stop_client);

        stop_signal = sig;
        if (c)
                (void)np_break(c);
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

int cmd_watch(Ctx *x, int argc, char **argv)
{
        /* SA_RESTART: the handler ends the wait through np_break, so no
         * call needs EINTR, and a write to stdout is not cut short. */
        struct sigaction sa = { .sa_handler = on_stop, .sa_flags = SA_RESTART };
        np_watch_event ev[64];
        uint64_t client = 0;
        np_client *c;
        int r;

        if ((r = pollctl_parse_client_opts(x, argc, argv, &client)) >= 0)
                return r;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        if (pollctl_connect(x, &c))
                return 1;
        atomic_store(&stop_client, c);
        r = np_watch(c, client);
        /* np_watch_read is ended by an np_break (returning 0), which the
         * handler sends; one sent between the test of stop_signal and the
         * read is kept by the library and ends that read at once. */
        while (r >= 0 && !stop_signal) {
                r = np_watch_read(c, -1, ev, 64);
                for (int i = 0; i < r; i++) {
                        watch_print(x, &ev[i]);
                        /* One line at a time through a pipe, too. */
                        if (fflush(stdout) != 0)
                                break;
                }
                if (ferror(stdout))
                        break;
        }
        atomic_store(&stop_client, NULL);
        np_disconnect(c);
        if (r == -ECONNRESET) {
                fprintf(stderr, "pollctl watch: the daemon closed the connection\n");
                return 1;
        }
        if (r < 0)
                return pollctl_fail(x, r);
        return pollctl_finish(x, 0);
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

int cmd_wait(Ctx *x, int argc, char **argv)
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
                if ((r = pollctl_common_opt(x, opt)) >= 0)
                        return r;
                if (r == HANDLED)
                        continue;
                char *end;
                switch (opt) {
                case 'r':
                case 'w':
                        if (mode && mode != opt)
                                return pollctl_usage_error(
                                        x, "--read and --write exclude each other");
                        mode = opt;
                        break;
                case 't':
                        if (parse_duration_ns(optarg, &timeout) < 0)
                                return pollctl_usage_error(
                                        x, "bad duration '%s' (try 500ms, 2s, 1m)", optarg);
                        break;
                case 'f': {
                        errno = 0;
                        long v = strtol(optarg, &end, 10);
                        if (errno || end == optarg || *end || v < 0 || v > INT32_MAX)
                                return pollctl_usage_error(
                                        x, "--fd takes a file descriptor number");
                        fd = (int)v;
                        have_fd = true;
                        break;
                }
                }
        }
        if (optind < argc)
                path = argv[optind++];
        if (optind < argc)
                return pollctl_usage_error(x, "unexpected argument '%s'", argv[optind]);
        if (path && have_fd)
                return pollctl_usage_error(x, "give --fd or PATH, not both");
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
        if (pollctl_connect(x, &c)) {
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
                (void)pollctl_finish(x, 0);
        }
        if (r == NP_OK)
                return pollctl_finish(x, 0);
        if (r == NP_ERR_TIMEOUT)
                return EXIT_TIMEDOUT;
        fprintf(stderr, "pollctl wait: %s: %s\n", what, np_strerror(r));
        return 1;
}
