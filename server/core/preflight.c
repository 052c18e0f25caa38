/* Pre-start checks (preflight.h). Certificates are read with OpenSSL the
 * way net/tls.c will load them (PEM chain, PEM key); names are matched
 * with X509_check_host, which follows RFC 6125 (DNS names, one wildcard
 * label). A listener is tried with a bind() of a throwaway socket. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/preflight.h"

#define EXPIRY_WARN_DAYS 14

/* ---- data_dir ---------------------------------------------------------------- */

static void check_data_dir(const xmppd_config *cfg, opt_errors *errs)
{
    struct stat st;
    const char *d = cfg->data_dir;
    if (stat(d, &st) != 0) {
        opt_error(errs, cfg, "data_dir", "%s: %s (create it, owned by the server's user: "
                  "install -d -m 0750 -o xmppd %s)", d, strerror(errno), d);
    } else if (!S_ISDIR(st.st_mode)) {
        opt_error(errs, cfg, "data_dir", "%s is not a folder", d);
    } else if (access(d, W_OK | X_OK) != 0) {
        opt_error(errs, cfg, "data_dir", "%s is not writable by this user (uid %u): %s; the "
                  "server keeps its database and control socket there", d, (unsigned)geteuid(),
                  strerror(errno));
    }
}

/* ---- certificates ------------------------------------------------------------ */

typedef struct cert_info {
    X509 *leaf;
    EVP_PKEY *key;
    char why[256];  /* why leaf or key could not be read */
} cert_info;

static void cert_info_free(cert_info *ci)
{
    X509_free(ci->leaf);
    EVP_PKEY_free(ci->key);
}

static void openssl_reason(char *buf, size_t len, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char r[160] = "unreadable";
    if (e)
        ERR_error_string_n(e, r, sizeof(r));
    ERR_clear_error();
    snprintf(buf, len, "%s %s: %s", what, path, r);
}

static int cert_load(const tls_conf *t, cert_info *ci)
{
    memset(ci, 0, sizeof(*ci));
    FILE *f = fopen(t->cert, "r");
    if (!f) {
        snprintf(ci->why, sizeof(ci->why), "cannot read %s: %s", t->cert, strerror(errno));
        return -1;
    }
    ci->leaf = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!ci->leaf) {
        openssl_reason(ci->why, sizeof(ci->why), "no PEM certificate in", t->cert);
        return -1;
    }
    if (!t->key)
        return 0;
    if (!(f = fopen(t->key, "r"))) {
        snprintf(ci->why, sizeof(ci->why), "cannot read %s: %s", t->key, strerror(errno));
        return -1;
    }
    ci->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!ci->key) {
        openssl_reason(ci->why, sizeof(ci->why), "no PEM private key in", t->key);
        return -1;
    }
    return 0;
}

/* Days from now until the certificate's notAfter (negative: expired). */
static int days_left(X509 *x)
{
    int days = 0, secs = 0;
    if (!ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)))
        return 0;
    return days - (days <= 0 && secs < 0 ? 1 : 0);
}

static bool not_yet_valid(X509 *x)
{
    return X509_cmp_current_time(X509_get0_notBefore(x)) > 0;
}

static bool covers(X509 *x, const char *host)
{
    return X509_check_host(x, host, 0, 0, NULL) == 1;
}

/* The rules for one tls section used by host (host NULL: the top-level
 * one, used by hosts without their own). */
