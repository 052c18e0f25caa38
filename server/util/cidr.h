/* IP addresses and CIDR prefixes ("10.0.0.0/8", "::1", "192.0.2.7"), for
 * trusted proxies and access rules. An IPv4-mapped IPv6 address
 * (::ffff:192.0.2.7, what a dual-stack socket reports) matches IPv4
 * prefixes. Pure functions. */
#ifndef XMPPD_UTIL_CIDR_H
#define XMPPD_UTIL_CIDR_H

#include <stdbool.h>

typedef struct cidr {
    int family;              /* AF_INET or AF_INET6 */
    unsigned char addr[16];  /* 4 or 16 bytes used */
    int bits;                /* prefix length */
} cidr;

/* Parses "address[/bits]" into *out. 0, or -1 when it is not one. */
int cidr_parse(const char *s, cidr *out);
/* Does address text ip fall within c? false for text that is no address. */
bool cidr_contains(const cidr *c, const char *ip);
/* Does ip match one of the "address[/bits]" strings of list (NULL-terminated;
 * entries that are not prefixes match nothing)? */
bool cidr_list_match(const char *ip, const char *const *list);

#endif
