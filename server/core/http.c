/* HTTP routes of modules and the requests they answer (core/http.h,
 * api/xmppd/http.h).
 *
 * Routes are few (a handful per host), so they live in one list searched
 * by longest prefix. A reload loads the new instance before the old one
 * unloads: a registration by a newer instance of the same module (same
 * name, host, domain and path) shadows the old one, which comes back if
 * the new instance is released first, as for served domains (domains.c).
 *
 * Each route keeps the requests its module holds, so that an unloading
 * module hears cancel for each before its unload(), and the kernel then
 * answers 503 for it. */
#define _GNU_SOURCE /* asprintf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/http.h"

#define API XMPPD_EXPORT

struct http_route {
    xmppd_module *m;
    xmppd_http_route def;       /* strings and cors point into this struct's copies */
    xmppd_http_cors cors;
    char *domain;               /* lower case; "*" any */
    char *path;
    size_t path_len;
    bool gone;                  /* withdrawn: not found any more */
    http_route *shadowed;       /* an older instance's registration of the same key */
    http_route *next;
    xmppd_http_request *active; /* requests the module holds */
};

static http_route *g_routes; /* registration order; shadowed ones are off the list */

/* ---- strings ----------------------------------------------------------------- */

static void free_list(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

static char **dup_list(const char *const *v, bool *oom)
{
    if (!v)
        return NULL;
    size_t n = 0;
    while (v[n])
        n++;
    char **d = calloc(n + 1, sizeof(*d));
    for (size_t i = 0; d && i < n; i++)
        if (!(d[i] = strdup(v[i]))) {
            free_list(d);
            d = NULL;
        }
    if (!d)
        *oom = true;
    return d;
}

/* ---- the registry ------------------------------------------------------------------ */

static void route_free(http_route *r)
{
    free_list((char **)r->cors.origins);
    free_list((char **)r->cors.headers);
    free_list((char **)r->cors.expose);
    free(r->domain);
    free(r->path);
    free(r);
}

static void list_unlink(http_route *r)
{
    for (http_route **pp = &g_routes; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            return;
        }
}

static http_route *same_key(const char *domain, const char *path)
{
    for (http_route *r = g_routes; r; r = r->next)
        if (strcmp(r->domain, domain) == 0 && strcmp(r->path, path) == 0)
            return r;
    return NULL;
}

static void cancel_active(http_route *r);

/* Module unload: every request still held hears cancel, then the route
 * goes (an older instance's registration comes back in its place). */
static void withdraw(void *p)
{
    http_route *r = p;
    cancel_active(r);
    http_route *head = same_key(r->domain, r->path);
    if (head == r) {
        if (r->shadowed) {
            r->shadowed->next = r->next;
            r->next = r->shadowed;
        }
        list_unlink(r);
    } else {
        for (http_route *x = head; x; x = x->shadowed)
            if (x->shadowed == r) {
                x->shadowed = r->shadowed;
                break;
            }
    }
    route_free(r);
}

static bool replaces(const xmppd_module *m, const http_route *old)
{
    return old->m && old->m != m && old->m->host == m->host && strcmp(old->m->def->name, m->def->name) == 0;
}

static char *route_domain(const xmppd_module *m, const char *domain)
{
    if (domain)
        return strcmp(domain, "*") == 0 ? strdup("*") : xmppd_nameprep(domain);
    return m && m->host ? strdup(m->host->name) : strdup("*");
}

static http_route *route_copy(xmppd_module *m, const xmppd_http_route *def)
{
    http_route *r = calloc(1, sizeof(*r));
    bool oom = !r;
    if (r) {
        r->m = m;
        r->def = *def;
        r->domain = route_domain(m, def->domain);
        r->path = strdup(def->path);
        oom = !r->domain || !r->path;
        if (def->cors) {
            r->cors = *def->cors;
            r->cors.origins = (const char *const *)dup_list(def->cors->origins, &oom);
            r->cors.headers = (const char *const *)dup_list(def->cors->headers, &oom);
            r->cors.expose = (const char *const *)dup_list(def->cors->expose, &oom);
            r->def.cors = &r->cors;
        }
        r->def.path = r->path;
        r->def.domain = r->domain;
    }
    if (oom) {
        if (r)
            route_free(r);
        return NULL;
    }
    r->path_len = strlen(r->path);
    return r;
}

int http_route_kernel(const xmppd_http_route *def)
{
    xmppd_http_route d = *def;
    d.domain = "*";
    http_route *r = route_copy(NULL, &d);
    if (!r)
        return -1;
    r->next = g_routes;
    g_routes = r;
    return 0;
}

void http_routes_kernel_free(void)
{
    for (http_route **pp = &g_routes; *pp;) {
        http_route *r = *pp;
        if (r->m) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        cancel_active(r);
        route_free(r);
    }
}

API int xmppd_http_route_add(xmppd_module *m, const xmppd_http_route *def)
{
    if (!m || !m->loaded || !def || !def->path || def->path[0] != '/' || !def->handler ||
        ((def->flags & XMPPD_HTTP_STREAM_BODY) && !def->body) || !def->methods ||
        def->max_body < 0) {
        if (m)
            xmppd_log(m, XMPPD_LOG_ERROR, "HTTP route %s refused: invalid definition",
                      def && def->path ? def->path : "(null)");
        return -1;
    }
    http_route *r = route_copy(m, def);
    if (!r)
        return -1;
    http_route *old = same_key(r->domain, r->path);
    if (old && !replaces(m, old)) {
        xmppd_log(m, XMPPD_LOG_ERROR, "HTTP route %s%s is taken by %s", r->domain, r->path,
                  old->m->tag);
        route_free(r);
        return -1;
    }
    if (old) {
        /* The newer instance takes the old one's place in the list. */
        r->next = old->next;
        old->next = NULL;
        r->shadowed = old;
        for (http_route **pp = &g_routes; *pp; pp = &(*pp)->next)
            if (*pp == old) {
                *pp = r;
                break;
            }
    } else {
        r->next = g_routes;
        g_routes = r;
    }
    if (!module_cleanup_add(m, withdraw, r)) {
        withdraw(r);
        return -1;
    }
    return 0;
}

/* Does prefix p take path? "/a/" takes "/a/x"; "/a" takes "/a", "/a/x". */
static bool prefix_takes(const http_route *r, const char *path)
{
    if (strncmp(path, r->path, r->path_len) != 0)
        return false;
    char next = path[r->path_len];
    return r->path[r->path_len - 1] == '/' || next == '\0' || next == '/';
}

static http_route *find_in(const char *host, const char *path, bool *named_r)
{
    http_route *best = NULL;
    for (http_route *r = g_routes; r; r = r->next) {
        bool exact = strcmp(r->domain, host) == 0;
        if (exact)
            *named_r = true;
        if ((r->m && !r->m->loaded) || (!exact && strcmp(r->domain, "*") != 0) || !prefix_takes(r, path))
            continue;
        if (!best || r->path_len > best->path_len ||
            (r->path_len == best->path_len && exact && strcmp(best->domain, "*") == 0))
            best = r;
    }
    return best;
}

static const char *default_host(void)
{
    const xmppd_config *cfg = g_server.cfg;
    if (cfg && cfg->http.default_host)
        return cfg->http.default_host;
    return g_server.n_hosts ? g_server.hosts[0]->name : "";
}

http_route *http_route_find(const char *host, const char *path)
{
    bool named = false;
    http_route *r = find_in(host ? host : "", path, &named);
    if (r || named)
        return r;
    return find_in(default_host(), path, &named);
}

const xmppd_http_route *http_route_def(const http_route *r)
{
    return &r->def;
}

const char *http_route_prefix(const http_route *r)
{
    return r->path;
}

/* ---- requests ------------------------------------------------------------------------ */

xmppd_http_request *http_request_new(const http_request_ops *ops, void *conn)
{
    xmppd_http_request *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    req->ops = ops;
    req->conn = conn;
    req->refs = 1;
    req->content_length = -1;
    return req;
}

static void headers_free(http_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

static void request_unref(xmppd_http_request *req)
{
    if (--req->refs > 0)
        return;
    headers_free(req->in, req->n_in);
    headers_free(req->out, req->n_out);
    free(req->path);
    free(req->prefix);
    free(req->query);
    free(req->host);
    free(req->ip);
    free(req->body);
    free(req);
}

static void active_unlink(xmppd_http_request *req)
{
    http_route *r = req->route;
    if (!r)
        return;
    if (req->prev_active)
        req->prev_active->next_active = req->next_active;
    else
        r->active = req->next_active;
    if (req->next_active)
        req->next_active->prev_active = req->prev_active;
    req->next_active = req->prev_active = NULL;
    req->route = NULL;
}

/* The module is done with req (answered, or told it is cancelled). */
static void module_done(xmppd_http_request *req)
{
    if (!req->route)
        return;
    active_unlink(req);
    request_unref(req);
}

void http_request_dispatch(xmppd_http_request *req, http_route *route)
{
    req->route = route;
    req->cors = route->def.cors;
    req->refs++;
    req->next_active = route->active;
    if (route->active)
        route->active->prev_active = req;
    route->active = req;
    route->def.handler(req, route->def.ud);
}

void http_request_body(xmppd_http_request *req, const char *data, size_t len)
{
    http_route *r = req->route;
    if (r && !req->started && !req->finished && r->def.body)
        r->def.body(req, data, len, r->def.ud);
}

static void cancel_one(xmppd_http_request *req)
{
    http_route *r = req->route;
    req->finished = true;
    if (r->def.cancel)
        r->def.cancel(req, r->def.ud);
    module_done(req);
}

static void cancel_active(http_route *r)
{
    while (r->active) {
        xmppd_http_request *req = r->active;
        bool answer = req->conn && !req->started;
        req->refs++; /* the kernel answers after the module let go */
        cancel_one(req);
        if (answer) {
            req->finished = false; /* cancel_one ended it for the module, not for the kernel */
            http_request_respond(req, 503, NULL, NULL, 0);
        }
        else if (req->conn)
            req->ops->end(req->conn, req); /* a started answer cannot be completed */
        request_unref(req);
    }
}

void http_request_release(xmppd_http_request *req)
{
    req->conn = NULL;
    if (req->route && !req->finished)
        cancel_one(req);
    request_unref(req);
}

int http_request_add_header(xmppd_http_request *req, const char *name, size_t nlen,
                            const char *value, size_t vlen)
{
    for (size_t i = 0; i < req->n_in; i++) {
        http_header *h = &req->in[i];
        if (strlen(h->name) == nlen && strncasecmp(h->name, name, nlen) == 0) {
            size_t old = strlen(h->value);
            char *v = realloc(h->value, old + 2 + vlen + 1);
            if (!v)
                return -1;
            memcpy(v + old, ", ", 2);
            memcpy(v + old + 2, value, vlen);
            v[old + 2 + vlen] = '\0';
            h->value = v;
            return 0;
        }
    }
    http_header *v = realloc(req->in, (req->n_in + 1) * sizeof(*v));
    if (!v)
        return -1;
    req->in = v;
    http_header *h = &req->in[req->n_in];
    h->name = strndup(name, nlen);
    h->value = strndup(value, vlen);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        return -1;
    }
    req->n_in++;
    return 0;
}

const char *http_request_header(const xmppd_http_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_in; i++)
        if (strcasecmp(req->in[i].name, name) == 0)
            return req->in[i].value;
    return NULL;
}

