/* Bookmarks kept alike in their three forms, so clients of either
 * specification see the same rooms:
 *
 *  - XEP-0402 (urn:xmpp:bookmarks:1): one PEP item per room;
 *  - XEP-0048 in private XML (XEP-0049), the form XEP-0402 §5.3 converts;
 *  - XEP-0048 in the PEP node storage:bookmarks, which XEP-0411 converts.
 *
 * A client's change to any form is copied to the others once it is
 * stored: items published or retracted one by one (only what changed), the
 * private fragment rewritten, the legacy PEP item "current" republished
 * when that node is in use. Copies the module makes are not copied back
 * (PEP changes without publisher, private writes by_module). At login, an
 * account with private bookmarks but no XEP-0402 node is migrated. */
#include <stdlib.h>
#include <string.h>

#include "../pep/pep_api.h"
#include "../private/private_api.h"
#include "bm.h"

#define BM_NS_DATA "jabber:x:data"
#define BM_FORM_PUBLISH_OPTIONS "http://jabber.org/protocol/pubsub#publish-options"

typedef struct bm_state {
    xmppd_module *m;
    xmppd_host *host;
    xmppd_stanza *native_opts; /* XEP-0402 §3 node configuration, as publish-options */
    xmppd_stanza *legacy_opts; /* XEP-0223 private storage */
} bm_state;

enum bm_source { BM_FROM_PRIVATE, BM_FROM_LEGACY, BM_FROM_NATIVE, BM_MIGRATE };
enum bm_op_kind { BM_OP_PUBLISH, BM_OP_RETRACT, BM_OP_PRIVATE, BM_OP_LEGACY };

typedef struct bm_op {
    int kind;
    char *id;
    xmppd_stanza *payload;
    bool retried;              /* published again without options */
} bm_op;

/* One copy from a form to the others: what is wanted, then the queue of
 * writes that gets there, run one after the other. */
typedef struct bm_job {
    bm_state *st;
    char *user;
    int source;
    bm_list want;
    xmppd_stanza *storage;     /* the XEP-0048 form of want */
    bm_op *ops;
    size_t n, cap, next;
} bm_job;

static const pep_api *bm_pep(const bm_state *st)
{
    const pep_api *a = xmppd_use(st->host, "pep");
    return a && a->version == PEP_API_VERSION && a->size >= sizeof(pep_api) ? a : NULL;
}

static const private_api *bm_private(const bm_state *st)
{
    const private_api *a = xmppd_use(st->host, "private");
    return a && a->version == PRIVATE_API_VERSION && a->size >= sizeof(private_api) ? a : NULL;
}

/* ---- jobs ------------------------------------------------------------------------------ */

static bm_job *bm_job_new(bm_state *st, const char *user, int source)
{
    bm_job *j = calloc(1, sizeof(*j));
    if (j && !(j->user = strdup(user))) {
        free(j);
        return NULL;
    }
    if (j) {
        j->st = st;
        j->source = source;
    }
    return j;
}

static void bm_job_free(bm_job *j)
{
    for (size_t i = 0; i < j->n; i++) {
        free(j->ops[i].id);
        xmppd_stanza_unref(j->ops[i].payload);
    }
    free(j->ops);
    bm_list_clear(&j->want);
    xmppd_stanza_unref(j->storage);
    free(j->user);
    free(j);
}

/* Queues an op (payload consumed); -1 on OOM. */
static int bm_queue(bm_job *j, int kind, const char *id, xmppd_stanza *payload)
{
    if (j->n == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 8;
        bm_op *v = realloc(j->ops, cap * sizeof(*v));
        if (!v) {
            xmppd_stanza_unref(payload);
            return -1;
        }
        j->ops = v;
        j->cap = cap;
    }
    bm_op *op = &j->ops[j->n];
    *op = (bm_op){ .kind = kind, .id = id ? strdup(id) : NULL, .payload = payload };
    if (id && !op->id) {
        xmppd_stanza_unref(payload);
        return -1;
    }
    j->n++;
    return 0;
}

