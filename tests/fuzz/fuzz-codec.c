/*
 * Fuzz target "codec": the daemon's wire codec (daemon/codec.c), which is
 * pure, so everything here runs in memory.
 *
 * The input is one datagram as a client would send it.  codec_decode runs
 * with an Arena of the daemon's cap (2 MiB) and must either fail with
 * -EBADMSG or -E2BIG, in agreement with protobuf-c's own unpack, or give an
 * Inbound that survives a round trip: packed again as a ClientMessage and
 * decoded again, it is the same Inbound.  Its requests are then turned into
 * replies, events and watch events (fields taken from the requests) and
 * packed with codec_encode, at the daemon's 64 KiB cap and at a small cap
 * taken from the input: every datagram must unpack as a ServerMessage with
 * exactly those items in order, and fit the cap unless it holds one item.
 * codec_encode_welcome and codec_encode_error are checked the same way.
 *
 * The replay in tests/test-fuzzcorpus.c #includes this file with
 * LLVMFuzzerTestOneInput renamed; every other name here is static.
 */
#include <errno.h>
#include <string.h>

#include "codec.h"
#include "fuzz.h"
#include "netpoll.pb-c.h"

#define FZC_ARENA_BYTES (2 * 1024 * 1024) /* the daemon's (server.c ARENA_BYTES) */
#define FZC_OUT_BYTES (NP_MAX_MESSAGE_BYTES + 4096)
#define FZC_SMALL_CAP_ITEMS 64 /* the small-cap pass packs about one item a datagram */

static Arena fzc_arena, fzc_arena2;
static uint8_t fzc_out[FZC_OUT_BYTES];

/* Payloads the replies may point to: a status and short lists. */
static Netpoll__V1__Status fzc_status;
static Netpoll__V1__ClientInfo fzc_client_infos[2];
static Netpoll__V1__ClientInfo *fzc_clients[2];
static Netpoll__V1__DescInfo fzc_desc_infos[3];
static Netpoll__V1__DescInfo *fzc_descs[3];
static char fzc_comm[17];

static void fzc_init(void)
{
        if (fzc_arena.buf)
                return;
        fuzz_check(arena_init(&fzc_arena, FZC_ARENA_BYTES) == 0, "out of memory");
        fuzz_check(arena_init(&fzc_arena2, FZC_ARENA_BYTES) == 0, "out of memory");
}

/* Packs in as a ClientMessage (malloc'd, *ret_len bytes). */
static uint8_t *fzc_pack_inbound(const Inbound *in, size_t *ret_len)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Hello h = NETPOLL__V1__HELLO__INIT;
        size_t n = in->n_requests;
        Netpoll__V1__Request *reqs = calloc(n ? n : 1, sizeof(*reqs));
        Netpoll__V1__Request **rp = calloc(n ? n : 1, sizeof(*rp));

        fuzz_check(reqs && rp, "out of memory");
        if (in->hello) {
                h.version = in->version;
                h.name = (char *)in->name;
                m.hello = &h;
        }
        for (size_t i = 0; i < n; i++) {
                const NpRequest *q = &in->requests[i];
                netpoll__v1__request__init(&reqs[i]);
                reqs[i].id = q->id;
                reqs[i].op = (Netpoll__V1__Op)q->op;
                reqs[i].desc = q->desc;
                reqs[i].mode = q->mode;
                reqs[i].ns = q->ns;
                reqs[i].user = q->user;
                reqs[i].fd_index = q->fd_index;
                reqs[i].quiet = q->quiet;
                rp[i] = &reqs[i];
        }
        m.n_requests = n;
        m.requests = rp;
        size_t len = netpoll__v1__client_message__get_packed_size(&m);
        uint8_t *buf = malloc(len ? len : 1);
        fuzz_check(buf, "out of memory");
        fuzz_check(netpoll__v1__client_message__pack(&m, buf) == len, "pack size");
        free(reqs);
        free(rp);
        *ret_len = len;
        return buf;
}

static void fzc_check_same(const Inbound *a, const Inbound *b)
{
        fuzz_check(a->hello == b->hello, "hello %d, again %d", a->hello, b->hello);
        fuzz_check(a->version == b->version, "version %u, again %u", a->version, b->version);
        fuzz_check(a->name && b->name && strcmp(a->name, b->name) == 0, "name differs");
        fuzz_check(a->n_requests == b->n_requests, "%zu requests, again %zu", a->n_requests,
                   b->n_requests);
        for (size_t i = 0; i < a->n_requests; i++) {
                const NpRequest *p = &a->requests[i], *q = &b->requests[i];
                fuzz_check(p->id == q->id && p->op == q->op && p->desc == q->desc &&
                                   p->mode == q->mode && p->ns == q->ns && p->user == q->user &&
                                   p->fd_index == q->fd_index && p->quiet == q->quiet,
                           "request %zu differs after a round trip", i);
        }
}

