/* JID parsing and preparation (RFC 7622 address format, prepared with the
 * RFC 3920 stringprep profiles Nodeprep, Nameprep and Resourceprep via
 * libidn, as Prosody and ejabberd do).
 *
 * Decisions where RFC 7622 leaves room:
 * - the localpart ends at the first '@' before the first '/' (RFC 7622
 *   §3.1); '@' is prohibited in both the localpart and the domainpart, so
 *   "a@b@c" is invalid whichever '@' splits it;
 * - one trailing dot of the domainpart is stripped (§3.2); empty labels
 *   and labels over 63 bytes are refused, as are ASCII characters outside
 *   letters, digits, '-' and '_' (STD3-like rules; non-ASCII labels are
 *   left to Nameprep);
 * - an IPv4 literal is kept as written; an IPv6 literal "[...]" is checked
 *   with inet_pton and kept, with its hex digits lowercased so that equal
 *   addresses written in different case compare equal;
 * - a raw part longer than PREP_INPUT_MAX bytes is refused before
 *   preparation (bounds the cost of libidn on hostile input). */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <stringprep.h>

#include "xmppd/jid.h"
#include "xmppd/module.h" /* XMPPD_EXPORT */

/* Raw bytes accepted per part before preparation: Nameprep/Nodeprep may
 * map characters to nothing, so the input may exceed the 1023-byte limit
 * a little; anything this long cannot be a sane address. */
#define PREP_INPUT_MAX (4 * XMPPD_JID_PART_MAX)
#define DNS_LABEL_MAX 63

/* ---- preparation ---------------------------------------------------- */

/* Nodeprep's prohibited ASCII: space and "&'/:<>@ (RFC 3920 Appendix A.5). */
static bool node_prohibited(unsigned char c)
{
    switch (c) {
    case ' ': case '"': case '&': case '\'': case '/': case ':': case '<': case '>': case '@':
        return true;
    default:
        return false;
    }
}

/* Prepares in[0..len) with profile into a new malloc'd string of at most
 * XMPPD_JID_PART_MAX bytes. NULL when the part is empty before or after
 * preparation, too long, or rejected by the profile. */
/* Printable ASCII is what nearly every JID is made of, and for it the three
 * profiles reduce to: case folding (Nodeprep and Nameprep, table B.2),
 * nothing for Resourceprep, and Nodeprep's prohibited characters (space and
 * "&'/:<>@, RFC 3920 Appendix A.5). NFKC, the other mappings and the bidi
 * rules do not touch ASCII. Routing prepares every address it sees, so this
 * skips libidn's UCS-4 round trip. Returns 1 with *out set (NULL: rejected)
 * when it decided, 0 when the input needs the full profile. */
static int prep_ascii(const char *in, size_t len, const Stringprep_profile *profile, char **out)
{
    bool fold = profile != stringprep_xmpp_resourceprep;
    bool node = profile == stringprep_xmpp_nodeprep, prohibited = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c < 0x20 || c > 0x7e)
            return 0; /* controls and non-ASCII: libidn decides */
        prohibited |= node && node_prohibited(c);
    }
    *out = NULL;
    if (len > XMPPD_JID_PART_MAX || prohibited)
        return 1;
    char *buf = malloc(len + 1);
    if (buf == NULL)
        return 1;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        buf[i] = fold && c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    buf[len] = '\0';
    *out = buf;
    return 1;
}

static char *prep_part(const char *in, size_t len, const Stringprep_profile *profile)
{
    if (len == 0 || len > PREP_INPUT_MAX || memchr(in, '\0', len) != NULL)
        return NULL;
    char *fast;
    if (prep_ascii(in, len, profile, &fast))
        return fast;
    /* The output may grow (case folding, NFKC); a buffer of at least
     * PART_MAX + 1 bytes lets stringprep() tell us "too long" by itself. */
    size_t size = (len > XMPPD_JID_PART_MAX ? len : XMPPD_JID_PART_MAX) + 1;
    char *buf = malloc(size);
    if (buf == NULL)
        return NULL;
    memcpy(buf, in, len);
    buf[len] = '\0';
    size_t out_len;
    /* Unassigned code points are refused (RFC 3454 §7, RFC 7622 §3: what
     * a later Unicode assigns them could change their preparation). */
    if (stringprep(buf, size, STRINGPREP_NO_UNASSIGNED, profile) != STRINGPREP_OK
        || (out_len = strlen(buf)) == 0 || out_len > XMPPD_JID_PART_MAX) {
        free(buf);
        return NULL;
    }
    char *shrunk = realloc(buf, out_len + 1);
    return shrunk != NULL ? shrunk : buf;
}

