/*
 * sd-event-relay: run commands, relay their output, kill the silent: in
 * one thread, on an sd-event loop that libnetpoll joins (np_attach_event).
 *
 *     sd-event-relay [--silence DURATION] -- CMD [ARGS] [-- CMD [ARGS]]...
 *
 * Each command's stdout and stderr share one pipe, registered with
 * netpolld and armed for reading with a read deadline of what is left of
 * the command's silence allowance (np_set_deadline, np_arm).  The outcomes
 * reach the handler below from the loop, next to the loop's own sources:
 * a child source per command (its exit status) and SIGINT/SIGTERM, passed
 * on to the commands.  A timeout outcome means the command said nothing
 * for DURATION: its process group is killed.  Lines are printed as
 * "[name] text".  Exit status: 0 if every command exited 0, else 1.
 * (supervise.c does the same with a blocking np_poll loop.)
 *
 * Build: cc sd-event-relay.c $(pkg-config --cflags --libs libnetpoll libsystemd)
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <netpoll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE 4096 /* a longer line is printed in pieces */

typedef struct Child {
        char **argv;
        const char *name; /* basename of argv[0] */
        pid_t pid;        /* its process group too; 0 once reaped */
        int status;       /* wait status, once reaped */
        bool killed;
        int fd; /* read end of its pipe, -1 once closed */
        np_desc desc;
        int64_t last; /* CLOCK_MONOTONIC ns of its last output (or start) */
        char line[MAX_LINE];
        size_t len;
} Child;

typedef struct Relay {
        np_client *client;
        sd_event *event;
        Child *children;
        int n;
        int64_t silence; /* ns, 0: none */
        bool failed;
} Relay;

static int64_t now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* "500ms", "2s", "1m" (a bare number means seconds). */
static int parse_duration(const char *s, int64_t *ret)
{
        char *end;
        double v = strtod(s, &end), mult;

        if (end == s || !(v >= 0))
                return -EINVAL;
        if (strcmp(end, "ms") == 0)
                mult = 1e6;
        else if (strcmp(end, "s") == 0 || *end == '\0')
                mult = 1e9;
        else if (strcmp(end, "m") == 0)
                mult = 60e9;
        else
                return -EINVAL;
        if (v * mult >= 9e18)
                return -EINVAL;
        *ret = (int64_t)(v * mult);
        return 0;
}

static void emit(Child *ch)
{
        printf("[%s] %.*s\n", ch->name, (int)ch->len, ch->line);
        fflush(stdout);
        ch->len = 0;
}

/* Arms the pipe with a deadline of what is left of the silence allowance
 * (none once the command has been killed: then only its EOF matters). */
static int child_arm(Relay *r, Child *ch)
{
        int64_t ns = 0;

        if (r->silence > 0 && !ch->killed) {
                ns = ch->last + r->silence - now();
                if (ns <= 0)
                        ns = -1; /* already past: time out at once */
        }
        int k = np_set_deadline(r->client, ch->desc, ns, NP_READ);
        return k < 0 ? k : np_arm(r->client, ch->desc, NP_READ);
}

/* The loop ends once every command is reaped and every pipe closed. */
static void maybe_exit(Relay *r)
{
        for (int i = 0; i < r->n; i++)
                if (r->children[i].pid > 0 || r->children[i].fd >= 0)
                        return;
        sd_event_exit(r->event, 0);
}

/* A partial line, then as Go does: unblock, close, close our fd. */
static void child_close(Relay *r, Child *ch)
{
        if (ch->fd < 0)
                return;
        if (ch->len)
                emit(ch);
        np_unblock(r->client, ch->desc);
        np_close(r->client, ch->desc);
        close(ch->fd);
        ch->fd = -1;
        maybe_exit(r);
}

/* Reads until EAGAIN (readiness is edge-triggered, as in Go), printing
 * whole lines.  Returns true at EOF. */
