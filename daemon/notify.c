/* sd-daemon notifications; see notify.h. */
#include "notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "../common/clock.h"

void notify_init(Notify *n)
{
        uint64_t usec = 0;

        *n = (Notify){ .next_watchdog = INT64_MAX, .next_status = 0 };
        const char *s = getenv("NOTIFY_SOCKET");
        n->enabled = s && *s;
        /* sd_watchdog_enabled checks WATCHDOG_PID against us too. */
        if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
                /* A quarter of the interval: a turn that runs late still keeps
                 * every gap under half of it. */
                n->watchdog_ns = (int64_t)usec * 1000 / 4;
                n->next_watchdog = now_ns() + n->watchdog_ns;
        }
}

int64_t notify_next(const Notify *n)
{
        int64_t next = n->next_watchdog;

        if (n->enabled && n->next_status < next)
                next = n->next_status;
        return next;
}

bool notify_status_due(const Notify *n, int64_t now)
{
        return n->enabled && now >= n->next_status;
}

void notify_tick(Notify *n, int64_t now, const char *status)
{
        if (n->watchdog_ns && now >= n->next_watchdog) {
                sd_notify(0, "WATCHDOG=1");
                n->next_watchdog = now + n->watchdog_ns;
        }
        if (notify_status_due(n, now)) {
                if (strcmp(status, n->last_status) != 0) {
                        char msg[300];
                        snprintf(msg, sizeof(msg), "STATUS=%s", status);
                        sd_notify(0, msg);
                        snprintf(n->last_status, sizeof(n->last_status), "%s", status);
                }
                n->next_status = now + NSEC_PER_SEC;
        }
}

void notify_ready(Notify *n, const char *status)
{
        char msg[300];

        snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
        sd_notify(0, msg);
        snprintf(n->last_status, sizeof(n->last_status), "%s", status);
        n->next_status = now_ns() + NSEC_PER_SEC;
}

void notify_reloading(Notify *n)
{
        (void)n;
        /* systemd 253+ also wants MONOTONIC_USEC with Type=notify-reload;
         * sending it is harmless to older managers. */
        char msg[64];
        snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%lld",
                 (long long)(now_ns() / 1000));
        sd_notify(0, msg);
}

void notify_stopping(Notify *n)
{
        (void)n;
        sd_notify(0, "STOPPING=1");
}
