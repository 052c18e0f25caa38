/* mod_filter: the operator's stanza rules, per host. Each rule matches on
 * stanza kind and type, direction, sender and recipient address patterns,
 * message body (a PCRE2 regular expression) and size, and drops the
 * stanza, bounces it with a stanza error, or logs it (and lets it pass).
 * The first rule whose action is drop or bounce decides; log rules before
 * it all log.
 *
 * Where rules run (the same routing hooks as mod_privacy, one band below
 * it so users' own rules come first):
 *   "pre-route"                       stanzas clients of this host send
 *                                     (direction "out");
 *   "message|presence|iq/host|bare|full"
 *                                     stanzas for this host and its
 *                                     accounts (direction "in").
 * A stanza between two accounts of the host meets both: "out" and "in"
 * rules apply to it, an "any" rule once.
 *
 * Rules are the JSON list option `rules`, checked when the module loads: a
 * bad rule refuses the load with one line naming the rule and the field. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <fnmatch.h>
#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "../privacy/privacy_match.h"

#define FL_RULES_MAX 1000
#define FL_PATTERNS_MAX 64
#define FL_MATCH_LIMIT 100000 /* PCRE2 backtracking budget per match */
#define FL_DEPTH_LIMIT 5000

typedef struct fl_conf {
    const json_t *rules;
} fl_conf;

static const xmppd_option fl_options[] = {
    { "rules", XMPPD_OPT_JSON, XMPPD_OFF(fl_conf, rules), "[]", 0, 0, NULL, 0,
      "List of rules {kind, type, direction, from, to, body, larger_than, action, error, text, name}; "
      "see modules/filter/README.md" },
    { NULL },
};

enum fl_action { FL_DROP, FL_BOUNCE, FL_LOG };
enum fl_dir { FL_ANY, FL_IN, FL_OUT };

typedef struct fl_rule {
    char *name;            /* owned; "rule N" when none was given */
    unsigned kinds;        /* bit per enum xm_stanza; 0: any */
    char **types;          /* owned, NULL-terminated; NULL: any */
    enum fl_dir dir;
    char **from, **to;     /* owned patterns, NULL-terminated; NULL: any */
    pcre2_code *body;      /* owned or NULL */
    long long larger_than; /* bytes; 0: no size condition */
    enum fl_action action;
    char *error;           /* bounce: stanza error condition (owned) */
    char *text;            /* bounce: optional text (owned) */
} fl_rule;

typedef struct fl_mod {
    xmppd_module *m;
    xmppd_host *host;
    fl_rule *rules;
    size_t n;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
} fl_mod;

/* Stanza error conditions a bounce may use (RFC 6120 §8.3.3). */
static const char *const fl_conditions[] = {
    "bad-request", "conflict", "feature-not-implemented", "forbidden", "gone",
    "internal-server-error", "item-not-found", "jid-malformed", "not-acceptable", "not-allowed",
    "not-authorized", "policy-violation", "recipient-unavailable", "redirect",
    "registration-required", "remote-server-not-found", "remote-server-timeout",
    "resource-constraint", "service-unavailable", "subscription-required", "undefined-condition",
    "unexpected-request", NULL,
};

static const char *const fl_kind_names[] = { "message", "presence", "iq", NULL };

/* ---- rules ---------------------------------------------------------------- */

static void fl_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static void fl_rule_clear(fl_rule *r)
{
    free(r->name);
    fl_strv_free(r->types);
    fl_strv_free(r->from);
    fl_strv_free(r->to);
    pcre2_code_free(r->body);
    free(r->error);
    free(r->text);
    memset(r, 0, sizeof(*r));
}

