/* One XEP-0227 <user/> into this host, all or nothing.
 *
 * Storage has no transactions across stores, so the account record is the
 * commit: (1) an account that exists already is skipped (an import run
 * twice changes nothing the second time); (2) the archives it will fill
 * are emptied of what an earlier import that did not finish left; (3) every
 * piece of data is written; (4) the account is created last, from its
 * password or SCRAM keys. A failure in (3) or (4) removes what (3) wrote,
 * so an account never appears with part of its data. Whatever the file
 * holds that cannot be imported is reported, with why, in "skipped". */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../mam/mam_time.h"
#include "pie.h"

enum im_phase { IM_EXISTS, IM_CLEAR, IM_WRITE, IM_CREATE, IM_ROLLBACK };

typedef struct im_job {
    pie_mod *mod;
    pie_batch *b;
    size_t i;
    char *user;                 /* nodeprepped localpart */
    enum im_phase phase;
    int pending;
    char error[256];            /* set: the import failed */
    const char *status;         /* "imported", "skipped", "failed" */
    json_t *counts, *skipped;
    /* what will be written */
    char *password;             /* wiped */
    xmppd_scram_keys keys[XMPPD_HASH_COUNT]; /* wiped */
    bool have[XMPPD_HASH_COUNT];
    json_t *roster;             /* the roster module's document, or NULL */
    char *vcard;
    json_t *private_xml;        /* {"name|ns": xml} */
    json_t *pep;                /* {key: value} */
    json_t *offline;            /* [{with, when, xml}] */
    json_t *mam;                /* [{id, with, when, xml}] */
} im_job;

static void im_free(im_job *j)
{
    if (j->password) {
        xmppd_wipe(j->password, strlen(j->password));
        free(j->password);
    }
    xmppd_wipe(j->keys, sizeof(j->keys));
    json_decref(j->counts);
    json_decref(j->skipped);
    json_decref(j->roster);
    free(j->vcard);
    json_decref(j->private_xml);
    json_decref(j->pep);
    json_decref(j->offline);
    json_decref(j->mam);
    free(j->user);
    free(j);
}

static void im_finish(im_job *j)
{
    json_t *r = json_pack("{s:s?, s:s, s:s?, s:O, s:O}", "user", j->user, "status", j->status,
                          "reason", j->error[0] ? j->error : NULL, "counts", j->counts,
                          "skipped", j->skipped);
    json_array_set_new(j->b->results, j->i, r);
    pie_batch_done(j->b);
    im_free(j);
}

