/*
 * A session's requests: each decoded request is run against pollops (the
 * admin ones by admin.c), and its outcome pushed as a reply (and, for an
 * arm that is ready at once, an event).  OPEN takes over the fd passed with
 * it as a descriptor the session owns (pd.owner), registered in the
 * main set or the connection's own epoll set (see desc_register); CLOSE, and session_drain
 * for every descriptor of a closed session, unregister it from epoll before
 * the daemon's copy is closed.
 */
#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <sys/epoll.h>

#include "../common/cleanup.h"
#include "log.h"
#include "pollcache.h"
#include "env.h"
#include "fdstore.h"
#include "session-internal.h"
#include "token.h"

#define DESC_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

static void reply(Session *s, const NpRequest *q, int32_t result)
{
        if (q->quiet)
                return;
        session_push(s, &(Outbound){ .kind = OUT_REPLY, .id = q->id, .result = result });
}

/* The caller's descriptor, or NULL if the id is not one of this session's. */
static PollSlot *session_desc(Session *s, uint64_t desc)
{
        PollSlot *slot = pollcache_lookup(&s->server->cache, desc);

        return slot && slot->pd.owner == &s->owner ? slot : NULL;
}

/*
 * Registers fd (borrowed) with token.  A connection's first
 * SESSION_FLAT_MAX descriptors go to the main set itself: a wake then costs
 * the loop one epoll_wait, not a second one on a nested set (and the writer
 * one wake-up callback, not two), and a connection that never has more
 * costs no fd for a set of its own.  The rest go to the connection's own
 * epoll set, nested in the main one and made on first use (one made for an
 * open that then fails is dropped again), from which the loop takes at
 * most a budget per turn.  So a connection has at most SESSION_FLAT_MAX + 1
 * entries on the main set's ready list, whatever it registers.  A slot
 * freed in the main set is taken by the next open, so descriptors never
 * move between sets (a move would re-arm their edges).  Nesting has limits
 * flat sets do not: one file may sit in at most 500 nested sets (dup'd fds
 * count apiece), and epoll fds nest only so deep (EINVAL, ELOOP).  Such a
 * descriptor goes to the main set too, and counts there (n_flat is every
 * descriptor of the connection in the main set), so only such ones take a
 * connection past SESSION_FLAT_MAX + 1 entries.  0 or -errno (EPERM:
 * regular files and directories, not pollable).
 */
static int desc_register(Session *s, int fd, uint64_t token)
{
        Server *srv = s->server;
        bool made = false;
        int r;

        if (s->n_flat < SESSION_FLAT_MAX) {
                r = poller_add(&srv->poller, fd, DESC_EVENTS, token);
                if (r == 0)
                        s->n_flat++;
                return r;
        }
        if (s->group_fd < 0) {
                r = poller_group_open(&srv->poller,
                                      token_make(TOKEN_GROUP, s->index, srv->session_gens[s->index]));
                if (r < 0)
                        return r;
                s->group_fd = r;
                made = true;
                accounts_fds(&srv->accounts, s->acct, 1);
        }
        r = poller_group_add(s->group_fd, fd, DESC_EVENTS, token);
        if (r == -EINVAL || r == -ELOOP) {
                r = poller_add(&srv->poller, fd, DESC_EVENTS, token);
                if (r == 0)
                        s->n_flat++;
        }
        if (r < 0 && made) {
                poller_group_detach(&srv->poller, s->group_fd);
                s->group_fd = safe_close(s->group_fd);
                accounts_fds(&srv->accounts, s->acct, -1);
        }
        return r;
}

/* Which set holds fd is not recorded (a slot has no room to spare): the
 * main set is asked first while it holds any of the connection's, and a
 * miss costs one ENOENT. */
