/*
 * pollctl: the netpolld debugging CLI, a thin user of libnetpoll.
 * This version answers `ping` and `status`.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"
#include "netpoll.h"

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: pollctl [--socket PATH] [--json] COMMAND [ARGS]\n"
                "Inspect a running netpolld.\n"
                "\n"
                "Commands:\n"
                "  ping [-c N]   N round trips (default 4); prints min/median/p99/max\n"
                "  status        daemon version, uptime, connections, descriptors, waiters\n"
                "\n"
                "Options:\n"
                "  -s, --socket PATH  daemon socket (default $NETPOLL_SOCKET, else %s)\n"
                "  -j, --json         print JSON instead of text\n"
                "  -h, --help         show this help and exit\n"
                "  -V, --version      show the version and exit\n"
                "\n"
                "Exit status: 0 success, 1 error, 2 usage.\n",
                NP_DEFAULT_SOCKET);
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return (x > y) - (x < y);
}

static void fmt_ns(char *buf, size_t len, int64_t ns)
{
        if (ns < 10 * NSEC_PER_USEC)
                snprintf(buf, len, "%" PRId64 " ns", ns);
        else if (ns < 10 * NSEC_PER_MSEC)
                snprintf(buf, len, "%.1f us", ns / 1e3);
        else if (ns < 10 * NSEC_PER_SEC)
                snprintf(buf, len, "%.1f ms", ns / 1e6);
        else
                snprintf(buf, len, "%.1f s", ns / 1e9);
}

static int cmd_ping(np_client *c, int argc, char **argv, bool json)
{
        long count = 4;
        int opt;

        optind = 1;
        while ((opt = getopt(argc, argv, "c:h")) >= 0) {
                char *end;
                switch (opt) {
                case 'c':
                        count = strtol(optarg, &end, 10);
                        if (*end || count < 1 || count > 10000000) {
                                fprintf(stderr, "pollctl ping: -c takes 1..10000000\n");
                                return 2;
                        }
                        break;
                case 'h':
                        printf("Usage: pollctl ping [-c N]\nTimes N round trips to the daemon.\n");
                        return 0;
                default:
                        return 2;
                }
        }
        int64_t *rtt = calloc(count, sizeof(*rtt));
        if (!rtt) {
                fprintf(stderr, "pollctl: out of memory\n");
                return 1;
        }
        for (long i = 0; i < count; i++) {
                int64_t t0 = now_ns();
                int r = np_ping(c);
                if (r < 0) {
                        fprintf(stderr, "pollctl ping: %s\n", np_strerror(r));
                        free(rtt);
                        return 1;
                }
                rtt[i] = now_ns() - t0;
        }
        qsort(rtt, count, sizeof(*rtt), cmp_i64);
        int64_t min = rtt[0], med = rtt[count / 2], p99 = rtt[(count * 99) / 100],
                max = rtt[count - 1];
        if (json)
                printf("{\"count\":%ld,\"min_ns\":%" PRId64 ",\"median_ns\":%" PRId64
                       ",\"p99_ns\":%" PRId64 ",\"max_ns\":%" PRId64 "}\n",
                       count, min, med, p99, max);
        else {
                char a[32], b[32], d[32], e[32];
                fmt_ns(a, sizeof(a), min);
                fmt_ns(b, sizeof(b), med);
                fmt_ns(d, sizeof(d), p99);
                fmt_ns(e, sizeof(e), max);
                printf("%ld round trips: min %s, median %s, p99 %s, max %s\n", count, a, b, d, e);
        }
        free(rtt);
        return 0;
}

static int cmd_status(np_client *c, bool json)
{
        struct np_status st;
        int r = np_status(c, &st);

        if (r < 0) {
                fprintf(stderr, "pollctl status: %s\n", np_strerror(r));
                return 1;
        }
        if (json) {
                printf("{\"version\":\"%s\",\"pid\":%" PRIu32 ",\"uptime_ns\":%" PRIu64
                       ",\"connections\":%" PRIu64 ",\"descriptors\":%" PRIu64
                       ",\"waiters\":%" PRIu64 ",\"timers\":%" PRIu64 ",\"events\":%" PRIu64
                       ",\"timeouts\":%" PRIu64 ",\"protocol_errors\":%" PRIu64
                       ",\"slots_in_use\":%" PRIu64 ",\"slots_allocated\":%" PRIu64 "}\n",
                       st.version, st.pid, st.uptime_ns, st.connections, st.descriptors,
                       st.waiters, st.timers, st.events, st.timeouts, st.protocol_errors,
                       st.slots_in_use, st.slots_allocated);
                return 0;
        }
        char up[32];
        fmt_ns(up, sizeof(up), (int64_t)st.uptime_ns);
        printf("version          %s\n"
               "pid              %" PRIu32 "\n"
               "uptime           %s\n"
               "connections      %" PRIu64 "\n"
               "descriptors      %" PRIu64 "\n"
               "waiters          %" PRIu64 "\n"
               "timers           %" PRIu64 "\n"
               "events           %" PRIu64 "\n"
               "timeouts         %" PRIu64 "\n"
               "protocol errors  %" PRIu64 "\n"
               "pollcache slots  %" PRIu64 " in use / %" PRIu64 " allocated\n",
               st.version, st.pid, up, st.connections, st.descriptors, st.waiters, st.timers,
               st.events, st.timeouts, st.protocol_errors, st.slots_in_use, st.slots_allocated);
        return 0;
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
        const char *sock = NULL;
        bool json = false;
        int opt, r;

        while ((opt = getopt_long(argc, argv, "+s:jhV", options, NULL)) >= 0) {
                switch (opt) {
                case 's':
                        sock = optarg;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("pollctl %s\n", NETPOLL_VERSION);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind >= argc) {
                fprintf(stderr, "pollctl: missing command\n");
                usage(stderr);
                return 2;
        }
        const char *cmd = argv[optind];
        if (strcmp(cmd, "ping") && strcmp(cmd, "status")) {
                fprintf(stderr, "pollctl: unknown command '%s'\n", cmd);
                usage(stderr);
                return 2;
        }
        np_client *c;
        r = np_connect(sock, &c);
        if (r < 0) {
                fprintf(stderr, "pollctl: cannot connect to %s: %s\n",
                        sock ? sock : getenv("NETPOLL_SOCKET") ? getenv("NETPOLL_SOCKET")
                                                               : NP_DEFAULT_SOCKET,
                        np_strerror(r));
                return 1;
        }
        if (strcmp(cmd, "ping") == 0)
                r = cmd_ping(c, argc - optind, argv + optind, json);
        else
                r = cmd_status(c, json);
        np_disconnect(c);
        return r;
}
