/*
 * The event loop, in the order of sd-event and libuv:
 *   prepare  arm the timerfd for the earliest deadline
 *   wait     epoll_wait
 *   dispatch connections (requests, and up to a budget of readiness events
 *            from each one's own epoll set of descriptors), listener,
 *            signals
 *   expire   timers due by a fresh clock reading, in bounded batches
 *   flush    the replies and events this turn produced, one pass per client
 *   free     connections that ended during the turn
 * Every epoll data word is a token (token.h); descriptor and connection
 * tokens carry a generation, and an event whose generation is stale (its
 * slot was freed earlier in the same batch, or it was queued by the kernel
 * before a close) is dropped.
 */
#include "server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "../common/cleanup.h"
#include "../common/clock.h"
#include "../common/fdutil.h"
#include "access.h"
#include "admin.h"
#include "codec.h"
#include "cpuslice.h"
#include "filecount.h"
#include "listener.h"
#include "log.h"
#include "restore.h"
#include "session.h"
#include "token.h"

#define MAX_EVENTS 256
#define DRAIN_BATCH 16 /* fds of ended connections closed per loop turn (2-8 us each) */
#define ARENA_BYTES (2 * 1024 * 1024)
/* Connections held for their uid's closes are read again when a closer
 * worker wakes the loop through its eventfd; this is only a backstop. */
#define HELD_RECHECK_NS (100 * NSEC_PER_MSEC)

int server_config_build(const ConfigSource *source, Config *ret, char *err, size_t errlen)
{
        Config c;
        int r = config_init(&c);

        err[0] = '\0';
        if (r < 0)
                return r;
        if (source->path) {
                r = config_load(&c, source->path, err, errlen);
                if (r < 0) {
                        config_done(&c);
                        return r;
                }
        }
        if (source->socket_override) {
                char *p = strdup(source->socket_override);
                if (!p) {
                        config_done(&c);
                        return -ENOMEM;
                }
                free(c.socket_path);
                c.socket_path = p;
        }
        if (source->log_level_override >= 0)
                c.log_level = source->log_level_override;
        *ret = c;
        return 0;
}

/* A closer worker finished a batch the loop waits for (a connection held
 * for its uid's closes): any thread may call it. */
static void server_closer_wake(void *arg)
{
        Server *s = arg;

        poller_wake(&s->poller);
}

/* A connection the listener accepted and admitted becomes a session
 * (EnvHooks.connection_accepted).  Consumes fd.  0 or -errno. */
static int server_connection_accepted(Server *s, int fd, uint32_t index)
{
        Session *sess;
        int r = session_new(s, fd, index, &sess);

        if (r < 0)
                return r;
        env_join(s, sess, index);
        int64_t due = sess->connected_ns + s->config->handshake_timeout_ns;
        if (due < s->handshake_due)
                s->handshake_due = due;
        if (s->n_watchers)
                admin_watch(s, NETPOLL__V1__WATCH_KIND__WATCH_CONNECT, sess, 0, 0);
        return 0;
}

/* How the modules above the core reach the introspection module, and the
 * listener the sessions. */
static const EnvHooks hooks = {
        .watch = admin_watch,
        .admin_request = admin_handle,
        .session_ending = admin_session_ending,
        .desc_freed = admin_descs_forget,
        .connection_accepted = server_connection_accepted,
};

