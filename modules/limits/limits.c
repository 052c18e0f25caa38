/* mod_limits: rate limits for client traffic, server-wide (one instance).
 *
 *  - per session: token buckets on stanzas and on bytes read;
 *  - per remote address: the same two buckets shared by all its sessions;
 *  - per remote address: failed logins, with a lockout that doubles each
 *    time it is earned again.
 *
 * A stanza over a limit is not routed: the client gets a stanza error
 * <resource-constraint/> of type wait (an error or IQ result is dropped).
 * Throttled stanzas add up in an "overrun" count that drains at the
 * allowed rate; a client that keeps sending at about three times its limit
 * reaches `abuse_factor` times the burst and its stream ends with
 * <policy-violation/>. An address locked out for failed logins has new
 * streams closed with <policy-violation/> before it can authenticate.
 *
 * Buckets hold up to `burst` tokens, refilled at `rate` per second, so a
 * quiet client can send a burst at once and then `rate` per second. */
#define _GNU_SOURCE /* tdestroy */
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

typedef struct lm_conf {
    long long stanzas_per_second, stanza_burst;
    long long bytes_per_second, byte_burst;
    long long ip_stanzas_per_second, ip_stanza_burst;
    long long ip_bytes_per_second, ip_byte_burst;
    long long abuse_factor;
    long long login_failures, login_window, lockout, max_lockout;
} lm_conf;

/* Defaults a public server can ship: well above what people type or what
 * a client does at login (roster, disco, MAM catch-up come in bursts),
 * well below what a spammer or a flood needs. */
static const xmppd_option lm_options[] = {
    { "stanzas_per_second", XMPPD_OPT_INT, XMPPD_OFF(lm_conf, stanzas_per_second), "10", 1, 1000000,
      NULL, 0, "Stanzas a session may send per second, sustained" },
    { "stanza_burst", XMPPD_OPT_INT, XMPPD_OFF(lm_conf, stanza_burst), "50", 1, 10000000, NULL, 0,
      "Stanzas a quiet session may send at once" },
    { "bytes_per_second", XMPPD_OPT_SIZE, XMPPD_OFF(lm_conf, bytes_per_second), "10k", 100, 1LL << 30,
      NULL, 0, "Bytes a session may send per second, sustained" },
    { "byte_burst", XMPPD_OPT_SIZE, XMPPD_OFF(lm_conf, byte_burst), "512k", 1024, 1LL << 32, NULL, 0,
      "Bytes a quiet session may send at once (at least the largest stanza allowed)" },
    { "ip_stanzas_per_second", XMPPD_OPT_INT, XMPPD_OFF(lm_conf, ip_stanzas_per_second), "50", 1,
      10000000, NULL, 0, "Stanzas all sessions from one address may send per second" },
    { "ip_stanza_burst", XMPPD_OPT_INT, XMPPD_OFF(lm_conf, ip_stanza_burst), "250", 1, 100000000, NULL,
      0, "Stanzas all sessions from one quiet address may send at once" },
    { "ip_bytes_per_second", XMPPD_OPT_SIZE, XMPPD_OFF(lm_conf, ip_bytes_per_second), "50k", 100,
      1LL << 32, NULL, 0, "Bytes all sessions from one address may send per second" },
    { "ip_byte_burst", XMPPD_OPT_SIZE, XMPPD_OFF(lm_conf, ip_byte_burst), "2M", 1024, 1LL << 34, NULL, 0,
      "Bytes all sessions from one quiet address may send at once" },
    { "abuse_factor", XMPPD_OPT_INT, XMPPD_OFF(lm_conf, abuse_factor), "2", 1, 1000, NULL, 0,
      "Throttled stanzas (in bursts) that end a stream with policy-violation" },
    { "login_failures", XMPPD_OPT_INT, XMPPD_OFF(lm_conf, login_failures), "10", 1, 100000, NULL, 0,
      "Failed logins from one address within login_window before it is locked out" },
    { "login_window", XMPPD_OPT_DURATION, XMPPD_OFF(lm_conf, login_window), "10m", 1000, 86400000,
      NULL, 0, "Period over which failed logins from an address are counted" },
    { "lockout", XMPPD_OPT_DURATION, XMPPD_OFF(lm_conf, lockout), "1m", 100, 86400000, NULL, 0,
      "First lockout of an address; each further lockout doubles it" },
    { "max_lockout", XMPPD_OPT_DURATION, XMPPD_OFF(lm_conf, max_lockout), "1h", 100, 604800000, NULL,
      0, "Longest lockout" },
    { NULL },
};

