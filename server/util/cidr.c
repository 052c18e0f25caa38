/* IP prefixes (cidr.h). */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "util/cidr.h"

/* Address text into family and bytes; IPv4-mapped IPv6 becomes IPv4. */
static int addr_parse(const char *s, int *family_r, unsigned char out[16])
{
    if (strchr(s, ':')) {
        if (inet_pton(AF_INET6, s, out) != 1)
            return -1;
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF };
        if (memcmp(out, mapped, 12) == 0) {
            memmove(out, out + 12, 4);
            *family_r = AF_INET;
        } else {
            *family_r = AF_INET6;
        }
        return 0;
    }
    *family_r = AF_INET;
    return inet_pton(AF_INET, s, out) == 1 ? 0 : -1;
}

int cidr_parse(const char *s, cidr *out)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(host))
        return -1;
    memcpy(host, s, n);
    host[n] = '\0';
    memset(out, 0, sizeof(*out));
    if (addr_parse(host, &out->family, out->addr) < 0)
        return -1;
    int max = out->family == AF_INET ? 32 : 128;
    if (!slash) {
        out->bits = max;
        return 0;
    }
    char *end;
    long bits = strtol(slash + 1, &end, 10);
    if (!slash[1] || *end || bits < 0 || bits > 128)
        return -1;
    /* "::ffff:10.0.0.0/104" is 10.0.0.0/8 */
    if (out->family == AF_INET && strchr(host, ':'))
        bits -= 96;
    if (bits < 0 || bits > max)
        return -1;
    out->bits = (int)bits;
    return 0;
}

bool cidr_contains(const cidr *c, const char *ip)
{
    int family;
    unsigned char a[16];
    if (!ip || addr_parse(ip, &family, a) < 0 || family != c->family)
        return false;
    for (int b = 0; b < c->bits; b += 8) {
        int take = c->bits - b >= 8 ? 8 : c->bits - b;
        unsigned char mask = (unsigned char)(0xFF << (8 - take));
        if ((a[b / 8] & mask) != (c->addr[b / 8] & mask))
            return false;
    }
    return true;
}

bool cidr_list_match(const char *ip, const char *const *list)
{
    for (; list && *list; list++) {
        cidr c;
        if (cidr_parse(*list, &c) == 0 && cidr_contains(&c, ip))
            return true;
    }
    return false;
}