int server_init(Server *s, Config *config, const ConfigSource *source)
{
        int r;

        *s = (Server){
                .hooks = &hooks,
                .config = config,
                .source = *source,
                .listen_fd = -1,
                .reserve_fd = -1,
                .signal_fd = -1,
                .poller = { .epfd = -1, .wakefd = -1, .timerfd = -1 },
                .started_ns = now_ns(),
                .started_unix_ns = realtime_ns(),
                .handshake_due = INT64_MAX,
                .adopted_listen = -1,
                .store = { .state_fd = -1, .notify = { .fd = -1 } },
        };
        pollcache_init(&s->cache);
        timers_init(&s->timers);
        accounts_init(&s->accounts);
        r = closer_init(&s->closer, &s->accounts);
        if (r < 0)
                return r;
        s->closer.loop_wake = server_closer_wake;
        s->closer.loop_wake_arg = s;
        server_apply_limits(s);
        s->ops = (PollOps){ .timers = &s->timers, .wake = session_wake };
        r = poller_init(&s->poller);
        if (r < 0)
                return r;
        s->poller.spin_max_ns = config->idle_spin_ns;
        r = arena_init(&s->arena, ARENA_BYTES);
        if (r < 0)
                return r;
        s->rbuf = malloc(NP_MAX_MESSAGE_BYTES);
        s->wbuf = malloc(NP_MAX_MESSAGE_BYTES);
        if (!s->rbuf || !s->wbuf)
                return -ENOMEM;

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGUSR2);
        s->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (s->signal_fd < 0)
                return -errno;
        r = poller_add(&s->poller, s->signal_fd, EPOLLIN, token_make(TOKEN_SIGNALFD, 0, 0));
        if (r < 0)
                return r;
        s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        notify_init(&s->notify);
        return 0;
}

int server_listen(Server *s, char *err, size_t errlen)
{
        int r = listener_open(s, err, errlen);

        if (r < 0)
                return r;
        s->listen_addr_len = sizeof(s->listen_addr);
        if (getsockname(s->listen_fd, (struct sockaddr *)&s->listen_addr, &s->listen_addr_len) < 0)
                s->listen_addr_len = 0;
        struct stat st;
        if (fstat(s->listen_fd, &st) == 0) {
                s->listen_dev = st.st_dev;
                s->listen_ino = st.st_ino;
        }
        return poller_add(&s->poller, s->listen_fd, EPOLLIN, token_make(TOKEN_LISTENER, 0, 0));
}

void server_apply_limits(Server *s)
{
        struct rlimit rl = { .rlim_cur = 1024 };
        uint64_t nofile, reserved = s->config->reserved_fds;

        (void)getrlimit(RLIMIT_NOFILE, &rl);
        nofile = rl.rlim_cur == RLIM_INFINITY ? UINT32_MAX : rl.rlim_cur;
        s->fd_limit_clients = nofile > reserved ? nofile - reserved : 0;
        s->fd_limit_uid = share_of(s->config->max_descriptors_per_uid, nofile);
        if (s->fd_limit_uid > s->fd_limit_clients)
                s->fd_limit_uid = s->fd_limit_clients;
}

void server_apply_slice(const Server *s)
{
        cpuslice_apply(s->config->scheduler_slice_ns);
}

/* SIGHUP: re-reads the configuration; limits, access and log level apply
 * at once to new requests and connections, existing descriptors are kept
 * even over a lowered quota, and the scheduler slice is asked for again.
 * A bad file is refused and the old one kept. */
static void server_reload(Server *s)
{
        Config next;
        char err[1024];
        int r;

        notify_reloading(&s->notify);
        r = server_config_build(&s->source, &next, err, sizeof(err));
        if (r < 0) {
                log_error("reload refused, keeping the running configuration: %s",
                          err[0] ? err : strerror(-r));
        } else {
                Config *cur = s->config;
                if (strcmp(next.socket_path, cur->socket_path) != 0 ||
                    next.socket_mode != cur->socket_mode || next.socket_group != cur->socket_group)
                        log_warning("reload: socket_path, socket_mode and socket_group changes "
                                    "need a restart; keeping %s",
                                    cur->socket_path);
                /* The listener stays as it is. */
                free(next.socket_path);
                next.socket_path = cur->socket_path;
                next.socket_mode = cur->socket_mode;
                next.socket_group = cur->socket_group;
                *cur = next;
                log_set_level(cur->log_level);
                /* Every time, not only on a change: it may have failed
                 * before, or the slice may have been changed from outside. */
                server_apply_slice(s);
                s->poller.spin_max_ns = cur->idle_spin_ns;
                s->handshake_due = 0; /* handshake_timeout may have changed */
                server_apply_limits(s);
                for (Session *w = s->watchers; w; w = w->next_watcher)
                        w->watch_admin = admin_is_admin(w);
                /* The allow lists apply to connections already open too. */
                for (uint32_t i = 0; i < s->sessions_cap; i++) {
                        Session *sess = s->sessions[i];
                        if (!sess || access_allows(s, sess->fd, sess->uid, sess->gid))
                                continue;
                        log_notice("client %" PRIu64 " (pid %d, uid %d, %s): not in [access] "
                                   "allow_users or allow_groups after the reload; dropping it",
                                   sess->id, (int)sess->pid, (int)sess->uid, sess->comm);
                        session_close(sess, NULL);
                }
                log_info("configuration reloaded%s%s", s->source.path ? " from " : "",
                         s->source.path ? s->source.path : " (defaults, no --config)");
        }
        char status[128];
        snprintf(status, sizeof(status), "serving %u connections", s->n_sessions);
        notify_ready(&s->notify, status);
}

