"""deploy/monitoring: the alert rules pass `promtool check rules` and their cases in followupd-alerts.test.yml
(`promtool test rules`), every dashboard expression parses as PromQL (promtool, as recording rules), and every
metric the dashboard and the rules name exists in a real /metrics scrape of the running daemon. Also: the lateness
histogram behind the "calls late" pictures and alert measures voice-call start − scheduled_at.

promtool comes from Debian's `prometheus` package (`make deps`).

Two metrics are being added to the daemon separately: until their names appear anywhere under daemon/src, the
scrape test lets exactly those two be missing (PENDING_METRICS); once they are in the source it requires them.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon import ROOT  # noqa: E402
from opsutil import parse_prometheus, sample  # noqa: E402
from stack import Stack  # noqa: E402

MONITORING = os.path.join(ROOT, "deploy", "monitoring")
DASHBOARD = os.path.join(MONITORING, "followupd-dashboard.json")
RULES = os.path.join(MONITORING, "followupd-alerts.yml")
RULE_TESTS = os.path.join(MONITORING, "followupd-alerts.test.yml")
DAEMON_SRC = os.path.join(ROOT, "daemon", "src")
PENDING_METRICS = ("followupd_jwks_refresh_total", "followupd_jwks_key_set_age_seconds")
SCHEMA = "mon_a"

# ---- metric names in PromQL --------------------------------------------------------------------------------------

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
             "inf", "nan", "atan2"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(r"(?P<num>(?:0[xX][0-9a-fA-F]+|\d*\.?\d+(?:[eE][+-]?\d+)?)(?:ms|[smhdwy])*)"
                    r"|(?P<id>[a-zA-Z_:][a-zA-Z0-9_:]*)")
_GRAFANA_VAR = re.compile(r"\$\{?\w+\}?")


def metric_names(expr):
    """The metric names a PromQL expression selects (identifiers that are not functions, keywords, labels,
    numbers or durations). Grafana variables ($job, ${x}, $__rate_interval) are ignored. A selector by
    {__name__=...} hides its metric from this check, so it is refused."""
    if "__name__" in expr:
        raise ValueError(f"selector by __name__ in {expr!r}: name the metric")
    text = _STRING.sub(" ", expr)
    text = _GRAFANA_VAR.sub(" ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)      # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)     # ranges and subqueries
    text = _GROUPING.sub(" ", text)             # label lists of by/without/on/ignoring/group_*
    names = set()
    for m in _TOKEN.finditer(text):
        name = m.group("id")
        if name is None or name in _KEYWORDS:
            continue
        if text[m.end():].lstrip().startswith("("):
            continue                            # a function or an aggregation
        names.add(name)
    return names


def grafana_query_expr(query):
    """The PromQL part of a Grafana variable query (label_values(selector, label) → selector)."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*", query)
    return m.group(1) if m else query


def load_dashboard():
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def dashboard_exprs(dash):
    """[(where, PromQL)] of every panel target and every query variable."""
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((f"panel {p['id']} {p['title']!r} {t['refId']}", t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"variable {v['name']}", grafana_query_expr(q)))
    return out


def load_rules():
    with open(RULES, encoding="utf-8") as f:
        return [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]


def rule_exprs():
    return [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in load_rules()]


