/*
 * Scope-bound cleanup helpers shared by the daemon, the library and pollctl.
 *
 * `_cleanup_free_ char *p = ...;` frees p when it goes out of scope and
 * `_cleanup_close_ int fd = ...;` closes fd.  TAKE_PTR()/TAKE_FD() hand the
 * value on and leave the variable empty, so the cleanup becomes a no-op.
 * Destructors accept "nothing" (NULL / negative fd) and return it, so
 * `x->fd = safe_close(x->fd);` reads naturally.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

#define TAKE_PTR(p)                                                                                \
        ({                                                                                         \
                __typeof__(p) _p = (p);                                                            \
                (p) = NULL;                                                                        \
                _p;                                                                                \
        })

#define TAKE_FD(fd)                                                                                \
        ({                                                                                         \
                int _fd = (fd);                                                                    \
                (fd) = -1;                                                                         \
                _fd;                                                                               \
        })

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Closes fd if it is one, preserving errno; returns -1 for assignment. */
static inline int safe_close(int fd)
{
        if (fd >= 0) {
                int saved = errno;
                close(fd);
                errno = saved;
        }
        return -1;
}

static inline void freep(void *p)
{
        free(*(void **)p);
}

static inline void closep(int *fd)
{
        safe_close(*fd);
}
