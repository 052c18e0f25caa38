/* mod_log: an audit log of client stanzas and session events, one JSON
 * object per line (Jansson), to a file (reopened on SIGHUP, for log
 * rotation) or to syslog. Server-wide: one instance sees every host.
 *
 * Stanza lines: {"ts", "host", "event": "stanza", "dir": "in"|"out",
 * "from", "to", "kind", "type", "id", "size"} (+ "body" for messages when
 * `bodies` is on). "in" is what a client sent (after the rate limits), "out"
 * what a client was sent; size is the stanza's serialised size in bytes.
 * Session lines: {"ts", "host", "event": "auth-success"|"auth-failure"|
 * "resource-bound"|"session-closed", "ip", "user"/"jid"}.
 *
 * Administration lines (other modules' log_audit(), audit.h): {"ts",
 * "host", "event": "admin", "via", "actor", "ip", "command", "target",
 * "result"}.
 *
 * Never logged: SASL exchanges (they are not stanzas and no event carries
 * them), passwords, tokens; message bodies only when the operator turns
 * `bodies` on. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <xmppd/xmppd.h>

#include "audit.h"

typedef struct lg_conf {
    const char *output;
    const char *file;
    const char *facility;
    const char *ident;
    bool bodies;
    bool stanzas;
    bool sessions;
    bool admin;
} lg_conf;

static const char *const lg_outputs[] = { "file", "syslog", NULL };
static const char *const lg_facilities[] = { "daemon", "user", "auth", "authpriv", "local0", "local1",
                                             "local2", "local3", "local4", "local5", "local6", "local7",
                                             NULL };
static const int lg_facility_values[] = { LOG_DAEMON, LOG_USER, LOG_AUTH, LOG_AUTHPRIV,
                                          LOG_LOCAL0, LOG_LOCAL1, LOG_LOCAL2, LOG_LOCAL3,
                                          LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7 };

static const xmppd_option lg_options[] = {
    { "output", XMPPD_OPT_ENUM, XMPPD_OFF(lg_conf, output), "file", 0, 0, lg_outputs, 0,
      "Where audit lines go: a file or syslog" },
    { "file", XMPPD_OPT_PATH, XMPPD_OFF(lg_conf, file), "audit.log", 0, 0, NULL, 0,
      "Audit log file (output \"file\"), appended to and reopened on SIGHUP" },
    { "facility", XMPPD_OPT_ENUM, XMPPD_OFF(lg_conf, facility), "daemon", 0, 0, lg_facilities, 0,
      "Syslog facility (output \"syslog\")" },
    { "ident", XMPPD_OPT_STRING, XMPPD_OFF(lg_conf, ident), "xmppd-audit", 0, 0, NULL, 0,
      "Syslog identity (output \"syslog\")" },
    { "bodies", XMPPD_OPT_BOOL, XMPPD_OFF(lg_conf, bodies), "false", 0, 0, NULL, 0,
      "Record message bodies (privacy: off unless the operator must keep them)" },
    { "stanzas", XMPPD_OPT_BOOL, XMPPD_OFF(lg_conf, stanzas), "true", 0, 0, NULL, 0,
      "Record every message, presence and IQ to and from clients" },
    { "sessions", XMPPD_OPT_BOOL, XMPPD_OFF(lg_conf, sessions), "true", 0, 0, NULL, 0,
      "Record logins, failed logins, resource binding and session ends" },
    { "admin", XMPPD_OPT_BOOL, XMPPD_OFF(lg_conf, admin), "true", 0, 0, NULL, 0,
      "Record administrators' actions: XEP-0133 and other ad-hoc commands, admin API calls" },
    { NULL },
};

typedef struct lg_mod {
    xmppd_module *m;
    const lg_conf *conf;
    int fd;          /* file output; -1 when closed */
    bool syslog;
    bool warned;     /* a write failure was reported */
} lg_mod;

/* ---- output ---------------------------------------------------------------- */

static int lg_open(lg_mod *mod)
{
    int fd = open(mod->conf->file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        xmppd_log(mod->m, XMPPD_LOG_ERROR, "cannot open the audit log %s: %s", mod->conf->file,
                  strerror(errno));
        return -1;
    }
    if (mod->fd >= 0)
        close(mod->fd);
    mod->fd = fd;
    mod->warned = false;
    return 0;
}

