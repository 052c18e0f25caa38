/* mod_upload: what is kept about files (store "upload"), the quota, the
 * expiry sweep and the removal of a deleted account's files. Disk work
 * that can take long (deleting many files, whole folders) runs on a
 * worker (xmppd_offload), never on the loop. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "upload.h"

/* ---- paths ------------------------------------------------------------------------------- */

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

bool upload_file_path(const upload_mod *um, const char *slot, char *out, size_t len)
{
    if (strlen(slot) != UPLOAD_SLOT_LEN || slot[UPLOAD_USERDIR_LEN] != '-' ||
        !is_hex(slot, UPLOAD_USERDIR_LEN) ||
        !is_hex(slot + UPLOAD_USERDIR_LEN + 1, UPLOAD_RANDOM_LEN))
        return false;
    int n = snprintf(out, len, "%s/%.*s/%s", um->dir, UPLOAD_USERDIR_LEN, slot,
                     slot + UPLOAD_USERDIR_LEN + 1);
    return n > 0 && (size_t)n < len;
}

int upload_mkdirs(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path))
        return -1;
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(path, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

/* ---- quota ------------------------------------------------------------------------------- */

typedef struct usage_req {
    upload_usage_cb cb;
    void *ud;
} usage_req;

static void on_user_files(int status, json_t *value, void *ud)
{
    usage_req *r = ud;
    long long used = 0;
    if (status == XMPPD_STORE_CANCELLED) {
        used = -2;
    } else if (status == XMPPD_STORE_OK) {
        const char *k;
        json_t *v;
        json_object_foreach(value, k, v)
            used += json_integer_value(json_object_get(v, "size"));
    } else if (status != XMPPD_STORE_NOT_FOUND) {
        used = -1;
    }
    r->cb(used, r->ud);
    free(r);
}

void upload_usage(upload_mod *um, const char *user, upload_usage_cb cb, void *ud)
{
    usage_req *r = malloc(sizeof(*r));
    if (!r) {
        cb(-1, ud);
        return;
    }
    *r = (usage_req){ cb, ud };
    xmppd_kv_get_all(um->store, user, on_user_files, r);
}

/* ---- records ------------------------------------------------------------------------------ */

typedef struct record_req {
    xmppd_store_done_cb cb;
    void *ud;
    int left, status;
} record_req;

static void on_recorded(int status, void *ud)
{
    record_req *r = ud;
    if (status != XMPPD_STORE_OK && r->status == XMPPD_STORE_OK)
        r->status = status;
    if (--r->left > 0)
        return;
    r->cb(r->status, r->ud);
    free(r);
}

void upload_record(upload_mod *um, const char *user, const char *slot, const char *name,
                   const char *ctype, long long size, xmppd_store_done_cb cb, void *ud)
{
    json_t *meta = json_pack("{s:s, s:s, s:s, s:I, s:I}", "user", user, "name", name, "type",
                             ctype, "size", (json_int_t)size, "at",
                             (json_int_t)(xmppd_wallclock_ms() / 1000));
    record_req *r = meta ? malloc(sizeof(*r)) : NULL;
    if (!r) {
        json_decref(meta);
        cb(XMPPD_STORE_ERROR, ud);
        return;
    }
    *r = (record_req){ cb, ud, 2, XMPPD_STORE_OK };
    xmppd_kv_set(um->store, user, slot, meta, on_recorded, r);
    xmppd_kv_set(um->store, "", slot, meta, on_recorded, r);
    json_decref(meta);
}

void upload_lookup(upload_mod *um, const char *slot, xmppd_kv_get_cb cb, void *ud)
{
    xmppd_kv_get(um->store, "", slot, cb, ud);
}

/* ---- disk work on a worker ----------------------------------------------------------------- */

typedef struct unlink_job {
    char **paths;   /* files; a trailing '/' marks a folder to remove whole */
    size_t n;
} unlink_job;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

static void unlink_work(void *ud)
{
    unlink_job *j = ud;
    for (size_t i = 0; i < j->n; i++) {
        size_t len = strlen(j->paths[i]);
        if (len && j->paths[i][len - 1] == '/')
            nftw(j->paths[i], rm_one, 16, FTW_DEPTH | FTW_PHYS);
        else
            unlink(j->paths[i]);
    }
}

static void unlink_free(void *ud)
{
    unlink_job *j = ud;
    for (size_t i = 0; i < j->n; i++)
        free(j->paths[i]);
    free(j->paths);
    free(j);
}

/* The module unloads before a worker took the job (xmppctl deluser
 * unloads right after the deletion): the files go now, while it unloads,
 * rather than never. */
static void unlink_now(void *ud)
{
    unlink_work(ud);
    unlink_free(ud);
}

/* Runs the job on a worker; it is freed afterwards. */
static void unlink_start(upload_mod *um, unlink_job *j)
{
    if (j->n == 0)
        unlink_free(j);
    else if (xmppd_offload(um->m, unlink_work, unlink_free, unlink_now, j) < 0)
        unlink_now(j);
}

static int job_add(unlink_job *j, const char *path)
{
    char **v = realloc(j->paths, (j->n + 1) * sizeof(*v));
    if (!v)
        return -1;
    j->paths = v;
    if (!(v[j->n] = strdup(path)))
        return -1;
    j->n++;
    return 0;
}

/* ---- expiry ---------------------------------------------------------------------------------- */

static void on_all_files(int status, json_t *value, void *ud)
{
    upload_mod *um = ud;
    if (status != XMPPD_STORE_OK)
        return; /* cancelled, empty or a storage error: the next sweep tries again */
    int64_t now = xmppd_wallclock_ms() / 1000, max = um->conf->expire_after / 1000;
    unlink_job *j = calloc(1, sizeof(*j));
    const char *slot;
    json_t *meta;
    size_t n = 0;
    json_object_foreach(value, slot, meta) {
        int64_t at = json_integer_value(json_object_get(meta, "at"));
        const char *user = json_string_value(json_object_get(meta, "user"));
        char path[4096];
        if (now - at < max || !upload_file_path(um, slot, path, sizeof(path)))
            continue;
        if (j)
            job_add(j, path);
        xmppd_kv_set(um->store, "", slot, NULL, NULL, NULL);
        if (user)
            xmppd_kv_set(um->store, user, slot, NULL, NULL, NULL);
        n++;
    }
    if (n)
        xmppd_log(um->m, XMPPD_LOG_INFO, "%zu expired files deleted", n);
    if (j)
        unlink_start(um, j);
}

static uint64_t on_sweep(void *ud)
{
    upload_mod *um = ud;
    if (um->conf->expire_after > 0)
        xmppd_kv_get_all(um->store, "", on_all_files, um);
    return (uint64_t)um->conf->cleanup_interval;
}

/* ---- account deletion ------------------------------------------------------------------------ */

/* The account's folder goes whole; its records are purged by the kernel,
 * and the download index entries pointing into the folder find no file
 * (404) until the sweep drops them. */
static int on_user_deleted(xmppd_event *ev, void *ud)
{
    upload_mod *um = ud;
    const char *user = ev->data;
    char userdir[UPLOAD_USERDIR_LEN + 1], path[4096];
    upload_userdir(um, user, userdir);
    snprintf(path, sizeof(path), "%s/%s/", um->dir, userdir);
    unlink_job *j = calloc(1, sizeof(*j));
    if (j && job_add(j, path) == 0)
        unlink_start(um, j);
    else if (j)
        unlink_free(j);
    return XMPPD_PASS;
}

int upload_files_start(upload_mod *um)
{
    if (xmppd_hook(um->m, "user-deleted", on_user_deleted, XMPPD_PRIO_DEFAULT, um) < 0)
        return -1;
    um->sweep = xmppd_timer_add(um->m, (uint64_t)um->conf->cleanup_interval, on_sweep, um);
    return um->sweep ? 0 : -1;
}
