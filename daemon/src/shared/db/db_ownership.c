/*
 * shared/db/db_ownership — partition ownership over advisory locks (see the header).
 *
 * One statement at a time on the listener's session; `step` names it:
 *   session up → JOIN (membership lock, server-side keepalives) → STATUS
 *   every interval: STATUS (pg_locks: members, mine, others') → RELEASE drained | ACQUIRE free | nothing
 * Giving up a partition: OWNED → RELEASING (on_released) → once not busy, RELEASE → FREE.
 * A result lost with the session (res NULL) only clears `step`: db_ownership_session_lost follows and drops
 * everything. A failed RELEASE or ACQUIRE is repaired by the next STATUS, which adopts what this session
 * really holds.
 */
#include "shared/db/db_ownership.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/db/db_listener.h"
#include "utils/log.h"
#include "utils/uv_timers.h"

/* Server-side keepalives of this session (ignored on Unix sockets): a vanished host's locks go in ~25 s. */
static const char SQL_JOIN[] =
    "SELECT set_config('tcp_keepalives_idle', '10', false), set_config('tcp_keepalives_interval', '5', false),"
    " set_config('tcp_keepalives_count', '3', false),"
    " CASE WHEN current_setting('server_version_num')::int >= 120000"
    "  THEN set_config('tcp_user_timeout', '25000', false) END,"
    " pg_try_advisory_lock_shared($1::int, $2::int)";

/* $1 lock class, $2 membership objid, $3 partition count. Only sessions of this session's role are replicas:
 * members, mine, the other replicas' partitions; then the partitions locked by sessions of another role. */
static const char SQL_STATUS[] =
    "SELECT count(*) FILTER (WHERE objid = $2::int::oid AND replica),"
    " array_agg(objid::int) FILTER (WHERE objid < $3::int::oid AND pid = pg_backend_pid()),"
    " array_agg(objid::int) FILTER (WHERE objid < $3::int::oid AND replica AND pid <> pg_backend_pid()),"
    " array_agg(objid::int) FILTER (WHERE objid < $3::int::oid AND NOT replica)"
    " FROM (SELECT l.objid, l.pid, a.usesysid IS NOT DISTINCT FROM"
    "  (SELECT usesysid FROM pg_stat_activity WHERE pid = pg_backend_pid()) AND l.pid IS NOT NULL AS replica"
    "  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
    "  WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted AND l.classid = $1::int::oid"
    "  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())) AS held";

/* $2 free partitions in the order to try, $3 how many to take at most (LIMIT stops the try-locks). */
static const char SQL_ACQUIRE[] =
    "SELECT array_agg(p) FROM (SELECT p FROM unnest($2::int[]) AS p"
    " WHERE pg_try_advisory_lock($1::int, p) LIMIT $3::int) AS got";

static const char SQL_RELEASE[] =
    "SELECT count(*) FILTER (WHERE pg_advisory_unlock($1::int, p)) FROM unnest($2::int[]) AS p";

static void on_tick(void *arg);

/* ---------- pure helpers ---------- */