static void bm_run(bm_job *j);

static void bm_on_done(int rc, const char *error, void *ud)
{
    bm_job *j = ud;
    bm_op *op = &j->ops[j->next - 1];
    if (rc < 0 && op->kind != BM_OP_PRIVATE && error && strcmp(error, "precondition-not-met") == 0 &&
        !op->retried) {
        /* The node was made otherwise by a client: publish as it is. */
        op->retried = true;
        j->next--;
    } else if (rc < 0) {
        xmppd_log(j->st->m, XMPPD_LOG_WARN, "bookmarks of %s: a copy failed (%s)", j->user,
                  error ? error : "storage");
    }
    bm_run(j);
}

static void bm_on_private_done(int status, void *ud)
{
    bm_on_done(status, NULL, ud);
}

static void bm_run(bm_job *j)
{
    const pep_api *p = bm_pep(j->st);
    const private_api *pv = bm_private(j->st);
    if (j->next == j->n || !p || !pv) {
        bm_job_free(j);
        return;
    }
    bm_op *op = &j->ops[j->next++];
    switch (op->kind) {
    case BM_OP_PUBLISH:
        p->publish(p, j->st->m, j->user, BM_NS_NATIVE, op->id, op->payload,
                   op->retried ? NULL : j->st->native_opts, bm_on_done, j);
        break;
    case BM_OP_RETRACT:
        p->retract(p, j->st->m, j->user, BM_NS_NATIVE, op->id, bm_on_done, j);
        break;
    case BM_OP_PRIVATE:
        pv->set(pv, j->st->m, j->user, op->payload, bm_on_private_done, j);
        break;
    default:
        p->publish(p, j->st->m, j->user, BM_NS_LEGACY, "current", op->payload,
                   op->retried ? NULL : j->st->legacy_opts, bm_on_done, j);
    }
}

/* ---- planning the copies ------------------------------------------------------------- */

/* XEP-0402 items to publish or retract so the node holds j->want. */
static int bm_plan_native(bm_job *j, const bm_list *have)
{
    for (size_t i = 0; i < j->want.n; i++) {
        const bm_conf *c = &j->want.v[i], *old = bm_find(have, c->jid);
        if (bm_same(c, old))
            continue;
        xmppd_stanza *conf = bm_to_conference(c, old);
        if (!conf || bm_queue(j, BM_OP_PUBLISH, c->jid, conf) < 0)
            return -1;
    }
    for (size_t i = 0; have && i < have->n; i++)
        if (!bm_find(&j->want, have->v[i].jid) &&
            bm_queue(j, BM_OP_RETRACT, have->v[i].jid, NULL) < 0)
            return -1;
    return 0;
}

/* The legacy PEP node, when it is in use, gets the storage too; then run. */
static void bm_on_legacy_items(int status, const xmppd_stanza *items, void *ud)
{
    bm_job *j = ud;
    if (status == 0 && items && j->storage)
        bm_queue(j, BM_OP_LEGACY, NULL, xmppd_stanza_copy(j->storage));
    bm_run(j);
}

static void bm_then_legacy(bm_job *j)
{
    const pep_api *p = bm_pep(j->st);
    if (p)
        p->items(p, j->st->m, j->user, BM_NS_LEGACY, bm_on_legacy_items, j);
    else
        bm_job_free(j);
}

/* From XEP-0048 (private XML, the legacy PEP node, or a migration): the
 * native items as they are now, then the plan. */