typedef struct lm_bucket {
    double tokens;
    double overrun;   /* throttled units, draining at the rate */
    uint64_t at;      /* last refill, monotonic ms */
} lm_bucket;

/* Per session (slot). */
typedef struct lm_sess {
    struct lm_sess *prev, *next; /* every slot, for unload */
    xmppd_session *s;            /* not a reference: unlinked at session-closed */
    lm_bucket stanzas, bytes;
    uint64_t bytes_seen; /* xmppd_session_bytes_in at the last stanza */
} lm_sess;

/* Per remote address. */
typedef struct lm_ip {
    char ip[48];          /* the tree key */
    lm_bucket stanzas, bytes;
    unsigned failures;
    uint64_t window_start;
    uint64_t locked_until;
    uint64_t last_lockout; /* ms of the last lockout earned (doubles) */
    uint64_t last_used;
    int sessions;          /* bound sessions using the buckets */
} lm_ip;

typedef struct lm_mod {
    xmppd_module *m;
    const lm_conf *conf;
    void *ips;            /* tsearch tree of lm_ip * */
    lm_sess *sessions;    /* list of session slots */
    size_t n_ips;
    xmppd_timer *sweep;
    xmppd_metric *hits;   /* xmppd_rate_limit_hits_total{kind} */
} lm_mod;

#define LM_IPS_MAX 200000 /* entries kept; the sweep drops idle ones */
#define LM_SWEEP_MS 60000

/* ---- buckets -------------------------------------------------------------- */

static void lm_refill(lm_bucket *b, double rate, double burst, uint64_t now)
{
    if (b->at == 0) {
        b->tokens = burst;
        b->at = now;
        return;
    }
    double dt = (double)(now - b->at) / 1000.0;
    b->at = now;
    b->tokens += dt * rate;
    if (b->tokens > burst)
        b->tokens = burst;
    b->overrun -= dt * rate;
    if (b->overrun < 0)
        b->overrun = 0;
}

/* Takes n units; false (and counts the overrun) when there are not
 * enough. A byte bucket (debt) takes what was read in any case, since the
 * bytes are in already, and refuses stanzas while it is in debt. Input is
 * counted per read, so the first stanza of a read carries the whole read:
 * a client that sent too much at once gets its first stanza through and
 * the rest refused until the bucket has refilled. */
static bool lm_take(lm_bucket *b, double n, bool debt)
{
    if (debt) {
        bool ok = b->tokens >= 0;
        b->tokens -= n;
        if (!ok)
            b->overrun += n > 0 ? n : 1;
        return ok;
    }
    if (b->tokens >= n) {
        b->tokens -= n;
        return true;
    }
    b->overrun += n;
    return false;
}

static bool lm_full(const lm_bucket *b, double rate, double burst, uint64_t now)
{
    return b->at == 0 || b->tokens + (double)(now - b->at) / 1000.0 * rate >= burst;
}

/* ---- addresses ------------------------------------------------------------ */

static int lm_ip_cmp(const void *a, const void *b)
{
    return strcmp(((const lm_ip *)a)->ip, ((const lm_ip *)b)->ip);
}

static lm_ip *lm_ip_get(lm_mod *mod, const char *ip, bool create)
{
    lm_ip key;
    snprintf(key.ip, sizeof(key.ip), "%s", ip ? ip : "?");
    lm_ip **p = tfind(&key, &mod->ips, lm_ip_cmp);
    if (p || !create)
        return p ? *p : NULL;
    if (mod->n_ips >= LM_IPS_MAX)
        return NULL;
    lm_ip *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    memcpy(e->ip, key.ip, sizeof(e->ip));
    if (!tsearch(e, &mod->ips, lm_ip_cmp)) {
        free(e);
        return NULL;
    }
    mod->n_ips++;
    return e;
}

