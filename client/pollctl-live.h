/* pollctl's commands that follow the daemon over time: ping, watch, wait;
 * see pollctl-live.c. */
#pragma once

#include "pollctl.h"

/* Each runs its command (argv[0] "pollctl NAME", options not yet parsed)
 * and returns the exit status: 0, 1 error, 2 usage; cmd_wait also 124 when
 * its timeout fires. */
int cmd_ping(Ctx *x, int argc, char **argv);
int cmd_watch(Ctx *x, int argc, char **argv);
int cmd_wait(Ctx *x, int argc, char **argv);