static void desc_unregister(Session *s, int fd)
{
        Poller *p = &s->server->poller;

        if (s->group_fd < 0 || s->n_flat > 0) {
                if (poller_del(p, fd) == 0) {
                        s->n_flat--;
                        return;
                }
                if (s->group_fd >= 0)
                        (void)poller_group_del(s->group_fd, fd);
                return;
        }
        /* None in the main set (n_flat counts every one there). */
        (void)poller_group_del(s->group_fd, fd);
}

/* Frees the slot and uncounts its file. */
static void desc_forget(Session *s, PollSlot *slot)
{
        if (s->server->listing)
                s->server->hooks->desc_freed(s->server, slot);
        filecount_remove(&s->files, slot->pd.file_key);
        slot->pd.file_key = 0;
        pollcache_free(&s->server->cache, slot);
}

/* Unregisters, closes the daemon's copy and frees the slot. */
static void desc_destroy(Session *s, PollSlot *slot)
{
        fdstore_desc_remove(&s->server->store, slot->index, slot->gen);
        desc_unregister(s, slot->pd.fd);
        env_close_client_fd(s->server, s->acct, slot->pd.fd, true);
        desc_forget(s, slot);
}

/* The descriptor a replayed OP_OPEN made before a restart (its reply was
 * lost with the previous instance), or 0. */
