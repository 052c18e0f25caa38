/* libFuzzer target: BOSH request bodies (XEP-0124 §4) as bosh.c parses
 * them: restricted XML, limits, exactly one <body/> in the httpbind
 * namespace. Checks that what is accepted is that element, that its
 * children can be taken out one by one as process_body does, and that it
 * serialises and parses back to an element of the same name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xmppd_stanza *body = bosh_parse_body((const char *)data, size, 65536, 32);
    if (!body)
        return 0;
    check(strcmp(xmppd_stanza_name(body), "body") == 0);
    check(strcmp(xmppd_stanza_ns(body), "http://jabber.org/protocol/httpbind") == 0);
    size_t len;
    char *xml = xmppd_stanza_to_string(body, "http://jabber.org/protocol/httpbind", &len);
    check(xml != NULL);
    xmppd_stanza *again = xmppd_stanza_from_string(xml, len, "http://jabber.org/protocol/httpbind");
    check(again != NULL && strcmp(xmppd_stanza_name(again), "body") == 0);
    xmppd_stanza_unref(again);
    free(xml);
    for (xmppd_stanza *c = xmppd_stanza_first(body), *next; c; c = next) {
        next = xmppd_stanza_next(c);
        xmppd_stanza_ref(c);
        xmppd_stanza_remove(body, c);
        check(xmppd_stanza_parent(c) == NULL);
        xmppd_stanza_unref(c);
    }
    check(xmppd_stanza_first(body) == NULL);
    xmppd_stanza_unref(body);
    return 0;
}
