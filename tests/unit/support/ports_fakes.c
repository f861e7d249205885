/*
 * tests/unit/support/ports_fakes — see ports_fakes.h.
 */
#include "ports_fakes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/deals_pipeline/services/followup_keys.h"

/* A tiny deferred-callback queue: each entry is a closure run by fakes_drain. */
struct deferred {
    void (*run)(struct deferred *d);
    struct deferred *next;
    void *cb;
    void *arg;
    enum repo_rc rc;
    struct claim_result cr;
    struct booking b;
    bool has_booking;
    struct tq_reply tq;
    char task_name[TASK_NAME_LEN];
    struct voice_reply vr;
    int64_t time_ms;
    struct booking_key *keys;   /* owned; freed after the callback */
    int nkeys;
};

static struct deferred *queue_head, *queue_tail;
static struct deferred *held_head, *held_tail;   /* voice answers held by voice_hold */

static void defer(struct deferred *d)
{
    d->next = NULL;
    if (queue_tail) queue_tail->next = d;
    else queue_head = d;
    queue_tail = d;
}

int fakes_release_voice(struct fake_world *w)
{
    (void)w;
    int n = 0;
    while (held_head != NULL) {
        struct deferred *d = held_head;
        held_head = d->next;
        defer(d);
        n++;
    }
    held_tail = NULL;
    return n;
}

int fakes_drain(struct fake_world *w)
{
    (void)w;
    int n = 0;
    while (queue_head != NULL) {
        struct deferred *d = queue_head;
        queue_head = d->next;
        if (queue_head == NULL) queue_tail = NULL;
        d->run(d);
        free(d);
        n++;
    }
    return n;
}

static void run_done(struct deferred *d) { ((repo_done_cb)d->cb)(d->arg, d->rc); }
static void run_booking(struct deferred *d) { ((repo_booking_cb)d->cb)(d->arg, d->rc, d->has_booking ? &d->b : NULL); }
static void run_claim(struct deferred *d)
{
    d->cr.booking = d->has_booking ? &d->b : NULL;
    ((repo_claim_cb)d->cb)(d->arg, d->rc, d->rc == REPO_OK ? &d->cr : NULL);
}
static void run_tq(struct deferred *d)
{
    d->tq.task_name = d->task_name;
    ((tq_cb)d->cb)(d->arg, &d->tq);
}
static void run_voice(struct deferred *d) { ((voice_cb)d->cb)(d->arg, &d->vr); }

static struct deferred *new_deferred(void (*run)(struct deferred *), void *cb, void *arg)
{
    struct deferred *d = calloc(1, sizeof(*d));
    d->run = run;
    d->cb = cb;
    d->arg = arg;
    return d;
}

static struct fake_row *row_in_tenant(struct fake_world *w, const char *schema, const char *tenant,
                                      const char *booking)
{
    for (int i = 0; i < FAKE_MAX_ROWS; i++) {
        struct fake_row *r = &w->rows[i];
        if (r->used && strcmp(r->schema, schema) == 0 && strcmp(r->b.tenant_id, tenant) == 0 &&
            strcmp(r->b.id, booking) == 0)
            return r;
    }
    return NULL;
}

struct fake_row *fakes_find(struct fake_world *w, const char *booking_id)
{
    for (int i = 0; i < FAKE_MAX_ROWS; i++)
        if (w->rows[i].used && strcmp(w->rows[i].b.id, booking_id) == 0) return &w->rows[i];
    return NULL;
}

static int repo_load(void *impl, const char *schema, const char *tenant, const char *booking, repo_booking_cb cb,
                     void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_booking, (void *)cb, arg);
    struct fake_row *r = row_in_tenant(w, schema, tenant, booking);
    w->loads++;
    d->rc = w->repo_down ? REPO_ERROR : r ? REPO_OK : REPO_NOT_FOUND;
    if (r && !w->repo_down) {
        d->b = r->b;
        d->has_booking = true;
    }
    defer(d);
    return 0;
}

