/* A MAM query (XEP-0313 §4) read from its <query/> element: the data form
 * (with, start, end, before-id, after-id, ids), RSM and <flip-page/>.
 * Pure: reads untrusted input, so it has a fuzz target
 * (tests/fuzz/fuzz_mam.c). */
#ifndef MAM_REQUEST_H
#define MAM_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <xmppd/forms.h>

#define MAM_NS "urn:xmpp:mam:2"
#define MAM_NS_EXTENDED "urn:xmpp:mam:2#extended"
#define MAM_MAX_IDS 100 /* values of the 'ids' field */

/* Owned by whoever called mam_request_parse; mam_request_clear frees it. */
typedef struct mam_request {
    char *queryid;       /* the query's 'queryid', or NULL */
    char *with;          /* prepared JID (bare or full), or NULL */
    bool has_start, has_end;
    int64_t start_ms, end_ms;
    char *after_id;      /* the 'after-id' field, or NULL */
    char *before_id;     /* the 'before-id' field, or NULL */
    char **ids;          /* the 'ids' field's values (n_ids), or NULL */
    size_t n_ids;
    xmppd_rsm rsm;       /* <set/>: after, before ("" = last page), max */
    bool flip;           /* <flip-page/> */
} mam_request;

/* Reads query (<query xmlns='urn:xmpp:mam:2'/>) into *out (cleared
 * first). 0, or -1 with the stanza error condition in *cond_r and a
 * static text in *text_r, out then holding nothing to free:
 *   bad-request: a malformed form or RSM set, a FORM_TYPE other than
 *     urn:xmpp:mam:2, a 'with' that is not a JID, a 'start'/'end' that is
 *     not an XEP-0082 date-time, an empty id;
 *   feature-not-implemented: a field this server does not know
 *     (XEP-0313 §4.1.5), paging by RSM <index/>;
 *   policy-violation: more than MAM_MAX_IDS ids. */
int mam_request_parse(const xmppd_stanza *query, mam_request *out, const char **cond_r,
                      const char **text_r);
void mam_request_clear(mam_request *r);

#endif