def exposed_names(types):
    """Sample names a scrape declares: a histogram family h exposes h_bucket, h_sum and h_count."""
    names = set()
    for family, kind in types.items():
        names |= {family + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" else {family}
    return names


def in_daemon_source(name):
    for base, _, files in os.walk(DAEMON_SRC):
        for fn in files:
            with open(os.path.join(base, fn), encoding="utf-8", errors="replace") as f:
                if name in f.read():
                    return True
    return False


def unknown_metrics(named, exposed, pending_in_source=in_daemon_source):
    """Names used but not exposed; a PENDING_METRICS name is excused only while the daemon source lacks it."""
    return {n for n in named - exposed if not (n in PENDING_METRICS and not pending_in_source(n))}


def promtool(*args):
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


def grafana_to_promql(expr):
    """Replace the dashboard's variables by values Prometheus would see, so promtool can parse the expression."""
    return expr.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$instance", ".*")


# ---- tests -------------------------------------------------------------------------------------------------------

class MetricNamesTest(unittest.TestCase):
    """The extractor the scrape check relies on (so that check can fail)."""

    def test_metric_names__functions_groupings_ranges_labels__only_metrics(self):
        cases = {
            'histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{job=~"$job"}[$__rate_interval]))) > 60':
                {"a_bucket"},
            "sum(rate(b_total[5m])) by (reason) / on (job) group_left (version) c offset 1h30m": {"b_total", "c"},
            'min_over_time(d[10m:1m]) > 0 and bool e{x="f(g) h"} unless absent(i)': {"d", "e", "i"},
            "j * 60 + 1e3 - 0x1f": {"j"},
            "sum without (instance) (k:recorded:rate5m)": {"k:recorded:rate5m"},
        }
        for expr, expected in cases.items():
            with self.subTest(expr):
                self.assertEqual(metric_names(expr), expected)

    def test_metric_names__selector_by_name__refused(self):
        with self.assertRaises(ValueError):
            metric_names('{__name__="followupd_ready"}')

    def test_unknown_metrics__pending_names__excused_only_while_absent_from_source(self):
        exposed = {"followupd_ready"}
        named = {"followupd_ready", "followupd_jwks_key_set_age_seconds", "followupd_typo"}
        self.assertEqual(unknown_metrics(named, exposed, lambda n: False), {"followupd_typo"})
        self.assertEqual(unknown_metrics(named, exposed, lambda n: True),
                         {"followupd_typo", "followupd_jwks_key_set_age_seconds"})


class RulesAndDashboardTest(unittest.TestCase):
    def test_promtool_check_rules__alert_rules__valid(self):
        proc = promtool("check", "rules", RULES)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("SUCCESS", proc.stdout)

    def test_promtool_test_rules__alert_cases__pass(self):
        proc = promtool("test", "rules", RULE_TESTS)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("SUCCESS", proc.stdout)

    def test_alert_rules__every_alert__named_severity_summary_and_a_test_case(self):
        with open(RULE_TESTS, encoding="utf-8") as f:
            tested = {t["alertname"] for case in yaml.safe_load(f)["tests"] for t in case["alert_rule_test"]
                      if t.get("exp_alerts")}
        alerts = {r["alert"]: r for r in load_rules()}
        self.assertLessEqual({"FollowupdCallsLate", "FollowupdExecutionFailuresRising", "FollowupdListenerDown",
                              "FollowupdNotReady", "FollowupdJwksStale"}, set(alerts))
        for name, rule in alerts.items():
            with self.subTest(name):
                self.assertIn(rule["labels"]["severity"], ("warning", "critical"))
                self.assertTrue(rule["annotations"]["summary"])
                self.assertIn(name, tested, "no promtool case where the alert fires")
        self.assertIn("followupd_call_lateness_seconds_bucket", metric_names(alerts["FollowupdCallsLate"]["expr"]))
        self.assertIn("followupd_jwks_key_set_age_seconds", metric_names(alerts["FollowupdJwksStale"]["expr"]))

    def test_dashboard__structure__panels_targets_and_variables_well_formed(self):
        dash = load_dashboard()
        self.assertEqual(dash["uid"], "followupd")
        self.assertIsInstance(dash["schemaVersion"], int)
        ids = [p["id"] for p in dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        self.assertEqual((variables["datasource"]["type"], variables["datasource"]["query"]), ("datasource", "prometheus"))
        for p in dash["panels"]:
            with self.subTest(p["title"]):
                g = p["gridPos"]
                self.assertTrue(0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, g)
                self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${datasource}"})
                self.assertTrue(p["targets"])
                refs = [t["refId"] for t in p["targets"]]
                self.assertEqual(len(refs), len(set(refs)))
                for t in p["targets"]:
                    self.assertIn('job=~"$job"', t["expr"])
                    self.assertIn('instance=~"$instance"', t["expr"])

    def test_dashboard__required_pictures__present(self):
        dash = load_dashboard()
        by_metric = {}
        for p in dash["panels"]:
            for t in p["targets"]:
                for name in metric_names(t["expr"]):
                    by_metric.setdefault(name, []).append((p["title"], t["expr"]))
        required = {
            "calls/min": "followupd_voice_calls_total",
            "lateness": "followupd_call_lateness_seconds_bucket",
            "failures by reason": "followupd_task_failures_total",
            "queue depth": "followupd_scheduler_backlog_bookings",
            "listener": "followupd_listener_connected",
            "readiness": "followupd_ready",
            "pool saturation": "followupd_db_pool_max_connections",
        }
        for what, metric in required.items():
            with self.subTest(what):
                self.assertIn(metric, by_metric)
        lateness = " ".join(e for _, e in by_metric["followupd_call_lateness_seconds_bucket"])
        self.assertIn("histogram_quantile(0.5,", lateness)
        self.assertIn("histogram_quantile(0.99,", lateness)

    def test_dashboard__every_expression__parses_as_promql(self):
        exprs = dashboard_exprs(load_dashboard())
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": f"dashboard:expr_{i}", "expr": grafana_to_promql(e)} for i, (_, e) in enumerate(exprs)]}]}
        with tempfile.NamedTemporaryFile("w", suffix=".yml", prefix="followupd-dashboard-") as f:
            yaml.safe_dump(rules, f)
            f.flush()
            proc = promtool("check", "rules", f.name)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn(f"SUCCESS: {len(exprs)} rules found", proc.stdout)


class ScrapeTest(unittest.TestCase):
    """A real daemon (Stack: PostgreSQL, fake Cloud Tasks and voice agent, OIDC mode) and its GET /metrics."""

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack(schemas=(SCHEMA,)).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.stack.__exit__(None, None, None)

    def scrape(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stack.daemon.port}/metrics", timeout=10) as resp:
            self.assertEqual(resp.status, 200)
            return parse_prometheus(resp.read().decode("utf-8"))

    def test_metrics_named__dashboard_and_rules__all_exist_in_a_real_scrape(self):
        types, samples = self.scrape()
        exposed = exposed_names(types)
        named = {}
        for where, expr in dashboard_exprs(load_dashboard()) + rule_exprs():
            for name in metric_names(expr):
                named.setdefault(name, []).append(where)
        self.assertGreaterEqual(len(named), 15)
        unknown = unknown_metrics(set(named), exposed)
        self.assertFalse(unknown, {n: named[n] for n in unknown})
        excused = sorted(n for n in set(named) - exposed if n in PENDING_METRICS)
        if excused:
            print(f"\n  not in daemon/src yet, allowed missing from the scrape: {', '.join(excused)}", flush=True)
        self.assertEqual(sample(samples, "followupd_db_pool_max_connections"), 4)   # Stack: pool_size = 4

    def test_call_lateness__late_and_early_calls__observed_as_start_minus_scheduled_at(self):
        s, d = self.stack, self.stack.daemon
        _, before = self.scrape()
        due = time.time() - 90   # inside the catch-up window: scheduled at once, called 90 s late
        late, _, _, late_body = s.scheduled_booking(SCHEMA, at=due)
        early, _, _, early_body = s.scheduled_booking(SCHEMA, at=time.time() + 3600)
        self.assertEqual(s.execute(d, late, late_body), (200, {"status": "executed"}))
        lateness_bound = time.time() - due
        self.assertEqual(s.execute(d, early, early_body), (200, {"status": "executed"}))
        _, after = self.scrape()

        def added(name, **labels):
            return sample(after, name, **labels) - sample(before, name, **labels)

        self.assertEqual(added("followupd_call_lateness_seconds_count"), 2)
        self.assertEqual(added("followupd_call_lateness_seconds_bucket", le="0"), 1)     # early counts as 0 s
        self.assertEqual(added("followupd_call_lateness_seconds_bucket", le="60"), 1)
        self.assertEqual(added("followupd_call_lateness_seconds_bucket", le="+Inf"), 2)
        late_s = added("followupd_call_lateness_seconds_sum")
        self.assertGreaterEqual(late_s, 90)
        self.assertLessEqual(late_s, lateness_bound + 0.01)

if __name__ == "__main__":
    unittest.main()
