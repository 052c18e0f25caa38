/* TLS contexts per host, SNI, and channel binding data. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <idna.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "net/net.h"

static SSL_CTX *default_ctx; /* the first host with a certificate (borrowed) */

/* s2s: the trust store for peer certificates, and one client context per
 * local domain (presenting that host's certificate). */
static X509_STORE *s2s_trust;
struct client_ctx {
    char *name;       /* host name; NULL: the context for other domains */
    SSL_CTX *ctx;
};
static struct client_ctx *client_ctxs;
static size_t n_client_ctxs;

static const char *ssl_error_string(void)
{
    static char buf[256];
    unsigned long e = ERR_get_error();
    if (!e)
        return "unknown error";
    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return buf;
}

/* SNI: switch the connection to the named host's context. Unknown names keep
 * the default; the stream header's 'to' decides the host afterwards. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return SSL_TLSEXT_ERR_NOACK;
    for (size_t i = 0; i < g_server.n_hosts; i++) {
        xmppd_host *h = g_server.hosts[i];
        if (h->ssl_ctx && strcasecmp(h->name, name) == 0) {
            SSL_set_SSL_CTX(ssl, h->ssl_ctx);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* XEP-0368: direct TLS clients may offer ALPN "xmpp-client". */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char proto[] = "\x0bxmpp-client";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, proto, sizeof(proto) - 1, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static int tls_min_version(const tls_conf *tc)
{
    return tc && tc->min_version == TLS_MIN_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

static SSL_CTX *ctx_new(const tls_conf *tc, const char *host, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "tls: %s", ssl_error_string());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, tls_min_version(tc));
    /* Idle sessions should not keep 2 x 16 KiB of record buffers each. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* TLS 1.3 session tickets (RFC 8446 §4.6.1) let a reconnecting client
     * skip the certificate signature and the full key exchange. OpenSSL
     * sends two after each handshake, for clients opening connections in
     * parallel; an XMPP client keeps one stream per account and gets a new
     * ticket with every resumed handshake, so one is enough, and each
     * ticket costs a session copy, its encryption and a record. */
    SSL_CTX_set_num_tickets(ctx, 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, tc->cert) != 1) {
        snprintf(err, errlen, "tls: host %s: cannot load certificate %s: %s", host, tc->cert,
                 ssl_error_string());
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, tc->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "tls: host %s: cannot load key %s: %s", host, tc->key,
                 ssl_error_string());
        goto fail;
    }
    if (tc->ciphers && SSL_CTX_set_cipher_list(ctx, tc->ciphers) != 1) {
        snprintf(err, errlen, "tls: host %s: bad cipher list \"%s\"", host, tc->ciphers);
        goto fail;
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* A client context for outgoing s2s streams; with the host's certificate
 * when tc has one (SASL EXTERNAL needs it, XEP-0178). */
static SSL_CTX *client_ctx_new(const tls_conf *tc, const char *host, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "tls: %s", ssl_error_string());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, tls_min_version(tc));
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    /* The handshake never fails on the certificate: whether it validates
     * decides how the peer may authenticate (tls_peer_verify). */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (tc && tc->cert &&
        (SSL_CTX_use_certificate_chain_file(ctx, tc->cert) != 1 ||
         SSL_CTX_use_PrivateKey_file(ctx, tc->key, SSL_FILETYPE_PEM) != 1)) {
        snprintf(err, errlen, "tls: host %s: cannot load certificate %s: %s", host, tc->cert,
                 ssl_error_string());
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (tc && tc->ciphers && SSL_CTX_set_cipher_list(ctx, tc->ciphers) != 1) {
        snprintf(err, errlen, "tls: host %s: bad cipher list \"%s\"", host, tc->ciphers);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static int s2s_tls_start(char *err, size_t errlen)
{
    s2s_trust = X509_STORE_new();
    if (!s2s_trust || X509_STORE_set_default_paths(s2s_trust) != 1) {
        snprintf(err, errlen, "tls: cannot load the system trust store: %s", ssl_error_string());
        return -1;
    }
    const char *ca = g_server.cfg->s2s.ca_file;
    if (ca && X509_STORE_load_file(s2s_trust, ca) != 1) {
        snprintf(err, errlen, "tls: s2s.ca_file %s: %s", ca, ssl_error_string());
        return -1;
    }
    ERR_clear_error(); /* missing system folders are not errors */
    client_ctxs = calloc(g_server.n_hosts + 1, sizeof(*client_ctxs));
    if (!client_ctxs) {
        snprintf(err, errlen, "tls: out of memory");
        return -1;
    }
    for (size_t i = 0; i <= g_server.n_hosts; i++) {
        const xmppd_host *h = i < g_server.n_hosts ? g_server.hosts[i] : NULL;
        /* The last one serves components: the first certificate, if any. */
        const tls_conf *tc = h ? &h->conf->tls : NULL;
        for (size_t k = 0; !tc && k < g_server.n_hosts; k++)
            if (g_server.hosts[k]->conf->tls.cert)
                tc = &g_server.hosts[k]->conf->tls;
        struct client_ctx *cc = &client_ctxs[n_client_ctxs];
        if (h && !(cc->name = strdup(h->name))) {
            snprintf(err, errlen, "tls: out of memory");
            return -1;
        }
        n_client_ctxs++;
        if (!(cc->ctx = client_ctx_new(tc, h ? h->name : "(components)", err, errlen)))
            return -1;
    }
    return 0;
}

/* A host going away (a reload removed it) takes its context along. */
static void tls_host_free(xmppd_host *h)
{
    if (default_ctx == h->ssl_ctx)
        default_ctx = NULL;
    SSL_CTX_free(h->ssl_ctx);
    h->ssl_ctx = NULL;
}

static const core_layer tls_layer = { .host_free = tls_host_free };

int tls_start(char *err, size_t errlen)
{
    core_register_layer(&tls_layer);
    for (size_t i = 0; i < g_server.n_hosts; i++) {
        xmppd_host *h = g_server.hosts[i];
        if (!h->conf->tls.cert)
            continue;
        if (!(h->ssl_ctx = ctx_new(&h->conf->tls, h->name, err, errlen)))
            return -1;
        if (!default_ctx)
            default_ctx = h->ssl_ctx;
    }
    return s2s_tls_start(err, errlen);
}

void tls_stop(void)
{
    for (size_t i = 0; i < g_server.n_hosts; i++) {
        SSL_CTX_free(g_server.hosts[i]->ssl_ctx);
        g_server.hosts[i]->ssl_ctx = NULL;
    }
    default_ctx = NULL;
    for (size_t i = 0; i < n_client_ctxs; i++) {
        free(client_ctxs[i].name);
        SSL_CTX_free(client_ctxs[i].ctx);
    }
    free(client_ctxs);
    client_ctxs = NULL;
    n_client_ctxs = 0;
    X509_STORE_free(s2s_trust);
    s2s_trust = NULL;
}

SSL *tls_new_server_ssl(void)
{
    return default_ctx ? SSL_new(default_ctx) : NULL;
}

/* The peer's certificate is judged after the handshake (tls_peer_verify),
 * against the domain it claims in the stream; here it is only requested. */
static int accept_any_cert(int preverify_ok, X509_STORE_CTX *ctx)
{
    return 1;
}

SSL *tls_new_s2s_server_ssl(void)
{
    SSL *ssl = tls_new_server_ssl();
    if (!ssl)
        return NULL;
    SSL_set_verify(ssl, SSL_VERIFY_PEER, accept_any_cert);
    /* Needed once a certificate is requested, should the peer resume. */
    static const unsigned char sid[] = "xmppd-s2s";
    SSL_set_session_id_context(ssl, sid, sizeof(sid) - 1);
    return ssl;
}

/* Certificates name domains in their ASCII (A-label) form. */
static char *ascii_domain(const char *domain)
{
    char *out = NULL;
    if (idna_to_ascii_8z(domain, &out, 0) != IDNA_SUCCESS)
        return NULL;
    return out;
}

SSL *tls_new_client_ssl(const char *local, const char *remote, bool direct_tls)
{
    SSL_CTX *ctx = NULL;
    for (size_t i = 0; i < n_client_ctxs && !ctx; i++)
        if (!client_ctxs[i].name || strcasecmp(client_ctxs[i].name, local) == 0)
            ctx = client_ctxs[i].ctx;
    char *sni = ascii_domain(remote);
    SSL *ssl = ctx && sni ? SSL_new(ctx) : NULL;
    if (ssl && SSL_set_tlsext_host_name(ssl, sni) != 1) {
        SSL_free(ssl);
        ssl = NULL;
    }
    /* XEP-0368 §3: direct TLS announces the protocol. */
    static const unsigned char alpn[] = "\x0bxmpp-server";
    if (ssl && direct_tls && SSL_set_alpn_protos(ssl, alpn, sizeof(alpn) - 1) != 0) {
        SSL_free(ssl);
        ssl = NULL;
    }
    free(sni);
    return ssl;
}

bool tls_peer_verify(SSL *ssl, const char *domain, const char **why)
{
    *why = "no TLS";
    if (!ssl || !s2s_trust || !SSL_is_init_finished(ssl))
        return false;
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    if (!leaf) {
        *why = "the peer sent no certificate";
        return false;
    }
    char *name = ascii_domain(domain);
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    bool ok = false;
    *why = "out of memory";
    if (name && vc && X509_STORE_CTX_init(vc, s2s_trust, leaf, SSL_get_peer_cert_chain(ssl)) == 1) {
        X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(vc);
        X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (X509_VERIFY_PARAM_set1_host(p, name, 0) == 1) {
            ok = X509_verify_cert(vc) == 1;
            if (!ok)
                *why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(vc));
        }
    }
    X509_STORE_CTX_free(vc);
    free(name);
    ERR_clear_error();
    return ok;
}

/* Our certificate's tls-server-end-point hash, kept with the certificate
 * (X509 ex_data, freed with it): it is asked for on every login (the
 * features and the SCRAM exchange), and hashing means serialising the
 * certificate each time. Only the loop thread uses it. */
typedef struct cert_hash {
    size_t len;
    unsigned char md[EVP_MAX_MD_SIZE];
} cert_hash;

static void cert_hash_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                           void *argp)
{
    free(ptr);
}

