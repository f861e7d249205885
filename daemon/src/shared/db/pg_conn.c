/*
 * shared/db/pg_conn — one asynchronous PostgreSQL connection (see pg_conn.h).
 *
 * States:
 *   INIT ─start→ BACKOFF ─timer→ [RESOLVING ─getaddrinfo→] CONNECTING ─PQconnectPoll OK→ READY ⇄ BUSY
 *   any failure → conn_fail(): statement cb(NULL, err), PQfinish, BACKOFF (timer = jittered delay)
 *   READY/BUSY ─send refused / pg_conn_drop→ FAILING ─timer 0→ conn_fail()
 *   any ─pg_conn_close→ CLOSING → (all handles closed, getaddrinfo done) → freed
 *
 * Handles: one uv_timer_t (backoff, connect timeout, deferred failure — which
 * one is given by the state) and at most one live uv_poll_t (heap-allocated:
 * old ones may still be closing while a new socket is watched). handles_open
 * counts them plus a pending getaddrinfo request; the object is freed when it
 * drops to zero in CLOSING. The poll handle is always stopped and closed before
 * PQfinish, and around every PQconnectPoll (a new socket may reuse the fd
 * number, which an epoll registration left in place would not notice).
 *
 * Re-entrancy: owner callbacks may call pg_conn_send or pg_conn_close. After
 * every callback the code re-checks the state and stops when it changed.
 *
 * Prepared statements (db_opts.prepare): the texts this connection has
 * prepared, named fu<index>, live in `prepared` until the session ends (any
 * teardown forgets them).  A statement's first run sends Parse only; its
 * result (kept out of the owner's sight) is followed by the run by name with
 * the copied params.  A failed prepare is reported as the statement's error.
 */
#include "shared/db/pg_conn.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "shared/db/db_util.h"
#include "utils/log.h"

#define PGC_MAX_ADDRS 8
#define PGC_MAX_PREPARED 128

enum pgc_state {
    PGC_INIT,
    PGC_BACKOFF,
    PGC_RESOLVING,
    PGC_CONNECTING,
    PGC_READY,
    PGC_BUSY,
    PGC_FAILING,
    PGC_CLOSING,
};

struct pg_conn {
    uv_loop_t *loop;
    struct logger *lg;
    char name[32];
    char *conninfo;
    char *redacted;       /* where and as whom (host, port, dbname, user), for logs */
    char *resolve_host;   /* host name we resolve ourselves, or NULL */
    unsigned min_ms, max_ms;
    unsigned attempt;     /* consecutive failed attempts, reset when up */
    uint64_t connect_timeout; /* ms, of the current attempt; 0 = none */
    uint64_t rng;
    struct pg_conn_cbs cbs;
    void *cbs_arg;

    enum pgc_state state;
    PGconn *pg;
    uv_poll_t *poll;
    int poll_events;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    int gai_pending;
    int handles_open;     /* timer + polls not yet closed + pending getaddrinfo */
    int flushing;         /* PQflush returned 1: watch writable */
    int hold_notifies;

    db_result_cb stmt_cb; /* in-flight statement */
    void *stmt_arg;
    PGresult *last;       /* last result of the in-flight statement */

    int prepare;                        /* db_opts.prepare */
    char *prepared[PGC_MAX_PREPARED];   /* statement texts prepared in this session, by index */
    int n_prepared;
    int preparing;                      /* index being prepared for the in-flight statement, or -1 */
    int prep_nparams;                   /* its params, copied until the run by name is sent */
    char **prep_params;

    char pending_err[DB_ERR_MAX];
    void (*close_done)(void *arg);
    void *close_arg;
};

static void conn_fail(struct pg_conn *c, const char *msg);
static void timer_cb(uv_timer_t *t);

/* ---------------------------------------------------------------- handles */

