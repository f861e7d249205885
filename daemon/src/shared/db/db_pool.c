/*
 * shared/db/db_pool — pool of pg_conn with a FIFO statement queue (see db_pool.h).
 *
 * Each slot pairs a pg_conn with the queue item it runs. pool_pump() hands the
 * queue head to idle slots; it runs after a query is queued, after a statement
 * finished and after a connection came up, so "work queued ⇒ no slot idle" holds
 * between loop callbacks. Closing: every pg_conn is closed (their in-flight
 * items complete with "closing" from their close path); when the last one has
 * finished closing, the queued items are failed in order, the pool is freed
 * and done() runs — all from loop callbacks.
 */
#include "shared/db/db_pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utils/log.h"

struct pool_item {
    struct pool_item *next;
    db_result_cb cb;
    void *arg;
    char *sql;
    int nparams;
    char **params;
};

struct pool_slot {
    struct db_pool *pool;
    struct pg_conn *conn;
    struct pool_item *item; /* in flight, or NULL */
};

struct db_pool {
    uv_loop_t *loop;
    struct logger *lg;
    int size, max_queue;
    struct pool_slot *slots;
    struct pool_item *head, *tail;
    int n_waiting;
    unsigned long long accepted;   /* statements queued since the start */
    int started, closing, open_conns;
    void (*done)(void *arg);
    void *done_arg;
    void (*on_change)(void *arg);
    void *on_change_arg;
};

static void item_free(struct pool_item *it)
{
    if (it == NULL) return;
    for (int i = 0; it->params != NULL && i < it->nparams; i++) free(it->params[i]);
    free(it->params);
    free(it->sql);
    free(it);
}

static struct pool_item *item_new(const char *sql, int nparams, const char *const *params, db_result_cb cb,
                                  void *arg)
{
    struct pool_item *it = calloc(1, sizeof(*it));
    if (it == NULL) return NULL;
    it->cb = cb;
    it->arg = arg;
    it->nparams = nparams;
    it->sql = strdup(sql);
    if (it->sql == NULL) goto fail;
    if (nparams > 0) {
        it->params = calloc((size_t)nparams, sizeof(char *));
        if (it->params == NULL) goto fail;
        for (int i = 0; i < nparams; i++) {
            if (params[i] == NULL) continue;
            it->params[i] = strdup(params[i]);
            if (it->params[i] == NULL) goto fail;
        }
    }
    return it;
fail:
    item_free(it);
    return NULL;
}

static struct pool_item *queue_pop(struct db_pool *p)
{
    struct pool_item *it = p->head;
    if (it == NULL) return NULL;
    p->head = it->next;
    if (p->head == NULL) p->tail = NULL;
    it->next = NULL;
    p->n_waiting--;
    return it;
}

static void queue_push(struct db_pool *p, struct pool_item *it)
{
    it->next = NULL;
    if (p->tail != NULL) p->tail->next = it;
    else p->head = it;
    p->tail = it;
    p->n_waiting++;
}

static void slot_result_cb(void *arg, PGresult *res, const char *err);

/* Hand queued statements to idle connections, oldest first. */
static void pool_pump(struct db_pool *p)
{
    for (int i = 0; i < p->size && p->head != NULL && !p->closing; i++) {
        struct pool_slot *s = &p->slots[i];
        if (s->item != NULL || !pg_conn_is_ready(s->conn)) continue;
        struct pool_item *it = p->head;
        if (pg_conn_send(s->conn, it->sql, it->nparams, (const char *const *)it->params, slot_result_cb, s) != 0)
            continue; /* that connection is being dropped; the item stays first in line */
        s->item = queue_pop(p);
    }
}

static int pool_has_idle(const struct db_pool *p)
{
    for (int i = 0; i < p->size; i++)
        if (p->slots[i].item == NULL && pg_conn_is_ready(p->slots[i].conn)) return 1;
    return 0;
}

static void notify_change(struct db_pool *p)
{
    if (!p->closing && p->on_change != NULL) p->on_change(p->on_change_arg);
}

static void slot_result_cb(void *arg, PGresult *res, const char *err)
{
    struct pool_slot *s = arg;
    struct pool_item *it = s->item;
    s->item = NULL;
    it->cb(it->arg, res, err);
    item_free(it);
    pool_pump(s->pool);
}

static void slot_up_cb(void *arg)
{
    struct pool_slot *s = arg;
    notify_change(s->pool);
    pool_pump(s->pool);
}

static void slot_down_cb(void *arg, const char *err)
{
    struct pool_slot *s = arg;
    (void)err; /* logged by pg_conn */
    notify_change(s->pool);
}

