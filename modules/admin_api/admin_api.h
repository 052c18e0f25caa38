/* mod_admin_api: shared declarations of its files. */
#ifndef ADMIN_API_H
#define ADMIN_API_H

#include <jansson.h>
#include <xmppd/xmppd.h>

typedef struct api_token {
    const char *name; /* MAP key */
    const char *token;  /* in clear, or */
    const char *sha256; /* the hex SHA-256 of the token */
    const char *expires; /* date or UTC time; NULL: never */
    const char *const *hosts;    /* NULL: every host (and the server-wide commands) */
    const char *const *commands; /* NULL: every command */
} api_token;

typedef struct api_conf {
    const char *path;
    bool loopback_only;
    xmppd_opt_array tokens; /* api_token */
    long long login_lifetime; /* ms */
    long long recent_calls;   /* entries of the audit ring */
} api_conf;

/* What the configuration's tokens become at load (same order). */
typedef struct api_key {
    unsigned char hash[32]; /* sha256 tokens */
    int64_t expires;        /* Unix time; 0: never */
} api_key;

typedef struct api_login api_login; /* api_login.c */
typedef struct api_audit api_audit; /* api_audit.c */

typedef struct api_state {
    xmppd_module *m;
    api_key *keys;
    struct api_call *calls; /* requests in flight, freed at unload if still there */
    api_login *logins;      /* login sessions, newest first */
    api_audit *ring;        /* the latest calls (ring_size entries, ring_used of them set) */
    size_t ring_size, ring_used, ring_next;
} api_state;

/* One request. The HTTP request may end first (the client went away, the
 * module unloads: req NULL); the callbacks still due then free it. */
typedef struct api_call {
    api_state *st;
    xmppd_http_request *req; /* NULL once answered or cancelled */
    const struct api_cmd *cmd;
    json_t *args;            /* the request's JSON object */
    xmppd_jid *admin;        /* Basic: the administrator; NULL with a token */
    const api_token *token;
    const char *login_token; /* the login token presented (borrowed from req; only while
                                the handler runs: logout) */
    bool bearer;             /* a Bearer or login request: 401 challenges Bearer only */
    char *ip;
    int waiting;             /* callbacks due */
    xmppd_host *host;        /* the host the command is about (api_host) */
    char *user;              /* its account (api_account) */
    json_t *(*ctl_fn)(struct api_call *c, const json_t *resp); /* api_ctl's */
    const char *ctl_name;
    json_t *ctl_req;
    struct api_call *next;
} api_call;

/* One argument of a command: a string field of the request object, or
 * (list) an array of strings. */
typedef struct api_arg {
    const char *name;
    bool required; /* checked before the command runs (400 naming it) */
    const char *doc;
    bool list;     /* an array of strings (never required) */
} api_arg;

/* One command: POST PATH/NAME with a JSON object. The table is also the
 * API's OpenAPI document (GET PATH/openapi.json, api_openapi.c). */
typedef struct api_cmd {
    const char *name;
    const char *summary;
    const api_arg *args; /* ends with a NULL name; NULL: none */
    const char *answer;  /* what 200 carries */
    /* "host": the command is about the host its arguments name (a "host"
     * field, or user@host of "from"); NULL: server-wide. */
    bool per_host;
    void (*run)(api_call *c);
    unsigned flags; /* API_OPEN, API_SELF */
} api_cmd;

#define API_OPEN 0x1u /* no credentials: the command checks its own (login) */
#define API_SELF 0x2u /* any caller with credentials, about itself (logout) */

extern const api_cmd api_commands[];

/* api_tokens.c: checks the tokens at load (refusing bad ones: return
 * value of xmppd_module_refuse), finds the one presented (NULL: none;
 * *expired_r set), registers `xmppctl token`. */
int api_tokens_load(api_state *st, const api_conf *conf);
/* The checks of the tokens (keys NULL: `xmppctl check`, the module
 * descriptor's check), or with keys (conf->tokens.n of them) filled. 0,
 * or -1 with a line in err. */
int api_tokens_check(const api_conf *conf, api_key *keys, char *err, size_t errlen);
const api_token *api_token_find(const api_state *st, const char *presented, bool *expired_r);
int api_tokens_command(api_state *st);

/* api_login.c: the login sessions (tokens that stand for an
 * administrator); the administrator of a presented token (borrowed), or
 * NULL. */
const xmppd_jid *api_login_find(api_state *st, const char *presented);
void api_logins_free(api_state *st);
/* Ends the login tokens of user@host (its account goes or its password
 * changes). */
void api_logins_revoke(api_state *st, const char *user, const char *host);
void api_cmd_login(api_call *c);
void api_cmd_logout(api_call *c);

/* api_audit.c: the ring of the latest calls (-1 on OOM). */
int api_audit_init(api_state *st, long long n);
void api_audit_add(api_state *st, const char *command, const char *caller, const char *ip,
                   int status);
void api_audit_free(api_state *st);
void api_cmd_audit_log(api_call *c);

/* api_metrics.c */
void api_cmd_metrics(api_call *c);

/* api_openapi.c: the OpenAPI 3.0 document of api_commands, for the
 * commands under path (new reference; NULL on OOM). */
json_t *api_openapi(const char *path);

/* admin_api.c */
/* Answers c with 200 and result (consumed; a JSON value), or an error
 * {"status": "error", "code": status, "message": ...}. The call is freed
 * when nothing else is due. */
void api_ok(api_call *c, json_t *result);
void api_fail(api_call *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A callback of c came: false when c's request ended meanwhile (c is then
 * freed if nothing else is due: forget it). */
bool api_back(api_call *c);
/* A string argument, or NULL after answering 400. */
const char *api_str(api_call *c, const char *key);
/* The host and account of the arguments "user" and "host" (c->host,
 * c->user), or -1 after answering. */
int api_account(api_call *c);
/* The same with other argument names (add_rosteritem's "localuser" and
 * "localhost"). */
int api_account_named(api_call *c, const char *user_key, const char *host_key);
/* May the caller act on host h (NULL: server-wide)? */
bool api_may(const api_call *c, const xmppd_host *h);
/* Runs control command name with req (consumed) and answers with what
 * fn makes of its answer (fn NULL: the answer without "ok"). */
void api_ctl(api_call *c, const char *name, json_t *req, json_t *(*fn)(api_call *c, const json_t *resp));

#endif
