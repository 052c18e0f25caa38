/* Typed module options: JSON values -> a module's conf struct. */
#include "core/options.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- values: durations, sizes, descriptions ------------------------------ */

/* Parses "<number>[.<fraction>]" at s; returns the rest of the string. */
static const char *scan_number(const char *s, double *out)
{
    const char *p = s;
    double v = 0, scale = 1;
    bool digits = false;
    while (isdigit((unsigned char)*p)) {
        v = v * 10 + (*p++ - '0');
        digits = true;
    }
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) {
            scale /= 10;
            v += (*p++ - '0') * scale;
            digits = true;
        }
    }
    if (!digits)
        return NULL;
    *out = v;
    return p;
}

static int to_ll(double v, long long *out)
{
    if (!(v >= 0) || v > (double)LLONG_MAX / 2)
        return -1;
    *out = (long long)(v + 0.5); /* v >= 0 */
    return 0;
}

int opt_parse_duration(const json_t *v, long long *ms_r, const char **why_r)
{
    static const struct { const char *unit; double ms; } units[] = {
        { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
        { "", 1000 },
    };
    *why_r = "expected a duration such as \"250ms\", \"30s\", \"5m\", \"1h\" or a number of seconds";
    if (json_is_number(v)) {
        if (to_ll(json_number_value(v) * 1000, ms_r) < 0)
            return -1;
        return 0;
    }
    if (!json_is_string(v))
        return -1;
    double n;
    const char *rest = scan_number(json_string_value(v), &n);
    if (!rest)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(rest, units[i].unit) == 0)
            return to_ll(n * units[i].ms, ms_r);
    return -1;
}

int opt_parse_size(const json_t *v, long long *bytes_r, const char **why_r)
{
    *why_r = "expected a size such as 65536, \"64k\", \"10M\" or \"1G\"";
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0)
            return -1;
        *bytes_r = json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return -1;
    double n;
    const char *rest = scan_number(json_string_value(v), &n);
    if (!rest)
        return -1;
    double mult = 1;
    switch (tolower((unsigned char)*rest)) {
    case 'k': mult = 1024.0; rest++; break;
    case 'm': mult = 1024.0 * 1024; rest++; break;
    case 'g': mult = 1024.0 * 1024 * 1024; rest++; break;
    default: break;
    }
    if (tolower((unsigned char)*rest) == 'b')
        rest++;
    if (*rest)
        return -1;
    return to_ll(n * mult, bytes_r);
}

void opt_describe_value(const json_t *v, char *buf, size_t len)
{
    if (!v) {
        snprintf(buf, len, "nothing");
        return;
    }
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!s) {
        snprintf(buf, len, "a value");
        return;
    }
    if (strlen(s) > 40)
        snprintf(buf, len, "%.37s...", s);
    else
        snprintf(buf, len, "%s", s);
    free(s);
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *opt_suggest(const char *word, const char *const *cands, size_t n)
{
    size_t limit = strlen(word) <= 4 ? 1 : 2, best = SIZE_MAX;
    const char *pick = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(word, cands[i]);
        if (d <= limit && d < best) {
            best = d;
            pick = cands[i];
        }
    }
    return pick;
}

/* ---- errors ---------------------------------------------------------------- */

/* Line of key, or of its nearest enclosing key that the file shows (a
 * missing option points at its object). */
static int line_near(const xmppd_config *cfg, const char *key)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", key);
    for (;;) {
        int line = config_line(cfg, buf);
        char *dot = strrchr(buf, '.');
        if (line > 0 || !dot)
            return line;
        *dot = '\0';
    }
}

/* Copies in to out (outlen > 0) with control characters written as \xNN:
 * keys and values come from the file, and an error is one line for a
 * person's terminal (a key "a\nb" must not start a second line, nor an
 * escape sequence reach the terminal). */
static void visible(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 1 < outlen; p++) {
        if (*p >= 0x20 && *p != 0x7f) {
            out[o++] = (char)*p;
        } else if (o + 5 < outlen) {
            snprintf(out + o, 5, "\\x%02x", *p);
            o += 4;
        } else {
            break;
        }
    }
    out[o] = '\0';
}

