/*
 * Introspection requests (OP_STATUS, OP_LIST_CLIENTS, OP_LIST_DESCS,
 * OP_WATCH) and the watch stream.  Any client may see its own connection
 * and descriptors; root and the users and groups named by [access]
 * admin_users / admin_groups may see everything; everything else is
 * answered -EACCES.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"

typedef struct Server Server;
typedef struct Session Session;

/* Answers an introspection request. */
void admin_handle(Session *s, const NpRequest *q);

/* Whether s may see every connection (checked against the configuration
 * in force, so a reload applies at once). */
bool admin_is_admin(const Session *s);

/* Sends the next page of the descriptor listings under way, when one is
 * due (srv->descs_due; the loop calls it every turn and wakes for it). */
void admin_descs_continue(Server *srv, int64_t now);

/* Drops the listing of an ending connection. */
void admin_descs_end(Session *s);

/* Moves every listing cursor on slot (about to be freed) to the next. */
struct PollSlot;
void admin_descs_forget(Server *srv, const struct PollSlot *slot);

/* Ends s's watch subscription, if it has one. */
void admin_unwatch(Session *s);

/* A connection ends: admin_unwatch and admin_descs_end (EnvHooks). */
void admin_session_ending(Session *s);

/* Sends a watch event about connection `about` (and desc/mode where they
 * apply) to every watching connection that may see it. */
void admin_watch(Server *srv, int kind, const Session *about, uint64_t desc, int mode);
