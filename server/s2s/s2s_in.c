/* Incoming server-to-server streams: the receiving side (RFC 6120 §4-§6)
 * and the authoritative side of dialback (XEP-0220 §2.3).
 *
 * The peer authenticates (local, remote) domain pairs: with SASL EXTERNAL
 * (XEP-0178) when its certificate validates for the domain it claims, or
 * with dialback, which asks the authoritative server of that domain over
 * our own outgoing stream. Stanzas are accepted only from an authenticated
 * remote domain to the local domain it authenticated with; anything else
 * ends the stream with the RFC 6120 §4.9.3 condition. */
#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "s2s/s2s.h"

static const s2s_conf *conf(void)
{
    return &g_server.cfg->s2s;
}

static bool is_stanza(const char *name)
{
    return strcmp(name, "message") == 0 || strcmp(name, "presence") == 0 || strcmp(name, "iq") == 0;
}

/* A domain as a peer wrote it: nameprepped, and a domain only. */
static char *domain_of(const char *s)
{
    if (!s || !*s)
        return NULL;
    xmppd_jid *j = xmppd_jid_parse(s);
    char *d = j && !j->node && !j->resource ? strdup(j->domain) : NULL;
    xmppd_jid_free(j);
    return d;
}

static bool tls_offerable(const s2s_conn *c)
{
    if (c->secure)
        return false;
    for (size_t i = 0; i < g_server.n_hosts; i++)
        if (g_server.hosts[i]->ssl_ctx)
            return true;
    return false;
}

bool s2s_in_has_pair(const s2s_conn *c, const char *local, const char *remote)
{
    for (size_t i = 0; i < c->n_pairs; i++)
        if (strcmp(c->pairs[i].local, local) == 0 && strcmp(c->pairs[i].remote, remote) == 0)
            return true;
    return false;
}

static int add_pair(s2s_conn *c, const char *local, const char *remote, const char *how)
{
    if (s2s_in_has_pair(c, local, remote))
        return 0;
    if (c->n_pairs >= S2S_MAX_PAIRS)
        return -1;
    s2s_pair *v = realloc(c->pairs, (c->n_pairs + 1) * sizeof(*v));
    if (!v)
        return -1;
    c->pairs = v;
    s2s_pair *p = &v[c->n_pairs];
    p->local = strdup(local);
    p->remote = strdup(remote);
    if (!p->local || !p->remote) {
        free(p->local);
        free(p->remote);
        return -1;
    }
    c->n_pairs++;
    s2s_mark_ready(c);
    log_kernel("s2s-in", XMPPD_LOG_INFO, "%s [%s]: authenticated for %s by %s", remote, c->tag,
               local, how);
    return 0;
}

/* ---- stream header and features ------------------------------------------------ */

static void send_features(s2s_conn *c)
{
    const s2s_conf *sc = conf();
    xmppd_stanza *f = xmppd_stanza_new("features", XS_NS_STREAM);
    if (!f) {
        s2s_close(c, "internal-server-error", NULL);
        return;
    }
    if (tls_offerable(c)) {
        xmppd_stanza *st = xmppd_stanza_tag(f, "starttls", NS_S2S_TLS);
        if (sc->require_encryption)
            xmppd_stanza_tag(st, "required", NS_S2S_TLS);
    }
    if (c->secure || !sc->require_encryption) {
        /* XEP-0178 §3: EXTERNAL only where the certificate proves the
         * domain named in the stream header. */
        if (!c->sasl_done && sc->authentication != S2S_AUTH_DIALBACK && c->secure &&
            s2s_cert_valid(c)) {
            xmppd_stanza *m = xmppd_stanza_tag(f, "mechanisms", NS_S2S_SASL);
            xmppd_stanza_add_text(xmppd_stanza_tag(m, "mechanism", NS_S2S_SASL), "EXTERNAL", 8);
        }
        if (sc->authentication != S2S_AUTH_EXTERNAL) {
            xmppd_stanza *db = xmppd_stanza_tag(f, "dialback", NS_DIALBACK_FEATURE);
            xmppd_stanza_tag(db, "errors", NS_DIALBACK_FEATURE);
            c->features_db_errors = true;
        }
        if (sc->bidi && !c->bidi)
            xmppd_stanza_tag(f, "bidi", NS_BIDI_FEATURE); /* XEP-0288 §2.1 */
    }
    xstream_write_features(&c->x, f);
    xmppd_stanza_unref(f);
}

