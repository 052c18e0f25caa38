/* Small pure helpers of the HTTP layer (http.h): UTF-8 validation,
 * percent-decoding, address matching, dates. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/http.h"

bool http_utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i - 1 < n) /* truncated sequence */
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *http_pct_decode(const char *src, size_t len)
{
    char *out = malloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; out && i < len; i++) {
        if (src[i] != '%') {
            if (src[i] == '\0')
                goto bad;
            out[o++] = src[i];
            continue;
        }
        if (i + 2 >= len)
            goto bad;
        int h = hexval(src[i + 1]), l = hexval(src[i + 2]);
        if (h < 0 || l < 0 || (h == 0 && l == 0))
            goto bad;
        out[o++] = (char)(h * 16 + l);
        i += 2;
    }
    if (out)
        out[o] = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

/* Does addr (family af, 4 or 16 bytes) match "net[/bits]"? */
static bool cidr_match(int af, const unsigned char *addr, const char *cidr)
{
    char host[64];
    const char *slash = strchr(cidr, '/');
    size_t n = slash ? (size_t)(slash - cidr) : strlen(cidr);
    if (n >= sizeof(host))
        return false;
    memcpy(host, cidr, n);
    host[n] = '\0';
    unsigned char net[16];
    int naf = strchr(host, ':') ? AF_INET6 : AF_INET;
    if (naf != af || inet_pton(naf, host, net) != 1)
        return false;
    int max = af == AF_INET ? 32 : 128;
    int bits = slash ? atoi(slash + 1) : max;
    if (bits < 0 || bits > max)
        return false;
    for (int b = 0; b < bits; b += 8) {
        int take = bits - b >= 8 ? 8 : bits - b;
        unsigned char mask = (unsigned char)(0xFF << (8 - take));
        if ((addr[b / 8] & mask) != (net[b / 8] & mask))
            return false;
    }
    return true;
}

bool http_ip_in(const char *ip, const char *const *list)
{
    unsigned char addr[16];
    int af = strchr(ip, ':') ? AF_INET6 : AF_INET;
    if (!list || inet_pton(af, ip, addr) != 1)
        return false;
    for (; *list; list++)
        if (cidr_match(af, addr, *list))
            return true;
    return false;
}

void http_date(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}
