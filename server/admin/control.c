/* The control socket (control.h) and the configuration reload it shares
 * with SIGHUP. Everything runs on the event loop thread: a request is
 * handled completely (a module reload included) before the next event. */
#define _GNU_SOURCE /* struct ucred */
#include <errno.h>
#include <stdarg.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "admin/control.h"
#include "cluster/cluster.h"
#include "core/catalogue.h"
#include "core/ctl.h"
#include "core/loop.h"
#include "net/net.h"
#include "s2s/federation.h"
#include "session/session.h"

#define CONTROL_IDLE_SECONDS 60
#define KICK_TEXT_MAX 200

typedef struct ctl_conn {
    struct ctl_conn *prev, *next;
    struct bufferevent *bev;
    bool closing;       /* close once the output is written */
    bool waiting;       /* a request is being answered: reading pauses */
    bool reading;       /* inside on_conn_read */
    size_t scanned;     /* input bytes known to hold no newline: a long
                           request is searched once, not at every read */
    xmppd_ctl_request *req; /* that request, when its answer comes later */
} ctl_conn;

static struct evconnlistener *g_listener;
static char *g_path;          /* the socket file we created */
static dev_t g_dev;
static ino_t g_ino;
static ctl_conn *g_conns;
static size_t g_n_conns;

/* ---- responses ---------------------------------------------------------------------- */

static json_t *ok(void)
{
    return json_pack("{s:b}", "ok", 1);
}

json_t *control_fail(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return json_pack("{s:b, s:s}", "ok", 0, "error", buf);
}

/* Sets key to value (a new reference, consumed) on r; r stays usable on OOM. */
static json_t *with(json_t *r, const char *key, json_t *value)
{
    if (r && value)
        json_object_set_new(r, key, value);
    else
        json_decref(value);
    return r;
}

/* ---- commands ------------------------------------------------------------------------ */

static size_t total_modules(void)
{
    size_t n = g_server.n_globals;
    for (size_t i = 0; i < g_server.n_hosts; i++)
        n += g_server.hosts[i]->n_modules;
    return n;
}

static json_t *cmd_status(const json_t *req)
{
    json_t *hosts = json_array();
    for (size_t i = 0; hosts && i < g_server.n_hosts; i++) {
        const xmppd_host *h = g_server.hosts[i];
        json_array_append_new(hosts, json_pack("{s:s, s:I, s:I}", "host", h->name, "sessions",
                                               (json_int_t)sm_count(h), "modules",
                                               (json_int_t)h->n_modules));
    }
    int64_t now = (int64_t)time(NULL);
    json_t *r = ok();
    with(r, "version", json_string(xmppd_server_version()));
    with(r, "pid", json_integer((json_int_t)getpid()));
    with(r, "started", json_integer((json_int_t)g_server.started));
    with(r, "uptime", json_integer((json_int_t)(now - g_server.started)));
    with(r, "config", json_string(g_server.cfg ? g_server.cfg->path : ""));
    with(r, "sessions", json_integer((json_int_t)sm_count(NULL)));
    with(r, "global_modules", json_integer((json_int_t)g_server.n_globals));
    with(r, "modules_loaded", json_integer((json_int_t)total_modules()));
    return with(r, "hosts", hosts);
}

static int add_session(xmppd_session *s, void *ud)
{
    json_t *list = ud;
    const xmppd_jid *jid = xmppd_session_jid(s);
    if (!jid)
        return 0;
    const xmppd_stanza *p = xmppd_session_presence(s);
    const char *show = p ? xmppd_stanza_child_text(p, "show", NULL) : NULL;
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:b, s:i, s:s?}", "jid", jid->full, "host",
                          xmppd_host_name(xmppd_session_host(s)), "ip", xmppd_session_ip(s),
                          "secure", xmppd_session_secure(s), "available",
                          xmppd_session_available(s), "priority", xmppd_session_priority(s),
                          "show", show);
    if (o)
        json_array_append_new(list, o);
    return 0;
}

static json_t *cmd_sessions(const json_t *req)
{
    json_t *list = json_array();
    if (!list)
        return NULL;
    xmppd_host_sessions(NULL, add_session, list);
    return with(ok(), "sessions", list);
}

