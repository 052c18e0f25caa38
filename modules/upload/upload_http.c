/* mod_upload: the HTTP side of XEP-0363 (§5).
 *
 *   PUT URL_PATH/SLOT/NAME?u=USER&e=EXPIRES&s=SIGNATURE
 *     The body streams into SLOT's file (.part until complete, then
 *     synced and renamed on a worker, then recorded); 201 Created. The
 *     signature must match the request's own Content-Length and
 *     Content-Type (403), the URL must not have expired (403), the slot
 *     must be unused (409).
 *   GET/HEAD URL_PATH/SLOT/NAME
 *     The file with its Content-Type, Content-Length, one byte range
 *     (206, RFC 7233), X-Content-Type-Options: nosniff and, for types a
 *     browser would run, Content-Disposition: attachment. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "upload.h"

typedef struct transfer {
    upload_mod *um;
    xmppd_http_request *req;  /* NULL once the kernel cancelled it */
    int fd;
    char slot[UPLOAD_SLOT_LEN + 1];
    char *name, *ctype, *user;
    char part[4100], final[4090];
    long long expected, written;
    bool put;                 /* an upload (GET and HEAD have an empty body too) */
    bool busy;                /* a worker or storage call is out: free when it is back */
    bool failed;              /* the worker's result */
} transfer;

static void transfer_free(transfer *t)
{
    if (t->fd >= 0)
        close(t->fd);
    free(t->name);
    free(t->ctype);
    free(t->user);
    free(t);
}

/* Splits PATH after the prefix into slot and name; false when it is not
 * SLOT/NAME. */
static bool split_path(const upload_mod *um, const char *path, char slot[UPLOAD_SLOT_LEN + 1],
                       const char **name_r)
{
    size_t pl = strlen(um->conf->url_path);
    const char *p = path + pl; /* the route matched the prefix */
    if (*p != '/')
        return false;
    p++;
    const char *slash = strchr(p, '/');
    if (!slash || slash - p != UPLOAD_SLOT_LEN || !slash[1] || strchr(slash + 1, '/'))
        return false;
    memcpy(slot, p, UPLOAD_SLOT_LEN);
    slot[UPLOAD_SLOT_LEN] = '\0';
    *name_r = slash + 1;
    return true;
}

