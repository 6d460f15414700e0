/*
 * Introspection for pollctl.  Lists are built at request time into arrays
 * the session holds until the turn's flush, and sent as replies of at most
 * LIST_CHUNK entries with `more` set on all but the last, so a list of any
 * length fits the 64 KiB datagram limit.  Watch events are queued to each
 * subscriber as they happen; a subscriber that does not read is dropped by
 * the ordinary output cap like any other client.
 */
#include "admin.h"

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
#include "listener.h"
#include "log.h"
#include "pollcache.h"
#include "server.h"
#include "session.h"

#define LIST_CHUNK 256

bool admin_request(int op)
{
        return op == NETPOLL__V1__OP__OP_STATUS || op == NETPOLL__V1__OP__OP_LIST_CLIENTS ||
               op == NETPOLL__V1__OP__OP_LIST_DESCS || op == NETPOLL__V1__OP__OP_WATCH;
}

bool admin_is_admin(const Session *s)
{
        const Config *c = s->server->config;

        return s->uid == 0 ||
               listener_peer_matches(s->fd, s->uid, s->gid, &c->admin_users, &c->admin_groups);
}

/* May s see connection `about`? */
static bool may_see(const Session *s, const Session *about)
{
        return s == about || admin_is_admin(s);
}

static void deny(Session *s, const NpRequest *q)
{
        log_debug("client %" PRIu64 " (pid %d, %s): introspection refused: needs root or "
                  "[access] admin_users/admin_groups",
                  s->id, (int)s->pid, s->comm);
        session_push(s, &(Outbound){ .kind = OUT_REPLY, .id = q->id, .result = -EACCES });
}

/* Pushes a list reply in chunks; an empty list is one empty reply. */
static void push_list(Session *s, const NpRequest *q, void **items, size_t n, bool clients)
{
        size_t i = 0;

        do {
                size_t k = n - i < LIST_CHUNK ? n - i : LIST_CHUNK;
                Outbound o = { .kind = OUT_REPLY, .id = q->id, .more = i + k < n };
                if (clients) {
                        o.clients = (Netpoll__V1__ClientInfo **)items + i;
                        o.n_clients = k;
                } else {
                        o.descs = (Netpoll__V1__DescInfo **)items + i;
                        o.n_descs = k;
                }
                session_push(s, &o);
                i += k;
        } while (i < n);
}

/* Lays out n protobuf structs of size sz and an array of pointers to them
 * in one allocation the session holds until the flush. */
static void **alloc_list(Session *s, size_t n, size_t sz)
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
        void **v = alloc_list(s, n, sizeof(Netpoll__V1__ClientInfo));
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
        push_list(s, q, v, k, true);
}

/* What kind of file the daemon's copy is, for `pollctl descs`. */
static const char *fd_type(int fd)
{
        struct stat st;
        char link[64], path[32];

        if (fstat(fd, &st) < 0)
                return "?";
        if (S_ISSOCK(st.st_mode)) {
                int domain = 0, type = 0;
                socklen_t l = sizeof(int);
                getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l);
                l = sizeof(int);
                getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l);
                if (domain == AF_UNIX)
                        return "unix";
                if (domain == AF_INET || domain == AF_INET6)
                        return type == SOCK_STREAM ? "tcp" : type == SOCK_DGRAM ? "udp" : "inet";
                return "socket";
        }
        if (S_ISCHR(st.st_mode))
                return isatty(fd) ? "tty" : "chardev";
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        link[n > 0 ? n : 0] = '\0';
        if (S_ISFIFO(st.st_mode))
                return strncmp(link, "pipe:", 5) == 0 ? "pipe" : "fifo";
        static const char *const anon[] = { "eventfd", "timerfd", "eventpoll", "signalfd",
                                            "inotify", "pidfd", "fanotify" };
        for (size_t i = 0; i < sizeof(anon) / sizeof(anon[0]); i++) {
                char want[32];
                snprintf(want, sizeof(want), "anon_inode:[%s]", anon[i]);
                if (strcmp(link, want) == 0)
                        return strcmp(anon[i], "eventpoll") == 0 ? "epoll" : anon[i];
        }
        return "other";
}

