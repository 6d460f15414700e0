/*
 * Wire codec, daemon side.  Decoding unpacks with the caller's byte-capped
 * arena, so a datagram that would take more memory than the cap fails as
 * -EBADMSG, and copies requests into plain structs in the same arena.
 * Encoding fills stack arrays of protobuf-c structs for up to CHUNK items,
 * as many as fit the cap by per-item upper bounds, and packs them once.
 */
#include "codec.h"

#include <errno.h>
#include <string.h>

#include "../common/clock.h"

#define CHUNK 512

/* Reads a varint at *p (before end).  false: truncated or over 10 bytes. */
static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
        uint64_t v = 0;

        for (unsigned shift = 0; shift < 70 && *p < end; shift += 7) {
                uint8_t b = *(*p)++;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *ret = v;
                        return true;
                }
        }
        return false;
}

enum { WIRE_VARINT = 0, WIRE_LEN = 2 };

/*
 * Checks that buf holds only fields this version knows, each of its
 * declared wire type: ClientMessage { hello = 1, requests = 2 }, Hello
 * { version = 1 (varint), name = 2 (bytes) }, Request { 1..9, varints }.
 * Stops at the first field that is not (O(bytes) up to there), so a
 * datagram of thousands of unknown fields, which protobuf-c would keep
 * one by one, costs next to nothing.  Counts the requests.
 */
static int wire_check(const uint8_t *p, const uint8_t *end, int depth, size_t *n_requests)
{
        while (p < end) {
                uint64_t tag, v;
                if (!wire_varint(&p, end, &tag))
                        return -EBADMSG;
                uint64_t field = tag >> 3, type = tag & 7;
                bool known;
                switch (depth) {
                case 0: /* ClientMessage */
                        known = (field == 1 || field == 2) && type == WIRE_LEN;
                        break;
                case 1: /* Hello */
                        known = (field == 1 && type == WIRE_VARINT) ||
                                (field == 2 && type == WIRE_LEN);
                        break;
                default: /* Request */
                        known = field >= 1 && field <= 9 && type == WIRE_VARINT;
                        break;
                }
                if (!known) {
                        /* A field number this version has, of another wire
                         * type, is malformed (protobuf-c refuses it too); a
                         * well-formed field of a number it lacks is new. */
                        bool number_known = depth == 0   ? field == 1 || field == 2
                                            : depth == 1 ? field == 1 || field == 2
                                                         : field >= 1 && field <= 9;
                        bool type_valid = type == WIRE_VARINT || type == WIRE_LEN ||
                                          type == 1 || type == 5;
                        return number_known || !type_valid || field == 0 ? -EBADMSG : -ENOMSG;
                }
                if (!wire_varint(&p, end, &v))
                        return -EBADMSG;
                if (type == WIRE_VARINT)
                        continue;
                if (v > (uint64_t)(end - p))
                        return -EBADMSG;
                if (depth == 0) {
                        if (field == 2 && ++*n_requests > NP_MAX_REQUESTS_PER_MESSAGE)
                                return -E2BIG;
                        int r = wire_check(p, p + v, field == 1 ? 1 : 2, n_requests);
                        if (r < 0)
                                return r;
                }
                p += v;
        }
        return 0;
}

int codec_decode(Arena *a, const uint8_t *buf, size_t len, Inbound *ret)
{
        size_t n = 0;
        int r = wire_check(buf, buf + len, 0, &n);

        if (r < 0)
                return r;
        Netpoll__V1__ClientMessage *m =
                netpoll__v1__client_message__unpack(&a->allocator, len, buf);
        if (!m)
                return -EBADMSG;
        if (m->n_requests > NP_MAX_REQUESTS_PER_MESSAGE)
                return -E2BIG;
        NpRequest *reqs = NULL;
        if (m->n_requests > 0) {
                reqs = a->allocator.alloc(a, m->n_requests * sizeof(*reqs));
                if (!reqs)
                        return -EBADMSG;
        }
        for (size_t i = 0; i < m->n_requests; i++) {
                const Netpoll__V1__Request *q = m->requests[i];
                reqs[i] = (NpRequest){
                        .id = q->id,
                        .op = (int)q->op,
                        .desc = q->desc,
                        .mode = q->mode,
                        .ns = q->ns,
                        .user = q->user,
                        .fd_index = q->fd_index,
                        .quiet = q->quiet,
                        .absolute = q->absolute,
                };
        }
        *ret = (Inbound){
                .hello = m->hello != NULL,
                .version = m->hello ? m->hello->version : 0,
                .name = m->hello && m->hello->name ? m->hello->name : "",
                .n_requests = m->n_requests,
                .requests = reqs,
        };
        return 0;
}

/*
 * Upper bounds of an item's packed size inside a ServerMessage (field tag,
 * length and content, every varint at its longest: a negative int32 takes
 * 10 bytes).  Packing against bounds instead of get_packed_size halves the
 * encoding work of the hot path; only replies carrying a status or a list
 * are measured exactly.
 */
#define EVENT_BOUND (3 + 4 * 11)
#define REPLY_BOUND (3 + 11 + 6 + 11 + 2)
#define STATS_BOUND (3 + 3 * 11)
#define WATCH_BOUND (3 + 6 * 11 + 3 + 16)

