/*
 * utils/sd_notify — the service manager's notification protocol, without
 * libsystemd: one datagram per state change ("READY=1", "STATUS=...",
 * "WATCHDOG=1", "RELOADING=1\nMONOTONIC_USEC=...", "STOPPING=1") sent to the
 * AF_UNIX datagram socket named by $NOTIFY_SOCKET.  A leading '@' names a
 * Linux abstract socket (the '@' becomes a NUL byte); otherwise the value is a
 * filesystem path.
 *
 * API: sd_notifier_open() parses the socket address and opens one
 * non-blocking, close-on-exec socket (a missing/empty address leaves the
 * notifier disabled: every send is then a successful no-op);
 * sd_notifier_send() sends one message (never blocks: a full receiver queue is
 * an error the caller may ignore); sd_notifier_close().  The pure helpers
 * sd_watchdog_interval_us() (honours $WATCHDOG_USEC and $WATCHDOG_PID) and
 * sd_monotonic_usec() support the watchdog and reload messages.  No logging
 * here: functions return -1 with errno set and the caller reports.
 */
#ifndef FOLLOWUPD_UTILS_SD_NOTIFY_H
#define FOLLOWUPD_UTILS_SD_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

struct sd_notifier {
    int fd; /* -1 when disabled */
    struct sockaddr_un addr;
    socklen_t addr_len;
};

/* notify_socket: the value of $NOTIFY_SOCKET (NULL or "" = disabled, returns 0).
 * Returns 0, or -1 (errno EINVAL for an unusable address, or socket()'s error). */
int sd_notifier_open(struct sd_notifier *n, const char *notify_socket);
bool sd_notifier_enabled(const struct sd_notifier *n);
/* Send one newline-separated list of assignments. 0 (also when disabled) or -1. */
int sd_notifier_send(struct sd_notifier *n, const char *message);
void sd_notifier_close(struct sd_notifier *n);

/* Watchdog period requested by the service manager: 1 with *usec set when
 * watchdog_usec is a positive integer and watchdog_pid is NULL/empty or equals
 * self; 0 when the watchdog is off or meant for another process; -1 when a
 * value is malformed. */
int sd_watchdog_interval_us(const char *watchdog_usec, const char *watchdog_pid, pid_t self, uint64_t *usec);

/* CLOCK_MONOTONIC in microseconds (what MONOTONIC_USEC= carries). */
uint64_t sd_monotonic_usec(void);

#endif