static void server_signal(Server *s)
{
        struct signalfd_siginfo si;

        while (read(s->signal_fd, &si, sizeof(si)) == sizeof(si)) {
                switch (si.ssi_signo) {
                case SIGTERM:
                case SIGINT:
                        /* With the fd store, a stop leaves every connection
                         * to the next instance: systemd closes them if none
                         * comes (systemctl stop), and the library then ends
                         * parked waits with NP_ERR_CLOSING. */
                        s->handover = s->store.systemd;
                        log_info("received %s, %s", strsignal((int)si.ssi_signo),
                                 s->handover ? "exiting; connections stay in the fd store"
                                             : "shutting down");
                        s->stopping = true;
                        break;
                case SIGUSR2:
                        log_info("received %s: upgrading in place", strsignal((int)si.ssi_signo));
                        env_request_upgrade(s);
                        break;
                case SIGHUP:
                        server_reload(s);
                        break;
                }
        }
}

void server_dispatch(Server *s, const struct epoll_event *ev)
{
        uint64_t t = ev->data.u64;

        switch (token_tag(t)) {
        case TOKEN_DESC: { /* one registered in the main set (session-request.c: desc_register) */
                PollSlot *slot = pollcache_lookup(&s->cache, t);
                if (slot) /* else: stale, the descriptor was closed */
                        pollops_ready(&s->ops, &slot->pd, poller_event_mode(ev->events),
                                      poller_event_err(ev->events));
                return;
        }
        case TOKEN_SESSION:
        case TOKEN_GROUP: {
                uint32_t i = token_index(t);
                if (i >= s->sessions_cap || !s->sessions[i] || s->session_gens[i] != token_gen(t))
                        return; /* stale: the connection ended */
                if (token_tag(t) == TOKEN_SESSION)
                        session_dispatch(s->sessions[i], ev->events);
                else
                        session_take_events(s->sessions[i]);
                return;
        }
        case TOKEN_LISTENER:
                if (t == token_make(TOKEN_LISTENER, 0, 0))
                        listener_accept(s);
                return;
        case TOKEN_TIMERFD:
                if (t == token_make(TOKEN_TIMERFD, 0, 0))
                        poller_ack_timer(&s->poller);
                return;
        case TOKEN_WAKEUP:
                if (t == token_make(TOKEN_WAKEUP, 0, 0)) {
                        poller_ack_wakeup(&s->poller);
                        s->stats.wakeups++;
                }
                return;
        case TOKEN_SIGNALFD:
                if (t == token_make(TOKEN_SIGNALFD, 0, 0))
                        server_signal(s);
                return;
        case TOKEN_NONE:
        default: /* no registration carries these */
                return;
        }
}

/* Runs due timers, at most SERVER_TIMER_BATCH per turn so a storm of equal
 * deadlines cannot starve I/O: what is left is still due and re-arms the
 * timerfd in the past, which wakes the next turn at once. */
static void server_expire(Server *s)
{
        int64_t now = now_ns();
        Timer *t;

        s->ops.now = now;
        for (int i = 0; i < SERVER_TIMER_BATCH && (t = timers_pop_due(&s->timers, now)); i++)
                pollops_timer_fire(&s->ops, t);
}

static void server_flush(Server *s)
{
        while (s->dirty) {
                Session *sess = s->dirty;
                s->dirty = sess->next_dirty;
                sess->dirty = false;
                session_flush(sess);
        }
}

