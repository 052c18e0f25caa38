/* mod_extdisco: XEP-0215 external service discovery. Lists the STUN/TURN
 * (or other) services of the configuration to the host's own accounts,
 * and hands out time-limited TURN credentials by the shared-secret scheme
 * coturn implements (use-auth-secret, the "TURN REST API"):
 *
 *   username = "<expiry unix time>:<account localpart>"
 *   password = base64(HMAC-SHA1(turn_secret, username))
 *
 * so the TURN server checks them without asking us. Services marked
 * "restricted" get such credentials; others are listed as configured
 * (with a static username/password when given). */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xmppd/xmppd.h>

#define EXT_NS "urn:xmpp:extdisco:2"
#define EXT_MAX_SERVICES 64

typedef struct ext_conf {
    json_t *services;      /* array of service objects (borrowed, kernel-owned) */
    const char *turn_secret;
    long long credential_ttl; /* ms */
} ext_conf;

static const xmppd_option ext_options[] = {
    { "services", XMPPD_OPT_JSON, XMPPD_OFF(ext_conf, services), "[]", 0, 0, NULL, 0,
      "services listed: [{\"type\": \"turn\", \"host\": \"turn.example.org\", \"port\": 3478, "
      "\"transport\": \"udp\", \"restricted\": true}, ...]; also name, username, password" },
    { "turn_secret", XMPPD_OPT_STRING, XMPPD_OFF(ext_conf, turn_secret), NULL, 0, 0, NULL,
      XMPPD_OPT_SECRET, "the TURN server's static-auth-secret (coturn use-auth-secret), for restricted services" },
    { "credential_ttl", XMPPD_OPT_DURATION, XMPPD_OFF(ext_conf, credential_ttl), "1d", 60000, 2592000000LL,
      NULL, 0, "how long credentials handed out for restricted services stay valid" },
    { NULL }
};

/* One configured service; strings borrowed from the configuration. */
typedef struct ext_service {
    const char *type, *host, *transport, *name, *username, *password;
    long port;        /* 0: not given */
    bool restricted;  /* time-limited credentials from turn_secret */
} ext_service;

typedef struct ext_mod {
    xmppd_module *m;
    const ext_conf *conf;
    ext_service services[EXT_MAX_SERVICES];
    size_t n;
} ext_mod;

/* ---- configuration ---------------------------------------------------------- */

static const char *opt_str(const json_t *o, const char *key, bool *bad)
{
    const json_t *v = json_object_get(o, key);
    if (v && (!json_is_string(v) || !*json_string_value(v)))
        *bad = true;
    return json_string_value(v);
}

/* Reads service i of the configuration; NULL or why it is wrong. */
static const char *read_service(ext_mod *mod, const json_t *o, ext_service *s)
{
    static const char *const keys[] = { "type", "host", "port", "transport", "name", "username",
                                        "password", "restricted", NULL };
    const char *k;
    json_t *v;
    if (!json_is_object(o))
        return "is not an object";
    json_object_foreach((json_t *)o, k, v) {
        const char *const *kk = keys;
        while (*kk && strcmp(*kk, k) != 0)
            kk++;
        if (!*kk)
            return "has an unknown key (type, host, port, transport, name, username, password, restricted)";
    }
    bool bad = false;
    s->type = opt_str(o, "type", &bad);
    s->host = opt_str(o, "host", &bad);
    s->transport = opt_str(o, "transport", &bad);
    s->name = opt_str(o, "name", &bad);
    s->username = opt_str(o, "username", &bad);
    s->password = opt_str(o, "password", &bad);
    if (bad || !s->type || !s->host)
        return "needs \"type\" and \"host\", and every text value non-empty";
    const json_t *port = json_object_get(o, "port"), *r = json_object_get(o, "restricted");
    if (port && (!json_is_integer(port) || json_integer_value(port) < 1 || json_integer_value(port) > 65535))
        return "has a \"port\" that is not from 1 to 65535";
    if (r && !json_is_boolean(r))
        return "has a \"restricted\" that is not true or false";
    s->port = port ? (long)json_integer_value(port) : 0;
    s->restricted = json_is_true(r);
    if (s->transport && strcmp(s->transport, "udp") != 0 && strcmp(s->transport, "tcp") != 0)
        return "has a \"transport\" other than udp or tcp";
    if (s->restricted && (s->username || s->password))
        return "is restricted (credentials from turn_secret) and has a static username/password";
    if (s->restricted && !mod->conf->turn_secret)
        return "is restricted but no turn_secret is configured";
    return NULL;
}