/* RFC 5929 §4.1: hash the certificate with its signature's hash, but SHA-256
 * where that is MD5 or SHA-1. */
static int cert_hash_compute(X509 *cert, cert_hash *h)
{
    int md_nid = NID_undef, pk_nid;
    if (!OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid, &pk_nid))
        return -1;
    const EVP_MD *md = (md_nid == NID_md5 || md_nid == NID_sha1 || md_nid == NID_undef)
                           ? EVP_sha256()
                           : EVP_get_digestbynid(md_nid);
    unsigned int n = 0;
    if (!md || X509_digest(cert, md, h->md, &n) != 1)
        return -1;
    h->len = n;
    return 0;
}

static int server_end_point(SSL *ssl, unsigned char *out, size_t *len)
{
    static int idx = -1;
    X509 *cert = SSL_get_certificate(ssl);
    if (!cert)
        return -1;
    if (idx < 0)
        idx = X509_get_ex_new_index(0, NULL, NULL, NULL, cert_hash_free);
    cert_hash tmp, *h = idx >= 0 ? X509_get_ex_data(cert, idx) : NULL;
    if (!h) {
        if (cert_hash_compute(cert, &tmp) < 0)
            return -1;
        h = malloc(sizeof(*h));
        if (h && X509_set_ex_data(cert, idx, h) == 1)
            *h = tmp;
        else {
            free(h);
            h = &tmp; /* not kept: computed again next time */
        }
    }
    if (h->len > *len)
        return -1;
    memcpy(out, h->md, h->len);
    *len = h->len;
    return 0;
}

