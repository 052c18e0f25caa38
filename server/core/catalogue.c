/* The catalogue of events, specifications and compliance levels (see
 * catalogue.h). The event table below is the one source of truth for
 * docs/modules.md ("xmppctl hooks --markdown") and `xmppctl hooks`; when
 * the kernel fires a new event, add it here. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/catalogue.h"

/* ---- events ---------------------------------------------------------------------- */

#define KERNEL "kernel"

static const catalogue_event g_events[] = {
    /* streams */
    { "stream-features", "all", KERNEL,
      "the server is about to send <stream:features/> to a client: after its stream header, "
      "again after TLS and after SASL",
      "session: the stream (xmppd_session_authenticated() tells whether SASL is done); "
      "stanza: the <stream:features/> element being built, add children to it" },
    { "auth-success", "all", KERNEL,
      "a client completed SASL; its stream restarts next (SASL2: no restart, <success/> "
      "follows)",
      "session; data: const char * account localpart" },
    { "auth-failure", "all", KERNEL,
      "a SASL attempt failed on its credentials (wrong password, unknown account, authzid of "
      "another account), before the delayed <failure/> is sent",
      "session; data: NULL (no secret is ever passed)" },
    { "sasl2-features", "all", KERNEL,
      "the server builds the SASL2 <authentication/> stream feature (XEP-0388) of a stream "
      "not yet authenticated",
      "session: the stream; stanza: the <inline/> element inside <authentication/>: append the "
      "features a module negotiates inline (XEP-0198: <sm xmlns='urn:xmpp:sm:3'/>)" },
    { "sasl2-inline", "first", KERNEL,
      "a client authenticated with SASL2 (XEP-0388): once per child of its <authenticate/> "
      "the kernel does not serve itself (all but <initial-response/>, <user-agent/>, "
      "<supported/>, Bind2's <bind/> and FAST's elements), before Bind2 and <success/>",
      "session: the authenticated, not yet bound session; stanza: that child; data: the "
      "<success/> xmppd_stanza * being built: append the answer to it. HANDLED: the child is "
      "served. A handler may move a hibernated session onto the connection "
      "(xmppd_session_resume, XEP-0198): the kernel then skips Bind2. What is written to the "
      "session meanwhile goes out after <success/> and the stream features. A handler that "
      "must ask first (another node's replica) takes xmppd_bind2_hold(ev) and appends before "
      "xmppd_bind2_release: Bind2 and <success/> wait" },
    { "bind2-features", "all", KERNEL,
      "the server builds the Bind2 feature (XEP-0386) inside the SASL2 <inline/> feature",
      "session: the stream; stanza: the <inline/> element inside <bind "
      "xmlns='urn:xmpp:bind:0'>: append <feature var='NAMESPACE'/> for what a module "
      "enables inline" },
    { "bind2-inline", "all", KERNEL,
      "a session was bound by Bind2 (XEP-0386): once per child of the client's <bind/> other "
      "than <tag/>, before resource-bound and <success/>",
      "session: the bound session; stanza: that child (e.g. <enable xmlns='urn:xmpp:sm:3'/>); "
      "data: the <bound/> xmppd_stanza * inside <success/>: append the answer element to it" },
    { "bind2-bound", "all", KERNEL,
      "a session was bound by Bind2 (XEP-0386): once, after the bind2-inline events, before "
      "resource-bound and <success/>",
      "session: the bound session; stanza: the client's <bind xmlns='urn:xmpp:bind:0'/>; data: "
      "the <bound/> xmppd_stanza *: append what the server says unasked (XEP-0313 <metadata/>). "
      "A handler that must read its answer first takes xmppd_bind2_hold(ev) and appends before "
      "xmppd_bind2_release: <success/> waits" },
    { "resource-bind", "first", KERNEL,
      "an authenticated client asks to bind a resource (RFC 6120 section 7, or Bind2 in its "
      "SASL2 request)",
      "session; stanza: the bind <iq/>, or the <bind xmlns='urn:xmpp:bind:0'/> of a SASL2 "
      "request. HANDLED or FAIL refuses the bind with <not-allowed/> (Bind2: no <bound/>, "
      "the client may bind the RFC 6120 way)" },
    { "resource-bound", "all", KERNEL,
      "a resource was bound: the session is in the session table and stanzas flow",
      "session (xmppd_session_jid() is its full JID)" },
    { "stream-element", "first", KERNEL,
      "a stream not yet bound sent a top-level element that is neither STARTTLS, SASL nor bind",
      "session; stanza: the element. HANDLED consumes it; otherwise the stream ends with "
      "<not-authorized/> (or <unsupported-stanza-type/> after SASL)" },
    { "session-detach", "first", KERNEL,
      "the connection of a bound session was lost (not closed by the server or the client): "
      "HANDLED keeps the session hibernated (XEP-0198) until it is resumed or closed",
      "session (bound; its connection is gone)" },
    { "session-held", "all", KERNEL,
      "something was written to a hibernated session: the module keeping it holds the element",
      "session; stanza: the element that had no connection to go to; to: the session's JID" },
    { "session-closed", "all", KERNEL,
      "a bound session ended (logout, error, kick, replaced, shutdown), after it left the "
      "session table",
      "session (reads as closed, sends are dropped): free what you keep in its slot" },
    { "replica-expired", "all", KERNEL,
      "a cluster: a session of a dead node that was replicated (api/xmppd/cluster.h) was not "
      "resumed on any node in time: it ends here",
      "data: const xmppd_replica_state * (the session's full JID and the stanzas its client "
      "never acknowledged); no session" },
    /* stanzas */
    { "stanza-in", "first", KERNEL,
      "a bound client stream sent a top-level element (stanzas and others, e.g. stream "
      "management), before any check",
      "session; stanza; from: the session's full JID. HANDLED consumes the element; otherwise "
      "stanzas go on to pre-route, other elements end the stream with <unsupported-stanza-type/>" },
    { "pre-route", "first", KERNEL,
      "a stanza from a client, after 'from' is stamped and 'to' validated, before routing",
      "session; stanza; from; to (NULL: no 'to', the account itself). HANDLED stops it: the "
      "handler answers when an answer is due" },
    { "message/host", "first", KERNEL,
      "a message is addressed to a local host's domain",
      "host: the target host; session: the sender's session when it is a local client, else "
      "NULL; stanza; from; to. If all pass: service-unavailable (headlines are dropped)" },
    { "message/bare", "first", KERNEL,
      "a message is addressed to a local account's bare JID (also a chat/normal message to an "
      "unavailable full JID, RFC 6121 section 8.5.3.2.1)",
      "host; session (sender, may be NULL); stanza; from; to. If all pass: delivered by RFC "
      "6121 section 8.5.2, else message/offline" },
    { "message/full", "first", KERNEL,
      "a message is addressed to a local full JID",
      "host; session (sender, may be NULL); stanza; from; to. If all pass: delivered to that "
      "resource, or as in section 8.5.3.2 when it is not bound" },
    { "message/offline", "first", KERNEL,
      "a normal or chat message reached an account with no available resource",
      "as message/bare. HANDLED: stored for later (offline storage); else the sender gets "
      "service-unavailable" },
    { "presence/host", "first", KERNEL,
      "a presence is addressed to a local host's domain",
      "host; session (sender, may be NULL); stanza; from; to. If all pass: dropped" },
    { "presence/bare", "first", KERNEL,
      "a presence is addressed to a local account's bare JID (subscriptions, probes, "
      "broadcasts from contacts)",
      "host; session (sender, may be NULL); stanza; from; to. If all pass: available and "
      "unavailable presence reach every available resource, others are dropped" },
    { "presence/full", "first", KERNEL,
      "a presence is addressed to a local full JID (directed presence)",
      "host; session (sender, may be NULL); stanza; from; to. If all pass: delivered to that "
      "resource when it is bound" },
    { "presence/broadcast", "first", KERNEL,
      "a client sent presence without 'to' (available or unavailable): its own broadcast",
      "session; stanza; from; data: const xmppd_presence_info * (was_available, initial: the "
      "session's initial presence, when offline messages are due)" },
    { "iq/host", "first", KERNEL,
      "an IQ to a local host that no xmppd_iq_handle() handler owns",
      "host; session (sender, may be NULL); stanza; from; to. If all pass: service-unavailable "
      "(type get/set); FAIL: internal-server-error" },
    { "iq/bare/filter", "first", KERNEL,
      "an IQ to a local account's bare JID (with 'to'), before any xmppd_iq_handle() handler "
      "answers for the account: privacy and blocking decide here",
      "host; session (sender, may be NULL); stanza; from; to. HANDLED: the filter answered or "
      "dropped it; PASS: IQ handlers, then iq/bare" },
    { "iq/bare", "first", KERNEL,
      "an IQ to a local account's bare JID (or without 'to': to the sender's own account) that "
      "no xmppd_iq_handle() handler owns",
      "host; session (sender, may be NULL); stanza; from; to (NULL: no 'to'). If all pass: "
      "service-unavailable; FAIL: internal-server-error" },
    { "iq/full", "first", KERNEL,
      "an IQ is addressed to a local full JID",
      "host; session (sender, may be NULL); stanza; from; to. If all pass: delivered to that "
      "resource, or service-unavailable when it is not bound" },
    { "route/remote", "first", KERNEL,
      "a stanza is addressed to a domain that is neither a local host nor a component",
      "host: the sender's host; session (may be NULL); stanza; from; to. HANDLED: taken for "
      "delivery (server-to-server); if all pass: remote-server-not-found" },
    { "message/delivered", "all", KERNEL,
      "a message was written to local sessions of one account (to its full JID, or the RFC "
      "6121 section 8.5.2 delivery to its bare JID)",
      "host; stanza; from; to: the address; data: const xmppd_delivery * (the sessions that "
      "got it). For copies to the account's other sessions (XEP-0280)" },
    { "deliver", "first", KERNEL,
      "a stanza is about to be written to a local session (xmppd_session_send)",
      "session and data: the receiving session; stanza (borrowed: copy before changing it). "
      "HANDLED: the handler took care of it (queued, redirected) and nothing is written" },
    { "stanza-out", "all", KERNEL,
      "a message, presence or IQ was queued on a bound client stream",
      "session: the receiver; stanza (read-only); to: the session's JID; data: const size_t * "
      "serialised size in bytes" },
    /* accounts */
    { "user-created", "all", KERNEL,
      "an account was created through the host's auth provider (xmppctl adduser, in-band "
      "registration)",
      "host; data: const char * account localpart" },
    { "user-deleted", "all", KERNEL,
      "an account was deleted; the kernel then purges everything stored for it",
      "host; data: const char * account localpart: forget cached state" },
    { "password-changed", "all", KERNEL,
      "an account's password was changed (its FAST tokens are revoked next)",
      "host; data: const char * account localpart" },
    { "user-disabled", "all", KERNEL,
      "an account was disabled (xmppctl disable, XEP-0133 disable-user, the admin API): it may "
      "not log in; its FAST tokens are revoked next",
      "host; data: const char * account localpart" },
    { "user-enabled", "all", KERNEL,
      "a disabled account was enabled again",
      "host; data: const char * account localpart" },
    /* lifecycle */
    { "module-loaded", "all", KERNEL,
      "a module instance was loaded after start (xmppctl module load/reload, SIGHUP), after its "
      "ready()",
      "host: its host (NULL: a global module); data: const char * module name" },
    { "module-unloaded", "all", KERNEL,
      "a module instance was unloaded (not at shutdown); on a reload the new instance is "
      "already in place",
      "host (NULL: global); data: const char * module name" },
    { "host-added", "all", KERNEL,
      "a configuration reload added a host, once its modules are loaded",
      "host" },
    { "host-removed", "all", KERNEL,
      "a configuration reload removes a host, before its modules unload",
      "host" },
    { "config-reloaded", "all", KERNEL,
      "a new configuration is in force (SIGHUP or xmppctl reload)",
      "host: NULL" },
    { "cluster-invalidate", "all", KERNEL,
      "another node of the cluster stored a change of an account's data for a module "
      "(xmppd_cluster_invalidate): drop or reload the copy kept here",
      "host; to: the account's bare JID; data: const char * module name" },
    /* bundled modules */
    { "disco-info", "all", "disco",
      "mod_disco builds a disco#info result (XEP-0030) for the host or an account, also for "
      "the server's own caps hash",
      "host; stanza: the <query/> being built (add children; answer nodes); to: the entity "
      "asked about; from, session: the requester; data: the request <iq/> (NULL for the "
      "server itself)" },
    { "disco-items", "all", "disco",
      "mod_disco builds a disco#items result",
      "as disco-info" },
    { "caps-resolved", "all", "caps",
      "mod_caps got the disco#info behind an entity's XEP-0115 verification string (or an "
      "answer for that entity alone)",
      "host; from: the entity's full JID; session: that local session, or NULL for another "
      "server's entity (modules/caps/caps_api.h tells its features)" },
    { "pep-changed", "all", "pep",
      "an account's PEP node changed: items published or retracted, purged, deleted (XEP-0163)",
      "host; data: const pep_change * (modules/pep/pep_api.h): account, node, kind, item id, "
      "payload, publisher (NULL when a module made the change)" },
    { "vcard-changed", "all", "vcard",
      "an account's vCard was stored or removed (XEP-0054)",
      "host; data: const vcard_change * (modules/vcard/vcard_api.h): account, the new vCard "
      "(NULL: removed), whether a module set it" },
    { "muc/room-iq", "first", "muc",
      "an IQ to a room in a namespace mod_muc does not serve (XEP-0313 queries for mod_muc_mam)",
      "host; stanza, from, to: the IQ to the room's bare JID; HANDLED once answered, else "
      "service-unavailable (modules/muc/muc_api.h)" },
    { "muc/room-info", "all", "muc",
      "a room's disco#info is being built",
      "host; to: the room; from: the requester; data: the <query/> (xmppd_stanza *) to add "
      "features to" },
    { "vcard-source-changed", "all", "vcard_ldap",
      "a vCard source (modules/vcard/vcard_source.h) read an account's entry again and found it "
      "changed; mod_vcard then fires vcard-changed with the vCard it now serves",
      "host; data: const char * account localpart" },
    { "adhoc-ready", "all", "adhoc",
      "a mod_adhoc instance is ready (loaded, or reloaded with no commands yet): modules that "
      "offer ad-hoc commands (XEP-0050) add them",
      "host; data: const adhoc_api * (modules/adhoc/adhoc_api.h) of that instance" },
    { "private-changed", "all", "private",
      "an account's private XML fragment was stored (XEP-0049)",
      "host; data: const private_change * (modules/private/private_api.h): account, the "
      "element, whether a module set it" },
};

