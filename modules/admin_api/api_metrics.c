/* `metrics`: the server's metrics (what mod_metrics serves at /metrics)
 * as JSON, for the web console's dashboard, which computes stanza rates
 * from two readings. Read from the Prometheus text the kernel renders,
 * so both always agree; label cardinality is bounded there (no per-user
 * labels), so the answer is too. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "admin_api.h"

/* Label values in the exposition format escape \\, \" and \n. Reads
 * `"..."` at *p into a new string, advancing *p; NULL when malformed. */
static json_t *label_value(const char **p)
{
    const char *s = *p;
    if (*s++ != '"')
        return NULL;
    char *buf = malloc(strlen(s) + 1), *o = buf;
    if (!buf)
        return NULL;
    for (; *s && *s != '"'; s++) {
        if (*s == '\\' && s[1]) {
            s++;
            *o++ = *s == 'n' ? '\n' : *s;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
    json_t *v = *s == '"' ? json_string(buf) : NULL;
    free(buf);
    *p = *s ? s + 1 : s;
    return v;
}

/* One sample line "name{a="x",b="y"} value": {"name", "labels", "value"},
 * or NULL when the line is none. */
static json_t *sample(const char *line, const char *prefix)
{
    size_t n = strcspn(line, "{ ");
    if (n == 0 || line[n] == '\0' || (prefix && strncmp(line, prefix, strlen(prefix)) != 0))
        return NULL;
    json_t *labels = json_object();
    const char *p = line + n;
    if (*p == '{') {
        p++;
        while (labels && *p && *p != '}') {
            size_t k = strcspn(p, "=}");
            if (p[k] != '=') {
                json_decref(labels);
                return NULL;
            }
            char key[128];
            snprintf(key, sizeof(key), "%.*s", (int)k, p);
            p += k + 1;
            json_t *v = label_value(&p);
            if (!v) {
                json_decref(labels);
                return NULL;
            }
            json_object_set_new(labels, key, v);
            p += *p == ',';
        }
        if (*p != '}') {
            json_decref(labels);
            return NULL;
        }
        p++;
    }
    char *end = NULL;
    double v = strtod(p, &end);
    if (!labels || end == p) {
        json_decref(labels);
        return NULL;
    }
    return json_pack("{s:s%, s:o, s:o}", "name", line, n, "labels", labels, "value",
                     isfinite(v) ? json_real(v) : json_string(v > 0 ? "+Inf" : v < 0 ? "-Inf" : "NaN"));
}

/* metrics {"name"?}: the samples whose metric name begins with name (all
 * without it). */
void api_cmd_metrics(api_call *c)
{
    const char *prefix = json_string_value(json_object_get(c->args, "name"));
    size_t len = 0;
    char *text = xmppd_metrics_render(false, &len);
    json_t *out = text ? json_array() : NULL;
    for (char *line = text, *nl; out && line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        json_t *s = line[0] == '#' ? NULL : sample(line, prefix);
        if (s)
            json_array_append_new(out, s);
    }
    free(text);
    if (out)
        api_ok(c, out);
    else
        api_fail(c, 500, "out of memory");
}
