/*
 * codec: the daemon side of the wire, pure.  Decoding is checked against
 * messages packed with the generated protobuf-c code (valid, garbage, too
 * many requests, every truncation, an arena too small to decode into);
 * encoding is checked by unpacking what it produced.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "helpers.h"
#include "netpoll.pb-c.h"

#define BIG_ARENA (2 * 1024 * 1024)

/* Packs a ClientMessage with an optional hello and n requests whose fields
 * are derived from their index.  Returns a malloc'd buffer and its length. */
static uint8_t *pack_client(bool hello, uint32_t version, const char *name, size_t n,
                            size_t *ret_len)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Hello h = NETPOLL__V1__HELLO__INIT;
        Netpoll__V1__Request *reqs = calloc(n ? n : 1, sizeof(*reqs));
        Netpoll__V1__Request **rp = calloc(n ? n : 1, sizeof(*rp));

        ck_assert_ptr_nonnull(reqs);
        ck_assert_ptr_nonnull(rp);
        if (hello) {
                h.version = version;
                h.name = (char *)name;
                m.hello = &h;
        }
        for (size_t i = 0; i < n; i++) {
                netpoll__v1__request__init(&reqs[i]);
                reqs[i].id = 1000 + i;
                reqs[i].op = (Netpoll__V1__Op)(1 + i % 12);
                reqs[i].desc = 0x0100000500000007ull + i;
                reqs[i].mode = (i & 1) ? 'w' : 'r';
                reqs[i].ns = (i & 2) ? -(int64_t)(i + 1) * 1000 : (int64_t)i * 1000000;
                reqs[i].user = 0xdeadbeef00000000ull | i;
                reqs[i].fd_index = (int32_t)(i % 5);
                reqs[i].quiet = (i % 3) == 0;
                rp[i] = &reqs[i];
        }
        m.n_requests = n;
        m.requests = rp;
        size_t len = netpoll__v1__client_message__get_packed_size(&m);
        uint8_t *buf = malloc(len ? len : 1);
        ck_assert_ptr_nonnull(buf);
        ck_assert_uint_eq(netpoll__v1__client_message__pack(&m, buf), len);
        free(reqs);
        free(rp);
        *ret_len = len;
        return buf;
}

/* Whether q is the request pack_client() made for index i. */
static void assert_request(const NpRequest *q, size_t i)
{
        ck_assert_uint_eq(q->id, 1000 + i);
        ck_assert_int_eq(q->op, (int)(1 + i % 12));
        ck_assert_uint_eq(q->desc, 0x0100000500000007ull + i);
        ck_assert_int_eq(q->mode, (i & 1) ? 'w' : 'r');
        ck_assert_int_eq(q->ns, (i & 2) ? -(int64_t)(i + 1) * 1000 : (int64_t)i * 1000000);
        ck_assert_uint_eq(q->user, 0xdeadbeef00000000ull | i);
        ck_assert_int_eq(q->fd_index, (int32_t)(i % 5));
        ck_assert(q->quiet == ((i % 3) == 0));
}

START_TEST(test_codec_decode_hello)
{
        Arena a = { 0 };
        Inbound in;
        size_t len;
        uint8_t *buf = pack_client(true, 1, "my-client", 0, &len);

        ck_assert_int_eq(arena_init(&a, BIG_ARENA), 0);
        ck_assert_int_eq(codec_decode(&a, buf, len, &in), 0);
        ck_assert(in.hello);
        ck_assert_uint_eq(in.version, 1);
        ck_assert_str_eq(in.name, "my-client");
        ck_assert_uint_eq(in.n_requests, 0);
        /* The name lives in the arena, not in the caller's buffer. */
        ck_assert((const uint8_t *)in.name >= a.buf && (const uint8_t *)in.name < a.buf + a.cap);
        free(buf);

        /* A hello without a name decodes to "", and other versions are
         * passed through for the session to refuse. */
        arena_reset(&a);
        buf = pack_client(true, 2, NULL, 0, &len);
        ck_assert_int_eq(codec_decode(&a, buf, len, &in), 0);
        ck_assert(in.hello);
        ck_assert_uint_eq(in.version, 2);
        ck_assert_ptr_nonnull(in.name);
        ck_assert_str_eq(in.name, "");
        free(buf);
        arena_done(&a);
}
END_TEST