static void check_cert(const xmppd_config *cfg, const tls_conf *t, const char *key, const char *host,
                       opt_errors *errs, opt_errors *warns)
{
    char k[512];
    snprintf(k, sizeof(k), "%s.cert", key);
    cert_info ci;
    if (cert_load(t, &ci) < 0) {
        opt_error(errs, cfg, k, "%s", ci.why);
        cert_info_free(&ci);
        return;
    }
    if (ci.key && X509_check_private_key(ci.leaf, ci.key) != 1) {
        ERR_clear_error();
        snprintf(k, sizeof(k), "%s.key", key);
        opt_error(errs, cfg, k, "%s is not the private key of the certificate %s", t->key, t->cert);
    }
    int left = days_left(ci.leaf);
    snprintf(k, sizeof(k), "%s.cert", key);
    if (left < 0)
        opt_error(errs, cfg, k, "%s expired %d days ago: clients refuse it", t->cert, -left);
    else if (not_yet_valid(ci.leaf))
        opt_error(errs, cfg, k, "%s is not valid yet (notBefore in the future: check the clock)",
                  t->cert);
    else if (left < EXPIRY_WARN_DAYS)
        opt_error(warns, cfg, k, "%s expires in %d days", t->cert, left);
    if (host && !covers(ci.leaf, host))
        opt_error(errs, cfg, k, "%s does not cover the host %s: clients refuse it (xmppctl cert "
                  "shows its names)", t->cert, host);
    cert_info_free(&ci);
}

static bool host_has_own_cert(const xmppd_config *cfg, size_t i)
{
    const json_t *hv = json_object_get(json_object_get(cfg->root, "hosts"), cfg->hosts[i].name);
    return json_object_get(json_object_get(hv, "tls"), "cert") != NULL;
}

static void check_certs(const xmppd_config *cfg, opt_errors *errs, opt_errors *warns)
{
    /* The top-level certificate: its own soundness once, then which hosts
     * it must cover. A host's own certificate is checked under its key. */
    bool top_checked = false;
    for (size_t i = 0; i < cfg->n_hosts; i++) {
        const host_conf *h = &cfg->hosts[i];
        if (!h->tls.cert)
            continue;
        char key[512];
        if (host_has_own_cert(cfg, i)) {
            snprintf(key, sizeof(key), "hosts.%s.tls", h->name);
            check_cert(cfg, &h->tls, key, h->name, errs, warns);
        } else if (!top_checked) {
            check_cert(cfg, &cfg->tls, "tls", h->name, errs, warns);
            top_checked = true;
        } else {
            cert_info ci;
            if (cert_load(&cfg->tls, &ci) == 0 && !covers(ci.leaf, h->name))
                opt_error(errs, cfg, "tls.cert", "%s does not cover the host %s: clients refuse "
                          "it (give the host its own \"tls\", or a certificate naming it)",
                          cfg->tls.cert, h->name);
            cert_info_free(&ci);
        }
    }
}

/* ---- ports ------------------------------------------------------------------- */

static void check_ports(const xmppd_config *cfg, opt_errors *errs)
{
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const listener_conf *l = &cfg->listeners[i];
        char key[64];
        snprintf(key, sizeof(key), "listeners.%zu", i);
        struct sockaddr_storage ss = { 0 };
        socklen_t len;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        if (inet_pton(AF_INET6, l->address, &s6->sin6_addr) == 1) {
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons((uint16_t)l->port);
            len = sizeof(*s6);
        } else if (inet_pton(AF_INET, l->address, &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
            s4->sin_port = htons((uint16_t)l->port);
            len = sizeof(*s4);
        } else {
            opt_error(errs, cfg, key, "address %s is not an IP address", l->address);
            continue;
        }
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            opt_error(errs, cfg, key, "[%s]:%lld: %s", l->address, l->port, strerror(errno));
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ss.ss_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
            int e = errno;
            const char *hint = e == EADDRINUSE ? ": another program listens there (ss -ltnp)"
                             : e == EACCES ? ": ports below 1024 need root or CAP_NET_BIND_SERVICE"
                             : e == EADDRNOTAVAIL ? ": not an address of this machine" : "";
            opt_error(errs, cfg, key, "cannot listen on [%s]:%lld: %s%s", l->address, l->port,
                      strerror(e), hint);
        } else if (listen(fd, 1) != 0) {
            opt_error(errs, cfg, key, "cannot listen on [%s]:%lld: %s", l->address, l->port,
                      strerror(errno));
        }
        close(fd);
    }
}

void preflight_check(const xmppd_config *cfg, bool ports, opt_errors *errs, opt_errors *warns)
{
    check_data_dir(cfg, errs);
    check_certs(cfg, errs, warns);
    if (ports)
        check_ports(cfg, errs);
}

