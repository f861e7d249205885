#!/usr/bin/python3
"""Where followupd's commit→call latency goes, from one bench run (analysis helper, stdlib only).

    bench/latency_breakdown.py build/bench/run-XXXX [followupd-paced.txt]

Reads the run's loadgen rows ("<id> <send_us> <ack_us>", default followupd-paced.txt) and followupd's JSON log
(followupd-local.err) and prints percentiles of each stage per booking: INSERT acknowledged → "follow-up
scheduled" (NOTIFY received, row loaded, row marked scheduled) → "claimed for execution" (dispatcher woke, found
the row due, claimed it) → "voice agent start-call finished" (HTTP call) → "execution finished" (outcome
recorded). Log timestamps have millisecond resolution.
"""
import datetime
import json
import os
import sys

STAGES = (("follow-up scheduled", "scheduled"), ("claimed for execution", "claimed"),
          ("voice agent start-call finished", "called"), ("execution finished", "recorded"))


def ts(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def main(run_dir, rows_name="followupd-paced.txt"):
    events = {}
    with open(os.path.join(run_dir, "followupd-local.err")) as f:
        for line in f:
            rec = json.loads(line)
            bid = rec.get("booking_id")
            if not bid:
                continue
            for prefix, name in STAGES:
                if rec["msg"].startswith(prefix):
                    events.setdefault(bid, {}).setdefault(name, ts(rec["ts"]))
    spans = {}
    with open(os.path.join(run_dir, rows_name)) as f:
        for line in f:
            bid, _, ack = line.split()
            e = events.get(bid, {})
            prev_name, prev_t = "INSERT acked", int(ack) / 1e6
            for _, name in STAGES:
                if name not in e:
                    break
                spans.setdefault(f"{prev_name} → {name}", []).append((e[name] - prev_t) * 1000)
                prev_name, prev_t = name, e[name]
    print(f"{'stage':<36} {'n':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for stage, values in spans.items():
        values.sort()
        pick = lambda p: values[min(len(values) - 1, int(p / 100 * len(values)))]  # noqa: E731
        print(f"{stage:<36} {len(values):>5} {pick(50):>8.1f} {pick(90):>8.1f} {pick(99):>8.1f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(*sys.argv[1:3])
