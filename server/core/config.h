/* Server configuration: one JSON file (Jansson), validated as a whole at
 * start. Every error is one line "FILE:LINE: KEY: message" so an operator
 * fixes it without guessing. The format is documented in docs/configuration.md
 * and shown whole in contrib/xmppd.example.json. */
#ifndef XMPPD_CONFIG_H
#define XMPPD_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum listener_type { LISTEN_C2S = 0, LISTEN_S2S, LISTEN_COMPONENT };
enum listener_tls { LISTEN_TLS_STARTTLS = 0, LISTEN_TLS_DIRECT };

typedef struct listener_conf {
    enum listener_type type;
    enum listener_tls tls;
    char *address; /* "::", "127.0.0.1", ... */
    int port;
} listener_conf;

typedef struct tls_conf {
    char *cert;        /* PEM chain path, absolute; NULL: none */
    char *key;         /* PEM key path, absolute */
    char *ciphers;     /* OpenSSL cipher list for TLS <= 1.2, NULL: default */
    int min_version;   /* TLS1_2_VERSION or TLS1_3_VERSION */
} tls_conf;

typedef struct limits_conf {
    size_t max_stanza_size;        /* bytes, default 256 KiB */
    unsigned max_depth;            /* element nesting, default 64 */
    uint64_t negotiation_timeout;  /* ms until a stream must be bound, default 30 s */
    unsigned connections_per_ip;   /* default 20 */
    unsigned auth_attempts;        /* failures per stream before it is closed, default 5 */
    uint64_t auth_failure_delay;   /* ms, doubled per failure of the stream, default 1 s */
    unsigned max_resources;        /* sessions per account, default 10 */
    size_t max_send_buffer;        /* bytes queued to a slow client before it is dropped, default 1 MiB */
} limits_conf;

typedef struct host_conf {
    char *name;       /* nameprepped */
    tls_conf tls;     /* inherits the global tls where not given */
    json_t *modules;  /* object: module name -> options object; merged with
                         the global non-global-module entries (false removes) */
} host_conf;

/* An external component (XEP-0114): a domain served by a process that
 * connects to a "component" listener and proves the shared secret. */
typedef struct component_conf {
    char *domain;     /* nameprepped; never one of the hosts */
    char *secret;     /* the shared secret: never logged or printed */
    bool subdomains;  /* also route every subdomain of domain to it */
} component_conf;

/* Server-to-server federation ("s2s"). */
enum s2s_auth { S2S_AUTH_BOTH = 0, S2S_AUTH_DIALBACK, S2S_AUTH_EXTERNAL };

typedef struct s2s_route_conf {
    char *domain;     /* nameprepped remote domain */
    char *host;       /* host name or IP literal to connect to */
    int port;
} s2s_route_conf;

typedef struct s2s_conf {
    bool require_encryption;    /* default true: no stream without TLS */
    enum s2s_auth authentication; /* which peer authentication is allowed */
    char *ca_file;              /* extra trust anchors (PEM), absolute; NULL: none */
    uint64_t idle_timeout;      /* ms without stanzas before a stream closes, default 5 min */
    uint64_t connect_timeout;   /* ms per connection attempt until authenticated, default 15 s */
    unsigned max_queue;         /* stanzas queued per remote domain while connecting, default 1000 */
    char *dialback_secret;      /* NULL: random per start; never logged */
    s2s_route_conf *routes;     /* static routes: domain -> host:port */
    size_t n_routes;
    char *dns_servers;          /* c-ares "ip[:port],..." list; NULL: the system's */
} s2s_conf;

typedef struct xmppd_config {
    char *path;            /* the file, as given */
    char *dir;             /* its folder, absolute: base of relative paths */
    json_t *root;          /* the parsed document (owned) */
    char *text;            /* the raw text, for line lookups (owned) */

    int log_level;         /* XMPPD_LOG_* */
    char *log_file;        /* NULL: stderr */
    char *data_dir;        /* absolute */
    char **module_path;    /* NULL-terminated, absolute */
    char *storage;         /* storage driver name, default "sqlite" */
    bool c2s_require_encryption; /* default true */
    char *control_socket;  /* Unix socket for xmppctl, absolute; NULL: none
                              (default DATA_DIR/xmppd.sock) */

    tls_conf tls;
    limits_conf limits;
    listener_conf *listeners;
    size_t n_listeners;
    host_conf *hosts;
    size_t n_hosts;
    s2s_conf s2s;          /* "s2s": federation */
    component_conf *components; /* "components": external components */
    size_t n_components;
    json_t *global_modules; /* object: module name -> options (borrowed from root) */
} xmppd_config;

/* Loads and validates path (structure and kernel keys; module options are
 * validated by the loader). NULL on error with a one-line message in err. */
xmppd_config *config_load(const char *path, char *err, size_t errlen);
void config_free(xmppd_config *cfg);

/* Line of the value at a dotted path ("hosts.localhost.modules.roster.max")
 * in the file's text; 0 if unknown. Used for error messages by the loader. */
int config_line(const xmppd_config *cfg, const char *dotted_path);
/* Resolve a possibly relative path against the config folder; malloc'd. */
char *config_abspath(const xmppd_config *cfg, const char *p);

#endif
