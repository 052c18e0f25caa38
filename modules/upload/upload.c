/* mod_upload: XEP-0363 HTTP File Upload on a domain of its own
 * (upload.HOST, xmppd_domain_serve). A client asks the service for a
 * slot (§4) and gets a PUT URL, signed with the module's key over the
 * slot, the file name, its size and type, the uploader and an expiry, and
 * a GET URL; the HTTP side (upload_http.c) checks the signature against
 * the PUT request's own Content-Length and Content-Type. */
#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upload.h"

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

static const xmppd_option upload_options[] = {
    { "domain", XMPPD_OPT_STRING, XMPPD_OFF(upload_conf, domain), NULL, .min = 1,
      .doc = "the service's domain; default: upload.HOST" },
    { "path", XMPPD_OPT_PATH, XMPPD_OFF(upload_conf, dir), NULL, .flags = XMPPD_OPT_DATA,
      .doc = "folder for the files (relative: in data_dir); default: DATA_DIR/upload" },
    { "url_path", XMPPD_OPT_STRING, XMPPD_OFF(upload_conf, url_path), "\"/upload\"", .min = 2,
      .doc = "the URL path files live under on the http listeners" },
    { "max_file_size", XMPPD_OPT_SIZE, XMPPD_OFF(upload_conf, max_file_size), "10M", 1,
      1LL << 40, .doc = "largest file accepted (announced in disco, XEP-0363 section 3)" },
    { "quota", XMPPD_OPT_SIZE, XMPPD_OFF(upload_conf, quota), "100M", 0, 1LL << 50,
      .doc = "bytes one account may keep uploaded at once (0: no quota)" },
    { "expire_after", XMPPD_OPT_DURATION, XMPPD_OFF(upload_conf, expire_after), "7d", 0,
      3650LL * 86400000, .doc = "files are deleted this long after their upload (0: never)" },
    { "slot_timeout", XMPPD_OPT_DURATION, XMPPD_OFF(upload_conf, slot_timeout), "5m", 10000,
      86400000, .doc = "how long a slot's PUT URL may be used" },
    { "cleanup_interval", XMPPD_OPT_DURATION, XMPPD_OFF(upload_conf, cleanup_interval), "1h",
      1000, 86400000, .doc = "time between sweeps deleting expired files" },
    { "allow", XMPPD_OPT_LIST, XMPPD_OFF(upload_conf, allow), NULL,
      .doc = "who may upload: domains or bare JIDs; default: the accounts of the host (an "
             "access rule \"upload\" decides first when configured)" },
    { "cors_origins", XMPPD_OPT_LIST, XMPPD_OFF(upload_conf, cors_origins), "[\"*\"]",
      .doc = "web origins whose scripts may upload and download ([]: none)" },
    { "secret", XMPPD_OPT_STRING, XMPPD_OFF(upload_conf, secret), NULL, .min = 16,
      .flags = XMPPD_OPT_SECRET,
      .doc = "key signing PUT URLs (shared by a cluster); default: random per start" },
    { NULL }
};

/* ---- signing and naming -------------------------------------------------------------- */

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void upload_sign(const upload_mod *um, const char *slot, const char *name, long long size,
                 const char *ctype, const char *user, long long expires, char out[65])
{
    char msg[1200];
    /* NUL separators: no field can run into the next. */
    int n = snprintf(msg, sizeof(msg), "%s%c%s%c%lld%c%s%c%s%c%lld", slot, 0, name, 0, size, 0,
                     ctype, 0, user, 0, expires);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (n < 0 || (size_t)n >= sizeof(msg) ||
        !HMAC(EVP_sha256(), um->key, (int)um->key_len, (unsigned char *)msg, (size_t)n, md, &mdlen)) {
        memset(out, 0, 65); /* never matches: a real signature is hex */
        return;
    }
    hex(md, 32, out);
}

