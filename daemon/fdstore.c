/*
 * The fd store's records and the handover (fdstore.h).  The datagrams to
 * the service manager are fdnotify's; the chunks of fds, fdcarrier's.
 */
#include "fdstore.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stddef.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "fdcarrier.h"
#include "fdnotify.h"
#include "manifest.h"

#include "../common/cleanup.h"
#include "log.h"

#define STATE_NAME "state"
#define STATE_MAGIC "npstate1"
#define HEADER_BYTES 4096u
#define CONN_OFF ((size_t)HEADER_BYTES)
#define DESC_OFF (CONN_OFF + (size_t)FDSTORE_CONN_MAX * sizeof(FdStoreConn))
#define STATE_BYTES (DESC_OFF + (size_t)FDSTORE_DESC_MAX * sizeof(FdStoreDesc))

_Static_assert(sizeof(FdStoreConn) == 64, "FdStoreConn is a record of the state memfd");
_Static_assert(sizeof(FdStoreDesc) == 32, "FdStoreDesc is a record of the state memfd");

typedef struct StateHeader {
        char magic[8];
        uint64_t instance;
        uint64_t last_connection_id; /* ids are never handed out twice */
} StateHeader;

static StateHeader *header(const FdStore *st)
{
        return (StateHeader *)st->map;
}

static FdStoreConn *conn_at(const FdStore *st, uint32_t index)
{
        return (FdStoreConn *)(st->map + CONN_OFF) + index;
}

static FdStoreDesc *desc_at(const FdStore *st, uint32_t index)
{
        return (FdStoreDesc *)(st->map + DESC_OFF) + index;
}

static int map_state(FdStore *st)
{
        void *p = mmap(NULL, STATE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, st->state_fd, 0);

        if (p == MAP_FAILED)
                return -errno;
        st->map = p;
        st->map_len = STATE_BYTES;
        return 0;
}

static void fdstore_init_empty(FdStore *st, bool systemd, uint32_t max)
{
        *st = (FdStore){ .systemd = systemd, .state_fd = -1, .instance = 1 };
        fdnotify_init(&st->notify, systemd, max);
        carrier_set_init(&st->conns, 'C');
        carrier_set_init(&st->descs, 'D');
}

int fdstore_init(FdStore *st, bool systemd, uint32_t max)
{
        fdstore_init_empty(st, systemd, max);
        /* Sparse: only the pages of slots in use take memory. */
        st->state_fd = memfd_create("netpolld-state", MFD_CLOEXEC);
        if (st->state_fd < 0)
                return -errno;
        if (ftruncate(st->state_fd, (off_t)STATE_BYTES) < 0)
                return -errno;
        int r = map_state(st);
        if (r < 0)
                return r;
        memcpy(header(st)->magic, STATE_MAGIC, 8);
        header(st)->instance = 1;
        return fdnotify_store(&st->notify, STATE_NAME, st->state_fd, 0);
}