const catalogue_event *catalogue_events(size_t *n_r)
{
    *n_r = sizeof(g_events) / sizeof(g_events[0]);
    return g_events;
}

/* ---- events declared by modules ---------------------------------------------------- */

typedef struct declared {
    struct declared *next;
    catalogue_event ev; /* strings owned */
    xmppd_module *m;
} declared;

static declared *g_declared;

static void declared_free(declared *d)
{
    free((char *)d->ev.name);
    free((char *)d->ev.payload);
    free(d);
}

static void declared_release(void *p)
{
    for (declared **dp = &g_declared; *dp; dp = &(*dp)->next)
        if (*dp == p) {
            *dp = ((declared *)p)->next;
            break;
        }
    declared_free(p);
}

XMPPD_EXPORT int xmppd_event_declare(xmppd_module *m, const char *event, int stop,
                                     const char *payload)
{
    if (!m || !m->loaded || !event || !*event || strlen(event) > 128 ||
        (stop != XMPPD_EVENT_FIRST && stop != XMPPD_EVENT_ALL))
        return -1;
    declared *d = calloc(1, sizeof(*d));
    if (!d)
        return -1;
    d->m = m;
    d->ev.name = strdup(event);
    d->ev.payload = strdup(payload ? payload : "");
    d->ev.stop = stop == XMPPD_EVENT_ALL ? "all" : "first";
    d->ev.source = m->def->name;
    d->ev.when = "";
    if (!d->ev.name || !d->ev.payload || !module_cleanup_add(m, declared_release, d)) {
        declared_free(d);
        return -1;
    }
    d->next = g_declared;
    g_declared = d;
    return 0;
}

