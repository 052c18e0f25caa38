/* What `xmppctl check` verifies beyond the file's own rules: what would
 * make a start fail, or a client fail later, on this machine now — state
 * folder, certificates and keys, ports — and the per-host certificate
 * report of `xmppctl cert`. Read-only: nothing is created or bound for
 * longer than the check itself. */
#ifndef XMPPD_CORE_PREFLIGHT_H
#define XMPPD_CORE_PREFLIGHT_H

#include <stdbool.h>
#include <stdio.h>

#include "core/config.h"
#include "core/options.h"

/* Adds to errs what would fail at start: data_dir missing or not writable,
 * a key that is not its certificate's, a certificate that does not cover
 * its host or has expired, and (with ports) a listener address that cannot
 * be bound now (in use, not this machine's, a privileged port). warns
 * gets what works but should not: a certificate expiring within 14 days. */
void preflight_check(const xmppd_config *cfg, bool ports, opt_errors *errs, opt_errors *warns);

/* `xmppctl cert [HOST]`: for each host (or only host), the certificate it
 * presents: file, subject, names, issuer, validity, whether it covers the
 * host and matches its key. 0, or 1 when some host has a problem (each
 * printed), 2 when host is not configured. */
int preflight_cert_report(const xmppd_config *cfg, const char *host, FILE *out);

#endif
