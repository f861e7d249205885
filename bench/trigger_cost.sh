#!/bin/sh
# trigger_cost.sh — what followupd's NOTIFY trigger costs the Node backend's INSERTs.
#
# Creates a throwaway database (PG* environment, like the tests), applies the LAD table and sql/migrations to a
# schema, then runs pgbench with bench/insert_follow_up.sql (one follow-up booking per transaction): once with
# followupd's insert trigger disabled, once enabled, ROUNDS times alternately (the table is truncated before each
# run). Prints the mean TPS of each and the ratio with/without. Not part of `make test`; `make bench` runs it
# (bench/run.py, 8 clients).
#
#   PGHOST=... PGPORT=... PGUSER=... PGPASSWORD=... bench/trigger_cost.sh
#   Tunables (env): DURATION=10 (seconds per run), CLIENTS=2, THREADS=2, ROUNDS=2, DB_PREFIX=sql_bench
set -eu

ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-2}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
DB="${DB_PREFIX:-sql_bench}_$$"
SCHEMA=bench
ADMIN_DB=${PGDATABASE:-postgres}
WORK=$(mktemp -d)

cleanup() {
    rm -rf "$WORK"
    PGDATABASE=$ADMIN_DB psql -X -q -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

in_schema() {
    PGDATABASE=$DB PGOPTIONS="-c search_path=$SCHEMA" psql -X -q -v ON_ERROR_STOP=1 "$@"
}

PGDATABASE=$ADMIN_DB psql -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$DB\""
PGDATABASE=$DB psql -X -q -v ON_ERROR_STOP=1 -v schema="$SCHEMA" -f "$ROOT/tests/fixtures/lead_bookings.sql"
for f in "$ROOT"/sql/migrations/*.sql; do
    in_schema -f "$f" 2>/dev/null
done

# run_pgbench ENABLE|DISABLE -> prints the run's TPS
run_pgbench() {
    in_schema -c "TRUNCATE lead_bookings" -c "ALTER TABLE lead_bookings $1 TRIGGER followupd_notify_insert"
    PGDATABASE=$DB PGOPTIONS="-c search_path=$SCHEMA" \
        pgbench -n -M prepared -c "$CLIENTS" -j "$THREADS" -T "$DURATION" -f "$ROOT/bench/insert_follow_up.sql" \
        >"$WORK/out" 2>&1 || { cat "$WORK/out" >&2; exit 1; }
    awk '/^tps = / { print $3; exit }' "$WORK/out"
}

without=""
with=""
i=1
while [ "$i" -le "$ROUNDS" ]; do
    t_off=$(run_pgbench DISABLE)
    t_on=$(run_pgbench ENABLE)
    printf 'round %d: without trigger %s tps, with trigger %s tps\n' "$i" "$t_off" "$t_on"
    without="$without $t_off"
    with="$with $t_on"
    i=$((i + 1))
done

echo "$without|$with" | awk -F'|' -v c="$CLIENTS" -v d="$DURATION" '
    function mean(s,   n, a, i, t) { n = split(s, a, " "); for (i = 1; i <= n; i++) t += a[i]; return t / n }
    {
        off = mean($1); on = mean($2)
        printf "insert TPS without trigger: %.1f\n", off
        printf "insert TPS with trigger:    %.1f\n", on
        printf "ratio with/without:         %.3f (%d clients, %d s per run)\n", on / off, c, d
    }'
