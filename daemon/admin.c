/*
 * Introspection for pollctl.  The client list is built at request time
 * into an array the session holds until the turn's flush, and sent as
 * replies of at most LIST_CHUNK entries with `more` set on all but the
 * last, so a list of any length fits the 64 KiB datagram limit (it has at
 * most max_connections entries).  The descriptor list, which can be far
 * longer, is paged over loop turns by admin-descs.c.  Watch events are queued to each
 * subscriber as they happen; a subscriber that does not read is dropped by
 * the ordinary output cap like any other client.
 */
#include "admin.h"

#include <dirent.h>
#include <sys/resource.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/clock.h"
#include "admin-internal.h"
#include "access.h"
#include "log.h"
#include "pollcache.h"
#include "env.h"
#include "session.h"

#define LIST_CHUNK 256

bool admin_is_admin(const Session *s)
{
        const Config *c = s->server->config;

        return s->uid == 0 ||
               access_peer_matches(s->fd, s->uid, s->gid, &c->admin_users, &c->admin_groups);
}

void admin_deny(Session *s, const NpRequest *q)
{
        log_debug("client %" PRIu64 " (pid %d, %s): introspection refused: needs root or "
                  "[access] admin_users/admin_groups",
                  s->id, (int)s->pid, s->comm);
        session_push(s, &(Outbound){ .kind = OUT_REPLY, .id = q->id, .result = -EACCES });
}

/* Pushes a client list in replies of LIST_CHUNK; an empty list is one
 * empty reply. */
static void push_clients(Session *s, const NpRequest *q, void **items, size_t n)
{
        size_t i = 0;

        do {
                size_t k = n - i < LIST_CHUNK ? n - i : LIST_CHUNK;
                session_push(s, &(Outbound){ .kind = OUT_REPLY,
                                             .id = q->id,
                                             .more = i + k < n,
                                             .clients = (Netpoll__V1__ClientInfo **)items + i,
                                             .n_clients = k });
                i += k;
        } while (i < n);
}

/* Lays out n protobuf structs of size sz and an array of pointers to them
 * in one allocation the session holds until the flush. */
void **admin_alloc_list(Session *s, size_t n, size_t sz)
{
        void **v = malloc(n * (sizeof(void *) + sz) + 1);

        if (!v)
                return NULL;
        for (size_t i = 0; i < n; i++)
                v[i] = (char *)(v + n) + i * sz;
        session_hold(s, v);
        return v;
}

static void list_clients(Session *s, const NpRequest *q)
{
        Server *srv = s->server;
        bool all = admin_is_admin(s);
        size_t n = all ? srv->n_sessions : 1;
        int64_t now = now_ns();
        void **v = admin_alloc_list(s, n, sizeof(Netpoll__V1__ClientInfo));
        size_t k = 0;

        if (!v) {
                s->broken = true;
                return;
        }
        for (uint32_t i = 0; i < srv->sessions_cap && k < n; i++) {
                Session *o = srv->sessions[i];
                if (!o || (!all && o != s))
                        continue;
                Netpoll__V1__ClientInfo *ci = v[k++];
                netpoll__v1__client_info__init(ci);
                ci->id = o->id;
                ci->pid = (uint32_t)o->pid;
                ci->uid = (uint32_t)o->uid;
                ci->gid = (uint32_t)o->gid;
                ci->comm = o->comm;
                ci->name = o->name;
                ci->descriptors = o->owner.descriptors;
                ci->waiters = o->owner.waiters;
                ci->timers = o->owner.timers;
                ci->queued_bytes = o->queue_len;
                ci->connected_ns = (uint64_t)(now - o->connected_ns);
                ci->requests = o->requests;
                ci->self = o == s;
        }
        push_clients(s, q, v, k);
}

static void watch(Session *s, const NpRequest *q)
{
        uint64_t want = q->desc;

        if (want && want != s->id && !admin_is_admin(s)) {
                admin_deny(s, q);
                return;
        }
        if (!s->watching) {
                s->server->n_watchers++;
                s->next_watcher = s->server->watchers;
                s->server->watchers = s;
        }
        s->watching = true;
        s->watch_client = want;
        s->watch_admin = admin_is_admin(s);
        session_push(s, &(Outbound){ .kind = OUT_REPLY, .id = q->id });
}

