/* Small helpers shared by the room service: ids, timestamps, nick checks,
 * per-recipient sending, status codes and error replies. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "muc.h"

static const char *const role_names[] = { "none", "visitor", "participant", "moderator" };
static const char *const aff_names[] = { "outcast", "none", "member", "admin", "owner" };

const char *muc_role_name(muc_role r)
{
    return role_names[r];
}

const char *muc_aff_name(muc_aff a)
{
    return aff_names[a];
}

int muc_role_parse(const char *s)
{
    for (int i = 0; s && i < 4; i++)
        if (strcmp(s, role_names[i]) == 0)
            return i;
    return -1;
}

int muc_aff_parse(const char *s)
{
    for (int i = 0; s && i < 5; i++)
        if (strcmp(s, aff_names[i]) == 0)
            return i;
    return -1;
}

/* XEP-0421: a stable, opaque id per (room, real bare JID) that does not
 * reveal the JID: HMAC-SHA-256 under a persisted service secret. */
void muc_occupant_id(const muc_service *svc, const muc_room *room, const char *bare, char out[48])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    size_t rl = strlen(muc_room_jid(room)), bl = strlen(bare);
    unsigned char *msg = malloc(rl + 1 + bl);
    out[0] = '\0';
    if (!msg)
        return;
    memcpy(msg, muc_room_jid(room), rl);
    msg[rl] = '\0'; /* no room/JID pair can look like another */
    memcpy(msg + rl + 1, bare, bl);
    if (HMAC(EVP_sha256(), svc->secret, sizeof(svc->secret), msg, rl + 1 + bl, mac, &len)) {
        char *b64 = xmppd_base64_encode(mac, len > 30 ? 30 : len); /* 40 characters, no padding */
        if (b64)
            snprintf(out, 48, "%s", b64);
        free(b64);
    }
    free(msg);
}

void muc_stamp(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    size_t n = gmtime_r(&t, &tm) ? strftime(out, 24, "%Y-%m-%dT%H:%M:%S", &tm) : 0;
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

static int digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return -1;
        v = v * 10 + (**p - '0');
    }
    return v;
}

/* CCYY-MM-DDThh:mm:ss[.sss](Z|(+|-)hh:mm), XEP-0082 §3.2 (DateTime). */
int muc_parse_stamp(const char *s, int64_t *ms_r)
{
    const char *p = s;
    struct tm tm = { 0 };
    int year = digits(&p, 4);
    if (year < 0 || *p++ != '-')
        return -1;
    int mon = digits(&p, 2);
    if (mon < 1 || mon > 12 || *p++ != '-')
        return -1;
    int day = digits(&p, 2);
    if (day < 1 || day > 31 || *p++ != 'T')
        return -1;
    int hh = digits(&p, 2);
    if (hh < 0 || hh > 23 || *p++ != ':')
        return -1;
    int mm = digits(&p, 2);
    if (mm < 0 || mm > 59 || *p++ != ':')
        return -1;
    int ss = digits(&p, 2);
    if (ss < 0 || ss > 60)
        return -1;
    int64_t frac = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        for (; *p >= '0' && *p <= '9'; p++, n++)
            if (n < 3)
                frac = frac * 10 + (*p - '0');
        if (n == 0)
            return -1;
        for (; n < 3; n++)
            frac *= 10;
    }
    int offset = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        int oh = digits(&p, 2);
        if (oh < 0 || oh > 23 || *p++ != ':')
            return -1;
        int om = digits(&p, 2);
        if (om < 0 || om > 59)
            return -1;
        offset = sign * (oh * 60 + om) * 60;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    *ms_r = ((int64_t)timegm(&tm) - offset) * 1000 + frac;
    return 0;
}

void muc_random_id(char out[24])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[16];
    if (xmppd_random(r, sizeof(r)) < 0)
        memset(r, 0, sizeof(r));
    for (size_t i = 0; i < sizeof(r); i++)
        out[i] = alphabet[r[i] % (sizeof(alphabet) - 1)];
    out[sizeof(r)] = '\0';
}

void muc_archive_id(int64_t when_ms, char out[MUC_ARCHIVE_ID_SIZE])
{
    /* base32hex: its digits sort in ASCII order like their values */
    static const char digits[] = "0123456789abcdefghijklmnopqrstuv";
    unsigned char r[5];
    if (xmppd_random(r, sizeof(r)) < 0)
        memset(r, 0, sizeof(r));
    uint64_t t = when_ms > 0 ? (uint64_t)when_ms : 0, rnd = 0;
    for (size_t i = 0; i < sizeof(r); i++)
        rnd = rnd << 8 | r[i];
    for (int i = 9; i >= 0; i--, t >>= 5) /* 50 bits of milliseconds */
        out[i] = digits[t & 31];
    for (int i = 17; i >= 10; i--, rnd >>= 5) /* 40 random bits */
        out[i] = digits[rnd & 31];
    out[18] = '\0';
}

size_t muc_utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