void server_reap(Server *s, bool all)
{
        uint32_t budget = DRAIN_BATCH;

        for (Session **pp = &s->dead; *pp && (all || budget);) {
                Session *sess = *pp;
                budget -= session_drain(sess, all ? UINT32_MAX : budget);
                if (sess->draining) {
                        pp = &sess->next_dead;
                        continue;
                }
                *pp = sess->next_dead;
                session_free(sess);
        }
}

/* One line for systemd's STATUS=, from counters only (no /proc reads). */
static void server_status_line(const Server *s, char *buf, size_t len)
{
        uint64_t descriptors = 0, waiters = 0;

        for (uint32_t i = 0; i < s->sessions_cap; i++)
                if (s->sessions[i]) {
                        descriptors += s->sessions[i]->owner.descriptors;
                        waiters += s->sessions[i]->owner.waiters;
                }
        snprintf(buf, len, "%u connections, %" PRIu64 " descriptors, %" PRIu64 " waiters",
                 s->n_sessions, descriptors, waiters);
}

/* Ends connections that did not say hello in time; returns when the next
 * one is due (INT64_MAX: none pending). */
static int64_t server_sweep_handshakes(Server *s, int64_t now)
{
        int64_t next = INT64_MAX, timeout = s->config->handshake_timeout_ns;

        for (uint32_t i = 0; i < s->sessions_cap; i++) {
                Session *sess = s->sessions[i];
                if (!sess || sess->greeted)
                        continue;
                int64_t due = sess->connected_ns + timeout;
                /* A hello that came in time but waits unread (the loop was
                 * held up) is read first: look again next turn. */
                struct pollfd p = { .fd = sess->fd, .events = POLLIN };
                if (due <= now && poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
                        if (now + NSEC_PER_MSEC < next)
                                next = now + NSEC_PER_MSEC;
                        continue;
                }
                if (due <= now) {
                        log_notice("client %" PRIu64 " (pid %d, %s): no hello within the "
                                   "handshake timeout; dropping it",
                                   sess->id, (int)sess->pid, sess->comm);
                        session_close(sess, NULL);
                } else if (due < next)
                        next = due;
        }
        return next;
}

/* Watchdog, status and handshake deadlines; returns the epoll timeout in
 * ms until the next of them (rounded up: housekeeping is never early). */