START_TEST(test_codec_decode_requests_preserve_fields)
{
        Arena a = { 0 };
        Inbound in;
        size_t len;
        uint8_t *buf = pack_client(false, 0, NULL, 40, &len);

        ck_assert_int_eq(arena_init(&a, BIG_ARENA), 0);
        ck_assert_int_eq(codec_decode(&a, buf, len, &in), 0);
        ck_assert(!in.hello);
        ck_assert_str_eq(in.name, "");
        ck_assert_uint_eq(in.n_requests, 40);
        for (size_t i = 0; i < 40; i++)
                assert_request(&in.requests[i], i);
        free(buf);
        arena_done(&a);
}
END_TEST

START_TEST(test_codec_decode_keeps_negative_ns_and_unknown_op)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Request r0 = NETPOLL__V1__REQUEST__INIT, r1 = NETPOLL__V1__REQUEST__INIT;
        Netpoll__V1__Request *rp[2] = { &r0, &r1 };
        uint8_t buf[256];
        Arena a = { 0 };
        Inbound in;

        r0.id = UINT64_MAX;
        r0.op = (Netpoll__V1__Op)99; /* not an Op this version knows */
        r0.ns = INT64_MIN;
        r0.mode = -1;
        r0.fd_index = -7;
        r1.id = 2;
        r1.op = NETPOLL__V1__OP__OP_SET_DEADLINE;
        r1.ns = -1;
        r1.desc = UINT64_MAX;
        m.n_requests = 2;
        m.requests = rp;
        size_t len = netpoll__v1__client_message__pack(&m, buf);

        ck_assert_int_eq(arena_init(&a, BIG_ARENA), 0);
        ck_assert_int_eq(codec_decode(&a, buf, len, &in), 0);
        ck_assert_uint_eq(in.n_requests, 2);
        ck_assert_uint_eq(in.requests[0].id, UINT64_MAX);
        ck_assert_int_eq(in.requests[0].op, 99);
        ck_assert_int_eq(in.requests[0].ns, INT64_MIN);
        ck_assert_int_eq(in.requests[0].mode, -1);
        ck_assert_int_eq(in.requests[0].fd_index, -7);
        ck_assert(!in.requests[0].quiet);
        ck_assert_uint_eq(in.requests[1].id, 2);
        ck_assert_int_eq(in.requests[1].op, NETPOLL__V1__OP__OP_SET_DEADLINE);
        ck_assert_int_eq(in.requests[1].ns, -1);
        ck_assert_uint_eq(in.requests[1].desc, UINT64_MAX);
        arena_done(&a);
}
END_TEST

START_TEST(test_codec_decode_empty_datagram_is_empty_message)
{
        Arena a = { 0 };
        Inbound in = { .hello = true, .n_requests = 99 };

        ck_assert_int_eq(arena_init(&a, BIG_ARENA), 0);
        ck_assert_int_eq(codec_decode(&a, (const uint8_t *)"", 0, &in), 0);
        ck_assert(!in.hello);
        ck_assert_uint_eq(in.n_requests, 0);
        arena_done(&a);
}
END_TEST

typedef struct DecodeCase {
        const char *what;
        uint8_t bytes[16];
        size_t len;
} DecodeCase;

