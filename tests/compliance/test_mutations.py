"""The compliance gate tests itself: rule-breaking edits of a scratch copy of this tree must each turn the report ❌
with the right issue named, and the untouched copy must be ✅ READY.

setUpClass copies the tree (sources with their modification times, no .git, no build dirs) and the parts of the
build the binary is made from (objects, archives, flags stamp, binary) into a temporary directory, so the copy's
binary is as fresh as the tree's and a mutated source recompiles only itself.  Each mutation is a list of
(old, new) edits of one file; an edit whose `old` text is no longer there fails the test (a mutation that no longer
applies would otherwise test nothing).  Static mutations are checked in-process with only their section; after
each, the file gets its content and modification time back.  The build mutations (a weakened lease in the claim,
a payload key) rebuild the copy's binary with make and run the gate as `make compliance` runs it.  Needs PG* (the
evidence run), like the integration tests.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from collections import namedtuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scan  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
SCANNER = os.path.join(HERE, "scan.py")
REPO = "daemon/src/features/deals_pipeline/repositories/bookings_repository.c"
EXEC_SERVICE = "daemon/src/features/deals_pipeline/services/followup_execution_service.c"
SCHED_SERVICE = "daemon/src/features/deals_pipeline/services/followup_scheduler_service.c"
SWEEP_SERVICE = "daemon/src/features/deals_pipeline/services/followup_sweep_service.c"
CONTROLLER = "daemon/src/features/deals_pipeline/controllers/bookings_controller.c"
NOTIFY_CONTROLLER = "daemon/src/features/deals_pipeline/controllers/notifications_controller.c"
ROUTES = "daemon/src/features/deals_pipeline/routes/bookings_routes.c"
BUILD_PARTS = ("obj", "llhttp", "libllhttp.a", "libfollowupd.a", "followupd", ".flags")
GATE_TIMEOUT_S = 600
END = None  # an edit with old=END appends `new` to the file

Mutation = namedtuple("Mutation", "name section path edits expect")


def mutation(name, section, path, edits, expect):
    return Mutation(name, section, path, edits, expect)


def append(text):
    return [(END, "\n" + text + "\n")]


STATIC_MUTATIONS = [
    # -- Issue #1: any schema, any table, any SQL file, search_path --------------------------------------------------
    mutation("repository template qualified by a literal schema", "schemas", REPO,
             [("FROM %s.lead_bookings", "FROM crm_prod.lead_bookings")], 'schema "crm_prod"'),
    mutation("repository join to another table in another schema", "schemas", REPO,
             [("FROM target t WHERE", "FROM target t, billing.invoices i WHERE")],
             'schema "billing" in billing.invoices'),
    mutation("repository calls a schema-qualified function", "schemas", REPO,
             [("executed_at = now()", "executed_at = public.now()")], 'schema "public" in public.now'),
    mutation("migration sets search_path to a literal", "schemas", "sql/migrations/001_task_columns.sql",
             [("BEGIN;\n", "BEGIN;\nSET LOCAL search_path TO tenant_a;\n")], "search_path set to the literal tenant_a"),
    mutation("rollback reads another schema's table inside its DO block", "schemas",
             "sql/rollback/002_idempotency_key.sql",
             [("INTO longest FROM lead_bookings", "INTO longest FROM archive.booking_history")],
             'schema "archive" in archive.booking_history'),
    mutation("shared/db sets search_path to a literal", "schemas", "daemon/src/shared/db/db_migrate.c",
             [('"SET search_path TO "', '"SET search_path TO tenant_a, "')], "search_path set to the literal tenant_a"),
    mutation("core pins search_path in the connection options", "schemas", "daemon/src/core/config.c",
             append('static const char *const pinned_options = "-c search_path=tenant_a";'),
             "search_path set to the literal tenant_a in a connection option"),
    # -- Issue #2: tenant binding, CTEs, markers, any file -----------------------------------------------------------
    mutation("tenant_id equality weakened to IS NOT NULL", "tenant", REPO,
             [("AND tenant_id = $2", "AND tenant_id IS NOT NULL")], "without tenant_id = $n"),
    mutation("a top-level OR lets every tenant's rows through", "tenant", REPO,
             [("WHERE id = $1 AND tenant_id = $2", "WHERE tenant_id = $2 AND id = $1 OR true")],
             "without tenant_id = $n"),
    mutation("claim's locking CTE no longer bound to the tenant", "tenant", REPO,
             [("WHERE b.id = $1 AND b.tenant_id = $2 FOR UPDATE\"", "WHERE b.id = $1 FOR UPDATE\"")],
             "CTE target: SELECT from lead_bookings without tenant_id = $n"),
    mutation("cross-tenant marker over a write", "tenant", REPO,
             [("    [ST_MARK_CANCELLED] =", "    /* compliance: cross-tenant CATCHUP-SWEEP — cancel everywhere */\n"
                                             "    [ST_MARK_CANCELLED] ="),
              ("WHERE id = $1 AND tenant_id = $2 AND task_status IN ('pending', 'scheduled', 'failed')",
               "WHERE task_status IN ('pending', 'scheduled', 'failed')")],
             "cross-tenant marker CATCHUP-SWEEP on a write"),
    mutation("exempted cross-tenant read returns booking data", "tenant", REPO,
             [('"SELECT tenant_id, id FROM %s.lead_bookings"',
               '"SELECT tenant_id, id, booking_type FROM %s.lead_bookings"')],
             "returns booking_type"),
    mutation("cross-tenant marker with an unlisted id", "tenant", REPO,
             [("cross-tenant CATCHUP-SWEEP —", "cross-tenant CATCHUP-SWEEPER —")],
             'marker id "CATCHUP-SWEEPER" not listed'),
    mutation("INSERT into another table without tenant_id", "tenant", REPO,
             append('static const char *const audit_sql =\n'
                    '    "INSERT INTO %s.followup_audit (booking_id, note) VALUES ($1, $2)";'),
             "INSERT into followup_audit whose column list lacks tenant_id"),
    mutation("DELETE outside the repository without tenant_id", "tenant", "daemon/src/shared/db/db_pool.c",
             append('static const char *const purge_sql =\n'
                    '    "DELETE FROM %s.lead_bookings WHERE scheduled_at < now() - interval \'1 year\'";'),
             "DELETE from lead_bookings without tenant_id = $n"),
    # -- Issue #4: every route to the console ------------------------------------------------------------------------
    mutation("fprintf(stderr) in a service", "console", EXEC_SERVICE,
             append('static void debug_dump(const char *m) { fprintf(stderr, "%s\\n", m); }'), "fprintf() writes"),
    mutation("stderr aliased, then fputs", "console", NOTIFY_CONTROLLER,
             append("static void trace(const char *m) { FILE *out = stderr; fputs(m, out); }"),
             "stderr used outside the logger"),
    mutation("syslog in shared/db", "console", "daemon/src/shared/db/pg_conn.c",
             append('static void note(const char *m) { syslog(LOG_WARNING, "%s", m); }'), "syslog() writes"),
    mutation("warnx in core", "console", "daemon/src/core/config.c",
             append('static void complain(const char *m) { warnx("%s", m); }'), "warnx() writes"),
    mutation("write(2, ...) in the HTTP server", "console", "daemon/src/shared/http/http_server.c",
             append("static void raw_note(const char *m) { (void)write(2, m, strlen(m)); }"), "write(2, ...)"),
    mutation("dprintf(STDERR_FILENO) in the CLI", "console", "daemon/src/core/cli.c",
             append('static void shout(const char *m) { dprintf(STDERR_FILENO, "%s", m); }'), "dprintf() writes"),
    mutation("printf taken as a function pointer", "console", "daemon/src/utils/timefmt.c",
             append("static int (*const say)(const char *, ...) = printf;"), "printf() writes"),
    mutation("diagnostic macro in a header", "console", "daemon/src/utils/timefmt.h",
             append("#define TIMEFMT_TRACE(...) fprintf(stderr, __VA_ARGS__)"), "fprintf() writes"),
    mutation("puts in main outside --help/--version", "console", "daemon/src/main.c",
             append('static void banner(void) { puts("followupd"); }'), "puts() writes"),
    # -- Issue #5: includes, calls, SQL text -------------------------------------------------------------------------
    mutation("service includes libpq", "sql_outside", EXEC_SERVICE,
             [('#include "features/deals_pipeline/services/followup_execution_service.h"',
               '#include "features/deals_pipeline/services/followup_execution_service.h"\n#include <libpq-fe.h>')],
             "includes the database layer (libpq-fe.h)"),
    mutation("controller includes the pool and queries through it", "sql_outside", CONTROLLER,
             [('#include "features/deals_pipeline/controllers/bookings_controller.h"',
               '#include "features/deals_pipeline/controllers/bookings_controller.h"\n#include "shared/db/db_pool.h"'),
              (END, "\nstatic int raw_query(struct db_pool *p)\n"
                    '{ return db_pool_query(p, "SELECT 1", 0, NULL, NULL, NULL); }\n')],
             "calls db_pool_query() of the database layer"),
    mutation("service declares and calls PQexec itself", "sql_outside", SCHED_SERVICE,
             append("extern void *PQexec(void *conn, const char *query);\n"
                    "static void *direct(void *c)\n"
                    "{ return PQexec(c, \"UPDATE lead_bookings SET task_status = 'failed'\"); }"),
             "uses libpq (PQexec)"),
    mutation("service includes the repository header", "sql_outside", SWEEP_SERVICE,
             [('#include "features/deals_pipeline/services/followup_sweep_service.h"',
               '#include "features/deals_pipeline/services/followup_sweep_service.h"\n'
               '#include "features/deals_pipeline/repositories/bookings_repository.h"')],
             "includes the database layer"),
    mutation("core sends SQL through the pool", "sql_outside", "daemon/src/core/health.c",
             append("static int probe(struct db_pool *p)\n"
                    '{ return db_pool_query(p, "SELECT 1", 0, NULL, NULL, NULL); }'),
             "db_pool_query() sends SQL outside"),
    mutation("route file holds SQL text", "sql_outside", ROUTES,
             append('static const char *const q = "SELECT id FROM %s.lead_bookings WHERE id = $1 AND tenant_id = $2";'),
             "holds SQL text"),
]

LEASE_MUTATION = mutation(
    "claim takes over a live lease (lease condition weakened)", "idempotency", REPO,
    [("t.execution_started_at < now() - make_interval(secs => $4::int)", "$4::int IS NOT NULL")],
    "exactly once means")
PAYLOAD_MUTATION = mutation(
    "task builder emits a field that is not a payload id", "payload", SCHED_SERVICE,
    [('rc |= json_object_set_new(o, "idempotencyKey", json_string(idempotency_key));',
      'rc |= json_object_set_new(o, "idempotencyKey", json_string(idempotency_key));\n'
      '    rc |= json_object_set_new(o, "authToken", json_string(b->task_name));')],
    "payload key 'authToken' is not a task payload field")


def apply_edits(text, edits):
    """text with each (old, new) edit applied to the first occurrence of old; raises when old is missing."""
    for old, new in edits:
        if old is END:
            text += new
            continue
        if old not in text:
            raise AssertionError(f"mutation no longer applies: {old!r} not found")
        text = text.replace(old, new, 1)
    return text


def parse_report(text):
    """{heading: (verdict line, [finding lines])} and the readiness line."""
    sections, current = {}, None
    lines = text.rstrip("\n").split("\n")
    for line in lines[1:-1]:
        if line.startswith("Issue #"):
            current = line
            sections[current] = [None, []]
        elif current and sections[current][0] is None and line:
            sections[current][0] = line
        elif current and line and line != "none":
            sections[current][1].append(line)
    return {k: (v, f) for k, (v, f) in sections.items()}, lines[-1]


def heading_of(key):
    return dict(scan.SECTIONS)[key]


def copy_tree(src, dst):
    shutil.copytree(src, dst, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", "build", "build-*", "__pycache__", "*.o", "*.d"))


def copy_build(src_build, dst_build):
    os.makedirs(dst_build, exist_ok=True)
    for part in BUILD_PARTS:
        src = os.path.join(src_build, part)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dst_build, part), symlinks=True)
        elif os.path.exists(src):
            shutil.copy2(src, os.path.join(dst_build, part))


def sanitize_of(build):
    try:
        with open(os.path.join(build, ".flags"), encoding="utf-8") as f:
            m = re.search(r"-fsanitize=(\S+)", f.read())
    except OSError:
        return ""
    return m.group(1) if m else ""


class MutationTests(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="followupd-gate-")
        cls.root = os.path.join(cls.tmp, "tree")
        cls.build = os.path.join(cls.root, "build")
        src_build = os.environ.get("FOLLOWUPD_BUILD") or os.path.join(REPO_ROOT, "build")
        copy_tree(REPO_ROOT, cls.root)
        copy_build(src_build, cls.build)
        cls.sanitize = sanitize_of(src_build)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------------------------------------
    def path(self, rel):
        return os.path.join(self.root, rel)

    def mutate(self, m, restore=True):
        """Apply m to the copy; with restore, undo content and modification time at cleanup."""
        path = self.path(m.path)
        with open(path, encoding="utf-8") as f:
            original = f.read()
        st = os.stat(path)
        mutated = apply_edits(original, m.edits)   # before the file is opened for writing: a stale edit leaves it whole
        with open(path, "w", encoding="utf-8") as f:
            f.write(mutated)

        def undo():
            with open(path, "w", encoding="utf-8") as f:
                f.write(original)
            if restore:
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        return undo

    def gate(self, *args):
        env = {k: v for k, v in os.environ.items() if k != "FOLLOWUPD_BUILD"}
        proc = subprocess.run([sys.executable, SCANNER, "--build", self.build, *args, self.root],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=GATE_TIMEOUT_S)
        return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")

    def make_binary(self):
        args = ["make", "-C", self.root, "BUILD=build", "build/followupd"]
        if self.sanitize:
            args.append(f"SANITIZE={self.sanitize}")
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        self.assertEqual(proc.returncode, 0, proc.stdout.decode("utf-8", "replace")[-3000:])

    def assertFails(self, text, m, expect_path=None):
        sections, readiness = parse_report(text)
        verdict, findings = sections[heading_of(m.section)]
        self.assertEqual(readiness, "📊 Production Readiness: ❌ NOT READY", text)
        self.assertTrue(verdict.startswith("❌ "), f"{m.name}: {heading_of(m.section)} stayed ✅\n{text}")
        where = expect_path or m.path
        hits = [f for f in findings if f.startswith(where + ":") and m.expect in f]
        self.assertTrue(hits, f"{m.name}: no finding at {where} naming {m.expect!r}\n{text}")

    # -- the untouched copy ------------------------------------------------------------------------------------------
    def test_a_clean_copy__full_gate__ready_with_evidence_in_every_section(self):
        rc, text, err = self.gate()
        sections, readiness = parse_report(text)
        self.assertEqual(readiness, "📊 Production Readiness: ✅ READY", text + err)
        self.assertEqual(rc, 0)
        self.assertEqual(list(sections), [h for _, h in scan.SECTIONS])
        for heading, (verdict, findings) in sections.items():
            self.assertTrue(verdict.startswith("✅ "), f"{heading}: {verdict}")
            self.assertEqual(findings, [], heading)

    # -- static mutations --------------------------------------------------------------------------------------------
    def test_b_static_mutations__each__its_section_fails_naming_the_file(self):
        for m in STATIC_MUTATIONS:
            with self.subTest(m.name):
                undo = self.mutate(m)
                try:
                    text, ready = scan.scan(self.root, self.build, only=(m.section,), run=False)
                finally:
                    undo()
                self.assertFalse(ready)
                self.assertFails(text, m)

    def test_b_static_mutations__cover_every_static_section(self):
        self.assertEqual({m.section for m in STATIC_MUTATIONS}, set(scan.KEYS) - scan.EVIDENCE_KEYS)

    # -- evidence that cannot be produced ----------------------------------------------------------------------------
    def test_c_source_newer_than_binary__idempotency_fails_not_built_from_current_sources(self):
        path = self.path(EXEC_SERVICE)
        st = os.stat(path)
        os.utime(path, (time.time() + 5, time.time() + 5))
        try:
            rc, text, _ = self.gate("--only", "idempotency")
        finally:
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        self.assertEqual(rc, 1)
        self.assertFails(text, mutation("stale binary", "idempotency", None, [], "not built from the current sources"),
                         expect_path="tests/compliance/evidence.py")

    def test_c_evidence_runner_missing__idempotency_and_payload_fail(self):
        runner = self.path("tests/compliance/evidence.py")
        os.rename(runner, runner + ".away")
        try:
            rc, text, _ = self.gate("--only", "idempotency,payload")
        finally:
            os.rename(runner + ".away", runner)
        self.assertEqual(rc, 1)
        for section in ("idempotency", "payload"):
            self.assertFails(text, mutation("runner missing", section, None, [], "evidence.py is missing"),
                             expect_path="tests/compliance/evidence.py")

    def test_c_binary_missing__idempotency_fails_not_built(self):
        binary = os.path.join(self.build, "followupd")
        os.rename(binary, binary + ".away")
        try:
            rc, text, _ = self.gate("--only", "idempotency")
        finally:
            os.rename(binary + ".away", binary)
        self.assertEqual(rc, 1)
        self.assertFails(text, mutation("binary missing", "idempotency", None, [], "not built"),
                         expect_path="tests/compliance/evidence.py")

    def test_c_no_run__evidence_sections_fail(self):
        rc, text, _ = self.gate("--no-run")
        sections, readiness = parse_report(text)
        self.assertEqual(rc, 1)
        for key in scan.EVIDENCE_KEYS:
            self.assertTrue(sections[heading_of(key)][0].startswith("❌ not checked"), text)

    # -- mutations of the binary (rebuilt) ---------------------------------------------------------------------------
    def test_d_lease_weakened__rebuilt_binary__idempotency_fails_with_extra_calls(self):
        undo = self.mutate(LEASE_MUTATION, restore=False)
        try:
            self.make_binary()
            rc, text, err = self.gate("--only", "idempotency")
        finally:
            undo()
        self.assertEqual(rc, 1, text + err)
        self.assertFails(text, LEASE_MUTATION, expect_path="tests/compliance/evidence.py")

    def test_d_payload_key_added__rebuilt_binary__payload_fails(self):
        undo = self.mutate(PAYLOAD_MUTATION, restore=False)
        try:
            self.make_binary()
            rc, text, err = self.gate("--only", "payload")
        finally:
            undo()
        self.assertEqual(rc, 1, text + err)
        self.assertFails(text, PAYLOAD_MUTATION)


if __name__ == "__main__":
    unittest.main()
