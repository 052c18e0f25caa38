/* Server configuration: the kernel's keys as option tables, the checks
 * types cannot express, load and free.
 *
 * Parsing is the option engine's (options.c), the same as for modules: it
 * knows types, ranges, defaults and unknown keys. What follows the tables
 * are the rules between values (a certificate needs its key, a domain is
 * either a host or a component, listeners do not share a port, ...) and
 * the values derived from what was configured (prepared domain names,
 * absolute paths, routes). Every rule adds its error and goes on, so one
 * run reports every error of the file. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/access.h"
#include "core/config.h"
#include "core/options.h"
#include "util/cidr.h"
#include "util/hmac.h"
#include "util/redis_uri.h"
#include "util/strmap.h"
#include "xmppd/crypto.h"
#include "xmppd/jid.h"
#include "xmppd/log.h"


/* Unix socket paths: sizeof(sockaddr_un.sun_path) - 1 on Linux. */
#define SOCKET_PATH_MAX 107

/* ---- the tables ------------------------------------------------------------------ */

#define OFF(type, field) offsetof(type, field)

static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };
static const char *const tls_versions[] = { "1.2", "1.3", NULL };
static const char *const listener_types[] = { "c2s", "s2s", "component", "http", NULL };
static const char *const listener_tlss[] = { "starttls", "direct", "none", NULL };
static const char *const s2s_auths[] = { "both", "dialback", "external", NULL };

static const xmppd_option log_fields[] = {
    { "level", XMPPD_OPT_ENUM, OFF(log_conf, level), "info", .choices = log_levels,
      .flags = XMPPD_OPT_INDEX, .doc = "lowest level written" },
    { "file", XMPPD_OPT_PATH, OFF(log_conf, file), NULL,
      .doc = "log file (reopened on SIGHUP); null or absent: standard error" },
    { NULL }
};

static const xmppd_option tls_fields[] = {
    { "cert", XMPPD_OPT_PATH, OFF(tls_conf, cert), NULL,
      .doc = "PEM certificate chain; the server picks a host's by SNI" },
    { "key", XMPPD_OPT_PATH, OFF(tls_conf, key), NULL, .doc = "PEM private key of cert" },
    { "ciphers", XMPPD_OPT_STRING, OFF(tls_conf, ciphers), NULL, .min = 1,
      .doc = "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's)" },
    { "min_version", XMPPD_OPT_ENUM, OFF(tls_conf, min_version), "1.2", .choices = tls_versions,
      .flags = XMPPD_OPT_INDEX, .doc = "oldest TLS version accepted" },
    { NULL }
};

static const xmppd_option fast_fields[] = {
    { "enabled", XMPPD_OPT_BOOL, OFF(fast_conf, enabled), "true",
      .doc = "offer FAST tokens (XEP-0484) with SASL2 over TLS: HT-SHA-256-NONE and the "
             "channel-binding variants the connection supports" },
    { "token_lifetime", XMPPD_OPT_DURATION, OFF(fast_conf, token_lifetime), "14d", 1000,
      366LL * 86400000, .doc = "how long a token is valid after it was issued" },
    { "rotate_before", XMPPD_OPT_DURATION, OFF(fast_conf, rotate_before), "7d", 0,
      366LL * 86400000,
      .doc = "a token used with less than this left is replaced by a new one at that login "
             "(0: only when the client asks); less than token_lifetime" },
    { "max_tokens", XMPPD_OPT_INT, OFF(fast_conf, max_tokens), "10", 1, 1000,
      .doc = "tokens one account may hold, one per client (SASL2 user-agent id); a new "
             "client's token replaces the least recently issued one" },
    { NULL }
};

static const xmppd_option c2s_fields[] = {
    { "require_encryption", XMPPD_OPT_BOOL, OFF(c2s_conf, require_encryption), "true",
      .doc = "clients must use TLS before authenticating (RFC 6120 §5.3.1)" },
    { "sasl2", XMPPD_OPT_BOOL, OFF(c2s_conf, sasl2), "true",
      .doc = "offer SASL2 (XEP-0388) with inline resource binding (Bind2, XEP-0386) beside "
             "RFC 6120 SASL" },
    { "ssdp", XMPPD_OPT_BOOL, OFF(c2s_conf, ssdp), "true",
      .doc = "SCRAM downgrade protection (XEP-0474): the server-first-message carries a hash "
             "of the offered mechanisms and channel bindings" },
    { "secret", XMPPD_OPT_STRING, OFF(c2s_conf, secret), NULL, .min = 16,
      .flags = XMPPD_OPT_SECRET,
      .doc = "key of the keyed hashes behind stable Bind2 resources and FAST tokens, shared by "
             "a cluster; default: 32 random bytes kept in DATA_DIR/c2s.key (created at first "
             "use; deleting it revokes every FAST token)" },
    { "fast", XMPPD_OPT_SECTION, OFF(c2s_conf, fast), .fields = fast_fields,
      .doc = "FAST token authentication (XEP-0484)" },
    { NULL }
};

static const xmppd_option limits_fields[] = {
    /* RFC 6120 §13.12: servers must accept stanzas of at least 10000 bytes. */
    { "max_stanza_size", XMPPD_OPT_SIZE, OFF(limits_conf, max_stanza_size), "256k", 10000, 1LL << 30,
      .doc = "a larger stanza ends its stream with <policy-violation/>" },
    { "max_depth", XMPPD_OPT_INT, OFF(limits_conf, max_depth), "64", 1, 1000,
      .doc = "deepest element nesting accepted" },
    { "negotiation_timeout", XMPPD_OPT_DURATION, OFF(limits_conf, negotiation_timeout), "30s",
      1000, 3600000, .doc = "time a client has to get from TCP to a bound resource" },
    { "connections_per_ip", XMPPD_OPT_INT, OFF(limits_conf, connections_per_ip), "20", 1, 1000000,
      .doc = "open connections from one address" },
    { "auth_attempts", XMPPD_OPT_INT, OFF(limits_conf, auth_attempts), "5", 1, 100,
      .doc = "failed authentications before a stream is closed" },
    { "auth_failure_delay", XMPPD_OPT_DURATION, OFF(limits_conf, auth_failure_delay), "1s", 0, 60000,
      .doc = "delay before a SASL failure, doubled per failure on the stream" },
    { "max_resources", XMPPD_OPT_INT, OFF(limits_conf, max_resources), "10", 1, 10000,
      .doc = "sessions one account may have at once" },
    { "max_send_buffer", XMPPD_OPT_SIZE, OFF(limits_conf, max_send_buffer), "1M", 65536, 1LL << 30,
      .doc = "bytes waiting for a slow reader before its stream is closed" },
    { NULL }
};

