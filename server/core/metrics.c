/* The metrics registry (api/xmppd/metrics.h): metric families with a
 * bounded set of label sets each, collectors run before an exposition,
 * and the Prometheus / OpenMetrics text rendering. Also the process and
 * event-loop metrics every server has. */
#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/core.h"
#include "core/metrics.h"

struct xmppd_metric_series {
    const struct xmppd_metric *metric;
    char *values[XMPPD_METRIC_MAX_LABELS];
    double value;                 /* counter, gauge; histogram: sum */
    uint64_t count;               /* histogram */
    uint64_t *buckets;            /* histogram: per bucket (not cumulative) */
};

struct xmppd_metric {
    struct xmppd_metric *next;
    char *name, *help;
    enum xmppd_metric_type type;
    char *labels[XMPPD_METRIC_MAX_LABELS];
    size_t n_labels;
    double bounds[XMPPD_METRIC_MAX_BUCKETS];
    size_t n_bounds;
    char *owner;                  /* module name; NULL: the kernel's */
    int users;                    /* instances that registered it (kernel: 1, forever) */
    xmppd_metric_series **series;
    size_t n_series;
    xmppd_metric_series *other;   /* the label set beyond the bound */
};

typedef struct collector {
    struct collector *next;
    xmppd_module *m;
    module_cleanup *cleanup;
    void (*fn)(void *ud);
    void *ud;
} collector;

static xmppd_metric *g_metrics;   /* registration order */
static collector *g_collectors;

static const double g_latency[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1, 0.25, 0.5, 1, 2.5, 5, 10 };

/* ---- registration ------------------------------------------------------------------- */

static bool valid_name(const char *s, bool colon)
{
    if (!*s || strlen(s) > 128 || isdigit((unsigned char)*s))
        return false;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_' &&
            !(colon && *s == ':'))
            return false;
    return true;
}

static void series_free(xmppd_metric_series *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < XMPPD_METRIC_MAX_LABELS; i++)
        free(s->values[i]);
    free(s->buckets);
    free(s);
}

static void metric_free(xmppd_metric *mt)
{
    for (size_t i = 0; i < mt->n_series; i++)
        series_free(mt->series[i]);
    free(mt->series);
    series_free(mt->other);
    for (size_t i = 0; i < mt->n_labels; i++)
        free(mt->labels[i]);
    free(mt->name);
    free(mt->help);
    free(mt->owner);
    free(mt);
}

static void metric_release(void *p)
{
    xmppd_metric *mt = p;
    if (--mt->users > 0)
        return;
    for (xmppd_metric **mp = &g_metrics; *mp; mp = &(*mp)->next)
        if (*mp == mt) {
            *mp = mt->next;
            break;
        }
    metric_free(mt);
}

static xmppd_metric *find(const char *name)
{
    for (xmppd_metric *mt = g_metrics; mt; mt = mt->next)
        if (strcmp(mt->name, name) == 0)
            return mt;
    return NULL;
}

/* Does an existing metric have this shape (a second instance of its module)? */
static bool same_shape(const xmppd_metric *mt, const xmppd_module *m, enum xmppd_metric_type type,
                       const char *const *labels)
{
    if (!m || !mt->owner || strcmp(mt->owner, m->def->name) != 0 || mt->type != type)
        return false;
    size_t n = 0;
    for (; labels && labels[n]; n++)
        if (n >= mt->n_labels || strcmp(labels[n], mt->labels[n]) != 0)
            return false;
    return n == mt->n_labels;
}

