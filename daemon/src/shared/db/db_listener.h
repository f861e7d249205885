/*
 * shared/db/db_listener — one dedicated session that LISTENs on a set of
 * channels and reports notifications, surviving reconnects.
 *
 * After every (re)connect the listener sends one LISTEN per channel (in order,
 * one statement at a time); when all succeeded it calls on_ready — the moment
 * the caller runs its catch-up query — and only then delivers notifications
 * (libpq holds any that arrive meanwhile). A failed LISTEN drops the session and
 * reconnects with backoff. When a ready session is lost, on_lost is called
 * (the reconnect is already scheduled) and on_ready follows again later:
 * anything notified while disconnected is lost, hence the catch-up.
 * The session must be a direct/session-mode connection (not PgBouncer
 * transaction pooling). All callbacks come from the loop.  Once ready, the
 * session also carries the statements of db_listener_query (work ownership).
 */
#ifndef FOLLOWUPD_SHARED_DB_DB_LISTENER_H
#define FOLLOWUPD_SHARED_DB_DB_LISTENER_H

#include <uv.h>

#include "shared/db/pg_conn.h"

struct logger;
struct db_listener;

struct db_listener_cbs {
    void (*on_ready)(void *arg);  /* after (re)connect, once every LISTEN succeeded: run catch-up now */
    void (*on_notify)(void *arg, const char *channel, const char *payload);
    void (*on_lost)(void *arg);   /* a ready session was lost; reconnect is already scheduled */
};

/* channels: 0..n names (copied), each 1..63 bytes. NULL on bad args/OOM. */
struct db_listener *db_listener_new(uv_loop_t *loop, struct logger *lg, const struct db_opts *opts,
                                    const char *const *channels, int n_channels,
                                    const struct db_listener_cbs *cbs, void *arg);
/* Starts connecting; returns at once. 0, or -1 when already started/closing. */
int db_listener_start(struct db_listener *l);
/* 1 between on_ready and the next loss. */
int db_listener_is_ready(const struct db_listener *l);
/* Run one statement on the listener's own session — for state that must end with this session, like the
 * session-level advisory locks of shared/db/db_ownership (a dead session releases them). Only while ready and
 * no other statement runs on it (the caller sends one at a time): 0 = cb runs later exactly once (res NULL when
 * the session was lost or closed meanwhile); -1 = not sent. */
int db_listener_query(struct db_listener *l, const char *sql, int nparams, const char *const *params,
                      db_result_cb cb, void *arg);
/* Closes the session and its handles, frees l, then calls done(arg) from the
 * loop. No callback of cbs runs after this call. */
void db_listener_close(struct db_listener *l, void (*done)(void *arg), void *arg);

#endif
