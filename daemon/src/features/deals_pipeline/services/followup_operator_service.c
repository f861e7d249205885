/*
 * deals_pipeline/services/followup_operator_service — see the header.
 */
#include "features/deals_pipeline/services/followup_operator_service.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "features/deals_pipeline/services/followup_keys.h"
#include "utils/timefmt.h"

static const char *const verdict_names[] = {
    [VERDICT_NOT_FOLLOWUP] = "not_a_follow_up", [VERDICT_EXECUTED] = "executed",
    [VERDICT_IN_PROGRESS] = "in_progress",      [VERDICT_LEASE_EXPIRED] = "lease_expired",
    [VERDICT_CANCELLED] = "cancelled",          [VERDICT_CANCEL] = "cancel",
    [VERDICT_DROP_TASK] = "drop_task",          [VERDICT_REOPEN] = "reopen",
    [VERDICT_HISTORY] = "history",              [VERDICT_BEYOND_HORIZON] = "beyond_horizon",
    [VERDICT_AWAITS_SWEEP] = "awaits_sweep",    [VERDICT_AWAITS_TASK] = "awaits_task",
    [VERDICT_SCHEDULED] = "scheduled",          [VERDICT_RESCHEDULE] = "reschedule",
    [VERDICT_WITHDRAW] = "withdraw",            [VERDICT_RETRYING] = "retrying",
    [VERDICT_FAILED_FINAL] = "failed_final",
};

const char *followup_verdict_name(enum followup_verdict v)
{
    return (unsigned)v < sizeof(verdict_names) / sizeof(verdict_names[0]) ? verdict_names[v] : "unknown";
}

/* An instant as ISO text ("-" when unset or out of range). */
struct iso {
    char s[ISO_TIME_LEN];
};

static struct iso iso_of(int64_t ms)
{
    struct iso t = {{0}};
    if (ms == 0 || followup_iso_time(ms, t.s) != 0) snprintf(t.s, sizeof(t.s), "-");
    return t;
}

static void set(struct followup_explanation *e, enum followup_verdict v, int64_t at_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set(struct followup_explanation *e, enum followup_verdict v, int64_t at_ms, const char *fmt, ...)
{
    e->verdict = v;
    e->at_ms = at_ms;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->why, sizeof(e->why), fmt, ap);
    va_end(ap);
}

static bool is_follow_up(const struct config *cfg, const struct booking *b)
{
    return strlist_contains(&cfg->followup_booking_types, b->booking_type);
}

static bool before_catchup_window(const struct config *cfg, const struct booking_detail *d)
{
    return d->b.scheduled_at_ms < d->db_now_ms - (int64_t)cfg->followup_catchup_window_s * 1000;
}

/* The moment the horizon reaches a booking: followup_within_horizon(schedule time, now) turns true. */
static int64_t horizon_reached_ms(const struct config *cfg, const struct booking *b)
{
    return b->scheduled_at_ms - (int64_t)cfg->followup_lead_time_s * 1000 -
           (int64_t)(SCHEDULER_HORIZON_S - SCHEDULER_HORIZON_MARGIN_S) * 1000;
}

/* A booking that would get a task (pending, or failed and moved): inside the window, when, and by what. */
static void explain_schedule(const struct config *cfg, const struct booking_detail *d,
                             struct followup_explanation *e)
{
    const struct booking *b = &d->b;
    int64_t now = d->db_now_ms;
    struct iso at = iso_of(b->scheduled_at_ms);
    if (before_catchup_window(cfg, d)) {
        set(e, VERDICT_HISTORY, b->scheduled_at_ms,
            "scheduled_at %s is before the catch-up window ([followup] catchup_window_s = %d): history, never "
            "scheduled or called",
            at.s, cfg->followup_catchup_window_s);
        return;
    }
    int64_t schedule_time = followup_schedule_time_ms(b->scheduled_at_ms, cfg->followup_lead_time_s, now);
    if (!followup_within_horizon(schedule_time, now)) {
        int64_t from = horizon_reached_ms(cfg, b);
        set(e, VERDICT_BEYOND_HORIZON, from,
            "beyond the 720 h Cloud Tasks horizon: stays pending; scheduled by the sweep from %s", iso_of(from).s);
        return;
    }
    bool overdue = b->scheduled_at_ms <= now;
    char due[64] = "";
    if (overdue) {
        char late[32];
        timefmt_duration(now - b->scheduled_at_ms, late, sizeof(late));
        snprintf(due, sizeof(due), " (due %s ago)", late);
    }
    if (cfg->capture_mode == CAPTURE_POLL) {
        set(e, VERDICT_AWAITS_SWEEP, b->scheduled_at_ms,
            "waiting for its task%s: [capture] mode = poll, the next poll (every %d ms) creates it", due,
            cfg->capture_poll_interval_ms);
    } else if (cfg->capture_notify_within_s != 0 &&
               b->scheduled_at_ms > now + (int64_t)cfg->capture_notify_within_s * 1000) {
        set(e, VERDICT_AWAITS_SWEEP, b->scheduled_at_ms,
            "waiting for its task: due later than [capture] notify_within_s (%d s), so its changes do not notify; "
            "the periodic sweep (every [followup] sweep_interval_s = %d s) creates it",
            cfg->capture_notify_within_s, cfg->followup_sweep_interval_s);
    } else {
        set(e, VERDICT_AWAITS_TASK, b->scheduled_at_ms,
            "waiting for its task%s: the notification of its change or the next sweep (every %d s) creates it", due,
            cfg->followup_sweep_interval_s);
    }
}

