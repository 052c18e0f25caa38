/* Logging: one line per call, one write() per line, to stderr or a file
 * opened with O_APPEND (so concurrent writers and logrotate's copytruncate
 * keep lines whole). Format:
 *   2026-11-28T10:00:00.123Z info  host:module: message */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

#define API XMPPD_EXPORT /* part of the module API: visible to dlopen'ed modules */

static int g_log_fd = STDERR_FILENO;   /* owned unless it is stderr */
static int g_log_level = XMPPD_LOG_INFO;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

API bool xmppd_log_enabled(int level)
{
    return level <= g_log_level;
}

int log_open(const char *file, int level)
{
    if (level < XMPPD_LOG_ERROR)
        level = XMPPD_LOG_ERROR;
    if (level > XMPPD_LOG_DEBUG)
        level = XMPPD_LOG_DEBUG;
    int fd = STDERR_FILENO;
    if (file) {
        fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            int e = errno;
            log_kernel("log", XMPPD_LOG_ERROR, "cannot open log file %s: %s", file, strerror(e));
            return -1;
        }
    }
    int old = g_log_fd;
    g_log_fd = fd;
    g_log_level = level;
    if (old != STDERR_FILENO)
        close(old);
    return 0;
}

/* Writes the whole buffer, retrying on EINTR and short writes. */
static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(g_log_fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static size_t format_prefix(char *buf, size_t len, const char *tag, int level)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[level], tag);
    return n < 0 ? 0 : (size_t)n >= len ? len - 1 : (size_t)n;
}

static void log_line(const char *tag, int level, const char *fmt, va_list ap)
{
    if (level < XMPPD_LOG_ERROR)
        level = XMPPD_LOG_ERROR;
    if (level > XMPPD_LOG_DEBUG || !xmppd_log_enabled(level))
        return;
    char stack[2048];
    char *buf = stack;
    size_t cap = sizeof(stack);
    size_t pre = format_prefix(buf, cap, tag, level);
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(buf + pre, cap - pre, fmt, copy);
    va_end(copy);
    if (n < 0)
        return;
    if ((size_t)n + pre + 2 > cap) {
        /* Long line: format again into the heap (capped at 64 KiB). */
        cap = pre + (size_t)n + 2;
        if (cap > 65536)
            cap = 65536;
        char *heap = malloc(cap);
        if (heap) {
            memcpy(heap, stack, pre);
            buf = heap;
        } else {
            cap = sizeof(stack);
        }
        vsnprintf(buf + pre, cap - pre - 1, fmt, ap);
    }
    size_t len = strlen(buf);
    /* One record per line: a message can never forge another line. */
    for (size_t i = pre; i < len; i++)
        if (buf[i] == '\n' || buf[i] == '\r')
            buf[i] = ' ';
    buf[len++] = '\n';
    write_all(buf, len);
    if (buf != stack)
        free(buf);
}

API void xmppd_log(const xmppd_module *m, int level, const char *fmt, ...)
{
    if (level > g_log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_line(m && m->tag ? m->tag : "xmppd", level, fmt, ap);
    va_end(ap);
}

void log_conn_tag(char out[LOG_CONN_TAG_MAX], const char *ip)
{
    static unsigned long long next_id; /* loop thread only */
    snprintf(out, LOG_CONN_TAG_MAX, "%s #%llu", ip, ++next_id);
}

void log_kernel(const char *tag, int level, const char *fmt, ...)
{
    if (level > g_log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_line(tag ? tag : "xmppd", level, fmt, ap);
    va_end(ap);
}
