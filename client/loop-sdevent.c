/*
 * np_attach_event: the connection as one I/O source of an sd-event loop,
 * as sd_bus_attach_event makes a bus one.  The source watches np_get_fd
 * and runs np_process (loop_process) once per dispatch, for at most
 * DISPATCH_MAX events: more stay queued and keep the fd readable, so the
 * loop's other sources of the same priority get their turn in between.
 *
 * No time source: the library keeps no timers (np_get_timeout), and the fd
 * shows every piece of work.  The attachment is the only code of the
 * library that calls into libsystemd, in a file of its own so that a
 * program linking libnetpoll.a without calling np_attach_event does not
 * need -lsystemd; np_disconnect ends it through c->loop_detach for the
 * same reason.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <systemd/sd-event.h>

#include "client.h"
#include "loop.h"

#define NP_EXPORT __attribute__((visibility("default")))
#define DISPATCH_MAX 64

typedef struct Attachment {
        np_client *c;
        sd_event *event;
        sd_event_source *io;
        np_event_handler handler;
        void *userdata;
} Attachment;

static Attachment *attachment_free(Attachment *a)
{
        if (a) {
                sd_event_source_disable_unref(a->io);
                sd_event_unref(a->event);
                free(a);
        }
        return NULL;
}

/* The handler may detach or disconnect: nothing of a or c is touched after
 * it returns. */
static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        Attachment *a = userdata;
        np_event ev[DISPATCH_MAX];
        bool brk;

        (void)fd;
        (void)revents;
        int n = loop_process(a->c, ev, DISPATCH_MAX, &brk);
        if (n < 0) {
                /* Gone for good.  Its fd stays readable, so the source
                 * stops before the handler hears of it, once. */
                (void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
                return a->handler(a->c, NULL, n, a->userdata);
        }
        if (n == 0 && !brk)
                return 0;
        return a->handler(a->c, ev, n, a->userdata);
}

NP_EXPORT int np_detach_event(np_client *c)
{
        if (!c)
                return -EINVAL;
        pthread_mutex_lock(&c->lock);
        Attachment *a = c->attachment;
        c->attachment = NULL;
        c->loop_detach = NULL;
        pthread_mutex_unlock(&c->lock);
        attachment_free(a);
        return 0;
}

static void detach(np_client *c)
{
        (void)np_detach_event(c);
}

NP_EXPORT int np_attach_event(np_client *c, sd_event *e, int64_t priority, np_event_handler handler,
                              void *userdata)
{
        Attachment *a;
        int r;

        if (!c || !handler)
                return -EINVAL;
        pthread_mutex_lock(&c->lock);
        bool busy = c->attachment != NULL;
        pthread_mutex_unlock(&c->lock);
        if (busy)
                return -EBUSY;
        int fd = np_get_fd(c);
        if (fd < 0)
                return fd;
        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        *a = (Attachment){ .c = c, .handler = handler, .userdata = userdata };
        if (e)
                a->event = sd_event_ref(e);
        else {
                r = sd_event_default(&a->event);
                if (r < 0)
                        goto fail;
        }
        r = sd_event_add_io(a->event, &a->io, fd, EPOLLIN, on_io, a);
        if (r < 0)
                goto fail;
        r = sd_event_source_set_priority(a->io, priority);
        if (r < 0)
                goto fail;
        (void)sd_event_source_set_description(a->io, "netpoll");

        pthread_mutex_lock(&c->lock);
        busy = c->attachment != NULL; /* another thread was quicker */
        if (!busy) {
                c->attachment = a;
                c->loop_detach = detach;
        }
        pthread_mutex_unlock(&c->lock);
        if (busy) {
                r = -EBUSY;
                goto fail;
        }
        return 0;
fail:
        attachment_free(a);
        return r;
}
