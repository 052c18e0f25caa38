/* mod_admin_adhoc: shared declarations of its files. */
#ifndef ADMIN_ADHOC_H
#define ADMIN_ADHOC_H

#include <xmppd/xmppd.h>

#include "../adhoc/adhoc_api.h"

#define AA_NS "http://jabber.org/protocol/admin"
#define AA_MAX_JIDS 100 /* accounts one jid-multi field may name */

typedef struct aa_conf {
    long long drain_timeout; /* ms to wait for a deleted account's sessions to end */
} aa_conf;

typedef struct aa_run aa_run;

typedef struct aa_state {
    xmppd_module *m;
    xmppd_host *host;
    aa_run *runs; /* every run's state, freed at unload if still there */
} aa_state;

/* The per-run state of a command that waits for something (auth, roster,
 * sessions ending). end() of the run orphans it (s = NULL) while a
 * callback is due; that callback frees it then. */
struct aa_run {
    aa_state *st;
    const adhoc_api *api;
    adhoc_session *s;   /* NULL: the run ended while we waited */
    int waiting;        /* callbacks due */
    char **users;       /* accounts the command works on (nodeprepped) */
    size_t n_users, next_user;
    size_t n_done;      /* accounts handled successfully */
    char *failed;       /* "a (why), b (why)" of those that were not */
    bool list;          /* registered users: the list (at most max; 0: all), not the count */
    bool disabling;     /* disable-user (else reenable-user) */
    bool unsupported;   /* the auth provider cannot do it */
    long max;
    uint64_t deadline;  /* waiting for sessions to end (a timer, counted in waiting) */
    aa_run *next;
};

/* One command of the set. */
typedef struct aa_command {
    const char *node; /* after AA_NS "#" */
    const char *name;
    adhoc_step_fn step;
} aa_command;

/* admin_adhoc.c */
aa_run *aa_run_get(aa_state *st, const adhoc_api *api, adhoc_session *s);
/* A callback of the run came: false when the run ended meanwhile (r is
 * then freed when nothing else is due: forget it). */
bool aa_run_back(aa_run *r);
void aa_run_failed(aa_run *r, const char *user, const char *why);
/* Completes a run over r's accounts: "N of M account(s) DONE", and a warn
 * note naming those that failed ("Not DONE: ..."). */
void aa_complete_many(aa_run *r, const char *done);
/* A form of the set (FORM_TYPE AA_NS) with a title and instructions. */
xmppd_stanza *aa_form(const char *type, const char *title, const char *instructions);
xmppd_stanza *aa_field(xmppd_stanza *x, const char *var, const char *type, const char *label,
                       bool required);
/* The account of a JID field's value on this host: its nodeprepped
 * localpart (malloc'd), or NULL with *why_r set. */
char *aa_local_user(aa_state *st, const char *jid, const char **why_r);
/* Reads the accounts of field var (jid-single or -multi) into r->users;
 * an error answer is sent (and -1 returned) when one is not acceptable. */
int aa_read_users(aa_run *r, const xmppd_form *f, const char *var, bool multi);
/* The submitted form of a one-form command, or NULL after sending the
 * form first (action EXECUTE) or an error (a missing form). */
const xmppd_form *aa_stage(const adhoc_api *api, adhoc_session *s, unsigned action,
                           const xmppd_form *form, xmppd_stanza *(*build)(void));

/* aa_stage, then the run's state with the accounts of var read (*f_r:
 * the submitted form), or NULL after answering. */
aa_run *aa_begin(aa_state *st, const adhoc_api *api, adhoc_session *s, unsigned action,
                 const xmppd_form *form, xmppd_stanza *(*build)(void), const char *var, bool multi,
                 const xmppd_form **f_r);

/* aa_accounts.c: add-user, delete-user, disable-user, reenable-user,
 * change-user-password, end-user-session */
extern const aa_command aa_account_commands[];
/* aa_lists.c: counts, lists, get-user-roster, announce */
extern const aa_command aa_list_commands[];

#endif
