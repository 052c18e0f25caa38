/* Server configuration: one JSON file (Jansson), validated as a whole at
 * start. The kernel's keys are described by option tables (config.c) in
 * the same engine as module options (options.h), so they have types,
 * defaults and documentation, and `xmppctl options` prints them. Every
 * error is one line "FILE:LINE: KEY: message"; all of them are reported,
 * not only the first. The format is documented in docs/configuration.md
 * and shown whole in contrib/xmppd.example.json.
 *
 * Ownership: an xmppd_config is one conf block (options.h); every string,
 * list and array it points to belongs to it and goes with config_free. */
#ifndef XMPPD_CONFIG_H
#define XMPPD_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "xmppd/module.h"

enum listener_type { LISTEN_C2S = 0, LISTEN_S2S, LISTEN_COMPONENT, LISTEN_HTTP };
/* NONE: plain HTTP (behind a TLS-terminating proxy); only for http listeners */
enum listener_tls { LISTEN_TLS_STARTTLS = 0, LISTEN_TLS_DIRECT, LISTEN_TLS_NONE };
enum tls_min { TLS_MIN_1_2 = 0, TLS_MIN_1_3 };
enum s2s_auth { S2S_AUTH_BOTH = 0, S2S_AUTH_DIALBACK, S2S_AUTH_EXTERNAL };

typedef struct listener_conf {
    int type;             /* enum listener_type */
    int tls;              /* enum listener_tls */
    const char *address;  /* "::", "127.0.0.1", ... */
    long long port;       /* the type's default port when not configured */
    bool proxy_protocol;  /* a PROXY v1/v2 header first, from trusted_proxies only */
    /* addresses/CIDRs that may send a PROXY header, and (http) whose
     * X-Forwarded-* are believed */
    const char *const *trusted_proxies;
    /* http listeners: */
    const char *path_prefix;            /* "/xmpp": every path lives under it; NULL: none */
} listener_conf;

typedef struct tls_conf {
    const char *cert;     /* PEM chain path, absolute; NULL: none */
    const char *key;      /* PEM key path, absolute */
    const char *ciphers;  /* OpenSSL cipher list for TLS <= 1.2, NULL: default */
    int min_version;      /* enum tls_min */
} tls_conf;

typedef struct limits_conf {
    long long max_stanza_size;      /* bytes */
    long long max_depth;            /* element nesting */
    long long negotiation_timeout;  /* ms until a stream must be bound */
    long long connections_per_ip;
    long long auth_attempts;        /* failures per stream before it is closed */
    long long auth_failure_delay;   /* ms, doubled per failure of the stream */
    long long max_resources;        /* sessions per account */
    long long max_send_buffer;      /* bytes queued to a slow reader before it is dropped */
} limits_conf;

typedef struct host_conf {
    const char *name;     /* nameprepped */
    tls_conf tls;         /* inherits the global tls where not given */
    const json_t *modules; /* object: module name -> options object; merged with
                              the global non-global-module entries (false removes) */
    const char *const *admins_given; /* the host's administrators as configured */
    const json_t *access_given;      /* the host's access rules as configured */
    struct access_table *access;     /* compiled (core/access.h): admins and rules */
} host_conf;

/* An external component (XEP-0114): a domain served by a process that
 * connects to a "component" listener and proves the shared secret. */
typedef struct component_conf {
    const char *domain;   /* nameprepped; never one of the hosts */
    const char *secret;   /* never logged or printed */
    bool subdomains;      /* also route every subdomain of domain to it */
} component_conf;

typedef struct s2s_route_conf {
    const char *domain;   /* nameprepped remote domain */
    const char *host;     /* host name or IP literal to connect to */
    int port;
} s2s_route_conf;

typedef struct s2s_conf {
    bool require_encryption;
    int authentication;           /* enum s2s_auth */
    const char *ca_file;          /* extra trust anchors (PEM), absolute; NULL: none */
    long long idle_timeout;       /* ms */
    long long connect_timeout;    /* ms per connection attempt until authenticated */
    long long max_queue;          /* stanzas queued per remote domain while connecting */
    bool bidi;                    /* XEP-0288: offer and use bidirectional streams */
    long long retry_delay;        /* ms: first back-off after a failed attempt; 0: none */
    long long max_retry_delay;    /* ms: the back-off doubles up to this */
    long long stanza_rate;        /* stanzas/s a peer's stream may send on average; 0: no limit */
    long long stanza_burst;       /* ... and at once */
    const char *dialback_secret;  /* NULL: random per start; never logged */
    const json_t *routes_given;   /* "routes" as configured: domain -> "host:port" */
    const char *const *dns_given; /* "dns_servers" as configured */
    s2s_route_conf *routes;       /* derived from routes_given */
    size_t n_routes;
    const char *dns_servers;      /* c-ares "ip:port,..." from dns_given; NULL: the system's */
} s2s_conf;

typedef struct log_conf {
    int level;            /* XMPPD_LOG_* */
    const char *file;     /* NULL: stderr */
} log_conf;

/* XEP-0484 FAST tokens (c2s.fast). */
typedef struct fast_conf {
    bool enabled;
    long long token_lifetime;     /* ms a token is valid */
    long long rotate_before;      /* ms: a token used with less left is replaced */
    long long max_tokens;         /* per account (one per client) */
} fast_conf;

typedef struct c2s_conf {
    bool require_encryption;
    bool sasl2;                   /* XEP-0388 SASL2 with XEP-0386 Bind2 */
    bool ssdp;                    /* XEP-0474 h= in SCRAM server-first */
    const char *secret;           /* key of the device hashes; NULL: DATA_DIR/c2s.key; never logged */
    fast_conf fast;
} c2s_conf;

