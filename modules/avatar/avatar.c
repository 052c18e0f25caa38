/* XEP-0398 User Avatar to vCard-Based Avatars Conversion, so clients of
 * XEP-0084 (PEP avatars) and of XEP-0153 (vCard avatars) see each other's
 * pictures:
 *
 *  - PEP to vCard (§3.1): a client's publication to urn:xmpp:avatar:metadata
 *    puts the data item it names (checked against its SHA-1 id) into the
 *    account's vCard PHOTO; an empty <metadata/> (avatar off) removes it;
 *  - vCard to PEP (§3.2): a client's vCard with a PHOTO publishes the data
 *    item (id: the SHA-1 of the image) then the metadata item;
 *  - presence (§4, XEP-0153 §3.1): available presence from the account's
 *    clients carries <x xmlns='vcard-temp:x:update'><photo>SHA-1</photo></x>
 *    unless the client said <photo/> or gave a hash itself;
 *  - the feature urn:xmpp:pep-vcard-conversion:0 on the account (§2).
 *
 * Conversions the module makes itself are not converted back: its PEP
 * publications have no publisher and its vCard writes are by_module. */
#define _GNU_SOURCE /* tdestroy */
#include <ctype.h>
#include <openssl/evp.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "../pep/pep_api.h"
#include "../vcard/vcard_api.h"

#define AV_NS_DATA "urn:xmpp:avatar:data"
#define AV_NS_META "urn:xmpp:avatar:metadata"
#define AV_NS_UPDATE "vcard-temp:x:update"
#define AV_NS_VCARD "vcard-temp"
#define AV_FEATURE "urn:xmpp:pep-vcard-conversion:0"
#define AV_SHA1_HEX 41

/* The vCard photo hash of an online account ("" for none), for presence. */
typedef struct av_hash {
    char *user;
    char hash[AV_SHA1_HEX];
} av_hash;

typedef struct av_state {
    xmppd_module *m;
    xmppd_host *host;
    void *hashes; /* tsearch tree of av_hash *, by user */
} av_state;

/* ---- images -------------------------------------------------------------------------- */

/* text without whitespace (vCards wrap base64 lines), decoded; *len_r the
 * size. NULL when it is not base64. */
static unsigned char *av_decode(const char *text, size_t *len_r)
{
    size_t n = strlen(text), k = 0;
    char *compact = malloc(n + 1);
    if (!compact)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)text[i]))
            compact[k++] = text[i];
    compact[k] = '\0';
    unsigned char *out = NULL;
    if (k == 0 || xmppd_base64_decode(compact, k, &out, len_r) < 0)
        out = NULL;
    free(compact);
    return out;
}