int tls_channel_binding(SSL *ssl, const char *type, unsigned char *out, size_t *len)
{
    if (!ssl || !SSL_is_init_finished(ssl))
        return -1;
    if (strcmp(type, "tls-server-end-point") == 0)
        return server_end_point(ssl, out, len);
    if (strcmp(type, "tls-unique") == 0) {
        /* RFC 5929 §3.1: the first Finished of the handshake: the client's
         * in a full handshake, ours in a resumed one. Not defined for TLS 1.3
         * by RFC 9266, but OpenSSL-based clients (slixmpp, poezio) compute it
         * the same way there, so accepting it is what lets them use -PLUS. */
        size_t n = SSL_session_reused(ssl) ? SSL_get_finished(ssl, out, *len)
                                           : SSL_get_peer_finished(ssl, out, *len);
        if (n == 0 || n > *len)
            return -1;
        *len = n;
        return 0;
    }
    if (strcmp(type, "tls-exporter") == 0) {
        /* RFC 9266: only where the exporter is safe without extended master
         * secret checks, i.e. TLS 1.3. */
        if (SSL_version(ssl) != TLS1_3_VERSION || *len < 32)
            return -1;
        static const char label[] = "EXPORTER-Channel-Binding";
        if (SSL_export_keying_material(ssl, out, 32, label, sizeof(label) - 1, NULL, 0, 0) != 1)
            return -1;
        *len = 32;
        return 0;
    }
    return -1;
}
