/* What an inactive client is spared, and the queue that spares it
 * (csi_rules.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csi_rules.h"

#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"
#define NS_HINTS "urn:xmpp:hints"

static bool is(const char *a, const char *b)
{
    return a && strcmp(a, b) == 0;
}

/* Payloads that make a message something the user sees (or hears) now. */
static bool urgent_payload(const xmppd_stanza *c)
{
    static const struct {
        const char *name, *ns; /* name NULL: any element of ns */
    } urgent[] = {
        { "body", NULL }, { "subject", NULL },
        { "encryption", "urn:xmpp:eme:0" },                    /* XEP-0380 */
        { "encrypted", "eu.siacs.conversations.axolotl" },     /* OMEMO (legacy) */
        { "encrypted", "urn:xmpp:omemo:2" },                   /* OMEMO */
        { "openpgp", "urn:xmpp:openpgp:0" },                   /* XEP-0373 */
        { "x", "jabber:x:encrypted" },                         /* XEP-0027 */
        { "store", NS_HINTS },                                 /* XEP-0334 */
        { "x", "jabber:x:conference" },                        /* XEP-0249 */
        { NULL, "urn:xmpp:jingle-message:0" },                 /* XEP-0353 calls */
        { NULL, "urn:xmpp:jingle-message:1" },
    };
    const char *name = xmppd_stanza_name(c), *ns = xmppd_stanza_ns(c);
    for (size_t i = 0; i < sizeof(urgent) / sizeof(urgent[0]); i++)
        if ((!urgent[i].name || is(name, urgent[i].name)) &&
            (!urgent[i].ns ? is(ns, XMPPD_NS_CLIENT) || is(ns, XMPPD_NS_SERVER) : is(ns, urgent[i].ns)))
            return true;
    /* a room forwarding an invitation (XEP-0045 §7.8.2) */
    return is(name, "x") && is(ns, "http://jabber.org/protocol/muc#user") &&
           xmppd_stanza_child(c, "invite", NULL);
}

/* Only chat states (with a thread or hints around them)? */
static bool chat_state_only(const xmppd_stanza *msg)
{
    bool state = false;
    for (const xmppd_stanza *c = xmppd_stanza_first(msg); c; c = xmppd_stanza_next(c)) {
        const char *ns = xmppd_stanza_ns(c);
        if (is(ns, NS_CHATSTATES))
            state = true;
        else if (!is(ns, NS_HINTS) && !is(xmppd_stanza_name(c), "thread"))
            return false;
    }
    return state;
}

static enum csi_class message_class(const xmppd_stanza *msg, bool carbon)
{
    if (is(xmppd_stanza_attr(msg, "type"), "error"))
        return CSI_URGENT;
    for (const xmppd_stanza *c = xmppd_stanza_first(msg); c; c = xmppd_stanza_next(c)) {
        if (urgent_payload(c))
            return CSI_URGENT;
        /* a carbon (XEP-0280) is as urgent as the message it carries */
        if (!carbon && is(xmppd_stanza_ns(c), NS_CARBONS) &&
            (is(xmppd_stanza_name(c), "received") || is(xmppd_stanza_name(c), "sent"))) {
            const xmppd_stanza *f = xmppd_stanza_child(c, "forwarded", NS_FORWARD);
            const xmppd_stanza *inner = f ? xmppd_stanza_child(f, "message", NULL) : NULL;
            if (inner && message_class(inner, true) == CSI_URGENT)
                return CSI_URGENT;
        }
    }
    return CSI_HOLD;
}

static void make_key(char *key, size_t keylen, char kind, const char *from)
{
    if (!from || strlen(from) + 3 > keylen) {
        key[0] = '\0';
        return;
    }
    snprintf(key, keylen, "%c %s", kind, from);
}

enum csi_class csi_classify(const xmppd_stanza *st, char *key, size_t keylen)
{
    const char *name = xmppd_stanza_name(st), *type = xmppd_stanza_attr(st, "type");
    key[0] = '\0';
    if (is(name, "presence")) {
        if (!type || is(type, "unavailable")) {
            make_key(key, keylen, 'p', xmppd_stanza_attr(st, "from"));
            return CSI_HOLD;
        }
        /* subscription requests and answers, probes: someone waits */
        return is(type, "error") ? CSI_HOLD : CSI_URGENT;
    }
    if (!is(name, "message"))
        return CSI_URGENT; /* IQs (someone waits for the answer) and anything else */
    enum csi_class c = message_class(st, false);
    if (c == CSI_HOLD && chat_state_only(st))
        make_key(key, keylen, 'c', xmppd_stanza_attr(st, "from"));
    return c;
}

int csi_inline_state(const xmppd_stanza *el)
{
    if (!el || !is(xmppd_stanza_ns(el), CSI_NS))
        return -1;
    const char *name = xmppd_stanza_name(el);
    return is(name, "inactive") ? 1 : is(name, "active") ? 0 : -1;
}

/* ---- the queue ---------------------------------------------------------------------- */

#define CSI_BUCKETS 64

typedef struct csi_node {
    struct csi_node *prev, *next; /* arrival order */
    struct csi_node *hnext;       /* same bucket */
    void *item;
    char *key;                    /* NULL: none */
    size_t bucket;
} csi_node;

struct csi_queue {
    csi_node *head, *tail;
    csi_node *buckets[CSI_BUCKETS];
    size_t n;
};

static size_t key_bucket(const char *key)
{
    uint32_t h = 2166136261u;
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 16777619u;
    return h % CSI_BUCKETS;
}

csi_queue *csi_queue_new(void)
{
    return calloc(1, sizeof(csi_queue));
}

void csi_queue_free(csi_queue *q)
{
    for (csi_node *n = q ? q->head : NULL, *next; n; n = next) {
        next = n->next;
        free(n->key);
        free(n);
    }
    free(q);
}

size_t csi_queue_len(const csi_queue *q)
{
    return q ? q->n : 0;
}

static void unlink_node(csi_queue *q, csi_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail = n->prev;
    if (n->key)
        for (csi_node **pp = &q->buckets[n->bucket]; *pp; pp = &(*pp)->hnext)
            if (*pp == n) {
                *pp = n->hnext;
                break;
            }
    q->n--;
}

static csi_node *find_key(const csi_queue *q, const char *key, size_t bucket)
{
    for (csi_node *n = q->buckets[bucket]; n; n = n->hnext)
        if (strcmp(n->key, key) == 0)
            return n;
    return NULL;
}

int csi_queue_push(csi_queue *q, void *item, const char *key, void **replaced_r)
{
    *replaced_r = NULL;
    csi_node *n = calloc(1, sizeof(*n));
    if (!n || (key && *key && !(n->key = strdup(key)))) {
        free(n);
        return -1;
    }
    n->item = item;
    if (n->key) {
        n->bucket = key_bucket(n->key);
        csi_node *old = find_key(q, n->key, n->bucket);
        if (old) {
            unlink_node(q, old);
            *replaced_r = old->item;
            free(old->key);
            free(old);
        }
        n->hnext = q->buckets[n->bucket];
        q->buckets[n->bucket] = n;
    }
    n->prev = q->tail;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    q->n++;
    return 0;
}

void *csi_queue_pop(csi_queue *q)
{
    csi_node *n = q->head;
    if (!n)
        return NULL;
    unlink_node(q, n);
    void *item = n->item;
    free(n->key);
    free(n);
    return item;
}
