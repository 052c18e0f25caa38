/* Small pure helpers of the HTTP layer (http.h): UTF-8 validation,
 * percent-decoding, address matching, dates. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/http.h"
#include "util/cidr.h"

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

bool http_ip_in(const char *ip, const char *const *list)
{
    return cidr_list_match(ip, list);
}

void http_date(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}
