/*
 * OP_LIST_DESCS, paged over loop turns.  A listing of every descriptor in
 * one turn let one request cost milliseconds (thousands of fds, a statx
 * and a getsockopt or readlink each) while every other client waited.  So
 * a listing is a job of its connection's: each turn it sends one reply of
 * at most DESCS_PAGE entries (`more` set until the last), charged to the
 * lister's work budget, and only while its output queue is empty, so a
 * lister that does not read holds one page at most.  All listings together
 * get one page a millisecond, taking turns: a listing of 16,384
 * descriptors takes a quarter of a second, and four listers looping cost
 * the other clients no more than one.  The client library gathers the pages into one list, as before.
 *
 * While a listing runs, its connection's input is held back (epoll no
 * longer reports it readable), so a client that pipelines listings gets
 * them one after the other, in order.
 *
 * The cursor is (connection index, its generation, the next slot of that
 * connection's descriptor list, oldest first); freeing a slot moves every
 * cursor on it to the next.  The list is not a snapshot: a descriptor
 * opened during the listing is listed if the cursor has not passed its
 * connection's end, one closed before the cursor reaches it is not, and
 * every descriptor open throughout is listed exactly once; a connection
 * that ends is passed over.  Every job ends after at most one pass over
 * the connection table.
 */
#include "admin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "../common/clock.h"
#include "admin-internal.h"
#include "pollcache.h"
#include "env.h"
#include "session.h"
#include "session-internal.h"

#define DESCS_PAGE 64
/* Finding a descriptor's kind (a statx and one or two getsockopt or a
 * readlink, about 1-2 us) costs this many units of work; describing it
 * once the kind is known, one. */
#define DESCS_ENTRY_COST (WORK_BUDGET / 32)
/* One page every DESCS_INTERVAL_NS for all listings together, taking
 * turns: some 20-60 us a millisecond at most, however many list. */
#define DESCS_INTERVAL_NS (1000 * 1000)

/* Whether major number maj is a terminal's (tty, console, ptmx, pts). */
static bool tty_major(unsigned maj)
{
        return maj == 4 || maj == 5 || (maj >= 136 && maj <= 143);
}

/* What kinds of file `pollctl descs` tells apart; PollDesc.kind indexes
 * this (0: not known yet). */
static const char *const kinds[] = { "?",      "unix",    "tcp",     "udp",    "inet",
                                     "socket", "tty",     "chardev", "pipe",   "fifo",
                                     "eventfd", "timerfd", "epoll",  "signalfd", "inotify",
                                     "pidfd",  "fanotify", "other" };

static uint8_t kind_of(const char *name)
{
        for (uint8_t i = 1; i < sizeof(kinds) / sizeof(kinds[0]); i++)
                if (strcmp(kinds[i], name) == 0)
                        return i;
        return 0;
}

/* What kind of file the daemon's copy is.  Only calls that never wait on
 * the file: statx from the cache, getsockopt, and a readlink of
 * /proc/self/fd (no ioctl, which a userspace device answers).  Some 1-2 us,
 * so describe() asks once per descriptor and keeps the answer. */
