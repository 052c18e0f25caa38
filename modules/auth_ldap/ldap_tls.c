/* auth_ldap: TLS on the loop, and the Sockbuf layer that gives it to
 * libldap (ldap_tls.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <lber.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "ldap_tls.h"

SSL_CTX *ltls_ctx_new(const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* lber retries a write with the bytes it still has, from where they
     * now are: OpenSSL must accept a moved buffer and partial writes. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        unsigned long e = ERR_get_error();
        snprintf(err, errlen, "cannot read the CA certificates %s: %s", ca_file ? ca_file : "of the system",
                 e ? ERR_reason_error_string(e) : "unknown error");
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static bool ltls_is_address(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

SSL *ltls_new(SSL_CTX *ctx, int fd, const char *host)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    bool addr = ltls_is_address(host);
    int ok = addr ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
                  : X509_VERIFY_PARAM_set1_host(param, host, 0);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (ok != 1 || SSL_set_fd(ssl, fd) != 1 || (!addr && SSL_set_tlsext_host_name(ssl, host) != 1)) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

int ltls_handshake(SSL *ssl, char *err, size_t errlen)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl);
    if (rc == 1)
        return LTLS_DONE;
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return LTLS_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE)
        return LTLS_WANT_WRITE;
    long v = SSL_get_verify_result(ssl);
    unsigned long oe = ERR_get_error();
    if (v != X509_V_OK)
        snprintf(err, errlen, "certificate not accepted: %s", X509_verify_cert_error_string(v));
    else if (oe)
        snprintf(err, errlen, "TLS handshake failed: %s", ERR_reason_error_string(oe));
    else
        snprintf(err, errlen, "TLS handshake failed: %s", e == SSL_ERROR_SYSCALL && errno ? strerror(errno)
                                                                                        : "connection closed");
    ERR_clear_error();
    return LTLS_FAILED;
}

/* ---- the Sockbuf layer ---- */

static int ltls_sb_setup(Sockbuf_IO_Desc *sbiod, void *arg)
{
    sbiod->sbiod_pvt = arg;
    return 0;
}

static int ltls_sb_remove(Sockbuf_IO_Desc *sbiod)
{
    SSL_free(sbiod->sbiod_pvt);
    sbiod->sbiod_pvt = NULL;
    return 0;
}

/* Decrypted bytes OpenSSL holds are data ready: libldap asks before it
 * polls the socket, which would not show them. */
static int ltls_sb_ctrl(Sockbuf_IO_Desc *sbiod, int opt, void *arg)
{
    if (opt == LBER_SB_OPT_DATA_READY && SSL_pending(sbiod->sbiod_pvt) > 0)
        return 1;
    return LBER_SBIOD_CTRL_NEXT(sbiod, opt, arg);
}

/* An OpenSSL result as lber expects a read or write: bytes, 0 at the end,
 * or -1 with errno (EWOULDBLOCK: try again when the socket is ready). */
static ber_slen_t ltls_sb_result(SSL *ssl, int rc)
{
    if (rc > 0)
        return rc;
    int e = SSL_get_error(ssl, rc);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EWOULDBLOCK;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    if (e != SSL_ERROR_SYSCALL || errno == 0)
        errno = ECONNRESET;
    return -1;
}

static ber_slen_t ltls_sb_read(Sockbuf_IO_Desc *sbiod, void *buf, ber_len_t len)
{
    ERR_clear_error();
    return ltls_sb_result(sbiod->sbiod_pvt, SSL_read(sbiod->sbiod_pvt, buf, len > INT32_MAX ? INT32_MAX : (int)len));
}

static ber_slen_t ltls_sb_write(Sockbuf_IO_Desc *sbiod, void *buf, ber_len_t len)
{
    ERR_clear_error();
    return ltls_sb_result(sbiod->sbiod_pvt, SSL_write(sbiod->sbiod_pvt, buf, len > INT32_MAX ? INT32_MAX : (int)len));
}

/* A close_notify if the socket takes it now; the layer below closes it. */
static int ltls_sb_close(Sockbuf_IO_Desc *sbiod)
{
    SSL_shutdown(sbiod->sbiod_pvt);
    ERR_clear_error();
    return 0;
}

static Sockbuf_IO ltls_sbio = {
    ltls_sb_setup, ltls_sb_remove, ltls_sb_ctrl, ltls_sb_read, ltls_sb_write, ltls_sb_close
};

int ltls_install(LDAP *ld, SSL *ssl)
{
    Sockbuf *sb = NULL;
    if (ldap_get_option(ld, LDAP_OPT_SOCKBUF, &sb) != LDAP_OPT_SUCCESS || !sb)
        return -1;
    return ber_sockbuf_add_io(sb, &ltls_sbio, LBER_SBIOD_LEVEL_TRANSPORT, ssl) == 0 ? 0 : -1;
}