static void finish_close(struct pg_conn *c)
{
    db_result_cb cb = c->stmt_cb;
    void *arg = c->stmt_arg;
    c->stmt_cb = NULL;
    if (cb != NULL) cb(arg, NULL, "closing");
    void (*done)(void *) = c->close_done;
    void *done_arg = c->close_arg;
    free(c->conninfo);
    free(c->redacted);
    free(c->resolve_host);
    free(c);
    if (done != NULL) done(done_arg);
}

static void handle_released(struct pg_conn *c)
{
    c->handles_open--;
    if (c->handles_open == 0 && c->state == PGC_CLOSING) finish_close(c);
}

static void poll_closed_cb(uv_handle_t *h)
{
    struct pg_conn *c = h->data;
    free(h);
    handle_released(c);
}

static void timer_closed_cb(uv_handle_t *h)
{
    handle_released(h->data);
}

static void poll_release(struct pg_conn *c)
{
    if (c->poll == NULL) return;
    uv_poll_stop(c->poll);
    uv_close((uv_handle_t *)c->poll, poll_closed_cb);
    c->poll = NULL;
    c->poll_events = 0;
}

static void io_cb(uv_poll_t *h, int status, int events);

/* Watch PQsocket() for `events`, creating the poll handle when needed. */
static int poll_watch(struct pg_conn *c, int events)
{
    if (c->poll == NULL) {
        int fd = PQsocket(c->pg);
        if (fd < 0) return -1;
        uv_poll_t *p = calloc(1, sizeof(*p));
        if (p == NULL) return -1;
        if (uv_poll_init_socket(c->loop, p, fd) != 0) {
            free(p);
            return -1;
        }
        p->data = c;
        c->poll = p;
        c->handles_open++;
    }
    if (events == c->poll_events) return 0;
    if (uv_poll_start(c->poll, events, io_cb) != 0) return -1;
    c->poll_events = events;
    return 0;
}

/* PQfinish after the poll handle is stopped and closed. */
static void free_prep_params(struct pg_conn *c)
{
    for (int i = 0; i < c->prep_nparams; i++) free(c->prep_params[i]);
    free(c->prep_params);
    c->prep_params = NULL;
    c->prep_nparams = 0;
}

/* The session ends: its prepared statements end with it. */
static void forget_prepared(struct pg_conn *c)
{
    if (c->preparing >= 0) free(c->prepared[c->preparing]);
    for (int i = 0; i < c->n_prepared; i++) free(c->prepared[i]);
    memset(c->prepared, 0, sizeof(c->prepared));
    c->n_prepared = 0;
    c->preparing = -1;
    free_prep_params(c);
}

static void teardown_pg(struct pg_conn *c)
{
    poll_release(c);
    forget_prepared(c);
    if (c->last != NULL) {
        PQclear(c->last);
        c->last = NULL;
    }
    if (c->pg != NULL) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->flushing = 0;
}

static int is_up_state(enum pgc_state s)
{
    return s == PGC_READY || s == PGC_BUSY;
}

/* ------------------------------------------------------------ logging */

static void log_conn(struct pg_conn *c, enum log_level lvl, const char *err, const char *msg)
{
    LOG_KV(c->lg, lvl, NULL,
           ((const char *[]){"conn", c->name, "conninfo", c->redacted, err ? "error" : NULL, err, NULL}), "%s",
           msg);
}

static void notice_cb(void *arg, const char *message)
{
    struct pg_conn *c = arg;
    char clean[DB_ERR_MAX];
    db_message_clean(message, clean, sizeof(clean));
    LOG_KV(c->lg, LOG_LEVEL_INFO, NULL, ((const char *[]){"conn", c->name, "notice", clean, NULL}),
           "postgres notice");
}

/* ---------------------------------------------------------- reconnecting */

static void schedule_reconnect(struct pg_conn *c)
{
    unsigned delay = db_backoff_delay_ms(c->attempt, c->min_ms, c->max_ms, db_rand_next(&c->rng));
    if (c->attempt < 64) c->attempt++;
    c->state = PGC_BACKOFF;
    uv_timer_start(&c->timer, timer_cb, delay, 0);
}