static int repo_mark_scheduled(void *impl, const char *schema, const char *tenant, const char *booking,
                               const struct schedule_mark *m, repo_done_cb cb, void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_done, (void *)cb, arg);
    struct fake_row *r = row_in_tenant(w, schema, tenant, booking);
    if (w->repo_down) d->rc = REPO_ERROR;
    else if (r == NULL) d->rc = REPO_NOT_FOUND;
    else if (strcmp(r->b.task_status, "pending") != 0 && strcmp(r->b.task_status, "failed") != 0)
        d->rc = REPO_CONFLICT;
    else {
        strcpy(r->b.task_status, "scheduled");
        strcpy(r->b.task_name, m->task_name);
        strcpy(r->b.idempotency_key, m->idempotency_key);
        r->b.task_scheduled_at_ms = m->task_scheduled_at_ms;
        r->next_attempt_ms = 0;
        d->rc = REPO_OK;
    }
    defer(d);
    return 0;
}

static int repo_mark_schedule_failed(void *impl, const char *schema, const char *tenant, const char *booking,
                                     const char *error, repo_done_cb cb, void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_done, (void *)cb, arg);
    struct fake_row *r = row_in_tenant(w, schema, tenant, booking);
    d->rc = w->repo_down ? REPO_ERROR : r ? REPO_OK : REPO_NOT_FOUND;
    if (r && !w->repo_down) {
        strcpy(r->b.task_status, "failed");
        r->retryable = false;
        r->next_attempt_ms = 0;
        strncpy(r->last_error, error, sizeof(r->last_error) - 1);
    }
    defer(d);
    return 0;
}

/* Milliseconds until scheduled_at - early_window_s, rounded up to seconds; 0 when not early or no check. */
static int early_wait_s(const struct fake_world *w, const struct fake_row *r, int early_window_s)
{
    if (early_window_s < 0) return 0;
    int64_t early_ms = r->b.scheduled_at_ms - (int64_t)early_window_s * 1000 - w->now_ms;
    return early_ms > 0 ? (int)((early_ms + 999) / 1000) : 0;
}

static bool lease_live(const struct fake_world *w, const struct fake_row *r, int lease_s)
{
    return strcmp(r->b.task_status, "in_progress") == 0 && r->lease_started_ms > w->now_ms - (int64_t)lease_s * 1000;
}

/* Live leases of one tenant (NULL: of every tenant), over every schema, like followupd_live_leases(). */
static int live_leases(const struct fake_world *w, const char *tenant, int lease_s)
{
    int n = 0;
    for (int i = 0; i < FAKE_MAX_ROWS; i++) {
        const struct fake_row *r = &w->rows[i];
        n += r->used && lease_live(w, r, lease_s) && (tenant == NULL || strcmp(r->b.tenant_id, tenant) == 0);
    }
    return n;
}

static bool final_failure(const struct fake_row *r)
{
    return strcmp(r->b.task_status, "failed") == 0 && !r->retryable;
}

/* The SQL claim's order: final states first, then the early check, a live lease, expiry, a Retry-After not
 * passed, the caps. */
static enum claim_outcome claim_rules(struct fake_world *w, struct fake_row *r, const struct claim_params *p,
                                      struct claim_result *out)
{
    if (strcmp(r->b.task_status, "executed") == 0) return CLAIM_ALREADY_EXECUTED;
    if (strcmp(r->b.task_status, "cancelled") == 0 || strcmp(r->b.status, "cancelled") == 0) return CLAIM_CANCELLED;
    /* the key, with the row in step with its task (a row whose scheduled_at moved since its task was made is
     * stale for it; task_scheduled_at 0 = not recorded, not modelled) */
    bool in_step = r->b.task_scheduled_at_ms == 0 || r->b.task_scheduled_at_ms == r->b.scheduled_at_ms;
    if (strcmp(r->b.idempotency_key, p->idempotency_key) != 0 || !in_step) {
        out->scheduled_at_ms = r->b.scheduled_at_ms;   /* the row as found, like the SQL claim */
        return CLAIM_STALE;
    }
    if (final_failure(r)) return strncmp(r->last_error, "expired:", 8) == 0 ? CLAIM_EXPIRED : CLAIM_FAILED_FINAL;
    if ((out->wait_s = early_wait_s(w, r, p->early_window_s)) > 0) return CLAIM_TOO_EARLY;
    if (lease_live(w, r, p->lease_s)) return CLAIM_IN_PROGRESS;
    if (p->max_lateness_s > 0 && w->now_ms > r->b.scheduled_at_ms + (int64_t)p->max_lateness_s * 1000)
        return CLAIM_EXPIRED;
    if (strcmp(r->b.task_status, "failed") == 0 && r->next_attempt_ms > w->now_ms) {
        out->deferral = DEFER_RETRY_AFTER;
        out->wait_s = (int)((r->next_attempt_ms - w->now_ms + 999) / 1000);
        return CLAIM_DEFERRED;
    }
    out->tenant_live = p->tenant_cap > 0 ? live_leases(w, r->b.tenant_id, p->lease_s) : -1;
    out->all_live = p->global_cap > 0 ? live_leases(w, NULL, p->lease_s) : -1;
    out->deferral = p->tenant_cap > 0 && out->tenant_live >= p->tenant_cap   ? DEFER_TENANT_CAP
                    : p->global_cap > 0 && out->all_live >= p->global_cap ? DEFER_GLOBAL_CAP
                                                                           : DEFER_NONE;
    return out->deferral != DEFER_NONE ? CLAIM_DEFERRED : CLAIM_CLAIMED;
}

