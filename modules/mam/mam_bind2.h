/* Bind2 (XEP-0386): the archive's metadata in <bound/> (mam_bind2.c). */
#ifndef MAM_BIND2_H
#define MAM_BIND2_H

#include "mam_mod.h"

/* "bind2-bound" handler; ud: the mam_mod. */
int mam_bind2_bound(xmppd_event *ev, void *ud);

#endif
