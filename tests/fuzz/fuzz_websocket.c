/* libFuzzer target: WebSocket frames from a client, as the server reads
 * them: wslay's frame decoder (masking, fragmentation, control frames,
 * lengths) in a server context fed with the input, and every complete text
 * message through the RFC 7395 message check (UTF-8, one whole element,
 * restricted XML, limits: server/http/ws_msg.c). Checks what ws.c relies
 * on: an accepted message yields at most one element, a refused one names
 * a stream error condition, and after a refusal nothing is accepted. */
#include <stdint.h>
#include <string.h>
#include <wslay/wslay.h>

#include "http/http.h"

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

typedef struct feed {
    const uint8_t *data;
    size_t len, at;
    ws_msg *msgs;
    bool failed;
} feed;

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    feed *f = ud;
    if (f->at == f->len) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = f->len - f->at < len ? f->len - f->at : len;
    /* Short reads, as a socket gives them. */
    if (n > 7 && (f->data[f->at] & 1))
        n = 7;
    memcpy(buf, f->data + f->at, n);
    f->at += n;
    return (ssize_t)n;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    return (ssize_t)len; /* pongs and closes go nowhere */
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud)
{
    feed *f = ud;
    if (arg->opcode != WSLAY_TEXT_FRAME)
        return;
    xmppd_stanza *el = NULL;
    const char *cond = NULL;
    int rc = ws_msg_feed(f->msgs, arg->msg, arg->msg_length, &el, &cond);
    if (rc == WS_MSG_OK) {
        check(!f->failed);
        xmppd_stanza_unref(el);
    } else {
        check(rc == WS_MSG_BAD_UTF8 || (rc == WS_MSG_STREAM_ERROR && cond && *cond));
        check(el == NULL);
        f->failed = true;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = on_recv, .send_callback = on_send, .on_msg_recv_callback = on_msg,
    };
    feed f = { data, size, 0, ws_msg_new(65536, 32), false };
    wslay_event_context_ptr ctx;
    check(f.msgs != NULL);
    if (wslay_event_context_server_init(&ctx, &cbs, &f) == 0) {
        wslay_event_config_set_max_recv_msg_length(ctx, 65536);
        for (int i = 0; i < 64 && f.at < f.len && wslay_event_want_read(ctx); i++) {
            if (wslay_event_recv(ctx) != 0)
                break;
            wslay_event_send(ctx);
        }
        wslay_event_context_free(ctx);
    }
    ws_msg_free(f.msgs);
    return 0;
}
