/* IQs to the service (disco, ping), to rooms (disco with muc#roominfo,
 * registration, admin, owner, moderation, ping) and to occupants (XEP-0410
 * self-ping, IQs relayed between occupants, XEP-0045 §17.4). */
#define _GNU_SOURCE /* twalk_r */
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "muc.h"

static int reply_empty(xmppd_event *ev)
{
    xmppd_reply(ev, xmppd_stanza_reply(ev->stanza));
    return XMPPD_HANDLED;
}

static void add_feature(xmppd_stanza *q, const char *var)
{
    xmppd_stanza *f = xmppd_stanza_tag(q, "feature", NULL);
    if (f)
        xmppd_stanza_set_attr(f, "var", var);
}

static void add_identity(xmppd_stanza *q, const char *name)
{
    xmppd_stanza *id = xmppd_stanza_tag(q, "identity", NULL);
    if (!id)
        return;
    xmppd_stanza_set_attr(id, "category", "conference");
    xmppd_stanza_set_attr(id, "type", "text");
    if (name)
        xmppd_stanza_set_attr(id, "name", name);
}

static const char *query_node(const xmppd_stanza *iq, const char *ns)
{
    const char *node = xmppd_stanza_attr(xmppd_stanza_child(iq, "query", ns), "node");
    return node && *node ? node : NULL;
}

/* ---- the service ------------------------------------------------------------------- */

static void service_info(muc_service *svc, xmppd_event *ev)
{
    if (query_node(ev->stanza, NS_DISCO_INFO)) {
        muc_error(ev, NULL, "cancel", "item-not-found", NULL);
        return;
    }
    xmppd_stanza *r, *q = muc_reply_query(ev, NS_DISCO_INFO, &r);
    if (!q)
        return;
    add_identity(q, svc->conf->name);
    static const char *const features[] = { NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MUC, NS_MUC_STABLE_ID,
                                            NS_PING, NS_OCCUPANT_ID, NULL };
    for (size_t i = 0; features[i]; i++)
        add_feature(q, features[i]);
    xmppd_reply(ev, r);
}

typedef struct room_list {
    muc_room **v;
    size_t n, cap;
    bool oom;
} room_list;