/* Failure handling, only ever called from loop callbacks. */
static void conn_fail(struct pg_conn *c, const char *msg)
{
    char err[DB_ERR_MAX];
    db_error_clean(msg, err, sizeof(err)); /* msg may live inside the PGconn; may quote the conninfo */
    int was_up = is_up_state(c->state) || c->state == PGC_FAILING;
    db_result_cb cb = c->stmt_cb;
    void *arg = c->stmt_arg;
    c->stmt_cb = NULL;
    c->stmt_arg = NULL;
    uv_timer_stop(&c->timer);
    teardown_pg(c);
    log_conn(c, LOG_LEVEL_WARN, err, was_up ? "postgres connection lost" : "postgres connection attempt failed");
    schedule_reconnect(c);
    if (cb != NULL) {
        cb(arg, NULL, err);
        if (c->state != PGC_BACKOFF) return; /* closed from the callback */
    }
    if (was_up && c->cbs.on_down != NULL) c->cbs.on_down(c->cbs_arg, err);
}

/* Fail from the loop soon (used where a callback must not run synchronously). */
static void defer_fail(struct pg_conn *c, const char *msg)
{
    db_error_clean(msg, c->pending_err, sizeof(c->pending_err));
    c->state = PGC_FAILING;
    uv_timer_start(&c->timer, timer_cb, 0, 0);
}

/* ---------------------------------------------------------- connecting */

/* connect_timeout in effect (user's conninfo or our default), in ms; 0 = none. */
static uint64_t connect_timeout_ms(PGconn *pg)
{
    PQconninfoOption *opts = PQconninfo(pg);
    long secs = 0;
    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
        if (strcmp(o->keyword, "connect_timeout") == 0 && o->val != NULL) secs = strtol(o->val, NULL, 10);
    PQconninfoFree(opts);
    if (secs <= 0) return 0;
    if (secs < 2) secs = 2; /* as libpq's blocking path does */
    return (uint64_t)secs * 1000u;
}

static void on_connected(struct pg_conn *c)
{
    uv_timer_stop(&c->timer);
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_fail(c, "cannot switch the connection to non-blocking mode");
        return;
    }
    c->state = PGC_READY;
    c->attempt = 0;
    if (poll_watch(c, UV_READABLE) != 0) {
        conn_fail(c, "cannot watch the connection socket");
        return;
    }
    log_conn(c, LOG_LEVEL_INFO, NULL, "postgres connected");
    if (c->cbs.on_up != NULL) c->cbs.on_up(c->cbs_arg);
}

/* One PQconnectPoll step; the socket may change, so the poll is recreated. */
static void connect_step(struct pg_conn *c)
{
    poll_release(c);
    int events;
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_OK:
        on_connected(c);
        return;
    case PGRES_POLLING_READING:
        events = UV_READABLE;
        break;
    case PGRES_POLLING_WRITING:
        events = UV_WRITABLE;
        break;
    case PGRES_POLLING_FAILED:
    default:
        conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    if (poll_watch(c, events) != 0) conn_fail(c, "cannot watch the connection socket");
}

/* Start libpq's connection with optional pre-resolved host/hostaddr lists. */
static void start_libpq(struct pg_conn *c, const char *host, const char *hostaddr)
{
    struct db_connect_params params;
    db_connect_params_build(&params, c->conninfo, host, hostaddr);
    c->pg = PQconnectStartParams(params.keys, params.values, 1);
    if (c->pg == NULL) {
        conn_fail(c, "out of memory");
        return;
    }
    PQsetNoticeProcessor(c->pg, notice_cb, c);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = PGC_CONNECTING;
    c->connect_timeout = connect_timeout_ms(c->pg);
    if (c->connect_timeout > 0) uv_timer_start(&c->timer, timer_cb, c->connect_timeout, 0);
    /* Before the first PQconnectPoll, behave as if it returned WRITING. */
    if (poll_watch(c, UV_WRITABLE) != 0) conn_fail(c, "cannot watch the connection socket");
}

