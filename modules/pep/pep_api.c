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
    pep_items_cb items_cb; /* both NULL once the caller was answered or went away */
    pep_done_cb done_cb;
    void *ud;
    xmppd_call *call; /* the caller's claim on the answer, until it is finished */
} pep_api_job;

/* Answers the caller once: items for PEP_OP_ITEMS, else rc and error. */
static void pep_api_answer(pep_api_job *j, int rc, const char *error, const xmppd_stanza *items)
{
    pep_items_cb items_cb = j->items_cb;
    pep_done_cb done_cb = j->done_cb;
    j->items_cb = NULL;
    j->done_cb = NULL;
    if (items_cb)
        items_cb(rc, rc < 0 ? NULL : items, j->ud);
    else if (done_cb)
        done_cb(rc, error, j->ud);
}

/* The caller unloads first: it hears of the failure now, while its code is
 * loaded, and never again (the job itself runs or is dropped later). */
static void pep_api_cancelled(void *p)
{
    pep_api_answer(p, -1, "internal-server-error", NULL);
}

/* Frees j; a caller still waiting is told the call failed (the module is
 * unloading before the job could run). */
static void pep_api_job_free(void *p)
{
    pep_api_job *j = p;
    if (xmppd_call_finish(j->call))
        pep_api_answer(j, -1, "internal-server-error", NULL);
    free(j->node);
    free(j->id);
    xmppd_stanza_unref(j->payload);
    xmppd_form_free(j->options);
    free(j);
}

static void pep_api_items(pep_ctx *ctx, pep_api_job *j)
{
    ps_node *n = ps_node_find(ctx->svc->ps, j->node);
    xmppd_stanza *items = n ? xmppd_stanza_new("items", PS_NS) : NULL;
    if (items)
        xmppd_stanza_set_attr(items, "node", n->name);
    for (const ps_item *it = n ? n->first : NULL; items && it; it = it->next)
        xmppd_stanza_add(items, ps_item_element(it, PS_NS, true, false));
    pep_api_answer(j, n && !items ? -1 : 0, NULL, items);
    xmppd_stanza_unref(items);
}

/* The job's turn: the change is made even when its caller went away; the
 * answer goes only to a caller that still waits. */
static void pep_api_run(pep_ctx *ctx, void *ud)
{
    pep_api_job *j = ud;
    const char *error = "internal-server-error";
    if (!xmppd_call_finish(j->call)) {
        j->items_cb = NULL;
        j->done_cb = NULL;
    }
    j->call = NULL;
    if (!ctx) {
        pep_api_answer(j, -1, error, NULL);
    } else if (j->op == PEP_OP_ITEMS) {
        pep_api_items(ctx, j);
    } else if (j->op == PEP_OP_PUBLISH) {
        int rc = ps_publish(ctx->svc->ps, j->node, NULL, j->id, j->payload, j->options, ctx, &error);
        pep_api_answer(j, rc, rc == 0 ? NULL : error, NULL);
    } else {
        int rc = ps_retract(ctx->svc->ps, j->node, j->id, ctx);
        pep_api_answer(j, rc, rc == 0 ? NULL : "item-not-found", NULL);
    }
    pep_api_job_free(j);
}

/* A job of caller's, its call registered; NULL (after telling the caller)
 * on OOM or when the caller is unloading. */
static pep_api_job *pep_api_job_new(xmppd_module *caller, int op, const char *node, const char *id,
                                    pep_items_cb items_cb, pep_done_cb done_cb, void *ud)
{
    pep_api_job *j = calloc(1, sizeof(*j));
    if (!j) {
        pep_api_answer(&(pep_api_job){ .items_cb = items_cb, .done_cb = done_cb, .ud = ud }, -1,
                       "internal-server-error", NULL);
        return NULL;
    }
    *j = (pep_api_job){ .op = op, .items_cb = items_cb, .done_cb = done_cb, .ud = ud };
    if (!(j->node = strdup(node)) || (id && !(j->id = strdup(id))) ||
        !(j->call = xmppd_call_new(caller, pep_api_cancelled, j))) {
        pep_api_answer(j, -1, "internal-server-error", NULL);
        pep_api_job_free(j);
        return NULL;
    }
    return j;
}

static pep_state *pep_of(const pep_api *api)
{
    return (pep_state *)((char *)api - offsetof(pep_state, api));
}

static void pep_api_get_items(const pep_api *api, xmppd_module *caller, const char *user,
                              const char *node, pep_items_cb cb, void *ud)
{
    pep_api_job *j = pep_api_job_new(caller, PEP_OP_ITEMS, node, NULL, cb, NULL, ud);
    if (j)
        pep_with_service(pep_of(api), user, false, pep_api_run, pep_api_job_free, j);
}

static void pep_api_publish(const pep_api *api, xmppd_module *caller, const char *user,
                            const char *node, const char *id, const xmppd_stanza *payload,
                            const xmppd_stanza *options, pep_done_cb cb, void *ud)
{
    pep_api_job *j = pep_api_job_new(caller, PEP_OP_PUBLISH, node, id, NULL, cb, ud);
    if (!j)
        return;
    j->payload = payload ? xmppd_stanza_copy(payload) : NULL;
    j->options = options ? xmppd_form_parse(options, NULL) : NULL;
    if ((payload && !j->payload) || (options && !j->options)) {
        pep_api_answer(j, -1, options && !j->options ? "bad-request" : "internal-server-error", NULL);
        pep_api_job_free(j);
        return;
    }
    pep_with_service(pep_of(api), user, true, pep_api_run, pep_api_job_free, j);
}

static void pep_api_retract(const pep_api *api, xmppd_module *caller, const char *user,
                            const char *node, const char *id, pep_done_cb cb, void *ud)
{
    pep_api_job *j = pep_api_job_new(caller, PEP_OP_RETRACT, node, id, NULL, cb, ud);
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
