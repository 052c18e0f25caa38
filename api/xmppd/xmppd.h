/* Everything a module may use: include this one header. */
#ifndef XMPPD_XMPPD_H
#define XMPPD_XMPPD_H

#include "module.h"
#include "log.h"
#include "stanza.h"
#include "forms.h"
#include "jid.h"
#include "crypto.h"
#include "hooks.h"
#include "router.h"
#include "loop.h"
#include "storage.h"
#include "auth.h"
#include "ctl.h"
#include "http.h"
#include "access.h"
#include "metrics.h"
#include "cluster.h"

#endif
