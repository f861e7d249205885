/*
 * deals_pipeline/services/followup_scheduler_service — see the header.  One
 * heap `struct scheduler_item` per booking reference lives from enqueue until
 * its last pass ends; it sits in a chained hash index (coalescing) and, while
 * waiting, in the FIFO.
 */
#include "features/deals_pipeline/services/followup_scheduler_service.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/deals_pipeline/services/followup_keys.h"

enum item_state { ITEM_WAITING, ITEM_RUNNING, ITEM_BACKOFF };

struct scheduler_item {
    struct followup_scheduler *s;
    char schema[SCHEMA_NAME_LEN];
    char tenant_id[UUID_STR_LEN];
    char booking_id[UUID_STR_LEN];
    struct scheduler_item *next;    /* FIFO */
    struct scheduler_item *hnext;   /* index chain */
    int partition;                  /* with an ownership port, else -1 */
    enum item_state state;
    bool again;                     /* changed again while running: one more pass */
    unsigned attempt;
    struct booking b;
    char key[IDEMPOTENCY_KEY_LEN];
    char task_id[TASK_ID_LEN];
    char new_task_name[TASK_NAME_LEN];   /* reschedule: the replacement task */
    int generation;                      /* task generation of the task being created */
    enum followup_plan plan;
    bool withdraw;                       /* reschedule out of the schedulable window: drop the old task */
    bool expire;                         /* already later than followup.max_lateness_s: mark it expired */
    char url[1024];
    char *body;
    int64_t schedule_time_ms;
};

static void pump(struct followup_scheduler *s);

/* ---------- pure helpers ---------- */

int64_t followup_schedule_time_ms(int64_t scheduled_at_ms, int lead_time_s, int64_t now_ms)
{
    int64_t t = scheduled_at_ms - (int64_t)lead_time_s * 1000;
    return t < now_ms ? now_ms : t;
}

bool followup_within_horizon(int64_t schedule_time_ms, int64_t now_ms)
{
    return schedule_time_ms <= now_ms + (int64_t)(SCHEDULER_HORIZON_S - SCHEDULER_HORIZON_MARGIN_S) * 1000;
}

static bool wants_task(const struct config *cfg, const struct booking *b)
{
    return strlist_contains(&cfg->followup_booking_types, b->booking_type) && strcmp(b->status, "cancelled") != 0;
}

enum followup_plan followup_plan_for(const struct config *cfg, const struct booking *b)
{
    const char *ts = b->task_status;
    bool wants = wants_task(cfg, b);
    if (strcmp(ts, "executed") == 0 || strcmp(ts, "in_progress") == 0) return PLAN_NOTHING;
    if (strcmp(ts, "cancelled") == 0) {
        if (b->task_name[0] != '\0') return PLAN_DROP_TASK;
        return wants ? PLAN_REOPEN : PLAN_NOTHING;
    }
    if (strcmp(ts, "pending") == 0) {
        if (!strlist_contains(&cfg->followup_booking_types, b->booking_type)) return PLAN_NOTHING; /* not ours */
        return wants ? PLAN_SCHEDULE : PLAN_CANCEL;
    }
    if (!wants) return PLAN_CANCEL;
    bool moved = b->task_scheduled_at_ms != b->scheduled_at_ms;
    if (strcmp(ts, "scheduled") == 0) return moved ? PLAN_RESCHEDULE : PLAN_NOTHING;
    if (strcmp(ts, "failed") == 0) return (b->task_scheduled_at_ms == 0 || moved) ? PLAN_SCHEDULE : PLAN_NOTHING;
    return PLAN_NOTHING;
}

const char *followup_plan_name(enum followup_plan p)
{
    static const char *const names[] = {"nothing", "schedule", "reschedule", "cancel", "drop_task", "reopen"};
    return (unsigned)p < sizeof(names) / sizeof(names[0]) ? names[p] : "unknown";
}

char *followup_task_payload(const char *schema, const struct booking *b, const char *idempotency_key)
{
    char iso[ISO_TIME_LEN];
    if (followup_iso_time(b->scheduled_at_ms, iso) != 0) return NULL;
    json_t *o = json_object();
    if (o == NULL) return NULL;
    int rc = 0;
    rc |= json_object_set_new(o, "tenantId", json_string(b->tenant_id));
    rc |= json_object_set_new(o, "bookingId", json_string(b->id));
    rc |= json_object_set_new(o, "leadId", json_string(b->lead_id));
    rc |= json_object_set_new(o, "assignedUserId",
                              b->assigned_user_id[0] != '\0' ? json_string(b->assigned_user_id) : json_null());
    rc |= json_object_set_new(o, "schema", json_string(schema));
    rc |= json_object_set_new(o, "scheduledAt", json_string(iso));
    rc |= json_object_set_new(o, "idempotencyKey", json_string(idempotency_key));
    char *out = rc == 0 ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return out;
}

