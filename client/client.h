/*
 * The connection behind an np_client (internal to libnetpoll, not
 * installed), shared by its modules: netpoll.c the public entry points,
 * request.c the sending side, reader.c the incoming side.
 *
 * Two locks divide it.  send_lock guards the socket's send side and the
 * pipelined batch; lock guards the reader role, the pending calls and the
 * queues the reader fills.  A thread that needs both takes send_lock first.
 * loop.c adds the event-loop side (np_get_fd, np_process): an epoll fd a
 * caller's loop polls, and the eventfd that makes it readable when work
 * waits in memory (loop_notify).
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "desctab.h"
#include "netpoll.h"
#include "wire.h"

/* Pipelined requests held before a flush; one datagram carries them plus
 * one request, within the daemon's 256 requests per message. */
#define BATCH_MAX 255

/* A FIFO of fixed-size items (events for np_poll, watch events). */
typedef struct Ring {
        unsigned char *buf;
        size_t esz, head, len, cap;
} Ring;

/* A call waiting for its reply: request_call links it into c->pending and
 * unlinks it, the reader fills it in from the reply with the same id. */
typedef struct Pending {
        uint64_t id;
        const Netpoll__V1__Request *req; /* the call's, and its fd: sent again after a restart */
        int fd;
        bool sent;     /* under send_lock: it left, so a restart must send it again */
        bool replayed; /* it was sent again to a restarted daemon */
        bool done;
        int result;
        uint64_t desc;
        struct np_session_stats stats;
        struct np_status *status;
        np_client_info *clients; /* lists, accumulated over `more` replies */
        np_desc_info *descs;
        size_t n_items, cap_items;
        struct Pending *next;
} Pending;

struct np_client {
        int sock;
        int evfd;
        atomic_int break_sig;
        atomic_int inside; /* threads waiting (or about to) in the library */

        pthread_mutex_t send_lock; /* protects the socket's send side and: */
        Netpoll__V1__Request batch[BATCH_MAX]; /* pipelined, not yet sent */
        size_t n_batch;

        pthread_mutex_t lock; /* protects everything below */
        pthread_cond_t cond;
        bool reading;
        bool quiet_reading; /* the reader blocks in recvmsg, not watching the break eventfd */
        bool breakable_seen; /* an np_poll/np_watch_read with a delay came: no quiet reader again */
        bool dead;
        bool break_pending;
        uint64_t next_id;
        Pending *pending;
        DescTable descs; /* what this connection has open: enables pipelining */
        Ring events;     /* np_event, for np_poll */
        Ring watch;      /* np_watch_event, for np_watch_read */
        uint64_t connection_id;
        uint32_t version;     /* of the protocol, agreed in the handshake */
        bool resume_pending;  /* a restarted daemon said `resumed`: request_resume */
        uint64_t resumes;     /* how many times it happened */
        bool watch_sent;      /* an OP_WATCH left (np_watch): sent again after a restart */
        uint64_t watch_filter;
        int64_t clock_offset; /* daemon's CLOCK_MONOTONIC minus ours (time namespaces) */

        Arena arena; /* the reader's */
        uint8_t *rbuf;

        /* Event-loop integration (loop.c), under lock; made by np_get_fd. */
        int loop_fd;     /* epoll: sock, evfd, kick_fd; -1 before np_get_fd */
        int kick_fd;     /* eventfd: np_process has work that no other fd shows */
        bool kicked;     /* kick_fd holds a count np_process has not drained */
        bool processing; /* np_process holds the reader role: it needs no kick */
        bool loop_out;   /* sock registered in loop_fd for EPOLLOUT: a batch waits for room */
        /* np_attach_event's attachment (loop-sdevent.c), which np_disconnect
         * ends through loop_detach without linking sd-event itself. */
        void *attachment;
        void (*loop_detach)(np_client *c);
};
