/* Server configuration: load, validate, defaults, line lookups.
 *
 * Jansson parses the file (duplicate keys rejected); it keeps no positions,
 * so config_line() walks the raw text with a small scanner to find the line
 * of a dotted key path. Validation stops at the first error and reports it
 * as one line "FILE:LINE: KEY: what is wrong". */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <openssl/tls1.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/options.h"
#include "xmppd/crypto.h"
#include "xmppd/jid.h"
#include "xmppd/log.h"

#ifndef XMPPD_MODULE_DIR
#define XMPPD_MODULE_DIR "/usr/local/lib/xmppd"
#endif

/* ---- line lookup: a scanner over the raw JSON text --------------------------
 * The text has already been accepted by Jansson, so the scanner only needs
 * to be right for valid JSON; on anything unexpected it gives up (line 0). */

typedef struct scanner {
    const char *p;
    int line;
    const char *want;   /* dotted path looked for */
    int found;          /* its line, once seen */
    char path[1024];
    size_t plen;
} scanner;

static void skip_ws(scanner *s)
{
    for (;; s->p++) {
        if (*s->p == '\n')
            s->line++;
        else if (*s->p != ' ' && *s->p != '\t' && *s->p != '\r')
            return;
    }
}

/* Appends one UTF-8 encoded code point to out (len bytes, NUL kept). */
static void put_utf8(char *out, size_t len, size_t *n, unsigned cp)
{
    unsigned char b[4];
    size_t k;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        k = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | (cp >> 18));
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 4;
    }
    for (size_t i = 0; i < k && *n + 1 < len; i++)
        out[(*n)++] = (char)b[i];
    out[*n] = '\0';
}

static unsigned hex4(const char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
    }
    return v;
}

/* Reads a string token at s->p (the opening quote), decoding escapes into
 * out (may be NULL). 0, or -1 when the text ends first. */
static int scan_string(scanner *s, char *out, size_t len)
{
    size_t n = 0;
    if (out)
        out[0] = '\0';
    s->p++;
    while (*s->p && *s->p != '"') {
        unsigned cp = (unsigned char)*s->p;
        if (*s->p == '\\') {
            s->p++;
            switch (*s->p) {
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                if (strnlen(s->p, 5) < 5)
                    return -1;
                cp = hex4(s->p + 1);
                s->p += 4;
                if (cp >= 0xD800 && cp < 0xDC00 && s->p[1] == '\\' && s->p[2] == 'u' &&
                    strnlen(s->p, 7) >= 7) {
                    unsigned lo = hex4(s->p + 3);
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    s->p += 6;
                }
                break;
            case '\0': return -1;
            default: cp = (unsigned char)*s->p; break;
            }
            if (out)
                put_utf8(out, len, &n, cp);
        } else if (out && n + 1 < len) {
            out[n++] = *s->p;
            out[n] = '\0';
        }
        s->p++;
    }
    if (*s->p != '"')
        return -1;
    s->p++;
    return 0;
}

static int scan_value(scanner *s);

/* Extends the current path by one component; returns the old length. */
static size_t path_push(scanner *s, const char *comp)
{
    size_t old = s->plen;
    int n = snprintf(s->path + s->plen, sizeof(s->path) - s->plen, "%s%s",
                     s->plen ? "." : "", comp);
    if (n > 0)
        s->plen = s->plen + (size_t)n < sizeof(s->path) ? s->plen + (size_t)n : sizeof(s->path) - 1;
    return old;
}

static void path_pop(scanner *s, size_t old)
{
    s->plen = old;
    s->path[old] = '\0';
}

static void check_found(scanner *s, int line)
{
    if (!s->found && strcmp(s->path, s->want) == 0)
        s->found = line;
}

/* The opening bracket: 1 when the container is empty (close follows). */
static int scan_open(scanner *s, char close)
{
    s->p++;
    skip_ws(s);
    if (*s->p != close)
        return 0;
    s->p++;
    return 1;
}

/* A member's value (its path pushed at old), then ',' or close. 1: another
 * member follows; 0: done (closed, or the wanted path was found); -1: a
 * syntax error. */
static int scan_member(scanner *s, size_t old, char close)
{
    if (s->found || scan_value(s) < 0)
        return s->found ? 0 : -1;
    path_pop(s, old);
    skip_ws(s);
    if (*s->p == ',') {
        s->p++;
        return 1;
    }
    if (*s->p == close) {
        s->p++;
        return 0;
    }
    return -1;
}

static int scan_object(scanner *s)
{
    if (scan_open(s, '}'))
        return 0;
    for (;;) {
        char key[512];
        skip_ws(s);
        if (*s->p != '"')
            return -1;
        int line = s->line;
        if (scan_string(s, key, sizeof(key)) < 0)
            return -1;
        size_t old = path_push(s, key);
        check_found(s, line);
        skip_ws(s);
        if (*s->p++ != ':')
            return -1;
        int rc = scan_member(s, old, '}');
        if (rc <= 0)
            return rc;
    }
}

static int scan_array(scanner *s)
{
    if (scan_open(s, ']'))
        return 0;
    for (size_t i = 0;; i++) {
        char idx[24];
        snprintf(idx, sizeof(idx), "%zu", i);
        skip_ws(s);
        size_t old = path_push(s, idx);
        check_found(s, s->line);
        int rc = scan_member(s, old, ']');
        if (rc <= 0)
            return rc;
    }
}

