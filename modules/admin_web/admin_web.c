/* mod_admin_web: the web console, a few static files (HTML, CSS, plain
 * JavaScript) served at PATH/ (default /admin/) on the http listeners.
 * The console does everything through mod_admin_api's JSON API (login,
 * accounts, sessions, modules, metrics, audit log): this module only
 * serves files and holds no credentials.
 *
 * The files come from `root` (default: where `make install` puts them,
 * PKGDATADIR/admin_web). A module loaded from a build tree (its file in
 * libtool's .libs folder, as the tests and contrib/quickstart.sh load
 * it) takes the www folder beside .libs instead: the source files, or
 * the link to them that Makefile.am makes in a separate build folder.
 * Installed modules are never in a .libs folder, and no build path is
 * compiled in. Only flat names of known types are served
 * (name.html, name.css, name.js, name.svg, name.png, name.ico), opened
 * under root without following links, so no path reaches outside it.
 * Every answer carries a Content-Security-Policy without inline script,
 * X-Frame-Options: DENY and nosniff. Who may load the pages: as for the
 * API, loopback clients, and addresses the access rule admin_api allows
 * (loopback_only false: everyone; the API still checks each call). */
#define _GNU_SOURCE /* O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC, dladdr */
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xmppd/xmppd.h>

#ifndef ADMIN_WEB_DIR
#error "ADMIN_WEB_DIR: the installed console files (Makefile.am sets it)"
#endif

#define NAME_MAX_LEN 64

typedef struct web_conf {
    const char *path;
    const char *root;
    const char *api_path;
    bool loopback_only;
} web_conf;

static const xmppd_option web_options[] = {
    { "path", XMPPD_OPT_STRING, XMPPD_OFF(web_conf, path), "\"/admin\"", 2, 0, NULL, 0,
      "the URL path of the console (PATH/ serves its page)" },
    { "root", XMPPD_OPT_STRING, XMPPD_OFF(web_conf, root), NULL, 1, 0, NULL, 0,
      "the folder of the console's files (default: PKGDATADIR/admin_web, where make install puts "
      "them; a module loaded from a build tree takes the www folder beside its .libs)" },
    { "api_path", XMPPD_OPT_STRING, XMPPD_OFF(web_conf, api_path), "\"/api\"", 2, 0, NULL, 0,
      "the path of mod_admin_api's commands, as its own path option says" },
    { "loopback_only", XMPPD_OPT_BOOL, XMPPD_OFF(web_conf, loopback_only), "true", 0, 0, NULL, 0,
      "serve only clients on loopback addresses (and those the access rule admin_api allows)" },
    { NULL }
};

typedef struct web_state {
    xmppd_module *m;
    int root_fd;  /* O_DIRECTORY */
    char *config; /* config.json: where the API is, relative to the console */
} web_state;

static const struct {
    const char *ext, *type;
} types[] = {
    { ".html", "text/html; charset=utf-8" },
    { ".css", "text/css; charset=utf-8" },
    { ".js", "text/javascript; charset=utf-8" },
    { ".svg", "image/svg+xml" },
    { ".png", "image/png" },
    { ".ico", "image/x-icon" },
};

/* The Content-Type of a file name the console may have, or NULL: one
 * segment of letters, digits, '-' and '_', then a known extension. */
static const char *file_type(const char *name)
{
    size_t n = strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_");
    if (n == 0 || n > NAME_MAX_LEN)
        return NULL;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(name + n, types[i].ext) == 0)
            return types[i].type;
    return NULL;
}

static void security_headers(xmppd_http_request *req)
{
    xmppd_http_set_header(req, "Content-Security-Policy",
                          "default-src 'none'; script-src 'self'; style-src 'self'; "
                          "img-src 'self'; connect-src 'self'; form-action 'none'; "
                          "frame-ancestors 'none'; base-uri 'none'");
    xmppd_http_set_header(req, "X-Frame-Options", "DENY");
    xmppd_http_set_header(req, "X-Content-Type-Options", "nosniff");
    xmppd_http_set_header(req, "Referrer-Policy", "no-referrer");
    xmppd_http_set_header(req, "Cache-Control", "no-cache");
}

static bool loopback(const char *ip)
{
    return ip && (strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0 ||
                  strncmp(ip, "::ffff:127.", 11) == 0);
}

static void serve_file(web_state *st, xmppd_http_request *req, const char *name, const char *type)
{
    int fd = openat(st->root_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        if (fd >= 0)
            close(fd);
        xmppd_http_error(req, 404);
        return;
    }
    if (xmppd_http_start(req, 200, type, (long long)sb.st_size) < 0) {
        close(fd);
        return; /* the request ended all the same */
    }
    xmppd_http_write_file(req, fd, 0, (int64_t)sb.st_size); /* takes fd */
    xmppd_http_end(req);
}