XMPPD_EXPORT xmppd_metric *xmppd_metric_new(xmppd_module *m, const char *name,
                                            enum xmppd_metric_type type, const char *help,
                                            const char *const *labels, const double *buckets,
                                            size_t n_buckets)
{
    if ((m && !m->loaded) || !name || !help || !valid_name(name, true) ||
        (type == XMPPD_METRIC_COUNTER && (strlen(name) < 7 || strcmp(name + strlen(name) - 6, "_total") != 0)) ||
        n_buckets > XMPPD_METRIC_MAX_BUCKETS || (unsigned)type > XMPPD_METRIC_HISTOGRAM)
        return NULL;
    xmppd_metric *old = find(name);
    if (old) {
        if (!same_shape(old, m, type, labels) || !module_cleanup_add(m, metric_release, old)) {
            xmppd_log(m, XMPPD_LOG_ERROR, "metric %s: the name is taken", name);
            return NULL;
        }
        old->users++;
        return old;
    }
    xmppd_metric *mt = calloc(1, sizeof(*mt));
    if (!mt)
        return NULL;
    mt->type = type;
    bool ok = (mt->name = strdup(name)) && (mt->help = strdup(help)) &&
              (!m || (mt->owner = strdup(m->def->name)));
    for (; ok && labels && labels[mt->n_labels]; mt->n_labels++) {
        const char *l = labels[mt->n_labels];
        ok = mt->n_labels < XMPPD_METRIC_MAX_LABELS && valid_name(l, false) &&
             strcmp(l, "le") != 0 && (mt->labels[mt->n_labels] = strdup(l));
    }
    if (type == XMPPD_METRIC_HISTOGRAM) {
        const double *b = buckets ? buckets : g_latency;
        mt->n_bounds = buckets ? n_buckets : sizeof(g_latency) / sizeof(g_latency[0]);
        for (size_t i = 0; i < mt->n_bounds; i++) {
            ok = ok && (i == 0 || b[i] > b[i - 1]);
            mt->bounds[i] = b[i];
        }
    }
    if (!ok || (m && !module_cleanup_add(m, metric_release, mt))) {
        metric_free(mt);
        return NULL;
    }
    mt->users = 1;
    xmppd_metric **tail = &g_metrics;
    while (*tail)
        tail = &(*tail)->next;
    *tail = mt;
    return mt;
}

/* ---- series ----------------------------------------------------------------------------- */

static xmppd_metric_series *series_new(const xmppd_metric *mt, const char *const *values)
{
    xmppd_metric_series *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->metric = mt;
    if (mt->type == XMPPD_METRIC_HISTOGRAM && !(s->buckets = calloc(mt->n_bounds + 1, sizeof(uint64_t)))) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < mt->n_labels; i++) {
        const char *v = values && values[i] ? values[i] : "";
        if (!(s->values[i] = strndup(v, XMPPD_METRIC_MAX_VALUE))) {
            series_free(s);
            return NULL;
        }
    }
    return s;
}

static bool series_is(const xmppd_metric *mt, const xmppd_metric_series *s, const char *const *values)
{
    for (size_t i = 0; i < mt->n_labels; i++) {
        const char *v = values && values[i] ? values[i] : "";
        if (strncmp(s->values[i], v, XMPPD_METRIC_MAX_VALUE) != 0 ||
            (strlen(v) < XMPPD_METRIC_MAX_VALUE && s->values[i][strlen(v)]))
            return false;
    }
    return true;
}

XMPPD_EXPORT xmppd_metric_series *xmppd_metric_series_get(xmppd_metric *mt, const char *const *values)
{
    if (!mt)
        return NULL;
    for (size_t i = 0; i < mt->n_series; i++)
        if (series_is(mt, mt->series[i], values))
            return mt->series[i];
    if (mt->n_series >= XMPPD_METRIC_MAX_SERIES) {
        if (!mt->other) {
            const char *other[XMPPD_METRIC_MAX_LABELS] = { "other", "other", "other", "other" };
            mt->other = series_new(mt, other);
        }
        return mt->other;
    }
    xmppd_metric_series **v = realloc(mt->series, (mt->n_series + 1) * sizeof(*v));
    if (!v)
        return NULL;
    mt->series = v;
    xmppd_metric_series *s = series_new(mt, values);
    if (s)
        mt->series[mt->n_series++] = s;
    return s;
}

XMPPD_EXPORT void xmppd_metric_series_add(xmppd_metric_series *s, double v)
{
    if (s && s->metric->type != XMPPD_METRIC_HISTOGRAM &&
        (v >= 0 || s->metric->type == XMPPD_METRIC_GAUGE))
        s->value += v;
}

XMPPD_EXPORT void xmppd_metric_series_set(xmppd_metric_series *s, double v)
{
    if (s && s->metric->type == XMPPD_METRIC_GAUGE)
        s->value = v;
}

XMPPD_EXPORT void xmppd_metric_series_observe(xmppd_metric_series *s, double v)
{
    if (!s || s->metric->type != XMPPD_METRIC_HISTOGRAM)
        return;
    const xmppd_metric *mt = s->metric;
    size_t i = 0;
    while (i < mt->n_bounds && v > mt->bounds[i])
        i++;
    s->buckets[i]++;
    s->value += v;
    s->count++;
}

