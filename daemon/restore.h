/*
 * Restarts (restore.c): taking over what a previous instance kept in the
 * fd store, and re-executing in place for an upgrade.
 */
#pragma once

typedef struct Server Server;

/* Takes the fds a previous instance handed over (systemd's LISTEN_FDS with
 * --fd-store, or an in-place upgrade's manifest) and sets up the store;
 * the listener among them waits in s->adopted_listen for server_listen.
 * Returns 0 or -errno. */
int server_adopt(Server *s);

/* After server_listen: rebuilds the connections and descriptors adopted,
 * sends each connection its resumed notice, and drops (and removes from
 * the store) whatever cannot be taken back. */
void server_resume(Server *s);

/* Re-executes s->source.exe with argv, keeping every stored connection and
 * descriptor.  Returns only on failure (-errno), with this instance intact. */
int server_exec(Server *s, char *const argv[]);
