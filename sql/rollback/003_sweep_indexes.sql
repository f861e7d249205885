-- Rollback of 003_sweep_indexes: drop both partial indexes without blocking writes. Idempotent.
-- Unqualified names only: run with search_path set to the tenant schema (sql/README.md).

DROP INDEX CONCURRENTLY IF EXISTS lead_bookings_followupd_task_idx;
DROP INDEX CONCURRENTLY IF EXISTS lead_bookings_followupd_sweep_idx;
