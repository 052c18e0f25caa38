/* auth_ldap: requests on the connection pool (ldap_pool.h): queues,
 * sending, results, paging, timeouts. */
#define _GNU_SOURCE /* dladdr, RTLD_NODELETE */
#include <dlfcn.h>
#include <openldap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ldap_pool_int.h"
#include "ldap_tls.h"

#define LP_MAX_IN_FLIGHT 64 /* searches at a time on one connection */
#define LP_TICK_MS 200      /* deadlines and retries are checked this often */

/* ---- lists ---- */

static void lp_list_push(lp_list *l, lp_req *r, bool front)
{
    r->prev = r->next = NULL;
    if (!l->head) {
        l->head = l->tail = r;
    } else if (front) {
        r->next = l->head;
        l->head->prev = r;
        l->head = r;
    } else {
        r->prev = l->tail;
        l->tail->next = r;
        l->tail = r;
    }
    l->n++;
}

static void lp_list_remove(lp_list *l, lp_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    l->n--;
}

static lp_list *lp_queue_of(lp_pool *p, const lp_req *r)
{
    return r->is_bind ? &p->bind_q : &p->search_q;
}

/* The list r is in: its connection's, or its queue. */
static lp_list *lp_list_of(lp_req *r)
{
    return r->conn ? &r->conn->ops : lp_queue_of(r->pool, r);
}

/* ---- requests ---- */

static void lp_entries_free(lp_req *r)
{
    for (size_t i = 0; i < r->n; i++) {
        directory_entry *e = &r->entries[i];
        for (size_t a = 0; a < e->n; a++) {
            directory_attr *at = (directory_attr *)&e->attrs[a];
            for (size_t v = 0; v < at->n; v++)
                free((char *)at->vals[v].val);
            free((directory_value *)at->vals);
            free((char *)at->name);
        }
        free((directory_attr *)e->attrs);
        free((char *)e->dn);
    }
    free(r->entries);
    r->entries = NULL;
    r->n = r->cap = 0;
}

static void lp_cookie_clear(lp_req *r)
{
    if (r->cookie) {
        ber_bvfree(r->cookie);
        r->cookie = NULL;
    }
}

static void lp_req_free(lp_req *r)
{
    if (r->password) {
        xmppd_wipe(r->password, strlen(r->password));
        free(r->password);
    }
    lp_entries_free(r);
    lp_cookie_clear(r);
    for (char **a = r->attrs; a && *a; a++)
        free(*a);
    free(r->attrs);
    free(r->base);
    free(r->filter);
    free(r->dn);
    free(r->diag);
    free(r);
}

/* A copy of attrs; NULL for none (NULL or empty: "1.1" is asked, no
 * attributes, rather than libldap's "all of them"). */
static char **lp_attrs_dup(const char *const *attrs, bool *ok)
{
    size_t n = 0;
    while (attrs && attrs[n])
        n++;
    *ok = true;
    if (n == 0)
        return NULL;
    char **out = calloc(n + 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++)
        if (!(out[i] = strdup(attrs[i]))) {
            *ok = false;
            break;
        }
    if (!out)
        *ok = false;
    return out;
}

/* Takes r out of its list and runs its callback (unless cancelled) with
 * code, then frees it. */
static void lp_finish(lp_req *r, int code)
{
    lc_conn *c = r->conn;
    lp_list_remove(lp_list_of(r), r);
    r->conn = NULL;
    if (r->cb) {
        lp_result res = { code, r->entries, r->n, r->diag ? r->diag : "" };
        if (r->overflow && code == LDAP_SUCCESS)
            res.code = LDAP_SIZELIMIT_EXCEEDED;
        r->cb(&res, r->ud);
    }
    lp_req_free(r);
    if (c && c->binds)
        lp_kick(c->pool); /* the connection is free for the next bind */
}

/* ---- entries ---- */

