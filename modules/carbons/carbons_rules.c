/* Which messages are carbon-copied and how a copy looks (carbons_rules.h). */
#include <stdlib.h>
#include <string.h>

#include "carbons_rules.h"

static bool is(const char *a, const char *b)
{
    return a && strcmp(a, b) == 0;
}

const xmppd_stanza *carbons_wrapper_of(const xmppd_stanza *msg)
{
    const xmppd_stanza *w = xmppd_stanza_child(msg, "received", CARBONS_NS);
    return w ? w : xmppd_stanza_child(msg, "sent", CARBONS_NS);
}

xmppd_stanza *carbons_private_of(const xmppd_stanza *msg)
{
    return xmppd_stanza_child(msg, "private", CARBONS_NS);
}

bool carbons_eligible(const xmppd_stanza *msg)
{
    if (!is(xmppd_stanza_name(msg), "message") || carbons_private_of(msg) ||
        xmppd_stanza_child(msg, "no-copy", CARBONS_NS_HINTS) || carbons_wrapper_of(msg))
        return false;
    const char *type = xmppd_stanza_attr(msg, "type");
    if (!type)
        type = "normal";
    const xmppd_stanza *muc = xmppd_stanza_child(msg, "x", CARBONS_NS_MUC_USER);
    if (muc)
        /* A room's private messages are the room's business; an invitation
         * the room forwards is the user's (XEP-0045 §7.8.2). */
        return xmppd_stanza_child(muc, "invite", NULL) != NULL && !is(type, "groupchat") &&
               !is(type, "error");
    if (is(type, "chat"))
        return true;
    return is(type, "normal") && xmppd_stanza_child(msg, "body", NULL) != NULL;
}

/* A copy of msg in jabber:client: a message from another server is in
 * jabber:server, which inside <forwarded/> would be written out as such on
 * the client's stream. Serialising it for a client stream and reading it
 * back re-homes every element that followed the stream's namespace. */
static xmppd_stanza *client_copy(const xmppd_stanza *msg)
{
    if (is(xmppd_stanza_ns(msg), XMPPD_NS_CLIENT))
        return xmppd_stanza_copy(msg);
    size_t len;
    char *xml = xmppd_stanza_to_string(msg, XMPPD_NS_CLIENT, &len);
    xmppd_stanza *c = xml ? xmppd_stanza_from_string(xml, len, XMPPD_NS_CLIENT) : NULL;
    free(xml);
    return c;
}

xmppd_stanza *carbons_wrap(const xmppd_stanza *msg, const char *dir, const char *account,
                           const char *to)
{
    xmppd_stanza *copy = client_copy(msg);
    xmppd_stanza *w = copy ? xmppd_stanza_new("message", XMPPD_NS_CLIENT) : NULL;
    xmppd_stanza *d = w ? xmppd_stanza_tag(w, dir, CARBONS_NS) : NULL;
    xmppd_stanza *f = d ? xmppd_stanza_tag(d, "forwarded", CARBONS_NS_FORWARD) : NULL;
    if (!f) {
        xmppd_stanza_unref(copy);
        xmppd_stanza_unref(w);
        return NULL;
    }
    xmppd_stanza_add(f, copy); /* f owns it now */
    const char *type = xmppd_stanza_attr(msg, "type");
    if (xmppd_stanza_set_attr(w, "from", account) < 0 || xmppd_stanza_set_attr(w, "to", to) < 0 ||
        (type && xmppd_stanza_set_attr(w, "type", type) < 0)) {
        xmppd_stanza_unref(w);
        return NULL;
    }
    return w;
}

bool carbons_inline_enable(const xmppd_stanza *el)
{
    return el && is(xmppd_stanza_name(el), "enable") && is(xmppd_stanza_ns(el), CARBONS_NS);
}