/* WebSocket (RFC 7395) on http listeners. */
typedef struct http_ws_conf {
    bool enabled;
    const char *path;            /* "/xmpp-websocket" */
    long long ping_interval;     /* ms between pings of an idle connection */
    const char *see_other_uri;   /* non-NULL: every stream is redirected there */
} http_ws_conf;

/* BOSH (XEP-0124, XEP-0206) on http listeners. */
typedef struct http_bosh_conf {
    bool enabled;
    const char *path;            /* "/http-bind" */
    long long max_wait;          /* ms a request may be held */
    long long max_inactivity;    /* ms without a request before the session ends */
    long long max_pause;         /* ms a client may pause for */
    long long max_requests;      /* simultaneous requests per session */
    long long max_body;          /* bytes of one request body */
} http_bosh_conf;

/* The HTTP side of the server (server/http). */
typedef struct http_conf {
    const char *external_url;    /* base URL clients reach us at; NULL: from the listeners */
    const char *default_host;    /* Host whose routes answer unknown Host headers; NULL: first */
    long long max_header_size;   /* bytes of request line and headers */
    long long idle_timeout;      /* ms a connection may sit between or within requests */
    long long requests_per_second; /* per client address, refilled continuously */
    long long burst;             /* requests a client may make at once */
    const char *const *cors_origins; /* origins allowed to use BOSH and host-meta */
    http_ws_conf websocket;
    http_bosh_conf bosh;
} http_conf;

/* Several nodes serving the same hosts (docs/cluster.md): Redis holds the
 * session registry and carries stanzas between nodes; storage is shared
 * (PostgreSQL). */
typedef struct cluster_conf {
    bool enabled;                 /* the configuration has a "cluster" object */
    const char *name;             /* the cluster's name: prefix of its Redis keys */
    const char *node;             /* this node's name; default: the host name */
    const char *const *redis;     /* Redis URIs (util/redis_uri.h), tried in turn */
    const char *secret;           /* shared by the nodes; never logged */
    long long heartbeat;          /* ms between heartbeats */
    long long node_timeout;       /* ms without a heartbeat before a node is dead */
    long long delivery_timeout;   /* ms before a frame its node did not take is bounced */
    long long queue_max;          /* frames a node's stream keeps (XADD MAXLEN ~) */
    const char *ca_file;          /* rediss://: trust anchors; NULL: the system's */
    const char *cert, *key;       /* rediss://: our client certificate, or NULL */
} cluster_conf;

typedef struct xmppd_config {
    const char *path;      /* the file, as given */
    const char *dir;       /* its folder, absolute: base of relative paths */
    const char *text;      /* the raw text */
    json_t *root;          /* the parsed document */
    struct strmap *lines;  /* dotted key -> line, for messages */

    log_conf log;
    const char *data_dir;  /* absolute; default XMPPD_DATA_DIR */
    const char *const *module_path_given;
    const char *const *module_path; /* absolute, NULL-terminated */
    const char *storage;   /* storage driver name */
    long long storage_timeout; /* ms: storage calls answered ERROR by then; 0: none */
    const json_t *control_socket_given;
    const char *control_socket; /* Unix socket for xmppctl, absolute; NULL: none */
    c2s_conf c2s;
    tls_conf tls;
    limits_conf limits;
    listener_conf *listeners;   /* with n_listeners: an xmppd_opt_array */
    size_t n_listeners;
    host_conf *hosts;           /* with n_hosts: an xmppd_opt_array */
    size_t n_hosts;
    s2s_conf s2s;
    http_conf http;
    component_conf *components; /* with n_components: an xmppd_opt_array */
    size_t n_components;
    cluster_conf cluster;
    const json_t *global_modules; /* object: module name -> options */
    const char *const *admins_given; /* server-wide administrators as configured */
    const json_t *groups_given;      /* access groups: name -> bare JIDs */
    const json_t *access_given;      /* server-wide access rules */
    struct access_table *access;     /* compiled (core/access.h): admins, groups, rules */
} xmppd_config;

struct opt_errors;
/* Loads and validates path (the kernel's keys; module options are checked
 * by the loader, which knows each module's table). NULL on any error, with
 * every error line added to errs. keep: return the configuration even
 * with errors (faulty keys at their defaults), so that `xmppctl check`
 * can go on and check the modules too; NULL then only when the file is
 * not JSON or cannot be read. */
xmppd_config *config_load(const char *path, bool keep, struct opt_errors *errs);
/* config_load without keep, its error lines joined with "\n" into err. */
xmppd_config *config_read(const char *path, char *err, size_t errlen);
void config_free(xmppd_config *cfg);

/* Line of the value at a dotted path ("hosts.localhost.modules.roster.max")
 * in the file's text; 0 if unknown. */
int config_line(const xmppd_config *cfg, const char *dotted_path);
/* config_lines.c: the line of every value of a JSON text, keyed by its
 * dotted path (Jansson keeps no positions; yajl's parser reports them).
 * A new map (strmap_free), or NULL on OOM or text that is not JSON. */
struct strmap *config_lines_build(const char *text, size_t len);
/* Blanks the comments of a configuration text in place (// to the end of
 * the line, and block comments), outside strings, keeping lines and
 * columns: the file is JSON with comments. */
void config_strip_comments(char *text, size_t len);
/* Resolve a possibly relative path against the config folder; malloc'd. */
char *config_abspath(const xmppd_config *cfg, const char *p);
/* The same against data_dir (state: databases, the control socket). */
char *config_datapath(const xmppd_config *cfg, const char *p);
/* The kernel's option table (the configuration's top-level keys), for
 * `xmppctl options` and the generated documentation. */
extern const xmppd_option config_options[];

#endif