static bool lp_copy_value(directory_value *v, const struct berval *bv)
{
    char *s = malloc(bv->bv_len + 1);
    if (!s)
        return false;
    memcpy(s, bv->bv_val, bv->bv_len);
    s[bv->bv_len] = '\0';
    v->val = s;
    v->len = bv->bv_len;
    return true;
}

static bool lp_copy_attr(LDAP *ld, LDAPMessage *msg, const char *name, directory_attr *at)
{
    struct berval **vals = ldap_get_values_len(ld, msg, name);
    size_t n = vals ? (size_t)ldap_count_values_len(vals) : 0;
    directory_value *out = calloc(n ? n : 1, sizeof *out);
    bool ok = out && (at->name = strdup(name));
    size_t k = 0;
    for (; ok && k < n; k++)
        ok = lp_copy_value(&out[k], vals[k]);
    ldap_value_free_len(vals);
    at->vals = out;
    at->n = k;
    return ok;
}

/* Appends the entry msg to r's result; false on OOM. */
static bool lp_add_entry(lp_req *r, LDAP *ld, LDAPMessage *msg)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4;
        directory_entry *ne = realloc(r->entries, cap * sizeof *ne);
        if (!ne)
            return false;
        r->entries = ne;
        r->cap = cap;
    }
    directory_entry *e = &r->entries[r->n];
    memset(e, 0, sizeof *e);
    r->n++; /* freed with the others from here on */
    char *dn = ldap_get_dn(ld, msg);
    e->dn = dn ? strdup(dn) : strdup("");
    ldap_memfree(dn);
    if (!e->dn)
        return false;
    BerElement *ber = NULL;
    size_t cap = 0;
    bool ok = true;
    for (char *a = ldap_first_attribute(ld, msg, &ber); a; a = ldap_next_attribute(ld, msg, ber)) {
        if (ok && e->n == cap) {
            cap = cap ? cap * 2 : 8;
            directory_attr *na = realloc((directory_attr *)e->attrs, cap * sizeof *na);
            if (na)
                e->attrs = na;
            else
                ok = false;
        }
        if (ok) {
            directory_attr *at = (directory_attr *)&e->attrs[e->n];
            memset(at, 0, sizeof *at);
            e->n++;
            ok = lp_copy_attr(ld, msg, a, at);
        }
        ldap_memfree(a);
    }
    ber_free(ber, 0);
    return ok;
}

/* ---- sending ---- */

static size_t lp_cap_of(const lp_req *r)
{
    return r->limit ? r->limit : (size_t)r->pool->conf->max_entries;
}

/* Sends r (or its next step: the entry read after a bind, the next page)
 * on c. An LDAP client code when it could not be sent. */
static int lp_send(lc_conn *c, lp_req *r)
{
    const lp_conf *conf = c->pool->conf;
    int rc;
    r->deadline = xmppd_now_ms() + (uint64_t)conf->timeout_ms;
    r->sent_at = xmppd_now_ms();
    if (r->is_bind && !r->reading) {
        struct berval cred = { strlen(r->password), r->password };
        rc = ldap_sasl_bind(c->ld, r->dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, &r->msgid);
    } else if (r->is_bind) {
        rc = ldap_search_ext(c->ld, r->dn, LDAP_SCOPE_BASE, "(objectClass=*)", r->attrs, 0, NULL, NULL, NULL,
                             1, &r->msgid);
    } else {
        LDAPControl *page = NULL;
        if (!r->limit && ldap_create_page_control(c->ld, conf->page_size, r->cookie, 0, &page) != LDAP_SUCCESS)
            return LDAP_NO_MEMORY;
        LDAPControl *ctrls[2] = { page, NULL };
        rc = ldap_search_ext(c->ld, r->base, r->scope, r->filter, r->attrs ? r->attrs : (char *[]){ "1.1", NULL },
                             0, page ? ctrls : NULL, NULL, NULL, r->limit ? (int)r->limit + 1 : 0, &r->msgid);
        ldap_control_free(page);
    }
    return rc;
}

