/*
 * Isolation: a datagram must cost its sender what it costs the daemon, even
 * when it carries no request.
 *
 * A ClientMessage of 24 576 unknown fields (field 15, a varint: the bytes
 * 0x78 0x00 over and over; ClientMessage defines fields 1 and 2 only, Request
 * 1 to 9) is 48 KiB that protobuf-c decodes in about 233 us into a message
 * with no request, which a daemon that charges per request counts as no
 * work at all: 64 connections sending such datagrams kept every other
 * client waiting for most of a second.  The daemon must treat unknown
 * fields (at the top level or inside a request) as a protocol error (log
 * it, count it, drop the connection) and charge every datagram by its
 * size, an empty one at least one unit.
 *
 *  - cases, each on a fresh raw connection ending with a PING probe: the
 *    48 KiB of unknown fields, a single unknown top-level field, a PING
 *    whose Request carries an unknown field: dropped; a well-formed
 *    datagram of 256 requests (the control's) and an empty datagram:
 *    served.  protocol_errors must grow by the dropped ones and the log
 *    must say "protocol error";
 *  - junk flood: alternating windows in which 64 raw connections (or as
 *    many as max_connections_per_uid leaves) send the junk datagram
 *    continuously, connecting and greeting anew whenever they are dropped
 *    (attack), or send well-formed datagrams of 256 requests (255 quiet
 *    PINGs with every field at its longest, about 19 KB, and one PING
 *    answered), each waiting for the reply to its last (control).  A victim
 *    pinging every 2 ms must see the same p99 in both (fault_ab_verdict);
 *    afterwards protocol_errors must have grown, the log must say so, and
 *    the daemon must still serve a new client;
 *  - empty flood: the same connections send zero-length datagrams as fast
 *    as the socket takes them (attack), or datagrams of one quiet PING (the
 *    smallest request, and one that needs no reply) just as fast (control):
 *    an empty datagram must cost no more than that; the same verdict.
 * The load threads run as SCHED_IDLE.  Every window closes its connections
 * and waits until the daemon has let them go, so what one window queued is
 * charged to it, not to the next.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../daemon/codec.h" /* NP_MAX_REQUESTS_PER_MESSAGE, NP_MAX_MESSAGE_BYTES */
#include "harness.h"
#include "probe.h"

#define WATCHDOG_USEC 1000000 /* WATCHDOG=1 gaps must stay under 500 ms */
static FaultNotify *notify; /* the fake service manager */

#define JUNK_FIELDS 24576 /* 0x78 0x00: field 15, varint 0 */
#define JUNK_BYTES (2 * JUNK_FIELDS)
#define FLOOD_CONNS 64
#define THREADS 4
#define VICTIM_INTERVAL_US 2000
#define WELL_INFLIGHT 1   /* control datagrams of 256 requests outstanding per connection */
#define LOOP_MAX 10000000 /* poll rounds per thread per window, a bound only */
#define SETTLE_MS 10000

enum Traffic {
        JUNK,  /* 48 KiB of unknown fields, reconnecting when dropped */
        WELL,  /* 256 well-formed requests, one answered */
        EMPTY, /* zero-length datagrams */
        QUIET, /* one quiet PING per datagram (no reply) */
};

static const char *const traffic_names[] = { "junk", "well-formed", "empty", "quiet pings" };

static FaultDaemon dm;
static np_client *mon;
static uint8_t junk[JUNK_BYTES];
static uint8_t *well; /* the control datagram */
static size_t well_len;
static int flood_conns;

/* ---- datagrams ---- */

static void junk_init(void)
{
        for (size_t i = 0; i < JUNK_BYTES; i += 2) {
                junk[i] = (15 << 3) | 0; /* field 15, wire type varint */
                junk[i + 1] = 0x00;
        }
}

/* 255 quiet PINGs and a last one answered (id), every field at its longest
 * varint (PING reads none of them).  Returns its length in buf. */
static size_t pack_well(uint8_t *buf, uint64_t id)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        static __thread Netpoll__V1__Request q[NP_MAX_REQUESTS_PER_MESSAGE];
        static __thread Netpoll__V1__Request *qs[NP_MAX_REQUESTS_PER_MESSAGE];

        for (int i = 0; i < NP_MAX_REQUESTS_PER_MESSAGE; i++) {
                q[i] = raw_request(UINT64_MAX - (uint64_t)i, NETPOLL__V1__OP__OP_PING, UINT64_MAX,
                                   -1, INT64_MIN);
                q[i].user = UINT64_MAX;
                q[i].fd_index = -1;
                q[i].quiet = true;
                q[i].absolute = true;
                qs[i] = &q[i];
        }
        q[NP_MAX_REQUESTS_PER_MESSAGE - 1].id = id;
        q[NP_MAX_REQUESTS_PER_MESSAGE - 1].quiet = false;
        m.requests = qs;
        m.n_requests = NP_MAX_REQUESTS_PER_MESSAGE;
        if (netpoll__v1__client_message__get_packed_size(&m) > NP_MAX_MESSAGE_BYTES)
                fault_die("the control datagram does not fit 64 KiB");
        return netpoll__v1__client_message__pack(&m, buf);
}

