/* libFuzzer target: JID parsing and preparation (RFC 7622 / stringprep).
 * Besides memory safety, checks the invariants callers rely on: parts
 * within 1023 bytes, full = bare[/resource], and that a prepared JID
 * parses back to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xmppd/jid.h"

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

static void check_parts(const xmppd_jid *j)
{
    check(j->domain != NULL && strlen(j->domain) <= XMPPD_JID_PART_MAX);
    check(j->node == NULL || (j->node[0] != '\0' && strlen(j->node) <= XMPPD_JID_PART_MAX));
    check(j->resource == NULL
          || (j->resource[0] != '\0' && strlen(j->resource) <= XMPPD_JID_PART_MAX));
    size_t bl = strlen(j->bare);
    check(strncmp(j->full, j->bare, bl) == 0);
    check(j->resource == NULL ? j->full[bl] == '\0'
                              : j->full[bl] == '/' && strcmp(j->full + bl + 1, j->resource) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    xmppd_jid *j = xmppd_jid_parse(s);
    if (j != NULL) {
        check_parts(j);
        xmppd_jid *again = xmppd_jid_parse(j->full);
        check(again != NULL && xmppd_jid_equal(j, again));
        xmppd_jid *bare = xmppd_jid_to_bare(j);
        check(bare != NULL && xmppd_jid_bare_equal(j, bare) && bare->resource == NULL);
        xmppd_jid *dup = xmppd_jid_dup(j);
        check(dup != NULL && xmppd_jid_equal(j, dup));
        xmppd_jid_free(again);
        xmppd_jid_free(bare);
        xmppd_jid_free(dup);
        xmppd_jid_free(j);
    }
    /* the single-part helpers on the same bytes */
    free(xmppd_nodeprep(s));
    free(xmppd_nameprep(s));
    free(xmppd_resourceprep(s));
    free(s);
    return 0;
}