static void format_error(const xmppd_config *cfg, const char *key, char *out, size_t outlen,
                         const char *msg)
{
    char raw[2048];
    int line = cfg && *key ? line_near(cfg, key) : 0;
    if (!cfg)
        snprintf(raw, sizeof(raw), "%s: %s", key, msg);
    else if (!*key)
        snprintf(raw, sizeof(raw), "%s: %s", cfg->path, msg);
    else if (line > 0)
        snprintf(raw, sizeof(raw), "%s:%d: %s: %s", cfg->path, line, key, msg);
    else
        snprintf(raw, sizeof(raw), "%s: %s: %s", cfg->path, key, msg);
    visible(raw, out, outlen);
}

void opt_errorf(const xmppd_config *cfg, const char *key, char *err, size_t errlen,
                const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    format_error(cfg, key, err, errlen, msg);
}

void opt_error(opt_errors *e, const xmppd_config *cfg, const char *key, const char *fmt, ...)
{
    char msg[512], line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    format_error(cfg, key, line, sizeof(line), msg);
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 8;
        char **v = realloc(e->lines, cap * sizeof(*v));
        if (!v)
            return; /* the count stays: the caller still sees a failure */
        e->lines = v;
        e->cap = cap;
    }
    e->lines[e->n] = strdup(line);
    if (e->lines[e->n])
        e->n++;
}

void opt_errors_free(opt_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->lines[i]);
    free(e->lines);
    memset(e, 0, sizeof(*e));
}

