/* What a request head leads to: the request's facts (path, Host, the
 * client's address behind trusted proxies), the limits (rate, body size),
 * CORS, then the kernel's WebSocket endpoint or a route. Everything the
 * kernel answers itself is answered here. */
#include <ctype.h>
#include <event2/buffer.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"

static unsigned method_of(unsigned m)
{
    switch (m) {
    case HTTP_GET: return XMPPD_HTTP_GET;
    case HTTP_HEAD: return XMPPD_HTTP_HEAD;
    case HTTP_POST: return XMPPD_HTTP_POST;
    case HTTP_PUT: return XMPPD_HTTP_PUT;
    case HTTP_DELETE: return XMPPD_HTTP_DELETE;
    case HTTP_OPTIONS: return XMPPD_HTTP_OPTIONS;
    case HTTP_PATCH: return XMPPD_HTTP_PATCH;
    default: return 0;
    }
}

static int answer(xmppd_http_request *req, int status, const char *text)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "%d %s\n%s%s", status, http_status_text(status),
                     text ? text : "", text ? "\n" : "");
    http_request_respond(req, status, "text/plain; charset=utf-8", body, (size_t)n);
    return HTTP_ANSWERED;
}

/* Host without port, lower case ("[::1]:5280" -> "::1"). */
static char *host_of(const char *h)
{
    if (!h)
        return strdup("");
    const char *end;
    if (h[0] == '[') {
        h++;
        end = strchr(h, ']');
        if (!end)
            end = h + strlen(h);
    } else {
        end = strchr(h, ':');
        if (!end)
            end = h + strlen(h);
    }
    char *out = strndup(h, (size_t)(end - h));
    for (char *p = out; p && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return out;
}

/* The client behind trusted proxies: walking X-Forwarded-For from the
 * right, the first address that is not a trusted proxy (RFC 7239 §5.2's
 * reasoning: only the hops we trust are believed). */
static void client_of(const http_conn *c, xmppd_http_request *req)
{
    const listener_conf *lc = http_conn_listener(c);
    const char *peer = http_conn_peer(c);
    req->secure = lc->tls == LISTEN_TLS_DIRECT;
    req->ip = strdup(peer);
    if (!lc->trusted_proxies || !http_ip_in(peer, lc->trusted_proxies))
        return;
    const char *proto = http_request_header(req, "X-Forwarded-Proto");
    if (proto)
        req->secure = strncasecmp(proto, "https", 5) == 0;
    const char *xff = http_request_header(req, "X-Forwarded-For");
    if (!xff)
        return;
    char *list = strdup(xff);
    char *chosen = NULL;
    for (char *p = list; p;) {
        char *comma = strrchr(p, ',');
        char *item = comma ? comma + 1 : p;
        while (*item == ' ' || *item == '\t')
            item++;
        size_t n = strlen(item);
        while (n && (item[n - 1] == ' ' || item[n - 1] == '\t'))
            item[--n] = '\0';
        chosen = item;
        if (!*item || !http_ip_in(item, lc->trusted_proxies))
            break;
        if (!comma)
            break;
        *comma = '\0';
    }
    if (chosen && *chosen && strlen(chosen) < INET6_ADDRSTRLEN) {
        free(req->ip);
        req->ip = strdup(chosen);
    }
    free(list);
}

/* Path and query from the request target (origin-form or absolute-form),
 * the listener's prefix removed. 0, or the status to answer. */
static int target_of(const http_conn *c, xmppd_http_request *req, const char *url, size_t len)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH)))
        return 400;
    const char *path = url + u.field_data[UF_PATH].off;
    size_t plen = u.field_data[UF_PATH].len;
    if (u.field_set & (1 << UF_QUERY))
        req->query = strndup(url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    char *decoded = http_pct_decode(path, plen);
    if (!decoded || decoded[0] != '/') {
        free(decoded);
        return 400;
    }
    const char *prefix = http_conn_listener(c)->path_prefix;
    size_t pl = prefix ? strlen(prefix) : 0;
    if (pl && (strncmp(decoded, prefix, pl) != 0 || (decoded[pl] && decoded[pl] != '/'))) {
        free(decoded);
        return 404;
    }
    if (pl) {
        req->prefix = strdup(prefix);
        memmove(decoded, decoded + pl, strlen(decoded + pl) + 1);
        if (!decoded[0])
            strcpy(decoded, "/");
    }
    req->path = decoded;
    return 0;
}

static bool list_has(const char *const *list, const char *s)
{
    for (; list && *list; list++)
        if (strcasecmp(*list, s) == 0)
            return true;
    return false;
}

static bool origin_allowed(const xmppd_http_cors *cors, const char *origin)
{
    return cors && cors->origins && origin && (list_has(cors->origins, "*") ||
                                               list_has(cors->origins, origin));
}

void http_cors_headers(const xmppd_http_request *req, const http_route *route,
                       struct evbuffer *out)
{
    const xmppd_http_cors *cors = req->cors;
    const char *origin = http_request_header(req, "Origin");
    if (!origin_allowed(cors, origin))
        return;
    bool any = list_has(cors->origins, "*") && !cors->credentials;
    evbuffer_add_printf(out, "Access-Control-Allow-Origin: %s\r\n", any ? "*" : origin);
    if (!any)
        evbuffer_add_printf(out, "Vary: Origin\r\n");
    if (cors->credentials)
        evbuffer_add_printf(out, "Access-Control-Allow-Credentials: true\r\n");
    for (const char *const *e = cors->expose; e && *e; e++)
        evbuffer_add_printf(out, "Access-Control-Expose-Headers: %s\r\n", *e);
}