static void add_stream(const s2s_stream_info *i, void *ud)
{
    json_t *o = json_pack("{s:s, s:s, s:s?, s:s?, s:s, s:i, s:b, s:b, s:b, s:I}", "direction",
                          i->outgoing ? "out" : "in", "state", i->state, "local", i->local,
                          "remote", i->remote, "ip", i->ip, "port", i->port, "secure", i->secure,
                          "bidi", i->bidi, "authenticated", i->authenticated, "pairs",
                          (json_int_t)i->n_pairs);
    if (o)
        json_array_append_new(ud, o);
}

/* Server-to-server streams, for the admin API's s2s_connections. */
static json_t *cmd_s2s(const json_t *req)
{
    (void)req;
    json_t *list = json_array();
    if (!list)
        return NULL;
    s2s_streams_foreach(add_stream, list);
    return with(ok(), "streams", list);
}

static json_t *module_json(const xmppd_module *m)
{
    json_t *specs = json_array();
    for (const char *const *s = m->def->specs; specs && s && *s; s++)
        json_array_append_new(specs, json_string(*s));
    return json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:o*}", "module", m->def->name, "host",
                     m->host ? m->host->name : NULL, "version", m->def->version, "summary",
                     m->def->summary, "file", m->file, "specs", specs);
}

static json_t *cmd_module_list(const json_t *req)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < g_server.n_globals; i++)
        json_array_append_new(list, module_json(g_server.globals[i]));
    for (size_t i = 0; list && i < g_server.n_hosts; i++)
        for (size_t j = 0; j < g_server.hosts[i]->n_modules; j++)
            json_array_append_new(list, module_json(g_server.hosts[i]->modules[j]));
    return list ? with(ok(), "modules", list) : NULL;
}

/* The request's "host" (nameprepped), or NULL when absent; *bad set when
 * it names no host of the running configuration. */
static xmppd_host *req_host(const json_t *req, json_t **bad)
{
    const json_t *v = json_object_get(req, "host");
    if (!v || json_is_null(v))
        return NULL;
    const char *s = json_string_value(v);
    char *d = s ? xmppd_nameprep(s) : NULL;
    xmppd_host *h = d ? xmppd_host_find(d) : NULL;
    if (!h)
        *bad = control_fail("unknown host %s", s ? s : "(not a string)");
    free(d);
    return h;
}

enum mod_op { OP_LOAD, OP_UNLOAD, OP_RELOAD };

static json_t *cmd_module(const json_t *req, enum mod_op op)
{
    static const char *const verbs[] = { "load", "unload", "reload" };
    const char *name = json_string_value(json_object_get(req, "module"));
    if (!name || !*name)
        return control_fail("module %s: which module? (\"module\": NAME)", verbs[op]);
    json_t *bad = NULL;
    xmppd_host *h = req_host(req, &bad);
    if (bad)
        return bad;
    char err[2048] = "";
    int rc;
    if (op == OP_UNLOAD) {
        rc = module_unload_one(name, h, err, sizeof(err));
    } else {
        /* The module's options as the file says now: edit, then reload. */
        xmppd_config *cfg = config_read(g_server.cfg->path, err, sizeof(err));
        if (!cfg)
            return control_fail("module %s %s refused: %s", verbs[op], name, err);
        rc = op == OP_LOAD ? module_load_from(cfg, name, h, err, sizeof(err))
                           : module_reload_from(cfg, name, h, err, sizeof(err));
        config_free(cfg);
    }
    if (rc < 0) {
        log_kernel("control", XMPPD_LOG_ERROR, "module %s %s%s%s failed: %s", verbs[op], name,
                   h ? " on " : "", h ? h->name : "", err);
        return control_fail("%s", err);
    }
    char msg[512];
    snprintf(msg, sizeof(msg), "module %s %sed%s%s", name, op == OP_UNLOAD ? "unload" : verbs[op],
             h ? " on " : "", h ? h->name : "");
    log_kernel("control", XMPPD_LOG_INFO, "%s", msg);
    return with(ok(), "message", json_string(msg));
}

static json_t *cmd_reload(const json_t *req)
{
    char err[2048] = "";
    int rc = server_reload(err, sizeof(err));
    if (rc < 0)
        return control_fail("reload refused: %s", err);
    if (rc > 0) {
        json_t *r = control_fail("configuration reloaded, but: %s", err);
        return with(r, "applied", json_true());
    }
    return with(ok(), "message", json_string("configuration reloaded"));
}