static const xmppd_option listener_fields[] = {
    { "type", XMPPD_OPT_ENUM, OFF(listener_conf, type), NULL, .choices = listener_types,
      .flags = XMPPD_OPT_INDEX | XMPPD_OPT_REQUIRED, .doc = "what connects here" },
    { "address", XMPPD_OPT_STRING, OFF(listener_conf, address), "::", .min = 1,
      .doc = "IP address to bind (\"::\": every address)" },
    { "port", XMPPD_OPT_INT, OFF(listener_conf, port), NULL, 1, 65535,
      .doc = "default: 5222 (c2s), 5223 (c2s direct TLS), 5269 (s2s), 5270 (s2s direct TLS), "
             "5347 (component), 5280 (http), 5281 (https)" },
    { "tls", XMPPD_OPT_ENUM, OFF(listener_conf, tls), "starttls", .choices = listener_tlss,
      .flags = XMPPD_OPT_INDEX, .doc = "STARTTLS after the stream header, or TLS from the first "
                                        "byte (XEP-0368); components have none; http listeners: "
                                        "\"direct\" (HTTPS) or \"none\" (the default: plain HTTP "
                                        "for a reverse proxy)" },
    { "proxy_protocol", XMPPD_OPT_BOOL, OFF(listener_conf, proxy_protocol), "false",
      .doc = "every connection starts with a PROXY protocol header (v1 or v2, HAProxy's "
             "send-proxy / send-proxy-v2) naming the client, whose address logs, access rules "
             "and limits then see; only from trusted_proxies (others are refused)" },
    { "trusted_proxies", XMPPD_OPT_LIST, OFF(listener_conf, trusted_proxies), NULL,
      .doc = "addresses or CIDRs (\"127.0.0.1\", \"10.0.0.0/8\") of the load balancers that may "
             "send a PROXY header (proxy_protocol) and, on http listeners, of reverse proxies "
             "whose X-Forwarded-For and X-Forwarded-Proto are believed" },
    { "path_prefix", XMPPD_OPT_STRING, OFF(listener_conf, path_prefix), NULL, .min = 2,
      .doc = "http: the path every URL lives under (\"/xmpp\"), as a proxy forwards it" },
    { NULL }
};

static const xmppd_option host_fields[] = {
    { "tls", XMPPD_OPT_SECTION, OFF(host_conf, tls), .fields = tls_fields,
      .doc = "the host's own certificate; keys not given are the top-level tls's" },
    { "modules", XMPPD_OPT_JSON, OFF(host_conf, modules), NULL,
      .doc = "modules of this host: added, reconfigured, or removed with false" },
    { "admins", XMPPD_OPT_LIST, OFF(host_conf, admins_given), NULL,
      .doc = "administrators of this host (bare JIDs), besides the server-wide ones" },
    { "access", XMPPD_OPT_JSON, OFF(host_conf, access_given), NULL,
      .doc = "access rules of this host: action -> entries; replaces the server-wide rule of "
             "the same action (docs/administration.md)" },
    { NULL }
};

static const xmppd_option component_fields[] = {
    { "secret", XMPPD_OPT_STRING, OFF(component_conf, secret), NULL, .min = 1,
      .flags = XMPPD_OPT_REQUIRED | XMPPD_OPT_SECRET,
      .doc = "the shared secret the component proves (XEP-0114 §3)" },
    { "subdomains", XMPPD_OPT_BOOL, OFF(component_conf, subdomains), "false",
      .doc = "also route every subdomain of the domain to the component" },
    { NULL }
};

static const xmppd_option s2s_fields[] = {
    { "require_encryption", XMPPD_OPT_BOOL, OFF(s2s_conf, require_encryption), "true",
      .doc = "no server-to-server stream without TLS" },
    { "authentication", XMPPD_OPT_ENUM, OFF(s2s_conf, authentication), "both", .choices = s2s_auths,
      .flags = XMPPD_OPT_INDEX,
      .doc = "how peers prove their domain: SASL EXTERNAL with certificates (XEP-0178), "
             "dialback (XEP-0220), or either" },
    { "ca_file", XMPPD_OPT_PATH, OFF(s2s_conf, ca_file), NULL,
      .doc = "extra trust anchors (PEM) for peer certificates, besides the system's" },
    { "idle_timeout", XMPPD_OPT_DURATION, OFF(s2s_conf, idle_timeout), "5m", 1000, 86400000LL,
      .doc = "a stream without stanzas for this long is closed" },
    { "connect_timeout", XMPPD_OPT_DURATION, OFF(s2s_conf, connect_timeout), "15s", 100, 600000,
      .doc = "time per connection attempt until the stream is authenticated" },
    { "max_queue", XMPPD_OPT_INT, OFF(s2s_conf, max_queue), "1000", 1, 1000000,
      .doc = "stanzas queued for a remote domain while its stream is set up" },
    { "bidi", XMPPD_OPT_BOOL, OFF(s2s_conf, bidi), "true",
      .doc = "XEP-0288: one stream carries stanzas both ways when the peer agrees (offered on "
             "incoming streams, asked for on outgoing ones)" },
    { "retry_delay", XMPPD_OPT_DURATION, OFF(s2s_conf, retry_delay), "2s", 0, 3600000,
      .doc = "after a failed attempt to reach a domain, its stanzas are bounced at once for "
             "this long (then twice as long after each further failure); 0: retry at once" },
    { "max_retry_delay", XMPPD_OPT_DURATION, OFF(s2s_conf, max_retry_delay), "5m", 0, 86400000LL,
      .doc = "longest wait between attempts to reach a failing domain" },
    { "stanza_rate", XMPPD_OPT_INT, OFF(s2s_conf, stanza_rate), "1000", 0, 1000000,
      .doc = "stanzas per second one peer's stream may send on average; a stream above it is "
             "closed with policy-violation (0: no limit)" },
    { "stanza_burst", XMPPD_OPT_INT, OFF(s2s_conf, stanza_burst), "5000", 1, 10000000,
      .doc = "stanzas one peer's stream may send at once above stanza_rate" },
    { "dialback_secret", XMPPD_OPT_STRING, OFF(s2s_conf, dialback_secret), NULL, .min = 16,
      .flags = XMPPD_OPT_SECRET,
      .doc = "dialback key secret (XEP-0185), shared by a cluster; default: random per start" },
    { "routes", XMPPD_OPT_JSON, OFF(s2s_conf, routes_given), NULL,
      .doc = "static routes: { \"domain\": \"host:port\" } instead of DNS" },
    { "dns_servers", XMPPD_OPT_LIST, OFF(s2s_conf, dns_given), NULL,
      .doc = "DNS servers for SRV lookups (\"ip\" or \"ip:port\"); default: the system's" },
    { NULL }
};

static const xmppd_option ws_fields[] = {
    { "enabled", XMPPD_OPT_BOOL, OFF(http_ws_conf, enabled), "true",
      .doc = "XMPP over WebSocket (RFC 7395) on every http listener" },
    { "path", XMPPD_OPT_STRING, OFF(http_ws_conf, path), "\"/xmpp-websocket\"", .min = 2,
      .doc = "the WebSocket endpoint's path" },
    { "ping_interval", XMPPD_OPT_DURATION, OFF(http_ws_conf, ping_interval), "30s", 1000, 3600000,
      .doc = "a WebSocket ping after this long without traffic; no answer within as long closes it" },
    { "see_other_uri", XMPPD_OPT_STRING, OFF(http_ws_conf, see_other_uri), NULL, .min = 6,
      .doc = "redirect every WebSocket stream to this ws:// or wss:// URI (RFC 7395 section 3.6.1)" },
    { NULL }
};

