/* Account provider front end (api/xmppd/auth.h). Each host has at most one
 * provider. Every consumer call is wrapped in an auth_call that holds a ref
 * on the provider module; if the provider unloads before answering, the
 * consumer gets XMPPD_AUTH_INTERNAL instead (still exactly once, later).
 * If the consumer module unloads first, its callback runs with
 * XMPPD_AUTH_CANCELLED before its unload(), and the provider's answer is
 * dropped when it comes. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "core/core.h"
#include "core/fast_tokens.h"

enum auth_op { A_PLAIN, A_SCRAM, A_EXISTS, A_CREATE, A_SET_PASSWORD, A_REMOVE, A_LIST, A_CREATE_KEYS,
               A_DISABLE, A_ENABLE, A_IS_DISABLED };

typedef struct auth_call auth_call;
struct auth_call {
    auth_call *prev, *next; /* in g_pending while the provider holds it */
    xmppd_module *pm;       /* provider module (ref held); NULL: no provider */
    xmppd_module *cm;       /* consumer module (ref held); NULL: the kernel */
    module_cleanup *cleanup; /* cancels the call when cm unloads first */
    bool cancelled;         /* the consumer was answered CANCELLED */
    xmppd_host *h;
    enum auth_op op;
    int fail;               /* result of a deferred failure */
    union {
        xmppd_auth_cb res;
        xmppd_auth_scram_cb scram;
        xmppd_auth_list_cb list;
    } cb;
    void *ud;
    char *user;             /* owned copy: create/remove/set_password */
};

static auth_call *g_pending;

/* A table of ABI 2.0 ends with list; later operations are there when its
 * size covers them. */
#define AUTH_PROVIDER_MIN_SIZE (offsetof(xmppd_auth_provider, list) + sizeof(void (*)(void)))
#define AUTH_HAS(p, op) ((p)->size >= offsetof(xmppd_auth_provider, op) + sizeof((p)->op) && (p)->op)

XMPPD_EXPORT const char *xmppd_auth_result_str(int result)
{
    switch (result) {
    case XMPPD_AUTH_OK: return "ok";
    case XMPPD_AUTH_MISMATCH: return "wrong password";
    case XMPPD_AUTH_USER_UNKNOWN: return "no such user";
    case XMPPD_AUTH_DISABLED: return "account disabled";
    case XMPPD_AUTH_NO_SCHEME: return "stored credentials cannot serve this mechanism";
    case XMPPD_AUTH_UNSUPPORTED: return "not supported: the host's auth provider is read-only for this";
    case XMPPD_AUTH_EXISTS: return "user exists";
    case XMPPD_AUTH_INVALID: return "invalid user name or password";
    case XMPPD_AUTH_INTERNAL: return "internal error";
    case XMPPD_AUTH_CANCELLED: return "cancelled: the asking module unloaded";
    default: return "unknown result";
    }
}

/* ---- pending calls ---- */

static void pending_add(auth_call *c)
{
    c->prev = NULL;
    c->next = g_pending;
    if (g_pending)
        g_pending->prev = c;
    g_pending = c;
}