/* ---- cases ---- */

static void one_case(const char *what, const void *buf, size_t len, int want)
{
        int sock = raw_greeted(dm.sock);
        int got = raw_send(sock, buf, len, NULL, 0) < 0 ? RAW_CLOSED : raw_probe(sock);

        close(sock);
        fault_check(got == want, "%s: %s, want %s", what, raw_probe_name(got),
                    raw_probe_name(want));
        fault_say("  %-62s %s", what, raw_probe_name(got));
}

static uint64_t protocol_errors(void)
{
        struct np_status st;

        fault_must(np_status(mon, &st), "np_status");
        return st.protocol_errors;
}

/* How many times the daemon's log says "protocol error" so far. */
static int logged_protocol_errors(void)
{
        char *log = fault_daemon_log(&dm);
        int n = 0;

        for (const char *p = log; n < 100000000 && (p = strstr(p, "protocol error")); p++)
                n++;
        free(log);
        return n;
}

static void cases(void)
{
        uint8_t small[128];
        uint64_t before = protocol_errors();
        int logged = logged_protocol_errors();

        fault_say("single datagrams, each on a fresh connection:");
        char what[96];
        snprintf(what, sizeof(what), "%d unknown fields (%d bytes)", JUNK_FIELDS, JUNK_BYTES);
        one_case(what, junk, JUNK_BYTES, RAW_CLOSED);
        one_case("one unknown top-level field (2 bytes)", junk, 2, RAW_CLOSED);
        size_t len = raw_pack_ping_with_unknown(small, 1);
        one_case("a PING whose Request has an unknown field", small, len, RAW_CLOSED);
        snprintf(what, sizeof(what), "%d well-formed requests (%zu bytes)",
                 NP_MAX_REQUESTS_PER_MESSAGE, well_len);
        one_case(what, well, well_len, RAW_ALIVE);
        one_case("an empty datagram", "", 0, RAW_ALIVE);

        uint64_t counted = protocol_errors() - before;
        int said = logged_protocol_errors() - logged;
        fault_say("  protocol_errors grew by %llu, the log says \"protocol error\" %d more times",
                  (unsigned long long)counted, said);
        fault_check(counted == 3, "protocol_errors grew by %llu for 3 bad datagrams",
                    (unsigned long long)counted);
        fault_check(said >= 3, "the log says \"protocol error\" %d times for 3 bad datagrams",
                    said);
}

/* ---- floods ---- */

typedef struct Conn {
        int fd; /* -1: to connect */
        int inflight;
        uint64_t next_id;
} Conn;

typedef struct Counts {
        atomic_llong sent, answered, drops, connects, refused, send_errors;
        atomic_int first_refusal;
} Counts;

typedef struct Load {
        int64_t window_ns;
        enum Traffic attack, control;
        Counts counts[2];              /* [0] control, [1] attack */
        int64_t cpu_ns[2], wall_ns[2]; /* the daemon's CPU time */
} Load;

typedef struct Worker {
        Counts *counts;
        enum Traffic kind;
        Conn conns[FLOOD_CONNS];
        int n;
        int64_t end;
} Worker;

static void conn_drop(Worker *w, Conn *c, bool by_daemon)
{
        close(c->fd);
        c->fd = -1;
        c->inflight = 0;
        if (by_daemon)
                atomic_fetch_add(&w->counts->drops, 1);
}

static void conn_open(Worker *w, Conn *c)
{
        int64_t left = (w->end - test_now()) / NSEC_PER_MSEC_F;
        int fd = test_raw_connect(dm.sock);
        int r = fd < 0 ? fd : raw_hello(fd, left < 1 ? 1 : left > 1000 ? 1000 : (int)left);

        if (r < 0) {
                int zero = 0;
                if (fd >= 0)
                        close(fd);
                atomic_fetch_add(&w->counts->refused, 1);
                atomic_compare_exchange_strong(&w->counts->first_refusal, &zero, r);
                return;
        }
        c->fd = fd;
        c->inflight = 0;
        atomic_fetch_add(&w->counts->connects, 1);
}