static const xmppd_option bosh_fields[] = {
    { "enabled", XMPPD_OPT_BOOL, OFF(http_bosh_conf, enabled), "true",
      .doc = "XMPP over BOSH (XEP-0124, XEP-0206) on every http listener" },
    { "path", XMPPD_OPT_STRING, OFF(http_bosh_conf, path), "\"/http-bind\"", .min = 2,
      .doc = "the BOSH endpoint's path" },
    { "max_wait", XMPPD_OPT_DURATION, OFF(http_bosh_conf, max_wait), "60s", 1000, 3600000,
      .doc = "longest time the server holds a request (a client's 'wait' is capped to it)" },
    { "max_inactivity", XMPPD_OPT_DURATION, OFF(http_bosh_conf, max_inactivity), "60s", 5000,
      3600000, .doc = "a session with no request open for this long ends" },
    { "max_pause", XMPPD_OPT_DURATION, OFF(http_bosh_conf, max_pause), "120s", 0, 3600000,
      .doc = "longest inactivity a client may ask for with 'pause' (0: no pausing)" },
    { "max_requests", XMPPD_OPT_INT, OFF(http_bosh_conf, max_requests), "2", 2, 10,
      .doc = "requests a session may have open at once" },
    { "max_body", XMPPD_OPT_SIZE, OFF(http_bosh_conf, max_body), "256k", 10000, 1LL << 30,
      .doc = "largest request body" },
    { NULL }
};

static const xmppd_option http_fields[] = {
    { "external_url", XMPPD_OPT_STRING, OFF(http_conf, external_url), NULL, .min = 8,
      .doc = "the URL clients reach the http listeners at (\"https://xmpp.example.org\"), for "
             "links such as upload slots; default: the first http listener's scheme, the domain "
             "and its port" },
    { "default_host", XMPPD_OPT_STRING, OFF(http_conf, default_host), NULL, .min = 1,
      .doc = "the host whose routes answer a request whose Host header names no route's "
             "domain; default: the first host" },
    { "max_header_size", XMPPD_OPT_SIZE, OFF(http_conf, max_header_size), "16k", 1024, 1LL << 20,
      .doc = "bytes of request line and headers; more is answered 431" },
    { "idle_timeout", XMPPD_OPT_DURATION, OFF(http_conf, idle_timeout), "60s", 1000, 3600000,
      .doc = "a connection idle (or sending its request) this long is closed" },
    { "requests_per_second", XMPPD_OPT_INT, OFF(http_conf, requests_per_second), "50", 1, 1000000,
      .doc = "requests per second one address may make on average; more is answered 429" },
    { "burst", XMPPD_OPT_INT, OFF(http_conf, burst), "100", 1, 1000000,
      .doc = "requests one address may make at once above the average" },
    { "cors_origins", XMPPD_OPT_LIST, OFF(http_conf, cors_origins), "[\"*\"]",
      .doc = "web origins whose scripts may use BOSH and host-meta ([]: none)" },
    { "websocket", XMPPD_OPT_SECTION, OFF(http_conf, websocket), .fields = ws_fields,
      .doc = "XMPP over WebSocket" },
    { "bosh", XMPPD_OPT_SECTION, OFF(http_conf, bosh), .fields = bosh_fields,
      .doc = "XMPP over BOSH" },
    { NULL }
};

static const xmppd_option cluster_fields[] = {
    { "name", XMPPD_OPT_STRING, OFF(cluster_conf, name), "\"xmppd\"", .min = 1,
      .doc = "the cluster's name, the same on every node: the prefix of its keys in Redis (one "
             "Redis can serve several clusters)" },
    { "node", XMPPD_OPT_STRING, OFF(cluster_conf, node), NULL, .min = 1,
      .doc = "this node's name, unique in the cluster (letters, digits, '.', '-', '_'); "
             "default: the machine's host name" },
    { "redis", XMPPD_OPT_LIST, OFF(cluster_conf, redis), NULL,
      .doc = "required; the Redis server: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS) "
             "or unix:///PATH; several are tried in turn (a replica promoted after a failover)" },
    { "secret", XMPPD_OPT_STRING, OFF(cluster_conf, secret), NULL, .min = 16,
      .flags = XMPPD_OPT_SECRET,
      .doc = "required; shared by the nodes: it signs every frame between them (a frame signed with "
             "another secret is dropped); c2s.secret and s2s.dialback_secret are derived from it "
             "when not set" },
    { "heartbeat", XMPPD_OPT_DURATION, OFF(cluster_conf, heartbeat), "1s", 100, 60000,
      .doc = "how often a node renews its registration and reads the others'" },
    { "node_timeout", XMPPD_OPT_DURATION, OFF(cluster_conf, node_timeout), "5s", 300, 600000,
      .doc = "a node whose registration was not renewed for this long is dead: the others "
             "take over its sessions (at least 3 heartbeats)" },
    { "delivery_timeout", XMPPD_OPT_DURATION, OFF(cluster_conf, delivery_timeout), "8s", 500,
      600000,
      .doc = "a stanza sent to another node that has not taken it from its Redis stream within "
             "this long is taken back and bounced (recipient-unavailable) or, for an account, "
             "handled here (offline storage); more than node_timeout plus a heartbeat, so a dead "
             "node's sessions are gone first" },
    { "queue_max", XMPPD_OPT_INT, OFF(cluster_conf, queue_max), "100000", 1000, 100000000,
      .doc = "frames a node's Redis stream holds (XADD MAXLEN ~): bounds Redis's memory for a "
             "node that stopped reading; keep above the frames a node receives in "
             "delivery_timeout" },
    { "ca_file", XMPPD_OPT_PATH, OFF(cluster_conf, ca_file), NULL,
      .doc = "rediss://: trust anchors (PEM) for the Redis server's certificate; default: the "
             "system's" },
    { "cert", XMPPD_OPT_PATH, OFF(cluster_conf, cert), NULL,
      .doc = "rediss://: a client certificate (PEM) for servers that ask for one" },
    { "key", XMPPD_OPT_PATH, OFF(cluster_conf, key), NULL, .doc = "rediss://: cert's private key" },
    { NULL }
};

