/*
 * uv-relay: run commands, relay their output, kill the silent: in one
 * thread, on a libuv loop that polls the connection's fd (np_get_fd).
 *
 *     uv-relay [--silence DURATION] -- CMD [ARGS] [-- CMD [ARGS]]...
 *
 * Each command's stdout and stderr share one pipe, registered with
 * netpolld and armed for reading with a read deadline of what is left of
 * the command's silence allowance (np_set_deadline, np_arm).  A uv_poll_t
 * on np_get_fd calls np_process when the fd is readable, which hands over
 * the outcomes, next to the loop's own handles: a uv_process_t per command
 * (its exit status) and SIGINT/SIGTERM, passed on to the commands.  A
 * timeout outcome means the command said nothing for DURATION: its process
 * group is killed.  Lines are printed as "[name] text".  Exit status: 0 if
 * every command exited 0, else 1.  (sd-event-relay.c is the same program
 * on sd-event, supervise.c on a blocking np_poll loop.)
 *
 * No timer is needed for np_get_timeout: the library keeps none, and
 * whenever the time is "now" the fd is readable too.
 *
 * Build: cc uv-relay.c $(pkg-config --cflags --libs libnetpoll libuv)
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
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define MAX_LINE 4096    /* a longer line is printed in pieces */
#define PROCESS_MAX 64   /* outcomes per callback; more keep the fd readable */

typedef struct Child {
        char **argv;
        const char *name; /* basename of argv[0] */
        uv_process_t process;
        pid_t pid; /* its process group too; 0 once reaped */
        bool killed;
        int fd; /* read end of its pipe, -1 once closed */
        np_desc desc;
        int64_t last; /* CLOCK_MONOTONIC ns of its last output (or start) */
        char line[MAX_LINE];
        size_t len;
} Child;