/* Whether protobuf-c kept unknown fields anywhere in m. */
static bool fzc_unknown_fields(const Netpoll__V1__ClientMessage *m)
{
        if (m->base.n_unknown_fields || (m->hello && m->hello->base.n_unknown_fields))
                return true;
        for (size_t i = 0; i < m->n_requests; i++)
                if (m->requests[i]->base.n_unknown_fields)
                        return true;
        return false;
}

/* Decodes with the arena and checks the outcome against protobuf-c's
 * unpack with its default allocator.  Returns codec_decode's result. */
static int fzc_decode(const uint8_t *data, size_t size, Inbound *in)
{
        int r = codec_decode(&fzc_arena, data, size, in);
        Netpoll__V1__ClientMessage *m = netpoll__v1__client_message__unpack(NULL, size, data);

        fuzz_check(r == 0 || r == -EBADMSG || r == -E2BIG || r == -ENOMSG,
                   "codec_decode returned %d", r);
        /* codec_decode stops at the first unknown field or the 257th
         * request, so it may say so of what protobuf-c refuses further on. */
        if (!m)
                fuzz_check(r == -EBADMSG || r == -ENOMSG || r == -E2BIG,
                           "protobuf-c refuses what codec_decode took (%d)", r);
        /* -ENOMSG with none kept by protobuf-c is fine: a message field
         * that comes twice is merged, and the first one's unknown fields
         * can be lost in the merge; the daemon refuses them all the same. */
        else if (r == 0) {
                fuzz_check(!fzc_unknown_fields(m), "unknown fields were taken");
                fuzz_check(in->hello == (m->hello != NULL), "hello presence differs");
                fuzz_check(in->n_requests == m->n_requests, "request count differs");
                fuzz_check(in->n_requests <= NP_MAX_REQUESTS_PER_MESSAGE, "too many requests");
                fuzz_check((in->n_requests == 0) == (in->requests == NULL), "request array");
                fuzz_check(in->name != NULL, "name is NULL");
                if (!in->hello)
                        fuzz_check(in->version == 0 && in->name[0] == '\0', "hello fields");
        } else if (r == -E2BIG)
                fuzz_check(m->n_requests > NP_MAX_REQUESTS_PER_MESSAGE, "-E2BIG for %zu",
                           m->n_requests);
        /* else -EBADMSG although protobuf-c could unpack it: the arena's cap
         * was reached, which is what the cap is for. */
        if (m)
                netpoll__v1__client_message__free_unpacked(m, NULL);
        return r;
}

static void fzc_make_payloads(const Inbound *in)
{
        const char *name = in->name;

        snprintf(fzc_comm, sizeof(fzc_comm), "%s", name);
        netpoll__v1__status__init(&fzc_status);
        fzc_status.version = (char *)"fuzz";
        fzc_status.pid = in->version;
        fzc_status.descriptors = in->n_requests;
        for (size_t i = 0; i < 2; i++) {
                Netpoll__V1__ClientInfo *ci = &fzc_client_infos[i];
                netpoll__v1__client_info__init(ci);
                ci->id = i + 1;
                ci->comm = fzc_comm;
                ci->name = (char *)name;
                ci->self = i == 0;
                fzc_clients[i] = ci;
        }
        for (size_t i = 0; i < 3; i++) {
                Netpoll__V1__DescInfo *di = &fzc_desc_infos[i];
                netpoll__v1__desc_info__init(di);
                di->client = 1;
                di->desc = i;
                di->type = (char *)"pipe";
                di->read_deadline_ns = -(int64_t)i;
                fzc_descs[i] = di;
        }
}