static void expire_row(struct fake_world *w, struct fake_row *r, int max_lateness_s, struct claim_result *out)
{
    out->late_s = (w->now_ms - r->b.scheduled_at_ms) / 1000;
    strcpy(r->b.task_status, "failed");
    r->retryable = false;
    r->next_attempt_ms = 0;
    snprintf(r->last_error, sizeof(r->last_error), "expired: reached %lld s after scheduled_at, past %d",
             (long long)out->late_s, max_lateness_s);
}

static int repo_claim(void *impl, const char *schema, const char *tenant, const char *booking,
                      const struct claim_params *p, repo_claim_cb cb, void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_claim, (void *)cb, arg);
    struct fake_row *r = row_in_tenant(w, schema, tenant, booking);
    w->claims++;
    w->last_claim = *p;
    w->last_claim.idempotency_key = NULL;
    w->last_claim_early_window_s = p->early_window_s;
    d->rc = w->repo_down ? REPO_ERROR : REPO_OK;
    d->cr = (struct claim_result){.outcome = CLAIM_NOT_FOUND, .tenant_live = -1, .all_live = -1};
    if (r != NULL) d->cr.outcome = claim_rules(w, r, p, &d->cr);
    bool changes = !w->repo_down && r != NULL && !final_failure(r);
    if (changes && d->cr.outcome == CLAIM_EXPIRED) {
        expire_row(w, r, p->max_lateness_s, &d->cr);
        d->b = r->b;
        d->has_booking = true;
    } else if (changes && d->cr.outcome == CLAIM_CLAIMED) {
        strcpy(r->b.task_status, "in_progress");
        r->b.execution_attempts++;
        r->lease_started_ms = w->now_ms;
        d->b = r->b;
        d->has_booking = true;
    }
    defer(d);
    return 0;
}

static int repo_mark_expired(void *impl, const char *schema, const char *tenant, const char *booking,
                             int64_t scheduled_at_ms, const char *error, repo_done_cb cb, void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_done, (void *)cb, arg);
    struct fake_row *r = row_in_tenant(w, schema, tenant, booking);
    w->expiries++;
    d->rc = REPO_CONFLICT;
    if (w->repo_down) d->rc = REPO_ERROR;
    else if (r && strcmp(r->b.status, "cancelled") != 0 && r->b.scheduled_at_ms == scheduled_at_ms &&
             (strcmp(r->b.task_status, "pending") == 0 || (strcmp(r->b.task_status, "failed") == 0 && r->retryable))) {
        strcpy(r->b.task_status, "failed");
        r->retryable = false;
        r->next_attempt_ms = 0;
        snprintf(r->last_error, sizeof(r->last_error), "%s", error);
        d->rc = REPO_OK;
    }
    defer(d);
    return 0;
}