typedef struct Relay {
        np_client *client;
        uv_loop_t *loop;
        uv_poll_t poll; /* on np_get_fd */
        uv_signal_t sigint, sigterm;
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

static void close_handle(uv_handle_t *h)
{
        if (!uv_is_closing(h))
                uv_close(h, NULL);
}

/* Once every command is reaped and every pipe closed, the loop's own
 * handles go too, and uv_run returns with nothing left to run. */
static void maybe_exit(Relay *r)
{
        for (int i = 0; i < r->n; i++)
                if (r->children[i].pid > 0 || r->children[i].fd >= 0)
                        return;
        close_handle((uv_handle_t *)&r->poll);
        close_handle((uv_handle_t *)&r->sigint);
        close_handle((uv_handle_t *)&r->sigterm);
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

/* np_get_fd is readable: np_process delivers the outcomes of armed waits
 * (0 after an np_break, none here; < 0 once the daemon is gone for good,
 * and the fd stays readable: stop polling it, kill the commands, and let
 * their exits end the loop). */
static void on_netpoll(uv_poll_t *h, int status, int events)
{
        Relay *r = h->data;
        np_event ev[PROCESS_MAX];

        (void)events;
        int n = status < 0 ? status : np_process(r->client, ev, PROCESS_MAX);
        if (n < 0) {
                fprintf(stderr, "uv-relay: netpolld: %s\n", np_strerror(n));
                r->failed = true;
                uv_poll_stop(h);
                for (int i = 0; i < r->n; i++) {
                        Child *ch = &r->children[i];
                        if (ch->pid > 0 && !ch->killed) {
                                kill(-ch->pid, SIGKILL);
                                ch->killed = true;
                        }
                        child_close(r, ch);
                }
                return;
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
                        fprintf(stderr, "uv-relay: %s (pid %d) silent for %.1f s, killed\n",
                                ch->name, (int)ch->pid, (double)(now() - ch->last) / 1e9);
                }
                if ((ev[e].result != NP_OK && ev[e].result != NP_ERR_TIMEOUT) ||
                    child_arm(r, ch) < 0)
                        child_close(r, ch);
        }
}

static void on_child(uv_process_t *p, int64_t exit_status, int term_signal)
{
        Relay *r = p->loop->data;
        Child *ch = p->data;

        if (term_signal == 0 && exit_status != 0)
                fprintf(stderr, "uv-relay: %s (pid %d) exited with status %d\n", ch->name,
                        (int)ch->pid, (int)exit_status);
        else if (term_signal != 0 && !ch->killed)
                fprintf(stderr, "uv-relay: %s (pid %d) killed by signal %d\n", ch->name,
                        (int)ch->pid, term_signal);
        r->failed |= ch->killed || term_signal != 0 || exit_status != 0;
        uv_close((uv_handle_t *)p, NULL);
        ch->pid = 0;
        maybe_exit(r);
}

static void on_stop(uv_signal_t *h, int signum)
{
        Relay *r = h->data;

        for (int i = 0; i < r->n; i++) /* their own process groups: pass it on */
                if (r->children[i].pid > 0)
                        kill(-r->children[i].pid, signum);
}

/* Starts ch->argv in a process group of its own (UV_PROCESS_DETACHED: a
 * session of its own, made before uv_spawn returns), stdout and stderr on
 * a pipe registered with the daemon (user cookie: its index). */
static int child_start(Relay *r, int index)
{
        Child *ch = &r->children[index];
        int p[2], k;

        const char *slash = strrchr(ch->argv[0], '/');
        ch->name = slash ? slash + 1 : ch->argv[0];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        uv_stdio_container_t stdio[3] = {
                { .flags = UV_INHERIT_FD, .data.fd = STDIN_FILENO },
                { .flags = UV_INHERIT_FD, .data.fd = p[1] },
                { .flags = UV_INHERIT_FD, .data.fd = p[1] },
        };
        uv_process_options_t opt = { .exit_cb = on_child, .file = ch->argv[0], .args = ch->argv,
                                     .flags = UV_PROCESS_DETACHED, .stdio_count = 3,
                                     .stdio = stdio };
        ch->process.data = ch;
        k = uv_spawn(r->loop, &ch->process, &opt);
        close(p[1]);
        if (k < 0) {
                uv_close((uv_handle_t *)&ch->process, NULL);
                close(p[0]);
                return k; /* libuv's errors are -errno */
        }
        ch->pid = ch->process.pid;
        ch->last = now();
        ch->fd = p[0];
        fcntl(ch->fd, F_SETFL, O_NONBLOCK);
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
        fprintf(f, "Usage: uv-relay [--silence DURATION] -- CMD [ARGS] [-- CMD [ARGS]]...\n"
                   "Runs each CMD, prints its output lines as \"[name] text\", and kills a CMD\n"
                   "silent for longer than DURATION (500ms, 2s, 1m).\n");
        return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
        Relay r = { 0 };
        int i = 1, k, status = 2;

        if (i < argc && strcmp(argv[i], "--help") == 0)
                return usage(stdout);
        if (i + 1 < argc && strcmp(argv[i], "--silence") == 0) {
                if (parse_duration(argv[i + 1], &r.silence) < 0) {
                        fprintf(stderr, "uv-relay: bad duration '%s'\n", argv[i + 1]);
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

        k = np_connect(NULL, &r.client); /* $NETPOLL_SOCKET, else the system socket */
        if (k < 0) {
                fprintf(stderr, "uv-relay: cannot connect to netpolld: %s\n", np_strerror(k));
                status = 1;
                goto out;
        }
        r.loop = uv_default_loop();
        r.loop->data = r.poll.data = r.sigint.data = r.sigterm.data = &r;
        k = np_get_fd(r.client);
        if (k >= 0)
                k = uv_poll_init(r.loop, &r.poll, k);
        if (k >= 0)
                k = uv_poll_start(&r.poll, UV_READABLE, on_netpoll); /* np_get_events: POLLIN */
        if (k >= 0)
                k = uv_signal_init(r.loop, &r.sigint);
        if (k >= 0)
                k = uv_signal_start(&r.sigint, on_stop, SIGINT);
        if (k >= 0)
                k = uv_signal_init(r.loop, &r.sigterm);
        if (k >= 0)
                k = uv_signal_start(&r.sigterm, on_stop, SIGTERM);
        if (k < 0) {
                fprintf(stderr, "uv-relay: %s\n", np_strerror(k));
                status = 1;
                goto out;
        }
        for (int c = 0; c < r.n; c++) {
                k = child_start(&r, c);
                if (k < 0) {
                        fprintf(stderr, "uv-relay: %s: %s\n", r.children[c].name, np_strerror(k));
                        r.failed = true;
                }
        }

        maybe_exit(&r); /* nothing started at all */
        k = uv_run(r.loop, UV_RUN_DEFAULT);
        status = k != 0 || r.failed ? 1 : 0;
        uv_loop_close(r.loop);
out:
        np_disconnect(r.client);
        free(r.children);
        return status;
}