static int fl_index_of(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

/* A string or a list of strings (1..max) as a NULL-terminated copy. NULL
 * with why set when the value has another shape. */
static char **fl_strv(const json_t *v, size_t max, char *why, size_t whylen)
{
    size_t n = json_is_string(v) ? 1 : json_is_array(v) ? json_array_size(v) : 0;
    if (n == 0 || n > max) {
        snprintf(why, whylen, "expected a string or a list of 1 to %zu strings", max);
        return NULL;
    }
    char **out = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; out && i < n; i++) {
        const json_t *e = json_is_string(v) ? v : json_array_get(v, i);
        if (!json_is_string(e) || !*json_string_value(e)) {
            snprintf(why, whylen, "expected non-empty strings");
            fl_strv_free(out);
            return NULL;
        }
        if (!(out[i] = strdup(json_string_value(e)))) {
            fl_strv_free(out);
            out = NULL;
        }
    }
    if (!out)
        snprintf(why, whylen, "out of memory");
    return out;
}

/* Parses a size: a number of bytes or "64k", "1M". -1 when invalid. */
static long long fl_size(const json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) > 0 ? json_integer_value(v) : -1;
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    char *end;
    long long n = strtoll(s, &end, 10);
    if (end == s || n <= 0)
        return -1;
    long long mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024; end++; break;
    case 'm': case 'M': mul = 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end || n > (1LL << 40) / mul)
        return -1;
    return n * mul;
}

/* Checks one address pattern: a JID, or a glob with * and ?. */
static bool fl_pattern_ok(const char *p)
{
    if (strpbrk(p, "*?["))
        return strlen(p) <= 3 * XMPPD_JID_PART_MAX;
    xmppd_jid *j = xmppd_jid_parse(p);
    xmppd_jid_free(j);
    return j != NULL;
}

static const char *const fl_keys[] = { "name", "kind", "type", "direction", "from", "to", "body",
                                       "larger_than", "action", "error", "text", NULL };