/* The ready connection to take a request of this kind, or NULL. */
static lc_conn *lp_pick(lp_pool *p, bool binds)
{
    lc_conn *best = NULL;
    for (int i = 0; i < p->n_conns; i++) {
        lc_conn *c = &p->conns[i];
        if (c->binds != binds || c->state != LC_READY)
            continue;
        if (binds ? c->ops.n > 0 : c->ops.n >= LP_MAX_IN_FLIGHT)
            continue;
        if (!best || c->ops.n < best->ops.n)
            best = c;
    }
    return best;
}

static bool lp_any_ready(const lp_pool *p, bool binds)
{
    for (int i = 0; i < p->n_conns; i++)
        if (p->conns[i].binds == binds && p->conns[i].state == LC_READY)
            return true;
    return false;
}

static void lp_dispatch_queue(lp_pool *p, lp_list *q, bool binds)
{
    lc_conn *c;
    while (q->head && (c = lp_pick(p, binds))) {
        lp_req *r = q->head;
        lp_list_remove(q, r);
        r->conn = c;
        lp_list_push(&c->ops, r, false);
        int rc = lp_send(c, r);
        if (rc == LDAP_SUCCESS)
            continue;
        lp_list_remove(&c->ops, r);
        r->conn = NULL;
        lp_list_push(q, r, true);
        if (rc == LDAP_BUSY)
            return; /* a write is still pending: the tick flushes it, then retries */
        if (rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR) {
            lc_fail(c, "%s", ldap_err2string(rc));
            continue;
        }
        lp_finish(r, rc); /* refused by libldap itself (bad filter, OOM) */
    }
    /* Nothing reachable: say so now rather than at the deadline. */
    if (p->unreachable && !lp_any_ready(p, binds))
        while (q->head)
            lp_finish(q->head, LDAP_SERVER_DOWN);
}

static void lp_dispatch(lp_pool *p)
{
    lp_dispatch_queue(p, &p->search_q, false);
    lp_dispatch_queue(p, &p->bind_q, true);
}

static uint64_t lp_on_kick(void *ud)
{
    lp_pool *p = ud;
    p->kick = NULL;
    lp_dispatch(p);
    return 0;
}

void lp_kick(lp_pool *p)
{
    if (!p->kick && !p->closing)
        p->kick = xmppd_timer_add(p->m, 0, lp_on_kick, p);
}

/* ---- results ---- */

/* The end of a search: the next page, or the answer. */
static void lp_search_done(lc_conn *c, lp_req *r, LDAPMessage *msg)
{
    int code = LDAP_OTHER;
    char *diag = NULL;
    LDAPControl **ctrls = NULL;
    ldap_parse_result(c->ld, msg, &code, NULL, &diag, NULL, &ctrls, 0);
    free(r->diag);
    r->diag = diag ? strdup(diag) : NULL;
    ldap_memfree(diag);
    struct berval cookie = { 0, NULL };
    LDAPControl *pc = ctrls ? ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, ctrls, NULL) : NULL;
    ber_int_t count = 0;
    if (pc && ldap_parse_pageresponse_control(c->ld, pc, &count, &cookie) != LDAP_SUCCESS)
        cookie.bv_len = 0;
    ldap_controls_free(ctrls);
    lp_cookie_clear(r);
    bool more = code == LDAP_SUCCESS && !r->limit && !r->overflow && cookie.bv_len > 0;
    if (more && !(r->cookie = ber_bvdup(&cookie)))
        code = LDAP_NO_MEMORY;
    ber_memfree(cookie.bv_val);
    if (code == LDAP_SUCCESS && more) {
        int rc = lp_send(c, r);
        if (rc != LDAP_SUCCESS)
            lp_finish(r, rc);
        return;
    }
    lp_finish(r, code);
}