void upload_userdir(const upload_mod *um, const char *user, char out[UPLOAD_USERDIR_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    /* Keyed, so the directory does not tell who uploaded. */
    HMAC(EVP_sha256(), "userdir", 7, (const unsigned char *)user, strlen(user), md, &mdlen);
    hex(md, UPLOAD_USERDIR_LEN / 2, out);
}

bool upload_type_active(const char *ctype)
{
    /* Shown inline only for what a browser renders without running it. */
    static const char *const passive[] = { "image/png", "image/jpeg", "image/gif", "image/webp",
                                           "image/avif", "audio/", "video/", "text/plain",
                                           "application/pdf", NULL };
    for (const char *const *p = passive; *p; p++)
        if (strncasecmp(ctype, *p, strlen(*p)) == 0)
            return false;
    return true;
}

/* ---- the service: disco and slots ------------------------------------------------------ */

static bool allowed(const upload_mod *um, const xmppd_jid *from, const xmppd_session *sess)
{
    if (!from || !from->node)
        return false;
    /* The access rule "upload" decides first; the allow option is its
     * default. */
    int rule = xmppd_access(um->host, "upload", from, sess ? xmppd_session_ip(sess) : NULL);
    if (rule != XMPPD_ACCESS_DEFAULT)
        return rule == XMPPD_ACCESS_ALLOW;
    if (!um->conf->allow)
        return strcmp(from->domain, xmppd_host_name(um->host)) == 0;
    for (const char *const *a = um->conf->allow; *a; a++) {
        xmppd_jid *j = xmppd_jid_parse(*a);
        bool ok = j && strcmp(j->domain, from->domain) == 0 &&
                  (!j->node || strcmp(j->node, from->node) == 0);
        xmppd_jid_free(j);
        if (ok)
            return true;
    }
    return false;
}

static int disco_info(upload_mod *um, xmppd_event *ev, const xmppd_stanza *q)
{
    if (xmppd_stanza_attr(q, "node"))
        return xmppd_reply_error(ev, "cancel", "item-not-found", NULL);
    xmppd_stanza *r = xmppd_stanza_reply(ev->stanza);
    xmppd_stanza *query = r ? xmppd_stanza_tag(r, "query", NS_DISCO_INFO) : NULL;
    xmppd_stanza *id = query ? xmppd_stanza_tag(query, "identity", NS_DISCO_INFO) : NULL;
    if (!id) {
        xmppd_stanza_unref(r);
        return XMPPD_FAIL;
    }
    xmppd_stanza_set_attr(id, "category", "store");
    xmppd_stanza_set_attr(id, "type", "file");
    xmppd_stanza_set_attr(id, "name", "HTTP File Upload");
    xmppd_stanza_set_attr(xmppd_stanza_tag(query, "feature", NS_DISCO_INFO), "var", NS_DISCO_INFO);
    xmppd_stanza_set_attr(xmppd_stanza_tag(query, "feature", NS_DISCO_INFO), "var", UPLOAD_NS);
    /* §3: the size limit, as an extended disco form (XEP-0128). */
    char max[24];
    snprintf(max, sizeof(max), "%lld", um->conf->max_file_size);
    xmppd_stanza *form = xmppd_form_new("result", UPLOAD_NS, NULL);
    if (form && xmppd_form_add_field(form, "max-file-size", NULL, NULL, max))
        xmppd_stanza_add(query, form);
    else
        xmppd_stanza_unref(form);
    xmppd_reply(ev, r);
    return XMPPD_HANDLED;
}

static int disco_items(xmppd_event *ev, const xmppd_stanza *q)
{
    xmppd_stanza *r = xmppd_stanza_reply(ev->stanza);
    if (!r || !xmppd_stanza_tag(r, "query", NS_DISCO_ITEMS)) {
        xmppd_stanza_unref(r);
        return XMPPD_FAIL;
    }
    xmppd_reply(ev, r);
    return XMPPD_HANDLED;
}

typedef struct slot_req {
    upload_mod *um;
    xmppd_pending *p;
    char *name, *ctype, *user;
    long long size;
} slot_req;

static void slot_req_free(slot_req *sr)
{
    free(sr->name);
    free(sr->ctype);
    free(sr->user);
    free(sr);
}

/* Percent-encodes a path segment (RFC 3986 unreserved kept). */
static char *url_segment(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; out && *p; p++) {
        if (isalnum(*p) || strchr("-._~", *p))
            *o++ = (char)*p;
        else
            o += sprintf(o, "%%%02X", *p);
    }
    if (out)
        *o = '\0';
    return out;
}

