/* XEP-0115 Entity Capabilities.
 *
 * The server's side: the verification string of the host's disco#info
 * (as mod_disco serves it, forms included) is advertised in the stream
 * features of authenticated streams, and disco#info to node#ver answers
 * with that same info.
 * The clients' side: the <c/> of each session's broadcast presence is kept
 * per session and offered to other modules (PEP) through the API "caps"
 * (struct caps_api below). */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#define CAPS_NS "http://jabber.org/protocol/caps"
#define CAPS_DISCO_INFO_NS "http://jabber.org/protocol/disco#info"
#define CAPS_DATA_NS "jabber:x:data"

typedef struct caps_conf {
    const char *node;
} caps_conf;

static const xmppd_option caps_options[] = {
    { "node", XMPPD_OPT_STRING, XMPPD_OFF(caps_conf, node), "https://xmppd.example/caps", 0, 0,
      NULL, 0, "the node URI advertised with the server's capabilities" },
    { NULL }
};

/* mod_disco's API "disco", version 1 (see modules/disco/README.md). */
typedef struct caps_disco_api {
    uint32_t version, size;
    xmppd_stanza *(*host_info)(const struct caps_disco_api *api);
} caps_disco_api;

/* The API "caps", version 1, published by this module. */
#define CAPS_API_VERSION 1
typedef struct caps_api {
    uint32_t version, size;
    /* The caps the session's last broadcast presence announced. Strings
     * are borrowed until the session's next presence or close. false (and
     * nothing written) when it announced none. */
    bool (*session_caps)(const struct caps_api *api, const xmppd_session *s,
                         const char **node_r, const char **ver_r, const char **hash_r);
    /* The host's own verification string, malloc'd (caller frees); NULL
     * when disco is not loaded or on OOM. */
    char *(*server_ver)(const struct caps_api *api);
} caps_api;

/* One session's announced caps: in its slot and the instance's list (unload
 * frees what "session-closed" did not); holds a session reference. */
typedef struct caps_sess {
    xmppd_session *s;
    char *node, *ver, *hash;
    struct caps_sess *prev, *next;
} caps_sess;

/* Module data; api first, so the API pointer is the state. */
typedef struct caps_state {
    caps_api api;
    xmppd_module *m;
    caps_sess *head;
} caps_state;

/* ---- the verification string (XEP-0115 §5.1) -------------------------------- */

/* A growing string; on OOM it turns NULL and stays so. */
typedef struct caps_buf {
    char *p;
    size_t len, cap;
} caps_buf;

static void caps_put(caps_buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (!b->p && b->cap)
        return; /* failed earlier */
    if (b->len + n + 2 > b->cap) {
        size_t cap = (b->cap ? b->cap : 256);
        while (cap < b->len + n + 2)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            free(b->p);
            b->p = NULL;
            b->cap = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s ? s : "", n);
    b->len += n;
    b->p[b->len++] = '<';
    b->p[b->len] = '\0';
}

static int caps_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Children of parent named name (in ns) as an array, NULL-terminated. */
static xmppd_stanza **caps_children(const xmppd_stanza *parent, const char *name, const char *ns,
                                    size_t *n_r)
{
    size_t n = 0;
    for (xmppd_stanza *c = xmppd_stanza_first(parent); c; c = xmppd_stanza_next(c))
        n += strcmp(xmppd_stanza_name(c), name) == 0 && (!ns || strcmp(xmppd_stanza_ns(c), ns) == 0);
    xmppd_stanza **v = calloc(n + 1, sizeof(*v));
    size_t i = 0;
    for (xmppd_stanza *c = xmppd_stanza_first(parent); c && v; c = xmppd_stanza_next(c))
        if (strcmp(xmppd_stanza_name(c), name) == 0 && (!ns || strcmp(xmppd_stanza_ns(c), ns) == 0))
            v[i++] = c;
    *n_r = v ? n : 0;
    return v;
}

static const char *caps_attr(const xmppd_stanza *s, const char *name)
{
    const char *v = xmppd_stanza_attr(s, name);
    return v ? v : "";
}