/* Is the entry worth keeping (state that is not the default)? */
static bool lm_ip_idle(const lm_mod *mod, const lm_ip *e, uint64_t now)
{
    const lm_conf *c = mod->conf;
    return e->sessions == 0 && e->locked_until <= now &&
           (e->failures == 0 || now - e->window_start > (uint64_t)c->login_window) &&
           (e->last_lockout == 0 || now - e->locked_until > (uint64_t)c->max_lockout) &&
           lm_full(&e->stanzas, (double)c->ip_stanzas_per_second, (double)c->ip_stanza_burst, now) &&
           lm_full(&e->bytes, (double)c->ip_bytes_per_second, (double)c->ip_byte_burst, now);
}

typedef struct lm_sweep_ctx {
    lm_mod *mod;
    uint64_t now;
    lm_ip **victims;
    size_t n, cap;
} lm_sweep_ctx;

static void lm_collect(const void *nodep, VISIT which, void *closure)
{
    lm_sweep_ctx *c = closure;
    if (which != postorder && which != leaf)
        return;
    lm_ip *e = *(lm_ip *const *)nodep;
    if (c->n < c->cap && lm_ip_idle(c->mod, e, c->now))
        c->victims[c->n++] = e;
}

static uint64_t lm_on_sweep(void *ud)
{
    lm_mod *mod = ud;
    lm_sweep_ctx c = { mod, xmppd_now_ms(), NULL, 0, mod->n_ips };
    if (c.cap && (c.victims = calloc(c.cap, sizeof(*c.victims)))) {
        twalk_r(mod->ips, lm_collect, &c);
        for (size_t i = 0; i < c.n; i++) {
            tdelete(c.victims[i], &mod->ips, lm_ip_cmp);
            free(c.victims[i]);
            mod->n_ips--;
        }
        free(c.victims);
    }
    return LM_SWEEP_MS;
}

/* ---- stanzas ---------------------------------------------------------------- */

static lm_sess *lm_sess_get(lm_mod *mod, xmppd_session *s)
{
    lm_sess *ls = xmppd_session_get(s, mod->m);
    if (ls)
        return ls;
    if (!(ls = calloc(1, sizeof(*ls))))
        return NULL;
    ls->bytes_seen = xmppd_session_bytes_in(s);
    ls->s = s;
    ls->next = mod->sessions;
    if (mod->sessions)
        mod->sessions->prev = ls;
    mod->sessions = ls;
    xmppd_session_set(s, mod->m, ls);
    lm_ip *e = lm_ip_get(mod, xmppd_session_ip(s), true);
    if (e)
        e->sessions++;
    return ls;
}

/* Answers a throttled stanza with resource-constraint (RFC 6120 §8.3.3.18). */
static void lm_refuse(xmppd_session *s, const xmppd_stanza *st)
{
    const char *n = xmppd_stanza_name(st), *t = xmppd_stanza_attr(st, "type");
    if (strcmp(n, "message") != 0 && strcmp(n, "presence") != 0 && strcmp(n, "iq") != 0)
        return;
    if ((t && strcmp(t, "error") == 0) || (strcmp(n, "iq") == 0 && t && strcmp(t, "result") == 0))
        return;
    xmppd_stanza *e = xmppd_stanza_error_reply(st, "wait", "resource-constraint",
                                               "Rate limit exceeded: slow down");
    if (!e)
        return;
    const xmppd_jid *j = xmppd_session_jid(s);
    xmppd_stanza_set_attr(e, "to", j ? j->full : NULL);
    xmppd_session_write(s, e);
    xmppd_stanza_unref(e);
}

