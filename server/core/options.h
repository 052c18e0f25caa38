/* Typed module options (api/xmppd/module.h xmppd_option): parsing JSON
 * values into a module's conf struct, validation, and printing for
 * `xmppctl options`. Also the duration/size parsers the kernel config uses.
 *
 * Errors are one line "FILE:LINE: KEY: what is wrong" like every config
 * error, where KEY is the dotted path of the option
 * ("modules.roster.max_items", "hosts.example.org.modules.roster.max_items"). */
#ifndef XMPPD_OPTIONS_H
#define XMPPD_OPTIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include "core/config.h"
#include "xmppd/module.h"

/* Durations: a JSON number of seconds (fractions allowed), or a string
 * "250ms", "30s", "5m", "1h", "2d", or digits alone (seconds). Result in
 * milliseconds. 0, or -1 with a short reason in *why_r (static string). */
int opt_parse_duration(const json_t *v, long long *ms_r, const char **why_r);
/* Sizes: a JSON integer of bytes, or a string "65536", "64k", "10M", "1G"
 * (binary multiples, case-insensitive suffix, optional trailing "B"). */
int opt_parse_size(const json_t *v, long long *bytes_r, const char **why_r);

/* Writes "FILE:LINE: KEY: message" (or without LINE when unknown, or
 * "KEY: message" when cfg is NULL) into err. */
void opt_errorf(const xmppd_config *cfg, const char *key, char *err, size_t errlen,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Formats v as text for messages: strings quoted, values cut to ~40 chars. */
void opt_describe_value(const json_t *v, char *buf, size_t len);

/* The candidate closest to word by edit distance (at most 2, or 1 for short
 * words), for "did you mean" hints; NULL when none is close. */
const char *opt_suggest(const char *word, const char *const *cands, size_t n);

/* Where option errors point: the configuration (for lines and relative
 * paths; may be NULL, e.g. parsing defaults only) and the dotted key of the
 * module's options object ("modules.roster"). When a host's own object
 * (override, borrowed) adds to inherited options, errors about the keys it
 * holds point at override_key ("hosts.example.org.modules.roster"). */
typedef struct opt_ctx {
    const xmppd_config *cfg;
    const char *key;
    const json_t *override;
    const char *override_key;
} opt_ctx;

/* Parses the options of def from given (a JSON object, or NULL: none
 * configured) into a new conf block of def->conf_size bytes (at least 1).
 * Unknown keys, wrong types, out-of-range values, unknown enum choices,
 * missing REQUIRED options and invalid defaults are errors. The block owns
 * every string, list and JSON value its fields point to; free it with
 * options_conf_free. NULL on error with a one-line message in err. */
void *options_parse(const xmppd_module_def *def, const json_t *given, const opt_ctx *ctx,
                    char *err, size_t errlen);
/* Frees a block from options_parse and everything it owns. NULL is a no-op. */
void options_conf_free(void *conf);

/* Prints def's options: plain text, or a markdown section with a table
 * (name, type, default, range/choices, flags, doc). SECRET defaults are
 * never printed. */
void options_print(const xmppd_module_def *def, bool markdown, FILE *out);

#endif