/* ---- answers --------------------------------------------------------------------------- */

static bool no_body_status(int status)
{
    return status == 204 || status == 304 || (status >= 100 && status < 200);
}

static int answer_start(xmppd_http_request *req, int status, const char *ctype, long long length)
{
    if (req->started || req->finished || status < 100 || status > 599 || status == 101)
        return -1;
    req->started = true;
    req->status = status;
    if (req->method == XMPPD_HTTP_HEAD || no_body_status(status))
        req->head_only = true;
    if (!req->conn)
        return -1;
    return req->ops->start(req->conn, req, status, ctype, length);
}

static int answer_end(xmppd_http_request *req)
{
    if (req->finished)
        return -1;
    req->finished = true;
    int rc = 0;
    if (req->conn)
        req->ops->end(req->conn, req);
    else
        rc = -1;
    module_done(req);
    return rc;
}

int http_request_respond(xmppd_http_request *req, int status, const char *ctype, const void *body,
                         size_t len)
{
    int rc = answer_start(req, status, ctype, req->head_only || no_body_status(status) ? 0 :
                                                  (long long)len);
    if (rc == 0 && len && !req->head_only && req->conn)
        rc = req->ops->write(req->conn, req, body, len);
    if (!req->started) /* refused outright (bad status): the request still ends */
        req->started = true;
    return answer_end(req) < 0 ? -1 : rc;
}