int followup_callback_url(const char *public_url, const char *booking_id, char *out, size_t cap)
{
    size_t n = strlen(public_url);
    while (n > 0 && public_url[n - 1] == '/') n--;
    int w = snprintf(out, cap, "%.*s/api/deals-pipeline/bookings/%s/execute-followup", (int)n, public_url, booking_id);
    return w > 0 && (size_t)w < cap ? 0 : -1;
}

/* ---------- index ---------- */

static size_t item_hash(const struct followup_scheduler *s, const char *schema, const char *booking_id)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = schema; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (const char *p = booking_id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return (size_t)(h % s->index_buckets);
}

static struct scheduler_item *index_find(struct followup_scheduler *s, const char *schema, const char *tenant_id,
                                         const char *booking_id)
{
    for (struct scheduler_item *it = s->index[item_hash(s, schema, booking_id)]; it != NULL; it = it->hnext)
        if (strcmp(it->booking_id, booking_id) == 0 && strcmp(it->schema, schema) == 0 &&
            strcmp(it->tenant_id, tenant_id) == 0)
            return it;
    return NULL;
}

static void index_remove(struct followup_scheduler *s, struct scheduler_item *item)
{
    struct scheduler_item **pp = &s->index[item_hash(s, item->schema, item->booking_id)];
    while (*pp != NULL && *pp != item) pp = &(*pp)->hnext;
    if (*pp == item) *pp = item->hnext;
    s->live--;
}

static void fifo_push(struct followup_scheduler *s, struct scheduler_item *item)
{
    item->next = NULL;
    item->state = ITEM_WAITING;
    if (s->tail != NULL) s->tail->next = item;
    else s->head = item;
    s->tail = item;
    s->queued++;
}

static struct scheduler_item *fifo_pop(struct followup_scheduler *s)
{
    struct scheduler_item *item = s->head;
    if (item == NULL) return NULL;
    s->head = item->next;
    if (s->head == NULL) s->tail = NULL;
    s->queued--;
    return item;
}

/* ---------- lifecycle ---------- */

int followup_scheduler_init(struct followup_scheduler *s, const struct config *cfg, struct bookings_repo *repo,
                            struct task_queue *queue, struct clock_port *clock, struct logger *log, size_t max_queue)
{
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    s->repo = repo;
    s->queue = queue;
    s->clock = clock;
    s->log = log;
    s->max_queue = max_queue;
    s->max_retries = 5;
    s->retry_base_ms = 500;
    s->retry_max_ms = 30000;
    s->rng = (uint64_t)clock->now_ms(clock->impl) | 1;
    s->index_buckets = max_queue < 1024 ? 1024 : max_queue;
    s->index = calloc(s->index_buckets, sizeof(*s->index));
    return s->index != NULL ? 0 : -1;
}

static void free_item(struct scheduler_item *item)
{
    free(item->body);
    free(item);
}

static void free_parked(struct followup_scheduler *s);

void followup_scheduler_close(struct followup_scheduler *s)
{
    s->closed = true;
    struct scheduler_item *item;
    while ((item = fifo_pop(s)) != NULL) {
        index_remove(s, item);
        free_item(item);
    }
    free_parked(s);
}

void followup_scheduler_free(struct followup_scheduler *s)
{
    followup_scheduler_close(s);
    for (size_t i = 0; s->index != NULL && i < s->index_buckets; i++) {
        struct scheduler_item *it = s->index[i];
        while (it != NULL) {
            struct scheduler_item *next = it->hnext;
            free_item(it);
            it = next;
        }
    }
    free(s->index);
    s->index = NULL;
    free(s->running_by_partition);
    s->running_by_partition = NULL;
}

bool followup_scheduler_idle(const struct followup_scheduler *s)
{
    return s->live == 0;
}

static struct log_ctx item_ctx(const struct scheduler_item *item)
{
    return (struct log_ctx){.tenant_id = item->tenant_id, .booking_id = item->booking_id, .schema = item->schema,
                            .task_name = item->task_id[0] ? item->task_id : NULL};
}

/* ---------- one pass ---------- */

static void count_running(struct scheduler_item *item, int delta)
{
    unsigned *running = item->s->running_by_partition;
    if (running != NULL && item->partition >= 0) running[item->partition] += (unsigned)delta;
}

static void end_pass(struct scheduler_item *item)
{
    struct followup_scheduler *s = item->s;
    s->inflight--;
    count_running(item, -1);
    free(item->body);
    item->body = NULL;
    item->attempt = 0;
    item->task_id[0] = '\0';
    item->new_task_name[0] = '\0';
    item->withdraw = false;
    item->expire = false;
    if (item->again && !s->closed) {
        item->again = false;
        fifo_push(s, item);
    } else {
        index_remove(s, item);
        free_item(item);
    }
    pump(s);
    if (s->live == 0 && s->on_idle != NULL) s->on_idle(s->on_idle_arg);
}