XMPPD_EXPORT void xmppd_metric_add(xmppd_metric *mt, const char *const *values, double v)
{
    if (mt)
        xmppd_metric_series_add(xmppd_metric_series_get(mt, values), v);
}

XMPPD_EXPORT void xmppd_metric_set(xmppd_metric *mt, const char *const *values, double v)
{
    if (mt)
        xmppd_metric_series_set(xmppd_metric_series_get(mt, values), v);
}

XMPPD_EXPORT void xmppd_metric_observe(xmppd_metric *mt, const char *const *values, double v)
{
    if (mt)
        xmppd_metric_series_observe(xmppd_metric_series_get(mt, values), v);
}

/* ---- collectors ------------------------------------------------------------------------- */

static void collector_release(void *p)
{
    collector *c = p;
    for (collector **cp = &g_collectors; *cp; cp = &(*cp)->next)
        if (*cp == c) {
            *cp = c->next;
            break;
        }
    free(c);
}

XMPPD_EXPORT int xmppd_metrics_collector(xmppd_module *m, void (*fn)(void *ud), void *ud)
{
    if ((m && !m->loaded) || !fn)
        return -1;
    collector *c = calloc(1, sizeof(*c));
    if (!c || (m && !(c->cleanup = module_cleanup_add(m, collector_release, c)))) {
        free(c);
        return -1;
    }
    c->m = m;
    c->fn = fn;
    c->ud = ud;
    c->next = g_collectors;
    g_collectors = c;
    return 0;
}

/* ---- rendering --------------------------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t len, cap;
    bool oom;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...)
{
    for (int tries = 0; !b->oom && tries < 2; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->p && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

/* A label value or help text escaped for the exposition formats. */
static void put_escaped(buf *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            put(b, "\\\\");
        else if (*s == '\n')
            put(b, "\\n");
        else if (*s == '"' && quote)
            put(b, "\\\"");
        else
            put(b, "%c", *s);
    }
}

/* {a="x",b="y"[,le="..."]} or nothing. */
static void put_labels(buf *b, const xmppd_metric *mt, const xmppd_metric_series *s, const char *le)
{
    if (!mt->n_labels && !le)
        return;
    put(b, "{");
    for (size_t i = 0; i < mt->n_labels; i++) {
        put(b, "%s%s=\"", i ? "," : "", mt->labels[i]);
        put_escaped(b, s->values[i], true);
        put(b, "\"");
    }
    if (le)
        put(b, "%sle=\"%s\"", mt->n_labels ? "," : "", le);
    put(b, "}");
}

static void put_series(buf *b, const xmppd_metric *mt, const xmppd_metric_series *s, bool om)
{
    if (mt->type != XMPPD_METRIC_HISTOGRAM) {
        put(b, "%s", mt->name);
        put_labels(b, mt, s, NULL);
        put(b, " %.17g\n", s->value);
        return;
    }
    uint64_t cum = 0;
    for (size_t i = 0; i <= mt->n_bounds; i++) {
        char le[40];
        if (i < mt->n_bounds)
            snprintf(le, sizeof(le), "%.17g", mt->bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        cum += s->buckets[i];
        put(b, "%s_bucket", mt->name);
        put_labels(b, mt, s, le);
        put(b, " %llu\n", (unsigned long long)cum);
    }
    put(b, "%s_sum", mt->name);
    put_labels(b, mt, s, NULL);
    put(b, " %.17g\n%s_count", s->value, mt->name);
    put_labels(b, mt, s, NULL);
    put(b, " %llu\n", (unsigned long long)s->count);
}

static void put_metric(buf *b, const xmppd_metric *mt, bool om)
{
    static const char *const types[] = { "counter", "gauge", "histogram" };
    /* OpenMetrics names a counter family without its _total suffix. */
    int n = (int)strlen(mt->name) - (om && mt->type == XMPPD_METRIC_COUNTER ? 6 : 0);
    put(b, "# HELP %.*s ", n, mt->name);
    put_escaped(b, mt->help, false);
    put(b, "\n# TYPE %.*s %s\n", n, mt->name, types[mt->type]);
    for (size_t i = 0; i < mt->n_series; i++)
        put_series(b, mt, mt->series[i], om);
    if (mt->other)
        put_series(b, mt, mt->other, om);
}

XMPPD_EXPORT char *xmppd_metrics_render(bool openmetrics, size_t *len_r)
{
    for (collector *c = g_collectors, *next; c; c = next) {
        next = c->next;
        c->fn(c->ud);
    }
    buf b = { 0 };
    for (const xmppd_metric *mt = g_metrics; mt; mt = mt->next)
        put_metric(&b, mt, openmetrics);
    if (openmetrics)
        put(&b, "# EOF\n");
    else
        put(&b, "%s", "");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (len_r)
        *len_r = b.len;
    return b.p;
}

/* ---- the process and the loop --------------------------------------------------------- */

static struct {
    xmppd_metric *rss, *vsz, *fds, *cpu, *start, *lag, *lag_hist;
    uint64_t expected_ms;
    xmppd_timer *lag_timer;
} g_proc;

#define LAG_TICK_MS 1000

static void collect_process(void *ud)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned long vsz_pages = 0, rss_pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%lu %lu", &vsz_pages, &rss_pages) != 2)
            vsz_pages = rss_pages = 0;
        fclose(f);
    }
    xmppd_metric_set(g_proc.rss, NULL, (double)rss_pages * (double)page);
    xmppd_metric_set(g_proc.vsz, NULL, (double)vsz_pages * (double)page);
    size_t fds = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d));)
        fds += e->d_name[0] != '.';
    if (d)
        closedir(d);
    xmppd_metric_set(g_proc.fds, NULL, (double)(fds ? fds - 1 : 0)); /* minus the one reading */
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        xmppd_metric_series *s = xmppd_metric_series_get(g_proc.cpu, NULL);
        if (s)
            s->value = cpu; /* a counter kept by the kernel: set to its current total */
    }
    xmppd_metric_set(g_proc.start, NULL, (double)xmppd_server_started());
}