/* What the daemon might send back for these requests: one item each. */
static void fzc_make_items(const Inbound *in, Outbound *items)
{
        for (size_t i = 0; i < in->n_requests; i++) {
                const NpRequest *q = &in->requests[i];
                Outbound *o = &items[i];
                *o = (Outbound){ .desc = q->desc, .mode = q->mode, .wake = q->quiet };
                switch ((unsigned)q->op % 3) {
                case 0:
                        o->kind = OUT_REPLY;
                        o->id = q->id;
                        o->result = (int32_t)q->ns;
                        o->has_session = q->mode & 1;
                        o->descriptors = q->user;
                        o->waiters = q->desc;
                        o->timers = q->id;
                        o->status = (q->mode & 2) ? &fzc_status : NULL;
                        if (q->mode & 4) {
                                o->clients = fzc_clients;
                                o->n_clients = 1 + (q->fd_index & 1);
                        }
                        if (q->mode & 8) {
                                o->descs = fzc_descs;
                                o->n_descs = 1 + (unsigned)q->fd_index % 3;
                        }
                        o->more = q->quiet;
                        break;
                case 1:
                        o->kind = OUT_EVENT;
                        o->user = q->user;
                        o->result = q->fd_index;
                        break;
                default:
                        o->kind = OUT_WATCH;
                        o->watch_kind = (uint8_t)(q->fd_index & 7);
                        o->time_ns = q->ns;
                        o->client = q->user;
                        o->pid = (uint32_t)q->id;
                        o->comm = (q->id & 1) ? fzc_comm : NULL;
                        break;
                }
        }
}

static void fzc_check_reply(const Netpoll__V1__Reply *r, const Outbound *o)
{
        fuzz_check(r->id == o->id && r->result == o->result && r->desc == o->desc,
                   "reply fields differ");
        fuzz_check((r->session != NULL) == o->has_session, "session stats presence");
        if (r->session)
                fuzz_check(r->session->descriptors == o->descriptors &&
                                   r->session->waiters == o->waiters &&
                                   r->session->timers == o->timers,
                           "session stats differ");
        fuzz_check((r->status != NULL) == (o->status != NULL), "status presence");
        if (r->status)
                fuzz_check(r->status->pid == o->status->pid &&
                                   strcmp(r->status->version, o->status->version) == 0 &&
                                   r->status->descriptors == o->status->descriptors,
                           "status differs");
        fuzz_check(r->n_clients == o->n_clients && r->n_descs == o->n_descs, "list lengths");
        for (size_t i = 0; i < r->n_clients; i++)
                fuzz_check(r->clients[i]->id == o->clients[i]->id &&
                                   strcmp(r->clients[i]->name, o->clients[i]->name) == 0 &&
                                   strcmp(r->clients[i]->comm, o->clients[i]->comm) == 0,
                           "client info %zu differs", i);
        for (size_t i = 0; i < r->n_descs; i++)
                fuzz_check(r->descs[i]->desc == o->descs[i]->desc &&
                                   r->descs[i]->read_deadline_ns == o->descs[i]->read_deadline_ns,
                           "desc info %zu differs", i);
        fuzz_check(r->more == o->more, "more flag differs");
}

/* Whether m carries exactly items[0..n), in order within each kind. */
static void fzc_check_message(const Netpoll__V1__ServerMessage *m, const Outbound *items, size_t n)
{
        size_t ri = 0, ei = 0, wi = 0;

        fuzz_check(!m->welcome && m->error == 0, "welcome or error in a reply datagram");
        for (size_t i = 0; i < n; i++) {
                const Outbound *o = &items[i];
                if (o->kind == OUT_REPLY) {
                        fuzz_check(ri < m->n_replies, "reply %zu missing", ri);
                        fzc_check_reply(m->replies[ri++], o);
                } else if (o->kind == OUT_EVENT) {
                        fuzz_check(ei < m->n_events, "event %zu missing", ei);
                        const Netpoll__V1__Event *e = m->events[ei++];
                        fuzz_check(e->desc == o->desc && e->user == o->user &&
                                           e->mode == o->mode && e->result == o->result,
                                   "event fields differ");
                } else {
                        fuzz_check(wi < m->n_watch, "watch event %zu missing", wi);
                        const Netpoll__V1__WatchEvent *w = m->watch[wi++];
                        fuzz_check(w->time_ns == (uint64_t)o->time_ns &&
                                           w->kind == (Netpoll__V1__WatchKind)o->watch_kind &&
                                           w->client == o->client && w->desc == o->desc &&
                                           w->mode == o->mode && w->pid == o->pid,
                                   "watch event fields differ");
                        fuzz_check(strcmp(w->comm, o->comm ? o->comm : "") == 0, "watch comm");
                }
        }
        fuzz_check(ri == m->n_replies && ei == m->n_events && wi == m->n_watch,
                   "datagram carries more items than it was given");
}