/* Reads what the daemon sent: replies count against the outstanding. */
static void conn_read(Worker *w, Conn *c)
{
        static __thread uint8_t buf[NP_MAX_MESSAGE_BYTES];

        for (int i = 0; i < 256; i++) {
                ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                if (n <= 0) {
                        conn_drop(w, c, true);
                        return;
                }
                Netpoll__V1__ServerMessage *m =
                        netpoll__v1__server_message__unpack(NULL, (size_t)n, buf);
                if (!m)
                        continue;
                if (m->error) {
                        netpoll__v1__server_message__free_unpacked(m, NULL);
                        conn_drop(w, c, true);
                        return;
                }
                c->inflight -= (int)m->n_replies;
                if (c->inflight < 0)
                        c->inflight = 0;
                atomic_fetch_add(&w->counts->answered, (long long)m->n_replies);
                netpoll__v1__server_message__free_unpacked(m, NULL);
        }
}

static void conn_write(Worker *w, Conn *c)
{
        static __thread uint8_t buf[NP_MAX_MESSAGE_BYTES];
        const void *p = buf;
        size_t len = 0;

        switch (w->kind) {
        case JUNK:
                p = junk;
                len = JUNK_BYTES;
                break;
        case WELL:
                if (c->inflight >= WELL_INFLIGHT)
                        return;
                len = pack_well(buf, ++c->next_id);
                break;
        case EMPTY:
                break;
        case QUIET: {
                Netpoll__V1__Request q =
                        raw_request(++c->next_id, NETPOLL__V1__OP__OP_PING, 0, 0, 0);
                q.quiet = true;
                Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
                Netpoll__V1__Request *qs[1] = { &q };
                m.requests = qs;
                m.n_requests = 1;
                len = netpoll__v1__client_message__pack(&m, buf);
                break;
        }
        }
        /* As many as the socket takes now, a few at most per round. */
        for (int i = 0; i < 8; i++) {
                ssize_t n = send(c->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return;
                        atomic_fetch_add(&w->counts->send_errors, 1);
                        conn_drop(w, c, true);
                        return;
                }
                atomic_fetch_add(&w->counts->sent, 1);
                if (w->kind == WELL) {
                        c->inflight++;
                        return; /* the next one with a new id */
                }
        }
}

static void *worker_main(void *arg)
{
        Worker *w = arg;
        struct pollfd pfd[FLOOD_CONNS];
        int idx[FLOOD_CONNS];

        fault_load_thread();
        for (int it = 0; it < LOOP_MAX && test_now() < w->end; it++) {
                int k = 0;
                for (int i = 0; i < w->n && test_now() < w->end; i++) {
                        if (w->conns[i].fd < 0)
                                conn_open(w, &w->conns[i]);
                        if (w->conns[i].fd < 0)
                                continue;
                        pfd[k] =
                                (struct pollfd){ .fd = w->conns[i].fd, .events = POLLIN | POLLOUT };
                        idx[k++] = i;
                }
                if (k == 0) {
                        fault_sleep_ms(1); /* every connection refused: back off */
                        continue;
                }
                if (poll(pfd, (nfds_t)k, 5) <= 0)
                        continue;
                for (int j = 0; j < k; j++) {
                        Conn *c = &w->conns[idx[j]];
                        if (pfd[j].revents & POLLIN)
                                conn_read(w, c);
                        if (c->fd >= 0 && (pfd[j].revents & (POLLHUP | POLLERR)))
                                conn_drop(w, c, true);
                        if (c->fd >= 0 && (pfd[j].revents & POLLOUT))
                                conn_write(w, c);
                }
        }
        for (int i = 0; i < w->n; i++)
                if (w->conns[i].fd >= 0)
                        conn_drop(w, &w->conns[i], false);
        return NULL;
}

/* Waits until only the monitor and the victim are left. */
static bool settle(void)
{
        int64_t give_up = test_now() + SETTLE_MS * NSEC_PER_MSEC_F;

        for (int i = 0; i < 100000 && test_now() < give_up; i++) {
                struct np_status st;
                if (np_status(mon, &st) == 0 && st.connections == 2)
                        return true;
                fault_sleep_ms(5);
        }
        return false;
}

static void window(void *arg, bool attack, int round)
{
        Load *l = arg;
        static Worker w[THREADS];
        pthread_t t[THREADS];
        int64_t start = test_now(), end = start + l->window_ns, cpu = test_cpu_ns(dm.pid);

        (void)round;
        for (int i = 0; i < THREADS; i++) {
                w[i] = (Worker){ .counts = &l->counts[attack],
                                 .kind = attack ? l->attack : l->control,
                                 .n = flood_conns / THREADS + (i < flood_conns % THREADS),
                                 .end = end };
                for (int k = 0; k < FLOOD_CONNS; k++)
                        w[i].conns[k].fd = -1;
        }
        for (int i = 0; i < THREADS; i++)
                if (pthread_create(&t[i], NULL, worker_main, &w[i]) != 0)
                        fault_die("pthread_create");
        for (int i = 0; i < THREADS; i++)
                pthread_join(t[i], NULL);
        fault_check(settle(), "%s window: the daemon did not let its connections go within %d ms",
                    traffic_names[attack ? l->attack : l->control], SETTLE_MS);
        l->cpu_ns[attack] += test_cpu_ns(dm.pid) - cpu;
        l->wall_ns[attack] += test_now() - start;
}