/* Comma lists "name,name,..." and "addr,addr,..." for libpq's host/hostaddr
 * (one entry per distinct resolved address, at most PGC_MAX_ADDRS). */
struct addr_lists {
    char *hosts, *addrs;
    size_t cap, hlen, alen;
    int n;
};

static void add_address(struct addr_lists *l, const struct sockaddr *sa, const char *host)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        if (uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof(ip)) != 0) return;
    } else if (sa->sa_family == AF_INET6) {
        if (uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof(ip)) != 0) return;
    } else {
        return;
    }
    size_t ilen = strlen(ip);
    for (const char *p = l->addrs; (p = strstr(p, ip)) != NULL; p++)
        if ((p == l->addrs || p[-1] == ',') && (p[ilen] == ',' || p[ilen] == '\0')) return; /* duplicate */
    const char *sep = l->n > 0 ? "," : "";
    int hw = snprintf(l->hosts + l->hlen, l->cap - l->hlen, "%s%s", sep, host);
    int aw = snprintf(l->addrs + l->alen, l->cap - l->alen, "%s%s", sep, ip);
    if (hw < 0 || aw < 0 || (size_t)hw >= l->cap - l->hlen || (size_t)aw >= l->cap - l->alen) {
        l->hosts[l->hlen] = '\0'; /* does not fit: keep what we had */
        l->addrs[l->alen] = '\0';
        return;
    }
    l->hlen += (size_t)hw;
    l->alen += (size_t)aw;
    l->n++;
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct pg_conn *c = req->data;
    c->gai_pending = 0;
    if (c->state != PGC_RESOLVING) { /* closing */
        uv_freeaddrinfo(res);
        handle_released(c);
        return;
    }
    c->handles_open--; /* cannot reach zero: the timer is still open */
    if (status != 0) {
        char msg[DB_ERR_MAX];
        snprintf(msg, sizeof(msg), "could not resolve host \"%s\": %s", c->resolve_host, uv_strerror(status));
        uv_freeaddrinfo(res);
        conn_fail(c, msg);
        return;
    }
    struct addr_lists l = {.cap = PGC_MAX_ADDRS * (strlen(c->resolve_host) + INET6_ADDRSTRLEN + 2)};
    l.hosts = calloc(1, l.cap);
    l.addrs = calloc(1, l.cap);
    for (struct addrinfo *ai = res; l.hosts && l.addrs && ai != NULL && l.n < PGC_MAX_ADDRS; ai = ai->ai_next)
        add_address(&l, ai->ai_addr, c->resolve_host);
    uv_freeaddrinfo(res);
    if (l.n == 0) conn_fail(c, l.hosts && l.addrs ? "host name resolved to no usable address" : "out of memory");
    else start_libpq(c, l.hosts, l.addrs);
    free(l.hosts);
    free(l.addrs);
}

static void start_attempt(struct pg_conn *c)
{
    if (c->resolve_host == NULL) {
        start_libpq(c, NULL, NULL);
        return;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->gai.data = c;
    c->state = PGC_RESOLVING;
    int rc = uv_getaddrinfo(c->loop, &c->gai, gai_cb, c->resolve_host, NULL, &hints);
    if (rc != 0) {
        conn_fail(c, uv_strerror(rc));
        return;
    }
    c->gai_pending = 1;
    c->handles_open++;
}

/* ---------------------------------------------------------- running statements */

static int result_is_error(const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    return st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR || st == PGRES_FATAL_ERROR;
}

/* A FATAL/PANIC error: the server is ending the session (e.g. terminated by
 * an administrator); the statement is reported as lost with the connection. */
static int ends_session(const PGresult *r)
{
    if (r == NULL || !result_is_error(r)) return 0;
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    return sev != NULL && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0);
}

static int flush_output(struct pg_conn *c);

static void statement_name(int index, char out[16])
{
    snprintf(out, 16, "fu%d", index);
}