void opt_errors_join(const opt_errors *e, char *err, size_t errlen)
{
    size_t used = 0;
    if (errlen)
        err[0] = '\0';
    for (size_t i = 0; i < e->n && used + 1 < errlen; i++) {
        int n = snprintf(err + used, errlen - used, "%s%s", i ? "\n" : "", e->lines[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* ---- conf blocks ------------------------------------------------------------- */

/* The kernel's allocation around a conf struct. Callers see only `conf`;
 * the header owns what the struct's pointers point to. */
typedef struct conf_block {
    json_t *values;  /* array of the JSON values parsed (owned): strings point here */
    void **allocs;   /* lists, absolute paths, item arrays, kept values (owned) */
    size_t n_allocs, cap_allocs;
    max_align_t conf[];
} conf_block;

static conf_block *block_of(void *conf)
{
    return (conf_block *)(void *)((char *)conf - offsetof(conf_block, conf));
}

static int block_keep(conf_block *b, void *p)
{
    if (!p)
        return -1;
    if (b->n_allocs == b->cap_allocs) {
        size_t ncap = b->cap_allocs ? b->cap_allocs * 2 : 8;
        void **n = realloc(b->allocs, ncap * sizeof(*n));
        if (!n) {
            free(p);
            return -1;
        }
        b->allocs = n;
        b->cap_allocs = ncap;
    }
    b->allocs[b->n_allocs++] = p;
    return 0;
}

int options_keep(void *conf, void *p)
{
    return block_keep(block_of(conf), p);
}

void options_conf_free(void *conf)
{
    if (!conf)
        return;
    conf_block *b = block_of(conf);
    for (size_t i = 0; i < b->n_allocs; i++)
        free(b->allocs[i]);
    free(b->allocs);
    json_decref(b->values);
    free(b);
}

/* ---- types ------------------------------------------------------------------------ */

static const char *type_name(enum xmppd_opt_type t)
{
    switch (t) {
    case XMPPD_OPT_BOOL: return "bool";
    case XMPPD_OPT_INT: return "int";
    case XMPPD_OPT_DURATION: return "duration";
    case XMPPD_OPT_SIZE: return "size";
    case XMPPD_OPT_STRING: return "string";
    case XMPPD_OPT_ENUM: return "enum";
    case XMPPD_OPT_LIST: return "list";
    case XMPPD_OPT_PATH: return "path";
    case XMPPD_OPT_JSON: return "json";
    case XMPPD_OPT_SECTION: return "object";
    case XMPPD_OPT_ARRAY: return "list of objects";
    case XMPPD_OPT_MAP: return "object of objects";
    }
    return "?";
}

static size_t type_size(const xmppd_option *o)
{
    switch (o->type) {
    case XMPPD_OPT_BOOL: return sizeof(bool);
    case XMPPD_OPT_INT:
    case XMPPD_OPT_DURATION:
    case XMPPD_OPT_SIZE: return sizeof(long long);
    case XMPPD_OPT_ENUM: return (o->flags & XMPPD_OPT_INDEX) ? sizeof(int) : sizeof(char *);
    case XMPPD_OPT_JSON: return sizeof(json_t *);
    case XMPPD_OPT_SECTION: return 0; /* checked against its fields */
    case XMPPD_OPT_ARRAY:
    case XMPPD_OPT_MAP: return sizeof(xmppd_opt_array);
    default: return sizeof(char *);
    }
}

static bool is_nested(const xmppd_option *o)
{
    return o->type == XMPPD_OPT_SECTION || o->type == XMPPD_OPT_ARRAY || o->type == XMPPD_OPT_MAP;
}

static bool is_number(const xmppd_option *o)
{
    return o->type == XMPPD_OPT_INT || o->type == XMPPD_OPT_DURATION || o->type == XMPPD_OPT_SIZE;
}

static bool is_text(const xmppd_option *o)
{
    return o->type == XMPPD_OPT_STRING || o->type == XMPPD_OPT_PATH;
}

static void format_duration(long long ms, char *buf, size_t len)
{
    if (ms != 0 && ms % 86400000 == 0)
        snprintf(buf, len, "%lldd", ms / 86400000);
    else if (ms != 0 && ms % 3600000 == 0)
        snprintf(buf, len, "%lldh", ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(buf, len, "%lldm", ms / 60000);
    else if (ms % 1000 == 0)
        snprintf(buf, len, "%llds", ms / 1000);
    else
        snprintf(buf, len, "%lldms", ms);
}

static void format_size(long long n, char *buf, size_t len)
{
    if (n != 0 && n % (1024LL * 1024 * 1024) == 0)
        snprintf(buf, len, "%lldG", n / (1024LL * 1024 * 1024));
    else if (n != 0 && n % (1024 * 1024) == 0)
        snprintf(buf, len, "%lldM", n / (1024 * 1024));
    else if (n != 0 && n % 1024 == 0)
        snprintf(buf, len, "%lldk", n / 1024);
    else
        snprintf(buf, len, "%lld", n);
}

static void format_bound(const xmppd_option *o, long long v, char *buf, size_t len)
{
    if (o->type == XMPPD_OPT_DURATION)
        format_duration(v, buf, len);
    else if (o->type == XMPPD_OPT_SIZE)
        format_size(v, buf, len);
    else
        snprintf(buf, len, "%lld", v);
}

static bool bounded(const xmppd_option *o)
{
    return is_number(o) && (o->min != 0 || o->max != 0);
}

/* "from 1 to 1000" for messages and tables. */
static void format_range(const xmppd_option *o, char *buf, size_t len)
{
    char lo[32], hi[32];
    format_bound(o, o->min, lo, sizeof(lo));
    format_bound(o, o->max, hi, sizeof(hi));
    snprintf(buf, len, "from %s to %s", lo, hi);
}

static void format_choices(const xmppd_option *o, const char *sep, bool quote, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (const char *const *c = o->choices; c && *c && used < len; c++) {
        int n = snprintf(buf + used, len - used, "%s%s%s%s", c == o->choices ? "" : sep,
                         quote ? "\"" : "", *c, quote ? "\"" : "");
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* ---- checking tables ---------------------------------------------------------------- */

int options_check_table(const xmppd_option *options, size_t conf_size, const char *key,
                        char *err, size_t errlen)
{
    for (const xmppd_option *o = options; o && o->name; o++) {
        size_t end = o->offset + type_size(o);
        if (o->type == XMPPD_OPT_SECTION) {
            size_t max = 0;
            for (const xmppd_option *f = o->fields; f && f->name; f++)
                if (f->offset + type_size(f) > max)
                    max = f->offset + type_size(f);
            end = o->offset + max;
        }
        if (end > conf_size) {
            snprintf(err, errlen, "%s: bug: option '%s' lies outside its struct (%zu bytes)", key,
                     o->name, conf_size);
            return -1;
        }
        if (o->type == XMPPD_OPT_ENUM && (!o->choices || !o->choices[0])) {
            snprintf(err, errlen, "%s: bug: enum option '%s' has no choices", key, o->name);
            return -1;
        }
        if (is_nested(o)) {
            char sub[512];
            snprintf(sub, sizeof(sub), "%s.%s", key, o->name);
            if (!o->fields || (o->type != XMPPD_OPT_SECTION && o->item_size == 0)) {
                snprintf(err, errlen, "%s: bug: nested option '%s' has no fields or item size", key,
                         o->name);
                return -1;
            }
            size_t size = o->type == XMPPD_OPT_SECTION ? conf_size - o->offset : o->item_size;
            if (options_check_table(o->fields, size, sub, err, errlen) < 0)
                return -1;
            if (o->type == XMPPD_OPT_MAP && o->item_size < sizeof(char *)) {
                snprintf(err, errlen, "%s: bug: map items of '%s' have no room for their key", key,
                         o->name);
                return -1;
            }
        }
    }
    return 0;
}

/* ---- parsing values --------------------------------------------------------------------- */

/* Everything one parse carries. */
typedef struct parser {
    conf_block *b;
    const opt_ctx *ctx;
    opt_errors *errs;
    size_t errors_before;
} parser;

static void fail(parser *p, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(parser *p, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    opt_error(p->errs, p->ctx->cfg, key, "%s", msg);
}

static int parse_number_opt(const xmppd_option *o, const json_t *v, long long *out,
                            char *why, size_t whylen)
{
    const char *expected;
    int rc;
    if (o->type == XMPPD_OPT_INT) {
        expected = "expected an integer";
        rc = json_is_integer(v) ? 0 : -1;
        if (rc == 0)
            *out = json_integer_value(v);
    } else if (o->type == XMPPD_OPT_DURATION) {
        rc = opt_parse_duration(v, out, &expected);
    } else {
        rc = opt_parse_size(v, out, &expected);
    }
    bool in_range = !bounded(o) || (*out >= o->min && *out <= o->max);
    if (rc == 0 && in_range)
        return 0;
    char got[64], range[96] = "";
    opt_describe_value(v, got, sizeof(got));
    if (bounded(o)) {
        const char *what = o->type == XMPPD_OPT_INT ? "an integer"
                         : o->type == XMPPD_OPT_DURATION ? "a duration" : "a size";
        format_range(o, range, sizeof(range));
        snprintf(why, whylen, "expected %s %s, got %s", what, range, got);
    } else {
        snprintf(why, whylen, "%s, got %s", expected, got);
    }
    return -1;
}

/* A string without embedded NULs and, for min > 0, at least min bytes. */
static bool good_string(const xmppd_option *o, const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v) &&
           json_string_length(v) >= (size_t)(o->min > 0 ? o->min : 0);
}

/* 0, -1 when v is not a string or an array of strings, -2 on OOM. */
static int parse_list(conf_block *b, const json_t *v, const char ***out)
{
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (json_is_array(v)) {
        for (size_t i = 0; i < n; i++)
            if (!json_is_string(json_array_get(v, i)))
                return -1;
    } else if (!json_is_string(v)) {
        return -1;
    }
    const char **list = calloc(n + 1, sizeof(*list));
    if (block_keep(b, list) < 0)
        return -2;
    for (size_t i = 0; i < n; i++)
        list[i] = json_string_value(json_is_array(v) ? json_array_get(v, i) : v);
    *out = list;
    return 0;
}

/* What a leaf option accepts, for messages ("expected a ..."). */
static void expected_text(const xmppd_option *o, char *buf, size_t len)
{
    switch (o->type) {
    case XMPPD_OPT_BOOL:
        snprintf(buf, len, "expected true or false");
        break;
    case XMPPD_OPT_ENUM: {
        char choices[256];
        format_choices(o, ", ", true, choices, sizeof(choices));
        snprintf(buf, len, "expected one of %s", choices);
        break;
    }
    case XMPPD_OPT_LIST:
        snprintf(buf, len, "expected a string or a list of strings");
        break;
    case XMPPD_OPT_PATH:
        snprintf(buf, len, "expected a path (a non-empty string)");
        break;
    default:
        if (o->min > 1)
            snprintf(buf, len, "expected a string of at least %lld characters", o->min);
        else if (o->min == 1)
            snprintf(buf, len, "expected a non-empty string");
        else
            snprintf(buf, len, "expected a string");
        break;
    }
}

/* Converts v (owned by the block) for the leaf option o into dst. 0, or -1
 * with a reason in why. */
static int store_leaf(parser *p, const xmppd_option *o, const json_t *v, char *dst,
                      char *why, size_t whylen)
{
    char got[64];
    opt_describe_value(v, got, sizeof(got));
    switch (o->type) {
    case XMPPD_OPT_BOOL: {
        if (!json_is_boolean(v))
            goto bad;
        bool x = json_is_true(v);
        memcpy(dst, &x, sizeof(x));
        return 0;
    }
    case XMPPD_OPT_INT:
    case XMPPD_OPT_DURATION:
    case XMPPD_OPT_SIZE: {
        long long x = 0;
        if (parse_number_opt(o, v, &x, why, whylen) < 0)
            return -1;
        memcpy(dst, &x, sizeof(x));
        return 0;
    }
    case XMPPD_OPT_ENUM: {
        int i = 0;
        while (json_is_string(v) && o->choices[i] && strcmp(o->choices[i], json_string_value(v)) != 0)
            i++;
        if (!json_is_string(v) || !o->choices[i])
            goto bad;
        if (o->flags & XMPPD_OPT_INDEX) {
            memcpy(dst, &i, sizeof(i));
        } else {
            const char *s = o->choices[i];
            memcpy(dst, &s, sizeof(s));
        }
        return 0;
    }
    case XMPPD_OPT_STRING:
    case XMPPD_OPT_PATH: {
        const char *s = NULL;
        if (!json_is_null(v)) {
            if (!good_string(o, v) || (o->type == XMPPD_OPT_PATH && json_string_length(v) == 0))
                goto bad;
            s = json_string_value(v);
        }
        if (o->type == XMPPD_OPT_PATH && s) {
            char *abs = !p->ctx->cfg ? strdup(s)
                        : (o->flags & XMPPD_OPT_DATA) ? config_datapath(p->ctx->cfg, s)
                        : config_abspath(p->ctx->cfg, s);
            if (block_keep(p->b, abs) < 0)
                goto oom;
            s = abs;
        }
        memcpy(dst, &s, sizeof(s));
        return 0;
    }
    case XMPPD_OPT_LIST: {
        const char **list = NULL;
        int rc = parse_list(p->b, v, &list);
        if (rc == -2)
            goto oom;
        if (rc < 0)
            goto bad;
        memcpy(dst, &list, sizeof(list));
        return 0;
    }
    case XMPPD_OPT_JSON: {
        const json_t *j = json_is_null(v) ? NULL : v;
        memcpy(dst, &j, sizeof(j));
        return 0;
    }
    default:
        break;
    }
bad: {
    char expected[300];
    expected_text(o, expected, sizeof(expected));
    snprintf(why, whylen, "%s, got %s", expected, got);
    return -1;
}
oom:
    snprintf(why, whylen, "out of memory");
    return -1;
}

/* The default of o as a JSON value (new reference), parsed like config text:
 * JSON when it parses (and is not a bare word for a string type), else the
 * text itself as a string. NULL when o has no default. */
static json_t *default_value(const xmppd_option *o)
{
    if (!o->def)
        return NULL;
    bool stringy = o->type == XMPPD_OPT_STRING || o->type == XMPPD_OPT_ENUM ||
                   o->type == XMPPD_OPT_PATH;
    if (!stringy || o->def[0] == '"') {
        json_t *v = json_loads(o->def, JSON_DECODE_ANY, NULL);
        if (v)
            return v;
    }
    return json_string(o->def);
}

static const xmppd_option *find_option(const xmppd_option *table, const char *name)
{
    for (const xmppd_option *o = table; o && o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

static void parse_table(parser *p, const xmppd_option *table, char *base, const json_t *given,
                        const char *key, bool top);

/* The key of the object that holds option name at the top level. */
static const char *top_key(const opt_ctx *ctx, const char *name)
{
    if (ctx->override && ctx->override_key && (!name || json_object_get(ctx->override, name)))
        return ctx->override_key;
    return ctx->key;
}

/* Keys are cut at the buffer's size: a message about an absurdly long key
 * names its beginning. */
static void keyf(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void keyf(char *out, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, len, fmt, ap);
    va_end(ap);
}

static void join_key(char *out, size_t len, const char *prefix, const char *name)
{
    keyf(out, len, "%s%s%s", prefix, *prefix ? "." : "", name);
}

/* Reports the keys of given that table does not know; a hint's option is
 * marked in hinted (one flag per table entry, at most 64), so that a
 * misspelt required key is not reported missing as well. */
static void unknown_keys(parser *p, const xmppd_option *table, const json_t *given,
                         const char *key, bool top, uint64_t *hinted)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)given, k, v) {
        if (find_option(table, k))
            continue;
        const char *names[256];
        size_t n = 0;
        for (const xmppd_option *o = table; o && o->name && n < 256; o++)
            names[n++] = o->name;
        const char *hint = opt_suggest(k, names, n);
        for (size_t i = 0; hint && i < n && i < 64; i++)
            if (names[i] == hint)
                *hinted |= 1ull << i;
        char full[512];
        join_key(full, sizeof(full), top ? top_key(p->ctx, k) : key, k);
        const char *owner = p->ctx->owner;
        if (!owner && hint)
            fail(p, full, "unknown key (did you mean \"%s\"?)", hint);
        else if (!owner)
            fail(p, full, "unknown key");
        else if (hint)
            fail(p, full, "unknown option of %s (did you mean \"%s\"?)", owner, hint);
        else if (n == 0)
            fail(p, full, "unknown option: %s has no options", owner);
        else
            fail(p, full, "unknown option of %s (see `xmppctl options`)", owner);
    }
}

/* The items of an ARRAY or MAP option from v (a list or an object). */
static void parse_items(parser *p, const xmppd_option *o, const json_t *v, char *dst,
                        const char *key)
{
    bool map = o->type == XMPPD_OPT_MAP;
    if (map ? !json_is_object(v) : !json_is_array(v)) {
        char got[64];
        opt_describe_value(v, got, sizeof(got));
        fail(p, key, "expected %s, got %s", map ? "an object" : "a list of objects", got);
        return;
    }
    size_t n = map ? json_object_size(v) : json_array_size(v);
    char *items = calloc(n ? n : 1, o->item_size);
    if (block_keep(p->b, items) < 0) {
        fail(p, key, "out of memory");
        return;
    }
    xmppd_opt_array arr = { items, n };
    memcpy(dst, &arr, sizeof(arr));
    size_t i = 0;
    const char *k;
    json_t *item;
    void *iter = map ? json_object_iter((json_t *)v) : NULL;
    for (; i < n; i++) {
        char *slot = items + i * o->item_size;
        char sub[512];
        if (map) {
            k = json_object_iter_key(iter);
            item = json_object_iter_value(iter);
            iter = json_object_iter_next((json_t *)v, iter);
            memcpy(slot, &k, sizeof(k)); /* keys live in the kept JSON */
            join_key(sub, sizeof(sub), key, k);
        } else {
            item = json_array_get(v, i);
            keyf(sub, sizeof(sub), "%s.%zu", key, i);
        }
        if (!json_is_object(item)) {
            char got[64];
            opt_describe_value(item, got, sizeof(got));
            fail(p, sub, "expected an object, got %s", got);
            continue;
        }
        parse_table(p, o->fields, slot, item, sub, false);
    }
}

/* One option of table at base from given (the object holding it) or its
 * default. */
static void parse_one(parser *p, const xmppd_option *o, char *base, const json_t *given,
                      const char *key, bool top, bool hinted)
{
    char full[512], why[384];
    const char *holder = top ? top_key(p->ctx, o->name) : key;
    join_key(full, sizeof(full), holder, o->name);
    char *dst = base + o->offset;
    const json_t *v = given ? json_object_get(given, o->name) : NULL;
    bool from_default = false;
    if (!v && (o->flags & XMPPD_OPT_REQUIRED) && hinted)
        return; /* reported as a misspelling already */
    if (!v && (o->flags & XMPPD_OPT_REQUIRED)) {
        const char *at = top ? top_key(p->ctx, NULL) : key;
        if (p->ctx->owner)
            fail(p, at, "option \"%s\" of %s is required%s%s", o->name, p->ctx->owner,
                 o->doc ? ": " : "", o->doc ? o->doc : "");
        else
            fail(p, at, "\"%s\" is required%s%s", o->name, o->doc ? ": " : "", o->doc ? o->doc : "");
        return;
    }
    if (!v && o->type == XMPPD_OPT_SECTION) {
        parse_table(p, o->fields, dst, NULL, full, false);
        return;
    }
    if (!v) {
        json_t *d = default_value(o);
        if (!d)
            return; /* unset: the field stays zero/NULL */
        if (json_array_append_new(p->b->values, d) < 0) {
            fail(p, full, "out of memory");
            return;
        }
        v = d;
        from_default = true;
    }
    if (o->type == XMPPD_OPT_SECTION) {
        if (!json_is_object(v)) {
            char got[64];
            opt_describe_value(v, got, sizeof(got));
            fail(p, full, "expected an object, got %s", got);
            return;
        }
        parse_table(p, o->fields, dst, v, full, false);
        return;
    }
    if (o->type == XMPPD_OPT_ARRAY || o->type == XMPPD_OPT_MAP) {
        parse_items(p, o, v, dst, full);
        return;
    }
    if (store_leaf(p, o, v, dst, why, sizeof(why)) == 0)
        return;
    if (from_default)
        opt_error(p->errs, NULL, full, "bug: invalid default \"%s\": %s",
                  (o->flags & XMPPD_OPT_SECRET) ? "(secret)" : o->def, why);
    else if ((o->flags & XMPPD_OPT_SECRET) && !is_number(o)) {
        char expected[300];
        expected_text(o, expected, sizeof(expected));
        fail(p, full, "%s (the value is secret: not shown)", expected);
    } else if (o->flags & XMPPD_OPT_SECRET)
        fail(p, full, "invalid value for a secret %s option", type_name(o->type));
    else
        fail(p, full, "%s", why);
}

static void parse_table(parser *p, const xmppd_option *table, char *base, const json_t *given,
                        const char *key, bool top)
{
    uint64_t hinted = 0;
    if (given)
        unknown_keys(p, table, given, key, top, &hinted);
    for (const xmppd_option *o = table; o && o->name; o++) {
        size_t i = (size_t)(o - table);
        parse_one(p, o, base, given, key, top, i < 64 && (hinted >> i & 1));
    }
}

void *options_parse(const xmppd_option *options, size_t conf_size, const json_t *given,
                    const opt_ctx *ctx, bool keep, opt_errors *errs)
{
    if (given && !json_is_object(given)) {
        char got[64];
        opt_describe_value(given, got, sizeof(got));
        opt_error(errs, ctx->cfg, ctx->key, "expected an object of options, got %s", got);
        return NULL;
    }
    char bug[512];
    if (options_check_table(options, conf_size ? conf_size : 1, ctx->key, bug, sizeof(bug)) < 0) {
        opt_error(errs, NULL, ctx->owner ? ctx->owner : "kernel", "%s", bug);
        return NULL;
    }
    conf_block *b = calloc(1, sizeof(*b) + (conf_size ? conf_size : 1));
    json_t *copy = given ? json_deep_copy(given) : NULL;
    if (!b || !(b->values = json_array()) || (given && (!copy || json_array_append_new(b->values, copy) < 0))) {
        if (b)
            json_decref(b->values);
        free(b);
        opt_error(errs, NULL, ctx->key, "out of memory");
        return NULL;
    }
    parser p = { b, ctx, errs, errs->n };
    parse_table(&p, options, (char *)b->conf, copy, ctx->key, true);
    if (errs->n > p.errors_before && !keep) {
        options_conf_free(b->conf);
        return NULL;
    }
    return b->conf;
}

/* ---- printing -------------------------------------------------------------- */

static void describe_default(const xmppd_option *o, char *buf, size_t len)
{
    if (!o->def)
        snprintf(buf, len, "%s", (o->flags & XMPPD_OPT_REQUIRED) ? "(required)" : "-");
    else if (o->flags & XMPPD_OPT_SECRET)
        snprintf(buf, len, "(secret)");
    else
        snprintf(buf, len, "%s", o->def);
}

static void describe_range(const xmppd_option *o, char *buf, size_t len)
{
    buf[0] = '\0';
    if (o->type == XMPPD_OPT_ENUM) {
        format_choices(o, "|", false, buf, len);
    } else if (bounded(o)) {
        char lo[32], hi[32];
        format_bound(o, o->min, lo, sizeof(lo));
        format_bound(o, o->max, hi, sizeof(hi));
        snprintf(buf, len, "%s..%s", lo, hi);
    } else if (is_text(o) && o->min == 1) {
        snprintf(buf, len, "non-empty");
    } else if (is_text(o) && o->min > 1) {
        snprintf(buf, len, "at least %lld chars", o->min);
    }
}

static void describe_flags(const xmppd_option *o, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s%s", (o->flags & XMPPD_OPT_REQUIRED) ? "required" : "",
             (o->flags & XMPPD_OPT_REQUIRED) && (o->flags & XMPPD_OPT_SECRET) ? "," : "",
             (o->flags & XMPPD_OPT_SECRET) ? "secret" : "");
}

/* Markdown table cell: '|' escaped. */
static void md_cell(FILE *out, const char *s, bool code)
{
    fputs(" ", out);
    if (s && *s) {
        if (code)
            fputc('`', out);
        for (; *s; s++) {
            if (*s == '|')
                fputs("\\|", out);
            else
                fputc(*s, out);
        }
        if (code)
            fputc('`', out);
    }
    fputs(" |", out);
}

static void print_rows(const xmppd_option *table, const char *prefix, bool markdown, FILE *out)
{
    char name[512], dflt[256], range[256], flags[32];
    for (const xmppd_option *o = table; o && o->name; o++) {
        join_key(name, sizeof(name), prefix, o->name);
        describe_default(o, dflt, sizeof(dflt));
        describe_range(o, range, sizeof(range));
        describe_flags(o, flags, sizeof(flags));
        if (markdown) {
            fputs("|", out);
            md_cell(out, name, true);
            md_cell(out, type_name(o->type), false);
            md_cell(out, o->type == XMPPD_OPT_SECTION ? "" : dflt,
                    o->def && !(o->flags & XMPPD_OPT_SECRET));
            md_cell(out, range, false);
            md_cell(out, flags, false);
            md_cell(out, o->doc, false);
            fputs("\n", out);
        } else {
            fprintf(out, "  %-32s %-8s", name, type_name(o->type));
            if (o->type != XMPPD_OPT_SECTION)
                fprintf(out, " default %s", dflt);
            if (range[0])
                fprintf(out, "  [%s]", range);
            if (flags[0])
                fprintf(out, "  (%s)", flags);
            fprintf(out, "\n");
            if (o->doc)
                fprintf(out, "      %s\n", o->doc);
        }
        if (is_nested(o)) {
            char sub[512];
            keyf(sub, sizeof(sub), "%s%s", name, o->type == XMPPD_OPT_ARRAY ? "[]"
                                                  : o->type == XMPPD_OPT_MAP ? ".<name>" : "");
            print_rows(o->fields, sub, markdown, out);
        }
    }
}

void options_print(const char *title, const char *version, const char *summary,
                   const xmppd_option *options, bool markdown, FILE *out)
{
    bool none = !options || !options[0].name;
    if (markdown) {
        fprintf(out, "### %s\n\n", title);
        if (summary)
            fprintf(out, "%s\n\n", summary);
        if (none) {
            fprintf(out, "No options.\n\n");
            return;
        }
        fprintf(out, "| name | type | default | range/choices | flags | doc |\n");
        fprintf(out, "|---|---|---|---|---|---|\n");
    } else {
        fprintf(out, "%s%s%s%s%s\n", title, version ? " " : "", version ? version : "",
                summary ? " - " : "", summary ? summary : "");
        if (none)
            fprintf(out, "  (no options)\n");
    }
    print_rows(options, "", markdown, out);
    if (markdown)
        fputs("\n", out);
}