static int scan_value(scanner *s)
{
    skip_ws(s);
    switch (*s->p) {
    case '{': return scan_object(s);
    case '[': return scan_array(s);
    case '"': return scan_string(s, NULL, 0);
    case '\0': return -1;
    default:
        /* number, true, false, null */
        while (*s->p && !strchr(",]} \t\r\n", *s->p))
            s->p++;
        return 0;
    }
}

int config_line(const xmppd_config *cfg, const char *dotted_path)
{
    if (!cfg || !cfg->text || !dotted_path)
        return 0;
    scanner s = { .p = cfg->text, .line = 1, .want = dotted_path };
    if (!*dotted_path) {
        skip_ws(&s);
        return s.line;
    }
    scan_value(&s);
    return s.found;
}

char *config_abspath(const xmppd_config *cfg, const char *p)
{
    if (!p)
        return NULL;
    if (p[0] == '/' || !cfg || !cfg->dir)
        return strdup(p);
    size_t n = strlen(cfg->dir) + strlen(p) + 2;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s/%s", cfg->dir, p);
    return out;
}

/* ---- validation helpers -------------------------------------------------- */

typedef struct cctx {
    xmppd_config *cfg;
    char *err;
    size_t errlen;
} cctx;

#define FAIL(c, key, ...) (opt_errorf((c)->cfg, (key), (c)->err, (c)->errlen, __VA_ARGS__), -1)

/* "prefix.name" into buf. */
static const char *join(char *buf, size_t len, const char *prefix, const char *name)
{
    snprintf(buf, len, "%s%s%s", prefix, *prefix ? "." : "", name);
    return buf;
}

static int expect_object(cctx *c, const json_t *v, const char *key)
{
    if (json_is_object(v))
        return 0;
    char got[64];
    opt_describe_value(v, got, sizeof(got));
    return FAIL(c, key, "expected an object, got %s", got);
}

/* Unknown keys of obj (at prefix) are errors, with a suggestion. */
static int check_keys(cctx *c, const json_t *obj, const char *prefix,
                      const char *const *allowed, size_t n)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        size_t i = 0;
        while (i < n && strcmp(allowed[i], k) != 0)
            i++;
        if (i < n)
            continue;
        char key[512];
        join(key, sizeof(key), prefix, k);
        const char *hint = opt_suggest(k, allowed, n);
        if (hint)
            return FAIL(c, key, "unknown key (did you mean \"%s\"?)", hint);
        return FAIL(c, key, "unknown key");
    }
    return 0;
}

/* Optional string member: *out keeps its value (default) when absent;
 * null sets NULL when nullable. Replaces *out (freeing the old value). */
static int get_string(cctx *c, const json_t *obj, const char *prefix, const char *name,
                      bool nullable, bool path, char **out)
{
    json_t *v = json_object_get(obj, name);
    if (!v)
        return 0;
    char key[512];
    join(key, sizeof(key), prefix, name);
    if (json_is_null(v) && nullable) {
        free(*out);
        *out = NULL;
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        char got[64];
        opt_describe_value(v, got, sizeof(got));
        return FAIL(c, key, "expected a non-empty %s%s, got %s", path ? "path" : "string",
                    nullable ? " or null" : "", got);
    }
    char *s = path ? config_abspath(c->cfg, json_string_value(v)) : strdup(json_string_value(v));
    if (!s)
        return FAIL(c, key, "out of memory");
    free(*out);
    *out = s;
    return 0;
}

static int get_bool(cctx *c, const json_t *obj, const char *prefix, const char *name, bool *out)
{
    json_t *v = json_object_get(obj, name);
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        char key[512], got[64];
        opt_describe_value(v, got, sizeof(got));
        return FAIL(c, join(key, sizeof(key), prefix, name), "expected true or false, got %s", got);
    }
    *out = json_is_true(v);
    return 0;
}

enum num_kind { NUM_INT, NUM_DURATION, NUM_SIZE };

/* Optional integer/duration/size member within [min, max] (ms for
 * durations, bytes for sizes), reusing the option engine's parsers and
 * messages. */
static int get_number(cctx *c, const json_t *obj, const char *prefix, const char *name,
                      enum num_kind kind, long long min, long long max, long long *out)
{
    json_t *v = json_object_get(obj, name);
    if (!v)
        return 0;
    static const enum xmppd_opt_type types[] = { XMPPD_OPT_INT, XMPPD_OPT_DURATION, XMPPD_OPT_SIZE };
    long long slot = 0;
    xmppd_option o = { .name = name, .type = types[kind], .min = min, .max = max };
    xmppd_module_def def = { .name = "config", .options = (xmppd_option[]){ o, { NULL } },
                             .conf_size = sizeof(long long) };
    json_t *one = json_pack("{sO}", name, v);
    opt_ctx octx = { c->cfg, prefix };
    void *conf = one ? options_parse(&def, one, &octx, c->err, c->errlen) : NULL;
    json_decref(one);
    if (!conf)
        return -1;
    memcpy(&slot, conf, sizeof(slot));
    options_conf_free(conf);
    *out = slot;
    return 0;
}