static uint64_t replayed_open(const Session *s, uint64_t req)
{
        for (size_t lo = 0, hi = s->n_resumed_opens; lo < hi;) {
                size_t mid = lo + (hi - lo) / 2;
                if (s->resumed_opens[mid].req == req)
                        return s->resumed_opens[mid].desc;
                if (s->resumed_opens[mid].req < req)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return 0;
}

/* Sets up slot (allocated, or restored) as a descriptor of s for fd and
 * registers it.  On failure the slot is freed again and fd is left alone. */
static int desc_setup(Session *s, PollSlot *slot, int fd, uint64_t user, uint32_t key)
{
        Server *srv = s->server;
        int r;

        slot->pd.file_key = key;
        r = timers_reserve(&srv->timers, 2 * pollcache_allocated(&srv->cache));
        if (r < 0) {
                desc_forget(s, slot);
                return r;
        }
        pollops_open(&srv->ops, &slot->pd, &s->owner, fd, user);
        pollcache_link(&srv->cache, slot, &s->owner);
        r = desc_register(s, fd, pollcache_token(slot));
        if (r < 0) {
                pollops_release(&srv->ops, &slot->pd);
                desc_forget(s, slot);
                return r;
        }
        accounts_fds(&srv->accounts, s->acct, 1);
        return 0;
}

static int op_open(Session *s, const NpRequest *q, int fd, uint64_t *ret_desc)
{
        Server *srv = s->server;
        PollSlot *slot;
        int r;

        if (s->n_resumed_opens && (*ret_desc = replayed_open(s, q->id)))
                return 1; /* made before the restart: fd is a second copy */

        /* Quotas first, before anything is allocated: the connection's, its
         * uid's (every fd the daemon holds for the uid, closes in flight
         * included), and the share of RLIMIT_NOFILE clients may have. */
        if (atomic_load(&srv->accounts.fds) >= srv->fd_limit_clients)
                return -EMFILE;
        if (s->owner.descriptors >= srv->config->max_descriptors ||
            atomic_load(&s->acct->fds) >= srv->fd_limit_uid)
                return -EDQUOT;
        uint32_t key;
        r = env_classify_fd(srv, fd, &key);
        if (r != 0)
                return r > 0 ? -EINVAL : r;
        r = filecount_add(&s->files, key, SESSION_MAX_SAME_FILE);
        if (r < 0)
                return r;
        r = pollcache_alloc(&srv->cache, &slot);
        if (r < 0) {
                filecount_remove(&s->files, key);
                return r == -ENOSPC ? -EMFILE : r;
        }
        r = desc_setup(s, slot, fd, q->user, key);
        if (r < 0)
                return r; /* the fd stays the caller's to close */
        /* Kept before its id is handed out: a restart from here on knows it.
         * A store that is full costs the connection its restarts (all of
         * it: a restart must not bring it back without this descriptor),
         * not its service. */
        r = s->stored ? fdstore_desc_add(&srv->store, slot->index, slot->gen, s->index,
                                         srv->session_gens[s->index], q->user, q->id, fd)
                      : 0;
        if (r == -ENOSPC)
                session_unstore(s);
        else if (r < 0) {
                desc_unregister(s, fd);
                accounts_fds(&srv->accounts, s->acct, -1);
                pollops_release(&srv->ops, &slot->pd);
                desc_forget(s, slot);
                return r;
        }
        *ret_desc = pollcache_token(slot);
        if (srv->n_watchers)
                srv->hooks->watch(srv, NETPOLL__V1__WATCH_KIND__WATCH_OPEN, s, *ret_desc, 0);
        return 0;
}

static int op_close(Session *s, PollSlot *slot)
{
        int r = pollops_close(&s->server->ops, &slot->pd);

        if (r < 0)
                return r;
        if (s->server->n_watchers)
                s->server->hooks->watch(s->server, NETPOLL__V1__WATCH_KIND__WATCH_CLOSE, s,
                            pollcache_token(slot), 0);
        desc_destroy(s, slot);
        return 0;
}

void session_request_handle(Session *s, const NpRequest *q, int *fd, int fd_error)
{
        Server *srv = s->server;
        PollOps *ops = &srv->ops;
        PollSlot *slot = NULL;
        int r;

        switch (q->op) {
        case NETPOLL__V1__OP__OP_OPEN: {
                uint64_t desc = 0;
                r = fd_error ? fd_error : op_open(s, q, *fd, &desc);
                if (r == 0)
                        *fd = -1; /* the slot owns it now */
                else if (r > 0)
                        r = 0; /* a replay: the fd sent again is closed with the unused */
                session_push(s, &(Outbound){ .kind = OUT_REPLY, .id = q->id, .result = r,
                                         .desc = desc });
                return;
        }
        case NETPOLL__V1__OP__OP_IS_POLL_DESCRIPTOR:
                reply(s, q, fd_error ? fd_error : env_classify_fd(srv, *fd, &(uint32_t){ 0 }) > 0);
                return;
        case NETPOLL__V1__OP__OP_PING:
                reply(s, q, 0);
                return;
        case NETPOLL__V1__OP__OP_SESSION_STATS:
                session_push(s, &(Outbound){ .kind = OUT_REPLY,
                                         .id = q->id,
                                         .has_session = true,
                                         .descriptors = s->owner.descriptors,
                                         .waiters = s->owner.waiters,
                                         .timers = s->owner.timers });
                return;
        case NETPOLL__V1__OP__OP_STATUS:
        case NETPOLL__V1__OP__OP_LIST_CLIENTS:
        case NETPOLL__V1__OP__OP_LIST_DESCS:
                /* Each reads /proc or fstats every descriptor it lists and
                 * holds the list until the flush: one per datagram (the
                 * library never sends more), and it ends this connection's
                 * turn, so a client cannot make one turn build hundreds. */
                if (s->introspected) {
                        reply(s, q, -EBUSY);
                        return;
                }
                s->introspected = true;
                s->work += WORK_BUDGET;
                srv->hooks->admin_request(s, q);
                return;
        case NETPOLL__V1__OP__OP_WATCH:
        case NETPOLL__V1__OP__OP_UPGRADE:
                srv->hooks->admin_request(s, q);
                return;
        case NETPOLL__V1__OP__OP_RESUME: /* only meaningful first after a restart (session.c) */
                reply(s, q, 0);
                return;
        case NETPOLL__V1__OP__OP_CLOSE:
        case NETPOLL__V1__OP__OP_UNBLOCK:
        case NETPOLL__V1__OP__OP_RESET:
        case NETPOLL__V1__OP__OP_WAIT:
        case NETPOLL__V1__OP__OP_WAIT_CANCELED:
        case NETPOLL__V1__OP__OP_ARM:
        case NETPOLL__V1__OP__OP_SET_DEADLINE:
                slot = session_desc(s, q->desc);
                if (!slot) {
                        reply(s, q, -EBADF);
                        return;
                }
                break;
        default:
                reply(s, q, -EOPNOTSUPP);
                return;
        }

        PollDesc *pd = &slot->pd;
        switch (q->op) {
        case NETPOLL__V1__OP__OP_CLOSE:
                reply(s, q, op_close(s, slot));
                return;
        case NETPOLL__V1__OP__OP_UNBLOCK:
                reply(s, q, pollops_unblock(ops, pd));
                return;
        case NETPOLL__V1__OP__OP_RESET:
                reply(s, q, pollops_reset(ops, pd, q->mode));
                return;
        case NETPOLL__V1__OP__OP_SET_DEADLINE:
                reply(s, q, q->absolute ? pollops_set_deadline_at(ops, pd, q->ns, q->mode)
                                        : pollops_set_deadline(ops, pd, q->ns, q->mode));
                return;
        case NETPOLL__V1__OP__OP_WAIT:
        case NETPOLL__V1__OP__OP_WAIT_CANCELED:
                r = pollops_wait(ops, pd, q->mode,
                                 q->op == NETPOLL__V1__OP__OP_WAIT ? POLL_WAIT : POLL_WAIT_CANCELED,
                                 q->id);
                if (r != POLL_PARKED)
                        reply(s, q, r);
                return;
        case NETPOLL__V1__OP__OP_ARM:
                r = pollops_wait(ops, pd, q->mode, POLL_WAIT_ARM, q->id);
                reply(s, q, r < 0 ? r : 0);
                if (r >= 0 && r != POLL_PARKED)
                        session_push(s, &(Outbound){ .kind = OUT_EVENT, .desc = q->desc,
                                                 .user = pd->user, .mode = q->mode,
                                                 .result = r });
                return;
        }
}

uint32_t session_drain(Session *s, uint32_t budget)
{
        PollCache *c = &s->server->cache;
        uint32_t done = 0;

        for (PollSlot *slot; s->draining && done < budget &&
                             (slot = pollcache_next_owned(c, &s->owner, &s->drain_iter));) {
                desc_destroy(s, slot);
                s->draining--;
                done++;
        }
        return done;
}

int session_restore_desc(Session *s, const StoredFd *sf, const FdStoreDesc *rec)
{
        Server *srv = s->server;
        PollSlot *slot;
        uint32_t key;
        int r;

        r = env_classify_fd(srv, sf->fd, &key);
        if (r != 0)
                return r > 0 ? -EINVAL : r;
        r = filecount_add(&s->files, key, SESSION_MAX_SAME_FILE);
        if (r < 0)
                return r;
        r = pollcache_restore(&srv->cache, sf->index, sf->gen, &slot);
        if (r < 0) {
                filecount_remove(&s->files, key);
                return r;
        }
        r = desc_setup(s, slot, sf->fd, rec->user, key);
        if (r < 0)
                return r;
        if (rec->open_req) {
                ResumedOpen *o = realloc(s->resumed_opens,
                                         (s->n_resumed_opens + 1) * sizeof(*o));
                if (o) {
                        s->resumed_opens = o;
                        o[s->n_resumed_opens++] =
                                (ResumedOpen){ .req = rec->open_req, .desc = pollcache_token(slot) };
                }
        }
        return 0;
}

void session_unstore(Session *s)
{
        Server *srv = s->server;
        uint32_t iter = 0;

        if (!s->stored)
                return;
        log_warning("client %" PRIu64 " (pid %d, %s): the fd store is full; a restart will end "
                    "this connection",
                    s->id, (int)s->pid, s->comm);
        for (PollSlot *slot; (slot = pollcache_next_owned(&srv->cache, &s->owner, &iter));)
                fdstore_desc_remove(&srv->store, slot->index, slot->gen);
        fdstore_conn_remove(&srv->store, s->index, srv->session_gens[s->index]);
        s->stored = false;
}
