/*
 * core/service_manager — see the header.
 */
#include "core/service_manager.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/app.h"
#include "core/components_internal.h"
#include "core/health.h"

#define READY_POLL_MS 200
#define STATUS_REFRESH_MS 1000

void service_manager_init(struct service_manager *sm)
{
    memset(sm, 0, sizeof(*sm));
    sm->sd.fd = -1;
}

static void send_message(struct service_manager *sm, const char *msg)
{
    if (sd_notifier_send(&sm->sd, msg) == 0 || sm->send_error_logged) return;
    sm->send_error_logged = true; /* once: a gone manager must not flood the log */
    LOG_KV(&sm->app->log, LOG_LEVEL_WARN, NULL, ((const char *[]){"error", strerror(errno), NULL}),
           "cannot notify the service manager");
}

/* "127.0.0.1:8080" from the configured listen address and the bound port. */
static void listen_text(const struct app *app, char *out, size_t cap)
{
    const char *listen = app->cfg.http_listen != NULL ? app->cfg.http_listen : "";
    const char *colon = strrchr(listen, ':');
    int host_len = colon != NULL ? (int)(colon - listen) : (int)strlen(listen);
    int port = app->comp != NULL && app->comp->http != NULL ? http_server_port(app->comp->http) : -1;
    snprintf(out, cap, "%.*s:%d", host_len, listen, port);
}

static void status_text(const struct service_manager *sm, const char *not_ready, char *out, size_t cap)
{
    const struct app *app = sm->app;
    const struct app_components *c = app->comp;
    if (sm->stopping) {
        snprintf(out, cap, "stopping: finishing in-flight work");
    } else if (not_ready != NULL) {
        snprintf(out, cap, "%s %s", sm->ready_sent ? "not ready:" : "starting: waiting for", not_ready);
    } else {
        char where[96];
        listen_text(app, where, sizeof(where));
        uint64_t scheduled = c->sched_ready ? c->sched.stats.created + c->sched.stats.already_existed : 0;
        snprintf(out, cap, "listening on %s, %d schema(s), %" PRIu64 " task(s) scheduled, %u execution(s) in flight",
                 where, app->cfg.db_schemas.n, scheduled, c->exec.inflight);
    }
}

/* Send STATUS= (with READY=1 the first time the daemon is ready). */
static void update(struct service_manager *sm)
{
    const char *not_ready = health_not_ready_reason(sm->app);
    char status[sizeof(sm->last_status)];
    status_text(sm, not_ready, status, sizeof(status));
    bool becomes_ready = not_ready == NULL && !sm->ready_sent && !sm->stopping;
    if (!becomes_ready && strcmp(status, sm->last_status) == 0) return;
    char msg[sizeof(status) + 32];
    snprintf(msg, sizeof(msg), "%sSTATUS=%s", becomes_ready ? "READY=1\n" : "", status);
    send_message(sm, msg);
    memcpy(sm->last_status, status, sizeof(status));
    if (becomes_ready) {
        sm->ready_sent = true;
        uv_timer_set_repeat(&sm->status_timer, STATUS_REFRESH_MS);
        LOG_INFO(&sm->app->log, NULL, "ready: told the service manager (%s)", status);
    }
}

static void on_status_timer(uv_timer_t *t)
{
    update(t->data);
}

static void on_watchdog_timer(uv_timer_t *t)
{
    send_message(t->data, "WATCHDOG=1");
}

static int start_timer(struct service_manager *sm, uv_timer_t *t, bool *open, uv_timer_cb cb, uint64_t first,
                       uint64_t repeat)
{
    int rc = uv_timer_init(&sm->app->loop, t);
    if (rc != 0) return rc;
    *open = true;
    t->data = sm;
    return uv_timer_start(t, cb, first, repeat);
}

static void start_watchdog(struct service_manager *sm)
{
    uint64_t usec = 0;
    int rc = sd_watchdog_interval_us(getenv("WATCHDOG_USEC"), getenv("WATCHDOG_PID"), getpid(), &usec);
    if (rc < 0) {
        LOG_WARN(&sm->app->log, NULL, "ignoring malformed WATCHDOG_USEC/WATCHDOG_PID");
        return;
    }
    if (rc == 0) {
        if (getenv("WATCHDOG_USEC") != NULL)
            LOG_INFO(&sm->app->log, NULL, "watchdog not armed: WATCHDOG_PID names another process or the period is 0");
        return;
    }
    sm->watchdog_usec = usec;
    uint64_t half_ms = usec / 2000 > 0 ? usec / 2000 : 1;
    if (start_timer(sm, &sm->watchdog_timer, &sm->watchdog_open, on_watchdog_timer, half_ms, half_ms) != 0) {
        LOG_ERROR(&sm->app->log, NULL, "cannot start the watchdog timer");
        return;
    }
    LOG_INFO(&sm->app->log, NULL, "watchdog armed: WATCHDOG=1 every %" PRIu64 " ms", half_ms);
}

int service_manager_start(struct service_manager *sm, struct app *app)
{
    sm->app = app;
    const char *socket_name = getenv("NOTIFY_SOCKET");
    if (sd_notifier_open(&sm->sd, socket_name) != 0) {
        LOG_KV(&app->log, LOG_LEVEL_ERROR, NULL, ((const char *[]){"error", strerror(errno), NULL}),
               "NOTIFY_SOCKET unusable: not notifying the service manager");
        return -1;
    }
    if (!sd_notifier_enabled(&sm->sd)) return 0;
    if (start_timer(sm, &sm->status_timer, &sm->status_open, on_status_timer, 0, READY_POLL_MS) != 0) {
        LOG_ERROR(&app->log, NULL, "cannot start the readiness timer");
        return -1;
    }
    start_watchdog(sm);
    return 0;
}

void service_manager_reloading(struct service_manager *sm)
{
    if (!sd_notifier_enabled(&sm->sd) || !sm->ready_sent || sm->stopping) return;
    char msg[96];
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading configuration",
             sd_monotonic_usec());
    send_message(sm, msg);
}

void service_manager_reloaded(struct service_manager *sm, bool applied)
{
    if (!sd_notifier_enabled(&sm->sd) || !sm->ready_sent || sm->stopping) return;
    char status[sizeof(sm->last_status)];
    status_text(sm, health_not_ready_reason(sm->app), status, sizeof(status));
    char msg[sizeof(status) + 96];
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s%s",
             applied ? ""
                     : "reload failed, kept the running "
                       "configuration; ",
             status);
    send_message(sm, msg);
    sm->last_status[0] = '\0'; /* the next refresh restores the plain summary */
}

void service_manager_stopping(struct service_manager *sm)
{
    if (sm->stopping) return;
    sm->stopping = true;
    if (sm->status_open) uv_timer_stop(&sm->status_timer);
    if (sd_notifier_enabled(&sm->sd)) send_message(sm, "STOPPING=1\nSTATUS=stopping: finishing in-flight work");
}

void service_manager_close(struct service_manager *sm)
{
    if (sm->status_open && !uv_is_closing((uv_handle_t *)&sm->status_timer))
        uv_close((uv_handle_t *)&sm->status_timer, NULL);
    if (sm->watchdog_open && !uv_is_closing((uv_handle_t *)&sm->watchdog_timer))
        uv_close((uv_handle_t *)&sm->watchdog_timer, NULL);
    sd_notifier_close(&sm->sd);
}
