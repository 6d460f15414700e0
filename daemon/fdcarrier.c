/*
 * Chunks of fds kept in flight on stored socket pairs (fdcarrier.h).
 */
#include "fdcarrier.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "log.h"

/* SCM_RIGHTS carries at most SCM_MAX_FD (253) fds per message. */
_Static_assert(CARRIER_SLOTS <= 253, "a compacted chunk is one message");
/* Appends past this many messages compact the chunk: the socket's send
 * buffer (212992 bytes by default) holds some 270. */
#define COMPACT_AT 48u

void carrier_set_init(CarrierSet *cs, char kind)
{
        *cs = (CarrierSet){ .kind = kind };
}

void carrier_set_done(CarrierSet *cs)
{
        for (size_t i = 0; i < cs->slots / CARRIER_SLOTS; i++)
                safe_close(cs->chunks[i].fd);
        free(cs->fds);
        free(cs->gens);
        free(cs->chunks);
        free(cs->dirty);
        *cs = (CarrierSet){ .kind = cs->kind };
}

/* Room for slot index. */
static int grow(CarrierSet *cs, uint32_t index)
{
        if (index < cs->slots)
                return 0;
        size_t want = cs->slots ? cs->slots : 4 * CARRIER_SLOTS;
        while (want <= index)
                want *= 2;
        int *fds = realloc(cs->fds, want * sizeof(*fds));
        if (!fds)
                return -ENOMEM;
        cs->fds = fds;
        uint32_t *gens = realloc(cs->gens, want * sizeof(*gens));
        if (!gens)
                return -ENOMEM;
        cs->gens = gens;
        Carrier *chunks = realloc(cs->chunks, want / CARRIER_SLOTS * sizeof(*chunks));
        if (!chunks)
                return -ENOMEM;
        cs->chunks = chunks;
        for (size_t i = cs->slots; i < want; i++) {
                cs->fds[i] = -1;
                cs->gens[i] = 0;
        }
        for (size_t i = cs->slots / CARRIER_SLOTS; i < want / CARRIER_SLOTS; i++)
                cs->chunks[i] = (Carrier){ .fd = -1 };
        cs->slots = want;
        return 0;
}

/* One message: n entries and their fds. */
static int send_entries(int sock, const CarrierEntry *e, const int *fds, size_t n)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * CARRIER_SLOTS)];
        } ctl = { 0 };
        struct iovec iov = { .iov_base = (void *)e, .iov_len = n * sizeof(*e) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                             .msg_controllen = CMSG_SPACE(sizeof(int) * n) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
        return sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* A datagram socket that only it can send to: autobound (an abstract name
 * nobody chose), then connected to itself. */
static int carrier_socket(void)
{
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        socklen_t len = offsetof(struct sockaddr_un, sun_path);
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *)&a, len) < 0 ||
            getsockname(fd, (struct sockaddr *)&a, (len = sizeof(a), &len)) < 0 ||
            connect(fd, (struct sockaddr *)&a, len) < 0) {
                int r = -errno;
                safe_close(fd);
                return r;
        }
        return fd;
}

/* Chunk k's live fds in one message to sock. */
static int send_chunk(const CarrierSet *cs, uint32_t k, int sock, size_t *ret_m)
{
        CarrierEntry e[CARRIER_SLOTS];
        int fds[CARRIER_SLOTS];
        size_t m = 0;

        for (uint32_t i = k * CARRIER_SLOTS; i < (k + 1) * CARRIER_SLOTS; i++)
                if (cs->fds[i] >= 0) {
                        e[m] = (CarrierEntry){ .index = i, .gen = cs->gens[i] };
                        fds[m++] = cs->fds[i];
                }
        *ret_m = m;
        return m ? send_entries(sock, e, fds, m) : 0;
}

/* Discards the n oldest messages (no room for their fds: the kernel lets
 * them go). */
static void discard(int sock, uint32_t n)
{
        for (uint32_t i = 0; i < n; i++) {
                char b;
                struct iovec iov = { .iov_base = &b, .iov_len = 1 };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
                if (recvmsg(sock, &mh, MSG_DONTWAIT) < 0)
                        break;
        }
}

/*
 * A new carrier for chunk k holding exactly the fds it keeps, stored
 * before the old one (if any) is removed.  For a chunk that has none, and
 * when compaction in place fails.
 */
