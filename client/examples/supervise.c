/*
 * supervise: run commands, relay their output line by line, kill the silent.
 *
 *     supervise [--silence DURATION] -- CMD [ARGS] [-- CMD [ARGS]]...
 *
 * Each command's stdout and stderr are pipes registered with netpolld.  One
 * thread multiplexes them all: np_arm on each pipe, np_poll for the
 * outcomes.  Before every arm the pipe gets a read deadline (np_set_deadline)
 * of what is left of its command's silence allowance, measured from the
 * command's last output on either pipe; a timeout outcome then means the
 * command said nothing for DURATION, and its process group is killed.
 * Lines are printed as "[name] text" (stdout lines on stdout, stderr lines
 * on stderr); a partial line waits for its newline or EOF.  SIGCHLD and
 * SIGINT/SIGTERM wake np_poll through np_break, which is async-signal-safe.
 * Exit status: 0 if every command exited 0, else 1.
 *
 * Build: cc supervise.c $(pkg-config --cflags --libs libnetpoll)
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
#include <time.h>
#include <unistd.h>

#define MAX_LINE 65536 /* a longer line is printed in pieces */

typedef struct Stream {
        int fd; /* read end, -1 once closed */
        np_desc desc;
        char *buf; /* a partial line */
        size_t len;
} Stream;

typedef struct Child {
        char **argv;
        const char *name; /* basename of argv[0] */
        pid_t pid;        /* 0 once reaped */
        pid_t pgid;       /* its process group, for kill and messages */
        int status;
        bool killed;
        int64_t last;  /* CLOCK_MONOTONIC ns of its last output (or start) */
        Stream out[2]; /* stdout, stderr */
} Child;

static np_client *client;
static volatile sig_atomic_t stop_sig;

static int64_t now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* "250us", "500ms", "2s", "1m", "1h" (a bare number means seconds). */
static int parse_duration(const char *s, int64_t *ret)
{
        static const struct {
                const char *unit;
                double mult;
        } units[] = { { "ns", 1 }, { "us", 1e3 }, { "ms", 1e6 }, { "s", 1e9 },
                      { "", 1e9 }, { "m", 60e9 }, { "h", 3600e9 } };
        char *end;
        double v = strtod(s, &end);

        if (end == s || v < 0 || v != v || *s == '-')
                return -EINVAL;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                if (strcmp(end, units[i].unit) == 0 && v * units[i].mult < 9e18) {
                        *ret = (int64_t)(v * units[i].mult + 0.5);
                        return 0;
                }
        return -EINVAL;
}

static void on_signal(int sig)
{
        if (sig != SIGCHLD)
                stop_sig = sig;
        np_break(client); /* ends the np_poll below */
}

static void emit(Child *ch, int which, const char *line, size_t len)
{
        FILE *f = which ? stderr : stdout;

        fprintf(f, "[%s] ", ch->name);
        if (len)
                fwrite(line, 1, len, f);
        fputc('\n', f);
        fflush(f);
}

/* Arms stream `which` of ch, with a deadline of what is left of the
 * silence allowance (none once the command has been killed). */
static int stream_arm(Child *ch, int which, int64_t silence)
{
        Stream *s = &ch->out[which];
        int64_t ns = 0;

        if (silence > 0 && !ch->killed) {
                ns = ch->last + silence - now();
                if (ns <= 0)
                        ns = -1; /* already past: time out at once */
        }
        int r = np_set_deadline(client, s->desc, ns, NP_READ);
        return r < 0 ? r : np_arm(client, s->desc, NP_READ);
}

/* Flushes a partial line, then as Go does: unblock, close, close our fd. */
static void stream_close(Child *ch, int which)
{
        Stream *s = &ch->out[which];

        if (s->fd < 0)
                return;
        if (s->len)
                emit(ch, which, s->buf, s->len);
        np_unblock(client, s->desc);
        np_close(client, s->desc);
        close(s->fd);
        free(s->buf);
        *s = (Stream){ .fd = -1 };
}

/* Reads until EAGAIN (readiness is edge-triggered, as in Go), printing
 * whole lines.  Returns 1 at EOF, else 0. */
