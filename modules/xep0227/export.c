/* One account as a XEP-0227 <user/> element. Every read starts at once;
 * the element is built when the last answers, in a fixed order:
 * credentials (SCRAM keys, never a password: none is stored), roster and
 * pending subscription requests, vCard, private XML, offline messages,
 * PEP, message archive. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../mam/mam_time.h"
#include "pie.h"

typedef struct ex_job {
    pie_mod *mod;
    pie_batch *b;
    size_t i;
    char *user;
    int pending;
    const char *error;          /* static: why the account cannot be exported */
    xmppd_scram_keys keys[XMPPD_HASH_COUNT]; /* wiped */
    bool have[XMPPD_HASH_COUNT];
    json_t *roster, *vcard, *private_all, *pep_all;
    json_t *offline, *mam;      /* arrays of {id, when, with, xml} */
} ex_job;

static void ex_free(ex_job *j)
{
    xmppd_wipe(j->keys, sizeof(j->keys));
    json_decref(j->roster);
    json_decref(j->vcard);
    json_decref(j->private_all);
    json_decref(j->pep_all);
    json_decref(j->offline);
    json_decref(j->mam);
    free(j->user);
    free(j);
}

/* Appends the serialised element xml (if it parses) to parent. */
static void add_xml(xmppd_stanza *parent, const char *xml)
{
    xmppd_stanza *el = xml ? xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT) : NULL;
    if (el) {
        xmppd_stanza_add(parent, el); /* takes our reference */
    }
}

static void add_text(xmppd_stanza *parent, const char *name, const char *text)
{
    xmppd_stanza *c = xmppd_stanza_tag(parent, name, NULL);
    if (c && text)
        xmppd_stanza_add_text(c, text, strlen(text));
}

static void add_b64(xmppd_stanza *parent, const char *name, const unsigned char *p, size_t n)
{
    char *s = xmppd_base64_encode(p, n);
    add_text(parent, name, s);
    free(s);
}

static void ex_credentials(ex_job *j, xmppd_stanza *user)
{
    for (int h = 0; h < XMPPD_HASH_COUNT; h++) {
        if (!j->have[h])
            continue;
        const xmppd_scram_keys *k = &j->keys[h];
        size_t hl = xmppd_hash_len(k->hash);
        xmppd_stanza *sc = xmppd_stanza_tag(user, "scram-credentials", PIE_NS_SCRAM);
        if (!sc)
            return;
        xmppd_stanza_set_attr(sc, "mechanism", xmppd_hash_scram_name(k->hash));
        char it[16];
        snprintf(it, sizeof(it), "%u", k->iterations);
        add_text(sc, "iter-count", it);
        add_b64(sc, "salt", k->salt, k->salt_len);
        add_b64(sc, "server-key", k->server_key, hl);
        add_b64(sc, "stored-key", k->stored_key, hl);
    }
}

static void ex_roster(ex_job *j, xmppd_stanza *user)
{
    json_t *items = json_object_get(j->roster, "items");
    if (json_object_size(items) > 0) {
        xmppd_stanza *q = xmppd_stanza_tag(user, "query", PIE_NS_ROSTER);
        const char *jid;
        json_t *it;
        json_object_foreach(items, jid, it) {
            xmppd_stanza *x = q ? xmppd_stanza_tag(q, "item", NULL) : NULL;
            if (!x)
                return;
            xmppd_stanza_set_attr(x, "jid", jid);
            const char *name = json_string_value(json_object_get(it, "name"));
            const char *sub = json_string_value(json_object_get(it, "subscription"));
            if (name)
                xmppd_stanza_set_attr(x, "name", name);
            xmppd_stanza_set_attr(x, "subscription", sub ? sub : "none");
            if (json_is_true(json_object_get(it, "ask")))
                xmppd_stanza_set_attr(x, "ask", "subscribe");
            if (json_is_true(json_object_get(it, "approved")))
                xmppd_stanza_set_attr(x, "approved", "true");
            size_t k;
            json_t *g;
            json_array_foreach(json_object_get(it, "groups"), k, g)
                add_text(x, "group", json_string_value(g));
        }
    }
    /* Pending inbound requests: <presence type='subscribe'/> children of
     * the user, as Prosody and ejabberd write them. */
    const char *from;
    json_t *req;
    json_object_foreach(json_object_get(j->roster, "pending"), from, req)
        add_xml(user, json_string_value(req));
}

static void ex_archive(const json_t *items, xmppd_stanza *parent, bool mam)
{
    size_t k;
    json_t *it;
    json_array_foreach(items, k, it) {
        const char *xml = json_string_value(json_object_get(it, "xml"));
        if (!mam) {
            add_xml(parent, xml);
            continue;
        }
        xmppd_stanza *r = xmppd_stanza_tag(parent, "result", PIE_NS_MAM2);
        xmppd_stanza *fw = r ? xmppd_stanza_tag(r, "forwarded", PIE_NS_FORWARD) : NULL;
        xmppd_stanza *d = fw ? xmppd_stanza_tag(fw, "delay", PIE_NS_DELAY) : NULL;
        if (!d)
            return;
        xmppd_stanza_set_attr(r, "id", json_string_value(json_object_get(it, "id")));
        char stamp[MAM_TIME_LEN];
        mam_time_format(json_integer_value(json_object_get(it, "when")), stamp, sizeof(stamp));
        xmppd_stanza_set_attr(d, "stamp", stamp);
        add_xml(fw, xml);
    }
}