/* Copies text XML-escaped (stream error <text/> is written as it is). */
static void xml_escape(const char *in, char *out, size_t len)
{
    size_t n = 0;
    for (; *in && n + 7 < len; in++) {
        const char *rep = NULL;
        switch (*in) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '\'': rep = "&apos;"; break;
        case '"': rep = "&quot;"; break;
        default: break;
        }
        if (rep) {
            size_t k = strlen(rep);
            memcpy(out + n, rep, k);
            n += k;
        } else if ((unsigned char)*in >= 0x20 || *in == '\t') {
            out[n++] = *in;
        }
    }
    out[n] = '\0';
}

typedef struct kick_ctx {
    xmppd_session *v[256]; /* referenced */
    size_t n;
} kick_ctx;

static int collect_kick(xmppd_session *s, void *ud)
{
    kick_ctx *k = ud;
    if (k->n < sizeof(k->v) / sizeof(k->v[0]))
        k->v[k->n++] = xmppd_session_ref(s);
    return 0;
}

/* Ends the sessions of a full JID, or of every resource of a bare JID,
 * with <policy-violation/>: RFC 6120 has no "kicked" condition, and an
 * operator's decision is local service policy (section 4.9.3.14). */
static json_t *cmd_kick(const json_t *req)
{
    const char *s = json_string_value(json_object_get(req, "jid"));
    if (!s)
        return control_fail("kick: which JID? (\"jid\": \"user@host[/resource]\")");
    xmppd_jid *jid = xmppd_jid_parse(s);
    if (!jid || !jid->node) {
        xmppd_jid_free(jid);
        return control_fail("kick %s: not an account address (user@host or user@host/resource)", s);
    }
    xmppd_host *h = xmppd_host_find(jid->domain);
    if (!h) {
        json_t *r = control_fail("kick %s: %s is not a host of this server", s, jid->domain);
        xmppd_jid_free(jid);
        return r;
    }
    const char *reason = json_string_value(json_object_get(req, "reason"));
    char text[KICK_TEXT_MAX * 6 + 1], cut[KICK_TEXT_MAX + 1];
    snprintf(cut, sizeof(cut), "%s", reason && *reason ? reason : "Disconnected by the server administrator");
    xml_escape(cut, text, sizeof(text));
    kick_ctx k = { .n = 0 };
    if (jid->resource) {
        xmppd_session *sess = xmppd_session_find(jid);
        if (sess)
            collect_kick(sess, &k);
    } else {
        /* an account with more resources than v holds: kick again */
        xmppd_user_sessions(h, jid->node, collect_kick, &k);
    }
    for (size_t i = 0; i < k.n; i++) {
        const xmppd_jid *sj = xmppd_session_jid(k.v[i]);
        log_kernel("control", XMPPD_LOG_INFO, "kick %s", sj ? sj->full : jid->full);
        xmppd_session_close(k.v[i], "policy-violation", text);
        xmppd_session_unref(k.v[i]);
    }
    json_t *r = k.n ? with(ok(), "kicked", json_integer((json_int_t)k.n))
                    : control_fail("kick %s: no such session", jid->full);
    xmppd_jid_free(jid);
    return r;
}

static json_t *cmd_hooks(const json_t *req)
{
    json_t *c = catalogue_hooks_json();
    if (!c)
        return NULL;
    json_object_set_new(c, "ok", json_true());
    return c;
}

static json_t *cmd_features(const json_t *req)
{
    json_t *c = catalogue_features_json();
    if (!c)
        return NULL;
    json_object_set_new(c, "ok", json_true());
    return c;
}

static json_t *cmd_module_load(const json_t *r) { return cmd_module(r, OP_LOAD); }
static json_t *cmd_module_unload(const json_t *r) { return cmd_module(r, OP_UNLOAD); }
static json_t *cmd_module_reload(const json_t *r) { return cmd_module(r, OP_RELOAD); }

/* "commands": every command of the running server beyond xmppctl's own,
 * for its --help: the ones modules registered. */
static void add_command(const char *name, const char *usage, const char *help,
                        const xmppd_module *m, void *ud)
{
    if (m)
        json_array_append_new(ud, json_pack("{s:s, s:s?, s:s, s:s}", "name", name, "usage", usage,
                                            "help", help, "module", m->tag));
}

