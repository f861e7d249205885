-- Rollback of 008_concurrency_caps: drops followupd_live_leases() and the lease index. Idempotent.
-- Unqualified names only: run with search_path set to the tenant schema (sql/README.md).

DROP FUNCTION IF EXISTS followupd_live_leases(text[], uuid, int);
DROP INDEX CONCURRENTLY IF EXISTS lead_bookings_followupd_lease_idx;
