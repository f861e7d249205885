/*
 * core/app — the one `struct app` that owns everything followupd runs: the
 * libuv loop, the active configuration, the logger, signal handling, and every
 * component (database pool and listener, HTTP server, HTTP client, Google
 * clients, services).  Components receive the pieces they need from here; no
 * module keeps mutable global state.
 *
 * Lifecycle: app_init() (config already loaded) → app_start() (binds, starts
 * connecting; non-blocking) → uv_run() → a signal calls app_stop(), which
 * closes every component asynchronously; when the last one reports back, the
 * signal handles close and uv_run() returns.  app_destroy() then asserts
 * uv_loop_close() == 0.
 */
#ifndef FOLLOWUPD_CORE_APP_H
#define FOLLOWUPD_CORE_APP_H

#include <stdbool.h>
#include <uv.h>

#include "core/config.h"
#include "core/service_manager.h"
#include "utils/log.h"

struct app_components;   /* defined in core/components.c */

struct app {
    uv_loop_t loop;
    struct config cfg;          /* active configuration (replaced on SIGHUP) */
    char *config_path;
    struct logger log;
    uv_signal_t sig_term, sig_int, sig_hup;
    bool stopping;
    int stop_signals;           /* how many stop signals were received */
    int closing_pending;        /* async closes still outstanding */
    int exit_code;
    struct app_components *comp;
    struct service_manager sm;  /* systemd notifications (READY/STATUS/WATCHDOG/RELOADING/STOPPING) */
};

/* Takes ownership of cfg. Returns 0 or -1 (logged). */
int app_init(struct app *app, struct config *cfg, const char *config_path) __attribute__((warn_unused_result));
int app_start(struct app *app) __attribute__((warn_unused_result));
int app_run(struct app *app);                 /* runs the loop until stopped; returns the exit code */
void app_stop(struct app *app, const char *why);
int app_reload(struct app *app);              /* SIGHUP: 0 applied, -1 kept the old config */
int app_destroy(struct app *app);             /* returns uv_loop_close()'s result */

/* Bookkeeping for asynchronous component closes (called by components' done callbacks). */
void app_close_begin(struct app *app);
void app_close_done(void *app);

#endif
