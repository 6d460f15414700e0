/*
 * libnetpoll: the client library of netpolld, Go's runtime network poller
 * as a service.  See netpoll(3).
 *
 * Every function returns 0 or a non-negative NP_* code on success and a
 * negative errno on failure.  Every function but np_disconnect is
 * thread-safe on one np_client: a thread blocked in np_wait does not delay
 * other threads' calls, and calls of one connection take effect in the order
 * they were made.  After fork() the child must not use the parent's
 * np_client (it shares the parent's connection): connect anew.
 *
 * ABI: every function is versioned (LIBNETPOLL_0.1, client/libnetpoll.map).
 * The structs below are part of the version of the functions that fill
 * them: a struct never grows in place; a release that needs a field more
 * adds the functions again under a new version with the larger struct, and
 * programs built against the old one keep getting the old layout (as glibc
 * does).
 */
#ifndef NETPOLL_H
#define NETPOLL_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NP_READ 'r'
#define NP_WRITE 'w'
#define NP_RW ('r' + 'w')

/* Outcomes (Go's pollNoError, pollErrClosing, pollErrTimeout, pollErrNotPollable). */
enum { NP_OK = 0, NP_ERR_CLOSING = 1, NP_ERR_TIMEOUT = 2, NP_ERR_NOT_POLLABLE = 3 };

/* The default socket, used when np_connect gets NULL and $NETPOLL_SOCKET is unset. */
#define NP_DEFAULT_SOCKET "/run/netpolld/netpolld.sock"

typedef struct np_client np_client;
typedef uint64_t np_desc;

typedef struct np_event {
        np_desc desc;  /* the descriptor whose armed wait ended */
        uint64_t user; /* the cookie given to np_open */
        int mode;      /* NP_READ or NP_WRITE */
        int result;    /* NP_OK, NP_ERR_CLOSING, NP_ERR_TIMEOUT or NP_ERR_NOT_POLLABLE */
} np_event;

struct np_session_stats {
        uint64_t descriptors; /* registered descriptors of this connection */
        uint64_t waiters;     /* parked waits */
        uint64_t timers;      /* armed deadline timers */
};

/* Connects to the daemon at path (NULL: $NETPOLL_SOCKET, else NP_DEFAULT_SOCKET)
 * and makes the version handshake.  -ENOENT/-ECONNREFUSED no daemon, -EACCES
 * refused, -EPROTO version mismatch. */
int np_connect(const char *path, np_client **ret);

/* Closes the connection; the daemon releases everything it held for it.
 * Accepts NULL.  No other call on c may be running or follow. */
void np_disconnect(np_client *c);

/* pollOpen: registers fd.  The caller keeps its fd; the daemon holds its own
 * copy until np_close.  user comes back in np_event.  -EBADF bad fd, -EPERM
 * not pollable, -EINVAL the daemon's poller fds or this client's own fds,
 * -EDQUOT per-connection quota, -EMFILE the daemon is out of fds. */
int np_open(np_client *c, int fd, uint64_t user, np_desc *ret);

/* pollUnblock: parked waits end with NP_ERR_CLOSING, timers stop.
 * -EALREADY already closing, -EBADF. */
int np_unblock(np_client *c, np_desc d);

/* pollClose: d is invalid afterwards.  -EBUSY not unblocked, or an
 * np_wait_canceled still parked; -EBADF. */
int np_close(np_client *c, np_desc d);

/* pollReset: the error check's code, else discards latched readiness of
 * mode and returns NP_OK.  -EINVAL mode not NP_READ/NP_WRITE, -EBADF. */
int np_reset(np_client *c, np_desc d, int mode);

/* pollWait: the error check first, latched readiness consumed at once,
 * else blocks until NP_OK, NP_ERR_TIMEOUT or NP_ERR_CLOSING.  -EBUSY a wait
 * of d and mode is already parked, -EINVAL, -EBADF, -ECONNRESET daemon lost. */
int np_wait(np_client *c, np_desc d, int mode);

/* pollWaitCanceled: waits for readiness only, ignoring closing and deadlines. */
int np_wait_canceled(np_client *c, np_desc d, int mode);

/* pollSetDeadline: ns > 0 now + ns, < 0 expired now, 0 none; mode NP_READ,
 * NP_WRITE or NP_RW.  Returns 0 (also when closing).  -EINVAL, -EBADF. */
int np_set_deadline(np_client *c, np_desc d, int64_t ns, int mode);