size_t codec_encode(const Outbound *items, size_t n, uint8_t *buf, size_t cap, size_t *ret_used)
{
        Netpoll__V1__Reply replies[CHUNK];
        Netpoll__V1__Event events[CHUNK];
        Netpoll__V1__SessionStats stats[CHUNK];
        Netpoll__V1__Reply *rp[CHUNK];
        Netpoll__V1__Event *ep[CHUNK];
        Netpoll__V1__WatchEvent watches[CHUNK];
        Netpoll__V1__WatchEvent *wp[CHUNK];
        Netpoll__V1__ServerMessage m = NETPOLL__V1__SERVER_MESSAGE__INIT;
        size_t take = 0, bound = 0;

        m.replies = rp;
        m.events = ep;
        m.watch = wp;
        while (take < n && take < CHUNK) {
                const Outbound *o = &items[take];
                size_t size;
                if (o->kind == OUT_REPLY) {
                        Netpoll__V1__Reply *r = &replies[m.n_replies];
                        netpoll__v1__reply__init(r);
                        r->id = o->id;
                        r->result = o->result;
                        r->desc = o->desc;
                        size = REPLY_BOUND;
                        if (o->has_session) {
                                Netpoll__V1__SessionStats *st = &stats[m.n_replies];
                                netpoll__v1__session_stats__init(st);
                                st->descriptors = o->descriptors;
                                st->waiters = o->waiters;
                                st->timers = o->timers;
                                r->session = st;
                                size += STATS_BOUND;
                        }
                        r->status = (Netpoll__V1__Status *)o->status;
                        r->clients = o->clients;
                        r->n_clients = o->n_clients;
                        r->descs = o->descs;
                        r->n_descs = o->n_descs;
                        r->more = o->more;
                        if (o->status || o->n_clients || o->n_descs)
                                size = 6 + netpoll__v1__reply__get_packed_size(r);
                        if (take > 0 && bound + size > cap)
                                break;
                        rp[m.n_replies++] = r;
                } else if (o->kind == OUT_WATCH) {
                        size = WATCH_BOUND;
                        if (take > 0 && bound + size > cap)
                                break;
                        Netpoll__V1__WatchEvent *w = &watches[m.n_watch];
                        netpoll__v1__watch_event__init(w);
                        w->time_ns = (uint64_t)o->time_ns;
                        w->kind = (Netpoll__V1__WatchKind)o->watch_kind;
                        w->client = o->client;
                        w->desc = o->desc;
                        w->mode = o->mode;
                        w->pid = o->pid;
                        /* comm is at most 16 bytes (TASK_COMM_LEN - 1). */
                        w->comm = (char *)(o->comm ? o->comm : "");
                        wp[m.n_watch++] = w;
                } else {
                        size = EVENT_BOUND;
                        if (take > 0 && bound + size > cap)
                                break;
                        Netpoll__V1__Event *e = &events[m.n_events];
                        netpoll__v1__event__init(e);
                        e->desc = o->desc;
                        e->user = o->user;
                        e->mode = o->mode;
                        e->result = o->result;
                        ep[m.n_events++] = e;
                }
                bound += size;
                take++;
        }
        /* One item always fits: the largest, a chunk of a list, is far
         * below any cap the daemon uses. */
        *ret_used = take;
        return netpoll__v1__server_message__pack(&m, buf);
}

size_t codec_encode_welcome(uint8_t *buf, uint32_t version, uint32_t max_descriptors,
                            uint64_t connection_id)
{
        Netpoll__V1__ServerMessage m = NETPOLL__V1__SERVER_MESSAGE__INIT;
        Netpoll__V1__Welcome w = NETPOLL__V1__WELCOME__INIT;
        Netpoll__V1__Limits l = NETPOLL__V1__LIMITS__INIT;

        l.max_descriptors = max_descriptors;
        l.max_fds_per_message = NP_MAX_FDS_PER_MESSAGE;
        l.max_message_bytes = NP_MAX_MESSAGE_BYTES;
        l.max_requests_per_message = NP_MAX_REQUESTS_PER_MESSAGE;
        w.version = version;
        w.limits = &l;
        w.server = (char *)"netpolld " NETPOLL_VERSION;
        w.connection_id = connection_id;
        w.monotonic_ns = now_ns();
        m.welcome = &w;
        return netpoll__v1__server_message__pack(&m, buf);
}

size_t codec_encode_error(uint8_t *buf, int32_t error)
{
        Netpoll__V1__ServerMessage m = NETPOLL__V1__SERVER_MESSAGE__INIT;
        Netpoll__V1__Welcome w = NETPOLL__V1__WELCOME__INIT;

        w.version = NP_PROTOCOL_VERSION;
        w.server = (char *)"netpolld " NETPOLL_VERSION;
        m.welcome = &w;
        m.error = error;
        return netpoll__v1__server_message__pack(&m, buf);
}

size_t codec_encode_resumed(uint8_t *buf, uint64_t connection_id)
{
        Netpoll__V1__ServerMessage m = NETPOLL__V1__SERVER_MESSAGE__INIT;
        Netpoll__V1__Resumed r = NETPOLL__V1__RESUMED__INIT;

        r.connection_id = connection_id;
        r.monotonic_ns = now_ns();
        m.resumed = &r;
        return netpoll__v1__server_message__pack(&m, buf);
}
