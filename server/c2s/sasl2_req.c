/* Parsing a SASL2 <authenticate/>: see sasl2_req.h. */
#include <stdlib.h>
#include <string.h>

#include "c2s/sasl2_req.h"
#include "sasl/sasl.h"
#include "xmppd/crypto.h"

#define NS_SASL2 "urn:xmpp:sasl:2"
#define NS_BIND2 "urn:xmpp:bind:0"
#define NS_FAST "urn:xmpp:fast:0"

#define MALFORMED(why) (*cond_r = SASL_MALFORMED, *text_r = (why), -1)

static bool is(const xmppd_stanza *el, const char *name, const char *ns)
{
    return strcmp(xmppd_stanza_name(el), name) == 0 && strcmp(xmppd_stanza_ns(el), ns) == 0;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Pretty-printed XML puts whitespace around the text. */
int sasl2_decode(const char *t, unsigned char **out, size_t *len)
{
    size_t n = strlen(t);
    while (n > 0 && is_space(*t))
        t++, n--;
    while (n > 0 && is_space(t[n - 1]))
        n--;
    if (n == 0) {
        *out = calloc(1, 1);
        *len = 0;
        return *out ? 0 : -1;
    }
    return xmppd_base64_decode(t, n, out, len);
}

/* Text of a child that is at most max bytes; *ok false when too long. */
static const char *bounded_text(const xmppd_stanza *el, size_t max, bool *ok)
{
    const char *t = xmppd_stanza_text(el);
    if (strlen(t) > max)
        *ok = false;
    return t;
}

static int parse_user_agent(sasl2_request *r, const xmppd_stanza *ua, const char **cond_r,
                            const char **text_r)
{
    const char *id = xmppd_stanza_attr(ua, "id");
    if (id && (!*id || strlen(id) > SASL2_UA_ID_MAX))
        return MALFORMED("<user-agent/> id must have 1 to 128 bytes");
    r->ua_id = id;
    bool ok = true;
    for (xmppd_stanza *c = xmppd_stanza_first(ua); c; c = xmppd_stanza_next(c)) {
        if (is(c, "software", NS_SASL2) && !r->software)
            r->software = bounded_text(c, SASL2_UA_TEXT_MAX, &ok);
        else if (is(c, "device", NS_SASL2) && !r->device)
            r->device = bounded_text(c, SASL2_UA_TEXT_MAX, &ok);
    }
    return ok ? 0 : MALFORMED("<software/> and <device/> may have 256 bytes at most");
}

static int parse_bind(sasl2_request *r, xmppd_stanza *bind, const char **cond_r, const char **text_r)
{
    r->bind = bind;
    for (xmppd_stanza *c = xmppd_stanza_first(bind); c; c = xmppd_stanza_next(c)) {
        if (!is(c, "tag", NS_BIND2))
            continue;
        if (r->tag)
            return MALFORMED("more than one <tag/>");
        r->tag = xmppd_stanza_text(c);
    }
    return 0;
}

/* A count: decimal digits, at most 2^53 (what JSON numbers hold exactly). */
static bool parse_count(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s || strlen(s) > 16)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v > (1ULL << 53))
        return false;
    *out = v;
    return true;
}

static int parse_fast(sasl2_request *r, const xmppd_stanza *f, const char **cond_r, const char **text_r)
{
    const char *inv = xmppd_stanza_attr(f, "invalidate"), *count = xmppd_stanza_attr(f, "count");
    if (inv && strcmp(inv, "true") != 0 && strcmp(inv, "1") != 0 && strcmp(inv, "false") != 0 &&
        strcmp(inv, "0") != 0)
        return MALFORMED("<fast/> invalidate must be a boolean");
    r->fast = true;
    r->fast_invalidate = inv && (strcmp(inv, "true") == 0 || strcmp(inv, "1") == 0);
    if (count) {
        if (!parse_count(count, &r->count))
            return MALFORMED("<fast/> count must be a decimal number up to 2^53");
        r->has_count = true;
    }
    return 0;
}

/* One child of <authenticate/>. */
static int parse_child(sasl2_request *r, xmppd_stanza *c, unsigned *n_inline, const char **cond_r,
                       const char **text_r)
{
    if (is(c, "initial-response", NS_SASL2)) {
        if (r->has_initial)
            return MALFORMED("more than one <initial-response/>");
        r->has_initial = true;
        if (sasl2_decode(xmppd_stanza_text(c), &r->initial, &r->initial_len) < 0) {
            *cond_r = SASL_INCORRECT_ENCODING;
            *text_r = "<initial-response/> is not base64";
            return -1;
        }
        return 0;
    }
    if (is(c, "user-agent", NS_SASL2))
        return r->ua_id || r->software || r->device ? MALFORMED("more than one <user-agent/>")
                                                    : parse_user_agent(r, c, cond_r, text_r);
    if (is(c, "bind", NS_BIND2))
        return r->bind ? MALFORMED("more than one <bind/>") : parse_bind(r, c, cond_r, text_r);
    if (is(c, "request-token", NS_FAST)) {
        const char *m = xmppd_stanza_attr(c, "mechanism");
        if (r->request_token || !m || !*m)
            return MALFORMED("<request-token/> needs one mechanism");
        r->request_token = m;
        return 0;
    }
    if (is(c, "fast", NS_FAST))
        return r->fast ? MALFORMED("more than one <fast/>") : parse_fast(r, c, cond_r, text_r);
    if (!sasl2_request_known(c) && ++*n_inline > SASL2_INLINE_MAX)
        return MALFORMED("too many inline requests");
    return 0;
}

int sasl2_request_parse(xmppd_stanza *el, sasl2_request **r_out, const char **cond_r,
                        const char **text_r)
{
    *r_out = NULL;
    *text_r = NULL;
    const char *mech = xmppd_stanza_attr(el, "mechanism");
    if (!mech || !*mech || strlen(mech) > SASL2_MECH_MAX) {
        *cond_r = SASL_INVALID_MECHANISM;
        *text_r = "no mechanism named";
        return -1;
    }
    sasl2_request *r = calloc(1, sizeof(*r));
    if (!r) {
        *cond_r = SASL_TEMPORARY_FAILURE;
        return -1;
    }
    r->el = xmppd_stanza_ref(el);
    r->mechanism = mech;
    unsigned n_inline = 0;
    for (xmppd_stanza *c = xmppd_stanza_first(el); c; c = xmppd_stanza_next(c)) {
        if (parse_child(r, c, &n_inline, cond_r, text_r) < 0) {
            sasl2_request_free(r);
            return -1;
        }
    }
    *r_out = r;
    return 0;
}

bool sasl2_request_known(const xmppd_stanza *c)
{
    static const struct {
        const char *name, *ns;
    } known[] = {
        { "initial-response", NS_SASL2 }, { "user-agent", NS_SASL2 },
        { "supported", NS_SASL2 }, /* informational only (XEP-0388 §2.3) */
        { "bind", NS_BIND2 }, { "request-token", NS_FAST }, { "fast", NS_FAST },
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (is(c, known[i].name, known[i].ns))
            return true;
    return false;
}

void sasl2_request_free(sasl2_request *r)
{
    if (!r)
        return;
    if (r->initial) {
        xmppd_wipe(r->initial, r->initial_len);
        free(r->initial);
    }
    xmppd_stanza_unref(r->el);
    free(r);
}
