/* The latest calls of the admin API, in memory, for the web console's
 * audit page (`audit_log`): a ring of recent_calls entries, each the time,
 * command, caller, address and status that the server log also gets.
 * It is lost on restart or reload: the log (and mod_log's audit log) is
 * the record; this is the glance at what happened last. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin_api.h"

struct api_audit {
    int64_t at_ms; /* wall clock */
    char command[48];
    char *caller;
    char ip[48];
    int status;
};

int api_audit_init(api_state *st, long long n)
{
    st->ring_size = (size_t)n;
    st->ring = n ? calloc((size_t)n, sizeof(*st->ring)) : NULL;
    return n && !st->ring ? -1 : 0;
}

void api_audit_free(api_state *st)
{
    for (size_t i = 0; i < st->ring_size; i++)
        free(st->ring[i].caller);
    free(st->ring);
    st->ring = NULL;
}

static void copy(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    n = n < size ? n : size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void api_audit_add(api_state *st, const char *command, const char *caller, const char *ip,
                   int status)
{
    if (!st->ring_size)
        return;
    api_audit *e = &st->ring[st->ring_next];
    free(e->caller);
    e->caller = strdup(caller); /* NULL on OOM: shown as "-" */
    e->at_ms = xmppd_wallclock_ms();
    copy(e->command, sizeof(e->command), command);
    copy(e->ip, sizeof(e->ip), ip);
    e->status = status;
    st->ring_next = (st->ring_next + 1) % st->ring_size;
    if (st->ring_used < st->ring_size)
        st->ring_used++;
}

/* audit_log {"limit"?}: the latest calls, newest first. */
void api_cmd_audit_log(api_call *c)
{
    api_state *st = c->st;
    size_t limit = st->ring_used;
    const json_t *l = json_object_get(c->args, "limit");
    if (l) {
        const char *s = json_string_value(l);
        char *end = NULL;
        long long v = s ? strtoll(s, &end, 10) : json_is_integer(l) ? json_integer_value(l) : -1;
        if ((s && (end == s || *end)) || v < 1) {
            api_fail(c, 400, "\"limit\": a positive number");
            return;
        }
        if ((size_t)v < limit)
            limit = (size_t)v;
    }
    json_t *out = json_array();
    for (size_t k = 0; out && k < limit; k++) {
        const api_audit *e = &st->ring[(st->ring_next + st->ring_size - 1 - k) % st->ring_size];
        char when[32];
        time_t t = (time_t)(e->at_ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(when + n, sizeof(when) - n, ".%03dZ", (int)(e->at_ms % 1000));
        json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s, s:i}", "time", when, "command",
                                             e->command, "caller", e->caller ? e->caller : "-",
                                             "ip", e->ip, "status", e->status));
    }
    if (out)
        api_ok(c, out);
    else
        api_fail(c, 500, "out of memory");
}
