/* The ad-hoc commands module's API (XEP-0050) for modules that offer
 * commands, published with xmppd_provide(m, "adhoc", &api) per host and
 * found with xmppd_use(host, "adhoc").
 *
 * mod_adhoc serves the protocol around the commands: it lists those a
 * requester may run under the disco node "http://jabber.org/protocol/commands"
 * (XEP-0050 §2.2), answers disco#info of each command node (§2.3), keeps
 * the sessions (§3.4: a sessionid per run, bound to the requester's full
 * JID, a limit per account and per host), checks the action against those
 * the last stage offered (§3.3, <bad-request/><bad-action/>), answers
 * cancel (§3.4.2, status "canceled"), expires a session idle for its
 * timeout (a later request gets <not-allowed/><session-expired/>), parses
 * the submitted data form (forms.h; a bad one is <bad-request/>
 * <bad-payload/>) and writes the answers: status, <actions/>, <note/>s and
 * the form. A module writes only the stages.
 *
 * Registering: look the API up in ready() and call add() for each command;
 * also hook "adhoc-ready" (data: the const adhoc_api * of a mod_adhoc
 * instance that just became ready, after a load or a reload) and add them
 * there again: a new mod_adhoc instance starts with no commands. Adding a
 * node the same module already added replaces it (its runs end). A
 * command is removed when the module that added it unloads (its runs end
 * first, while the module is still loaded).
 *
 * Everything runs on the loop thread. */
#ifndef XMPPD_ADHOC_API_H
#define XMPPD_ADHOC_API_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd/forms.h>
#include <xmppd/jid.h>
#include <xmppd/module.h>
#include <xmppd/stanza.h>

#define ADHOC_API_VERSION 1
#define ADHOC_NS "http://jabber.org/protocol/commands"

/* One run of a command: owned by mod_adhoc, from the first stage until the
 * command's end() returns. */
typedef struct adhoc_session adhoc_session;
struct adhoc_api;

/* Actions (§3.3), a mask in next(). */
enum {
    ADHOC_EXECUTE = 1 << 0, /* the first stage of a run */
    ADHOC_NEXT = 1 << 1,
    ADHOC_PREV = 1 << 2,
    ADHOC_COMPLETE = 1 << 3,
};

/* A stage. action: ADHOC_EXECUTE for the first, then the requester's
 * choice (NEXT, PREV or COMPLETE); form: the submitted data form
 * (borrowed for the call; NULL when none came). Answers now or later with
 * exactly one of api->next, api->complete, api->error. */
typedef void (*adhoc_step_fn)(const struct adhoc_api *api, adhoc_session *s, unsigned action,
                              const xmppd_form *form, void *ud);

typedef struct adhoc_command {
    const char *node; /* unique on the host, e.g. "http://jabber.org/protocol/admin#add-user" */
    const char *name; /* human-readable, for disco */
    /* May requester (a full JID) see and run it? NULL: anyone. A requester
     * it refuses does not see it and gets <forbidden/>. */
    bool (*allowed)(xmppd_host *h, const xmppd_jid *requester, void *ud);
    adhoc_step_fn step;
    /* The run ends (completed, error, canceled, expired, the requester
     * went offline, mod_adhoc or the command's module unloads): free what
     * data() holds. A stage still unanswered is answered by mod_adhoc
     * (<service-unavailable/>) and s must not be used afterwards: an
     * asynchronous step keeps its state in data() and marks it orphaned
     * here. May be NULL. */
    void (*end)(const struct adhoc_api *api, adhoc_session *s, void *ud);
    uint64_t timeout_ms; /* idle time before a run expires; 0: the module's session_timeout */
    void *ud;
} adhoc_command;

typedef struct adhoc_api {
    uint32_t version; /* ADHOC_API_VERSION */
    uint32_t size;    /* sizeof(adhoc_api) */

    /* Offers c (copied, strings too) for caller (its lifetime: the command
     * goes when caller unloads). 0, or -1: a bad command (no node, name or
     * step), the node taken by another module, OOM, caller unloading. */
    int (*add)(const struct adhoc_api *api, xmppd_module *caller, const adhoc_command *c);

    /* ---- inside a run: s is valid from step() until end() returns ---- */
    /* The requester (full JID), borrowed while s lives. */
    const xmppd_jid *(*requester)(const adhoc_session *s);
    /* The requester's address when it is a local client, else NULL. */
    const char *(*ip)(const adhoc_session *s);
    /* The command's per-run data (NULL until set); free it in end(). */
    void (*set_data)(adhoc_session *s, void *data);
    void *(*data)(const adhoc_session *s);
    /* A note (§3.4.3; type "info", "warn" or "error"; text copied) for the
     * next answer. */
    void (*note)(adhoc_session *s, const char *type, const char *text);
    /* Another stage, status "executing": form (an <x type='form'/>,
     * consumed; NULL: none), the actions offered (a mask of NEXT, PREV,
     * COMPLETE; 0: COMPLETE) and the default one (0: the first offered). */
    void (*next)(adhoc_session *s, xmppd_stanza *form, unsigned actions, unsigned default_action);
    /* The last answer, status "completed", with form (an <x type='result'/>
     * or NULL, consumed) and the notes; then end() runs. */
    void (*complete)(adhoc_session *s, xmppd_stanza *form);
    /* A stanza error for this request (type NULL: the condition's default;
     * text may be NULL), then end() runs. */
    void (*error)(adhoc_session *s, const char *type, const char *condition, const char *text);
} adhoc_api;

/* The lines of a text-multi field (XEP-0004 §3.3: one <value/> per line)
 * joined with "\n", malloc'd; NULL when the field is absent or empty, or
 * on OOM. For commands' steps. */
static inline char *adhoc_form_text(const xmppd_form *f, const char *var)
{
    size_t n = 0, len = 1;
    const char *const *v = xmppd_form_values(f, var, &n);
    for (size_t i = 0; v && i < n; i++)
        len += strlen(v[i]) + 1;
    char *out = v && n ? (char *)calloc(1, len) : NULL;
    for (size_t i = 0; out && i < n; i++) {
        if (i)
            strcat(out, "\n");
        strcat(out, v[i]);
    }
    return out;
}

#endif
