/* auth_ldap: the text an operator writes and the text sent to the
 * directory. Filter and DN templates with variables (%u, %d, %{jid}) are
 * checked once at load; each expansion escapes what it inserts for where
 * it goes: RFC 4515 §3 for filter assertion values, RFC 4514 §2.4 for DN
 * attribute values. Nothing a client sends reaches the directory
 * unescaped. Pure functions (no xmppd calls): unit-tested on their own. */
#ifndef AUTH_LDAP_TEXT_H
#define AUTH_LDAP_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Variables of a template. */
enum lt_var {
    LT_USER,   /* %u, %{user}: the account's localpart (nodeprepped) */
    LT_DOMAIN, /* %d, %{domain}: the host */
    LT_JID,    /* %{jid}: localpart@host */
    LT_VAR_COUNT
};
#define LT_BIT(v) (1u << (v))
#define LT_ALL (LT_BIT(LT_USER) | LT_BIT(LT_DOMAIN) | LT_BIT(LT_JID))

/* How an expansion escapes the values it inserts. */
enum lt_escape {
    LT_FILTER, /* RFC 4515 assertion value: \2a \28 \29 \5c \00 and control bytes */
    LT_DN,     /* RFC 4514 attribute value: , + " \ < > ; = with a backslash,
                  # and space at the start, space at the end, control bytes as \XX */
    LT_RAW     /* as it is (a bind name that is not a DN: user@realm, REALM\user) */
};

typedef struct lt_template {
    char *text;        /* owned; NULL: not configured */
    unsigned used;     /* LT_BIT of each variable used */
    enum lt_escape esc;
} lt_template;

/* Checks text and fills t (t->text a copy). allowed: LT_BIT mask of the
 * variables the template may use; esc: how its values are escaped. A
 * filter (LT_FILTER) must also be one parenthesised expression with
 * balanced parentheses. 0, or -1 with a one-line reason in err. */
int lt_compile(const char *text, unsigned allowed, enum lt_escape esc, lt_template *t, char *err,
               size_t errlen);
void lt_free(lt_template *t);

/* The values of one expansion (borrowed). any_user: every account, for
 * listing: %u becomes a bare "*" (so "(uid=%u)" matches any uid) and
 * %{jid} "*@" followed by the domain. */
typedef struct lt_values {
    const char *user;
    const char *domain;
    bool any_user;
} lt_values;

/* t expanded with v, each value escaped per t->esc; malloc'd, NULL on OOM. */
char *lt_expand(const lt_template *t, const lt_values *v);

/* s escaped as an RFC 4515 assertion value / an RFC 4514 attribute value;
 * malloc'd, NULL on OOM. */
char *lt_escape_filter(const char *s);
char *lt_escape_dn(const char *s);

/* The account a directory value names: its part before '@' (a
 * userPrincipalName, a mail address), else the value itself; copied into
 * out (at most outlen bytes with the NUL). false when that is empty or
 * does not fit. */
bool lt_account_name(const char *value, char *out, size_t outlen);

/* Active Directory: does a userAccountControl value (decimal) carry
 * ACCOUNTDISABLE (0x2)? Does the diagnostic of a failed bind (AD's
 * "... data 533, ...") say the account is disabled (533), expired (701)
 * or locked out (775), rather than the password wrong (52e)? */
bool lt_ad_account_disabled(const char *user_account_control);
bool lt_ad_bind_disabled(const char *diag);

#endif
