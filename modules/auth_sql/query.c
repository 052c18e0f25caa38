/* auth_sql: compiling operator queries into parameterised statements, and
 * checking them against the database at load. They run through the
 * asynchronous pool of modules/pgpool. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "query.h"

/* ---- compiling ---- */

static const struct {
    const char *name;
    enum aq_var var;
} aq_var_names[] = {
    { "localpart", AQ_LOCALPART }, { "username", AQ_LOCALPART }, { "domain", AQ_DOMAIN },
    { "user", AQ_USER }, { "password_hash", AQ_PASSWORD_HASH }, { "scram_sha1", AQ_SCRAM_SHA1 },
    { "scram_sha256", AQ_SCRAM_SHA256 }, { "scram_sha512", AQ_SCRAM_SHA512 },
};

/* Variables of the design that this module never binds. */
static const char *const aq_unavailable[] = { "password", "remote_ip", "mechanism", NULL };

static const char *aq_var_name(enum aq_var v)
{
    for (size_t i = 0; i < sizeof aq_var_names / sizeof aq_var_names[0]; i++)
        if (aq_var_names[i].var == v)
            return aq_var_names[i].name;
    return "?";
}

typedef struct aq_buf {
    char *p;
    size_t len, cap;
} aq_buf;

static int aq_put(aq_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int aq_compile(const char *text, unsigned allowed, aq_query *q, bool *quoted_r, char *err, size_t errlen)
{
    aq_buf b = { 0 };
    int slot[AQ_VAR_COUNT];
    memset(q, 0, sizeof *q);
    q->stmt = -1;
    for (int i = 0; i < AQ_VAR_COUNT; i++)
        slot[i] = 0;
    if (quoted_r)
        *quoted_r = false;
    if (aq_put(&b, "", 0) != 0)
        goto oom;
    for (const char *s = text; *s;) {
        if (*s == '$' && isdigit((unsigned char)s[1])) {
            snprintf(err, errlen, "write variables (%%n, %%d, %%u, %%{name}), not $%c parameters", s[1]);
            goto fail;
        }
        if (*s != '%') {
            if (aq_put(&b, s, 1) != 0)
                goto oom;
            s++;
            continue;
        }
        enum aq_var var;
        const char *next;
        if (s[1] == '%') {
            if (aq_put(&b, "%", 1) != 0)
                goto oom;
            s += 2;
            continue;
        } else if (s[1] == 'n') {
            var = AQ_LOCALPART;
            next = s + 2;
        } else if (s[1] == 'd') {
            var = AQ_DOMAIN;
            next = s + 2;
        } else if (s[1] == 'u') {
            var = AQ_USER;
            next = s + 2;
        } else if (s[1] == '{') {
            const char *end = strchr(s + 2, '}');
            size_t n = end ? (size_t)(end - s - 2) : 0;
            bool found = false;
            for (size_t i = 0; end && i < sizeof aq_var_names / sizeof aq_var_names[0]; i++) {
                if (strlen(aq_var_names[i].name) == n && strncmp(aq_var_names[i].name, s + 2, n) == 0) {
                    var = aq_var_names[i].var;
                    found = true;
                    break;
                }
            }
            if (!found) {
                for (size_t i = 0; end && aq_unavailable[i]; i++) {
                    if (strlen(aq_unavailable[i]) == n && strncmp(aq_unavailable[i], s + 2, n) == 0) {
                        snprintf(err, errlen, "%%{%s} is not available to auth_sql queries", aq_unavailable[i]);
                        goto fail;
                    }
                }
                snprintf(err, errlen, "unknown variable %%{%.*s}", end ? (int)n : 20, s + 2);
                goto fail;
            }
            next = end + 1;
        } else {
            snprintf(err, errlen, "unknown variable %%%c (write %%%% for a literal %%)", s[1] ? s[1] : ' ');
            goto fail;
        }
        if (!(allowed & AQ_BIT(var))) {
            snprintf(err, errlen, "variable %%{%s} cannot be used in this query", aq_var_name(var));
            goto fail;
        }
        if (!slot[var]) {
            if (q->n_params == AQ_MAX_PARAMS) {
                snprintf(err, errlen, "too many variables");
                goto fail;
            }
            q->params[q->n_params++] = var;
            slot[var] = q->n_params;
            q->used |= AQ_BIT(var);
        }
        /* '%n' in quotes: the quotes would make it a literal "$1" */
        if (b.len > 0 && b.p[b.len - 1] == '\'' && *next == '\'') {
            b.p[--b.len] = '\0';
            next++;
            if (quoted_r)
                *quoted_r = true;
        }
        char num[16];
        snprintf(num, sizeof num, "$%d", slot[var]);
        if (aq_put(&b, num, strlen(num)) != 0)
            goto oom;
        s = next;
    }
    q->sql = b.p;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    free(b.p);
    memset(q, 0, sizeof *q);
    return -1;
}

void aq_free(aq_query *q)
{
    free(q->sql);
    memset(q, 0, sizeof *q);
}

/* ---- checking at load ---- */

void aq_names_free(char **names)
{
    for (size_t i = 0; names && names[i]; i++)
        free(names[i]);
    free(names);
}

/* The database's own message for a failed result, without "ERROR:  ". */
static const char *aq_result_msg(const PGresult *r)
{
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!m || !*m)
        m = r ? PQresultErrorMessage(r) : "";
    return m && *m ? m : "unknown error";
}

/* r failed: its message into err, naming the option. -1. */
static int aq_refused(PGresult *r, const char *option, char *err, size_t errlen)
{
    const char *msg = aq_result_msg(r);
    snprintf(err, errlen, "option %s: %.*s", option, (int)strcspn(msg, "\n"), msg);
    PQclear(r);
    return -1;
}

int aq_check(PGconn *pc, const aq_query *q, const char *option, char ***cols_r, char *err, size_t errlen)
{
    PGresult *r = PQprepare(pc, "", q->sql, q->n_params, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        return aq_refused(r, option, err, errlen);
    PQclear(r);
    r = PQdescribePrepared(pc, "");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        return aq_refused(r, option, err, errlen);
    int n = PQnfields(r);
    char **cols = calloc((size_t)n + 1, sizeof *cols);
    for (int i = 0; cols && i < n; i++) {
        if (!(cols[i] = strdup(PQfname(r, i)))) {
            aq_names_free(cols);
            cols = NULL;
        }
    }
    PQclear(r);
    if (!cols) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *cols_r = cols;
    return 0;
}