void muc_strip(xmppd_stanza *el, const char *name, const char *ns)
{
    xmppd_stanza *c;
    while ((c = xmppd_stanza_child(el, name, ns)))
        xmppd_stanza_remove(el, c);
}

/* XEP-0045 §17.1: not empty, not only spaces; and the service's length. */
const char *muc_nick_invalid(const muc_service *svc, const char *nick)
{
    if (!nick || !*nick || strspn(nick, " ") == strlen(nick))
        return "jid-malformed";
    if (muc_utf8_len(nick) > (size_t)svc->conf->max_nick_length)
        return "not-acceptable";
    return NULL;
}

void muc_send_to(muc_service *svc, const xmppd_stanza *st, const xmppd_jid *to)
{
    /* The copies of one message or presence to a room's occupants are
     * serialised once. */
    xmppd_stanza *c = xmppd_stanza_copy_to(st, to->full);
    if (!c)
        return;
    xmppd_route(svc->host, c);
    xmppd_stanza_unref(c);
}

void muc_add_codes(xmppd_stanza *x, const int *codes)
{
    for (size_t i = 0; codes && codes[i]; i++) {
        xmppd_stanza *s = xmppd_stanza_tag(x, "status", NULL);
        char code[8];
        snprintf(code, sizeof(code), "%d", codes[i]);
        if (s)
            xmppd_stanza_set_attr(s, "code", code);
    }
}

xmppd_stanza *muc_status_x(xmppd_stanza *el, const int *codes)
{
    xmppd_stanza *x = xmppd_stanza_tag(el, "x", NS_MUC_USER);
    if (x)
        muc_add_codes(x, codes);
    return x;
}

xmppd_stanza *muc_reply_query(const xmppd_event *ev, const char *ns, xmppd_stanza **r_out)
{
    xmppd_stanza *r = xmppd_stanza_reply(ev->stanza);
    xmppd_stanza *q = r ? xmppd_stanza_tag(r, "query", ns) : NULL;
    if (!q) {
        xmppd_stanza_unref(r);
        return NULL;
    }
    *r_out = r;
    return q;
}

int muc_error(xmppd_event *ev, const muc_room *room, const char *type, const char *cond,
              const char *text)
{
    const char *t = xmppd_stanza_attr(ev->stanza, "type");
    if (t && (strcmp(t, "error") == 0 ||
              (strcmp(xmppd_stanza_name(ev->stanza), "iq") == 0 && strcmp(t, "result") == 0)))
        return XMPPD_HANDLED;
    xmppd_stanza *e = xmppd_stanza_error_reply(ev->stanza, type, cond, text);
    if (!e)
        return XMPPD_FAIL;
    xmppd_stanza *err = xmppd_stanza_child(e, "error", NULL);
    if (err && room)
        xmppd_stanza_set_attr(err, "by", muc_room_jid(room));
    const char *kind = xmppd_stanza_name(ev->stanza);
    if (strcmp(kind, "presence") == 0) {
        /* §7.2: presence errors echo the <x xmlns=muc/> before the error. */
        xmppd_stanza *x = xmppd_stanza_new("x", NS_MUC);
        if (x && err) {
            xmppd_stanza_ref(err);
            xmppd_stanza_remove(e, err);
            xmppd_stanza_add(e, x);
            xmppd_stanza_add(e, err);
        } else {
            xmppd_stanza_unref(x);
        }
    } else if (strcmp(kind, "message") == 0) {
        /* RFC 6120 §8.3.1: a message error may carry the original payload,
         * so the sender's client can tell which message failed. */
        for (xmppd_stanza *c = xmppd_stanza_first(ev->stanza); c; c = xmppd_stanza_next(c)) {
            if (strcmp(xmppd_stanza_name(c), "error") == 0)
                continue;
            xmppd_stanza *copy = xmppd_stanza_copy(c);
            if (copy && err) {
                xmppd_stanza_ref(err);
                xmppd_stanza_remove(e, err);
                xmppd_stanza_add(e, copy);
                xmppd_stanza_add(e, err);
            } else {
                xmppd_stanza_unref(copy);
            }
        }
    }
    xmppd_reply(ev, e);
    return XMPPD_HANDLED;
}

/* Message rate per occupant: a token bucket of message_burst tokens,
 * refilled at message_rate per minute. */
bool muc_rate_ok(muc_occupant *occ)
{
    const muc_conf *c = occ->room->svc->conf;
    if (c->message_rate <= 0)
        return true;
    uint64_t now = xmppd_now_ms();
    if (occ->tokens < 0)
        occ->tokens = (double)c->message_burst;
    else
        occ->tokens += (double)(now - occ->tokens_at) * (double)c->message_rate / 60000.0;
    if (occ->tokens > (double)c->message_burst)
        occ->tokens = (double)c->message_burst;
    occ->tokens_at = now;
    if (occ->tokens < 1.0)
        return false;
    occ->tokens -= 1.0;
    return true;
}