static bool ascii_hostname_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || c == '-' || c == '_';
}

/* Checks a prepared DNS domain: non-empty labels of at most 63 bytes,
 * ASCII limited to hostname characters. */
static bool dns_domain_valid(const char *d)
{
    size_t label = 0;
    for (const unsigned char *p = (const unsigned char *)d;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label == 0 || label > DNS_LABEL_MAX)
                return false;
            if (*p == '\0')
                return true;
            label = 0;
            continue;
        }
        if (*p < 0x80 && !ascii_hostname_char(*p))
            return false;
        label++;
    }
}

/* An IPv6 literal "[addr]" as a new string with lowercased hex digits, or
 * NULL when in[0..len) is not one. */
static char *ipv6_literal(const char *in, size_t len)
{
    char addr[INET6_ADDRSTRLEN + 1];
    unsigned char bin[16];
    if (len < 3 || in[0] != '[' || in[len - 1] != ']' || len - 2 > INET6_ADDRSTRLEN)
        return NULL;
    memcpy(addr, in + 1, len - 2);
    addr[len - 2] = '\0';
    if (inet_pton(AF_INET6, addr, bin) != 1)
        return NULL;
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++)
        out[i] = (in[i] >= 'A' && in[i] <= 'F') ? (char)(in[i] - 'A' + 'a') : in[i];
    out[len] = '\0';
    return out;
}

/* An IPv4 dotted-quad literal, kept as written, or NULL. */
static char *ipv4_literal(const char *in, size_t len)
{
    char addr[INET_ADDRSTRLEN + 1];
    unsigned char bin[4];
    if (len > INET_ADDRSTRLEN)
        return NULL;
    /* inet_pton takes digits and dots only: a host name is told apart
     * without a copy and a call (every routed address has a domain) */
    for (size_t i = 0; i < len; i++)
        if (!(in[i] >= '0' && in[i] <= '9') && in[i] != '.')
            return NULL;
    memcpy(addr, in, len);
    addr[len] = '\0';
    if (inet_pton(AF_INET, addr, bin) != 1)
        return NULL;
    return strdup(addr);
}

static char *prep_domain(const char *in, size_t len)
{
    if (len > 0 && in[len - 1] == '.')
        len--; /* RFC 7622 §3.2: one final label separator is stripped */
    if (len == 0)
        return NULL;
    if (in[0] == '[')
        return ipv6_literal(in, len);
    char *d = ipv4_literal(in, len);
    if (d != NULL)
        return d;
    d = prep_part(in, len, stringprep_nameprep);
    if (d != NULL && !dns_domain_valid(d)) {
        free(d);
        return NULL;
    }
    return d;
}

XMPPD_EXPORT char *xmppd_nodeprep(const char *in)
{
    return in != NULL ? prep_part(in, strlen(in), stringprep_xmpp_nodeprep) : NULL;
}

XMPPD_EXPORT char *xmppd_nameprep(const char *in)
{
    return in != NULL ? prep_domain(in, strlen(in)) : NULL;
}

XMPPD_EXPORT char *xmppd_resourceprep(const char *in)
{
    return in != NULL ? prep_part(in, strlen(in), stringprep_xmpp_resourceprep) : NULL;
}

/* ---- the JID object ------------------------------------------------- */

/* Copies s (n bytes) to *pos, NUL-terminates it, advances *pos; returns
 * the copy. */
static const char *put(char **pos, const char *s, size_t n)
{
    char *dst = *pos;
    memcpy(dst, s, n);
    dst[n] = '\0';
    *pos = dst + n + 1;
    return dst;
}

