/*
 * The daemon's shared state (struct Server) and the operations on it that
 * every module above the core needs: the connection table (a registry that
 * connections join and retire from), closing a client's fd, sorting an fd,
 * asking for an upgrade.  It depends on the core modules only; server.c
 * fills it in and runs the loop over it (server.h).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "../common/arena.h"
#include "account.h"
#include "closer.h"
#include "config.h"
#include "fdstore.h"
#include "notify.h"
#include "netpoll.pb-c.h"
#include "pollcache.h"
#include "poller.h"
#include "pollops.h"
#include "timers.h"

typedef struct Session Session;

typedef struct ServerStats {
        uint64_t events;          /* readiness outcomes delivered */
        uint64_t timeouts;        /* timeout outcomes delivered */
        uint64_t protocol_errors; /* connections dropped for bad traffic */
        uint64_t accepted;
        uint64_t wakeups; /* wakeups of the loop through its eventfd, by closer workers */
} ServerStats;

/* Where the configuration came from, so SIGHUP can read it again. */
typedef struct ConfigSource {
        const char *path;            /* --config, or NULL */
        const char *socket_override; /* --socket, or NULL */
        int log_level_override;      /* --log-level, or -1 */
        bool fd_store;               /* --fd-store: keep state in systemd's fd store */
        uint32_t fd_store_max;       /* its FileDescriptorStoreMax= (0: not known) */
        const char *exe;             /* the binary to re-execute for an upgrade */
        char *const *argv;           /* and its arguments */
} ConfigSource;

typedef struct Server Server;
typedef struct PollSlot PollSlot;
typedef struct NpRequest NpRequest;

/*
 * What the modules above the core call upwards, filled in by server.c (the
 * one place that wires the daemon together): sessions and the listener
 * report to the introspection module through these, and the listener hands
 * new connections on, never by name, so that every dependency in daemon/
 * points one way (tools/include-graph).
 */
typedef struct EnvHooks {
        /* A watch event (OP_WATCH subscribers): kind a Netpoll__V1__WatchKind. */
        void (*watch)(Server *s, int kind, const Session *about, uint64_t desc, int mode);
        /* OP_STATUS, OP_LIST_*, OP_WATCH, OP_UPGRADE. */
        void (*admin_request)(Session *sess, const NpRequest *q);
        /* A connection ends: drop its subscriptions and listings. */
        void (*session_ending)(Session *sess);
        /* A descriptor slot is freed: listings under way move past it. */
        void (*desc_freed)(Server *s, const PollSlot *slot);
        /* The listener accepted and admitted a connection: serve it at
         * index (from env_index_alloc).  Consumes fd, also on failure.
         * 0 or -errno (the listener logs it). */
        int (*connection_accepted)(Server *s, int fd, uint32_t index);
} EnvHooks;

struct Server {
        const EnvHooks *hooks;
        Config *config; /* replaced in place on reload */
        ConfigSource source;
        Notify notify;
        Poller poller;
        PollCache cache;
        Timers timers;
        PollOps ops;

        int listen_fd;
        struct sockaddr_un listen_addr; /* its address, to recognise connections to us */
        socklen_t listen_addr_len;
        dev_t listen_dev; /* the listening socket's inode, to recognise it */
        ino_t listen_ino;
        bool listen_owned; /* we bound it (not socket activation): unlink at exit */
        dev_t sock_dev;    /* the socket file we created, to unlink only ours */
        ino_t sock_ino;
        int reserve_fd;    /* spare fd for accepting under EMFILE */
        bool listen_paused; /* out of fds: the listener is not polled (listener_resume) */
        int signal_fd;

        Session **sessions; /* indexed by token index */
        uint32_t *session_gens;
        uint32_t sessions_cap;
        uint32_t n_sessions;
        uint64_t next_connection_id;

        Session *dirty;  /* sessions with replies to flush this turn */
        Session *dead;   /* ended sessions: their fds are closed in batches, then freed */
        Session *listing; /* sessions with an OP_LIST_DESCS under way */
        int64_t descs_due; /* when the next page of them may go */
        Session *held;    /* sessions whose input waits for their uid's closes */

        Accounts accounts; /* per uid: connections, fds, queued output */
        Closer closer;     /* closes client fds off the loop thread */
        uint64_t fd_limit_uid;     /* fds one uid may have the daemon hold */
        uint64_t fd_limit_clients; /* all uids together: RLIMIT_NOFILE - reserved_fds */

        Arena arena;     /* decoding, reset after every datagram */
        uint8_t *rbuf;   /* one datagram in */
        uint8_t *wbuf;   /* one datagram out */

        Netpoll__V1__Status status; /* snapshot for OP_STATUS replies */
        int64_t started_ns;
        ServerStats stats;
        bool stopping;
        bool handover;  /* stopping without ending connections: the next instance takes them */
        bool upgrading; /* stopping to re-execute (SIGUSR2, OP_UPGRADE) */
        FdStore store;  /* what outlives the process (fdstore.h) */
        StoredFd *adopted; /* handed over by the previous instance, until server_resume */
        size_t n_adopted;
        int adopted_listen;
        uint64_t resumed_connections, resumed_descriptors;
        int64_t started_unix_ns;
        int64_t handshake_due;   /* when the earliest hello owed is due, or INT64_MAX */
        uint32_t n_watchers;     /* connections subscribed with OP_WATCH, */
        Session *watchers;       /* linked through next_watcher */
};

/* Grows the connection table to at least need entries.  0 or -ENOMEM. */
int env_sessions_grow(Server *s, uint32_t need);

/* Finds a free connection index, growing the table.  0 or -ENOMEM. */
int env_index_alloc(Server *s, uint32_t *ret);

/* Puts sess in the table at its index (joined: counted, its generation
 * the index's current one). */
void env_join(Server *s, Session *sess, uint32_t index);

/* Takes the connection at index out of the table and changes the index's
 * generation, so later events for it are stale. */
void env_retire(Server *s, uint32_t index);

/* Consumes fd, a client's or a connection to one: hands it to the closer,
 * charged to acct (NULL: none) until closed.  charged: already counted in
 * acct (a registered descriptor's, a connection's socket).  A connection's
 * socket goes this way too: closing it drops the datagrams it still holds,
 * and with them the fds they carry, which may take long to close. */
void env_close_client_fd(Server *s, Account *acct, int fd, bool charged);

/* Sorts fd (borrowed), without a system call that could wait on the
 * file: 1 when it is one of the daemon's own files (its poller fds, its
 * signalfd, its listener, or a connection to it, any client's: registering
 * one would make the daemon poll itself); -EPERM for a kind of file that
 * cannot be polled (regular file, directory, block device), which is not
 * even tried; 0 for anything else; -errno when statx fails.  *ret_key
 * gets the file's FileCount key (filecount.h), 0 for anonymous inodes. */
int env_classify_fd(const Server *s, int fd, uint32_t *ret_key);

/* Asks the loop to re-execute the daemon once this turn's replies are out
 * (SIGUSR2, OP_UPGRADE). */
void env_request_upgrade(Server *s);
