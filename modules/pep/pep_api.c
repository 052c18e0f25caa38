/* The "pep" API (pep_api.h) for other modules, and the "pep-changed"
 * event every change fires. */
#include <stdlib.h>
#include <string.h>

#include "pep.h"

enum { PEP_OP_ITEMS, PEP_OP_PUBLISH, PEP_OP_RETRACT };

typedef struct pep_api_job {
    int op;
    char *node, *id;
    xmppd_stanza *payload; /* reference */
    xmppd_form *options;
    pep_items_cb items_cb;
    pep_done_cb done_cb;
    void *ud;
} pep_api_job;

static void pep_api_job_free(void *p)
{
    pep_api_job *j = p;
    free(j->node);
    free(j->id);
    xmppd_stanza_unref(j->payload);
    xmppd_form_free(j->options);
    free(j);
}

static void pep_api_done(pep_api_job *j, int rc, const char *error)
{
    if (j->done_cb)
        j->done_cb(rc, error, j->ud);
}

static void pep_api_items(pep_ctx *ctx, pep_api_job *j)
{
    ps_node *n = ps_node_find(ctx->svc->ps, j->node);
    xmppd_stanza *items = n ? xmppd_stanza_new("items", PS_NS) : NULL;
    if (items)
        xmppd_stanza_set_attr(items, "node", n->name);
    for (const ps_item *it = n ? n->first : NULL; items && it; it = it->next)
        xmppd_stanza_add(items, ps_item_element(it, PS_NS, true, false));
    j->items_cb(n && !items ? -1 : 0, items, j->ud);
    xmppd_stanza_unref(items);
}

static void pep_api_run(pep_ctx *ctx, void *ud)
{
    pep_api_job *j = ud;
    const char *error = "internal-server-error";
    if (!ctx) {
        if (j->op == PEP_OP_ITEMS)
            j->items_cb(-1, NULL, j->ud);
        else
            pep_api_done(j, -1, error);
    } else if (j->op == PEP_OP_ITEMS) {
        pep_api_items(ctx, j);
    } else if (j->op == PEP_OP_PUBLISH) {
        int rc = ps_publish(ctx->svc->ps, j->node, NULL, j->id, j->payload, j->options, ctx, &error);
        pep_api_done(j, rc, rc == 0 ? NULL : error);
    } else {
        int rc = ps_retract(ctx->svc->ps, j->node, j->id, ctx);
        pep_api_done(j, rc, rc == 0 ? NULL : "item-not-found");
    }
    pep_api_job_free(j);
}

/* A job for user; NULL (after telling the caller) on OOM. */
static pep_api_job *pep_api_job_new(int op, const char *node, const char *id, pep_done_cb cb,
                                    void *ud)
{
    pep_api_job *j = calloc(1, sizeof(*j));
    if (j && (!(j->node = strdup(node)) || (id && !(j->id = strdup(id))))) {
        pep_api_job_free(j);
        j = NULL;
    }
    if (!j && cb)
        cb(-1, "internal-server-error", ud);
    if (j) {
        j->op = op;
        j->done_cb = cb;
        j->ud = ud;
    }
    return j;
}

static pep_state *pep_of(const pep_api *api)
{
    return (pep_state *)((char *)api - offsetof(pep_state, api));
}

static void pep_api_get_items(const pep_api *api, const char *user, const char *node,
                              pep_items_cb cb, void *ud)
{
    pep_api_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->node = strdup(node))) {
        free(j);
        cb(-1, NULL, ud);
        return;
    }
    j->op = PEP_OP_ITEMS;
    j->items_cb = cb;
    j->ud = ud;
    pep_with_service(pep_of(api), user, false, pep_api_run, pep_api_job_free, j);
}

static void pep_api_publish(const pep_api *api, const char *user, const char *node, const char *id,
                            const xmppd_stanza *payload, const xmppd_stanza *options,
                            pep_done_cb cb, void *ud)
{
    pep_api_job *j = pep_api_job_new(PEP_OP_PUBLISH, node, id, cb, ud);
    if (!j)
        return;
    j->payload = payload ? xmppd_stanza_copy(payload) : NULL;
    j->options = options ? xmppd_form_parse(options, NULL) : NULL;
    if ((payload && !j->payload) || (options && !j->options)) {
        pep_api_done(j, -1, options && !j->options ? "bad-request" : "internal-server-error");
        pep_api_job_free(j);
        return;
    }
    pep_with_service(pep_of(api), user, true, pep_api_run, pep_api_job_free, j);
}

static void pep_api_retract(const pep_api *api, const char *user, const char *node, const char *id,
                            pep_done_cb cb, void *ud)
{
    pep_api_job *j = pep_api_job_new(PEP_OP_RETRACT, node, id, cb, ud);
    if (j)
        pep_with_service(pep_of(api), user, true, pep_api_run, pep_api_job_free, j);
}

void pep_api_init(pep_state *st)
{
    st->api = (pep_api){ PEP_API_VERSION, sizeof(pep_api), pep_api_get_items, pep_api_publish,
                         pep_api_retract };
}

/* ---- the change event ---------------------------------------------------------------------- */

void pep_changed(ps_service *s, const ps_node *n, const char *kind, const ps_item *item,
                 const char *id, void *ctx)
{
    pep_ctx *c = ctx;
    pep_svc *svc = s->ud;
    pep_change ch = { .user = svc->user, .node = n->name, .kind = kind,
                      .id = item ? item->id : id, .payload = item ? item->payload : NULL,
                      .publisher = c ? c->publisher_full : NULL };
    xmppd_notify(svc->st->host, PEP_EVENT_CHANGED, NULL, &ch);
}
