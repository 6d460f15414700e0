/*
 * The service manager's file descriptor store, seen from the daemon: one
 * datagram per stored or removed fd (FDSTORE=1 with FDNAME= and FDPOLL=0;
 * FDSTOREREMOVE=1), on a socket kept connected to NOTIFY_SOCKET, and the
 * count of what the store holds, checked against the unit's
 * FileDescriptorStoreMax= and against the room LISTEN_FDNAMES has.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* LISTEN_FDNAMES is one environment string: execve(2) refuses one longer
 * than 32 pages (MAX_ARG_STRLEN).  Names are budgeted to stay below it. */
#define FDNOTIFY_NAMES_BUDGET (120 * 1024)

typedef struct FdNotify {
        bool on; /* false: no store; every call succeeds and does nothing */
        uint32_t max; /* FileDescriptorStoreMax= of the unit, 0: no limit known */
        int fd; /* connected to NOTIFY_SOCKET at init (or first use); -1 */
        uint32_t stored; /* fds in the store */
        size_t name_bytes; /* their names and separators */
} FdNotify;

void fdnotify_init(FdNotify *n, bool on, uint32_t max);
void fdnotify_done(FdNotify *n);

/* Stores fd (borrowed) under name, leaving at least `spare` places of the
 * store free.  0, -ENOSPC (full), or -errno (the manager did not take it). */
int fdnotify_store(FdNotify *n, const char *name, int fd, uint32_t spare);
/* Asks the manager to drop name (a warning when it cannot be asked). */
void fdnotify_remove(FdNotify *n, const char *name);
/* Counts a fd that is in the store already (handed over at start). */
void fdnotify_count(FdNotify *n, const char *name);

/* netpolld's names in the store: a kind letter, a number and a generation,
 * "<kind><number>.<generation>" in hex (a carrier "D1f.3", a descriptor
 * slot "d7c0.5"). */
void fdnotify_name(char kind, uint32_t number, uint32_t gen, char *buf, size_t len);
/* Parses such a name whose kind is one of kinds: the kind, or 0. */
char fdnotify_parse_name(const char *name, const char *kinds, uint32_t *number, uint32_t *gen);
