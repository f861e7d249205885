/*
 * core/app — lifecycle of the daemon (see app.h): signals, start, reload,
 * orderly asynchronous shutdown.  Signals arrive through uv_signal_t, i.e. in
 * the loop, never in async-signal context.  SIGTERM/SIGINT stop the daemon; a
 * second one exits at once.  SIGHUP reloads the configuration: a bad file keeps
 * the old one; keys that cannot change live are warned about and keep their
 * running values.  The secrets of each loaded configuration are added to the
 * logger's redaction, and the ones rotated away stay in it.
 */
#include "core/app.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/components.h"

static void on_stop_signal(uv_signal_t *h, int signum)
{
    struct app *app = h->data;
    app->stop_signals++;
    if (app->stop_signals > 1) {
        LOG_WARN(&app->log, NULL, "second stop signal (%s): exiting now", signum == SIGINT ? "SIGINT" : "SIGTERM");
        _exit(1);
    }
    app_stop(app, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_hup_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    struct app *app = h->data;
    service_manager_reloading(&app->sm);
    int rc = app_reload(app);
    service_manager_reloaded(&app->sm, rc == 0);
}

static int start_signal(struct app *app, uv_signal_t *h, uv_signal_cb cb, int signum)
{
    int rc = uv_signal_init(&app->loop, h);
    if (rc == 0) {
        h->data = app;
        rc = uv_signal_start(h, cb, signum);
    }
    if (rc != 0) LOG_ERROR(&app->log, NULL, "cannot watch signal %d: %s", signum, uv_strerror(rc));
    return rc;
}

int app_init(struct app *app, struct config *cfg, const char *config_path)
{
    memset(app, 0, sizeof(*app));
    service_manager_init(&app->sm);
    app->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    app->config_path = config_path != NULL ? strdup(config_path) : NULL;
    logger_init(&app->log, app->cfg.log_level, STDERR_FILENO);
    config_apply_log_format(&app->cfg, &app->log);
    config_register_secrets(&app->cfg, &app->log);
    signal(SIGPIPE, SIG_IGN);
    int rc = uv_loop_init(&app->loop);
    if (rc != 0) {
        LOG_ERROR(&app->log, NULL, "uv_loop_init failed: %s", uv_strerror(rc));
        return -1;
    }
    app->loop.data = app;
    if (start_signal(app, &app->sig_term, on_stop_signal, SIGTERM) != 0 ||
        start_signal(app, &app->sig_int, on_stop_signal, SIGINT) != 0 ||
        start_signal(app, &app->sig_hup, on_hup_signal, SIGHUP) != 0)
        return -1;
    return 0;
}

int app_start(struct app *app)
{
    if (components_start(app) != 0) return -1;
    (void)service_manager_start(&app->sm, app);   /* logged; the daemon runs without notifications */
    LOG_INFO(&app->log, NULL, "followupd %s started (%d schema(s), backend %s)", FOLLOWUPD_VERSION,
             app->cfg.db_schemas.n, app->cfg.queue_backend == QUEUE_LOCAL ? "local" : "cloudtasks");
    return 0;
}

void app_close_begin(struct app *app)
{
    app->closing_pending++;
}

static void close_signals(struct app *app)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&app->sig_term, (uv_handle_t *)&app->sig_int, (uv_handle_t *)&app->sig_hup};
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
        if (hs[i]->type == UV_SIGNAL && !uv_is_closing(hs[i])) uv_close(hs[i], NULL);
    service_manager_close(&app->sm);   /* last: the watchdog keeps pinging through the drain */
}

void app_close_done(void *arg)
{
    struct app *app = arg;
    if (--app->closing_pending > 0) return;
    LOG_DEBUG(&app->log, NULL, "all components closed");
    close_signals(app);
}

void app_stop(struct app *app, const char *why)
{
    if (app->stopping) return;
    app->stopping = true;
    LOG_INFO(&app->log, NULL, "stopping (%s)", why);
    service_manager_stopping(&app->sm);
    app_close_begin(app);            /* guard: released below once every close was started */
    components_stop(app);
    app_close_done(app);
}

int app_run(struct app *app)
{
    uv_run(&app->loop, UV_RUN_DEFAULT);
    return app->exit_code;
}

int app_reload(struct app *app)
{
    if (app->stopping) { /* components are closing: nothing to reload into */
        LOG_INFO(&app->log, NULL, "reload ignored: stopping");
        return -1;
    }
    struct config next;
    if (config_load_logged(&next, app->config_path, &app->log, "reload rejected: configuration error") != 0) {
        LOG_WARN(&app->log, NULL, "reload failed: keeping the running configuration");
        config_free(&next);
        return -1;
    }
    const char *changed[32];
    int n = config_diff_static(&app->cfg, &next, changed, 32);
    for (int i = 0; i < n && i < 32; i++)
        LOG_KV(&app->log, LOG_LEVEL_WARN, NULL, ((const char *[]){"key", changed[i], NULL}),
               "reload: this key cannot change while running; keeping the old value until restart");
    config_adopt_static(&next, &app->cfg);   /* running values of static keys stay */
    config_free(&app->cfg);
    app->cfg = next;
    app->log.level = app->cfg.log_level; /* its secrets were registered by the load: old ones stay */
    config_apply_log_format(&app->cfg, &app->log);
    components_reload(app);
    LOG_INFO(&app->log, NULL, "configuration reloaded");
    return 0;
}

int app_destroy(struct app *app)
{
    components_free(app);
    int rc = uv_loop_close(&app->loop);
    if (rc != 0) {
        LOG_ERROR(&app->log, NULL, "event loop not clean at exit: %s", uv_strerror(rc));
    } else {
        LOG_INFO(&app->log, NULL, "stopped: all handles closed");
    }
    config_free(&app->cfg);
    free(app->config_path);
    logger_free(&app->log);
    return rc;
}
