/* Per-session and per-account state across the nodes of a cluster
 * (api/xmppd/cluster.h, docs/cluster.md "State across nodes").
 *
 * The session layer keeps the marks (they belong to the session, local or
 * remote) and hands what must travel to the cluster layer above it through
 * session_cluster (registered by cluster/, which this layer may not call). */
#include <stdlib.h>
#include <string.h>

#include "session/session.h"

#define API XMPPD_EXPORT
#define MARK_MAX 64
#define MARKS_MAX 512 /* all of a session's marks: the registry entry stays small */

const session_cluster *g_session_cluster;

void session_set_cluster(const session_cluster *c)
{
    g_session_cluster = c;
}

API const char *xmppd_cluster_node(void)
{
    return g_session_cluster ? g_session_cluster->node : NULL;
}

API bool xmppd_cluster_arrived(const xmppd_stanza *st)
{
    return g_session_cluster && st && g_session_cluster->arrived(st);
}

/* ---- marks -------------------------------------------------------------------- */

static bool mark_ok(const char *mark)
{
    size_t n = mark ? strlen(mark) : 0;
    if (n == 0 || n > MARK_MAX)
        return false;
    for (const char *p = mark; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr(".:-_", *p)))
            return false;
    return true;
}

/* Where mark starts in marks (a whole word), or NULL. */
static const char *find_mark(const char *marks, const char *mark)
{
    size_t n = strlen(mark);
    for (const char *p = marks; p && *p;) {
        const char *sp = strchr(p, ' ');
        size_t len = sp ? (size_t)(sp - p) : strlen(p);
        if (len == n && memcmp(p, mark, n) == 0)
            return p;
        p = sp ? sp + 1 : NULL;
    }
    return NULL;
}

API bool xmppd_session_marked(const xmppd_session *s, const char *mark)
{
    return s && mark && find_mark(s->marks, mark) != NULL;
}

API int xmppd_session_mark(xmppd_session *s, const char *mark, bool on)
{
    if (!s || s->remote || !mark_ok(mark))
        return -1;
    const char *at = find_mark(s->marks, mark);
    if ((at != NULL) == on)
        return 0;
    size_t old = s->marks ? strlen(s->marks) : 0, n = strlen(mark);
    char *v;
    if (on) {
        if (old + 1 + n > MARKS_MAX || !(v = malloc(old + n + 2)))
            return -1;
        if (old)
            memcpy(v, s->marks, old);
        v[old] = ' ';
        memcpy(v + (old ? old + 1 : 0), mark, n + 1);
    } else {
        /* the word and one space next to it go */
        size_t from = (size_t)(at - s->marks), to = from + n;
        if (to < old)
            to++;
        else if (from > 0)
            from--;
        if (!(v = malloc(old - (to - from) + 1)))
            return -1;
        memcpy(v, s->marks, from);
        memcpy(v + from, s->marks + to, old - to + 1);
    }
    free(s->marks);
    s->marks = v[0] ? v : NULL;
    if (!s->marks)
        free(v);
    /* the other nodes' copy of the session follows, as for a presence */
    if (s->in_sm && g_session_observer && g_session_observer->presence)
        g_session_observer->presence(s);
    return 0;
}

void session_marks_set(xmppd_session *s, const char *marks)
{
    char *v = marks && marks[0] ? strdup(marks) : NULL;
    if (marks && marks[0] && !v)
        return; /* out of memory: the old marks stay */
    free(s->marks);
    s->marks = v;
}

/* ---- invalidation ------------------------------------------------------------------ */

API int xmppd_cluster_invalidate(xmppd_module *m, const char *node)
{
    xmppd_host *h = m ? xmppd_module_host(m) : NULL;
    if (!h || !node || !node[0])
        return -1;
    if (!g_session_cluster)
        return 0;
    xmppd_jid *bare = xmppd_jid_make(node, xmppd_host_name(h), NULL);
    int rc = bare ? g_session_cluster->invalidate(h, bare->bare, xmppd_module_name(m)) : -1;
    xmppd_jid_free(bare);
    return rc;
}

/* ---- IQ answers for the node that asked --------------------------------------------- */

/* xmppd_iq_request's ids in a cluster: "xmppd-NODE-RANDOM", the random
 * part base64 (no '-'), so the node's name is what lies between the first
 * and the last '-'. */
bool session_id_node(const char *id, char *buf, size_t size)
{
    if (!id || strncmp(id, "xmppd-", 6) != 0)
        return false;
    const char *start = id + 6, *end = strrchr(start, '-');
    if (!end || end == start || (size_t)(end - start) >= size)
        return false;
    memcpy(buf, start, (size_t)(end - start));
    buf[end - start] = '\0';
    return true;
}