/* An asynchronous np_wait: returns 0 once accepted; the outcome, immediate
 * ones too, is delivered by np_poll.  -EBUSY, -EINVAL, -EBADF as np_wait. */
int np_arm(np_client *c, np_desc d, int mode);

/* netpoll(delay) over armed waits: fills up to max events and returns how
 * many.  delay < 0 blocks until at least one or an np_break; 0 never blocks;
 * > 0 waits at most delay ns and never returns early without an event or a
 * break.  Events beyond max stay queued. */
int np_poll(np_client *c, int64_t delay_ns, np_event *events, int max);

/* netpollBreak: wakes a blocked np_poll, or makes the next blocking one
 * return at once; coalesced; an np_poll with delay 0 does not consume it.
 * Thread-safe and async-signal-safe. */
int np_break(np_client *c);

/* 1 if fd is one of the daemon's poller fds or this client's own fds (its
 * connection socket, its break eventfd, np_get_fd's fds), else 0.  -EBADF. */
int np_is_poll_descriptor(np_client *c, int fd);

/*
 * Event-loop integration, after sd-bus (sd_bus_get_fd, _get_events,
 * _get_timeout, _process, _attach_event): a loop polls np_get_fd for
 * np_get_events and calls np_process when it is readable (or when
 * np_get_timeout is due); np_process never waits.  See netpoll(3), EVENT
 * LOOPS.
 */

/* One fd that is readable whenever np_process has work: an epoll fd over
 * the connection socket, np_break's eventfd and the library's own kick
 * eventfd (events another thread read, pipelined requests to send).  Made
 * at the first call, the same one afterwards; the library owns it (do not
 * close or read it; np_disconnect closes it).  -ENOMEM, -EMFILE. */
int np_get_fd(np_client *c);

/* The poll events to wait for on np_get_fd: POLLIN. */
int np_get_events(np_client *c);

/* When np_process is due without the fd, as an absolute CLOCK_MONOTONIC
 * time in ns: 0 (at once) while work is already in memory, else UINT64_MAX
 * (none: the library keeps no timers; deadlines run in the daemon).
 * Returns 1 with a time, 0 with none. */
int np_get_timeout(np_client *c, uint64_t *ret_ns);

/* np_poll(c, 0, ...) for a loop: takes an np_break, sends the pipelined
 * batch (kept when the socket is full), reads what the socket has (replies
 * of other threads' calls too) and moves up to max outcomes of armed waits
 * into events.  Never waits (but to resend state to a daemon that just
 * restarted).  Returns how many (0: none, also after a break), or
 * -ECONNRESET once none is left and the daemon is gone. */
int np_process(np_client *c, np_event *events, int max);

/* sd-event's loop (<systemd/sd-event.h>; declared here without it). */
struct sd_event;

/* Called from the loop with n > 0 outcomes, with n == 0 after an np_break,
 * or once with a negative errno (events NULL) when the connection is gone
 * for good, after which the source is off.  A negative return disables the
 * source, as for any sd-event callback. */
typedef int (*np_event_handler)(np_client *c, const np_event *events, int n, void *userdata);

/* Adds np_get_fd to the sd-event loop e (NULL: the thread's default loop,
 * sd_event_default) as an I/O source of the given priority that runs
 * np_process and hands the outcomes to handler.  Takes a reference on e.
 * Call it, np_detach_event and np_disconnect in the loop's thread.
 * -EBUSY already attached, -EINVAL, or sd-event's -errno. */
int np_attach_event(np_client *c, struct sd_event *e, int64_t priority, np_event_handler handler,
                    void *userdata);

/* Removes the source and drops the reference; 0 also when not attached.
 * np_disconnect detaches too. */
int np_detach_event(np_client *c);

/* This connection's registered descriptors, parked waits, armed timers. */
int np_session_stats(np_client *c, struct np_session_stats *ret);

/* Asks the daemon to re-execute its binary in place (admins only: -EPERM
 * otherwise), keeping every connection and descriptor: as after SIGUSR2.
 * Returns 0 once the request is accepted; the new instance's np_status
 * says instance + 1. */
int np_upgrade(np_client *c);