static int caps_cmp_identity(const void *a, const void *b)
{
    const xmppd_stanza *x = *(xmppd_stanza *const *)a, *y = *(xmppd_stanza *const *)b;
    static const char *const keys[] = { "category", "type", "xml:lang", "name" };
    for (size_t i = 0; i < 4; i++) {
        int c = strcmp(caps_attr(x, keys[i]), caps_attr(y, keys[i]));
        if (c)
            return c;
    }
    return 0;
}

/* The FORM_TYPE value of a form, or NULL. */
static const char *caps_form_type(const xmppd_stanza *x)
{
    for (xmppd_stanza *f = xmppd_stanza_first(x); f; f = xmppd_stanza_next(f))
        if (strcmp(caps_attr(f, "var"), "FORM_TYPE") == 0)
            return xmppd_stanza_child_text(f, "value", NULL);
    return NULL;
}

static int caps_cmp_form(const void *a, const void *b)
{
    const char *x = caps_form_type(*(xmppd_stanza *const *)a);
    const char *y = caps_form_type(*(xmppd_stanza *const *)b);
    return strcmp(x ? x : "", y ? y : "");
}

static int caps_cmp_field(const void *a, const void *b)
{
    return strcmp(caps_attr(*(xmppd_stanza *const *)a, "var"),
                  caps_attr(*(xmppd_stanza *const *)b, "var"));
}

/* field var, then its values sorted. */
static void caps_put_field(caps_buf *b, const xmppd_stanza *field)
{
    size_t n;
    xmppd_stanza **values = caps_children(field, "value", NULL, &n);
    const char **texts = values ? calloc(n + 1, sizeof(*texts)) : NULL;
    caps_put(b, caps_attr(field, "var"));
    for (size_t i = 0; texts && i < n; i++)
        texts[i] = xmppd_stanza_text(values[i]);
    if (texts)
        qsort(texts, n, sizeof(*texts), caps_cmp_str);
    for (size_t i = 0; texts && i < n; i++)
        caps_put(b, texts[i]);
    free(texts);
    free(values);
}

static void caps_put_form(caps_buf *b, const xmppd_stanza *x)
{
    size_t n;
    xmppd_stanza **fields = caps_children(x, "field", NULL, &n);
    caps_put(b, caps_form_type(x));
    if (!fields)
        return;
    qsort(fields, n, sizeof(*fields), caps_cmp_field);
    for (size_t i = 0; i < n; i++)
        if (strcmp(caps_attr(fields[i], "var"), "FORM_TYPE") != 0)
            caps_put_field(b, fields[i]);
    free(fields);
}

/* The string S of XEP-0115 §5.1 for a disco#info <query/>; malloc'd. */
static char *caps_string(const xmppd_stanza *q)
{
    caps_buf b = { 0 };
    size_t n_id, n_feat, n_form;
    xmppd_stanza **ids = caps_children(q, "identity", NULL, &n_id);
    xmppd_stanza **feats = caps_children(q, "feature", NULL, &n_feat);
    xmppd_stanza **forms = caps_children(q, "x", CAPS_DATA_NS, &n_form);
    const char **vars = calloc(n_feat + 1, sizeof(*vars));
    if (ids && feats && forms && vars) {
        qsort(ids, n_id, sizeof(*ids), caps_cmp_identity);
        for (size_t i = 0; i < n_id; i++) {
            char one[1024];
            snprintf(one, sizeof(one), "%s/%s/%s/%s", caps_attr(ids[i], "category"),
                     caps_attr(ids[i], "type"), caps_attr(ids[i], "xml:lang"),
                     caps_attr(ids[i], "name"));
            caps_put(&b, one);
        }
        for (size_t i = 0; i < n_feat; i++)
            vars[i] = caps_attr(feats[i], "var");
        qsort(vars, n_feat, sizeof(*vars), caps_cmp_str);
        for (size_t i = 0; i < n_feat; i++)
            caps_put(&b, vars[i]);
        qsort(forms, n_form, sizeof(*forms), caps_cmp_form);
        for (size_t i = 0; i < n_form; i++)
            if (caps_form_type(forms[i]))
                caps_put_form(&b, forms[i]);
    } else {
        free(b.p);
        b.p = NULL;
    }
    free(ids);
    free(feats);
    free(forms);
    free(vars);
    return b.p ? b.p : (b.cap ? NULL : strdup(""));
}