static json_t *cmd_commands(const json_t *req)
{
    json_t *list = json_array();
    if (!list)
        return NULL;
    ctl_foreach(add_command, list);
    return with(ok(), "commands", list);
}

/* The kernel's commands answer at once. */
typedef struct builtin {
    const char *name;
    json_t *(*fn)(const json_t *req);
    const char *help;
} builtin;

static const builtin g_builtins[] = {
    { "status", cmd_status, "version, uptime, hosts, sessions, modules" },
    { "sessions", cmd_sessions, "bound sessions" },
    { "s2s", cmd_s2s, "server-to-server streams" },
    { "module-list", cmd_module_list, "loaded modules" },
    { "module-load", cmd_module_load, "load a module" },
    { "module-unload", cmd_module_unload, "unload a module" },
    { "module-reload", cmd_module_reload, "reload a module" },
    { "reload", cmd_reload, "re-read the configuration" },
    { "kick", cmd_kick, "end a session" },
    { "hooks", cmd_hooks, "events and handlers" },
    { "features", cmd_features, "RFCs and XEPs implemented" },
    { "commands", cmd_commands, "commands served by modules" },
};

static void run_builtin(xmppd_ctl_request *r, const json_t *req, void *ud)
{
    const builtin *b = ud;
    json_t *resp = b->fn(req);
    ctl_answer(r, resp ? resp : control_fail("out of memory"));
}

static void register_builtins(void)
{
    static bool done;
    for (size_t i = 0; !done && i < sizeof(g_builtins) / sizeof(g_builtins[0]); i++)
        xmppd_ctl_command(NULL, g_builtins[i].name, NULL, g_builtins[i].help, run_builtin,
                          (void *)&g_builtins[i]);
    if (!done)
        control_accounts_register();
    done = true;
}

static void list_name(const char *name, const char *usage, const char *help,
                      const xmppd_module *m, void *ud)
{
    char *names = ud;
    size_t used = strlen(names);
    if (used + strlen(name) + 3 < 1024)
        snprintf(names + used, 1024 - used, "%s%s", used ? ", " : "", name);
}

/* Runs req; answer(ud, resp) runs exactly once, now or later. false when
 * the request was answered before this returned. */
static xmppd_ctl_request *handle(const json_t *req, ctl_answer_fn answer, void *ud)
{
    register_builtins();
    const char *cmd = json_string_value(json_object_get(req, "command"));
    if (!json_is_object(req) || !cmd) {
        answer(ud, control_fail("a request is a JSON object with a \"command\""));
        return CTL_ANSWERED;
    }
    xmppd_ctl_request *r = ctl_run(cmd, req, answer, ud);
    if (r)
        return r;
    char names[1024] = "", shown[64];
    ctl_foreach(list_name, names);
    snprintf(shown, sizeof(shown), "%s", cmd);
    answer(ud, control_fail("unknown command \"%s\" (commands: %s)", shown, names));
    return CTL_ANSWERED;
}

static void keep_answer(void *ud, json_t *resp)
{
    *(json_t **)ud = resp;
}

json_t *control_handle(const json_t *req)
{
    json_t *resp = NULL;
    handle(req, keep_answer, &resp);
    return resp;
}

/* ---- connections ------------------------------------------------------------------------ */

static void conn_free(ctl_conn *c)
{
    if (c->waiting && c->req)
        ctl_forget(c->req);
    if (c->prev)
        c->prev->next = c->next;
    else
        g_conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    g_n_conns--;
    bufferevent_free(c->bev);
    free(c);
}

static void conn_send(ctl_conn *c, json_t *resp)
{
    char *text = resp ? json_dumps(resp, JSON_COMPACT) : NULL;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (text) {
        evbuffer_add(out, text, strlen(text));
        free(text);
    } else {
        evbuffer_add_printf(out, "{\"ok\":false,\"error\":\"out of memory\"}");
    }
    evbuffer_add(out, "\n", 1);
    json_decref(resp);
}

/* Closes c once what is queued has been written. */
static void conn_close_after_write(ctl_conn *c)
{
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_free(c);
}

static void on_conn_write(struct bufferevent *bev, void *arg)
{
    ctl_conn *c = arg;
    if (c->closing)
        conn_free(c);
}