const xmppd_option config_options[] = {
    { "log", XMPPD_OPT_SECTION, OFF(xmppd_config, log), .fields = log_fields, .doc = "logging" },
    { "data_dir", XMPPD_OPT_PATH, OFF(xmppd_config, data_dir), NULL,
      .doc = "where every piece of state lives (the SQLite database, the control socket, "
             "modules' files); relative storage paths are taken from it; default: "
             "$(localstatedir)/lib/xmppd, /var/lib/xmppd in packages" },
    { "module_path", XMPPD_OPT_LIST, OFF(xmppd_config, module_path_given), NULL,
      .doc = "folders searched for mod_NAME.so, in order; default: the install's module folder "
             "($(pkglibdir), e.g. /usr/local/lib/xmppd)" },
    { "storage", XMPPD_OPT_STRING, OFF(xmppd_config, storage), "sqlite", .min = 1,
      .doc = "storage driver every store uses (a loaded storage module provides it)" },
    { "storage_timeout", XMPPD_OPT_DURATION, OFF(xmppd_config, storage_timeout), "30s", 0, 3600000,
      .doc = "a storage operation the driver has not answered by then is answered as failed "
             "(a write may still be carried out later); 0: wait forever" },
    { "control_socket", XMPPD_OPT_JSON, OFF(xmppd_config, control_socket_given), NULL,
      .doc = "Unix socket xmppctl talks to (mode 0600), or false for none; default: "
             "DATA_DIR/xmppd.sock" },
    { "c2s", XMPPD_OPT_SECTION, OFF(xmppd_config, c2s), .fields = c2s_fields,
      .doc = "client connections" },
    { "tls", XMPPD_OPT_SECTION, OFF(xmppd_config, tls), .fields = tls_fields,
      .doc = "the certificate of every host that has none of its own" },
    { "limits", XMPPD_OPT_SECTION, OFF(xmppd_config, limits), .fields = limits_fields,
      .doc = "limits on what peers can make the server hold" },
    { "listeners", XMPPD_OPT_ARRAY, OFF(xmppd_config, listeners), "[ { \"type\": \"c2s\" } ]",
      .fields = listener_fields, .item_size = sizeof(listener_conf),
      .doc = "sockets the server accepts connections on" },
    { "modules", XMPPD_OPT_JSON, OFF(xmppd_config, global_modules), NULL,
      .doc = "modules of every host (and global ones): name -> options object or true" },
    { "hosts", XMPPD_OPT_MAP, OFF(xmppd_config, hosts), NULL, .fields = host_fields,
      .item_size = sizeof(host_conf), .flags = XMPPD_OPT_REQUIRED,
      .doc = "the domains served, at least one: \"hosts\": { \"example.org\": {} }" },
    { "s2s", XMPPD_OPT_SECTION, OFF(xmppd_config, s2s), .fields = s2s_fields,
      .doc = "server-to-server federation" },
    { "http", XMPPD_OPT_SECTION, OFF(xmppd_config, http), .fields = http_fields,
      .doc = "HTTP listeners: WebSocket, BOSH, host-meta and the routes of modules" },
    { "components", XMPPD_OPT_MAP, OFF(xmppd_config, components), NULL, .fields = component_fields,
      .item_size = sizeof(component_conf), .doc = "XEP-0114 external components: domain -> { secret }" },
    { "admins", XMPPD_OPT_LIST, OFF(xmppd_config, admins_given), NULL,
      .doc = "server-wide administrators (bare JIDs): XEP-0133 commands, the admin API, the "
             "\"admin\" of access rules" },
    { "groups", XMPPD_OPT_JSON, OFF(xmppd_config, groups_given), NULL,
      .doc = "named lists of bare JIDs for access rules: { \"staff\": [\"a@example.org\"] }" },
    { "access", XMPPD_OPT_JSON, OFF(xmppd_config, access_given), NULL,
      .doc = "access rules: action -> ordered [{\"allow\"|\"deny\": MATCH}], first match "
             "decides (docs/administration.md)" },
    { "cluster", XMPPD_OPT_SECTION, OFF(xmppd_config, cluster), .fields = cluster_fields,
      .doc = "several nodes serving the same hosts, with Redis and PostgreSQL (docs/cluster.md); "
             "absent: a single server" },
    { NULL }
};

/* The arrays the engine writes as xmppd_opt_array. */
_Static_assert(offsetof(xmppd_config, n_listeners) == offsetof(xmppd_config, listeners) + sizeof(void *),
               "listeners must be laid out as an xmppd_opt_array");
_Static_assert(offsetof(xmppd_config, n_hosts) == offsetof(xmppd_config, hosts) + sizeof(void *),
               "hosts must be laid out as an xmppd_opt_array");
_Static_assert(offsetof(xmppd_config, n_components) == offsetof(xmppd_config, components) + sizeof(void *),
               "components must be laid out as an xmppd_opt_array");
_Static_assert(offsetof(host_conf, name) == 0 && offsetof(component_conf, domain) == 0,
               "map items begin with their key");

/* ---- paths ------------------------------------------------------------------------- */

static char *path_join(const char *dir, const char *p)
{
    if (!p)
        return NULL;
    if (p[0] == '/' || !dir)
        return strdup(p);
    size_t n = strlen(dir) + strlen(p) + 2;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s/%s", dir, p);
    return out;
}

char *config_abspath(const xmppd_config *cfg, const char *p)
{
    return path_join(cfg ? cfg->dir : NULL, p);
}

char *config_datapath(const xmppd_config *cfg, const char *p)
{
    return path_join(cfg ? cfg->data_dir : NULL, p);
}

int config_line(const xmppd_config *cfg, const char *dotted_path)
{
    if (!cfg || !cfg->lines || !dotted_path)
        return 0;
    return (int)(intptr_t)strmap_get(cfg->lines, dotted_path);
}

/* ---- the rules between values ----------------------------------------------------- */

typedef struct vctx {
    xmppd_config *cfg;
    opt_errors *errs;
} vctx;

#define ERR(c, key, ...) opt_error((c)->errs, (c)->cfg, (key), __VA_ARGS__)

/* Keeps a malloc'd value in the configuration's block; NULL on OOM (with
 * an error at key). */
static void *keep(vctx *c, void *p, const char *key)
{
    if (options_keep(c->cfg, p) < 0) {
        ERR(c, key, "out of memory");
        return NULL;
    }
    return p;
}

/* Has key (or a key inside it) an error already? Rules about a value that
 * failed to parse would only repeat it in other words. */
static bool has_error(const vctx *c, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < c->errs->n; i++) {
        const char *at = strstr(c->errs->lines[i], key);
        if (at && at > c->errs->lines[i] && at[-1] == ' ' && (at[n] == ':' || at[n] == '.'))
            return true;
    }
    return false;
}

static char *keep_str(vctx *c, const char *s, const char *key)
{
    return keep(c, s ? strdup(s) : NULL, key);
}

static bool valid_module_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_')
            return false;
    return true;
}

/* A "modules" object: names -> options object, true (defaults) or, where
 * allow_false, false (removes an inherited module). Options themselves are
 * checked by the loader, which knows each module's table. */
