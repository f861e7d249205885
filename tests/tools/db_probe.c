/*
 * db_probe — test driver for shared/db (pool and listener) against a real
 * PostgreSQL, used by tests/integration/test_db_*.py.
 *
 * Reads commands from stdin, one per line, and answers with one JSON object per
 * line on stdout (the test protocol); diagnostics go through the logger to
 * stderr (JSON lines; level from DB_PROBE_LOG, default "info").
 *
 *   pool <size> <max_queue> [conninfo]  create+start a pool  → {"event":"pool"}
 *                                       then {"event":"pool_state","connected":n} on every change
 *   poolprep <size> <max_queue> [conninfo]  the same with db_opts.prepare on (prepared statements)
 *   query <id> <sql>                    queue a statement     → {"event":"result","id",...} later,
 *                                       or {"event":"rejected","id"} at once when db_pool_query fails
 *   queryp <id> <json>                  same with {"sql":..., "params":[string|null,...]}
 *   stats                               → {"event":"stats","connected","in_use","waiting"}
 *   listen <ch1,ch2,..> [conninfo]      create+start a listener → {"event":"listener"}, then
 *                                       {"event":"ready"}, {"event":"notify","channel","payload"},
 *                                       {"event":"lost"}
 *   channel <schema>                    → {"event":"channel","channel":db_channel_for_schema(schema)}
 *   partition <id> <count> <uuid>       → {"event":"partition","id","c":followup_booking_partition()} at once,
 *                                       then the pool's result of the repository's BOOKING_PARTITION_SQL
 *                                       for the same uuid and count (a "result" line with that id)
 *   sweep <id> <catchup|stale|reopened> <schema> <count> <p,p,...|all>
 *                                       the repository's sweep read of that schema, follow-up types, limited to
 *                                       those partitions → {"event":"sweep","id","ok","ids":[booking ids]}
 *   close_pool | close_listener         → {"event":"pool_closed"} / {"event":"listener_closed"}
 *   quit (or EOF)                       close everything, uv_loop_close() must return 0
 *                                       → {"event":"bye","loop_close":0}, exit status 0
 * An empty conninfo means "from PG* environment variables". Result lines:
 *   {"event":"result","id":ID,"ok":true,"status":"PGRES_TUPLES_OK","rows":[["1",null],...]}
 *   {"event":"result","id":ID,"ok":false,"res_null":true|false,"status":...,"error":"..."}
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "features/deals_pipeline/repositories/bookings_repository.h"
#include "features/deals_pipeline/services/followup_keys.h"
#include "shared/db/db_listener.h"
#include "shared/db/db_notify.h"
#include "shared/db/db_pool.h"
#include "utils/log.h"

struct probe {
    uv_loop_t *loop;
    struct logger lg;
    uv_pipe_t in;
    int in_open;
    char *buf;
    size_t len, cap;
    struct db_pool *pool;
    struct db_listener *listener;
    struct bookings_repository *repo;
    char *schema;
    int quitting;
};

struct query_ctx {
    struct probe *pr;
    char id[64];
};

/* ------------------------------------------------------------ output */

static void emit(json_t *obj)
{
    char *line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (line == NULL) return;
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    free(line);
}

static json_t *event(const char *name)
{
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string(name));
    return o;
}

static json_t *rows_of(const PGresult *res)
{
    json_t *rows = json_array();
    for (int r = 0; r < PQntuples(res); r++) {
        json_t *row = json_array();
        for (int c = 0; c < PQnfields(res); c++)
            json_array_append_new(row, PQgetisnull(res, r, c) ? json_null() : json_string(PQgetvalue(res, r, c)));
        json_array_append_new(rows, row);
    }
    return rows;
}

/* ------------------------------------------------------------ pool */

static void result_cb(void *arg, PGresult *res, const char *err)
{
    struct query_ctx *q = arg;
    json_t *o = event("result");
    json_object_set_new(o, "id", json_string(q->id));
    json_object_set_new(o, "ok", json_boolean(err == NULL));
    json_object_set_new(o, "res_null", json_boolean(res == NULL));
    if (res != NULL) json_object_set_new(o, "status", json_string(PQresStatus(PQresultStatus(res))));
    if (err != NULL) json_object_set_new(o, "error", json_string(err));
    if (res != NULL && err == NULL) json_object_set_new(o, "rows", rows_of(res));
    emit(o);
    free(q);
}