static void skip(im_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void skip(im_job *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_array_append_new(j->skipped, json_vsprintf(fmt, ap));
    va_end(ap);
}

static void count(im_job *j, const char *what, json_int_t n)
{
    if (n > 0)
        json_object_set_new(j->counts, what, json_integer(n));
}

/* ---- parsing the element ----------------------------------------------------------- */

static bool is_pie_ns(const char *ns)
{
    return !ns || !*ns || strcmp(ns, PIE_NS) == 0 || strcmp(ns, PIE_NS_OLD) == 0;
}

static char *bare_of(const char *jid)
{
    xmppd_jid *p = jid ? xmppd_jid_parse(jid) : NULL;
    char *b = p ? strdup(p->bare) : NULL;
    xmppd_jid_free(p);
    return b;
}

/* A base64 field of <scram-credentials/>; twice: decoded twice. ejabberd
 * (up to 23.x at least) writes salt, server-key and stored-key base64
 * encoded twice; its keys are recognised by their length after one
 * decoding (parse_scram). */
static int b64_field(const xmppd_stanza *sc, const char *name, unsigned char *out, size_t want,
                     size_t max, size_t *len_r, bool twice)
{
    const char *s = xmppd_stanza_child_text(sc, name, NULL);
    unsigned char *buf = NULL;
    size_t len = 0;
    if (!s || xmppd_base64_decode(s, strlen(s), &buf, &len) != 0)
        return -1;
    if (twice) {
        unsigned char *inner = NULL;
        size_t ilen = 0;
        int rc = xmppd_base64_decode((const char *)buf, len, &inner, &ilen);
        xmppd_wipe(buf, len);
        free(buf);
        if (rc != 0)
            return -1;
        buf = inner;
        len = ilen;
    }
    int ok = len > 0 && len <= max && (want == 0 || len == want);
    if (ok)
        memcpy(out, buf, len);
    if (len_r)
        *len_r = len;
    xmppd_wipe(buf, len);
    free(buf);
    return ok ? 0 : -1;
}

static void parse_scram(im_job *j, const xmppd_stanza *sc)
{
    const char *mech = xmppd_stanza_attr(sc, "mechanism");
    int h = -1;
    for (int k = 0; mech && k < XMPPD_HASH_COUNT; k++)
        if (strcmp(mech, xmppd_hash_scram_name((enum xmppd_hash)k)) == 0)
            h = k;
    if (h < 0) {
        skip(j, "scram-credentials %s (not a mechanism this server has)", mech ? mech : "?");
        return;
    }
    xmppd_scram_keys *k = &j->keys[h];
    size_t hl = xmppd_hash_len((enum xmppd_hash)h);
    const char *it = xmppd_stanza_child_text(sc, "iter-count", NULL);
    long iters = it ? strtol(it, NULL, 10) : 0;
    k->hash = (enum xmppd_hash)h;
    k->iterations = iters > 0 && iters < 100000000 ? (unsigned)iters : 0;
    size_t got = 0;
    unsigned char probe[128];
    bool twice = b64_field(sc, "stored-key", probe, 0, sizeof(probe), &got, false) == 0 &&
                 got == 4 * ((hl + 2) / 3); /* the length of the key's base64 text */
    xmppd_wipe(probe, sizeof(probe));
    if (!k->iterations ||
        b64_field(sc, "salt", k->salt, 0, sizeof(k->salt), &k->salt_len, twice) != 0 ||
        b64_field(sc, "server-key", k->server_key, hl, hl, NULL, twice) != 0 ||
        b64_field(sc, "stored-key", k->stored_key, hl, hl, NULL, twice) != 0) {
        xmppd_wipe(k, sizeof(*k));
        skip(j, "scram-credentials %s (malformed)", mech);
        return;
    }
    j->have[h] = true;
}

static void parse_roster(im_job *j, const xmppd_stanza *q)
{
    if (!j->roster)
        j->roster = json_pack("{s:i, s:{}, s:{}}", "ver", 1, "items", "pending");
    json_t *items = json_object_get(j->roster, "items");
    for (xmppd_stanza *it = xmppd_stanza_first(q); it; it = xmppd_stanza_next(it)) {
        if (strcmp(xmppd_stanza_name(it), "item") != 0)
            continue;
        const char *jid = xmppd_stanza_attr(it, "jid");
        char *bare = bare_of(jid);
        const char *sub = xmppd_stanza_attr(it, "subscription");
        if (!sub)
            sub = "none";
        if (!bare) {
            skip(j, "roster item %s (not a JID)", jid ? jid : "without jid");
            continue;
        }
        if (strcmp(sub, "none") != 0 && strcmp(sub, "to") != 0 && strcmp(sub, "from") != 0 &&
            strcmp(sub, "both") != 0) {
            skip(j, "roster item %s (subscription '%s')", bare, sub);
            free(bare);
            continue;
        }
        json_t *groups = json_array();
        for (xmppd_stanza *g = xmppd_stanza_first(it); g; g = xmppd_stanza_next(g)) {
            const char *t = strcmp(xmppd_stanza_name(g), "group") == 0 ? xmppd_stanza_text(g) : NULL;
            bool dup = false;
            size_t k;
            json_t *seen;
            json_array_foreach(groups, k, seen)
                dup = dup || (t && strcmp(json_string_value(seen), t) == 0);
            if (t && *t && !dup)
                json_array_append_new(groups, json_string(t));
        }
        const char *ask = xmppd_stanza_attr(it, "ask");
        const char *approved = xmppd_stanza_attr(it, "approved");
        json_t *item = json_pack("{s:s, s:o, s:b, s:b}", "subscription", sub, "groups", groups,
                                 "ask", ask && strcmp(ask, "subscribe") == 0, "approved",
                                 approved && strcmp(approved, "true") == 0);
        const char *name = xmppd_stanza_attr(it, "name");
        if (item && name && *name)
            json_object_set_new(item, "name", json_string(name));
        json_object_set_new(items, bare, item);
        free(bare);
    }
}

static void parse_pending(im_job *j, const xmppd_stanza *p)
{
    const char *type = xmppd_stanza_attr(p, "type");
    char *from = bare_of(xmppd_stanza_attr(p, "from"));
    if (!type || strcmp(type, "subscribe") != 0 || !from) {
        skip(j, "<presence/> (only subscription requests with a from are kept)");
        free(from);
        return;
    }
    if (!j->roster)
        j->roster = json_pack("{s:i, s:{}, s:{}}", "ver", 1, "items", "pending");
    xmppd_stanza *copy = xmppd_stanza_new("presence", XMPPD_NS_CLIENT);
    if (copy) {
        xmppd_stanza_set_attr(copy, "type", "subscribe");
        xmppd_stanza_set_attr(copy, "from", from);
        char *xml = xmppd_stanza_to_string(copy, XMPPD_NS_CLIENT, NULL);
        if (xml)
            json_object_set_new(json_object_get(j->roster, "pending"), from, json_string(xml));
        free(xml);
        xmppd_stanza_unref(copy);
    }
    free(from);
}

static void parse_private(im_job *j, const xmppd_stanza *q)
{
    if (!j->private_xml)
        j->private_xml = json_object();
    for (xmppd_stanza *c = xmppd_stanza_first(q); c; c = xmppd_stanza_next(c)) {
        const char *ns = xmppd_stanza_ns(c);
        if (!ns || !*ns || strcmp(ns, XMPPD_NS_CLIENT) == 0 || strcmp(ns, PIE_NS_PRIVATE) == 0) {
            skip(j, "private XML <%s/> (no namespace of its own: XEP-0049 §3)", xmppd_stanza_name(c));
            continue;
        }
        char key[2048];
        snprintf(key, sizeof(key), "%s|%s", xmppd_stanza_name(c), ns);
        char *xml = xmppd_stanza_to_string(c, XMPPD_NS_CLIENT, NULL);
        if (xml)
            json_object_set_new(j->private_xml, key, json_string(xml));
        free(xml);
    }
}

/* A stored message's time: its <delay/> stamp, else now. */
static int64_t delay_ms(const xmppd_stanza *msg, const xmppd_stanza *delay)
{
    int64_t ms;
    const char *stamp = delay ? xmppd_stanza_attr(delay, "stamp") : NULL;
    if (!stamp) {
        const xmppd_stanza *d = xmppd_stanza_child(msg, "delay", PIE_NS_DELAY);
        stamp = d ? xmppd_stanza_attr(d, "stamp") : NULL;
    }
    return stamp && mam_time_parse(stamp, &ms) == 0 ? ms : (int64_t)xmppd_now_ms();
}

static void parse_offline(im_job *j, const xmppd_stanza *list)
{
    if (!j->offline)
        j->offline = json_array();
    for (xmppd_stanza *m = xmppd_stanza_first(list); m; m = xmppd_stanza_next(m)) {
        if (strcmp(xmppd_stanza_name(m), "message") != 0)
            continue;
        char *from = bare_of(xmppd_stanza_attr(m, "from"));
        int64_t when = delay_ms(m, NULL);
        /* Delivered later, it says when it came (XEP-0203), as mod_offline's do. */
        if (!xmppd_stanza_child(m, "delay", PIE_NS_DELAY)) {
            xmppd_stanza *d = xmppd_stanza_tag(m, "delay", PIE_NS_DELAY);
            char stamp[MAM_TIME_LEN];
            mam_time_format(when, stamp, sizeof(stamp));
            if (d) {
                xmppd_stanza_set_attr(d, "from", xmppd_host_name(j->mod->host));
                xmppd_stanza_set_attr(d, "stamp", stamp);
                xmppd_stanza_set_text(d, "Offline Storage");
            }
        }
        char *xml = xmppd_stanza_to_string(m, XMPPD_NS_CLIENT, NULL);
        if (xml)
            json_array_append_new(j->offline, json_pack("{s:s?, s:I, s:s}", "with", from, "when",
                                                        (json_int_t)when, "xml", xml));
        free(xml);
        free(from);
    }
}

static void parse_archive(im_job *j, const xmppd_stanza *archive)
{
    if (!j->mam)
        j->mam = json_array();
    json_t *ids = json_object();
    char self[2 * XMPPD_JID_PART_MAX + 2];
    snprintf(self, sizeof(self), "%s@%s", j->user, xmppd_host_name(j->mod->host));
    for (xmppd_stanza *r = xmppd_stanza_first(archive); r; r = xmppd_stanza_next(r)) {
        const char *id = xmppd_stanza_attr(r, "id");
        xmppd_stanza *fw = xmppd_stanza_child(r, "forwarded", PIE_NS_FORWARD);
        xmppd_stanza *msg = fw ? xmppd_stanza_child(fw, "message", XMPPD_NS_CLIENT) : NULL;
        if (!msg && fw)
            msg = xmppd_stanza_child(fw, "message", NULL);
        if (strcmp(xmppd_stanza_name(r), "result") != 0 || !msg) {
            skip(j, "archive <%s/> (not a result with a forwarded message)", xmppd_stanza_name(r));
            continue;
        }
        if (!id || !*id || strlen(id) > XMPPD_ARCHIVE_ID_MAX || json_object_get(ids, id)) {
            skip(j, "archived message %s (%s)", id ? id : "without id",
                 id && *id && strlen(id) <= XMPPD_ARCHIVE_ID_MAX ? "id used twice" : "unusable id");
            continue;
        }
        json_object_set_new(ids, id, json_true());
        const char *from = xmppd_stanza_attr(msg, "from"), *to = xmppd_stanza_attr(msg, "to");
        char *fb = bare_of(from);
        /* the peer: the other party, as it was on the message */
        const char *with = fb && strcmp(fb, self) == 0 ? to : from;
        char *xml = xmppd_stanza_to_string(msg, XMPPD_NS_CLIENT, NULL);
        if (xml)
            json_array_append_new(j->mam, json_pack("{s:s, s:s?, s:I, s:s}", "id", id, "with", with,
                                                    "when", (json_int_t)delay_ms(msg, xmppd_stanza_child(fw, "delay", PIE_NS_DELAY)),
                                                    "xml", xml));
        free(xml);
        free(fb);
    }
    json_decref(ids);
}

/* Reads the element into j; false (with j->error) when it cannot be
 * imported at all. */
static bool im_parse(im_job *j, const xmppd_stanza *el)
{
    const char *pw = xmppd_stanza_attr(el, "password");
    if (pw && *pw && !(j->password = strdup(pw)))
        return false;
    bool pubsub_seen = false;
    for (xmppd_stanza *c = xmppd_stanza_first(el); c; c = xmppd_stanza_next(c)) {
        const char *name = xmppd_stanza_name(c), *ns = xmppd_stanza_ns(c);
        if (strcmp(name, "scram-credentials") == 0 && ns && strcmp(ns, PIE_NS_SCRAM) == 0)
            parse_scram(j, c);
        else if (strcmp(name, "query") == 0 && ns && strcmp(ns, PIE_NS_ROSTER) == 0)
            parse_roster(j, c);
        else if (strcmp(name, "presence") == 0)
            parse_pending(j, c);
        else if (strcmp(name, "vCard") == 0 && ns && strcmp(ns, PIE_NS_VCARD) == 0)
            j->vcard = xmppd_stanza_to_string(c, XMPPD_NS_CLIENT, NULL);
        else if (strcmp(name, "query") == 0 && ns && strcmp(ns, PIE_NS_PRIVATE) == 0)
            parse_private(j, c);
        else if (strcmp(name, "offline-messages") == 0 && is_pie_ns(ns))
            parse_offline(j, c);
        else if (strcmp(name, "archive") == 0 && ns && strcmp(ns, PIE_NS_MAM) == 0)
            parse_archive(j, c);
        else if (strcmp(name, "pubsub") == 0 &&
                 ns && (strcmp(ns, PIE_NS_PUBSUB) == 0 || strcmp(ns, PIE_NS_PUBSUB_OWNER) == 0))
            pubsub_seen = true;
        else
            skip(j, "<%s xmlns='%s'/> (no module imports it)", name, ns ? ns : "");
    }
    if (pubsub_seen) {
        size_t n_items = 0;
        if (!(j->pep = pie_pep_import(el, j->skipped, &n_items)))
            return false;
        count(j, "pep_items", (json_int_t)n_items);
    }
    bool keys = false;
    for (int h = 0; h < XMPPD_HASH_COUNT; h++)
        keys = keys || j->have[h];
    if (!j->password && !keys) {
        snprintf(j->error, sizeof(j->error), "no credentials: neither a password nor SCRAM keys "
                 "of a mechanism this server has");
        return false;
    }
    return true;
}

/* Data of a module the host does not load is not imported: nothing would
 * serve it. */
static void drop_unserved(im_job *j)
{
    static const struct { const char *module, *what; size_t off; } parts[] = {
        { "roster", "roster and subscription requests", offsetof(im_job, roster) },
        { "private", "private XML", offsetof(im_job, private_xml) },
        { "offline", "offline messages", offsetof(im_job, offline) },
        { "mam", "message archive", offsetof(im_job, mam) },
        { "pep", "PEP nodes", offsetof(im_job, pep) },
    };
    for (size_t k = 0; k < sizeof(parts) / sizeof(parts[0]); k++) {
        json_t **p = (json_t **)((char *)j + parts[k].off);
        if (*p && !xmppd_host_has_module(j->mod->host, parts[k].module)) {
            skip(j, "%s (module %s is not loaded on this host)", parts[k].what, parts[k].module);
            json_decref(*p);
            *p = NULL;
        }
    }
    if (j->vcard && !xmppd_host_has_module(j->mod->host, "vcard")) {
        skip(j, "%s (module %s is not loaded on this host)", "vCard", "vcard");
        free(j->vcard);
        j->vcard = NULL;
    }
}

/* ---- the phases --------------------------------------------------------------------- */

static void im_next(im_job *j);

static void im_error(im_job *j, const char *what, int status)
{
    if (!j->error[0])
        snprintf(j->error, sizeof(j->error), "%s: %s", what,
                 status == XMPPD_STORE_CANCELLED ? "cancelled (the module unloaded)" : "storage error");
}

static void im_step(im_job *j)
{
    if (--j->pending == 0)
        im_next(j);
}

static void on_written(int status, void *ud)
{
    im_job *j = ud;
    if (status != XMPPD_STORE_OK)
        im_error(j, "writing", status);
    im_step(j);
}

static void on_appended(int status, const char *id, void *ud)
{
    on_written(status, ud);
}

static void on_rolled_back(int status, void *ud)
{
    im_step(ud);
}

static void on_created(int result, void *ud)
{
    im_job *j = ud;
    if (result != XMPPD_AUTH_OK && !j->error[0])
        snprintf(j->error, sizeof(j->error), "creating the account: %s%s",
                 xmppd_auth_result_str(result),
                 result == XMPPD_AUTH_UNSUPPORTED ? " (the host's auth provider cannot store "
                                                    "SCRAM keys or new accounts)" : "");
    im_step(j);
}

static void on_exists(int result, void *ud)
{
    im_job *j = ud;
    if (result == XMPPD_AUTH_OK) {
        j->status = "skipped";
        snprintf(j->error, sizeof(j->error), "the account exists already");
    } else if (result != XMPPD_AUTH_USER_UNKNOWN) {
        snprintf(j->error, sizeof(j->error), "checking the account: %s", xmppd_auth_result_str(result));
    }
    im_step(j);
}

static void kv_write(im_job *j, xmppd_store *st, const char *key, json_t *v)
{
    j->pending++;
    xmppd_kv_set(st, j->user, key, v, on_written, j);
}

static void im_write(im_job *j)
{
    pie_mod *mod = j->mod;
    j->pending = 1; /* this function's own hold */
    if (j->roster) {
        kv_write(j, mod->roster, "", j->roster);
        count(j, "roster", (json_int_t)json_object_size(json_object_get(j->roster, "items")));
    }
    if (j->vcard) {
        json_t *v = json_string(j->vcard);
        kv_write(j, mod->vcard, "", v);
        json_decref(v);
        count(j, "vcard", 1);
    }
    const char *key;
    json_t *v;
    json_object_foreach(j->private_xml, key, v)
        kv_write(j, mod->private_xml, key, v);
    count(j, "private", (json_int_t)json_object_size(j->private_xml));
    json_object_foreach(j->pep, key, v)
        kv_write(j, mod->pep, key, v);
    size_t k;
    json_array_foreach(j->offline, k, v) {
        j->pending++;
        json_t *xml = json_object_get(v, "xml");
        xmppd_archive_append(mod->offline, j->user, json_string_value(json_object_get(v, "with")),
                             json_integer_value(json_object_get(v, "when")), xml, on_appended, j);
    }
    count(j, "offline", (json_int_t)json_array_size(j->offline));
    json_array_foreach(j->mam, k, v) {
        j->pending++;
        json_t *xml = json_object_get(v, "xml");
        xmppd_archive_append_id(mod->mam, j->user, json_string_value(json_object_get(v, "id")),
                                json_string_value(json_object_get(v, "with")),
                                json_integer_value(json_object_get(v, "when")), xml, on_appended, j);
    }
    count(j, "archive", (json_int_t)json_array_size(j->mam));
    im_step(j);
}

/* Takes back what im_write stored (the account was not created). */
static void im_rollback(im_job *j)
{
    pie_mod *mod = j->mod;
    j->pending = 1;
    const char *key;
    json_t *v;
    if (j->roster) {
        j->pending++;
        xmppd_kv_set(mod->roster, j->user, "", NULL, on_rolled_back, j);
    }
    if (j->vcard) {
        j->pending++;
        xmppd_kv_set(mod->vcard, j->user, "", NULL, on_rolled_back, j);
    }
    json_object_foreach(j->private_xml, key, v) {
        j->pending++;
        xmppd_kv_set(mod->private_xml, j->user, key, NULL, on_rolled_back, j);
    }
    json_object_foreach(j->pep, key, v) {
        j->pending++;
        xmppd_kv_set(mod->pep, j->user, key, NULL, on_rolled_back, j);
    }
    if (j->offline) {
        j->pending++;
        xmppd_archive_delete(mod->offline, j->user, NULL, on_rolled_back, j);
    }
    if (j->mam) {
        j->pending++;
        xmppd_archive_delete(mod->mam, j->user, NULL, on_rolled_back, j);
    }
    json_object_clear(j->counts);
    im_step(j);
}

static void im_next(im_job *j)
{
    switch (j->phase) {
    case IM_EXISTS:
        if (j->error[0]) {
            if (!j->status)
                j->status = "failed";
            im_finish(j);
            return;
        }
        /* Archive items appended by an earlier, unfinished import of this
         * account would be doubled: its archives start empty. */
        j->phase = IM_CLEAR;
        j->pending = 1;
        if (j->offline) {
            j->pending++;
            xmppd_archive_delete(j->mod->offline, j->user, NULL, on_written, j);
        }
        if (j->mam) {
            j->pending++;
            xmppd_archive_delete(j->mod->mam, j->user, NULL, on_written, j);
        }
        im_step(j);
        return;
    case IM_CLEAR:
        if (j->error[0]) {
            j->status = "failed";
            im_finish(j);
            return;
        }
        j->phase = IM_WRITE;
        im_write(j);
        return;
    case IM_WRITE:
        if (j->error[0]) {
            j->phase = IM_ROLLBACK;
            im_rollback(j);
            return;
        }
        j->phase = IM_CREATE;
        j->pending = 1;
        if (j->password) {
            xmppd_auth_create(j->mod->m, j->mod->host, j->user, j->password, on_created, j);
        } else {
            const xmppd_scram_keys *keys[XMPPD_HASH_COUNT];
            for (int h = 0; h < XMPPD_HASH_COUNT; h++)
                keys[h] = j->have[h] ? &j->keys[h] : NULL;
            xmppd_auth_create_keys(j->mod->m, j->mod->host, j->user, keys, on_created, j);
        }
        return;
    case IM_CREATE:
        if (j->error[0]) {
            j->phase = IM_ROLLBACK;
            im_rollback(j);
            return;
        }
        j->status = "imported";
        im_finish(j);
        return;
    case IM_ROLLBACK:
        j->status = "failed";
        im_finish(j);
        return;
    }
}

void pie_import_user(pie_mod *mod, pie_batch *b, size_t i, xmppd_stanza *el)
{
    im_job *j = calloc(1, sizeof(*j));
    const char *name = xmppd_stanza_attr(el, "name");
    if (!j || !(j->counts = json_object()) || !(j->skipped = json_array())) {
        if (j)
            im_free(j);
        json_array_set_new(b->results, i, json_pack("{s:s?, s:s, s:s}", "user", name, "status",
                                                     "failed", "reason", "out of memory"));
        pie_batch_done(b);
        xmppd_stanza_unref(el);
        return;
    }
    j->mod = mod;
    j->b = b;
    j->i = i;
    j->user = name ? xmppd_nodeprep(name) : NULL;
    if (!j->user || !*j->user) {
        snprintf(j->error, sizeof(j->error), "<user/> without a valid name");
        free(j->user);
        j->user = name ? strdup(name) : NULL;
        j->status = "failed";
        xmppd_stanza_unref(el);
        im_finish(j);
        return;
    }
    bool ok = im_parse(j, el);
    xmppd_stanza_unref(el);
    if (!ok) {
        if (!j->error[0])
            snprintf(j->error, sizeof(j->error), "out of memory");
        j->status = "failed";
        im_finish(j);
        return;
    }
    drop_unserved(j);
    j->phase = IM_EXISTS;
    j->pending = 1;
    xmppd_auth_exists(mod->m, mod->host, j->user, on_exists, j);
}
