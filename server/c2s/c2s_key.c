/* The c2s key: what makes Bind2 resources stable per device without
 * revealing the device id (XEP-0386 §2.2.1), and what FAST tokens are
 * derived from so that the database never holds one (fast.c).
 *
 * c2s.secret when configured (a cluster shares it), else 32 random bytes
 * kept in DATA_DIR/c2s.key, created 0600 at first use. Without either (an
 * unwritable data folder), a random key for this process is used and an
 * error is logged: resources then change and tokens die at a restart. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "c2s/c2s_conn.h"

#define KEY_LEN 32
#define KEY_FILE "c2s.key"

static unsigned char g_file_key[KEY_LEN];
static bool g_file_key_loaded;

static int read_exact(int fd, unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* Creates the key file, or reads the one another process just created. */
static int load_key_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        bool ok = xmppd_random(g_file_key, KEY_LEN) == 0 &&
                  write(fd, g_file_key, KEY_LEN) == KEY_LEN && fsync(fd) == 0;
        close(fd);
        if (ok)
            return 0;
        unlink(path);
        return -1;
    }
    if (errno != EEXIST || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    int rc = read_exact(fd, g_file_key, KEY_LEN);
    close(fd);
    return rc;
}

static const unsigned char *file_key(void)
{
    if (g_file_key_loaded)
        return g_file_key;
    const char *dir = g_server.cfg && g_server.cfg->data_dir ? g_server.cfg->data_dir : ".";
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, KEY_FILE);
    if (load_key_file(path) < 0) {
        log_kernel("c2s", XMPPD_LOG_ERROR, "cannot create or read %s (%s): Bind2 resources and "
                   "FAST tokens will not survive a restart", path, strerror(errno));
        if (xmppd_random(g_file_key, KEY_LEN) < 0)
            return NULL;
    }
    g_file_key_loaded = true;
    return g_file_key;
}

int c2s_keyed_hash(const char *const *parts, size_t n, unsigned char out[32])
{
    unsigned char derived[KEY_LEN];
    const unsigned char *key;
    const char *secret = g_server.cfg ? g_server.cfg->c2s.secret : NULL;
    if (secret) {
        /* Any length of configured text becomes one key. */
        if (EVP_Digest(secret, strlen(secret), derived, NULL, EVP_sha256(), NULL) != 1)
            return -1;
        key = derived;
    } else if (!(key = file_key())) {
        return -1;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += strlen(parts[i]) + 1;
    unsigned char *msg = malloc(total ? total : 1), *p = msg;
    if (!msg)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);
        memcpy(p, parts[i], l);
        p[l] = '\0';
        p += l + 1;
    }
    unsigned int len = 0;
    bool ok = HMAC(EVP_sha256(), key, KEY_LEN, msg, total, out, &len) != NULL && len == 32;
    free(msg);
    xmppd_wipe(derived, sizeof(derived));
    return ok ? 0 : -1;
}

char *c2s_b64url(const unsigned char *in, size_t len)
{
    char *b = xmppd_base64_encode(in, len);
    if (!b)
        return NULL;
    char *p = b;
    for (; *p && *p != '='; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    *p = '\0';
    return b;
}