static int replace(CarrierSet *cs, FdNotify *n, uint32_t k)
{
        Carrier *ch = &cs->chunks[k];
        char name[32];
        size_t m;
        int r, sock = carrier_socket();

        if (sock < 0)
                return sock;
        r = send_chunk(cs, k, sock, &m);
        fdnotify_name(cs->kind, k, ch->gen + 1, name, sizeof(name));
        /* Replacing a carrier may take the store's last place (the old one
         * goes right after); a new chunk leaves it free. */
        if (r == 0)
                r = fdnotify_store(n, name, sock, ch->fd >= 0 ? 0 : 1);
        if (r < 0) {
                safe_close(sock);
                return r;
        }
        if (ch->fd >= 0) {
                fdnotify_name(cs->kind, k, ch->gen, name, sizeof(name));
                fdnotify_remove(n, name);
                safe_close(ch->fd);
        }
        ch->fd = sock;
        ch->gen++;
        ch->msgs = m ? 1 : 0;
        return 0;
}

/* Chunk k's carrier holding exactly the fds it keeps: the full message
 * first, then the older ones go. */
static int compact(CarrierSet *cs, FdNotify *n, uint32_t k)
{
        Carrier *ch = &cs->chunks[k];
        size_t m;

        if (ch->fd < 0 || send_chunk(cs, k, ch->fd, &m) < 0)
                return replace(cs, n, k);
        discard(ch->fd, ch->msgs);
        ch->msgs = m ? 1 : 0;
        return 0;
}

static int keep(CarrierSet *cs, uint32_t index, uint32_t gen, int fd)
{
        int r = grow(cs, index);

        if (r < 0)
                return r;
        cs->fds[index] = fd;
        cs->gens[index] = gen;
        return 0;
}

int carrier_set_keep(CarrierSet *cs, uint32_t index, uint32_t gen, int fd)
{
        return keep(cs, index, gen, fd);
}

int carrier_set_put(CarrierSet *cs, FdNotify *n, uint32_t index, uint32_t gen, int fd)
{
        int r;

        if (!n->on)
                return 0;
        r = keep(cs, index, gen, fd);
        if (r < 0)
                return -ENOSPC;
        uint32_t k = index / CARRIER_SLOTS;
        Carrier *ch = &cs->chunks[k];
        CarrierEntry e = { .index = index, .gen = gen };
        if (ch->fd >= 0 && ch->msgs < COMPACT_AT && send_entries(ch->fd, &e, &fd, 1) == 0) {
                ch->msgs++;
                return 0;
        }
        r = compact(cs, n, k);
        if (r < 0 && r != -ENOSPC) /* the store full: the caller says so */
                log_warning("fd store: cannot keep %c%" PRIx32 ".%" PRIx32 ": %s",
                            cs->kind + 'a' - 'A', index, gen, strerror(-r));
        if (r < 0) {
                cs->fds[index] = -1;
                return -ENOSPC;
        }
        return 0;
}

void carrier_set_drop(CarrierSet *cs, uint32_t index, uint32_t gen)
{
        if (index >= cs->slots || cs->fds[index] < 0 || cs->gens[index] != gen)
                return;
        cs->fds[index] = -1;
        uint32_t k = index / CARRIER_SLOTS;
        if (cs->chunks[k].dirty || cs->chunks[k].fd < 0)
                return; /* no carrier of ours holds it */
        if (cs->n_dirty == cs->dirty_cap) {
                size_t cap = cs->dirty_cap ? cs->dirty_cap * 2 : 64;
                uint32_t *d = realloc(cs->dirty, cap * sizeof(*d));
                if (!d) { /* rebuilt at the next change that finds memory */
                        log_warning("fd store: out of memory; a closed fd stays in flight");
                        return;
                }
                cs->dirty = d;
                cs->dirty_cap = cap;
        }
        cs->dirty[cs->n_dirty++] = k;
        cs->chunks[k].dirty = true;
}

void carrier_set_flush(CarrierSet *cs, FdNotify *n)
{
        for (size_t i = 0; i < cs->n_dirty; i++) {
                uint32_t k = cs->dirty[i];
                cs->chunks[k].dirty = false;
                int r = compact(cs, n, k);
                if (r < 0)
                        log_warning("fd store: cannot compact carrier %c%" PRIx32
                                    " (%s): its closed fds stay open until its next change",
                                    cs->kind, k, strerror(-r));
        }
        cs->n_dirty = 0;
}