/* The loop's lag: how late a timer armed for LAG_TICK_MS fires. */
static uint64_t lag_tick(void *ud)
{
    uint64_t now = xmppd_now_ms();
    double lag = now > g_proc.expected_ms ? (double)(now - g_proc.expected_ms) / 1000.0 : 0;
    xmppd_metric_set(g_proc.lag, NULL, lag);
    xmppd_metric_observe(g_proc.lag_hist, NULL, lag);
    g_proc.expected_ms = now + LAG_TICK_MS;
    return LAG_TICK_MS;
}

void metrics_start(void)
{
    g_proc.rss = xmppd_metric_new(NULL, "process_resident_memory_bytes", XMPPD_METRIC_GAUGE,
                                  "Resident memory size in bytes", NULL, NULL, 0);
    g_proc.vsz = xmppd_metric_new(NULL, "process_virtual_memory_bytes", XMPPD_METRIC_GAUGE,
                                  "Virtual memory size in bytes", NULL, NULL, 0);
    g_proc.fds = xmppd_metric_new(NULL, "process_open_fds", XMPPD_METRIC_GAUGE,
                                  "Open file descriptors (sockets included)", NULL, NULL, 0);
    g_proc.cpu = xmppd_metric_new(NULL, "process_cpu_seconds_total", XMPPD_METRIC_COUNTER,
                                  "User and system CPU time in seconds", NULL, NULL, 0);
    g_proc.start = xmppd_metric_new(NULL, "process_start_time_seconds", XMPPD_METRIC_GAUGE,
                                    "Start time of the server since the epoch in seconds", NULL,
                                    NULL, 0);
    g_proc.lag = xmppd_metric_new(NULL, "xmppd_event_loop_lag_seconds", XMPPD_METRIC_GAUGE,
                                  "How late the last one-second timer of the event loop fired",
                                  NULL, NULL, 0);
    static const double lag_buckets[] = { 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5 };
    g_proc.lag_hist = xmppd_metric_new(NULL, "xmppd_event_loop_lag_distribution_seconds",
                                       XMPPD_METRIC_HISTOGRAM,
                                       "Lateness of the event loop's one-second timer", NULL,
                                       lag_buckets, sizeof(lag_buckets) / sizeof(lag_buckets[0]));
    xmppd_metrics_collector(NULL, collect_process, NULL);
    g_proc.expected_ms = xmppd_now_ms() + LAG_TICK_MS;
    g_proc.lag_timer = xmppd_timer_add(NULL, LAG_TICK_MS, lag_tick, NULL);
}

void metrics_stop(void)
{
    xmppd_timer_cancel(g_proc.lag_timer);
    g_proc.lag_timer = NULL;
}

