/* The SASL2 <authenticate/> element (XEP-0388 §2.3) of a client, parsed
 * and checked: mechanism, initial response, <user-agent/>, Bind2's
 * <bind/> (XEP-0386) and FAST's <request-token/> and <fast/> (XEP-0484).
 * Pure (no connection, no I/O): unit-tested and fuzzed. Other children
 * are left for "sasl2-inline" handlers (XEP-0198 <resume/>, ...). */
#ifndef XMPPD_SASL2_REQ_H
#define XMPPD_SASL2_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xmppd/stanza.h"

#define SASL2_UA_ID_MAX 128      /* bytes of <user-agent id/> */
#define SASL2_UA_TEXT_MAX 256    /* bytes of <software/>, <device/> */
#define SASL2_MECH_MAX 32        /* bytes of a mechanism name (RFC 4422: 20) */
#define SASL2_INLINE_MAX 16      /* children left for "sasl2-inline" */

/* Everything points into el (kept by a reference) except initial. */
typedef struct sasl2_request {
    xmppd_stanza *el;            /* the <authenticate/> (ref) */
    const char *mechanism;
    bool has_initial;            /* <initial-response/> present (maybe empty) */
    unsigned char *initial;      /* decoded; malloc'd, wiped on free */
    size_t initial_len;
    const char *ua_id;           /* <user-agent id/>, or NULL */
    const char *software;        /* or NULL */
    const char *device;          /* or NULL */
    xmppd_stanza *bind;          /* <bind xmlns='urn:xmpp:bind:0'/>, or NULL */
    const char *tag;             /* its <tag/>, or NULL */
    const char *request_token;   /* <request-token mechanism/>, or NULL */
    bool fast;                   /* <fast xmlns='urn:xmpp:fast:0'/> present */
    bool fast_invalidate;        /* ... with invalidate='true' */
    bool has_count;              /* ... with a count */
    uint64_t count;
} sasl2_request;

/* Parses el (a reference is taken). 0 with *r_out (free with
 * sasl2_request_free), or -1 with *cond_r an RFC 6120 §6.5 condition
 * (invalid-mechanism, incorrect-encoding, malformed-request) and *text_r a
 * static explanation. */
int sasl2_request_parse(xmppd_stanza *el, sasl2_request **r_out, const char **cond_r,
                        const char **text_r);
void sasl2_request_free(sasl2_request *r);
/* Base64 text of a SASL2 element (<initial-response/>, <response/>)
 * without the whitespace around it; strict inside. *out_r malloc'd. 0, or
 * -1 when it is not base64. */
int sasl2_decode(const char *text, unsigned char **out_r, size_t *len_r);
/* Is child of <authenticate/> one the kernel serves itself? The others go
 * to "sasl2-inline" handlers. */
bool sasl2_request_known(const xmppd_stanza *child);

#endif
