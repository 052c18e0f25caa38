/* libFuzzer target: mod_mam's readers of untrusted input, over any element
 * the stanza parser accepts: MAM queries (mam_request_parse), archiving
 * preferences (mam_prefs_parse) and XEP-0082 times (mam_time_parse, on
 * every attribute value and text). Besides memory safety, checks what the
 * engine relies on: a parsed query has at most MAM_MAX_IDS non-empty ids,
 * never both RSM after and before; parsed preferences serialise and read
 * back to the same lists; a parsed time formats and parses back to
 * itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../modules/mam/mam_prefs.h"
#include "../../modules/mam/mam_request.h"
#include "../../modules/mam/mam_time.h"

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

static void check_time(const char *s)
{
    int64_t ms, again;
    char buf[MAM_TIME_LEN];
    if (mam_time_parse(s, &ms) != 0)
        return;
    mam_time_format(ms, buf, sizeof buf);
    /* a time zone offset can take a time out of years 0000-9999, which
     * XEP-0082 cannot write */
    if (ms >= -62167219200000LL && ms <= 253402300799999LL) {
        check(mam_time_parse(buf, &again) == 0);
        check(again == ms);
    }
}

static void check_query(const xmppd_stanza *el)
{
    mam_request r;
    const char *cond, *text;
    if (mam_request_parse(el, &r, &cond, &text) != 0) {
        check(cond != NULL);
        return;
    }
    check(r.n_ids <= MAM_MAX_IDS && !(r.rsm.after && r.rsm.before));
    for (size_t i = 0; i < r.n_ids; i++)
        check(r.ids[i] && *r.ids[i]);
    check(!r.after_id || *r.after_id);
    mam_request_clear(&r);
}

static void check_prefs(const xmppd_stanza *el)
{
    mam_prefs p, back;
    const char *cond, *text;
    if (mam_prefs_parse(el, &p, &cond, &text) != 0)
        return;
    check(p.n_always <= MAM_PREFS_MAX_JIDS && p.n_never <= MAM_PREFS_MAX_JIDS);
    json_t *doc = mam_prefs_json(&p);
    check(doc && mam_prefs_from_json(doc, &back) == 0);
    check(back.def == p.def && back.n_always == p.n_always && back.n_never == p.n_never);
    for (size_t i = 0; i < p.n_always; i++)
        check(strcmp(back.always[i], p.always[i]) == 0);
    json_decref(doc);
    mam_prefs_clear(&back);
    xmppd_stanza *x = mam_prefs_xml(&p);
    check(x != NULL);
    xmppd_stanza_unref(x);
    mam_prefs_clear(&p);
}

static void walk(const xmppd_stanza *el, int depth)
{
    if (depth > 8)
        return;
    check_query(el);
    check_prefs(el);
    check_time(xmppd_stanza_text(el));
    for (const char *const *a = (const char *const[]){ "stamp", "timestamp", "value", NULL }; *a; a++)
        check_time(xmppd_stanza_attr(el, *a));
    for (xmppd_stanza *c = xmppd_stanza_first(el); c; c = xmppd_stanza_next(c))
        walk(c, depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xmppd_stanza *el = xmppd_stanza_from_string((const char *)data, size, XMPPD_NS_CLIENT);
    if (el) {
        walk(el, 0);
        xmppd_stanza_unref(el);
    }
    return 0;
}