static void answer_slot(slot_req *sr)
{
    upload_mod *um = sr->um;
    char userdir[UPLOAD_USERDIR_LEN + 1], rnd[UPLOAD_RANDOM_LEN / 2], rhex[UPLOAD_RANDOM_LEN + 1];
    char slot[UPLOAD_SLOT_LEN + 1], sig[65];
    upload_userdir(um, sr->user, userdir);
    if (xmppd_random(rnd, sizeof(rnd)) < 0) {
        xmppd_pending_error(sr->p, "wait", "internal-server-error", NULL);
        return;
    }
    hex((unsigned char *)rnd, sizeof(rnd), rhex);
    snprintf(slot, sizeof(slot), "%s-%s", userdir, rhex);
    long long expires = xmppd_wallclock_ms() / 1000 + um->conf->slot_timeout / 1000;
    upload_sign(um, slot, sr->name, sr->size, sr->ctype, sr->user, expires, sig);
    char *seg = url_segment(sr->name), *user = url_segment(sr->user);
    char path[2048], query[512];
    snprintf(path, sizeof(path), "%s/%s/%s", um->conf->url_path, slot, seg ? seg : "");
    snprintf(query, sizeof(query), "?u=%s&e=%lld&s=%s", user ? user : "", expires, sig);
    free(seg);
    free(user);
    char *get = xmppd_http_url(um->m, um->domain, path);
    char *put = get ? malloc(strlen(get) + strlen(query) + 1) : NULL;
    if (!put) {
        free(get);
        xmppd_log(um->m, XMPPD_LOG_ERROR, "no http listener: slots cannot be given");
        xmppd_pending_error(sr->p, "cancel", "service-unavailable", "No HTTP listener");
        return;
    }
    sprintf(put, "%s%s", get, query);
    xmppd_stanza *r = xmppd_stanza_reply(xmppd_pending_event(sr->p)->stanza);
    xmppd_stanza *s = r ? xmppd_stanza_tag(r, "slot", UPLOAD_NS) : NULL;
    xmppd_stanza *pe = s ? xmppd_stanza_tag(s, "put", UPLOAD_NS) : NULL;
    xmppd_stanza *ge = s ? xmppd_stanza_tag(s, "get", UPLOAD_NS) : NULL;
    if (pe && ge) {
        xmppd_stanza_set_attr(pe, "url", put);
        xmppd_stanza_set_attr(ge, "url", get);
    }
    free(put);
    free(get);
    xmppd_pending_reply(sr->p, pe && ge ? r : (xmppd_stanza_unref(r), NULL));
}

static void on_usage(long long used, void *ud)
{
    slot_req *sr = ud;
    if (used == -2) {
        xmppd_pending_drop(sr->p);
    } else if (used < 0) {
        xmppd_pending_error(sr->p, "wait", "internal-server-error", NULL);
    } else if (sr->um->conf->quota && used + sr->size > sr->um->conf->quota) {
        /* §4.1: over quota, come back when some files expired. */
        xmppd_pending_error(sr->p, "wait", "resource-constraint", "Quota reached");
    } else {
        answer_slot(sr);
    }
    slot_req_free(sr);
}

