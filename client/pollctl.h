/*
 * pollctl's command frame, internal to pollctl: the context a command runs
 * in, its entry in the command table, and the helpers that make every
 * command parse options, connect and report errors the same way.  The
 * conventions they implement (output, exit status) are described at the top
 * of pollctl.c.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "netpoll.h"

#define EXIT_USAGE 2

/* Option parsing helpers return an exit status, or one of these. */
#define GO_ON (-1)   /* nothing decided: carry on */
#define HANDLED (-2) /* pollctl_common_opt took the option: next one */

typedef struct Ctx {
        const char *socket; /* NULL: $NETPOLL_SOCKET, else the default */
        bool json;
        const char *cmd;
} Ctx;

typedef struct Command {
        const char *name;
        const char *synopsis; /* after "pollctl [...] NAME" */
        const char *help;     /* what it does and its options */
        int (*run)(Ctx *x, int argc, char **argv);
} Command;

/*
 * Option handling for a command's getopt_long loop.  argv[0] is "pollctl
 * NAME" and x->cmd the command's name; every function below that returns a
 * usage error has printed it, with the command's usage, to stderr.
 *
 * pollctl_common_opt: takes what every command accepts (-h/--help,
 * -j/--json, getopt's '?').  Returns HANDLED for --json, 0 after --help,
 * EXIT_USAGE on an error, else GO_ON: opt is the command's own.
 *
 * pollctl_usage_error: prints "pollctl NAME: " and the printf-style message
 * to stderr, then the usage hint.  Returns EXIT_USAGE.
 *
 * pollctl_no_operands: GO_ON when argv has nothing left after optind, else
 * a usage error.
 *
 * pollctl_parse_plain_opts: the whole option loop of a command that takes
 * only the common options and no operands.  Returns GO_ON, or the exit
 * status to return.
 *
 * pollctl_parse_client_opts: the same for [-c|--client ID]; *client is set
 * when the option is given and left alone otherwise.
 */
int pollctl_common_opt(Ctx *x, int opt);
__attribute__((format(printf, 2, 3))) int pollctl_usage_error(Ctx *x, const char *fmt, ...);
int pollctl_no_operands(Ctx *x, int argc, char **argv);
int pollctl_parse_plain_opts(Ctx *x, int argc, char **argv);
int pollctl_parse_client_opts(Ctx *x, int argc, char **argv, uint64_t *client);

/*
 * pollctl_connect: connects to x->socket (NULL: $NETPOLL_SOCKET, else the
 * default).  Returns 0 with *ret set, or 1 after printing why it failed.
 *
 * pollctl_fail: reports a library call that failed with r (a negative
 * errno) once, with the access hint for -EACCES.  Returns 1.
 *
 * pollctl_finish: flushes stdout.  Returns r, or 1 after printing the error
 * if the write failed (full disk, closed pipe).
 */
int pollctl_connect(Ctx *x, np_client **ret);
int pollctl_fail(Ctx *x, int r);
int pollctl_finish(Ctx *x, int r);
