"""Integration tests of shared/db/db_listener against a real PostgreSQL, through
build/tools/db_probe: channel names equal PostgreSQL's 'followupd_' || md5(schema),
notifications on several channels arrive intact, nothing is delivered before
on_ready, and the listener re-LISTENs and emits on_ready again after its backend
is terminated or the server is unreachable for a while (TCP proxy)."""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_db_support import PgProxy, Probe, psql, require_pg, scratch_database, wait_until  # noqa: E402

SCHEMAS = ["tenant_alpha", "tenant_beta", "Tenant With Space"]


def notify(db, channel, payload):
    psql(f"SELECT pg_notify('{channel}', $q${payload}$q$)", db=db)


def listener_pids(db):
    return [r[0] for r in psql("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                               "AND application_name = 'followupd' AND query LIKE 'LISTEN%'", db=db)]


class DbListenerTest(unittest.TestCase):
    def setUp(self):
        require_pg(self)
        self.db = scratch_database(self)

    def channels(self, probe):
        names = []
        for schema in SCHEMAS:
            probe.send(f"channel {schema}")
            ev = probe.event("channel")
            self.assertTrue(ev["ok"])
            names.append(ev["channel"])
        return names

    def start_listener(self, channels, conninfo=None):
        probe = Probe(self)
        probe.send(f"listen {','.join(channels)} {conninfo or 'dbname=' + self.db}")
        probe.event("listener")
        probe.event("ready")
        return probe

    def test_channel_for_schema__equals_postgres_md5_expression(self):
        probe = Probe(self)
        ours = self.channels(probe)
        theirs = [psql(f"SELECT 'followupd_' || md5($s${s}$s$)", db=self.db)[0][0] for s in SCHEMAS]
        self.assertEqual(ours, theirs)
        probe.quit(self)

    def test_listener__notify_on_several_channels__payloads_intact_and_in_order(self):
        probe = Probe(self)
        channels = self.channels(probe)
        probe.quit(self)
        probe = self.start_listener(channels)
        big = "x" * 7900
        sent = [(channels[0], "42"), (channels[1], "id with spaces, 'quotes' and \"dq\""),
                (channels[2], "ünïcödé ✓"), (channels[0], big), (channels[1], "")]
        for ch, payload in sent:
            notify(self.db, ch, payload)
        got = [probe.event("notify") for _ in sent]
        self.assertEqual([(e["channel"], e["payload"]) for e in got], sent)
        psql("SELECT pg_notify('not_listened', 'nope')", db=self.db)
        notify(self.db, channels[2], "last")
        self.assertEqual(probe.event("notify")["payload"], "last")
        self.assertFalse([e for e in probe.events if e.get("channel") == "not_listened"])
        probe.quit(self)

    def test_listener__mixed_case_and_quote_in_channel__quoted_identifier_matches_pg_notify(self):
        # Unquoted, LISTEN would fold MixedCase to mixedcase and never match;
        # the embedded quote must stay inside the identifier.
        channels = ["MixedCase", 'we"ird']
        probe = self.start_listener(channels)
        psql("SELECT pg_notify('MixedCase', 'm')", db=self.db)
        psql("SELECT pg_notify('we\"ird', 'w')", db=self.db)
        got = [probe.event("notify") for _ in channels]
        self.assertEqual([(e["channel"], e["payload"]) for e in got], [("MixedCase", "m"), ('we"ird', "w")])
        probe.quit(self)

    def test_listener__notifications_during_startup__none_before_ready_and_none_lost_after(self):
        channel = "followupd_startup"
        psql("CREATE TABLE stop_flood (x int)", db=self.db)
        # One committed NOTIFY after another, from before the listener connects
        # until after it is ready (the test stops it).
        flood = subprocess.Popen(
            ["psql", "-X", "-q", "-d", self.db, "-c",
             "DO $$ BEGIN FOR i IN 1..10000000 LOOP "
             f"PERFORM pg_notify('{channel}', i::text); COMMIT; "
             "EXIT WHEN EXISTS (SELECT 1 FROM stop_flood); END LOOP; END $$"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(flood.wait)
        self.addCleanup(psql, "INSERT INTO stop_flood VALUES (1)", self.db, False)
        wait_until(lambda: psql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND query LIKE 'DO %' AND state = 'active'", db=self.db) == [["1"]],
                   what="flood running")
        probe = Probe(self)
        probe.send(f"listen {channel} dbname={self.db}")
        probe.event("ready")
        for _ in range(200):
            probe.event("notify")
        psql("INSERT INTO stop_flood VALUES (1)", db=self.db)
        self.assertEqual(flood.wait(timeout=60), 0)
        notify(self.db, channel, "end")
        probe.event("notify", payload="end")
        names = [e["event"] for e in probe.events]
        self.assertLess(names.index("ready"), names.index("notify"))
        payloads = [e["payload"] for e in probe.events if e["event"] == "notify"]
        self.assertEqual(payloads[-1], "end")
        numbers = [int(p) for p in payloads[:-1]]
        self.assertGreaterEqual(len(numbers), 200)
        # A contiguous run: nothing dropped or reordered once listening.
        self.assertEqual(numbers, list(range(numbers[0], numbers[0] + len(numbers))))
        probe.quit(self)

    def test_listener__backend_terminated__lost_then_ready_again_and_receives(self):
        channels = ["followupd_one", "followupd_two"]
        probe = self.start_listener(channels)
        notify(self.db, channels[0], "before")
        self.assertEqual(probe.event("notify")["payload"], "before")
        pids = wait_until(lambda: listener_pids(self.db), what="listener session")
        self.assertEqual(len(pids), 1)
        psql(f"SELECT pg_terminate_backend({pids[0]})", db=self.db)
        probe.event("lost")
        probe.event("ready")
        new_pids = wait_until(lambda: listener_pids(self.db), what="new listener session")
        self.assertNotEqual(new_pids, pids)
        notify(self.db, channels[1], "after reconnect")
        ev = probe.event("notify")
        self.assertEqual((ev["channel"], ev["payload"]), (channels[1], "after reconnect"))
        probe.quit(self)

    def test_listener__server_unreachable_for_a_while__relistens_after_outage(self):
        proxy = PgProxy(self)
        channels = ["followupd_proxy"]
        probe = self.start_listener(channels, proxy.conninfo(self.db))
        proxy.refuse()
        probe.event("lost")
        probe.wait_log("postgres connection attempt failed", count=3)
        cpu = probe.cpu_seconds()
        self.assertLess(cpu, 1.0)
        proxy.forward()
        probe.event("ready")
        notify(self.db, channels[0], "back")
        self.assertEqual(probe.event("notify")["payload"], "back")
        self.assertEqual(len([e for e in probe.events if e["event"] == "ready"]), 2)
        probe.quit(self)

    def test_listener__close_while_connected__no_callbacks_after_and_loop_closes(self):
        probe = self.start_listener(["followupd_close"])
        probe.send("close_listener")
        probe.event("listener_closed")
        notify(self.db, "followupd_close", "too late")
        wait_until(lambda: not listener_pids(self.db), what="listener session gone")
        probe.quit(self)
        self.assertFalse([e for e in probe.events if e["event"] in ("notify", "lost")])


if __name__ == "__main__":
    unittest.main()
