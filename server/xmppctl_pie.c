/* xmppctl export, import and import-csv: XEP-0227 files in and out, in
 * batches through mod_xep0227's commands (modules/xep0227/pie.h), on the
 * running server or, when none runs, on its data in this process.
 *
 * Files to import are read with libxml2 (XIncludes done: XEP-0227 §5);
 * each <user/> goes to the server as text, which parses it as restricted
 * XML like any stanza. Exported files are created with mode 0600: they
 * hold every account's SCRAM keys (XEP-0227 §6). */
#define _GNU_SOURCE /* strndup */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xinclude.h>

#include "xmppctl.h"
#include "xmppd/crypto.h"
#include "xmppd/jid.h"
#include "xmppd/stanza.h"

#define PIE_NS "urn:xmpp:pie:0"
#define PIE_NS_MUC "urn:xmppd:pie:muc:0" /* rooms: modules/xep0227/rooms.c */
#define BATCH_USERS 200          /* accounts per request */
#define BATCH_BYTES (8u << 20)   /* serialised <user/> elements per request */
#define EXPORT_BATCH 50

/* ---- reading a file --------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len_r, char *err, size_t errlen)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    bool bad = !buf || ferror(f);
    if (f != stdin)
        fclose(f);
    if (bad) {
        free(buf);
        snprintf(err, errlen, "%s: cannot read", path);
        return NULL;
    }
    buf[len] = '\0';
    *len_r = len;
    return buf;
}

/* The file's document with its XIncludes done (libxml2: XEP-0227 §5
 * allows them anywhere; ejabberd's export_piefxis writes a main file that
 * includes one file per host). Huge files are allowed (a 20,000-account
 * export is tens of megabytes); nothing is fetched from the network and
 * no entity is substituted. NULL with err. */
static xmlDocPtr load_doc(const char *path, char *err, size_t errlen)
{
    const int opts = XML_PARSE_NONET | XML_PARSE_HUGE;
    xmlDocPtr doc = xmlReadFile(path, NULL, opts);
    if (!doc) {
        const xmlError *e = xmlGetLastError();
        snprintf(err, errlen, "%s:%d: not well-formed XML: %s", path, e ? e->line : 0,
                 e && e->message ? e->message : "unreadable");
        return NULL;
    }
    if (xmlXIncludeProcessFlags(doc, opts) < 0) {
        const xmlError *e = xmlGetLastError();
        snprintf(err, errlen, "%s: an XInclude failed: %s", path,
                 e && e->message ? e->message : "unreadable");
        xmlFreeDoc(doc);
        return NULL;
    }
    return doc;
}