static int lm_on_stanza(xmppd_event *ev, void *ud)
{
    lm_mod *mod = ud;
    xmppd_session *s = ev->session;
    const lm_conf *c = mod->conf;
    if (!s || !ev->stanza)
        return XMPPD_PASS;
    lm_sess *ls = lm_sess_get(mod, s);
    if (!ls)
        return XMPPD_PASS;
    uint64_t now = xmppd_now_ms();
    uint64_t in = xmppd_session_bytes_in(s);
    double bytes = (double)(in - ls->bytes_seen);
    ls->bytes_seen = in;
    lm_ip *e = lm_ip_get(mod, xmppd_session_ip(s), false);

    lm_refill(&ls->stanzas, (double)c->stanzas_per_second, (double)c->stanza_burst, now);
    lm_refill(&ls->bytes, (double)c->bytes_per_second, (double)c->byte_burst, now);
    bool ok = lm_take(&ls->bytes, bytes, true);
    ok = ok && lm_take(&ls->stanzas, 1, false);
    bool abuse = ls->stanzas.overrun > (double)(c->abuse_factor * c->stanza_burst) ||
                 ls->bytes.overrun > (double)(c->abuse_factor * c->byte_burst);
    if (e) {
        e->last_used = now;
        lm_refill(&e->stanzas, (double)c->ip_stanzas_per_second, (double)c->ip_stanza_burst, now);
        lm_refill(&e->bytes, (double)c->ip_bytes_per_second, (double)c->ip_byte_burst, now);
        bool ip_ok = lm_take(&e->bytes, bytes, true);
        ip_ok = ip_ok && lm_take(&e->stanzas, ok ? 1 : 0, false);
        ok = ok && ip_ok;
        abuse = abuse || e->stanzas.overrun > (double)(c->abuse_factor * c->ip_stanza_burst) ||
                e->bytes.overrun > (double)(c->abuse_factor * c->ip_byte_burst);
    }
    if (abuse) {
        xmppd_log(mod->m, XMPPD_LOG_WARN, "%s: rate limit exceeded persistently; closing the stream",
                  xmppd_session_ip(s));
        xmppd_session_close(s, "policy-violation", "Rate limit exceeded persistently");
        xmppd_metric_add(mod->hits, (const char *[]){ "stream_closed" }, 1);
        return XMPPD_HANDLED;
    }
    if (ok)
        return XMPPD_PASS;
    xmppd_metric_add(mod->hits, (const char *[]){ "stanza_refused" }, 1);
    lm_refuse(s, ev->stanza);
    return XMPPD_HANDLED;
}

/* ---- logins ------------------------------------------------------------------ */

static void lm_locked_text(const lm_ip *e, uint64_t now, char *buf, size_t len)
{
    unsigned long long secs = (e->locked_until - now + 999) / 1000;
    snprintf(buf, len, "Too many failed logins from your address; try again in %llu s", secs);
}

static int lm_on_auth_failure(xmppd_event *ev, void *ud)
{
    lm_mod *mod = ud;
    const lm_conf *c = mod->conf;
    if (!ev->session)
        return XMPPD_PASS;
    lm_ip *e = lm_ip_get(mod, xmppd_session_ip(ev->session), true);
    if (!e)
        return XMPPD_PASS;
    uint64_t now = xmppd_now_ms();
    e->last_used = now;
    if (e->failures == 0 || now - e->window_start > (uint64_t)c->login_window) {
        e->failures = 0;
        e->window_start = now;
    }
    e->failures++;
    if (e->locked_until <= now && e->failures >= (unsigned long long)c->login_failures) {
        uint64_t d = (uint64_t)c->lockout;
        /* A lockout earned again soon after the last one lasts twice as long. */
        if (e->last_lockout && now - e->locked_until < (uint64_t)c->max_lockout)
            d = e->last_lockout * 2;
        if (d > (uint64_t)c->max_lockout)
            d = (uint64_t)c->max_lockout;
        e->last_lockout = d;
        e->locked_until = now + d;
        e->failures = 0;
        xmppd_log(mod->m, XMPPD_LOG_WARN, "%s: locked out for %llu s after repeated failed logins",
                  e->ip, (unsigned long long)(d / 1000));
        xmppd_metric_add(mod->hits, (const char *[]){ "login_lockout" }, 1);
    }
    if (e->locked_until > now) {
        char text[128];
        lm_locked_text(e, now, text, sizeof(text));
        xmppd_session_close(ev->session, "policy-violation", text);
    }
    return XMPPD_PASS;
}

