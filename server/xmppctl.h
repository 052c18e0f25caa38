/* What the files of the xmppctl program share (xmppctl.c: options,
 * configuration, the control socket; xmppctl_pie.c: export, import and
 * bulk provisioning). */
#ifndef XMPPD_XMPPCTL_H
#define XMPPD_XMPPCTL_H

#include <jansson.h>
#include <stdbool.h>

#include "core/config.h"

#define PROG "xmppctl"

extern const char *g_config_path; /* -c */
extern bool g_json;               /* -j: print answers as they are */

/* One-line failure: "xmppctl: CONTEXT: message" (each line of a message
 * prefixed). Returns 1. */
int fail(const char *context, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The configuration, or NULL after printing why. Caller frees. */
xmppd_config *load_config(void);

/* Commands of modules in a row, with one session: the running server
 * through its control socket, or (no server running) the configured
 * modules started once in this process on its data. */
typedef struct msession {
    bool inproc;
    xmppd_config *cfg; /* inproc: the configuration in force */
} msession;
int ms_open(msession *s);      /* 0, or 1 after printing why */
/* req (consumed): {"command": NAME, "args": [...]}. The answer when it says
 * ok (caller decrefs), else NULL after printing its error (*rc: 1). */
json_t *ms_call(msession *s, const char *context, json_t *req, int *rc);
void ms_close(msession *s);

/* xmppctl_pie.c */
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_import_csv(int argc, char **argv);

#endif