/* ---- the kernel's traffic counters ------------------------------------------------------ */

static struct {
    bool ready;
    xmppd_metric_series *stanzas[2][2][3]; /* transport, direction, kind */
    xmppd_metric_series *bytes[2];
    xmppd_metric_series *shrinks;
    xmppd_metric_series *write_waits;
    xmppd_metric_series *parks;
} g_traffic;

static void traffic_init(void)
{
    static const char *const transports[] = { "c2s", "s2s" }, *const dirs[] = { "in", "out" };
    static const char *const kinds[] = { "message", "presence", "iq" };
    static const char *const labels[] = { "transport", "direction", "kind", NULL };
    static const char *const dir_label[] = { "direction", NULL };
    xmppd_metric *st = xmppd_metric_new(NULL, "xmppd_stanzas_total", XMPPD_METRIC_COUNTER,
                                        "Stanzas received from and sent to clients and servers",
                                        labels, NULL, 0);
    xmppd_metric *by = xmppd_metric_new(NULL, "xmppd_stream_bytes_total", XMPPD_METRIC_COUNTER,
                                        "Bytes of XML streams: read (after TLS), and stanzas written",
                                        dir_label, NULL, 0);
    for (int t = 0; t < 2; t++)
        for (int d = 0; d < 2; d++)
            for (int k = 0; k < 3; k++)
                g_traffic.stanzas[t][d][k] =
                    xmppd_metric_series_get(st, (const char *[]){ transports[t], dirs[d], kinds[k] });
    for (int d = 0; d < 2; d++)
        g_traffic.bytes[d] = xmppd_metric_series_get(by, (const char *[]){ dirs[d] });
    g_traffic.shrinks = xmppd_metric_series_get(
        xmppd_metric_new(NULL, "xmppd_stream_parser_shrinks_total", XMPPD_METRIC_COUNTER,
                         "Idle streams whose parser gave its libxml2 context back "
                         "(rebuilt at the stream's next input)", NULL, NULL, 0),
        NULL);
    g_traffic.write_waits = xmppd_metric_series_get(
        xmppd_metric_new(NULL, "xmppd_stream_write_waits_total", XMPPD_METRIC_COUNTER,
                         "Times a stream's output waited for its socket to take more "
                         "(a slow reader, or a full socket buffer)", NULL, NULL, 0),
        NULL);
    g_traffic.parks = xmppd_metric_series_get(
        xmppd_metric_new(NULL, "xmppd_stream_parks_total", XMPPD_METRIC_COUNTER,
                         "Idle socket streams that gave their bufferevent back "
                         "(rebuilt at the stream's next input or output)", NULL, NULL, 0),
        NULL);
    g_traffic.ready = true;
}

void metrics_stanza(int transport, int direction, const char *element)
{
    int k = element[0] == 'm' ? 0 : element[0] == 'p' ? 1 : element[0] == 'i' ? 2 : -1;
    if (k < 0 || (k == 0 && strcmp(element, "message") != 0) ||
        (k == 1 && strcmp(element, "presence") != 0) || (k == 2 && strcmp(element, "iq") != 0))
        return;
    if (!g_traffic.ready)
        traffic_init();
    xmppd_metric_series_add(g_traffic.stanzas[transport & 1][direction & 1][k], 1);
}

void metrics_bytes(int direction, size_t n)
{
    if (!g_traffic.ready)
        traffic_init();
    xmppd_metric_series_add(g_traffic.bytes[direction & 1], (double)n);
}

void metrics_parser_shrinks(unsigned n)
{
    if (!g_traffic.ready)
        traffic_init();
    xmppd_metric_series_add(g_traffic.shrinks, n);
}

void metrics_write_wait(void)
{
    if (!g_traffic.ready)
        traffic_init();
    xmppd_metric_series_add(g_traffic.write_waits, 1);
}

void metrics_stream_parked(void)
{
    if (!g_traffic.ready)
        traffic_init();
    xmppd_metric_series_add(g_traffic.parks, 1);
}

void metrics_free_all(void)
{
    while (g_collectors) {
        collector *c = g_collectors;
        g_collectors = c->next;
        free(c);
    }
    while (g_metrics) {
        xmppd_metric *mt = g_metrics;
        g_metrics = mt->next;
        metric_free(mt);
    }
    memset(&g_traffic, 0, sizeof(g_traffic));
}
