/* shared_roster: groups from SQL, a query on the site's own database
 * (PostgreSQL, through the pgpool library auth_sql and storage_pgsql use).
 *
 * The operator's query returns one row per membership: columns "group"
 * (the group's id) and "member" (a localpart, or a bare JID of the host),
 * optionally "name" (the group's display name: the first non-empty one
 * of its rows) and "contact_name" (the member's name in rosters). %d (or
 * %{domain}) is the host, bound as $1: nothing is pasted into SQL text.
 * The query is checked at load (prepared and described on a connection
 * made then, so a typo or a missing column stops the start) and run at
 * every refresh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared_roster.h"

/* Compiles text: %d and %{domain} become $1, %% a %; anything else after
 * a % is refused. malloc'd SQL, *uses_domain set; NULL with err. */
static char *sr_sql_compile(const char *text, bool *uses_domain, char *err, size_t errlen)
{
    size_t len = strlen(text);
    char *out = malloc(2 * len + 1), *o = out; /* "%d" (2) -> "$1" (2), "%{domain}" (9) -> "$1" */
    if (!out) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    *uses_domain = false;
    for (const char *p = text; *p; p++) {
        if (*p != '%') {
            *o++ = *p;
        } else if (p[1] == '%') {
            *o++ = '%';
            p++;
        } else if (p[1] == 'd' || strncmp(p + 1, "{domain}", 8) == 0) {
            *o++ = '$';
            *o++ = '1';
            p += p[1] == 'd' ? 1 : 8;
            *uses_domain = true;
        } else {
            snprintf(err, errlen, "option sql.query: unknown variable at \"%.12s\" (only %%d, %%{domain}, %%%%)", p);
            free(out);
            return NULL;
        }
    }
    *o = '\0';
    return out;
}

static const char *sr_sql_text(int i, char *buf, size_t len, void *ud)
{
    const sr_state *st = ud;
    (void)i;
    (void)buf;
    (void)len;
    return st->sql_text;
}

/* Prepares and describes the query on db: the columns it needs are there. */
static int sr_sql_check(PGconn *db, const sr_state *st, char *err, size_t errlen)
{
    PGresult *r = PQprepare(db, "", st->sql_text, st->sql_uses_domain ? 1 : 0, NULL);
    if (PQresultStatus(r) == PGRES_COMMAND_OK) {
        PQclear(r);
        r = PQdescribePrepared(db, "");
    }
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        snprintf(err, errlen, "option sql.query: %s", msg ? msg : PQerrorMessage(db));
        rc = -1;
    } else if (PQfnumber(r, "group") < 0 || PQfnumber(r, "member") < 0) {
        snprintf(err, errlen, "option sql.query: the query must return columns named \"group\" and \"member\"");
        rc = -1;
    }
    PQclear(r);
    return rc;
}

int sr_sql_open(sr_state *st, char *err, size_t errlen)
{
    const sr_sql_conf *c = &st->conf->sql;
    if (!c->connect)
        return 0;
    if (!c->query) {
        snprintf(err, errlen, "option sql.query is required with sql.connect");
        return -1;
    }
    if (!(st->sql_text = sr_sql_compile(c->query, &st->sql_uses_domain, err, errlen)))
        return -1;
    pgpool_conf pc = {
        .conninfo = c->connect, .application_name = "xmppd-shared-roster", .what = "group database",
        .size = 1, .connect_timeout_ms = (uint64_t)c->connect_timeout,
        .query_timeout_ms = (uint64_t)c->query_timeout, .reconnect_max_ms = (uint64_t)c->reconnect_max,
        .drain_ms = 0, /* unloading: a refresh in flight is dropped, the groups with it */
        .n_statements = 1, .stmt_prefix = "xmppd_sr_", .sql = sr_sql_text, .sql_ud = st,
    };
    PGconn *db = pgpool_connect_now(&pc, err, errlen);
    if (!db)
        return -1;
    int rc = sr_sql_check(db, st, err, errlen);
    PQfinish(db);
    if (rc == 0 && !(st->db = pgpool_open(st->m, &pc))) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    return rc;
}

void sr_sql_close(sr_state *st)
{
    pgpool_free(st->db);
    st->db = NULL;
    free(st->sql_text);
    st->sql_text = NULL;
}