/* base64(SHA-1(S)), malloc'd; NULL on failure. */
static char *caps_hash(const char *s)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(s, strlen(s), md, &len, EVP_sha1(), NULL) != 1)
        return NULL;
    return xmppd_base64_encode(md, len);
}

/* The host's disco#info <query/> from mod_disco; NULL when not loaded. */
static xmppd_stanza *caps_host_info(caps_state *st)
{
    const caps_disco_api *d = xmppd_use(xmppd_module_host(st->m), "disco");
    if (!d || d->version < 1 || d->size < sizeof(*d) || !d->host_info)
        return NULL;
    return d->host_info(d);
}

static char *caps_server_ver(const caps_api *api)
{
    caps_state *st = (caps_state *)api;
    xmppd_stanza *q = caps_host_info(st);
    char *s = q ? caps_string(q) : NULL;
    char *ver = s ? caps_hash(s) : NULL;
    free(s);
    xmppd_stanza_unref(q);
    return ver;
}

/* ---- the server's caps ------------------------------------------------------ */

static int caps_on_features(xmppd_event *ev, void *ud)
{
    caps_state *st = ud;
    const caps_conf *c = xmppd_module_conf(st->m);
    if (!ev->session || !xmppd_session_authenticated(ev->session))
        return XMPPD_PASS;
    char *ver = caps_server_ver(&st->api);
    xmppd_stanza *el = ver ? xmppd_stanza_tag(ev->stanza, "c", CAPS_NS) : NULL;
    if (el) {
        xmppd_stanza_set_attr(el, "hash", "sha-1");
        xmppd_stanza_set_attr(el, "node", c->node);
        xmppd_stanza_set_attr(el, "ver", ver);
    }
    free(ver);
    return XMPPD_PASS;
}

/* disco#info to node#ver: the host's info, node attribute kept. */
static int caps_on_disco_info(xmppd_event *ev, void *ud)
{
    caps_state *st = ud;
    const caps_conf *c = xmppd_module_conf(st->m);
    const char *node = xmppd_stanza_attr(ev->stanza, "node");
    size_t nl = strlen(c->node);
    if (!node || (ev->to && ev->to->node) || strncmp(node, c->node, nl) != 0 || node[nl] != '#' ||
        xmppd_stanza_first(ev->stanza))
        return XMPPD_PASS;
    xmppd_stanza *q = caps_host_info(st);
    char *s = q ? caps_string(q) : NULL;
    char *ver = s ? caps_hash(s) : NULL;
    if (ver && strcmp(node + nl + 1, ver) == 0) {
        for (xmppd_stanza *child = xmppd_stanza_first(q); child; child = xmppd_stanza_next(child))
            xmppd_stanza_add(ev->stanza, xmppd_stanza_copy(child));
    }
    free(ver);
    free(s);
    xmppd_stanza_unref(q);
    return XMPPD_PASS;
}

/* ---- clients' caps ------------------------------------------------------------ */

static void caps_sess_clear(caps_sess *cs)
{
    free(cs->node);
    free(cs->ver);
    free(cs->hash);
    cs->node = cs->ver = cs->hash = NULL;
}

static void caps_sess_free(caps_state *st, caps_sess *cs)
{
    if (cs->prev)
        cs->prev->next = cs->next;
    else
        st->head = cs->next;
    if (cs->next)
        cs->next->prev = cs->prev;
    xmppd_session_set(cs->s, st->m, NULL);
    xmppd_session_unref(cs->s);
    caps_sess_clear(cs);
    free(cs);
}

