/* auth_sql: operator queries compiled to parameterised statements, and an
 * asynchronous PostgreSQL client (libpq driven by the event loop) that runs
 * them. Nothing a user sends is ever pasted into SQL text: every variable
 * becomes a bound $N. */
#ifndef AUTH_SQL_QUERY_H
#define AUTH_SQL_QUERY_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include "xmppd/xmppd.h"

/* Variables an operator query may use. */
enum aq_var {
    AQ_LOCALPART,     /* %n, %{localpart}, %{username}: the nodeprepped localpart */
    AQ_DOMAIN,        /* %d, %{domain}: the host */
    AQ_USER,          /* %u, %{user}: localpart@domain */
    AQ_PASSWORD_HASH, /* %{password_hash}: create / set password */
    AQ_SCRAM_SHA1,    /* %{scram_sha1}: "iter,salt,StoredKey,ServerKey" */
    AQ_SCRAM_SHA256,
    AQ_SCRAM_SHA512,
    AQ_VAR_COUNT
};
#define AQ_BIT(v) (1u << (v))
#define AQ_IDENT (AQ_BIT(AQ_LOCALPART) | AQ_BIT(AQ_DOMAIN) | AQ_BIT(AQ_USER))
#define AQ_SCRAM_VARS (AQ_BIT(AQ_SCRAM_SHA1) | AQ_BIT(AQ_SCRAM_SHA256) | AQ_BIT(AQ_SCRAM_SHA512))
#define AQ_MAX_PARAMS 16

typedef struct aq_query {
    char *sql;                       /* owned; NULL: the query is not configured */
    int n_params;
    enum aq_var params[AQ_MAX_PARAMS]; /* what $i+1 is */
    unsigned used;                   /* AQ_BIT of every variable used */
    int stmt;                        /* id in the client */
} aq_query;

/* Compiles operator text into q. allowed: AQ_BIT mask of the variables this
 * query may use. 0, or -1 with a one-line reason in err. *quoted_r is set
 * when a variable was written in quotes ('%n'), which is accepted (the
 * quotes are dropped). */
int aq_compile(const char *text, unsigned allowed, aq_query *q, bool *quoted_r, char *err, size_t errlen);
void aq_free(aq_query *q);

/* ---- the client ---- */

typedef struct aq_client aq_client;
/* res: the query's result (borrowed for the call) or NULL when it failed;
 * sqlstate: the error's SQLSTATE ("" when unknown) when res is NULL. */
typedef void (*aq_cb)(const PGresult *res, const char *sqlstate, void *ud);

typedef struct aq_client_conf {
    const char *conninfo;
    int pool_size;
    long long connect_timeout_ms, query_timeout_ms, reconnect_max_ms;
} aq_client_conf;

/* Connects once (blocking, at load) to check every query: each is prepared
 * and described; cols_r[i] receives the column names of queries[i] (a
 * malloc'd NULL-terminated array, for the caller to free with
 * aq_names_free). Then starts the pool asynchronously. NULL with a
 * one-line reason in err. */
aq_client *aq_client_open(xmppd_module *m, const aq_client_conf *conf, aq_query *const *queries,
                          const char *const *names, size_t n, char ***cols_r, char *err, size_t errlen);
void aq_names_free(char **names);
/* Runs q with values[i] for $i+1 (borrowed; copied). cb runs exactly once,
 * later, on the loop thread - unless the client closes first. */
void aq_exec(aq_client *c, const aq_query *q, const char *const *values, aq_cb cb, void *ud);
/* Closes the pool; callbacks not yet run are dropped. */
void aq_client_close(aq_client *c);

#endif
