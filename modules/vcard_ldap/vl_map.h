/* vcard_ldap: a directory entry as a vcard-temp <vCard/> (XEP-0054),
 * through the operator's mapping of vCard fields to attributes. */
#ifndef VCARD_LDAP_MAP_H
#define VCARD_LDAP_MAP_H

#include <stdbool.h>
#include <stddef.h>

#include <xmppd/stanza.h>

#include "../auth_ldap/directory_api.h"

/* The attribute each vCard field comes from (NULL: not mapped). */
typedef struct vl_map {
    const char *fn, *family, *given, *middle, *nickname, *email, *tel, *mobile, *org, *orgunit, *title,
        *role, *photo, *url, *street, *locality, *region, *postcode, *country, *desc, *bday;
} vl_map;

/* The mapped attribute names, each once, NULL-terminated, in out (at
 * least VL_MAX_ATTRS + 1 entries; borrowed from map). */
#define VL_MAX_ATTRS 21
void vl_map_attrs(const vl_map *map, const char **out);

/* The vCard of entry e (a new tree), NULL on OOM. Values that are not
 * XML text (bad UTF-8, control characters) are left out; a photo larger
 * than max_photo bytes or not a JPEG, PNG or GIF image is left out and
 * *photo_dropped_r set. */
xmppd_stanza *vl_vcard(const vl_map *map, const directory_entry *e, size_t max_photo, bool *photo_dropped_r);

/* MIME type of an image by its first bytes, or NULL. */
const char *vl_image_type(const unsigned char *p, size_t n);

#endif
