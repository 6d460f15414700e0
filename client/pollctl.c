/*
 * pollctl: the netpolld debugging CLI, a thin user of libnetpoll.
 *
 * Each command parses its own options before it connects, so `pollctl
 * COMMAND --help` and usage errors never need a daemon.  Output is aligned
 * text (no colour, no terminal queries: the same through a pipe) or, with
 * --json, one JSON document (JSON lines for `watch`) whose field names are
 * documented in pollctl(1) and kept stable.  Strings from the daemon (command
 * names) are untrusted bytes: text output replaces control characters and
 * invalid UTF-8 with '?', JSON escapes them.  Exit status: 0 success, 1
 * error, 2 usage; `wait` exits 124 on a timeout, as timeout(1).
 *
 * This file is the frame: global options, the command table with each
 * command's --help text, dispatch, and the plumbing every command shares
 * (pollctl.h).  The commands live in pollctl-state.c (status, clients,
 * descs: one snapshot of the daemon's tables) and pollctl-live.c (ping,
 * watch, wait: the daemon at work, over time); output helpers in
 * pollctl-format.c.
 */
#include "pollctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netpoll.h"
#include "pollctl-live.h"
#include "pollctl-state.h"

#define ADMIN_HINT                                                                                 \
        "needs root, or a user/group listed in admin_users/admin_groups of netpolld.conf [access]"

static const Command *command_find(const char *name);

/* ------------------------------------------------------------------ */
/* Shared plumbing                                                      */

static void command_usage(const Command *cmd, FILE *f)
{
        fprintf(f, "Usage: pollctl [--socket PATH] [--json] %s%s%s\n", cmd->name,
                *cmd->synopsis ? " " : "", cmd->synopsis);
        if (f == stdout)
                fputs(cmd->help, f);
        else
                fprintf(f, "Try 'pollctl %s --help'.\n", cmd->name);
}

/*
 * Handles what every command accepts: -h/--help, -j/--json and getopt's
 * errors.  Returns HANDLED for --json, the exit status the command should
 * return after --help (0) or an error (2), else GO_ON: the command's own.
 */
int pollctl_common_opt(Ctx *x, int opt)
{
        switch (opt) {
        case 'h':
                command_usage(command_find(x->cmd), stdout);
                return 0;
        case 'j':
                x->json = true;
                return HANDLED;
        case '?':
                command_usage(command_find(x->cmd), stderr);
                return EXIT_USAGE;
        }
        return GO_ON;
}

int pollctl_usage_error(Ctx *x, const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "pollctl %s: ", x->cmd);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        command_usage(command_find(x->cmd), stderr);
        return EXIT_USAGE;
}

/* A command without positional arguments: GO_ON, or 2 if there are some. */
int pollctl_no_operands(Ctx *x, int argc, char **argv)
{
        if (optind < argc)
                return pollctl_usage_error(x, "unexpected argument '%s'", argv[optind]);
        return GO_ON;
}

/* --client ID (decimal, or 0x hex): GO_ON with *ret set, or 2. */
static int parse_client_id(Ctx *x, const char *s, uint64_t *ret)
{
        char *end;

        errno = 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (errno || end == s || *end || *s == '-' || v == 0)
                return pollctl_usage_error(
                        x, "--client takes a connection id (see `pollctl clients`)");
        *ret = v;
        return GO_ON;
}

/* The options of status and clients: only the common ones, no operands.
 * Returns GO_ON, or the exit status to return. */