static const char *fd_type(int fd)
{
        struct statx stx;
        char link[64], path[32];

        if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &stx) < 0)
                return "?";
        if (S_ISSOCK(stx.stx_mode)) {
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
        if (S_ISCHR(stx.stx_mode))
                return tty_major(stx.stx_rdev_major) ? "tty" : "chardev";
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        link[n > 0 ? n : 0] = '\0';
        if (S_ISFIFO(stx.stx_mode))
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

/* Fills di; returns the work units it cost (finding the kind is most). */
static uint64_t describe(Netpoll__V1__DescInfo *di, const Session *o, PollSlot *slot,
                         int64_t now)
{
        PollDesc *pd = &slot->pd;
        uint64_t cost = 1;

        if (!pd->kind) {
                pd->kind = kind_of(fd_type(pd->fd));
                cost = DESCS_ENTRY_COST;
        }
        netpoll__v1__desc_info__init(di);
        di->client = o->id;
        di->desc = pollcache_token(slot);
        di->user = pd->user;
        di->type = (char *)kinds[pd->kind];
        di->read = dir_state(pd, &pd->rg);
        di->write = dir_state(pd, &pd->wg);
        /* Unblock stops the timers (Go keeps rd/wd, but nothing will ever
         * fire): show none. */
        di->read_deadline_ns = pd->closing ? 0 : remaining(pd->rd, now);
        di->write_deadline_ns = pd->closing ? 0 : remaining(pd->wd, now);
        di->event_err = pd->event_err;
        return cost;
}

/* The connection the cursor is on, moving it past ended or invisible ones;
 * NULL at the end of the table. */
static Session *cursor_session(Session *s)
{
        Server *srv = s->server;
        DescsJob *j = &s->descs;

        for (; j->index < srv->sessions_cap; j->index++, j->next_slot = 0, j->gen = 0) {
                Session *o = srv->sessions[j->index];
                if (!o || (j->want ? o->id != j->want : !(o == s || j->admin)))
                        continue;
                uint32_t gen = srv->session_gens[j->index];
                if (j->gen == 0)
                        j->gen = gen;
                else if (j->gen != gen)
                        continue; /* ended; another took its place */
                return o;
        }
        return NULL;
}

/* Sends the next page.  Returns whether the job is over. */
static bool descs_step(Session *s)
{
        DescsJob *j = &s->descs;
        PollCache *c = &s->server->cache;
        int64_t now = now_ns();
        const size_t max = DESCS_PAGE;
        void **v = admin_alloc_list(s, max, sizeof(Netpoll__V1__DescInfo));
        size_t k = 0;
        Session *o;

        if (!v) {
                s->broken = true;
                return true;
        }
        while (k < max && (o = cursor_session(s))) {
                PollSlot *slot;
                /* pollcache_next_owned's cursor is the link of the next slot. */
                for (; k < max && (slot = pollcache_next_owned(c, &o->owner, &j->next_slot));) {
                        s->work += describe(v[k++], o, slot, now);
                }
                if (j->next_slot == UINT32_MAX) { /* this connection is done */
                        j->index++;
                        j->next_slot = 0;
                        j->gen = 0;
                }
        }
        bool done = !cursor_session(s);
        session_push(s, &(Outbound){ .kind = OUT_REPLY,
                                     .id = j->req,
                                     .more = !done,
                                     .descs = (Netpoll__V1__DescInfo **)v,
                                     .n_descs = k });
        return done;
}

/* Ends s's listing (already off the server's list). */
static void descs_end(Session *s)
{
        s->descs = (DescsJob){ 0 };
        if (!s->dead)
                session_update_input(s);
}

static void descs_unlist(Session *s)
{
        Server *srv = s->server;

        for (Session **pp = &srv->listing; *pp; pp = &(*pp)->descs.next)
                if (*pp == s) {
                        *pp = s->descs.next;
                        break;
                }
        descs_end(s);
}

void admin_descs_start(Session *s, const NpRequest *q)
{
        Server *srv = s->server;
        uint64_t want = q->desc; /* client id filter */
        bool admin = admin_is_admin(s);

        if (want && want != s->id && !admin) {
                admin_deny(s, q);
                return;
        }
        if (s->descs.active) { /* a second one in the same datagram */
                session_push(s, &(Outbound){ .kind = OUT_REPLY, .id = q->id, .result = -EBUSY });
                return;
        }
        s->descs = (DescsJob){ .active = true, .req = q->id, .want = want, .admin = admin,
                               .next = srv->listing };
        if (!srv->listing) /* the first page goes at once */
                srv->descs_due = 0;
        srv->listing = s;
        /* Its later datagrams wait until the listing is over: their
         * replies keep their order, and it runs one listing at a time. */
        session_update_input(s);
}

void admin_descs_continue(Server *srv, int64_t now)
{
        Session *s, **pp;

        if (!srv->listing || now < srv->descs_due)
                return;
        /* The first listing that can take a page gets it and goes to the end
         * of the list, so listers take turns.  A lister that does not read
         * holds one page at most: it is passed over until it has read. */
        for (pp = &srv->listing; (s = *pp); pp = &s->descs.next) {
                if (s->dead || s->broken || s->queue_len > 0)
                        continue;
                bool done = descs_step(s);
                *pp = s->descs.next;
                s->descs.next = NULL;
                if (done)
                        descs_end(s);
                else {
                        Session **tail = pp;
                        while (*tail)
                                tail = &(*tail)->descs.next;
                        *tail = s;
                }
                srv->descs_due = now + DESCS_INTERVAL_NS;
                return;
        }
        /* Every lister is behind on its reading: look again in a while. */
        srv->descs_due = now + DESCS_INTERVAL_NS;
}

void admin_descs_forget(Server *srv, const PollSlot *slot)
{
        for (Session *s = srv->listing; s; s = s->descs.next)
                if (s->descs.next_slot == slot->index + 1) {
                        const PollOwner *owner = slot->pd.owner;
                        /* The slot after it, or none if it was the last. */
                        s->descs.next_slot = slot->next == owner->first ? UINT32_MAX : slot->next;
                }
}

void admin_descs_end(Session *s)
{
        if (s->descs.active)
                descs_unlist(s);
}