static int get_uint(cctx *c, const json_t *obj, const char *prefix, const char *name,
                    long long min, long long max, unsigned *out)
{
    long long v = *out;
    if (get_number(c, obj, prefix, name, NUM_INT, min, max, &v) < 0)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* ---- sections -------------------------------------------------------------- */

static int parse_log(cctx *c, const json_t *root)
{
    static const char *const keys[] = { "level", "file" };
    static const char *const levels[] = { "error", "warn", "info", "debug", NULL };
    const json_t *log = json_object_get(root, "log");
    if (!log)
        return 0;
    if (expect_object(c, log, "log") < 0 || check_keys(c, log, "log", keys, 2) < 0)
        return -1;
    json_t *lv = json_object_get(log, "level");
    if (lv) {
        int i = 0;
        while (levels[i] && !(json_is_string(lv) && strcmp(levels[i], json_string_value(lv)) == 0))
            i++;
        if (!levels[i]) {
            char got[64];
            opt_describe_value(lv, got, sizeof(got));
            return FAIL(c, "log.level", "expected one of \"error\", \"warn\", \"info\", \"debug\", got %s",
                        got);
        }
        c->cfg->log_level = i;
    }
    return get_string(c, log, "log", "file", true, true, &c->cfg->log_file);
}

static int parse_module_path(cctx *c, const json_t *root)
{
    const json_t *mp = json_object_get(root, "module_path");
    size_t n = json_is_array(mp) ? json_array_size(mp) : 1;
    if (mp && !json_is_array(mp) && !json_is_string(mp)) {
        char got[64];
        opt_describe_value(mp, got, sizeof(got));
        return FAIL(c, "module_path", "expected a folder or a list of folders, got %s", got);
    }
    char **list = calloc(n + 1, sizeof(*list));
    if (!list)
        return FAIL(c, "module_path", "out of memory");
    c->cfg->module_path = list;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_is_array(mp) ? json_array_get(mp, i) : mp;
        char key[64] = "module_path";
        if (json_is_array(mp))
            snprintf(key, sizeof(key), "module_path.%zu", i);
        if (e && (!json_is_string(e) || json_string_length(e) == 0)) {
            char got[64];
            opt_describe_value(e, got, sizeof(got));
            return FAIL(c, key, "expected a folder name, got %s", got);
        }
        list[i] = config_abspath(c->cfg, e ? json_string_value(e) : XMPPD_MODULE_DIR);
        if (!list[i])
            return FAIL(c, key, "out of memory");
    }
    return 0;
}

static bool valid_module_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_')
            return false;
    return true;
}

/* A "modules" object: names -> options object, true (defaults) or, where
 * allow_false, false (removes an inherited module). Options themselves are
 * checked by the loader, which knows each module's table. */
static int check_modules(cctx *c, const json_t *mods, const char *prefix, bool allow_false)
{
    if (expect_object(c, mods, prefix) < 0)
        return -1;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)mods, k, v) {
        char key[512];
        join(key, sizeof(key), prefix, k);
        if (!valid_module_name(k))
            return FAIL(c, key, "invalid module name (lower-case letters, digits and _ only)");
        if (json_is_object(v) || json_is_true(v) || (json_is_false(v) && allow_false))
            continue;
        char got[64];
        opt_describe_value(v, got, sizeof(got));
        return FAIL(c, key, "expected an object of options or true%s, got %s",
                    allow_false ? " or false" : "", got);
    }
    return 0;
}

static void tls_free(tls_conf *t)
{
    free(t->cert);
    free(t->key);
    free(t->ciphers);
    memset(t, 0, sizeof(*t));
}

static int tls_copy(tls_conf *dst, const tls_conf *src)
{
    *dst = (tls_conf){ .min_version = src->min_version };
    if ((src->cert && !(dst->cert = strdup(src->cert))) ||
        (src->key && !(dst->key = strdup(src->key))) ||
        (src->ciphers && !(dst->ciphers = strdup(src->ciphers)))) {
        tls_free(dst);
        return -1;
    }
    return 0;
}

static int check_readable(cctx *c, const char *prefix, const char *name, const char *path)
{
    char key[512];
    if (path && access(path, R_OK) != 0)
        return FAIL(c, join(key, sizeof(key), prefix, name), "cannot read %s: %s", path,
                    strerror(errno));
    return 0;
}

/* Fills t (already holding inherited values) from a "tls" object. */
static int parse_tls(cctx *c, const json_t *tls, const char *prefix, tls_conf *t)
{
    static const char *const keys[] = { "cert", "key", "ciphers", "min_version" };
    char key[512];
    if (expect_object(c, tls, prefix) < 0 || check_keys(c, tls, prefix, keys, 4) < 0)
        return -1;
    bool cert_given = json_object_get(tls, "cert") != NULL;
    if (get_string(c, tls, prefix, "cert", true, true, &t->cert) < 0 ||
        get_string(c, tls, prefix, "key", true, true, &t->key) < 0 ||
        get_string(c, tls, prefix, "ciphers", true, false, &t->ciphers) < 0)
        return -1;
    json_t *mv = json_object_get(tls, "min_version");
    if (mv) {
        const char *s = json_is_string(mv) ? json_string_value(mv) : "";
        if (strcmp(s, "1.2") == 0) {
            t->min_version = TLS1_2_VERSION;
        } else if (strcmp(s, "1.3") == 0) {
            t->min_version = TLS1_3_VERSION;
        } else {
            char got[64];
            opt_describe_value(mv, got, sizeof(got));
            return FAIL(c, join(key, sizeof(key), prefix, "min_version"),
                        "expected \"1.2\" or \"1.3\", got %s", got);
        }
    }
    if (cert_given && t->cert && !json_object_get(tls, "key"))
        return FAIL(c, join(key, sizeof(key), prefix, "cert"),
                    "a certificate needs its private key: add \"key\" next to it");
    if (t->key && !t->cert)
        return FAIL(c, join(key, sizeof(key), prefix, "key"), "a key was given without \"cert\"");
    if (check_readable(c, prefix, "cert", json_object_get(tls, "cert") ? t->cert : NULL) < 0 ||
        check_readable(c, prefix, "key", json_object_get(tls, "key") ? t->key : NULL) < 0)
        return -1;
    return 0;
}

