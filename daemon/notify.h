/*
 * Talking to the service manager through libsystemd's sd-daemon: READY,
 * STATUS (at most once a second), WATCHDOG (at half of WATCHDOG_USEC, sent
 * from the event loop so a stuck loop misses pings), RELOADING, STOPPING.
 * Without $NOTIFY_SOCKET every call is a cheap no-op.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct Notify {
        bool enabled;           /* $NOTIFY_SOCKET is set */
        int64_t watchdog_ns;    /* ping interval (a quarter of WATCHDOG_USEC), 0: off */
        int64_t next_watchdog;  /* CLOCK_MONOTONIC ns */
        int64_t next_status;
        char last_status[256];
} Notify;

void notify_init(Notify *n);

/* The next time notify_tick wants to run (INT64_MAX: never). */
int64_t notify_next(const Notify *n);

/* Whether notify_tick would send a STATUS= now (so the caller builds it). */
bool notify_status_due(const Notify *n, int64_t now);

/* Sends WATCHDOG=1 when due, and STATUS=status when due and changed. */
void notify_tick(Notify *n, int64_t now, const char *status);

void notify_ready(Notify *n, const char *status);
void notify_reloading(Notify *n);
void notify_stopping(Notify *n);
