/* sd_notify(3) without libsystemd. The protocol is one of systemd's
 * documented stable interfaces ("The notification protocol"): a datagram
 * of newline-separated VAR=value lines to the AF_UNIX socket in
 * $NOTIFY_SOCKET, a path or, with a leading '@', an abstract name. It is
 * twenty lines: a library dependency (and a build option to make it
 * optional) would cost more than it saves, and the server then behaves the
 * same wherever it is built. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sdnotify.h"

int sd_notify_state(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sun.sun_path)) {
        errno = EINVAL;
        return -1;
    }
    memcpy(sun.sun_path, path, len);
    if (path[0] == '@')
        sun.sun_path[0] = '\0'; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, alen);
    int e = errno;
    close(fd);
    errno = e;
    return n < 0 ? -1 : 0;
}
