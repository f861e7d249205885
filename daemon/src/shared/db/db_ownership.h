/*
 * shared/db/db_ownership — work ownership among the replicas that share one
 * database, held as PostgreSQL session-level advisory locks on the LISTEN
 * session (db_listener), so a replica's ownership ends with its session: a
 * crashed or killed replica's locks vanish with its connection, and a replica
 * whose session drops owns nothing until it has reconnected and re-acquired.
 *
 * The work is split into `partitions` fixed partitions. Lock keys use the
 * two-int form (classid, objid): classid is a 31-bit FNV-1a hash of
 * "followupd/" + the group (the partition count and the sorted schema list, so
 * replicas configured differently never share — nor withhold — each other's
 * work), objid is the partition number; objid 0x7fffffff is the membership lock
 * that every live replica of the group holds in shared mode. Advisory locks are
 * per database, so the replicas on one database form the group; nothing
 * collides with other applications' single-bigint advisory locks (objsubid 1).
 *
 * Every rebalance round (the JOIN after each (re)connect, then every interval)
 * starts by reading pg_locks: the live members, the partitions this session
 * holds (the truth, adopted as the owned set) and those others hold.  A
 * replica aims at ceil(partitions / members): above it, it gives the excess up
 * locally first (on_released: stop acting on them) and unlocks each once no
 * statement or request of it is in flight here any more (busy; re-checked
 * every 100 ms), so
 * the next owner never works on a booking this replica is still working on;
 * below it, it try-locks free partitions (pg_try_advisory_lock, never waiting) and
 * reports what it got (on_gained: its owner sweeps them, which is how work
 * notified while nobody owned them is picked up).  A partition is never owned
 * by two sessions (the lock is exclusive) and give-up precedes take-over.
 * Only sessions of this session's database role count as replicas (members and
 * holders): a login of another role can take advisory locks too, but its fake
 * memberships are ignored and a partition it locks is worked on by every
 * replica (PARTITION_FOREIGN) rather than by none.
 * Hand-over bound: a partition freed by a release or a dead session is taken
 * at the next round of a replica below its target, i.e. within one interval,
 * plus the new owner's sweep.  The session also sets short server-side TCP
 * keepalives, so a replica whose host vanished (no FIN) loses its locks within
 * about 25 s instead of the kernel's two hours.
 *
 * The SQL runs on the listener's session, not through a repository: the locks
 * must live and die with that session. It is parameterized ($n) and reads no
 * application table.  All callbacks come from the loop.
 */
#ifndef FOLLOWUPD_SHARED_DB_DB_OWNERSHIP_H
#define FOLLOWUPD_SHARED_DB_DB_OWNERSHIP_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

struct db_listener;
struct logger;
struct uv_timers;

#define DB_OWNERSHIP_MEMBER_OBJID 0x7fffffff

struct db_ownership_cbs {
    /* Partitions this replica now owns (ascending): sweep them. */
    void (*on_gained)(void *arg, const int *partitions, int n);
    /* Partitions it no longer owns: given up by a rebalance (lost = false; unlocked right after this call) or
     * gone with the session (lost = true). */
    void (*on_released)(void *arg, const int *partitions, int n, bool lost);
    /* Is work of this partition still in flight here? (a given-up partition stays locked until it is not) */
    bool (*busy)(void *arg, int partition);
};

struct db_ownership_stats {
    uint64_t acquired, released, lost;   /* partitions, counted one by one */
    uint64_t rounds;
    int members;                         /* live replicas of the group at the last round (0 = unknown) */
};

enum db_ownership_state { OWNERSHIP_IDLE = 0, OWNERSHIP_JOINING, OWNERSHIP_MEMBER };
enum db_partition_state {
    PARTITION_FREE = 0,
    PARTITION_OWNED,
    PARTITION_RELEASING,   /* given up, still locked until its work here has drained */
    PARTITION_FOREIGN,     /* locked by a session of another role: not a replica's, so every replica works on it */
};
enum db_ownership_step { STEP_NONE = 0, STEP_JOIN, STEP_STATUS, STEP_ACQUIRE, STEP_RELEASE };

struct db_ownership {
    struct db_listener *session;
    struct uv_timers *timers;
    struct logger *log;
    int partitions;
    int32_t lock_class;
    unsigned interval_ms;
    enum db_ownership_state state;
    enum db_ownership_step step;        /* the statement in flight on the session */
    bool closed;
    enum db_partition_state *part;      /* [partitions] */
    int n_owned;                        /* PARTITION_OWNED */
    int n_releasing;
    int n_foreign;
    bool member_locked;                 /* this session holds the membership lock */
    int *scratch;                       /* [partitions] */
    uint32_t rng;
    struct db_ownership_cbs cbs;
    void *arg;
    struct db_ownership_stats stats;
};

/* partitions: 1..1024; group: what replicas must share to split work (see above). Starts the rebalance timer;
 * nothing is owned until db_ownership_session_up(). 0 or -1 (out of memory, bad arguments). */
int db_ownership_init(struct db_ownership *o, struct db_listener *session, struct uv_timers *timers,
                      struct logger *log, int partitions, const char *group, unsigned interval_ms,
                      const struct db_ownership_cbs *cbs, void *arg) __attribute__((warn_unused_result));
/* The listener's session is ready (after every (re)connect): join the group and take a share. */
void db_ownership_session_up(struct db_ownership *o);
/* The listener's session was lost: every partition is gone with it (on_released, lost = true). */
void db_ownership_session_lost(struct db_ownership *o);
void db_ownership_set_interval(struct db_ownership *o, unsigned interval_ms);
bool db_ownership_owns(const struct db_ownership *o, int partition);
/* The partitions this replica works on (owned, or locked by a foreign session), ascending, at most cap; returns
 * how many are written. db_ownership_owns() answers the same. */
int db_ownership_owned(const struct db_ownership *o, int *out, int cap);
/* No callback after this; the locks end when the listener's session is closed. */
void db_ownership_close(struct db_ownership *o);
void db_ownership_free(struct db_ownership *o);

/* Pure helpers (unit-tested). */
int32_t db_ownership_lock_class(const char *group);
/* ceil(partitions / members) (members < 1 counts as 1). */
int db_ownership_target(int partitions, int members);
/* "{1,2,3}" (NULL or "" = empty): each 0 <= value < limit is written to out (at most cap). -1 on malformed text. */
int db_ownership_parse_int_array(const char *text, int limit, int *out, int cap);

#endif
