/* Archiving preferences (XEP-0441, urn:xmpp:mam:2 <prefs/>): a default
 * (always, never, roster) and lists of JIDs always or never archived.
 * Pure functions. */
#ifndef MAM_PREFS_H
#define MAM_PREFS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include <xmppd/jid.h>
#include <xmppd/stanza.h>

#define MAM_PREFS_MAX_JIDS 256 /* per list */

enum mam_default { MAM_ALWAYS = 0, MAM_NEVER = 1, MAM_ROSTER = 2 };

/* Owned by its holder; mam_prefs_clear frees the lists. JIDs are
 * prepared (bare or full). */
typedef struct mam_prefs {
    enum mam_default def;
    char **always, **never;
    size_t n_always, n_never;
} mam_prefs;

void mam_prefs_clear(mam_prefs *p);
/* "always", "never", "roster" and back; -1 / NULL for anything else. */
int mam_default_parse(const char *s);
const char *mam_default_name(enum mam_default d);

/* Reads <prefs default=...><always><jid/>...</always><never/></prefs>
 * (an IQ set) into *out. 0, or -1 with the stanza error condition and a
 * static text: bad-request for a missing or unknown default or a <jid/>
 * that is not a JID, policy-violation for more than MAM_PREFS_MAX_JIDS
 * JIDs in a list. */
int mam_prefs_parse(const xmppd_stanza *prefs, mam_prefs *out, const char **cond_r,
                    const char **text_r);
/* <prefs xmlns='urn:xmpp:mam:2' default=...> with both lists (new tree,
 * caller owns; NULL on OOM). */
xmppd_stanza *mam_prefs_xml(const mam_prefs *p);
/* Storage form {"default": "...", "always": [...], "never": [...]} (new
 * reference) and back (0, or -1 when doc is not one; out is then empty). */
json_t *mam_prefs_json(const mam_prefs *p);
int mam_prefs_from_json(const json_t *doc, mam_prefs *out);

/* Whether a message with peer (the 'to' of an outgoing message, the
 * 'from' of an incoming one) is archived (XEP-0441 §2.3): 1 yes, 0 no,
 * -1 it depends on whether peer's bare JID is in the roster (default
 * roster and peer in neither list). The never list wins over the always
 * list. */
int mam_prefs_decide(const mam_prefs *p, const xmppd_jid *peer);

#endif