static void collect_public(const void *node, VISIT which, void *ud)
{
    room_list *l = ud;
    if (which != postorder && which != leaf)
        return;
    muc_room *room = *(muc_room *const *)node;
    if (room->locked || room->dead || !room->cfg.public_room)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        muc_room **v = realloc(l->v, cap * sizeof(*v));
        if (!v) {
            l->oom = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = room;
}

void muc_items_answer(xmppd_event *ev, const muc_item *items, size_t n)
{
    xmppd_stanza *query = xmppd_stanza_child(ev->stanza, "query", NS_DISCO_ITEMS);
    xmppd_rsm rsm;
    if (xmppd_rsm_parse(query, &rsm, NULL) < 0) { /* checked when it came */
        muc_error(ev, NULL, "modify", "bad-request", NULL);
        return;
    }
    size_t start = 0, end = n;
    if (rsm.present) {
        if (rsm.after) {
            while (start < n && strcmp(items[start].jid, rsm.after) <= 0)
                start++;
        } else if (rsm.before) {
            while (*rsm.before && end > 0 && strcmp(items[end - 1].jid, rsm.before) >= 0)
                end--;
            if (rsm.max >= 0 && end > (size_t)rsm.max)
                start = end - (size_t)rsm.max;
        } else if (rsm.index >= 0) {
            start = (size_t)rsm.index < n ? (size_t)rsm.index : n;
        }
        if (rsm.max >= 0 && end - start > (size_t)rsm.max)
            end = start + (size_t)rsm.max;
    }
    xmppd_stanza *r, *q = muc_reply_query(ev, NS_DISCO_ITEMS, &r);
    if (!q) {
        xmppd_rsm_clear(&rsm);
        muc_error(ev, NULL, "wait", "resource-constraint", NULL);
        return;
    }
    for (size_t i = start; i < end; i++) {
        xmppd_stanza *item = xmppd_stanza_tag(q, "item", NULL);
        if (!item)
            break;
        xmppd_stanza_set_attr(item, "jid", items[i].jid);
        xmppd_stanza_set_attr(item, "name", items[i].name);
    }
    if (rsm.present)
        xmppd_rsm_answer(q, end > start ? items[start].jid : NULL, (long)start,
                         end > start ? items[end - 1].jid : NULL, (long)n);
    xmppd_reply(ev, r);
    xmppd_rsm_clear(&rsm);
}

/* §6.3: the public rooms, in JID order, paged with XEP-0059 on request; in
 * a cluster those of every node (directory.c). */
static void service_items(muc_service *svc, xmppd_event *ev)
{
    xmppd_stanza *query = xmppd_stanza_child(ev->stanza, "query", NS_DISCO_ITEMS);
    if (query_node(ev->stanza, NS_DISCO_ITEMS)) {
        muc_error(ev, NULL, "cancel", "item-not-found", NULL);
        return;
    }
    xmppd_rsm rsm;
    const char *why = NULL;
    if (xmppd_rsm_parse(query, &rsm, &why) < 0) {
        muc_error(ev, NULL, "modify", "bad-request", why);
        return;
    }
    xmppd_rsm_clear(&rsm);
    if (muc_items_cluster(svc, ev))
        return;
    room_list l = { 0 };
    twalk_r(svc->rooms, collect_public, &l);
    muc_item *items = l.n ? calloc(l.n, sizeof(*items)) : NULL;
    if (l.oom || (l.n && !items)) {
        free(l.v);
        muc_error(ev, NULL, "wait", "resource-constraint", NULL);
        return;
    }
    for (size_t i = 0; i < l.n; i++)
        items[i] = (muc_item){ muc_room_jid(l.v[i]), l.v[i]->cfg.name ? l.v[i]->cfg.name
                                                                      : l.v[i]->node };
    muc_items_answer(ev, items, l.n);
    free(items);
    free(l.v);
}

void muc_service_iq(muc_service *svc, xmppd_event *ev)
{
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    if (strcmp(type, "result") == 0 || strcmp(type, "error") == 0)
        return;
    xmppd_stanza *c = xmppd_stanza_first(ev->stanza);
    const char *ns = xmppd_stanza_ns(c);
    bool get = strcmp(type, "get") == 0;
    if (get && strcmp(ns, NS_DISCO_INFO) == 0)
        service_info(svc, ev);
    else if (get && strcmp(ns, NS_DISCO_ITEMS) == 0)
        service_items(svc, ev);
    else if (get && strcmp(ns, NS_PING) == 0)
        reply_empty(ev);
    else
        muc_error(ev, NULL, "cancel", "service-unavailable", NULL);
}

/* ---- rooms: disco ------------------------------------------------------------------ */

static void add_field(xmppd_stanza *x, const char *var, const char *label, const char *value)
{
    xmppd_form_add_field(x, var, NULL, label, value);
}

/* §6.4: the muc#roominfo form (XEP-0128). The subject shows only for public
 * rooms (§14.4: information leaks). */
static void room_info_form(const muc_room *room, xmppd_stanza *q)
{
    const muc_config *c = &room->cfg;
    xmppd_stanza *x = xmppd_form_new("result", NS_MUC_ROOMINFO, NULL);
    if (!x || !xmppd_stanza_add(q, x))
        return;
    char num[24];
    add_field(x, "muc#roominfo_description", "Description", c->desc ? c->desc : "");
    if (c->public_room)
        add_field(x, "muc#roominfo_subject", "Current Discussion Topic",
                  room->subject ? room->subject : "");
    snprintf(num, sizeof(num), "%zu", room->n_occupants);
    add_field(x, "muc#roominfo_occupants", "Number of occupants", num);
    add_field(x, "muc#roominfo_subjectmod", "Subject can be modified", c->change_subject ? "1" : "0");
    add_field(x, "muc#roomconfig_changesubject", "Subject can be modified",
              c->change_subject ? "1" : "0");
    add_field(x, "muc#roomconfig_allowinvites", "Members may invite", c->allow_invites ? "1" : "0");
    snprintf(num, sizeof(num), "%ld", c->max_history_fetch);
    add_field(x, "muc#maxhistoryfetch", "Maximum Number of History Messages Returned by Room", num);
    if (c->lang)
        add_field(x, "muc#roominfo_lang", "Language of discussion", c->lang);
    if (c->whois_anyone) {
        xmppd_stanza *f = xmppd_form_add_field(x, "muc#roominfo_contactjid", "jid-multi",
                                               "Contact Addresses", NULL);
        const char *key;
        json_t *e;
        json_object_foreach(room->affs, key, e)
            if (f && muc_aff_parse(json_string_value(json_object_get(e, "affiliation"))) == AFF_OWNER)
                xmppd_form_add_value(f, key);
    }
}

static void room_info(muc_room *room, xmppd_event *ev)
{
    const char *node = query_node(ev->stanza, NS_DISCO_INFO);
    xmppd_stanza *r, *q;
    if (node && strcmp(node, NS_MUC_TRAFFIC) == 0) {
        muc_error(ev, room, "cancel", "service-unavailable", NULL); /* §18.1.1: nothing filtered */
        return;
    }
    if (node && strcmp(node, "x-roomuser-item") != 0) {
        muc_error(ev, room, "cancel", "item-not-found", NULL);
        return;
    }
    if (!(q = muc_reply_query(ev, NS_DISCO_INFO, &r)))
        return;
    if (node) {
        /* §7.12: the requester's reserved nick, if any. */
        xmppd_stanza_set_attr(q, "node", node);
        xmppd_jid *bare = xmppd_jid_to_bare(ev->from);
        const char *nick = bare ? muc_reserved_nick(room, bare->bare) : NULL;
        if (nick)
            add_identity(q, nick);
        xmppd_jid_free(bare);
        xmppd_reply(ev, r);
        return;
    }
    const muc_config *c = &room->cfg;
    add_identity(q, c->name ? c->name : room->node);
    static const char *const features[] = {
        NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MUC, NS_MUC_STABLE_ID, NS_MUC_SELF_PING, NS_MUC_REQUEST,
        NS_MUC_REGISTER, NS_MUC_ROOMCONFIG, NS_MUC_ROOMINFO, NS_REGISTER, NS_OCCUPANT_ID, NS_SID,
        NS_MODERATE0, NS_MODERATE1, NS_PING, NULL,
    };
    for (size_t i = 0; features[i]; i++)
        add_feature(q, features[i]);
    add_feature(q, c->public_room ? "muc_public" : "muc_hidden");
    add_feature(q, c->persistent ? "muc_persistent" : "muc_temporary");
    add_feature(q, c->members_only ? "muc_membersonly" : "muc_open");
    add_feature(q, c->moderated ? "muc_moderated" : "muc_unmoderated");
    add_feature(q, c->whois_anyone ? "muc_nonanonymous" : "muc_semianonymous");
    add_feature(q, c->password_protected ? "muc_passwordprotected" : "muc_unsecured");
    room_info_form(room, q);
    xmppd_event info = { .name = "muc/room-info", .host = ev->host, .session = ev->session,
                         .stanza = ev->stanza, .from = ev->from, .to = ev->to, .data = q };
    xmppd_fire_all(&info);
    xmppd_reply(ev, r);
}

/* ---- rooms: dispatch ---------------------------------------------------------------------- */

/* A namespace another module may serve on rooms (muc_api.h "muc/room-iq"). */
static int extension_iq(muc_room *room, xmppd_event *ev)
{
    const char *name = ev->name;
    ev->name = "muc/room-iq";
    int rc = xmppd_fire(ev);
    ev->name = name;
    if (rc == XMPPD_PASS)
        return muc_error(ev, room, "cancel", "service-unavailable", NULL);
    return rc;
}

static void room_iq(muc_room *room, xmppd_event *ev)
{
    xmppd_stanza *c = xmppd_stanza_first(ev->stanza);
    const char *ns = xmppd_stanza_ns(c);
    bool get = strcmp(xmppd_stanza_attr(ev->stanza, "type"), "get") == 0;
    if (room->locked && strcmp(ns, NS_MUC_OWNER) != 0) {
        /* §7.2.10: until configured the room does not exist for others. */
        muc_error(ev, room, "cancel", "item-not-found", NULL);
        return;
    }
    int rc;
    if (get && strcmp(ns, NS_DISCO_INFO) == 0) {
        room_info(room, ev);
        return;
    }
    if (get && strcmp(ns, NS_DISCO_ITEMS) == 0) {
        /* §6.5: the occupant list stays private. */
        xmppd_stanza *r, *q = muc_reply_query(ev, NS_DISCO_ITEMS, &r);
        if (q)
            xmppd_reply(ev, r);
        return;
    }
    if (strcmp(ns, NS_MUC_ADMIN) == 0)
        rc = muc_admin_iq(room, ev);
    else if (strcmp(ns, NS_MUC_OWNER) == 0)
        rc = muc_owner_iq(room, ev);
    else if (strcmp(ns, NS_REGISTER) == 0)
        rc = muc_register_iq(room, ev);
    else if (strcmp(ns, NS_MODERATE1) == 0 || strcmp(ns, NS_FASTEN) == 0)
        rc = muc_moderate_iq(room, ev);
    else if (get && strcmp(ns, NS_PING) == 0)
        rc = reply_empty(ev);
    else
        rc = extension_iq(room, ev);
    if (rc == XMPPD_FAIL)
        muc_error(ev, room, NULL, "internal-server-error", NULL);
}

/* ---- occupants: relayed IQs (§17.4 rule 3) ------------------------------------------------ */

static void proxied_free(muc_proxied *p)
{
    free(p->orig_id);
    xmppd_jid_free(p->requester);
    free(p->requester_nick);
    xmppd_jid_free(p->target);
    free(p->target_nick);
    free(p);
}

void muc_proxy_clear(muc_room *room)
{
    while (room->proxied) {
        muc_proxied *p = room->proxied;
        room->proxied = p->next;
        proxied_free(p);
    }
    room->n_proxied = 0;
}

/* Drops relayed IQs nobody answered in time. */
static void proxy_expire(muc_room *room)
{
    uint64_t now = xmppd_now_ms();
    for (muc_proxied **pp = &room->proxied; *pp;) {
        if (now - (*pp)->at > MUC_PROXY_TTL_MS) {
            muc_proxied *p = *pp;
            *pp = p->next;
            proxied_free(p);
            room->n_proxied--;
        } else {
            pp = &(*pp)->next;
        }
    }
}

/* Relays an IQ from occupant `from` to occupant `to`: the target sees the
 * sender's occupant JID and an id of the room's, never a real JID. */
static void proxy(muc_room *room, muc_sess *from, muc_occupant *to, xmppd_event *ev)
{
    proxy_expire(room);
    if (room->n_proxied >= MUC_MAX_PROXIED) {
        muc_error(ev, room, "wait", "resource-constraint", NULL);
        return;
    }
    /* XEP-0054 vCards are the account's: asked of its bare JID. */
    bool vcard = xmppd_stanza_child(ev->stanza, "vCard", NS_VCARD) != NULL;
    muc_proxied *p = calloc(1, sizeof(*p));
    xmppd_stanza *copy = p ? xmppd_stanza_copy(ev->stanza) : NULL;
    const char *id = xmppd_stanza_attr(ev->stanza, "id");
    if (!copy || !(p->orig_id = strdup(id)) || !(p->requester = xmppd_jid_dup(ev->from)) ||
        !(p->requester_nick = strdup(from->occ->nick)) || !(p->target_nick = strdup(to->nick)) ||
        !(p->target = vcard ? xmppd_jid_dup(to->bare) : xmppd_jid_dup(to->sessions->jid))) {
        if (p)
            proxied_free(p);
        xmppd_stanza_unref(copy);
        muc_error(ev, room, "wait", "resource-constraint", NULL);
        return;
    }
    muc_random_id(p->token);
    p->at = xmppd_now_ms();
    p->next = room->proxied;
    room->proxied = p;
    room->n_proxied++;
    char fromjid[3100];
    snprintf(fromjid, sizeof(fromjid), "%s/%s", muc_room_jid(room), from->occ->nick);
    xmppd_stanza_set_attr(copy, "from", fromjid);
    xmppd_stanza_set_attr(copy, "id", p->token);
    muc_send_to(room->svc, copy, p->target);
    xmppd_stanza_unref(copy);
}

bool muc_proxy_answer(muc_room *room, xmppd_event *ev)
{
    const char *id = xmppd_stanza_attr(ev->stanza, "id");
    for (muc_proxied **pp = &room->proxied; id && *pp; pp = &(*pp)->next) {
        muc_proxied *p = *pp;
        if (strcmp(p->token, id) != 0 || strcmp(p->requester_nick, ev->to->resource) != 0 ||
            !(xmppd_jid_equal(p->target, ev->from) ||
              (!p->target->resource && xmppd_jid_bare_equal(p->target, ev->from))))
            continue;
        *pp = p->next;
        room->n_proxied--;
        xmppd_stanza *copy = xmppd_stanza_copy(ev->stanza);
        if (copy) {
            char fromjid[3100];
            snprintf(fromjid, sizeof(fromjid), "%s/%s", muc_room_jid(room), p->target_nick);
            xmppd_stanza_set_attr(copy, "from", fromjid);
            xmppd_stanza_set_attr(copy, "id", p->orig_id);
            muc_send_to(room->svc, copy, p->requester);
            xmppd_stanza_unref(copy);
        }
        proxied_free(p);
        return true;
    }
    return false;
}

static void occupant_iq(muc_room *room, xmppd_event *ev)
{
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    if (strcmp(type, "result") == 0 || strcmp(type, "error") == 0) {
        muc_proxy_answer(room, ev);
        return;
    }
    const char *ns = xmppd_stanza_ns(xmppd_stanza_first(ev->stanza));
    muc_sess *s = muc_sess_find(room, ev->from);
    if (!s) {
        /* §6.6: disco of an occupant from outside is bad-request; anything
         * else (a XEP-0410 self-ping) tells the sender it is out. */
        bool disco = strcmp(ns, NS_DISCO_INFO) == 0 || strcmp(ns, NS_DISCO_ITEMS) == 0;
        muc_error(ev, room, disco ? "modify" : "cancel", disco ? "bad-request" : "not-acceptable",
                  NULL);
        return;
    }
    if (strcmp(ns, NS_PING) == 0 && strcmp(s->occ->nick, ev->to->resource) == 0) {
        reply_empty(ev); /* XEP-0410: answered by the room itself */
        return;
    }
    muc_occupant *to = muc_occ_by_nick(room, ev->to->resource);
    if (!to) {
        muc_error(ev, room, "cancel", "item-not-found", NULL);
        return;
    }
    proxy(room, s, to, ev);
}

void muc_iq(muc_service *svc, muc_room *room, xmppd_event *ev)
{
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    bool answer = strcmp(type, "result") == 0 || strcmp(type, "error") == 0;
    if (!room || room->dead) {
        if (!answer)
            muc_error(ev, NULL, "cancel", "item-not-found", NULL); /* §7.10: no such room */
        return;
    }
    if (ev->to->resource)
        occupant_iq(room, ev);
    else if (!answer)
        room_iq(room, ev);
}
