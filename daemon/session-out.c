/*
 * A session's output side.
 *
 * Replies and events are appended to s->out during the turn (session_push)
 * and packed into datagrams by session_flush().  What the socket does not
 * take is kept, packed, in s->queue (bounded by max_output_bytes; a client
 * that lets it overflow is dropped) and EPOLLOUT is requested; the
 * connection's EPOLLOUT drains it (session_out_drain).  A wake's waiter
 * count is dropped only once the datagram carrying it has been sent
 * (golang/go#60782).  List payloads that s->out points into are held
 * (session_hold) until the flush has packed them.
 */
#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "../common/cleanup.h"
#include "log.h"
#include "pollcache.h"
#include "env.h"
#include "session-internal.h"

/* Queued datagram header in s->queue: length and number of wakes in it. */
typedef struct QueuedHeader {
        uint32_t len;
        uint32_t wakes;
} QueuedHeader;

void session_hold(Session *s, void *p)
{
        if (s->n_held == s->cap_held) {
                size_t cap = s->cap_held ? s->cap_held * 2 : 8;
                void **held = realloc(s->held, cap * sizeof(*held));
                if (!held) {
                        free(p);
                        s->broken = true;
                        return;
                }
                s->held = held;
                s->cap_held = cap;
        }
        s->held[s->n_held++] = p;
}

void session_out_release_held(Session *s)
{
        for (size_t i = 0; i < s->n_held; i++)
                free(s->held[i]);
        s->n_held = 0;
}

/*
 * Queues a reply or event.  On allocation failure the session is marked
 * broken and closed at flush time, not here: this runs inside pollops
 * callbacks, which must not see their descriptor freed under them.
 */
void session_mark_dirty(Server *srv, Session *s)
{
        if (s->dirty)
                return;
        s->dirty = true;
        s->next_dirty = srv->dirty;
        srv->dirty = s;
}

void session_push(Session *s, const Outbound *o)
{
        session_mark_dirty(s->server, s);
        if (s->n_out == s->cap_out) {
                size_t cap = s->cap_out ? s->cap_out * 2 : 64;
                Outbound *out = realloc(s->out, cap * sizeof(*out));
                if (!out) {
                        s->broken = true;
                        return;
                }
                s->out = out;
                s->cap_out = cap;
        }
        s->out[s->n_out++] = *o;
}

void session_wake(PollOps *ops, PollDesc *pd, int mode, PollSem waiter, int result)
{
        Session *s = container_of(pd->owner, Session, owner);
        PollSlot *slot = container_of(pd, PollSlot, pd);
        Outbound o = { .wake = true, .result = result };

        (void)ops;
        if (result == POLL_NO_ERROR)
                s->server->stats.events++;
        else if (result == POLL_ERR_TIMEOUT)
                s->server->stats.timeouts++;
        if (s->server->n_watchers) {
                int kind = result == POLL_NO_ERROR    ? NETPOLL__V1__WATCH_KIND__WATCH_READY
                           : result == POLL_ERR_TIMEOUT ? NETPOLL__V1__WATCH_KIND__WATCH_TIMEOUT
                           : result == POLL_ERR_CLOSING ? NETPOLL__V1__WATCH_KIND__WATCH_CLOSING
                                                        : NETPOLL__V1__WATCH_KIND__WATCH_READY;
                s->server->hooks->watch(s->server, kind, s, pollcache_token(slot), mode);
        }
        if (waiter.kind == POLL_WAIT_ARM) {
                o.kind = OUT_EVENT;
                o.desc = pollcache_token(slot);
                o.user = pd->user;
                o.mode = mode;
        } else {
                o.kind = OUT_REPLY;
                o.id = waiter.req;
        }
        session_push(s, &o);
}

/* Sends one packed datagram; returns 1 sent, 0 the socket is full, -1 the
 * session ended. */
