/*
 * tests/unit/support/ports_fakes — in-memory fakes of the service ports
 * (bookings repository, task queue, voice agent, clock) for cmocka tests.
 * They are asynchronous like the real ones: every callback is queued and runs
 * only when the test calls fakes_drain(), never from inside the call.
 * The fake repository applies the same state rules as the SQL repository,
 * the claim's lateness, Retry-After and concurrency caps included (live
 * leases counted over every row of the world).
 */
#ifndef FOLLOWUPD_TESTS_PORTS_FAKES_H
#define FOLLOWUPD_TESTS_PORTS_FAKES_H

#include <stdbool.h>

#include "features/deals_pipeline/services/ports.h"

#define FAKE_MAX_ROWS 80             /* more than the local dispatcher's fast-path limit (64) */
#define FAKE_MAX_CALLS 80

struct fake_row {
    bool used;
    char schema[SCHEMA_NAME_LEN];
    struct booking b;
    int64_t lease_started_ms;
    bool retryable;             /* for task_status failed */
    int retry_delay_s;
    int64_t next_attempt_ms;    /* failed and retryable: claimable again from then (0 = NULL) */
    char last_error[256];
};

#define FAKE_MAX_OWNED 1024

struct fake_world {
    int64_t now_ms;
    struct fake_row rows[FAKE_MAX_ROWS];
    bool repo_down;             /* every repo call answers REPO_ERROR */
    /* voice agent */
    int voice_calls;
    struct voice_call last_call;          /* points into last_call_buf */
    char last_call_buf[9][IDEMPOTENCY_KEY_LEN];
    char call_keys[FAKE_MAX_CALLS][IDEMPOTENCY_KEY_LEN];
    enum va_outcome voice_script[FAKE_MAX_CALLS];   /* outcome of call i (default OK) */
    long voice_status_script[FAKE_MAX_CALLS];
    int voice_retry_after_script[FAKE_MAX_CALLS];   /* Retry-After of call i's reply (0: none) */
    /* task queue */
    int creates;
    struct task_request last_create;
    char last_create_body[2048];
    char last_create_id[128];
    enum tq_result create_script[FAKE_MAX_CALLS];
    int removes;
    enum tq_result remove_result;
    char last_removed[TASK_NAME_LEN];
    int loads;                  /* repo->load calls started */
    int claims;                 /* repo->claim_execution calls started */
    int last_claim_early_window_s;   /* what the last claim was asked to check (-1: no check) */
    struct claim_params last_claim;  /* the last claim's parameters (idempotency_key not kept) */
    int expiries;               /* repo->mark_expired calls started */
    int next_due_calls, find_due_calls;   /* local dispatcher reads started */
    int last_find_due_limit;
    bool voice_hold;            /* voice calls are started but answer only after fakes_release_voice */
    /* timers (clock.after) */
    struct { bool armed; int64_t due_ms; void (*cb)(void *); void *arg; } timers[FAKE_MAX_CALLS];
    /* sweep reads (find_catchup / find_stale_tasks / find_reopened) and the partition filter of the last one */
    int sweep_reads;
    bool last_sweep_all;        /* no filter: every partition */
    int last_sweep_n_owned;
    int last_sweep_owned[FAKE_MAX_OWNED];
    /* ownership (fakes_own sets which partitions this replica owns) */
    bool owned[FAKE_MAX_OWNED];
    struct ownership_port ownership;
    /* ports handed to services */
    struct bookings_repo repo;
    struct voice_agent_port voice;
    struct task_queue queue;
    struct clock_port clock;
};

void fakes_init(struct fake_world *w);
/* w->ownership with `partitions` partitions of which this replica owns the n listed. */
void fakes_own(struct fake_world *w, int partitions, const int *owned, int n);
struct fake_row *fakes_add_booking(struct fake_world *w, const char *schema, const char *tenant_id,
                                   const char *booking_id, const char *booking_type, int64_t scheduled_at_ms);
struct fake_row *fakes_find(struct fake_world *w, const char *booking_id);
/* A follow-up booking due at scheduled_at_ms whose task is scheduled under its key (written to key). */
struct fake_row *fakes_add_scheduled(struct fake_world *w, const char *schema, const char *tenant_id,
                                     const char *booking_id, int64_t scheduled_at_ms, char key[IDEMPOTENCY_KEY_LEN]);
/* Move the clock forward, firing due timers (then their deferred work). */
void fakes_advance(struct fake_world *w, int64_t ms);
int fakes_armed_timers(const struct fake_world *w);
/* Run queued callbacks until none is left; returns how many ran. */
int fakes_drain(struct fake_world *w);
/* Let the voice calls held by voice_hold answer (on the next fakes_drain); returns how many. */
int fakes_release_voice(struct fake_world *w);

#endif