static void explain_in_progress(const struct config *cfg, const struct booking_detail *d, int lease_s,
                                struct followup_explanation *e)
{
    const struct booking *b = &d->b;
    int64_t lease_end = d->execution_started_at_ms + (int64_t)lease_s * 1000;
    struct iso started = iso_of(d->execution_started_at_ms), end = iso_of(lease_end);
    if (d->db_now_ms < lease_end) {
        set(e, VERDICT_IN_PROGRESS, lease_end, "a voice call is being made (started %s, lease until %s)", started.s,
            end.s);
        return;
    }
    bool in_step = b->scheduled_at_ms == b->task_scheduled_at_ms && strcmp(b->status, "cancelled") != 0 &&
                   is_follow_up(cfg, b);
    if (in_step)
        set(e, VERDICT_LEASE_EXPIRED, lease_end,
            "in progress since %s, lease expired at %s: the process making the call died; the next delivery of "
            "its task calls again with the same Idempotency-Key",
            started.s, end.s);
    else
        set(e, VERDICT_LEASE_EXPIRED, lease_end,
            "in progress since %s, lease expired at %s, and the booking was cancelled or moved since: no delivery "
            "takes it again, it stays for an operator",
            started.s, end.s);
}

static void explain_failed(const struct booking_detail *d, struct followup_explanation *e)
{
    const char *error = d->last_execution_error[0] != '\0' ? d->last_execution_error : "no error recorded";
    if (d->next_attempt_at_ms != 0)
        set(e, VERDICT_RETRYING, d->next_attempt_at_ms,
            "failed (%s), retryable: the next delivery of its task (Cloud Tasks' retry, or the local dispatcher "
            "from %s) calls again with the same Idempotency-Key",
            error, iso_of(d->next_attempt_at_ms).s);
    else
        set(e, VERDICT_FAILED_FINAL, 0,
            "failed for good (%s) after %d call attempt(s): followupd does nothing more; `followupd retry` re-drives "
            "it",
            error, d->b.execution_attempts);
}

/* PLAN_NOTHING: why nothing is owed. */
static void explain_nothing(const struct config *cfg, const struct booking_detail *d, int lease_s,
                            struct followup_explanation *e)
{
    const struct booking *b = &d->b;
    const char *ts = b->task_status;
    if (strcmp(ts, "executed") == 0) {
        set(e, VERDICT_EXECUTED, d->executed_at_ms,
            "executed at %s: the voice agent accepted the call; followupd never calls it again",
            iso_of(d->executed_at_ms).s);
    } else if (strcmp(ts, "in_progress") == 0) {
        explain_in_progress(cfg, d, lease_s, e);
    } else if (!is_follow_up(cfg, b)) {
        char types[512];
        if (config_join_list(&cfg->followup_booking_types, types, sizeof(types)) != 0) snprintf(types, 4, "...");
        set(e, VERDICT_NOT_FOLLOWUP, 0,
            "not a follow-up type: booking_type '%s' is not in [followup] booking_types (%s); followupd never "
            "schedules it",
            b->booking_type, types);
    } else if (strcmp(ts, "scheduled") == 0) {
        int64_t due = b->scheduled_at_ms - (int64_t)cfg->followup_lead_time_s * 1000;
        set(e, VERDICT_SCHEDULED, due, "scheduled: its task is due at %s (scheduled_at - lead_time_s of %d s)",
            iso_of(due).s, cfg->followup_lead_time_s);
    } else {
        set(e, VERDICT_CANCELLED, 0, "cancelled: no task and no call");
    }
}

