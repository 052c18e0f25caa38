/* Registrations, what wakes a phone, and the publish request
 * (push_rules.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "push_rules.h"

static bool is(const char *a, const char *b)
{
    return a && strcmp(a, b) == 0;
}

void push_reg_req_clear(push_reg_req *r)
{
    free(r->jid);
    free(r->node);
    json_decref(r->options);
    memset(r, 0, sizeof(*r));
}

static int fail(const char *cond, const char *text, const char **cond_r, const char **text_r)
{
    *cond_r = cond;
    *text_r = text;
    return -1;
}

/* The publish options of a parsed form as {var: [values]}; NULL with *why. */
static json_t *options_of(const xmppd_form *f, const char **why)
{
    json_t *o = json_object();
    size_t n = xmppd_form_nfields(f);
    if (n > PUSH_OPTION_FIELDS + 1) {
        *why = "too many publish options";
        json_decref(o);
        return NULL;
    }
    for (size_t i = 0; o && i < n; i++) {
        const char *var = xmppd_form_field_var(f, i);
        if (is(var, "FORM_TYPE"))
            continue;
        size_t nv;
        const char *const *vals = xmppd_form_values(f, var, &nv);
        json_t *arr = json_array();
        for (size_t k = 0; arr && k < nv; k++) {
            if (strlen(vals[k]) > PUSH_OPTION_VALUE) {
                *why = "a publish option is too long";
                json_decref(arr);
                json_decref(o);
                return NULL;
            }
            json_array_append_new(arr, json_string(vals[k]));
        }
        if (!arr || json_object_set_new(o, var, arr) < 0) {
            *why = "out of memory";
            json_decref(o);
            return NULL;
        }
    }
    if (!o)
        *why = "out of memory";
    return o;
}

int push_parse_enable(const xmppd_stanza *en, push_reg_req *out, const char **cond_r,
                      const char **text_r)
{
    memset(out, 0, sizeof(*out));
    const char *jid_s = xmppd_stanza_attr(en, "jid"), *node = xmppd_stanza_attr(en, "node");
    xmppd_jid *jid = jid_s ? xmppd_jid_parse(jid_s) : NULL;
    if (!jid)
        return fail("bad-request", "a valid 'jid' of the push service is required", cond_r, text_r);
    out->jid = strdup(jid->full);
    xmppd_jid_free(jid);
    if (!node || !*node || strlen(node) > PUSH_NODE_MAX) {
        push_reg_req_clear(out);
        return fail("bad-request", "a 'node' of at most 1024 bytes is required", cond_r, text_r);
    }
    out->node = strdup(node);
    const xmppd_stanza *x = xmppd_stanza_child(en, "x", XMPPD_NS_DATA);
    const char *why = NULL;
    if (x) {
        xmppd_form *f = xmppd_form_parse(x, &why);
        if (f && (!is(xmppd_form_type(f), "submit") ||
                  !is(xmppd_form_form_type(f), PUSH_NS_PUBLISH_OPTIONS))) {
            why = "the form must be a submitted " PUSH_NS_PUBLISH_OPTIONS " form";
        } else if (f) {
            out->options = options_of(f, &why);
        }
        xmppd_form_free(f);
        if (!out->options) {
            push_reg_req_clear(out);
            return fail(is(why, "out of memory") ? "resource-constraint" : "bad-request", why, cond_r, text_r);
        }
    } else {
        out->options = json_object();
    }
    if (!out->jid || !out->node || !out->options) {
        push_reg_req_clear(out);
        return fail("resource-constraint", NULL, cond_r, text_r);
    }
    return 0;
}

char *push_key(const char *jid, const char *node)
{
    /* a JID never holds a space (RFC 7622 §3.3.1 forbids it in every part
     * but the resource, where a push service's JID has none) */
    size_t n = strlen(jid) + strlen(node) + 2;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%s %s", jid, node);
    return k;
}