/* ---- PUT ----------------------------------------------------------------------------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The value of key in a query string, percent-decoded; NULL when absent. */
static char *query_param(const char *query, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        if (n > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            char *out = malloc(n - kl), *o = out;
            for (size_t i = kl + 1; out && i < n; i++) {
                int h, l;
                if (p[i] == '%' && i + 2 < n && (h = hexval(p[i + 1])) >= 0 &&
                    (l = hexval(p[i + 2])) >= 0 && (h || l)) {
                    *o++ = (char)(h * 16 + l);
                    i += 2;
                } else {
                    *o++ = p[i];
                }
            }
            if (out)
                *o = '\0';
            return out;
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

/* 0, or the status refusing the PUT. */
static int check_put(transfer *t, xmppd_http_request *req, const char *name)
{
    const upload_conf *c = t->um->conf;
    const char *query = xmppd_http_query(req);
    char *user = query_param(query, "u"), *exp = query_param(query, "e");
    char *sig = query_param(query, "s");
    long long expires = exp ? strtoll(exp, NULL, 10) : 0;
    long long len = xmppd_http_content_length(req);
    const char *ctype = xmppd_http_header(req, "Content-Type");
    int status = 0;
    char want[65];
    if (!user || !sig || !expires)
        status = 403;
    else if (len < 0)
        status = 411; /* chunked: the size must be known and signed */
    else if (len > c->max_file_size)
        status = 413;
    else if (expires < xmppd_wallclock_ms() / 1000)
        status = 403; /* the slot's time is over */
    if (!status) {
        upload_sign(t->um, t->slot, name, len, ctype ? ctype : "application/octet-stream", user,
                    expires, want);
        if (strlen(sig) != 64 || !xmppd_ct_equal(want, sig, 64))
            status = 403;
    }
    if (!status) {
        t->user = user;
        user = NULL;
        t->expected = len;
        t->ctype = strdup(ctype ? ctype : "application/octet-stream");
        t->name = strdup(name);
        if (!t->ctype || !t->name)
            status = 500;
    }
    free(user);
    free(exp);
    free(sig);
    return status;
}

static int open_part(transfer *t)
{
    if (!upload_file_path(t->um, t->slot, t->final, sizeof(t->final)))
        return 404;
    snprintf(t->part, sizeof(t->part), "%s.part", t->final);
    char dir[4090];
    snprintf(dir, sizeof(dir), "%s", t->final);
    *strrchr(dir, '/') = '\0';
    if (upload_mkdirs(dir) < 0)
        return 500;
    if (access(t->final, F_OK) == 0)
        return 409; /* the slot was used */
    t->fd = open(t->part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (t->fd < 0)
        return errno == EEXIST ? 409 : 500;
    return 0;
}

static void put_fail(transfer *t, int status)
{
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
        unlink(t->part);
    }
    xmppd_http_request *req = t->req;
    t->req = NULL;
    xmppd_http_set_data(req, NULL);
    xmppd_http_error(req, status);
    transfer_free(t);
}

static void on_recorded(int status, void *ud)
{
    transfer *t = ud;
    t->busy = false;
    if (!t->req) {
        transfer_free(t); /* the client left: the file stays, recorded or swept */
        return;
    }
    if (status != XMPPD_STORE_OK) {
        unlink(t->final);
        put_fail(t, 500);
        return;
    }
    xmppd_log(t->um->m, XMPPD_LOG_INFO, "%s uploaded %lld bytes (%s)", t->user, t->written, t->slot);
    xmppd_http_request *req = t->req;
    t->req = NULL;
    xmppd_http_set_data(req, NULL);
    xmppd_http_respond(req, 201, "text/plain; charset=utf-8", "201 Created\n", 12);
    transfer_free(t);
}

/* On a worker: the file reaches the disk before the client hears 201. */
static void finish_work(void *ud)
{
    transfer *t = ud;
    t->failed = fsync(t->fd) < 0 || close(t->fd) < 0 || rename(t->part, t->final) < 0;
    t->fd = -1;
}

static void finish_done(void *ud)
{
    transfer *t = ud;
    t->um->in_flight--;
    if (t->failed) {
        t->busy = false;
        unlink(t->part);
        if (t->req)
            put_fail(t, 500);
        else
            transfer_free(t);
        return;
    }
    upload_record(t->um, t->user, t->slot, t->name, t->ctype, t->written, on_recorded, t);
}

static void finish_cancelled(void *ud)
{
    transfer *t = ud;
    t->um->in_flight--;
    transfer_free(t);
}

static void put_body(xmppd_http_request *req, const char *data, size_t len, void *ud)
{
    transfer *t = xmppd_http_data(req);
    if (!t || !t->put)
        return;
    if (data) {
        while (len > 0) {
            ssize_t n = write(t->fd, data, len);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                put_fail(t, errno == ENOSPC || errno == EDQUOT ? 507 : 500);
                return;
            }
            data += n;
            len -= (size_t)n;
            t->written += n;
        }
        return;
    }
    if (t->written != t->expected) {
        put_fail(t, 400);
        return;
    }
    t->busy = true;
    t->um->in_flight++;
    if (xmppd_offload(t->um->m, finish_work, finish_done, finish_cancelled, t) < 0) {
        t->um->in_flight--;
        t->busy = false;
        put_fail(t, 500);
    }
}

static void handle_put(upload_mod *um, xmppd_http_request *req, const char *slot, const char *name)
{
    transfer *t = calloc(1, sizeof(*t));
    if (!t) {
        xmppd_http_error(req, 500);
        return;
    }
    t->um = um;
    t->req = req;
    t->fd = -1;
    t->put = true;
    snprintf(t->slot, sizeof(t->slot), "%s", slot);
    int status = check_put(t, req, name);
    if (!status)
        status = open_part(t);
    if (status) {
        xmppd_http_error(req, status);
        transfer_free(t);
        return;
    }
    xmppd_http_set_data(req, t);
}

/* ---- GET and HEAD ------------------------------------------------------------------------------ */

/* One range of "bytes=a-b", "bytes=a-" or "bytes=-n" (RFC 7233 §2.1):
 * 1 with [*off, *off + *len), 0 when the header asks for no single
 * satisfiable range we serve (then the whole file), -1 unsatisfiable. */
static int parse_range(const char *h, long long size, long long *off, long long *len)
{
    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return 0;
    const char *p = h + 6;
    char *end;
    if (*p == '-') {
        long long n = strtoll(p + 1, &end, 10);
        if (*end || n <= 0)
            return n == 0 && !*end ? -1 : 0;
        *len = n > size ? size : n;
        *off = size - *len;
        return size ? 1 : -1;
    }
    long long a = strtoll(p, &end, 10);
    if (end == p || *end != '-' || a < 0)
        return 0;
    long long b = size - 1;
    if (end[1]) {
        char *e2;
        b = strtoll(end + 1, &e2, 10);
        if (*e2 || b < a)
            return 0;
        if (b >= size)
            b = size - 1;
    }
    if (a >= size)
        return -1;
    *off = a;
    *len = b - a + 1;
    return 1;
}

/* RFC 6266 filename*: the name, percent-encoded as UTF-8. */
static void disposition(const char *name, bool attachment, char *out, size_t len)
{
    size_t o = (size_t)snprintf(out, len, "%s; filename*=UTF-8''", attachment ? "attachment" : "inline");
    for (const unsigned char *p = (const unsigned char *)name; *p && o + 4 < len; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("!#$&+-.^_`|~", *p))
            out[o++] = (char)*p;
        else
            o += (size_t)snprintf(out + o, len - o, "%%%02X", *p);
    }
    out[o < len ? o : len - 1] = '\0';
}