static int stream_drain(Child *ch, int which)
{
        Stream *s = &ch->out[which];
        char tmp[4096];

        for (;;) {
                ssize_t n = read(s->fd, tmp, sizeof(tmp));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return 0;
                if (n <= 0)
                        return 1; /* EOF, or an error that ends the stream */
                ch->last = now();
                for (ssize_t i = 0; i < n; i++) {
                        if (tmp[i] == '\n' || s->len == MAX_LINE) {
                                emit(ch, which, s->buf, s->len);
                                s->len = 0;
                                if (tmp[i] == '\n')
                                        continue;
                        }
                        if (!s->buf && !(s->buf = malloc(MAX_LINE)))
                                return 1;
                        s->buf[s->len++] = tmp[i];
                }
        }
}

/* Starts ch->argv with stdout and stderr on pipes registered with the
 * daemon (user cookie 2*index + stream), in its own process group so a kill
 * also reaches whatever it started. */
static int child_start(Child *ch, int index, int64_t silence)
{
        int p[2][2], r = 0;

        const char *slash = strrchr(ch->argv[0], '/');
        ch->name = slash ? slash + 1 : ch->argv[0];
        if (pipe2(p[0], O_CLOEXEC) < 0)
                return -errno;
        if (pipe2(p[1], O_CLOEXEC) < 0) {
                r = -errno;
                close(p[0][0]), close(p[0][1]);
                return r;
        }
        ch->pid = fork();
        if (ch->pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                setpgid(0, 0);
                dup2(p[0][1], STDOUT_FILENO);
                dup2(p[1][1], STDERR_FILENO);
                execvp(ch->argv[0], ch->argv);
                fprintf(stderr, "%s: %s\n", ch->argv[0], strerror(errno));
                _exit(127);
        }
        if (ch->pid < 0) {
                r = -errno;
                ch->pid = 0;
                close(p[0][0]), close(p[0][1]), close(p[1][0]), close(p[1][1]);
                return r;
        }
        setpgid(ch->pid, ch->pid); /* here too, so no kill can come before it */
        ch->pgid = ch->pid;
        ch->last = now();
        for (int i = 0; i < 2; i++) {
                close(p[i][1]);
                fcntl(p[i][0], F_SETFL, O_NONBLOCK);
                ch->out[i] = (Stream){ .fd = p[i][0] };
                int k = np_open(client, p[i][0], (uint64_t)(2 * index + i), &ch->out[i].desc);
                if (k < 0) {
                        close(p[i][0]);
                        ch->out[i].fd = -1;
                } else if ((k = stream_arm(ch, i, silence)) < 0)
                        stream_close(ch, i);
                if (k < 0)
                        r = k;
        }
        return r;
}

/* One outcome of an armed wait. */
static void handle(Child *children, const np_event *ev, int64_t silence)
{
        Child *ch = &children[ev->user / 2];
        int which = (int)(ev->user % 2);
        Stream *s = &ch->out[which];

        if (s->fd < 0 || s->desc != ev->desc)
                return;
        switch (ev->result) {
        case NP_OK:
                if (stream_drain(ch, which)) {
                        stream_close(ch, which);
                        return;
                }
                break;
        case NP_ERR_TIMEOUT: {
                /* This pipe's deadline; the other one may have spoken since. */
                int64_t quiet = now() - ch->last;
                if (!ch->killed && quiet >= silence) {
                        kill(-ch->pgid, SIGKILL);
                        ch->killed = true;
                        fprintf(stderr, "supervise: %s (pid %d) silent for %.1f s, killed\n",
                                ch->name, (int)ch->pgid, (double)quiet / 1e9);
                }
                break;
        }
        default: /* closing, or an error on the pipe */
                stream_close(ch, which);
                return;
        }
        if (stream_arm(ch, which, silence) < 0)
                stream_close(ch, which);
}

/* Reaps whatever exited; returns how many commands are not finished (still
 * running, or with a pipe some descendant still holds). */
static int reap(Child *ch, int n)
{
        int left = 0;

        for (int i = 0; i < n; i++) {
                if (ch[i].pid > 0 && waitpid(ch[i].pid, &ch[i].status, WNOHANG) == ch[i].pid)
                        ch[i].pid = 0;
                left += ch[i].pid > 0 || ch[i].out[0].fd >= 0 || ch[i].out[1].fd >= 0;
        }
        return left;
}

