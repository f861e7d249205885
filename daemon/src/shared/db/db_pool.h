/*
 * shared/db/db_pool — a fixed-size pool of asynchronous PostgreSQL connections.
 *
 * The pool owns `size` pg_conn connections (pg_conn.h) and one FIFO queue of
 * parameterized statements. db_pool_query() copies the statement and its
 * parameters into the queue; whenever a connection is idle the head of the queue
 * is sent to it (one PQsendQueryParams, autocommit), so statements start in the
 * order they were queued. The queue is bounded (max_queue): a full queue is an
 * immediate -1 so the caller can shed load (HTTP 503).
 *
 * Every accepted statement's callback runs exactly once, always later from the
 * loop: with its result; with res NULL when its connection broke while it ran
 * (the statement's outcome is then unknown — it may or may not have committed);
 * or with (NULL, "closing") when the pool is closed. Queued statements are NOT
 * failed when connections break: they wait until some connection is back (each
 * connection reconnects on its own with jittered backoff).
 *
 * A later db_pool_acquire() (a connection reserved for a transaction) would take
 * an idle slot out of the dispatch loop; nothing here assumes slots are shared.
 */
#ifndef FOLLOWUPD_SHARED_DB_DB_POOL_H
#define FOLLOWUPD_SHARED_DB_DB_POOL_H

#include <uv.h>

#include "shared/db/pg_conn.h"

struct logger;
struct db_pool;

#define DB_MAX_PARAMS 65535

/* size >= 1, max_queue >= 0 (0: only runs when a connection is idle). */
struct db_pool *db_pool_new(uv_loop_t *loop, struct logger *lg, const struct db_opts *opts, int size,
                            int max_queue);
/* Starts connecting all connections; returns at once. 0, or -1 (already started/closing). */
int db_pool_start(struct db_pool *p);
/* Queue one parameterized statement ($1..$n, text params, NULL entries = SQL
 * NULL; all copied). 0, or -1 when the queue already holds max_queue entries
 * and no connection is idle, after close, or on bad arguments/OOM. */
int db_pool_query(struct db_pool *p, const char *sql, int nparams, const char *const *params, db_result_cb cb,
                  void *arg);
int db_pool_connected(const struct db_pool *p); /* connections currently usable */
/* PQescapeIdentifier on any connected connection: malloc'd (free()), or NULL
 * when no connection is up. */
char *db_pool_quote_ident(struct db_pool *p, const char *ident);
int db_pool_in_use(const struct db_pool *p);    /* statements in flight */
int db_pool_waiting(const struct db_pool *p);   /* statements queued */
int db_pool_size(const struct db_pool *p);      /* connections the pool holds (0 for NULL) */
unsigned long long db_pool_statements(const struct db_pool *p);   /* statements accepted since the start */
/* Optional: called from the loop whenever db_pool_connected() may have changed
 * (e.g. for readiness/health reporting). */
void db_pool_set_state_cb(struct db_pool *p, void (*on_change)(void *arg), void *arg);
/* Fails queued work (cb with res NULL, "closing"), closes every connection (its
 * in-flight statement gets the same), frees the pool, then calls done(arg) from
 * the loop. The pool must not be used after this call. */
void db_pool_close(struct db_pool *p, void (*done)(void *arg), void *arg);

#endif
