/* Bind2 (XEP-0386 §2.2): the <bound/> of a session bound through SASL2
 * carries the account's archive metadata (XEP-0313 "Retrieving archive
 * metadata": the first and last items' ids and times; an empty
 * <metadata/> for an empty archive), so the client knows at once what to
 * fetch. Read when the session binds: the kernel holds <success/> until
 * both ends of the archive are read (xmppd_bind2_hold). When the archive
 * cannot be read, <bound/> goes out without it (logged). */
#include <stdlib.h>
#include <string.h>

#include "mam_bind2.h"
#include "mam_request.h"

typedef struct mam_bound {
    mam_mod *mod;
    xmppd_bind2_wait *wait;
    xmppd_stanza *bound;   /* inside the held <success/>: valid until released */
    char *user;
    char *first_id;
    int64_t first_ms;
} mam_bound;

static void bound_end(mam_bound *b)
{
    xmppd_bind2_release(b->wait);
    free(b->user);
    free(b->first_id);
    free(b);
}

/* Did the read fail? Logs it (not when the module unloads) and ends b. */
static bool bound_failed(mam_bound *b, int status)
{
    if (status == XMPPD_STORE_OK)
        return false;
    if (status != XMPPD_STORE_CANCELLED)
        xmppd_log(b->mod->m, XMPPD_LOG_WARN, "archive of %s unreadable: Bind2 <bound/> without "
                  "<metadata/>", b->user);
    bound_end(b);
    return true;
}

static void on_last(int status, const xmppd_archive_item *items, size_t n, bool complete, void *ud)
{
    mam_bound *b = ud;
    (void)complete;
    if (bound_failed(b, status))
        return;
    xmppd_stanza *md = xmppd_stanza_tag(b->bound, "metadata", MAM_NS);
    if (md && n && mam_metadata_fill(md, b->first_id, b->first_ms, items[0].id, items[0].when_ms) != 0)
        xmppd_stanza_remove(b->bound, md);
    bound_end(b);
}

static void on_first(int status, const xmppd_archive_item *items, size_t n, bool complete, void *ud)
{
    mam_bound *b = ud;
    (void)complete;
    if (bound_failed(b, status))
        return;
    if (n == 0) { /* an empty archive */
        xmppd_stanza_tag(b->bound, "metadata", MAM_NS);
        bound_end(b);
        return;
    }
    if (!(b->first_id = strdup(items[0].id))) {
        bound_end(b);
        return;
    }
    b->first_ms = items[0].when_ms;
    xmppd_archive_filter q = { .max = 1, .reverse = true };
    xmppd_archive_query(b->mod->archive, b->user, &q, on_last, b);
}

int mam_bind2_bound(xmppd_event *ev, void *ud)
{
    mam_mod *mod = ud;
    const char *user = ev->session ? xmppd_session_user(ev->session) : NULL;
    mam_bound *b = user && ev->data ? calloc(1, sizeof(*b)) : NULL;
    if (!b)
        return XMPPD_PASS;
    b->mod = mod;
    b->bound = ev->data;
    if (!(b->user = strdup(user)) || !(b->wait = xmppd_bind2_hold(ev))) {
        free(b->user);
        free(b);
        return XMPPD_PASS;
    }
    xmppd_archive_filter q = { .max = 1 };
    xmppd_archive_query(mod->archive, b->user, &q, on_first, b);
    return XMPPD_PASS;
}