/* Decodes every case and asserts codec_decode returns want for each. */
static void assert_decode_cases(const DecodeCase *cases, size_t n, int want)
{
        Arena a = { 0 };
        Inbound in = { 0 };

        ck_assert_int_eq(arena_init(&a, BIG_ARENA), 0);
        for (size_t i = 0; i < n; i++) {
                arena_reset(&a);
                int r = codec_decode(&a, cases[i].bytes, cases[i].len, &in);
                ck_assert_msg(r == want, "%s: got %d, want %d", cases[i].what, r, want);
        }
        arena_done(&a);
}

/* A field this protocol version does not define is never skipped: it is
 * -ENOMSG (a protocol error for the session), at the top level, in the
 * hello or in a request, even after valid requests. */
START_TEST(test_codec_decode_unknown_fields_are_enomsg)
{
        static const DecodeCase cases[] = {
                { "top-level field 15", { 0x78, 0x00 }, 2 },
                { "top-level bytes field 3", { 0x1a, 0x01, 0x00 }, 3 },
                { "fixed64 field 4", { 0x21, 1, 2, 3, 4, 5, 6, 7, 8 }, 9 },
                { "hello field 3", { 0x0a, 0x04, 0x08, 0x01, 0x18, 0x05 }, 6 },
                { "request field 10", { 0x12, 0x04, 0x08, 0x01, 0x50, 0x01 }, 6 },
                { "after a valid request", { 0x12, 0x02, 0x08, 0x01, 0x78, 0x00 }, 6 },
        };
        Arena a = { 0 };
        Inbound in = { 0 };

        assert_decode_cases(cases, sizeof(cases) / sizeof(cases[0]), -ENOMSG);
        ck_assert_int_eq(arena_init(&a, BIG_ARENA), 0);
        /* The junk datagram of the isolation findings: 24,576 unknown fields. */
        enum { JUNK = 2 * 24576 };
        uint8_t *junk = malloc(JUNK);
        ck_assert_ptr_nonnull(junk);
        for (size_t i = 0; i < JUNK; i += 2) {
                junk[i] = 0x78;
                junk[i + 1] = 0x00;
        }
        ck_assert_int_eq(codec_decode(&a, junk, JUNK, &in), -ENOMSG);
        free(junk);
        arena_done(&a);
}
END_TEST