static void pool_state_cb(void *arg)
{
    struct probe *pr = arg;
    json_t *o = event("pool_state");
    json_object_set_new(o, "connected", json_integer(db_pool_connected(pr->pool)));
    emit(o);
}

static void emit_error(const char *what)
{
    json_t *o = event("error");
    json_object_set_new(o, "error", json_string(what));
    emit(o);
}

static void cmd_pool(struct probe *pr, char *args, int prepare)
{
    char *end = NULL;
    long size = strtol(args, &end, 10);
    long max_queue = strtol(end, &end, 10);
    while (*end == ' ') end++;
    if (pr->pool != NULL) {
        emit_error("pool exists");
        return;
    }
    struct db_opts opts = {.conninfo = end, .reconnect_min_ms = 50, .reconnect_max_ms = 1000, .prepare = prepare};
    pr->pool = db_pool_new(pr->loop, &pr->lg, &opts, (int)size, (int)max_queue);
    if (pr->pool == NULL) {
        emit_error("db_pool_new failed");
        return;
    }
    db_pool_set_state_cb(pr->pool, pool_state_cb, pr);
    if (db_pool_start(pr->pool) != 0) emit_error("db_pool_start failed");
    emit(event("pool"));
}

static void submit(struct probe *pr, const char *id, const char *sql, int n, const char *const *params)
{
    struct query_ctx *q = calloc(1, sizeof(*q));
    if (q == NULL) return;
    q->pr = pr;
    snprintf(q->id, sizeof(q->id), "%s", id);
    if (pr->pool == NULL || db_pool_query(pr->pool, sql, n, params, result_cb, q) != 0) {
        json_t *o = event("rejected");
        json_object_set_new(o, "id", json_string(id));
        emit(o);
        free(q);
    }
}

/* "<id> <rest>": splits in place; rest may be "". */
static char *split_word(char *s)
{
    char *sp = strchr(s, ' ');
    if (sp == NULL) return s + strlen(s);
    *sp = '\0';
    return sp + 1;
}

static void cmd_query(struct probe *pr, char *args)
{
    char *sql = split_word(args);
    submit(pr, args, sql, 0, NULL);
}

static void cmd_queryp(struct probe *pr, char *args)
{
    char *rest = split_word(args);
    json_error_t jerr;
    json_t *spec = json_loads(rest, 0, &jerr);
    json_t *params = spec ? json_object_get(spec, "params") : NULL;
    const char *sql = spec ? json_string_value(json_object_get(spec, "sql")) : NULL;
    if (sql == NULL) {
        emit_error("bad queryp json");
        json_decref(spec);
        return;
    }
    size_t n = json_array_size(params);
    const char **vals = calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; vals != NULL && i < n; i++) vals[i] = json_string_value(json_array_get(params, i));
    submit(pr, args, sql, (int)n, vals);
    free(vals);
    json_decref(spec);
}

static void cmd_stats(struct probe *pr)
{
    json_t *o = event("stats");
    json_object_set_new(o, "connected", json_integer(db_pool_connected(pr->pool)));
    json_object_set_new(o, "in_use", json_integer(db_pool_in_use(pr->pool)));
    json_object_set_new(o, "waiting", json_integer(db_pool_waiting(pr->pool)));
    emit(o);
}

static void pool_closed_cb(void *arg)
{
    (void)arg;
    emit(event("pool_closed"));
}

static void close_pool(struct probe *pr)
{
    if (pr->pool == NULL) return;
    db_pool_close(pr->pool, pool_closed_cb, pr);
    pr->pool = NULL;
}

/* ------------------------------------------------------------ listener */

static void on_ready(void *arg)
{
    (void)arg;
    emit(event("ready"));
}

static void on_notify(void *arg, const char *channel, const char *payload)
{
    (void)arg;
    json_t *o = event("notify");
    json_object_set_new(o, "channel", json_string(channel));
    json_object_set_new(o, "payload", json_string(payload));
    emit(o);
}

static void on_lost(void *arg)
{
    (void)arg;
    emit(event("lost"));
}

