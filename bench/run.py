#!/usr/bin/python3
"""`make bench`: followupd against graphile-worker and against PostgreSQL itself, same machine, same run.

Needs PG* for a PostgreSQL server it may create databases on (`make bench` provides one with pg_virtualenv, or
uses the one PGHOST points at), build/followupd, build/bench/{sink,loadgen} (bench/src/), wrk, pgbench, and
bench/graphile/node_modules (npm ci). Phases, in this order:

  trigger   capture cost: pgbench INSERT rate (8 clients, one booking per transaction) with ÷ without followupd's
            trigger for (a) meetings, (b) follow-ups due tomorrow, (c) follow-ups due now, (d) poll mode (no
            trigger, followupd polling), and graphile-worker's add_job trigger on (c)'s inserts.
  e2e       followupd (conf/demo.conf: local backend; database.pool_size 16 unless --fd-pool-size) and
            graphile-worker 0.16.6 (bench/graphile, concurrency 16 on 18 connections), each on a fresh database
            with the same C voice-agent sink: (a) N bookings inserted flat out by 8 clients → bookings/s until the
            sink has every call; (a2) bookings inserted ahead and all due at one moment → the worker's own rate;
            (b) 100 inserts/s for 20 s → commit→call latency percentiles; (c) peak RSS (VmHWM) of followupd and of
            the node process. CPU time of the worker and of its PostgreSQL backends per booking.
  sched     followupd with the Cloud Tasks backend (light C fake by default, --ct-fake strict for the Python
            fake): pgbench inserts flat out while followupd creates tasks, scheduled rows sampled every second →
            backlog trend; then capacity: followupd paused (SIGSTOP) while pgbench inserts at PostgreSQL's own
            rate with the trigger, resumed → queued bookings scheduled per second, and its ratio to that rate.
  callback  the tasks created by `sched`, replayed by wrk (bench/callback.lua) against followupd's callback with
            valid OIDC tokens (RS256, signed by the fake's key) → executions/s; the voice agent is the C sink.
  replicas  1, 2 and 3 followupd replicas on one database (fresh database and light Cloud Tasks fake each):
            once their partitions are balanced they are paused, pgbench inserts, they are resumed → scheduling
            throughput, createTask requests, statements (pg_stat_database transactions) and CPU of PostgreSQL
            and of followupd per booking.

Writes bench/RESULTS.md (the table of targets, every number, the machine, versions, load and date) and
build/bench/results.json, and prints the headline ratios. Options: --only trigger,e2e,sched,callback,replicas, --n,
--quick
(a shorter run for trying the harness), --results PATH, see --help.
"""
import argparse
import base64
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchlib import (ROOT, BenchError, Child, MachineCpu, Pg, PgCpuSampler, Sink, free_port, http_json,  # noqa: E402
                      http_text, loadavg, percentile, proc_status_kb, wait_until)

sys.path.insert(0, os.path.join(ROOT, "tests"))
from fakes import keys as keylib  # noqa: E402

SCHEMA = "bench"
INVOKER = "followupd-invoker@followupd-bench.iam.gserviceaccount.com"
AUDIENCE = "https://followupd.bench"
TARGETS = {"e2e_ratio": 5.0, "p99_ms": 10.0, "memory_fraction": 1 / 8, "sched_fraction": 0.5}


