/* Event notifications (XEP-0060 §7.1.2.1, §7.2.2.1, §8.2.4, §8.4.2,
 * §8.5.2): built once per change, then sent to each explicit subscriber
 * (ops->send) and handed to the module for the others (ops->notify). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ps.h"

#define PS_NS_DELAY "urn:xmpp:delay"

xmppd_stanza *ps_item_element(const ps_item *it, const char *ns, bool with_payload,
                              bool with_publisher)
{
    xmppd_stanza *el = xmppd_stanza_new("item", ns);
    if (!el)
        return NULL;
    xmppd_stanza_set_attr(el, "id", it->id);
    if (with_publisher && it->publisher)
        xmppd_stanza_set_attr(el, "publisher", it->publisher);
    if (with_payload && it->payload && !xmppd_stanza_add(el, xmppd_stanza_copy(it->payload))) {
        xmppd_stanza_unref(el);
        return NULL;
    }
    return el;
}

/* <message from=service type id><event xmlns=#event/></message>; the
 * event element in *event_r. NULL on OOM. */
static xmppd_stanza *ps_event_message(const ps_service *s, const ps_node *n, xmppd_stanza **event_r)
{
    xmppd_stanza *msg = xmppd_stanza_new("message", XMPPD_NS_CLIENT);
    xmppd_stanza *ev = msg ? xmppd_stanza_tag(msg, "event", PS_NS_EVENT) : NULL;
    if (!ev) {
        xmppd_stanza_unref(msg);
        return NULL;
    }
    unsigned char rnd[8];
    char id[24];
    xmppd_random(rnd, sizeof(rnd));
    snprintf(id, sizeof(id), "ps%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3],
             rnd[4], rnd[5], rnd[6], rnd[7]);
    xmppd_stanza_set_attr(msg, "from", s->jid);
    xmppd_stanza_set_attr(msg, "type", n->cfg.notification_normal ? "normal" : "headline");
    xmppd_stanza_set_attr(msg, "id", id);
    *event_r = ev;
    return msg;
}

/* The bare JID of a prepared JID (up to the first '/'), in buf. */
static const char *ps_bare_of(const char *jid, char *buf, size_t len)
{
    const char *slash = strchr(jid, '/');
    size_t n = slash ? (size_t)(slash - jid) : strlen(jid);
    if (n >= len)
        n = len - 1;
    memcpy(buf, jid, n);
    buf[n] = '\0';
    return buf;
}

/* Sends nf to every subscriber that may still read n, then to the module's
 * other recipients. */
static void ps_deliver(ps_service *s, const ps_node *n, const ps_notification *nf, void *ctx)
{
    char bare[3 * 1024 + 4];
    for (const ps_sub *sub = n->subs; sub; sub = sub->next) {
        const char *type, *cond, *ps_cond;
        if (sub->deliver && ps_may_read(n, ps_bare_of(sub->jid, bare, sizeof(bare)), ctx, &type,
                                        &cond, &ps_cond) == 0)
            s->ops->send(s, sub->jid, nf->msg, ctx);
    }
    if (s->ops->notify)
        s->ops->notify(s, n, nf, ctx);
}

/* Builds <kind node=N> in a fresh notification message and delivers it
 * once add() filled it. */
static void ps_notify_kind(ps_service *s, const ps_node *n, const char *kind, const ps_item *item,
                           void (*add)(xmppd_stanza *el, const ps_node *n, const void *arg),
                           const void *arg, void *ctx)
{
    xmppd_stanza *ev;
    xmppd_stanza *msg = ps_event_message(s, n, &ev);
    const char *el_name = strcmp(kind, "retract") == 0 ? "items" : kind;
    xmppd_stanza *el = msg ? xmppd_stanza_tag(ev, el_name, NULL) : NULL;
    if (el) {
        xmppd_stanza_set_attr(el, "node", n->name);
        if (add)
            add(el, n, arg);
        ps_notification nf = { .msg = msg, .item = item, .kind = kind };
        ps_deliver(s, n, &nf, ctx);
    }
    xmppd_stanza_unref(msg);
}

static void ps_add_item(xmppd_stanza *el, const ps_node *n, const void *arg)
{
    xmppd_stanza *it = ps_item_element(arg, PS_NS_EVENT, n->cfg.deliver_payloads, !n->svc->pep);
    if (it)
        xmppd_stanza_add(el, it);
}

void ps_notify_publish(ps_service *s, const ps_node *n, const ps_item *it, void *ctx)
{
    if (n->cfg.deliver_notifications)
        ps_notify_kind(s, n, "items", it, ps_add_item, it, ctx);
}

static void ps_add_retract(xmppd_stanza *el, const ps_node *n, const void *arg)
{
    (void)n;
    xmppd_stanza *r = xmppd_stanza_tag(el, "retract", NULL);
    if (r)
        xmppd_stanza_set_attr(r, "id", arg);
}

void ps_notify_retract(ps_service *s, const ps_node *n, const char *id, void *ctx)
{
    if (n->cfg.deliver_notifications && n->cfg.notify_retract)
        ps_notify_kind(s, n, "retract", NULL, ps_add_retract, id, ctx);
}

void ps_notify_purge(ps_service *s, const ps_node *n, void *ctx)
{
    if (n->cfg.deliver_notifications && n->cfg.notify_retract)
        ps_notify_kind(s, n, "purge", NULL, NULL, NULL, ctx);
}

void ps_notify_delete(ps_service *s, const ps_node *n, void *ctx)
{
    if (n->cfg.deliver_notifications && n->cfg.notify_delete)
        ps_notify_kind(s, n, "delete", NULL, NULL, NULL, ctx);
}

static void ps_add_config(xmppd_stanza *el, const ps_node *n, const void *arg)
{
    (void)arg;
    if (n->cfg.deliver_payloads) {
        xmppd_stanza *x = ps_config_form(&n->cfg, "result", n->svc->lim, n->svc->pep);
        if (x)
            xmppd_stanza_add(el, x);
    }
}

void ps_notify_config(ps_service *s, const ps_node *n, void *ctx)
{
    if (n->cfg.deliver_notifications && n->cfg.notify_config)
        ps_notify_kind(s, n, "configuration", NULL, ps_add_config, NULL, ctx);
}

/* ---- the last item (§6.1.7, XEP-0163 §4.3.4) ----------------------------------------- */

void ps_send_last(ps_service *s, const ps_node *n, const char *jid, void *ctx)
{
    const ps_item *it = n->last;
    if (!it || !n->cfg.deliver_notifications)
        return;
    xmppd_stanza *ev;
    xmppd_stanza *msg = ps_event_message(s, n, &ev);
    xmppd_stanza *items = msg ? xmppd_stanza_tag(ev, "items", NULL) : NULL;
    xmppd_stanza *el = items ? ps_item_element(it, PS_NS_EVENT, n->cfg.deliver_payloads, !s->pep)
                             : NULL;
    xmppd_stanza *delay = el ? xmppd_stanza_tag(msg, "delay", PS_NS_DELAY) : NULL;
    if (delay && xmppd_stanza_add(items, el)) {
        xmppd_stanza_set_attr(items, "node", n->name);
        time_t t = (time_t)(it->when_ms / 1000);
        struct tm tm;
        char stamp[32];
        gmtime_r(&t, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
        xmppd_stanza_set_attr(delay, "stamp", stamp);
        xmppd_stanza_set_attr(delay, "from", s->jid);
        s->ops->send(s, jid, msg, ctx);
    } else if (!delay) {
        xmppd_stanza_unref(el);
    }
    xmppd_stanza_unref(msg);
}