static int repo_mark_executed(void *impl, const char *schema, const char *tenant, const char *booking,
                              const char *key, repo_done_cb cb, void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_done, (void *)cb, arg);
    struct fake_row *r = row_in_tenant(w, schema, tenant, booking);
    d->rc = w->repo_down ? REPO_ERROR : (r && strcmp(r->b.idempotency_key, key) == 0) ? REPO_OK : REPO_CONFLICT;
    if (d->rc == REPO_OK) {
        strcpy(r->b.task_status, "executed");
        r->last_error[0] = '\0';
        r->next_attempt_ms = 0;
    }
    defer(d);
    return 0;
}

static int repo_mark_failed(void *impl, const char *schema, const char *tenant, const char *booking, const char *key,
                            const char *error, bool retryable, int retry_delay_s, repo_done_cb cb, void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_done, (void *)cb, arg);
    struct fake_row *r = row_in_tenant(w, schema, tenant, booking);
    d->rc = w->repo_down ? REPO_ERROR : (r && strcmp(r->b.idempotency_key, key) == 0) ? REPO_OK : REPO_CONFLICT;
    if (d->rc == REPO_OK) {
        strcpy(r->b.task_status, "failed");
        r->retryable = retryable;
        r->retry_delay_s = retry_delay_s;
        r->next_attempt_ms = retryable ? w->now_ms + (int64_t)retry_delay_s * 1000 : 0;
        strncpy(r->last_error, error, sizeof(r->last_error) - 1);
    }
    defer(d);
    return 0;
}

static int repo_mark_rescheduled(void *impl, const char *schema, const char *tenant, const char *booking,
                                 const struct reschedule_mark *m, repo_done_cb cb, void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_done, (void *)cb, arg);
    struct fake_row *r = row_in_tenant(w, schema, tenant, booking);
    d->rc = REPO_CONFLICT;
    if (w->repo_down) d->rc = REPO_ERROR;
    else if (r && strcmp(r->b.task_status, "scheduled") == 0 && strcmp(r->b.task_name, m->old_task_name) == 0 &&
             r->b.task_generation == m->generation - 1 && r->b.scheduled_at_ms == m->scheduled_at_ms) {
        snprintf(r->b.task_name, sizeof(r->b.task_name), "%s", m->task_name);
        snprintf(r->b.idempotency_key, sizeof(r->b.idempotency_key), "%s", m->idempotency_key);
        r->b.task_scheduled_at_ms = m->scheduled_at_ms;
        r->b.task_generation = m->generation;
        d->rc = REPO_OK;
    }
    defer(d);
    return 0;
}

static int repo_mark_cancelled(void *impl, const char *schema, const char *tenant, const char *booking,
                               repo_done_cb cb, void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_done, (void *)cb, arg);
    struct fake_row *r = row_in_tenant(w, schema, tenant, booking);
    d->rc = REPO_CONFLICT;
    if (w->repo_down) d->rc = REPO_ERROR;
    else if (r && (strcmp(r->b.task_status, "pending") == 0 || strcmp(r->b.task_status, "scheduled") == 0 ||
                   strcmp(r->b.task_status, "failed") == 0)) {
        strcpy(r->b.task_status, "cancelled");
        r->next_attempt_ms = 0;
        d->rc = REPO_OK;
    }
    defer(d);
    return 0;
}

static int repo_clear_task_name(void *impl, const char *schema, const char *tenant, const char *booking,
                                const char *task_name, repo_done_cb cb, void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_done, (void *)cb, arg);
    struct fake_row *r = row_in_tenant(w, schema, tenant, booking);
    d->rc = REPO_CONFLICT;
    if (r && strcmp(r->b.task_status, "cancelled") == 0 && strcmp(r->b.task_name, task_name) == 0) {
        r->b.task_name[0] = '\0';
        d->rc = REPO_OK;
    }
    defer(d);
    return 0;
}

static int repo_reopen(void *impl, const char *schema, const char *tenant, const char *booking, repo_done_cb cb,
                       void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_done, (void *)cb, arg);
    struct fake_row *r = row_in_tenant(w, schema, tenant, booking);
    d->rc = REPO_CONFLICT;
    if (r && strcmp(r->b.task_status, "cancelled") == 0 && r->b.task_name[0] == '\0') {
        strcpy(r->b.task_status, "pending");
        r->b.idempotency_key[0] = '\0';
        r->b.task_scheduled_at_ms = 0;
        r->b.task_generation++;
        r->next_attempt_ms = 0;
        d->rc = REPO_OK;
    }
    defer(d);
    return 0;
}

