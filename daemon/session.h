/*
 * One client connection: receives request datagrams with their SCM_RIGHTS
 * fds, runs each request against pollops, and queues replies and events,
 * which are packed into as few datagrams as possible at the end of the loop
 * turn.  Owns every descriptor its client registered.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "codec.h"
#include "fdstore.h"
#include "filecount.h"
#include "pollops.h"

typedef struct Server Server;
/* Descriptors of one connection registered in the main epoll set itself;
 * the rest go to the connection's own nested set (session-request.c:
 * desc_register). */
#define SESSION_FLAT_MAX 16

typedef struct Session Session;

/* An OP_LIST_DESCS under way (admin-descs.c). */
typedef struct DescsJob {
        bool active;
        bool admin;    /* may list every connection's */
        uint64_t req;  /* the request's id */
        uint64_t want; /* client id filter, 0: every one it may see */
        /* Cursor: a connection, its generation, and the next of its slots
         * to list (pollcache list link; 0: its first; UINT32_MAX: none
         * left).  A slot that is freed moves every cursor on it along
         * (admin_descs_forget). */
        uint32_t index, gen, next_slot;
        Session *next; /* the server's list of listings under way */
} DescsJob;

/* A descriptor a restarted daemon took over, by the OP_OPEN that made it:
 * that request's replay gets the same descriptor (sorted by req). */
typedef struct ResumedOpen {
        uint64_t req, desc;
} ResumedOpen;

struct Session {
        Server *server;
        struct Account *acct; /* its uid's: charged for its fds and queued output */
        uint32_t index; /* in server->sessions; token index */
        int fd;
        int group_fd; /* its descriptors' epoll set, nested in the main one; -1 until needed */
        uint32_t n_flat; /* its descriptors in the main set itself (SESSION_FLAT_MAX, and past the nesting limits) */
        uint64_t id;
        pid_t pid;
        uid_t uid;
        gid_t gid;
        char comm[17]; /* /proc/PID/comm: as it is (the logger escapes what it logs) */
        char name[64]; /* from the hello, likewise */
        bool greeted;
        uint32_t version; /* the connection's protocol version, once greeted */
        bool stored;   /* in the fd store (fdstore.h) */
        bool resuming; /* taken over by this instance: input is dropped until OP_RESUME */
        uint64_t resume_dropped; /* datagrams dropped meanwhile */
        ResumedOpen *resumed_opens;
        size_t n_resumed_opens;
        bool dead;
        bool broken; /* out of memory: closed at the next flush */
        bool dirty;
        bool want_out; /* EPOLLOUT requested: the socket was full */
        bool want_in;  /* EPOLLIN requested (session_update_input) */
        bool quota_held; /* its uid is at its fd quota with closes in flight */
        bool watching; /* OP_WATCH subscriber */
        uint64_t watch_client; /* 0: every connection it may see */
        bool watch_admin;      /* may see every connection's events */

        PollOwner owner; /* its descriptors are the slots with pd.owner == &owner */
        FileCount files; /* registrations per file (SESSION_MAX_SAME_FILE) */

        Outbound *out; /* replies and events of this turn */
        size_t n_out, cap_out;
        uint8_t *queue; /* packed datagrams the socket did not take */
        size_t queue_len, queue_cap;
        void **held; /* list payloads referenced by out, freed after flush */
        size_t n_held, cap_held;

        uint32_t draining;   /* released descriptors whose fds are still to close */
        uint32_t drain_iter; /* pollcache_next_owned cursor of session_drain */
        uint64_t requests;
        uint64_t work; /* budget units spent (session-internal.h: WORK_BUDGET) */
        bool introspected; /* this datagram had its one status/list request */
        DescsJob descs;
        int64_t connected_ns;
        Session *next_dirty;
        Session *next_watcher;
        Session *next_held; /* the server's list of quota_held sessions */
        Session *next_dead;
};

/* Takes ownership of fd (an accepted connection).  Returns 0 or -errno. */
int session_new(Server *server, int fd, uint32_t index, Session **ret);

/* Restarts: takes over a connection the previous instance stored (sf->fd
 * consumed) at its old index, whose generation the caller has set: greeted
 * (resuming) or, when it had not said hello yet, waiting for its hello.
 * Returns 0 or -errno. */
int session_restore(Server *server, const StoredFd *sf, const FdStoreConn *rec, Session **ret);

/* Once it is in the table: sends a resuming connection its resumed notice.
 * May close it (a client that went away meanwhile). */
void session_send_resumed(Session *s);

/* Takes over one of its descriptors at its old slot (sf->fd consumed only
 * on success).  Returns 0 or -errno. */
int session_restore_desc(Session *s, const StoredFd *sf, const FdStoreDesc *rec);

/* Takes the connection and every descriptor of it out of the fd store
 * (it is full): a restart then ends the connection, cleanly, instead of
 * resuming it without some of its descriptors. */
void session_unstore(Session *s);

/* After its descriptors: sorts what session_restore_desc noted. */
void session_restore_done(Session *s);

/* Frees a session that session_close() has already torn down. */
void session_free(Session *s);

/*
 * Handles one received datagram (len bytes at buf) and the fds that came
 * with it (consumed: each is taken over or closed).  emfile: the daemon ran
 * out of fds receiving it, so its fd-taking requests fail with -EMFILE.
 * session_dispatch calls it for every datagram; fuzzers call it directly.
 */
void session_feed(Session *s, const uint8_t *buf, size_t len, int *fds, size_t nfds, bool emfile);

/* Takes up to a budget of its descriptors' readiness events (its group was
 * reported ready) and runs them through pollops.  What is left stays in the
 * group, which is level-triggered, for the next turn. */
void session_take_events(Session *s);

/* Handles EPOLLIN/EPOLLOUT/EPOLLHUP on the connection. */
void session_dispatch(Session *s, uint32_t events);

/* Schedules s to be flushed at the end of this loop turn. */
void session_mark_dirty(Server *srv, Session *s);

/* Queues a reply, event or watch event for this turn's flush.  Never
 * closes the session itself (it may run inside pollops): on allocation
 * failure it marks it broken and the flush closes it. */
void session_push(Session *s, const Outbound *o);

/* Keeps p (malloc'd) alive until this turn's flush, then frees it. */
void session_hold(Session *s, void *p);

/* Sends what this turn queued.  May close the session. */
void session_flush(Session *s);

/* Ends the connection: every descriptor's waits and timers are dropped at
 * once, its fds are closed by session_drain in later batches, and the
 * session goes to the server's dead list until that is done. */
void session_close(Session *s, const char *why);

/* Closes up to budget fds of a closed session's released descriptors
 * (epoll DEL first) and frees their slots.  Returns how many; the session
 * may be freed once s->draining is 0. */
uint32_t session_drain(Session *s, uint32_t budget);

/* Ends every parked wait of this session with NP_ERR_CLOSING (shutdown). */
void session_unblock_all(Session *s);

/* Resumes the input of held sessions whose uid's closes have caught up
 * (the loop, every turn).  Returns whether any is still held. */
bool session_quota_release(Server *srv);

/* The PollOps wake callback: queues the outcome of an ended wait. */
void session_wake(PollOps *ops, PollDesc *pd, int mode, PollSem waiter, int result);