static bool is_el(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

/* One element serialised on its own, with every namespace it uses
 * declared (those of its ancestors included). malloc'd. */
static char *serialise(xmlNodePtr n, size_t *len_r)
{
    xmlDocPtr d = xmlNewDoc(BAD_CAST "1.0");
    xmlNodePtr copy = d ? xmlDocCopyNode(n, d, 1) : NULL;
    xmlBufferPtr buf = copy ? xmlBufferCreate() : NULL;
    char *out = NULL;
    if (buf) {
        xmlDocSetRootElement(d, copy);
        xmlReconciliateNs(d, copy);
        if (xmlNodeDump(buf, d, copy, 0, 0) >= 0) {
            *len_r = (size_t)xmlBufferLength(buf);
            out = strndup((const char *)xmlBufferContent(buf), *len_r);
        }
        xmlBufferFree(buf);
    }
    if (d)
        xmlFreeDoc(d);
    return out;
}

/* ---- import ----------------------------------------------------------------------- */

typedef struct import_totals {
    long imported, skipped, failed;
} import_totals;

static void print_results(const char *host, const json_t *results, import_totals *t)
{
    size_t i;
    json_t *r;
    json_array_foreach(results, i, r) {
        const char *user = json_string_value(json_object_get(r, "user"));
        const char *status = json_string_value(json_object_get(r, "status"));
        const char *reason = json_string_value(json_object_get(r, "reason"));
        if (!status)
            status = "failed";
        printf("%-8s %s@%s", status, user ? user : "?", host);
        if (reason)
            printf(": %s", reason);
        const char *k;
        json_t *n;
        bool first = true;
        json_object_foreach(json_object_get(r, "counts"), k, n) {
            printf("%s%s %lld", first ? " (" : ", ", k, (long long)json_integer_value(n));
            first = false;
        }
        printf("%s\n", first ? "" : ")");
        size_t j;
        json_t *sk;
        json_array_foreach(json_object_get(r, "skipped"), j, sk)
            printf("         not imported: %s\n", json_string_value(sk));
        if (strcmp(status, "imported") == 0)
            t->imported++;
        else if (strcmp(status, "skipped") == 0)
            t->skipped++;
        else
            t->failed++;
    }
    fflush(stdout);
}

/* Sends one batch of serialised <user/> elements (args after the host). */
static int send_batch(msession *s, const char *host, json_t *batch, import_totals *t)
{
    if (json_array_size(batch) <= 1)
        return 0;
    int rc;
    json_t *r = ms_call(s, "import", json_pack("{s:s, s:O}", "command", "xep0227-import", "args",
                                               batch), &rc);
    if (!r) {
        t->failed += (long)json_array_size(batch) - 1;
        return rc;
    }
    print_results(host, json_object_get(r, "results"), t);
    json_decref(r);
    return 0;
}

static bool has_host(const xmppd_config *cfg, const char *domain)
{
    for (size_t i = 0; i < cfg->n_hosts; i++)
        if (strcmp(cfg->hosts[i].name, domain) == 0)
            return true;
    return false;
}

static bool is_room(const xmlNode *n)
{
    return is_el(n, "room") && n->ns && n->ns->href &&
           strcmp((const char *)n->ns->href, PIE_NS_MUC) == 0;
}

/* The <room/> children of one <host/> (our extension): into a stopped
 * server's data only, since a running group chat service keeps its rooms
 * in memory. One request per room. */
static int import_rooms(msession *s, const char *domain, xmlNodePtr host, import_totals *t)
{
    int rc = 0;
    for (xmlNodePtr r = host->children; r; r = r->next) {
        if (!is_room(r))
            continue;
        xmlChar *jid = xmlGetProp(r, BAD_CAST "jid");
        if (!s->inproc) {
            printf("skipped  room %s: rooms are imported into a stopped server's data (the "
                   "running group chat service keeps its rooms in memory): stop xmppd first\n",
                   jid ? (const char *)jid : "?");
            t->skipped++;
            xmlFree(jid);
            continue;
        }
        xmlFree(jid);
        size_t len = 0;
        char *xml = serialise(r, &len);
        if (!xml)
            continue;
        int crc;
        json_t *a = ms_call(s, "import", json_pack("{s:s, s:[s, s%]}", "command",
                                                   "xep0227-import-rooms", "args", domain, xml, len),
                            &crc);
        free(xml);
        if (!a) {
            rc |= crc;
            t->failed++;
            continue;
        }
        size_t i;
        json_t *res;
        json_array_foreach(json_object_get(a, "results"), i, res) {
            const char *status = json_string_value(json_object_get(res, "status"));
            const char *reason = json_string_value(json_object_get(res, "reason"));
            printf("%-8s room %s%s%s", status ? status : "failed",
                   json_string_value(json_object_get(res, "room")), reason ? ": " : "",
                   reason ? reason : "");
            json_int_t n = json_integer_value(json_object_get(json_object_get(res, "counts"), "archive"));
            printf(n ? " (archive %lld)\n" : "\n", (long long)n);
            size_t k;
            json_t *sk;
            json_array_foreach(json_object_get(res, "skipped"), k, sk)
                printf("         not imported: %s\n", json_string_value(sk));
            if (status && strcmp(status, "imported") == 0)
                t->imported++;
            else if (status && strcmp(status, "skipped") == 0)
                t->skipped++;
            else
                t->failed++;
        }
        json_decref(a);
    }
    return rc;
}

/* Imports the <user/> and <room/> children of one <host/>. */
static int import_host(msession *s, const xmppd_config *cfg, xmlNodePtr host, import_totals *t)
{
    xmlChar *jid = xmlGetProp(host, BAD_CAST "jid");
    char *domain = jid ? xmppd_nameprep((const char *)jid) : NULL;
    size_t n = 0;
    for (xmlNodePtr u = host->children; u; u = u->next)
        n += is_el(u, "user");
    int rc = 0;
    if (!domain || !has_host(cfg, domain)) {
        printf("skipped  host %s: not a host of %s (%zu accounts)\n",
               jid ? (const char *)jid : "without jid", cfg->path, n);
        t->skipped += (long)n;
        goto out;
    }
    size_t bytes = 0;
    json_t *batch = json_pack("[s]", domain);
    for (xmlNodePtr u = host->children; batch && u; u = u->next) {
        if (!is_el(u, "user"))
            continue;
        size_t len = 0;
        char *xml = serialise(u, &len);
        if (!xml)
            continue;
        if (len > BATCH_BYTES) {
            xmlChar *name = xmlGetProp(u, BAD_CAST "name");
            printf("failed   %s@%s: %zu bytes, more than one request may carry (%u)\n",
                   name ? (const char *)name : "?", domain, len, BATCH_BYTES);
            xmlFree(name);
            t->failed++;
            free(xml);
            continue;
        }
        if (bytes + len > BATCH_BYTES || json_array_size(batch) > BATCH_USERS) {
            rc |= send_batch(s, domain, batch, t);
            json_array_clear(batch);
            json_array_append_new(batch, json_string(domain));
            bytes = 0;
        }
        json_array_append_new(batch, json_stringn(xml, len));
        bytes += len;
        free(xml);
    }
    rc |= send_batch(s, domain, batch, t);
    json_decref(batch);
    rc |= import_rooms(s, domain, host, t);
out:
    xmlFree(jid);
    free(domain);
    return rc;
}

int cmd_import(int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "usage: " PROG " import FILE...\n");
        return 2;
    }
    xmppd_config *cfg = load_config();
    if (!cfg)
        return 1;
    xmlDocPtr *docs = calloc((size_t)argc, sizeof(*docs));
    int rc = docs ? 0 : 1;
    for (int i = 0; rc == 0 && i < argc; i++) {
        char err[4400];
        xmlNodePtr root;
        if (!(docs[i] = load_doc(argv[i], err, sizeof(err))))
            rc = fail("import", "%s", err);
        else if (!(root = xmlDocGetRootElement(docs[i])) ||
                 (!is_el(root, "server-data") && !is_el(root, "host")))
            rc = fail("import", "%s: a <%s/> at the top: expected <server-data/> or <host/> "
                      "(a user's file is imported through its host's)", argv[i],
                      root ? (const char *)root->name : "nothing");
    }
    msession s;
    import_totals t = { 0 };
    if (rc == 0 && (rc = ms_open(&s)) == 0) {
        for (int i = 0; i < argc; i++) {
            xmlNodePtr root = xmlDocGetRootElement(docs[i]);
            if (is_el(root, "host")) {
                rc |= import_host(&s, cfg, root, &t);
                continue;
            }
            for (xmlNodePtr h = root->children; h; h = h->next)
                if (is_el(h, "host"))
                    rc |= import_host(&s, cfg, h, &t);
        }
        ms_close(&s);
        printf("%ld imported, %ld skipped, %ld failed\n", t.imported, t.skipped, t.failed);
        if (t.failed)
            rc = 1;
    }
    for (int i = 0; docs && i < argc; i++)
        if (docs[i])
            xmlFreeDoc(docs[i]);
    free(docs);
    config_free(cfg);
    return rc;
}

