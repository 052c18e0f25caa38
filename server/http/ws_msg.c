/* One WebSocket message, one element (RFC 7395 §3.3.3): the messages of a
 * connection are fed to one stream parser inside a synthetic stream root
 * (so restricted XML and the limits are the stream's own), and a message
 * that leaves an element open, holds two, or holds text is
 * <not-well-formed/>. Pure: no I/O (fuzzed by tests/fuzz/fuzz_websocket.c). */
#include <stdlib.h>

#include "http/http.h"
#include "xml/xmlstream.h"

struct ws_msg {
    xs_parser *p;
    unsigned elements;     /* complete elements of the current message */
    xmppd_stanza *el;      /* its first one */
    const char *error;     /* the parser's condition */
    bool failed;
};

static int on_element(void *ud, xmppd_stanza *el)
{
    ws_msg *m = ud;
    if (m->elements++ == 0) {
        m->el = el;
        return 0;
    }
    xmppd_stanza_unref(el);
    return 1;
}

static void on_error(void *ud, const char *condition)
{
    ((ws_msg *)ud)->error = condition;
}

static const xs_callbacks cbs = { .element = on_element, .error = on_error };

ws_msg *ws_msg_new(size_t max_stanza, unsigned max_depth)
{
    static const char root[] = "<stream:stream xmlns='jabber:client' xmlns:stream='" XS_NS_STREAM "'>";
    ws_msg *m = calloc(1, sizeof(*m));
    if (m && (!(m->p = xs_new(&cbs, m, max_stanza, max_depth)) ||
              xs_feed(m->p, root, sizeof(root) - 1) < 0)) {
        ws_msg_free(m);
        m = NULL;
    }
    return m;
}

void ws_msg_free(ws_msg *m)
{
    if (!m)
        return;
    xs_free(m->p);
    free(m);
}

int ws_msg_feed(ws_msg *m, const uint8_t *data, size_t len, xmppd_stanza **el_r,
                const char **cond_r)
{
    *el_r = NULL;
    if (m->failed) {
        *cond_r = "not-well-formed";
        return WS_MSG_STREAM_ERROR;
    }
    if (!http_utf8_valid(data, len)) {
        m->failed = true;
        return WS_MSG_BAD_UTF8;
    }
    m->elements = 0;
    m->el = NULL;
    m->error = NULL;
    int rc = xs_feed(m->p, (const char *)data, len);
    xmppd_stanza *el = m->el;
    m->el = NULL;
    bool blank = true;
    for (size_t i = 0; i < len && blank; i++)
        blank = data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n';
    if (m->error || rc < 0 || m->elements > 1 || xs_depth(m->p) != 1 ||
        (m->elements == 0 && !blank)) {
        xmppd_stanza_unref(el);
        m->failed = true;
        *cond_r = m->error ? m->error : "not-well-formed";
        return WS_MSG_STREAM_ERROR;
    }
    *el_r = el;
    return WS_MSG_OK;
}