/* A value fit for a roster: no control characters but tab and line ends
 * (PostgreSQL hands out text valid in its encoding, UTF-8 here). */
static const char *sr_cell(const PGresult *res, int row, int col)
{
    if (col < 0 || PQgetisnull(res, row, col))
        return NULL;
    const char *v = PQgetvalue(res, row, col);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r')
            return NULL;
    return *v ? v : NULL;
}

/* The bare JID of member (a localpart, or a bare JID of the host). */
static char *sr_member_jid(const sr_state *st, const char *member)
{
    if (!strchr(member, '@'))
        return sr_account_jid(st, member);
    xmppd_jid *j = xmppd_jid_parse(member);
    char *jid = j && j->node && !j->resource && strcmp(j->domain, st->domain) == 0 ? sr_account_jid(st, j->node)
                                                                                     : NULL;
    xmppd_jid_free(j);
    return jid;
}

static int sr_pair_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The rows as groups (and contact names) into out. 0, or -1 on OOM. */
static int sr_sql_rows(const sr_state *st, const PGresult *res, sr_lgroups *out, size_t *skipped)
{
    int n = PQntuples(res), cg = PQfnumber(res, "group"), cm = PQfnumber(res, "member"),
        cn = PQfnumber(res, "name"), cc = PQfnumber(res, "contact_name");
    if (!(out->names = calloc(2 * (size_t)n + 1, sizeof(*out->names))))
        return -1;
    for (int i = 0; i < n; i++) {
        const char *id = sr_cell(res, i, cg), *member = sr_cell(res, i, cm), *name = sr_cell(res, i, cn);
        char *jid = id && member ? sr_member_jid(st, member) : NULL;
        if (!jid) {
            ++*skipped;
            continue;
        }
        sr_lgroup *g = sr_lgroup_find(out, id);
        char *dup;
        if (!g && sr_lgroup_add(out, id, name) == 0) {
            g = &out->g[out->n - 1];
        } else if (g && name && strcmp(g->name, g->id) == 0 && (dup = strdup(name))) {
            free(g->name); /* the first name given wins */
            g->name = dup;
        }
        const char *contact = sr_cell(res, i, cc);
        int rc = g ? sr_lgroup_member(g, jid) : -1;
        if (rc == 0 && contact) {
            if (!(out->names[out->n_names] = strdup(jid)) || !(out->names[out->n_names + 1] = strdup(contact)))
                rc = -1;
            else
                out->n_names += 2;
        }
        free(jid);
        if (rc != 0)
            return -1;
    }
    qsort(out->names, out->n_names / 2, 2 * sizeof(*out->names), sr_pair_cmp);
    return 0;
}

static void sr_on_sql(int status, const PGresult *res, void *ud)
{
    sr_refresh *r = ud;
    sr_state *st = r->st;
    size_t skipped = 0;
    if (status == PGPOOL_CANCELLED) {
        r->cancelled = true;
    } else if (status != PGPOOL_OK) {
        const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        xmppd_log(st->m, XMPPD_LOG_WARN, "reading the SQL groups failed (%s): the last ones stay",
                  msg ? msg : "database unreachable or too slow");
    } else if (sr_sql_rows(st, res, &r->sql, &skipped) != 0) {
        xmppd_log(st->m, XMPPD_LOG_ERROR, "out of memory reading the SQL groups: the last ones stay");
    } else {
        r->sql_ok = true;
        if (skipped)
            xmppd_log(st->m, XMPPD_LOG_WARN, "%zu rows of the SQL groups name no group or no account of %s: "
                      "left out", skipped, st->domain);
    }
    sr_step_done(r);
}

void sr_sql_refresh(sr_refresh *r)
{
    sr_state *st = r->st;
    if (!st->db)
        return;
    const char *values[1] = { st->domain };
    pgpool_query q = { .stmt = 0, .shard = PGPOOL_ANY, .n_values = st->sql_uses_domain ? 1 : 0,
                       .values = values };
    r->pending++;
    if (pgpool_submit(st->db, &q, sr_on_sql, r) != 0) {
        r->pending--;
        xmppd_log(st->m, XMPPD_LOG_WARN, "cannot query the SQL groups now: the last ones stay");
    }
}
