/*
 * shared/db/db_listener — LISTEN session on top of pg_conn (see db_listener.h).
 *
 * Flow per session: on_up → hold notifications → LISTEN channel[0] → ... →
 * LISTEN channel[n-1] → ready: on_ready, release notifications → on_notify...
 * → on_down: on_lost (only if it had been ready).
 *
 * LISTEN takes an identifier, not a value, so it cannot use $n parameters; the
 * channel is quoted with PQescapeIdentifier on the live connection (which
 * doubles embedded quotes and wraps the name in quotes), so even a name with
 * quotes or spaces cannot leave the identifier — and our names are generated
 * ([a-z0-9_], db_notify.h) and length-checked anyway.
 */
#include "shared/db/db_listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utils/log.h"

#define CHANNEL_MAX_LEN 63

struct db_listener {
    struct logger *lg;
    struct pg_conn *conn;
    char **channels;
    int n_channels;
    int next;        /* index of the next channel to LISTEN */
    int ready;
    int started, closing;
    struct db_listener_cbs cbs;
    void *arg;
    void (*done)(void *arg);
    void *done_arg;
};

static void listen_next(struct db_listener *l);

static void become_ready(struct db_listener *l)
{
    l->ready = 1;
    LOG_KV(l->lg, LOG_LEVEL_INFO, NULL, ((const char *[]){"conn", "listener", NULL}), "listening on %d channel(s)",
           l->n_channels);
    if (l->cbs.on_ready != NULL) l->cbs.on_ready(l->arg);
    if (!l->closing && l->ready) pg_conn_hold_notifies(l->conn, 0);
}

static void listen_done_cb(void *arg, PGresult *res, const char *err)
{
    struct db_listener *l = arg;
    if (l->closing || res == NULL) return; /* closing or the session is gone: on_up restarts */
    if (err != NULL) {
        LOG_KV(l->lg, LOG_LEVEL_ERROR, NULL,
               ((const char *[]){"conn", "listener", "channel", l->channels[l->next], "error", err, NULL}),
               "LISTEN failed; reconnecting");
        pg_conn_drop(l->conn, "LISTEN failed");
        return;
    }
    l->next++;
    listen_next(l);
}

static void listen_next(struct db_listener *l)
{
    if (l->next >= l->n_channels) {
        become_ready(l);
        return;
    }
    char *quoted = pg_conn_quote_ident(l->conn, l->channels[l->next]);
    size_t cap = quoted ? strlen(quoted) + sizeof("LISTEN ") : 0;
    char *sql = quoted ? malloc(cap) : NULL;
    if (sql != NULL) snprintf(sql, cap, "LISTEN %s", quoted);
    /* On failure (OOM, or libpq refusing the statement) the session is
     * dropped: pg_conn_send() already schedules that when libpq refuses. */
    if (sql == NULL) pg_conn_drop(l->conn, "cannot build LISTEN statement");
    else if (pg_conn_send(l->conn, sql, 0, NULL, listen_done_cb, l) != 0)
        LOG_KV(l->lg, LOG_LEVEL_WARN, NULL, ((const char *[]){"conn", "listener", NULL}), "LISTEN not sent");
    free(sql);
    free(quoted);
}

static void conn_up_cb(void *arg)
{
    struct db_listener *l = arg;
    l->ready = 0;
    l->next = 0;
    pg_conn_hold_notifies(l->conn, 1);
    listen_next(l);
}

static void conn_down_cb(void *arg, const char *err)
{
    struct db_listener *l = arg;
    (void)err; /* logged by pg_conn */
    int was_ready = l->ready;
    l->ready = 0;
    pg_conn_hold_notifies(l->conn, 1);
    if (was_ready && !l->closing && l->cbs.on_lost != NULL) l->cbs.on_lost(l->arg);
}

static void conn_notify_cb(void *arg, const char *channel, const char *payload)
{
    struct db_listener *l = arg;
    if (l->ready && !l->closing && l->cbs.on_notify != NULL) l->cbs.on_notify(l->arg, channel, payload);
}

static void free_channels(char **channels, int n)
{
    for (int i = 0; channels != NULL && i < n; i++) free(channels[i]);
    free(channels);
}

static char **copy_channels(const char *const *channels, int n)
{
    char **out = calloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    for (int i = 0; out != NULL && i < n; i++) {
        size_t len = channels[i] ? strlen(channels[i]) : 0;
        out[i] = (len >= 1 && len <= CHANNEL_MAX_LEN) ? strdup(channels[i]) : NULL;
        if (out[i] == NULL) {
            free_channels(out, i);
            return NULL;
        }
    }
    return out;
}

struct db_listener *db_listener_new(uv_loop_t *loop, struct logger *lg, const struct db_opts *opts,
                                    const char *const *channels, int n_channels,
                                    const struct db_listener_cbs *cbs, void *arg)
{
    if (loop == NULL || opts == NULL || cbs == NULL || n_channels < 0 || (n_channels > 0 && channels == NULL))
        return NULL;
    struct db_listener *l = calloc(1, sizeof(*l));
    if (l == NULL) return NULL;
    l->lg = lg;
    l->cbs = *cbs;
    l->arg = arg;
    l->n_channels = n_channels;
    l->channels = copy_channels(channels, n_channels);
    if (l->channels == NULL) goto fail;
    static const struct pg_conn_cbs conn_cbs = {
        .on_up = conn_up_cb, .on_down = conn_down_cb, .on_notify = conn_notify_cb};
    l->conn = pg_conn_new(loop, lg, opts, "listener", &conn_cbs, l);
    if (l->conn == NULL) goto fail;
    pg_conn_hold_notifies(l->conn, 1);
    return l;
fail:
    free_channels(l->channels, n_channels);
    free(l);
    return NULL;
}

int db_listener_start(struct db_listener *l)
{
    if (l == NULL || l->started || l->closing) return -1;
    l->started = 1;
    return pg_conn_start(l->conn);
}

int db_listener_is_ready(const struct db_listener *l)
{
    return l != NULL && l->ready;
}

int db_listener_query(struct db_listener *l, const char *sql, int nparams, const char *const *params,
                      db_result_cb cb, void *arg)
{
    if (l == NULL || !l->ready || l->closing || !pg_conn_is_ready(l->conn)) return -1;
    return pg_conn_send(l->conn, sql, nparams, params, cb, arg);
}

static void listener_conn_closed(void *arg)
{
    struct db_listener *l = arg;
    void (*done)(void *) = l->done;
    void *done_arg = l->done_arg;
    free_channels(l->channels, l->n_channels);
    free(l);
    if (done != NULL) done(done_arg);
}

void db_listener_close(struct db_listener *l, void (*done)(void *arg), void *arg)
{
    if (l == NULL || l->closing) return;
    l->closing = 1;
    l->ready = 0;
    l->done = done;
    l->done_arg = arg;
    pg_conn_close(l->conn, listener_conn_closed, l);
}