/* A locked-out address gets no chance to authenticate on a new stream. */
static int lm_on_features(xmppd_event *ev, void *ud)
{
    lm_mod *mod = ud;
    if (!ev->session || xmppd_session_authenticated(ev->session))
        return XMPPD_PASS;
    lm_ip *e = lm_ip_get(mod, xmppd_session_ip(ev->session), false);
    uint64_t now = xmppd_now_ms();
    if (e && e->locked_until > now) {
        char text[128];
        lm_locked_text(e, now, text, sizeof(text));
        xmppd_session_close(ev->session, "policy-violation", text);
    }
    return XMPPD_PASS;
}

/* Byte counting starts when the resource is bound: stanzas read in the
 * same chunk as the bind request are counted. */
static int lm_on_bound(xmppd_event *ev, void *ud)
{
    if (ev->session)
        lm_sess_get(ud, ev->session);
    return XMPPD_PASS;
}

static int lm_on_closed(xmppd_event *ev, void *ud)
{
    lm_mod *mod = ud;
    if (!ev->session)
        return XMPPD_PASS;
    lm_sess *ls = xmppd_session_get(ev->session, mod->m);
    if (!ls)
        return XMPPD_PASS;
    xmppd_session_set(ev->session, mod->m, NULL);
    if (ls->prev)
        ls->prev->next = ls->next;
    else
        mod->sessions = ls->next;
    if (ls->next)
        ls->next->prev = ls->prev;
    free(ls);
    lm_ip *e = lm_ip_get(mod, xmppd_session_ip(ev->session), false);
    if (e && e->sessions > 0)
        e->sessions--;
    return XMPPD_PASS;
}

/* ---- lifecycle ---------------------------------------------------------------- */

static void lm_unload(xmppd_module *m)
{
    lm_mod *mod = xmppd_module_data(m);
    if (!mod)
        return;
    /* The kernel forgets the session slots; their memory goes here. */
    while (mod->sessions) {
        lm_sess *ls = mod->sessions;
        mod->sessions = ls->next;
        xmppd_session_set(ls->s, m, NULL);
        free(ls);
    }
    tdestroy(mod->ips, free);
    free(mod);
    xmppd_module_set_data(m, NULL);
}

static int lm_load(xmppd_module *m, const void *conf)
{
    lm_mod *mod = calloc(1, sizeof(*mod));
    if (!mod)
        return -1;
    mod->m = m;
    mod->conf = conf;
    xmppd_module_set_data(m, mod);
    static const char *const labels[] = { "kind", NULL };
    mod->hits = xmppd_metric_new(m, "xmppd_rate_limit_hits_total", XMPPD_METRIC_COUNTER,
                                 "Rate limits applied: stanza_refused, stream_closed, login_lockout",
                                 labels, NULL, 0);
    if (xmppd_hook(m, "stanza-in", lm_on_stanza, XMPPD_PRIO_GUARD, mod) < 0 ||
        xmppd_hook(m, "auth-failure", lm_on_auth_failure, XMPPD_PRIO_GUARD, mod) < 0 ||
        xmppd_hook(m, "stream-features", lm_on_features, XMPPD_PRIO_GUARD, mod) < 0 ||
        xmppd_hook(m, "session-closed", lm_on_closed, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "resource-bound", lm_on_bound, XMPPD_PRIO_GUARD, mod) < 0 ||
        !(mod->sweep = xmppd_timer_add(m, LM_SWEEP_MS, lm_on_sweep, mod))) {
        lm_unload(m); /* a refused load gets no unload() call */
        return -1;
    }
    return 0;
}

XMPPD_MODULE(limits,
    .version = "1.0",
    .summary = "Rate limits per session and per address (stanzas, bytes, failed logins)",
    .flags = XMPPD_MOD_GLOBAL,
    .options = lm_options,
    .conf_size = sizeof(lm_conf),
    .load = lm_load,
    .unload = lm_unload);