void followup_explain(const struct config *cfg, const struct booking_detail *d, int lease_s,
                      struct followup_explanation *out)
{
    memset(out, 0, sizeof(*out));
    const struct booking *b = &d->b;
    out->plan = followup_plan_for(cfg, b);
    if (strcmp(b->task_status, "failed") == 0 && out->plan != PLAN_CANCEL) { /* deliveries retry it, or final */
        explain_failed(d, out);
        return;
    }
    switch (out->plan) {
    case PLAN_NOTHING:
        explain_nothing(cfg, d, lease_s, out);
        return;
    case PLAN_SCHEDULE:
        explain_schedule(cfg, d, out);
        return;
    case PLAN_RESCHEDULE:
        explain_schedule(cfg, d, out);
        if (out->verdict == VERDICT_HISTORY || out->verdict == VERDICT_BEYOND_HORIZON)
            set(out, VERDICT_WITHDRAW, out->at_ms,
                "scheduled_at moved to %s, out of the schedulable window: its task is withdrawn (the booking goes "
                "back to pending) at the next notification or sweep",
                iso_of(b->scheduled_at_ms).s);
        else
            set(out, VERDICT_RESCHEDULE, b->scheduled_at_ms,
                "scheduled_at moved from %s to %s since its task was created: the next notification or sweep "
                "creates the replacement task (new key) and deletes the old one",
                iso_of(b->task_scheduled_at_ms).s, iso_of(b->scheduled_at_ms).s);
        return;
    case PLAN_CANCEL:
        set(out, VERDICT_CANCEL, 0,
            "%s: followupd marks it cancelled and deletes its task at the next notification or sweep",
            strcmp(b->status, "cancelled") == 0 ? "cancelled by the backend" : "no longer a follow-up type");
        return;
    case PLAN_DROP_TASK:
        set(out, VERDICT_DROP_TASK, 0, "cancelled: its task %s is deleted at the next notification or sweep",
            b->task_name);
        return;
    case PLAN_REOPEN:
        set(out, VERDICT_REOPEN, 0,
            "cancelled by followupd, but the backend wants it again (status '%s'): re-opened under a new task name "
            "(generation %d) at the next notification or sweep",
            b->status, b->task_generation + 1);
        return;
    }
}

bool followup_retry_allowed(const struct config *cfg, const struct booking_detail *d, char *why, size_t cap)
{
    const struct booking *b = &d->b;
    if (strcmp(b->task_status, "executed") == 0) {
        snprintf(why, cap, "executed at %s: followupd never calls a booking twice", iso_of(d->executed_at_ms).s);
        return false;
    }
    if (strcmp(b->task_status, "failed") != 0) {
        snprintf(why, cap, "task_status is '%s', not 'failed': nothing to re-drive", b->task_status);
        return false;
    }
    if (d->next_attempt_at_ms != 0) {
        snprintf(why, cap, "failed but retryable: its next attempt (from %s) is already owed",
                 iso_of(d->next_attempt_at_ms).s);
        return false;
    }
    if (strcmp(b->status, "cancelled") == 0 || !is_follow_up(cfg, b)) {
        snprintf(why, cap, "%s: it would not be called",
                 strcmp(b->status, "cancelled") == 0 ? "cancelled by the backend" : "not a follow-up type");
        return false;
    }
    if (before_catchup_window(cfg, d)) {
        snprintf(why, cap,
                 "scheduled_at %s is before the catch-up window ([followup] catchup_window_s = %d): followupd "
                 "would not schedule it again; move it instead (UPDATE ... SET scheduled_at = now() WHERE id = ... "
                 "AND tenant_id = ...)",
                 iso_of(b->scheduled_at_ms).s, cfg->followup_catchup_window_s);
        return false;
    }
    snprintf(why, cap,
             "failed for good: back to pending under task generation %d (a new task name), same idempotency key, "
             "attempt counters reset; its notification or the next sweep creates the task",
             b->task_generation + 1);
    return true;
}

int followup_state_attention(const struct booking_state *st, char reasons[][ATTENTION_LEN])
{
    int n = 0;
    if (st->lease_expired > 0)
        snprintf(reasons[n++], ATTENTION_LEN, "%" PRId64 " booking(s) in progress past the lease (the process "
                 "making the call died)", st->lease_expired);
    if (st->failed_final_recent > 0)
        snprintf(reasons[n++], ATTENTION_LEN, "%" PRId64 " booking(s) failed for good inside the catch-up window "
                 "(followupd inspect / retry)", st->failed_final_recent);
    if (st->oldest_due_ms != 0 && st->db_now_ms - st->oldest_due_ms > (int64_t)OPERATOR_OVERDUE_S * 1000) {
        char late[32];
        timefmt_duration(st->db_now_ms - st->oldest_due_ms, late, sizeof(late));
        snprintf(reasons[n++], ATTENTION_LEN, "a follow-up has been due for %s without a call", late);
    }
    return n;
}