static void check_modules(vctx *c, const json_t *mods, const char *prefix, bool allow_false)
{
    if (!json_is_object(mods)) {
        char got[64];
        opt_describe_value(mods, got, sizeof(got));
        ERR(c, prefix, "expected an object, got %s", got);
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)mods, k, v) {
        char key[512];
        snprintf(key, sizeof(key), "%s.%s", prefix, k);
        if (!valid_module_name(k)) {
            ERR(c, key, "invalid module name (lower-case letters, digits and _ only)");
        } else if (!json_is_object(v) && !json_is_true(v) && !(json_is_false(v) && allow_false)) {
            char got[64];
            opt_describe_value(v, got, sizeof(got));
            ERR(c, key, "expected an object of options or true%s, got %s",
                allow_false ? " or false" : "", got);
        }
    }
}

/* A tls section's own rules; given: its object as configured (NULL: absent). */
static void check_tls(vctx *c, const tls_conf *t, const json_t *given, const char *prefix)
{
    char key[512];
    const json_t *cert = json_object_get(given, "cert"), *k = json_object_get(given, "key");
    if (cert && t->cert && !k) {
        snprintf(key, sizeof(key), "%s.cert", prefix);
        ERR(c, key, "a certificate needs its private key: add \"key\" next to it");
    }
    if (t->key && !t->cert) {
        snprintf(key, sizeof(key), "%s.key", prefix);
        ERR(c, key, "a key was given without \"cert\"");
    }
    const char *files[2] = { cert ? t->cert : NULL, k ? t->key : NULL };
    static const char *const names[2] = { "cert", "key" };
    for (int i = 0; i < 2; i++) {
        if (files[i] && access(files[i], R_OK) != 0) {
            snprintf(key, sizeof(key), "%s.%s", prefix, names[i]);
            ERR(c, key, "cannot read %s: %s", files[i], strerror(errno));
        }
    }
}

static void check_paths(vctx *c)
{
    xmppd_config *cfg = c->cfg;
    if (!cfg->data_dir)
        cfg->data_dir = XMPPD_DATA_DIR;
    static const char *const fallback[] = { XMPPD_MODULE_DIR, NULL };
    if (!cfg->module_path_given)
        cfg->module_path_given = fallback;
    size_t n = 0;
    while (cfg->module_path_given[n])
        n++;
    const char **abs = keep(c, calloc(n + 1, sizeof(char *)), "module_path");
    for (size_t i = 0; abs && i < n; i++) {
        const char *p = cfg->module_path_given[i];
        char key[64];
        snprintf(key, sizeof(key), n > 1 || json_is_array(json_object_get(cfg->root, "module_path"))
                                       ? "module_path.%zu" : "module_path", i);
        if (!*p)
            ERR(c, key, "expected a folder name, got \"\"");
        abs[i] = keep(c, config_abspath(cfg, p), key);
    }
    cfg->module_path = abs;
    if (cfg->storage && !valid_module_name(cfg->storage))
        ERR(c, "storage", "expected a storage driver name such as \"sqlite\", got \"%s\"", cfg->storage);
}

/* "control_socket": a path, or false for none; default DATA_DIR/xmppd.sock. */
static void check_control_socket(vctx *c)
{
    xmppd_config *cfg = c->cfg;
    const json_t *v = cfg->control_socket_given;
    if (json_is_false(v))
        return;
    if (!v) {
        size_t n = strlen(cfg->data_dir) + sizeof("/xmppd.sock");
        char *p = keep(c, malloc(n), "data_dir");
        if (!p)
            return;
        snprintf(p, n, "%s/xmppd.sock", cfg->data_dir);
        cfg->control_socket = p;
        if (strlen(p) > SOCKET_PATH_MAX)
            ERR(c, "data_dir", "the control socket's default path %s is over the %d bytes a Unix "
                "socket path may have: set \"control_socket\" to a shorter path (or false)", p,
                SOCKET_PATH_MAX);
        return;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        char got[64];
        opt_describe_value(v, got, sizeof(got));
        ERR(c, "control_socket", "expected a non-empty path or false, got %s", got);
        return;
    }
    cfg->control_socket = keep(c, config_abspath(cfg, json_string_value(v)), "control_socket");
    if (cfg->control_socket && strlen(cfg->control_socket) > SOCKET_PATH_MAX)
        ERR(c, "control_socket", "%s is over the %d bytes a Unix socket path may have",
            cfg->control_socket, SOCKET_PATH_MAX);
}

static int default_port(int type, int tls)
{
    switch (type) {
    case LISTEN_C2S: return tls == LISTEN_TLS_DIRECT ? 5223 : 5222;
    case LISTEN_S2S: return tls == LISTEN_TLS_DIRECT ? 5270 : 5269;
    case LISTEN_HTTP: return tls == LISTEN_TLS_DIRECT ? 5281 : 5280;
    default: return 5347;
    }
}

/* "10.0.0.0/8", "::1", "192.0.2.7": an address with an optional prefix. */
static bool valid_cidr(const char *s)
{
    cidr c;
    return cidr_parse(s, &c) == 0;
}

/* The rules of http listeners (TLS "direct" or "none", the default) and of
 * the PROXY protocol. */
static void check_http_listener(vctx *c, listener_conf *l, const json_t *lo, const char *key)
{
    char sub[96];
    if (l->type != LISTEN_HTTP) {
        if (l->tls == LISTEN_TLS_NONE) {
            snprintf(sub, sizeof(sub), "%s.tls", key);
            ERR(c, sub, "\"none\" is only for http listeners (use \"starttls\" or \"direct\")");
        }
        if ((l->trusted_proxies && !l->proxy_protocol) || l->path_prefix) {
            snprintf(sub, sizeof(sub), "%s.%s", key, l->path_prefix ? "path_prefix" : "trusted_proxies");
            ERR(c, sub, l->path_prefix ? "only http listeners take this key"
                                       : "only http and proxy_protocol listeners take this key");
        }
    }
    if (l->proxy_protocol && !l->trusted_proxies) {
        snprintf(sub, sizeof(sub), "%s.proxy_protocol", key);
        ERR(c, sub, "needs trusted_proxies: the load balancers that may send the header");
    }
    for (size_t i = 0; l->trusted_proxies && l->trusted_proxies[i]; i++)
        if (!valid_cidr(l->trusted_proxies[i])) {
            snprintf(sub, sizeof(sub), "%s.trusted_proxies", key);
            ERR(c, sub, "expected IP addresses or CIDRs (\"10.0.0.0/8\"), got \"%s\"",
                l->trusted_proxies[i]);
        }
    if (l->type != LISTEN_HTTP)
        return;
    if (!json_object_get(lo, "tls"))
        l->tls = LISTEN_TLS_NONE;
    else if (l->tls == LISTEN_TLS_STARTTLS) {
        snprintf(sub, sizeof(sub), "%s.tls", key);
        ERR(c, sub, "HTTP has no STARTTLS: \"direct\" (HTTPS) or \"none\" (plain HTTP)");
    }
    const char *p = l->path_prefix;
    if (p && (p[0] != '/' || p[strlen(p) - 1] == '/' || strpbrk(p, "?#% \"'<>"))) {
        snprintf(sub, sizeof(sub), "%s.path_prefix", key);
        ERR(c, sub, "expected a path such as \"/xmpp\" (a leading '/', none at the end), got "
            "\"%s\"", p);
    }
}