static int parse_limits(cctx *c, const json_t *root)
{
    static const char *const keys[] = { "max_stanza_size", "max_depth", "negotiation_timeout",
        "connections_per_ip", "auth_attempts", "auth_failure_delay", "max_resources",
        "max_send_buffer" };
    limits_conf *l = &c->cfg->limits;
    const json_t *lim = json_object_get(root, "limits");
    if (!lim)
        return 0;
    if (expect_object(c, lim, "limits") < 0 || check_keys(c, lim, "limits", keys, 8) < 0)
        return -1;
    long long v;
    /* RFC 6120 §13.12: servers must accept stanzas of at least 10000 bytes. */
    v = (long long)l->max_stanza_size;
    if (get_number(c, lim, "limits", "max_stanza_size", NUM_SIZE, 10000, 1LL << 30, &v) < 0)
        return -1;
    l->max_stanza_size = (size_t)v;
    if (get_uint(c, lim, "limits", "max_depth", 1, 1000, &l->max_depth) < 0)
        return -1;
    v = (long long)l->negotiation_timeout;
    if (get_number(c, lim, "limits", "negotiation_timeout", NUM_DURATION, 1000, 3600000, &v) < 0)
        return -1;
    l->negotiation_timeout = (uint64_t)v;
    if (get_uint(c, lim, "limits", "connections_per_ip", 1, 1000000, &l->connections_per_ip) < 0 ||
        get_uint(c, lim, "limits", "auth_attempts", 1, 100, &l->auth_attempts) < 0)
        return -1;
    v = (long long)l->auth_failure_delay;
    if (get_number(c, lim, "limits", "auth_failure_delay", NUM_DURATION, 0, 60000, &v) < 0)
        return -1;
    l->auth_failure_delay = (uint64_t)v;
    if (get_uint(c, lim, "limits", "max_resources", 1, 10000, &l->max_resources) < 0)
        return -1;
    v = (long long)l->max_send_buffer;
    if (get_number(c, lim, "limits", "max_send_buffer", NUM_SIZE, 65536, 1LL << 30, &v) < 0)
        return -1;
    l->max_send_buffer = (size_t)v;
    return 0;
}

static int default_port(enum listener_type type, enum listener_tls tls)
{
    switch (type) {
    case LISTEN_C2S: return tls == LISTEN_TLS_DIRECT ? 5223 : 5222;
    case LISTEN_S2S: return tls == LISTEN_TLS_DIRECT ? 5270 : 5269;
    case LISTEN_COMPONENT: return 5347;
    }
    return 0;
}

/* Finds s in names (NULL-terminated); -1 when absent. */
static int pick(const char *const *names, const json_t *v)
{
    if (!json_is_string(v))
        return -1;
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], json_string_value(v)) == 0)
            return i;
    return -1;
}

static int parse_listener(cctx *c, const json_t *lo, const char *prefix, listener_conf *l)
{
    static const char *const keys[] = { "type", "address", "port", "tls" };
    static const char *const types[] = { "c2s", "s2s", "component", NULL };
    static const char *const tlss[] = { "starttls", "direct", NULL };
    char key[512], got[64];
    if (expect_object(c, lo, prefix) < 0 || check_keys(c, lo, prefix, keys, 4) < 0)
        return -1;
    json_t *tv = json_object_get(lo, "type");
    int type = pick(types, tv);
    if (!tv)
        return FAIL(c, prefix, "listener needs a \"type\": \"c2s\", \"s2s\" or \"component\"");
    if (type < 0) {
        opt_describe_value(tv, got, sizeof(got));
        return FAIL(c, join(key, sizeof(key), prefix, "type"),
                    "expected \"c2s\", \"s2s\" or \"component\", got %s", got);
    }
    json_t *sv = json_object_get(lo, "tls");
    int tls = sv ? pick(tlss, sv) : LISTEN_TLS_STARTTLS;
    if (tls < 0) {
        opt_describe_value(sv, got, sizeof(got));
        return FAIL(c, join(key, sizeof(key), prefix, "tls"), "expected \"starttls\" or \"direct\", got %s",
                    got);
    }
    /* XEP-0114 streams have no TLS: never pretend they are encrypted. */
    if (type == LISTEN_COMPONENT && sv)
        return FAIL(c, join(key, sizeof(key), prefix, "tls"),
                    "component listeners (XEP-0114) have no TLS; remove \"tls\" and bind them "
                    "to a loopback or private address");
    l->type = (enum listener_type)type;
    l->tls = (enum listener_tls)tls;
    l->address = strdup("::");
    if (!l->address || get_string(c, lo, prefix, "address", false, false, &l->address) < 0)
        return l->address ? -1 : FAIL(c, prefix, "out of memory");
    unsigned port = (unsigned)default_port(l->type, l->tls);
    if (get_uint(c, lo, prefix, "port", 1, 65535, &port) < 0)
        return -1;
    l->port = (int)port;
    return 0;
}