static void pending_remove(auth_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (g_pending == c)
        g_pending = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* The consumer learns every answer through here, exactly once. */
static void call_answer(auth_call *c, int result, const xmppd_scram_keys *keys,
                        const char *const *users, size_t n)
{
    if (c->cleanup) {
        module_cleanup_cancel(c->cm, c->cleanup);
        c->cleanup = NULL;
    }
    if (c->cancelled)
        return;
    switch (c->op) {
    case A_SCRAM: c->cb.scram(result, result == XMPPD_AUTH_OK ? keys : NULL, c->ud); break;
    case A_LIST: c->cb.list(result, result == XMPPD_AUTH_OK ? users : NULL,
                            result == XMPPD_AUTH_OK ? n : 0, c->ud); break;
    default: c->cb.res(result, c->ud); break;
    }
}

/* The consumer module unloads: its callback learns so now. */
static void call_cancel(void *p)
{
    auth_call *c = p;
    c->cleanup = NULL;
    call_answer(c, XMPPD_AUTH_CANCELLED, NULL, NULL, 0);
    c->cancelled = true;
}

static void call_free(auth_call *c)
{
    if (c->cleanup)
        module_cleanup_cancel(c->cm, c->cleanup);
    if (c->pm)
        module_unref(c->pm);
    if (c->cm)
        module_unref(c->cm);
    free(c->user);
    free(c);
}

/* Answers c with its fail result and frees it (posted: always later). */
static void call_fail_now(void *p)
{
    auth_call *c = p;
    call_answer(c, c->fail, NULL, NULL, 0);
    call_free(c);
}

static void call_fail_later(auth_call *c, int result)
{
    c->fail = result;
    xmppd_loop_post(call_fail_now, c);
}

/* A new call of consumer cm (NULL: the kernel) with user copied when not
 * NULL; NULL on OOM or when cm is unloading, when no answer can be given. */
static auth_call *call_new(xmppd_module *cm, xmppd_host *h, enum auth_op op, const char *user,
                           void *ud)
{
    if (cm && !cm->loaded)
        return NULL;
    auth_call *c = calloc(1, sizeof *c);
    if (!c || (user && !(c->user = strdup(user))) ||
        (cm && !(c->cleanup = module_cleanup_add(cm, call_cancel, c)))) {
        if (c)
            free(c->user);
        free(c);
        log_kernel("auth", XMPPD_LOG_ERROR, "out of memory: account operation dropped");
        return NULL;
    }
    if (cm)
        module_ref(cm);
    c->cm = cm;
    c->h = h;
    c->op = op;
    c->ud = ud;
    return c;
}

/* Hands c to the provider, or fails it later when there is none. */
static bool call_start(auth_call *c, bool has_op)
{
    if (!c->h || !c->h->auth || !has_op) {
        call_fail_later(c, XMPPD_AUTH_UNSUPPORTED);
        return false;
    }
    c->pm = c->h->auth_module;
    module_ref(c->pm);
    pending_add(c);
    return true;
}

/* ---- provider registration ---- */

/* A provider displaced by a newer instance of the same module (a reload
 * loads the new instance before it unloads the old one). */
typedef struct auth_shadow {
    struct auth_shadow *next;
    xmppd_host *h;
    const xmppd_auth_provider *p;
    void *pd;
    xmppd_module *m;
} auth_shadow;

static auth_shadow *g_shadows;

/* Cleanup when the provider module m unloads: forget it (bringing back the
 * provider it displaced, if that one is still loaded), and answer what it
 * still held with INTERNAL. */
static void auth_release(void *p)
{
    xmppd_module *m = p;
    xmppd_host *h = m->host;
    auth_shadow **sp = &g_shadows;
    if (h && h->auth_module == m) {
        while (*sp && (*sp)->h != h) /* newest first */
            sp = &(*sp)->next;
        auth_shadow *sh = *sp;
        if (sh)
            *sp = sh->next;
        h->auth = sh ? sh->p : NULL;
        h->auth_pd = sh ? sh->pd : NULL;
        h->auth_module = sh ? sh->m : NULL;
        free(sh);
    } else {
        while (*sp) {
            auth_shadow *sh = *sp;
            if (sh->m == m) {
                *sp = sh->next;
                free(sh);
            } else {
                sp = &sh->next;
            }
        }
    }
    auth_call *c = g_pending;
    while (c) {
        auth_call *next = c->next;
        if (c->pm == m) {
            pending_remove(c);
            call_fail_later(c, XMPPD_AUTH_INTERNAL);
        }
        c = next;
    }
}

XMPPD_EXPORT int xmppd_auth_provide(xmppd_module *m, const xmppd_auth_provider *p, void *pd)
{
    xmppd_host *h = m->host;
    if (!h) {
        xmppd_log(m, XMPPD_LOG_ERROR, "an auth provider must be loaded per host, not globally");
        return -1;
    }
    if (!p || p->version != XMPPD_AUTH_PROVIDER_VERSION || p->size < AUTH_PROVIDER_MIN_SIZE ||
        !p->mechanisms || !p->verify_plain || !p->get_scram || !p->exists) {
        xmppd_log(m, XMPPD_LOG_ERROR, "auth provider table of an unsupported version or incomplete");
        return -1;
    }
    auth_shadow *sh = NULL;
    if (h->auth) {
        const xmppd_module *cur = h->auth_module;
        if (cur == m || strcmp(cur->def->name, m->def->name) != 0) {
            xmppd_log(m, XMPPD_LOG_ERROR, "host %s already has an auth provider (%s)", h->name,
                      cur->tag);
            return -1;
        }
        /* a newer instance of the same module: it takes over */
        if (!(sh = calloc(1, sizeof(*sh))))
            return -1;
        *sh = (auth_shadow){ g_shadows, h, h->auth, h->auth_pd, h->auth_module };
    }
    if (!module_cleanup_add(m, auth_release, m)) {
        free(sh);
        return -1;
    }
    if (sh)
        g_shadows = sh;
    h->auth = p;
    h->auth_pd = pd;
    h->auth_module = m;
    return 0;
}

/* ---- provider answers ---- */

static void on_purged(int status, void *ud)
{
    auth_call *c = ud;
    if (status != XMPPD_STORE_OK)
        log_kernel("auth", XMPPD_LOG_WARN, "account %s removed, but purging its data failed", c->user);
    call_answer(c, XMPPD_AUTH_OK, NULL, NULL, 0);
    call_free(c);
}

/* The host's event for a successful op, or NULL. */
static const char *success_event(enum auth_op op)
{
    switch (op) {
    case A_CREATE:
    case A_CREATE_KEYS: return "user-created";
    case A_REMOVE: return "user-deleted";
    case A_SET_PASSWORD: return "password-changed";
    case A_DISABLE: return "user-disabled";
    case A_ENABLE: return "user-enabled";
    default: return NULL;
    }
}

/* A new password, a deleted or a disabled account: its FAST tokens
 * (XEP-0484) are gone before the caller hears of it (xmppctl exits right
 * after), so no token logs it in again. */
static void on_tokens_revoked(int status, void *ud)
{
    auth_call *c = ud;
    if (c->op == A_REMOVE) {
        xmppd_storage_purge_user(c->h, c->user, on_purged, c);
        return;
    }
    call_answer(c, XMPPD_AUTH_OK, NULL, NULL, 0);
    call_free(c);
}

static void on_result(int result, void *ud)
{
    auth_call *c = ud;
    pending_remove(c);
    /* the host is alive while its provider module is loaded */
    bool host_alive = c->pm->loaded;
    const char *event = result == XMPPD_AUTH_OK ? success_event(c->op) : NULL;
    if (event && host_alive)
        xmppd_notify(c->h, event, NULL, (void *)c->user);
    if ((c->op == A_REMOVE || c->op == A_SET_PASSWORD || c->op == A_DISABLE) &&
        result == XMPPD_AUTH_OK && host_alive) {
        fast_records_revoke(c->h, c->user, on_tokens_revoked, c);
        return;
    }
    call_answer(c, result, NULL, NULL, 0);
    call_free(c);
}

static void on_scram(int result, const xmppd_scram_keys *keys, void *ud)
{
    auth_call *c = ud;
    pending_remove(c);
    call_answer(c, result, keys, NULL, 0);
    call_free(c);
}

static void on_list(int result, const char *const *users, size_t n, void *ud)
{
    auth_call *c = ud;
    pending_remove(c);
    call_answer(c, result, NULL, users, n);
    call_free(c);
}

/* ---- consumers ---- */

XMPPD_EXPORT unsigned xmppd_auth_mechanisms(xmppd_host *h)
{
    return h && h->auth ? h->auth->mechanisms(h->auth_pd) : 0;
}

XMPPD_EXPORT void xmppd_auth_verify_plain(xmppd_module *m, xmppd_host *h, const char *user, const char *password, xmppd_auth_cb cb, void *ud)
{
    auth_call *c = call_new(m, h, A_PLAIN, NULL, ud);
    if (!c)
        return;
    c->cb.res = cb;
    if (call_start(c, true))
        h->auth->verify_plain(h->auth_pd, user, password, on_result, c);
}

XMPPD_EXPORT void xmppd_auth_get_scram(xmppd_module *m, xmppd_host *h, const char *user, enum xmppd_hash hash, xmppd_auth_scram_cb cb, void *ud)
{
    auth_call *c = call_new(m, h, A_SCRAM, NULL, ud);
    if (!c)
        return;
    c->cb.scram = cb;
    if (call_start(c, true))
        h->auth->get_scram(h->auth_pd, user, hash, on_scram, c);
}

XMPPD_EXPORT void xmppd_auth_exists(xmppd_module *m, xmppd_host *h, const char *user, xmppd_auth_cb cb, void *ud)
{
    auth_call *c = call_new(m, h, A_EXISTS, NULL, ud);
    if (!c)
        return;
    c->cb.res = cb;
    if (call_start(c, true))
        h->auth->exists(h->auth_pd, user, on_result, c);
}

XMPPD_EXPORT void xmppd_auth_create(xmppd_module *m, xmppd_host *h, const char *user, const char *password, xmppd_auth_cb cb, void *ud)
{
    auth_call *c = call_new(m, h, A_CREATE, user ? user : "", ud);
    if (!c)
        return;
    c->cb.res = cb;
    if (call_start(c, h && h->auth && h->auth->create))
        h->auth->create(h->auth_pd, c->user, password, on_result, c);
}

XMPPD_EXPORT void xmppd_auth_set_password(xmppd_module *m, xmppd_host *h, const char *user, const char *password, xmppd_auth_cb cb, void *ud)
{
    auth_call *c = call_new(m, h, A_SET_PASSWORD, user ? user : "", ud);
    if (!c)
        return;
    c->cb.res = cb;
    if (call_start(c, h && h->auth && h->auth->set_password))
        h->auth->set_password(h->auth_pd, c->user, password, on_result, c);
}

XMPPD_EXPORT void xmppd_auth_remove(xmppd_module *m, xmppd_host *h, const char *user, xmppd_auth_cb cb, void *ud)
{
    auth_call *c = call_new(m, h, A_REMOVE, user ? user : "", ud);
    if (!c)
        return;
    c->cb.res = cb;
    if (call_start(c, h && h->auth && h->auth->remove))
        h->auth->remove(h->auth_pd, c->user, on_result, c);
}

XMPPD_EXPORT void xmppd_auth_create_keys(xmppd_module *m, xmppd_host *h, const char *user,
                                         const xmppd_scram_keys *const *keys, xmppd_auth_cb cb,
                                         void *ud)
{
    auth_call *c = call_new(m, h, A_CREATE_KEYS, user ? user : "", ud);
    if (!c)
        return;
    c->cb.res = cb;
    if (call_start(c, h && h->auth && AUTH_HAS(h->auth, create_keys) && keys))
        h->auth->create_keys(h->auth_pd, c->user, keys, on_result, c);
}

XMPPD_EXPORT void xmppd_auth_list(xmppd_module *m, xmppd_host *h, xmppd_auth_list_cb cb, void *ud)
{
    auth_call *c = call_new(m, h, A_LIST, NULL, ud);
    if (!c)
        return;
    c->cb.list = cb;
    if (call_start(c, h && h->auth && h->auth->list))
        h->auth->list(h->auth_pd, on_list, c);
}

XMPPD_EXPORT void xmppd_auth_set_disabled(xmppd_module *m, xmppd_host *h, const char *user,
                                          bool disabled, const char *reason, xmppd_auth_cb cb,
                                          void *ud)
{
    auth_call *c = call_new(m, h, disabled ? A_DISABLE : A_ENABLE, user ? user : "", ud);
    if (!c)
        return;
    c->cb.res = cb;
    if (call_start(c, h && h->auth && AUTH_HAS(h->auth, set_disabled)))
        h->auth->set_disabled(h->auth_pd, c->user, disabled, reason, on_result, c);
}

XMPPD_EXPORT void xmppd_auth_is_disabled(xmppd_module *m, xmppd_host *h, const char *user,
                                         xmppd_auth_cb cb, void *ud)
{
    auth_call *c = call_new(m, h, A_IS_DISABLED, NULL, ud);
    if (!c)
        return;
    c->cb.res = cb;
    if (call_start(c, h && h->auth && AUTH_HAS(h->auth, is_disabled)))
        h->auth->is_disabled(h->auth_pd, user, on_result, c);
}