/* The Parse of the in-flight statement succeeded: remember it and run it by name.
 * 0 = sent (still BUSY), -1 = the connection failed. */
static int run_prepared_now(struct pg_conn *c)
{
    char name[16];
    statement_name(c->preparing, name);
    c->n_prepared++;
    c->preparing = -1;
    int ok = PQsendQueryPrepared(c->pg, name, c->prep_nparams, (const char *const *)c->prep_params, NULL, NULL, 0);
    free_prep_params(c);
    if (!ok) {
        conn_fail(c, PQerrorMessage(c->pg));
        return -1;
    }
    return flush_output(c);
}

/* The statement's last result is in c->last: hand it to its callback.
 * Returns 0 when the connection is still up afterwards, -1 otherwise. */
static int finish_statement(struct pg_conn *c)
{
    PGresult *r = c->last;
    c->last = NULL;
    if ((PQstatus(c->pg) == CONNECTION_BAD && (r == NULL || result_is_error(r))) || ends_session(r)) {
        char msg[DB_ERR_MAX];
        db_message_clean(r ? PQresultErrorMessage(r) : PQerrorMessage(c->pg), msg, sizeof(msg));
        PQclear(r);
        conn_fail(c, msg); /* gives the statement (NULL, err) */
        return -1;
    }
    if (c->preparing >= 0) {
        if (r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK) {
            PQclear(r);
            return run_prepared_now(c);
        }
        free(c->prepared[c->preparing]);   /* not prepared: the owner gets the error below */
        c->prepared[c->preparing] = NULL;
        c->preparing = -1;
        free_prep_params(c);
    }
    db_result_cb cb = c->stmt_cb;
    void *arg = c->stmt_arg;
    c->stmt_cb = NULL;
    c->stmt_arg = NULL;
    c->state = PGC_READY;
    char err[DB_ERR_MAX];
    const char *errp = NULL;
    if (r == NULL) {
        errp = "no result";
    } else if (result_is_error(r)) {
        db_message_clean(PQresultErrorMessage(r), err, sizeof(err));
        errp = err[0] ? err : "statement failed";
    }
    cb(arg, r, errp);
    PQclear(r);
    return is_up_state(c->state) ? 0 : -1;
}

/* Collect results while libpq will not block. 0 = still up, -1 = gone. */
static int collect_results(struct pg_conn *c)
{
    while (c->state == PGC_BUSY && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r == NULL) return finish_statement(c);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(r);
            conn_fail(c, "COPY is not supported on this connection");
            return -1;
        }
        if (c->last != NULL) PQclear(c->last);
        c->last = r;
    }
    return 0;
}

static int drain_notifies(struct pg_conn *c)
{
    while (is_up_state(c->state) && !c->hold_notifies) {
        PGnotify *n = PQnotifies(c->pg);
        if (n == NULL) break;
        if (c->cbs.on_notify != NULL) c->cbs.on_notify(c->cbs_arg, n->relname, n->extra);
        PQfreemem(n);
    }
    return is_up_state(c->state) ? 0 : -1;
}

/* PQflush and watch writable while output is pending. 0 ok, -1 failed. */
static int flush_output(struct pg_conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        conn_fail(c, PQerrorMessage(c->pg));
        return -1;
    }
    c->flushing = r == 1;
    if (poll_watch(c, UV_READABLE | (c->flushing ? UV_WRITABLE : 0)) != 0) {
        conn_fail(c, "cannot watch the connection socket");
        return -1;
    }
    return 0;
}

static void process_input(struct pg_conn *c)
{
    if (collect_results(c) != 0) return;
    if (drain_notifies(c) != 0) return;
    if (PQstatus(c->pg) == CONNECTION_BAD) conn_fail(c, PQerrorMessage(c->pg));
}