static int parse_listeners(cctx *c, const json_t *root)
{
    xmppd_config *cfg = c->cfg;
    const json_t *ls = json_object_get(root, "listeners");
    if (ls && !json_is_array(ls)) {
        char got[64];
        opt_describe_value(ls, got, sizeof(got));
        return FAIL(c, "listeners", "expected a list of listener objects, got %s", got);
    }
    /* Absent: one c2s listener with STARTTLS on every address, port 5222. */
    size_t n = ls ? json_array_size(ls) : 1;
    cfg->listeners = calloc(n ? n : 1, sizeof(*cfg->listeners));
    if (!cfg->listeners)
        return FAIL(c, "listeners", "out of memory");
    if (!ls) {
        cfg->listeners[0] = (listener_conf){ LISTEN_C2S, LISTEN_TLS_STARTTLS, strdup("::"), 5222 };
        cfg->n_listeners = 1;
        return cfg->listeners[0].address ? 0 : FAIL(c, "listeners", "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof(key), "listeners.%zu", i);
        listener_conf *l = &cfg->listeners[i];
        cfg->n_listeners = i + 1;
        if (parse_listener(c, json_array_get(ls, i), key, l) < 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (cfg->listeners[j].port == l->port && strcmp(cfg->listeners[j].address, l->address) == 0)
                return FAIL(c, key, "[%s]:%d is already used by listeners.%zu", l->address, l->port, j);
    }
    return 0;
}

static int parse_host(cctx *c, const char *domain, const json_t *hv, host_conf *h)
{
    static const char *const keys[] = { "tls", "modules" };
    char prefix[512], key[600];
    join(prefix, sizeof(prefix), "hosts", domain);
    if (expect_object(c, hv, prefix) < 0 || check_keys(c, hv, prefix, keys, 2) < 0)
        return -1;
    h->name = xmppd_nameprep(domain);
    if (!h->name || !*h->name)
        return FAIL(c, prefix, "not a valid domain name");
    for (const host_conf *o = c->cfg->hosts; o < h; o++)
        if (strcmp(o->name, h->name) == 0)
            return FAIL(c, prefix, "the same host as an earlier entry (both are %s after normalisation)",
                        h->name);
    if (tls_copy(&h->tls, &c->cfg->tls) < 0)
        return FAIL(c, prefix, "out of memory");
    json_t *tls = json_object_get(hv, "tls");
    if (tls && parse_tls(c, tls, join(key, sizeof(key), prefix, "tls"), &h->tls) < 0)
        return -1;
    h->modules = json_object_get(hv, "modules");
    if (h->modules && check_modules(c, h->modules, join(key, sizeof(key), prefix, "modules"), true) < 0)
        return -1;
    return 0;
}

static int parse_hosts(cctx *c, const json_t *root)
{
    xmppd_config *cfg = c->cfg;
    const json_t *hosts = json_object_get(root, "hosts");
    if (!hosts)
        return FAIL(c, "hosts", "at least one host is required, e.g. \"hosts\": { \"example.org\": {} }");
    if (expect_object(c, hosts, "hosts") < 0)
        return -1;
    size_t n = json_object_size(hosts);
    if (n == 0)
        return FAIL(c, "hosts", "at least one host is required, e.g. \"hosts\": { \"example.org\": {} }");
    cfg->hosts = calloc(n, sizeof(*cfg->hosts));
    if (!cfg->hosts)
        return FAIL(c, "hosts", "out of memory");
    const char *domain;
    json_t *hv;
    json_object_foreach((json_t *)hosts, domain, hv) {
        host_conf *h = &cfg->hosts[cfg->n_hosts++];
        if (parse_host(c, domain, hv, h) < 0)
            return -1;
    }
    return 0;
}

/* "components": domain -> { "secret": "...", "subdomains": false }. The
 * secret never appears in a message, not even a wrong value of it. */
static int parse_components(cctx *c, const json_t *root)
{
    static const char *const keys[] = { "secret", "subdomains" };
    xmppd_config *cfg = c->cfg;
    const json_t *comps = json_object_get(root, "components");
    if (!comps)
        return 0;
    if (expect_object(c, comps, "components") < 0)
        return -1;
    size_t n = json_object_size(comps);
    cfg->components = calloc(n ? n : 1, sizeof(*cfg->components));
    if (!cfg->components)
        return FAIL(c, "components", "out of memory");
    const char *domain;
    json_t *cv;
    json_object_foreach((json_t *)comps, domain, cv) {
        char prefix[512], key[600];
        join(prefix, sizeof(prefix), "components", domain);
        component_conf *cc = &cfg->components[cfg->n_components++];
        if (expect_object(c, cv, prefix) < 0 || check_keys(c, cv, prefix, keys, 2) < 0)
            return -1;
        xmppd_jid *j = xmppd_jid_parse(domain);
        /* The domain is written into stream headers: no XML specials. */
        bool plain = j && !j->node && !j->resource && !strpbrk(j->domain, "<>&'\"");
        cc->domain = plain ? strdup(j->domain) : NULL;
        xmppd_jid_free(j);
        if (!plain)
            return FAIL(c, prefix, "not a valid domain name");
        if (!cc->domain)
            return FAIL(c, prefix, "out of memory");
        for (size_t i = 0; i < cfg->n_hosts; i++)
            if (strcmp(cfg->hosts[i].name, cc->domain) == 0)
                return FAIL(c, prefix, "%s is also under \"hosts\": a domain is either a host or "
                            "a component", cc->domain);
        for (const component_conf *o = cfg->components; o < cc; o++)
            if (strcmp(o->domain, cc->domain) == 0)
                return FAIL(c, prefix, "the same component as an earlier entry (both are %s after "
                            "normalisation)", cc->domain);
        json_t *sv = json_object_get(cv, "secret");
        if (!sv)
            return FAIL(c, prefix, "a component needs its shared \"secret\"");
        if (!json_is_string(sv) || json_string_length(sv) == 0 ||
            strlen(json_string_value(sv)) != json_string_length(sv))
            return FAIL(c, join(key, sizeof(key), prefix, "secret"),
                        "expected a non-empty string without NUL characters");
        if (!(cc->secret = strdup(json_string_value(sv))))
            return FAIL(c, prefix, "out of memory");
        if (get_bool(c, cv, prefix, "subdomains", &cc->subdomains) < 0)
            return -1;
    }
    return 0;
}

/* "host:port", "[v6]:port" or "host" (port def) into host and port. */
static int split_hostport(const char *v, int def, char **host_r, int *port_r)
{
    const char *colon = NULL, *end;
    if (v[0] == '[') {
        end = strchr(v, ']');
        if (!end || end == v + 1 || (end[1] && end[1] != ':'))
            return -1;
        colon = end[1] ? end + 1 : NULL;
        v++;
    } else {
        colon = strrchr(v, ':');
        if (colon && strchr(v, ':') != colon)
            return -1; /* IPv6 literals need brackets */
        end = colon ? colon : v + strlen(v);
    }
    if (end == v)
        return -1;
    long port = def;
    if (colon) {
        char *e;
        errno = 0;
        port = strtol(colon + 1, &e, 10);
        if (!colon[1] || *e || errno || port < 1 || port > 65535)
            return -1;
    }
    *host_r = strndup(v, (size_t)(end - v));
    *port_r = (int)port;
    return *host_r ? 0 : -1;
}

/* "s2s": federation settings (docs/configuration.md). */
static int parse_s2s(cctx *c, const json_t *root)
{
    static const char *const keys[] = { "require_encryption", "authentication", "ca_file",
        "idle_timeout", "connect_timeout", "max_queue", "dialback_secret", "routes",
        "dns_servers" };
    static const char *const auths[] = { "both", "dialback", "external", NULL };
    s2s_conf *s = &c->cfg->s2s;
    const json_t *o = json_object_get(root, "s2s");
    char key[600], got[64];
    if (!o)
        return 0;
    if (expect_object(c, o, "s2s") < 0 ||
        check_keys(c, o, "s2s", keys, sizeof(keys) / sizeof(keys[0])) < 0 ||
        get_bool(c, o, "s2s", "require_encryption", &s->require_encryption) < 0)
        return -1;
    const json_t *av = json_object_get(o, "authentication");
    if (av) {
        int a = pick(auths, av);
        if (a < 0) {
            opt_describe_value(av, got, sizeof(got));
            return FAIL(c, "s2s.authentication",
                        "expected \"both\", \"dialback\" or \"external\", got %s", got);
        }
        s->authentication = (enum s2s_auth)a;
    }
    if (get_string(c, o, "s2s", "ca_file", true, true, &s->ca_file) < 0 ||
        check_readable(c, "s2s", "ca_file", s->ca_file) < 0)
        return -1;
    long long v = (long long)s->idle_timeout;
    if (get_number(c, o, "s2s", "idle_timeout", NUM_DURATION, 1000, 86400000LL, &v) < 0)
        return -1;
    s->idle_timeout = (uint64_t)v;
    v = (long long)s->connect_timeout;
    if (get_number(c, o, "s2s", "connect_timeout", NUM_DURATION, 100, 600000, &v) < 0)
        return -1;
    s->connect_timeout = (uint64_t)v;
    if (get_uint(c, o, "s2s", "max_queue", 1, 1000000, &s->max_queue) < 0)
        return -1;
    const json_t *sv = json_object_get(o, "dialback_secret");
    if (sv && (!json_is_string(sv) || json_string_length(sv) < 16 ||
               strlen(json_string_value(sv)) != json_string_length(sv)))
        return FAIL(c, "s2s.dialback_secret",
                    "expected a string of at least 16 characters without NUL characters");
    if (sv && !(s->dialback_secret = strdup(json_string_value(sv))))
        return FAIL(c, "s2s.dialback_secret", "out of memory");

    const json_t *routes = json_object_get(o, "routes");
    if (routes) {
        if (expect_object(c, routes, "s2s.routes") < 0)
            return -1;
        size_t n = json_object_size(routes);
        s->routes = calloc(n ? n : 1, sizeof(*s->routes));
        if (!s->routes)
            return FAIL(c, "s2s.routes", "out of memory");
        const char *domain;
        json_t *rv;
        json_object_foreach((json_t *)routes, domain, rv) {
            join(key, sizeof(key), "s2s.routes", domain);
            s2s_route_conf *r = &s->routes[s->n_routes++];
            if (!(r->domain = xmppd_nameprep(domain)) || !*r->domain || strchr(r->domain, '@') ||
                strchr(r->domain, '/'))
                return FAIL(c, key, "not a valid domain name");
            for (const s2s_route_conf *e = s->routes; e < r; e++)
                if (strcmp(e->domain, r->domain) == 0)
                    return FAIL(c, key, "the same domain as an earlier route (both are %s after "
                                "normalisation)", r->domain);
            if (!json_is_string(rv) ||
                split_hostport(json_string_value(rv), 5269, &r->host, &r->port) < 0) {
                opt_describe_value(rv, got, sizeof(got));
                return FAIL(c, key, "expected \"host:port\" (or \"[ipv6]:port\"), got %s", got);
            }
        }
    }

    const json_t *dns = json_object_get(o, "dns_servers");
    if (dns) {
        if (!json_is_array(dns) || json_array_size(dns) == 0) {
            opt_describe_value(dns, got, sizeof(got));
            return FAIL(c, "s2s.dns_servers", "expected a non-empty list of \"ip\" or "
                        "\"ip:port\" strings, got %s", got);
        }
        size_t cap = 1, len = 0;
        for (size_t i = 0; i < json_array_size(dns); i++) {
            const json_t *e = json_array_get(dns, i);
            cap += json_is_string(e) ? json_string_length(e) + 10 : 0; /* [],:port */
        }
        char *csv = calloc(1, cap);
        if (!csv)
            return FAIL(c, "s2s.dns_servers", "out of memory");
        s->dns_servers = csv;
        for (size_t i = 0; i < json_array_size(dns); i++) {
            const json_t *e = json_array_get(dns, i);
            snprintf(key, sizeof(key), "s2s.dns_servers.%zu", i);
            char *host = NULL;
            int port = 53;
            bool ok = json_is_string(e);
            if (ok) {
                const char *t = json_string_value(e);
                /* a bare IPv6 literal has several colons and no port */
                if (t[0] != '[' && strchr(t, ':') != strrchr(t, ':'))
                    ok = (host = strdup(t)) != NULL;
                else
                    ok = split_hostport(t, 53, &host, &port) == 0;
            }
            unsigned char addr[16];
            bool v6 = ok && strchr(host, ':');
            ok = ok && inet_pton(v6 ? AF_INET6 : AF_INET, host, addr) == 1;
            if (ok)
                len += (size_t)snprintf(csv + len, cap - len, "%s%s%s%s:%d", len ? "," : "",
                                        v6 ? "[" : "", host, v6 ? "]" : "", port);
            free(host);
            if (!ok) {
                opt_describe_value(e, got, sizeof(got));
                return FAIL(c, key, "expected an IP address with an optional port "
                            "(\"127.0.0.1:5353\", \"[::1]:53\"), got %s", got);
            }
        }
    }
    return 0;
}

/* "control_socket": path of xmppctl's Unix socket, or false for none;
 * default DATA_DIR/xmppd.sock. Needs data_dir parsed. */
static int parse_control_socket(cctx *c, const json_t *root)
{
    xmppd_config *cfg = c->cfg;
    const json_t *v = json_object_get(root, "control_socket");
    const size_t max = 107; /* sizeof(sockaddr_un.sun_path) - 1 on Linux */
    if (json_is_false(v))
        return 0;
    if (!v) {
        size_t n = strlen(cfg->data_dir) + sizeof("/xmppd.sock");
        if (!(cfg->control_socket = malloc(n)))
            return FAIL(c, "", "out of memory");
        snprintf(cfg->control_socket, n, "%s/xmppd.sock", cfg->data_dir);
        if (strlen(cfg->control_socket) > max)
            return FAIL(c, "data_dir", "the control socket's default path %s is over the %zu "
                        "bytes a Unix socket path may have: set \"control_socket\" to a shorter "
                        "path (or false)", cfg->control_socket, max);
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        char got[64];
        opt_describe_value(v, got, sizeof(got));
        return FAIL(c, "control_socket", "expected a non-empty path or false, got %s", got);
    }
    if (get_string(c, root, "", "control_socket", false, true, &cfg->control_socket) < 0)
        return -1;
    if (strlen(cfg->control_socket) > max)
        return FAIL(c, "control_socket", "%s is over the %zu bytes a Unix socket path may have",
                    cfg->control_socket, max);
    return 0;
}

static int parse_root(cctx *c)
{
    static const char *const keys[] = { "log", "data_dir", "module_path", "storage", "tls", "c2s",
        "limits", "listeners", "modules", "hosts", "components", "s2s", "control_socket" };
    xmppd_config *cfg = c->cfg;
    const json_t *root = cfg->root;
    if (!json_is_object(root))
        return FAIL(c, "", "the configuration must be a JSON object");
    if (check_keys(c, root, "", keys, sizeof(keys) / sizeof(keys[0])) < 0 || parse_log(c, root) < 0)
        return -1;
    if (!(cfg->data_dir = strdup(cfg->dir)) || !(cfg->storage = strdup("sqlite")))
        return FAIL(c, "", "out of memory");
    if (get_string(c, root, "", "data_dir", false, true, &cfg->data_dir) < 0 ||
        parse_module_path(c, root) < 0 ||
        get_string(c, root, "", "storage", false, false, &cfg->storage) < 0)
        return -1;
    if (!valid_module_name(cfg->storage))
        return FAIL(c, "storage", "expected a storage driver name such as \"sqlite\", got \"%s\"",
                    cfg->storage);
    if (parse_control_socket(c, root) < 0)
        return -1;
    const json_t *tls = json_object_get(root, "tls");
    if (tls && parse_tls(c, tls, "tls", &cfg->tls) < 0)
        return -1;
    const json_t *c2s = json_object_get(root, "c2s");
    static const char *const c2s_keys[] = { "require_encryption" };
    if (c2s && (expect_object(c, c2s, "c2s") < 0 || check_keys(c, c2s, "c2s", c2s_keys, 1) < 0 ||
                get_bool(c, c2s, "c2s", "require_encryption", &cfg->c2s_require_encryption) < 0))
        return -1;
    if (parse_limits(c, root) < 0 || parse_listeners(c, root) < 0)
        return -1;
    cfg->global_modules = json_object_get(root, "modules");
    if (cfg->global_modules && check_modules(c, cfg->global_modules, "modules", false) < 0)
        return -1;
    if (parse_hosts(c, root) < 0 || parse_s2s(c, root) < 0)
        return -1;
    return parse_components(c, root);
}

/* ---- load / free ------------------------------------------------------------- */

static void set_defaults(xmppd_config *cfg)
{
    cfg->log_level = XMPPD_LOG_INFO;
    cfg->c2s_require_encryption = true;
    cfg->s2s = (s2s_conf){ .require_encryption = true, .idle_timeout = 300000,
                           .connect_timeout = 15000, .max_queue = 1000 };
    cfg->tls.min_version = TLS1_2_VERSION;
    cfg->limits = (limits_conf){
        .max_stanza_size = 256 * 1024,
        .max_depth = 64,
        .negotiation_timeout = 30000,
        .connections_per_ip = 20,
        .auth_attempts = 5,
        .auth_failure_delay = 1000,
        .max_resources = 10,
        .max_send_buffer = 1024 * 1024,
    };
}

/* Reads the whole file into a NUL-terminated buffer. */
static char *read_file(const char *path, size_t *len_r, int *errno_r)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *errno_r = errno;
        return NULL;
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 == cap) {
            char *n = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
            if (!n) {
                free(buf);
                buf = NULL;
                *errno_r = cap < (64u << 20) ? ENOMEM : EFBIG;
                break;
            }
            buf = n;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - 1 - len, f);
        len += r;
        if (r == 0) {
            if (ferror(f)) {
                *errno_r = errno;
                free(buf);
                buf = NULL;
            }
            break;
        }
    }
    if (!buf && !*errno_r)
        *errno_r = ENOMEM;
    fclose(f);
    if (buf) {
        buf[len] = '\0';
        *len_r = len;
    }
    return buf;
}