static void report_recorded(const struct scheduler_item *item)
{
    const struct followup_scheduler *s = item->s;
    if (s->on_task_recorded == NULL || s->closed) return;
    struct recorded_task t = {.schema = item->schema, .tenant_id = item->tenant_id, .booking_id = item->booking_id,
                              .idempotency_key = item->key, .due_ms = item->schedule_time_ms};
    s->on_task_recorded(s->on_task_recorded_arg, &t);
}

static void on_marked(void *arg, enum repo_rc rc)
{
    struct scheduler_item *item = arg;
    struct log_ctx ctx = item_ctx(item);
    if (rc == REPO_OK) {
        LOG_INFO(item->s->log, &ctx, "follow-up scheduled");
        report_recorded(item);
    } else if (rc == REPO_CONFLICT || rc == REPO_NOT_FOUND) {
        item->s->stats.conflicts++;
        LOG_DEBUG(item->s->log, &ctx, "row already moved on; nothing to record");
    } else {
        LOG_WARN(item->s->log, &ctx, "task created but the row could not be marked; the sweep will retry");
    }
    end_pass(item);
}

static void on_failed_marked(void *arg, enum repo_rc rc)
{
    (void)rc;
    end_pass(arg);
}

static uint64_t backoff_ms(struct followup_scheduler *s, unsigned attempt)
{
    uint64_t cap = s->retry_base_ms << (attempt < 16 ? attempt : 16);
    if (cap > s->retry_max_ms) cap = s->retry_max_ms;
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return cap / 2 + s->rng % (cap / 2 + 1);    /* "equal jitter": never a tight loop */
}

static void create_task(struct scheduler_item *item);

/* A retry waits without a request in flight, so it does not keep its partition busy; if the partition was
 * given up meanwhile the retry is left to the new owner (its sweep finds the row still pending). */
static void on_backoff_elapsed(void *arg)
{
    struct scheduler_item *item = arg;
    item->state = ITEM_RUNNING;
    count_running(item, 1);
    if (item->s->closed || !followup_scheduler_owns(item->s, item->booking_id)) {
        end_pass(item);
        return;
    }
    create_task(item);
}

static void retry_or_give_up(struct scheduler_item *item, const char *error)
{
    struct followup_scheduler *s = item->s;
    struct log_ctx ctx = item_ctx(item);
    s->stats.transient_errors++;
    if (item->attempt >= s->max_retries || s->closed) {
        s->stats.gave_up++;
        LOG_KV(s->log, LOG_LEVEL_ERROR, &ctx, ((const char *[]){"error", error ? error : "transient", NULL}),
               "task creation failed %u times; booking stays pending for the sweep", item->attempt + 1);
        end_pass(item);
        return;
    }
    uint64_t delay = backoff_ms(s, item->attempt++);
    LOG_KV(s->log, LOG_LEVEL_WARN, &ctx, ((const char *[]){"error", error ? error : "transient", NULL}),
           "task creation failed; retrying in %llu ms", (unsigned long long)delay);
    item->state = ITEM_BACKOFF;
    count_running(item, -1);
    if (s->clock->after(s->clock->impl, delay, on_backoff_elapsed, item) != 0) {
        count_running(item, 1);
        end_pass(item);
    }
}

/* ---- task removal (cancel, drop, reschedule's old task) ---- */

static void on_task_name_cleared(void *arg, enum repo_rc rc)
{
    (void)rc;
    end_pass(arg);
}

static void on_cancelled_task_removed(void *arg, const struct tq_reply *r)
{
    struct scheduler_item *item = arg;
    struct followup_scheduler *s = item->s;
    struct log_ctx ctx = item_ctx(item);
    if (r->result != TQ_OK && r->result != TQ_NOT_FOUND) {
        LOG_KV(s->log, LOG_LEVEL_WARN, &ctx, ((const char *[]){"error", r->error ? r->error : "", NULL}),
               "could not delete the cancelled booking's task; the sweep retries");
        end_pass(item);
        return;
    }
    s->stats.tasks_deleted++;
    LOG_INFO(s->log, &ctx, "task of the cancelled booking deleted");
    if (s->repo->clear_task_name(s->repo->impl, item->schema, item->tenant_id, item->booking_id, item->b.task_name,
                                 on_task_name_cleared, item) != 0)
        end_pass(item);
}

static void remove_cancelled_task(struct scheduler_item *item)
{
    struct followup_scheduler *s = item->s;
    if (item->b.task_name[0] == '\0') {
        end_pass(item);
        return;
    }
    if (s->queue->remove(s->queue->impl, item->b.task_name, on_cancelled_task_removed, item) != 0) end_pass(item);
}

static void on_marked_cancelled(void *arg, enum repo_rc rc)
{
    struct scheduler_item *item = arg;
    struct log_ctx ctx = item_ctx(item);
    if (rc != REPO_OK) {
        LOG_DEBUG(item->s->log, &ctx, "booking not cancelled by us (already moved on)");
        end_pass(item);
        return;
    }
    item->s->stats.cancelled++;
    LOG_INFO(item->s->log, &ctx, "follow-up cancelled");
    remove_cancelled_task(item);
}