static Netpoll__V1__DirState dir_state(const PollDesc *pd, const PollSem *sem)
{
        if (sem->state == POLL_SEM_PARKED)
                return NETPOLL__V1__DIR_STATE__DIR_WAITING;
        if (pd->closing)
                return NETPOLL__V1__DIR_STATE__DIR_CLOSING;
        if (sem->state == POLL_SEM_READY)
                return NETPOLL__V1__DIR_STATE__DIR_READY;
        return NETPOLL__V1__DIR_STATE__DIR_IDLE;
}

/* Remaining time of a deadline: 0 none, -1 expired, else ns left (>= 1). */
static int64_t remaining(int64_t d, int64_t now)
{
        if (d == 0)
                return 0;
        if (d < 0 || d <= now)
                return -1;
        return d - now;
}

static void list_descs(Session *s, const NpRequest *q)
{
        Server *srv = s->server;
        PollCache *c = &srv->cache;
        uint64_t want = q->desc; /* client id filter */
        bool admin = admin_is_admin(s);
        int64_t now = now_ns();
        size_t n = 0;

        if (want && want != s->id && !admin) {
                deny(s, q);
                return;
        }
        for (uint32_t i = 0; i < srv->sessions_cap; i++) {
                Session *o = srv->sessions[i];
                if (o && (want ? o->id == want : may_see(s, o)))
                        n += o->owner.descriptors;
        }
        void **v = alloc_list(s, n, sizeof(Netpoll__V1__DescInfo));
        size_t k = 0;
        if (!v) {
                s->broken = true;
                return;
        }
        for (uint32_t i = 0; i < srv->sessions_cap; i++) {
                Session *o = srv->sessions[i];
                if (!o || !(want ? o->id == want : may_see(s, o)))
                        continue;
                uint32_t iter = 0;
                for (PollSlot *slot; k < n && (slot = pollcache_next_owned(c, &o->owner, &iter));) {
                        const PollDesc *pd = &slot->pd;
                        Netpoll__V1__DescInfo *di = v[k++];
                        netpoll__v1__desc_info__init(di);
                        di->client = o->id;
                        di->desc = pollcache_token(slot);
                        di->user = pd->user;
                        di->type = (char *)fd_type(pd->fd);
                        di->read = dir_state(pd, &pd->rg);
                        di->write = dir_state(pd, &pd->wg);
                        /* Unblock stops the timers (Go keeps rd/wd, but
                         * nothing will ever fire): show none. */
                        di->read_deadline_ns = pd->closing ? 0 : remaining(pd->rd, now);
                        di->write_deadline_ns = pd->closing ? 0 : remaining(pd->wd, now);
                        di->event_err = pd->event_err;
                }
        }
        push_list(s, q, v, k, false);
}

static void watch(Session *s, const NpRequest *q)
{
        uint64_t want = q->desc;

        if (want && want != s->id && !admin_is_admin(s)) {
                deny(s, q);
                return;
        }
        if (!s->watching)
                s->server->n_watchers++;
        s->watching = true;
        s->watch_client = want;
        s->watch_admin = admin_is_admin(s);
        session_push(s, &(Outbound){ .kind = OUT_REPLY, .id = q->id });
}

void admin_handle(Session *s, const NpRequest *q)
{
        switch (q->op) {
        case NETPOLL__V1__OP__OP_STATUS:
                if (!admin_is_admin(s)) {
                        deny(s, q);
                        return;
                }
                session_push(s, &(Outbound){ .kind = OUT_REPLY,
                                             .id = q->id,
                                             .status = server_status(s->server) });
                return;
        case NETPOLL__V1__OP__OP_LIST_CLIENTS:
                list_clients(s, q);
                return;
        case NETPOLL__V1__OP__OP_LIST_DESCS:
                list_descs(s, q);
                return;
        case NETPOLL__V1__OP__OP_WATCH:
                watch(s, q);
                return;
        }
}

void admin_watch(Server *srv, int kind, const Session *about, uint64_t desc, int mode)
{
        int64_t now = now_ns();

        for (uint32_t i = 0; i < srv->sessions_cap; i++) {
                Session *w = srv->sessions[i];
                if (!w || !w->watching || w->dead)
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
