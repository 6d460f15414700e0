/*
 * Restarts: taking over what a previous instance kept (fdstore.h), and
 * handing over to the next one, by exiting with the store intact (systemd)
 * or by re-executing in place (SIGUSR2, pollctl upgrade).
 *
 * A connection comes back at its old index and generation, so the tokens
 * its client holds stay valid; each of its descriptors at its old slot and
 * generation, registered in epoll afresh (an edge-triggered add reports
 * the readiness the file has now, so what became ready meanwhile is not
 * lost).  Waits, armed waits and deadlines are not kept: the client sends
 * them again after the resumed notice (netpoll(3), RESTARTS).
 */
#include "restore.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "log.h"
#include "manifest.h"
#include "env.h"
#include "session.h"

int server_adopt(Server *s)
{
        StoredFd *fds = NULL;
        size_t n = 0;
        int listen_fd = -1;
        const ConfigSource *src = &s->source;

        int r = fdstore_adopt(&s->store, src->fd_store, src->fd_store_max, &fds, &n, &listen_fd);
        if (r < 0)
                return r;
        s->adopted = fds;
        s->n_adopted = n;
        s->adopted_listen = listen_fd;
        return 0;
}

static void drop(StoredFd *sf, const char *why)
{
        log_debug("fd store: dropping %s (%s)", sf->name[0] ? sf->name : "an unnamed fd", why);
        sf->fd = safe_close(sf->fd);
}

static void resume_conn(Server *s, StoredFd *sf)
{
        const FdStoreConn *rec = fdstore_conn_record(&s->store, sf->index, sf->gen);
        Session *sess;

        if (!rec || (rec->version && rec->version < NP_PROTOCOL_VERSION_RESUME)) {
                drop(sf, "no record");
                return;
        }
        if (env_sessions_grow(s, sf->index + 1) < 0 || s->sessions[sf->index]) {
                drop(sf, "no room");
                return;
        }
        s->session_gens[sf->index] = sf->gen;
        if (session_restore(s, sf, rec, &sess) < 0) {
                s->session_gens[sf->index] += 2;
                drop(sf, "cannot set it up");
                return;
        }
        fdstore_keep(&s->store, STORED_CONN, sf->index, sf->gen, sf->fd);
        sf->fd = -1;
        env_join(s, sess, sf->index);
        s->resumed_connections++;
        if (!sess->greeted) {
                int64_t due = sess->connected_ns + s->config->handshake_timeout_ns;
                if (due < s->handshake_due)
                        s->handshake_due = due;
        }
}

static void resume_desc(Server *s, StoredFd *sf)
{
        const FdStoreDesc *rec = fdstore_desc_record(&s->store, sf->index, sf->gen);
        Session *sess = NULL;

        if (rec && rec->conn_index < s->sessions_cap && s->sessions[rec->conn_index] &&
            s->session_gens[rec->conn_index] == rec->conn_gen)
                sess = s->sessions[rec->conn_index];
        if (!sess) {
                drop(sf, "its connection is gone");
                return;
        }
        int r = session_restore_desc(sess, sf, rec);
        if (r < 0) {
                log_warning("client %" PRIu64 ": cannot take over descriptor %s: %s", sess->id,
                            sf->name, strerror(-r));
                fdstore_desc_remove(&s->store, sf->index, sf->gen);
                sf->fd = safe_close(sf->fd);
                return;
        }
        fdstore_keep(&s->store, STORED_DESC, sf->index, sf->gen, sf->fd);
        sf->fd = -1;
        s->resumed_descriptors++;
}