/* §4.1: too large, with the limit. */
static int too_large(upload_mod *um, xmppd_event *ev)
{
    xmppd_stanza *e = xmppd_stanza_error_reply(ev->stanza, "modify", "not-acceptable",
                                               "File too large");
    xmppd_stanza *err = e ? xmppd_stanza_child(e, "error", NULL) : NULL;
    xmppd_stanza *ftl = err ? xmppd_stanza_tag(err, "file-too-large", UPLOAD_NS) : NULL;
    xmppd_stanza *max = ftl ? xmppd_stanza_tag(ftl, "max-file-size", UPLOAD_NS) : NULL;
    if (!max) {
        xmppd_stanza_unref(e);
        return XMPPD_FAIL;
    }
    char v[24];
    snprintf(v, sizeof(v), "%lld", um->conf->max_file_size);
    xmppd_stanza_add_text(max, v, strlen(v));
    xmppd_reply(ev, e);
    return XMPPD_HANDLED;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > UPLOAD_MAX_NAME || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7F || *p == '/' || *p == '\\')
            return false;
    return true;
}

static bool valid_ctype(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255 || !strchr(s, '/'))
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p >= 0x7F || strchr("\"\\<>", *p))
            return false;
    return true;
}

static int slot_request(upload_mod *um, xmppd_event *ev, const xmppd_stanza *req)
{
    if (!allowed(um, ev->from, ev->session))
        return xmppd_reply_error(ev, "auth", "forbidden", "You may not upload files here");
    const char *name = xmppd_stanza_attr(req, "filename"), *size = xmppd_stanza_attr(req, "size");
    const char *ctype = xmppd_stanza_attr(req, "content-type");
    char *end = NULL;
    errno = 0;
    long long n = size ? strtoll(size, &end, 10) : -1;
    if (!name || !valid_name(name) || !size || !*size || *end || errno || n <= 0 ||
        (ctype && !valid_ctype(ctype)))
        return xmppd_reply_error(ev, "modify", "bad-request", "filename, size or content-type");
    if (n > um->conf->max_file_size)
        return too_large(um, ev);
    slot_req *sr = calloc(1, sizeof(*sr));
    if (!sr || !(sr->p = xmppd_pending_new(ev)) || !(sr->name = strdup(name)) ||
        !(sr->ctype = strdup(ctype ? ctype : "application/octet-stream")) ||
        !(sr->user = strdup(ev->from->node))) {
        if (sr && sr->p)
            xmppd_pending_drop(sr->p);
        if (sr)
            slot_req_free(sr);
        return XMPPD_FAIL;
    }
    sr->um = um;
    sr->size = n;
    upload_usage(um, sr->user, on_usage, sr);
    return XMPPD_HANDLED;
}

static int on_stanza(xmppd_event *ev, void *ud)
{
    upload_mod *um = ud;
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    char kind = ev->name[0];
    if (kind == 'p')
        return XMPPD_HANDLED; /* presence to the service means nothing */
    if (kind == 'm' || ev->to->node || ev->to->resource)
        return type && (strcmp(type, "error") == 0 || strcmp(type, "result") == 0)
                   ? XMPPD_HANDLED
                   : xmppd_reply_error(ev, "cancel", "service-unavailable", NULL);
    if (!type || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0))
        return XMPPD_HANDLED;
    xmppd_stanza *q = xmppd_stanza_first(ev->stanza);
    if (q && strcmp(type, "get") == 0 && strcmp(xmppd_stanza_ns(q), NS_DISCO_INFO) == 0)
        return disco_info(um, ev, q);
    if (q && strcmp(type, "get") == 0 && strcmp(xmppd_stanza_ns(q), NS_DISCO_ITEMS) == 0)
        return disco_items(ev, q);
    if (q && strcmp(type, "get") == 0 && strcmp(xmppd_stanza_ns(q), UPLOAD_NS) == 0 &&
        strcmp(xmppd_stanza_name(q), "request") == 0)
        return slot_request(um, ev, q);
    return xmppd_reply_error(ev, "cancel", "service-unavailable", NULL);
}

