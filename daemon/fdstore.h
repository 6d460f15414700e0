/*
 * What outlives the process: every connection socket and every registered
 * fd, kept in systemd's file descriptor store, 64 to a carrier (a stored
 * socket pair with the fds in flight on it: fdcarrier.h), and beside them
 * a memfd, "state", holding one record per connection slot and one per
 * descriptor slot: what a new instance needs to rebuild them (ids, names,
 * users, the request that opened each descriptor).
 *
 * Consistency at every instant, so that kill -9 anywhere loses nothing: a
 * record is written (shared memory: a killed process's stores stay) before
 * its fd is sent to its carrier, and that happens before the reply that
 * hands its id to the client leaves; a carrier's messages name each fd's
 * slot generation, so a record rewritten for a reused slot never pairs
 * with the previous occupant's fd; a fd whose record is gone is closed.
 *
 * Without systemd (or without --fd-store) the same records serve an
 * in-place upgrade (SIGUSR2, pollctl upgrade): the daemon re-executes
 * itself keeping every fd open, and passes their names in a second memfd.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fdcarrier.h"
#include "fdnotify.h"

#define FDSTORE_CONN_MAX (1u << 20)  /* connection slots with a record */
#define FDSTORE_DESC_MAX (1u << 24)  /* descriptor slots (TOKEN_INDEX_MAX + 1) */

typedef struct FdStoreConn {
        uint32_t gen; /* the slot's generation when stored; 0: none */
        uint32_t version; /* the connection's protocol version; 0: not greeted yet */
        uint64_t id;
        char name[48]; /* the hello's, cut short */
} FdStoreConn;

typedef struct FdStoreDesc {
        uint32_t gen; /* likewise */
        uint32_t conn_index, conn_gen; /* the connection that owns it */
        uint32_t unused;
        uint64_t user;
        uint64_t open_req; /* the OP_OPEN request's id, to answer its replay */
} FdStoreDesc;

/* A name the previous instance left in systemd's store, removed once
 * this one has stored its own carrier for the same chunk. */
typedef struct FdStoreHanded {
        char kind; /* 'C', 'D' (chunk: a carrier or one fd of the chunk), 0 */
        uint32_t chunk;
        char name[32];
} FdStoreHanded;

typedef struct FdStore {
        bool systemd; /* stored fds go to systemd's fd store (--fd-store) */
        int state_fd; /* the records' memfd; -1: none (every call is a no-op) */
        uint8_t *map;
        size_t map_len;
        FdNotify notify;
        CarrierSet conns, descs;
        FdStoreHanded *handed; /* until fdstore_resume_done() */
        size_t n_handed;
        uint64_t instance; /* 1 for a fresh start, +1 at every restart */
        uint64_t last_connection_id; /* the highest id the previous instances gave */
} FdStore;

/* A fd handed over by the previous instance, sorted out by name. */
typedef enum StoredKind {
        STORED_OTHER = 0,
        STORED_CONN = 'c',
        STORED_DESC = 'd',
} StoredKind;

typedef struct StoredFd {
        int fd;
        StoredKind kind;
        uint32_t index, gen;
        char name[32];
} StoredFd;

/* A fresh store: creates the state memfd and, with systemd, stores it.
 * systemd: use systemd's store; max: its FileDescriptorStoreMax= (0: not
 * known).  Returns 0 or -errno. */
int fdstore_init(FdStore *st, bool systemd, uint32_t max);

/* Takes over the store a previous instance left: the fds passed
 * (LISTEN_FDS/LISTEN_FDNAMES from systemd, or the manifest of an in-place
 * upgrade), consumed into *ret (each with its kind parsed from its name;
 * the state memfd and the listener are not among them: the listener, a
 * listening socket, goes to *ret_listen, -1 if none).  Falls back to
 * fdstore_init when no state memfd was passed.  Returns 0 or -errno. */
int fdstore_adopt(FdStore *st, bool systemd, uint32_t max, StoredFd **ret, size_t *ret_n,
                  int *ret_listen);

void fdstore_done(FdStore *st);

/* Writes the record of connection slot index/gen (version 0 for a
 * connection just accepted, not greeted yet), then stores fd (borrowed)
 * under its name.  0, -ENOSPC (store full: the unit's limit, or the names'
 * budget), or -errno. */
int fdstore_conn_add(FdStore *st, uint32_t index, uint32_t gen, uint64_t id, uint32_t version,
                     const char *name, int fd);
/* The hello came: its version (>= NP_PROTOCOL_VERSION_RESUME) and name go
 * in the record, before the welcome leaves. */
void fdstore_conn_greeted(FdStore *st, uint32_t index, uint32_t gen, uint32_t version,
                          const char *name);
void fdstore_conn_remove(FdStore *st, uint32_t index, uint32_t gen);

int fdstore_desc_add(FdStore *st, uint32_t index, uint32_t gen, uint32_t conn_index,
                     uint32_t conn_gen, uint64_t user, uint64_t open_req, int fd);
void fdstore_desc_remove(FdStore *st, uint32_t index, uint32_t gen);

/* The record of a slot, or NULL when out of range or not for that gen. */
const FdStoreConn *fdstore_conn_record(const FdStore *st, uint32_t index, uint32_t gen);
const FdStoreDesc *fdstore_desc_record(const FdStore *st, uint32_t index, uint32_t gen);

/* A fd handed over and taken back (resumed): kept from now on. */
void fdstore_keep(FdStore *st, StoredKind kind, uint32_t index, uint32_t gen, int fd);
/* Once every fd handed over is resumed or closed: new carriers for what
 * was kept, then the previous instance's names go. */
void fdstore_resume_done(FdStore *st);
/* Once per loop turn: the chunks that lost a fd get new carriers, which
 * lets the files of closed fds go. */
void fdstore_flush(FdStore *st);

/* In-place upgrade: an environment entry naming a memfd that lists
 * "FD NAME" lines for the fds given (all made inheritable), the state
 * memfd's, the listener's and our carriers' included.  Returns 0 or
 * -errno. */
int fdstore_exec_manifest(FdStore *st, const StoredFd *fds, size_t n, int listen_fd,
                          char *env, size_t envlen);
/* The exec did not happen: what the manifest made inheritable (the state
 * memfd, the carriers) is close-on-exec again. */
void fdstore_exec_failed(FdStore *st);
