/*
 * fakesm: a fake service manager for tests.  It plays systemd 252 (the
 * version of Debian 12) for one Type=notify service with NotifyAccess=main
 * and FileDescriptorStoreMax=store_max: it owns a notify socket, starts the
 * service the way systemd execs it (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID,
 * NOTIFY_SOCKET), and applies the service's sd_notify messages with the
 * rules of systemd's own source (src/core/manager.c
 * manager_dispatch_notify_fd, src/core/service.c service_notify_message,
 * service_add_fd_store, service_remove_fd_store, service_collect_fds,
 * src/basic/fd-util.c same_fd, fdname_is_valid), checked against a real
 * systemd 252.39 under tools/systemd-box.  What a test may rely on, as
 * systemd does it:
 *
 *  - Only the main pid counts (SCM_CREDENTIALS, given by the kernel), also
 *    for messages it queued before it died: systemd reads its notify socket
 *    before it reaps.  After a kill -9, waitpid() then fakesm_process(m, 0)
 *    (or fakesm_reap_main) applies them; fakesm_spawn applies them too
 *    before it starts the next instance.
 *  - The fd store is passed NEWEST FIRST (systemd prepends to a list), after
 *    the extra fds: store A then B, and the next instance gets B at 3 + n_extra,
 *    A after it.  The order of the fds of ONE message is systemd's hash-set
 *    order, which nothing guarantees; the fake passes them in reverse message
 *    order, so a service that relies on that order fails here first.  Rely
 *    on names only.
 *  - FDSTORE=1 without FDNAME= stores under "stored"; with an invalid name
 *    (control characters, ':', non-ASCII, over 255 bytes) systemd logs
 *    "Passed FDNAME= name is invalid, ignoring." and stores the fd under
 *    "stored": it is NOT refused.  FDNAME= (empty) is valid.
 *  - An fd that is the same open file description as a stored one (kcmp
 *    KCMP_FILE; a dup, or the same fd sent twice) is closed, the first kept.
 *    Two open()s of one file are different.
 *  - Beyond store_max the fd and every later fd of that message are closed.
 *  - FDSTOREREMOVE=1 with a valid FDNAME= closes every stored fd of that
 *    name.  A message with both FDSTOREREMOVE=1 and FDSTORE=1 only removes;
 *    its fds are closed.
 *  - FDPOLL=0 is NOT a no-op: systemd watches every other stored fd for
 *    EPOLLHUP/EPOLLERR and closes it then (a socket whose peer closed, the
 *    read end of a pipe whose writers are all gone).  The fake notices this
 *    whenever it is called (process, spawn, wait, reap, store calls), and
 *    its background reader after each batch of messages; systemd within
 *    its next event loop turn.  A service sees the difference only in a
 *    full store, which the fake sweeps before it refuses an fd.
 *  - READY=1 / RELOADING=1 / STOPPING=1: the last one in a message wins.
 *  - A message is dropped whole when it is over 4096 bytes, holds a NUL
 *    before its last byte, or ends in a lone backslash; inside it a
 *    backslash escapes the next character and is removed ("STATUS=a\b" is
 *    "ab"); empty lines and '\r' separate like '\n'.  BARRIER=1
 *    (sd_notify_barrier) is answered by closing its fd.
 *  - Fds sent with a message that does not store them are closed.
 *
 * Not emulated: timeouts, restart policy, cgroups, reload/stop jobs (the
 * test does those by calling fakesm_spawn, kill(), fakesm_store_clear),
 * and PID 1's cost: systemd 252 compares every new fd with every stored
 * one (kcmp), so filling a store of n fds costs it O(n^2): measured on
 * 252.39, 0.65 s of PID 1 CPU for 1000 fds, 8.4 s for 4000, batched or
 * not.  MAINPID= takes a pid that descends from the main pid (systemd: in
 * the unit's cgroup) or, from a root sender, any live pid.
 * Unlike systemd the spawned service keeps the test's working directory and
 * environment (minus LISTEN_*, NOTIFY_SOCKET, WATCHDOG_*), so relative
 * paths work.
 *
 * Locking: every function may be called while the background reader
 * (fakesm_background) runs.  Fds the fake hands out are borrowed: valid
 * until the store changes (the service removes them, or they hang up).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct FakeSM FakeSM;

/* The service's state, from the messages of its main process. */
typedef enum FakeSMState {
        FAKESM_DEAD,      /* no main process: never spawned, or reaped by fakesm_reap_main */
        FAKESM_STARTING,  /* spawned, no READY=1 yet */
        FAKESM_RUNNING,   /* READY=1 */
        FAKESM_RELOADING, /* RELOADING=1 while running (READY=1 ends it) */
        FAKESM_STOPPING,  /* STOPPING=1 while running (MAINPID= is ignored from here) */
} FakeSMState;

