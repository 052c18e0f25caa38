/* vcard_ldap: entry to vCard (vl_map.h). The layout follows XEP-0054's
 * DTD: N with FAMILY/GIVEN/MIDDLE, EMAIL with INTERNET and USERID, TEL
 * with WORK VOICE or CELL and NUMBER, ORG with ORGNAME/ORGUNIT, ADR WORK
 * with its parts, PHOTO with TYPE and BINVAL. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <xmppd/crypto.h>

#include "vl_map.h"

#define VCARD_NS "vcard-temp"

void vl_map_attrs(const vl_map *map, const char **out)
{
    const char *all[VL_MAX_ATTRS] = { map->fn, map->family, map->given, map->middle, map->nickname,
                                      map->email, map->tel, map->mobile, map->org, map->orgunit,
                                      map->title, map->role, map->photo, map->url, map->street,
                                      map->locality, map->region, map->postcode, map->country,
                                      map->desc, map->bday };
    size_t n = 0;
    for (size_t i = 0; i < VL_MAX_ATTRS; i++) {
        bool seen = !all[i] || !*all[i];
        for (size_t j = 0; !seen && j < n; j++)
            seen = strcasecmp(out[j], all[i]) == 0;
        if (!seen)
            out[n++] = all[i];
    }
    out[n] = NULL;
}

/* Is v text an XML document may hold: UTF-8, no control characters but
 * tab and line ends, no NUL inside? */