static void on_conn_read(struct bufferevent *bev, void *arg);

/* A request's answer, now or later: sent, and reading goes on. */
static void conn_answer(void *ud, json_t *resp)
{
    ctl_conn *c = ud;
    c->waiting = false;
    c->req = NULL;
    conn_send(c, resp);
    if (!c->closing && !c->reading) {
        bufferevent_enable(c->bev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            on_conn_read(c->bev, c);
    }
}

static void on_conn_read(struct bufferevent *bev, void *arg)
{
    ctl_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    c->reading = true;
    while (!c->closing && !c->waiting) {
        size_t len = 0, have = evbuffer_get_length(in);
        struct evbuffer_ptr from;
        if (c->scanned > have)
            c->scanned = 0;
        evbuffer_ptr_set(in, &from, c->scanned, EVBUFFER_PTR_SET);
        char *line = evbuffer_search_eol(in, &from, NULL, EVBUFFER_EOL_LF).pos >= 0
                         ? evbuffer_readln(in, &len, EVBUFFER_EOL_LF) : NULL;
        if (!line) {
            c->scanned = have;
            c->reading = false;
            if (have >= CONTROL_MAX_LINE) {
                conn_send(c, control_fail("request longer than %d bytes", CONTROL_MAX_LINE));
                conn_close_after_write(c);
            }
            return;
        }
        c->scanned = 0;
        if (len >= CONTROL_MAX_LINE) {
            free(line);
            c->reading = false;
            conn_send(c, control_fail("request longer than %d bytes", CONTROL_MAX_LINE));
            conn_close_after_write(c);
            return;
        }
        json_error_t je;
        json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
        free(line);
        if (!req) {
            conn_send(c, control_fail("not JSON: %s", je.text));
            continue;
        }
        /* One request at a time: the next waits for this one's answer. */
        c->waiting = true;
        bufferevent_disable(c->bev, EV_READ);
        xmppd_ctl_request *r = handle(req, conn_answer, c);
        json_decref(req);
        if (c->waiting)
            c->req = r;
        else if (!c->closing)
            bufferevent_enable(c->bev, EV_READ);
    }
    c->reading = false;
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg)
{
    ctl_conn *c = arg;
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
        evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        conn_close_after_write(c); /* the peer half-closed: finish the answer */
        return;
    }
    conn_free(c);
}

/* Only root and the server's own user may use the socket (its mode says
 * the same; this also holds when the file's folder is shared). */
static bool peer_allowed(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return false;
    return cred.uid == 0 || cred.uid == geteuid();
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct bufferevent *bev = bufferevent_socket_new(loop_base(), fd, BEV_OPT_CLOSE_ON_FREE);
    ctl_conn *c = bev ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        if (bev)
            bufferevent_free(bev);
        else
            evutil_closesocket(fd);
        return;
    }
    c->bev = bev;
    c->next = g_conns;
    if (g_conns)
        g_conns->prev = c;
    g_conns = c;
    g_n_conns++;
    bufferevent_setcb(bev, on_conn_read, on_conn_write, on_conn_event, c);
    struct timeval idle = { CONTROL_IDLE_SECONDS, 0 };
    bufferevent_set_timeouts(bev, &idle, &idle);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    if (!peer_allowed(fd)) {
        log_kernel("control", XMPPD_LOG_WARN, "refused a connection from another user");
        conn_send(c, control_fail("permission denied: only the server's user may use this socket"));
        conn_close_after_write(c);
    } else if (g_n_conns > CONTROL_MAX_CONNS) {
        conn_send(c, control_fail("too many control connections (%d at most)", CONTROL_MAX_CONNS));
        conn_close_after_write(c);
    }
}

/* ---- the listening socket ---------------------------------------------------------------- */

/* Is a server answering on path? */
static bool someone_listens(const struct sockaddr_un *sun)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool yes = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
    close(fd);
    return yes;
}