/* Refreshes and returns s->status. */
static const Netpoll__V1__Status *admin_status(Server *s)
{
        Netpoll__V1__Status *st = &s->status;
        uint64_t waiters = 0, timers = 0, descriptors = 0;

        for (uint32_t i = 0; i < s->sessions_cap; i++) {
                Session *sess = s->sessions[i];
                if (!sess)
                        continue;
                descriptors += sess->owner.descriptors;
                waiters += sess->owner.waiters;
                timers += sess->owner.timers;
        }
        netpoll__v1__status__init(st);
        st->version = (char *)NETPOLL_VERSION;
        st->pid = (uint32_t)getpid();
        st->uptime_ns = (uint64_t)(now_ns() - s->started_ns);
        st->connections = s->n_sessions;
        st->descriptors = descriptors;
        st->waiters = waiters;
        st->timers = timers;
        st->events = s->stats.events;
        st->timeouts = s->stats.timeouts;
        st->protocol_errors = s->stats.protocol_errors;
        st->slots_in_use = s->cache.in_use;
        st->slots_allocated = pollcache_allocated(&s->cache);
        st->breaks = s->stats.wakeups;
        st->accepted = s->stats.accepted;
        st->started_unix_ns = (uint64_t)s->started_unix_ns;
        st->resumed_connections = s->resumed_connections;
        st->resumed_descriptors = s->resumed_descriptors;
        st->fd_store = s->store.systemd;
        st->instance = s->store.instance;
        st->max_connections = s->config->max_connections;
        st->max_connections_per_uid = s->config->max_connections_per_uid;
        st->max_descriptors = s->config->max_descriptors;
        st->max_output_bytes = s->config->max_output_bytes;
        st->handshake_timeout_ns = (uint64_t)s->config->handshake_timeout_ns;

        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
                st->fd_limit = rl.rlim_cur;
        long pages = 0, resident = 0;
        FILE *f = fopen("/proc/self/statm", "re");
        if (f) {
                if (fscanf(f, "%ld %ld", &pages, &resident) == 2)
                        st->rss_bytes = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
                fclose(f);
        }
        DIR *d = opendir("/proc/self/fd");
        if (d) {
                struct dirent *e;
                uint64_t n = 0;
                while ((e = readdir(d)))
                        n += e->d_name[0] != '.';
                closedir(d);
                st->open_fds = n - 1; /* the DIR's own */
        }
        return st;
}

void admin_handle(Session *s, const NpRequest *q)
{
        switch (q->op) {
        case NETPOLL__V1__OP__OP_STATUS:
                if (!admin_is_admin(s)) {
                        admin_deny(s, q);
                        return;
                }
                session_push(s, &(Outbound){ .kind = OUT_REPLY,
                                             .id = q->id,
                                             .status = admin_status(s->server) });
                return;
        case NETPOLL__V1__OP__OP_LIST_CLIENTS:
                list_clients(s, q);
                return;
        case NETPOLL__V1__OP__OP_LIST_DESCS:
                admin_descs_start(s, q);
                return;
        case NETPOLL__V1__OP__OP_WATCH:
                watch(s, q);
                return;
        case NETPOLL__V1__OP__OP_UPGRADE:
                if (!admin_is_admin(s)) {
                        admin_deny(s, q);
                        return;
                }
                log_notice("client %" PRIu64 " (pid %d, %s) asked for an upgrade in place", s->id,
                           (int)s->pid, s->comm);
                env_request_upgrade(s->server);
                session_push(s, &(Outbound){ .kind = OUT_REPLY, .id = q->id });
                return;
        }
}

void admin_session_ending(Session *s)
{
        admin_unwatch(s);
        admin_descs_end(s);
}

void admin_unwatch(Session *s)
{
        Server *srv = s->server;

        if (!s->watching)
                return;
        for (Session **pp = &srv->watchers; *pp; pp = &(*pp)->next_watcher)
                if (*pp == s) {
                        *pp = s->next_watcher;
                        break;
                }
        s->watching = false;
        s->next_watcher = NULL;
        srv->n_watchers--;
}

void admin_watch(Server *srv, int kind, const Session *about, uint64_t desc, int mode)
{
        int64_t now = now_ns();

        /* The subscribers only: this runs for every outcome. */
        for (Session *w = srv->watchers; w; w = w->next_watcher) {
                if (w->dead)
                        continue;
                /* watch_admin was decided at subscription (and on reload):
                 * this runs for every outcome, so no per-event getsockopt. */
                if (w->watch_client ? w->watch_client != about->id
                                    : !(w == about || w->watch_admin))
                        continue;
                session_push(w, &(Outbound){ .kind = OUT_WATCH,
                                             .watch_kind = (uint8_t)kind,
                                             .time_ns = now,
                                             .client = about->id,
                                             .desc = desc,
                                             .mode = mode,
                                             .pid = (uint32_t)about->pid,
                                             .comm = about->comm });
        }
}