static void bm_on_native_for_storage(int status, const xmppd_stanza *items, void *ud)
{
    bm_job *j = ud;
    bm_list have = { 0 };
    if (status < 0 || (j->source == BM_MIGRATE && items) || bm_from_items(items, &have) < 0 ||
        bm_plan_native(j, &have) < 0) {
        bm_list_clear(&have);
        bm_job_free(j);
        return; /* failed, or migrated already (the node exists) */
    }
    bm_list_clear(&have);
    if (j->source == BM_FROM_LEGACY &&
        bm_queue(j, BM_OP_PRIVATE, NULL, xmppd_stanza_copy(j->storage)) < 0) {
        bm_job_free(j);
        return;
    }
    if (j->source == BM_FROM_PRIVATE)
        bm_then_legacy(j);
    else
        bm_run(j);
}

/* Starts a copy of a XEP-0048 <storage/> to the other forms. */
static void bm_from_xep0048(bm_state *st, const char *user, const xmppd_stanza *storage, int source)
{
    const pep_api *p = bm_pep(st);
    bm_job *j = p ? bm_job_new(st, user, source) : NULL;
    if (!j)
        return;
    if (bm_from_storage(storage, &j->want) < 0 || !(j->storage = xmppd_stanza_copy(storage))) {
        bm_job_free(j);
        return;
    }
    p->items(p, st->m, user, BM_NS_NATIVE, bm_on_native_for_storage, j);
}

/* From XEP-0402: the private fragment (its <url/>s kept) and the legacy
 * node follow the items. */
static void bm_on_old_private(int status, const xmppd_stanza *old, void *ud)
{
    bm_job *j = ud;
    if (status < 0 || !(j->storage = bm_to_storage(&j->want, old)) ||
        bm_queue(j, BM_OP_PRIVATE, NULL, xmppd_stanza_copy(j->storage)) < 0) {
        bm_job_free(j);
        return;
    }
    bm_then_legacy(j);
}

static void bm_on_native_items(int status, const xmppd_stanza *items, void *ud)
{
    bm_job *j = ud;
    const private_api *pv = bm_private(j->st);
    if (status < 0 || !pv || bm_from_items(items, &j->want) < 0) {
        bm_job_free(j);
        return;
    }
    pv->get(pv, j->st->m, j->user, "storage", BM_NS_LEGACY, bm_on_old_private, j);
}

/* ---- events ------------------------------------------------------------------------------ */

static int bm_on_private_changed(xmppd_event *ev, void *ud)
{
    const private_change *ch = ev->data;
    if (ch && !ch->by_module && strcmp(xmppd_stanza_name(ch->element), "storage") == 0 &&
        strcmp(xmppd_stanza_ns(ch->element), BM_NS_LEGACY) == 0)
        bm_from_xep0048(ud, ch->user, ch->element, BM_FROM_PRIVATE);
    return XMPPD_PASS;
}

static int bm_on_pep_changed(xmppd_event *ev, void *ud)
{
    bm_state *st = ud;
    const pep_change *ch = ev->data;
    if (!ch || !ch->publisher)
        return XMPPD_PASS; /* our own copies, or another module's */
    if (strcmp(ch->node, BM_NS_LEGACY) == 0 && strcmp(ch->kind, "items") == 0 && ch->payload &&
        strcmp(xmppd_stanza_name(ch->payload), "storage") == 0) {
        bm_from_xep0048(st, ch->user, ch->payload, BM_FROM_LEGACY);
    } else if (strcmp(ch->node, BM_NS_NATIVE) == 0) {
        const pep_api *p = bm_pep(st);
        bm_job *j = p ? bm_job_new(st, ch->user, BM_FROM_NATIVE) : NULL;
        if (j)
            p->items(p, st->m, ch->user, BM_NS_NATIVE, bm_on_native_items, j);
    }
    return XMPPD_PASS;
}

/* Migration at login: private bookmarks and no XEP-0402 node yet. */
static void bm_on_private_for_migration(int status, const xmppd_stanza *storage, void *ud)
{
    bm_job *j = ud;
    if (status == 0 && storage && xmppd_stanza_first(storage))
        bm_from_xep0048(j->st, j->user, storage, BM_MIGRATE);
    bm_job_free(j);
}

