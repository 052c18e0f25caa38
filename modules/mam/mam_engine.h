/* The MAM engine: queries, metadata and archiving on any archive (a
 * user's, or another module's through mam_api.h). */
#ifndef MAM_ENGINE_H
#define MAM_ENGINE_H

#include <xmppd/xmppd.h>

#include "mam_api.h"

#define MAM_NS_SID "urn:xmpp:sid:0"

/* What the engine needs of the module instance: borrowed, lives as long
 * as the instance. */
typedef struct mam_ctx {
    xmppd_module *m;
    long page;     /* results per page when the query gives no <max/> */
    long max_page; /* larger <max/> values are lowered to this */
} mam_ctx;

/* mam_api.h's handle_iq: XMPPD_HANDLED (answered now or later) or
 * XMPPD_PASS (not a MAM request). */
int mam_engine_iq(const mam_ctx *ctx, xmppd_event *ev, const mam_archive *a);

/* mam_api.h's archive: strip, append a copy with a new id, stamp. 0 or
 * -1 (OOM; msg untouched but for stripped forgeries). */
int mam_engine_archive(const mam_ctx *ctx, const mam_archive *a, xmppd_stanza *msg, const char *with);

/* XEP-0313 "Retrieving archive metadata": <start/> and <end/> (ids and
 * XEP-0082 timestamps of the first and last items) into <metadata/> md.
 * 0, or -1 on OOM. */
int mam_metadata_fill(xmppd_stanza *md, const char *first_id, int64_t first_ms, const char *last_id,
                      int64_t last_ms);

/* mam_api.h's strip: removes <stanza-id by=jid/> from msg. */
void mam_strip_ids(xmppd_stanza *msg, const char *jid);

/* Is msg stamped with a stanza-id of jid's archive? */
bool mam_is_stamped(const xmppd_stanza *msg, const char *jid);

#endif