/* Paths of the kernel's HTTP endpoints: absolute, and different. */
static void check_http(vctx *c)
{
    http_conf *h = &c->cfg->http;
    const char *paths[2] = { h->websocket.path, h->bosh.path };
    static const char *const keys[2] = { "http.websocket.path", "http.bosh.path" };
    for (int i = 0; i < 2; i++)
        if (paths[i] && (paths[i][0] != '/' || strpbrk(paths[i], "?#% \"'<>")))
            ERR(c, keys[i], "expected a path beginning with '/', got \"%s\"", paths[i]);
    if (paths[0] && paths[1] && strcmp(paths[0], paths[1]) == 0 && h->websocket.enabled &&
        h->bosh.enabled)
        ERR(c, keys[1], "the same path as http.websocket.path");
    const char *u = h->websocket.see_other_uri;
    if (u && strncmp(u, "ws://", 5) != 0 && strncmp(u, "wss://", 6) != 0)
        ERR(c, "http.websocket.see_other_uri", "expected a ws:// or wss:// URI, got \"%s\"", u);
    u = h->external_url;
    if (u && strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        ERR(c, "http.external_url", "expected an http:// or https:// URL, got \"%s\"", u);
    if (h->default_host) {
        char *d = xmppd_nameprep(h->default_host);
        bool found = false;
        for (size_t i = 0; d && i < c->cfg->n_hosts; i++)
            found = found || strcmp(c->cfg->hosts[i].name, d) == 0;
        if (!found)
            ERR(c, "http.default_host", "\"%s\" is not one of the hosts", h->default_host);
        else
            h->default_host = keep(c, d, "http.default_host");
        if (!found)
            free(d);
    }
}

static void check_listeners(vctx *c)
{
    xmppd_config *cfg = c->cfg;
    const json_t *given = json_object_get(cfg->root, "listeners");
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        listener_conf *l = &cfg->listeners[i];
        const json_t *lo = json_array_get(given, i);
        char key[64], tkey[80];
        snprintf(key, sizeof(key), "listeners.%zu", i);
        if (has_error(c, key))
            continue;
        check_http_listener(c, l, lo, key);
        if (!l->port)
            l->port = default_port(l->type, l->tls);
        /* XEP-0114 streams have no TLS: never pretend they are encrypted. */
        if (l->type == LISTEN_COMPONENT && json_object_get(lo, "tls")) {
            snprintf(tkey, sizeof(tkey), "%s.tls", key);
            ERR(c, tkey, "component listeners (XEP-0114) have no TLS; remove \"tls\" and bind "
                "them to a loopback or private address");
        }
        for (size_t j = 0; l->address && j < i; j++)
            if (cfg->listeners[j].port == l->port && cfg->listeners[j].address && l->port &&
                strcmp(cfg->listeners[j].address, l->address) == 0)
                ERR(c, key, "[%s]:%lld is already used by listeners.%zu", l->address, l->port, j);
    }
}

/* The host's tls keys not given in its own object come from the top level. */
static void inherit_tls(tls_conf *t, const json_t *given, const tls_conf *top)
{
    if (!json_object_get(given, "cert"))
        t->cert = top->cert;
    if (!json_object_get(given, "key"))
        t->key = top->key;
    if (!json_object_get(given, "ciphers"))
        t->ciphers = top->ciphers;
    if (!json_object_get(given, "min_version"))
        t->min_version = top->min_version;
}

static void check_hosts(vctx *c)
{
    xmppd_config *cfg = c->cfg;
    const json_t *given = json_object_get(cfg->root, "hosts");
    if (given && json_is_object(given) && cfg->n_hosts == 0)
        ERR(c, "hosts", "at least one host is required, e.g. \"hosts\": { \"example.org\": {} }");
    for (size_t i = 0; i < cfg->n_hosts; i++) {
        host_conf *h = &cfg->hosts[i];
        const char *domain = h->name;
        char key[512], sub[600];
        snprintf(key, sizeof(key), "hosts.%s", domain);
        const json_t *hv = json_object_get(given, domain);
        char *prepped = xmppd_nameprep(domain);
        if (!prepped || !*prepped || strpbrk(prepped, "@/<>&'\"")) {
            free(prepped);
            ERR(c, key, "not a valid domain name");
            continue;
        }
        if (!keep(c, prepped, key))
            continue;
        h->name = prepped;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->hosts[j].name, h->name) == 0)
                ERR(c, key, "the same host as an earlier entry (both are %s after normalisation)",
                    h->name);
        const json_t *tls = json_object_get(hv, "tls");
        inherit_tls(&h->tls, tls, &cfg->tls);
        snprintf(sub, sizeof(sub), "%s.tls", key);
        check_tls(c, &h->tls, tls, sub);
        if (h->modules) {
            snprintf(sub, sizeof(sub), "%s.modules", key);
            check_modules(c, h->modules, sub, true);
        }
    }
}

/* The secret never appears in a message, not even a wrong value of it. */
static void check_components(vctx *c)
{
    xmppd_config *cfg = c->cfg;
    for (size_t i = 0; i < cfg->n_components; i++) {
        component_conf *cc = &cfg->components[i];
        char key[512];
        snprintf(key, sizeof(key), "components.%s", cc->domain);
        xmppd_jid *j = xmppd_jid_parse(cc->domain);
        /* The domain is written into stream headers: no XML specials. */
        bool plain = j && !j->node && !j->resource && !strpbrk(j->domain, "<>&'\"");
        const char *d = plain ? keep_str(c, j->domain, key) : NULL;
        xmppd_jid_free(j);
        if (!plain) {
            ERR(c, key, "not a valid domain name");
            continue;
        }
        if (!d)
            continue;
        cc->domain = d;
        for (size_t k = 0; k < cfg->n_hosts; k++)
            if (strcmp(cfg->hosts[k].name, d) == 0)
                ERR(c, key, "%s is also under \"hosts\": a domain is either a host or a component", d);
        for (size_t k = 0; k < i; k++)
            if (strcmp(cfg->components[k].domain, d) == 0)
                ERR(c, key, "the same component as an earlier entry (both are %s after "
                    "normalisation)", d);
    }
}

/* "host:port", "[v6]:port" or "host" (port def) into host and port. */
static int split_hostport(const char *v, int def, char **host_r, int *port_r)
{
    const char *colon = NULL, *end;
    if (v[0] == '[') {
        end = strchr(v, ']');
        if (!end || end == v + 1 || (end[1] && end[1] != ':'))
            return -1;
        colon = end[1] ? end + 1 : NULL;
        v++;
    } else {
        colon = strrchr(v, ':');
        if (colon && strchr(v, ':') != colon)
            return -1; /* IPv6 literals need brackets */
        end = colon ? colon : v + strlen(v);
    }
    if (end == v)
        return -1;
    long port = def;
    if (colon) {
        char *e;
        errno = 0;
        port = strtol(colon + 1, &e, 10);
        if (!colon[1] || *e || errno || port < 1 || port > 65535)
            return -1;
    }
    *host_r = strndup(v, (size_t)(end - v));
    *port_r = (int)port;
    return *host_r ? 0 : -1;
}

