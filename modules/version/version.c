/* XEP-0092 Software Version: answers jabber:iq:version sent to the host
 * with the server's name, version and (unless show_os is false) the
 * operating system from uname(2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include <xmppd/xmppd.h>

#define VERSION_NS "jabber:iq:version"

typedef struct version_conf {
    bool show_os;
} version_conf;

static const xmppd_option version_options[] = {
    { "show_os", XMPPD_OPT_BOOL, XMPPD_OFF(version_conf, show_os), "true", 0, 0, NULL, 0,
      "include the operating system (uname sysname and release) in the answer" },
    { NULL }
};

/* Per instance (module data, freed by unload): the OS string, computed once
 * at load since uname does not change while we run. */
typedef struct version_state {
    char os[256]; /* "" when hidden or unknown */
} version_state;

static void version_text(xmppd_stanza *parent, const char *name, const char *text)
{
    xmppd_stanza *el = xmppd_stanza_tag(parent, name, NULL);
    if (el)
        xmppd_stanza_add_text(el, text, strlen(text));
}

static int version_on_get(xmppd_event *ev, void *ud)
{
    const version_state *st = ud;
    xmppd_stanza *r = xmppd_stanza_reply(ev->stanza);
    xmppd_stanza *q = r ? xmppd_stanza_tag(r, "query", VERSION_NS) : NULL;
    if (!q) {
        xmppd_stanza_unref(r);
        return XMPPD_FAIL;
    }
    version_text(q, "name", "xmppd");
    version_text(q, "version", xmppd_server_version());
    if (st->os[0])
        version_text(q, "os", st->os);
    xmppd_reply(ev, r);
    return XMPPD_HANDLED;
}

static void version_unload(xmppd_module *m)
{
    free(xmppd_module_data(m));
    xmppd_module_set_data(m, NULL);
}

static int version_load(xmppd_module *m, const void *conf)
{
    const version_conf *c = conf;
    version_state *st = calloc(1, sizeof(*st));
    struct utsname u;
    if (!st)
        return -1;
    xmppd_module_set_data(m, st);
    if (c->show_os && uname(&u) == 0)
        snprintf(st->os, sizeof(st->os), "%s %s", u.sysname, u.release);
    if (xmppd_iq_handle(m, "get", VERSION_NS, XMPPD_IQ_HOST, version_on_get, st) < 0 ||
        xmppd_disco_feature(m, VERSION_NS) < 0) {
        version_unload(m);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(version,
    .version = "1.0",
    .summary = "XEP-0092 Software Version of the server",
    .specs = (const char *const[]){ "XEP-0092", NULL },
    .options = version_options,
    .conf_size = sizeof(version_conf),
    .load = version_load,
    .unload = version_unload);
