/* Bookmarks in their three forms (shared by the files of mod_bookmarks):
 * XEP-0402 items of the PEP node urn:xmpp:bookmarks:1 (one per room, id
 * the room's JID), and XEP-0048's single <storage xmlns='storage:bookmarks'/>
 * kept in private XML (XEP-0049) or in the PEP node storage:bookmarks. */
#ifndef XMPPD_BM_H
#define XMPPD_BM_H

#include <stdbool.h>
#include <stddef.h>

#include <xmppd/xmppd.h>

#define BM_NS_NATIVE "urn:xmpp:bookmarks:1"
#define BM_NS_LEGACY "storage:bookmarks"

/* One room bookmark, whatever the form it came in. */
typedef struct bm_conf {
    char *jid;                /* the room's bare JID, prepared */
    char *name, *nick, *password; /* NULL when absent */
    bool autojoin;
    xmppd_stanza *extensions; /* XEP-0402 <extensions/> (reference), or NULL */
} bm_conf;

typedef struct bm_list {
    bm_conf *v;
    size_t n, cap;
} bm_list;

/* Conferences of a XEP-0048 <storage/>, or of a XEP-0402 <items/> (as the
 * PEP API gives them). Entries without a valid room JID are skipped. 0 or
 * -1 on OOM (out is then empty). */
int bm_from_storage(const xmppd_stanza *storage, bm_list *out);
int bm_from_items(const xmppd_stanza *items, bm_list *out);
void bm_list_clear(bm_list *l);
const bm_conf *bm_find(const bm_list *l, const char *jid);
/* Same name, autojoin, nick and password (what XEP-0048 can say). */
bool bm_same(const bm_conf *a, const bm_conf *b);
/* The XEP-0402 payload of c, extensions from `keep` when c has none (a
 * XEP-0048 client cannot carry them). New tree. */
xmppd_stanza *bm_to_conference(const bm_conf *c, const bm_conf *keep);
/* A XEP-0048 <storage/> with l's conferences and old's <url/> bookmarks
 * (XEP-0402 has none; old may be NULL). New tree. */
xmppd_stanza *bm_to_storage(const bm_list *l, const xmppd_stanza *old);

#endif