/* Lowercase hex SHA-1 of the bytes (XEP-0153, XEP-0084 ids). */
static bool av_sha1_hex(const unsigned char *data, size_t len, char out[AV_SHA1_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return false;
    for (unsigned i = 0; i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return true;
}

/* The PHOTO of a vCard: its BINVAL decoded, hash and type; NULL without
 * one (or when it is not base64). */
static unsigned char *av_vcard_photo(const xmppd_stanza *vc, size_t *len_r, char hash[AV_SHA1_HEX],
                                     const char **type_r)
{
    const xmppd_stanza *photo = vc ? xmppd_stanza_child(vc, "PHOTO", AV_NS_VCARD) : NULL;
    const char *bin = photo ? xmppd_stanza_child_text(photo, "BINVAL", AV_NS_VCARD) : NULL;
    unsigned char *data = bin ? av_decode(bin, len_r) : NULL;
    if (data && !av_sha1_hex(data, *len_r, hash)) {
        free(data);
        return NULL;
    }
    if (type_r) {
        const char *t = photo ? xmppd_stanza_child_text(photo, "TYPE", AV_NS_VCARD) : NULL;
        *type_r = t && *t ? t : "image/png";
    }
    return data;
}

/* ---- the presence hash cache (XEP-0153) ------------------------------------------------ */

static int av_cmp(const void *a, const void *b)
{
    return strcmp(((const av_hash *)a)->user, ((const av_hash *)b)->user);
}

static av_hash *av_find(av_state *st, const char *user)
{
    av_hash key = { .user = (char *)user };
    av_hash **p = tfind(&key, &st->hashes, av_cmp);
    return p ? *p : NULL;
}

static void av_hash_free(void *p)
{
    av_hash *h = p;
    free(h->user);
    free(h);
}

/* Remembers user's photo hash (from vc; NULL: none). */
static void av_remember(av_state *st, const char *user, const xmppd_stanza *vc)
{
    av_hash *h = av_find(st, user);
    if (!h) {
        if (!(h = calloc(1, sizeof(*h))) || !(h->user = strdup(user))) {
            free(h);
            return;
        }
        if (!tsearch(h, &st->hashes, av_cmp)) {
            av_hash_free(h);
            return;
        }
    }
    size_t len;
    unsigned char *data = av_vcard_photo(vc, &len, h->hash, NULL);
    if (!data)
        h->hash[0] = '\0';
    free(data);
}

static const vcard_api *av_vcard(const av_state *st)
{
    const vcard_api *a = xmppd_use(st->host, "vcard");
    return a && a->version >= 2 && a->size >= sizeof(vcard_api) ? a : NULL;
}

static const pep_api *av_pep(const av_state *st)
{
    const pep_api *a = xmppd_use(st->host, "pep");
    return a && a->version == PEP_API_VERSION && a->size >= sizeof(pep_api) ? a : NULL;
}

/* A job about one account. */
typedef struct av_job {
    av_state *st;
    char *user;
    char *id, *type;       /* the avatar's SHA-1 and MIME type */
    char *b64;             /* its data, base64 without whitespace */
    size_t bytes;
} av_job;

static av_job *av_job_new(av_state *st, const char *user)
{
    av_job *j = calloc(1, sizeof(*j));
    if (j && !(j->user = strdup(user))) {
        free(j);
        return NULL;
    }
    if (j)
        j->st = st;
    return j;
}

static void av_job_free(av_job *j)
{
    free(j->user);
    free(j->id);
    free(j->type);
    free(j->b64);
    free(j);
}

static void av_on_vcard_loaded(int status, const xmppd_stanza *vc, void *ud)
{
    av_job *j = ud;
    if (status == 0)
        av_remember(j->st, j->user, vc);
    av_job_free(j);
}

/* After SASL: the hash is known before the client's first presence. */
static int av_on_auth(xmppd_event *ev, void *ud)
{
    av_state *st = ud;
    const char *user = ev->data;
    const vcard_api *v = av_vcard(st);
    av_job *j = user && v && !av_find(st, user) ? av_job_new(st, user) : NULL;
    if (j)
        v->get(v, st->m, user, av_on_vcard_loaded, j);
    return XMPPD_PASS;
}

static int av_any(xmppd_session *s, void *ud)
{
    (void)s;
    (void)ud;
    return 1;
}

static int av_on_closed(xmppd_event *ev, void *ud)
{
    av_state *st = ud;
    const char *user = ev->session ? xmppd_session_user(ev->session) : NULL;
    av_hash *h = user ? av_find(st, user) : NULL;
    if (h && xmppd_user_sessions(st->host, user, av_any, NULL) == 0) {
        tdelete(h, &st->hashes, av_cmp);
        av_hash_free(h);
    }
    return XMPPD_PASS;
}

/* XEP-0398 §4: the hash in every available presence from a client. */
static int av_on_pre_route(xmppd_event *ev, void *ud)
{
    av_state *st = ud;
    const char *user = ev->session ? xmppd_session_user(ev->session) : NULL;
    if (!user || strcmp(xmppd_stanza_name(ev->stanza), "presence") != 0 ||
        xmppd_stanza_attr(ev->stanza, "type"))
        return XMPPD_PASS;
    const av_hash *h = av_find(st, user);
    xmppd_stanza *x = xmppd_stanza_child(ev->stanza, "x", AV_NS_UPDATE);
    if (!h || (x && xmppd_stanza_child(x, "photo", AV_NS_UPDATE)))
        return XMPPD_PASS; /* unknown yet, or the client's own word */
    if (!x)
        x = xmppd_stanza_tag(ev->stanza, "x", AV_NS_UPDATE);
    xmppd_stanza *photo = x ? xmppd_stanza_tag(x, "photo", AV_NS_UPDATE) : NULL;
    if (photo && h->hash[0])
        xmppd_stanza_add_text(photo, h->hash, strlen(h->hash));
    return XMPPD_PASS;
}

/* ---- vCard to PEP (§3.2) --------------------------------------------------------------------- */

static void av_on_meta_published(int rc, const char *error, void *ud)
{
    av_job *j = ud;
    if (rc < 0)
        xmppd_log(j->st->m, XMPPD_LOG_WARN, "avatar metadata of %s not published: %s", j->user, error);
    av_job_free(j);
}

static void av_on_data_published(int rc, const char *error, void *ud)
{
    av_job *j = ud;
    const pep_api *p = av_pep(j->st);
    if (rc < 0 || !p) {
        xmppd_log(j->st->m, XMPPD_LOG_WARN, "avatar data of %s not published: %s", j->user,
                  error ? error : "no PEP");
        av_job_free(j);
        return;
    }
    char bytes[32];
    snprintf(bytes, sizeof(bytes), "%zu", j->bytes);
    xmppd_stanza *meta = xmppd_stanza_new("metadata", AV_NS_META);
    xmppd_stanza *info = meta ? xmppd_stanza_tag(meta, "info", NULL) : NULL;
    if (!info) {
        xmppd_stanza_unref(meta);
        av_job_free(j);
        return;
    }
    xmppd_stanza_set_attr(info, "bytes", bytes);
    xmppd_stanza_set_attr(info, "id", j->id);
    xmppd_stanza_set_attr(info, "type", j->type);
    p->publish(p, j->st->m, j->user, AV_NS_META, j->id, meta, NULL, av_on_meta_published, j);
    xmppd_stanza_unref(meta);
}

/* Publishes the vCard's photo as the account's PEP avatar. */
static void av_vcard_to_pep(av_state *st, const char *user, const xmppd_stanza *vc)
{
    size_t len;
    char hash[AV_SHA1_HEX];
    const char *type;
    const pep_api *p = av_pep(st);
    unsigned char *data = p ? av_vcard_photo(vc, &len, hash, &type) : NULL;
    av_job *j = data ? av_job_new(st, user) : NULL;
    xmppd_stanza *el = j ? xmppd_stanza_new("data", AV_NS_DATA) : NULL;
    if (el && (j->id = strdup(hash)) && (j->type = strdup(type)) &&
        (j->b64 = xmppd_base64_encode(data, len)) &&
        xmppd_stanza_add_text(el, j->b64, strlen(j->b64)) == 0) {
        j->bytes = len;
        p->publish(p, st->m, user, AV_NS_DATA, j->id, el, NULL, av_on_data_published, j);
    } else if (j) {
        av_job_free(j);
    }
    xmppd_stanza_unref(el);
    free(data);
}

static int av_on_vcard_changed(xmppd_event *ev, void *ud)
{
    av_state *st = ud;
    const vcard_change *ch = ev->data;
    if (!ch)
        return XMPPD_PASS;
    if (av_find(st, ch->user))
        av_remember(st, ch->user, ch->vcard);
    if (!ch->by_module && ch->vcard)
        av_vcard_to_pep(st, ch->user, ch->vcard);
    return XMPPD_PASS;
}

/* ---- PEP to vCard (§3.1) ----------------------------------------------------------------------- */

static void av_on_vcard_written(int status, void *ud)
{
    av_job *j = ud;
    if (status < 0 && status != VCARD_CANCELLED)
        xmppd_log(j->st->m, XMPPD_LOG_WARN, "the vCard of %s could not take the avatar", j->user);
    av_job_free(j);
}

/* The vCard with the job's photo in PHOTO (or without PHOTO when the job
 * has no data), the rest kept. */
static xmppd_stanza *av_vcard_with_photo(const xmppd_stanza *old, const av_job *j)
{
    xmppd_stanza *vc = old ? xmppd_stanza_copy(old) : xmppd_stanza_new("vCard", AV_NS_VCARD);
    xmppd_stanza *photo;
    while (vc && (photo = xmppd_stanza_child(vc, "PHOTO", AV_NS_VCARD)))
        xmppd_stanza_remove(vc, photo);
    if (!vc || !j->b64)
        return vc;
    photo = xmppd_stanza_tag(vc, "PHOTO", AV_NS_VCARD);
    xmppd_stanza *type = photo ? xmppd_stanza_tag(photo, "TYPE", AV_NS_VCARD) : NULL;
    xmppd_stanza *bin = type ? xmppd_stanza_tag(photo, "BINVAL", AV_NS_VCARD) : NULL;
    if (!bin || xmppd_stanza_add_text(type, j->type, strlen(j->type)) < 0 ||
        xmppd_stanza_add_text(bin, j->b64, strlen(j->b64)) < 0) {
        xmppd_stanza_unref(vc);
        return NULL;
    }
    return vc;
}

static void av_on_old_vcard(int status, const xmppd_stanza *old, void *ud)
{
    av_job *j = ud;
    const vcard_api *v = av_vcard(j->st);
    xmppd_stanza *vc = status == 0 && v ? av_vcard_with_photo(old, j) : NULL;
    if (!vc) {
        av_on_vcard_written(status == VCARD_CANCELLED ? VCARD_CANCELLED : -1, j);
        return;
    }
    if (av_find(j->st, j->user))
        av_remember(j->st, j->user, vc);
    v->set(v, j->st->m, j->user, vc, av_on_vcard_written, j);
    xmppd_stanza_unref(vc);
}

/* The data item the metadata names: checked, then into the vCard. */
static void av_on_data_items(int status, const xmppd_stanza *items, void *ud)
{
    av_job *j = ud;
    const vcard_api *v = av_vcard(j->st);
    const xmppd_stanza *it = NULL;
    for (it = items ? xmppd_stanza_first(items) : NULL; it; it = xmppd_stanza_next(it))
        if (strcmp(xmppd_stanza_attr(it, "id") ? xmppd_stanza_attr(it, "id") : "", j->id) == 0)
            break;
    const char *text = it ? xmppd_stanza_child_text(it, "data", AV_NS_DATA) : NULL;
    size_t len = 0;
    unsigned char *data = status == 0 && text ? av_decode(text, &len) : NULL;
    char hash[AV_SHA1_HEX];
    /* §3.1: the SHA-1 of the image should be the id. */
    bool ok = data && v && av_sha1_hex(data, len, hash) && strcmp(hash, j->id) == 0 &&
              (j->b64 = xmppd_base64_encode(data, len));
    free(data);
    if (!ok) {
        xmppd_log(j->st->m, XMPPD_LOG_INFO, "avatar %s of %s: no data item matching its id",
                  j->id, j->user);
        av_job_free(j);
        return;
    }
    v->get(v, j->st->m, j->user, av_on_old_vcard, j);
}

static void av_pep_to_vcard(av_state *st, const pep_change *ch)
{
    const xmppd_stanza *meta = ch->payload;
    const xmppd_stanza *info = NULL;
    bool any = false;
    for (const xmppd_stanza *c = meta ? xmppd_stanza_first(meta) : NULL; c; c = xmppd_stanza_next(c)) {
        if (strcmp(xmppd_stanza_name(c), "info") != 0)
            continue;
        any = true;
        /* §3.1: the info that does not point to an external URL. */
        if (!info && !xmppd_stanza_attr(c, "url") && xmppd_stanza_attr(c, "id"))
            info = c;
    }
    av_job *j = (info || !any) && meta ? av_job_new(st, ch->user) : NULL;
    const vcard_api *v = av_vcard(st);
    const pep_api *p = av_pep(st);
    if (!j || !v || !p) {
        if (j)
            av_job_free(j);
        return;
    }
    if (!info) { /* <metadata/> with no info: the avatar is off */
        v->get(v, j->st->m, j->user, av_on_old_vcard, j);
        return;
    }
    const char *type = xmppd_stanza_attr(info, "type");
    if (!(j->id = strdup(xmppd_stanza_attr(info, "id"))) || !(j->type = strdup(type ? type : "image/png"))) {
        av_job_free(j);
        return;
    }
    p->items(p, j->st->m, j->user, AV_NS_DATA, av_on_data_items, j);
}

static int av_on_pep_changed(xmppd_event *ev, void *ud)
{
    const pep_change *ch = ev->data;
    if (ch && ch->publisher && strcmp(ch->kind, "items") == 0 && strcmp(ch->node, AV_NS_META) == 0)
        av_pep_to_vcard(ud, ch);
    return XMPPD_PASS;
}

/* ---- disco (§2) ------------------------------------------------------------------------------------ */

static int av_on_disco_info(xmppd_event *ev, void *ud)
{
    (void)ud;
    if (!ev->to || !ev->to->node || xmppd_stanza_attr(ev->stanza, "node"))
        return XMPPD_PASS;
    xmppd_stanza *f = xmppd_stanza_tag(ev->stanza, "feature", NULL);
    if (f)
        xmppd_stanza_set_attr(f, "var", AV_FEATURE);
    return XMPPD_PASS;
}

/* ---- module ---------------------------------------------------------------------------------------- */

static void av_unload(xmppd_module *m)
{
    av_state *st = xmppd_module_data(m);
    if (!st)
        return;
    tdestroy(st->hashes, av_hash_free);
    free(st);
    xmppd_module_set_data(m, NULL);
}

static int av_load(xmppd_module *m, const void *conf)
{
    (void)conf;
    av_state *st = calloc(1, sizeof(*st));
    if (!st)
        return xmppd_module_refuse(m, "out of memory");
    st->m = m;
    st->host = xmppd_module_host(m);
    xmppd_module_set_data(m, st);
    if (xmppd_hook(m, PEP_EVENT_CHANGED, av_on_pep_changed, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, VCARD_EVENT_CHANGED, av_on_vcard_changed, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "auth-success", av_on_auth, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "session-closed", av_on_closed, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "pre-route", av_on_pre_route, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "disco-info", av_on_disco_info, XMPPD_PRIO_DEFAULT, st) < 0) {
        av_unload(m);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(avatar,
    .version = "1.0",
    .summary = "XEP-0398 avatar conversion between PEP (XEP-0084) and vCards (XEP-0153)",
    .depends = (const char *const[]){ "pep", "vcard", NULL },
    .specs = (const char *const[]){ "XEP-0084", "XEP-0153", "XEP-0398", NULL },
    .load = av_load,
    .unload = av_unload);