def log(text):
    sys.stdout.write(f"[bench {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------------------------
# context


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(os.environ.get("FOLLOWUPD_BUILD") or os.path.join(ROOT, "build"))
        self.followupd = os.path.join(self.build, "followupd")
        self.sink_bin = os.path.join(self.build, "bench", "sink")
        self.loadgen_bin = os.path.join(self.build, "bench", "loadgen")
        os.makedirs(os.path.join(self.build, "bench"), exist_ok=True)
        self.workdir = tempfile.mkdtemp(prefix="run-", dir=os.path.join(self.build, "bench"))
        self.pg = Pg()
        self.results = {"phases": {}}
        for path in (self.followupd, self.sink_bin, self.loadgen_bin):
            if not os.access(path, os.X_OK):
                raise BenchError(f"{path} is missing: run `make bench` (or `make all bench-tools`)")

    def loadgen(self, db, out, *args):
        env = self.pg.env(db)
        proc = subprocess.run([self.loadgen_bin, "--schema", SCHEMA, "--out", out, *map(str, args)], env=env,
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise BenchError(f"loadgen failed: {proc.stderr.strip()[-500:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def path(self, name):
        return os.path.join(self.workdir, name)


def clean_env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUPD_")
           and k not in ("GOOGLE_APPLICATION_CREDENTIALS", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET")}
    env.update(extra)
    return env


def read_rows(path):
    rows = {}
    with open(path) as f:
        for line in f:
            bid, send, ack = line.split()
            rows[bid] = (int(send), int(ack))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# systems under test


def start_followupd_local(b, db, sink, env=None):
    """followupd exactly as `make demo` runs it: conf/demo.conf, overridden by FOLLOWUPD_* for this run."""
    port = free_port()
    extra = {"FOLLOWUPD_DATABASE_CONNINFO": f"dbname={db} application_name=followupd {b.args.fd_conninfo_extra}".strip(),
             "FOLLOWUPD_DATABASE_SCHEMAS": SCHEMA,
             "FOLLOWUPD_HTTP_LISTEN": f"127.0.0.1:{port}",
             "FOLLOWUPD_VOICE_AGENT_BASE_URL": sink.base_url}
    if b.args.fd_pool_size:
        extra["FOLLOWUPD_DATABASE_POOL_SIZE"] = str(b.args.fd_pool_size)
    extra.update(env or {})
    child = Child("followupd-local", [b.followupd, "--config", os.path.join(ROOT, "conf", "demo.conf")],
                  b.workdir, env=clean_env(extra))
    wait_ready(child, port)
    child.port = port
    return child


def wait_ready(child, port, timeout=30):
    def ready():
        if not child.running():
            raise BenchError(f"{child.name} exited early; see {child.stderr_path}")
        try:
            return http_json(f"http://127.0.0.1:{port}/readyz", timeout=2).get("status") == "ready"
        except OSError:
            return False
    wait_until(ready, timeout, f"{child.name} ready", interval=0.1)


def start_graphile(b, db, sink):
    gdir = os.path.join(HERE, "graphile")
    if not os.path.isdir(os.path.join(gdir, "node_modules", "graphile-worker")):
        raise BenchError("bench/graphile/node_modules is missing: run `npm ci` in bench/graphile (make bench does)")
    env = dict(b.pg.env(db), BENCH_SCHEMA=SCHEMA, BENCH_VOICE_URL=sink.base_url,
               GW_CONCURRENCY=str(b.args.gw_concurrency))
    child = Child("graphile-worker", ["node", os.path.join(gdir, "worker.js")], b.workdir, env=env, cwd=b.workdir)
    child.wait_for_output("ready", 60)
    return child


# ---------------------------------------------------------------------------------------------------------------
# phase: trigger cost


# What each case inserts, and what "with" means (the "without" runs have no followupd/graphile trigger and no
# followupd process). poll: followupd runs in [capture] mode = poll (no trigger) and polls every second while the
# backend inserts meetings — what poll mode itself costs (scheduling work is the same in every mode: `sched`).
CAPTURE_CASES = (
    ("meetings", "insert_meeting.sql", "followupd"),
    ("follow_ups_tomorrow", "insert_follow_up_tomorrow.sql", "followupd"),
    ("follow_ups_due_now", "insert_follow_up_now.sql", "followupd"),
    ("poll_mode", "insert_meeting.sql", "poll"),
    ("graphile_due_now", "insert_follow_up_now.sql", "graphile"),
)
FOLLOWUPD_TRIGGERS = ("followupd_notify_insert", "followupd_notify_update", "followupd_notify_delete")


def capture_pgbench(b, db, script):
    a = b.args
    b.pg.psql(db, "TRUNCATE lead_bookings", schema=SCHEMA)
    b.pg.psql(db, "CHECKPOINT")
    env = b.pg.env(db, SCHEMA)
    proc = subprocess.run(["pgbench", "-n", "-M", "prepared", "-c", str(a.clients), "-j", "2", "-T",
                           str(a.trigger_s), "-f", os.path.join(HERE, script)], env=env, capture_output=True,
                          text=True, timeout=a.trigger_s * 4 + 60)
    if proc.returncode != 0:
        raise BenchError(f"pgbench failed: {proc.stderr.strip()[-600:]}")
    return float(re.search(r"^tps = ([\d.]+)", proc.stdout, re.M).group(1))


def set_followupd_triggers(b, db, enabled):
    b.pg.psql(db, "SELECT followupd_install_capture('lead_bookings'::regclass, "
                  f"'follow_up,followup,auto_follow_up,auto_followup', 900, {'true' if enabled else 'false'})",
              schema=SCHEMA)


def capture_case(b, name, script, kind):
    """INSERT rate with ÷ without, alternating `trigger_rounds` times on one fresh database."""
    db = b.pg.create_db(f"bench_capture_{name}")
    sink = sut = None
    try:
        b.pg.lad_schema(db, SCHEMA)
        sink = Sink(b.sink_bin, b.workdir, "voice", name=f"sink-capture-{name}")
        if kind == "graphile":
            start_graphile(b, db, sink).stop()   # its migrations + bench/graphile/trigger.sql; no worker running
        rounds = []
        for _ in range(b.args.trigger_rounds):
            if kind == "graphile":
                b.pg.psql(db, "ALTER TABLE lead_bookings DISABLE TRIGGER bench_graphile_enqueue", schema=SCHEMA)
            else:
                set_followupd_triggers(b, db, False)
            without = capture_pgbench(b, db, script)
            if kind == "graphile":
                b.pg.psql(db, "ALTER TABLE lead_bookings ENABLE TRIGGER bench_graphile_enqueue", schema=SCHEMA)
            elif kind == "followupd":
                set_followupd_triggers(b, db, True)
            else:
                sut = start_followupd_local(b, db, sink, {"FOLLOWUPD_CAPTURE_MODE": "poll"})
            with_ = capture_pgbench(b, db, script)
            if sut is not None:
                sut.stop()
                sut = None
            rounds.append((without, with_))
        off = sum(r[0] for r in rounds) / len(rounds)
        on = sum(r[1] for r in rounds) / len(rounds)
        log(f"  {name}: without {off:.0f} tps, with {on:.0f} tps (ratio {on / off:.3f})")
        return {"tps_without": off, "tps_with": on, "ratio": on / off, "rounds": rounds, "script": script,
                "kind": kind}
    finally:
        if sut is not None:
            sut.stop()
        if sink is not None:
            sink.stop()
        b.pg.drop_db(db)


def phase_trigger(b):
    a = b.args
    log(f"capture cost: pgbench {a.clients} clients, {a.trigger_s} s per run, {a.trigger_rounds} rounds each way")
    cases = {name: capture_case(b, name, script, kind) for name, script, kind in CAPTURE_CASES}
    due = cases["follow_ups_due_now"]
    return {"cases": cases, "tps_without": due["tps_without"], "tps_with": due["tps_with"], "ratio": due["ratio"],
            "clients": a.clients, "seconds": a.trigger_s}


# ---------------------------------------------------------------------------------------------------------------
# phase: end to end


def phase_e2e(b, system):
    a = b.args
    db = b.pg.create_db(f"bench_e2e_{system.replace('-', '_')}")
    sink = sut = None
    try:
        b.pg.lad_schema(db, SCHEMA)
        sink = Sink(b.sink_bin, b.workdir, "voice", name=f"sink-voice-{system}")
        sut = start_followupd_local(b, db, sink) if system == "followupd" else start_graphile(b, db, sink)
        log(f"{system}: ready (pid {sut.pid}); warm-up {a.warmup} bookings")
        b.loadgen(db, b.path(f"{system}-warm.txt"), "--clients", a.clients, "--total", a.warmup)
        sink.wait_calls(a.warmup, 120)
        sink.reset()

        log(f"{system}: (a) {a.n} bookings flat out, {a.clients} clients")
        res = {"pid": sut.pid}
        pgcpu = PgCpuSampler(db)
        m0, c0, s0 = MachineCpu(), sut.cpu_s(), sink.cpu_s()
        ins = b.loadgen(db, b.path(f"{system}-flat.txt"), "--clients", a.clients, "--total", a.n)
        sink.wait_calls(a.n, a.e2e_timeout)
        m1, c1, s1 = MachineCpu(), sut.cpu_s(), sink.cpu_s()
        pg_s = pgcpu.stop()
        rows = read_rows(b.path(f"{system}-flat.txt"))
        calls, dupes = sink.calls()
        missing = [bid for bid in rows if bid not in calls]
        first_send = min(s for s, _ in rows.values())
        last_call = max(calls[bid] for bid in rows if bid in calls)
        elapsed = (last_call - first_send) / 1e6
        res["flat"] = {"n": a.n, "insert_rate": ins["rate"], "insert_s": ins["seconds"], "elapsed_s": elapsed,
                       "rate": a.n / elapsed, "missing": len(missing), "duplicates": dupes,
                       "sut_cpu_s": c1 - c0, "sink_cpu_s": s1 - s0,
                       "sut_cpu_ms_per_booking": (c1 - c0) * 1000 / a.n, "pg_cpu_s": pg_s,
                       "pg_cpu_ms_per_booking": pg_s * 1000 / a.n,
                       "machine_busy_cores": MachineCpu.busy_cores(m0, m1)}
        log(f"  {a.n / elapsed:.0f} bookings/s (inserts {ins['rate']:.0f}/s, {elapsed:.1f} s to the last call; "
            f"CPU per booking: {(c1 - c0) * 1000 / a.n:.2f} ms in {system}, {pg_s * 1000 / a.n:.2f} ms in its "
            f"PostgreSQL backends incl. the inserting ones)")
        sink.reset()

        if a.burst:
            res["burst"] = burst_run(b, db, system, sut, sink)
            sink.reset()

        total = int(a.rate * a.paced_s)
        log(f"{system}: (b) {a.rate:.0f} inserts/s for {a.paced_s:.0f} s")
        m0, c0 = MachineCpu(), sut.cpu_s()
        ins = b.loadgen(db, b.path(f"{system}-paced.txt"), "--clients", a.clients, "--rate", a.rate, "--seconds",
                        a.paced_s)
        sink.wait_calls(total, 120)
        m1, c1 = MachineCpu(), sut.cpu_s()
        rows = read_rows(b.path(f"{system}-paced.txt"))
        calls, dupes = sink.calls()
        lat_ack = sorted((calls[bid] - ack) / 1000.0 for bid, (_, ack) in rows.items() if bid in calls)
        lat_send = sorted((calls[bid] - send) / 1000.0 for bid, (send, _) in rows.items() if bid in calls)
        res["paced"] = {"rate": a.rate, "seconds": a.paced_s, "n": len(rows), "late_max_ms": ins["late_max_us"] / 1000,
                        "duplicates": dupes, "missing": len([1 for bid in rows if bid not in calls]),
                        "p50": percentile(lat_ack, 50), "p90": percentile(lat_ack, 90),
                        "p99": percentile(lat_ack, 99), "max": lat_ack[-1],
                        "p99_from_send": percentile(lat_send, 99),
                        "insert_ms_p50": percentile(sorted((a_ - s_) / 1000 for s_, a_ in rows.values()), 50),
                        "sut_cpu_s": c1 - c0, "machine_busy_cores": MachineCpu.busy_cores(m0, m1)}
        p = res["paced"]
        log(f"  commit→call p50 {p['p50']:.2f} ms, p90 {p['p90']:.2f} ms, p99 {p['p99']:.2f} ms, max {p['max']:.2f} ms")

        res["vm_hwm_kb"] = sut.vm_hwm_kb()
        res["vm_rss_kb"] = proc_status_kb(sut.pid, "VmRSS")
        executed = int(b.pg.rows(db, f"SELECT count(*) FROM {SCHEMA}.lead_bookings WHERE task_status = 'executed'")[0][0])
        res["rows_executed"] = executed
        res["rows_expected"] = a.warmup + a.n + a.burst + total
        log(f"  peak RSS {res['vm_hwm_kb'] / 1024:.1f} MiB; rows executed {executed} of {res['rows_expected']}")
        return res
    finally:
        if sut is not None:
            sut.stop()
        if sink is not None:
            sink.stop()
        b.pg.drop_db(db)


def burst_run(b, db, system, sut, sink):
    """(a2) `burst` bookings inserted ahead, all due at the same moment: the worker's own throughput, with the
    INSERTs (whose NOTIFYing commits PostgreSQL serializes) out of the measured window."""
    a = b.args
    lead_s = max(a.burst_lead_s, a.burst / 100.0)
    due_ms = int((time.time() + lead_s) * 1000)
    log(f"{system}: (a2) {a.burst} bookings all due in {lead_s:.0f} s")
    ins = b.loadgen(db, b.path(f"{system}-burst.txt"), "--clients", a.clients, "--total", a.burst,
                    "--due-at-ms", due_ms)
    ready_late = None
    if system == "followupd":
        def all_scheduled():
            return int(b.pg.rows(db, f"SELECT count(*) FROM {SCHEMA}.lead_bookings WHERE task_status = 'scheduled' "
                                     f"AND scheduled_at = to_timestamp({due_ms} / 1000.0)")[0][0]) >= a.burst
        wait_until(all_scheduled, lead_s + 120, "burst rows scheduled", interval=0.2)
        ready_late = max(0.0, time.time() - due_ms / 1000.0)
    c0 = None
    while time.time() * 1000 < due_ms:
        time.sleep(min(0.05, max(0.0, due_ms / 1000.0 - time.time())))  # waiting for the due moment
    m0, c0 = MachineCpu(), sut.cpu_s()
    sink.wait_calls(a.burst, a.e2e_timeout)
    m1, c1 = MachineCpu(), sut.cpu_s()
    calls, dupes = sink.calls()
    arrivals = sorted(calls.values())
    first, last = (arrivals[0] / 1e6 - due_ms / 1000.0), (arrivals[-1] / 1e6 - due_ms / 1000.0)
    res = {"n": a.burst, "lead_s": lead_s, "insert_rate": ins["rate"], "first_call_after_due_s": first,
           "last_call_after_due_s": last, "rate": a.burst / last if last > 0 else 0.0,
           "rate_from_first_call": (a.burst - 1) / (last - first) if last > first else 0.0,
           "duplicates": dupes, "scheduled_late_s": ready_late, "sut_cpu_ms_per_booking": (c1 - c0) * 1000 / a.burst,
           "machine_busy_cores": MachineCpu.busy_cores(m0, m1)}
    log(f"  {res['rate']:.0f} bookings/s from the due moment ({res['rate_from_first_call']:.0f}/s from the first "
        f"call, which came {first * 1000:.0f} ms after it)")
    return res


# ---------------------------------------------------------------------------------------------------------------
# phases: scheduler and callback (one daemon, cloudtasks backend)


class CloudTasksSide:
    """The Cloud Tasks peer: the light C fake (default) or the strict Python fake, plus the OIDC key."""

    def __init__(self, b, kind):
        self.kind = kind
        self.key = keylib.generate_rsa_key()
        keyfile = b.path("sa.json")
        if kind == "strict":
            from fakes.fake_cloudtasks import FakeCloudTasks
            self.fake = FakeCloudTasks(project="followupd-bench", oidc_key=self.key).start()
            self.fake.make_service_account_keyfile(keyfile)
            self.kid = self.fake.oidc_keys.active_kid
            self.endpoint, self.jwks_url = self.fake.base_url, self.fake.jwks_uri
            self.project, self.location, self.queue = self.fake.project, self.fake.location, self.fake.queue
        else:
            self.kid = keylib.new_kid()
            jwks_path = b.path("jwks.json")
            with open(jwks_path, "w") as f:
                json.dump(keylib.render_jwks([(self.kid, self.key.public_key())]), f)
            self.fake = Sink(b.sink_bin, b.workdir, "cloudtasks", jwks_path=jwks_path)
            keylib.make_service_account_keyfile(keyfile, self.fake.base_url + "/token")
            self.endpoint, self.jwks_url = self.fake.base_url, self.fake.base_url + "/jwks"
            self.project, self.location, self.queue = "followupd-bench", "europe-west1", "followups"
        self.keyfile = keyfile

    def created(self):
        if self.kind == "strict":
            return self.fake.created_count
        return self.fake.stats()["calls"]

    def tasks(self):
        """[(url, body bytes)] of every created task."""
        if self.kind == "strict":
            return [(t["url"], json.dumps(t["body_json"], separators=(",", ":")).encode())
                    for t in self.fake.tasks.values()]
        out = []
        for line in self.fake.dump().splitlines():
            url, body = line.split("\t")
            out.append((url, base64.b64decode(body)))
        return out

    def token(self, i):
        now = int(time.time())
        claims = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": INVOKER, "email_verified": True,
                  "sub": str(100000000000 + i), "azp": str(100000000000 + i), "iat": now - i, "exp": now + 3600}
        return keylib.sign_jwt(claims, self.key, self.kid)

    def cpu_s(self):
        if self.kind == "strict":
            t = os.times()
            return t.user + t.system   # in-process fake: this process's CPU
        return self.fake.cpu_s()

    def stop(self):
        self.fake.stop()


def start_followupd_cloudtasks(b, db, ct, voice, name="followupd-cloudtasks"):
    port = free_port()
    conf = f"""[database]
conninfo = dbname={db} application_name=followupd
schemas = {SCHEMA}
{f'pool_size = {b.args.fd_pool_size}' if b.args.fd_pool_size else ''}
[http]
listen = 127.0.0.1:{port}
public_url = http://127.0.0.1:{port}
[queue]
backend = cloudtasks
[cloudtasks]
endpoint = {ct.endpoint}
project = {ct.project}
location = {ct.location}
queue = {ct.queue}
credentials = {ct.keyfile}
[auth]
mode = oidc
audience = {AUDIENCE}
service_account = {INVOKER}
jwks_url = {ct.jwks_url}
[voice_agent]
base_url = {voice.base_url}
timeout_ms = 5000
[log]
level = info
"""
    path = b.path(f"{name}.conf")
    with open(path, "w") as f:
        f.write(conf)
    child = Child(name, [b.followupd, "--config", path], b.workdir, env=clean_env({}))
    wait_ready(child, port)
    child.port = port
    return child


def count_rows(b, db):
    r = b.pg.rows(db, f"SELECT count(*), count(*) FILTER (WHERE task_status = 'scheduled') FROM {SCHEMA}.lead_bookings")
    return int(r[0][0]), int(r[0][1])


def slope(points):
    """Least-squares slope of [(x, y)]."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def phase_sched(b, db, sut, ct):
    a = b.args
    log(f"scheduler: pgbench {a.clients} clients for {a.sched_s:.0f} s while followupd creates tasks "
        f"({ct.kind} Cloud Tasks fake)")
    env = b.pg.env(db, SCHEMA)
    pgcpu = PgCpuSampler(db)
    m0, c0, f0 = MachineCpu(), sut.cpu_s(), ct.cpu_s()
    t0 = time.monotonic()
    bench_out = open(b.path("sched-pgbench.out"), "w")
    pgbench = subprocess.Popen(["pgbench", "-n", "-M", "prepared", "-c", str(a.clients), "-j", "2", "-T",
                                str(int(a.sched_s)), "-f", os.path.join(HERE, "insert_follow_up.sql")],
                               env=env, stdout=bench_out, stderr=subprocess.STDOUT)
    samples = []
    next_t = t0 + 1.0
    while pgbench.poll() is None:
        time.sleep(max(0.0, next_t - time.monotonic()))  # fixed-rate sampling
        next_t += 1.0
        samples.append((time.monotonic() - t0, *count_rows(b, db)))
    bench_out.close()
    t_ins = time.monotonic() - t0
    text = open(b.path("sched-pgbench.out")).read()
    if pgbench.returncode != 0:
        raise BenchError(f"pgbench failed: {text[-500:]}")
    tps = float(re.search(r"^tps = ([\d.]+)", text, re.M).group(1))
    inserted, scheduled_at_end = count_rows(b, db)
    m1, c1 = MachineCpu(), sut.cpu_s()
    samples.append((t_ins, inserted, scheduled_at_end))
    log(f"  inserts {tps:.0f}/s; after {t_ins:.1f} s {scheduled_at_end} of {inserted} scheduled; draining")
    deadline = time.monotonic() + a.drain_timeout
    last, last_change = -1, time.monotonic()
    while True:
        total, scheduled = count_rows(b, db)
        now = time.monotonic()
        samples.append((now - t0, total, scheduled))
        if scheduled >= total:
            break
        if scheduled != last:
            last, last_change = scheduled, now
        if now > deadline or now - last_change > 30:
            raise BenchError(f"scheduler stalled at {scheduled} of {total}")
        time.sleep(0.2)  # polling a condition with a deadline
    t_done = time.monotonic() - t0
    m2, c2, f2 = MachineCpu(), sut.cpu_s(), ct.cpu_s()
    pg_s = pgcpu.stop()
    during = [(t, ins - sch) for t, ins, sch in samples if 2.0 <= t <= t_ins]
    res = {"fake": ct.kind, "clients": a.clients, "insert_s": t_ins, "insert_tps": tps, "inserted": inserted,
           "scheduled_at_insert_end": scheduled_at_end, "rate_during_inserts": scheduled_at_end / t_ins,
           "backlog_at_insert_end": inserted - scheduled_at_end, "backlog_slope_per_s": slope(during),
           "drain_s": t_done - t_ins, "done_s": t_done, "sustained_rate": inserted / t_done,
           "drain_rate": (inserted - scheduled_at_end) / (t_done - t_ins) if t_done > t_ins else None,
           "created_in_fake": ct.created(), "sut_cpu_s": c2 - c0,
           "sut_cpu_ms_per_task": (c2 - c0) * 1000 / max(inserted, 1), "fake_cpu_s": f2 - f0,
           "pg_cpu_ms_per_row": pg_s * 1000 / max(inserted, 1),
           "machine_busy_cores_inserting": MachineCpu.busy_cores(m0, m1),
           "machine_busy_cores_total": MachineCpu.busy_cores(m0, m2), "sut_cpu_s_inserting": c1 - c0,
           "samples": samples}
    log(f"  all {inserted} scheduled after {t_done:.1f} s: sustained {res['sustained_rate']:.0f}/s, "
        f"{res['rate_during_inserts']:.0f}/s while inserting, backlog slope {res['backlog_slope_per_s']:+.0f}/s")
    res["capacity"] = sched_capacity(b, db, sut)
    res["created_in_fake_final"] = ct.created()
    return res


def run_pgbench(b, db, seconds, out_name):
    proc = subprocess.run(["pgbench", "-n", "-M", "prepared", "-c", str(b.args.clients), "-j", "2", "-T",
                           str(int(seconds)), "-f", os.path.join(HERE, "insert_follow_up.sql")],
                          env=b.pg.env(db, SCHEMA), capture_output=True, text=True, timeout=seconds + 300)
    with open(b.path(out_name), "w") as f:
        f.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise BenchError(f"pgbench failed: {proc.stderr[-500:]}")
    return float(re.search(r"^tps = ([\d.]+)", proc.stdout, re.M).group(1))


def sched_capacity(b, db, sut):
    """The scheduler's own ceiling: followupd is paused (SIGSTOP) while pgbench inserts at PostgreSQL's own rate
    with the trigger (nothing else competing); the NOTIFYs queue up for followupd's LISTEN session. Then SIGCONT:
    the time until every row is marked scheduled gives NOTIFY -> createTask -> row marked per second."""
    a = b.args
    log(f"scheduler capacity: followupd paused, pgbench {a.clients} clients for {a.capacity_s:.0f} s, then resumed")
    _, before = count_rows(b, db)
    os.kill(sut.pid, signal.SIGSTOP)
    try:
        tps = run_pgbench(b, db, a.capacity_s, "capacity-pgbench.out")
        total, _ = count_rows(b, db)
    finally:
        c0 = sut.cpu_s()
        t0 = time.monotonic()
        os.kill(sut.pid, signal.SIGCONT)
    backlog = total - before
    last, last_change = -1, time.monotonic()
    while True:
        _, scheduled = count_rows(b, db)
        now = time.monotonic()
        if scheduled >= total:
            break
        if scheduled != last:
            last, last_change = scheduled, now
        if now - last_change > 30 or now - t0 > a.drain_timeout:
            raise BenchError(f"scheduler stalled at {scheduled} of {total} after the pause")
        time.sleep(0.1)  # polling a condition with a deadline
    drain_s = time.monotonic() - t0
    c1 = sut.cpu_s()
    res = {"insert_tps_alone": tps, "backlog": backlog, "drain_s": drain_s, "rate": backlog / drain_s,
           "ratio": backlog / drain_s / tps, "sut_cpu_ms_per_task": (c1 - c0) * 1000 / max(backlog, 1)}
    log(f"  PostgreSQL alone: {tps:.0f} inserts/s with the trigger; followupd then scheduled the {backlog} queued "
        f"bookings in {drain_s:.1f} s = {res['rate']:.0f}/s ({res['ratio'] * 100:.0f}% of the INSERT rate)")
    return res


def callback_requests(b, db, ct):
    scheduled = {r[0] for r in b.pg.rows(db, f"SELECT id FROM {SCHEMA}.lead_bookings WHERE task_status = 'scheduled'")}
    reqs = []
    for url, body in ct.tasks():
        data = json.loads(body)
        if data.get("bookingId") in scheduled:
            reqs.append((urllib.parse.urlsplit(url).path, body.decode()))
    return reqs


def phase_callback(b, db, sut, ct, voice):
    a = b.args
    reqs = callback_requests(b, db, ct)
    req_path, tok_path = b.path("callback-requests.txt"), b.path("callback-tokens.txt")
    with open(req_path, "w") as f:
        for path, body in reqs:
            f.write(f"{path}\t{body}\n")
    with open(tok_path, "w") as f:
        for i in range(a.tokens):
            f.write(ct.token(i) + "\n")
    log(f"callback: wrk -t{a.wrk_threads} -c{a.wrk_connections} -d{a.callback_s:.0f}s over {len(reqs)} scheduled "
        f"tasks, {a.tokens} distinct OIDC tokens")
    voice.reset()
    pgcpu = PgCpuSampler(db)
    m0, c0, v0 = MachineCpu(), sut.cpu_s(), voice.cpu_s()
    t0 = time.time()
    proc = subprocess.run(["wrk", f"-t{a.wrk_threads}", f"-c{a.wrk_connections}", f"-d{int(a.callback_s)}s",
                           "--latency", "-s", os.path.join(HERE, "callback.lua"), f"http://127.0.0.1:{sut.port}",
                           "--", req_path, tok_path], capture_output=True, text=True, timeout=a.callback_s + 120)
    t1 = time.time()
    m1, c1, v1 = MachineCpu(), sut.cpu_s(), voice.cpu_s()
    pg_s = pgcpu.stop()
    with open(b.path("wrk.out"), "w") as f:
        f.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed: {proc.stderr[-500:]}")
    m = re.search(r"WRK_RESULT (\{.*\})", proc.stdout)
    wrk_res = json.loads(m.group(1)) if m else {}
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", proc.stdout, re.M))
    rows = b.pg.rows(db, f"SELECT count(*), extract(epoch FROM min(executed_at)), extract(epoch FROM max(executed_at)) "
                         f"FROM {SCHEMA}.lead_bookings WHERE task_status = 'executed'")
    executed = int(rows[0][0])
    first, last = (float(rows[0][1]), float(rows[0][2])) if executed else (t0, t0)
    stats = voice.stats()
    exhausted = wrk_res.get("answers", 0) >= len(reqs) > 0
    window = (last - t0) if exhausted else (t1 - t0)
    res = {"tasks": len(reqs), "executed": executed, "window_s": window, "exhausted": exhausted,
           "rate": executed / window if window > 0 else 0.0, "wrk_statuses": wrk_res.get("statuses", {}),
           "wrk_requests_per_s": float((re.search(r"Requests/sec:\s+([\d.]+)", proc.stdout) or [0, 0])[1]),
           "latency": lat, "voice_calls": stats["calls"], "voice_unique": stats["unique"],
           "sut_cpu_s": c1 - c0, "sut_cpu_ms_per_execution": (c1 - c0) * 1000 / max(executed, 1),
           "voice_cpu_s": v1 - v0, "pg_cpu_ms_per_execution": pg_s * 1000 / max(executed, 1), "machine_busy_cores": MachineCpu.busy_cores(m0, m1),
           "threads": a.wrk_threads, "connections": a.wrk_connections, "tokens": a.tokens,
           "first_executed_epoch": first}
    log(f"  {res['rate']:.0f} executions/s ({executed} executed in {window:.1f} s; wrk statuses "
        f"{res['wrk_statuses']}; voice calls {stats['calls']}, unique {stats['unique']}; latency {lat})")
    return res


def phase_sched_and_callback(b, want_callback):
    db = b.pg.create_db("bench_sched")
    ct = voice = sut = None
    out = {}
    try:
        b.pg.lad_schema(db, SCHEMA)
        ct = CloudTasksSide(b, b.args.ct_fake)
        voice = Sink(b.sink_bin, b.workdir, "voice", name="sink-voice-callback")
        sut = start_followupd_cloudtasks(b, db, ct, voice)
        out["sched"] = phase_sched(b, db, sut, ct)
        if want_callback:
            out["callback"] = phase_callback(b, db, sut, ct, voice)
        out["sched"]["vm_hwm_kb"] = sut.vm_hwm_kb()
        return out
    finally:
        if sut is not None:
            sut.stop()
        for side in (voice, ct):
            if side is not None:
                side.stop()
        b.pg.drop_db(db)


# ---------------------------------------------------------------------------------------------------------------
# phase: several replicas on one database


def metric(child, name):
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", http_text(f"http://127.0.0.1:{child.port}/metrics"), re.M)
    return float(m.group(1)) if m else 0.0


def transactions(b, db):
    """Transactions PostgreSQL counted for the database (every autocommit statement is one)."""
    return int(b.pg.rows(db, f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{db}'")[0][0])


def settled_transactions(b, db, quiet_s=1.5):
    """The counter once the backends have flushed their statistics (idle backends do within about a second)."""
    time.sleep(quiet_s)  # backends report their statistics at most once a second: let the last report land
    return transactions(b, db)


def pool_statements(sut):
    """Statements the replicas' query pools have run (followupd_db_statements_total, summed)."""
    return sum(metric(d, "followupd_db_statements_total") for d in sut)


def replicas_run(b, n):
    """n replicas on a fresh database: balanced, paused while pgbench inserts, resumed; work per booking."""
    a = b.args
    db = b.pg.create_db(f"bench_replicas{n}")
    ct = voice = None
    sut = []
    try:
        b.pg.lad_schema(db, SCHEMA)
        ct = CloudTasksSide(b, "light")
        voice = Sink(b.sink_bin, b.workdir, "voice", name=f"sink-voice-replicas{n}")
        sut = [start_followupd_cloudtasks(b, db, ct, voice, name=f"followupd-replica{n}-{i}") for i in range(n)]
        share = -(-64 // n)
        wait_until(lambda: sum(metric(d, "followupd_partitions_owned") for d in sut) == 64
                   and all(metric(d, "followupd_partitions_owned") <= share
                           and metric(d, "followupd_replicas_live") == n for d in sut),
                   30, f"{n} replicas balanced", interval=0.1)
        idle0, t_idle = settled_transactions(b, db), time.monotonic()
        idle1 = settled_transactions(b, db, 3.0)
        background_per_s = (idle1 - idle0) / (time.monotonic() - t_idle)   # the rebalance rounds, idle
        _, before = count_rows(b, db)
        s0 = pool_statements(sut)
        for d in sut:
            os.kill(d.pid, signal.SIGSTOP)
        try:
            tps = run_pgbench(b, db, a.capacity_s, f"replicas{n}-pgbench.out")
            total, _ = count_rows(b, db)
            x0 = settled_transactions(b, db)
        finally:
            creates0 = ct.fake.stats()["creates"]
            pgcpu = PgCpuSampler(db)
            c0 = sum(d.cpu_s() for d in sut)
            t0 = time.monotonic()
            for d in sut:
                os.kill(d.pid, signal.SIGCONT)
        backlog = total - before
        wait_until(lambda: count_rows(b, db)[1] >= total, a.drain_timeout, f"{backlog} bookings scheduled by {n}",
                   interval=0.05)
        drain_s = time.monotonic() - t0
        c1 = sum(d.cpu_s() for d in sut)
        pg_s = pgcpu.stop()
        creates = ct.fake.stats()["creates"] - creates0
        statements = pool_statements(sut) - s0
        transactions_run = settled_transactions(b, db) - x0 - background_per_s * (time.monotonic() - t0)
        existed = sum(metric(d, "followupd_tasks_already_existed_total") for d in sut)
        res = {"replicas": n, "insert_tps_alone": tps, "backlog": backlog, "drain_s": drain_s,
               "rate": backlog / drain_s, "creates_per_booking": creates / backlog,
               "statements_per_booking": statements / backlog, "background_transactions_per_s": background_per_s,
               "transactions_per_booking": transactions_run / backlog,
               "pg_cpu_ms_per_booking": pg_s * 1000 / backlog, "sut_cpu_ms_per_booking": (c1 - c0) * 1000 / backlog,
               "already_existed": existed,
               "created_by_replica": [metric(d, "followupd_tasks_created_total") for d in sut]}
        log(f"  {n} replica(s): {backlog} bookings in {drain_s:.2f} s = {res['rate']:.0f}/s; per booking "
            f"{res['creates_per_booking']:.3f} createTask, {res['statements_per_booking']:.2f} statements, "
            f"{res['transactions_per_booking']:.2f} PostgreSQL transactions, "
            f"PostgreSQL {res['pg_cpu_ms_per_booking']:.3f} ms CPU, followupd {res['sut_cpu_ms_per_booking']:.3f} ms")
        return res
    finally:
        for d in sut:
            d.stop()
        for side in (voice, ct):
            if side is not None:
                side.stop()
        b.pg.drop_db(db)


def phase_replicas(b):
    log(f"replicas: 1, 2, 3 followupd replicas on one database; paused while pgbench inserts for "
        f"{b.args.capacity_s:.0f} s, then resumed")
    return {"runs": [replicas_run(b, n) for n in (1, 2, 3)], "capacity_s": b.args.capacity_s,
            "clients": b.args.clients}


# ---------------------------------------------------------------------------------------------------------------
# machine, versions, report


def cmd_out(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return ""


def machine_info(b):
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    gw_pkg = os.path.join(HERE, "graphile", "node_modules", "graphile-worker", "package.json")
    gw_version = json.load(open(gw_pkg))["version"] if os.path.exists(gw_pkg) else "not installed"
    m0 = MachineCpu()
    time.sleep(2.0)  # measure what else the machine is doing before we start
    busy = MachineCpu.busy_cores(m0, MachineCpu())
    git = cmd_out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(), "mem_gib": mem_kb / 1024 / 1024, "cpu": cpu,
            "kernel": platform.release(), "loadavg_start": loadavg(), "busy_cores_before": busy,
            "followupd": cmd_out([b.followupd, "--version"]) + (f" (git {git})" if git else ""),
            "postgresql": b.pg.version(), "pg_settings": {k: b.pg.setting(k) for k in
                                                           ("synchronous_commit", "fsync", "shared_buffers",
                                                            "max_connections", "wal_level")},
            "pg_where": os.environ.get("BENCH_PG_WHERE", f"PGHOST={os.environ.get('PGHOST', '')}"),
            "node": cmd_out(["node", "--version"]), "graphile_worker": gw_version,
            "pgbench": cmd_out(["pgbench", "--version"]), "wrk": (cmd_out(["wrk", "-v"]).splitlines() or [""])[0]}


def fmt(x, digits=0):
    if x is None:
        return "—"
    return f"{x:,.{digits}f}"


def yes(flag):
    return "**met**" if flag else "**missed**"


def summarize(res):
    """The four targets: (label, target, result text, met or None)."""
    out = []
    ph = res["phases"]
    fd, gw = ph.get("e2e_followupd"), ph.get("e2e_graphile")
    if fd and gw:
        r = fd["flat"]["rate"] / gw["flat"]["rate"]
        res["ratios"]["e2e"] = r
        text = f"{r:.2f}× ({fmt(fd['flat']['rate'])} vs {fmt(gw['flat']['rate'])} bookings/s)"
        if fd.get("burst") and gw.get("burst"):
            rb = fd["burst"]["rate"] / gw["burst"]["rate"]
            res["ratios"]["e2e_burst"] = rb
            text += (f"; with the INSERTs out of the window (a2: all due at once) {rb:.2f}× "
                     f"({fmt(fd['burst']['rate'])} vs {fmt(gw['burst']['rate'])}/s)")
        out.append(("End to end, flat out", f"≥ {TARGETS['e2e_ratio']:.0f}× graphile-worker", text,
                    r >= TARGETS["e2e_ratio"]))
    if fd:
        p99 = fd["paced"]["p99"]
        extra = f"; graphile-worker {fmt(gw['paced']['p99'], 1)} ms" if gw else ""
        out.append((f"Commit→call p99 at {fd['paced']['rate']:.0f}/s", f"≤ {TARGETS['p99_ms']:.0f} ms",
                    f"{p99:.2f} ms{extra}", p99 <= TARGETS["p99_ms"]))
    if fd and gw:
        frac = fd["vm_hwm_kb"] / gw["vm_hwm_kb"]
        res["ratios"]["memory"] = frac
        out.append(("Peak RSS", "≤ 1/8 of graphile-worker's",
                    f"1/{1 / frac:.1f} ({fd['vm_hwm_kb'] / 1024:.1f} MiB vs {gw['vm_hwm_kb'] / 1024:.1f} MiB)",
                    frac <= TARGETS["memory_fraction"]))
    sc = ph.get("sched")
    if sc:
        cap = sc["capacity"]
        res["ratios"]["sched"] = cap["ratio"]
        grows = "grows" if sc["backlog_slope_per_s"] > 0.05 * sc["insert_tps"] else "does not grow"
        out.append(("Scheduler sustained rate", "≥ 50% of the trigger INSERT rate",
                    f"{cap['ratio'] * 100:.0f}% ({fmt(cap['rate'])}/s vs {fmt(cap['insert_tps_alone'])} inserts/s); "
                    f"under a flat-out INSERT load the backlog {grows}", cap["ratio"] >= TARGETS["sched_fraction"]))
    return out


def render(b, res):
    a = b.args
    m = res["machine"]
    ph = res["phases"]
    L = []
    w = L.append
    w("# followupd benchmark results\n")
    argv = res.get("argv", [])
    w(f"Produced by `make bench` (`bench/run.py{' ' + ' '.join(argv) if argv else ''}`) on "
      f"{m['date']}. Every number below comes from this one run on this one machine; the ratios compare systems "
      "measured minutes apart on the same PostgreSQL server. Regenerate with `make bench`.\n")
    w("## Targets\n")
    w("| What | Target | Result | |")
    w("|---|---|---|---|")
    for label, target, text, met in res["summary"]:
        w(f"| {label} | {target} | {text} | {yes(met)} |")
    w("")
    if any(met is False for *_, met in res["summary"]):
        w("A target is missed: see [ANALYSIS.md](ANALYSIS.md) for where the time goes.\n")
    w("## Machine, versions, load\n")
    w("| | |")
    w("|---|---|")
    w(f"| Machine | {m['nproc']} CPUs ({m['cpu']}), {m['mem_gib']:.1f} GiB RAM, Linux {m['kernel']} |")
    w(f"| Load | load average {m['loadavg_start']} at the start, {m.get('loadavg_end', '?')} at the end; "
      f"{m['busy_cores_before']:.2f} of {m['nproc']} CPUs busy with other work just before the run (the machine "
      "is shared) |")
    w(f"| followupd | {m['followupd']} |")
    s = m["pg_settings"]
    w(f"| PostgreSQL | {m['postgresql']} ({m['pg_where']}); synchronous_commit={s['synchronous_commit']}, "
      f"fsync={s['fsync']}, shared_buffers={s['shared_buffers']}, max_connections={s['max_connections']} |")
    w(f"| Node / graphile-worker | {m['node']} / {m['graphile_worker']} (concurrency {a.gw_concurrency}, pool "
      f"{a.gw_concurrency + 2}, poll interval 2000 ms + LISTEN jobs:insert) |")
    w(f"| Tools | {m['pgbench']}; {m['wrk']} |")
    w("")

    fd, gw = ph.get("e2e_followupd"), ph.get("e2e_graphile")
    if fd or gw:
        w("## 1. End to end (local backend) vs graphile-worker\n")
        pool = (f"database.pool_size = {a.fd_pool_size} (+1 LISTEN connection, against graphile-worker's "
                f"{a.gw_concurrency + 2})" if a.fd_pool_size else "its database.pool_size")
        w(f"followupd runs with `conf/demo.conf` (queue.backend = local: its durable dispatcher, no Google) and {pool}; "
          f"graphile-worker runs `bench/graphile/worker.js` with {a.gw_concurrency} jobs at once "
          "(trigger → `graphile_worker.add_job('followup', ..., "
          "run_at := scheduled_at, job_key := idempotency key)`; the task locks the row with SELECT ... FOR UPDATE, "
          "POSTs the same start-call request, marks the row executed). Both start from a fresh database, get "
          f"{a.warmup} warm-up bookings, then the bookings below, inserted by `bench/src/loadgen.c` ({a.clients} "
          "libpq clients, one autocommit parameterized INSERT per booking, scheduled_at = now() at millisecond "
          "precision). The voice agent is `bench/src/sink.c` (C, epoll) for both; it timestamps each call.\n")
        w("| | followupd | graphile-worker | ratio |")
        w("|---|---|---|---|")

        def row(label, key, fn, digits=0, ratio=True, sub="flat"):
            x = fn(fd) if fd else None
            y = fn(gw) if gw else None
            r = f"{x / y:.2f}×" if ratio and x and y else ""
            w(f"| {label} | {fmt(x, digits)} | {fmt(y, digits)} | {r} |")

        w(f"| **(a) {a.n} bookings flat out** | | | |")
        row("bookings/s, first INSERT → last call", "rate", lambda r: r["flat"]["rate"])
        row("INSERT rate meanwhile (/s)", "", lambda r: r["flat"]["insert_rate"])
        row("seconds to the last call", "", lambda r: r["flat"]["elapsed_s"], 1, False)
        row("CPU ms per booking in the worker process", "", lambda r: r["flat"]["sut_cpu_ms_per_booking"], 2)
        row("CPU ms per booking in PostgreSQL backends (incl. INSERTs)", "",
            lambda r: r["flat"]["pg_cpu_ms_per_booking"], 2)
        row("busy CPUs meanwhile (of the machine's)", "", lambda r: r["flat"]["machine_busy_cores"], 2, False)
        row("missing calls / duplicate calls", "", lambda r: r["flat"]["missing"] + r["flat"]["duplicates"], 0, False)
        if (fd or gw).get("burst"):
            w(f"| **(a2) {a.burst} bookings inserted ahead, all due at one moment** | | | |")
            row("bookings/s, due moment → last call", "", lambda r: r["burst"]["rate"])
            row("bookings/s, first call → last call", "", lambda r: r["burst"]["rate_from_first_call"])
            row("first call after the due moment (ms)", "", lambda r: r["burst"]["first_call_after_due_s"] * 1000, 0,
                False)
            row("CPU ms per booking in the worker process", "", lambda r: r["burst"]["sut_cpu_ms_per_booking"], 2)
        w(f"| **(b) {a.rate:.0f} inserts/s for {a.paced_s:.0f} s**, commit→call (ms) | | | |")
        for p in ("p50", "p90", "p99", "max"):
            row(p, p, lambda r, p=p: r["paced"][p], 2)
        row("p99 from INSERT sent (ms)", "", lambda r: r["paced"]["p99_from_send"], 2)
        row("INSERT round trip p50 (ms)", "", lambda r: r["paced"]["insert_ms_p50"], 2, False)
        w("| **(c) memory** | | | |")
        row("peak RSS (VmHWM, MiB)", "", lambda r: r["vm_hwm_kb"] / 1024, 1)
        row("rows executed / expected", "", lambda r: r["rows_executed"], 0, False)
        w("")
        w("Commit→call latency is measured from the moment the inserting client got its COMMIT acknowledged to "
          "the moment the sink received the start-call request (both CLOCK_REALTIME on this machine). "
          "Peak RSS is /proc/PID/status VmHWM of the followupd process and of the node process, read after (a) "
          "and (b).\n")

    sc, cb, tr = ph.get("sched"), ph.get("callback"), ph.get("trigger")
    if sc:
        w("## 2. Scheduler: NOTIFY → createTask → row marked\n")
        fake = ("the light Cloud Tasks fake in `bench/src/sink.c` (same REST shapes: token endpoint, JWKS, "
                "createTask with task.name under the queue, 409 ALREADY_EXISTS on a duplicate name, the Task as "
                "the reply; the strict Python fake is itself the bottleneck at these rates, see ANALYSIS.md)"
                if sc["fake"] == "light" else "the strict Python fake `tests/fakes/fake_cloudtasks.py`, "
                "in the benchmark process")
        cap = sc["capacity"]
        w(f"followupd (queue.backend = cloudtasks) against {fake}. Two measurements, pgbench inserting follow-up "
          f"bookings with `bench/insert_follow_up.sql` and {sc['clients']} clients:\n")
        w(f"- **capacity**: followupd is paused (SIGSTOP) while pgbench inserts for {b.args.capacity_s:.0f} s — "
          "PostgreSQL's own INSERT rate with the trigger, nothing else competing — and the NOTIFYs queue up for "
          "its LISTEN session; then it is resumed (SIGCONT) and the time until every row is marked `scheduled` "
          "gives its rate of NOTIFY → createTask → row marked.")
        w(f"- **under load**: pgbench inserts flat out for {sc['insert_s']:.0f} s while followupd schedules; "
          "inserted and scheduled rows are counted every second (the backlog is their difference).\n")
        w("| | |")
        w("|---|---|")
        w(f"| PostgreSQL's INSERT rate with the trigger, followupd paused | {fmt(cap['insert_tps_alone'])}/s |")
        w(f"| **scheduler capacity** ({fmt(cap['backlog'])} queued bookings in {cap['drain_s']:.1f} s) | "
          f"**{fmt(cap['rate'])}/s** |")
        w(f"| **ratio** | **{cap['ratio'] * 100:.0f}%** |")
        w(f"| under load: INSERT rate with followupd scheduling | {fmt(sc['insert_tps'])}/s |")
        w(f"| under load: scheduled while inserting | {fmt(sc['scheduled_at_insert_end'])} of "
          f"{fmt(sc['inserted'])} ({fmt(sc['rate_during_inserts'])}/s) |")
        w(f"| under load: backlog trend / backlog when the inserts stopped | "
          f"{sc['backlog_slope_per_s']:+,.1f} rows/s / {fmt(sc['backlog_at_insert_end'])} rows "
          f"(drained {sc['drain_s']:.1f} s later) |")
        if tr:
            w(f"| INSERT rate with the trigger, phase 4 (no followupd process) | {fmt(tr['tps_with'])}/s |")
        w(f"| CPU per task: followupd (capacity run) / followupd (under load) / PostgreSQL backends incl. the "
          f"INSERTs (under load) | {cap['sut_cpu_ms_per_task']:.2f} ms / {sc['sut_cpu_ms_per_task']:.2f} ms / "
          f"{sc['pg_cpu_ms_per_row']:.2f} ms |")
        w(f"| tasks the fake created | {fmt(ph['sched'].get('created_in_fake_final', sc['created_in_fake']))} |")
        w("")
    if cb:
        w("## 3. Callback: OIDC-verified executions\n")
        w(f"`wrk -t{cb['threads']} -c{cb['connections']}` (keep-alive) with `bench/callback.lua` replays the "
          f"{fmt(cb['tasks'])} tasks created in phase 2 against followupd's "
          "`/api/deals-pipeline/bookings/:id/execute-followup`, each with a valid RS256 OIDC token signed by the "
          f"fake's key ({cb['tokens']} distinct tokens, JWKS served by the fake), the task's own body and the "
          "Cloud Tasks headers. Each request is verified, claims its row, calls the voice agent (the C sink) and "
          "records the outcome.\n")
        w("| | |")
        w("|---|---|")
        w(f"| **executions/s** | **{fmt(cb['rate'])}** ({fmt(cb['executed'])} executed in {cb['window_s']:.1f} s"
          f"{'; every task was delivered before the time was up' if cb['exhausted'] else ''}) |")
        w(f"| wrk answers by status | {', '.join(f'{k}: {v}' for k, v in sorted(cb['wrk_statuses'].items()))} |")
        w(f"| wrk latency p50 / p90 / p99 | {cb['latency'].get('50', '?')} / {cb['latency'].get('90', '?')} / "
          f"{cb['latency'].get('99', '?')} |")
        w(f"| voice-agent calls / distinct bookings | {fmt(cb['voice_calls'])} / {fmt(cb['voice_unique'])} |")
        w(f"| CPU per execution: followupd / its PostgreSQL backends | {cb['sut_cpu_ms_per_execution']:.2f} ms / "
          f"{cb['pg_cpu_ms_per_execution']:.2f} ms |")
        w(f"| busy CPUs meanwhile | {cb['machine_busy_cores']:.2f} |")
        w("")
    if tr:
        w("## 4. What the capture costs the backend's INSERTs\n")
        w(f"pgbench, {tr['clients']} clients, one booking per transaction, {tr['seconds']} s per run, \"without\" "
          "(no trigger, no followupd) and \"with\" alternately on one fresh database per case. Target: (a), (b), (d) "
          "≥ 0.95; (c) next to graphile-worker's add_job trigger on the same inserts.\n")
        w("| case | inserts | with | without | with ÷ without | target | rounds (without, with) |")
        w("|---|---|---|---|---|---|---|")
        labels = {"meetings": ("(a) meetings", 0.95), "follow_ups_tomorrow": ("(b) follow-ups due tomorrow", 0.95),
                  "follow_ups_due_now": ("(c) follow-ups due now (NOTIFY)", None),
                  "poll_mode": ("(d) poll mode (no trigger; followupd polling every second)", 0.95),
                  "graphile_due_now": ("graphile-worker add_job trigger, follow-ups due now", None)}
        for key, c in tr.get("cases", {}).items():
            label, target = labels.get(key, (key, None))
            verdict = "—" if target is None else (f"≥ {target}: " + ("met" if c["ratio"] >= target else "MISSED"))
            w(f"| {label} | `bench/{c['script']}` | {fmt(c['tps_with'])}/s | {fmt(c['tps_without'])}/s | "
              f"**{c['ratio']:.3f}** | {verdict} | "
              + "; ".join(f"{x:,.0f}, {y:,.0f}" for x, y in c["rounds"]) + " |")
        w("")
    rp = ph.get("replicas")
    if rp:
        w("## 5. Several replicas: work per booking\n")
        w(f"1, 2 and 3 followupd replicas (queue.backend = cloudtasks, the light fake, `[replicas]` defaults: 64 "
          "partitions) on one fresh database each. Once their partitions are balanced they are paused (SIGSTOP) "
          f"while pgbench inserts follow-ups for {rp['capacity_s']:.0f} s with {rp['clients']} clients, then "
          "resumed; every replica receives every NOTIFY, only the owner of a booking's partition acts on it. "
          "Statements are those the replicas' query pools ran (`followupd_db_statements_total`: the scheduler's "
          "tenant-scoped load and its conditional update, and any sweep); transactions are PostgreSQL's count for "
          "the database (`pg_stat_database`: every autocommit statement, plus a short transaction each time a "
          "LISTEN session reads a batch of notifications) minus the idle rebalance rounds; PostgreSQL CPU is that "
          "of the database's backends while draining.\n")
        w("| replicas | bookings | scheduled/s | createTask requests per booking | statements per booking | "
          "PostgreSQL transactions per booking | PostgreSQL CPU ms per booking | followupd CPU ms per booking (all "
          "replicas) | ALREADY_EXISTS | tasks created by replica |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for r in rp["runs"]:
            w(f"| {r['replicas']} | {fmt(r['backlog'])} | {fmt(r['rate'])} | {r['creates_per_booking']:.3f} | "
              f"{r['statements_per_booking']:.2f} | {r['transactions_per_booking']:.2f} | "
              f"{r['pg_cpu_ms_per_booking']:.3f} | "
              f"{r['sut_cpu_ms_per_booking']:.3f} | {fmt(r['already_existed'])} | "
              f"{', '.join(fmt(x) for x in r['created_by_replica'])} |")
        w("")
        w("The machine has 2 CPUs shared by PostgreSQL, the replicas and pgbench, so throughput cannot grow "
          "with replicas here; what must hold is that the work per booking stays flat (see ANALYSIS.md).\n")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="trigger,e2e,sched,callback,replicas")
    p.add_argument("--systems", default="followupd,graphile", help="end-to-end systems, in this order")
    p.add_argument("--n", type=int, default=5000, help="bookings in the flat-out run (a)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--burst", type=int, default=2000, help="bookings due at one moment in (a2); 0 skips it")
    p.add_argument("--burst-lead-s", type=float, default=25.0)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--paced-s", type=float, default=20.0)
    p.add_argument("--sched-s", type=float, default=20.0)
    p.add_argument("--capacity-s", type=float, default=10.0)
    p.add_argument("--callback-s", type=float, default=10.0)
    p.add_argument("--trigger-s", type=int, default=10)
    p.add_argument("--trigger-rounds", type=int, default=2)
    p.add_argument("--ct-fake", choices=("light", "strict"), default="light")
    p.add_argument("--gw-concurrency", type=int, default=16)
    p.add_argument("--fd-pool-size", type=int, default=16,
                   help="followupd database.pool_size; 16 (+1 listener) matches graphile-worker's 16 jobs at once on "
                        "18 connections; 0 keeps the config's")
    p.add_argument("--fd-conninfo-extra", default="",
                   help="appended to followupd's conninfo (experiments, e.g. \"options='-c synchronous_commit=off'\")")
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--wrk-connections", type=int, default=16)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--e2e-timeout", type=float, default=300.0)
    p.add_argument("--drain-timeout", type=float, default=300.0)
    p.add_argument("--quick", action="store_true", help="short runs to try the harness (not for RESULTS.md)")
    p.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    p.add_argument("--json", default=None, help="default: $FOLLOWUPD_BUILD/bench/results.json")
    p.add_argument("--render-only", metavar="JSON", help="write --results from a results.json, measure nothing")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.warmup, a.paced_s, a.sched_s, a.callback_s, a.trigger_s, a.trigger_rounds = 500, 20, 5, 5, 3, 3, 1
        a.capacity_s = 3
        a.burst, a.burst_lead_s = 300, 8
    return a


class _Rendered:
    """Enough of Bench for render(): the arguments of the run being rendered."""

    def __init__(self, args):
        self.args = args


def render_only(path, out):
    """Re-render RESULTS.md from a run's results.json (same numbers; for wording changes of the report)."""
    with open(path) as f:
        res = json.load(f)
    args = parse_args([])
    for k, v in res["args"].items():
        setattr(args, k, v)
    res["ratios"] = {}
    res["summary"] = summarize(res)
    with open(out, "w") as f:
        f.write(render(_Rendered(args), res))


def main(argv=None):
    args = parse_args(argv)
    if args.render_only:
        render_only(args.render_only, args.results)
        return 0
    phases = set(args.only.split(","))
    b = Bench(args)
    t_start = time.monotonic()
    res = b.results
    res["args"] = vars(args)
    res["argv"] = list(sys.argv[1:] if argv is None else argv)
    log(f"work directory {b.workdir}")
    res["machine"] = machine_info(b)
    log(f"machine: {res['machine']['nproc']} CPUs, load {res['machine']['loadavg_start']}, "
        f"{res['machine']['busy_cores_before']:.2f} CPUs busy before the run")
    if "trigger" in phases:
        res["phases"]["trigger"] = phase_trigger(b)
    if "e2e" in phases:
        for system in args.systems.split(","):
            res["phases"][f"e2e_{system}"] = phase_e2e(b, system)
    if "sched" in phases or "callback" in phases:
        res["phases"].update(phase_sched_and_callback(b, "callback" in phases))
    if "replicas" in phases:
        res["phases"]["replicas"] = phase_replicas(b)
    res["machine"]["loadavg_end"] = loadavg()
    res["elapsed_s"] = time.monotonic() - t_start
    res["ratios"] = {}
    res["summary"] = summarize(res)
    json_path = args.json or os.path.join(b.build, "bench", "results.json")
    with open(json_path, "w") as f:
        json.dump(res, f, indent=1, default=str)
    with open(args.results, "w") as f:
        f.write(render(b, res))
    print()
    print(f"followupd benchmark ({res['elapsed_s']:.0f} s) — {args.results}")
    for label, target, text, met in res["summary"]:
        print(f"  {label:<28} {text:<70} target {target}: {'met' if met else 'MISSED'}")
    cb = res["phases"].get("callback")
    if cb:
        print(f"  {'Callback':<28} {cb['rate']:,.0f} OIDC-verified executions/s")
    for r in (res["phases"].get("replicas") or {}).get("runs", []):
        print(f"  {'Replicas ' + str(r['replicas']):<28} {r['rate']:,.0f} scheduled/s; per booking "
              f"{r['creates_per_booking']:.3f} createTask, {r['statements_per_booking']:.2f} statements, "
              f"{r['pg_cpu_ms_per_booking']:.3f} ms PostgreSQL CPU")
    tr = res["phases"].get("trigger")
    if tr:
        for key, c in tr.get("cases", {}).items():
            print(f"  {'Capture cost ' + key:<40} INSERT rate with/without {c['ratio']:.3f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"FAILED: {e}")
        sys.exit(1)