/* Fills r from rule object v. 0, or -1 with *field_r and why set. */
static int fl_rule_parse(fl_rule *r, size_t idx, const json_t *v, const char **field_r, char *why,
                         size_t whylen)
{
    const char *key;
    json_t *val;
    *field_r = "";
    if (!json_is_object(v)) {
        snprintf(why, whylen, "expected an object");
        return -1;
    }
    json_object_foreach((json_t *)v, key, val) {
        if (fl_index_of(fl_keys, key) < 0) {
            *field_r = key;
            snprintf(why, whylen, "unknown field");
            return -1;
        }
    }
    char label[32];
    snprintf(label, sizeof(label), "rule %zu", idx);
    const json_t *f;
    if ((f = json_object_get(v, "name")) && !json_is_string(f)) {
        *field_r = "name";
        snprintf(why, whylen, "expected a string");
        return -1;
    }
    if (!(r->name = strdup(f ? json_string_value(f) : label)))
        goto oom;
    if ((f = json_object_get(v, "kind"))) {
        *field_r = "kind";
        char **k = fl_strv(f, 3, why, whylen);
        if (!k)
            return -1;
        for (size_t i = 0; k[i]; i++) {
            int x = fl_index_of(fl_kind_names, k[i]);
            if (x < 0) {
                snprintf(why, whylen, "expected message, presence or iq, got \"%.64s\"", k[i]);
                fl_strv_free(k);
                return -1;
            }
            r->kinds |= 1u << x;
        }
        fl_strv_free(k);
    }
    if ((f = json_object_get(v, "type"))) {
        *field_r = "type";
        if (!(r->types = fl_strv(f, 16, why, whylen)))
            return -1;
    }
    if ((f = json_object_get(v, "direction"))) {
        *field_r = "direction";
        static const char *const dirs[] = { "any", "in", "out", NULL };
        int d = json_is_string(f) ? fl_index_of(dirs, json_string_value(f)) : -1;
        if (d < 0) {
            snprintf(why, whylen, "expected one of any, in, out");
            return -1;
        }
        r->dir = (enum fl_dir)d;
    }
    static const char *const addr_fields[] = { "from", "to" };
    for (int a = 0; a < 2; a++) {
        if (!(f = json_object_get(v, addr_fields[a])))
            continue;
        *field_r = addr_fields[a];
        char **p = fl_strv(f, FL_PATTERNS_MAX, why, whylen);
        if (!p)
            return -1;
        for (size_t i = 0; p[i]; i++)
            if (!fl_pattern_ok(p[i])) {
                snprintf(why, whylen, "\"%.64s\" is neither a JID nor a pattern", p[i]);
                fl_strv_free(p);
                return -1;
            }
        if (a == 0)
            r->from = p;
        else
            r->to = p;
    }
    if ((f = json_object_get(v, "body"))) {
        *field_r = "body";
        if (!json_is_string(f) || !*json_string_value(f)) {
            snprintf(why, whylen, "expected a regular expression (string)");
            return -1;
        }
        int err;
        PCRE2_SIZE off;
        r->body = pcre2_compile((PCRE2_SPTR)json_string_value(f), PCRE2_ZERO_TERMINATED,
                                PCRE2_UTF | PCRE2_NO_UTF_CHECK, &err, &off, NULL);
        if (!r->body) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(err, msg, sizeof(msg));
            snprintf(why, whylen, "invalid regular expression at offset %zu: %s", (size_t)off,
                     (const char *)msg);
            return -1;
        }
        /* Compiled once at load: the stanza path only matches. */
        pcre2_jit_compile(r->body, PCRE2_JIT_COMPLETE);
    }
    if ((f = json_object_get(v, "larger_than"))) {
        *field_r = "larger_than";
        if ((r->larger_than = fl_size(f)) < 0) {
            snprintf(why, whylen, "expected a size (bytes, \"64k\", \"1M\")");
            return -1;
        }
    }
    *field_r = "action";
    static const char *const actions[] = { "drop", "bounce", "log", NULL };
    f = json_object_get(v, "action");
    int act = json_is_string(f) ? fl_index_of(actions, json_string_value(f)) : -1;
    if (act < 0) {
        snprintf(why, whylen, f ? "expected one of drop, bounce, log" : "required (drop, bounce or log)");
        return -1;
    }
    r->action = (enum fl_action)act;
    f = json_object_get(v, "error");
    if (f) {
        *field_r = "error";
        if (r->action != FL_BOUNCE) {
            snprintf(why, whylen, "only for action \"bounce\"");
            return -1;
        }
        if (!json_is_string(f) || fl_index_of(fl_conditions, json_string_value(f)) < 0) {
            snprintf(why, whylen, "expected a stanza error condition (RFC 6120 section 8.3.3)");
            return -1;
        }
    }
    if (r->action == FL_BOUNCE && !(r->error = strdup(f ? json_string_value(f) : "policy-violation")))
        goto oom;
    if ((f = json_object_get(v, "text"))) {
        *field_r = "text";
        if (r->action != FL_BOUNCE || !json_is_string(f) || strlen(json_string_value(f)) > 1000) {
            snprintf(why, whylen, "expected a string of up to 1000 bytes, with action \"bounce\"");
            return -1;
        }
        if (!(r->text = strdup(json_string_value(f))))
            goto oom;
    }
    return 0;
oom:
    snprintf(why, whylen, "out of memory");
    return -1;
}

/* ---- matching ------------------------------------------------------------------ */

/* One pattern against a JID: a plain JID matches as XEP-0016 items do (a
 * domain matches everything at it); a glob is tried on the full JID, the
 * bare JID and the domain. */
static bool fl_addr_match(const char *pattern, const xmppd_jid *j)
{
    if (!strpbrk(pattern, "*?[")) {
        xmppd_jid *p = xmppd_jid_parse(pattern);
        bool m = p && xm_jid_matches(p, j);
        xmppd_jid_free(p);
        return m;
    }
    return fnmatch(pattern, j->full, FNM_CASEFOLD) == 0 || fnmatch(pattern, j->bare, FNM_CASEFOLD) == 0 ||
           fnmatch(pattern, j->domain, FNM_CASEFOLD) == 0;
}

static bool fl_any_addr(char **patterns, const xmppd_jid *j)
{
    if (!patterns)
        return true;
    if (!j)
        return false;
    for (size_t i = 0; patterns[i]; i++)
        if (fl_addr_match(patterns[i], j))
            return true;
    return false;
}