/* ---- xmppctl hooks ------------------------------------------------------------------- */

typedef struct hooks_ctx {
    json_t *events; /* name -> event object */
    json_t *order;  /* names in listing order */
    bool oom;
} hooks_ctx;

static json_t *event_json(hooks_ctx *c, const char *name, const char *stop, const char *source,
                          const char *when, const char *payload)
{
    json_t *e = json_object_get(c->events, name);
    if (e)
        return e;
    e = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:[], s:[]}", "name", name, "stop", stop,
                  "source", source, "when", when, "payload", payload, "declared_by", "handlers");
    if (!e || json_object_set_new(c->events, name, e) < 0 ||
        json_array_append_new(c->order, json_string(name)) < 0) {
        c->oom = true;
        return NULL;
    }
    return e;
}

static void on_handler(const char *event, const xmppd_host *h, const xmppd_module *m, int prio,
                       void *ud)
{
    hooks_ctx *c = ud;
    json_t *e = event_json(c, event, NULL, NULL, NULL, NULL);
    json_t *hd = json_pack("{s:s, s:s?, s:i}", "module", m ? m->def->name : KERNEL, "host",
                           h ? h->name : NULL, "priority", prio);
    if (!e || !hd || json_array_append_new(json_object_get(e, "handlers"), hd) < 0)
        c->oom = true;
}

