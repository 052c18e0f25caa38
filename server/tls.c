/* TLS contexts per host, SNI, and channel binding data. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "net.h"

static SSL_CTX *default_ctx; /* the first host with a certificate (borrowed) */

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

static SSL_CTX *ctx_new(const tls_conf *tc, const char *host, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "tls: %s", ssl_error_string());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, tc->min_version ? tc->min_version : TLS1_2_VERSION);
    /* Idle sessions should not keep 2 x 16 KiB of record buffers each. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
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

int tls_start(char *err, size_t errlen)
{
    for (size_t i = 0; i < g_server.n_hosts; i++) {
        xmppd_host *h = g_server.hosts[i];
        if (!h->conf->tls.cert)
            continue;
        if (!(h->ssl_ctx = ctx_new(&h->conf->tls, h->name, err, errlen)))
            return -1;
        if (!default_ctx)
            default_ctx = h->ssl_ctx;
    }
    return 0;
}

void tls_stop(void)
{
    for (size_t i = 0; i < g_server.n_hosts; i++) {
        SSL_CTX_free(g_server.hosts[i]->ssl_ctx);
        g_server.hosts[i]->ssl_ctx = NULL;
    }
    default_ctx = NULL;
}

SSL *tls_new_server_ssl(void)
{
    return default_ctx ? SSL_new(default_ctx) : NULL;
}

/* RFC 5929 §4.1: hash the certificate with its signature's hash, but SHA-256
 * where that is MD5 or SHA-1. */
static int server_end_point(SSL *ssl, unsigned char *out, size_t *len)
{
    X509 *cert = SSL_get_certificate(ssl);
    if (!cert)
        return -1;
    int md_nid = NID_undef, pk_nid;
    if (!OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid, &pk_nid))
        return -1;
    const EVP_MD *md = (md_nid == NID_md5 || md_nid == NID_sha1 || md_nid == NID_undef)
                           ? EVP_sha256()
                           : EVP_get_digestbynid(md_nid);
    unsigned int n = 0;
    if (!md || (size_t)EVP_MD_get_size(md) > *len || X509_digest(cert, md, out, &n) != 1)
        return -1;
    *len = n;
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
