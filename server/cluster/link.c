/* Signed frames between nodes.
 *
 * A frame is  HEX(HMAC-SHA256(secret, payload)) " " payload  with
 * payload = KIND "\n" FROM-NODE "\n" HOPS "\n" ARG "\n" BODY. HOPS counts
 * the frames that led to this one (a stanza routed on another node may make
 * that node send stanzas on): beyond MAX_HOPS a frame is dropped, so nodes
 * whose copies of the registry disagree never pass stanzas around forever. Only a holder of the
 * cluster's secret can make one, so a stanza's 'from' stamped by the origin
 * node's router is believed, and nothing else on the Redis server can
 * inject stanzas or registry entries.
 *
 * Registry changes go to every node over pub/sub (link_publish): a node
 * that missed some while its subscriber reconnected reloads the hashes
 * (node.c). Stanzas for one node go into its stream (link_send, queue.c),
 * which keeps them until that node took them or their sender took them
 * back to bounce them. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "core/core.h"
#include "util/hmac.h"

#define MAC_HEX HMAC_SHA256_HEX
#define MAX_HOPS 8

/* The hop count of the frame being handled (0: none). */
static int g_hops;

static bool mac(const char *payload, size_t len, char out[MAC_HEX + 1])
{
    return hmac_sha256_hex(g_cluster.conf->secret, payload, len, out);
}

int link_hops(void)
{
    return g_hops + 1;
}

char *link_frame(const char *kind, const char *arg, const char *body, size_t blen, int hop,
                 size_t *len)
{
    const char *node = g_cluster.conf->node;
    char hops[16];
    snprintf(hops, sizeof(hops), "%d", hop);
    size_t hl = strlen(kind) + strlen(node) + strlen(hops) + strlen(arg) + 4;
    size_t total = MAC_HEX + 1 + hl + blen;
    char *f = malloc(total + 1);
    if (!f)
        return NULL;
    char *payload = f + MAC_HEX + 1;
    snprintf(payload, hl + 1, "%s\n%s\n%s\n%s\n", kind, node, hops, arg);
    if (blen)
        memcpy(payload + hl, body, blen);
    if (!mac(payload, hl + blen, f)) {
        free(f);
        return NULL;
    }
    f[MAC_HEX] = ' ';
    *len = total;
    return f;
}

int link_publish(const char *channel, const char *kind, const char *arg, const char *body,
                 size_t blen)
{
    if (!redis_conn_up(g_cluster.cmd))
        return -1;
    size_t len = 0;
    char *f = link_frame(kind, arg, body, blen, link_hops(), &len);
    int rc = -1;
    if (f) {
        const char *argv[] = { "PUBLISH", channel, f };
        size_t lens[] = { 7, strlen(channel), len };
        rc = redis_command(g_cluster.cmd, NULL, NULL, 3, argv, lens);
    }
    free(f);
    return rc;
}

int link_send(const char *node, const char *kind, const char *arg, const char *body, size_t blen,
              const xmppd_stanza *st)
{
    if (!redis_conn_up(g_cluster.cmd))
        return -1;
    return queue_put(node, kind, arg, body, blen, st, link_hops());
}

/* The next "\n"-terminated field of [*p, end) as a C string in buf. */
static bool field(const char **p, const char *end, char *buf, size_t size)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (!nl || (size_t)(nl - *p) >= size)
        return false;
    memcpy(buf, *p, (size_t)(nl - *p));
    buf[nl - *p] = '\0';
    *p = nl + 1;
    return true;
}

bool link_open(const char *where, const char *msg, size_t len, link_handler fn, void *ud)
{
    char want[MAC_HEX + 1];
    if (len < MAC_HEX + 1 || msg[MAC_HEX] != ' ' ||
        !mac(msg + MAC_HEX + 1, len - MAC_HEX - 1, want) ||
        CRYPTO_memcmp(want, msg, MAC_HEX) != 0) {
        log_kernel("cluster", XMPPD_LOG_WARN, "a frame on %s with a bad signature was dropped "
                   "(a node with another cluster.secret?)", where);
        return false;
    }
    const char *p = msg + MAC_HEX + 1, *end = msg + len;
    char kind[16], node[72], hops[16], arg[3072];
    if (!field(&p, end, kind, sizeof(kind)) || !field(&p, end, node, sizeof(node)) ||
        !field(&p, end, hops, sizeof(hops)) || !field(&p, end, arg, sizeof(arg))) {
        log_kernel("cluster", XMPPD_LOG_WARN, "a malformed frame on %s was dropped", where);
        return false;
    }
    int h = atoi(hops);
    if (h < 1 || h > MAX_HOPS) {
        log_kernel("cluster", XMPPD_LOG_WARN, "a %s frame from node %s for %s was dropped after %d "
                   "hops (the nodes disagree on where a session is)", kind, node, arg, h);
        return false;
    }
    int outer = g_hops;
    g_hops = h;
    fn(ud, kind, node, arg, p, (size_t)(end - p));
    g_hops = outer;
    return true;
}

static void from_channel(void *ud, const char *kind, const char *node, const char *arg,
                         const char *body, size_t blen)
{
    if (strcmp(node, g_cluster.conf->node) != 0) /* our own, echoed by the reg channel */
        registry_frame(kind, node, arg, body, blen);
}

void link_on_message(void *ud, const char *channel, size_t clen, const char *msg, size_t len)
{
    char where[256];
    snprintf(where, sizeof(where), "%.*s", (int)clen, channel);
    link_open(where, msg, len, from_channel, NULL);
}