static void on_iq(const char *type, const char *xmlns, unsigned target, const xmppd_host *h,
                  const xmppd_module *m, void *ud)
{
    json_t *list = ud;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s?}", "type", type, "xmlns", xmlns, "target",
                          target == XMPPD_IQ_HOST ? "host" : "bare", "module",
                          m ? m->def->name : KERNEL, "host", h ? h->name : NULL);
    if (o)
        json_array_append_new(list, o);
}

/* Is module `name` loaded anywhere? */
static bool loaded_anywhere(const char *name)
{
    if (xmppd_host_has_module(NULL, name))
        return true;
    for (size_t i = 0; i < g_server.n_hosts; i++)
        if (xmppd_host_has_module(g_server.hosts[i], name))
            return true;
    return false;
}

json_t *catalogue_hooks_json(void)
{
    hooks_ctx c = { json_object(), json_array(), false };
    json_t *iqs = json_array();
    json_t *out = NULL;
    if (!c.events || !c.order || !iqs)
        goto done;
    for (size_t i = 0; i < sizeof(g_events) / sizeof(g_events[0]); i++) {
        const catalogue_event *e = &g_events[i];
        if (strcmp(e->source, KERNEL) != 0 && !loaded_anywhere(e->source))
            continue;
        event_json(&c, e->name, e->stop, e->source, e->when, e->payload);
    }
    for (const declared *d = g_declared; d; d = d->next) {
        json_t *e = event_json(&c, d->ev.name, d->ev.stop, d->ev.source, NULL, d->ev.payload);
        if (e && json_is_null(json_object_get(e, "source"))) {
            json_object_set_new(e, "stop", json_string(d->ev.stop));
            json_object_set_new(e, "source", json_string(d->ev.source));
            json_object_set_new(e, "payload", json_string(d->ev.payload));
        }
        const char *host = d->m->host ? d->m->host->name : NULL;
        json_t *by = json_pack("{s:s, s:s?}", "module", d->m->def->name, "host", host);
        if (!e || !by || json_array_append_new(json_object_get(e, "declared_by"), by) < 0)
            c.oom = true;
    }
    hooks_foreach_handler(on_handler, &c);
    hooks_foreach_iq(on_iq, iqs);
    if (c.oom)
        goto done;
    json_t *events = json_array();
    size_t i;
    json_t *name;
    json_array_foreach(c.order, i, name)
        json_array_append(events, json_object_get(c.events, json_string_value(name)));
    out = json_pack("{s:o, s:O}", "events", events, "iq_handlers", iqs);
done:
    json_decref(c.events);
    json_decref(c.order);
    json_decref(iqs);
    return out;
}