/* Daemon-wide figures, as `pollctl status` shows them. */
struct np_status {
        char version[32];
        uint32_t pid;
        uint64_t uptime_ns;
        uint64_t connections;
        uint64_t descriptors;
        uint64_t waiters;
        uint64_t timers;
        uint64_t events;   /* readiness outcomes delivered since start */
        uint64_t timeouts; /* timeout outcomes delivered since start */
        uint64_t protocol_errors;
        uint64_t slots_in_use;
        uint64_t slots_allocated;
        uint64_t breaks;    /* wakeups of the daemon's loop through its eventfd */
        uint64_t rss_bytes; /* the daemon's resident memory */
        uint64_t open_fds;  /* the daemon's open fds */
        uint64_t fd_limit;  /* its RLIMIT_NOFILE */
        uint64_t accepted;  /* connections accepted since start */
        uint32_t max_connections;
        uint32_t max_connections_per_uid;
        uint32_t max_descriptors;
        uint32_t max_output_bytes;
        uint64_t handshake_timeout_ns;
        /* Restarts (netpoll(3), RESTARTS): */
        int64_t started_unix_ns;   /* when this instance started (CLOCK_REALTIME) */
        uint64_t instance;         /* 1 after a fresh start, +1 at every restart that resumed */
        uint64_t resumed_connections; /* taken over by this instance */
        uint64_t resumed_descriptors;
        bool fd_store;             /* keeping its state in systemd's fd store (--fd-store) */
};

/* State of one direction of a descriptor, as np_list_descs reports it. */
enum { NP_DIR_IDLE = 0, NP_DIR_READY = 1, NP_DIR_WAITING = 2, NP_DIR_CLOSING = 3 };

typedef struct np_client_info {
        uint64_t id;
        uint32_t pid, uid, gid;
        char comm[17];
        char name[64];
        uint64_t descriptors, waiters, timers;
        uint64_t queued_bytes; /* replies the daemon holds for it */
        uint64_t connected_ns; /* connected for */
        uint64_t requests;     /* requests served */
        int self;              /* the asking connection */
} np_client_info;

typedef struct np_desc_info {
        uint64_t client;
        np_desc desc;
        uint64_t user;
        char type[16];         /* unix, tcp, udp, pipe, fifo, eventfd, tty, ... */
        int read, write;       /* NP_DIR_* */
        int64_t read_deadline_ns, write_deadline_ns; /* remaining; 0 none; -1 expired */
        int event_err;
} np_desc_info;

enum {
        NP_WATCH_READY = 1,    /* readiness delivered to a wait */
        NP_WATCH_TIMEOUT = 2,  /* a wait ended by its deadline */
        NP_WATCH_CLOSING = 3,  /* a wait ended by unblock */
        NP_WATCH_OPEN = 4,
        NP_WATCH_CLOSE = 5,
        NP_WATCH_CONNECT = 6,
        NP_WATCH_DISCONNECT = 7,
};

typedef struct np_watch_event {
        int64_t time_ns;       /* the daemon's CLOCK_MONOTONIC */
        int kind;              /* NP_WATCH_* */
        uint64_t client;
        np_desc desc;          /* open, close and wait outcomes */
        int mode;              /* wait outcomes: NP_READ or NP_WRITE */
        uint32_t pid;          /* of the client */
        char comm[17];
} np_watch_event;

/* This connection's id, as the daemon's lists name it. */
uint64_t np_connection_id(np_client *c);

/* The connections this one may see (its own; all for root and the daemon's
 * admin_users/admin_groups): a malloc'd array the caller frees. */
int np_list_clients(np_client *c, np_client_info **ret, size_t *ret_n);

/* The descriptors of connection `client` (0: of every connection this one
 * may see).  -EACCES for another connection's without admin rights. */
int np_list_descs(np_client *c, uint64_t client, np_desc_info **ret, size_t *ret_n);

/* Subscribes to events of connection `client` (0: every one it may see);
 * read them with np_watch_read.  -EACCES as np_list_descs. */
int np_watch(np_client *c, uint64_t client);

/* Like np_poll, over watch events; an np_break ends it too (returning 0),
 * so a signal handler can stop a watcher. */
int np_watch_read(np_client *c, int64_t delay_ns, np_watch_event *events, int max);

/* One round trip to the daemon.  Returns 0 or -errno. */
int np_ping(np_client *c);

/* Fills *ret with the daemon's status.  Returns 0, -EACCES without admin
 * rights (root, or the daemon's admin_users/admin_groups), or -errno. */
int np_status(np_client *c, struct np_status *ret);

/* A static description of an NP_* code (>= 0) or a negative errno. */
const char *np_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif
