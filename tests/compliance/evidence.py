#!/usr/bin/env python3
"""evidence — what the real followupd does, observed for the compliance gate (Issues #3, #4 and #6).

    evidence.py --root ROOT --build BUILD [--only idempotency|payload]      (PG* must point at a PostgreSQL)

Runs ROOT's real binary BUILD/followupd against a throwaway database (the LAD table and ROOT's migrations), the
strict fake Cloud Tasks and the strict fake voice agent of ROOT/tests (the stack of the integration tests), and
prints ONE JSON object on stdout with what it saw; judging is the gate's job (rule_idempotency, rule_payload,
rule_console), so every scenario records counts, not verdicts:

  callback path (Cloud Tasks delivers POST .../execute-followup with a real OIDC token):
    same_task_twice       one task delivered; delivered again after it ran; again after any lease would have
                          expired (a row not recorded as executed would be claimed again)
    concurrent_in_flight  ten identical deliveries at once while the first call is still in flight
    killed_mid_call       the daemon SIGKILLed while the voice agent holds its reply; restarted; a delivery
                          inside the lease; the lease expired (execution_started_at moved back, what the
                          lease check reads); five concurrent re-deliveries; a late duplicate
  local dispatcher (queue.backend = local, two replicas on one database):
    local_two_replicas    six bookings due now plus one whose lease a dead replica left behind
  payload: every task the daemon created (OIDC mode, and one more in shared-secret mode): its create request,
    and which configured secret (voice-agent token, shared secret, service-account key, database password)
    appears anywhere in it.
  daemon_output: lines every daemon wrote to stdout, and stderr lines that are not one JSON object.

Each scenario counts the start-call requests the voice agent received for its bookings (`requests`) and the
distinct calls it started (`unique_calls`).  A scenario that could not run records `error`.
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
import uuid

WAIT_S = 10.0
MIN_SECRET_CHARS = 8


def load_stack(root, build):
    os.environ["FOLLOWUPD_ROOT"] = root
    os.environ["FOLLOWUPD_BUILD"] = build
    sys.path.insert(0, os.path.join(root, "tests", "integration"))
    sys.path.insert(0, os.path.join(root, "tests"))
    import daemon as daemon_mod  # noqa: E402
    import stack as stack_mod  # noqa: E402
    return daemon_mod, stack_mod


class Observer:
    """Collects every daemon the stacks start (non-strict, so console output is recorded, not raised)."""

    def __init__(self, daemon_mod, stack_mod):
        self.daemons = []
        base = daemon_mod.Daemon

        def factory(*args, **kwargs):
            kwargs.setdefault("strict", False)
            d = base(*args, **kwargs)
            self.daemons.append(d)
            return d

        stack_mod.Daemon = factory

    def output(self):
        out = {"daemons": len(self.daemons), "json_lines": 0, "bad_stderr_lines": [], "stdout_lines": []}
        for d in self.daemons:
            out["json_lines"] += len(d.logs)
            out["bad_stderr_lines"] += [raw.decode("utf-8", "replace").rstrip("\n") for raw in d.bad_lines]
            out["stdout_lines"] += [raw.decode("utf-8", "replace").rstrip("\n") for raw in d.stdout]
        return out


def usable_secret(value):
    """Only values long enough not to match by chance are looked for."""
    return bool(value) and len(value) >= MIN_SECRET_CHARS


class EvidenceRun:
    def __init__(self, stack_mod):
        self.stack_mod = stack_mod
        self.scenarios = []
        self.tasks = []
        self.secrets = {}

    # -- recording ---------------------------------------------------------------------------------------------
    def scenario(self, name, path, what, fn):
        record = {"name": name, "path": path, "what": what, "error": None}
        try:
            record.update(fn())
        except Exception as e:  # the gate reports it; the next scenario still runs
            record["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            record["trace"] = traceback.format_exc(limit=4)[-800:]
        self.scenarios.append(record)

    def record_task(self, s, name, mode):
        task = s.ct.tasks.get(name) or {}
        raw = json.dumps(task.get("raw"), sort_keys=True)
        text = "\n".join([raw, task.get("body", ""), json.dumps(task.get("headers", {}))])
        self.tasks.append({"mode": mode, "name": name, "body": task.get("body"), "headers": task.get("headers"),
                           "url": task.get("url"), "oidc_token": task.get("oidc_token"),
                           "secret_hits": sorted(k for k, v in self.secrets.items() if usable_secret(v) and v in text)})

    def note_secrets(self, s):
        self.secrets["voice_agent.token"] = s.voice_token
        with open(s.keyfile, encoding="utf-8") as f:
            key = json.load(f)
        pem_lines = [ln for ln in key.get("private_key", "").splitlines() if ln and not ln.startswith("-----")]
        self.secrets["service account private_key"] = max(pem_lines, key=len, default=None)
        self.secrets["service account private_key_id"] = key.get("private_key_id")
        self.secrets["database password"] = os.environ.get("PGPASSWORD") or None

    @staticmethod
    def requests_for(s, booking_ids):
        reqs = [r for b in booking_ids for r in s.voice_requests_for(b)]
        calls = [c for b in booking_ids for c in s.va.calls_for_booking(b)]
        return {"requests": len(reqs), "unique_calls": len({c["call_id"] for c in calls}),
                "keys": sorted({c["idempotency_key"] for c in calls})}

    # -- callback path -----------------------------------------------------------------------------------------
    def callback_path(self, only):
        Stack = self.stack_mod.Stack
        with Stack(schemas=("tenant_a",), start_daemon=False) as s:
            self.note_secrets(s)
            state = {"d": s.start()}
            if only in (None, "idempotency"):
                self.scenario("same_task_twice", "callback",
                              "one task delivered, again after it ran, again after any lease expired",
                              lambda: self.same_task_twice(s))
                self.scenario("concurrent_in_flight", "callback",
                              "10 identical deliveries at once while the first call is in flight",
                              lambda: self.concurrent_in_flight(s))
                self.scenario("killed_mid_call", "callback",
                              "SIGKILL while the call is in flight, restart, 1 delivery inside the lease, "
                              "5 concurrent after it expired, 1 late duplicate",
                              lambda: self.killed_mid_call(s, state))
            else:
                bid, _, name, _ = s.scheduled_booking("tenant_a")
                self.record_task(s, name, "oidc")
            self.scenario("shared_secret_task", "payload", "one task created in auth.mode = shared_secret",
                          lambda: self.shared_secret_task(s, state))

    def scheduled(self, s):
        bid, _, name, _ = s.scheduled_booking("tenant_a", tenant=str(uuid.uuid4()))
        self.record_task(s, name, "oidc")
        return bid, name

    def same_task_twice(self, s):
        bid, name = self.scheduled(s)
        answers = s.dispatch_json(name)
        row = s.row("tenant_a", bid)["task_status"]
        answers += s.dispatch_json(name, allow_done=True)
        self.expire_lease(s, bid)               # a row not recorded as executed would now be claimable again
        answers += s.dispatch_json(name, allow_done=True)
        return {"deliveries": 3, "answers": answers, **self.requests_for(s, [bid]), "row": row,
                "expect": {"requests": 1, "unique_calls": 1, "row": "executed"}}

    def expire_lease(self, s, bid):
        """Move an in_progress row's claim an hour back: what the lease check reads, without waiting 33 s."""
        table = f"{self.stack_mod.quote_ident('tenant_a')}.lead_bookings"
        s.db.psql(f"UPDATE {table} SET execution_started_at = execution_started_at - interval '1 hour' "
                  f"WHERE id = '{bid}' AND task_status = 'in_progress'")

    def concurrent_in_flight(self, s):
        bid, name = self.scheduled(s)
        s.va.delay_next(1, 1.0, when="after")    # the first call is started and recorded, its reply held 1 s
        answers = s.dispatch_json(name, concurrent=10)
        return {"deliveries": 10, "answers": answers, **self.requests_for(s, [bid]),
                "expect": {"requests": 1, "unique_calls": 1}}

    def killed_mid_call(self, s, state):
        d = state["d"]
        bid, name = self.scheduled(s)
        s.va.delay_next(1, 30.0, when="after")   # the call starts; its reply is held back
        results = []
        delivery = threading.Thread(target=lambda: results.extend(s.dispatch_json(name)))
        delivery.start()
        if not s.va.wait_until(lambda: s.va.calls_for_booking(bid), WAIT_S):
            raise AssertionError("the first delivery never reached the voice agent")
        d.stop(sig=signal.SIGKILL, timeout=10.0)
        delivery.join(timeout=30)
        before = self.requests_for(s, [bid])["requests"]
        state["d"] = d = s.start_on_port(d.port)
        inside = s.dispatch_json(name, allow_done=True)
        inside_requests = self.requests_for(s, [bid])["requests"] - before
        self.expire_lease(s, bid)
        after = s.dispatch_json(name, concurrent=5, allow_done=True)
        late = s.dispatch_json(name, allow_done=True)
        counts = self.requests_for(s, [bid])
        return {"deliveries": 1 + 1 + 5 + 1, "answers": results + inside + after + late, **counts,
                "requests_inside_lease": inside_requests, "requests_after_restart": counts["requests"] - before,
                "row": s.row("tenant_a", bid)["task_status"],
                "expect": {"requests": 2, "unique_calls": 1, "requests_inside_lease": 0,
                           "requests_after_restart": 1, "row": "executed"}}

    def shared_secret_task(self, s, state):
        secret = "gate-" + uuid.uuid4().hex
        self.secrets["auth.shared_secret"] = secret
        state["d"].stop(timeout=10.0)
        d = s.start(env={"FOLLOWUPD_AUTH_MODE": "shared_secret", "FOLLOWUPD_AUTH_SHARED_SECRET": secret})
        bid, _, name, _ = s.scheduled_booking("tenant_a", tenant=str(uuid.uuid4()))
        self.record_task(s, name, "shared_secret")
        d.stop(timeout=10.0)
        return {"tasks": 1}

    # -- local dispatcher --------------------------------------------------------------------------------------
    def local_path(self):
        Stack = self.stack_mod.Stack
        quote_ident = self.stack_mod.quote_ident
        with Stack(schemas=("tenant_a",), backend="local", start_daemon=False,
                   extra_config="[followup]\nretry_base_s = 1\nmax_attempts = 5\n") as s:
            def run():
                tenant = str(uuid.uuid4())
                at = round(time.time() - 60, 3)
                dead = s.insert_booking("tenant_a", tenant=tenant, at=at)
                key = s.followup_key(tenant, dead, at)
                s.db.psql(f"UPDATE {quote_ident('tenant_a')}.lead_bookings SET task_status = 'in_progress', "
                          f"task_name = 'local/' || repeat('d', 64), task_scheduled_at = scheduled_at, "
                          f"idempotency_key = '{key}', execution_attempts = 1, "
                          f"execution_started_at = now() - interval '1 hour' WHERE id = '{dead}'")
                s.start()
                s.start()
                ids = s.insert_bookings("tenant_a", 6, round(time.time(), 3)) + [dead]
                s.va.wait_until(lambda: all(s.va.calls_for_booking(b) for b in ids), WAIT_S)
                s.stays_false(lambda: s.va.call_count > len(ids), 1.0)
                counts = self.requests_for(s, ids)
                per_booking = sorted(len(s.voice_requests_for(b)) for b in ids)
                s.stop_daemons()
                return {"deliveries": len(ids), **counts, "per_booking": per_booking,
                        "expect": {"requests": len(ids), "unique_calls": len(ids), "per_booking": [1] * len(ids)}}

            self.scenario("local_two_replicas", "local", "2 replicas, 6 bookings due now + 1 abandoned lease", run)


def main():
    ap = argparse.ArgumentParser(description="evidence of followupd's real behaviour for the compliance gate")
    ap.add_argument("--root", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--only", choices=("idempotency", "payload"), default=None)
    args = ap.parse_args()
    daemon_mod, stack_mod = load_stack(os.path.abspath(args.root), os.path.abspath(args.build))
    observer = Observer(daemon_mod, stack_mod)
    ev = EvidenceRun(stack_mod)
    fatal = None
    try:
        ev.callback_path(args.only)
        if args.only in (None, "idempotency"):
            ev.local_path()
    except Exception as e:
        fatal = f"{type(e).__name__}: {str(e)[:300]}"
    result = {"scenarios": ev.scenarios, "tasks": ev.tasks, "daemon_output": observer.output(), "fatal": fatal,
              "secrets_checked": sorted(k for k, v in ev.secrets.items() if usable_secret(v))}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