static void lp_bind_done(lc_conn *c, lp_req *r, LDAPMessage *msg)
{
    int code = LDAP_OTHER;
    char *diag = NULL;
    ldap_parse_result(c->ld, msg, &code, NULL, &diag, NULL, NULL, 0);
    free(r->diag);
    r->diag = diag ? strdup(diag) : NULL;
    ldap_memfree(diag);
    if (code == LDAP_SUCCESS && r->attrs) {
        r->reading = true;
        int rc = lp_send(c, r);
        if (rc != LDAP_SUCCESS)
            lp_finish(r, rc);
        return;
    }
    lp_finish(r, code);
}

void lp_on_message(lc_conn *c, LDAPMessage *msg)
{
    int id = ldap_msgid(msg);
    lp_req *r = c->ops.head;
    while (r && r->msgid != id)
        r = r->next;
    if (!r) { /* abandoned, or a notice of disconnection (its connection fails next) */
        ldap_msgfree(msg);
        return;
    }
    switch (ldap_msgtype(msg)) {
    case LDAP_RES_SEARCH_ENTRY:
        if (r->n >= lp_cap_of(r))
            r->overflow = true;
        else if (!lp_add_entry(r, c->ld, msg))
            r->overflow = true; /* out of memory: reported as too many */
        break;
    case LDAP_RES_SEARCH_RESULT:
        lp_search_done(c, r, msg);
        break;
    case LDAP_RES_BIND:
        lp_bind_done(c, r, msg);
        break;
    default: /* continuation references: referrals are not followed */
        break;
    }
    ldap_msgfree(msg);
}

/* ---- connection events ---- */

void lp_on_ready(lc_conn *c)
{
    c->pool->unreachable = false;
    lp_dispatch(c->pool);
}

void lp_on_down(lc_conn *c)
{
    lp_pool *p = c->pool;
    while (c->ops.head) {
        lp_req *r = c->ops.head;
        if (r->retried || !r->cb) {
            lp_finish(r, LDAP_SERVER_DOWN);
            continue;
        }
        /* once more from the start, on another connection */
        lp_list_remove(&c->ops, r);
        r->conn = NULL;
        r->retried = true;
        r->reading = r->overflow = false;
        lp_entries_free(r);
        lp_cookie_clear(r);
        lp_list_push(lp_queue_of(p, r), r, true);
    }
    lp_kick(p);
}

void lp_on_round_failed(lc_conn *c)
{
    lp_pool *p = c->pool;
    for (int i = 0; i < p->n_conns; i++)
        if (p->conns[i].state == LC_READY)
            return;
    if (!p->unreachable)
        xmppd_log(p->m, XMPPD_LOG_WARN, "no directory server reachable (%zu URI%s tried; last: %s): "
                  "requests fail until one answers", p->n_uris, p->n_uris == 1 ? "" : "s", c->why);
    p->unreachable = true;
    lp_kick(p);
}

/* ---- timeouts ---- */

/* The first request of l past its deadline, or NULL. */
static lp_req *lp_expired(const lp_list *l, uint64_t now)
{
    for (lp_req *r = l->head; r; r = r->next)
        if (now >= r->deadline)
            return r;
    return NULL;
}

static void lp_expire_conn(lc_conn *c, uint64_t now)
{
    lp_req *r;
    while (c->state == LC_READY && (r = lp_expired(&c->ops, now))) {
        bool silent = c->last_rx < r->sent_at; /* nothing came since it was sent */
        bool was_bind = r->is_bind && !r->reading;
        if (!was_bind && !silent)
            ldap_abandon_ext(c->ld, r->msgid, NULL, NULL);
        lp_finish(r, LDAP_TIMEOUT);
        /* A bind cannot be abandoned; a silent server is gone or stuck. */
        if (was_bind || silent)
            lc_fail(c, "no answer within %lld ms (timeout)", c->pool->conf->timeout_ms);
    }
}