static void on_request(xmppd_http_request *req, void *ud)
{
    web_state *st = ud;
    const web_conf *conf = xmppd_module_conf(st->m);
    const char *ip = xmppd_http_remote_ip(req);
    security_headers(req);
    if (conf->loopback_only && !loopback(ip) &&
        xmppd_access(NULL, "admin_api", NULL, ip) != XMPPD_ACCESS_ALLOW) {
        xmppd_http_error(req, 403);
        return;
    }
    const char *rest = xmppd_http_path(req) + strlen(conf->path);
    if (*rest == '\0') { /* PATH: relative links need PATH/ */
        const char *slash = strrchr(conf->path, '/');
        char loc[512];
        snprintf(loc, sizeof(loc), "%s/", slash + 1);
        xmppd_http_set_header(req, "Location", loc);
        static const char moved[] = "the console is at PATH/\n";
        xmppd_http_respond(req, 301, "text/plain; charset=utf-8", moved, sizeof(moved) - 1);
        return;
    }
    const char *name = rest + 1; /* after '/' */
    if (*name == '\0')
        name = "index.html";
    if (strcmp(name, "config.json") == 0) {
        xmppd_http_respond(req, 200, "application/json", st->config, strlen(st->config));
        return;
    }
    const char *type = file_type(name);
    if (!type) {
        xmppd_http_error(req, 404);
        return;
    }
    serve_file(st, req, name, type);
}

/* config.json: {"api": "../api"}, the API's path relative to PATH/, so
 * that it works behind a listener's path_prefix too. */
static char *make_config(const char *path, const char *api)
{
    size_t depth = 0;
    for (const char *p = path; *p; p++)
        depth += *p == '/';
    size_t n = 3 * depth + strlen(api) + 32;
    char *s = malloc(n);
    if (!s)
        return NULL;
    size_t off = (size_t)snprintf(s, n, "{\"api\": \"");
    for (size_t i = 0; i < depth; i++)
        off += (size_t)snprintf(s + off, n - off, "../");
    snprintf(s + off, n - off, "%s\"}", api + 1);
    return s;
}

static bool plain_path(const char *p)
{
    if (p[0] != '/' || p[strlen(p) - 1] == '/' || strstr(p, "//") || strstr(p, "/."))
        return false;
    return strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./") == strlen(p);
}

/* Loaded from a build tree (.../admin_web/.libs/mod_admin_web.so): the
 * www folder beside .libs into buf (true); else false. */
static bool build_tree_root(char *buf, size_t size)
{
    Dl_info info;
    char so[PATH_MAX];
    if (!dladdr((void *)build_tree_root, &info) || !info.dli_fname || !realpath(info.dli_fname, so))
        return false;
    char *slash = strrchr(so, '/');
    if (!slash || slash - so < 6 || strncmp(slash - 6, "/.libs", 6) != 0)
        return false;
    slash[-6] = '\0';
    return snprintf(buf, size, "%s/www", so) < (int)size;
}

static int web_load(xmppd_module *m, const void *conf_)
{
    const web_conf *conf = conf_;
    if (!plain_path(conf->path))
        return xmppd_module_refuse(m, "path: expected a path such as /admin, got %s", conf->path);
    if (!plain_path(conf->api_path))
        return xmppd_module_refuse(m, "api_path: expected a path such as /api, got %s",
                                   conf->api_path);
    web_state *st = calloc(1, sizeof(*st));
    if (!st || !(st->config = make_config(conf->path, conf->api_path))) {
        free(st);
        return xmppd_module_refuse(m, "out of memory");
    }
    st->m = m;
    char built[PATH_MAX];
    const char *root = conf->root                                 ? conf->root
                       : build_tree_root(built, sizeof(built)) ? built
                                                                  : ADMIN_WEB_DIR;
    st->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat sb;
    if (st->root_fd < 0 || fstatat(st->root_fd, "index.html", &sb, 0) < 0) {
        if (st->root_fd >= 0)
            close(st->root_fd);
        free(st->config);
        free(st);
        return xmppd_module_refuse(m, "root: no index.html in %s (install the console with make "
                                   "install, or point root at modules/admin_web/www)", root);
    }
    xmppd_module_set_data(m, st);
    xmppd_http_route r = { .path = conf->path, .domain = "*",
                           .methods = XMPPD_HTTP_GET, .handler = on_request, .ud = st };
    if (xmppd_http_route_add(m, &r) < 0) {
        close(st->root_fd);
        free(st->config);
        free(st);
        return xmppd_module_refuse(m, "cannot register the route %s", conf->path);
    }
    return 0;
}

static void web_unload(xmppd_module *m)
{
    web_state *st = xmppd_module_data(m);
    close(st->root_fd);
    free(st->config);
    free(st);
}

XMPPD_MODULE(admin_web, .version = "1.0",
             .summary = "web console (static pages using mod_admin_api's JSON API)",
             .flags = XMPPD_MOD_GLOBAL, .options = web_options, .conf_size = sizeof(web_conf),
             .load = web_load, .unload = web_unload);