/* The absolute folder holding path. */
static char *folder_of(const char *path)
{
    char *real = realpath(path, NULL);
    if (!real)
        return NULL;
    char *slash = strrchr(real, '/');
    if (slash == real)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    return real;
}

xmppd_config *config_load(const char *path, char *err, size_t errlen)
{
    xmppd_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg || !(cfg->path = strdup(path))) {
        free(cfg);
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    set_defaults(cfg);
    size_t len = 0;
    int e = 0;
    cfg->text = read_file(path, &len, &e);
    if (!cfg->text) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(e));
        config_free(cfg);
        return NULL;
    }
    cfg->dir = folder_of(path);
    if (!cfg->dir) {
        snprintf(err, errlen, "%s: cannot resolve its folder: %s", path, strerror(errno));
        config_free(cfg);
        return NULL;
    }
    json_error_t je;
    cfg->root = json_loadb(cfg->text, len, JSON_REJECT_DUPLICATES, &je);
    if (!cfg->root) {
        if (je.line > 0)
            snprintf(err, errlen, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column, je.text);
        else
            snprintf(err, errlen, "%s: invalid JSON: %s", path, je.text);
        config_free(cfg);
        return NULL;
    }
    cctx c = { cfg, err, errlen };
    if (parse_root(&c) < 0) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