static uint64_t lp_on_tick(void *ud)
{
    lp_pool *p = ud;
    uint64_t now = xmppd_now_ms();
    for (int i = 0; i < p->n_conns; i++) {
        lc_tick(&p->conns[i], now);
        lp_expire_conn(&p->conns[i], now);
    }
    lp_req *r;
    while ((r = lp_expired(&p->search_q, now)) || (r = lp_expired(&p->bind_q, now)))
        lp_finish(r, LDAP_TIMEOUT);
    lp_dispatch(p);
    return LP_TICK_MS;
}

/* ---- the pool ---- */

static int lp_parse_uri(const char *text, lp_uri *u, char *err, size_t errlen)
{
    LDAPURLDesc *lud = NULL;
    int rc = ldap_url_parse(text, &lud);
    if (rc != LDAP_URL_SUCCESS) {
        snprintf(err, errlen, "option uris: \"%s\" is not an LDAP URI (RFC 4516)", text);
        return -1;
    }
    bool ldaps = strcasecmp(lud->lud_scheme, "ldaps") == 0;
    if (!ldaps && strcasecmp(lud->lud_scheme, "ldap") != 0) {
        snprintf(err, errlen, "option uris: \"%s\": only ldap:// and ldaps:// are supported", text);
        ldap_free_urldesc(lud);
        return -1;
    }
    const char *host = lud->lud_host && *lud->lud_host ? lud->lud_host : "localhost";
    u->text = strdup(text);
    u->host = strdup(host);
    u->port = lud->lud_port ? lud->lud_port : ldaps ? LDAPS_PORT : LDAP_PORT;
    u->ldaps = ldaps;
    ldap_free_urldesc(lud);
    if (!u->text || !u->host) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static bool lp_loopback(const char *host)
{
    return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0;
}

static void lp_free(lp_pool *p)
{
    for (size_t i = 0; i < p->n_uris; i++) {
        free(p->uris[i].text);
        free(p->uris[i].host);
    }
    free(p->uris);
    free(p->conns);
    if (p->tls)
        SSL_CTX_free(p->tls);
    free(p);
}

/* libldap and liblber keep process-wide state they never free (global
 * options read once from ldap.conf, thread keys): they must stay mapped
 * when this module is unloaded, and be the same when it loads again. */
static void lp_pin_libraries(void)
{
    void *fns[] = { (void *)ldap_init_fd, (void *)ber_sockbuf_add_io };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        Dl_info info;
        if (dladdr(fns[i], &info) && info.dli_fname)
            dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    }
}

lp_pool *lp_open(xmppd_module *m, const lp_conf *conf, char *err, size_t errlen)
{
    lp_pool *p = calloc(1, sizeof *p);
    size_t n = 0;
    while (conf->uris && conf->uris[n])
        n++;
    if (!p || n == 0) {
        snprintf(err, errlen, p ? "option uris: no server given" : "out of memory");
        free(p);
        return NULL;
    }
    lp_pin_libraries();
    p->m = m;
    p->conf = conf;
    p->uris = calloc(n, sizeof *p->uris);
    p->n_conns = conf->search_connections + conf->bind_connections;
    p->conns = calloc((size_t)p->n_conns, sizeof *p->conns);
    if (!p->uris || !p->conns) {
        snprintf(err, errlen, "out of memory");
        lp_free(p);
        return NULL;
    }
    bool tls = conf->starttls;
    for (size_t i = 0; i < n; i++, p->n_uris++) {
        if (lp_parse_uri(conf->uris[i], &p->uris[i], err, errlen) != 0) {
            p->n_uris++; /* free what it holds */
            lp_free(p);
            return NULL;
        }
        tls = tls || p->uris[i].ldaps;
    }
    for (size_t i = 0; i < p->n_uris; i++)
        if (!p->uris[i].ldaps && !conf->starttls && !lp_loopback(p->uris[i].host))
            xmppd_log(m, XMPPD_LOG_WARN, "%s: neither ldaps:// nor starttls: passwords cross the network in "
                      "the clear", p->uris[i].text);
    if (tls && !(p->tls = ltls_ctx_new(conf->ca_file, err, errlen))) {
        lp_free(p);
        return NULL;
    }
    if (!(p->tick = xmppd_timer_add(m, LP_TICK_MS, lp_on_tick, p))) {
        snprintf(err, errlen, "out of memory");
        lp_free(p);
        return NULL;
    }
    for (int i = 0; i < p->n_conns; i++) {
        lc_conn *c = &p->conns[i];
        c->pool = p;
        c->id = i + 1;
        c->fd = -1;
        c->binds = i >= conf->search_connections;
        c->pause = 100;
        lc_start(c);
    }
    return p;
}