/* The host's disco#items lists the service. */
static int on_disco_items(xmppd_event *ev, void *ud)
{
    upload_mod *um = ud;
    if (!ev->to || ev->to->node || xmppd_stanza_attr(ev->stanza, "node"))
        return XMPPD_PASS;
    xmppd_stanza *item = xmppd_stanza_tag(ev->stanza, "item", NULL);
    if (item) {
        xmppd_stanza_set_attr(item, "jid", um->domain);
        xmppd_stanza_set_attr(item, "name", "HTTP File Upload");
    }
    return XMPPD_PASS;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void upload_free(upload_mod *um)
{
    free(um->domain);
    free(um->dir);
    xmppd_wipe(um->key, sizeof(um->key));
    free(um);
}

static int refuse(xmppd_module *m, upload_mod *um, const char *why, const char *what)
{
    upload_free(um);
    return xmppd_module_refuse(m, "%s%s%s", why, what ? " " : "", what ? what : "");
}

static int upload_load(xmppd_module *m, const void *conf)
{
    const upload_conf *c = conf;
    upload_mod *um = calloc(1, sizeof(*um));
    if (!um)
        return xmppd_module_refuse(m, "out of memory");
    um->m = m;
    um->conf = c;
    um->host = xmppd_module_host(m);
    if (!um->host)
        return refuse(m, um, "mod_upload serves one host and needs one", NULL);
    char buf[1200];
    snprintf(buf, sizeof(buf), "upload.%s", xmppd_host_name(um->host));
    if (!(um->domain = xmppd_nameprep(c->domain ? c->domain : buf)))
        return refuse(m, um, "domain: not a valid domain:", c->domain ? c->domain : buf);
    if (c->url_path[0] != '/' || c->url_path[strlen(c->url_path) - 1] == '/' ||
        strpbrk(c->url_path, "?#% "))
        return refuse(m, um, "url_path: expected a path such as /upload, got", c->url_path);
    if (c->secret) {
        um->key_len = strlen(c->secret) < sizeof(um->key) ? strlen(c->secret) : sizeof(um->key);
        memcpy(um->key, c->secret, um->key_len);
    } else {
        um->key_len = sizeof(um->key);
        if (xmppd_random(um->key, um->key_len) < 0)
            return refuse(m, um, "no random bytes for the signing key", NULL);
    }
    if (c->dir)
        snprintf(buf, sizeof(buf), "%s/%s", c->dir, xmppd_host_name(um->host));
    else
        snprintf(buf, sizeof(buf), "%s/upload/%s", xmppd_data_dir(), xmppd_host_name(um->host));
    if (!(um->dir = strdup(buf)))
        return refuse(m, um, "out of memory", NULL);
    if (upload_mkdirs(um->dir) < 0)
        return refuse(m, um, "cannot create the folder", um->dir);
    if (!(um->store = xmppd_store_open(m, "upload", XMPPD_STORE_KEYVAL)))
        return refuse(m, um, "no storage driver is loaded", NULL);
    xmppd_module_set_data(m, um);
    if (xmppd_domain_serve(m, um->domain, on_stanza, um) < 0) {
        xmppd_module_set_data(m, NULL);
        return refuse(m, um, "a host, a component or another module has the domain", um->domain);
    }
    if (xmppd_hook(m, "disco-items", on_disco_items, XMPPD_PRIO_DEFAULT, um) < 0 ||
        upload_http_start(um) < 0 || upload_files_start(um) < 0) {
        xmppd_module_set_data(m, NULL);
        return refuse(m, um, "cannot register its routes and hooks", NULL);
    }
    return 0;
}

static void upload_unload(xmppd_module *m)
{
    upload_mod *um = xmppd_module_data(m);
    if (um)
        upload_free(um);
}

XMPPD_MODULE(upload, .version = "1.0",
             .summary = "XEP-0363 HTTP file upload on upload.HOST: slots, signed PUT URLs, quota, expiry",
             .specs = (const char *const[]){ "XEP-0363", NULL },
             .options = upload_options, .conf_size = sizeof(upload_conf),
             .load = upload_load, .unload = upload_unload);