static void on_reopened(void *arg, enum repo_rc rc)
{
    struct scheduler_item *item = arg;
    if (rc == REPO_OK) {
        struct log_ctx ctx = item_ctx(item);
        LOG_INFO(item->s->log, &ctx, "booking un-cancelled: scheduling again");
        item->again = true;   /* the next pass schedules the re-opened booking */
    }
    end_pass(item);
}

static void on_old_task_removed(void *arg, const struct tq_reply *r)
{
    struct scheduler_item *item = arg;
    struct log_ctx ctx = item_ctx(item);
    if (r->result == TQ_OK || r->result == TQ_NOT_FOUND) {
        item->s->stats.tasks_deleted++;
    } else {
        /* Harmless: the old task's callback carries the old key and is a stale no-op. */
        LOG_KV(item->s->log, LOG_LEVEL_WARN, &ctx, ((const char *[]){"error", r->error ? r->error : "", NULL}),
               "could not delete the replaced task; its callback will be a stale no-op");
    }
    end_pass(item);
}

static void on_rescheduled(void *arg, enum repo_rc rc)
{
    struct scheduler_item *item = arg;
    struct followup_scheduler *s = item->s;
    struct log_ctx ctx = item_ctx(item);
    if (rc != REPO_OK) {
        s->stats.conflicts++;
        LOG_DEBUG(s->log, &ctx, "reschedule not recorded: the row moved on");
        end_pass(item);
        return;
    }
    s->stats.rescheduled++;
    LOG_INFO(s->log, &ctx, "follow-up rescheduled; deleting the replaced task");
    report_recorded(item);
    if (s->queue->remove(s->queue->impl, item->b.task_name, on_old_task_removed, item) != 0) end_pass(item);
}

/* A scheduled booking moved out of the schedulable window: the row goes back to pending without a task (its
 * old key with it, so the old task's callback is stale at once), then the old task is deleted. The sweep
 * creates the new task once the booking is inside the horizon (never, if it moved into history). */
static void on_unscheduled(void *arg, enum repo_rc rc)
{
    struct scheduler_item *item = arg;
    struct followup_scheduler *s = item->s;
    struct log_ctx ctx = item_ctx(item);
    if (rc != REPO_OK) {
        s->stats.conflicts++;
        LOG_DEBUG(s->log, &ctx, "task not withdrawn: the row moved on");
        end_pass(item);
        return;
    }
    LOG_INFO(s->log, &ctx, "booking moved out of the schedulable window: task withdrawn, booking pending");
    if (s->queue->remove(s->queue->impl, item->b.task_name, on_old_task_removed, item) != 0) end_pass(item);
}

static void withdraw_task(struct scheduler_item *item)
{
    struct bookings_repo *repo = item->s->repo;
    if (repo->unschedule(repo->impl, item->schema, item->tenant_id, item->booking_id, item->b.task_name,
                         item->b.scheduled_at_ms, on_unscheduled, item) != 0)
        end_pass(item);
}

/* The replacement exists: point the row at it (old key becomes stale), then delete the old task. */
static void record_reschedule(struct scheduler_item *item, const char *new_task_name)
{
    struct followup_scheduler *s = item->s;
    snprintf(item->new_task_name, sizeof(item->new_task_name), "%s", new_task_name);
    struct reschedule_mark m = {.old_task_name = item->b.task_name, .task_name = item->new_task_name,
                                .idempotency_key = item->key, .scheduled_at_ms = item->b.scheduled_at_ms,
                                .generation = item->generation};
    if (s->repo->mark_rescheduled(s->repo->impl, item->schema, item->tenant_id, item->booking_id, &m, on_rescheduled,
                                  item) != 0)
        end_pass(item);
}

static void on_created(void *arg, const struct tq_reply *r)
{
    struct scheduler_item *item = arg;
    struct followup_scheduler *s = item->s;
    struct log_ctx ctx = item_ctx(item);
    switch (r->result) {
    case TQ_OK:
    case TQ_ALREADY_EXISTS: {
        if (r->result == TQ_OK) s->stats.created++;
        else s->stats.already_existed++;
        if (item->plan == PLAN_RESCHEDULE) {
            record_reschedule(item, r->task_name != NULL ? r->task_name : item->task_id);
            return;
        }
        struct schedule_mark m = {.task_name = r->task_name != NULL ? r->task_name : item->task_id,
                                  .scheduled_at_ms = item->b.scheduled_at_ms,
                                  .task_scheduled_at_ms = item->b.scheduled_at_ms, .idempotency_key = item->key};
        if (s->repo->mark_scheduled(s->repo->impl, item->schema, item->tenant_id, item->booking_id, &m, on_marked,
                                    item) != 0)
            end_pass(item);
        return;
    }
    case TQ_PERMANENT: {
        s->stats.permanent_errors++;
        char error[300];
        snprintf(error, sizeof(error), "task creation rejected: %s", r->error != NULL ? r->error : "permanent error");
        LOG_KV(s->log, LOG_LEVEL_ERROR, &ctx, ((const char *[]){"error", error, NULL}), "booking marked failed");
        if (s->repo->mark_schedule_failed(s->repo->impl, item->schema, item->tenant_id, item->booking_id, error,
                                          on_failed_marked, item) != 0)
            end_pass(item);
        return;
    }
    case TQ_NOT_FOUND:
    case TQ_TRANSIENT:
        retry_or_give_up(item, r->error);
        return;
    }
}