void lp_close(lp_pool *p, bool unloading)
{
    if (!p)
        return;
    p->closing = true;
    if (!unloading) {
        if (p->tick)
            xmppd_timer_cancel(p->tick);
        if (p->kick)
            xmppd_timer_cancel(p->kick);
    }
    while (p->search_q.head)
        lp_finish(p->search_q.head, LP_CLOSED);
    while (p->bind_q.head)
        lp_finish(p->bind_q.head, LP_CLOSED);
    for (int i = 0; i < p->n_conns; i++) {
        lc_conn *c = &p->conns[i];
        while (c->ops.head)
            lp_finish(c->ops.head, LP_CLOSED);
        lc_teardown(c, unloading);
    }
    lp_free(p);
}

/* ---- requests from the module ---- */

static lp_req *lp_req_new(lp_pool *p, bool is_bind, lp_cb cb, void *ud)
{
    lp_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->pool = p;
    r->is_bind = is_bind;
    r->cb = cb;
    r->ud = ud;
    r->deadline = xmppd_now_ms() + (uint64_t)p->conf->timeout_ms;
    return r;
}

/* Queues r when it was built whole (ok); else frees it. r or NULL. */
static lp_req *lp_submit(lp_pool *p, lp_req *r, bool ok)
{
    if (!ok) {
        if (r)
            lp_req_free(r);
        return NULL;
    }
    lp_list_push(lp_queue_of(p, r), r, false);
    lp_kick(p);
    return r;
}

lp_req *lp_search(lp_pool *p, const char *base, int scope, const char *filter, const char *const *attrs,
                  size_t limit, lp_cb cb, void *ud)
{
    lp_req *r = lp_req_new(p, false, cb, ud);
    bool ok = false;
    if (r) {
        r->scope = scope == DIRECTORY_SCOPE_BASE ? LDAP_SCOPE_BASE
                   : scope == DIRECTORY_SCOPE_ONE ? LDAP_SCOPE_ONELEVEL : LDAP_SCOPE_SUBTREE;
        r->limit = limit;
        r->attrs = lp_attrs_dup(attrs, &ok);
        ok = ok && (r->base = strdup(base ? base : "")) && (r->filter = strdup(filter));
    }
    return lp_submit(p, r, ok);
}

lp_req *lp_bind(lp_pool *p, const char *dn, const char *password, const char *const *attrs, lp_cb cb,
                void *ud)
{
    lp_req *r = lp_req_new(p, true, cb, ud);
    bool ok = false;
    if (r) {
        r->attrs = lp_attrs_dup(attrs, &ok);
        ok = ok && (r->dn = strdup(dn)) && (r->password = strdup(password));
    }
    return lp_submit(p, r, ok);
}

void lp_cancel(lp_req *r)
{
    r->cb = NULL;
    lc_conn *c = r->conn;
    if (!c) {
        lp_finish(r, LP_CLOSED);
        return;
    }
    /* A bind in progress stays until its answer (nothing else may run on
     * that connection meanwhile); a search is abandoned. */
    if (r->is_bind && !r->reading)
        return;
    if (c->ld)
        ldap_abandon_ext(c->ld, r->msgid, NULL, NULL);
    lp_finish(r, LP_CLOSED);
}

const char *lp_code_str(int code)
{
    return code == LP_CLOSED ? "closing" : ldap_err2string(code);
}
