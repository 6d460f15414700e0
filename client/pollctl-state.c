/*
 * pollctl status, clients and descs: each connects, asks the daemon once
 * for a snapshot (np_status, np_list_clients, np_list_descs), disconnects,
 * and prints it as aligned text or one JSON document.  Lists are sorted by
 * id first, so the output does not depend on the daemon's order.
 */
#include "pollctl-state.h"

#include <inttypes.h>
#include <errno.h>
#include <unistd.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "netpoll.h"
#include "../common/clock.h"
#include "pollctl-format.h"
#include "pollctl.h"

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
               ",\"handshake_timeout_ns\":%" PRIu64 "},\"started_unix_ns\":%" PRId64
               ",\"instance\":%" PRIu64 ",\"resumed_connections\":%" PRIu64
               ",\"resumed_descriptors\":%" PRIu64 ",\"fd_store\":%s}\n",
               st->pid, st->uptime_ns, st->connections, st->descriptors, st->waiters, st->timers,
               st->events, st->timeouts, st->protocol_errors, st->slots_in_use,
               st->slots_allocated, st->breaks, st->rss_bytes, st->open_fds, st->fd_limit,
               st->accepted, st->max_connections, st->max_connections_per_uid,
               st->max_descriptors, st->max_output_bytes, st->handshake_timeout_ns,
               st->started_unix_ns, st->instance, st->resumed_connections,
               st->resumed_descriptors, st->fd_store ? "true" : "false");
}

/* "2026-12-02 17:10:00 UTC" */
static void fmt_when(char *buf, size_t len, int64_t unix_ns)
{
        time_t t = (time_t)(unix_ns / NSEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
                snprintf(buf, len, "?");
}

static void status_text(const struct np_status *st)
{
        char version[64], up[32], rss[32], out[32], hs[32], when[64];

        text_clean(version, sizeof(version), st->version);
        fmt_duration(up, sizeof(up), (int64_t)st->uptime_ns);
        fmt_bytes(rss, sizeof(rss), st->rss_bytes);
        fmt_bytes(out, sizeof(out), st->max_output_bytes);
        fmt_duration(hs, sizeof(hs), (int64_t)st->handshake_timeout_ns);
        fmt_when(when, sizeof(when), st->started_unix_ns);
        printf("version            %s\n"
               "pid                %" PRIu32 "\n"
               "uptime             %s\n"
               "started            %s, instance %" PRIu64 "\n"
               "resumed            %" PRIu64 " connections, %" PRIu64 " descriptors%s\n"
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
               version, st->pid, up, when, st->instance, st->resumed_connections,
               st->resumed_descriptors, st->fd_store ? " (fd store: on)" : " (fd store: off)",
               st->connections, st->accepted, st->descriptors,
               st->waiters, st->timers, st->slots_in_use, st->slots_allocated, st->events,
               st->timeouts, st->breaks, st->protocol_errors, rss, st->open_fds, st->fd_limit,
               st->max_connections, st->max_connections_per_uid, st->max_descriptors, out, hs);
}

int cmd_status(Ctx *x, int argc, char **argv)
{
        struct np_status st;
        np_client *c;
        int r;

        if ((r = pollctl_parse_plain_opts(x, argc, argv)) >= 0)
                return r;
        if (pollctl_connect(x, &c))
                return 1;
        r = np_status(c, &st);
        np_disconnect(c);
        if (r < 0)
                return pollctl_fail(x, r);
        if (x->json)
                status_json(&st);
        else
                status_text(&st);
        return pollctl_finish(x, 0);
}

/* ------------------------------------------------------------------ */
/* clients                                                              */

static int cmp_client(const void *a, const void *b)
{
        uint64_t x = ((const np_client_info *)a)->id, y = ((const np_client_info *)b)->id;
        return (x > y) - (x < y);
}

int cmd_clients(Ctx *x, int argc, char **argv)
{
        static const char *const head[] = { "ID",     "PID",       "UID",      "DESCS",
                                            "WAITERS", "TIMERS",   "QUEUED",   "CONNECTED",
                                            "REQUESTS", "COMMAND" };
        np_client_info *v = NULL;
        size_t n = 0;
        np_client *c;
        int r;

        if ((r = pollctl_parse_plain_opts(x, argc, argv)) >= 0)
                return r;
        if (pollctl_connect(x, &c))
                return 1;
        r = np_list_clients(c, &v, &n);
        np_disconnect(c);
        if (r < 0)
                return pollctl_fail(x, r);
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
        return pollctl_finish(x, 0);
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

int cmd_descs(Ctx *x, int argc, char **argv)
{
        static const char *const head[] = { "CLIENT", "DESC",          "USER",
                                            "TYPE",   "READ",          "WRITE",
                                            "READ-DEADLINE", "WRITE-DEADLINE", "ERR" };
        np_desc_info *v = NULL;
        uint64_t client = 0;
        size_t n = 0;
        np_client *c;
        int r;

        if ((r = pollctl_parse_client_opts(x, argc, argv, &client)) >= 0)
                return r;
        if (pollctl_connect(x, &c))
                return 1;
        r = np_list_descs(c, client, &v, &n);
        np_disconnect(c);
        if (r < 0)
                return pollctl_fail(x, r);
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
        return pollctl_finish(x, 0);
}

/* ------------------------------------------------------------------ */
/* upgrade                                                              */

int cmd_upgrade(Ctx *x, int argc, char **argv)
{
        struct np_status before, after;
        np_client *c;
        int r;

        if ((r = pollctl_parse_plain_opts(x, argc, argv)) >= 0)
                return r;
        if (pollctl_connect(x, &c))
                return 1;
        r = np_status(c, &before);
        if (r == 0)
                r = np_upgrade(c);
        /* This connection is resumed too: ask the new instance. */
        for (int i = 0; r == 0; i++) {
                r = np_status(c, &after);
                if (r < 0 || after.instance > before.instance)
                        break;
                if (i == 1000) {
                        r = -ETIMEDOUT;
                        break;
                }
                usleep(10000);
        }
        np_disconnect(c);
        if (r < 0)
                return pollctl_fail(x, r);
        if (x->json)
                printf("{\"pid\":%" PRIu32 ",\"instance\":%" PRIu64 ",\"resumed_connections\":%" PRIu64
                       ",\"resumed_descriptors\":%" PRIu64 "}\n",
                       after.pid, after.instance, after.resumed_connections,
                       after.resumed_descriptors);
        else
                printf("upgraded in place: pid %" PRIu32 ", instance %" PRIu64 " -> %" PRIu64
                       ", resumed %" PRIu64 " connections and %" PRIu64 " descriptors\n",
                       after.pid, before.instance, after.instance, after.resumed_connections,
                       after.resumed_descriptors);
        return pollctl_finish(x, 0);
}
