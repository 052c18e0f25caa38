/* Typed options (api/xmppd/module.h xmppd_option): JSON values into conf
 * structs, validated and documented from one table. Modules' options and
 * the kernel's own configuration (config.c) go through the same engine,
 * so every key has a type, a default and a line of documentation, and
 * `xmppctl options` prints them all.
 *
 * Errors are one line each, "FILE:LINE: KEY: what is wrong", where KEY is
 * the dotted path of the value ("limits.max_depth", "listeners.1.port",
 * "modules.roster.max_items", "hosts.example.org.modules.roster.max_items").
 * Parsing does not stop at the first error: every error of a table is
 * collected, so `xmppctl check` shows them all at once. */
#ifndef XMPPD_OPTIONS_H
#define XMPPD_OPTIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include "core/config.h"
#include "xmppd/module.h"

/* ---- errors ------------------------------------------------------------- */

/* A list of error lines (owned strings). Zero-initialise; free with
 * opt_errors_free. */
typedef struct opt_errors {
    char **lines;
    size_t n, cap;
} opt_errors;

/* Adds "FILE:LINE: KEY: message" (without LINE when unknown; "KEY: message"
 * when cfg is NULL; "FILE: message" when key is ""). */
void opt_error(opt_errors *e, const xmppd_config *cfg, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void opt_errors_free(opt_errors *e);
/* The lines joined with "\n" into err (cut to errlen); "" when none. */
void opt_errors_join(const opt_errors *e, char *err, size_t errlen);
/* The same single line into a buffer, for callers that report one error. */
void opt_errorf(const xmppd_config *cfg, const char *key, char *err, size_t errlen,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* ---- values --------------------------------------------------------------- */

/* Durations: a JSON number of seconds (fractions allowed), or a string
 * "250ms", "30s", "5m", "1h", "2d", or digits alone (seconds). Result in
 * milliseconds. 0, or -1 with a short reason in *why_r (static string). */
int opt_parse_duration(const json_t *v, long long *ms_r, const char **why_r);
/* Sizes: a JSON integer of bytes, or a string "65536", "64k", "10M", "1G"
 * (binary multiples, case-insensitive suffix, optional trailing "B"). */
int opt_parse_size(const json_t *v, long long *bytes_r, const char **why_r);
/* Formats v as text for messages: strings quoted, values cut to ~40 chars. */
void opt_describe_value(const json_t *v, char *buf, size_t len);
/* The candidate closest to word by edit distance (at most 2, or 1 for short
 * words), for "did you mean" hints; NULL when none is close. */
const char *opt_suggest(const char *word, const char *const *cands, size_t n);

/* ---- parsing ------------------------------------------------------------------- */

/* Where option errors point: the configuration (for lines and relative
 * paths; may be NULL, e.g. parsing defaults only), the dotted key of the
 * options object ("modules.roster", or "" for the configuration's root),
 * and who owns the options, for messages ("module roster"; NULL: the
 * server's own keys). When a host's own object (override, borrowed) adds
 * to inherited options, errors about the keys it holds point at
 * override_key ("hosts.example.org.modules.roster"). */
typedef struct opt_ctx {
    const xmppd_config *cfg;
    const char *key;
    const json_t *override;
    const char *override_key;
    const char *owner;
} opt_ctx;

/* Parses the options table (ending with a NULL name) from given (a JSON
 * object, or NULL: nothing configured) into a new conf block of conf_size
 * bytes (at least 1). Unknown keys, wrong types, out-of-range values,
 * unknown enum choices, missing REQUIRED options and invalid defaults are
 * errors, each added to errs. The block owns every string, list, item array
 * and JSON value its fields point to; free it with options_conf_free.
 * NULL when there was any error, unless keep: then the block comes back
 * with the faulty fields left at their defaults (xmppctl check goes on to
 * find more errors with it). NULL on OOM (added to errs). */
void *options_parse(const xmppd_option *options, size_t conf_size, const json_t *given,
                    const opt_ctx *ctx, bool keep, opt_errors *errs);
/* Frees a block from options_parse and everything it owns. NULL is a no-op. */
void options_conf_free(void *conf);
/* Hands p (malloc'd) to conf's block, freed with it (derived values a
 * caller computes from the options). 0, or -1 on OOM (p is freed then). */
int options_keep(void *conf, void *p);
/* Checks a table for programming errors (offsets outside conf_size, an
 * enum without choices, a nested table without items). 0, or -1 with a
 * message naming key in err. */
int options_check_table(const xmppd_option *options, size_t conf_size, const char *key,
                        char *err, size_t errlen);

/* ---- printing -------------------------------------------------------------------- */

/* Prints a table: plain text, or a markdown section ("### title") with a
 * table (name, type, default, range/choices, flags, doc). Nested tables
 * print as dotted names ("limits.max_depth", "listeners[].port",
 * "hosts.<name>.tls.cert"). SECRET defaults are never printed. */
void options_print(const char *title, const char *version, const char *summary,
                   const xmppd_option *options, bool markdown, FILE *out);

#endif