bool push_message_wanted(const xmppd_stanza *msg)
{
    static const struct {
        const char *name, *ns; /* name NULL: any element of ns */
    } wanted[] = {
        { "encryption", "urn:xmpp:eme:0" },
        { "encrypted", "eu.siacs.conversations.axolotl" },
        { "encrypted", "urn:xmpp:omemo:2" },
        { "openpgp", "urn:xmpp:openpgp:0" },
        { "x", "jabber:x:encrypted" },
        { NULL, "urn:xmpp:jingle-message:0" },
        { NULL, "urn:xmpp:jingle-message:1" },
    };
    const char *type = xmppd_stanza_attr(msg, "type");
    if (!is(xmppd_stanza_name(msg), "message") || (type && !is(type, "chat") && !is(type, "normal")))
        return false;
    if (xmppd_stanza_child(msg, "body", NULL))
        return true;
    for (const xmppd_stanza *c = xmppd_stanza_first(msg); c; c = xmppd_stanza_next(c))
        for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
            if ((!wanted[i].name || is(xmppd_stanza_name(c), wanted[i].name)) &&
                is(xmppd_stanza_ns(c), wanted[i].ns))
                return true;
    return false;
}

/* text cut to at most max bytes, not inside a UTF-8 sequence; malloc'd. */
static char *cut_utf8(const char *text, size_t max)
{
    size_t n = strlen(text);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
            n--;
    }
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, text, n);
        s[n] = '\0';
    }
    return s;
}

static int add_count(xmppd_stanza *x, const char *var, long n)
{
    char num[24];
    snprintf(num, sizeof num, "%ld", n);
    return n > 0 && !xmppd_form_add_field(x, var, NULL, NULL, num) ? -1 : 0;
}

static xmppd_stanza *summary_form(const push_summary *sum)
{
    xmppd_stanza *x = xmppd_form_new("submit", PUSH_NS_SUMMARY, NULL);
    char *body = sum->body ? cut_utf8(sum->body, PUSH_BODY_MAX) : NULL;
    if (!x || (sum->body && !body) || add_count(x, "message-count", sum->messages) < 0 ||
        add_count(x, "pending-subscription-count", sum->subscriptions) < 0 ||
        (sum->sender && !xmppd_form_add_field(x, "last-message-sender", NULL, NULL, sum->sender)) ||
        (body && !xmppd_form_add_field(x, "last-message-body", NULL, NULL, body))) {
        xmppd_stanza_unref(x);
        x = NULL;
    }
    free(body);
    return x;
}

static xmppd_stanza *options_form(const json_t *options)
{
    xmppd_stanza *x = xmppd_form_new("submit", PUSH_NS_PUBLISH_OPTIONS, NULL);
    const char *var;
    json_t *vals;
    json_object_foreach((json_t *)options, var, vals) {
        xmppd_stanza *f = x ? xmppd_form_add_field(x, var, NULL, NULL, NULL) : NULL;
        size_t i;
        json_t *v;
        json_array_foreach(vals, i, v)
            if (f && xmppd_form_add_value(f, json_string_value(v)) < 0)
                f = NULL;
        if (!f) {
            xmppd_stanza_unref(x);
            return NULL;
        }
    }
    return x;
}

xmppd_stanza *push_publish_iq(const char *account, const char *jid, const char *node,
                              const json_t *options, const push_summary *sum)
{
    xmppd_stanza *iq = xmppd_stanza_new("iq", XMPPD_NS_CLIENT);
    xmppd_stanza *ps = iq ? xmppd_stanza_tag(iq, "pubsub", PUSH_NS_PUBSUB) : NULL;
    xmppd_stanza *pub = ps ? xmppd_stanza_tag(ps, "publish", NULL) : NULL;
    xmppd_stanza *item = pub ? xmppd_stanza_tag(pub, "item", NULL) : NULL;
    xmppd_stanza *note = item ? xmppd_stanza_tag(item, "notification", PUSH_NS) : NULL;
    xmppd_stanza *form = note ? summary_form(sum) : NULL;
    bool ok = form && xmppd_stanza_add(note, form) && xmppd_stanza_set_attr(iq, "type", "set") == 0 &&
              xmppd_stanza_set_attr(iq, "from", account) == 0 && xmppd_stanza_set_attr(iq, "to", jid) == 0 &&
              xmppd_stanza_set_attr(pub, "node", node) == 0;
    if (ok && options && json_object_size(options) > 0) {
        xmppd_stanza *po = xmppd_stanza_tag(ps, "publish-options", NULL);
        xmppd_stanza *x = po ? options_form(options) : NULL;
        ok = x && xmppd_stanza_add(po, x);
    }
    if (!ok) {
        xmppd_stanza_unref(iq);
        return NULL;
    }
    return iq;
}