static bool vl_xml_text(const directory_value *v)
{
    const unsigned char *p = (const unsigned char *)v->val, *end = p + v->len;
    while (p < end) {
        unsigned char c = *p;
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (n == 0 || (size_t)(end - p) < n || (n == 2 && c < 0xc2))
            return false;
        if (n == 1 && c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return false;
        for (size_t i = 1; i < n; i++)
            if ((p[i] & 0xc0) != 0x80)
                return false;
        p += n;
    }
    return true;
}

/* The first value of attribute name that is XML text, or NULL. */
static const directory_value *vl_first(const directory_entry *e, const char *name, size_t *index_r)
{
    const directory_attr *at = name ? directory_attr_get(e, name) : NULL;
    for (size_t i = index_r ? *index_r : 0; at && i < at->n; i++)
        if (vl_xml_text(&at->vals[i])) {
            if (index_r)
                *index_r = i + 1;
            return &at->vals[i];
        }
    return NULL;
}

static bool vl_text(xmppd_stanza *parent, const char *name, const char *text, size_t len)
{
    xmppd_stanza *el = xmppd_stanza_tag(parent, name, VCARD_NS);
    return el && xmppd_stanza_add_text(el, text, len) == 0;
}

/* <NAME>value</NAME> from the attribute's first value. */
static bool vl_simple(xmppd_stanza *vc, const char *name, const directory_entry *e, const char *attr)
{
    const directory_value *v = vl_first(e, attr, NULL);
    return !v || vl_text(vc, name, v->val, v->len);
}

/* A parent with children from attributes, only when one has a value;
 * flags: empty marker children first (WORK, VOICE, INTERNET...). */
static bool vl_group(xmppd_stanza *vc, const char *name, const char *const *flags, const char *const *names,
                     const char *const *attrs, size_t n, const directory_entry *e)
{
    const directory_value *vals[8] = { 0 };
    bool any = false;
    for (size_t i = 0; i < n; i++)
        any |= (vals[i] = vl_first(e, attrs[i], NULL)) != NULL;
    if (!any)
        return true;
    xmppd_stanza *g = xmppd_stanza_tag(vc, name, VCARD_NS);
    if (!g)
        return false;
    for (const char *const *f = flags; f && *f; f++)
        if (!xmppd_stanza_tag(g, *f, VCARD_NS))
            return false;
    for (size_t i = 0; i < n; i++)
        if (vals[i] && !vl_text(g, names[i], vals[i]->val, vals[i]->len))
            return false;
    return true;
}

/* One EMAIL per address. */
static bool vl_emails(xmppd_stanza *vc, const directory_entry *e, const char *attr)
{
    size_t at = 0;
    const directory_value *v;
    while ((v = vl_first(e, attr, &at))) {
        xmppd_stanza *em = xmppd_stanza_tag(vc, "EMAIL", VCARD_NS);
        if (!em || !xmppd_stanza_tag(em, "INTERNET", VCARD_NS) || !vl_text(em, "USERID", v->val, v->len))
            return false;
    }
    return true;
}

static bool vl_tel(xmppd_stanza *vc, const directory_entry *e, const char *attr, const char *kind)
{
    const char *flags[] = { kind, "VOICE", NULL }, *names[] = { "NUMBER" }, *attrs[] = { attr };
    return vl_group(vc, "TEL", flags, names, attrs, 1, e);
}

/* labeledURI values are "URI label": the URI is up to the first space. */
static bool vl_url(xmppd_stanza *vc, const directory_entry *e, const char *attr)
{
    const directory_value *v = vl_first(e, attr, NULL);
    if (!v)
        return true;
    const char *sp = memchr(v->val, ' ', v->len);
    return vl_text(vc, "URL", v->val, sp ? (size_t)(sp - v->val) : v->len);
}

const char *vl_image_type(const unsigned char *p, size_t n)
{
    if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
        return "image/jpeg";
    if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
        return "image/png";
    if (n >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
        return "image/gif";
    return NULL;
}

static bool vl_photo(xmppd_stanza *vc, const directory_entry *e, const char *attr, size_t max, bool *dropped)
{
    const directory_attr *at = attr ? directory_attr_get(e, attr) : NULL;
    if (!at || at->n == 0)
        return true;
    const directory_value *v = &at->vals[0];
    const char *type = vl_image_type((const unsigned char *)v->val, v->len);
    if (!type || v->len > max) {
        *dropped = true;
        return true;
    }
    char *b64 = xmppd_base64_encode(v->val, v->len);
    xmppd_stanza *photo = b64 ? xmppd_stanza_tag(vc, "PHOTO", VCARD_NS) : NULL;
    bool ok = photo && vl_text(photo, "TYPE", type, strlen(type)) && vl_text(photo, "BINVAL", b64, strlen(b64));
    free(b64);
    return ok;
}

xmppd_stanza *vl_vcard(const vl_map *m, const directory_entry *e, size_t max_photo, bool *photo_dropped_r)
{
    xmppd_stanza *vc = xmppd_stanza_new("vCard", VCARD_NS);
    const char *n_names[] = { "FAMILY", "GIVEN", "MIDDLE" }, *n_attrs[] = { m->family, m->given, m->middle };
    const char *o_names[] = { "ORGNAME", "ORGUNIT" }, *o_attrs[] = { m->org, m->orgunit };
    const char *a_flags[] = { "WORK", NULL };
    const char *a_names[] = { "STREET", "LOCALITY", "REGION", "PCODE", "CTRY" };
    const char *a_attrs[] = { m->street, m->locality, m->region, m->postcode, m->country };
    *photo_dropped_r = false;
    bool ok = vc && vl_simple(vc, "FN", e, m->fn) && vl_group(vc, "N", NULL, n_names, n_attrs, 3, e) &&
              vl_simple(vc, "NICKNAME", e, m->nickname) && vl_emails(vc, e, m->email) &&
              vl_tel(vc, e, m->tel, "WORK") && vl_tel(vc, e, m->mobile, "CELL") &&
              vl_group(vc, "ORG", NULL, o_names, o_attrs, 2, e) && vl_simple(vc, "TITLE", e, m->title) &&
              vl_simple(vc, "ROLE", e, m->role) && vl_url(vc, e, m->url) &&
              vl_group(vc, "ADR", a_flags, a_names, a_attrs, 5, e) && vl_simple(vc, "DESC", e, m->desc) &&
              vl_simple(vc, "BDAY", e, m->bday) && vl_photo(vc, e, m->photo, max_photo, photo_dropped_r);
    if (!ok) {
        xmppd_stanza_unref(vc);
        return NULL;
    }
    return vc;
}