static void io_cb(uv_poll_t *h, int status, int events)
{
    struct pg_conn *c = h->data;
    if (h != c->poll) return; /* a stale handle being closed */
    if (status < 0) {
        conn_fail(c, uv_strerror(status));
        return;
    }
    if (c->state == PGC_CONNECTING) {
        connect_step(c);
        return;
    }
    if (!is_up_state(c->state)) return;
    if ((events & UV_READABLE) && !PQconsumeInput(c->pg)) {
        conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    if ((c->flushing || (events & UV_WRITABLE)) && flush_output(c) != 0) return;
    process_input(c);
}

static void timer_cb(uv_timer_t *t)
{
    struct pg_conn *c = t->data;
    switch (c->state) {
    case PGC_BACKOFF:
        start_attempt(c);
        break;
    case PGC_CONNECTING: {
        char msg[96];
        snprintf(msg, sizeof(msg), "connection attempt timed out after %llu ms",
                 (unsigned long long)c->connect_timeout);
        conn_fail(c, msg);
        break;
    }
    case PGC_FAILING:
        conn_fail(c, c->pending_err);
        break;
    case PGC_READY:
    case PGC_BUSY:
        /* Released notifications: deliver them from the loop. */
        if (drain_notifies(c) == 0 && PQstatus(c->pg) == CONNECTION_BAD) conn_fail(c, PQerrorMessage(c->pg));
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------- public API */

struct pg_conn *pg_conn_new(uv_loop_t *loop, struct logger *lg, const struct db_opts *opts, const char *name,
                            const struct pg_conn_cbs *cbs, void *arg)
{
    if (loop == NULL || opts == NULL || cbs == NULL) return NULL;
    struct pg_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) return NULL;
    c->loop = loop;
    c->lg = lg;
    snprintf(c->name, sizeof(c->name), "%s", name ? name : "pg");
    c->conninfo = strdup(opts->conninfo ? opts->conninfo : "");
    c->redacted = db_conninfo_redacted(c->conninfo);
    if (c->conninfo == NULL || c->redacted == NULL) goto fail;
    c->resolve_host = db_host_to_resolve(c->conninfo, getenv("PGHOST"), getenv("PGHOSTADDR"));
    c->min_ms = opts->reconnect_min_ms ? opts->reconnect_min_ms : DB_RECONNECT_MIN_MS_DEFAULT;
    c->max_ms = opts->reconnect_max_ms ? opts->reconnect_max_ms : DB_RECONNECT_MAX_MS_DEFAULT;
    if (c->max_ms < c->min_ms) c->max_ms = c->min_ms;
    c->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)c;
    c->cbs = *cbs;
    c->cbs_arg = arg;
    db_conninfo_register_secrets(c->conninfo, lg); /* the logger redacts them everywhere */
    if (uv_timer_init(loop, &c->timer) != 0) goto fail;
    c->timer.data = c;
    c->handles_open = 1;
    c->state = PGC_INIT;
    c->prepare = opts->prepare;
    c->preparing = -1;
    return c;
fail:
    free(c->conninfo);
    free(c->redacted);
    free(c->resolve_host);
    free(c);
    return NULL;
}

int pg_conn_start(struct pg_conn *c)
{
    if (c == NULL || c->state != PGC_INIT) return -1;
    c->state = PGC_BACKOFF;
    return uv_timer_start(&c->timer, timer_cb, 0, 0) == 0 ? 0 : -1;
}

int pg_conn_is_ready(const struct pg_conn *c)
{
    return c != NULL && c->state == PGC_READY;
}

int pg_conn_is_up(const struct pg_conn *c)
{
    return c != NULL && is_up_state(c->state);
}

static int find_prepared(const struct pg_conn *c, const char *sql)
{
    for (int i = 0; i < c->n_prepared; i++)
        if (strcmp(c->prepared[i], sql) == 0) return i;
    return -1;
}

/* First run of sql on this session: send Parse, keep a copy of the params for the run by name. */
static int send_prepare(struct pg_conn *c, const char *sql, int nparams, const char *const *params)
{
    int index = c->n_prepared;
    c->prepared[index] = strdup(sql);
    c->prep_params = calloc((size_t)nparams, sizeof(char *));
    if (c->prepared[index] == NULL || c->prep_params == NULL) goto oom;
    c->prep_nparams = nparams;
    for (int i = 0; i < nparams; i++)
        if (params[i] != NULL && (c->prep_params[i] = strdup(params[i])) == NULL) goto oom;
    char name[16];
    statement_name(index, name);
    c->preparing = index;
    return PQsendPrepare(c->pg, name, sql, nparams, NULL) ? 1 : 0;
oom:
    free(c->prepared[index]);
    c->prepared[index] = NULL;
    free_prep_params(c);
    return -1;
}

/* Send sql the cheapest way: by name when prepared, Parse first when new, else unnamed.
 * 1 = sent, 0 = libpq refused, -1 = out of memory (nothing sent). */
static int send_statement(struct pg_conn *c, const char *sql, int nparams, const char *const *params)
{
    if (c->prepare && nparams > 0) {
        int index = find_prepared(c, sql);
        if (index >= 0) {
            char name[16];
            statement_name(index, name);
            return PQsendQueryPrepared(c->pg, name, nparams, params, NULL, NULL, 0) ? 1 : 0;
        }
        if (c->n_prepared < PGC_MAX_PREPARED) return send_prepare(c, sql, nparams, params);
    }
    return PQsendQueryParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0) ? 1 : 0;
}