/* Writes one line (one write(2), so lines never interleave). */
static void lg_emit(lg_mod *mod, json_t *obj)
{
    char *line = obj ? json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(obj);
    if (!line)
        return;
    if (mod->syslog) {
        syslog(LOG_INFO, "%s", line);
    } else if (mod->fd >= 0) {
        size_t len = strlen(line);
        line[len] = '\n'; /* replaces the NUL; written by length */
        ssize_t w = write(mod->fd, line, len + 1);
        if (w != (ssize_t)(len + 1) && !mod->warned) {
            mod->warned = true;
            xmppd_log(mod->m, XMPPD_LOG_ERROR, "cannot write the audit log %s: %s", mod->conf->file,
                      w < 0 ? strerror(errno) : "short write");
        }
    }
    free(line);
}

/* {"ts": "2026-01-02T03:04:05.678Z", "host": h, "event": name} */
static json_t *lg_line(const xmppd_host *h, const char *event)
{
    int64_t ms = xmppd_wallclock_ms();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char ts[96];
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return json_pack("{s:s, s:s?, s:s}", "ts", ts, "host", h ? xmppd_host_name(h) : NULL, "event",
                     event);
}

static void lg_set_str(json_t *o, const char *key, const char *v)
{
    json_object_set_new(o, key, v ? json_string(v) : json_null());
}

/* ---- stanzas ---------------------------------------------------------------- */

static void lg_stanza(lg_mod *mod, const xmppd_event *ev, const char *dir, size_t size,
                      const char *from, const char *to)
{
    const xmppd_stanza *st = ev->stanza;
    const char *kind = xmppd_stanza_name(st);
    json_t *o = lg_line(ev->host, "stanza");
    if (!o)
        return;
    json_object_set_new(o, "dir", json_string(dir));
    lg_set_str(o, "from", from);
    lg_set_str(o, "to", to);
    json_object_set_new(o, "kind", json_string(kind));
    lg_set_str(o, "type", xmppd_stanza_attr(st, "type"));
    lg_set_str(o, "id", xmppd_stanza_attr(st, "id"));
    json_object_set_new(o, "size", json_integer((json_int_t)size));
    if (mod->conf->bodies && strcmp(kind, "message") == 0) {
        const char *body = xmppd_stanza_child_text(st, "body", NULL);
        if (body)
            json_object_set_new(o, "body", json_string(body));
    }
    lg_emit(mod, o);
}

static bool lg_is_stanza(const xmppd_stanza *st)
{
    const char *n = xmppd_stanza_name(st);
    return strcmp(n, "message") == 0 || strcmp(n, "presence") == 0 || strcmp(n, "iq") == 0;
}

/* stanza-in: what a bound client sent ('from' is not stamped yet: the
 * session's JID is what the router will stamp). */
static int lg_on_in(xmppd_event *ev, void *ud)
{
    lg_mod *mod = ud;
    if (!ev->stanza || !lg_is_stanza(ev->stanza))
        return XMPPD_PASS;
    size_t len = 0;
    free(xmppd_stanza_to_string(ev->stanza, XMPPD_NS_CLIENT, &len));
    const xmppd_jid *j = ev->session ? xmppd_session_jid(ev->session) : ev->from;
    lg_stanza(mod, ev, "in", len, j ? j->full : NULL, xmppd_stanza_attr(ev->stanza, "to"));
    return XMPPD_PASS;
}

static int lg_on_out(xmppd_event *ev, void *ud)
{
    lg_mod *mod = ud;
    if (!ev->stanza)
        return XMPPD_PASS;
    const size_t *len = ev->data;
    const xmppd_jid *j = ev->session ? xmppd_session_jid(ev->session) : ev->to;
    const char *to = xmppd_stanza_attr(ev->stanza, "to");
    lg_stanza(mod, ev, "out", len ? *len : 0, xmppd_stanza_attr(ev->stanza, "from"),
              to ? to : j ? j->full : NULL);
    return XMPPD_PASS;
}

/* ---- session events ----------------------------------------------------------- */

