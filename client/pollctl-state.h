/* pollctl's snapshot commands: status, clients, descs; see pollctl-state.c. */
#pragma once

#include "pollctl.h"

/* Each runs its command (argv[0] "pollctl NAME", options not yet parsed)
 * and returns the exit status: 0, 1 error, 2 usage. */
int cmd_status(Ctx *x, int argc, char **argv);
int cmd_upgrade(Ctx *x, int argc, char **argv);
int cmd_clients(Ctx *x, int argc, char **argv);
int cmd_descs(Ctx *x, int argc, char **argv);