static int usage(FILE *f)
{
        fprintf(f, "Usage: supervise [--silence DURATION] -- CMD [ARGS] [-- CMD [ARGS]]...\n"
                   "Runs each CMD, prints its output lines as \"[name] text\", and kills a CMD\n"
                   "silent for longer than DURATION (250us, 500ms, 2s, 1m).\n");
        return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
        int64_t silence = 0;
        int nch = 0, i = 1, r;
        bool failed = false;
        np_event ev[32];
        Child *ch;

        if (i < argc && strcmp(argv[i], "--help") == 0)
                return usage(stdout);
        if (i + 1 < argc && strcmp(argv[i], "--silence") == 0) {
                if (parse_duration(argv[i + 1], &silence) < 0) {
                        fprintf(stderr, "supervise: bad duration '%s'\n", argv[i + 1]);
                        return 2;
                }
                i += 2;
        }
        if (i >= argc || strcmp(argv[i], "--") != 0)
                return usage(stderr);
        ch = calloc((size_t)argc, sizeof(*ch));
        if (!ch)
                return 1;
        /* Split argv at each "--" into NULL-terminated command vectors. */
        for (; i < argc; i++)
                if (strcmp(argv[i], "--") == 0) {
                        argv[i] = NULL;
                        ch[nch++].argv = &argv[i + 1];
                }
        for (int k = 0; k < nch; k++)
                if (!ch[k].argv[0]) {
                        free(ch);
                        return usage(stderr);
                }

        r = np_connect(NULL, &client); /* $NETPOLL_SOCKET, else the system socket */
        if (r < 0) {
                fprintf(stderr, "supervise: cannot connect to netpolld: %s\n", np_strerror(r));
                free(ch);
                return 1;
        }
        struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
        sigaction(SIGCHLD, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        for (int k = 0; k < nch; k++) {
                r = child_start(&ch[k], k, silence);
                if (r < 0) {
                        fprintf(stderr, "supervise: %s: %s\n", ch[k].name, np_strerror(r));
                        failed = true;
                }
        }

        while (reap(ch, nch) > 0) {
                if (stop_sig) { /* they have their own process groups: pass it on */
                        for (int k = 0; k < nch; k++)
                                if (ch[k].pid > 0)
                                        kill(-ch[k].pgid, stop_sig);
                        stop_sig = 0;
                }
                int n = np_poll(client, -1, ev, 32); /* until an outcome or np_break */
                if (n < 0) {
                        fprintf(stderr, "supervise: netpolld: %s\n", np_strerror(n));
                        failed = true;
                        break;
                }
                for (int e = 0; e < n; e++)
                        handle(ch, &ev[e], silence);
        }

        for (int k = 0; k < nch; k++) {
                stream_close(&ch[k], 0);
                stream_close(&ch[k], 1);
                if (ch[k].pid > 0) { /* only after losing the daemon */
                        kill(-ch[k].pgid, SIGKILL);
                        waitpid(ch[k].pid, &ch[k].status, 0);
                }
                int st = ch[k].status;
                if (ch[k].pgid && !ch[k].killed && WIFEXITED(st) && WEXITSTATUS(st))
                        fprintf(stderr, "supervise: %s (pid %d) exited with status %d\n",
                                ch[k].name, (int)ch[k].pgid, WEXITSTATUS(st));
                else if (ch[k].pgid && !ch[k].killed && WIFSIGNALED(st))
                        fprintf(stderr, "supervise: %s (pid %d) killed by signal %d\n",
                                ch[k].name, (int)ch[k].pgid, WTERMSIG(st));
                failed |= !ch[k].pgid || ch[k].killed || !WIFEXITED(st) || WEXITSTATUS(st);
        }
        /* No handler may call np_break on a client being freed. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD), sigaddset(&mask, SIGINT), sigaddset(&mask, SIGTERM);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        np_disconnect(client);
        client = NULL;
        free(ch);
        return failed ? 1 : 0;
}
