/* Bearer tokens of the admin API: configured in clear ("token", a secret
 * option) or, better, as the SHA-256 of the token ("sha256", hex), so a
 * copy of the configuration grants nothing; each with an optional expiry.
 * `xmppctl token NAME` makes a new one (served by this module). */
#define _GNU_SOURCE /* timegm */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin_api.h"

#define TOKEN_BYTES 24

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* "2027-01-31" or "2027-01-31T12:00:00Z" -> Unix time; -1 when neither. */
static int64_t parse_expiry(const char *s)
{
    struct tm tm = { 0 };
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%d", &tm);
        if (!end || *end)
            return -1;
    }
    return (int64_t)timegm(&tm);
}

int api_tokens_check(const api_conf *conf, api_key *keys, char *err, size_t errlen)
{
    const api_token *t = conf->tokens.items;
    for (size_t i = 0; i < conf->tokens.n; i++) {
        api_key k = { 0 };
        if (!t[i].token == !t[i].sha256) {
            snprintf(err, errlen, "tokens.%s: give either token or sha256", t[i].name);
            return -1;
        }
        if (t[i].sha256) {
            size_t j = 0;
            for (; j < 32; j++) {
                int hi = hexval(t[i].sha256[2 * j]), lo = hi < 0 ? -1 : hexval(t[i].sha256[2 * j + 1]);
                if (lo < 0)
                    break;
                k.hash[j] = (unsigned char)(hi << 4 | lo);
            }
            if (j < 32 || t[i].sha256[64]) {
                snprintf(err, errlen, "tokens.%s.sha256: expected 64 hex digits (xmppctl token "
                         "prints them)", t[i].name);
                return -1;
            }
        }
        k.expires = t[i].expires ? parse_expiry(t[i].expires) : 0;
        if (k.expires < 0) {
            snprintf(err, errlen, "tokens.%s.expires: expected a date (2027-01-31) or a UTC time "
                     "(2027-01-31T12:00:00Z), got %s", t[i].name, t[i].expires);
            return -1;
        }
        if (keys)
            keys[i] = k;
    }
    return 0;
}

int api_tokens_load(api_state *st, const api_conf *conf)
{
    char err[512];
    st->keys = calloc(conf->tokens.n ? conf->tokens.n : 1, sizeof(*st->keys));
    if (!st->keys)
        return xmppd_module_refuse(st->m, "out of memory");
    if (api_tokens_check(conf, st->keys, err, sizeof(err)) < 0)
        return xmppd_module_refuse(st->m, "%s", err);
    return 0;
}

const api_token *api_token_find(const api_state *st, const char *presented, bool *expired_r)
{
    const api_conf *conf = xmppd_module_conf(st->m);
    const api_token *t = conf->tokens.items;
    size_t n = strlen(presented);
    unsigned char h[32];
    bool hashed = xmppd_digest(XMPPD_HASH_SHA256, presented, n, h) == 0;
    for (size_t i = 0; i < conf->tokens.n; i++) {
        bool match = t[i].sha256 ? hashed && xmppd_ct_equal(st->keys[i].hash, h, sizeof(h))
                                 : strlen(t[i].token) == n && xmppd_ct_equal(t[i].token, presented, n);
        if (!match)
            continue;
        *expired_r = st->keys[i].expires && st->keys[i].expires <= xmppd_wallclock_ms() / 1000;
        return &t[i];
    }
    return NULL;
}

/* xmppctl token NAME: a new random token and what to configure. */
static void ctl_token(xmppd_ctl_request *req, const json_t *args, void *ud)
{
    (void)ud;
    const char *name = json_string_value(json_array_get(args, 0));
    unsigned char raw[TOKEN_BYTES], h[32];
    char tok[2 * TOKEN_BYTES + 1], hex[65];
    if (!name || !*name || json_array_size(args) != 1) {
        xmppd_ctl_error(req, "usage: xmppctl token NAME");
        return;
    }
    if (xmppd_random(raw, sizeof(raw)) < 0) {
        xmppd_ctl_error(req, "no random bytes");
        return;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(tok + 2 * i, 3, "%02x", raw[i]);
    xmppd_wipe(raw, sizeof(raw));
    xmppd_digest(XMPPD_HASH_SHA256, tok, strlen(tok), h);
    for (size_t i = 0; i < sizeof(h); i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    char text[512];
    snprintf(text, sizeof(text),
             "token: %s\n(shown once: give it to the script)\n"
             "configure under modules.admin_api.tokens:\n"
             "  \"%s\": { \"sha256\": \"%s\", \"expires\": \"YYYY-MM-DD\" }\n"
             "(add \"hosts\" and \"commands\" to narrow it), then reload", tok, name, hex);
    xmppd_ctl_reply(req, json_pack("{s:s, s:s, s:s, s:s}", "name", name, "token", tok, "sha256", hex,
                                   "text", text));
    xmppd_wipe(tok, sizeof(tok));
}

int api_tokens_command(api_state *st)
{
    return xmppd_ctl_command(st->m, "token", "NAME",
                             "make a token for the admin API (printed once; its SHA-256 goes into "
                             "the configuration)", ctl_token, st);
}