struct db_pool *db_pool_new(uv_loop_t *loop, struct logger *lg, const struct db_opts *opts, int size,
                            int max_queue)
{
    if (loop == NULL || opts == NULL || size < 1 || max_queue < 0) return NULL;
    struct db_pool *p = calloc(1, sizeof(*p));
    if (p == NULL) return NULL;
    p->loop = loop;
    p->lg = lg;
    p->size = size;
    p->max_queue = max_queue;
    p->slots = calloc((size_t)size, sizeof(*p->slots));
    if (p->slots == NULL) {
        free(p);
        return NULL;
    }
    static const struct pg_conn_cbs cbs = {.on_up = slot_up_cb, .on_down = slot_down_cb, .on_notify = NULL};
    for (int i = 0; i < size; i++) {
        char name[32];
        snprintf(name, sizeof(name), "pool#%d", i);
        p->slots[i].pool = p;
        p->slots[i].conn = pg_conn_new(loop, lg, opts, name, &cbs, &p->slots[i]);
        if (p->slots[i].conn == NULL) goto fail;
    }
    return p;
fail:
    /* Connections created so far own an initialized timer: close them and free
     * the pool once they are all closed. */
    p->size = 0;
    for (int i = 0; i < size && p->slots[i].conn != NULL; i++) p->size = i + 1;
    if (p->size == 0) {
        free(p->slots);
        free(p);
    } else {
        db_pool_close(p, NULL, NULL);
    }
    return NULL;
}

int db_pool_start(struct db_pool *p)
{
    if (p == NULL || p->started || p->closing) return -1;
    p->started = 1;
    for (int i = 0; i < p->size; i++)
        if (pg_conn_start(p->slots[i].conn) != 0) return -1;
    return 0;
}

int db_pool_query(struct db_pool *p, const char *sql, int nparams, const char *const *params, db_result_cb cb,
                  void *arg)
{
    if (p == NULL || p->closing || sql == NULL || cb == NULL) return -1;
    if (nparams < 0 || nparams > DB_MAX_PARAMS || (nparams > 0 && params == NULL)) return -1;
    if (p->n_waiting >= p->max_queue && !pool_has_idle(p)) return -1;
    struct pool_item *it = item_new(sql, nparams, params, cb, arg);
    if (it == NULL) return -1;
    queue_push(p, it);
    p->accepted++;
    pool_pump(p);
    return 0;
}

int db_pool_connected(const struct db_pool *p)
{
    int n = 0;
    for (int i = 0; p != NULL && i < p->size; i++) n += pg_conn_is_up(p->slots[i].conn);
    return n;
}

int db_pool_in_use(const struct db_pool *p)
{
    int n = 0;
    for (int i = 0; p != NULL && i < p->size; i++) n += p->slots[i].item != NULL;
    return n;
}

int db_pool_waiting(const struct db_pool *p)
{
    return p != NULL ? p->n_waiting : 0;
}

int db_pool_size(const struct db_pool *p)
{
    return p != NULL ? p->size : 0;
}

unsigned long long db_pool_statements(const struct db_pool *p)
{
    return p != NULL ? p->accepted : 0;
}

void db_pool_set_state_cb(struct db_pool *p, void (*on_change)(void *arg), void *arg)
{
    if (p == NULL) return;
    p->on_change = on_change;
    p->on_change_arg = arg;
}

static void pool_conn_closed(void *arg)
{
    struct pool_slot *s = arg;
    struct db_pool *p = s->pool;
    s->conn = NULL;
    if (--p->open_conns > 0) return;
    struct pool_item *it;
    while ((it = queue_pop(p)) != NULL) {
        it->cb(it->arg, NULL, "closing");
        item_free(it);
    }
    void (*done)(void *) = p->done;
    void *done_arg = p->done_arg;
    free(p->slots);
    free(p);
    if (done != NULL) done(done_arg);
}

void db_pool_close(struct db_pool *p, void (*done)(void *arg), void *arg)
{
    if (p == NULL || p->closing) return;
    p->closing = 1;
    p->done = done;
    p->done_arg = arg;
    p->open_conns = p->size;
    for (int i = 0; i < p->size; i++) pg_conn_close(p->slots[i].conn, pool_conn_closed, &p->slots[i]);
}

char *db_pool_quote_ident(struct db_pool *p, const char *ident)
{
    for (int i = 0; p != NULL && i < p->size; i++)
        if (pg_conn_is_up(p->slots[i].conn)) return pg_conn_quote_ident(p->slots[i].conn, ident);
    return NULL;
}