int s2s_in_on_header(s2s_conn *c, const xs_header *h)
{
    const char *served = h->to ? s2s_served_domain(h->to) : NULL;
    bool restart = c->local != NULL;
    /* A new id per stream: dialback keys are bound to it. */
    s2s_new_stream_id(c);
    if (!restart && served && !(c->local = strdup(served))) {
        s2s_close(c, "internal-server-error", NULL);
        return 1;
    }
    char *from = domain_of(h->from);
    if (!restart && from && !c->remote) {
        c->remote = from;
        from = NULL;
    }
    bool from_changed = restart && from && c->remote && strcmp(from, c->remote) != 0;
    free(from);
    if (!h->default_ns || strcmp(h->default_ns, XMPPD_NS_SERVER) != 0) {
        s2s_close(c, "invalid-namespace", NULL);
        return 1;
    }
    if (!h->to) {
        s2s_close(c, "improper-addressing", "A 'to' attribute is required");
        return 1;
    }
    if (!served || (restart && strcmp(served, c->local) != 0)) {
        s2s_close(c, "host-unknown", restart ? "The stream restart named another domain" : NULL);
        return 1;
    }
    if (h->from && !c->remote) {
        s2s_close(c, "invalid-from", NULL);
        return 1;
    }
    if (from_changed) {
        s2s_close(c, "invalid-from", "The stream restart named another domain");
        return 1;
    }
    if (!h->version || strtol(h->version, NULL, 10) < 1) {
        s2s_close(c, "unsupported-version", NULL);
        return 1;
    }
    s2s_send_header(c);
    c->state = S2S_OPEN;
    send_features(c);
    return 0;
}

void s2s_in_tls_ready(s2s_conn *c)
{
    /* The peer speaks first: it sends a new stream header. */
    (void)c;
}

/* ---- SASL EXTERNAL (XEP-0178) ------------------------------------------------------ */

static void sasl_failure(s2s_conn *c, const char *cond)
{
    char buf[160];
    int n = snprintf(buf, sizeof(buf), "<failure xmlns='" NS_S2S_SASL "'><%s/></failure>", cond);
    s2s_write_raw(c, buf, (size_t)n);
    log_kernel("s2s-in", XMPPD_LOG_INFO, "%s [%s]: SASL EXTERNAL refused: %s",
               c->remote ? c->remote : "?", c->tag, cond);
}

static int handle_sasl(s2s_conn *c, xmppd_stanza *el)
{
    const char *name = xmppd_stanza_name(el);
    if (strcmp(name, "abort") == 0) {
        sasl_failure(c, "aborted");
        return 0;
    }
    if (strcmp(name, "auth") != 0 || c->sasl_done) {
        sasl_failure(c, "malformed-request");
        return 0;
    }
    const char *mech = xmppd_stanza_attr(el, "mechanism");
    if (!mech || strcmp(mech, "EXTERNAL") != 0 || conf()->authentication == S2S_AUTH_DIALBACK ||
        !c->secure) {
        sasl_failure(c, "invalid-mechanism");
        return 0;
    }
    const char *t = xmppd_stanza_text(el);
    char *authzid = NULL;
    if (*t && strcmp(t, "=") != 0) {
        unsigned char *raw = NULL;
        size_t len = 0;
        if (xmppd_base64_decode(t, strlen(t), &raw, &len) < 0 || len == 0 || len > 1023 ||
            strlen((char *)raw) != len) {
            free(raw);
            sasl_failure(c, "incorrect-encoding");
            return 0;
        }
        authzid = domain_of((char *)raw);
        free(raw);
        if (!authzid) {
            sasl_failure(c, "invalid-authzid");
            return 0;
        }
    }
    if (!authzid && !c->remote) {
        sasl_failure(c, "not-authorized"); /* no identity to check the certificate against */
        return 0;
    }
    if (authzid && c->remote && strcmp(authzid, c->remote) != 0) {
        free(authzid);
        sasl_failure(c, "invalid-authzid");
        return 0;
    }
    if (authzid && !c->remote) {
        c->remote = authzid;
        c->cert_valid = -1;
        authzid = NULL;
    }
    free(authzid);
    if (!s2s_cert_valid(c)) {
        sasl_failure(c, "not-authorized");
        return 0;
    }
    if (!s2s_allowed(c->local, c->remote, c->ip)) {
        s2s_close(c, "policy-violation", "This server does not federate with your domain");
        return 1;
    }
    if (add_pair(c, c->local, c->remote, "SASL EXTERNAL") < 0) {
        s2s_close(c, "resource-constraint", NULL);
        return 1;
    }
    static const char success[] = "<success xmlns='" NS_S2S_SASL "'/>";
    s2s_write_raw(c, success, sizeof(success) - 1);
    c->sasl_done = true;
    /* RFC 6120 §6.4.6: the peer restarts the stream. */
    c->state = S2S_HEADER;
    xs_reset(c->x.parser);
    return 1;
}

