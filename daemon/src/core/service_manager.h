/*
 * core/service_manager — what followupd tells systemd (Type=notify), over
 * utils/sd_notify:
 *   READY=1      once health_not_ready_reason() first says ready (HTTP listener
 *                bound, database pool connected, listener LISTENing, OIDC keys
 *                loaded in oidc mode), checked every 200 ms until then;
 *   STATUS=...   a one-line human summary ("listening on 127.0.0.1:8080,
 *                2 schema(s), 12 task(s) created, 0 execution(s) in flight",
 *                "starting: waiting for database", "not ready: listener"),
 *                refreshed every second and sent only when it changed;
 *   WATCHDOG=1   every half of $WATCHDOG_USEC from a loop timer (so only while
 *                the loop turns), when $WATCHDOG_PID is unset or names us;
 *   RELOADING=1 + MONOTONIC_USEC=<CLOCK_MONOTONIC µs> before a SIGHUP reload
 *                and READY=1 after it (only once READY was sent);
 *   STOPPING=1   when shutdown starts.
 * Without $NOTIFY_SOCKET nothing is sent and no timer runs.
 *
 * Lifecycle: service_manager_init() (plain reset, safe to close) →
 * service_manager_start() after the components started → ...reloading/
 * reloaded/stopping... → service_manager_close() (closes its timers; the
 * watchdog keeps running until then, i.e. through the shutdown drain).
 */
#ifndef FOLLOWUPD_CORE_SERVICE_MANAGER_H
#define FOLLOWUPD_CORE_SERVICE_MANAGER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "utils/sd_notify.h"

struct app;

struct service_manager {
    struct app *app;
    struct sd_notifier sd;
    uv_timer_t status_timer, watchdog_timer;
    bool status_open, watchdog_open;
    bool ready_sent, stopping, send_error_logged;
    uint64_t watchdog_usec;
    char last_status[256];
};

void service_manager_init(struct service_manager *sm);
/* Reads $NOTIFY_SOCKET, $WATCHDOG_USEC, $WATCHDOG_PID. 0, or -1 when they are
 * unusable (logged; the daemon runs on without notifications). */
int service_manager_start(struct service_manager *sm, struct app *app);
void service_manager_reloading(struct service_manager *sm);
void service_manager_reloaded(struct service_manager *sm, bool applied);
void service_manager_stopping(struct service_manager *sm);
void service_manager_close(struct service_manager *sm);

#endif