/* A CORS preflight (Fetch §3.2.2): the route's methods and headers. */
static int preflight(xmppd_http_request *req, const xmppd_http_route *def)
{
    const char *origin = http_request_header(req, "Origin");
    const char *want = http_request_header(req, "Access-Control-Request-Method");
    static const char *const names[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH" };
    unsigned m = 0;
    for (unsigned i = 0; i < 7; i++)
        if (strcmp(want, names[i]) == 0)
            m = 1u << i;
    if (!origin_allowed(def->cors, origin) || !m || !http_method_allowed(def->methods, m))
        return answer(req, 403, "cross-origin request refused");
    char methods[80], headers[512] = "";
    http_methods_text(def->methods, methods, sizeof(methods));
    size_t at = 0;
    for (const char *const *h = def->cors->headers; h && *h; h++)
        at += (size_t)snprintf(headers + at, at < sizeof(headers) ? sizeof(headers) - at : 0,
                               "%s%s", at ? ", " : "", *h);
    xmppd_http_set_header(req, "Access-Control-Allow-Methods", methods);
    if (headers[0])
        xmppd_http_set_header(req, "Access-Control-Allow-Headers", headers);
    if (def->cors->max_age_s > 0) {
        char age[24];
        snprintf(age, sizeof(age), "%lld", def->cors->max_age_s);
        xmppd_http_set_header(req, "Access-Control-Max-Age", age);
    }
    http_request_respond(req, 204, NULL, NULL, 0);
    return HTTP_ANSWERED;
}

static bool is_ws_path(const char *path)
{
    const http_ws_conf *ws = &g_server.cfg->http.websocket;
    return ws->enabled && strcmp(path, ws->path) == 0;
}

int http_dispatch_head(http_conn *c, xmppd_http_request *req, const http_parser *p,
                       const char *url, size_t url_len, bool upgrade, http_route **route_r,
                       long long *max_body_r)
{
    req->method = method_of(p->method);
    req->content_length = (p->flags & F_CHUNKED) ? -1
                          : p->content_length == ULLONG_MAX ? 0 : (long long)p->content_length;
    req->host = host_of(http_request_header(req, "Host"));
    client_of(c, req);
    if (!req->host || !req->ip)
        return answer(req, 500, NULL);
    if (!http_rate_take(req->ip)) {
        static xmppd_metric *hits;
        if (!hits)
            hits = xmppd_metric_new(NULL, "xmppd_http_rate_limited_total", XMPPD_METRIC_COUNTER,
                                    "HTTP requests answered 429 (http.requests_per_second)",
                                    NULL, NULL, 0);
        xmppd_metric_add(hits, NULL, 1);
        xmppd_http_set_header(req, "Retry-After", "1");
        return answer(req, 429, "slow down");
    }
    int bad = target_of(c, req, url, url_len);
    if (bad)
        return answer(req, bad, NULL);
    if (!req->method)
        return answer(req, 501, NULL);
    if (is_ws_path(req->path)) {
        if (upgrade || http_request_header(req, "Sec-WebSocket-Key"))
            return HTTP_UPGRADE;
        xmppd_http_set_header(req, "Upgrade", "websocket");
        xmppd_http_set_header(req, "Sec-WebSocket-Version", "13");
        return answer(req, 426, "this is an XMPP WebSocket endpoint (RFC 7395)");
    }
    http_route *route = http_route_find(req->host, req->path);
    if (!route)
        return answer(req, 404, NULL);
    const xmppd_http_route *def = http_route_def(route);
    req->cors = def->cors;
    if (req->method == XMPPD_HTTP_OPTIONS && http_request_header(req, "Origin") &&
        http_request_header(req, "Access-Control-Request-Method") &&
        !(def->methods & XMPPD_HTTP_OPTIONS))
        return preflight(req, def);
    if (!http_method_allowed(def->methods, req->method)) {
        char allow[80];
        http_methods_text(def->methods, allow, sizeof(allow));
        xmppd_http_set_header(req, "Allow", allow);
        if (req->method == XMPPD_HTTP_OPTIONS) {
            http_request_respond(req, 204, NULL, NULL, 0);
            return HTTP_ANSWERED;
        }
        return answer(req, 405, NULL);
    }
    if (req->content_length > def->max_body)
        return answer(req, 413, NULL);
    *route_r = route;
    *max_body_r = def->max_body;
    return HTTP_DISPATCH;
}

int http_endpoints_start(void)
{
    const http_conf *hc = &g_server.cfg->http;
    static const char *const bosh_headers[] = { "Content-Type", NULL };
    xmppd_http_cors cors = { .origins = hc->cors_origins, .headers = bosh_headers,
                             .max_age_s = 86400 };
    const xmppd_http_cors *c = hc->cors_origins && hc->cors_origins[0] ? &cors : NULL;
    if (hc->bosh.enabled) {
        xmppd_http_route r = { .path = hc->bosh.path, .methods = XMPPD_HTTP_POST,
                               .max_body = hc->bosh.max_body, .cors = c, .handler = bosh_handle,
                               .cancel = bosh_cancel };
        if (http_route_kernel(&r) < 0)
            return -1;
    }
    static const char *const hm[] = { "/.well-known/host-meta", "/.well-known/host-meta.json" };
    for (int i = 0; i < 2; i++) {
        xmppd_http_route r = { .path = hm[i], .methods = XMPPD_HTTP_GET, .cors = c,
                               .handler = hostmeta_handle };
        if (http_route_kernel(&r) < 0)
            return -1;
    }
    return 0;
}
