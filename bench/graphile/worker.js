#!/usr/bin/env node
// The graphile-worker baseline of followupd's benchmark (started by bench/run.py; not part of the product).
//
// It does followupd's local-backend job the graphile-worker way: graphile-worker's migrations, then
// trigger.sql in the tenant schema (every inserted follow-up booking → graphile_worker.add_job('followup', ...,
// run_at := scheduled_at, job_key := idempotency key)), then a runner whose `followup` task, in one transaction,
// locks the booking row (SELECT ... FOR UPDATE), skips it when already executed or cancelled, POSTs the same
// start-call request followupd sends to the voice agent (Node's fetch, keep-alive), and marks the row executed.
//
// Environment: PG* (node-postgres reads them), BENCH_SCHEMA (tenant schema), BENCH_VOICE_URL (base URL of the
// voice-agent sink), GW_CONCURRENCY (jobs at once, default 16), GW_POOL (pool size, default concurrency + 2),
// GW_POLL_MS (poll interval, default graphile-worker's 2000; new jobs also wake the workers through NOTIFY).
// Prints "ready" on stdout once the runner is started; stops cleanly on SIGTERM/SIGINT.
"use strict";

const fs = require("fs");
const path = require("path");
const { Pool } = require("pg");
const { run, runMigrations } = require("graphile-worker");

const schema = process.env.BENCH_SCHEMA || "bench";
const voiceUrl = (process.env.BENCH_VOICE_URL || "http://127.0.0.1:3000").replace(/\/+$/, "") +
  "/api/voice-agent/calls/start-call";
const concurrency = parseInt(process.env.GW_CONCURRENCY || "16", 10);
const poolSize = parseInt(process.env.GW_POOL || String(concurrency + 2), 10);
const pollInterval = parseInt(process.env.GW_POLL_MS || "2000", 10);

function quoteIdent(name) {
  return '"' + String(name).replace(/"/g, '""') + '"';
}

async function installTrigger(pool) {
  const sql = fs.readFileSync(path.join(__dirname, "trigger.sql"), "utf8");
  const client = await pool.connect();
  try {
    await client.query(`SET search_path TO ${quoteIdent(schema)}`);
    await client.query(sql);
  } finally {
    client.release();
  }
}

async function followup(payload, helpers) {
  const table = `${quoteIdent(payload.schema)}.lead_bookings`;
  await helpers.withPgClient(async (client) => {
    await client.query("BEGIN");
    try {
      const { rows } = await client.query(
        `SELECT id, tenant_id, lead_id, assigned_user_id, booking_type, status, task_status, scheduled_at
           FROM ${table} WHERE id = $1 AND tenant_id = $2 FOR UPDATE`,
        [payload.bookingId, payload.tenantId]);
      const b = rows[0];
      if (!b || b.task_status === "executed" || b.status === "cancelled") {
        await client.query("COMMIT");
        return;
      }
      const res = await fetch(voiceUrl, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          "X-Tenant-Id": b.tenant_id,
          "Idempotency-Key": payload.idempotencyKey,
          "X-Request-Id": `graphile-${helpers.job.id}`,
        },
        body: JSON.stringify({
          tenantId: b.tenant_id, bookingId: b.id, leadId: b.lead_id, assignedUserId: b.assigned_user_id,
          scheduledAt: b.scheduled_at.toISOString(), idempotencyKey: payload.idempotencyKey,
          bookingType: b.booking_type, source: "followupd",
        }),
      });
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`voice agent: HTTP ${res.status}`);
      await client.query(
        `UPDATE ${table} SET task_status = 'executed', executed_at = now(), idempotency_key = $3,
                execution_attempts = execution_attempts + 1
          WHERE id = $1 AND tenant_id = $2`,
        [payload.bookingId, payload.tenantId, payload.idempotencyKey]);
      await client.query("COMMIT");
    } catch (e) {
      await client.query("ROLLBACK");
      throw e;
    }
  });
}

async function main() {
  const pool = new Pool({ max: poolSize });
  await runMigrations({ pgPool: pool });
  await installTrigger(pool);
  const runner = await run({ pgPool: pool, concurrency, pollInterval, taskList: { followup } });
  process.stdout.write(`ready concurrency=${concurrency} pool=${poolSize} poll_ms=${pollInterval}\n`);
  await runner.promise;
  await pool.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