/* Builds the single-block JID from prepared parts (node and resource may
 * be NULL; all borrowed). Layout after the struct:
 *   [node\0] domain\0 [resource\0] full\0 bare\0
 * bare is its own copy because full continues with "/resource". */
static xmppd_jid *assemble(const char *node, const char *domain, const char *resource)
{
    size_t nl = node ? strlen(node) : 0, dl = strlen(domain), rl = resource ? strlen(resource) : 0;
    size_t bare_len = (node ? nl + 1 : 0) + dl;
    size_t full_len = bare_len + (resource ? rl + 1 : 0);
    size_t total = sizeof(xmppd_jid) + (node ? nl + 1 : 0) + dl + 1 + (resource ? rl + 1 : 0)
                   + bare_len + 1 + full_len + 1;
    xmppd_jid *j = malloc(total);
    if (j == NULL)
        return NULL;
    char *pos = (char *)(j + 1);
    j->node = node ? put(&pos, node, nl) : NULL;
    j->domain = put(&pos, domain, dl);
    j->resource = resource ? put(&pos, resource, rl) : NULL;

    char *full = pos;
    if (node) {
        memcpy(pos, node, nl);
        pos[nl] = '@';
        pos += nl + 1;
    }
    memcpy(pos, domain, dl);
    pos += dl;
    if (resource) {
        *pos++ = '/';
        memcpy(pos, resource, rl);
        pos += rl;
    }
    *pos++ = '\0';
    j->full = full;
    j->bare = put(&pos, full, bare_len);
    return j;
}

/* Prepares raw parts (lengths given; node/resource NULL when absent) and
 * assembles the JID. */
static xmppd_jid *make_raw(const char *node, size_t nl, const char *domain, size_t dl,
                           const char *resource, size_t rl)
{
    char *n = NULL, *d = NULL, *r = NULL;
    xmppd_jid *j = NULL;
    if (node != NULL && (n = prep_part(node, nl, stringprep_xmpp_nodeprep)) == NULL)
        goto out;
    if ((d = prep_domain(domain, dl)) == NULL)
        goto out;
    if (resource != NULL && (r = prep_part(resource, rl, stringprep_xmpp_resourceprep)) == NULL)
        goto out;
    j = assemble(n, d, r);
out:
    free(n);
    free(d);
    free(r);
    return j;
}

XMPPD_EXPORT xmppd_jid *xmppd_jid_parse(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t len = strlen(s);
    const char *slash = memchr(s, '/', len);
    size_t head_len = slash ? (size_t)(slash - s) : len;
    const char *at = memchr(s, '@', head_len);

    const char *node = NULL, *domain = s, *resource = NULL;
    size_t nl = 0, dl = head_len, rl = 0;
    if (at != NULL) {
        node = s;
        nl = (size_t)(at - s);
        domain = at + 1;
        dl = head_len - nl - 1;
    }
    if (slash != NULL) {
        resource = slash + 1;
        rl = len - head_len - 1;
    }
    /* Empty parts after a separator are caught by prep_part/prep_domain. */
    return make_raw(node, nl, domain, dl, resource, rl);
}

XMPPD_EXPORT xmppd_jid *xmppd_jid_make(const char *node, const char *domain, const char *resource)
{
    if (domain == NULL)
        return NULL;
    return make_raw(node, node ? strlen(node) : 0, domain, strlen(domain), resource,
                    resource ? strlen(resource) : 0);
}

XMPPD_EXPORT xmppd_jid *xmppd_jid_dup(const xmppd_jid *j)
{
    return j != NULL ? assemble(j->node, j->domain, j->resource) : NULL;
}

XMPPD_EXPORT xmppd_jid *xmppd_jid_to_bare(const xmppd_jid *j)
{
    return j != NULL ? assemble(j->node, j->domain, NULL) : NULL;
}

XMPPD_EXPORT void xmppd_jid_free(xmppd_jid *j)
{
    free(j); /* strings live in the same block */
}

XMPPD_EXPORT bool xmppd_jid_equal(const xmppd_jid *a, const xmppd_jid *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a->full, b->full) == 0;
}

XMPPD_EXPORT bool xmppd_jid_bare_equal(const xmppd_jid *a, const xmppd_jid *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a->bare, b->bare) == 0;
}