static void flood(FaultVictim *v, enum Traffic attack, enum Traffic control, int rounds,
                  int64_t window_ms, const char *what)
{
        static Load loads[2];
        Load *l = &loads[attack == JUNK ? 0 : 1];
        FaultAB ab;

        *l = (Load){ .window_ns = window_ms * NSEC_PER_MSEC_F,
                     .attack = attack,
                     .control = control };
        fault_ab_run(&ab, rounds, window, l);
        for (int a = 0; a < 2; a++) {
                Counts *k = &l->counts[a];
                int first = atomic_load(&k->first_refusal);
                fault_say("%s: %s windows (%s): %d connections, %lld datagrams sent, %lld "
                          "replies read, %lld connects, %lld dropped, %lld refused (first: %s), "
                          "%lld send errors",
                          what, a ? "attack" : "control", traffic_names[a ? attack : control],
                          flood_conns, (long long)atomic_load(&k->sent),
                          (long long)atomic_load(&k->answered),
                          (long long)atomic_load(&k->connects), (long long)atomic_load(&k->drops),
                          (long long)atomic_load(&k->refused), first ? strerror(-first) : "none",
                          (long long)atomic_load(&k->send_errors));
        }
        fault_say("%s: the daemon's CPU time: %.0f%% of the attack windows, %.0f%% of the controls",
                  what, 100.0 * (double)l->cpu_ns[1] / (double)l->wall_ns[1],
                  100.0 * (double)l->cpu_ns[0] / (double)l->wall_ns[0]);
        fault_ab_verdict(&ab, v, notify, WATCHDOG_USEC, what);
}

int main(int argc, char **argv)
{
        struct np_status st;

        fault_init(argc, argv, "junk");
        junk_init();
        well = malloc(NP_MAX_MESSAGE_BYTES);
        if (!well)
                fault_die("out of memory");
        well_len = pack_well(well, RAW_PROBE_ID);
        notify = notify_start();
        fault_daemon_start(&dm, &(FaultDaemonOpts){ .notify_socket = notify_path(notify),
                                                    .watchdog_usec = WATCHDOG_USEC });
        fault_must(fault_connect(dm.sock, &mon), "connect the monitor");
        (void)fault_settle(mon, dm.pid, 1, &st);
        flood_conns = FLOOD_CONNS;
        if (st.max_connections_per_uid < (uint32_t)flood_conns + 8)
                flood_conns = (int)st.max_connections_per_uid - 8;
        if (st.max_connections < (uint32_t)flood_conns + 8)
                flood_conns = (int)st.max_connections - 8;
        if (flood_conns < THREADS)
                fault_die("the daemon's connection limits leave no room for a flood");
        /* What protobuf-c makes of the junk: a message with no request. */
        Netpoll__V1__ClientMessage *m = netpoll__v1__client_message__unpack(NULL, JUNK_BYTES, junk);
        fault_say("the junk datagram: %d bytes, decodes to %s", JUNK_BYTES,
                  !m                          ? "nothing (undecodable)"
                  : m->n_requests || m->hello ? "something"
                                              : "an empty message (no hello, no requests)");
        if (m)
                netpoll__v1__client_message__free_unpacked(m, NULL);

        cases();

        FaultVictim *victim = victim_start(dm.sock, VICTIM_INTERVAL_US);
        uint64_t before = protocol_errors();
        int logged = logged_protocol_errors();
        flood(victim, JUNK, WELL, fault_quick ? 3 : 6, fault_quick ? 1500 : 3000, "junk flood");
        uint64_t counted = protocol_errors() - before;
        int said = logged_protocol_errors() - logged;
        fault_say("junk flood: protocol_errors grew by %llu, the log says \"protocol error\" %d "
                  "more times",
                  (unsigned long long)counted, said);
        fault_check(counted > 0, "junk flood: protocol_errors did not grow");
        fault_check(said > 0, "junk flood: no protocol error logged");

        flood(victim, EMPTY, QUIET, fault_quick ? 2 : 4, fault_quick ? 1500 : 3000, "empty flood");
        victim_stop(victim);

        /* Still serving, a new client too. */
        np_client *c = NULL;
        int r = fault_connect(dm.sock, &c);
        if (r == 0)
                r = np_ping(c);
        fault_check(r == 0 && np_ping(mon) == 0 && fault_daemon_alive(&dm),
                    "the daemon stopped serving: %s", strerror(-r));
        np_disconnect(c);
        np_disconnect(mon);
        fault_daemon_stop(&dm);
        notify_stop(notify);
        return fault_finish();
}
