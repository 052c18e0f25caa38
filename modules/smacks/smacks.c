/* XEP-0198 Stream Management: acknowledgements, and sessions that survive
 * a lost connection (hibernation, then resumption).
 *
 * Per session (in its slot) the module counts the stanzas it handled from
 * the client (in_h) and keeps every stanza sent to it that the client has
 * not acknowledged (the queue; its length is always sent - acked, in the
 * 2^32 arithmetic of h). When the connection is lost, a resumable session
 * is kept by the kernel ("session-detach") and what is written to it is
 * queued ("session-held"); a <resume/> on a new connection of the same
 * account moves the session there (xmppd_session_resume) and sends again
 * what the client's h says it missed. When a session ends for good, the
 * stanzas it never acknowledged are not lost: chat and normal messages go
 * to the account's bare JID (its other resources, or offline storage), IQ
 * requests are answered with an error, the rest is dropped (§9 of the XEP). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#define SM_NS "urn:xmpp:sm:3"
#define BIND2_NS "urn:xmpp:bind:0" /* XEP-0386 */
#define SM_ID_LEN 24

typedef struct sm_conf {
    long long resume_timeout;   /* ms a lost session waits */
    long long max_resume;       /* ms; a client's max is honoured up to this */
    long long max_unacked;      /* stanzas; more ends the stream */
    long long request_every;    /* ask for an ack every this many stanzas */
    long long request_after;    /* ms: ask for an ack when stanzas waited this long */
    int cluster;                /* SM_CLUSTER_* */
} sm_conf;

/* In a cluster: resumable sessions are replicated in Redis (resumable on
 * any node after their node died), or not (resumable on their node only). */
enum { SM_CLUSTER_REPLICATE = 0, SM_CLUSTER_OFF = 1 };
static const char *const sm_cluster_modes[] = { "replicate", "off", NULL };

static const xmppd_option sm_options[] = {
    { "resume_timeout", XMPPD_OPT_DURATION, XMPPD_OFF(sm_conf, resume_timeout), "5m", 1000, 86400000,
      .doc = "how long a lost session waits to be resumed, when the client asks for no other time" },
    { "max_resume_timeout", XMPPD_OPT_DURATION, XMPPD_OFF(sm_conf, max_resume), "1h", 1000, 86400000,
      .doc = "the longest wait a client may ask for with max (XEP-0198 §5)" },
    { "max_unacked", XMPPD_OPT_INT, XMPPD_OFF(sm_conf, max_unacked), "1000", 10, 100000,
      .doc = "stanzas a client may leave unacknowledged; more ends its stream (policy-violation)" },
    { "request_every", XMPPD_OPT_INT, XMPPD_OFF(sm_conf, request_every), "20", 1, 1000,
      .doc = "the server asks for an acknowledgement (<r/>) every this many unacknowledged stanzas" },
    { "request_after", XMPPD_OPT_DURATION, XMPPD_OFF(sm_conf, request_after), "3s", 100, 3600000,
      .doc = "the server also asks when stanzas have waited this long unacknowledged (when traffic is low)" },
    { "cluster", XMPPD_OPT_ENUM, XMPPD_OFF(sm_conf, cluster), "replicate", 0, 0, sm_cluster_modes,
      XMPPD_OPT_INDEX,
      .doc = "in a cluster: replicate resumable sessions in Redis so another node resumes them "
             "when theirs dies (replicate), or resume them on their own node only (off)" },
    { NULL }
};

typedef struct sm_mod sm_mod;

/* Stream management state of one session: its slot. */
typedef struct sm_sess {
    sm_mod *mod;
    xmppd_session *s;       /* ref */
    struct sm_sess *next;   /* in the resumption table (resumable only) */
    char id[SM_ID_LEN + 1]; /* previd; "" when not resumable */
    uint32_t in_h;          /* stanzas handled from the client */
    uint32_t acked;         /* last h the client acknowledged */
    uint32_t sent;          /* stanzas sent (or held) for the client */
    xmppd_stanza **q;       /* unacknowledged, oldest first: q[head .. head+n) (refs) */
    size_t head, n, cap;
    uint64_t timeout;       /* ms this session waits when lost */
    xmppd_timer *expiry;    /* while hibernated */
    xmppd_timer *ask;       /* request_after: an <r/> for stanzas left unasked */
    bool resumable;
    bool resending;         /* writing the queue again: stanza-out must not count twice */
    bool requested;         /* an <r/> is out and unanswered */
    uint32_t acks_waiting;  /* <a/> answers waiting for storage commits */
    bool released;          /* resumed on another node: ends here quietly */
    xmppd_replica *rep;     /* in a cluster: the replica other nodes resume from */
} sm_sess;