/* ---- answers --------------------------------------------------------------------- */

/* Time-limited credentials for user (coturn use-auth-secret). 0 or -1. */
static int ext_credentials(const ext_mod *mod, const char *user, char *name, size_t name_len,
                           char **password_r, char *expires, size_t exp_len)
{
    int64_t until_ms = xmppd_wallclock_ms() + mod->conf->credential_ttl;
    snprintf(name, name_len, "%lld:%s", (long long)(until_ms / 1000), user);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    const char *secret = mod->conf->turn_secret;
    if (!HMAC(EVP_sha1(), secret, (int)strlen(secret), (const unsigned char *)name, strlen(name), mac,
              &mac_len))
        return -1;
    *password_r = xmppd_base64_encode(mac, mac_len);
    /* XEP-0082, UTC, whole seconds (what the username says) */
    time_t t = (time_t)(until_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(expires, exp_len, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return *password_r ? 0 : -1;
}

/* Appends <service/> for s to parent. 0 or -1 (OOM). */
static int ext_add_service(const ext_mod *mod, xmppd_stanza *parent, const ext_service *s, const char *user)
{
    xmppd_stanza *e = xmppd_stanza_tag(parent, "service", EXT_NS);
    if (!e)
        return -1;
    char port[8], name[320], expires[32];
    char *password = NULL;
    snprintf(port, sizeof port, "%ld", s->port);
    int rc = xmppd_stanza_set_attr(e, "type", s->type) | xmppd_stanza_set_attr(e, "host", s->host);
    if (s->port)
        rc |= xmppd_stanza_set_attr(e, "port", port);
    if (s->transport)
        rc |= xmppd_stanza_set_attr(e, "transport", s->transport);
    if (s->name)
        rc |= xmppd_stanza_set_attr(e, "name", s->name);
    if (s->restricted) {
        if (ext_credentials(mod, user, name, sizeof name, &password, expires, sizeof expires) != 0)
            return -1;
        rc |= xmppd_stanza_set_attr(e, "restricted", "1") | xmppd_stanza_set_attr(e, "username", name) |
              xmppd_stanza_set_attr(e, "password", password) | xmppd_stanza_set_attr(e, "expires", expires);
        xmppd_wipe(password, strlen(password));
        free(password);
    } else if (s->username) {
        rc |= xmppd_stanza_set_attr(e, "username", s->username);
        if (s->password)
            rc |= xmppd_stanza_set_attr(e, "password", s->password);
    }
    return rc ? -1 : 0;
}

/* Which services match a request: type (NULL: any), host (NULL: any),
 * port (0: any). */
static bool ext_match(const ext_service *s, const char *type, const char *host, long port)
{
    return (!type || strcmp(s->type, type) == 0) && (!host || strcmp(s->host, host) == 0) &&
           (!port || s->port == port);
}

/* XEP-0215 §3 (services, optionally of one type) and §4.3 (credentials
 * for one service: host and type required, port optional). */
static int ext_on_iq(xmppd_event *ev, void *ud)
{
    ext_mod *mod = ud;
    /* credentials are for the host's own accounts only */
    if (!ev->session || !ev->from || !ev->from->node ||
        strcmp(ev->from->domain, xmppd_host_name(xmppd_module_host(mod->m))) != 0)
        return xmppd_reply_error(ev, "auth", "forbidden", "external services are for this server's accounts");
    xmppd_stanza *req = xmppd_stanza_first(ev->stanza);
    const char *what = xmppd_stanza_name(req);
    bool creds = strcmp(what, "credentials") == 0;
    if (!creds && strcmp(what, "services") != 0)
        return xmppd_reply_error(ev, "cancel", "feature-not-implemented", NULL);
    const char *type = xmppd_stanza_attr(req, "type"), *host = NULL;
    long port = 0;
    if (creds) {
        xmppd_stanza *s = xmppd_stanza_child(req, "service", EXT_NS);
        const char *p = s ? xmppd_stanza_attr(s, "port") : NULL;
        type = s ? xmppd_stanza_attr(s, "type") : NULL;
        host = s ? xmppd_stanza_attr(s, "host") : NULL;
        char *end = NULL;
        port = p ? strtol(p, &end, 10) : 0;
        if (!type || !host || (p && (*end || port < 1 || port > 65535)))
            return xmppd_reply_error(ev, "modify", "bad-request", "<service/> needs 'host' and 'type'");
    }
    xmppd_stanza *iq = xmppd_stanza_reply(ev->stanza);
    xmppd_stanza *out = iq ? xmppd_stanza_tag(iq, what, EXT_NS) : NULL;
    if (out && type && !creds)
        xmppd_stanza_set_attr(out, "type", type);
    size_t found = 0;
    for (size_t i = 0; out && i < mod->n; i++) {
        if (!ext_match(&mod->services[i], type, host, port))
            continue;
        found++;
        if (ext_add_service(mod, out, &mod->services[i], ev->from->node) != 0)
            out = NULL;
    }
    if (!out) {
        xmppd_stanza_unref(iq);
        return XMPPD_FAIL;
    }
    if (creds && !found) {
        xmppd_stanza_unref(iq);
        return xmppd_reply_error(ev, "cancel", "item-not-found", "no such service is known here");
    }
    xmppd_reply(ev, iq);
    return XMPPD_HANDLED;
}

/* ---- module ------------------------------------------------------------------------ */

static void ext_unload(xmppd_module *m)
{
    free(xmppd_module_data(m));
    xmppd_module_set_data(m, NULL);
}

static int ext_load(xmppd_module *m, const void *conf)
{
    const ext_conf *c = conf;
    if (!json_is_array(c->services))
        return xmppd_module_refuse(m, "\"services\" must be an array of service objects");
    if (json_array_size(c->services) > EXT_MAX_SERVICES)
        return xmppd_module_refuse(m, "at most %d services", EXT_MAX_SERVICES);
    ext_mod *mod = calloc(1, sizeof *mod);
    if (!mod)
        return xmppd_module_refuse(m, "out of memory");
    mod->m = m;
    mod->conf = c;
    size_t i;
    json_t *o;
    json_array_foreach(c->services, i, o) {
        const char *why = read_service(mod, o, &mod->services[i]);
        if (why) {
            free(mod);
            return xmppd_module_refuse(m, "services[%zu] %s", i, why);
        }
        mod->n++;
    }
    xmppd_module_set_data(m, mod);
    if (xmppd_iq_handle(m, "get", EXT_NS, XMPPD_IQ_HOST, ext_on_iq, mod) < 0 ||
        xmppd_disco_feature(m, EXT_NS) < 0) {
        ext_unload(m);
        return xmppd_module_refuse(m, "cannot register (another module handles %s)", EXT_NS);
    }
    return 0;
}

XMPPD_MODULE(extdisco,
    .version = "1.0",
    .summary = "XEP-0215 external service discovery: STUN/TURN from configuration, time-limited TURN credentials",
    .specs = (const char *const[]){ "XEP-0215", NULL },
    .options = ext_options,
    .conf_size = sizeof(ext_conf),
    .load = ext_load,
    .unload = ext_unload);