static void md_text(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else if (*s == '<')
            fputs("&lt;", out);
        else if (*s == '>')
            fputs("&gt;", out);
        else
            fputc(*s, out);
    }
}

void catalogue_print_markdown(FILE *out)
{
    fprintf(out, "| event | stops | fired by | when | what the event carries |\n");
    fprintf(out, "|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof(g_events) / sizeof(g_events[0]); i++) {
        const catalogue_event *e = &g_events[i];
        fprintf(out, "| `%s` | %s | %s | ", e->name, e->stop,
                strcmp(e->source, KERNEL) == 0 ? "kernel" : e->source);
        md_text(out, e->when);
        fputs(" | ", out);
        md_text(out, e->payload);
        fputs(" |\n", out);
    }
}

/* ---- specifications ---------------------------------------------------------------- */

/* "xep-199", "XEP 0199", "XEP-0199 v1.2" -> "XEP-0199"; "rfc6121" -> "RFC 6121".
 * Anything else is copied as it is. */
static void spec_canon(const char *in, char *out, size_t len)
{
    const char *p = in;
    bool xep = strncasecmp(p, "XEP", 3) == 0, rfc = strncasecmp(p, "RFC", 3) == 0;
    if (xep || rfc) {
        p += 3;
        if (*p == '-' || *p == ' ')
            p++;
        char *end;
        unsigned long n = strtoul(p, &end, 10);
        if (end != p && n < 100000 && (*end == '\0' || *end == ' ' || *end == ':')) {
            snprintf(out, len, xep ? "XEP-%04lu" : "RFC %lu", n);
            return;
        }
    }
    snprintf(out, len, "%s", in);
}

