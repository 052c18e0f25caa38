/* XEP-0156 §3: /.well-known/host-meta (XRD, RFC 6415) and host-meta.json
 * (JRD) list the WebSocket and BOSH endpoints of the host a browser asked
 * about, so a client finds them from the domain alone. The URLs are built
 * from http.external_url when configured, else from what the request came
 * in on (its scheme and Host), with the listener's path prefix. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

#define REL_WS "urn:xmpp:alt-connections:websocket"
#define REL_BOSH "urn:xmpp:alt-connections:xbosh"

/* The URL of path as the client would reach it, into buf. */
static void endpoint_url(const xmppd_http_request *req, const char *path, bool ws, char *buf,
                         size_t len)
{
    const http_conf *hc = &g_server.cfg->http;
    const char *host = http_request_header(req, "Host");
    if (hc->external_url) {
        const char *base = hc->external_url;
        bool tls = strncmp(base, "https://", 8) == 0;
        const char *rest = base + (tls ? 8 : 7);
        size_t rl = strlen(rest);
        while (rl && rest[rl - 1] == '/')
            rl--;
        snprintf(buf, len, "%s://%.*s%s", ws ? (tls ? "wss" : "ws") : (tls ? "https" : "http"),
                 (int)rl, rest, path);
        return;
    }
    snprintf(buf, len, "%s://%s%s", ws ? (req->secure ? "wss" : "ws") : (req->secure ? "https" : "http"),
             host ? host : "localhost", path);
}

/* Host values go into XML and JSON: only what a host name may hold. */
static bool plain_host(const char *h)
{
    for (const char *p = h; p && *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr(".-:[]_", *p)))
            return false;
    return true;
}

void hostmeta_handle(xmppd_http_request *req, void *ud)
{
    const http_conf *hc = &g_server.cfg->http;
    const char *prefix = req->prefix;
    bool json = strstr(req->path, ".json") != NULL;
    if (!plain_host(http_request_header(req, "Host"))) {
        http_request_respond(req, 400, "text/plain", "400 Bad Request\n", 16);
        return;
    }
    char ws[1024] = "", bosh[1024] = "", path[600];
    if (hc->websocket.enabled) {
        snprintf(path, sizeof(path), "%s%s", prefix ? prefix : "", hc->websocket.path);
        endpoint_url(req, path, true, ws, sizeof(ws));
    }
    if (hc->bosh.enabled) {
        snprintf(path, sizeof(path), "%s%s", prefix ? prefix : "", hc->bosh.path);
        endpoint_url(req, path, false, bosh, sizeof(bosh));
    }
    char body[3072];
    int n;
    if (json)
        n = snprintf(body, sizeof(body), "{\"links\":[%s%s%s%s%s%s%s]}\n",
                     ws[0] ? "{\"rel\":\"" REL_WS "\",\"href\":\"" : "", ws, ws[0] ? "\"}" : "",
                     ws[0] && bosh[0] ? "," : "",
                     bosh[0] ? "{\"rel\":\"" REL_BOSH "\",\"href\":\"" : "", bosh,
                     bosh[0] ? "\"}" : "");
    else
        n = snprintf(body, sizeof(body),
                     "<?xml version='1.0' encoding='utf-8'?>\n"
                     "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n%s%s%s%s%s%s</XRD>\n",
                     ws[0] ? "  <Link rel='" REL_WS "' href='" : "", ws, ws[0] ? "'/>\n" : "",
                     bosh[0] ? "  <Link rel='" REL_BOSH "' href='" : "", bosh,
                     bosh[0] ? "'/>\n" : "");
    http_request_respond(req, 200, json ? "application/json" : "application/xrd+xml; charset=utf-8",
                         body, (size_t)n < sizeof(body) ? (size_t)n : sizeof(body) - 1);
}
