/*
 * core/components — wiring: builds every runtime component of followupd from
 * the configuration, starts them in dependency order, forwards reloads, and
 * closes them in reverse order on shutdown (reporting each asynchronous close
 * through app_close_begin/app_close_done).
 */
#ifndef FOLLOWUPD_CORE_COMPONENTS_H
#define FOLLOWUPD_CORE_COMPONENTS_H

struct app;

int components_start(struct app *app) __attribute__((warn_unused_result));
void components_stop(struct app *app);
void components_reload(struct app *app);
void components_free(struct app *app);

#endif
