/* auth_sql: operator queries compiled to parameterised statements (run
 * through the pgpool library). Nothing a user sends is ever pasted into
 * SQL text: every variable becomes a bound $N. */
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
    int stmt;                        /* statement number in the pool */
} aq_query;

/* Compiles operator text into q. allowed: AQ_BIT mask of the variables this
 * query may use. 0, or -1 with a one-line reason in err. *quoted_r is set
 * when a variable was written in quotes ('%n'), which is accepted (the
 * quotes are dropped). */
int aq_compile(const char *text, unsigned allowed, aq_query *q, bool *quoted_r, char *err, size_t errlen);
void aq_free(aq_query *q);

/* Checks q on pc (a blocking connection, at load): prepares it unnamed
 * and describes it, so that a typo stops the start with the database's own
 * message. *cols_r receives the names of its columns (a malloc'd
 * NULL-terminated array, for aq_names_free). 0, or -1 with a one-line
 * reason naming the option in err. */
int aq_check(PGconn *pc, const aq_query *q, const char *option, char ***cols_r, char *err, size_t errlen);
void aq_names_free(char **names);

#endif
