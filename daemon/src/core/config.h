/*
 * core/config — followupd's configuration: the INI loader and the typed result.
 *
 * The file is `[section]` + `key = value` with `#`/`;` comments.  Every key is a
 * row of one static table (section, key, type, default, secret?, reloadable?),
 * so defaults, validation, environment overrides (`FOLLOWUPD_<SECTION>_<KEY>`)
 * and the `*_file` forms of secret keys are handled once, generically.  Loading
 * never stops at the first problem: every error is collected with its origin
 * (file:line: key, or the environment variable) so `--check-config` can report
 * them all.  Relative `*_file` paths resolve against $CREDENTIALS_DIRECTORY
 * when systemd's LoadCredential= set it.
 */
#ifndef FOLLOWUPD_CORE_CONFIG_H
#define FOLLOWUPD_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "utils/log.h"

struct strlist {
    char **items;
    int n;
};

enum queue_backend { QUEUE_CLOUDTASKS = 0, QUEUE_LOCAL = 1 };
enum auth_mode { AUTH_OIDC = 0, AUTH_SHARED_SECRET = 1 };
enum capture_mode { CAPTURE_NOTIFY = 0, CAPTURE_POLL = 1 };
#define CAPTURE_SWEEP_MARGIN_S 60   /* notify_within_s >= sweep_interval_s + lead_time_s + this */

struct config {
    /* [database] */
    char *db_conninfo;          /* secret (may carry a password) */
    struct strlist db_schemas;
    int db_pool_size;
    int db_max_queue;
    bool db_prepared_statements;
    /* [http] */
    char *http_listen;
    char *http_public_url;
    int http_max_header_bytes;
    int http_max_body_bytes;
    int http_header_timeout_ms;
    int http_body_timeout_ms;
    int http_idle_timeout_ms;
    int http_max_connections;
    int http_max_connections_per_peer; /* 0: no per-peer cap (max_connections) */
    /* [followup] */
    struct strlist followup_booking_types;
    int followup_lead_time_s;
    int followup_sweep_interval_s;
    int followup_catchup_window_s;
    int followup_max_inflight;
    int followup_max_attempts;
    int followup_retry_base_s;
    int followup_early_tolerance_s;     /* 0: deliveries are never refused as too early */
    int followup_max_lateness_s;        /* 0: a booking is called however late it is reached */
    /* [capture] */
    enum capture_mode capture_mode;
    int capture_notify_within_s;   /* the trigger notifies follow-ups due within this; 0 = every follow-up */
    int capture_poll_interval_ms;
    /* [replicas] */
    int replicas_partitions;           /* scheduling work is split into this many partitions among the replicas */
    int replicas_rebalance_interval_ms;
    /* [queue] */
    enum queue_backend queue_backend;
    /* [cloudtasks] */
    char *ct_endpoint;
    char *ct_project;
    char *ct_location;
    char *ct_queue;
    char *ct_credentials;
    char *ct_metadata_url;
    int ct_dispatch_deadline_s;
    /* [auth] */
    enum auth_mode auth_mode;
    char *auth_audience;
    char *auth_service_account;
    char *auth_jwks_url;
    struct strlist auth_issuers;
    int auth_clock_skew_s;
    int auth_jwks_refetch_interval_s;
    int auth_jwks_min_refresh_s;
    char *auth_shared_secret;   /* secret */
    /* [voice_agent] */
    char *va_base_url;
    char *va_token;             /* secret */
    int va_timeout_ms;
    int va_max_concurrent;              /* live leases of every tenant at once; 0 = unlimited */
    int va_max_concurrent_per_tenant;   /* live leases of one tenant at once; 0 = unlimited */
    /* [log] */
    enum log_level log_level;
    enum log_format log_format;   /* json | gcp (Cloud Logging field names and trace) */
    /* [shutdown] */
    int shutdown_drain_timeout_ms;
};

struct config_errors {
    char **msgs;
    int n;
};

/* Load `path` (NULL = defaults + environment only) and validate. Returns 0 when
 * the result is usable, -1 when errs holds at least one problem. `env` is a
 * lookup function (getenv in production; a fake in tests). */
typedef const char *(*config_getenv_fn)(const char *name);
int config_load(struct config *cfg, const char *path, config_getenv_fn env, struct config_errors *errs)
    __attribute__((warn_unused_result));
void config_free(struct config *cfg);
void config_errors_free(struct config_errors *errs);

/* Secrets a logger must redact: the conninfo's passwords, the voice-agent
 * token, the shared secret (see utils/log.h). Adds; never removes. */
void config_register_secrets(const struct config *cfg, struct logger *lg);
/* The execution lease: an in_progress row older than this is abandoned (voice_agent.timeout_ms + 30 s). */
#define CONFIG_LEASE_MARGIN_S 30
int config_lease_s(const struct config *cfg);
/* [log] format on a logger; gcp traces name [cloudtasks] project. */
void config_apply_log_format(const struct config *cfg, struct logger *lg);

/* config_load() with the environment, registering the secrets of whatever did
 * load with lg first and then logging each problem as one error line
 * (msg, "error", "config" = path). Returns config_load()'s result; cfg must be
 * freed either way. */
int config_load_logged(struct config *cfg, const char *path, struct logger *lg, const char *msg)
    __attribute__((warn_unused_result));

/* Names of keys whose value differs between a and b but cannot change on a
 * live reload (listen address, conninfo, schemas, backend...). Writes up to
 * max names into out; returns how many differ. */
int config_diff_static(const struct config *a, const struct config *b, const char **out, int max);

/* Move the running values of keys that cannot change live from `running` into
 * `next` (and next's into running, to be freed with it). */
void config_adopt_static(struct config *next, struct config *running);

/* "a,b,c": 0, or -1 when it does not fit (out is then ""). */
int config_join_list(const struct strlist *l, char *out, size_t cap);
bool strlist_contains(const struct strlist *l, const char *s);
bool config_is_valid_identifier(const char *s);

#endif