void config_free(xmppd_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_hosts; i++) {
        free(cfg->hosts[i].name);
        tls_free(&cfg->hosts[i].tls);
    }
    free(cfg->hosts);
    for (size_t i = 0; i < cfg->n_components; i++) {
        free(cfg->components[i].domain);
        if (cfg->components[i].secret) {
            xmppd_wipe(cfg->components[i].secret, strlen(cfg->components[i].secret));
            free(cfg->components[i].secret);
        }
    }
    free(cfg->components);
    for (size_t i = 0; i < cfg->s2s.n_routes; i++) {
        free(cfg->s2s.routes[i].domain);
        free(cfg->s2s.routes[i].host);
    }
    free(cfg->s2s.routes);
    free(cfg->s2s.ca_file);
    free(cfg->s2s.dns_servers);
    if (cfg->s2s.dialback_secret) {
        xmppd_wipe(cfg->s2s.dialback_secret, strlen(cfg->s2s.dialback_secret));
        free(cfg->s2s.dialback_secret);
    }
    for (size_t i = 0; i < cfg->n_listeners; i++)
        free(cfg->listeners[i].address);
    free(cfg->listeners);
    for (char **p = cfg->module_path; p && *p; p++)
        free(*p);
    free(cfg->module_path);
    tls_free(&cfg->tls);
    free(cfg->log_file);
    free(cfg->data_dir);
    free(cfg->storage);
    free(cfg->control_socket);
    json_decref(cfg->root);
    free(cfg->text);
    free(cfg->dir);
    free(cfg->path);
    free(cfg);
}