/* ---- import-csv ------------------------------------------------------------------- */

/* One CSV record (RFC 4180: quoted fields, "" for a quote) of at most
 * max fields from *p, advancing it. Fields are malloc'd. The number of
 * fields, or -1 at the end of the text. */
static int csv_record(const char **p, char **fields, int max)
{
    const char *s = *p;
    if (!*s)
        return -1;
    int n = 0;
    for (;;) {
        size_t cap = 64, len = 0;
        char *f = malloc(cap);
        if (!f)
            return -1;
        bool quoted = *s == '"';
        if (quoted)
            s++;
        for (;;) {
            char c = *s;
            if (!c)
                break;
            if (quoted && c == '"') {
                if (s[1] == '"') {
                    s++;
                } else {
                    s++;
                    quoted = false;
                    continue;
                }
            } else if (!quoted && (c == ',' || c == '\n' || c == '\r')) {
                break;
            }
            if (len + 2 > cap) {
                char *nf = realloc(f, cap *= 2);
                if (!nf) {
                    free(f);
                    return -1;
                }
                f = nf;
            }
            f[len++] = c;
            s++;
        }
        f[len] = '\0';
        if (n < max)
            fields[n++] = f;
        else
            free(f);
        if (*s == ',') {
            s++;
            continue;
        }
        if (*s == '\r')
            s++;
        if (*s == '\n')
            s++;
        break;
    }
    *p = s;
    return n;
}