static bool fl_body_match(fl_mod *mod, const fl_rule *r, const xmppd_stanza *st)
{
    const char *body = xmppd_stanza_child_text(st, "body", NULL);
    if (!body)
        return false;
    int rc = pcre2_match(r->body, (PCRE2_SPTR)body, strlen(body), 0, 0, mod->md, mod->mctx);
    if (rc < PCRE2_ERROR_NOMATCH)
        xmppd_log(mod->m, XMPPD_LOG_WARN, "%s: body pattern gave up (PCRE2 error %d): no match", r->name,
                  rc);
    return rc >= 0;
}

typedef struct fl_stanza {
    const xmppd_stanza *st;
    enum xm_stanza kind;
    const char *type;
    const xmppd_jid *from, *to;
    long long size; /* -1 until needed */
} fl_stanza;

static bool fl_rule_matches(fl_mod *mod, const fl_rule *r, fl_stanza *s)
{
    if (r->kinds && !(r->kinds & (1u << s->kind)))
        return false;
    if (r->types) {
        bool any = false;
        for (size_t i = 0; !any && r->types[i]; i++)
            any = s->type && strcmp(r->types[i], s->type) == 0;
        if (!any)
            return false;
    }
    if (!fl_any_addr(r->from, s->from) || !fl_any_addr(r->to, s->to))
        return false;
    if (r->larger_than) {
        if (s->size < 0) {
            size_t len = 0;
            free(xmppd_stanza_to_string(s->st, XMPPD_NS_CLIENT, &len));
            s->size = (long long)len;
        }
        if (s->size <= r->larger_than)
            return false;
    }
    return !r->body || fl_body_match(mod, r, s->st);
}

/* Runs the rules for direction dir (and "any" rules when with_any). */
static int fl_apply(fl_mod *mod, xmppd_event *ev, enum fl_dir dir, bool with_any)
{
    fl_stanza s = { ev->stanza, xm_stanza_of(ev->stanza), xm_type_of(ev->stanza), ev->from, ev->to, -1 };
    if (s.kind == XM_NONE)
        return XMPPD_PASS;
    xmppd_jid *self = NULL;
    if (!s.to && ev->from) /* addressed to the sender's own account */
        s.to = self = xmppd_jid_to_bare(ev->from);
    int rc = XMPPD_PASS;
    for (size_t i = 0; i < mod->n && rc == XMPPD_PASS; i++) {
        const fl_rule *r = &mod->rules[i];
        if (r->dir != dir && !(r->dir == FL_ANY && with_any))
            continue;
        if (!fl_rule_matches(mod, r, &s))
            continue;
        const char *t = xmppd_stanza_attr(ev->stanza, "type");
        switch (r->action) {
        case FL_LOG:
            xmppd_log(mod->m, XMPPD_LOG_INFO, "%s matched: %s%s%s from %s to %s%s", r->name,
                      fl_kind_names[s.kind], t ? " type=" : "", t ? t : "",
                      s.from ? s.from->full : "-", s.to ? s.to->full : "-",
                      dir == FL_OUT ? " (out)" : " (in)");
            break;
        case FL_DROP:
            xmppd_log(mod->m, XMPPD_LOG_DEBUG, "%s dropped a %s from %s", r->name, fl_kind_names[s.kind],
                      s.from ? s.from->full : "-");
            rc = XMPPD_HANDLED;
            break;
        case FL_BOUNCE:
            xmppd_log(mod->m, XMPPD_LOG_DEBUG, "%s bounced a %s from %s", r->name, fl_kind_names[s.kind],
                      s.from ? s.from->full : "-");
            /* Errors and IQ results are never answered (RFC 6120 §8.3.1). */
            if ((t && strcmp(t, "error") == 0) || (s.kind == XM_IQ && t && strcmp(t, "result") == 0))
                rc = XMPPD_HANDLED;
            else
                rc = xmppd_reply_error(ev, NULL, r->error, r->text);
            break;
        }
    }
    xmppd_jid_free(self);
    return rc;
}

