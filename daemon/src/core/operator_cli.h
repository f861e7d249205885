/*
 * core/operator_cli — the operator commands, same binary, same configuration:
 *
 *   followupd status [--schema S] [--json]
 *       per schema: follow-ups by task_status (cross-tenant counts and
 *       timestamps only: BOOKING-STATE), the oldest pending / failed /
 *       in-progress with their age, the next due booking, the oldest due one
 *       not called, leases expired.  Exit 3 when something needs attention
 *       (followup_state_attention: expired leases, bookings failed for good
 *       inside the catch-up window, a follow-up due longer than 5 min without
 *       a call), 1 when a schema could not be read.
 *   followupd inspect --schema S --tenant T BOOKING_ID [--json]
 *       one row, tenant-scoped (another tenant's booking is "not found",
 *       exit 4): followupd's columns, the key and task name it computes, and
 *       what it would do with the booking now and why (followup_explain).
 *   followupd retry --schema S --tenant T BOOKING_ID [--dry-run] [--json]
 *       re-drives a booking failed for good (operator_repository_retry):
 *       exit 0 when re-driven (or, with --dry-run, when it would be; nothing
 *       changes), 3 when refused (executed, not failed, retryable, cancelled,
 *       not a follow-up, before the catch-up window), 4 when not found.
 *
 * Blocking I/O over one database session (no event loop); output through
 * core/cli_output (plain on a terminal, one JSON document otherwise).
 */
#ifndef FOLLOWUPD_CORE_OPERATOR_CLI_H
#define FOLLOWUPD_CORE_OPERATOR_CLI_H

#include "core/cli.h"

enum { OPERATOR_ATTENTION = 3, OPERATOR_NOT_FOUND = 4 };

/* Runs opts->command (CLI_STATUS, CLI_INSPECT or CLI_RETRY) with the configuration at path; the exit code. */
int operator_cli_run(const struct cli_options *opts, const char *path);

#endif