/* Counters since fakesm_new (never reset, so a test compares before/after). */
typedef struct FakeSMStats {
        unsigned applied;           /* messages from the main pid, applied */
        unsigned ignored;           /* messages dropped: not from the main pid, too long,
                                     * NUL inside, bad escape, too many fds */
        unsigned barriers;          /* BARRIER=1 messages answered */
        unsigned readies;           /* READY=1 applied */
        unsigned reloadings;        /* RELOADING=1 applied */
        unsigned stoppings;         /* STOPPING=1 applied */
        unsigned watchdogs;         /* WATCHDOG=1 */
        unsigned watchdog_triggers; /* WATCHDOG=trigger */
        unsigned stores;            /* fds newly stored (FDSTORE=1, fakesm_store_add) */
        unsigned removes;           /* fds closed by FDSTOREREMOVE=1 */
        unsigned dedups;            /* fds closed as the same open file as a stored one */
        unsigned refused;           /* fds closed because the store was full */
        unsigned hangups;           /* stored fds closed on POLLHUP/POLLERR (not FDPOLL=0) */
        unsigned bad_names;         /* FDSTORE=1 with an invalid FDNAME= (stored as "stored") */
        unsigned bad_removes;       /* FDSTOREREMOVE=1 without a valid FDNAME= (ignored) */
        unsigned stray_fds;         /* fds closed because their message stored none */
        unsigned main_pid_changes;  /* MAINPID= accepted */
        int status_errno;           /* last ERRNO= (0: none) */
        uint64_t watchdog_usec;     /* last WATCHDOG_USEC= (0: none) */
} FakeSMStats;

/*
 * Creates a fake service manager with a fresh notify socket (a path in a
 * new directory under /tmp, which anyone may send to, as to systemd's; a
 * test that fails before fakesm_free leaves the directory behind) and an
 * empty store that holds at most
 * store_max fds (FileDescriptorStoreMax=; 0 stores nothing).  0 with *ret
 * set, or -errno.
 */
int fakesm_new(FakeSM **ret, unsigned store_max);

/*
 * Stops the background reader, closes every stored fd and the notify
 * socket, removes the socket's directory.  Does not touch the service's
 * processes (fakesm_spawn's children die with the thread that spawned
 * them: PR_SET_PDEATHSIG).  Accepts NULL; returns NULL.
 */
FakeSM *fakesm_free(FakeSM *m);

/* The value the service gets as NOTIFY_SOCKET (an absolute path). */
const char *fakesm_notify_socket(const FakeSM *m);

/*
 * Where the next fakesm_spawn's stdout and stderr go: borrowed fds, dup'ed
 * at spawn (so the caller may close them after); -1 (the default) inherits
 * the test's own.
 */
void fakesm_set_output(FakeSM *m, int stdout_fd, int stderr_fd);

/* WatchdogSec= for the next spawns: WATCHDOG_USEC=usec and WATCHDOG_PID=
 * the child's pid in its environment; 0 (the default) sets neither. */
void fakesm_set_watchdog(FakeSM *m, uint64_t usec);

