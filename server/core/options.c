/* Typed module options: JSON values -> a module's conf struct. */
#include "core/options.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
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
 * missing option points at its module's object). */
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

void opt_errorf(const xmppd_config *cfg, const char *key, char *err, size_t errlen,
                const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int line = cfg && *key ? line_near(cfg, key) : 0;
    if (!cfg)
        snprintf(err, errlen, "%s: %s", key, msg);
    else if (!*key)
        snprintf(err, errlen, "%s: %s", cfg->path, msg);
    else if (line > 0)
        snprintf(err, errlen, "%s:%d: %s: %s", cfg->path, line, key, msg);
    else
        snprintf(err, errlen, "%s: %s: %s", cfg->path, key, msg);
}

/* ---- conf blocks ------------------------------------------------------------- */

/* The kernel's allocation around a module's conf struct. Modules see only
 * `conf`; the header owns what the struct's pointers point to. */
typedef struct conf_block {
    json_t *values;  /* effective option values (owned): strings point here */
    void **allocs;   /* lists and absolute paths (owned) */
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
        size_t ncap = b->cap_allocs ? b->cap_allocs * 2 : 4;
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

/* ---- parsing one option ------------------------------------------------------ */

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
    }
    return "?";
}

static size_t type_size(enum xmppd_opt_type t)
{
    switch (t) {
    case XMPPD_OPT_BOOL: return sizeof(bool);
    case XMPPD_OPT_INT:
    case XMPPD_OPT_DURATION:
    case XMPPD_OPT_SIZE: return sizeof(long long);
    case XMPPD_OPT_JSON: return sizeof(json_t *);
    default: return sizeof(char *);
    }
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
    return o->min != 0 || o->max != 0;
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

/* Converts v (owned by b->values) for option o and stores it in b->conf.
 * 0, or -1 with a reason in why. */
static int store_value(conf_block *b, const xmppd_option *o, const json_t *v,
                       const xmppd_config *cfg, char *why, size_t whylen)
{
    char *dst = (char *)b->conf + o->offset;
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
    case XMPPD_OPT_STRING:
    case XMPPD_OPT_ENUM:
    case XMPPD_OPT_PATH: {
        const char *s = NULL;
        if (json_is_null(v) && o->type != XMPPD_OPT_ENUM)
            s = NULL;
        else if (json_is_string(v))
            s = json_string_value(v);
        else
            goto bad;
        if (o->type == XMPPD_OPT_ENUM) {
            const char *const *c = o->choices;
            while (c && *c && strcmp(*c, s) != 0)
                c++;
            if (!c || !*c)
                goto bad;
        }
        if (o->type == XMPPD_OPT_PATH && s) {
            char *abs = cfg ? config_abspath(cfg, s) : strdup(s);
            if (block_keep(b, abs) < 0)
                goto oom;
            s = abs;
        }
        memcpy(dst, &s, sizeof(s));
        return 0;
    }
    case XMPPD_OPT_LIST: {
        const char **list = NULL;
        int rc = parse_list(b, v, &list);
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
    }
bad:
    switch (o->type) {
    case XMPPD_OPT_BOOL:
        snprintf(why, whylen, "expected true or false, got %s", got);
        break;
    case XMPPD_OPT_ENUM: {
        char choices[256];
        format_choices(o, ", ", true, choices, sizeof(choices));
        snprintf(why, whylen, "expected one of %s, got %s", choices, got);
        break;
    }
    case XMPPD_OPT_LIST:
        snprintf(why, whylen, "expected a list of strings, got %s", got);
        break;
    case XMPPD_OPT_PATH:
        snprintf(why, whylen, "expected a path (string), got %s", got);
        break;
    default:
        snprintf(why, whylen, "expected a string, got %s", got);
        break;
    }
    return -1;
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

static int check_def(const xmppd_module_def *def, const char *key, char *err, size_t errlen)
{
    for (const xmppd_option *o = def->options; o && o->name; o++) {
        if (o->offset + type_size(o->type) > def->conf_size) {
            snprintf(err, errlen, "%s: module bug: option '%s' lies outside conf_size (%zu bytes)",
                     key, o->name, def->conf_size);
            return -1;
        }
        if (o->type == XMPPD_OPT_ENUM && (!o->choices || !o->choices[0])) {
            snprintf(err, errlen, "%s: module bug: enum option '%s' has no choices", key, o->name);
            return -1;
        }
    }
    return 0;
}

static const xmppd_option *find_option(const xmppd_module_def *def, const char *name)
{
    for (const xmppd_option *o = def->options; o && o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

/* The key of the options object that holds option name. */
static const char *key_for(const opt_ctx *ctx, const char *name)
{
    if (ctx->override && ctx->override_key && (!name || json_object_get(ctx->override, name)))
        return ctx->override_key;
    return ctx->key;
}

static int check_unknown_keys(const xmppd_module_def *def, const json_t *given,
                              const opt_ctx *ctx, char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)given, k, v) {
        if (find_option(def, k))
            continue;
        const char *names[256];
        size_t n = 0;
        for (const xmppd_option *o = def->options; o && o->name && n < 256; o++)
            names[n++] = o->name;
        const char *hint = opt_suggest(k, names, n);
        char key[512];
        snprintf(key, sizeof(key), "%s.%s", key_for(ctx, k), k);
        if (hint)
            opt_errorf(ctx->cfg, key, err, errlen, "unknown option of module %s (did you mean \"%s\"?)",
                       def->name, hint);
        else if (n == 0)
            opt_errorf(ctx->cfg, key, err, errlen, "unknown option: module %s has no options", def->name);
        else
            opt_errorf(ctx->cfg, key, err, errlen, "unknown option of module %s (see `xmppctl options %s`)",
                       def->name, def->name);
        return -1;
    }
    return 0;
}

/* Fills one option of b from given or its default. */
static int parse_one(conf_block *b, const xmppd_module_def *def, const xmppd_option *o,
                     const json_t *given, const opt_ctx *ctx, char *err, size_t errlen)
{
    char key[512], why[384];
    snprintf(key, sizeof(key), "%s.%s", key_for(ctx, o->name), o->name);
    json_t *v = given ? json_object_get(given, o->name) : NULL;
    bool from_default = false;
    if (v) {
        v = json_deep_copy(v);
    } else if (o->flags & XMPPD_OPT_REQUIRED) {
        opt_errorf(ctx->cfg, key_for(ctx, NULL), err, errlen, "option \"%s\" of module %s is required%s%s",
                   o->name, def->name, o->doc ? ": " : "", o->doc ? o->doc : "");
        return -1;
    } else {
        v = default_value(o);
        from_default = true;
        if (!v)
            return 0; /* unset: the field stays zero/NULL */
    }
    if (!v || json_object_set_new(b->values, o->name, v) < 0) {
        snprintf(err, errlen, "%s: out of memory", key);
        return -1;
    }
    if (store_value(b, o, v, ctx->cfg, why, sizeof(why)) == 0)
        return 0;
    if (from_default)
        snprintf(err, errlen, "%s: module bug: invalid default \"%s\": %s", key,
                 (o->flags & XMPPD_OPT_SECRET) ? "(secret)" : o->def, why);
    else if (o->flags & XMPPD_OPT_SECRET)
        opt_errorf(ctx->cfg, key, err, errlen, "invalid value for a %s option", type_name(o->type));
    else
        opt_errorf(ctx->cfg, key, err, errlen, "%s", why);
    return -1;
}

void *options_parse(const xmppd_module_def *def, const json_t *given, const opt_ctx *ctx,
                    char *err, size_t errlen)
{
    if (given && !json_is_object(given)) {
        char got[64];
        opt_describe_value(given, got, sizeof(got));
        opt_errorf(ctx->cfg, ctx->key, err, errlen, "expected an object of options, got %s", got);
        return NULL;
    }
    if (check_def(def, ctx->key, err, errlen) < 0)
        return NULL;
    if (given && check_unknown_keys(def, given, ctx, err, errlen) < 0)
        return NULL;
    conf_block *b = calloc(1, sizeof(*b) + (def->conf_size ? def->conf_size : 1));
    if (!b || !(b->values = json_object())) {
        free(b);
        snprintf(err, errlen, "%s: out of memory", ctx->key);
        return NULL;
    }
    for (const xmppd_option *o = def->options; o && o->name; o++) {
        if (parse_one(b, def, o, given, ctx, err, errlen) < 0) {
            options_conf_free(b->conf);
            return NULL;
        }
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
    } else if ((o->type == XMPPD_OPT_INT || o->type == XMPPD_OPT_DURATION ||
                o->type == XMPPD_OPT_SIZE) && bounded(o)) {
        char lo[32], hi[32];
        format_bound(o, o->min, lo, sizeof(lo));
        format_bound(o, o->max, hi, sizeof(hi));
        snprintf(buf, len, "%s..%s", lo, hi);
    }
}

static void describe_flags(const xmppd_option *o, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s%s", (o->flags & XMPPD_OPT_REQUIRED) ? "required" : "",
             (o->flags & XMPPD_OPT_REQUIRED) && (o->flags & XMPPD_OPT_SECRET) ? "," : "",
             (o->flags & XMPPD_OPT_SECRET) ? "secret" : "");
}

/* Markdown table cell: '|' escaped, never empty. */
static void md_cell(FILE *out, const char *s, bool code)
{
    fputs(" ", out);
    if (!s || !*s) {
        fputs("", out);
    } else {
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

void options_print(const xmppd_module_def *def, bool markdown, FILE *out)
{
    char dflt[256], range[256], flags[32];
    if (markdown) {
        fprintf(out, "### %s\n\n", def->name);
        if (def->summary)
            fprintf(out, "%s\n\n", def->summary);
        if (!def->options || !def->options[0].name) {
            fprintf(out, "No options.\n\n");
            return;
        }
        fprintf(out, "| name | type | default | range/choices | flags | doc |\n");
        fprintf(out, "|---|---|---|---|---|---|\n");
    } else {
        fprintf(out, "%s %s%s%s\n", def->name, def->version ? def->version : "",
                def->summary ? " - " : "", def->summary ? def->summary : "");
        if (!def->options || !def->options[0].name)
            fprintf(out, "  (no options)\n");
    }
    for (const xmppd_option *o = def->options; o && o->name; o++) {
        describe_default(o, dflt, sizeof(dflt));
        describe_range(o, range, sizeof(range));
        describe_flags(o, flags, sizeof(flags));
        if (markdown) {
            fputs("|", out);
            md_cell(out, o->name, true);
            md_cell(out, type_name(o->type), false);
            md_cell(out, dflt, o->def && !(o->flags & XMPPD_OPT_SECRET));
            md_cell(out, range, false);
            md_cell(out, flags, false);
            md_cell(out, o->doc, false);
            fputs("\n", out);
        } else {
            fprintf(out, "  %-24s %-8s default %s", o->name, type_name(o->type), dflt);
            if (range[0])
                fprintf(out, "  [%s]", range);
            if (flags[0])
                fprintf(out, "  (%s)", flags);
            fprintf(out, "\n");
            if (o->doc)
                fprintf(out, "      %s\n", o->doc);
        }
    }
    if (markdown)
        fputs("\n", out);
}