/* ---- dialback, receiving side (XEP-0220 §2.1) and authoritative side (§2.3) ------------- */

static void db_reply(s2s_conn *c, const char *name, const char *from, const char *to,
                     const char *id, const char *type, const char *cond)
{
    xmppd_stanza *r = s2s_dialback_new(name);
    if (!r)
        return;
    xmppd_stanza_set_attr(r, "from", from);
    xmppd_stanza_set_attr(r, "to", to);
    if (id)
        xmppd_stanza_set_attr(r, "id", id);
    xmppd_stanza_set_attr(r, "type", type);
    if (cond)
        s2s_add_error(r, "cancel", cond);
    s2s_write(c, r);
    xmppd_stanza_unref(r);
}

static int handle_db_result(s2s_conn *c, xmppd_stanza *el)
{
    if (conf()->authentication == S2S_AUTH_EXTERNAL) {
        s2s_close(c, "policy-violation", "Server dialback is disabled here");
        return 1;
    }
    const char *from_s = xmppd_stanza_attr(el, "from"), *to_s = xmppd_stanza_attr(el, "to");
    const char *key = xmppd_stanza_text(el);
    if (xmppd_stanza_attr(el, "type")) {
        /* Results with a type are answers: we never asked on this stream. */
        s2s_close(c, "unsupported-stanza-type", NULL);
        return 1;
    }
    char *remote = domain_of(from_s);
    const char *local = to_s ? s2s_served_domain(to_s) : NULL;
    if (!remote || !to_s) {
        free(remote);
        s2s_close(c, "improper-addressing", "A dialback request needs 'from' and 'to' domains");
        return 1;
    }
    if (!local) {
        /* XEP-0220 §2.4: we announced error support, so a dialback error
         * instead of host-unknown. */
        db_reply(c, "result", to_s, remote, NULL, "error", "item-not-found");
        free(remote);
        return 0;
    }
    if (s2s_in_has_pair(c, local, remote)) {
        db_reply(c, "result", local, remote, NULL, "valid", NULL);
        free(remote);
        return 0;
    }
    if (!s2s_allowed(local, remote, c->ip)) {
        free(remote);
        s2s_close(c, "policy-violation", "This server does not federate with your domain");
        return 1;
    }
    if (!*key || strlen(key) > S2S_MAX_DB_KEY) {
        db_reply(c, "result", local, remote, NULL, "invalid", NULL);
        free(remote);
        return 0;
    }
    if (c->n_db_pending >= S2S_MAX_PENDING_DB) {
        free(remote);
        s2s_close(c, "policy-violation", "Too many dialback requests in flight");
        return 1;
    }
    const char *why = NULL;
    if (c->secure && tls_peer_verify(c->x.ssl, remote, &why)) {
        /* XEP-0344 §2.4: a certificate valid for the domain makes the
         * callback unnecessary. */
        db_reply(c, "result", local, remote, NULL, "valid", NULL);
        if (add_pair(c, local, remote, "dialback (certificate)") < 0) {
            free(remote);
            s2s_close(c, "resource-constraint", NULL);
            return 1;
        }
        free(remote);
        return 0;
    }
    c->n_db_pending++;
    log_kernel("s2s-in", XMPPD_LOG_DEBUG, "%s [%s]: dialback request for %s, asking the "
               "authoritative server", remote, c->tag, local);
    s2s_out_verify(local, remote, c->stream_id, key, c);
    free(remote);
    return 0;
}

