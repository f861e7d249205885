/*
 * shared/db/db_util — pure helpers of the PostgreSQL layer (no I/O, no loop).
 *
 * - db_conninfo_redacted(): a libpq conninfo/URI rewritten as "key=value ..."
 *   with only host, hostaddr, port, dbname and user, for logs.
 * - db_conninfo_register_secrets(): hands the conninfo's passwords to the
 *   logger's redaction (decoded, and as written in a URI).
 * - db_conninfo_problem() / db_error_clean(): libpq's conninfo messages quote
 *   the input (a password written without quotes, a URI token), so they are
 *   never shown: they become a fixed class ("invalid percent-encoding in URI").
 * - db_backoff_delay_ms(): capped exponential backoff with jitter, a pure
 *   function of (attempt, bounds, random word) so it can be tested.
 * - db_rand_next(): a tiny per-object PRNG step (splitmix64) feeding the jitter.
 * - db_message_clean(): libpq messages ("...failed: X\n\tIs the server...\n")
 *   folded to one trimmed line.
 * - db_connect_params_build(): the keyword/value arrays for
 *   PQconnectStartParams(expand_dbname=1): our defaults (keepalives, timeouts,
 *   application_name) first, then dbname=<user conninfo> so every setting the
 *   user gives wins (libpq: later entries override earlier ones).
 * - db_sql_render(): a statement template with the quoted schema put in for
 *   every %s ("%%" is a literal %); db_text_array_literal(): a text[] literal
 *   for a $n parameter.
 */
#ifndef FOLLOWUPD_SHARED_DB_DB_UTIL_H
#define FOLLOWUPD_SHARED_DB_DB_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define DB_RECONNECT_MIN_MS_DEFAULT 100u
#define DB_RECONNECT_MAX_MS_DEFAULT 5000u
#define DB_ERR_MAX 512  /* buffer size for cleaned error messages */

/* malloc'd "key=value ..." of the options host, hostaddr, port, dbname and user
 * set in conninfo (every other one, the passwords above all, left out), values
 * quoted when needed. NULL/"" gives "". An
 * unparseable conninfo gives "<invalid conninfo>" (the parser's message may
 * quote the input, so it is not used). NULL only on allocation failure. */
char *db_conninfo_redacted(const char *conninfo);

struct logger;
/* Register password and sslpassword of conninfo with lg (log_add_secret), and
 * for a URI also their raw percent-encoded text. Nothing when unparseable. */
void db_conninfo_register_secrets(const char *conninfo, struct logger *lg);

/* 0 when libpq can parse conninfo (PQconninfoParse; a string that is neither a
 * URI nor has '=' is a database name), else -1 with the class of the problem in
 * why, which never quotes the input ("missing '=' after a keyword ..."). */
int db_conninfo_problem(const char *conninfo, char *why, size_t cap);

/* A libpq error message for logs: a message of its conninfo parser or option
 * checks (they quote the input) becomes "conninfo: <problem class>"; any other
 * is folded to one line as db_message_clean() does. */
void db_error_clean(const char *msg, char *out, size_t cap);

/* Delay before reconnect attempt `attempt` (0 = first retry after a failure):
 * cap = min(max_ms, min_ms * 2^attempt); the result is uniform in [min_ms, cap]
 * (full jitter above a floor of min_ms so a dead server is never hammered).
 * max_ms < min_ms is treated as max_ms = min_ms. */
unsigned db_backoff_delay_ms(unsigned attempt, unsigned min_ms, unsigned max_ms, uint32_t rnd);

/* Next pseudo-random word from *state (splitmix64). */
uint32_t db_rand_next(uint64_t *state);

/* Copy `in` to out (capacity cap >= 1): runs of whitespace become one space,
 * leading/trailing whitespace removed, truncated to fit. NULL in gives "". */
void db_message_clean(const char *in, char *out, size_t cap);

#define DB_CONNECT_PARAMS_MAX 16
struct db_connect_params {
    const char *keys[DB_CONNECT_PARAMS_MAX + 1];   /* NULL-terminated */
    const char *values[DB_CONNECT_PARAMS_MAX + 1];
    int n;
};
/* Fill p for PQconnectStartParams(p->keys, p->values, 1). The strings are
 * borrowed (static defaults, conninfo): keep them alive during the call.
 * host/hostaddr, when non-NULL, are added after the conninfo (addresses
 * resolved by us, with the name repeated once per address). */
void db_connect_params_build(struct db_connect_params *p, const char *conninfo, const char *host,
                             const char *hostaddr);

/* The single host name that must be resolved before connecting (malloc'd), or
 * NULL when there is nothing to resolve: hostaddr set, no host (Unix socket
 * default), a socket path, an IP literal, a host list, or an unparseable
 * conninfo. env_host is the PGHOST fallback (may be NULL), env_hostaddr PGHOSTADDR. */
char *db_host_to_resolve(const char *conninfo, const char *env_host, const char *env_hostaddr);

/* tmpl with every "%s" replaced by `quoted` (an identifier already quoted by PQescapeIdentifier) and "%%" by
 * "%"; malloc'd, NULL on allocation failure. */
char *db_sql_render(const char *tmpl, const char *quoted);
/* The PostgreSQL array literal {"a","b"} (backslash and double quote escaped) of n strings; malloc'd, NULL on
 * allocation failure. */
char *db_text_array_literal(char *const *items, int n);

#endif