static void check_routes(vctx *c)
{
    s2s_conf *s = &c->cfg->s2s;
    const json_t *routes = s->routes_given;
    if (!routes)
        return;
    if (!json_is_object(routes)) {
        char got[64];
        opt_describe_value(routes, got, sizeof(got));
        ERR(c, "s2s.routes", "expected an object, got %s", got);
        return;
    }
    s->routes = keep(c, calloc(json_object_size(routes) + 1, sizeof(*s->routes)), "s2s.routes");
    const char *domain;
    json_t *rv;
    json_object_foreach((json_t *)routes, domain, rv) {
        char key[600];
        snprintf(key, sizeof(key), "s2s.routes.%s", domain);
        if (!s->routes)
            return;
        s2s_route_conf *r = &s->routes[s->n_routes];
        char *d = xmppd_nameprep(domain);
        if (!d || !*d || strchr(d, '@') || strchr(d, '/')) {
            free(d);
            ERR(c, key, "not a valid domain name");
            continue;
        }
        if (!keep(c, d, key))
            continue;
        bool dup = false;
        for (const s2s_route_conf *e = s->routes; e < r; e++)
            dup = dup || strcmp(e->domain, d) == 0;
        if (dup) {
            ERR(c, key, "the same domain as an earlier route (both are %s after normalisation)", d);
            continue;
        }
        char *host = NULL;
        int port = 0;
        if (!json_is_string(rv) || split_hostport(json_string_value(rv), 5269, &host, &port) < 0) {
            char got[64];
            opt_describe_value(rv, got, sizeof(got));
            ERR(c, key, "expected \"host:port\" (or \"[ipv6]:port\"), got %s", got);
            continue;
        }
        if (!keep(c, host, key))
            continue;
        *r = (s2s_route_conf){ d, host, port };
        s->n_routes++;
    }
}

/* "dns_servers" into c-ares' "ip:port,[v6]:port" list. */
static void check_dns(vctx *c)
{
    s2s_conf *s = &c->cfg->s2s;
    if (!s->dns_given)
        return;
    size_t cap = 1, len = 0, n = 0;
    for (const char *const *e = s->dns_given; *e; e++, n++)
        cap += strlen(*e) + 10; /* [],:port */
    if (n == 0) {
        ERR(c, "s2s.dns_servers", "expected a non-empty list of \"ip\" or \"ip:port\" strings, got []");
        return;
    }
    char *csv = keep(c, calloc(1, cap), "s2s.dns_servers");
    if (!csv)
        return;
    bool list = json_is_array(json_object_get(json_object_get(c->cfg->root, "s2s"), "dns_servers"));
    for (size_t i = 0; i < n; i++) {
        const char *t = s->dns_given[i];
        char key[64];
        snprintf(key, sizeof(key), list ? "s2s.dns_servers.%zu" : "s2s.dns_servers", i);
        char *host = NULL;
        int port = 53;
        bool ok;
        /* a bare IPv6 literal has several colons and no port */
        if (t[0] != '[' && strchr(t, ':') != strrchr(t, ':'))
            ok = (host = strdup(t)) != NULL;
        else
            ok = split_hostport(t, 53, &host, &port) == 0;
        unsigned char addr[16];
        bool v6 = ok && strchr(host, ':');
        ok = ok && inet_pton(v6 ? AF_INET6 : AF_INET, host, addr) == 1;
        if (ok)
            len += (size_t)snprintf(csv + len, cap - len, "%s%s%s%s:%d", len ? "," : "",
                                    v6 ? "[" : "", host, v6 ? "]" : "", port);
        else
            ERR(c, key, "expected an IP address with an optional port (\"127.0.0.1:5353\", "
                "\"[::1]:53\"), got \"%s\"", t);
        free(host);
    }
    s->dns_servers = csv;
}

/* Names that go into Redis keys and channels: letters, digits, '.', '-',
 * '_', at most 64. */
static bool valid_cluster_name(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 64 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == n;
}

/* hex(HMAC-SHA256(secret, label)): the shared secrets the kernel's other
 * parts need, derived from the cluster's one so every node has the same. */
static char *derive_secret(const char *secret, const char *label)
{
    char *hex = malloc(HMAC_SHA256_HEX + 1);
    if (hex && !hmac_sha256_hex(secret, label, strlen(label), hex)) {
        free(hex);
        hex = NULL;
    }
    return hex;
}

/* A cluster shares storage (PostgreSQL: SQLite is one machine's file),
 * names its node, and has the shared secrets of c2s and s2s. */
static void check_cluster(vctx *c)
{
    xmppd_config *cfg = c->cfg;
    cluster_conf *cl = &cfg->cluster;
    cl->enabled = json_object_get(cfg->root, "cluster") != NULL;
    if (!cl->enabled || has_error(c, "cluster"))
        return;
    if (cfg->storage && strcmp(cfg->storage, "sqlite") == 0)
        ERR(c, "storage", "a cluster needs storage its nodes share: \"storage\": \"pgsql\" with "
            "storage_pgsql (SQLite is a file of one machine)");
    if (cl->name && !valid_cluster_name(cl->name))
        ERR(c, "cluster.name", "expected at most 64 letters, digits, '.', '-' or '_', got \"%s\"",
            cl->name);
    if (!cl->node) {
        char host[256] = "";
        if (gethostname(host, sizeof(host) - 1) < 0 || !valid_cluster_name(host))
            ERR(c, "cluster.node", "the host name \"%s\" cannot name the node: set \"node\"", host);
        else
            cl->node = keep_str(c, host, "cluster.node");
    } else if (!valid_cluster_name(cl->node)) {
        ERR(c, "cluster.node", "expected at most 64 letters, digits, '.', '-' or '_', got \"%s\"",
            cl->node);
    }
    size_t n = 0;
    for (; cl->redis && cl->redis[n]; n++) {
        redis_uri u;
        const char *why;
        char key[64];
        snprintf(key, sizeof(key), json_is_array(json_object_get(json_object_get(cfg->root, "cluster"),
                                                                 "redis")) ? "cluster.redis.%zu"
                                                                           : "cluster.redis", n);
        if (redis_uri_parse(cl->redis[n], &u, &why) < 0)
            ERR(c, key, "%s", why);
        else
            redis_uri_clear(&u);
    }
    if (n == 0)
        ERR(c, "cluster.redis", "expected at least one Redis URI (\"redis://127.0.0.1:6379\")");
    if (cl->node_timeout < 3 * cl->heartbeat)
        ERR(c, "cluster.node_timeout", "must be at least 3 heartbeats (%lld ms)", 3 * cl->heartbeat);
    if (cl->delivery_timeout <= cl->node_timeout + cl->heartbeat)
        ERR(c, "cluster.delivery_timeout", "must be more than node_timeout plus a heartbeat "
            "(%lld ms)", cl->node_timeout + cl->heartbeat);
    if ((cl->cert != NULL) != (cl->key != NULL))
        ERR(c, cl->cert ? "cluster.cert" : "cluster.key", "a client certificate needs both \"cert\" "
            "and \"key\"");
    static const char *const files[] = { "cluster.ca_file", "cluster.cert", "cluster.key" };
    const char *paths[] = { cl->ca_file, cl->cert, cl->key };
    for (int i = 0; i < 3; i++)
        if (paths[i] && access(paths[i], R_OK) != 0)
            ERR(c, files[i], "cannot read %s: %s", paths[i], strerror(errno));
    if (!cl->secret) {
        ERR(c, "cluster.secret", "a cluster needs a secret its nodes share (at least 16 characters)");
        return;
    }
    if (!cfg->c2s.secret)
        cfg->c2s.secret = keep(c, derive_secret(cl->secret, "xmppd c2s key"), "cluster.secret");
    if (!cfg->s2s.dialback_secret)
        cfg->s2s.dialback_secret = keep(c, derive_secret(cl->secret, "xmppd dialback key"),
                                        "cluster.secret");
}