static int repo_unschedule(void *impl, const char *schema, const char *tenant, const char *booking,
                           const char *old_task_name, int64_t scheduled_at_ms, repo_done_cb cb, void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_done, (void *)cb, arg);
    struct fake_row *r = row_in_tenant(w, schema, tenant, booking);
    d->rc = REPO_CONFLICT;
    if (r && strcmp(r->b.task_status, "scheduled") == 0 && strcmp(r->b.task_name, old_task_name) == 0 &&
        r->b.scheduled_at_ms == scheduled_at_ms) {
        strcpy(r->b.task_status, "pending");
        r->b.task_name[0] = '\0';
        r->b.idempotency_key[0] = '\0';
        r->b.task_scheduled_at_ms = 0;
        r->b.task_generation++;
        d->rc = REPO_OK;
    }
    defer(d);
    return 0;
}

static void run_keys(struct deferred *d)
{
    ((repo_keys_cb)d->cb)(d->arg, d->rc, d->keys, d->nkeys);
    free(d->keys);
}
static void run_time(struct deferred *d) { ((repo_time_cb)d->cb)(d->arg, d->rc, d->time_ms); }

/* The local dispatcher's reads, as ST_NEXT_DUE / ST_FIND_DUE select them.  A live local task: task_name
 * local/..., booking not cancelled, a key.  Scheduled and retrying tasks, and abandoned leases, count only
 * while scheduled_at still equals task_scheduled_at (ms).  Its due moment: scheduled_at - lead for a
 * scheduled task, next_attempt_at for a retryable failure, the end of the lease for in_progress. */
static bool local_due_at(const struct fake_row *r, int lead_s, int lease_s, int64_t *due_ms)
{
    const struct booking *b = &r->b;
    if (strncmp(b->task_name, "local/", 6) != 0 || strcmp(b->status, "cancelled") == 0 ||
        b->idempotency_key[0] == '\0')
        return false;
    if (b->task_scheduled_at_ms == 0 || b->scheduled_at_ms != b->task_scheduled_at_ms) return false;
    if (strcmp(b->task_status, "scheduled") == 0) *due_ms = b->scheduled_at_ms - (int64_t)lead_s * 1000;
    else if (strcmp(b->task_status, "failed") == 0 && r->next_attempt_ms != 0) *due_ms = r->next_attempt_ms;
    else if (strcmp(b->task_status, "in_progress") == 0) *due_ms = r->lease_started_ms + (int64_t)lease_s * 1000;
    else return false;
    return true;
}

static int repo_next_due(void *impl, const char *schema, int lead_s, int lease_s, repo_time_cb cb, void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_time, (void *)cb, arg);
    w->next_due_calls++;
    d->rc = w->repo_down ? REPO_ERROR : REPO_OK;
    for (int i = 0; !w->repo_down && i < FAKE_MAX_ROWS; i++) {
        int64_t due;
        const struct fake_row *r = &w->rows[i];
        if (!r->used || strcmp(r->schema, schema) != 0 || !local_due_at(r, lead_s, lease_s, &due)) continue;
        if (d->time_ms == 0 || due < d->time_ms) d->time_ms = due;
    }
    defer(d);
    return 0;
}

static int repo_find_due(void *impl, const char *schema, int lead_s, int lease_s, int limit, repo_keys_cb cb,
                         void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_keys, (void *)cb, arg);
    w->find_due_calls++;
    w->last_find_due_limit = limit;
    d->rc = w->repo_down ? REPO_ERROR : REPO_OK;
    const struct fake_row *due_rows[FAKE_MAX_ROWS];
    int n = 0;
    for (int i = 0; !w->repo_down && i < FAKE_MAX_ROWS; i++) {
        int64_t due;
        const struct fake_row *r = &w->rows[i];
        if (!r->used || strcmp(r->schema, schema) != 0 || !local_due_at(r, lead_s, lease_s, &due) || due > w->now_ms)
            continue;
        /* ORDER BY scheduled_at (insertion keeps equal ones in row order) */
        int j = n++;
        while (j > 0 && due_rows[j - 1]->b.scheduled_at_ms > r->b.scheduled_at_ms) {
            due_rows[j] = due_rows[j - 1];
            j--;
        }
        due_rows[j] = r;
    }
    if (n > limit) n = limit;
    if (n > 0 && (d->keys = calloc((size_t)n, sizeof(*d->keys))) == NULL) {
        d->rc = REPO_ERROR;
        n = 0;
    }
    for (int i = 0; i < n; i++) {
        snprintf(d->keys[i].tenant_id, sizeof(d->keys[i].tenant_id), "%s", due_rows[i]->b.tenant_id);
        snprintf(d->keys[i].booking_id, sizeof(d->keys[i].booking_id), "%s", due_rows[i]->b.id);
        snprintf(d->keys[i].idempotency_key, sizeof(d->keys[i].idempotency_key), "%s", due_rows[i]->b.idempotency_key);
    }
    d->nkeys = n;
    defer(d);
    return 0;
}

