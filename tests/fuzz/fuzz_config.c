/* libFuzzer target: the configuration file parser (JSON through jansson,
 * line numbers through yajl, the kernel's option tables and checks).
 * The input is written to a private temporary file that config_load reads
 * as it reads xmppd.json. Besides memory safety, checks what callers rely
 * on: a configuration is returned with no error line when keep_on_error is
 * false, and every error line is a non-empty line of its own. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/options.h"

static char path[] = "/tmp/xmppd-fuzz-config-XXXXXX";
static int fd = -1;

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fd = mkstemp(path);
    if (fd < 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    for (int keep = 0; keep < 2; keep++) {
        opt_errors errs = { 0 };
        xmppd_config *cfg = config_load(path, keep, &errs);
        check(keep || !cfg || errs.n == 0);
        check(cfg || errs.n > 0);
        for (size_t i = 0; i < errs.n; i++)
            check(errs.lines[i][0] != '\0' && !strchr(errs.lines[i], '\n'));
        config_free(cfg);
        opt_errors_free(&errs);
    }
    return 0;
}