typedef struct csv_host {
    char *domain;
    json_t *batch;
} csv_host;

int cmd_import_csv(int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "usage: " PROG " import-csv FILE   (lines: JID,PASSWORD; \"-\": standard input)\n");
        return 2;
    }
    xmppd_config *cfg = load_config();
    if (!cfg)
        return 1;
    char err[4200];
    size_t len;
    char *text = slurp(argv[0], &len, err, sizeof(err));
    if (!text) {
        config_free(cfg);
        return fail("import-csv", "%s", err);
    }
    csv_host *hosts = calloc(cfg->n_hosts, sizeof(*hosts));
    msession s;
    import_totals t = { 0 };
    int rc = hosts ? ms_open(&s) : 1;
    if (rc != 0)
        goto out;
    for (size_t h = 0; h < cfg->n_hosts; h++) {
        hosts[h].domain = (char *)cfg->hosts[h].name;
        hosts[h].batch = json_pack("[s]", hosts[h].domain);
    }
    const char *p = text;
    long line = 0;
    char *f[2];
    int n;
    while ((n = csv_record(&p, f, 2)) >= 0) {
        line++;
        xmppd_jid *jid = n == 2 ? xmppd_jid_parse(f[0]) : NULL;
        bool header = line == 1 && n == 2 && strcmp(f[0], "jid") == 0;
        size_t h = 0;
        while (jid && h < cfg->n_hosts && strcmp(hosts[h].domain, jid->domain) != 0)
            h++;
        if (header || (n == 1 && !*f[0])) {
            /* a header line or an empty line */
        } else if (!jid || !jid->node || jid->resource || !*f[1]) {
            printf("failed   line %ld: expected JID,PASSWORD (an account address and a non-empty "
                   "password)\n", line);
            t.failed++;
        } else if (h == cfg->n_hosts) {
            printf("skipped  %s: %s is not a host of %s\n", jid->bare, jid->domain, cfg->path);
            t.skipped++;
        } else {
            /* The same path as a XEP-0227 import: <user name password/>. */
            xmppd_stanza *u = xmppd_stanza_new("user", PIE_NS);
            char *xml = NULL;
            if (u && xmppd_stanza_set_attr(u, "name", jid->node) == 0 &&
                xmppd_stanza_set_attr(u, "password", f[1]) == 0)
                xml = xmppd_stanza_to_string(u, PIE_NS, NULL);
            xmppd_stanza_unref(u);
            if (xml)
                json_array_append_new(hosts[h].batch, json_string(xml));
            if (xml)
                xmppd_wipe(xml, strlen(xml));
            free(xml);
            if (json_array_size(hosts[h].batch) > 500) {
                rc |= send_batch(&s, hosts[h].domain, hosts[h].batch, &t);
                json_array_clear(hosts[h].batch);
                json_array_append_new(hosts[h].batch, json_string(hosts[h].domain));
            }
        }
        xmppd_jid_free(jid);
        for (int k = 0; k < n; k++) {
            xmppd_wipe(f[k], strlen(f[k]));
            free(f[k]);
        }
    }
    for (size_t h = 0; h < cfg->n_hosts; h++) {
        rc |= send_batch(&s, hosts[h].domain, hosts[h].batch, &t);
        json_decref(hosts[h].batch);
    }
    ms_close(&s);
    printf("%ld imported, %ld skipped, %ld failed\n", t.imported, t.skipped, t.failed);
    if (t.failed)
        rc = 1;
out:
    free(hosts);
    xmppd_wipe(text, len);
    free(text);
    config_free(cfg);
    return rc;
}

/* ---- export ----------------------------------------------------------------------- */

static int export_users(msession *s, FILE *out, const char *host, json_t *users, long *n_r)
{
    int rc = 0;
    for (size_t at = 0; at < json_array_size(users); at += EXPORT_BATCH) {
        json_t *args = json_pack("[s]", host);
        for (size_t k = at; args && k < at + EXPORT_BATCH && k < json_array_size(users); k++)
            json_array_append(args, json_array_get(users, k));
        int crc;
        json_t *r = ms_call(s, "export", json_pack("{s:s, s:o*}", "command", "xep0227-export",
                                                   "args", args), &crc);
        if (!r)
            return crc;
        size_t i;
        json_t *u;
        json_array_foreach(json_object_get(r, "users"), i, u) {
            const char *xml = json_string_value(json_object_get(u, "xml"));
            if (xml) {
                fprintf(out, "    %s\n", xml);
                (*n_r)++;
            } else {
                rc = fail("export", "%s@%s: %s", json_string_value(json_object_get(u, "user")),
                          host, json_string_value(json_object_get(u, "error")));
            }
        }
        json_decref(r);
    }
    return rc;
}

