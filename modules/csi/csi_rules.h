/* The pure parts of mod_csi (XEP-0352): what an inactive client needs at
 * once, and the queue of what it does not, where a newer stanza replaces an
 * older one of the same kind from the same sender. No kernel calls beyond
 * stanza.h: unit-tested on their own (tests/unit/test_csi.c). */
#ifndef CSI_RULES_H
#define CSI_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include <xmppd/stanza.h>

#define CSI_NS "urn:xmpp:csi:0"
#define CSI_KEY_MAX 3100 /* a kind tag and a full JID (3 parts of at most 1023 bytes) */

enum csi_class {
    CSI_URGENT, /* goes at once, after everything held before it */
    CSI_HOLD,   /* waits until the client is active (or something urgent comes) */
};

/* Classifies a stanza about to be written to an inactive client:
 *   urgent: IQs; presence subscription requests and answers; messages
 *     with a body, a subject, an encrypted payload (OMEMO, OpenPGP, XEP-0380
 *     <encryption/>), a XEP-0334 <store/> hint, a group chat invitation or
 *     a call (XEP-0353); errors; and carbons (XEP-0280) of any of these;
 *     anything that is not a stanza.
 *   held: available/unavailable presence, presence errors, chat states,
 *     receipts, markers, headlines (PEP events), and carbons of these.
 * For held stanzas a newer one replaces, key[] names what it replaces: the
 * same sender's (full JID) presence ("p " + from), or its bare chat-state
 * notification ("c " + from); key[0] is '\0' when nothing replaces it.
 * key has keylen bytes (CSI_KEY_MAX fit any JID). */
enum csi_class csi_classify(const xmppd_stanza *st, char *key, size_t keylen);

/* Bind2 (XEP-0386): 1 when el, one child of the client's <bind/>, asks for
 * the inactive state, 0 for the active one, -1 when it is not CSI's. */
int csi_inline_state(const xmppd_stanza *el);

/* ---- the queue ---------------------------------------------------------------------- */

/* Items in arrival order, opaque to the queue (the module holds xmppd_held
 * handles); an item may carry a key, and a newer item with an equal key
 * takes the older one's place at the end. Owned by the caller. */
typedef struct csi_queue csi_queue;

csi_queue *csi_queue_new(void); /* NULL on OOM */
/* Frees the queue; its items must have been popped (they are the
 * caller's). NULL is a no-op. */
void csi_queue_free(csi_queue *q);
/* Appends item with key (NULL or "": none; copied). When an item with the
 * same key waits, it leaves the queue and is returned in *replaced_r (the
 * caller frees it), else *replaced_r is NULL. 0, or -1 on OOM (nothing
 * changed). */
int csi_queue_push(csi_queue *q, void *item, const char *key, void **replaced_r);
/* Removes and returns the oldest item; NULL when empty. */
void *csi_queue_pop(csi_queue *q);
size_t csi_queue_len(const csi_queue *q);

#endif