/*
 * Starts argv (argv[0] a path, not searched in PATH) as systemd starts the
 * main process of a service, and makes it the main pid.  First applies
 * what is queued on the notify socket and drops hung-up fds, as systemd
 * has by then.  The child gets:
 *  - fds 3, 4, ...: the n_extra fds of extra (borrowed; a .socket unit's
 *    sockets, named by extra_names; NULL names them "fakesm.socket", as
 *    systemd names a socket by its unit without FileDescriptorName=), then the store
 *    newest first; LISTEN_FDS, LISTEN_FDNAMES (':'-joined) and LISTEN_PID
 *    (its own pid, set after fork) when there is at least one fd, else
 *    none of them.  The extra fds' O_NONBLOCK is cleared (NonBlocking=no;
 *    their open file descriptions are shared, so the caller sees it too);
 *    stored fds are passed as they are.  Every other fd is closed.
 *  - stdin /dev/null; stdout/stderr per fakesm_set_output.
 *  - NOTIFY_SOCKET; WATCHDOG_* per fakesm_set_watchdog.
 *  - every signal at SIG_DFL except SIGPIPE, ignored (IgnoreSIGPIPE=yes,
 *    the default), an empty signal mask, a new session, umask 0022,
 *    PR_SET_PDEATHSIG SIGKILL (not systemd: so a failed test leaves no
 *    process behind).
 * An exec failure exits 203 (systemd's EXIT_EXEC), a failure to set up
 * the fds 202 (EXIT_FDS).  Resets the state to FAKESM_STARTING and the
 * STATUS= text.  Returns the pid, or -errno (-EINVAL: bad argument or an
 * invalid extra name, -EBADF: an extra fd is not open).
 */
pid_t fakesm_spawn(FakeSM *m, char *const argv[], const int *extra,
                   const char *const *extra_names, size_t n_extra);

/* Makes pid the main pid (what systemd learns at fork), for a service the
 * test forked itself; the state becomes FAKESM_STARTING. */
void fakesm_set_main_pid(FakeSM *m, pid_t pid);

/* The current main pid (changed by MAINPID=), 0 when there is none. */
pid_t fakesm_main_pid(const FakeSM *m);

/*
 * Applies what is queued on the notify socket and drops hung-up stored
 * fds; when nothing from the main pid was applied and timeout_ms > 0,
 * waits up to timeout_ms for a message that is.  Returns the number of
 * messages applied during the call (by this call or the background
 * reader), or -errno.  After the main process died (kill -9, waitpid),
 * fakesm_process(m, 0) applies its last messages.
 */
int fakesm_process(FakeSM *m, int timeout_ms);

/*
 * Processes until the current main pid has sent READY=1 since its spawn:
 * 0 (also when it had already), -ETIMEDOUT after timeout_ms, -ESRCH when
 * the spawned process exited without it.
 */
int fakesm_wait_ready(FakeSM *m, int timeout_ms);

/*
 * For a test that kills the service: waits up to timeout_ms for the
 * process fakesm_spawn started to exit, reaps it (its wait status in
 * *ret_status, may be NULL), then applies every message it queued before
 * it died, as systemd does before it reaps.  The main pid is then 0 and
 * the state FAKESM_DEAD.  0, -ETIMEDOUT (not reaped), -ECHILD (nothing
 * spawned), or -errno.
 */
int fakesm_reap_main(FakeSM *m, int timeout_ms, int *ret_status);

/*
 * on: a thread reads the notify socket as systemd does, all the time, so a
 * service that sends many messages (more than net.unix.max_dgram_qlen
 * queued) never blocks in sd_notify while the test is busy elsewhere.
 * off: stops it; messages are then read only in the calls above.  0 or
 * -errno.
 */
int fakesm_background(FakeSM *m, bool on);

/* The service's state. */
FakeSMState fakesm_state(const FakeSM *m);

/* Copies the counters to *ret. */
void fakesm_stats(const FakeSM *m, FakeSMStats *ret);

/* The last STATUS= text (systemctl status' "Status:"), copied into buf
 * (truncated to len); false (buf "") when none or cleared by "STATUS=". */
bool fakesm_status(const FakeSM *m, char *buf, size_t len);

