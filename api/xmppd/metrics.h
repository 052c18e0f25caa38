/* Metrics (ABI 2.5): counters, gauges and histograms the kernel and
 * modules keep, exposed by mod_metrics at /metrics in the Prometheus text
 * format (or OpenMetrics, when the scraper asks for it).
 *
 * Cardinality is bounded by design: a metric declares its label names,
 * and takes at most XMPPD_METRIC_MAX_SERIES distinct label sets; later
 * sets are counted under one series whose values are all "other". Label
 * values are cut to XMPPD_METRIC_MAX_VALUE bytes. Never use a per-user or
 * per-address value as a label: hosts, transports, kinds, mechanisms,
 * module names are the kind of labels that stay few.
 *
 * A module's metrics are registered from load() on. Instances of the same
 * module (one per host, or the old and new one of a reload) registering
 * the same name share one metric, which keeps its values until the last
 * of them unloads. Loop thread only. */
#ifndef XMPPD_METRICS_H
#define XMPPD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include "module.h"

#define XMPPD_METRIC_MAX_SERIES 256
#define XMPPD_METRIC_MAX_LABELS 4
#define XMPPD_METRIC_MAX_VALUE 64
#define XMPPD_METRIC_MAX_BUCKETS 24

enum xmppd_metric_type {
    XMPPD_METRIC_COUNTER = 0,   /* only grows; its name ends in "_total" */
    XMPPD_METRIC_GAUGE = 1,     /* goes up and down */
    XMPPD_METRIC_HISTOGRAM = 2  /* observations counted into buckets, with sum and count */
};

typedef struct xmppd_metric xmppd_metric;        /* one metric family; kernel-owned */
typedef struct xmppd_metric_series xmppd_metric_series; /* one label set of it */

/* Registers a metric for m (NULL: the kernel's). name: [a-z_:][a-z0-9_:]*
 * (counters end in "_total"); help: one line (copied); labels: the label
 * names, NULL-terminated (NULL: none; at most XMPPD_METRIC_MAX_LABELS);
 * buckets: a histogram's upper bounds, ascending, n_buckets of them (at
 * most XMPPD_METRIC_MAX_BUCKETS; NULL: latency buckets from 0.5 ms to
 * 10 s). The metric, or NULL: a bad name or labels, the name taken by
 * another module or with another type or labels, OOM, m unloading.
 * Released when m (and every other instance sharing it) unloads. */
xmppd_metric *xmppd_metric_new(xmppd_module *m, const char *name, enum xmppd_metric_type type,
                               const char *help, const char *const *labels,
                               const double *buckets, size_t n_buckets);

/* The series of one label set: values in the order of the labels (as
 * many as declared; NULL for a metric without labels), copied. Borrowed:
 * valid as long as the metric, so a hot path resolves it once and keeps
 * it. NULL on OOM only (a full metric gives its "other" series). */
xmppd_metric_series *xmppd_metric_series_get(xmppd_metric *mt, const char *const *values);
/* Counter or gauge: adds v (a counter ignores v < 0). */
void xmppd_metric_series_add(xmppd_metric_series *s, double v);
/* Gauge: sets v. */
void xmppd_metric_series_set(xmppd_metric_series *s, double v);
/* Histogram: counts one observation of v. */
void xmppd_metric_series_observe(xmppd_metric_series *s, double v);

/* The same by label values, for paths that are not hot. NULL mt: no-op. */
void xmppd_metric_add(xmppd_metric *mt, const char *const *values, double v);
void xmppd_metric_set(xmppd_metric *mt, const char *const *values, double v);
void xmppd_metric_observe(xmppd_metric *mt, const char *const *values, double v);

/* fn(ud) runs before every exposition, to set gauges that are cheaper to
 * compute when asked (queue lengths, table sizes). Released when m
 * unloads. 0, or -1 on OOM or when m is unloading. */
int xmppd_metrics_collector(xmppd_module *m, void (*fn)(void *ud), void *ud);

/* Every metric in the Prometheus text format 0.0.4, or OpenMetrics 1.0
 * (ending with "# EOF"): collectors run first. malloc'd, the caller frees;
 * *len_r gets its length; NULL on OOM. */
char *xmppd_metrics_render(bool openmetrics, size_t *len_r);

#endif