int32_t db_ownership_lock_class(const char *group)
{
    uint32_t h = 2166136261u;
    for (const char *p = "followupd/"; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    for (const char *p = group; p != NULL && *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    return (int32_t)(h & 0x7fffffffu);
}

int db_ownership_target(int partitions, int members)
{
    if (members < 1) members = 1;
    return (partitions + members - 1) / members;
}

int db_ownership_parse_int_array(const char *text, int limit, int *out, int cap)
{
    if (text == NULL || text[0] == '\0') return 0;
    size_t len = strlen(text);
    if (text[0] != '{' || text[len - 1] != '}') return -1;
    int n = 0;
    const char *p = text + 1;
    while (*p != '}') {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end != ',' && *end != '}')) return -1;
        if (v >= 0 && v < limit && n < cap) out[n++] = (int)v;
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}

/* ---------- statements ---------- */

static void statement_done(void *arg, PGresult *res, const char *err);

static int send_step(struct db_ownership *o, enum db_ownership_step step, const char *sql, int nparams,
                     const char *const *params)
{
    if (db_listener_query(o->session, sql, nparams, params, statement_done, o) != 0) return -1;
    o->step = step;
    return 0;
}

static void int_array_text(const int *v, int n, char *out, size_t cap)
{
    size_t len = (size_t)snprintf(out, cap, "{");
    for (int i = 0; i < n && len < cap; i++) len += (size_t)snprintf(out + len, cap - len, "%s%d", i ? "," : "", v[i]);
    if (len < cap) snprintf(out + len, cap - len, "}");
}

static void send_join(struct db_ownership *o)
{
    char cls[16], member[16];
    snprintf(cls, sizeof(cls), "%d", (int)o->lock_class);
    snprintf(member, sizeof(member), "%d", DB_OWNERSHIP_MEMBER_OBJID);
    const char *p[] = {cls, member};
    (void)send_step(o, STEP_JOIN, SQL_JOIN, 2, p);   /* not sent: the next tick tries again */
}

static void send_status(struct db_ownership *o)
{
    char cls[16], member[16], count[16];
    snprintf(cls, sizeof(cls), "%d", (int)o->lock_class);
    snprintf(member, sizeof(member), "%d", DB_OWNERSHIP_MEMBER_OBJID);
    snprintf(count, sizeof(count), "%d", o->partitions);
    const char *p[] = {cls, member, count};
    (void)send_step(o, STEP_STATUS, SQL_STATUS, 3, p);
}

/* Lock statements take the class and one int[] (plus, for ACQUIRE, the limit). */
static void send_partitions(struct db_ownership *o, enum db_ownership_step step, const int *parts, int n, int limit)
{
    size_t cap = 3 + (size_t)n * 6;
    char *arr = malloc(cap);
    if (arr == NULL) return;
    int_array_text(parts, n, arr, cap);
    char cls[16], lim[16];
    snprintf(cls, sizeof(cls), "%d", (int)o->lock_class);
    snprintf(lim, sizeof(lim), "%d", limit);
    const char *p[] = {cls, arr, lim};
    if (step == STEP_ACQUIRE) (void)send_step(o, step, SQL_ACQUIRE, 3, p);
    else (void)send_step(o, step, SQL_RELEASE, 2, p);
    free(arr);
}

/* ---------- the owned set ---------- */

static void log_change(struct db_ownership *o, const char *what, int n)
{
    char owned[16], members[16];
    snprintf(owned, sizeof(owned), "%d", o->n_owned);
    snprintf(members, sizeof(members), "%d", o->stats.members);
    LOG_KV(o->log, LOG_LEVEL_INFO, NULL, ((const char *[]){"owned", owned, "live_replicas", members, NULL}),
           "%s %d partition(s); now owning %d of %d", what, n, o->n_owned, o->partitions);
}

static void set_state(struct db_ownership *o, int p, enum db_partition_state st)
{
    o->n_owned += (st == PARTITION_OWNED) - (o->part[p] == PARTITION_OWNED);
    o->n_releasing += (st == PARTITION_RELEASING) - (o->part[p] == PARTITION_RELEASING);
    o->n_foreign += (st == PARTITION_FOREIGN) - (o->part[p] == PARTITION_FOREIGN);
    o->part[p] = st;
}

static void notify_gained(struct db_ownership *o, const int *parts, int n)
{
    if (n > 0 && !o->closed && o->cbs.on_gained != NULL) o->cbs.on_gained(o->arg, parts, n);
}

static void notify_released(struct db_ownership *o, const int *parts, int n, bool lost)
{
    if (n > 0 && !o->closed && o->cbs.on_released != NULL) o->cbs.on_released(o->arg, parts, n, lost);
}

static void mark(struct db_ownership *o, const int *parts, int n, enum db_partition_state st)
{
    for (int i = 0; i < n; i++) set_state(o, parts[i], st);
}

static void gained(struct db_ownership *o, const int *parts, int n)
{
    if (n <= 0) return;
    mark(o, parts, n, PARTITION_OWNED);
    o->stats.acquired += (uint64_t)n;
    log_change(o, "acquired", n);
    notify_gained(o, parts, n);
}

/* Given up (RELEASING: unlocked once drained) or lost with the session (FREE). */
static void released(struct db_ownership *o, const int *parts, int n, bool lost)
{
    if (n <= 0) return;
    mark(o, parts, n, lost ? PARTITION_FREE : PARTITION_RELEASING);
    if (lost) o->stats.lost += (uint64_t)n;
    else o->stats.released += (uint64_t)n;
    log_change(o, lost ? "lost" : "released", n);
    notify_released(o, parts, n, lost);
}

/* Partitions locked by a session of another database role (anyone who can log in can take advisory locks):
 * no replica can own them, so every replica works on them — duplicated work the deterministic task names and
 * conditional writes keep safe, instead of bookings nobody schedules. */
static void adopt_foreign(struct db_ownership *o, const bool *foreign)
{
    int *diff = o->scratch, n = 0, before = o->n_foreign;
    for (int p = 0; p < o->partitions; p++)
        if (o->part[p] == PARTITION_FOREIGN && !foreign[p]) {
            set_state(o, p, PARTITION_FREE);
            diff[n++] = p;
        }
    notify_released(o, diff, n, true);
    n = 0;
    for (int p = 0; p < o->partitions; p++)
        if (foreign[p] && o->part[p] == PARTITION_FREE) {
            set_state(o, p, PARTITION_FOREIGN);
            diff[n++] = p;
        }
    notify_gained(o, diff, n);
    if (o->n_foreign != before)
        LOG_WARN(o->log, NULL, "%d partition(s) are locked by sessions of another database role: every replica "
                 "works on them (safe; duplicated work) until they are unlocked", o->n_foreign);
}

/* Adopt what the server says this session holds (`mine`): normally exactly what we believe. */
static void adopt(struct db_ownership *o, const bool *mine, const bool *foreign)
{
    int *diff = o->scratch, n = 0;
    for (int p = 0; p < o->partitions; p++) {
        if (o->part[p] == PARTITION_RELEASING && !mine[p]) set_state(o, p, PARTITION_FREE);
        if (o->part[p] == PARTITION_OWNED && !mine[p]) diff[n++] = p;
    }
    released(o, diff, n, true);
    adopt_foreign(o, foreign);
    n = 0;
    for (int p = 0; p < o->partitions; p++)
        if (mine[p] && o->part[p] == PARTITION_FREE) diff[n++] = p;
    gained(o, diff, n);
}

/* Above target: give the highest-numbered excess up here first (unlocked once drained). */
static void give_up_excess(struct db_ownership *o, int excess)
{
    int *give = o->scratch, n = 0;
    for (int p = o->partitions - 1; p >= 0 && n < excess; p--)
        if (o->part[p] == PARTITION_OWNED) give[n++] = p;
    released(o, give, n, false);
}

/* Unlock the given-up partitions that have no work in flight here any more. 1 when a RELEASE was sent. */
static int unlock_drained(struct db_ownership *o)
{
    int *drained = o->scratch, n = 0;
    for (int p = 0; p < o->partitions; p++)
        if (o->part[p] == PARTITION_RELEASING && (o->cbs.busy == NULL || !o->cbs.busy(o->arg, p)))
            drained[n++] = p;
    if (n == 0) return 0;
    send_partitions(o, STEP_RELEASE, drained, n, 0);
    return o->step == STEP_RELEASE;
}

/* Below target: try the free partitions, starting at a random one (replicas joining together spread out). */
static void acquire_free(struct db_ownership *o, const bool *held, int want)
{
    int *free_parts = o->scratch, n = 0;
    o->rng = o->rng * 1103515245u + 12345u;
    int start = (int)((o->rng >> 8) % (uint32_t)o->partitions);
    for (int i = 0; i < o->partitions; i++) {
        int p = (start + i) % o->partitions;
        if (!held[p]) free_parts[n++] = p;
    }
    if (n > 0) send_partitions(o, STEP_ACQUIRE, free_parts, n, want);
}

/* ---------- results ---------- */

/* Column `col` of the status row: each listed partition marks `set` (and `held`). -1 when unreadable. */
static int read_partitions(const struct db_ownership *o, PGresult *res, int col, int *scratch, bool *set, bool *held)
{
    int n = db_ownership_parse_int_array(PQgetvalue(res, 0, col), o->partitions, scratch, o->partitions);
    for (int i = 0; i < n; i++) {
        if (set != NULL) set[scratch[i]] = true;
        held[scratch[i]] = true;
    }
    return n;
}

static void on_status(struct db_ownership *o, PGresult *res)
{
    int P = o->partitions;
    bool *flags = calloc((size_t)P * 3, sizeof(bool));
    bool *mine = flags, *foreign = flags + P, *held = flags + 2 * P;
    int *list = malloc((size_t)P * sizeof(int));
    bool ok = flags != NULL && list != NULL && PQntuples(res) == 1 && PQnfields(res) == 4 &&
              read_partitions(o, res, 1, list, mine, held) >= 0 && read_partitions(o, res, 2, list, NULL, held) >= 0 &&
              read_partitions(o, res, 3, list, foreign, held) >= 0;
    free(list);
    o->stats.rounds++;
    if (!ok) {
        LOG_WARN(o->log, NULL, "ownership status unreadable; next round retries");
        free(flags);
        return;
    }
    /* a replica whose membership lock is blocked still counts itself */
    o->stats.members = atoi(PQgetvalue(res, 0, 0)) + (o->member_locked ? 0 : 1);
    adopt(o, mine, foreign);
    int target = db_ownership_target(P, o->stats.members);
    if (o->n_owned > target) give_up_excess(o, o->n_owned - target);
    if (!unlock_drained(o) && o->n_owned < target && o->n_releasing == 0) acquire_free(o, held, target - o->n_owned);
    free(flags);
}

static void on_acquired(struct db_ownership *o, PGresult *res)
{
    int *got = o->scratch;
    int n = PQntuples(res) == 1 ? db_ownership_parse_int_array(PQgetvalue(res, 0, 0), o->partitions, got,
                                                                o->partitions)
                                : -1;
    if (n < 0) {
        LOG_WARN(o->log, NULL, "acquired partitions unreadable; the next round adopts what the session holds");
        return;
    }
    gained(o, got, n);
}

static void statement_done(void *arg, PGresult *res, const char *err)
{
    struct db_ownership *o = arg;
    enum db_ownership_step step = o->step;
    o->step = STEP_NONE;
    if (res == NULL || o->closed) return;   /* the session is gone (session_lost follows) or we are stopping */
    if (err != NULL) {
        LOG_KV(o->log, LOG_LEVEL_WARN, NULL, ((const char *[]){"error", err, NULL}),
               "ownership statement failed; next round retries");
        return;
    }
    switch (step) {
    case STEP_JOIN:
        if (PQntuples(res) != 1) break;
        o->member_locked = strcmp(PQgetvalue(res, 0, 4), "t") == 0;
        if (!o->member_locked)   /* someone holds it exclusively: take part anyway, counting ourselves */
            LOG_WARN(o->log, NULL, "the replicas' membership lock is held exclusively by another session; "
                                   "taking part without it (other replicas do not see this one)");
        o->state = OWNERSHIP_MEMBER;
        send_status(o);
        break;
    case STEP_STATUS:
        on_status(o, res);
        break;
    case STEP_ACQUIRE:
        on_acquired(o, res);
        break;
    case STEP_RELEASE:   /* the next STATUS turns the unlocked ones FREE */
    case STEP_NONE:
        break;
    }
}

/* ---------- lifecycle ---------- */

/* While a given-up partition waits for its work to drain, look again soon. */
#define DRAIN_RECHECK_MS 100

static void arm(struct db_ownership *o)
{
    unsigned delay = o->n_releasing > 0 && o->interval_ms > DRAIN_RECHECK_MS ? DRAIN_RECHECK_MS : o->interval_ms;
    if (!o->closed) (void)uv_timers_after(o->timers, delay, on_tick, o);
}

static void on_tick(void *arg)
{
    struct db_ownership *o = arg;
    if (o->closed) return;
    if (o->step == STEP_NONE) {
        if (o->state == OWNERSHIP_JOINING) send_join(o);
        else if (o->state == OWNERSHIP_MEMBER) send_status(o);
    }
    arm(o);
}

int db_ownership_init(struct db_ownership *o, struct db_listener *session, struct uv_timers *timers,
                      struct logger *log, int partitions, const char *group, unsigned interval_ms,
                      const struct db_ownership_cbs *cbs, void *arg)
{
    memset(o, 0, sizeof(*o));
    if (session == NULL || timers == NULL || partitions < 1 || partitions > 1024 || interval_ms == 0) return -1;
    o->session = session;
    o->timers = timers;
    o->log = log;
    o->partitions = partitions;
    o->lock_class = db_ownership_lock_class(group);
    o->interval_ms = interval_ms;
    o->cbs = cbs != NULL ? *cbs : (struct db_ownership_cbs){0};
    o->arg = arg;
    o->rng = (uint32_t)uv_timers_now_ms(timers) ^ (uint32_t)(uintptr_t)o;
    o->part = calloc((size_t)partitions, sizeof(*o->part));
    o->scratch = calloc((size_t)partitions, sizeof(int));
    if (o->part == NULL || o->scratch == NULL) {
        db_ownership_free(o);
        return -1;
    }
    char cls[16];
    snprintf(cls, sizeof(cls), "%d", (int)o->lock_class);
    LOG_KV(log, LOG_LEVEL_INFO, NULL, ((const char *[]){"lock_class", cls, NULL}),
           "work ownership: %d partition(s), rebalanced every %u ms", partitions, interval_ms);
    arm(o);
    return 0;
}

void db_ownership_session_up(struct db_ownership *o)
{
    if (o->closed) return;
    o->state = OWNERSHIP_JOINING;
    if (o->step == STEP_NONE) send_join(o);
}

void db_ownership_session_lost(struct db_ownership *o)
{
    o->state = OWNERSHIP_IDLE;
    o->step = STEP_NONE;
    o->stats.members = 0;
    int n = 0;
    for (int p = 0; p < o->partitions; p++) {
        if (o->part[p] == PARTITION_RELEASING || o->part[p] == PARTITION_FOREIGN) set_state(o, p, PARTITION_FREE);
        if (o->part[p] == PARTITION_OWNED) o->scratch[n++] = p;
    }
    released(o, o->scratch, n, true);
}

void db_ownership_set_interval(struct db_ownership *o, unsigned interval_ms)
{
    if (interval_ms > 0) o->interval_ms = interval_ms;
}

bool db_ownership_owns(const struct db_ownership *o, int partition)
{
    return partition >= 0 && partition < o->partitions && o->part != NULL &&
           (o->part[partition] == PARTITION_OWNED || o->part[partition] == PARTITION_FOREIGN);
}

int db_ownership_owned(const struct db_ownership *o, int *out, int cap)
{
    int n = 0;
    for (int p = 0; o->part != NULL && p < o->partitions && n < cap; p++)
        if (o->part[p] == PARTITION_OWNED || o->part[p] == PARTITION_FOREIGN) out[n++] = p;
    return n;
}

void db_ownership_close(struct db_ownership *o)
{
    o->closed = true;
}

void db_ownership_free(struct db_ownership *o)
{
    free(o->part);
    free(o->scratch);
    o->part = NULL;
    o->scratch = NULL;
}