static void create_task(struct scheduler_item *item)
{
    struct followup_scheduler *s = item->s;
    struct task_request req = {.task_id = item->task_id, .url = item->url, .body_json = item->body,
                               .schedule_time_ms = item->schedule_time_ms};
    if (s->queue->create(s->queue->impl, &req, on_created, item) != 0) retry_or_give_up(item, "request not started");
}

/* ---- late bookings (followup.max_lateness_s) ---- */

static int64_t lateness_ms(const struct followup_scheduler *s, const struct booking *b, int64_t now)
{
    int bound_s = s->cfg->followup_max_lateness_s;
    int64_t late = now - b->scheduled_at_ms;
    return bound_s > 0 && late > (int64_t)bound_s * 1000 ? late : 0;
}

static void on_expired_marked(void *arg, enum repo_rc rc)
{
    struct scheduler_item *item = arg;
    struct log_ctx ctx = item_ctx(item);
    if (rc == REPO_OK) {
        item->s->stats.expired++;
        LOG_WARN(item->s->log, &ctx, "later than scheduled_at + max_lateness_s: expired, no task created");
    } else {
        LOG_DEBUG(item->s->log, &ctx, "expiry not recorded: the row moved on");
    }
    end_pass(item);
}

/* No task for a booking the claim would expire anyway: the row ends failed with "expired: ...". */
static void expire_booking(struct scheduler_item *item)
{
    struct followup_scheduler *s = item->s;
    char error[200];
    int64_t late_ms = lateness_ms(s, &item->b, s->clock->now_ms(s->clock->impl));
    snprintf(error, sizeof(error), "expired: %lld s after scheduled_at, past followup.max_lateness_s = %d; no task",
             (long long)(late_ms / 1000), s->cfg->followup_max_lateness_s);
    if (s->repo->mark_expired(s->repo->impl, item->schema, item->tenant_id, item->booking_id, item->b.scheduled_at_ms,
                              error, on_expired_marked, item) != 0)
        end_pass(item);
}

/* Decide what the loaded row needs; returns false when the pass is over. */
static bool prepare_task(struct scheduler_item *item)
{
    struct followup_scheduler *s = item->s;
    const struct booking *b = &item->b;
    struct log_ctx ctx = item_ctx(item);
    int64_t now = s->clock->now_ms(s->clock->impl);
    if (b->scheduled_at_ms < now - (int64_t)s->cfg->followup_catchup_window_s * 1000) {
        /* History (every pre-migration row reads pending): an edit of an old booking notifies too, but the
         * catch-up window is the one rule for how late a booking may still be called. */
        s->stats.not_qualifying++;
        LOG_DEBUG(s->log, &ctx, "before the catch-up window (history): never scheduled");
        item->withdraw = item->plan == PLAN_RESCHEDULE;
        return false;
    }
    if (lateness_ms(s, b, now) > 0) {
        /* Inside the catch-up window but past the lateness bound. A moved booking first loses its old task
         * (withdrawn, row pending), then its next pass expires it. */
        item->withdraw = item->plan == PLAN_RESCHEDULE;
        item->expire = !item->withdraw;
        item->again = item->again || item->withdraw;
        return false;
    }
    item->schedule_time_ms = followup_schedule_time_ms(b->scheduled_at_ms, s->cfg->followup_lead_time_s, now);
    if (!followup_within_horizon(item->schedule_time_ms, now)) {
        s->stats.beyond_horizon++;
        LOG_INFO(s->log, &ctx, "beyond the 720 h Cloud Tasks horizon: stays pending until the sweep reaches it");
        item->withdraw = item->plan == PLAN_RESCHEDULE;
        return false;
    }
    item->generation = b->task_generation + (item->plan == PLAN_RESCHEDULE ? 1 : 0);
    if (followup_idempotency_key(b->tenant_id, b->id, b->scheduled_at_ms, item->key, sizeof(item->key)) != 0 ||
        followup_task_id(item->key, item->generation, item->task_id) != 0 ||
        followup_callback_url(s->cfg->http_public_url != NULL ? s->cfg->http_public_url : "", b->id, item->url,
                              sizeof(item->url)) != 0 ||
        (item->body = followup_task_payload(item->schema, b, item->key)) == NULL) {
        LOG_ERROR(s->log, &ctx, "cannot build the task for this booking");
        return false;
    }
    return true;
}