static void bm_on_native_at_login(int status, const xmppd_stanza *items, void *ud)
{
    bm_job *j = ud;
    const private_api *pv = bm_private(j->st);
    if (status == 0 && !items && pv) {
        pv->get(pv, j->st->m, j->user, "storage", BM_NS_LEGACY, bm_on_private_for_migration, j);
        return;
    }
    bm_job_free(j);
}

static int bm_on_bound(xmppd_event *ev, void *ud)
{
    bm_state *st = ud;
    const char *user = ev->session ? xmppd_session_user(ev->session) : NULL;
    const pep_api *p = bm_pep(st);
    bm_job *j = user && p ? bm_job_new(st, user, BM_MIGRATE) : NULL;
    if (j)
        p->items(p, st->m, user, BM_NS_NATIVE, bm_on_native_at_login, j);
    return XMPPD_PASS;
}

/* XEP-0402 §6 and XEP-0411 §2: the conversions, on the account. */
static int bm_on_disco_info(xmppd_event *ev, void *ud)
{
    (void)ud;
    static const char *const features[] = { BM_NS_NATIVE "#compat", BM_NS_NATIVE "#compat-pep",
                                            "urn:xmpp:bookmarks-conversion:0" };
    if (!ev->to || !ev->to->node || xmppd_stanza_attr(ev->stanza, "node"))
        return XMPPD_PASS;
    for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
        xmppd_stanza *f = xmppd_stanza_tag(ev->stanza, "feature", NULL);
        if (f)
            xmppd_stanza_set_attr(f, "var", features[i]);
    }
    return XMPPD_PASS;
}

/* ---- module ---------------------------------------------------------------------------- */

/* A publish-options form: each pair of args is a field and its value. */
static xmppd_stanza *bm_options(const char *const *fields)
{
    xmppd_stanza *x = xmppd_form_new("submit", BM_FORM_PUBLISH_OPTIONS, NULL);
    for (size_t i = 0; x && fields[i]; i += 2)
        if (!xmppd_form_add_field(x, fields[i], NULL, NULL, fields[i + 1])) {
            xmppd_stanza_unref(x);
            return NULL;
        }
    return x;
}

static void bm_unload(xmppd_module *m)
{
    bm_state *st = xmppd_module_data(m);
    if (!st)
        return;
    xmppd_stanza_unref(st->native_opts);
    xmppd_stanza_unref(st->legacy_opts);
    free(st);
    xmppd_module_set_data(m, NULL);
}

static int bm_load(xmppd_module *m, const void *conf)
{
    (void)conf;
    static const char *const native[] = { "pubsub#persist_items", "true", "pubsub#max_items", "max",
                                          "pubsub#send_last_published_item", "never",
                                          "pubsub#access_model", "whitelist", NULL };
    static const char *const legacy[] = { "pubsub#persist_items", "true", "pubsub#access_model",
                                          "whitelist", NULL };
    bm_state *st = calloc(1, sizeof(*st));
    if (!st)
        return xmppd_module_refuse(m, "out of memory");
    st->m = m;
    st->host = xmppd_module_host(m);
    xmppd_module_set_data(m, st);
    st->native_opts = bm_options(native);
    st->legacy_opts = bm_options(legacy);
    if (!st->native_opts || !st->legacy_opts ||
        xmppd_hook(m, PRIVATE_EVENT_CHANGED, bm_on_private_changed, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, PEP_EVENT_CHANGED, bm_on_pep_changed, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "resource-bound", bm_on_bound, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "disco-info", bm_on_disco_info, XMPPD_PRIO_DEFAULT, st) < 0) {
        bm_unload(m);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(bookmarks,
    .version = "1.0",
    .summary = "XEP-0402 bookmarks kept alike with XEP-0048 ones (private XML, XEP-0411 PEP)",
    .depends = (const char *const[]){ "pep", "private", NULL },
    .specs = (const char *const[]){ "XEP-0402", "XEP-0411", "XEP-0048", NULL },
    .load = bm_load,
    .unload = bm_unload);