static bool child_drain(Child *ch)
{
        char buf[4096];

        for (;;) {
                ssize_t n = read(ch->fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return false;
                if (n <= 0)
                        return true; /* EOF, or an error that ends it */
                ch->last = now();
                for (ssize_t i = 0; i < n; i++) {
                        if (buf[i] == '\n' || ch->len == MAX_LINE) {
                                emit(ch);
                                if (buf[i] == '\n')
                                        continue;
                        }
                        ch->line[ch->len++] = buf[i];
                }
        }
}

/* np_attach_event's handler: outcomes of armed waits, n == 0 after an
 * np_break (none here), n < 0 once the daemon is gone for good. */
static int on_outcomes(np_client *c, const np_event *ev, int n, void *userdata)
{
        Relay *r = userdata;

        (void)c;
        if (n < 0) {
                fprintf(stderr, "sd-event-relay: netpolld: %s\n", np_strerror(n));
                r->failed = true;
                for (int i = 0; i < r->n; i++)
                        if (r->children[i].pid > 0)
                                kill(-r->children[i].pid, SIGKILL);
                return sd_event_exit(r->event, 1);
        }
        for (int e = 0; e < n; e++) {
                Child *ch = &r->children[ev[e].user];
                if (ch->fd < 0 || ch->desc != ev[e].desc)
                        continue;
                if (ev[e].result == NP_OK && child_drain(ch)) {
                        child_close(r, ch);
                        continue;
                }
                if (ev[e].result == NP_ERR_TIMEOUT && !ch->killed && ch->pid > 0) {
                        kill(-ch->pid, SIGKILL);
                        ch->killed = true;
                        fprintf(stderr, "sd-event-relay: %s (pid %d) silent for %.1f s, killed\n",
                                ch->name, (int)ch->pid, (double)(now() - ch->last) / 1e9);
                }
                if ((ev[e].result != NP_OK && ev[e].result != NP_ERR_TIMEOUT) ||
                    child_arm(r, ch) < 0)
                        child_close(r, ch);
        }
        return 0;
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata)
{
        Relay *r = userdata;
        Child *ch = NULL;

        for (int i = 0; i < r->n; i++)
                if (r->children[i].pid == si->si_pid)
                        ch = &r->children[i];
        if (!ch)
                return 0;
        if (si->si_code == CLD_EXITED && si->si_status != 0)
                fprintf(stderr, "sd-event-relay: %s (pid %d) exited with status %d\n", ch->name,
                        (int)ch->pid, si->si_status);
        else if (si->si_code != CLD_EXITED && !ch->killed)
                fprintf(stderr, "sd-event-relay: %s (pid %d) killed by signal %d\n", ch->name,
                        (int)ch->pid, si->si_status);
        r->failed |= ch->killed || si->si_code != CLD_EXITED || si->si_status != 0;
        (void)s; /* one-shot, and the loop's: it goes with the loop */
        ch->pid = 0;
        maybe_exit(r);
        return 0;
}

static int on_stop(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        Relay *r = userdata;

        (void)s;
        for (int i = 0; i < r->n; i++) /* their own process groups: pass it on */
                if (r->children[i].pid > 0)
                        kill(-r->children[i].pid, (int)si->ssi_signo);
        return 0;
}

/* Starts ch->argv in its own process group, stdout and stderr on a pipe
 * registered with the daemon (user cookie: its index), and watches it. */
static int child_start(Relay *r, int index)
{
        Child *ch = &r->children[index];
        int p[2], k;

        const char *slash = strrchr(ch->argv[0], '/');
        ch->name = slash ? slash + 1 : ch->argv[0];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        ch->pid = fork();
        if (ch->pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                setpgid(0, 0);
                dup2(p[1], STDOUT_FILENO);
                dup2(p[1], STDERR_FILENO);
                execvp(ch->argv[0], ch->argv);
                fprintf(stderr, "%s: %s\n", ch->argv[0], strerror(errno));
                _exit(127);
        }
        close(p[1]);
        if (ch->pid < 0) {
                k = -errno;
                ch->pid = 0;
                close(p[0]);
                return k;
        }
        setpgid(ch->pid, ch->pid); /* here too, so no kill can come before it */
        ch->last = now();
        ch->fd = p[0];
        fcntl(ch->fd, F_SETFL, O_NONBLOCK);
        k = sd_event_add_child(r->event, NULL, ch->pid, WEXITED, on_child, r);
        if (k < 0)
                return k;
        k = np_open(r->client, ch->fd, (uint64_t)index, &ch->desc);
        if (k < 0) {
                close(ch->fd);
                ch->fd = -1;
                return k;
        }
        k = child_arm(r, ch);
        if (k < 0)
                child_close(r, ch);
        return k;
}

static int usage(FILE *f)
{
        fprintf(f, "Usage: sd-event-relay [--silence DURATION] -- CMD [ARGS] [-- CMD [ARGS]]...\n"
                   "Runs each CMD, prints its output lines as \"[name] text\", and kills a CMD\n"
                   "silent for longer than DURATION (500ms, 2s, 1m).\n");
        return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
        Relay r = { 0 };
        sigset_t mask;
        int i = 1, k, status = 2;

        if (i < argc && strcmp(argv[i], "--help") == 0)
                return usage(stdout);
        if (i + 1 < argc && strcmp(argv[i], "--silence") == 0) {
                if (parse_duration(argv[i + 1], &r.silence) < 0) {
                        fprintf(stderr, "sd-event-relay: bad duration '%s'\n", argv[i + 1]);
                        return 2;
                }
                i += 2;
        }
        if (i >= argc || strcmp(argv[i], "--") != 0)
                return usage(stderr);
        r.children = calloc((size_t)argc, sizeof(*r.children));
        if (!r.children)
                return 1;
        for (; i < argc; i++) /* split argv at each "--" */
                if (strcmp(argv[i], "--") == 0) {
                        argv[i] = NULL;
                        r.children[r.n] = (Child){ .argv = &argv[i + 1], .fd = -1 };
                        if (!argv[i + 1] || strcmp(argv[i + 1], "--") == 0) {
                                usage(stderr);
                                goto out;
                        }
                        r.n++;
                }

        /* sd-event takes signals through a signalfd: block them first. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD), sigaddset(&mask, SIGINT), sigaddset(&mask, SIGTERM);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        k = np_connect(NULL, &r.client); /* $NETPOLL_SOCKET, else the system socket */
        if (k < 0) {
                fprintf(stderr, "sd-event-relay: cannot connect to netpolld: %s\n", np_strerror(k));
                status = 1;
                goto out;
        }
        k = sd_event_default(&r.event);
        if (k >= 0)
                k = np_attach_event(r.client, r.event, 0, on_outcomes, &r);
        if (k >= 0)
                k = sd_event_add_signal(r.event, NULL, SIGINT, on_stop, &r);
        if (k >= 0)
                k = sd_event_add_signal(r.event, NULL, SIGTERM, on_stop, &r);
        if (k < 0) {
                fprintf(stderr, "sd-event-relay: %s\n", np_strerror(k));
                status = 1;
                goto out;
        }
        for (int c = 0; c < r.n; c++) {
                k = child_start(&r, c);
                if (k < 0) {
                        fprintf(stderr, "sd-event-relay: %s: %s\n", r.children[c].name,
                                np_strerror(k));
                        r.failed = true;
                }
        }

        maybe_exit(&r); /* nothing started at all */
        k = sd_event_loop(r.event);
        for (int c = 0; c < r.n; c++) /* only after losing the daemon */
                if (r.children[c].pid > 0) {
                        kill(-r.children[c].pid, SIGKILL);
                        waitpid(r.children[c].pid, NULL, 0);
                }
        status = k != 0 || r.failed ? 1 : 0;
out:
        np_disconnect(r.client); /* detaches from the loop too */
        sd_event_unref(r.event);
        free(r.children);
        return status;
}
