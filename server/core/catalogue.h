/* The catalogue: what the server can tell about itself.
 *
 *  - every event the kernel (and the bundled modules) fire, with when it
 *    fires, what the xmppd_event carries and its stop semantics; events
 *    modules declare at run time (xmppd_event_declare) join them. The same
 *    table prints docs/modules.md's event reference (`xmppctl hooks
 *    --markdown`) and answers `xmppctl hooks` (with the live handlers).
 *  - the RFCs and XEPs the running configuration implements (the kernel's
 *    own and those the loaded modules list in their descriptor's .specs),
 *    and the XMPP Compliance Suites 2023 (XEP-0479) levels they reach. */
#ifndef XMPPD_CATALOGUE_H
#define XMPPD_CATALOGUE_H

#include <jansson.h>
#include <stdio.h>

#include "core/core.h"

typedef struct catalogue_event {
    const char *name;
    const char *stop;    /* "first": handlers run until one returns HANDLED or
                            FAIL; "all": every handler runs */
    const char *source;  /* "kernel", or the module that fires it */
    const char *when;
    const char *payload; /* what the xmppd_event fields hold */
} catalogue_event;

/* The static table (kernel and bundled modules), in documentation order. */
const catalogue_event *catalogue_events(size_t *n_r);

/* `xmppctl hooks`: {"events": [{name, stop, source, when, payload,
 * "declared_by", "handlers": [{"module", "host", "priority"}]}],
 * "iq_handlers": [{type, xmlns, target, module, host}]}. Events with
 * handlers that nothing declares are listed with source null. New
 * reference, NULL on OOM. */
json_t *catalogue_hooks_json(void);

/* `xmppctl features`: {"hosts": [{"host", "specs": [{"spec", "by": [..]}],
 * "suites": [{"category", "level", "reached", "missing": [...]}]}]}. */
json_t *catalogue_features_json(void);

/* The event reference as markdown (docs/modules.md). */
void catalogue_print_markdown(FILE *out);

#endif
