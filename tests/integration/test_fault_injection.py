"""Fault injection: bookings run through followupd while it is SIGKILLed at random points, PostgreSQL is
restarted, the voice agent fails or times out, and every task is delivered twice. At the end every qualifying
booking must be executed or explicitly failed, no idempotency key may have two started calls, and none is lost.
The counts are printed. The random seed is printed too (FAULT_SEED=<n> replays a run).

Waiting is on conditions with deadlines. Where a lease must run out (a daemon killed mid-call leaves the row
in_progress for voice timeout + 30 s), the test moves execution_started_at back in the database instead of
waiting: that is the only way time is simulated here.
"""
import os
import random
import signal
import subprocess
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stack import Stack, free_port, wait_for  # noqa: E402

SCHEMAS = ("fault_north", "fault_south")
ROUNDS = 5
PER_ROUND = 8


class FaultInjectionTest(unittest.TestCase):
    def setUp(self):
        self.seed = int(os.environ.get("FAULT_SEED", random.randrange(1 << 30)))
        self.rng = random.Random(self.seed)
        print(f"\n[fault-injection] seed {self.seed}", flush=True)
        self.env = {"FOLLOWUPD_VOICE_AGENT_TIMEOUT_MS": "1000", "FOLLOWUPD_FOLLOWUP_MAX_ATTEMPTS": "20",
                    "FOLLOWUPD_FOLLOWUP_SWEEP_INTERVAL_S": "2"}
        self.s = Stack(schemas=SCHEMAS, start_daemon=False).__enter__()
        self.addCleanup(self.s.__exit__, None, None, None)
        self.bookings = []      # (schema, booking id)
        self.daemon = None

    # -- helpers -----------------------------------------------------------------------------------------------
    def start(self):
        # one public_url across restarts, as in production (the tasks already carry it)
        self.port = getattr(self, "port", None) or free_port()
        self.daemon = self.s.start(env=self.env, port=self.port)

    def kill(self):
        if self.daemon is not None and self.daemon.running:
            os.kill(self.daemon.proc.pid, signal.SIGKILL)
            self.daemon.proc.wait(timeout=10)

    def insert_round(self):
        for _ in range(PER_ROUND):
            schema = self.rng.choice(SCHEMAS)
            tenant = str(uuid.uuid4())
            at = time.time() + self.rng.uniform(-30, 0.5)   # due now or just now (inside the catch-up window)
            self.bookings.append((schema, self.s.insert_booking(schema, tenant=tenant, at=at)))

    def restart_postgres(self):
        name = self.s.db.query("SHOW cluster_name")[0][0]
        version, cluster = name.split("/", 1)
        subprocess.run(["pg_ctlcluster", version, cluster, "restart"], check=True, capture_output=True, timeout=120)

        def accepts():
            proc = subprocess.run(["psql", "-X", "-qAtc", "SELECT 1"], env=self.s.db.env(), capture_output=True,
                                  text=True, timeout=30)
            return proc.returncode == 0
        wait_for(accepts, 60, "PostgreSQL back", interval=0.2)

    def inject_voice_faults(self):
        choice = self.rng.random()
        if choice < 0.3:
            self.s.va.fail_next(self.rng.randint(1, 3), status=self.rng.choice((500, 503, 429)))
        elif choice < 0.5:
            self.s.va.delay_next(1, 1.5, when=self.rng.choice(("before", "after")))   # > timeout: client gives up

    def deliver_twice_with_a_kill(self):
        """Deliver every due task twice while, at a random moment, the daemon is SIGKILLed."""
        killer = threading.Timer(self.rng.uniform(0.0, 0.4), self.kill) if self.rng.random() < 0.6 else None
        if killer:
            killer.start()
        self.s.ct.dispatch(times=2)
        if killer:
            killer.join()

    def states(self):
        out = {}
        for schema in SCHEMAS:
            for bid, status, key, final in self.s.db.query(
                    f"SELECT id::text, task_status, idempotency_key, (next_attempt_at IS NULL)::text "
                    f"FROM {schema}.lead_bookings"):
                # a retryable failure is not settled: Cloud Tasks delivers again
                out[(schema, bid)] = ("retrying" if status == "failed" and final != "true" else status, key)
        return out

    def expire_leases(self):
        for schema in SCHEMAS:
            self.s.db.psql(f"UPDATE {schema}.lead_bookings SET execution_started_at = now() - interval '1 hour' "
                           "WHERE task_status = 'in_progress'")

    # -- the scenario ------------------------------------------------------------------------------------------
    def test_faults__every_booking_settles_once(self):
        restarted = False
        for rnd in range(ROUNDS):
            if self.daemon is None or not self.daemon.running:
                self.start()
            self.insert_round()
            self.inject_voice_faults()
            if not restarted and rnd == ROUNDS // 2:
                self.restart_postgres()
                restarted = True
            wait_for(lambda: self.s.ct.created_count >= 1, 15, "some task created")
            self.deliver_twice_with_a_kill()
        self.assertTrue(restarted)

        # Recovery: a healthy daemon and voice agent; leases of killed deliveries run out; keep delivering.
        if self.daemon is None or not self.daemon.running:
            self.start()
        self.s.va.set_mode("ok")

        def settled():
            states = self.states()
            if all(states[b][0] in ("executed", "failed") for b in self.bookings):
                return True
            self.expire_leases()
            self.s.ct.dispatch(times=2)
            return False
        try:
            wait_for(settled, 60, "every booking executed or failed", interval=0.5)
        except AssertionError:
            states = self.states()
            for b in self.bookings:
                if states[b][0] not in ("executed", "failed"):
                    name = self.s.task_for(b[1])
                    print("unsettled", b, states[b], self.s.row(b[0], b[1]), name and name[1].get("last_status"),
                          name and name[1].get("attempts"), flush=True)
            raise

        states = self.states()
        executed = [b for b in self.bookings if states[b][0] == "executed"]
        failed = [b for b in self.bookings if states[b][0] == "failed"]
        calls = self.s.va.calls
        started_per_key = {}
        for c in calls:
            started_per_key.setdefault(c["idempotency_key"], set()).add(c["call_id"])
        doubled = [k for k, ids in started_per_key.items() if len(ids) > 1]
        keys_called = set(started_per_key)
        lost = [b for b in self.bookings if states[b][0] not in ("executed", "failed")]
        print(f"[fault-injection] bookings={len(self.bookings)} executed={len(executed)} failed={len(failed)} "
              f"lost={len(lost)} voice_requests={len(calls)} unique_calls={len(keys_called)} "
              f"deduplicated_requests={sum(1 for c in calls if c['duplicate'])} "
              f"tasks_created={self.s.ct.created_count} seed={self.seed}", flush=True)
        self.assertEqual(lost, [])
        self.assertEqual(doubled, [], "an idempotency key got two started calls")
        for b in executed:
            self.assertIn(states[b][1], keys_called, f"executed booking {b} has no call")
        self.assertEqual(len(executed) + len(failed), len(self.bookings))
        self.daemon.stop(timeout=15)


if __name__ == "__main__":
    unittest.main()