static int session_send(Session *s, const uint8_t *buf, size_t len)
{
        if (send(s->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
                return 1;
        if (errno == EAGAIN || errno == ENOBUFS)
                return 0;
        session_close(s, "send failed");
        return -1;
}

static int queue_push(Session *s, const uint8_t *buf, size_t len, uint32_t wakes)
{
        size_t need = s->queue_len + sizeof(QueuedHeader) + len;

        const Config *cfg = s->server->config;
        const Accounts *all = &s->server->accounts;
        const char *over = need > cfg->max_output_bytes ? "max_output_bytes"
                           : s->acct->output_bytes + (need - s->queue_len) >
                                           cfg->max_output_bytes_per_uid
                                   ? "max_output_bytes_per_uid"
                           : all->output_bytes + (need - s->queue_len) > cfg->max_output_bytes_total
                                   ? "max_output_bytes_total"
                                   : NULL;

        if (over) {
                log_warning("client %" PRIu64 " (pid %d, uid %d, %s) does not read its replies: "
                            "%zu bytes queued, %s reached; dropping it",
                            s->id, (int)s->pid, (int)s->uid, s->comm, s->queue_len, over);
                session_close(s, NULL);
                return -1;
        }
        if (need > s->queue_cap) {
                size_t cap = s->queue_cap ? s->queue_cap : 4096;
                while (cap < need)
                        cap *= 2;
                uint8_t *q = realloc(s->queue, cap);
                if (!q) {
                        session_close(s, "out of memory");
                        return -1;
                }
                s->queue = q;
                s->queue_cap = cap;
        }
        QueuedHeader h = { .len = (uint32_t)len, .wakes = wakes };
        memcpy(s->queue + s->queue_len, &h, sizeof(h));
        memcpy(s->queue + s->queue_len + sizeof(h), buf, len);
        accounts_output(&s->server->accounts, s->acct, (int64_t)(need - s->queue_len));
        s->queue_len = need;
        return 0;
}

/* Asks epoll for what the connection waits for: input unless a listing
 * holds it back, output while the socket is full. */
static void session_watch(Session *s, bool want_in, bool want_out)
{
        if (s->want_out == want_out && s->want_in == want_in)
                return;
        if (poller_mod(&s->server->poller, s->fd,
                       (want_in ? EPOLLIN : 0) | (want_out ? EPOLLOUT : 0), session_token(s)) == 0) {
                s->want_out = want_out;
                s->want_in = want_in;
        }
}

static void set_want_out(Session *s, bool on)
{
        session_watch(s, s->want_in, on);
}

void session_update_input(Session *s)
{
        session_watch(s, !s->descs.active && !s->quota_held, s->want_out);
}

int session_out_drain(Session *s)
{
        size_t off = 0;
        int r = 1;

        while (off < s->queue_len) {
                QueuedHeader h;
                memcpy(&h, s->queue + off, sizeof(h));
                r = session_send(s, s->queue + off + sizeof(h), h.len);
                if (r <= 0)
                        break;
                s->owner.waiters -= h.wakes;
                off += sizeof(h) + h.len;
        }
        if (r < 0)
                return -1;
        if (off > 0) /* a client that reads nothing must not cost a copy a turn */
                memmove(s->queue, s->queue + off, s->queue_len - off);
        s->queue_len -= off;
        accounts_output(&s->server->accounts, s->acct, -(int64_t)off);
        set_want_out(s, s->queue_len > 0);
        return s->queue_len == 0;
}

void session_flush(Session *s)
{
        Server *srv = s->server;
        size_t done = 0;

        if (s->dead)
                return;
        if (s->broken) {
                log_warning("client %" PRIu64 " (pid %d, %s): out of memory; dropping it", s->id,
                            (int)s->pid, s->comm);
                session_close(s, NULL);
                return;
        }
        /* A full socket is tried again when EPOLLOUT says it has room (the
         * dispatch step drains the queue then), not on every flush: a
         * client that reads nothing would cost a failing send() a turn. */
        bool blocked = s->queue_len > 0 && (s->want_out || session_out_drain(s) <= 0);
        if (s->dead)
                return;
        while (done < s->n_out) {
                size_t used;
                size_t len = codec_encode(s->out + done, s->n_out - done, srv->wbuf,
                                          NP_MAX_MESSAGE_BYTES, &used);
                uint32_t wakes = 0;
                for (size_t i = done; i < done + used; i++)
                        wakes += s->out[i].wake;
                done += used;
                int r = blocked ? 0 : session_send(s, srv->wbuf, len);
                if (r < 0)
                        return;
                if (r > 0) {
                        s->owner.waiters -= wakes;
                        continue;
                }
                blocked = true;
                if (queue_push(s, srv->wbuf, len, wakes) < 0)
                        return;
        }
        s->n_out = 0;
        session_out_release_held(s);
        if (blocked)
                set_want_out(s, true);
}

void session_send_datagram(Session *s, const uint8_t *buf, size_t len)
{
        int r = s->queue_len > 0 ? 0 : session_send(s, buf, len);

        if (r == 0 && queue_push(s, buf, len, 0) == 0)
                set_want_out(s, true);
}