/* The session's entry, created when missing; NULL on OOM. */
static caps_sess *caps_sess_get(caps_state *st, xmppd_session *s)
{
    caps_sess *cs = xmppd_session_get(s, st->m);
    if (cs || !(cs = calloc(1, sizeof(*cs))))
        return cs;
    cs->s = xmppd_session_ref(s);
    cs->next = st->head;
    if (st->head)
        st->head->prev = cs;
    st->head = cs;
    xmppd_session_set(s, st->m, cs);
    return cs;
}

static int caps_on_presence(xmppd_event *ev, void *ud)
{
    caps_state *st = ud;
    if (!ev->session || xmppd_stanza_attr(ev->stanza, "type"))
        return XMPPD_PASS; /* unavailable: keep what the client had */
    xmppd_stanza *c = xmppd_stanza_child(ev->stanza, "c", CAPS_NS);
    const char *node = c ? xmppd_stanza_attr(c, "node") : NULL;
    const char *ver = c ? xmppd_stanza_attr(c, "ver") : NULL;
    caps_sess *cs = node && ver ? caps_sess_get(st, ev->session) : xmppd_session_get(ev->session, st->m);
    if (!cs)
        return XMPPD_PASS;
    if (cs->ver && ver && strcmp(cs->ver, ver) == 0 && strcmp(cs->node, node) == 0)
        return XMPPD_PASS; /* unchanged, the usual case */
    caps_sess_clear(cs);
    if (node && ver) {
        const char *hash = xmppd_stanza_attr(c, "hash");
        cs->node = strdup(node);
        cs->ver = strdup(ver);
        cs->hash = strdup(hash ? hash : ""); /* legacy caps have no hash */
        if (!cs->node || !cs->ver || !cs->hash)
            caps_sess_clear(cs);
    }
    return XMPPD_PASS;
}

static int caps_on_closed(xmppd_event *ev, void *ud)
{
    caps_state *st = ud;
    caps_sess *cs = ev->session ? xmppd_session_get(ev->session, st->m) : NULL;
    if (cs)
        caps_sess_free(st, cs);
    return XMPPD_PASS;
}

static bool caps_session_caps(const caps_api *api, const xmppd_session *s, const char **node_r,
                              const char **ver_r, const char **hash_r)
{
    const caps_state *st = (const caps_state *)api;
    const caps_sess *cs = s ? xmppd_session_get(s, st->m) : NULL;
    if (!cs || !cs->ver)
        return false;
    if (node_r)
        *node_r = cs->node;
    if (ver_r)
        *ver_r = cs->ver;
    if (hash_r)
        *hash_r = cs->hash;
    return true;
}

/* ---- module -------------------------------------------------------------------- */

static void caps_unload(xmppd_module *m)
{
    caps_state *st = xmppd_module_data(m);
    if (!st)
        return;
    while (st->head)
        caps_sess_free(st, st->head);
    free(st);
    xmppd_module_set_data(m, NULL);
}

static int caps_load(xmppd_module *m, const void *conf)
{
    const caps_conf *c = conf;
    if (!c->node || !*c->node) {
        xmppd_log(m, XMPPD_LOG_ERROR, "option node: a URI is required");
        return -1;
    }
    caps_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -1;
    st->api = (caps_api){ CAPS_API_VERSION, sizeof(caps_api), caps_session_caps, caps_server_ver };
    st->m = m;
    xmppd_module_set_data(m, st);
    if (xmppd_hook(m, "stream-features", caps_on_features, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "disco-info", caps_on_disco_info, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "presence/broadcast", caps_on_presence, XMPPD_PRIO_DEFAULT + 10, st) < 0 ||
        xmppd_hook(m, "session-closed", caps_on_closed, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_disco_feature(m, CAPS_NS) < 0 || xmppd_provide(m, "caps", &st->api) < 0) {
        caps_unload(m);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(caps,
    .version = "1.0",
    .summary = "XEP-0115 entity capabilities: the server's in stream features, clients' cached",
    .depends = (const char *const[]){ "disco", NULL },
    .specs = (const char *const[]){ "XEP-0115", NULL },
    .options = caps_options,
    .conf_size = sizeof(caps_conf),
    .load = caps_load,
    .unload = caps_unload);
