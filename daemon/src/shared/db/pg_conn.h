/*
 * shared/db/pg_conn — one asynchronous PostgreSQL connection on the libuv loop.
 *
 * A pg_conn owns a libpq PGconn, the uv_poll_t watching its socket and one
 * uv_timer_t, and keeps itself connected: it connects with
 * PQconnectStartParams/PQconnectPoll (the socket may change between polls, so
 * the poll handle is closed before and recreated after every PQconnectPoll),
 * bounds each attempt with its own connect timeout (libpq does not enforce
 * connect_timeout in async mode), switches the connection to non-blocking mode
 * and then runs one statement at a time with PQsendQueryParams/PQflush/
 * PQconsumeInput/PQisBusy/PQgetResult. Notifications are drained with
 * PQnotifies after every PQconsumeInput and libpq notices go to the logger.
 *
 * A host name is resolved with uv_getaddrinfo (thread pool) before libpq sees
 * it, so libpq never blocks the loop on DNS (host lists are left to libpq).
 *
 * When the connection breaks or an attempt fails, the in-flight statement's
 * callback gets res == NULL and a cleaned error, and a reconnect is scheduled
 * with capped, jittered exponential backoff (db_backoff_delay_ms). The owner
 * learns about (re)connects and losses through pg_conn_cbs. No callback is ever
 * called from inside a pg_conn_* call: everything happens from loop callbacks.
 *
 * The owner is either the pool (db_pool.h) or the listener (db_listener.h);
 * other code uses those. pg_conn_close() closes every handle and frees the
 * object from the loop.
 */
#ifndef FOLLOWUPD_SHARED_DB_PG_CONN_H
#define FOLLOWUPD_SHARED_DB_PG_CONN_H

#include <libpq-fe.h>
#include <uv.h>

struct logger;

struct db_opts {            /* caller fills; strings are copied */
    const char *conninfo;   /* libpq conninfo or URI, may contain a password: never logged */
    unsigned reconnect_min_ms, reconnect_max_ms;  /* backoff with jitter; 0 = defaults 100 / 5000 */
    int prepare;            /* name and prepare each distinct parameterized statement once per connection */
};

/* res: the last PGresult of the statement (do NOT PQclear it; valid only during
 * the callback). res == NULL when the connection failed/closed before a result
 * (err says why, never containing secrets). When res is non-NULL but its status
 * is an error, err = PQresultErrorMessage (trimmed). err NULL on success. */
typedef void (*db_result_cb)(void *arg, PGresult *res, const char *err);

struct pg_conn;

struct pg_conn_cbs {
    /* Connected and usable (state ready); called after every (re)connect. */
    void (*on_up)(void *arg);
    /* A connection that had been up was lost; reconnect is already scheduled.
     * The in-flight statement (if any) has already had its callback. */
    void (*on_down)(void *arg, const char *err);
    /* A notification; NULL = notifications are discarded. */
    void (*on_notify)(void *arg, const char *channel, const char *payload);
};

/* name: short label for logs ("pool#1", "listener"). NULL on bad args/OOM. */
struct pg_conn *pg_conn_new(uv_loop_t *loop, struct logger *lg, const struct db_opts *opts, const char *name,
                            const struct pg_conn_cbs *cbs, void *arg);
/* Schedule the first connection attempt (from the loop). 0, or -1 when already
 * started or closing. */
int pg_conn_start(struct pg_conn *c);
/* Connected and no statement in flight: pg_conn_send() would be accepted. */
int pg_conn_is_ready(const struct pg_conn *c);
/* Connected (ready or running a statement). */
int pg_conn_is_up(const struct pg_conn *c);
/* Send one statement (params NULL entries = SQL NULL, text format). With
 * db_opts.prepare, a statement with parameters is prepared on its first use on
 * this connection (one extra round trip, params copied meanwhile) and then run
 * by name: the server parses and plans it once per connection, not per call.
 * 0: cb will be called exactly once later. -1: not ready, or libpq refused it (the
 * connection is then dropped and reconnected from the loop; cb is not called). */
int pg_conn_send(struct pg_conn *c, const char *sql, int nparams, const char *const *params, db_result_cb cb,
                 void *arg);
/* While held, notifications stay queued inside libpq (not delivered). Releasing
 * delivers them at the end of the current loop callback or the next input. */
void pg_conn_hold_notifies(struct pg_conn *c, int hold);
/* Treat the connection as lost (from the loop, soon): reconnect with backoff. */
void pg_conn_drop(struct pg_conn *c, const char *why);
/* PQescapeIdentifier on the live connection: malloc'd (free()) or NULL. */
char *pg_conn_quote_ident(struct pg_conn *c, const char *ident);
/* Stop everything, PQfinish, close handles; the in-flight statement's cb gets
 * (NULL, "closing"); then done(arg) is called from the loop and c is freed. */
void pg_conn_close(struct pg_conn *c, void (*done)(void *arg), void *arg);

#endif