int control_start(const xmppd_config *cfg, char *err, size_t errlen)
{
    register_builtins(); /* modules run them too (xmppd_ctl_run), socket or not */
    const char *path = cfg->control_socket;
    if (!path)
        return 0;
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "%s: control_socket: %s is longer than the %zu bytes a Unix socket "
                 "path may have", cfg->path, path, sizeof(sun.sun_path) - 1);
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s: control_socket: %s exists and is not a socket", cfg->path,
                     path);
            return -1;
        }
        if (someone_listens(&sun)) {
            snprintf(err, errlen, "%s: control_socket: a server is already running on %s",
                     cfg->path, path);
            return -1;
        }
        unlink(path); /* left by a server that did not stop cleanly */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
        return -1;
    }
    mode_t old = umask(0177); /* created as 0600: no window with wider rights */
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    int e = errno;
    umask(old);
    if (rc < 0 || chmod(path, 0600) < 0 || listen(fd, 16) < 0 || stat(path, &st) < 0) {
        if (rc == 0)
            e = errno;
        snprintf(err, errlen, "%s: control_socket: cannot listen on %s: %s", cfg->path, path,
                 strerror(e));
        close(fd);
        if (rc == 0)
            unlink(path);
        return -1;
    }
    g_listener = evconnlistener_new(loop_base(), on_accept, NULL,
                                    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (!g_listener || !(g_path = strdup(path))) {
        snprintf(err, errlen, "control socket %s: out of memory", path);
        if (g_listener)
            evconnlistener_free(g_listener);
        else
            close(fd);
        g_listener = NULL;
        unlink(path);
        return -1;
    }
    g_dev = st.st_dev;
    g_ino = st.st_ino;
    log_kernel("control", XMPPD_LOG_INFO, "control socket %s", path);
    return 0;
}

/* Stops listening (connections stay: one may be the request that asked). */
static void listener_close(void)
{
    if (g_listener)
        evconnlistener_free(g_listener);
    g_listener = NULL;
    struct stat st;
    /* remove the file only if it is still ours */
    if (g_path && lstat(g_path, &st) == 0 && st.st_dev == g_dev && st.st_ino == g_ino)
        unlink(g_path);
    free(g_path);
    g_path = NULL;
}

void control_stop(void)
{
    while (g_conns)
        conn_free(g_conns);
    listener_close();
}

/* ---- configuration reload --------------------------------------------------------------- */

static bool same_listeners(const xmppd_config *a, const xmppd_config *b)
{
    if (a->n_listeners != b->n_listeners)
        return false;
    for (size_t i = 0; i < a->n_listeners; i++) {
        const listener_conf *x = &a->listeners[i], *y = &b->listeners[i];
        if (x->type != y->type || x->tls != y->tls || x->port != y->port ||
            strcmp(x->address, y->address) != 0)
            return false;
    }
    return true;
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

int server_reload(char *err, size_t errlen)
{
    xmppd_config *old = g_server.cfg;
    if (!old) {
        snprintf(err, errlen, "the server is not started");
        return -1;
    }
    xmppd_config *cfg = config_read(old->path, err, errlen);
    if (!cfg)
        return -1;
    if (cluster_reload_check(cfg, err, errlen) < 0) {
        config_free(cfg);
        return -1;
    }
    int rc = modules_reconfigure(cfg, err, errlen);
    if (rc < 0) {
        config_free(cfg);
        return -1;
    }
    /* cfg is in force. Listening sockets are opened at start only (they
     * keep their own copy of what they were configured with). */
    if (!same_listeners(old, cfg))
        log_kernel("main", XMPPD_LOG_WARN, "\"listeners\" changed: restart the server to apply");
    if (log_open(cfg->log.file, cfg->log.level) < 0)
        log_kernel("main", XMPPD_LOG_ERROR, "cannot reopen log file %s", cfg->log.file);
    char why[1024];
    tls_stop();
    if (tls_start(why, sizeof(why)) < 0)
        log_kernel("main", XMPPD_LOG_ERROR, "reload: %s", why);
    if (!same_str(g_path, cfg->control_socket)) {
        listener_close();
        if (control_start(cfg, why, sizeof(why)) < 0)
            log_kernel("main", XMPPD_LOG_ERROR, "reload: %s", why);
    }
    component_reconfigured();
    s2s_reload();
    cluster_reload(old, cfg);
    config_free(old);
    if (rc > 0)
        log_kernel("main", XMPPD_LOG_ERROR, "configuration reloaded, but: %s", err);
    else
        log_kernel("main", XMPPD_LOG_INFO, "configuration reloaded");
    return rc;
}