#define SM_BUCKETS 256

struct sm_mod {
    xmppd_module *m;
    bool unloading;             /* the kernel freed the module's timers already */
    const sm_conf *conf;
    xmppd_host *host;
    sm_sess *table[SM_BUCKETS]; /* resumable sessions by id */
};

/* ---- the resumption table -------------------------------------------------- */

static size_t sm_bucket(const char *id)
{
    size_t h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h % SM_BUCKETS;
}

static sm_sess *sm_lookup(sm_mod *mod, const char *id)
{
    for (sm_sess *ss = mod->table[sm_bucket(id)]; ss; ss = ss->next)
        if (strcmp(ss->id, id) == 0)
            return ss;
    return NULL;
}

static void sm_unlist(sm_sess *ss)
{
    if (!ss->id[0])
        return;
    for (sm_sess **pp = &ss->mod->table[sm_bucket(ss->id)]; *pp; pp = &(*pp)->next)
        if (*pp == ss) {
            *pp = ss->next;
            break;
        }
    ss->id[0] = '\0';
}

static void sm_list(sm_sess *ss, const char *id)
{
    snprintf(ss->id, sizeof(ss->id), "%s", id);
    size_t k = sm_bucket(ss->id);
    ss->next = ss->mod->table[k];
    ss->mod->table[k] = ss;
}

