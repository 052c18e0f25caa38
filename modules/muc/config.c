/* Room configuration values: defaults, copies, and the JSON form used both
 * for storage and for the room_defaults option, so both are checked by the
 * same code. */
#include <stdlib.h>
#include <string.h>

#include "muc.h"

#define ALL_ROLES ((1u << ROLE_MODERATOR) | (1u << ROLE_PARTICIPANT) | (1u << ROLE_VISITOR))

static const char *const pm_names[] = { "anyone", "participants", "moderators", "none" };

void muc_config_defaults(muc_config *c)
{
    muc_config_clear(c);
    *c = (muc_config){
        .public_room = true,
        .archiving = true,
        .allow_pm = PM_ANYONE,
        .presence_broadcast = ALL_ROLES,
        .get_member_list = ALL_ROLES,
        .max_history_fetch = 20,
    };
}

void muc_config_clear(muc_config *c)
{
    free(c->name);
    free(c->desc);
    free(c->lang);
    free(c->password);
    c->name = c->desc = c->lang = c->password = NULL;
}

static int dup_str(char **dst, const char *src)
{
    *dst = src ? strdup(src) : NULL;
    return src && !*dst ? -1 : 0;
}

int muc_config_copy(muc_config *dst, const muc_config *src)
{
    muc_config c = *src;
    c.name = c.desc = c.lang = c.password = NULL;
    if (dup_str(&c.name, src->name) < 0 || dup_str(&c.desc, src->desc) < 0 ||
        dup_str(&c.lang, src->lang) < 0 || dup_str(&c.password, src->password) < 0) {
        muc_config_clear(&c);
        return -1;
    }
    muc_config_clear(dst);
    *dst = c;
    return 0;
}

static json_t *roles_json(unsigned mask)
{
    json_t *a = json_array();
    for (int r = ROLE_MODERATOR; a && r > ROLE_NONE; r--)
        if (mask & (1u << r))
            json_array_append_new(a, json_string(muc_role_name((muc_role)r)));
    return a;
}

json_t *muc_config_to_json(const muc_config *c)
{
    return json_pack("{s:s?, s:s?, s:s?, s:s?, s:b, s:b, s:b, s:b, s:b, s:s, s:b, s:b, s:b, s:s, "
                     "s:I, s:o, s:o, s:I}",
                     "name", c->name, "description", c->desc, "language", c->lang, "password",
                     c->password, "persistent", c->persistent, "public", c->public_room,
                     "moderated", c->moderated, "members_only", c->members_only,
                     "password_protected", c->password_protected, "whois",
                     c->whois_anyone ? "anyone" : "moderators", "change_subject", c->change_subject,
                     "allow_invites", c->allow_invites, "archiving", c->archiving, "allow_pm",
                     pm_names[c->allow_pm], "max_users", (json_int_t)c->max_users,
                     "presence_broadcast", roles_json(c->presence_broadcast), "get_member_list",
                     roles_json(c->get_member_list), "max_history_fetch",
                     (json_int_t)c->max_history_fetch);
}

static int roles_from_json(const json_t *a, unsigned *mask)
{
    if (!json_is_array(a))
        return -1;
    unsigned m = 0;
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v) {
        int r = muc_role_parse(json_string_value(v));
        if (r <= ROLE_NONE)
            return -1;
        m |= 1u << r;
    }
    *mask = m;
    return 0;
}

static int str_field(char **dst, const json_t *v)
{
    if (json_is_null(v)) {
        free(*dst);
        *dst = NULL;
        return 0;
    }
    const char *s = json_string_value(v);
    if (!s || muc_utf8_len(s) > MUC_TEXT_MAX)
        return -1;
    char *d = strdup(s);
    if (!d)
        return -1;
    free(*dst);
    *dst = d;
    return 0;
}

static int bool_field(bool *dst, const json_t *v)
{
    if (!json_is_boolean(v))
        return -1;
    *dst = json_is_true(v);
    return 0;
}

static int long_field(long *dst, const json_t *v, long max)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return -1;
    *dst = (long)json_integer_value(v);
    return 0;
}

static int enum_field(int *dst, const json_t *v, const char *const *names, int n)
{
    const char *s = json_string_value(v);
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0) {
            *dst = i;
            return 0;
        }
    return -1;
}

int muc_config_from_json(muc_config *c, const json_t *o, const char **why_r)
{
    static const char *const whois_names[] = { "moderators", "anyone" };
    if (!json_is_object(o)) {
        *why_r = "not a JSON object";
        return -1;
    }
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)o, key, v) {
        int rc, e = 0;
        if (strcmp(key, "name") == 0)
            rc = str_field(&c->name, v);
        else if (strcmp(key, "description") == 0)
            rc = str_field(&c->desc, v);
        else if (strcmp(key, "language") == 0)
            rc = str_field(&c->lang, v);
        else if (strcmp(key, "password") == 0)
            rc = str_field(&c->password, v);
        else if (strcmp(key, "persistent") == 0)
            rc = bool_field(&c->persistent, v);
        else if (strcmp(key, "public") == 0)
            rc = bool_field(&c->public_room, v);
        else if (strcmp(key, "moderated") == 0)
            rc = bool_field(&c->moderated, v);
        else if (strcmp(key, "members_only") == 0)
            rc = bool_field(&c->members_only, v);
        else if (strcmp(key, "password_protected") == 0)
            rc = bool_field(&c->password_protected, v);
        else if (strcmp(key, "change_subject") == 0)
            rc = bool_field(&c->change_subject, v);
        else if (strcmp(key, "allow_invites") == 0)
            rc = bool_field(&c->allow_invites, v);
        else if (strcmp(key, "archiving") == 0)
            rc = bool_field(&c->archiving, v);
        else if (strcmp(key, "whois") == 0) {
            rc = enum_field(&e, v, whois_names, 2);
            c->whois_anyone = rc == 0 ? e == 1 : c->whois_anyone;
        } else if (strcmp(key, "allow_pm") == 0) {
            rc = enum_field(&e, v, pm_names, 4);
            c->allow_pm = rc == 0 ? (muc_pm)e : c->allow_pm;
        } else if (strcmp(key, "max_users") == 0)
            rc = long_field(&c->max_users, v, 1000000);
        else if (strcmp(key, "max_history_fetch") == 0)
            rc = long_field(&c->max_history_fetch, v, 1000000);
        else if (strcmp(key, "presence_broadcast") == 0)
            rc = roles_from_json(v, &c->presence_broadcast);
        else if (strcmp(key, "get_member_list") == 0)
            rc = roles_from_json(v, &c->get_member_list);
        else {
            *why_r = key;
            return -1;
        }
        if (rc < 0) {
            *why_r = key;
            return -1;
        }
    }
    return 0;
}