/* ---- xmppctl cert ------------------------------------------------------------ */

static void print_name(FILE *out, const char *label, X509_NAME *n)
{
    char buf[512];
    X509_NAME_oneline(n, buf, sizeof(buf));
    fprintf(out, "  %-9s %s\n", label, buf);
}

static void print_time(FILE *out, const char *label, const ASN1_TIME *t)
{
    struct tm tm;
    char buf[64] = "?";
    if (ASN1_TIME_to_tm(t, &tm))
        strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
    fprintf(out, "  %-9s %s\n", label, buf);
}

static void print_names(FILE *out, X509 *x)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    fprintf(out, "  %-9s", "names");
    int n = sans ? sk_GENERAL_NAME_num(sans) : 0, shown = 0;
    for (int i = 0; i < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS) {
            fprintf(out, " %.*s", ASN1_STRING_length(g->d.dNSName),
                    (const char *)ASN1_STRING_get0_data(g->d.dNSName));
            shown++;
        } else if (g->type == GEN_OTHERNAME) {
            fprintf(out, " (xmppAddr or other name)");
            shown++;
        }
    }
    fprintf(out, "%s\n", shown ? "" : " (none: only the subject's CN, which clients ignore)");
    GENERAL_NAMES_free(sans);
}

int preflight_cert_report(const xmppd_config *cfg, const char *host, FILE *out)
{
    int rc = 0;
    bool found = false;
    for (size_t i = 0; i < cfg->n_hosts; i++) {
        const host_conf *h = &cfg->hosts[i];
        if (host && strcmp(host, h->name) != 0)
            continue;
        found = true;
        fprintf(out, "%s\n", h->name);
        if (!h->tls.cert) {
            fprintf(out, "  no certificate: clients cannot use TLS with this host\n");
            rc = 1;
            continue;
        }
        fprintf(out, "  %-9s %s%s\n", "cert", h->tls.cert,
                host_has_own_cert(cfg, i) ? "" : " (the top-level \"tls\")");
        fprintf(out, "  %-9s %s\n", "key", h->tls.key ? h->tls.key : "(none)");
        cert_info ci;
        if (cert_load(&h->tls, &ci) < 0) {
            fprintf(out, "  problem:  %s\n", ci.why);
            cert_info_free(&ci);
            rc = 1;
            continue;
        }
        print_name(out, "subject", X509_get_subject_name(ci.leaf));
        print_names(out, ci.leaf);
        print_name(out, "issuer", X509_get_issuer_name(ci.leaf));
        print_time(out, "from", X509_get0_notBefore(ci.leaf));
        print_time(out, "until", X509_get0_notAfter(ci.leaf));
        int left = days_left(ci.leaf);
        /* signed by its own key: nobody's client trusts it unless told to */
        bool self_signed = X509_NAME_cmp(X509_get_subject_name(ci.leaf),
                                         X509_get_issuer_name(ci.leaf)) == 0 &&
                           X509_verify(ci.leaf, X509_get0_pubkey(ci.leaf)) == 1;
        ERR_clear_error();
        bool ok_host = covers(ci.leaf, h->name);
        bool ok_key = !ci.key || X509_check_private_key(ci.leaf, ci.key) == 1;
        ERR_clear_error();
        fprintf(out, "  %-9s %s, %s, %s%s\n", "status",
                left < 0 ? "EXPIRED" : not_yet_valid(ci.leaf) ? "NOT YET VALID" : "valid",
                ok_host ? "covers the host" : "DOES NOT COVER THE HOST",
                ok_key ? "key matches" : "KEY DOES NOT MATCH",
                self_signed ? ", self-signed" : "");
        if (left >= 0)
            fprintf(out, "  %-9s %d days left\n", "expires", left);
        if (left < 0 || !ok_host || !ok_key || not_yet_valid(ci.leaf))
            rc = 1;
        cert_info_free(&ci);
    }
    if (host && !found) {
        fprintf(stderr, "xmppctl: cert %s: not a host of %s\n", host, cfg->path);
        return 2;
    }
    return rc;
}