void s2s_in_dialback_done(s2s_conn *in, const char *local, const char *remote, bool valid,
                          const char *cond)
{
    if (in->n_db_pending > 0)
        in->n_db_pending--;
    if (in->state != S2S_OPEN)
        return;
    if (cond) {
        log_kernel("s2s-in", XMPPD_LOG_INFO, "%s [%s]: dialback for %s failed: %s", remote, in->tag,
                   local, cond);
        db_reply(in, "result", local, remote, NULL, "error", cond);
        return;
    }
    db_reply(in, "result", local, remote, NULL, valid ? "valid" : "invalid", NULL);
    if (!valid) {
        log_kernel("s2s-in", XMPPD_LOG_INFO, "%s [%s]: dialback key for %s refused by the "
                   "authoritative server", remote, in->tag, local);
        /* XEP-0220 §2.1.3: nothing is accepted for the pair; a stream
         * without any authenticated pair has no further use. */
        if (in->n_pairs == 0 && in->n_db_pending == 0)
            s2s_close(in, "not-authorized", NULL);
        return;
    }
    if (add_pair(in, local, remote, "dialback") < 0)
        s2s_close(in, "resource-constraint", NULL);
}

static int handle_db_verify(s2s_conn *c, xmppd_stanza *el)
{
    const char *from = xmppd_stanza_attr(el, "from"), *to = xmppd_stanza_attr(el, "to");
    const char *id = xmppd_stanza_attr(el, "id"), *key = xmppd_stanza_text(el);
    if (xmppd_stanza_attr(el, "type")) {
        s2s_close(c, "unsupported-stanza-type", NULL);
        return 1;
    }
    char *receiving = domain_of(from);
    if (!receiving || !to || !id || !*id) {
        free(receiving);
        s2s_close(c, "improper-addressing", "A dialback verification needs 'from', 'to' and 'id'");
        return 1;
    }
    const char *originating = s2s_served_domain(to);
    if (!originating) {
        db_reply(c, "verify", to, receiving, id, "error", "item-not-found");
        free(receiving);
        return 0;
    }
    bool ok = strlen(id) < 1024 && dialback_key_ok(receiving, originating, id, key);
    log_kernel("s2s-in", XMPPD_LOG_DEBUG, "%s [%s]: dialback verification for %s: %s", receiving,
               c->tag, originating, ok ? "valid" : "invalid");
    db_reply(c, "verify", originating, receiving, id, ok ? "valid" : "invalid", NULL);
    free(receiving);
    return 0;
}

/* ---- stanzas --------------------------------------------------------------------------- */

static int handle_stanza(s2s_conn *c, xmppd_stanza *el)
{
    metrics_stanza(METRICS_S2S, METRICS_IN, xmppd_stanza_name(el));
    if (c->n_pairs == 0) {
        s2s_close(c, "not-authorized", "No domain is authenticated on this stream");
        return 1;
    }
    const char *from_s = xmppd_stanza_attr(el, "from"), *to_s = xmppd_stanza_attr(el, "to");
    xmppd_jid *from = from_s ? xmppd_jid_parse(from_s) : NULL;
    xmppd_jid *to = to_s ? xmppd_jid_parse(to_s) : NULL;
    int stop = 1;
    const char *local = to ? s2s_served_domain(to->domain) : NULL;
    if (!from || !to) {
        /* RFC 6120 §8.1.1.2, §8.1.2.2: both are mandatory between servers. */
        s2s_close(c, "improper-addressing", NULL);
    } else if (!local) {
        s2s_close(c, "host-unknown", "The stanza is addressed to a domain not served here");
    } else if (!s2s_in_has_pair(c, local, from->domain)) {
        s2s_close(c, "invalid-from",
                  "The sender's domain is not authenticated for this recipient on this stream");
    } else if (s2s_stanza_allowed(c)) {
        s2s_touch(c);
        xmppd_stanza_set_attr(el, "from", from->full);
        xmppd_stanza_set_attr(el, "to", to->full);
        xmppd_route(xmppd_host_find(local), el);
        stop = 0;
    }
    xmppd_jid_free(from);
    xmppd_jid_free(to);
    return stop;
}