static void run_plan(struct scheduler_item *item)
{
    struct followup_scheduler *s = item->s;
    struct bookings_repo *repo = s->repo;
    item->plan = s->closed ? PLAN_NOTHING : followup_plan_for(s->cfg, &item->b);
    struct log_ctx ctx = item_ctx(item);
    if (item->plan == PLAN_NOTHING)
        LOG_DEBUG(s->log, &ctx, "booking does not need a task (type %s, status %s, task_status %s)",
                  item->b.booking_type, item->b.status, item->b.task_status);
    else
        LOG_DEBUG(s->log, &ctx, "plan %s (type %s, status %s, task_status %s)", followup_plan_name(item->plan),
                  item->b.booking_type, item->b.status, item->b.task_status);
    int rc = 0;
    switch (item->plan) {
    case PLAN_NOTHING:
        s->stats.not_qualifying++;
        end_pass(item);
        return;
    case PLAN_SCHEDULE:
    case PLAN_RESCHEDULE:
        if (!prepare_task(item)) {
            if (item->withdraw) withdraw_task(item);
            else if (item->expire) expire_booking(item);
            else end_pass(item);
            return;
        }
        create_task(item);
        return;
    case PLAN_CANCEL:
        rc = repo->mark_cancelled(repo->impl, item->schema, item->tenant_id, item->booking_id, on_marked_cancelled,
                                  item);
        break;
    case PLAN_DROP_TASK:
        remove_cancelled_task(item);
        return;
    case PLAN_REOPEN:
        rc = repo->reopen(repo->impl, item->schema, item->tenant_id, item->booking_id, on_reopened, item);
        break;
    }
    if (rc != 0) end_pass(item);
}

static void on_loaded(void *arg, enum repo_rc rc, const struct booking *b)
{
    struct scheduler_item *item = arg;
    struct log_ctx ctx = item_ctx(item);
    if (rc != REPO_OK) {
        if (rc == REPO_ERROR) LOG_WARN(item->s->log, &ctx, "cannot load booking; the sweep will retry");
        else LOG_DEBUG(item->s->log, &ctx, "booking not found (deleted?)");
        end_pass(item);
        return;
    }
    item->b = *b;
    run_plan(item);
}

static void start_pass(struct followup_scheduler *s, struct scheduler_item *item)
{
    item->state = ITEM_RUNNING;
    s->inflight++;
    count_running(item, 1);
    if (s->repo->load(s->repo->impl, item->schema, item->tenant_id, item->booking_id, on_loaded, item) != 0) {
        struct log_ctx ctx = item_ctx(item);
        LOG_WARN(s->log, &ctx, "cannot start loading booking; the sweep will retry");
        item->again = false;
        end_pass(item);
    }
}

static void pump(struct followup_scheduler *s)
{
    while (!s->closed && s->inflight < (unsigned)s->cfg->followup_max_inflight && s->head != NULL)
        start_pass(s, fifo_pop(s));
}

int followup_scheduler_enqueue(struct followup_scheduler *s, const char *schema, const char *tenant_id,
                               const char *booking_id)
{
    if (s->closed || strlen(schema) >= SCHEMA_NAME_LEN || !followup_is_uuid(tenant_id) ||
        !followup_is_uuid(booking_id))
        return -1;
    struct scheduler_item *item = index_find(s, schema, tenant_id, booking_id);
    if (item != NULL) {
        s->stats.coalesced++;
        if (item->state != ITEM_WAITING) item->again = true;
        return 0;
    }
    if (s->queued >= s->max_queue) {
        s->stats.dropped_overflow++;
        return -1;
    }
    item = calloc(1, sizeof(*item));
    if (item == NULL) return -1;
    item->s = s;
    strcpy(item->schema, schema);
    strcpy(item->tenant_id, tenant_id);
    strcpy(item->booking_id, booking_id);
    item->partition = s->owner != NULL ? followup_booking_partition(booking_id, s->owner->partitions) : -1;
    size_t h = item_hash(s, schema, booking_id);
    item->hnext = s->index[h];
    s->index[h] = item;
    s->live++;
    s->stats.enqueued++;
    fifo_push(s, item);
    pump(s);
    return 0;
}

/* ---- DELETE notifications: verify, confirm, then delete ---- */

const char *followup_rejection_name(enum notify_rejection r)
{
    static const char *const names[REJECT_N] = {
        [REJECT_MALFORMED] = "malformed",           [REJECT_OVERSIZED] = "oversized",
        [REJECT_UNKNOWN_SCHEMA] = "unknown_schema", [REJECT_WRONG_CHANNEL] = "wrong_channel",
        [REJECT_UNVERIFIABLE] = "unverifiable",     [REJECT_FOREIGN_TASK] = "foreign_task_name",
        [REJECT_BOOKING_EXISTS] = "booking_exists", [REJECT_UNCONFIRMED] = "unconfirmed"};
    return (unsigned)r < REJECT_N ? names[r] : "unknown";
}