void server_resume(Server *s)
{
        /* Connections first: descriptors name theirs. */
        for (size_t i = 0; i < s->n_adopted; i++)
                if (s->adopted[i].kind == STORED_CONN)
                        resume_conn(s, &s->adopted[i]);
        for (size_t i = 0; i < s->n_adopted; i++)
                if (s->adopted[i].kind == STORED_DESC)
                        resume_desc(s, &s->adopted[i]);
        for (size_t i = 0; i < s->n_adopted; i++)
                if (s->adopted[i].fd >= 0)
                        drop(&s->adopted[i], "not ours");
        /* Our own carriers before a connection can change anything. */
        fdstore_resume_done(&s->store);
        pollcache_rebuild_free(&s->cache);
        if (s->store.last_connection_id > s->next_connection_id)
                s->next_connection_id = s->store.last_connection_id;
        for (uint32_t i = 0; i < s->sessions_cap; i++)
                if (s->sessions[i])
                        session_restore_done(s->sessions[i]);
        /* Last: a notice that finds its client gone closes the connection,
         * which the table must hold by then. */
        for (uint32_t i = 0; i < s->sessions_cap; i++)
                if (s->sessions[i])
                        session_send_resumed(s->sessions[i]);
        if (s->n_adopted || s->store.instance > 1)
                log_info("instance %" PRIu64 ": resumed %" PRIu64 " connections and %" PRIu64
                         " descriptors of %zu fds handed over",
                         s->store.instance, s->resumed_connections, s->resumed_descriptors,
                         s->n_adopted);
        free(s->adopted);
        s->adopted = NULL;
        s->n_adopted = 0;
}

/* Every fd a new instance needs: the stored connections and their
 * descriptors (the records are up to date already). */
static int collect(Server *s, StoredFd **ret, size_t *ret_n)
{
        size_t n = 0, cap = 64;
        StoredFd *fds = malloc(cap * sizeof(*fds));

        if (!fds)
                return -ENOMEM;
        for (uint32_t i = 0; i < s->sessions_cap; i++) {
                Session *sess = s->sessions[i];
                if (!sess || !sess->stored)
                        continue;
                size_t need = n + 1 + sess->owner.descriptors;
                if (need > cap) {
                        while (cap < need)
                                cap *= 2;
                        StoredFd *f = realloc(fds, cap * sizeof(*fds));
                        if (!f) {
                                free(fds);
                                return -ENOMEM;
                        }
                        fds = f;
                }
                StoredFd *c = &fds[n++];
                *c = (StoredFd){ .fd = sess->fd, .kind = STORED_CONN, .index = i,
                                 .gen = s->session_gens[i] };
                fdnotify_name('c', i, c->gen, c->name, sizeof(c->name));
                uint32_t iter = 0;
                for (PollSlot *slot; (slot = pollcache_next_owned(&s->cache, &sess->owner, &iter));) {
                        StoredFd *d = &fds[n++];
                        *d = (StoredFd){ .fd = slot->pd.fd, .kind = STORED_DESC,
                                         .index = slot->index, .gen = slot->gen };
                        fdnotify_name('d', slot->index, slot->gen, d->name, sizeof(d->name));
                }
        }
        *ret = fds;
        *ret_n = n;
        return 0;
}

int server_exec(Server *s, char *const argv[])
{
        _cleanup_free_ StoredFd *fds = NULL;
        size_t n = 0;
        char env[64];

        int r = collect(s, &fds, &n);
        if (r < 0)
                return r;
        r = fdstore_exec_manifest(&s->store, fds, n, s->listen_fd, env, sizeof(env));
        if (r < 0)
                return r;
        if (putenv(env) != 0)
                return -errno;
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDNAMES");
        log_info("upgrading in place: executing %s with %zu connections and descriptors",
                 s->source.exe, n);
        /* The signals the loop reads through its signalfd stay blocked
         * across execve: the new instance reads them the same way. */
        execv(s->source.exe, argv);
        r = -errno;
        log_error("cannot execute %s: %s; this instance goes on", s->source.exe, strerror(-r));
        unsetenv(MANIFEST_ENV);
        /* Close-on-exec again, and the manifest goes. */
        (void)fcntl(s->listen_fd, F_SETFD, FD_CLOEXEC);
        fdstore_exec_failed(&s->store);
        for (size_t i = 0; i < n; i++)
                (void)fcntl(fds[i].fd, F_SETFD, FD_CLOEXEC);
        const char *eq = strchr(env, '=');
        if (eq)
                safe_close(atoi(eq + 1));
        return r;
}