/* Number of stored fds (after dropping hung-up ones). */
size_t fakesm_store_count(const FakeSM *m);

/* The stored fd of that name (borrowed; the first passed, i.e. the newest,
 * when several share the name), or -ENOENT. */
int fakesm_store_fd(const FakeSM *m, const char *name);

/* Number of stored fds with that name. */
size_t fakesm_store_count_name(const FakeSM *m, const char *name);

/* The stored fd at index i of the order the next spawn passes them
 * (0: first), its name copied into name (may be NULL); borrowed fd, or
 * -ENOENT. */
int fakesm_store_get(const FakeSM *m, size_t i, char *name, size_t len);

/* The store's names in the order the next spawn passes them, ':'-joined
 * (LISTEN_FDNAMES without the extra fds) into buf; its length, or -ENOBUFS
 * when buf is too small. */
int fakesm_store_names(const FakeSM *m, char *buf, size_t len);

/*
 * Adds a dup of fd (borrowed) to the store as if the main process had sent
 * FDSTORE=1 with FDNAME=name (NULL: none) and, unless do_poll, FDPOLL=0: the
 * same rules and counters.  1 stored, 0 dropped as a duplicate, -EXFULL
 * store full, or -errno.
 */
int fakesm_store_add(FakeSM *m, int fd, const char *name, bool do_poll);

/* What systemctl stop does to the store of a service without
 * FileDescriptorStorePreserve= (which 252 does not have): closes and
 * forgets every stored fd. */
void fakesm_store_clear(FakeSM *m);

/*
 * netpolld as the shipped units run it (netpolld.socket, netpolld.service
 * with --fd-store), under the fake: the tests, benchmarks and fault
 * programs that restart it share this set-up.  The listening socket (AF_UNIX
 * SOCK_SEQPACKET, backlog SOMAXCONN as systemd's Backlog= default) is
 * bound here at dir/np.sock and passed to every instance as the socket
 * unit's, named "netpolld.socket"; dir is a new directory under /tmp where
 * the caller may put files of its own (a config, a log) before the first
 * spawn.
 */
typedef struct FakeSMNetpolld {
        FakeSM *m;
        char dir[64];   /* /tmp/<name>-XXXXXX */
        char sock[108]; /* dir/np.sock */
        int listen_fd;  /* bound to sock and listening; -1 when none */
        pid_t pid;      /* the main process fakesm_netpolld_spawn started, 0 none */
} FakeSMNetpolld;

/*
 * Makes the directory (/tmp/<name>-XXXXXX), the listening socket and a fake
 * service manager whose store holds store_max fds, with its background
 * reader on when background (fakesm_background).  Spawns nothing: the
 * caller writes what the daemon's command line names, then calls
 * fakesm_netpolld_spawn.  0 with *ret filled in, or -errno (*ret untouched,
 * nothing left behind).
 */
int fakesm_netpolld_new(FakeSMNetpolld *ret, const char *name, unsigned store_max,
                        bool background);

/*
 * Starts argv (the daemon and its arguments: --fd-store, --socket, ...)
 * with the listening socket as "netpolld.socket" (fakesm_spawn) and waits up
 * to timeout_ms for its READY=1 (fakesm_wait_ready).  d->pid is the new
 * main pid once spawned, also when it then never gets ready.  0 or -errno
 * (from fakesm_spawn: d->pid untouched; or -ETIMEDOUT, -ESRCH).
 */
int fakesm_netpolld_spawn(FakeSMNetpolld *d, char *const argv[], int timeout_ms);

/*
 * Ends what fakesm_netpolld_new set up: sends sig to the main process and
 * reaps it (up to 10 s; sig 0: leaves it alone, for a caller that ended it
 * itself: it dies with the thread that spawned it anyway), frees the fake, closes the listening
 * socket and removes its file and the directory (which stays if the caller
 * left files in it).  Accepts a d never set up, or already freed (m NULL,
 * listen_fd -1).
 */
void fakesm_netpolld_free(FakeSMNetpolld *d, int sig);
