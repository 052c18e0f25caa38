/* Per-module logging. Lines are prefixed with "host:module" (or "module" for
 * global instances) and the level. Never pass secrets (passwords, SASL data,
 * tokens) to these functions: logs are kept and shipped by operators. */
#ifndef XMPPD_LOG_H
#define XMPPD_LOG_H

#include <stdbool.h>
#include "module.h"

enum xmppd_log_level {
    XMPPD_LOG_ERROR = 0,
    XMPPD_LOG_WARN = 1,
    XMPPD_LOG_INFO = 2,
    XMPPD_LOG_DEBUG = 3,
};

/* Writes one line "host:module: message" at level (dropped below the
 * configured level). m may be NULL (kernel lines). Loop thread only (not
 * from xmppd_offload work functions). Never fails visibly: a line that
 * cannot be written is lost. */
void xmppd_log(const xmppd_module *m, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Is level currently logged? A cheap test before building an expensive
 * debug message. */
bool xmppd_log_enabled(int level);

#endif
