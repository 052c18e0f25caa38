/* shared_roster: the groups as one immutable model, and what it puts
 * into each account's roster.
 *
 * A group has an id, a display name (the roster group its members
 * appear in), members (bare JIDs of the host) and the groups it shows to
 * its members (default: itself). Account u sees account v when u is a
 * member of a group that shows a group v is a member of. u's roster then
 * holds v with subscription `to` (u gets v's presence), and `from` when v
 * sees u (v gets u's presence): `both` for the usual groups that show
 * themselves. An account never sees itself.
 *
 * Built once per refresh (sr_model_*), then only read. Pure code. */
#ifndef SHARED_ROSTER_MODEL_H
#define SHARED_ROSTER_MODEL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sr_model sr_model;

sr_model *sr_model_new(void);
void sr_model_free(sr_model *m);

/* Adds a group, or returns the one with that id (name and shows then
 * replace its own when given). shows: NULL-terminated ids, NULL: keep
 * (a new group shows itself). Its index, or -1 on OOM. */
int sr_model_group(sr_model *m, const char *id, const char *name, const char *const *shows);
/* Adds bare JID jid to group g (duplicates are dropped at finish). 0 or -1. */
int sr_model_member(sr_model *m, int g, const char *jid);
/* Sorts and indexes; call once, after the last add. unknown_r: the first
 * shown id naming no group (ignored), or NULL. 0 or -1 on OOM. */
int sr_model_finish(sr_model *m, const char **unknown_r);

size_t sr_model_groups(const sr_model *m);
/* Members of group i (sorted) and its id. */
const char *sr_model_group_id(const sr_model *m, size_t i);
size_t sr_model_group_size(const sr_model *m, size_t i);

/* What u's roster gets for v: SR_TO / SR_FROM bits and the names of the
 * groups through which u sees v (NULL-terminated, into names, at most
 * max - 1 of them; borrowed from m). 0 bits: nothing. */
enum { SR_TO = 1, SR_FROM = 2 };
unsigned sr_model_item(const sr_model *m, const char *u, const char *v, const char **names, size_t max);

/* Calls fn for each contact of u (as sr_model_item gives it), in JID
 * order; stops when fn returns nonzero. -1 on OOM. */
typedef int (*sr_contact_fn)(const char *jid, unsigned sub, const char *const *names, void *ud);
int sr_model_contacts(const sr_model *m, const char *u, sr_contact_fn fn, void *ud);

/* A token of the whole model's content (16 hex digits): equal models,
 * equal tokens, across restarts. */
const char *sr_model_token(const sr_model *m);

#endif
