/* TLS of socket streams, driven by the stream layer itself: see
 * xstream_io.h. The SSL reads records from the socket bufferevent's input
 * and writes them through xout_socket, so a flush is one SSL_write (one
 * record for everything the turn produced) and one send(2). */
#include <limits.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "net/xstream_io.h"

/* ---- the BIO between the SSL and the socket bufferevent ------------------ */

static int bio_write(BIO *b, const char *data, int len)
{
    xstream *x = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (!x->bev)
        return -1;
    xout_socket(x, data, (size_t)len);
    return len;
}

static int bio_read(BIO *b, char *buf, int len)
{
    xstream *x = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    int n = x->bev && len > 0 ? evbuffer_remove(bufferevent_get_input(x->bev), buf, (size_t)len) : 0;
    if (n <= 0) {
        BIO_set_retry_read(b); /* more comes with the next read event */
        return -1;
    }
    return n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method(void)
{
    static BIO_METHOD *m;
    if (!m && (m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "xstream"))) {
        BIO_meth_set_write(m, bio_write);
        BIO_meth_set_read(m, bio_read);
        BIO_meth_set_ctrl(m, bio_ctrl);
        BIO_meth_set_create(m, bio_create);
    }
    return m;
}

/* ---- handshake, input, output ------------------------------------------------ */

/* The owner hears of a TLS failure (or the peer's close_notify) the way it
 * hears of a socket's, on a later turn: never from inside its own calls. */
static void tls_end(xstream *x, short what)
{
    x->tls = XT_FAILED;
    x->tls_error = ERR_peek_last_error();
    ERR_clear_error();
    bufferevent_disable(x->bev, EV_READ);
    bufferevent_trigger_event(x->bev, what, 0);
}

int xtls_attach(xstream *x, SSL *ssl, bool accepting)
{
    BIO_METHOD *m = bio_method();
    BIO *b = m ? BIO_new(m) : NULL;
    if (!b) {
        SSL_free(ssl);
        return -1;
    }
    BIO_set_data(b, x);
    SSL_set_bio(ssl, b, b);
    if (accepting)
        SSL_set_accept_state(ssl);
    else
        SSL_set_connect_state(ssl);
    x->ssl = ssl;
    x->tls = XT_HANDSHAKE;
    x->tls_error = 0;
    if (!accepting && x->connected)
        xtls_handshake(x); /* the ClientHello */
    return 0;
}

bool xtls_handshake(xstream *x)
{
    if (x->tls != XT_HANDSHAKE)
        return x->tls == XT_OPEN;
    ERR_clear_error();
    int r = SSL_do_handshake(x->ssl);
    if (r == 1) {
        x->tls = XT_OPEN;
        xout_mark(x); /* output that waited for the handshake */
        x->ops->event(x->owner, x->bev, BEV_EVENT_CONNECTED);
        return true;
    }
    int e = SSL_get_error(x->ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        tls_end(x, BEV_EVENT_ERROR);
    return false;
}

void xtls_pump(xstream *x)
{
    char plain[16384]; /* one record; on the stack, as pumps may nest */
    while (x->bev && x->tls == XT_OPEN && x->ops->readable(x->owner)) {
        ERR_clear_error();
        int n = SSL_read(x->ssl, plain, sizeof(plain));
        if (n <= 0) {
            int e = SSL_get_error(x->ssl, n);
            if (e == SSL_ERROR_ZERO_RETURN)
                tls_end(x, BEV_EVENT_EOF); /* close_notify */
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                tls_end(x, BEV_EVENT_ERROR);
            return;
        }
        x->bytes_in += (uint64_t)n;
        if (xs_feed(x->parser, plain, (size_t)n) < 0)
            return;
    }
}

int xtls_write(xstream *x, const char *data, size_t len)
{
    if (len > INT_MAX)
        len = INT_MAX;
    ERR_clear_error();
    /* The BIO takes every byte, so SSL_write completes in one call. */
    if (SSL_write(x->ssl, data, (int)len) == (int)len)
        return 0;
    tls_end(x, BEV_EVENT_ERROR);
    return -1;
}

bool xtls_pending(const xstream *x)
{
    return x->ssl && SSL_pending(x->ssl) > 0;
}