typedef struct spec_list {
    json_t *map; /* canonical spec -> array of providers */
} spec_list;

static void spec_add(spec_list *sl, const char *spec, const char *by)
{
    char c[64];
    spec_canon(spec, c, sizeof(c));
    json_t *arr = json_object_get(sl->map, c);
    if (!arr) {
        arr = json_array();
        if (!arr || json_object_set_new(sl->map, c, arr) < 0)
            return;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
        if (strcmp(json_string_value(v), by) == 0)
            return;
    json_array_append_new(arr, json_string(by));
}

/* What the kernel itself implements in this configuration. */
static void kernel_specs(spec_list *sl)
{
    static const char *const always[] = {
        "RFC 6120", /* streams, TLS, SASL, binding, stanzas (client side) */
        "RFC 7590", /* TLS use in XMPP */
        "RFC 7622", /* JID format (stringprep profiles) */
        "RFC 5802", /* SCRAM */
        "RFC 7677", /* SCRAM-SHA-256 */
        "RFC 5929", /* tls-server-end-point channel binding */
        "RFC 9266", /* tls-exporter channel binding */
        "XEP-0440", /* SASL channel-binding type capability */
        NULL,
    };
    for (const char *const *s = always; *s; s++)
        spec_add(sl, *s, KERNEL);
    const xmppd_config *cfg = g_server.cfg;
    if (cfg && cfg->c2s.sasl2) {
        spec_add(sl, "XEP-0388", KERNEL); /* SASL2 */
        spec_add(sl, "XEP-0386", KERNEL); /* Bind2 */
        if (cfg->c2s.fast.enabled)
            spec_add(sl, "XEP-0484", KERNEL); /* FAST */
    }
    if (cfg && cfg->c2s.ssdp)
        spec_add(sl, "XEP-0474", KERNEL); /* SCRAM downgrade protection */
    for (size_t i = 0; cfg && i < cfg->n_listeners; i++) {
        const listener_conf *l = &cfg->listeners[i];
        if (l->type == LISTEN_C2S && l->tls == LISTEN_TLS_DIRECT)
            spec_add(sl, "XEP-0368", KERNEL); /* direct TLS */
        if (l->type == LISTEN_COMPONENT)
            spec_add(sl, "XEP-0114", KERNEL); /* external components */
        if (l->type == LISTEN_S2S && cfg->s2s.bidi)
            spec_add(sl, "XEP-0288", KERNEL); /* bidirectional s2s streams */
        if (l->type == LISTEN_HTTP) {
            spec_add(sl, "XEP-0156", KERNEL); /* host-meta lists the endpoints */
            if (cfg->http.websocket.enabled)
                spec_add(sl, "RFC 7395", KERNEL); /* XMPP over WebSocket */
            if (cfg->http.bosh.enabled) {
                spec_add(sl, "XEP-0124", KERNEL); /* BOSH */
                spec_add(sl, "XEP-0206", KERNEL); /* XMPP over BOSH */
            }
        }
    }
}

static void module_specs(spec_list *sl, const xmppd_module *m)
{
    for (const char *const *s = m->def->specs; s && *s; s++)
        spec_add(sl, *s, m->def->name);
}

/* ---- XMPP Compliance Suites 2023 (XEP-0479), the server columns ------------------------ */

enum { CS_NO = 0, CS_YES = 1, CS_NA = 2 };

typedef struct cs_row {
    const char *category;
    const char *feature;
    const char *providers[5]; /* all required, unless any */
    bool any;                 /* one of the providers is enough */
    unsigned char server, advanced;
    const char *note;
} cs_row;

static const cs_row g_cs2023[] = {
    { "Core", "Core features", { "RFC 6120" }, false, CS_YES, CS_YES, NULL },
    { "Core", "TLS", { "RFC 7590" }, false, CS_YES, CS_YES, NULL },
    { "Core", "Direct TLS", { "XEP-0368" }, false, CS_NO, CS_YES,
      "a c2s listener with \"tls\": \"direct\"" },
    { "Core", "Feature discovery", { "XEP-0030" }, false, CS_YES, CS_YES, NULL },
    { "Core", "Feature broadcasts", { "XEP-0115" }, false, CS_NO, CS_YES, NULL },
    { "Core", "Server Extensibility", { "XEP-0114" }, false, CS_YES, CS_YES,
      "a \"component\" listener" },
    { "Core", "Event publishing", { "XEP-0163" }, false, CS_NO, CS_YES, NULL },
    { "Web", "Web Connection Mechanisms", { "RFC 7395", "XEP-0206" }, true, CS_YES, CS_YES,
      "may be provided by an external component" },
    { "Web", "Connection Mechanism Discovery", { "XEP-0156" }, false, CS_NO, CS_NA, NULL },
    { "IM", "Core features", { "RFC 6121" }, false, CS_YES, CS_YES, NULL },
    { "IM", "User Avatar Compatibility", { "XEP-0398", "XEP-0153" }, false, CS_NO, CS_YES, NULL },
    { "IM", "vcard-temp", { "XEP-0054" }, false, CS_YES, CS_YES, NULL },
    { "IM", "Outbound Message Synchronization", { "XEP-0280" }, false, CS_YES, CS_YES, NULL },
    { "IM", "User Blocking", { "XEP-0191" }, false, CS_NO, CS_YES, NULL },
    { "IM", "Group Chat", { "XEP-0045", "XEP-0249" }, false, CS_YES, CS_YES,
      "may be provided by an external component" },
    { "IM", "Advanced Group Chat", { "XEP-0048", "XEP-0313", "XEP-0402", "XEP-0410" }, false,
      CS_NO, CS_YES, "may be provided by an external component" },
    { "IM", "Persistent Storage of Private Data via PubSub", { "XEP-0223" }, false, CS_NO, CS_YES,
      NULL },
    { "IM", "Private XML Storage", { "XEP-0049" }, false, CS_NO, CS_YES, NULL },
    { "IM", "Stream Management", { "XEP-0198" }, false, CS_NO, CS_YES, NULL },
    { "IM", "History Storage / Retrieval", { "XEP-0313" }, false, CS_NO, CS_YES, NULL },
    { "IM", "File Upload", { "XEP-0363" }, false, CS_YES, CS_YES,
      "may be provided by an external component" },
    { "Mobile", "Stream Management", { "XEP-0198" }, false, CS_YES, CS_YES, NULL },
    { "Mobile", "Client State Indication", { "XEP-0352" }, false, CS_YES, CS_YES, NULL },
    { "Mobile", "Third Party Push Notifications", { "XEP-0357" }, false, CS_NO, CS_YES, NULL },
    { "A/V Calling", "STUN/TURN server discovery", { "XEP-0215" }, false, CS_YES, CS_YES, NULL },
};

static bool row_met(const cs_row *r, const json_t *specs)
{
    bool any = false, all = true;
    for (int i = 0; i < 5 && r->providers[i]; i++) {
        bool has = json_object_get(specs, r->providers[i]) != NULL;
        any = any || has;
        all = all && has;
    }
    return r->any ? any : all;
}

/* The rows of category (plus Core's, every category builds on it) that the
 * level requires and specs lacks, as JSON; and whether there are none. */
static json_t *suite_missing(const char *category, bool advanced, const json_t *specs)
{
    json_t *missing = json_array();
    if (!missing)
        return NULL;
    for (size_t i = 0; i < sizeof(g_cs2023) / sizeof(g_cs2023[0]); i++) {
        const cs_row *r = &g_cs2023[i];
        if (strcmp(r->category, category) != 0 && strcmp(r->category, "Core") != 0)
            continue;
        if ((advanced ? r->advanced : r->server) != CS_YES || row_met(r, specs))
            continue;
        json_t *prov = json_array();
        for (int k = 0; prov && k < 5 && r->providers[k]; k++)
            json_array_append_new(prov, json_string(r->providers[k]));
        json_t *o = json_pack("{s:s, s:s, s:o, s:b, s:s?}", "category", r->category, "feature",
                              r->feature, "providers", prov, "any", r->any, "note", r->note);
        if (o)
            json_array_append_new(missing, o);
    }
    return missing;
}

static json_t *host_features(const char *name, xmppd_host *h)
{
    spec_list sl = { json_object() };
    if (!sl.map)
        return NULL;
    kernel_specs(&sl);
    for (size_t i = 0; i < g_server.n_globals; i++)
        module_specs(&sl, g_server.globals[i]);
    for (size_t i = 0; h && i < h->n_modules; i++)
        module_specs(&sl, h->modules[i]);

    json_t *specs = json_array(), *suites = json_array();
    const char **keys = calloc(json_object_size(sl.map) + 1, sizeof(*keys));
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(sl.map, k, v)
        if (keys)
            keys[n++] = k;
    for (size_t i = 1; keys && i < n; i++) /* insertion sort: RFCs, then XEPs, by number */
        for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
            const char *t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
        }
    for (size_t i = 0; specs && keys && i < n; i++)
        json_array_append_new(specs, json_pack("{s:s, s:O}", "spec", keys[i], "by",
                                               json_object_get(sl.map, keys[i])));
    free(keys);

    static const char *const categories[] = { "Core", "IM", "Mobile", "Web", "A/V Calling" };
    for (size_t c = 0; suites && c < sizeof(categories) / sizeof(categories[0]); c++) {
        for (int adv = 0; adv < 2; adv++) {
            json_t *missing = suite_missing(categories[c], adv, sl.map);
            if (!missing)
                continue;
            json_array_append_new(suites, json_pack("{s:s, s:s, s:b, s:o}", "category",
                                                    categories[c], "level",
                                                    adv ? "Advanced Server" : "Server", "reached",
                                                    json_array_size(missing) == 0, "missing",
                                                    missing));
        }
    }
    json_decref(sl.map);
    if (!specs || !suites) {
        json_decref(specs);
        json_decref(suites);
        return NULL;
    }
    return json_pack("{s:s?, s:o, s:o}", "host", name, "specs", specs, "suites", suites);
}

json_t *catalogue_features_json(void)
{
    json_t *hosts = json_array();
    for (size_t i = 0; hosts && i < g_server.n_hosts; i++) {
        json_t *o = host_features(g_server.hosts[i]->name, g_server.hosts[i]);
        if (!o || json_array_append_new(hosts, o) < 0) {
            json_decref(hosts);
            return NULL;
        }
    }
    return hosts ? json_pack("{s:s, s:o}", "suite", "XEP-0479 (XMPP Compliance Suites 2023)",
                             "hosts", hosts)
                 : NULL;
}