int pollctl_parse_plain_opts(Ctx *x, int argc, char **argv)
{
        static const struct option options[] = {
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int opt, r;

        while ((opt = getopt_long(argc, argv, "jh", options, NULL)) >= 0)
                if ((r = pollctl_common_opt(x, opt)) >= 0)
                        return r;
        return pollctl_no_operands(x, argc, argv);
}

/* The options of descs and watch: [--client ID] and the common ones.
 * Returns GO_ON, or the exit status to return. */
int pollctl_parse_client_opts(Ctx *x, int argc, char **argv, uint64_t *client)
{
        static const struct option options[] = {
                { "client", required_argument, NULL, 'c' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int opt, r;

        while ((opt = getopt_long(argc, argv, "c:jh", options, NULL)) >= 0) {
                if ((r = pollctl_common_opt(x, opt)) >= 0)
                        return r;
                if (r == GO_ON && (r = parse_client_id(x, optarg, client)) >= 0)
                        return r;
        }
        return pollctl_no_operands(x, argc, argv);
}

int pollctl_connect(Ctx *x, np_client **ret)
{
        int r = np_connect(x->socket, ret);
        const char *env = getenv("NETPOLL_SOCKET");

        if (r < 0) {
                fprintf(stderr, "pollctl %s: cannot connect to %s: %s%s\n", x->cmd,
                        x->socket ? x->socket : env && *env ? env : NP_DEFAULT_SOCKET,
                        np_strerror(r),
                        r == -EACCES ? " (needs write permission on the socket, and root or a "
                                       "user/group in allow_users/allow_groups of netpolld.conf "
                                       "[access] when those are set)"
                                     : "");
                return 1;
        }
        return 0;
}

/* Reports a failed library call once, with the access hint for -EACCES. */
int pollctl_fail(Ctx *x, int r)
{
        if (r == -EACCES)
                fprintf(stderr, "pollctl %s: permission denied: %s\n", x->cmd, ADMIN_HINT);
        else
                fprintf(stderr, "pollctl %s: %s\n", x->cmd, np_strerror(r));
        return 1;
}

/* Flushes stdout; a failed write (full disk, closed pipe) is an error. */
int pollctl_finish(Ctx *x, int r)
{
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "pollctl %s: write error: %s\n", x->cmd, strerror(errno));
                return 1;
        }
        return r;
}

/* ------------------------------------------------------------------ */

static const Command commands[] = {
        { "status", "",
          "Print the daemon's version, uptime, pid, connections, descriptors, parked\n"
          "waiters, armed timers, pollcache slots, events delivered, timeouts fired,\n"
          "breaks, protocol errors, resident memory, open fds and the limits in force;\n"
          "when this instance started, and what it resumed from the previous one.\n"
          "Needs root, or admin_users/admin_groups in netpolld.conf [access].\n",
          cmd_status },
        { "upgrade", "",
          "Ask the daemon to re-execute its binary in place (as SIGUSR2 does),\n"
          "keeping every client's connection, descriptors, waits and deadlines; wait\n"
          "until the new instance answers and print what it resumed.  This command's\n"
          "own connection is one of them.  Needs admin rights, as status.\n",
          cmd_upgrade },
        { "clients", "",
          "One row per connection: id, pid, uid, descriptors, parked waiters, armed\n"
          "timers, queued output, connected for, requests served, command name.\n"
          "Without admin rights only this connection is listed.\n",
          cmd_clients },
        { "descs", "[--client ID]",
          "One row per registered descriptor: connection, id, user cookie, file type,\n"
          "state of each direction (idle, ready, waiting, closing), time left until\n"
          "each deadline (or expired, none), and the event-error flag.\n"
          "\n"
          "  -c, --client ID  only the descriptors of connection ID\n",
          cmd_descs },
        { "watch", "[--client ID]",
          "Print events as they happen, one line each, with the daemon's monotonic\n"
          "time: ready, timeout, closing, open, close, connect, disconnect.  Runs\n"
          "until SIGINT or SIGTERM (exit 0).\n"
          "\n"
          "  -c, --client ID  only the events of connection ID\n",
          cmd_watch },
        { "ping", "[-c N]",
          "Time N round trips to the daemon (default 4); print min, median, p99, max.\n"
          "\n"
          "  -c, --count N    round trips, 1..10000000\n",
          cmd_ping },
        { "wait", "[--read|--write] [--timeout DURATION] [--fd N | PATH]",
          "Register a descriptor with the daemon and wait until it is ready for\n"
          "reading (default) or writing.  The descriptor is fd N (default 0, stdin) or\n"
          "PATH opened non-blocking.  DURATION: 250us, 500ms, 2s, 1m, 1h; none or 0\n"
          "waits forever.\n"
          "\n"
          "  -r, --read              wait until readable (default)\n"
          "  -w, --write             wait until writable\n"
          "  -t, --timeout DURATION  give up after DURATION\n"
          "  -f, --fd N              wait on this process's fd N\n"
          "\n"
          "Exit status: 0 ready, 124 timed out, 1 error, 2 usage.\n",
          cmd_wait },
};

static const Command *command_find(const char *name)
{
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(commands[i].name, name) == 0)
                        return &commands[i];
        return NULL;
}

static void usage(FILE *f)
{
        fprintf(f, "Usage: pollctl [--socket PATH] [--json] COMMAND [ARGS]\n"
                   "Inspect a running netpolld.\n"
                   "\n"
                   "Commands:\n");
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                fprintf(f, "  %s%s%s\n", commands[i].name, *commands[i].synopsis ? " " : "",
                        commands[i].synopsis);
        }
        fprintf(f,
                "\n"
                "Options:\n"
                "  -s, --socket PATH  daemon socket (default $NETPOLL_SOCKET, else %s)\n"
                "  -j, --json         print JSON (JSON lines for watch) instead of text\n"
                "  -h, --help         show this help and exit\n"
                "  -V, --version      show the version and exit\n"
                "\n"
                "`pollctl COMMAND --help` describes a command.  See pollctl(1).\n"
                "Exit status: 0 success, 1 error, 2 usage (wait: 124 timed out).\n",
                NP_DEFAULT_SOCKET);
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        Ctx x = { 0 };
        char prog[64];
        int opt;

        while ((opt = getopt_long(argc, argv, "+s:jhV", options, NULL)) >= 0) {
                switch (opt) {
                case 's':
                        x.socket = optarg;
                        break;
                case 'j':
                        x.json = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("pollctl %s\n", NETPOLL_VERSION);
                        return 0;
                default:
                        usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                fprintf(stderr, "pollctl: missing command\n");
                usage(stderr);
                return EXIT_USAGE;
        }
        const Command *cmd = command_find(argv[optind]);
        if (!cmd) {
                fprintf(stderr, "pollctl: unknown command '%s'\n", argv[optind]);
                usage(stderr);
                return EXIT_USAGE;
        }
        x.cmd = cmd->name;
        /* The command parses the rest afresh; getopt names it in errors. */
        argc -= optind;
        argv += optind;
        snprintf(prog, sizeof(prog), "pollctl %s", cmd->name);
        argv[0] = prog;
        optind = 0;
        return cmd->run(&x, argc, argv);
}