static void serve_file(transfer *t, xmppd_http_request *req, json_t *meta)
{
    const char *name = json_string_value(json_object_get(meta, "name"));
    const char *ctype = json_string_value(json_object_get(meta, "type"));
    char path[4096];
    int fd = -1;
    struct stat st;
    if (!name || !ctype || strcmp(name, t->name) != 0 ||
        !upload_file_path(t->um, t->slot, path, sizeof(path)) ||
        (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        xmppd_http_error(req, 404);
        return;
    }
    long long size = st.st_size, off = 0, len = size;
    int r = parse_range(xmppd_http_header(req, "Range"), size, &off, &len);
    char buf[1024];
    if (r < 0) {
        close(fd);
        snprintf(buf, sizeof(buf), "bytes */%lld", size);
        xmppd_http_set_header(req, "Content-Range", buf);
        xmppd_http_error(req, 416);
        return;
    }
    disposition(name, upload_type_active(ctype), buf, sizeof(buf));
    xmppd_http_set_header(req, "Content-Disposition", buf);
    xmppd_http_set_header(req, "X-Content-Type-Options", "nosniff");
    xmppd_http_set_header(req, "Content-Security-Policy", "default-src 'none'; sandbox");
    xmppd_http_set_header(req, "Accept-Ranges", "bytes");
    xmppd_http_set_header(req, "Cache-Control", "public, max-age=86400, immutable");
    if (r == 1) {
        snprintf(buf, sizeof(buf), "bytes %lld-%lld/%lld", off, off + len - 1, size);
        xmppd_http_set_header(req, "Content-Range", buf);
    }
    xmppd_http_start(req, r == 1 ? 206 : 200, ctype, len);
    if (len > 0 && xmppd_http_method(req) != XMPPD_HTTP_HEAD)
        xmppd_http_write_file(req, fd, off, len); /* takes fd */
    else
        close(fd);
    xmppd_http_end(req);
}

static void on_meta(int status, json_t *value, void *ud)
{
    transfer *t = ud;
    t->busy = false;
    xmppd_http_request *req = t->req;
    if (!req || status == XMPPD_STORE_CANCELLED) {
        transfer_free(t);
        return;
    }
    t->req = NULL;
    xmppd_http_set_data(req, NULL);
    if (status == XMPPD_STORE_OK)
        serve_file(t, req, value);
    else
        xmppd_http_error(req, status == XMPPD_STORE_NOT_FOUND ? 404 : 500);
    transfer_free(t);
}

static void handle_get(upload_mod *um, xmppd_http_request *req, const char *slot, const char *name)
{
    transfer *t = calloc(1, sizeof(*t));
    if (!t || !(t->name = strdup(name))) {
        free(t);
        xmppd_http_error(req, 500);
        return;
    }
    t->um = um;
    t->req = req;
    t->fd = -1;
    t->busy = true;
    snprintf(t->slot, sizeof(t->slot), "%s", slot);
    xmppd_http_set_data(req, t);
    upload_lookup(um, slot, on_meta, t);
}

/* ---- the route -------------------------------------------------------------------------------- */

static void on_request(xmppd_http_request *req, void *ud)
{
    upload_mod *um = ud;
    char slot[UPLOAD_SLOT_LEN + 1];
    const char *name;
    if (!split_path(um, xmppd_http_path(req), slot, &name)) {
        xmppd_http_error(req, 404);
        return;
    }
    if (xmppd_http_method(req) == XMPPD_HTTP_PUT)
        handle_put(um, req, slot, name);
    else
        handle_get(um, req, slot, name);
}

/* The client left, or the module unloads: a transfer still out (worker,
 * storage) is freed when it comes back. */
static void on_cancel(xmppd_http_request *req, void *ud)
{
    transfer *t = xmppd_http_data(req);
    if (!t)
        return;
    t->req = NULL;
    if (t->fd >= 0 && !t->busy) {
        close(t->fd);
        t->fd = -1;
        unlink(t->part);
    }
    if (!t->busy)
        transfer_free(t);
}

int upload_http_start(upload_mod *um)
{
    static const char *const headers[] = { "Content-Type", NULL };
    static const char *const expose[] = { "Content-Disposition", NULL };
    char path[300];
    snprintf(path, sizeof(path), "%s/", um->conf->url_path);
    xmppd_http_cors cors = { .origins = um->conf->cors_origins, .headers = headers,
                             .expose = expose, .max_age_s = 86400 };
    xmppd_http_route r = {
        .path = path, .domain = um->domain,
        .methods = XMPPD_HTTP_GET | XMPPD_HTTP_HEAD | XMPPD_HTTP_PUT,
        .max_body = um->conf->max_file_size, .flags = XMPPD_HTTP_STREAM_BODY,
        .cors = um->conf->cors_origins && um->conf->cors_origins[0] ? &cors : NULL,
        .handler = on_request, .body = put_body, .cancel = on_cancel, .ud = um,
    };
    if (xmppd_http_route_add(um->m, &r) < 0)
        return -1;
    /* Behind one web name (http.external_url) requests carry the host's name. */
    r.domain = NULL;
    return xmppd_http_route_add(um->m, &r);
}
