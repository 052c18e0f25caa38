/* systemd's readiness protocol (sd_notify(3)), for a Type=notify unit: one
 * datagram per state change to the socket $NOTIFY_SOCKET names. Without
 * that variable (not started by systemd) nothing is sent. */
#ifndef XMPPD_SDNOTIFY_H
#define XMPPD_SDNOTIFY_H

/* Sends state, e.g. "READY=1\nSTATUS=serving 2 hosts". 0, or -1 (errno)
 * when it could not be sent; 0 too when there is nobody to tell. */
int sd_notify_state(const char *state);

#endif
