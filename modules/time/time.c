/* XEP-0202 Entity Time: answers urn:xmpp:time sent to the host with the
 * current UTC time (XEP-0082 format). The server reports UTC, so its
 * offset is always +00:00. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <xmppd/xmppd.h>

#define TIME_NS "urn:xmpp:time"

static void time_text(xmppd_stanza *parent, const char *name, const char *text)
{
    xmppd_stanza *el = xmppd_stanza_tag(parent, name, NULL);
    if (el)
        xmppd_stanza_add_text(el, text, strlen(text));
}

/* XEP-0082 DateTime with milliseconds, "2024-05-01T12:00:00.123Z", into buf. */
static void time_utc_now(char *buf, size_t len)
{
    int64_t ms = xmppd_wallclock_ms();
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];
    gmtime_r(&sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", base, (int)(ms % 1000));
}

static int time_on_get(xmppd_event *ev, void *ud)
{
    char utc[48];
    xmppd_stanza *r = xmppd_stanza_reply(ev->stanza);
    xmppd_stanza *t = r ? xmppd_stanza_tag(r, "time", TIME_NS) : NULL;
    if (!t) {
        xmppd_stanza_unref(r);
        return XMPPD_FAIL;
    }
    time_utc_now(utc, sizeof(utc));
    time_text(t, "tzo", "+00:00");
    time_text(t, "utc", utc);
    xmppd_reply(ev, r);
    return XMPPD_HANDLED;
}

static int time_load(xmppd_module *m, const void *conf)
{
    if (xmppd_iq_handle(m, "get", TIME_NS, XMPPD_IQ_HOST, time_on_get, NULL) < 0 ||
        xmppd_disco_feature(m, TIME_NS) < 0)
        return -1;
    return 0;
}

XMPPD_MODULE(time,
    .version = "1.0",
    .summary = "XEP-0202 Entity Time of the server",
    .specs = (const char *const[]){ "XEP-0202", "XEP-0082", NULL },
    .load = time_load);