static void check_all(vctx *c)
{
    xmppd_config *cfg = c->cfg;
    check_paths(c);
    check_control_socket(c);
    check_tls(c, &cfg->tls, json_object_get(cfg->root, "tls"), "tls");
    check_listeners(c);
    if (cfg->global_modules)
        check_modules(c, cfg->global_modules, "modules", false);
    check_hosts(c);
    check_routes(c);
    check_dns(c);
    if (cfg->s2s.ca_file && access(cfg->s2s.ca_file, R_OK) != 0)
        ERR(c, "s2s.ca_file", "cannot read %s: %s", cfg->s2s.ca_file, strerror(errno));
    check_components(c);
    if (cfg->c2s.fast.rotate_before >= cfg->c2s.fast.token_lifetime &&
        !has_error(c, "c2s.fast.rotate_before") && !has_error(c, "c2s.fast.token_lifetime"))
        ERR(c, "c2s.fast.rotate_before", "must be less than c2s.fast.token_lifetime (every use "
            "would replace the token)");
    check_http(c);
    access_compile(cfg, c->errs);
    check_cluster(c);
}

/* ---- load / free ------------------------------------------------------------- */

/* Reads the whole file into a NUL-terminated buffer (at most 64 MiB). */
static char *read_file(const char *path, size_t *len_r, int *errno_r)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *errno_r = errno;
        return NULL;
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 == cap) {
            char *n = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
            if (!n) {
                free(buf);
                buf = NULL;
                *errno_r = cap < (64u << 20) ? ENOMEM : EFBIG;
                break;
            }
            buf = n;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - 1 - len, f);
        len += r;
        if (r == 0) {
            if (ferror(f)) {
                *errno_r = errno;
                free(buf);
                buf = NULL;
            }
            break;
        }
    }
    if (!buf && !*errno_r)
        *errno_r = ENOMEM;
    fclose(f);
    if (buf) {
        buf[len] = '\0';
        *len_r = len;
    }
    return buf;
}

/* The absolute folder holding path. */
static char *folder_of(const char *path)
{
    char *real = realpath(path, NULL);
    if (!real)
        return NULL;
    char *slash = strrchr(real, '/');
    if (slash == real)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    return real;
}

xmppd_config *config_load(const char *path, bool keep_on_error, opt_errors *errs)
{
    size_t len = 0, before = errs->n;
    int e = 0;
    char *text = read_file(path, &len, &e);
    if (!text) {
        opt_error(errs, NULL, path, "cannot read: %s", strerror(e));
        return NULL;
    }
    char *dir = folder_of(path);
    if (!dir) {
        opt_error(errs, NULL, path, "cannot resolve its folder: %s", strerror(errno));
        free(text);
        return NULL;
    }
    /* The text kept for messages is the one without comments: they are
     * blanks of the same length, so lines and columns still match. */
    config_strip_comments(text, len);
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root)) {
        char where[4200];
        snprintf(where, sizeof(where), "%.4096s:%d:%d", path, je.line, je.column);
        if (!root && je.line > 0)
            opt_error(errs, NULL, where, "invalid JSON: %s", je.text);
        else if (!root)
            opt_error(errs, NULL, path, "invalid JSON: %s", je.text);
        else
            opt_error(errs, NULL, path, "the configuration must be a JSON object");
        json_decref(root);
        free(text);
        free(dir);
        return NULL;
    }
    /* The locator needs path and text before the options are parsed: the
     * engine's messages carry lines. */
    xmppd_config probe = { .path = path, .dir = dir, .text = text, .root = root,
                           .lines = config_lines_build(text, len) };
    opt_ctx ctx = { &probe, "", NULL, NULL, NULL };
    xmppd_config *cfg = options_parse(config_options, sizeof(xmppd_config), root, &ctx, true, errs);
    if (!cfg) {
        json_decref(root);
        free(text);
        free(dir);
        strmap_free(probe.lines);
        return NULL;
    }
    char *path_copy = strdup(path);
    if (options_keep(cfg, text) < 0 || options_keep(cfg, dir) < 0 || !path_copy ||
        options_keep(cfg, path_copy) < 0) {
        opt_error(errs, NULL, path, "out of memory");
        strmap_free(probe.lines);
        json_decref(root);
        options_conf_free(cfg);
        return NULL;
    }
    cfg->path = path_copy;
    cfg->dir = dir;
    cfg->text = text;
    cfg->root = root;
    cfg->lines = probe.lines;
    vctx c = { cfg, errs };
    check_all(&c);
    if (errs->n > before && !keep_on_error) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

xmppd_config *config_read(const char *path, char *err, size_t errlen)
{
    opt_errors errs = { 0 };
    xmppd_config *cfg = config_load(path, false, &errs);
    opt_errors_join(&errs, err, errlen);
    opt_errors_free(&errs);
    return cfg;
}

/* Secrets do not outlive the configuration in memory. */
static void wipe(const char *s)
{
    if (s)
        xmppd_wipe((char *)s, strlen(s));
}

void config_free(xmppd_config *cfg)
{
    if (!cfg)
        return;
    wipe(cfg->s2s.dialback_secret);
    wipe(cfg->c2s.secret);
    wipe(cfg->cluster.secret);
    for (size_t i = 0; i < cfg->n_components; i++)
        wipe(cfg->components[i].secret);
    wipe(cfg->text);
    access_free(cfg->access);
    for (size_t i = 0; i < cfg->n_hosts; i++)
        access_free(cfg->hosts[i].access);
    strmap_free(cfg->lines);
    json_decref(cfg->root);
    options_conf_free(cfg);
}
