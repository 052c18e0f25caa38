/* mod_metrics: the server's metrics (api/xmppd/metrics.h) at /metrics on
 * the http listeners, in the Prometheus text format, or OpenMetrics when
 * the scraper's Accept asks for it. Who may read them: the access rule
 * "metrics" (by address), else a bearer token (the token option), else
 * loopback addresses only. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <xmppd/xmppd.h>

typedef struct metrics_conf {
    const char *path;
    const char *token;
} metrics_conf;

static const xmppd_option metrics_options[] = {
    { "path", XMPPD_OPT_STRING, XMPPD_OFF(metrics_conf, path), "\"/metrics\"", .min = 2,
      .doc = "the URL path of the metrics on the http listeners" },
    { "token", XMPPD_OPT_STRING, XMPPD_OFF(metrics_conf, token), NULL, .min = 16,
      .flags = XMPPD_OPT_SECRET,
      .doc = "a scraper sending \"Authorization: Bearer TOKEN\" may read the metrics from any "
             "address" },
    { NULL }
};

static bool loopback(const char *ip)
{
    return ip && (strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0 ||
                  strncmp(ip, "::ffff:127.", 11) == 0);
}

static bool token_ok(const metrics_conf *c, const char *auth)
{
    if (!c->token || !auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    const char *t = auth + 7;
    size_t n = strlen(c->token);
    return strlen(t) == n && xmppd_ct_equal(t, c->token, n);
}

static void on_metrics(xmppd_http_request *req, void *ud)
{
    xmppd_module *m = ud;
    const metrics_conf *c = xmppd_module_conf(m);
    const char *ip = xmppd_http_remote_ip(req);
    int rule = xmppd_access(NULL, "metrics", NULL, ip);
    bool ok = rule == XMPPD_ACCESS_ALLOW ||
              (rule == XMPPD_ACCESS_DEFAULT && loopback(ip)) ||
              token_ok(c, xmppd_http_header(req, "Authorization"));
    if (!ok) {
        if (c->token)
            xmppd_http_set_header(req, "WWW-Authenticate", "Bearer realm=\"metrics\"");
        xmppd_http_error(req, c->token ? 401 : 403);
        return;
    }
    const char *accept = xmppd_http_header(req, "Accept");
    bool om = accept && strstr(accept, "application/openmetrics-text");
    size_t len = 0;
    char *text = xmppd_metrics_render(om, &len);
    if (!text) {
        xmppd_http_error(req, 500);
        return;
    }
    xmppd_http_set_header(req, "Cache-Control", "no-store");
    xmppd_http_respond(req, 200, om ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                                    : "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static int metrics_load(xmppd_module *m, const void *conf)
{
    const metrics_conf *c = conf;
    if (c->path[0] != '/')
        return xmppd_module_refuse(m, "path: expected a path such as /metrics, got %s", c->path);
    xmppd_http_route r = { .path = c->path, .domain = "*", .methods = XMPPD_HTTP_GET,
                           .handler = on_metrics, .ud = m };
    if (xmppd_http_route_add(m, &r) < 0)
        return xmppd_module_refuse(m, "cannot register the route %s", c->path);
    return 0;
}

XMPPD_MODULE(metrics, .version = "1.0",
             .summary = "Prometheus/OpenMetrics exposition of the server's metrics at /metrics",
             .specs = (const char *const[]){ NULL }, .flags = XMPPD_MOD_GLOBAL,
             .options = metrics_options, .conf_size = sizeof(metrics_conf), .load = metrics_load);
