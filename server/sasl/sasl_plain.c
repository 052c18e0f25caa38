/* SASL PLAIN (RFC 4616 §2): message = [authzid] NUL authcid NUL passwd.
 * UTF-8 validity is left to the preparation that follows (nodeprep /
 * SASLprep reject bad UTF-8). */
#include <stdlib.h>
#include <string.h>

#include "sasl/sasl.h"

#define PLAIN_PART_MAX 1023 /* bytes per part, as for JID parts */

/* Copies one part into a new NUL-terminated string. */
static char *part_dup(const unsigned char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static void free_secret(char *s)
{
    if (s != NULL) {
        xmppd_wipe(s, strlen(s));
        free(s);
    }
}

int sasl_plain_parse(const unsigned char *msg, size_t len,
                     char **authzid_r, char **authcid_r, char **passwd_r)
{
    *authzid_r = *authcid_r = *passwd_r = NULL;
    if (msg == NULL)
        return -1;
    const unsigned char *nul1 = memchr(msg, '\0', len);
    if (nul1 == NULL)
        return -1;
    const unsigned char *authcid = nul1 + 1, *end = msg + len;
    const unsigned char *nul2 = memchr(authcid, '\0', (size_t)(end - authcid));
    if (nul2 == NULL)
        return -1;
    const unsigned char *passwd = nul2 + 1;
    size_t zl = (size_t)(nul1 - msg), cl = (size_t)(nul2 - authcid), pl = (size_t)(end - passwd);
    /* A third NUL would be an embedded NUL in the password. */
    if (memchr(passwd, '\0', pl) != NULL || cl == 0 || pl == 0 || zl > PLAIN_PART_MAX
        || cl > PLAIN_PART_MAX || pl > PLAIN_PART_MAX)
        return -1;

    char *z = zl > 0 ? part_dup(msg, zl) : NULL;
    char *c = part_dup(authcid, cl);
    char *p = part_dup(passwd, pl);
    if ((zl > 0 && z == NULL) || c == NULL || p == NULL) {
        free(z);
        free(c);
        free_secret(p);
        return -1;
    }
    *authzid_r = z;
    *authcid_r = c;
    *passwd_r = p; /* the caller wipes it (xmppd_wipe) before free */
    return 0;
}