/* A sweep read: records the partition filter; the catch-up answers the pending rows of the schema in the
 * filter's partitions (as ST_FIND_CATCHUP selects them, window aside), the other reads answer none. */
static int sweep_read(struct fake_world *w, const char *schema, const struct partition_filter *parts, bool pending,
                      int limit, repo_keys_cb cb, void *arg)
{
    w->sweep_reads++;
    w->last_sweep_all = parts == NULL;
    w->last_sweep_n_owned = parts != NULL ? parts->n_owned : 0;
    for (int i = 0; parts != NULL && i < parts->n_owned && i < FAKE_MAX_OWNED; i++)
        w->last_sweep_owned[i] = parts->owned[i];
    struct deferred *d = new_deferred(run_keys, (void *)cb, arg);
    d->rc = w->repo_down ? REPO_ERROR : REPO_OK;
    if (pending && !w->repo_down) d->keys = calloc(FAKE_MAX_ROWS, sizeof(*d->keys));
    for (int i = 0; d->keys != NULL && i < FAKE_MAX_ROWS && d->nkeys < limit; i++) {
        const struct fake_row *r = &w->rows[i];
        if (!r->used || strcmp(r->schema, schema) != 0 || strcmp(r->b.task_status, "pending") != 0) continue;
        bool in = parts == NULL;
        int p = parts != NULL ? followup_booking_partition(r->b.id, parts->partitions) : -1;
        for (int k = 0; parts != NULL && k < parts->n_owned; k++) in = in || parts->owned[k] == p;
        if (!in) continue;
        snprintf(d->keys[d->nkeys].tenant_id, sizeof(d->keys[0].tenant_id), "%s", r->b.tenant_id);
        snprintf(d->keys[d->nkeys].booking_id, sizeof(d->keys[0].booking_id), "%s", r->b.id);
        d->nkeys++;
    }
    defer(d);
    return 0;
}

static int repo_find_catchup(void *impl, const char *schema, const struct strlist *types,
                             const struct partition_filter *parts, int64_t now_ms, int lookback_s, int horizon_s,
                             int limit, repo_keys_cb cb, void *arg)
{
    (void)types, (void)now_ms, (void)lookback_s, (void)horizon_s;
    return sweep_read(impl, schema, parts, true, limit, cb, arg);
}

static int repo_find_reopened(void *impl, const char *schema, const struct strlist *types,
                              const struct partition_filter *parts, int64_t now_ms, int lookback_s, int horizon_s,
                              int limit, repo_keys_cb cb, void *arg)
{
    (void)types, (void)now_ms, (void)lookback_s, (void)horizon_s;
    return sweep_read(impl, schema, parts, false, limit, cb, arg);
}

static int repo_find_stale_tasks(void *impl, const char *schema, const struct strlist *types,
                                 const struct partition_filter *parts, int limit, repo_keys_cb cb, void *arg)
{
    (void)types;
    return sweep_read(impl, schema, parts, false, limit, cb, arg);
}