/* Packs items[0..n) into as many datagrams of at most cap bytes as it
 * takes, checking each. */
static void fzc_encode_all(const Outbound *items, size_t n, size_t cap)
{
        size_t done = 0;

        while (done < n) {
                size_t used = 0;
                size_t len = codec_encode(items + done, n - done, fzc_out, cap, &used);
                fuzz_check(used >= 1 && used <= n - done, "%zu of %zu items used", used,
                           n - done);
                fuzz_check(len <= cap || used == 1, "%zu bytes for %zu items, cap %zu", len, used,
                           cap);
                fuzz_check(len <= FZC_OUT_BYTES, "%zu bytes", len);
                Netpoll__V1__ServerMessage *m =
                        netpoll__v1__server_message__unpack(NULL, len, fzc_out);
                fuzz_check(m, "codec_encode produced an undecodable datagram");
                fzc_check_message(m, items + done, used);
                netpoll__v1__server_message__free_unpacked(m, NULL);
                done += used;
        }
}

static void fzc_check_handshake(const uint8_t *data, size_t size)
{
        uint32_t maxd = 0;
        uint64_t conn = 0;
        int32_t error = 0;

        if (size)
                memcpy(&maxd, data, size < sizeof(maxd) ? size : sizeof(maxd));
        if (size > 4)
                memcpy(&conn, data + 4, size - 4 < sizeof(conn) ? size - 4 : sizeof(conn));
        if (size > 12)
                memcpy(&error, data + 12, size - 12 < sizeof(error) ? size - 12 : sizeof(error));

        size_t len = codec_encode_welcome(fzc_out, NP_PROTOCOL_VERSION, maxd, conn);
        fuzz_check(len <= 256, "welcome of %zu bytes", len);
        Netpoll__V1__ServerMessage *m = netpoll__v1__server_message__unpack(NULL, len, fzc_out);
        fuzz_check(m && m->welcome && m->welcome->limits && m->error == 0, "welcome");
        fuzz_check(m->welcome->version == NP_PROTOCOL_VERSION &&
                           m->welcome->connection_id == conn &&
                           m->welcome->limits->max_descriptors == maxd &&
                           m->welcome->limits->max_fds_per_message == NP_MAX_FDS_PER_MESSAGE &&
                           m->welcome->limits->max_message_bytes == NP_MAX_MESSAGE_BYTES &&
                           m->welcome->limits->max_requests_per_message ==
                                   NP_MAX_REQUESTS_PER_MESSAGE,
                   "welcome fields");
        netpoll__v1__server_message__free_unpacked(m, NULL);

        len = codec_encode_error(fzc_out, error);
        fuzz_check(len <= 256, "error of %zu bytes", len);
        m = netpoll__v1__server_message__unpack(NULL, len, fzc_out);
        fuzz_check(m && m->welcome && m->error == error, "error datagram");
        fuzz_check(m->welcome->version == NP_PROTOCOL_VERSION, "error datagram version");
        netpoll__v1__server_message__free_unpacked(m, NULL);
}

/* The libFuzzer entry point (renamed by the replay). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        Inbound in, again;

        fzc_init();
        fzc_check_handshake(data, size);
        if (fzc_decode(data, size, &in) == 0) {
                size_t len;
                uint8_t *buf = fzc_pack_inbound(&in, &len);
                fuzz_check(codec_decode(&fzc_arena2, buf, len, &again) == 0,
                           "a re-packed Inbound does not decode");
                fzc_check_same(&in, &again);
                free(buf);

                Outbound *items = calloc(in.n_requests ? in.n_requests : 1, sizeof(*items));
                fuzz_check(items, "out of memory");
                fzc_make_payloads(&in);
                fzc_make_items(&in, items);
                size_t used = 1;
                fuzz_check(codec_encode(items, 0, fzc_out, NP_MAX_MESSAGE_BYTES, &used) == 0 &&
                                   used == 0,
                           "encoding no items");
                fzc_encode_all(items, in.n_requests, NP_MAX_MESSAGE_BYTES);
                size_t small = 16 + 8 * (size_t)(size ? data[size - 1] : 0);
                fzc_encode_all(items,
                               in.n_requests < FZC_SMALL_CAP_ITEMS ? in.n_requests
                                                                   : FZC_SMALL_CAP_ITEMS,
                               small);
                free(items);
        }
        arena_reset(&fzc_arena);
        arena_reset(&fzc_arena2);
        return 0;
}
