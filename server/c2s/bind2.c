/* Bind2 (XEP-0386): resource binding inside the SASL2 request.
 *
 * The resource is "TAG/ID" (§2.2.1; just "ID" without a usable <tag/>).
 * With a SASL2 <user-agent id/>, ID is a keyed hash of the account and
 * that id, so one device gets the same resource at every login without
 * the id showing in its JID; an earlier session of the same device (same
 * ID) is ended with <conflict/>. Without an id, ID is random.
 *
 * After binding, each child of the client's <bind/> but <tag/> goes to the
 * "bind2-inline" handlers (carbons, CSI, stream management), which answer
 * into <bound/>; then "bind2-bound" fires once, for what the server adds
 * unasked (XEP-0313 archive metadata, §2.2); its handlers may hold the
 * <success/> while they read their answer (xmppd_bind2_hold). Then
 * "resource-bound" fires as after an RFC 6120 bind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2s/c2s_conn.h"

#define TAG_MAX 64     /* bytes of a client tag that is used */
#define ID_BYTES 9     /* 12 base64url characters */

void bind2_add_feature(c2s_conn *c, xmppd_stanza *inline_el)
{
    xmppd_stanza *bind = xmppd_stanza_tag(inline_el, "bind", NS_BIND2);
    xmppd_stanza *features = xmppd_stanza_tag(bind, "inline", NS_BIND2);
    xmppd_event ev = { .name = "bind2-features", .host = c->s->host, .session = c->s,
                       .stanza = features };
    xmppd_fire_all(&ev);
}

/* The ID part: stable for account and device, else random. malloc'd. */
static char *device_id(c2s_conn *c, const char *ua_id)
{
    unsigned char h[32];
    if (ua_id) {
        const char *parts[] = { "xmppd bind2 resource", c->s->host->name, c->s->user, ua_id };
        if (c2s_keyed_hash(parts, 4, h) == 0)
            return c2s_b64url(h, ID_BYTES);
    }
    if (xmppd_random(h, ID_BYTES) < 0)
        return NULL;
    return c2s_b64url(h, ID_BYTES);
}

/* "TAG/ID" when the tag makes a valid resource, else "ID". malloc'd. */
static char *make_resource(const char *tag, const char *id)
{
    if (tag && *tag && strlen(tag) <= TAG_MAX) {
        size_t n = strlen(tag) + strlen(id) + 2;
        char *joined = malloc(n);
        if (joined) {
            snprintf(joined, n, "%s/%s", tag, id);
            char *res = xmppd_resourceprep(joined);
            free(joined);
            if (res)
                return res;
        }
    }
    return xmppd_resourceprep(id);
}

/* ---- earlier sessions of the same device --------------------------------------------- */

typedef struct same_device {
    const char *id, *resource;
    xmppd_session **v;
    size_t n, cap;
} same_device;

static bool ends_with_id(const char *resource, const char *id)
{
    size_t rl = strlen(resource), il = strlen(id);
    return rl == il ? strcmp(resource, id) == 0
                    : rl > il && resource[rl - il - 1] == '/' && strcmp(resource + rl - il, id) == 0;
}

static int collect_same_device(xmppd_session *s, void *ud)
{
    same_device *d = ud;
    const xmppd_jid *j = xmppd_session_jid(s);
    /* The same resource is replaced by the bind itself (RFC 6120 §7.7.2.2). */
    if (!j || !ends_with_id(j->resource, d->id) || strcmp(j->resource, d->resource) == 0)
        return 0;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        xmppd_session **v = realloc(d->v, cap * sizeof(*v));
        if (!v)
            return 1;
        d->v = v;
        d->cap = cap;
    }
    d->v[d->n++] = xmppd_session_ref(s);
    return 0;
}

/* §2.2: the server SHOULD end earlier sessions of the same client. They
 * are collected first: ending one changes the list being walked. */
static void end_same_device(c2s_conn *c, const char *id, const char *resource)
{
    same_device d = { .id = id, .resource = resource };
    xmppd_user_sessions(c->s->host, c->s->user, collect_same_device, &d);
    for (size_t i = 0; i < d.n; i++) {
        log_kernel("c2s", XMPPD_LOG_INFO, "%s: replaced by a new login of the same client",
                   d.v[i]->jid->full);
        xmppd_session_close(d.v[i], "conflict", "Replaced by a new login of the same client");
        xmppd_session_unref(d.v[i]);
    }
    free(d.v);
}

/* ---- bind ------------------------------------------------------------------------------- */

typedef struct inline_ctx {
    xmppd_stanza *bind, *bound;
} inline_ctx;

/* The connection whose "bind2-bound" handlers run (one loop thread). */
static c2s_conn *g_bound_firing;

void *bind2_hold(void *conn)
{
    c2s_conn *c = conn;
    if (c != g_bound_firing && !sasl2_inline_firing(c))
        return NULL;
    c->bind2_holds++;
    return c2s_ref(c);
}

void bind2_release(void *token)
{
    c2s_conn *c = token;
    if (--c->bind2_holds == 0)
        sasl2_bound_ready(c);
    c2s_unref(c);
}

static void fire_inline(c2s_conn *c, void *ud)
{
    inline_ctx *x = ud;
    for (xmppd_stanza *ch = xmppd_stanza_first(x->bind); ch; ch = xmppd_stanza_next(ch)) {
        if (strcmp(xmppd_stanza_name(ch), "tag") == 0 && strcmp(xmppd_stanza_ns(ch), NS_BIND2) == 0)
            continue;
        xmppd_event ev = { .name = "bind2-inline", .host = c->s->host, .session = c->s,
                           .stanza = ch, .data = x->bound };
        xmppd_fire_all(&ev);
    }
    xmppd_event ev = { .name = "bind2-bound", .host = c->s->host, .session = c->s,
                       .stanza = x->bind, .data = x->bound };
    g_bound_firing = c;
    xmppd_fire_all(&ev);
    g_bound_firing = NULL;
}

bool bind2_bind(c2s_conn *c, xmppd_stanza *bind, xmppd_stanza *success)
{
    const char *ua_id = c->req ? c->req->ua_id : NULL, *tag = c->req ? c->req->tag : NULL;
    char *id = device_id(c, ua_id);
    char *resource = id ? make_resource(tag, id) : NULL;
    xmppd_stanza *bound = resource ? xmppd_stanza_tag(success, "bound", NS_BIND2) : NULL;
    const char *cond = bound ? NULL : "internal-server-error";
    if (bound && ua_id)
        end_same_device(c, id, resource);
    inline_ctx x = { bind, bound };
    if (!cond)
        cond = c2s_bind(c, resource, bind, fire_inline, &x);
    if (cond) {
        /* The client can still bind the RFC 6120 way: the features say so. */
        log_kernel("c2s", XMPPD_LOG_INFO, "%s: Bind2 refused (%s)", c->s->tag, cond);
        if (bound)
            xmppd_stanza_remove(success, bound);
    }
    free(id);
    free(resource);
    return cond == NULL;
}
