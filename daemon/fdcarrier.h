/*
 * Carriers: how thousands of fds fit in a service manager's fd store that
 * holds a few hundred.  A carrier is a datagram socket connected to itself
 * (autobound, so no other socket may send to it) and stored (one store
 * entry); the fds of up to CARRIER_SLOTS consecutive slots are sent to it
 * in SCM_RIGHTS messages that stay queued: the kernel keeps them in
 * flight, and with them the files open, for as long as the socket lives.
 * Each message names its fds (slot index and generation), so a new
 * instance reads a carrier with MSG_PEEK and goes on using it.
 *
 * A fd added is one message.  A fd dropped makes its chunk dirty; once per
 * loop turn a dirty chunk is compacted: one message with exactly its live
 * fds is queued, then the older messages are received and their fds
 * discarded, which lets the files of closed fds go.  A restart between the
 * two finds every live fd (twice: the reader keeps one) and the dropped
 * ones without a record.  The service manager hears of a carrier only when
 * a chunk first needs one, so an np_close costs it nothing.  Carriers are
 * named "<K><chunk>.<generation>", K the kind's letter in upper case.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fdnotify.h"

#define CARRIER_SLOTS 64u

typedef struct CarrierEntry {
        uint32_t index, gen;
} CarrierEntry;

typedef struct Carrier {
        int fd; /* the stored socket; -1: none of ours */
        uint32_t gen; /* its generation (the newest seen, when fd is -1) */
        uint32_t msgs; /* messages queued on it */
        bool dirty; /* on the dirty list */
} Carrier;

typedef struct CarrierSet {
        char kind; /* 'C' or 'D': the names' first letter */
        int *fds; /* per slot: the fd it keeps (borrowed), -1 */
        uint32_t *gens; /* per slot: that fd's generation */
        size_t slots; /* allocated: a multiple of CARRIER_SLOTS */
        Carrier *chunks; /* slots / CARRIER_SLOTS of them */
        uint32_t *dirty;
        size_t n_dirty, dirty_cap;
} CarrierSet;

void carrier_set_init(CarrierSet *cs, char kind);
/* Closes our ends; what is stored stays stored. */
void carrier_set_done(CarrierSet *cs);

/* Keeps fd (borrowed until carrier_set_drop) for slot index/gen and sends
 * it to its chunk's carrier (one that is made and stored first if there is
 * none).  0 or -ENOSPC: the store has no room, or the kernel refused. */
int carrier_set_put(CarrierSet *cs, FdNotify *n, uint32_t index, uint32_t gen, int fd);
/* Notes fd for slot index/gen without sending it: a fd handed over, in
 * its carrier already (or, from an older instance, not: see
 * carrier_set_resume). */
int carrier_set_keep(CarrierSet *cs, uint32_t index, uint32_t gen, int fd);
/* Forgets slot index/gen; its chunk is compacted at the next flush. */
void carrier_set_drop(CarrierSet *cs, uint32_t index, uint32_t gen);
/* Compacts the dirty chunks. */
void carrier_set_flush(CarrierSet *cs, FdNotify *n);
/* A carrier the previous instance passed, read already (msgs messages):
 * ours from now on.  Its name is not to be removed. */
int carrier_set_adopt(CarrierSet *cs, uint32_t chunk, uint32_t gen, int fd, uint32_t msgs);
/* A stale carrier passed (an older generation of a chunk): the next one
 * made for that chunk is newer. */
int carrier_set_seen(CarrierSet *cs, uint32_t chunk, uint32_t gen);
/* After a handover: every chunk compacted (what was not kept goes), or
 * given a carrier if it had none (fds of an instance that stored them one
 * by one); remove(chunk) follows each chunk's success (the names left for
 * it by the previous instance). */
void carrier_set_resume(CarrierSet *cs, FdNotify *n,
                        void (*remove)(void *userdata, char kind, uint32_t chunk),
                        void *userdata);


/* Every fd a carrier holds, and its entry, read without taking them out:
 * *ret_fds are new fds (close-on-exec); *ret_msgs counts the messages.
 * Returns 0 or -errno. */
int carrier_peek(int fd, CarrierEntry **ret_entries, int **ret_fds, size_t *ret_n,
                 uint32_t *ret_msgs);