static int fl_on_out(xmppd_event *ev, void *ud)
{
    fl_mod *mod = ud;
    if (!ev->session)
        return XMPPD_PASS;
    return fl_apply(mod, ev, FL_OUT, true);
}

/* Did this stanza pass this host's pre-route (a client of the host)? */
static bool fl_from_own_client(const fl_mod *mod, const xmppd_event *ev)
{
    const xmppd_jid *sj = ev->session ? xmppd_session_jid(ev->session) : NULL;
    return sj && ev->from && xmppd_jid_equal(sj, ev->from) && xmppd_session_host(ev->session) == mod->host;
}

static int fl_on_in(xmppd_event *ev, void *ud)
{
    fl_mod *mod = ud;
    return fl_apply(mod, ev, FL_IN, !fl_from_own_client(mod, ev));
}

/* ---- lifecycle ------------------------------------------------------------------ */

static void fl_unload(xmppd_module *m)
{
    fl_mod *mod = xmppd_module_data(m);
    if (!mod)
        return;
    for (size_t i = 0; i < mod->n; i++)
        fl_rule_clear(&mod->rules[i]);
    free(mod->rules);
    pcre2_match_data_free(mod->md);
    pcre2_match_context_free(mod->mctx);
    free(mod);
    xmppd_module_set_data(m, NULL);
}

static int fl_load_rules(fl_mod *mod, const json_t *rules)
{
    if (!rules)
        return 0;
    if (!json_is_array(rules) || json_array_size(rules) > FL_RULES_MAX) {
        xmppd_log(mod->m, XMPPD_LOG_ERROR, "option rules: expected a list of at most %d rule objects",
                  FL_RULES_MAX);
        return -1;
    }
    size_t n = json_array_size(rules);
    if (!(mod->rules = calloc(n + 1, sizeof(*mod->rules))))
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *field;
        char why[256];
        if (fl_rule_parse(&mod->rules[i], i, json_array_get(rules, i), &field, why, sizeof(why)) < 0) {
            fl_rule_clear(&mod->rules[i]);
            xmppd_log(mod->m, XMPPD_LOG_ERROR, "option rules[%zu]%s%s: %s", i, *field ? "." : "", field,
                      why);
            return -1;
        }
        mod->n++;
    }
    return 0;
}

static int fl_load(xmppd_module *m, const void *conf)
{
    const fl_conf *c = conf;
    fl_mod *mod = calloc(1, sizeof(*mod));
    if (!mod)
        return -1;
    mod->m = m;
    mod->host = xmppd_module_host(m);
    xmppd_module_set_data(m, mod);
    static const char *const inbound[] = { "message/host", "message/bare", "message/full",
                                           "presence/host", "presence/bare", "presence/full",
                                           "iq/host", "iq/bare/filter", "iq/full" };
    int rc = fl_load_rules(mod, c->rules);
    if (rc == 0 && (!(mod->md = pcre2_match_data_create(16, NULL)) ||
                    !(mod->mctx = pcre2_match_context_create(NULL))))
        rc = -1;
    if (rc == 0) {
        /* Bounded work per match: a pathological pattern cannot stall the loop. */
        pcre2_set_match_limit(mod->mctx, FL_MATCH_LIMIT);
        pcre2_set_depth_limit(mod->mctx, FL_DEPTH_LIMIT);
        rc = xmppd_hook(m, "pre-route", fl_on_out, XMPPD_PRIO_FILTER, mod);
    }
    for (size_t i = 0; rc == 0 && i < sizeof(inbound) / sizeof(*inbound); i++)
        rc = xmppd_hook(m, inbound[i], fl_on_in, XMPPD_PRIO_FILTER, mod);
    if (rc < 0) {
        fl_unload(m); /* a refused load gets no unload() call */
        return -1;
    }
    return 0;
}

XMPPD_MODULE(filter,
    .version = "1.0",
    .summary = "Operator rules: drop, bounce or log stanzas by kind, type, address, body and size",
    .options = fl_options,
    .conf_size = sizeof(fl_conf),
    .load = fl_load,
    .unload = fl_unload);