/* The persistent group chat rooms of host, when its service keeps any
 * (an extension element of ours: modules/xep0227/rooms.c). */
static int export_rooms(msession *s, FILE *out, const char *host, long *n_r)
{
    int crc;
    json_t *r = ms_call(s, "export", json_pack("{s:s, s:[s]}", "command", "xep0227-rooms", "args",
                                               host), &crc);
    if (!r)
        return crc;
    json_t *rooms = json_object_get(r, "rooms");
    int rc = 0;
    for (size_t at = 0; rc == 0 && at < json_array_size(rooms); at += EXPORT_BATCH) {
        json_t *args = json_pack("[s]", host);
        for (size_t k = at; args && k < at + EXPORT_BATCH && k < json_array_size(rooms); k++)
            json_array_append(args, json_array_get(rooms, k));
        json_t *a = ms_call(s, "export", json_pack("{s:s, s:o*}", "command", "xep0227-export-rooms",
                                                   "args", args), &crc);
        if (!a) {
            rc = crc;
            break;
        }
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(a, "rooms"), i, x) {
            const char *xml = json_string_value(json_object_get(x, "xml"));
            if (xml) {
                fprintf(out, "    %s\n", xml);
                (*n_r)++;
            } else {
                rc = fail("export", "room %s: %s", json_string_value(json_object_get(x, "jid")),
                          json_string_value(json_object_get(x, "error")));
            }
        }
        json_decref(a);
    }
    json_decref(r);
    return rc;
}

int cmd_export(int argc, char **argv)
{
    if (argc < 1 || argc > 2) {
        fprintf(stderr, "usage: " PROG " export [HOST|JID] FILE\n");
        return 2;
    }
    const char *target = argc == 2 ? argv[0] : NULL, *path = argv[argc - 1];
    xmppd_config *cfg = load_config();
    if (!cfg)
        return 1;
    xmppd_jid *jid = target ? xmppd_jid_parse(target) : NULL;
    int rc = 0;
    if (target && (!jid || jid->resource || !has_host(cfg, jid->domain))) {
        rc = fail("export", "%s: not a host of %s nor an account of one", target, cfg->path);
        goto out;
    }
    int fd = strcmp(path, "-") == 0 ? dup(STDOUT_FILENO)
                                    : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!out) {
        rc = fail("export", "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto out;
    }
    msession s;
    long n = 0, hosts = 0, rooms = 0;
    if ((rc = ms_open(&s)) == 0) {
        fprintf(out, "<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='" PIE_NS "'>\n");
        for (size_t h = 0; rc == 0 && h < cfg->n_hosts; h++) {
            const char *host = cfg->hosts[h].name;
            if (jid && strcmp(jid->domain, host) != 0)
                continue;
            json_t *users = NULL;
            if (jid && jid->node) {
                users = json_pack("[s]", jid->node);
            } else {
                int crc;
                json_t *r = ms_call(&s, "export", json_pack("{s:s, s:[s]}", "command",
                                                            "xep0227-users", "args", host), &crc);
                if (!r) {
                    rc = crc;
                    break;
                }
                users = json_incref(json_object_get(r, "users"));
                json_decref(r);
            }
            fprintf(out, "  <host jid='%s'>\n", host);
            rc |= export_users(&s, out, host, users, &n);
            if (!(jid && jid->node))
                rc |= export_rooms(&s, out, host, &rooms);
            fprintf(out, "  </host>\n");
            hosts++;
            json_decref(users);
        }
        fprintf(out, "</server-data>\n");
        ms_close(&s);
    }
    if (fclose(out) != 0 && rc == 0)
        rc = fail("export", "%s: %s", path, strerror(errno));
    if (rc == 0 && strcmp(path, "-") != 0)
        fprintf(stderr, PROG ": exported %ld account%s and %ld room%s of %ld host%s to %s\n", n,
                n == 1 ? "" : "s", rooms, rooms == 1 ? "" : "s", hosts, hosts == 1 ? "" : "s", path);
out:
    xmppd_jid_free(jid);
    config_free(cfg);
    return rc;
}
