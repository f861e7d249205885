/*
 * utils/sd_notify — see the header.  The datagram protocol is the one
 * sd_notify(3) documents: the whole message in one datagram, no reply.
 */
#include "utils/sd_notify.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int parse_address(struct sd_notifier *n, const char *notify_socket)
{
    size_t len = strlen(notify_socket);
    bool abstract = notify_socket[0] == '@';
    if (!abstract && notify_socket[0] != '/') return -1; /* only absolute paths and abstract names */
    if (len < 2 || len > sizeof(n->addr.sun_path) - (abstract ? 0 : 1)) return -1;
    memset(&n->addr, 0, sizeof(n->addr));
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, notify_socket, len);
    if (abstract) n->addr.sun_path[0] = '\0';
    /* abstract names are exactly len bytes long; paths include their NUL */
    n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (abstract ? 0 : 1));
    return 0;
}

int sd_notifier_open(struct sd_notifier *n, const char *notify_socket)
{
    memset(n, 0, sizeof(*n));
    n->fd = -1;
    if (notify_socket == NULL || notify_socket[0] == '\0') return 0;
    if (parse_address(n, notify_socket) != 0) {
        errno = EINVAL;
        return -1;
    }
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    return n->fd >= 0 ? 0 : -1;
}

bool sd_notifier_enabled(const struct sd_notifier *n)
{
    return n->fd >= 0;
}

int sd_notifier_send(struct sd_notifier *n, const char *message)
{
    if (n->fd < 0) return 0;
    size_t len = strlen(message);
    ssize_t sent;
    do {
        sent = sendto(n->fd, message, len, MSG_NOSIGNAL, (const struct sockaddr *)&n->addr, n->addr_len);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) return -1;
    if ((size_t)sent != len) {
        errno = EMSGSIZE;
        return -1;
    }
    return 0;
}

void sd_notifier_close(struct sd_notifier *n)
{
    if (n->fd >= 0) close(n->fd);
    n->fd = -1;
}

/* Strict decimal: digits only, no sign, no overflow. */
static int parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0') return -1;
    uint64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int sd_watchdog_interval_us(const char *watchdog_usec, const char *watchdog_pid, pid_t self, uint64_t *usec)
{
    if (watchdog_usec == NULL || watchdog_usec[0] == '\0') return 0;
    uint64_t v;
    if (parse_u64(watchdog_usec, &v) != 0) return -1;
    if (watchdog_pid != NULL && watchdog_pid[0] != '\0') {
        uint64_t pid;
        if (parse_u64(watchdog_pid, &pid) != 0 || pid == 0 || pid > INT_MAX) return -1;
        if ((pid_t)pid != self) return 0;
    }
    if (v == 0) return 0;
    *usec = v;
    return 1;
}

uint64_t sd_monotonic_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