START_TEST(test_codec_decode_garbage_is_ebadmsg)
{
        static const DecodeCase cases[] = {
                { "wire type 7", { 0x0f, 0x01 }, 2 },
                { "length past the end", { 0x12, 0x7f, 0x08 }, 3 },
                { "unterminated varint", { 0x08, 0xff, 0xff, 0xff }, 4 },
                { "hello of wrong wire type", { 0x0d, 1, 2, 3, 4 }, 5 },
                { "all ones", { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, 8 },
                { "tag zero", { 0x00, 0x00 }, 2 },
                { "request with bad inner length", { 0x12, 0x03, 0x08, 0x80, 0x80 }, 5 },
                { "text", "GET / HTTP/1.1", 14 },
        };

        assert_decode_cases(cases, sizeof(cases) / sizeof(cases[0]), -EBADMSG);
}
END_TEST

START_TEST(test_codec_decode_too_many_requests_is_e2big)
{
        Arena a = { 0 };
        Inbound in;
        size_t len;
        uint8_t *buf;

        ck_assert_int_eq(arena_init(&a, BIG_ARENA), 0);
        /* Exactly the limit is fine ... */
        buf = pack_client(false, 0, NULL, NP_MAX_REQUESTS_PER_MESSAGE, &len);
        ck_assert_int_eq(codec_decode(&a, buf, len, &in), 0);
        ck_assert_uint_eq(in.n_requests, NP_MAX_REQUESTS_PER_MESSAGE);
        free(buf);
        /* ... one more is not. */
        arena_reset(&a);
        buf = pack_client(false, 0, NULL, NP_MAX_REQUESTS_PER_MESSAGE + 1, &len);
        ck_assert_uint_le(len, NP_MAX_MESSAGE_BYTES * 2);
        ck_assert_int_eq(codec_decode(&a, buf, len, &in), -E2BIG);
        free(buf);
        arena_done(&a);
}
END_TEST

/*
 * Every prefix of a hello + N requests message: a cut between top-level
 * fields yields a shorter valid message (the first k requests, unchanged);
 * a cut inside a field fails as -EBADMSG.  Nothing else, and no crash.
 */
static void check_truncations(size_t cap, bool expect_small_cap_failure)
{
        enum { N = 24 };
        Arena a = { 0 };
        size_t len, hello_len;
        uint8_t *full = pack_client(true, 1, "trunc", N, &len);
        uint8_t *hello = pack_client(true, 1, "trunc", 0, &hello_len);
        size_t decoded = 0, failed = 0;

        ck_assert_int_eq(arena_init(&a, cap), 0);
        for (size_t cut = 0; cut <= len; cut++) {
                /* A private copy of exactly cut bytes, so any overread would
                 * fall outside the allocation (visible under ASan/valgrind). */
                uint8_t *p = malloc(cut ? cut : 1);
                Inbound in;
                ck_assert_ptr_nonnull(p);
                memcpy(p, full, cut);
                arena_reset(&a);
                int r = codec_decode(&a, p, cut, &in);
                ck_assert_msg(r == 0 || r == -EBADMSG, "cut %zu: got %d", cut, r);
                ck_assert_uint_le(a.used, a.cap);
                if (r == 0) {
                        decoded++;
                        ck_assert_uint_le(in.n_requests, N);
                        ck_assert(in.hello == (cut >= hello_len));
                        if (in.hello)
                                ck_assert_str_eq(in.name, "trunc");
                        for (size_t i = 0; i < in.n_requests; i++)
                                assert_request(&in.requests[i], i);
                } else
                        failed++;
                free(p);
        }
        if (expect_small_cap_failure) {
                /* The cap is too small for the full message: it failed. */
                ck_assert_uint_lt(decoded, N + 2);
                ck_assert_uint_gt(failed, 0);
        } else {
                /* Empty, hello only, and hello + k requests for k = 1..N. */
                ck_assert_uint_eq(decoded, N + 2);
                ck_assert_uint_eq(failed, len + 1 - (N + 2));
        }
        free(full);
        free(hello);
        arena_done(&a);
}

START_TEST(test_codec_decode_every_truncation_fails_cleanly)
{
        check_truncations(BIG_ARENA, false);
}
END_TEST

START_TEST(test_codec_decode_every_truncation_small_arena)
{
        check_truncations(512, true);
}
END_TEST

START_TEST(test_codec_decode_arena_too_small_is_ebadmsg)
{
        Arena a = { 0 };
        Inbound in;
        size_t len;
        uint8_t *buf = pack_client(false, 0, NULL, 200, &len);

        /* Big enough: decodes, and says how much it needed. */
        ck_assert_int_eq(arena_init(&a, BIG_ARENA), 0);
        ck_assert_int_eq(codec_decode(&a, buf, len, &in), 0);
        size_t need = a.used;
        ck_assert_uint_gt(need, 1024);
        arena_done(&a);

        /* Every cap below what it needs fails as -EBADMSG and stays within
         * the cap; exactly what it needs succeeds. */
        static const size_t fractions[] = { 1, 16, 64, 256, 1024 };
        for (size_t i = 0; i < sizeof(fractions) / sizeof(fractions[0]); i++) {
                size_t cap = fractions[i];
                ck_assert_int_eq(arena_init(&a, cap), 0);
                ck_assert_int_eq(codec_decode(&a, buf, len, &in), -EBADMSG);
                ck_assert_uint_le(a.used, cap);
                arena_done(&a);
        }
        ck_assert_int_eq(arena_init(&a, need - 16), 0);
        ck_assert_int_eq(codec_decode(&a, buf, len, &in), -EBADMSG);
        ck_assert_uint_le(a.used, need - 16);
        arena_done(&a);
        ck_assert_int_eq(arena_init(&a, need), 0);
        ck_assert_int_eq(codec_decode(&a, buf, len, &in), 0);
        ck_assert_uint_eq(in.n_requests, 200);
        assert_request(&in.requests[199], 199);
        arena_done(&a);
        free(buf);
}
END_TEST

/* Items for encoding: replies (id = i) and events (user = i) mixed, some
 * replies with session stats or a status payload. */
static Outbound *make_items(size_t n, const Netpoll__V1__Status *status)
{
        Outbound *items = calloc(n, sizeof(*items));

        ck_assert_ptr_nonnull(items);
        for (size_t i = 0; i < n; i++) {
                if (i % 3 == 2)
                        items[i] = (Outbound){ .kind = OUT_EVENT, .desc = 0x0100000000000000ull + i,
                                               .user = i, .mode = 'r', .result = (int32_t)(i % 4) };
                else
                        items[i] = (Outbound){ .kind = OUT_REPLY, .id = i,
                                               .result = (i % 7 == 0) ? -EBADF : 0,
                                               .desc = i * 16,
                                               .has_session = i % 10 == 1,
                                               .descriptors = i, .waiters = i + 1, .timers = i + 2,
                                               .status = i % 25 == 4 ? status : NULL };
        }
        return items;
}

static void check_encode(size_t n, size_t cap, size_t min_datagrams)
{
        Netpoll__V1__Status st = NETPOLL__V1__STATUS__INIT;
        st.version = (char *)"9.9.9";
        st.pid = 4242;
        st.connections = 3;
        st.protocol_errors = 17;
        Outbound *items = make_items(n, &st);
        uint8_t *buf = malloc(cap);
        bool *seen = calloc(n, sizeof(*seen));
        size_t done = 0, datagrams = 0;
        int64_t last_reply = -1, last_event = -1;

        ck_assert_ptr_nonnull(buf);
        ck_assert_ptr_nonnull(seen);
        while (done < n) {
                size_t used = 0;
                size_t len = codec_encode(items + done, n - done, buf, cap, &used);
                ck_assert_uint_ge(used, 1);
                ck_assert_uint_le(used, n - done);
                ck_assert_uint_le(len, cap);
                datagrams++;

                Netpoll__V1__ServerMessage *m =
                        netpoll__v1__server_message__unpack(NULL, len, buf);
                ck_assert_ptr_nonnull(m);
                ck_assert_ptr_null(m->welcome);
                ck_assert_int_eq(m->error, 0);
                ck_assert_uint_eq(m->n_replies + m->n_events, used);
                for (size_t k = 0; k < m->n_replies; k++) {
                        const Netpoll__V1__Reply *r = m->replies[k];
                        ck_assert_uint_ge(r->id, done);
                        ck_assert_uint_lt(r->id, done + used);
                        ck_assert_int_gt((int64_t)r->id, last_reply);
                        last_reply = (int64_t)r->id;
                        const Outbound *o = &items[r->id];
                        ck_assert_int_eq(o->kind, OUT_REPLY);
                        ck_assert(!seen[r->id]);
                        seen[r->id] = true;
                        ck_assert_int_eq(r->result, o->result);
                        ck_assert_uint_eq(r->desc, o->desc);
                        if (o->has_session) {
                                ck_assert_ptr_nonnull(r->session);
                                ck_assert_uint_eq(r->session->descriptors, o->descriptors);
                                ck_assert_uint_eq(r->session->waiters, o->waiters);
                                ck_assert_uint_eq(r->session->timers, o->timers);
                        } else
                                ck_assert_ptr_null(r->session);
                        if (o->status) {
                                ck_assert_ptr_nonnull(r->status);
                                ck_assert_str_eq(r->status->version, "9.9.9");
                                ck_assert_uint_eq(r->status->pid, 4242);
                                ck_assert_uint_eq(r->status->connections, 3);
                                ck_assert_uint_eq(r->status->protocol_errors, 17);
                        } else
                                ck_assert_ptr_null(r->status);
                }
                for (size_t k = 0; k < m->n_events; k++) {
                        const Netpoll__V1__Event *e = m->events[k];
                        ck_assert_uint_ge(e->user, done);
                        ck_assert_uint_lt(e->user, done + used);
                        ck_assert_int_gt((int64_t)e->user, last_event);
                        last_event = (int64_t)e->user;
                        const Outbound *o = &items[e->user];
                        ck_assert_int_eq(o->kind, OUT_EVENT);
                        ck_assert(!seen[e->user]);
                        seen[e->user] = true;
                        ck_assert_uint_eq(e->desc, o->desc);
                        ck_assert_int_eq(e->mode, o->mode);
                        ck_assert_int_eq(e->result, o->result);
                }
                netpoll__v1__server_message__free_unpacked(m, NULL);
                done += used;
        }
        ck_assert_uint_eq(done, n);
        for (size_t i = 0; i < n; i++)
                ck_assert_msg(seen[i], "item %zu was never encoded", i);
        ck_assert_uint_ge(datagrams, min_datagrams);
        free(seen);
        free(buf);
        free(items);
}

START_TEST(test_codec_encode_splits_at_small_cap)
{
        /* 600 items of 10+ bytes cannot fit 512 bytes: many datagrams. */
        check_encode(600, 512, 10);
}
END_TEST

START_TEST(test_codec_encode_all_in_one_at_full_cap)
{
        Outbound *items = make_items(100, NULL);
        uint8_t *buf = malloc(NP_MAX_MESSAGE_BYTES);
        size_t used = 0;

        ck_assert_ptr_nonnull(buf);
        size_t len = codec_encode(items, 100, buf, NP_MAX_MESSAGE_BYTES, &used);
        ck_assert_uint_eq(used, 100);
        ck_assert_uint_gt(len, 0);
        ck_assert_uint_le(len, NP_MAX_MESSAGE_BYTES);
        free(buf);
        free(items);
        /* More than one chunk's worth at the real cap still ends up whole. */
        check_encode(3000, NP_MAX_MESSAGE_BYTES, 1);
}
END_TEST

START_TEST(test_codec_encode_single_item)
{
        check_encode(1, 512, 1);
        check_encode(2, 64, 1);
}
END_TEST

START_TEST(test_codec_encode_welcome)
{
        uint8_t buf[256];
        size_t len = codec_encode_welcome(buf, 1, 777, 0x1234567890ull);

        ck_assert_uint_gt(len, 0);
        ck_assert_uint_le(len, sizeof(buf));
        Netpoll__V1__ServerMessage *m = netpoll__v1__server_message__unpack(NULL, len, buf);
        ck_assert_ptr_nonnull(m);
        ck_assert_int_eq(m->error, 0);
        ck_assert_uint_eq(m->n_replies, 0);
        ck_assert_uint_eq(m->n_events, 0);
        ck_assert_ptr_nonnull(m->welcome);
        ck_assert_uint_eq(m->welcome->version, 1);
        ck_assert_uint_eq(m->welcome->connection_id, 0x1234567890ull);
        ck_assert_ptr_nonnull(m->welcome->server);
        ck_assert_ptr_nonnull(strstr(m->welcome->server, "netpolld"));
        ck_assert_ptr_nonnull(strstr(m->welcome->server, NETPOLL_VERSION));
        ck_assert_ptr_nonnull(m->welcome->limits);
        ck_assert_uint_eq(m->welcome->limits->max_descriptors, 777);
        ck_assert_uint_eq(m->welcome->limits->max_fds_per_message, NP_MAX_FDS_PER_MESSAGE);
        ck_assert_uint_eq(m->welcome->limits->max_fds_per_message, 253);
        ck_assert_uint_eq(m->welcome->limits->max_message_bytes, 64 * 1024);
        ck_assert_uint_eq(m->welcome->limits->max_requests_per_message,
                          NP_MAX_REQUESTS_PER_MESSAGE);
        netpoll__v1__server_message__free_unpacked(m, NULL);

        /* A connection of the current version is answered in it. */
        len = codec_encode_welcome(buf, NP_PROTOCOL_VERSION, 777, 1);
        m = netpoll__v1__server_message__unpack(NULL, len, buf);
        ck_assert_ptr_nonnull(m);
        ck_assert_uint_eq(m->welcome->version, NP_PROTOCOL_VERSION);
        netpoll__v1__server_message__free_unpacked(m, NULL);

        /* The resumed notice carries the connection's id and nothing else. */
        len = codec_encode_resumed(buf, 42);
        m = netpoll__v1__server_message__unpack(NULL, len, buf);
        ck_assert_ptr_nonnull(m);
        ck_assert_ptr_null(m->welcome);
        ck_assert_ptr_nonnull(m->resumed);
        ck_assert_uint_eq(m->resumed->connection_id, 42);
        ck_assert_int_gt(m->resumed->monotonic_ns, 0);
        netpoll__v1__server_message__free_unpacked(m, NULL);
}
END_TEST

START_TEST(test_codec_encode_error)
{
        uint8_t buf[256];
        size_t len = codec_encode_error(buf, -EPROTO);

        ck_assert_uint_gt(len, 0);
        ck_assert_uint_le(len, sizeof(buf));
        Netpoll__V1__ServerMessage *m = netpoll__v1__server_message__unpack(NULL, len, buf);
        ck_assert_ptr_nonnull(m);
        ck_assert_int_eq(m->error, -EPROTO);
        ck_assert_int_eq(m->error, -71);
        ck_assert_ptr_nonnull(m->welcome);
        ck_assert_uint_eq(m->welcome->version, NP_PROTOCOL_VERSION);
        ck_assert_uint_eq(m->n_replies, 0);
        ck_assert_uint_eq(m->n_events, 0);
        netpoll__v1__server_message__free_unpacked(m, NULL);

        len = codec_encode_error(buf, -EMFILE);
        m = netpoll__v1__server_message__unpack(NULL, len, buf);
        ck_assert_ptr_nonnull(m);
        ck_assert_int_eq(m->error, -EMFILE);
        netpoll__v1__server_message__free_unpacked(m, NULL);
}
END_TEST

Suite *suite_codec(void)
{
        Suite *s = suite_create("codec");
        TCase *tc;

        tc = test_tcase(s, "decode", 30);
        tcase_add_test(tc, test_codec_decode_hello);
        tcase_add_test(tc, test_codec_decode_requests_preserve_fields);
        tcase_add_test(tc, test_codec_decode_keeps_negative_ns_and_unknown_op);
        tcase_add_test(tc, test_codec_decode_empty_datagram_is_empty_message);
        tcase_add_test(tc, test_codec_decode_garbage_is_ebadmsg);
        tcase_add_test(tc, test_codec_decode_unknown_fields_are_enomsg);
        tcase_add_test(tc, test_codec_decode_too_many_requests_is_e2big);
        tcase_add_test(tc, test_codec_decode_every_truncation_fails_cleanly);
        tcase_add_test(tc, test_codec_decode_every_truncation_small_arena);
        tcase_add_test(tc, test_codec_decode_arena_too_small_is_ebadmsg);

        tc = test_tcase(s, "encode", 30);
        tcase_add_test(tc, test_codec_encode_splits_at_small_cap);
        tcase_add_test(tc, test_codec_encode_all_in_one_at_full_cap);
        tcase_add_test(tc, test_codec_encode_single_item);
        tcase_add_test(tc, test_codec_encode_welcome);
        tcase_add_test(tc, test_codec_encode_error);
        return s;
}