static bool is_listener(int fd)
{
        int on = 0;
        socklen_t len = sizeof(on);

        return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

/* The fds passed and their names: an in-place upgrade's manifest, or
 * systemd's LISTEN_FDS (then every name is in the store). */
static int passed_fds(bool systemd, int **ret_fds, char ***ret_names, size_t *ret_n,
                      bool *ret_from_store)
{
        *ret_fds = NULL;
        *ret_names = NULL;
        *ret_n = 0;
        *ret_from_store = false;
        int r = manifest_take(ret_fds, ret_names, ret_n);
        if (r < 0)
                return r;
        if (r == 0 && systemd) {
                r = sd_listen_fds_with_names(1, ret_names);
                if (r < 0)
                        return r;
                *ret_n = (size_t)r;
                *ret_fds = calloc(*ret_n ? *ret_n : 1, sizeof(int));
                if (!*ret_fds)
                        return -ENOMEM;
                for (size_t i = 0; i < *ret_n; i++)
                        (*ret_fds)[i] = SD_LISTEN_FDS_START + (int)i;
                *ret_from_store = true;
        }
        for (size_t i = 0; i < *ret_n; i++) /* inheritable for the exec, or as passed */
                (void)fcntl((*ret_fds)[i], F_SETFD, FD_CLOEXEC);
        return 0;
}

static int push(void *arr, size_t size, size_t *n, size_t *cap, const void *item)
{
        void **a = arr;

        if (*n == *cap) {
                size_t c = *cap ? *cap * 2 : 64;
                void *p = realloc(*a, c * size);
                if (!p)
                        return -ENOMEM;
                *a = p;
                *cap = c;
        }
        memcpy((char *)*a + *n * size, item, size);
        (*n)++;
        return 0;
}

static int by_slot(const void *a, const void *b)
{
        const StoredFd *x = a, *y = b;

        if (x->kind != y->kind)
                return x->kind < y->kind ? -1 : 1;
        if (x->index != y->index)
                return x->index < y->index ? -1 : 1;
        return x->gen < y->gen ? -1 : x->gen > y->gen;
}

/* Calls fn with the fd and name of every carrier this instance holds. */
static void each_carrier(const FdStore *st, void (*fn)(void *userdata, int fd, const char *name),
                         void *userdata)
{
        const CarrierSet *sets[] = { &st->conns, &st->descs };

        for (size_t s = 0; s < 2; s++)
                for (size_t k = 0; k < sets[s]->slots / CARRIER_SLOTS; k++) {
                        const Carrier *ch = &sets[s]->chunks[k];
                        char name[32];
                        if (ch->fd < 0)
                                continue;
                        fdnotify_name(sets[s]->kind, (uint32_t)k, ch->gen, name, sizeof(name));
                        fn(userdata, ch->fd, name);
                }
}

static void count_carrier(void *notify, int fd, const char *name)
{
        (void)fd;
        fdnotify_count(notify, name);
}

static void manifest_carrier(void *manifest, int fd, const char *name)
{
        manifest_add(manifest, fd, name);
}

static void cloexec_carrier(void *unused, int fd, const char *name)
{
        (void)unused;
        (void)name;
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static int by_carrier(const void *a, const void *b)
{
        const StoredFd *x = a, *y = b;

        if (x->kind != y->kind)
                return x->kind < y->kind ? -1 : 1;
        if (x->index != y->index)
                return x->index < y->index ? -1 : 1;
        return x->gen > y->gen ? -1 : x->gen < y->gen; /* newest first */
}

/* The newest carrier of each chunk becomes ours, and what it holds comes
 * out (an older one is stale: a restart came between storing a new one
 * and removing it); the names of stale ones go once we are done. */
static int unpack(FdStore *st, StoredFd *carriers, size_t nc, StoredFd **out, size_t *n,
                  size_t *cap, FdStoreHanded **handed, size_t *nh, size_t *hcap)
{
        int r = 0;

        if (nc > 1)
                qsort(carriers, nc, sizeof(*carriers), by_carrier);
        for (size_t i = 0; i < nc; i++) {
                StoredFd *c = &carriers[i];
                CarrierSet *cs = c->kind == 'C' ? &st->conns : &st->descs;
                CarrierEntry *e = NULL;
                int *fds = NULL;
                size_t m = 0;
                uint32_t msgs = 0;
                bool stale = i > 0 && c->kind == carriers[i - 1].kind &&
                             c->index == carriers[i - 1].index;
                int q = stale ? -EEXIST : carrier_peek(c->fd, &e, &fds, &m, &msgs);
                if (q == 0)
                        q = carrier_set_adopt(cs, c->index, c->gen, c->fd, msgs);
                if (q < 0) {
                        FdStoreHanded h = { .kind = (char)c->kind, .chunk = c->index };
                        snprintf(h.name, sizeof(h.name), "%s", c->name);
                        if (q != -EEXIST) /* that chunk is lost; the others are not */
                                log_error("fd store: cannot take carrier %s: %s", c->name,
                                          strerror(-q));
                        (void)carrier_set_seen(cs, c->index, c->gen);
                        if (r == 0)
                                r = push(handed, sizeof(h), nh, hcap, &h);
                        safe_close(c->fd);
                }
                c->fd = -1;
                for (size_t j = 0; j < m; j++) {
                        StoredFd sf = { .fd = fds[j], .index = e[j].index, .gen = e[j].gen,
                                        .kind = c->kind == 'C' ? STORED_CONN : STORED_DESC };
                        fdnotify_name((char)sf.kind, sf.index, sf.gen, sf.name, sizeof(sf.name));
                        if (sf.index / CARRIER_SLOTS != c->index) { /* not this chunk's */
                                safe_close(sf.fd);
                                continue;
                        }
                        if (r == 0)
                                r = push(out, sizeof(**out), n, cap, &sf);
                        if (r < 0)
                                safe_close(sf.fd);
                }
                free(e);
                free(fds);
        }
        return r;
}

int fdstore_adopt(FdStore *st, bool systemd, uint32_t max, StoredFd **ret, size_t *ret_n,
                  int *ret_listen)
{
        int *fds = NULL;
        char **names = NULL;
        StoredFd *out = NULL, *carriers = NULL;
        FdStoreHanded *handed = NULL;
        size_t n = 0, k = 0, cap = 0, nc = 0, ccap = 0, nh = 0, hcap = 0;
        bool from_store;
        int state = -1, r;

        *ret = NULL;
        *ret_n = 0;
        *ret_listen = -1;
        r = passed_fds(systemd, &fds, &names, &n, &from_store);
        for (size_t i = 0; i < n; i++) {
                const char *name = names && names[i] ? names[i] : "";
                StoredFd sf = { .fd = fds[i] };
                FdStoreHanded h = { .chunk = UINT32_MAX };
                char ck;
                if (r == 0 && state < 0 && strcmp(name, STATE_NAME) == 0) {
                        state = fds[i];
                        continue;
                }
                if (r == 0 && *ret_listen < 0 && (strcmp(name, "listen") == 0 || is_listener(fds[i]))) {
                        *ret_listen = fds[i];
                        continue;
                }
                snprintf(sf.name, sizeof(sf.name), "%s", name);
                snprintf(h.name, sizeof(h.name), "%s", name);
                /* Carriers count generations from 1. */
                if ((ck = fdnotify_parse_name(name, "CD", &sf.index, &sf.gen)) && sf.gen) {
                        /* in the store whichever way it came */
                        sf.kind = (StoredKind)ck;
                        if (r == 0)
                                r = push(&carriers, sizeof(sf), &nc, &ccap, &sf);
                        if (r < 0)
                                safe_close(sf.fd);
                        continue;
                }
                sf.kind = (StoredKind)fdnotify_parse_name(name, "cd", &sf.index, &sf.gen);
                if (sf.kind != STORED_OTHER) { /* one fd per name: an older instance's */
                        h.kind = (char)(sf.kind - 'a' + 'A');
                        h.chunk = sf.index / CARRIER_SLOTS;
                }
                if (r == 0)
                        r = push(&out, sizeof(sf), &k, &cap, &sf);
                if (r == 0 && from_store)
                        r = push(&handed, sizeof(h), &nh, &hcap, &h);
                if (r < 0)
                        safe_close(sf.fd);
        }
        for (size_t i = 0; names && i < n; i++)
                free(names[i]);
        free(names);
        free(fds);

        fdstore_init_empty(st, systemd, max);
        st->state_fd = state;
        bool ok = r == 0 && state >= 0 && map_state(st) == 0 &&
                  memcmp(header(st)->magic, STATE_MAGIC, 8) == 0;
        if (ok) {
                st->instance = ++header(st)->instance;
                st->last_connection_id = header(st)->last_connection_id;
                if (systemd)
                        fdnotify_count(&st->notify, STATE_NAME);
                r = unpack(st, carriers, nc, &out, &k, &cap, &handed, &nh, &hcap);
        } else if (r == 0) {
                if (state >= 0)
                        log_warning("fd store: the state passed is not netpolld's; starting afresh");
                if (state >= 0 && systemd) /* ours goes under the same name */
                        fdnotify_remove(&st->notify, STATE_NAME);
                if (st->map)
                        munmap(st->map, st->map_len);
                st->map = NULL;
                st->state_fd = safe_close(st->state_fd);
                fdstore_done(st);
                r = fdstore_init(st, systemd, max);
                /* Nothing can be rebuilt without records; the carriers
                 * leave the store with the rest. */
                for (size_t i = 0; i < k; i++)
                        out[i].kind = STORED_OTHER;
                for (size_t i = 0; i < nc && systemd && r == 0; i++) {
                        FdStoreHanded h = { .chunk = UINT32_MAX };
                        snprintf(h.name, sizeof(h.name), "%s", carriers[i].name);
                        r = push(&handed, sizeof(h), &nh, &hcap, &h);
                }
        }
        for (size_t i = 0; i < nc; i++) /* those not taken */
                safe_close(carriers[i].fd);
        free(carriers);
        /* What the store holds now. */
        for (size_t i = 0; systemd && i < nh; i++)
                fdnotify_count(&st->notify, handed[i].name);
        each_carrier(st, count_carrier, &st->notify);
        st->handed = handed;
        st->n_handed = nh;
        if (r < 0) {
                for (size_t i = 0; i < k; i++)
                        safe_close(out[i].fd);
                free(out);
                return r;
        }
        /* One fd per slot generation: a message sent twice is not two. */
        if (k > 1)
                qsort(out, k, sizeof(*out), by_slot);
        size_t w = 0;
        for (size_t i = 0; i < k; i++) {
                if (w > 0 && out[i].kind != STORED_OTHER && by_slot(&out[w - 1], &out[i]) == 0) {
                        safe_close(out[i].fd);
                        continue;
                }
                out[w++] = out[i];
        }
        *ret = out;
        *ret_n = w;
        return 0;
}

void fdstore_done(FdStore *st)
{
        if (st->map)
                munmap(st->map, st->map_len);
        st->map = NULL;
        st->state_fd = safe_close(st->state_fd);
        fdnotify_done(&st->notify);
        carrier_set_done(&st->conns);
        carrier_set_done(&st->descs);
        free(st->handed);
        st->handed = NULL;
        st->n_handed = 0;
}

int fdstore_conn_add(FdStore *st, uint32_t index, uint32_t gen, uint64_t id, uint32_t version,
                     const char *name, int fd)
{
        if (!st->map)
                return 0;
        if (index >= FDSTORE_CONN_MAX)
                return -ENOSPC;
        if (id > header(st)->last_connection_id)
                header(st)->last_connection_id = id;
        FdStoreConn *c = conn_at(st, index);
        c->gen = 0;
        c->version = version;
        c->id = id;
        snprintf(c->name, sizeof(c->name), "%s", name);
        c->gen = gen;
        int r = carrier_set_put(&st->conns, &st->notify, index, gen, fd);
        if (r < 0)
                c->gen = 0;
        return r;
}

void fdstore_conn_greeted(FdStore *st, uint32_t index, uint32_t gen, uint32_t version,
                          const char *name)
{
        if (!st->map || index >= FDSTORE_CONN_MAX || conn_at(st, index)->gen != gen)
                return;
        FdStoreConn *c = conn_at(st, index);
        snprintf(c->name, sizeof(c->name), "%s", name);
        c->version = version; /* last: a restart from here on resumes it */
}

void fdstore_conn_remove(FdStore *st, uint32_t index, uint32_t gen)
{
        if (!st->map || index >= FDSTORE_CONN_MAX || conn_at(st, index)->gen != gen)
                return;
        conn_at(st, index)->gen = 0;
        carrier_set_drop(&st->conns, index, gen);
}

int fdstore_desc_add(FdStore *st, uint32_t index, uint32_t gen, uint32_t conn_index,
                     uint32_t conn_gen, uint64_t user, uint64_t open_req, int fd)
{
        if (!st->map)
                return 0;
        if (index >= FDSTORE_DESC_MAX)
                return -ENOSPC;
        FdStoreDesc *d = desc_at(st, index);
        *d = (FdStoreDesc){ .conn_index = conn_index, .conn_gen = conn_gen, .user = user,
                            .open_req = open_req };
        d->gen = gen;
        int r = carrier_set_put(&st->descs, &st->notify, index, gen, fd);
        if (r < 0)
                d->gen = 0;
        return r;
}

void fdstore_desc_remove(FdStore *st, uint32_t index, uint32_t gen)
{
        if (!st->map || index >= FDSTORE_DESC_MAX || desc_at(st, index)->gen != gen)
                return;
        desc_at(st, index)->gen = 0;
        carrier_set_drop(&st->descs, index, gen);
}

const FdStoreConn *fdstore_conn_record(const FdStore *st, uint32_t index, uint32_t gen)
{
        if (!st->map || index >= FDSTORE_CONN_MAX || gen == 0 || conn_at(st, index)->gen != gen)
                return NULL;
        return conn_at(st, index);
}

const FdStoreDesc *fdstore_desc_record(const FdStore *st, uint32_t index, uint32_t gen)
{
        if (!st->map || index >= FDSTORE_DESC_MAX || gen == 0 || desc_at(st, index)->gen != gen)
                return NULL;
        return desc_at(st, index);
}

void fdstore_keep(FdStore *st, StoredKind kind, uint32_t index, uint32_t gen, int fd)
{
        if (carrier_set_keep(kind == STORED_CONN ? &st->conns : &st->descs, index, gen, fd) < 0)
                log_warning("fd store: out of memory; %c%" PRIx32 ".%" PRIx32
                            " will not survive a restart",
                            (char)kind, index, gen);
}

/* The previous instance's names for one chunk (or, chunk UINT32_MAX, all
 * that are left but those of chunks whose carrier could not be renewed). */
static void remove_handed(void *userdata, char kind, uint32_t chunk)
{
        FdStore *st = userdata;

        for (size_t i = 0; i < st->n_handed; i++) {
                FdStoreHanded *h = &st->handed[i];
                if (!h->name[0] || h->kind != kind || h->chunk != chunk)
                        continue;
                fdnotify_remove(&st->notify, h->name);
                h->name[0] = '\0';
        }
}

void fdstore_resume_done(FdStore *st)
{
        if (st->notify.on) {
                carrier_set_resume(&st->conns, &st->notify, remove_handed, st);
                carrier_set_resume(&st->descs, &st->notify, remove_handed, st);
                for (size_t i = 0; i < st->n_handed; i++) {
                        FdStoreHanded *h = &st->handed[i];
                        const CarrierSet *cs = h->kind == 'C' ? &st->conns : &st->descs;
                        if (h->name[0] && (!h->kind || h->chunk >= cs->slots / CARRIER_SLOTS))
                                fdnotify_remove(&st->notify, h->name);
                }
        }
        free(st->handed);
        st->handed = NULL;
        st->n_handed = 0;
}

void fdstore_flush(FdStore *st)
{
        carrier_set_flush(&st->conns, &st->notify);
        carrier_set_flush(&st->descs, &st->notify);
}

int fdstore_exec_manifest(FdStore *st, const StoredFd *fds, size_t n, int listen_fd, char *env,
                          size_t envlen)
{
        Manifest m;
        int r = manifest_begin(&m);

        if (r < 0)
                return r;
        if (st->state_fd >= 0)
                manifest_add(&m, st->state_fd, STATE_NAME);
        if (listen_fd >= 0)
                manifest_add(&m, listen_fd, "listen");
        /* With the fd store, the carriers hold every fd: they pass as they
         * are, and the next instance reads them as after a restart. */
        for (size_t i = 0; i < n && !st->notify.on; i++)
                manifest_add(&m, fds[i].fd, fds[i].name);
        each_carrier(st, manifest_carrier, &m);
        return manifest_end(&m, env, envlen);
}

void fdstore_exec_failed(FdStore *st)
{
        if (st->state_fd >= 0)
                (void)fcntl(st->state_fd, F_SETFD, FD_CLOEXEC);
        each_carrier(st, cloexec_carrier, NULL);
}