/* A fresh random id: 18 random bytes in base64 (URL-safe letters). */
static int sm_new_id(sm_sess *ss)
{
    unsigned char raw[18];
    char *b = xmppd_random(raw, sizeof(raw)) == 0 ? xmppd_base64_encode(raw, sizeof(raw)) : NULL;
    if (!b)
        return -1;
    for (char *p = b; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    sm_list(ss, b);
    free(b);
    return 0;
}

/* ---- the queue -------------------------------------------------------------------- */

static int sm_push(sm_sess *ss, const xmppd_stanza *st)
{
    if (ss->head + ss->n == ss->cap) {
        if (ss->head > 0) {
            memmove(ss->q, ss->q + ss->head, ss->n * sizeof(*ss->q));
            ss->head = 0;
        }
        if (ss->n == ss->cap) {
            size_t cap = ss->cap ? ss->cap * 2 : 16;
            xmppd_stanza **q = realloc(ss->q, cap * sizeof(*q));
            if (!q)
                return -1;
            ss->q = q;
            ss->cap = cap;
        }
    }
    ss->q[ss->head + ss->n++] = xmppd_stanza_ref((xmppd_stanza *)st);
    ss->sent++;
    xmppd_replica_push(ss->rep, ss->sent, st);
    return 0;
}

/* Drops the k oldest (acknowledged) stanzas. */
static void sm_drop(sm_sess *ss, size_t k)
{
    for (size_t i = 0; i < k && ss->n > 0; i++) {
        xmppd_stanza_unref(ss->q[ss->head++]);
        ss->n--;
    }
    if (ss->n == 0)
        ss->head = 0;
}

static void sm_sess_free(sm_sess *ss)
{
    /* ended for good here (or stream management unloads): the replica
     * goes too, unless another node resumed the session */
    xmppd_replica_free(ss->rep, !ss->released);
    sm_unlist(ss);
    if (!ss->mod->unloading) {
        xmppd_timer_cancel(ss->expiry);
        xmppd_timer_cancel(ss->ask);
    }
    sm_drop(ss, ss->n);
    free(ss->q);
    xmppd_session_unref(ss->s);
    free(ss);
}

/* ---- writing to the client ---------------------------------------------------------- */

/* <name xmlns='urn:xmpp:sm:3'/> with up to two attributes (attr NULL:
 * none); NULL on OOM. */
static xmppd_stanza *sm_el(const char *name, const char *attr, const char *value, const char *attr2,
                           const char *value2)
{
    xmppd_stanza *el = xmppd_stanza_new(name, SM_NS);
    if (el && ((attr && xmppd_stanza_set_attr(el, attr, value) < 0) ||
               (attr2 && xmppd_stanza_set_attr(el, attr2, value2) < 0))) {
        xmppd_stanza_unref(el);
        return NULL;
    }
    return el;
}

static xmppd_stanza *sm_el_h(const char *name, uint32_t h, const char *attr2, const char *value2)
{
    char num[16];
    snprintf(num, sizeof(num), "%u", h);
    return sm_el(name, "h", num, attr2, value2);
}

/* An answer goes to the stream, or into the SASL2 <success/> or Bind2
 * <bound/> being built (into). Takes el. */
static void sm_emit(xmppd_session *s, xmppd_stanza *into, xmppd_stanza *el)
{
    if (el && into) {
        xmppd_stanza_add(into, el);
        return;
    }
    if (el)
        xmppd_session_write(s, el);
    xmppd_stanza_unref(el);
}

/* <failed><condition xmlns=stanzas/></failed>, with h when known. */
static void sm_failed(xmppd_session *s, xmppd_stanza *into, const char *cond, const uint32_t *h)
{
    xmppd_stanza *f = h ? sm_el_h("failed", *h, NULL, NULL) : sm_el("failed", NULL, NULL, NULL, NULL);
    if (f && !xmppd_stanza_tag(f, cond, XMPPD_NS_STANZAS)) {
        xmppd_stanza_unref(f);
        return;
    }
    sm_emit(s, into, f);
}

static void sm_request(sm_sess *ss)
{
    if (ss->requested || xmppd_session_detached(ss->s))
        return;
    ss->requested = true;
    sm_emit(ss->s, NULL, sm_el("r", NULL, NULL, NULL, NULL));
}

/* ---- counting what goes out ----------------------------------------------------------- */

/* Traffic stopped short of request_every: the stanzas sent since the last
 * <r/> are asked for anyway, so the queue never waits for the next burst
 * (one <r/> in the same write as the last stanza would have cost as
 * little, but which stanza is the last is known only afterwards). */
static uint64_t sm_ask_late(void *ud)
{
    sm_sess *ss = ud;
    ss->ask = NULL;
    if (ss->n > 0)
        sm_request(ss);
    return 0;
}

static bool is_stanza(const xmppd_stanza *st)
{
    const char *n = xmppd_stanza_name(st);
    return strcmp(n, "message") == 0 || strcmp(n, "presence") == 0 || strcmp(n, "iq") == 0;
}

static void sm_count_out(sm_sess *ss, const xmppd_stanza *st)
{
    const sm_conf *c = ss->mod->conf;
    if (sm_push(ss, st) < 0 || (long long)ss->n > c->max_unacked) {
        xmppd_log(ss->mod->m, XMPPD_LOG_INFO, "%s leaves %zu stanzas unacknowledged: closing",
                  xmppd_session_jid(ss->s) ? xmppd_session_jid(ss->s)->full : "?", ss->n);
        xmppd_session_close(ss->s, "policy-violation", "Too many unacknowledged stanzas");
        return;
    }
    if (ss->resending)
        return;
    if (ss->n % (size_t)c->request_every == 0)
        sm_request(ss);
    else if (!ss->requested && !ss->ask)
        ss->ask = xmppd_timer_add(ss->mod->m, (uint64_t)c->request_after, sm_ask_late, ss);
}

static int sm_on_stanza_out(xmppd_event *ev, void *ud)
{
    sm_mod *mod = ud;
    sm_sess *ss = ev->session ? xmppd_session_get(ev->session, mod->m) : NULL;
    if (ss)
        sm_count_out(ss, ev->stanza);
    return XMPPD_PASS;
}

static int sm_on_held(xmppd_event *ev, void *ud)
{
    sm_mod *mod = ud;
    sm_sess *ss = xmppd_session_get(ev->session, mod->m);
    if (ss && is_stanza(ev->stanza))
        sm_count_out(ss, ev->stanza);
    return XMPPD_PASS;
}

/* ---- what comes in ------------------------------------------------------------------------ */

/* The client acknowledged h: everything up to it leaves the queue. */
static void sm_on_ack(sm_sess *ss, const char *hs)
{
    char *end;
    unsigned long h = hs ? strtoul(hs, &end, 10) : 0;
    uint32_t got = (uint32_t)h, newly = got - ss->acked, outstanding = ss->sent - ss->acked;
    if (!hs || !*hs || *end || h > UINT32_MAX || newly > outstanding) {
        /* XEP-0198 §4: h above what was sent. */
        char text[96];
        snprintf(text, sizeof(text), "Acknowledged %s stanzas, %u sent", hs ? hs : "?", ss->sent);
        xmppd_session_close(ss->s, "undefined-condition", text);
        return;
    }
    sm_drop(ss, newly);
    xmppd_replica_drop(ss->rep, newly);
    ss->acked = got;
    ss->requested = false;
}

static void sm_release(void *ud);

/* <enable/> on a bound stream, or inline in Bind2 (answer into <bound/>). */
static void sm_enable(sm_mod *mod, xmppd_session *s, xmppd_stanza *el, xmppd_stanza *into)
{
    if (xmppd_session_get(s, mod->m)) {
        sm_failed(s, into, "unexpected-request", NULL);
        return;
    }
    sm_sess *ss = calloc(1, sizeof(*ss));
    if (!ss) {
        sm_failed(s, into, "resource-constraint", NULL);
        return;
    }
    ss->mod = mod;
    ss->s = xmppd_session_ref(s);
    const char *resume = xmppd_stanza_attr(el, "resume");
    ss->resumable = resume && (strcmp(resume, "true") == 0 || strcmp(resume, "1") == 0);
    ss->timeout = (uint64_t)mod->conf->resume_timeout;
    const char *max = xmppd_stanza_attr(el, "max");
    char *end;
    unsigned long long want = max ? strtoull(max, &end, 10) : 0;
    if (max && *max && !*end && want > 0)
        ss->timeout = want * 1000 < (unsigned long long)mod->conf->max_resume
                          ? want * 1000 : (uint64_t)mod->conf->max_resume;
    if (ss->resumable && sm_new_id(ss) < 0) {
        free(ss);
        xmppd_session_unref(s);
        sm_failed(s, into, "resource-constraint", NULL);
        return;
    }
    if (ss->resumable && mod->conf->cluster == SM_CLUSTER_REPLICATE)
        ss->rep = xmppd_replica_new(mod->m, s, ss->id, ss->timeout, sm_release, ss);
    xmppd_session_set(s, mod->m, ss);
    char secs[24];
    snprintf(secs, sizeof(secs), "%llu", (unsigned long long)(ss->timeout / 1000));
    xmppd_stanza *en = ss->resumable ? sm_el("enabled", "id", ss->id, "max", secs)
                                     : sm_el("enabled", NULL, NULL, NULL, NULL);
    if (en && ss->resumable && xmppd_stanza_set_attr(en, "resume", "true") < 0) {
        xmppd_stanza_unref(en);
        en = NULL;
    }
    sm_emit(s, into, en);
}

/* An <a/> that waits for storage commits, with the h it answers. */
typedef struct sm_ack_wait {
    sm_mod *mod;
    xmppd_session *s; /* ref */
    uint32_t h;
} sm_ack_wait;

static void sm_on_committed(int status, void *ud)
{
    sm_ack_wait *w = ud;
    if (status == XMPPD_COMMITTED_OK) {
        sm_sess *ss = xmppd_session_get(w->s, w->mod->m);
        if (ss && ss->acks_waiting)
            ss->acks_waiting--;
        if (ss && !xmppd_session_closed(w->s))
            sm_emit(w->s, NULL, sm_el_h("a", w->h, NULL, NULL));
    }
    xmppd_session_unref(w->s);
    free(w);
}

/* XEP-0198 §4: <a/> tells the client how many of its stanzas were
 * handled. A stanza a module keeps for later (offline storage) is handled
 * once its write is committed: the answer waits for the holds taken so
 * far (xmppd_session_hold_commit), so a crash after <a/> loses nothing
 * acknowledged. Answers keep their order (h never goes back): while one
 * waits, later ones wait behind it. */
static void sm_answer_r(sm_mod *mod, xmppd_session *s, sm_sess *ss)
{
    if (!ss->acks_waiting && !xmppd_session_commits_pending(s)) {
        sm_emit(s, NULL, sm_el_h("a", ss->in_h, NULL, NULL));
        return;
    }
    sm_ack_wait *w = malloc(sizeof(*w));
    if (w) {
        *w = (sm_ack_wait){ mod, xmppd_session_ref(s), ss->in_h };
        if (xmppd_session_when_committed(mod->m, s, sm_on_committed, w) == 0) {
            ss->acks_waiting++;
            return;
        }
        xmppd_session_unref(w->s);
        free(w);
    }
    /* OOM: no answer rather than one that could name an uncommitted
     * stanza; the client asks again. */
    xmppd_log(mod->m, XMPPD_LOG_WARN, "out of memory: an <r/> is left unanswered");
}

/* Every element of a bound stream: stanzas are counted, SM elements are
 * ours. */
static int sm_on_stanza_in(xmppd_event *ev, void *ud)
{
    sm_mod *mod = ud;
    xmppd_stanza *el = ev->stanza;
    sm_sess *ss = xmppd_session_get(ev->session, mod->m);
    if (strcmp(xmppd_stanza_ns(el), SM_NS) != 0) {
        if (ss && is_stanza(el)) {
            ss->in_h++;
            xmppd_replica_set_in(ss->rep, ss->in_h);
        }
        return XMPPD_PASS;
    }
    const char *name = xmppd_stanza_name(el);
    if (strcmp(name, "enable") == 0) {
        sm_enable(mod, ev->session, el, NULL);
    } else if (strcmp(name, "r") == 0 && ss) {
        sm_answer_r(mod, ev->session, ss);
    } else if (strcmp(name, "a") == 0 && ss) {
        sm_on_ack(ss, xmppd_stanza_attr(el, "h"));
    } else if (strcmp(name, "resume") == 0) {
        sm_failed(ev->session, NULL, "unexpected-request", NULL); /* already bound */
    } else {
        return XMPPD_PASS; /* not enabled: the kernel ends the stream */
    }
    return XMPPD_HANDLED;
}

/* ---- hibernation and resumption ---------------------------------------------------------- */

static uint64_t sm_expired(void *ud)
{
    sm_sess *ss = ud;
    ss->expiry = NULL; /* freed by the loop as we return 0 */
    xmppd_log(ss->mod->m, XMPPD_LOG_INFO, "%s was not resumed in time",
              xmppd_session_jid(ss->s) ? xmppd_session_jid(ss->s)->full : "?");
    xmppd_session_close(ss->s, NULL, NULL); /* session-closed re-routes the queue */
    return 0;
}

static int sm_on_detach(xmppd_event *ev, void *ud)
{
    sm_mod *mod = ud;
    sm_sess *ss = xmppd_session_get(ev->session, mod->m);
    if (!ss || !ss->resumable)
        return XMPPD_PASS;
    ss->requested = false;
    ss->expiry = xmppd_timer_add(mod->m, ss->timeout, sm_expired, ss);
    return ss->expiry ? XMPPD_HANDLED : XMPPD_PASS;
}

/* Another node resumes this session (its client came back there): it
 * ends here without a word to its contacts and without handling its
 * queue again (the other node sends it); a connection it still had is
 * closed as on a resumption here. */
static void sm_release(void *ud)
{
    sm_sess *ss = ud;
    ss->released = true;
    xmppd_session_close(ss->s, "conflict", "The session was resumed on another node");
}

/* ---- resuming a session of another node (a cluster) ------------------------------------------ */

typedef struct sm_take {
    sm_mod *mod;
    xmppd_session *fresh;   /* ref */
    uint32_t h;             /* the client's */
    char id[SM_ID_LEN + 1];
    /* inline in SASL2 (XEP-0388): the <success/> being built, valid while
     * the hold keeps it waiting; NULL on a plain stream */
    xmppd_stanza *into;
    xmppd_bind2_wait *hold;
} sm_take;

/* The replica, taken over: the login that asked becomes the session,
 * then as in sm_resume: <resumed/>, and what the client's h says it
 * missed, in order. Inline in SASL2, <resumed/> or <failed/> goes into
 * the held <success/>, what is sent again after it, and releasing the
 * hold lets the kernel go on (Bind2 after a failure, XEP-0386 §2.2). */
static void sm_taken(int status, const xmppd_replica_state *st, void *ud)
{
    sm_take *t = ud;
    sm_mod *mod = t->mod;
    xmppd_session *fresh = t->fresh;
    sm_sess *ss = NULL;
    if (status == XMPPD_REPLICA_CANCELLED || xmppd_session_closed(fresh))
        goto done;
    if (status != XMPPD_REPLICA_FOUND) {
        sm_failed(fresh, t->into, "item-not-found", NULL);
        goto done;
    }
    if (xmppd_replica_adopt(fresh, st) < 0 || !(ss = calloc(1, sizeof(*ss)))) {
        xmppd_log(mod->m, XMPPD_LOG_WARN, "%s: cannot take over the session of another node",
                  st->jid);
        sm_failed(fresh, t->into, "unexpected-request", NULL);
        if (xmppd_session_jid(fresh))
            xmppd_session_close(fresh, "internal-server-error", NULL);
        goto done;
    }
    ss->mod = mod;
    ss->s = xmppd_session_ref(fresh);
    ss->resumable = true;
    ss->in_h = st->in_h;
    ss->acked = ss->sent = t->h;
    ss->timeout = st->ttl_ms ? st->ttl_ms : (uint64_t)mod->conf->resume_timeout;
    sm_list(ss, t->id);
    ss->rep = xmppd_replica_new(mod->m, fresh, ss->id, ss->timeout, sm_release, ss);
    xmppd_session_set(fresh, mod->m, ss);
    sm_emit(fresh, t->into, sm_el_h("resumed", ss->in_h, "previd", ss->id));
    size_t n = 0;
    ss->resending = true;
    for (size_t i = 0; i < st->n; i++)
        if ((int32_t)(st->seq[i] - t->h) > 0) { /* after the client's h */
            xmppd_session_write(fresh, st->stanzas[i]);
            n++;
        }
    ss->resending = false;
    if (ss->n)
        sm_request(ss);
    xmppd_log(mod->m, XMPPD_LOG_INFO, "%s resumed from another node (%zu stanzas sent again)",
              st->jid, n);
    /* its contacts were told it went unavailable if its node died */
    xmppd_replica_announce(fresh, st);
done:
    xmppd_bind2_release(t->hold);
    xmppd_session_unref(fresh);
    free(t);
}

/* An id unknown here may be another node's: its replica is asked for
 * (answered later; inline in SASL2, ev's <success/> into waits for it);
 * -1 when there is nothing to ask. */
static int sm_take_remote(sm_mod *mod, xmppd_session *fresh, const char *previd, const char *hs,
                          xmppd_stanza *into, const xmppd_event *ev)
{
    char *end;
    unsigned long h = hs ? strtoul(hs, &end, 10) : 0;
    if (mod->conf->cluster != SM_CLUSTER_REPLICATE || !hs || !*hs || *end || h > UINT32_MAX ||
        strlen(previd) > SM_ID_LEN) /* not an id of ours */
        return -1;
    sm_take *t = calloc(1, sizeof(*t));
    if (!t)
        return -1;
    t->mod = mod;
    t->h = (uint32_t)h;
    snprintf(t->id, sizeof(t->id), "%s", previd);
    t->into = into;
    if (into && !(t->hold = xmppd_bind2_hold(ev))) {
        free(t);
        return -1;
    }
    t->fresh = xmppd_session_ref(fresh);
    if (xmppd_replica_take(mod->m, xmppd_session_host(fresh), xmppd_session_user(fresh), previd,
                           sm_taken, t) < 0) {
        xmppd_bind2_release(t->hold);
        xmppd_session_unref(fresh);
        free(t);
        return -1;
    }
    return 0;
}

/* <resume previd h/> on a new, authenticated, unbound stream, or inline in
 * a SASL2 request (into: the <success/>, ev its "sasl2-inline" event; what
 * is sent again follows it). */
static void sm_resume(sm_mod *mod, xmppd_session *fresh, xmppd_stanza *el, xmppd_stanza *into,
                      const xmppd_event *ev)
{
    const char *previd = xmppd_stanza_attr(el, "previd"), *hs = xmppd_stanza_attr(el, "h");
    sm_sess *ss = previd ? sm_lookup(mod, previd) : NULL;
    const char *user = xmppd_session_user(fresh);
    /* A session of another node (a cluster) is taken over asynchronously
     * (inline in SASL2, <success/> waits for it). */
    if (!ss && previd && user && sm_take_remote(mod, fresh, previd, hs, into, ev) == 0)
        return;
    /* Someone else's id is as unknown as an expired one. */
    if (!ss || !user || !xmppd_session_user(ss->s) || strcmp(user, xmppd_session_user(ss->s)) != 0 ||
        xmppd_session_closed(ss->s)) {
        sm_failed(fresh, into, "item-not-found", NULL);
        return;
    }
    char *end;
    unsigned long h = hs ? strtoul(hs, &end, 10) : 0;
    uint32_t got = (uint32_t)h;
    if (!hs || !*hs || *end || h > UINT32_MAX || got - ss->acked > ss->sent - ss->acked) {
        sm_failed(fresh, into, "bad-request", &ss->in_h);
        return;
    }
    xmppd_session *s = ss->s;
    if (xmppd_session_resume(fresh, s) < 0) {
        sm_failed(fresh, into, "unexpected-request", NULL);
        return;
    }
    if (ss->expiry) {
        xmppd_timer_cancel(ss->expiry);
        ss->expiry = NULL;
    }
    sm_drop(ss, got - ss->acked);
    ss->acked = got;
    ss->requested = false;
    sm_emit(s, into, sm_el_h("resumed", ss->in_h, "previd", ss->id));
    /* Everything the client missed, in order, counted again as it goes. */
    xmppd_stanza **arr = ss->q, **q = ss->q + ss->head;
    size_t n = ss->n;
    ss->q = NULL;
    ss->head = ss->n = ss->cap = 0;
    ss->sent = ss->acked;
    xmppd_replica_restart(ss->rep); /* the queue is pushed again below */
    ss->resending = true;
    for (size_t i = 0; i < n; i++) {
        xmppd_session_write(s, q[i]);
        xmppd_stanza_unref(q[i]);
    }
    ss->resending = false;
    free(arr);
    if (ss->n)
        sm_request(ss);
    xmppd_log(mod->m, XMPPD_LOG_INFO, "%s resumed (%zu stanzas sent again)",
              xmppd_session_jid(s) ? xmppd_session_jid(s)->full : "?", n);
}

static int sm_on_stream_element(xmppd_event *ev, void *ud)
{
    sm_mod *mod = ud;
    xmppd_stanza *el = ev->stanza;
    if (strcmp(xmppd_stanza_ns(el), SM_NS) != 0)
        return XMPPD_PASS;
    const char *name = xmppd_stanza_name(el);
    if (strcmp(name, "resume") == 0 && xmppd_session_authenticated(ev->session))
        sm_resume(mod, ev->session, el, NULL, ev);
    else if (strcmp(name, "enable") == 0 && xmppd_session_authenticated(ev->session))
        sm_failed(ev->session, NULL, "unexpected-request", NULL); /* XEP-0198 §3: bind first */
    else
        return XMPPD_PASS;
    return XMPPD_HANDLED;
}

static int sm_on_features(xmppd_event *ev, void *ud)
{
    if (ev->session && xmppd_session_authenticated(ev->session))
        xmppd_stanza_tag(ev->stanza, "sm", SM_NS);
    return XMPPD_PASS;
}

/* ---- SASL2 (XEP-0388) and Bind2 (XEP-0386) inline ------------------------------------------ */

static bool is_sm(const xmppd_stanza *el, const char *name)
{
    return strcmp(xmppd_stanza_ns(el), SM_NS) == 0 && strcmp(xmppd_stanza_name(el), name) == 0;
}

/* <resume/> inside <authenticate/>: the SASL2 <inline/> feature says so. */
static int sm_on_sasl2_features(xmppd_event *ev, void *ud)
{
    xmppd_stanza_tag(ev->stanza, "sm", SM_NS);
    return XMPPD_PASS;
}

/* <enable/> inside Bind2's <bind/>. */
static int sm_on_bind2_features(xmppd_event *ev, void *ud)
{
    xmppd_stanza *f = xmppd_stanza_tag(ev->stanza, "feature", BIND2_NS);
    if (f)
        xmppd_stanza_set_attr(f, "var", SM_NS);
    return XMPPD_PASS;
}

/* XEP-0198 with XEP-0388: <resumed/> or <failed/> inside <success/>; after
 * a failure the kernel goes on with Bind2 (XEP-0386 §2.2). */
static int sm_on_sasl2_inline(xmppd_event *ev, void *ud)
{
    if (!is_sm(ev->stanza, "resume"))
        return XMPPD_PASS;
    sm_resume(ud, ev->session, ev->stanza, ev->data, ev);
    return XMPPD_HANDLED;
}

/* XEP-0386 §2.2: <enabled/> (or <failed/>) inside <bound/>. */
static int sm_on_bind2_inline(xmppd_event *ev, void *ud)
{
    if (is_sm(ev->stanza, "enable"))
        sm_enable(ud, ev->session, ev->stanza, ev->data);
    return XMPPD_PASS;
}

/* ---- the end of a session: nothing unacknowledged is lost ------------------------------------ */

/* §9: what the client of jid never acknowledged. */
static void sm_reroute(sm_mod *mod, const xmppd_jid *jid, xmppd_stanza *st)
{
    const char *name = xmppd_stanza_name(st), *type = xmppd_stanza_attr(st, "type");
    if (!jid)
        return;
    if (strcmp(name, "message") == 0 && (!type || strcmp(type, "chat") == 0 || strcmp(type, "normal") == 0) &&
        xmppd_stanza_child(st, "body", NULL)) {
        xmppd_stanza *copy = xmppd_stanza_copy(st);
        if (copy && xmppd_stanza_set_attr(copy, "to", jid->bare) == 0)
            xmppd_route(mod->host, copy);
        xmppd_stanza_unref(copy);
    } else if (strcmp(name, "iq") == 0 && type && (strcmp(type, "get") == 0 || strcmp(type, "set") == 0)) {
        xmppd_stanza *e = xmppd_stanza_error_reply(st, NULL, "service-unavailable", NULL);
        if (e && !xmppd_stanza_attr(e, "from"))
            xmppd_stanza_set_attr(e, "from", jid->full);
        if (e && xmppd_stanza_attr(e, "to"))
            xmppd_route(mod->host, e);
        xmppd_stanza_unref(e);
    }
}

static int sm_on_closed(xmppd_event *ev, void *ud)
{
    sm_mod *mod = ud;
    sm_sess *ss = xmppd_session_get(ev->session, mod->m);
    if (!ss)
        return XMPPD_PASS;
    xmppd_session_set(ev->session, mod->m, NULL);
    sm_unlist(ss);
    size_t n = ss->released ? 0 : ss->n; /* resumed elsewhere: it goes on there */
    for (size_t i = 0; i < n; i++)
        sm_reroute(mod, xmppd_session_jid(ev->session), ss->q[ss->head + i]);
    if (n)
        xmppd_log(mod->m, XMPPD_LOG_DEBUG, "%zu unacknowledged stanzas of %s handled again", n,
                  xmppd_session_jid(ev->session) ? xmppd_session_jid(ev->session)->full : "?");
    sm_sess_free(ss);
    return XMPPD_PASS;
}

/* A session of a dead node of the cluster that nobody resumed: it ends
 * here as it would have there (§9). */
static int sm_on_replica_expired(xmppd_event *ev, void *ud)
{
    const xmppd_replica_state *st = ev->data;
    xmppd_jid *jid = st ? xmppd_jid_parse(st->jid) : NULL;
    for (size_t i = 0; jid && i < st->n; i++)
        sm_reroute(ud, jid, st->stanzas[i]);
    xmppd_jid_free(jid);
    return XMPPD_PASS;
}

/* ---- module ---------------------------------------------------------------------------------- */

static int sm_free_slot(xmppd_session *s, void *ud)
{
    sm_mod *mod = ud;
    sm_sess *ss = xmppd_session_get(s, mod->m);
    if (ss) {
        xmppd_session_set(s, mod->m, NULL);
        sm_sess_free(ss);
    }
    return 0;
}

static void sm_unload(xmppd_module *m)
{
    sm_mod *mod = xmppd_module_data(m);
    if (!mod)
        return;
    /* The kernel cancelled (and freed) the timers; sessions of this host
     * keep running without stream management (their clients can enable
     * it on the next connection). */
    mod->unloading = true;
    xmppd_host_sessions(mod->host, sm_free_slot, mod);
    free(mod);
    xmppd_module_set_data(m, NULL);
}

static int sm_load(xmppd_module *m, const void *conf)
{
    sm_mod *mod = calloc(1, sizeof(*mod));
    if (!mod)
        return -1;
    mod->m = m;
    mod->conf = conf;
    mod->host = xmppd_module_host(m);
    xmppd_module_set_data(m, mod);
    /* Counting comes before every other module sees a stanza: a stanza a
     * guard drops was still received. */
    if (xmppd_hook(m, "stanza-in", sm_on_stanza_in, XMPPD_PRIO_GUARD + 200, mod) < 0 ||
        xmppd_hook(m, "stream-element", sm_on_stream_element, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "stream-features", sm_on_features, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "stanza-out", sm_on_stanza_out, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "session-held", sm_on_held, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "session-detach", sm_on_detach, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "session-closed", sm_on_closed, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "replica-expired", sm_on_replica_expired, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "sasl2-features", sm_on_sasl2_features, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "sasl2-inline", sm_on_sasl2_inline, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "bind2-features", sm_on_bind2_features, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "bind2-inline", sm_on_bind2_inline, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_disco_feature(m, SM_NS) < 0) {
        free(mod);
        xmppd_module_set_data(m, NULL);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(smacks,
    .version = "1.0",
    .summary = "XEP-0198 stream management: acknowledgements, hibernation and resumption",
    .specs = (const char *const[]){ "XEP-0198", NULL },
    .options = sm_options,
    .conf_size = sizeof(sm_conf),
    .load = sm_load,
    .unload = sm_unload);
