/*
 * The listening socket: AF_UNIX SOCK_SEQPACKET, either passed by systemd
 * (socket activation) or bound here.  Binding refuses a path that a live
 * daemon serves, replaces a stale socket file left by a dead one, and never
 * removes anything that is not a socket.
 */
#pragma once

#include <stddef.h>

typedef struct Server Server;

/* Sets s->listen_fd.  Returns 0 or -errno with a message in err. */
int listener_open(Server *s, char *err, size_t errlen);

/* Closes the listener and removes the socket file if this process created
 * it and it is still the same file. */
void listener_close(Server *s);