static void cmd_listen(struct probe *pr, char *args)
{
    char *conninfo = split_word(args);
    if (pr->listener != NULL) {
        emit_error("listener exists");
        return;
    }
    const char *channels[64];
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(args, ",", &save); tok != NULL && n < 64;
         tok = strtok_r(NULL, ",", &save))
        channels[n++] = tok;
    struct db_opts opts = {.conninfo = conninfo, .reconnect_min_ms = 50, .reconnect_max_ms = 1000};
    struct db_listener_cbs cbs = {.on_ready = on_ready, .on_notify = on_notify, .on_lost = on_lost};
    pr->listener = db_listener_new(pr->loop, &pr->lg, &opts, channels, n, &cbs, pr);
    if (pr->listener == NULL || db_listener_start(pr->listener) != 0) {
        emit_error("listener failed");
        return;
    }
    emit(event("listener"));
}

static void listener_closed_cb(void *arg)
{
    (void)arg;
    emit(event("listener_closed"));
}

static void close_listener(struct probe *pr)
{
    if (pr->listener == NULL) return;
    db_listener_close(pr->listener, listener_closed_cb, pr);
    pr->listener = NULL;
}

static void cmd_channel(char *schema)
{
    char ch[64];
    json_t *o = event("channel");
    json_object_set_new(o, "ok", json_boolean(db_channel_for_schema(schema, ch) == 0));
    json_object_set_new(o, "channel", json_string(ch));
    emit(o);
}

/* The C and the SQL partition of one booking id (they must agree: notifications use one, sweeps the other). */
static void cmd_partition(struct probe *pr, char *args)
{
    char *count = split_word(args);
    char *uuid = split_word(count);
    json_t *o = event("partition");
    json_object_set_new(o, "id", json_string(args));
    json_object_set_new(o, "c", json_integer(followup_booking_partition(uuid, atoi(count))));
    emit(o);
    const char *params[] = {uuid, count};
    submit(pr, args, "SELECT " BOOKING_PARTITION_SQL("$1::uuid", "$2::int"), 2, params);
}

static void sweep_done(void *arg, enum repo_rc rc, const struct booking_key *keys, int n)
{
    struct query_ctx *q = arg;
    json_t *o = event("sweep");
    json_object_set_new(o, "id", json_string(q->id));
    json_object_set_new(o, "ok", json_boolean(rc == REPO_OK));
    json_t *ids = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(ids, json_string(keys[i].booking_id));
    json_object_set_new(o, "ids", ids);
    emit(o);
    free(q);
}

static int parse_partitions(char *list, int *out, int cap)
{
    int n = 0;
    for (char *tok = strtok(list, ","); tok != NULL && n < cap; tok = strtok(NULL, ",")) out[n++] = atoi(tok);
    return n;
}

/* The repository's sweep reads (the very SQL the daemon runs) over the probe's pool, one schema. */
static void cmd_sweep(struct probe *pr, char *args)
{
    char *kind = split_word(args), *schema = split_word(kind), *count = split_word(schema), *list = split_word(count);
    if (pr->pool == NULL || (pr->repo != NULL && strcmp(pr->schema, schema) != 0)) {
        emit_error("sweep needs a pool (and one schema per probe)");
        return;
    }
    if (pr->repo == NULL) {
        pr->schema = strdup(schema);
        char *items[] = {pr->schema};
        struct strlist schemas = {.items = items, .n = 1};
        pr->repo = bookings_repository_new(pr->pool, &schemas, &pr->lg);
    }
    static int owned[FOLLOWUP_PARTITIONS_MAX];
    struct partition_filter filter = {.partitions = atoi(count), .owned = owned};
    const struct partition_filter *parts = NULL;
    if (strcmp(list, "all") != 0) {
        filter.n_owned = parse_partitions(list, owned, FOLLOWUP_PARTITIONS_MAX);
        parts = &filter;
    }
    struct query_ctx *q = calloc(1, sizeof(*q));
    if (q == NULL || pr->repo == NULL) {
        free(q);
        emit_error("out of memory");
        return;
    }
    snprintf(q->id, sizeof(q->id), "%s", args);
    char *type_items[] = {"follow_up"};
    struct strlist types = {.items = type_items, .n = 1};
    struct bookings_repo *repo = bookings_repository_port(pr->repo);
    int64_t now = (int64_t)time(NULL) * 1000;
    int rc;
    if (strcmp(kind, "stale") == 0) rc = repo->find_stale_tasks(repo->impl, schema, &types, parts, 500, sweep_done, q);
    else if (strcmp(kind, "reopened") == 0)
        rc = repo->find_reopened(repo->impl, schema, &types, parts, now, 3600, 30 * 86400, 500, sweep_done, q);
    else rc = repo->find_catchup(repo->impl, schema, &types, parts, now, 3600, 30 * 86400, 500, sweep_done, q);
    if (rc != 0) {
        free(q);
        emit_error("sweep not started");
    }
}