void carrier_set_resume(CarrierSet *cs, FdNotify *n,
                        void (*remove)(void *userdata, char kind, uint32_t chunk),
                        void *userdata)
{
        for (uint32_t k = 0; k < cs->slots / CARRIER_SLOTS; k++) {
                Carrier *ch = &cs->chunks[k];
                bool any = false;
                for (uint32_t i = k * CARRIER_SLOTS; i < (k + 1) * CARRIER_SLOTS && !any; i++)
                        any = cs->fds[i] >= 0;
                ch->dirty = false;
                int r = ch->fd >= 0 || any ? compact(cs, n, k) : 0;
                if (r == -ENOSPC) {
                        /* fds an older netpolld stored one by one, in a
                         * full store: their entries go first (a kill -9
                         * right here would lose this chunk). */
                        remove(userdata, cs->kind, k);
                        r = compact(cs, n, k);
                }
                if (r < 0) /* what the previous instance stored stays: it is complete */
                        log_warning("fd store: cannot renew carrier %c%" PRIx32 ": %s",
                                    cs->kind, k, strerror(-r));
                else
                        remove(userdata, cs->kind, k);
        }
        cs->n_dirty = 0;
}

int carrier_set_seen(CarrierSet *cs, uint32_t chunk, uint32_t gen)
{
        if ((uint64_t)chunk * CARRIER_SLOTS > UINT32_MAX)
                return -ERANGE;
        int r = grow(cs, chunk * CARRIER_SLOTS);
        if (r < 0)
                return r;
        if (gen > cs->chunks[chunk].gen)
                cs->chunks[chunk].gen = gen;
        return 0;
}

int carrier_set_adopt(CarrierSet *cs, uint32_t chunk, uint32_t gen, int fd, uint32_t msgs)
{
        int r = carrier_set_seen(cs, chunk, gen);

        if (r < 0)
                return r;
        Carrier *ch = &cs->chunks[chunk];
        if (ch->fd >= 0 || gen < ch->gen)
                return -EEXIST;
        ch->fd = fd;
        ch->gen = gen;
        ch->msgs = msgs;
        return 0;
}

int carrier_peek(int fd, CarrierEntry **ret_entries, int **ret_fds, size_t *ret_n,
                 uint32_t *ret_msgs)
{
        CarrierEntry *es = NULL;
        int *fs = NULL;
        size_t n = 0, cap = 0;
        uint32_t msgs = 0;
        int off = 0, r = 0;

        if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)) < 0)
                return -errno;
        for (;;) {
                CarrierEntry e[CARRIER_SLOTS];
                union {
                        struct cmsghdr h;
                        char buf[CMSG_SPACE(sizeof(int) * 253)];
                } ctl;
                struct iovec iov = { .iov_base = e, .iov_len = sizeof(e) };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                                     .msg_controllen = sizeof(ctl.buf) };
                ssize_t len = recvmsg(fd, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (len < 0) {
                        if (errno != EAGAIN)
                                r = -errno;
                        break;
                }
                msgs++;
                size_t nfd = 0;
                int got[253];
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                                for (size_t j = 0; j < k && nfd < 253; j++)
                                        memcpy(&got[nfd++], CMSG_DATA(c) + j * sizeof(int),
                                               sizeof(int));
                        }
                size_t ne = (size_t)len / sizeof(CarrierEntry);
                if (len == 0 && nfd == 0)
                        break; /* nothing: an empty datagram is not ours */
                if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || ne != nfd ||
                    (size_t)len % sizeof(CarrierEntry)) {
                        log_warning("fd store: a carrier holds a message not ours; skipped");
                        for (size_t j = 0; j < nfd; j++)
                                safe_close(got[j]);
                        continue;
                }
                if (n + nfd > cap) {
                        size_t c2 = cap ? cap * 2 : 128;
                        while (c2 < n + nfd)
                                c2 *= 2;
                        CarrierEntry *e2 = realloc(es, c2 * sizeof(*e2));
                        int *f2 = e2 ? realloc(fs, c2 * sizeof(*f2)) : NULL;
                        if (e2)
                                es = e2;
                        if (f2)
                                fs = f2;
                        if (!f2) {
                                for (size_t j = 0; j < nfd; j++)
                                        safe_close(got[j]);
                                r = -ENOMEM;
                                break;
                        }
                        cap = c2;
                }
                for (size_t j = 0; j < nfd; j++) {
                        es[n] = e[j];
                        fs[n++] = got[j];
                }
        }
        off = -1; /* reads from the head again */
        (void)setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off));
        if (r < 0) {
                for (size_t j = 0; j < n; j++)
                        safe_close(fs[j]);
                free(es);
                free(fs);
                return r;
        }
        *ret_msgs = msgs;
        *ret_entries = es;
        *ret_fds = fs;
        *ret_n = n;
        return 0;
}