static int server_housekeeping(Server *s)
{
        int64_t now = now_ns();
        char status[128] = "";

        /* Only when a STATUS= is due: this runs on every loop turn. */
        if (notify_status_due(&s->notify, now))
                server_status_line(s, status, sizeof(status));
        notify_tick(&s->notify, now, status);
        int64_t next = notify_next(&s->notify);
        /* A sweep walks the table: only when the earliest hello is due. */
        if (now >= s->handshake_due)
                s->handshake_due = server_sweep_handshakes(s, now);
        if (s->handshake_due < next)
                next = s->handshake_due;
        int64_t c = closer_tick(&s->closer, now);
        if (c < next)
                next = c;
        int64_t l = listener_resume(s, now);
        if (l < next)
                next = l;
        if (s->listing && s->descs_due < next)
                next = s->descs_due;
        /* The closer runs on its own threads: the first batch it closes
         * after this wakes the loop (asked for before looking, so a batch
         * that ends meanwhile is either seen now or wakes the loop). */
        if (s->held)
                closer_want_wake(&s->closer);
        if (session_quota_release(s) && now + HELD_RECHECK_NS < next)
                next = now + HELD_RECHECK_NS;
        if (next == INT64_MAX)
                return -1;
        int64_t ms = (next - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC;
        return ms < 0 ? 0 : ms > INT32_MAX ? INT32_MAX : (int)ms;
}

int server_run(Server *s)
{
        struct epoll_event evs[MAX_EVENTS];
        char status[128];
        int r;

        server_status_line(s, status, sizeof(status));
        notify_ready(&s->notify, status);
        while (!s->stopping) {
                r = poller_set_timer(&s->poller, timers_next(&s->timers));
                if (r < 0) {
                        log_error("cannot arm the timerfd: %s", strerror(-r));
                        return r;
                }
                /* Every turn, whatever else is pending: ended connections
                 * still draining make the wait not block, but must not stop
                 * the watchdog or the handshake timeout. */
                int timeout = server_housekeeping(s);
                if (s->dead)
                        timeout = 0;
                /* The files of fds closed this turn leave the fd store. */
                fdstore_flush(&s->store);
                int n = poller_wait(&s->poller, evs, MAX_EVENTS, timeout);
                if (n < 0) {
                        if (n == -EINTR)
                                continue;
                        log_error("epoll_wait: %s", strerror(-n));
                        return n;
                }
                for (int i = 0; i < n; i++)
                        server_dispatch(s, &evs[i]);
                admin_descs_continue(s, now_ns());
                server_expire(s);
                server_flush(s);
                server_reap(s, false);
                if (s->upgrading) {
                        (void)server_exec(s, s->source.argv);
                        /* Still here: the exec failed and this instance goes on. */
                        s->upgrading = s->stopping = s->handover = false;
                        notify_ready(&s->notify, "upgrade failed; serving");
                }
        }
        return 0;
}

const char *server_verify(const Server *s)
{
        uint64_t descriptors = 0, timers = 0;

        if (!timers_verify(&s->timers))
                return "timer heap order or back-indexes broken";
        for (const Session *d = s->dead; d; d = d->next_dead)
                descriptors += d->draining;
        for (uint32_t i = 0; i < s->sessions_cap; i++) {
                const Session *sess = s->sessions[i];
                uint64_t listed = 0, parked = 0;
                if (!sess)
                        continue;
                uint32_t iter = 0;
                for (PollSlot *slot; (slot = pollcache_next_owned(&s->cache, &sess->owner, &iter));) {
                        listed++;
                        parked += pollops_parked(&slot->pd);
                }
                if (listed != sess->owner.descriptors || listed != sess->owner.linked)
                        return "descriptor count differs from the slots the connection owns";
                if (sess->n_flat > listed)
                        return "more descriptors counted in the main set than the connection holds";
                if (sess->group_fd < 0 && listed != sess->n_flat)
                        return "a connection with descriptors outside the main set has no epoll set";
                if (parked > sess->owner.waiters)
                        return "more parked waits than counted waiters";
                descriptors += sess->owner.descriptors;
                timers += sess->owner.timers;
        }
        if (descriptors != s->cache.in_use)
                return "pollcache slots in use differ from the connections' descriptors";
        if (timers != s->timers.n)
                return "armed timers differ from the connections' timer counts";
        return NULL;
}

void server_done(Server *s)
{
        notify_stopping(&s->notify);
        /* (An upgrade asked for but never run, as when a fuzzer feeds an
         * OP_UPGRADE without the loop, is no handover: everything ends.) */
        if (s->handover && !s->upgrading) {
                /* Nothing ends: exiting closes this process's copies, and
                 * the fd store keeps every connection and descriptor. */
                fdstore_flush(&s->store);
                log_info("handing over %u connections to the next instance", s->n_sessions);
                return;
        }
        /* Lame duck: end parked waits with NP_ERR_CLOSING and send that,
         * then end every connection. */
        for (uint32_t i = 0; i < s->sessions_cap; i++)
                if (s->sessions[i])
                        session_unblock_all(s->sessions[i]);
        server_flush(s);
        for (uint32_t i = 0; i < s->sessions_cap; i++)
                if (s->sessions[i])
                        session_close(s->sessions[i], "daemon shutting down");
        server_reap(s, true);
        /* The fds of every connection were just handed over: let them
         * close, but a close that hangs (a lingering socket) does not hold
         * up the exit for long. */
        bool closed = closer_done(&s->closer, 2 * NSEC_PER_SEC);
        listener_close(s);
        free(s->sessions);
        free(s->session_gens);
        s->signal_fd = safe_close(s->signal_fd);
        s->reserve_fd = safe_close(s->reserve_fd);
        poller_done(&s->poller);
        timers_done(&s->timers);
        pollcache_done(&s->cache);
        arena_done(&s->arena);
        if (closed) /* else a worker stuck in close() still charges them */
                accounts_done(&s->accounts);
        fdstore_done(&s->store);
        free(s->rbuf);
        free(s->wbuf);
}