/* ------------------------------------------------------------ input */

static void quit(struct probe *pr)
{
    if (pr->quitting) return;
    pr->quitting = 1;
    close_pool(pr);
    close_listener(pr);
    if (pr->in_open) {
        uv_read_stop((uv_stream_t *)&pr->in);
        uv_close((uv_handle_t *)&pr->in, NULL);
        pr->in_open = 0;
    }
}

static void run_command(struct probe *pr, char *line)
{
    char *args = split_word(line);
    if (strcmp(line, "pool") == 0) cmd_pool(pr, args, 0);
    else if (strcmp(line, "poolprep") == 0) cmd_pool(pr, args, 1);
    else if (strcmp(line, "query") == 0) cmd_query(pr, args);
    else if (strcmp(line, "queryp") == 0) cmd_queryp(pr, args);
    else if (strcmp(line, "stats") == 0) cmd_stats(pr);
    else if (strcmp(line, "listen") == 0) cmd_listen(pr, args);
    else if (strcmp(line, "channel") == 0) cmd_channel(args);
    else if (strcmp(line, "partition") == 0) cmd_partition(pr, args);
    else if (strcmp(line, "sweep") == 0) cmd_sweep(pr, args);
    else if (strcmp(line, "close_pool") == 0) close_pool(pr);
    else if (strcmp(line, "close_listener") == 0) close_listener(pr);
    else if (strcmp(line, "quit") == 0) quit(pr);
    else if (*line != '\0') emit_error("unknown command");
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct probe *pr = h->data;
    if (pr->cap - pr->len < suggested) {
        size_t cap = pr->len + suggested;
        char *n = realloc(pr->buf, cap);
        if (n == NULL) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        pr->buf = n;
        pr->cap = cap;
    }
    *buf = uv_buf_init(pr->buf + pr->len, (unsigned)(pr->cap - pr->len));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct probe *pr = s->data;
    (void)buf;
    if (nread < 0) {
        quit(pr); /* EOF or error */
        return;
    }
    pr->len += (size_t)nread;
    char *nl;
    while (!pr->quitting && (nl = memchr(pr->buf, '\n', pr->len)) != NULL) {
        *nl = '\0';
        size_t used = (size_t)(nl - pr->buf) + 1;
        char *line = strdup(pr->buf);
        memmove(pr->buf, pr->buf + used, pr->len - used);
        pr->len -= used;
        if (line != NULL) run_command(pr, line);
        free(line);
    }
}

int main(void)
{
    struct probe pr;
    memset(&pr, 0, sizeof(pr));
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) return 2;
    pr.loop = &loop;
    enum log_level lvl = LOG_LEVEL_INFO;
    const char *lvl_env = getenv("DB_PROBE_LOG");
    if (lvl_env != NULL) log_level_parse(lvl_env, &lvl);
    logger_init(&pr.lg, lvl, 2);
    if (uv_pipe_init(&loop, &pr.in, 0) != 0 || uv_pipe_open(&pr.in, 0) != 0) {
        LOG_ERROR(&pr.lg, NULL, "stdin must be a pipe");
        return 2;
    }
    pr.in.data = &pr;
    pr.in_open = 1;
    if (uv_read_start((uv_stream_t *)&pr.in, alloc_cb, read_cb) != 0) return 2;
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&loop);
    json_t *o = event("bye");
    json_object_set_new(o, "loop_close", json_integer(rc));
    emit(o);
    free(pr.buf);
    bookings_repository_free(pr.repo);
    free(pr.schema);
    logger_free(&pr.lg);
    return rc == 0 ? 0 : 1;
}