static char *ex_build(ex_job *j)
{
    xmppd_stanza *user = xmppd_stanza_new("user", PIE_NS);
    if (!user)
        return NULL;
    xmppd_stanza_set_attr(user, "name", j->user);
    ex_credentials(j, user);
    ex_roster(j, user);
    add_xml(user, json_string_value(j->vcard));
    if (json_object_size(j->private_all) > 0) {
        xmppd_stanza *q = xmppd_stanza_tag(user, "query", PIE_NS_PRIVATE);
        const char *key;
        json_t *v;
        json_object_foreach(j->private_all, key, v)
            if (q)
                add_xml(q, json_string_value(v));
    }
    if (json_array_size(j->offline) > 0)
        ex_archive(j->offline, xmppd_stanza_tag(user, "offline-messages", NULL), false);
    pie_pep_export(j->pep_all, user);
    if (json_array_size(j->mam) > 0)
        ex_archive(j->mam, xmppd_stanza_tag(user, "archive", PIE_NS_MAM), true);
    char *s = xmppd_stanza_to_string(user, PIE_NS, NULL);
    xmppd_stanza_unref(user);
    return s;
}

static void ex_step_done(ex_job *j)
{
    if (--j->pending > 0)
        return;
    json_t *slot;
    if (j->error) {
        slot = json_pack("{s:s, s:s}", "user", j->user, "error", j->error);
    } else {
        char *xml = ex_build(j);
        slot = xml ? json_pack("{s:s, s:s}", "user", j->user, "xml", xml)
                   : json_pack("{s:s, s:s}", "user", j->user, "error", "out of memory");
        free(xml);
    }
    json_array_set_new(j->b->results, j->i, slot);
    pie_batch_done(j->b);
    ex_free(j);
}

static void ex_fail(ex_job *j, const char *why)
{
    if (!j->error)
        j->error = why;
}

static void on_keys(int result, const xmppd_scram_keys *keys, void *ud)
{
    ex_job *j = ud;
    if (result == XMPPD_AUTH_OK && keys && (unsigned)keys->hash < XMPPD_HASH_COUNT) {
        j->keys[keys->hash] = *keys;
        j->have[keys->hash] = true;
    } else if (result == XMPPD_AUTH_USER_UNKNOWN) {
        ex_fail(j, "no such account");
    } else if (result != XMPPD_AUTH_NO_SCHEME && result != XMPPD_AUTH_UNSUPPORTED) {
        ex_fail(j, result == XMPPD_AUTH_CANCELLED ? "cancelled: the module unloaded"
                                                  : "cannot read the account's keys");
    }
    ex_step_done(j);
}

/* One keyval read into *dst (NULL when absent). */
static void on_kv(ex_job *j, int status, json_t *value, json_t **dst)
{
    if (status == XMPPD_STORE_OK)
        *dst = json_incref(value);
    else if (status != XMPPD_STORE_NOT_FOUND)
        ex_fail(j, status == XMPPD_STORE_CANCELLED ? "cancelled: the module unloaded"
                                                   : "storage error");
    ex_step_done(j);
}

static void on_roster(int status, json_t *value, void *ud) { on_kv(ud, status, value, &((ex_job *)ud)->roster); }
static void on_vcard(int status, json_t *value, void *ud) { on_kv(ud, status, value, &((ex_job *)ud)->vcard); }
static void on_private(int status, json_t *value, void *ud) { on_kv(ud, status, value, &((ex_job *)ud)->private_all); }
static void on_pep(int status, json_t *value, void *ud) { on_kv(ud, status, value, &((ex_job *)ud)->pep_all); }

json_t *pie_items_json(const xmppd_archive_item *items, size_t n)
{
    json_t *out = json_array();
    for (size_t k = 0; out && k < n; k++)
        json_array_append_new(out, json_pack("{s:s, s:I, s:s?, s:O?}", "id", items[k].id, "when",
                                             (json_int_t)items[k].when_ms, "with", items[k].with,
                                             "xml", items[k].value));
    return out;
}

static void on_items(ex_job *j, int status, const xmppd_archive_item *items, size_t n, json_t **dst)
{
    if (status == XMPPD_STORE_OK || status == XMPPD_STORE_NOT_FOUND) {
        *dst = pie_items_json(items, status == XMPPD_STORE_OK ? n : 0);
    } else {
        ex_fail(j, status == XMPPD_STORE_CANCELLED ? "cancelled: the module unloaded"
                                                   : "storage error");
    }
    ex_step_done(j);
}

static void on_offline(int status, const xmppd_archive_item *items, size_t n, bool complete, void *ud)
{
    on_items(ud, status, items, n, &((ex_job *)ud)->offline);
}

static void on_mam(int status, const xmppd_archive_item *items, size_t n, bool complete, void *ud)
{
    on_items(ud, status, items, n, &((ex_job *)ud)->mam);
}

void pie_export_user(pie_mod *mod, pie_batch *b, size_t i, const char *user)
{
    ex_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->user = strdup(user))) {
        free(j);
        json_array_set_new(b->results, i, json_pack("{s:s, s:s}", "user", user, "error",
                                                    "out of memory"));
        pie_batch_done(b);
        return;
    }
    j->mod = mod;
    j->b = b;
    j->i = i;
    /* Every read is issued before the first can answer (answers come on
     * later loop turns), so pending reaches its total first. */
    j->pending = XMPPD_HASH_COUNT + 6;
    for (int h = 0; h < XMPPD_HASH_COUNT; h++)
        xmppd_auth_get_scram(mod->m, mod->host, user, (enum xmppd_hash)h, on_keys, j);
    xmppd_kv_get(mod->roster, user, "", on_roster, j);
    xmppd_kv_get(mod->vcard, user, "", on_vcard, j);
    xmppd_kv_get_all(mod->private_xml, user, on_private, j);
    xmppd_kv_get_all(mod->pep, user, on_pep, j);
    xmppd_archive_query(mod->offline, user, NULL, on_offline, j);
    xmppd_archive_query(mod->mam, user, NULL, on_mam, j);
}