int s2s_in_on_element(s2s_conn *c, xmppd_stanza *el)
{
    const char *name = xmppd_stanza_name(el), *ns = xmppd_stanza_ns(el);
    if (strcmp(ns, XS_NS_STREAM) == 0 && strcmp(name, "error") == 0) {
        /* RFC 6120 §4.9.1.3: the peer closes after its error; so do we. */
        xmppd_stanza *k = xmppd_stanza_first(el);
        log_kernel("s2s-in", XMPPD_LOG_INFO, "%s [%s]: stream error from the peer: %s",
                   c->remote ? c->remote : "?", c->tag, k ? xmppd_stanza_name(k) : "(none)");
        s2s_close(c, NULL, NULL);
        return 1;
    }
    if (strcmp(ns, NS_S2S_TLS) == 0 && strcmp(name, "starttls") == 0) {
        if (!tls_offerable(c)) {
            s2s_write_raw(c, "<failure xmlns='" NS_S2S_TLS "'/>", 16 + sizeof(NS_S2S_TLS) + 2);
            s2s_close(c, NULL, NULL);
            return 1;
        }
        s2s_write_raw(c, "<proceed xmlns='" NS_S2S_TLS "'/>", 16 + sizeof(NS_S2S_TLS) + 2);
        c->starttls_pending = true;
        return 1;
    }
    if (!c->secure && conf()->require_encryption) {
        /* RFC 6120 §5.3.1: with TLS mandatory nothing else was offered. */
        s2s_close(c, "policy-violation", "Encryption is required (STARTTLS)");
        return 1;
    }
    if (strcmp(ns, NS_S2S_SASL) == 0)
        return handle_sasl(c, el);
    if (strcmp(ns, NS_BIDI) == 0 && strcmp(name, "bidi") == 0 && conf()->bidi) {
        /* XEP-0288 §2.2: once a domain is authenticated, stanzas for it
         * may go back on this stream (s2s_bidi_stream). */
        c->bidi = true;
        log_kernel("s2s-in", XMPPD_LOG_DEBUG, "%s [%s]: bidirectional stream (XEP-0288)",
                   c->remote ? c->remote : "?", c->tag);
        return 0;
    }
    if (strcmp(ns, NS_DIALBACK) == 0) {
        if (strcmp(name, "result") == 0)
            return handle_db_result(c, el);
        if (strcmp(name, "verify") == 0)
            return handle_db_verify(c, el);
        s2s_close(c, "unsupported-stanza-type", NULL);
        return 1;
    }
    if (strcmp(ns, XMPPD_NS_SERVER) == 0 && is_stanza(name))
        return handle_stanza(c, el);
    s2s_close(c, c->n_pairs ? "unsupported-stanza-type" : "not-authorized", NULL);
    return 1;
}

void s2s_in_teardown(s2s_conn *c)
{
    if (c->n_pairs)
        log_kernel("s2s-in", XMPPD_LOG_INFO, "%s [%s]: stream closed", c->remote ? c->remote : "?",
                   c->tag);
}

/* ---- accept --------------------------------------------------------------------------- */

void s2s_accept(int fd, const struct sockaddr *sa, int socklen, bool direct_tls)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = xstream_peer_addr(sa, ip);
    if (!conn_ip_acquire(ip)) {
        log_kernel("s2s-in", XMPPD_LOG_WARN, "%s: too many connections from this address", ip);
        evutil_closesocket(fd);
        return;
    }
    s2s_conn *c = s2s_conn_new(false);
    if (!c) {
        conn_ip_release(ip);
        evutil_closesocket(fd);
        return;
    }
    SSL *ssl = direct_tls ? tls_new_s2s_server_ssl() : NULL;
    if (direct_tls && !ssl) {
        c->ip_counted = true;
        snprintf(c->ip, sizeof(c->ip), "%s", ip);
        evutil_closesocket(fd);
        s2s_close(c, NULL, NULL);
        return;
    }
    c->ip_counted = true;
    snprintf(c->ip, sizeof(c->ip), "%s", ip);
    log_conn_tag(c->tag, ip);
    c->port = port;
    evutil_make_socket_nonblocking(fd);
    struct bufferevent *bev =
        bufferevent_socket_new(loop_base(), fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    c->secure = c->direct_tls = direct_tls;
    if (!bev) {
        if (ssl)
            SSL_free(ssl);
        evutil_closesocket(fd);
        s2s_close(c, NULL, NULL);
        return;
    }
    if (s2s_conn_attach(c, bev, ssl, g_server.cfg->limits.negotiation_timeout) < 0)
        s2s_close(c, NULL, NULL);
}
