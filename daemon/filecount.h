/*
 * How many times one connection has registered each file, so that it can
 * be bounded: a file registered thousands of times makes every write to
 * it wake thousands of epoll entries, and every further registration walk
 * all of them (the kernel checks wakeup paths into nested epoll sets), so
 * opening grew quadratic.  Files are keyed by a 64-bit hash of (device,
 * inode), which names one open file for sockets and one pipe, FIFO or
 * device node for the others; anonymous-inode files (eventfd, timerfd,
 * epoll, signalfd) all share one inode and are not counted (key 0).
 *
 * An open-addressing table with linear probing and backward-shift
 * deletion; it grows by doubling and never holds more keys than the
 * connection has descriptors.
 */
#pragma once

#include <stdint.h>

typedef struct FileCountEntry {
        uint32_t key; /* 0: empty */
        uint32_t count;
} FileCountEntry;

typedef struct FileCount {
        FileCountEntry *v;
        uint32_t cap, n; /* cap a power of two, or 0 */
} FileCount;

/* The key of a file from its device and inode numbers (never 0).  Two
 * files of one connection whose keys collide (about one pair in a
 * thousand connections of 4,096 files) share a count: stricter, never
 * looser. */
uint32_t filecount_key(uint64_t dev, uint64_t ino);

/* Counts one more registration of key (0: not counted, always 0).
 * Returns 0, -ETOOMANYREFS when it already has `limit`, or -ENOMEM. */
int filecount_add(FileCount *f, uint32_t key, uint32_t limit);

/* Counts one registration of key less (0 is ignored). */
void filecount_remove(FileCount *f, uint32_t key);

void filecount_done(FileCount *f);