void followup_scheduler_count_rejection(struct followup_scheduler *s, enum notify_rejection why)
{
    if ((unsigned)why < REJECT_N) s->stats.rejected[why]++;
}

struct orphan_removal {
    struct followup_scheduler *s;
    char schema[SCHEMA_NAME_LEN];
    char tenant_id[UUID_STR_LEN];
    char booking_id[UUID_STR_LEN];
    char task_name[TASK_NAME_LEN];
};

static struct log_ctx orphan_ctx(const struct orphan_removal *o)
{
    return (struct log_ctx){
        .schema = o->schema, .tenant_id = o->tenant_id, .booking_id = o->booking_id, .task_name = o->task_name};
}

static void on_orphan_removed(void *arg, const struct tq_reply *r)
{
    struct orphan_removal *o = arg;
    struct log_ctx ctx = orphan_ctx(o);
    if (r->result == TQ_OK || r->result == TQ_NOT_FOUND) {
        o->s->stats.tasks_deleted++;
        LOG_INFO(o->s->log, &ctx, "task of the deleted booking deleted");
    } else {
        LOG_KV(o->s->log, LOG_LEVEL_WARN, &ctx, ((const char *[]){"error", r->error ? r->error : "", NULL}),
               "could not delete the task of a deleted booking; its callback will answer not found");
    }
    free(o);
}

static void refuse_orphan(struct orphan_removal *o, enum notify_rejection why, const char *what)
{
    struct log_ctx ctx = orphan_ctx(o);
    followup_scheduler_count_rejection(o->s, why);
    LOG_KV(o->s->log, LOG_LEVEL_WARN, &ctx, ((const char *[]){"reason", followup_rejection_name(why), NULL}),
           "delete notification not acted on: %s", what);
    free(o);
}

/* (b) The tenant-scoped read: only a row that is really gone has its task deleted. */
static void on_deleted_row_checked(void *arg, enum repo_rc rc, const struct booking *b)
{
    (void)b;
    struct orphan_removal *o = arg;
    if (rc == REPO_OK) {
        refuse_orphan(o, REJECT_BOOKING_EXISTS, "the booking still exists");
        return;
    }
    if (rc != REPO_NOT_FOUND) {
        refuse_orphan(o, REJECT_UNCONFIRMED, "cannot confirm the booking is gone; its task is kept");
        return;
    }
    if (o->s->closed || o->s->queue->remove(o->s->queue->impl, o->task_name, on_orphan_removed, o) != 0) {
        struct log_ctx ctx = orphan_ctx(o);
        LOG_WARN(o->s->log, &ctx, "could not start deleting the task of a deleted booking");
        free(o);
    }
}

/* (a)+(c) The name must be the one this queue gives this booking's key and generation. */
static enum notify_rejection check_deleted_task_name(struct followup_scheduler *s, const struct deleted_booking *d)
{
    if (d->idempotency_key == NULL || d->idempotency_key[0] == '\0') return REJECT_UNVERIFIABLE;
    char task_id[TASK_ID_LEN], expected[TASK_NAME_LEN];
    if (!followup_key_names_booking(d->idempotency_key, d->tenant_id, d->booking_id) ||
        followup_task_id(d->idempotency_key, d->task_generation, task_id) != 0 ||
        s->queue->task_name(s->queue->impl, task_id, expected, sizeof(expected)) != 0 ||
        strcmp(expected, d->task_name) != 0)
        return REJECT_FOREIGN_TASK;
    return REJECT_N;
}

/* A DELETE hint worth acting on: open, naming a task, and (a)+(c). 0, or -1 with *why set (REJECT_N: no name). */
static int verify_deleted_hint(struct followup_scheduler *s, const struct deleted_booking *d,
                               enum notify_rejection *why)
{
    *why = REJECT_N;
    if (s->closed || d->task_name == NULL || d->task_name[0] == '\0') return -1;
    *why = check_deleted_task_name(s, d);
    return *why == REJECT_N ? 0 : -1;
}

int followup_scheduler_forget_deleted(struct followup_scheduler *s, const struct deleted_booking *d,
                                      enum notify_rejection *why)
{
    if (verify_deleted_hint(s, d, why) != 0) return -1;
    struct orphan_removal *o = calloc(1, sizeof(*o));
    if (o == NULL) return -1;
    o->s = s;
    snprintf(o->schema, sizeof(o->schema), "%s", d->schema);
    snprintf(o->tenant_id, sizeof(o->tenant_id), "%s", d->tenant_id);
    snprintf(o->booking_id, sizeof(o->booking_id), "%s", d->booking_id);
    snprintf(o->task_name, sizeof(o->task_name), "%s", d->task_name);
    if (s->repo->load(s->repo->impl, o->schema, o->tenant_id, o->booking_id, on_deleted_row_checked, o) != 0) {
        free(o);
        return -1;
    }
    return 0; /* o is owned by the pending read (and then the removal) */ // cppcheck-suppress memleak
}

/* ---- several replicas: only the owner of a booking's partition works on it ---- */