int pg_conn_send(struct pg_conn *c, const char *sql, int nparams, const char *const *params, db_result_cb cb,
                 void *arg)
{
    if (c == NULL || c->state != PGC_READY || sql == NULL || cb == NULL) return -1;
    int sent = send_statement(c, sql, nparams, params);
    if (sent < 0) return -1;
    if (sent == 0) {
        defer_fail(c, PQerrorMessage(c->pg));
        return -1;
    }
    c->state = PGC_BUSY;
    c->stmt_cb = cb;
    c->stmt_arg = arg;
    int r = PQflush(c->pg);
    if (r < 0) {
        defer_fail(c, PQerrorMessage(c->pg)); /* the statement gets (NULL, err) from the loop */
        return 0;
    }
    c->flushing = r == 1;
    if (poll_watch(c, UV_READABLE | (c->flushing ? UV_WRITABLE : 0)) != 0)
        defer_fail(c, "cannot watch the connection socket");
    return 0;
}

void pg_conn_hold_notifies(struct pg_conn *c, int hold)
{
    if (c == NULL) return;
    int was_held = c->hold_notifies;
    c->hold_notifies = hold != 0;
    /* Released while up: deliver what libpq already queued, from the loop.
     * (A pending timer in READY/BUSY only ever means this.) */
    if (was_held && !hold && is_up_state(c->state)) uv_timer_start(&c->timer, timer_cb, 0, 0);
}

void pg_conn_drop(struct pg_conn *c, const char *why)
{
    if (c != NULL && is_up_state(c->state)) defer_fail(c, why ? why : "dropped");
}

char *pg_conn_quote_ident(struct pg_conn *c, const char *ident)
{
    if (c == NULL || c->pg == NULL || !is_up_state(c->state) || ident == NULL) return NULL;
    char *q = PQescapeIdentifier(c->pg, ident, strlen(ident));
    if (q == NULL) return NULL;
    char *copy = strdup(q);
    PQfreemem(q);
    return copy;
}

void pg_conn_close(struct pg_conn *c, void (*done)(void *arg), void *arg)
{
    if (c == NULL || c->state == PGC_CLOSING) return;
    c->state = PGC_CLOSING;
    c->close_done = done;
    c->close_arg = arg;
    uv_timer_stop(&c->timer);
    teardown_pg(c);
    if (c->gai_pending) uv_cancel((uv_req_t *)&c->gai); /* gai_cb runs anyway (ECANCELED) */
    uv_close((uv_handle_t *)&c->timer, timer_closed_cb);
}