static int voice_start(void *impl, const struct voice_call *call, voice_cb cb, void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_voice, (void *)cb, arg);
    int i = w->voice_calls < FAKE_MAX_CALLS ? w->voice_calls : FAKE_MAX_CALLS - 1;
    strncpy(w->call_keys[i], call->idempotency_key, IDEMPOTENCY_KEY_LEN - 1);
    const char *src[9] = {call->tenant_id,        call->booking_id,      call->lead_id,
                          call->assigned_user_id, call->scheduled_at_iso, call->idempotency_key,
                          call->booking_type,     call->request_id,      call->traceparent};
    const char **dst[9] = {&w->last_call.tenant_id,        &w->last_call.booking_id,
                           &w->last_call.lead_id,          &w->last_call.assigned_user_id,
                           &w->last_call.scheduled_at_iso, &w->last_call.idempotency_key,
                           &w->last_call.booking_type,     &w->last_call.request_id,
                           &w->last_call.traceparent};
    for (int k = 0; k < 9; k++) {
        snprintf(w->last_call_buf[k], IDEMPOTENCY_KEY_LEN, "%s", src[k] != NULL ? src[k] : "");
        *dst[k] = src[k] != NULL ? w->last_call_buf[k] : NULL;
    }
    d->vr.outcome = w->voice_script[i];
    d->vr.http_status = w->voice_status_script[i] ? w->voice_status_script[i] : (d->vr.outcome == VOICE_OK ? 200 : 500);
    d->vr.error = d->vr.outcome == VOICE_OK ? NULL : "scripted failure";
    d->vr.retry_after_s = w->voice_retry_after_script[i];
    w->voice_calls++;
    if (w->voice_hold) {
        d->next = NULL;
        if (held_tail) held_tail->next = d;
        else held_head = d;
        held_tail = d;
        return 0;
    }
    defer(d);
    return 0;
}

static int tq_task_name(void *impl, const char *task_id, char *out, size_t cap)
{
    (void)impl;
    int n = snprintf(out, cap, "projects/p/locations/l/queues/q/tasks/%s", task_id);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int tq_create(void *impl, const struct task_request *req, tq_cb cb, void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_tq, (void *)cb, arg);
    int i = w->creates < FAKE_MAX_CALLS ? w->creates : FAKE_MAX_CALLS - 1;
    w->last_create = *req;
    strncpy(w->last_create_body, req->body_json, sizeof(w->last_create_body) - 1);
    strncpy(w->last_create_id, req->task_id, sizeof(w->last_create_id) - 1);
    w->last_create.body_json = w->last_create_body;
    w->last_create.task_id = w->last_create_id;
    w->last_create.url = NULL;
    d->tq.result = w->create_script[i];
    (void)tq_task_name(w, req->task_id, d->task_name, sizeof(d->task_name));
    d->tq.error = d->tq.result == TQ_OK || d->tq.result == TQ_ALREADY_EXISTS ? NULL : "scripted failure";
    w->creates++;
    defer(d);
    return 0;
}

static int tq_remove(void *impl, const char *task_name, tq_cb cb, void *arg)
{
    struct fake_world *w = impl;
    struct deferred *d = new_deferred(run_tq, (void *)cb, arg);
    snprintf(d->task_name, sizeof(d->task_name), "%s", task_name);
    snprintf(w->last_removed, sizeof(w->last_removed), "%s", task_name);
    d->tq.result = w->remove_result;
    d->tq.error = w->remove_result == TQ_OK ? NULL : "scripted failure";
    w->removes++;
    defer(d);
    return 0;
}

static int64_t clock_now(void *impl) { return ((struct fake_world *)impl)->now_ms; }

static int clock_after(void *impl, uint64_t delay_ms, void (*cb)(void *), void *arg)
{
    struct fake_world *w = impl;
    for (int i = 0; i < FAKE_MAX_CALLS; i++) {
        if (w->timers[i].armed) continue;
        w->timers[i].armed = true;
        w->timers[i].due_ms = w->now_ms + (int64_t)delay_ms;
        w->timers[i].cb = cb;
        w->timers[i].arg = arg;
        return 0;
    }
    return -1;
}

int fakes_armed_timers(const struct fake_world *w)
{
    int n = 0;
    for (int i = 0; i < FAKE_MAX_CALLS; i++) n += w->timers[i].armed;
    return n;
}

