"""Integration tests of shared/db/db_pool against a real PostgreSQL, through
build/tools/db_probe: FIFO dispatch over a pool of two, the queue limit,
parameters, a backend terminated mid-statement, and outages simulated with a TCP
proxy (refused port, black-holed server) without busy looping."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_db_support import LockHolder, PgProxy, Probe, psql, require_pg, scratch_database, wait_until  # noqa: E402

LOCK_KEY = 4242


def in_lock_wait(db):
    rows = psql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'followupd' AND wait_event_type = 'Lock'", db=db)
    return int(rows[0][0])


class DbPoolTest(unittest.TestCase):
    def setUp(self):
        require_pg(self)
        self.db = scratch_database(self)

    def start_pool(self, size, max_queue, conninfo=None, wait=True, prepare=False):
        probe = Probe(self)
        command = "poolprep" if prepare else "pool"
        probe.send(f"{command} {size} {max_queue} {conninfo if conninfo is not None else 'dbname=' + self.db}")
        probe.event("pool")
        if wait:
            probe.event("pool_state", connected=size)
        return probe

    def test_pool__many_concurrent_queries_on_two_connections__all_complete_in_fifo_start_order(self):
        psql("CREATE SEQUENCE seq", db=self.db)
        probe = self.start_pool(2, 100)
        n = 60
        for i in range(n):
            probe.send(f"query q{i} SELECT nextval('seq'), pg_backend_pid()")
        results = [probe.result(f"q{i}") for i in range(n)]
        for r in results:
            self.assertTrue(r["ok"], r)
        seqs = [int(r["rows"][0][0]) for r in results]
        self.assertEqual(sorted(seqs), list(range(1, n + 1)))
        # Each connection runs its statements one after another in queue order
        # (execution order across the two connections is up to the server).
        by_backend = {}
        for r in results:
            by_backend.setdefault(r["rows"][0][1], []).append(int(r["rows"][0][0]))
        self.assertEqual(len(by_backend), 2)  # both connections were used
        for per_conn in by_backend.values():
            self.assertEqual(per_conn, sorted(per_conn))
        stats = probe.stats()
        self.assertEqual((stats["connected"], stats["in_use"], stats["waiting"]), (2, 0, 0))
        probe.quit(self)

    def test_pool__one_connection__statements_run_in_exact_queue_order(self):
        psql("CREATE SEQUENCE seq", db=self.db)
        probe = self.start_pool(1, 100)
        for i in range(30):
            probe.send(f"query q{i} SELECT nextval('seq')")
        self.assertEqual([probe.result(f"q{i}")["rows"][0][0] for i in range(30)], [str(i + 1) for i in range(30)])
        order = [e["id"] for e in probe.events if e["event"] == "result"]
        self.assertEqual(order, [f"q{i}" for i in range(30)])
        probe.quit(self)

    def test_pool__parameters_and_sql_errors__reported_per_statement(self):
        probe = self.start_pool(1, 10)
        probe.send('queryp p1 {"sql":"SELECT $1::int + 1, $2::text IS NULL, $3::text",'
                   '"params":["41",null,"it\'s \\"quoted\\" ünïcode"]}')
        probe.send("query e1 SELECT * FROM no_such_table")
        probe.send("query ok SELECT 'after error'")
        p1 = probe.result("p1")
        self.assertTrue(p1["ok"], p1)
        self.assertEqual(p1["rows"], [["42", "t", "it's \"quoted\" ünïcode"]])
        e1 = probe.result("e1")
        self.assertFalse(e1["ok"])
        self.assertFalse(e1["res_null"])
        self.assertEqual(e1["status"], "PGRES_FATAL_ERROR")
        self.assertIn("no_such_table", e1["error"])
        self.assertFalse(e1["error"].endswith("\n"))
        self.assertEqual(probe.result("ok")["rows"], [["after error"]])
        probe.quit(self)

    # -- prepared statements (db_opts.prepare, database.prepared_statements) ----------------------------------
    def prepared_in_session(self, probe, qid):
        """The session's own prepared statements, read on the same (only) connection: [[name, statement], ...]."""
        probe.send(f"query {qid} SELECT name, statement FROM pg_prepared_statements ORDER BY name")
        r = probe.result(qid)
        self.assertTrue(r["ok"], r)
        return r["rows"]

    def test_pool_prepare__same_statement_thrice__prepared_once_by_name_results_right(self):
        probe = self.start_pool(1, 10, prepare=True)
        sql = "SELECT $1::int * 2, $2::text"
        for i in range(3):
            probe.send('queryp p%d {"sql":"%s","params":["%d","v%d"]}' % (i, sql, i, i))
        probe.send('queryp other {"sql":"SELECT $1::text || \'!\'","params":["x"]}')
        self.assertEqual([probe.result(f"p{i}")["rows"] for i in range(3)], [[["0", "v0"]], [["2", "v1"]],
                                                                                [["4", "v2"]]])
        self.assertEqual(probe.result("other")["rows"], [["x!"]])
        self.assertEqual(self.prepared_in_session(probe, "ps"),
                         [["fu0", sql], ["fu1", "SELECT $1::text || '!'"]])
        probe.quit(self)

    def test_pool_prepare__off__nothing_prepared(self):
        probe = self.start_pool(1, 10)
        probe.send('queryp p {"sql":"SELECT $1::int + 1","params":["1"]}')
        self.assertEqual(probe.result("p")["rows"], [["2"]])
        self.assertEqual(self.prepared_in_session(probe, "ps"), [])
        probe.quit(self)

    def test_pool_prepare__statement_that_does_not_parse__error_reported_then_next_ones_run(self):
        probe = self.start_pool(1, 10, prepare=True)
        probe.send('queryp bad {"sql":"SELEC $1::int","params":["1"]}')
        probe.send('queryp bad2 {"sql":"SELECT $1::int FROM no_such_table","params":["1"]}')
        probe.send('queryp good {"sql":"SELECT $1::int + 1","params":["1"]}')
        bad = probe.result("bad")
        self.assertEqual((bad["ok"], bad["res_null"], bad["status"]), (False, False, "PGRES_FATAL_ERROR"), bad)
        self.assertIn("syntax error", bad["error"])
        self.assertIn("no_such_table", probe.result("bad2")["error"])
        self.assertEqual(probe.result("good")["rows"], [["2"]])
        self.assertEqual([name for name, _ in self.prepared_in_session(probe, "ps")], ["fu0"])
        probe.quit(self)

    def test_pool_prepare__backend_terminated__statements_prepared_again_on_the_new_session(self):
        probe = self.start_pool(1, 10, prepare=True)
        probe.send('queryp a {"sql":"SELECT $1::int, pg_backend_pid()","params":["1"]}')
        first_pid = probe.result("a")["rows"][0][1]
        self.assertEqual(psql(f"SELECT pg_terminate_backend({first_pid})", db=self.db), [["t"]])
        probe.event("pool_state", connected=0)
        probe.event("pool_state", connected=1)
        probe.send('queryp b {"sql":"SELECT $1::int, pg_backend_pid()","params":["2"]}')
        b = probe.result("b")
        self.assertTrue(b["ok"], b)
        self.assertEqual(b["rows"][0][0], "2")
        self.assertNotEqual(b["rows"][0][1], first_pid)
        self.assertEqual([name for name, _ in self.prepared_in_session(probe, "ps")], ["fu0"])
        probe.quit(self)

    def test_pool__queue_full__query_rejected_at_once_and_queued_ones_complete(self):
        probe = self.start_pool(1, 3)
        lock = LockHolder(self, self.db, LOCK_KEY)
        probe.send(f"query busy SELECT pg_advisory_xact_lock({LOCK_KEY})")
        for i in range(3):
            probe.send(f"query w{i} SELECT {i}")
        probe.send("query over SELECT 99")
        probe.event("rejected", id="over")
        stats = probe.stats()
        self.assertEqual((stats["in_use"], stats["waiting"]), (1, 3))
        lock.release()
        self.assertTrue(probe.result("busy")["ok"])
        for i in range(3):
            self.assertEqual(probe.result(f"w{i}")["rows"], [[str(i)]])
        self.assertFalse([e for e in probe.events if e.get("id") == "over" and e["event"] == "result"])
        probe.send("query again SELECT 'room again'")
        self.assertTrue(probe.result("again")["ok"])
        probe.quit(self)

    def test_pool__backend_terminated_mid_statement__inflight_fails_then_reconnects(self):
        probe = self.start_pool(2, 50)
        lock = LockHolder(self, self.db, LOCK_KEY)
        probe.send(f"query victim SELECT pg_advisory_xact_lock({LOCK_KEY})")
        wait_until(lambda: in_lock_wait(self.db) == 1, what="statement waiting on the lock")
        killed = psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND application_name = 'followupd' AND wait_event_type = 'Lock'", db=self.db)
        self.assertEqual(killed, [["t"]])
        victim = probe.result("victim")
        self.assertFalse(victim["ok"])
        self.assertTrue(victim["res_null"], victim)
        self.assertIn("terminat", victim["error"])
        lock.release()
        for i in range(20):
            probe.send(f"query after{i} SELECT {i}, pg_backend_pid()")
        pids = set()
        for i in range(20):
            r = probe.result(f"after{i}")
            self.assertTrue(r["ok"], r)
            pids.add(r["rows"][0][1])
        probe.event("pool_state", connected=2)  # the broken connection came back by itself
        stats = probe.stats()
        self.assertEqual(stats["connected"], 2)
        probe.quit(self)

    def test_pool__outage_through_proxy__queued_work_waits_without_busy_loop_then_runs(self):
        proxy = PgProxy(self)
        probe = self.start_pool(2, 50, proxy.conninfo(self.db))
        proxy.refuse()
        probe.event("pool_state", connected=0)
        for i in range(5):
            probe.send(f"query during{i} SELECT {i}")
        cpu_before = probe.cpu_seconds()
        failed_before = probe.log_count("postgres connection attempt failed")
        probe.wait_log("postgres connection attempt failed", count=failed_before + 8)
        self.assertLess(probe.cpu_seconds() - cpu_before, 0.5)  # backoff, not a busy loop
        stats = probe.stats()
        self.assertEqual((stats["connected"], stats["waiting"]), (0, 5))  # waiting, not failed
        self.assertFalse([e for e in probe.events if e["event"] == "result"])
        proxy.forward()
        for i in range(5):
            self.assertEqual(probe.result(f"during{i}")["rows"], [[str(i)]])
        probe.event("pool_state", connected=2)
        probe.quit(self)

    def test_pool__server_down_at_start__retries_quietly_and_comes_up(self):
        proxy = PgProxy(self)
        proxy.refuse()
        probe = self.start_pool(1, 10, proxy.conninfo(self.db), wait=False)
        probe.send("query first SELECT 'first'")
        probe.wait_log("postgres connection attempt failed", count=6)
        self.assertLess(probe.cpu_seconds(), 1.0)
        self.assertEqual(probe.stats()["waiting"], 1)
        proxy.forward()
        self.assertEqual(probe.result("first")["rows"], [["first"]])
        probe.quit(self)

    def test_pool__server_never_answers__own_connect_timeout_then_recovers(self):
        proxy = PgProxy(self)
        proxy.blackhole()
        probe = self.start_pool(1, 10, proxy.conninfo(self.db, "connect_timeout=2"), wait=False)
        probe.wait_log("connection attempt timed out after 2000 ms", timeout=15)
        proxy.forward()
        probe.event("pool_state", connected=1, timeout=15)
        probe.send("query x SELECT 1")
        self.assertTrue(probe.result("x")["ok"])
        probe.quit(self)

    def test_pool__password_in_conninfo__never_logged(self):
        user = os.environ.get("PGUSER", "postgres")
        password = os.environ.get("PGPASSWORD", "")
        secret = password if len(password) >= 4 else "NotTheRealPassword"
        proxy = PgProxy(self)
        proxy.refuse()
        probe = self.start_pool(1, 10, proxy.conninfo(self.db, f"user={user} password={secret}"), wait=False)
        probe.wait_log("postgres connection attempt failed", count=2)
        probe.quit(self)
        self.assertFalse([line for line in probe.log if secret in line])
        self.assertTrue([line for line in probe.log if f"port={proxy.port}" in line])


if __name__ == "__main__":
    unittest.main()