static int lg_on_session(xmppd_event *ev, void *ud)
{
    lg_mod *mod = ud;
    json_t *o = lg_line(ev->host, ev->name);
    if (!o)
        return XMPPD_PASS;
    xmppd_session *s = ev->session;
    lg_set_str(o, "ip", s ? xmppd_session_ip(s) : NULL);
    if (strcmp(ev->name, "auth-success") == 0) {
        lg_set_str(o, "user", ev->data); /* the account's localpart */
    } else if (strcmp(ev->name, "auth-failure") != 0) {
        const xmppd_jid *j = s ? xmppd_session_jid(s) : NULL;
        lg_set_str(o, "jid", j ? j->full : NULL);
    }
    lg_emit(mod, o);
    return XMPPD_PASS;
}

/* ---- administration ------------------------------------------------------------ */

static int lg_on_admin(xmppd_event *ev, void *ud)
{
    lg_mod *mod = ud;
    const log_audit_entry *e = ev->data;
    json_t *o = e ? lg_line(ev->host, "admin") : NULL;
    if (!o)
        return XMPPD_PASS;
    lg_set_str(o, "via", e->via);
    lg_set_str(o, "actor", e->actor);
    lg_set_str(o, "ip", e->ip);
    lg_set_str(o, "command", e->command);
    lg_set_str(o, "target", e->target);
    lg_set_str(o, "result", e->result);
    lg_emit(mod, o);
    return XMPPD_PASS;
}

/* SIGHUP: a rotated file is reopened under its name. */
static int lg_on_reload(xmppd_event *ev, void *ud)
{
    lg_mod *mod = ud;
    if (!mod->syslog)
        lg_open(mod);
    return XMPPD_PASS;
}

/* ---- lifecycle ------------------------------------------------------------------ */

static void lg_unload(xmppd_module *m)
{
    lg_mod *mod = xmppd_module_data(m);
    if (!mod)
        return;
    if (mod->fd >= 0)
        close(mod->fd);
    if (mod->syslog)
        closelog();
    free(mod);
    xmppd_module_set_data(m, NULL);
}

static int lg_load(xmppd_module *m, const void *conf)
{
    lg_mod *mod = calloc(1, sizeof(*mod));
    if (!mod)
        return -1;
    mod->m = m;
    mod->conf = conf;
    mod->fd = -1;
    xmppd_module_set_data(m, mod);
    const lg_conf *c = conf;
    int rc = 0;
    if (strcmp(c->output, "syslog") == 0) {
        int fac = LOG_DAEMON;
        for (size_t i = 0; lg_facilities[i]; i++)
            if (strcmp(lg_facilities[i], c->facility) == 0)
                fac = lg_facility_values[i];
        openlog(c->ident, LOG_PID | LOG_NDELAY, fac);
        mod->syslog = true;
    } else {
        rc = lg_open(mod);
    }
    if (rc == 0 && c->stanzas)
        rc = xmppd_hook(m, "stanza-in", lg_on_in, XMPPD_PRIO_GUARD - 10, mod) < 0 ||
                     xmppd_hook(m, "stanza-out", lg_on_out, XMPPD_PRIO_DEFAULT, mod) < 0
                 ? -1
                 : 0;
    static const char *const session_events[] = { "auth-success", "auth-failure", "resource-bound",
                                                   "session-closed" };
    for (size_t i = 0; rc == 0 && c->sessions && i < 4; i++)
        rc = xmppd_hook(m, session_events[i], lg_on_session, XMPPD_PRIO_GUARD, mod);
    if (rc == 0 && c->admin)
        rc = xmppd_hook(m, LOG_AUDIT_EVENT, lg_on_admin, XMPPD_PRIO_DEFAULT, mod);
    if (rc == 0)
        rc = xmppd_hook(m, "config-reloaded", lg_on_reload, XMPPD_PRIO_DEFAULT, mod);
    if (rc < 0) {
        lg_unload(m); /* a refused load gets no unload() call */
        return -1;
    }
    return 0;
}

XMPPD_MODULE(log,
    .version = "1.0",
    .summary = "Audit log of client stanzas, session events and administrators' actions as JSON lines",
    .flags = XMPPD_MOD_GLOBAL,
    .options = lg_options,
    .conf_size = sizeof(lg_conf),
    .load = lg_load,
    .unload = lg_unload);