void fakes_advance(struct fake_world *w, int64_t ms)
{
    w->now_ms += ms;
    bool fired = true;
    while (fired) {
        fired = false;
        for (int i = 0; i < FAKE_MAX_CALLS; i++) {
            if (!w->timers[i].armed || w->timers[i].due_ms > w->now_ms) continue;
            w->timers[i].armed = false;
            w->timers[i].cb(w->timers[i].arg);
            fired = true;
        }
        fakes_drain(w);
    }
}

void fakes_init(struct fake_world *w)
{
    fakes_release_voice(w);
    fakes_drain(w);
    memset(w, 0, sizeof(*w));
    w->now_ms = 1795881600000LL; /* 2026-11-28T16:00:00Z */
    w->repo = (struct bookings_repo){.impl = w, .load = repo_load, .mark_scheduled = repo_mark_scheduled,
                                     .mark_schedule_failed = repo_mark_schedule_failed, .mark_expired = repo_mark_expired,
                                     .claim_execution = repo_claim, .mark_executed = repo_mark_executed,
                                     .mark_execution_failed = repo_mark_failed, .find_catchup = repo_find_catchup,
                                     .mark_rescheduled = repo_mark_rescheduled, .mark_cancelled = repo_mark_cancelled,
                                     .clear_task_name = repo_clear_task_name, .reopen = repo_reopen,
                                     .find_stale_tasks = repo_find_stale_tasks, .find_reopened = repo_find_reopened,
                                     .unschedule = repo_unschedule, .next_due = repo_next_due,
                                     .find_due = repo_find_due};
    w->voice = (struct voice_agent_port){.impl = w, .start_call = voice_start};
    w->queue = (struct task_queue){.impl = w, .create = tq_create, .remove = tq_remove, .task_name = tq_task_name};
    w->clock = (struct clock_port){.impl = w, .now_ms = clock_now, .after = clock_after};
}

static bool fake_owns(void *impl, int partition)
{
    struct fake_world *w = impl;
    return partition >= 0 && partition < w->ownership.partitions && w->owned[partition];
}

static int fake_owned(void *impl, int *out, int cap)
{
    struct fake_world *w = impl;
    int n = 0;
    for (int p = 0; p < w->ownership.partitions && n < cap; p++)
        if (w->owned[p]) out[n++] = p;
    return n;
}

void fakes_own(struct fake_world *w, int partitions, const int *owned, int n)
{
    memset(w->owned, 0, sizeof(w->owned));
    for (int i = 0; i < n; i++) w->owned[owned[i]] = true;
    w->ownership = (struct ownership_port){.impl = w, .partitions = partitions, .owns = fake_owns,
                                           .owned = fake_owned};
}

struct fake_row *fakes_add_booking(struct fake_world *w, const char *schema, const char *tenant_id,
                                   const char *booking_id, const char *booking_type, int64_t scheduled_at_ms)
{
    for (int i = 0; i < FAKE_MAX_ROWS; i++) {
        struct fake_row *r = &w->rows[i];
        if (r->used) continue;
        memset(r, 0, sizeof(*r));
        r->used = true;
        strcpy(r->schema, schema);
        strcpy(r->b.id, booking_id);
        strcpy(r->b.tenant_id, tenant_id);
        strcpy(r->b.lead_id, "0b9d2c3e-5f60-4a7b-8c9d-0e1f2a3b4c5d");
        strcpy(r->b.booking_type, booking_type);
        strcpy(r->b.status, "scheduled");
        strcpy(r->b.task_status, "pending");
        r->b.scheduled_at_ms = scheduled_at_ms;
        return r;
    }
    return NULL;
}

struct fake_row *fakes_add_scheduled(struct fake_world *w, const char *schema, const char *tenant_id,
                                     const char *booking_id, int64_t scheduled_at_ms, char key[IDEMPOTENCY_KEY_LEN])
{
    struct fake_row *r = fakes_add_booking(w, schema, tenant_id, booking_id, "follow_up", scheduled_at_ms);
    if (r == NULL || followup_idempotency_key(tenant_id, booking_id, scheduled_at_ms, key, IDEMPOTENCY_KEY_LEN) != 0)
        return NULL;
    snprintf(r->b.idempotency_key, sizeof(r->b.idempotency_key), "%s", key);
    snprintf(r->b.task_status, sizeof(r->b.task_status), "scheduled");
    return r;
}
