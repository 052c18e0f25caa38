/* IQ requests the server sends and whose answers it waits for
 * (api/xmppd/router.h xmppd_iq_request): a table by id, checked by the
 * router before it delivers an IQ result or error. An answer counts only
 * when it comes from the entity asked, to the address that asked, so no
 * one else can answer in its name (RFC 6120 §8.2.3). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/session.h"
#include "util/strmap.h"

typedef struct iq_req {
    char *id;
    xmppd_jid *asked;        /* the request's 'to' */
    xmppd_jid *asker;        /* the request's 'from' */
    xmppd_module *m;         /* ref held; NULL: the kernel */
    module_cleanup *cleanup; /* m unloading cancels the request */
    xmppd_timer *timer;
    xmppd_iq_cb cb;
    void *ud;
    bool sending;            /* inside xmppd_route: answers wait (early) */
    xmppd_stanza *early;     /* an answer that came while sending (ref) */
} iq_req;

static strmap *g_requests; /* id -> iq_req (owned) */

static void req_free(iq_req *r)
{
    strmap_del(g_requests, r->id);
    if (r->timer)
        xmppd_timer_cancel(r->timer);
    if (r->cleanup)
        module_cleanup_cancel(r->m, r->cleanup);
    if (r->m)
        module_unref(r->m);
    xmppd_stanza_unref(r->early);
    xmppd_jid_free(r->asked);
    xmppd_jid_free(r->asker);
    free(r->id);
    free(r);
}

/* Answers r once and frees it. */
static void req_answer(iq_req *r, int status, xmppd_stanza *reply)
{
    xmppd_iq_cb cb = r->cb;
    void *ud = r->ud;
    req_free(r);
    cb(status, reply, ud);
}

static uint64_t req_timeout(void *ud)
{
    iq_req *r = ud;
    r->timer = NULL; /* freed by the loop when this returns 0 */
    req_answer(r, XMPPD_IQ_TIMEOUT, NULL);
    return 0;
}

/* An answer that came while the request was being routed (a bounce),
 * delivered on the next loop turn: never from inside xmppd_iq_request. */
static uint64_t req_early(void *ud)
{
    iq_req *r = ud;
    r->timer = NULL;
    xmppd_stanza *reply = xmppd_stanza_ref(r->early);
    const char *type = xmppd_stanza_attr(reply, "type");
    req_answer(r, type && type[0] == 'r' ? XMPPD_IQ_RESULT : XMPPD_IQ_ERROR, reply);
    xmppd_stanza_unref(reply);
    return 0;
}

static void req_cancel(void *p)
{
    iq_req *r = p;
    r->cleanup = NULL;
    req_answer(r, XMPPD_IQ_CANCELLED, NULL);
}

/* Did the answer come from the entity asked? A request to a bare JID or a
 * domain may be answered by that address only; to a full JID, by it. */
static bool from_asked(const iq_req *r, const xmppd_jid *from)
{
    return from && xmppd_jid_equal(from, r->asked);
}

bool iq_requests_answer(xmppd_event *ev)
{
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    const char *id = xmppd_stanza_attr(ev->stanza, "id");
    if (!type || !id || (strcmp(type, "result") != 0 && strcmp(type, "error") != 0))
        return false;
    iq_req *r = g_requests ? strmap_get(g_requests, id) : NULL;
    if (!r) {
        /* In a cluster the client may be on another node than the one
         * that asked: its answer goes back there (the id names it). */
        char node[128];
        return g_session_cluster && session_id_node(id, node, sizeof(node)) &&
               strcmp(node, g_session_cluster->node) != 0 && g_session_cluster->answer(node, ev);
    }
    if (r->early || !ev->to || !xmppd_jid_equal(ev->to, r->asker) || !from_asked(r, ev->from))
        return false;
    if (r->sending)
        r->early = xmppd_stanza_ref(ev->stanza);
    else
        req_answer(r, type[0] == 'r' ? XMPPD_IQ_RESULT : XMPPD_IQ_ERROR, ev->stanza);
    return true;
}

XMPPD_EXPORT int xmppd_iq_request(xmppd_module *m, xmppd_stanza *iq, uint64_t timeout_ms,
                                  xmppd_iq_cb cb, void *ud)
{
    const char *type = xmppd_stanza_attr(iq, "type");
    if ((m && !m->loaded) || !cb || strcmp(xmppd_stanza_name(iq), "iq") != 0 || !type ||
        (strcmp(type, "get") != 0 && strcmp(type, "set") != 0))
        return -1;
    if (!g_requests && !(g_requests = strmap_new()))
        return -1;
    iq_req *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->asked = xmppd_jid_parse(xmppd_stanza_attr(iq, "to"));
    r->asker = xmppd_jid_parse(xmppd_stanza_attr(iq, "from"));
    const char *id = xmppd_stanza_attr(iq, "id");
    char fresh[128];
    if (!id) {
        unsigned char raw[9];
        char *b = xmppd_random(raw, sizeof(raw)) == 0 ? xmppd_base64_encode(raw, sizeof(raw)) : NULL;
        const char *node = xmppd_cluster_node();
        /* in a cluster the id names this node (cstate.c session_id_node) */
        snprintf(fresh, sizeof(fresh), "xmppd-%s%s%s", node ? node : "", node ? "-" : "",
                 b ? b : "");
        free(b);
        id = fresh;
    }
    r->id = strdup(id);
    r->cb = cb;
    r->ud = ud;
    if (!r->asked || !r->asker || !r->id || strmap_get(g_requests, r->id) ||
        strmap_put(g_requests, r->id, r) < 0) {
        xmppd_jid_free(r->asked);
        xmppd_jid_free(r->asker);
        free(r->id);
        free(r);
        return -1;
    }
    if (m) {
        r->m = m;
        module_ref(m);
    }
    if ((m && !(r->cleanup = module_cleanup_add(m, req_cancel, r))) ||
        !(r->timer = xmppd_timer_add(NULL, timeout_ms ? timeout_ms : 1, req_timeout, r)) ||
        (id == fresh && xmppd_stanza_set_attr(iq, "id", fresh) < 0)) {
        req_free(r);
        return -1;
    }
    r->sending = true;
    int rc = xmppd_route(xmppd_host_find(r->asker->domain), iq);
    r->sending = false;
    if (rc < 0) {
        req_free(r);
        return -1;
    }
    if (r->early) {
        xmppd_timer_cancel(r->timer);
        if (!(r->timer = xmppd_timer_add(NULL, 0, req_early, r))) {
            /* Out of memory: the answer is lost, the caller learns nothing
             * better than a timeout would tell. */
            req_free(r);
            return -1;
        }
    }
    return 0;
}
