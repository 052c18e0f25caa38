/* Redis URIs (redis_uri.h). */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/redis_uri.h"
#include "xmppd/crypto.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes n bytes of s; NULL on a bad escape, a NUL byte or OOM. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    for (size_t i = 0; out && i < n; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
        int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        *o++ = (char)(hi * 16 + lo);
        i += 2;
    }
    if (out)
        *o = '\0';
    return out;
}

/* A decimal number in [lo, hi] spanning exactly n bytes; -1 otherwise. */
static long number(const char *s, size_t n, long lo, long hi)
{
    if (n == 0 || n > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= lo && v <= hi ? v : -1;
}

/* "[user]:password@" before end; sets *rest past it. */
static int userinfo(redis_uri *u, const char *s, const char *end, const char **rest,
                    const char **why)
{
    const char *at = memchr(s, '@', (size_t)(end - s));
    *rest = s;
    if (!at)
        return 0;
    const char *colon = memchr(s, ':', (size_t)(at - s));
    if (!colon) {
        *why = "credentials are written [USER]:PASSWORD@";
        return -1;
    }
    if (colon > s && !(u->user = pct_decode(s, (size_t)(colon - s)))) {
        *why = "bad percent-escape in the user name";
        return -1;
    }
    if (!(u->password = pct_decode(colon + 1, (size_t)(at - colon - 1))) || !*u->password) {
        *why = "bad or empty password (escape ':' and '@' as %3A and %40)";
        return -1;
    }
    *rest = at + 1;
    return 0;
}

static int parse_tcp(redis_uri *u, const char *s, const char **why)
{
    const char *slash = strchr(s, '/');
    const char *end = slash ? slash : s + strlen(s);
    const char *h;
    if (userinfo(u, s, end, &h, why) < 0)
        return -1;
    const char *hend, *port = NULL;
    if (*h == '[') {
        const char *close = memchr(h, ']', (size_t)(end - h));
        if (!close || close == h + 1 || (close + 1 < end && close[1] != ':')) {
            *why = "an IPv6 address is written [ADDRESS]:PORT";
            return -1;
        }
        u->host = strndup(h + 1, (size_t)(close - h - 1));
        hend = close + 1;
    } else {
        const char *colon = memchr(h, ':', (size_t)(end - h));
        hend = colon ? colon : end;
        u->host = strndup(h, (size_t)(hend - h));
    }
    if (!u->host || !*u->host || strpbrk(u->host, " \t@")) {
        *why = "no host";
        return -1;
    }
    if (hend < end && *hend == ':')
        port = hend + 1;
    u->port = 6379;
    if (port && (u->port = (int)number(port, (size_t)(end - port), 1, 65535)) < 0) {
        *why = "the port is a number from 1 to 65535";
        return -1;
    }
    if (slash && slash[1] && (u->db = (int)number(slash + 1, strlen(slash + 1), 0, 100000)) < 0) {
        *why = "the path is the database number (/0, /1, ...)";
        return -1;
    }
    return 0;
}

static int parse_unix(redis_uri *u, const char *s, const char **why)
{
    const char *q = strchr(s, '?');
    const char *end = q ? q : s + strlen(s);
    const char *p;
    /* credentials end at the '@' before the path's first '/' */
    const char *first_slash = memchr(s, '/', (size_t)(end - s));
    if (userinfo(u, s, first_slash ? first_slash : end, &p, why) < 0)
        return -1;
    if (*p != '/' || end - p < 2) {
        *why = "a Unix socket is written unix:///absolute/path";
        return -1;
    }
    if (!(u->path = strndup(p, (size_t)(end - p)))) {
        *why = "out of memory";
        return -1;
    }
    if (q) {
        if (strncmp(q, "?db=", 4) != 0 || (u->db = (int)number(q + 4, strlen(q + 4), 0, 100000)) < 0) {
            *why = "the only parameter is ?db=NUMBER";
            return -1;
        }
    }
    return 0;
}

int redis_uri_parse(const char *s, redis_uri *u, const char **why)
{
    memset(u, 0, sizeof(*u));
    *why = NULL;
    int rc;
    if (!s) {
        *why = "no URI";
        rc = -1;
    } else if (strncmp(s, "redis://", 8) == 0) {
        rc = parse_tcp(u, s + 8, why);
    } else if (strncmp(s, "rediss://", 9) == 0) {
        u->tls = true;
        rc = parse_tcp(u, s + 9, why);
    } else if (strncmp(s, "unix://", 7) == 0) {
        rc = parse_unix(u, s + 7, why);
    } else {
        *why = "expected redis://, rediss:// or unix://";
        rc = -1;
    }
    if (rc < 0) {
        if (!*why)
            *why = "out of memory";
        redis_uri_clear(u);
    }
    return rc;
}

void redis_uri_clear(redis_uri *u)
{
    if (u->password)
        xmppd_wipe(u->password, strlen(u->password));
    free(u->password);
    free(u->user);
    free(u->host);
    free(u->path);
    memset(u, 0, sizeof(*u));
}

const char *redis_uri_where(const redis_uri *u, char *buf, unsigned long len)
{
    if (u->path)
        snprintf(buf, len, "%s", u->path);
    else
        snprintf(buf, len, strchr(u->host, ':') ? "[%s]:%d" : "%s:%d", u->host, u->port);
    return buf;
}
