/* The metrics registry (api/xmppd/metrics.h) as the kernel's layers use
 * it: their own metrics are registered with a NULL module and never go
 * away; hot paths keep the series they resolved once. */
#ifndef XMPPD_CORE_METRICS_H
#define XMPPD_CORE_METRICS_H

#include "xmppd/metrics.h"

/* The process and event-loop metrics: memory, file descriptors, CPU time,
 * start time, and the loop's lag (a timer's lateness, every second).
 * Once, after the loop exists (the server only). */
void metrics_start(void);
/* The kernel's traffic counters, cheap enough for every stanza:
 * xmppd_stanzas_total{transport, direction, kind} (element name
 * "message", "presence" or "iq"; others are not counted) and
 * xmppd_stream_bytes_total{direction}. */
enum { METRICS_C2S = 0, METRICS_S2S = 1 };
enum { METRICS_IN = 0, METRICS_OUT = 1 };
void metrics_stanza(int transport, int direction, const char *element);
void metrics_bytes(int direction, size_t n);
/* xmppd_stream_parser_shrinks_total: idle streams' parsers shrunk
 * (net/xstream_idle.c). */
void metrics_parser_shrinks(unsigned n);
/* xmppd_stream_write_waits_total: a socket stream's output waited for the
 * socket to become writable (net/xstream_out.c). */
void metrics_write_wait(void);
/* xmppd_stream_parks_total: idle streams that freed their bufferevent
 * (net/xstream_idle.c). */
void metrics_stream_parked(void);
/* Frees every metric (at exit). */
/* Stops the kernel's timer (before the loop is freed). */
void metrics_stop(void);
void metrics_free_all(void);

#endif