API int xmppd_http_respond(xmppd_http_request *req, int status, const char *content_type,
                           const void *body, size_t len)
{
    return http_request_respond(req, status, content_type, body, len);
}

API int xmppd_http_start(xmppd_http_request *req, int status, const char *content_type,
                         long long length)
{
    return answer_start(req, status, content_type, length < 0 ? -1 : length);
}

API int xmppd_http_write(xmppd_http_request *req, const void *data, size_t len)
{
    if (!req->started || req->finished || !req->conn)
        return -1;
    if (req->head_only || !len)
        return 0;
    return req->ops->write(req->conn, req, data, len);
}

API int xmppd_http_write_file(xmppd_http_request *req, int fd, int64_t offset, int64_t len)
{
    if (!req->started || req->finished || !req->conn || req->head_only || len <= 0) {
        close(fd);
        return req->started && !req->finished && req->conn ? 0 : -1;
    }
    return req->ops->write_file(req->conn, req, fd, offset, len);
}

API int xmppd_http_end(xmppd_http_request *req)
{
    if (!req->started)
        return -1;
    return answer_end(req);
}

API int xmppd_http_error(xmppd_http_request *req, int status)
{
    char text[64];
    int n = snprintf(text, sizeof(text), "%d %s\n", status, http_status_text(status));
    xmppd_http_respond(req, status, "text/plain; charset=utf-8", text, (size_t)n);
    return 0;
}