int followup_scheduler_set_owner(struct followup_scheduler *s, const struct ownership_port *owner)
{
    unsigned *running = calloc((size_t)owner->partitions, sizeof(*running));
    if (running == NULL) return -1;
    free(s->running_by_partition);
    s->running_by_partition = running;
    s->owner = owner;
    return 0;
}

bool followup_scheduler_partition_busy(const struct followup_scheduler *s, int partition)
{
    return s->running_by_partition != NULL && partition >= 0 && partition < s->owner->partitions &&
           s->running_by_partition[partition] > 0;
}

bool followup_scheduler_owns(const struct followup_scheduler *s, const char *booking_id)
{
    const struct ownership_port *o = s->owner;
    if (o == NULL) return true;
    int p = followup_booking_partition(booking_id, o->partitions);
    return p >= 0 && o->owns(o->impl, p);
}

void followup_scheduler_partitions_released(struct followup_scheduler *s)
{
    struct scheduler_item **pp = &s->head, *last = NULL;
    uint64_t dropped = 0;
    while (*pp != NULL) {
        struct scheduler_item *item = *pp;
        if (followup_scheduler_owns(s, item->booking_id)) {
            last = item;
            pp = &item->next;
            continue;
        }
        *pp = item->next;
        s->queued--;
        dropped++;
        index_remove(s, item);
        free_item(item);
    }
    s->tail = last;
    s->stats.dropped_released += dropped;
    if (dropped > 0)
        LOG_INFO(s->log, NULL, "%llu waiting booking(s) left to the new owner of their partition",
                 (unsigned long long)dropped);
    if (dropped > 0 && s->live == 0 && s->on_idle != NULL) s->on_idle(s->on_idle_arg);
}

struct parked_delete {
    struct parked_delete *next;
    int64_t parked_ms;
    char schema[SCHEMA_NAME_LEN];
    char tenant_id[UUID_STR_LEN];
    char booking_id[UUID_STR_LEN];
    char task_name[TASK_NAME_LEN];
    char idempotency_key[IDEMPOTENCY_KEY_LEN];
    int task_generation;
};

static void free_parked(struct followup_scheduler *s)
{
    while (s->parked != NULL) {
        struct parked_delete *p = s->parked;
        s->parked = p->next;
        free(p);
    }
    s->n_parked = 0;
}

/* Newest first: cut the list after PARKED_DELETES_MAX entries or at the first one held too long. */
static void prune_parked(struct followup_scheduler *s, int64_t now)
{
    struct parked_delete **pp = &s->parked;
    int kept = 0;
    while (*pp != NULL && kept < PARKED_DELETES_MAX && now - (*pp)->parked_ms <= PARKED_DELETE_HOLD_MS) {
        pp = &(*pp)->next;
        kept++;
    }
    struct parked_delete *rest = *pp;
    *pp = NULL;
    s->n_parked = kept;
    while (rest != NULL) {
        struct parked_delete *next = rest->next;
        free(rest);
        rest = next;
    }
}

int followup_scheduler_park_deleted(struct followup_scheduler *s, const struct deleted_booking *d,
                                    enum notify_rejection *why)
{
    if (verify_deleted_hint(s, d, why) != 0) return -1;
    struct parked_delete *p = calloc(1, sizeof(*p));
    if (p == NULL) return -1;
    int64_t now = s->clock->now_ms(s->clock->impl);
    p->parked_ms = now;
    snprintf(p->schema, sizeof(p->schema), "%s", d->schema);
    snprintf(p->tenant_id, sizeof(p->tenant_id), "%s", d->tenant_id);
    snprintf(p->booking_id, sizeof(p->booking_id), "%s", d->booking_id);
    snprintf(p->task_name, sizeof(p->task_name), "%s", d->task_name);
    snprintf(p->idempotency_key, sizeof(p->idempotency_key), "%s", d->idempotency_key);
    p->task_generation = d->task_generation;
    p->next = s->parked;
    s->parked = p;
    prune_parked(s, now);
    return 0;
}

void followup_scheduler_partitions_gained(struct followup_scheduler *s)
{
    prune_parked(s, s->clock->now_ms(s->clock->impl));
    struct parked_delete **pp = &s->parked;
    while (*pp != NULL) {
        struct parked_delete *p = *pp;
        if (!followup_scheduler_owns(s, p->booking_id)) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        s->n_parked--;
        struct deleted_booking d = {.schema = p->schema, .tenant_id = p->tenant_id, .booking_id = p->booking_id,
                                    .task_name = p->task_name, .idempotency_key = p->idempotency_key,
                                    .task_generation = p->task_generation};
        struct log_ctx ctx = {.schema = p->schema, .tenant_id = p->tenant_id, .booking_id = p->booking_id};
        enum notify_rejection why;
        if (followup_scheduler_forget_deleted(s, &d, &why) == 0)
            LOG_INFO(s->log, &ctx, "partition taken over: checking a DELETE hint its previous owner may have missed");
        free(p);
    }
}