API int xmppd_http_set_header(xmppd_http_request *req, const char *name, const char *value)
{
    if (req->started || req->finished || !name || !*name || !value || strpbrk(name, "\r\n:") ||
        strpbrk(value, "\r\n"))
        return -1;
    http_header *v = realloc(req->out, (req->n_out + 1) * sizeof(*v));
    if (!v)
        return -1;
    req->out = v;
    v[req->n_out].name = strdup(name);
    v[req->n_out].value = strdup(value);
    if (!v[req->n_out].name || !v[req->n_out].value) {
        free(v[req->n_out].name);
        free(v[req->n_out].value);
        return -1;
    }
    req->n_out++;
    return 0;
}

/* ---- accessors --------------------------------------------------------------------------- */

API unsigned xmppd_http_method(const xmppd_http_request *req)
{
    return req->method;
}

API const char *xmppd_http_path(const xmppd_http_request *req)
{
    return req->path;
}

API const char *xmppd_http_query(const xmppd_http_request *req)
{
    return req->query;
}

API const char *xmppd_http_header(const xmppd_http_request *req, const char *name)
{
    return http_request_header(req, name);
}

API const char *xmppd_http_host(const xmppd_http_request *req)
{
    return req->host ? req->host : "";
}

API const char *xmppd_http_remote_ip(const xmppd_http_request *req)
{
    return req->ip ? req->ip : "";
}

API bool xmppd_http_secure(const xmppd_http_request *req)
{
    return req->secure;
}

API long long xmppd_http_content_length(const xmppd_http_request *req)
{
    return req->content_length;
}

API const char *xmppd_http_body(const xmppd_http_request *req, size_t *len_r)
{
    if (len_r)
        *len_r = req->body_len;
    return req->body;
}

API void xmppd_http_pause(xmppd_http_request *req)
{
    if (req->conn && !req->finished)
        req->ops->pause(req->conn, true);
}

API void xmppd_http_resume(xmppd_http_request *req)
{
    if (req->conn && !req->finished)
        req->ops->pause(req->conn, false);
}

API void xmppd_http_set_data(xmppd_http_request *req, void *data)
{
    req->data = data;
}

API void *xmppd_http_data(const xmppd_http_request *req)
{
    return req->data;
}

/* ---- URLs --------------------------------------------------------------------------------- */

API char *xmppd_http_url(const xmppd_module *m, const char *domain, const char *path)
{
    const xmppd_config *cfg = g_server.cfg;
    if (!cfg || !path || path[0] != '/')
        return NULL;
    char *out = NULL;
    if (cfg->http.external_url) {
        const char *base = cfg->http.external_url;
        size_t bl = strlen(base);
        while (bl && base[bl - 1] == '/')
            bl--;
        if (asprintf(&out, "%.*s%s", (int)bl, base, path) < 0)
            out = NULL;
        return out;
    }
    const listener_conf *l = NULL;
    for (size_t i = 0; i < cfg->n_listeners && !l; i++)
        if (cfg->listeners[i].type == LISTEN_HTTP && cfg->listeners[i].tls == LISTEN_TLS_DIRECT)
            l = &cfg->listeners[i];
    for (size_t i = 0; i < cfg->n_listeners && !l; i++)
        if (cfg->listeners[i].type == LISTEN_HTTP)
            l = &cfg->listeners[i];
    if (!l)
        return NULL;
    const char *d = domain ? domain : m && m->host ? m->host->name : default_host();
    bool tls = l->tls == LISTEN_TLS_DIRECT;
    const char *prefix = l->path_prefix ? l->path_prefix : "";
    if (asprintf(&out, "%s://%s:%lld%s%s", tls ? "https" : "http", d, l->port, prefix, path) < 0)
        out = NULL;
    return out;
}

/* ---- methods and statuses ------------------------------------------------------------------ */

bool http_method_allowed(unsigned mask, unsigned method)
{
    if (method == XMPPD_HTTP_HEAD && (mask & XMPPD_HTTP_GET))
        return true;
    return (mask & method) != 0;
}

void http_methods_text(unsigned mask, char *buf, size_t len)
{
    static const char *const names[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH" };
    size_t at = 0;
    buf[0] = '\0';
    if (mask & XMPPD_HTTP_GET)
        mask |= XMPPD_HTTP_HEAD;
    for (unsigned i = 0; i < 7; i++)
        if (mask & (1u << i))
            at += (size_t)snprintf(buf + at, at < len ? len - at : 0, "%s%s", at ? ", " : "",
                                   names[i]);
}

const char *http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "";
    }
}
