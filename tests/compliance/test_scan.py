"""Tests of the compliance gate (tests/compliance/scan.py).

Each fixture under tests/compliance/fixtures/<case>/ is a tiny fake repository; the gate is run on it as
`make compliance` runs it on the real tree (a subprocess, FOLLOWUPD_BUILD removed from the environment) and the
whole report is compared line by line.  A few cases drive the checks' functions directly with sources written to
a temporary tree (marker window, malformed markers, the idempotency binary's outcomes).  The last case runs the
gate on the repository itself: it must be READY.
"""
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scan  # noqa: E402

SCANNER = os.path.join(HERE, "scan.py")
FIXTURES = os.path.join(HERE, "fixtures")
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
REPO = "daemon/src/features/deals_pipeline/repositories/bookings_repo.c"
SERVICE = "daemon/src/features/deals_pipeline/services/followup_service.c"
PENDING = "pending: idempotency tests not written yet"
HEADINGS = (
    ("schemas", "Issue #1: Hardcoded Schema Names"),
    ("tenant", "Issue #2: Missing Tenant Filter"),
    ("idempotency", "Issue #3: Non-idempotent handler"),
    ("console", "Issue #4: console.log usage"),
    ("sql_outside", "Issue #5: SQL outside repositories"),
)


def expected_report(ready, **sections):
    """The exact report: sections maps a heading key to its lines (default `none`, #3 pending)."""
    lines = ["🔴 CRITICAL BLOCKERS (Cannot Deploy):"]
    for key, heading in HEADINGS:
        default = [PENDING] if key == "idempotency" else ["none"]
        lines += ["", heading] + list(sections.get(key, default))
    lines.append("📊 Production Readiness: " + ("✅ READY" if ready else "❌ NOT READY"))
    return lines


def run_gate(root, *args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "FOLLOWUPD_BUILD"}
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, SCANNER, *args, root], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, timeout=120)
    return proc.returncode, proc.stdout.decode("utf-8").split("\n")[:-1], proc.stderr.decode("utf-8")


class FixtureTreeTests(unittest.TestCase):
    maxDiff = None

    def assertGate(self, case, ready, *args, env_extra=None, **sections):
        rc, lines, err = run_gate(os.path.join(FIXTURES, case), *args, env_extra=env_extra)
        self.assertEqual(lines, expected_report(ready, **sections))
        self.assertEqual(rc, 0 if ready else 1, err)

    def test_scan__clean_tree__ready_all_none_and_idempotency_pending(self):
        self.assertGate("clean", True)

    def test_scan__printf_in_service__console_finding_and_not_ready(self):
        self.assertGate("printf_in_service", False, console=[
            f"{SERVICE}:8: printf() writes to the console; use the logger (utils/log.h)"])

    def test_scan__printf_in_print_usage_and_print_version__allowed_but_main_flagged(self):
        self.assertGate("cli_help_printf", False, console=[
            "daemon/src/main.c:20: fprintf() writes to the console; use the logger (utils/log.h)"])

    def test_scan__console_calls_in_comments_and_literals__not_flagged(self):
        self.assertGate("printf_in_comment_or_string", True)

    def test_scan__literal_schemas_in_repository_and_migration__schema_findings(self):
        self.assertGate("schema_hardcoded", False, schemas=[
            f'{REPO}:3: hard-coded schema "lad_dev" in a lead_bookings reference',
            f'{REPO}:5: hard-coded schema "lad_prod" in a lead_bookings reference',
            f'{REPO}:8: known schema literal "lad_staging"',
            f'{REPO}:10: hard-coded schema "acme" in a lead_bookings reference',
            'sql/migrations/001_followup.sql:3: hard-coded schema "lad_dev" in a lead_bookings reference',
            'sql/migrations/001_followup.sql:4: hard-coded schema "public" in a lead_bookings reference'])

    def test_scan__statements_without_tenant_id__findings_at_string_start(self):
        self.assertGate("missing_tenant_filter", False, tenant=[
            f"{REPO}:3: SELECT whose WHERE clause lacks tenant_id",
            f"{REPO}:6: UPDATE whose WHERE clause lacks tenant_id",
            f"{REPO}:12: INSERT whose column list lacks tenant_id"])

    def test_scan__cross_tenant_statement_with_listed_marker__ready(self):
        self.assertGate("listed_marker", True)

    def test_scan__marker_with_unlisted_id__marker_and_statement_findings(self):
        self.assertGate("unlisted_marker", False, tenant=[
            f'{REPO}:3: cross-tenant marker id "CT-PURGE-9" not listed in ARCHITECTURE_COMPLIANCE.md',
            f"{REPO}:5: DELETE whose WHERE clause lacks tenant_id"])

    def test_scan__concatenated_sql_with_tenant_id_on_later_line__ready(self):
        self.assertGate("multiline_sql", True)

    def test_scan__pqexec_in_service__sql_outside_repositories_finding(self):
        self.assertGate("pqexec_in_service", False, sql_outside=[
            f"{SERVICE}:8: PQexec() outside features/*/repositories/ and shared/db/"])

    def test_scan__idempotency_tests_present_binary_missing__blocker(self):
        with tempfile.TemporaryDirectory() as build:
            self.assertGate("idempotency_binary_missing", False, env_extra={"FOLLOWUPD_BUILD": build},
                            idempotency=[
                                "tests/unit/test_followup_execution_service.c:1: idempotency test binary "
                                f"{build}/tests/test_followup_execution_service not built (run make)"])

    def test_scan__idempotency_tests_present_with_no_run__pending_and_ready(self):
        self.assertGate("idempotency_binary_missing", True, "--no-run",
                        idempotency=["pending: idempotency tests not run (--no-run)"])


class TreeBuilder(unittest.TestCase):
    """Writes small trees into a temporary root for the function-level cases."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="compliance_")
        self.addCleanup(shutil.rmtree, self.root)

    def write(self, rel, text, mode=None):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text).lstrip("\n"))
        if mode is not None:
            os.chmod(path, mode)
        return path

    def tenant_findings(self):
        return [f"{f.path}:{f.line}: {f.why}"
                for f in scan.check_tenant_filter(self.root, scan.SourceCache(self.root))]


class TenantMarkerTests(TreeBuilder):
    def setUp(self):
        super().setUp()
        self.write("ARCHITECTURE_COMPLIANCE.md", "Approved: `CT-SWEEP-1` (catch-up sweep).\n")

    def test_marker__six_lines_above_statement__does_not_exempt(self):
        self.write(REPO, """
            /* compliance: cross-tenant CT-SWEEP-1 — too far away */
            /* 2 */
            /* 3 */
            /* 4 */
            /* 5 */
            static const char *const Q =
                "SELECT id FROM %s.lead_bookings WHERE status = $1";
        """)
        self.assertEqual(self.tenant_findings(), [f"{REPO}:7: SELECT whose WHERE clause lacks tenant_id"])

    def test_marker__five_lines_above_with_ascii_dash__exempts(self):
        self.write(REPO, """
            // compliance: cross-tenant CT-SWEEP-1 - sweep covers every tenant
            /* 2 */
            /* 3 */
            /* 4 */
            static const char *const Q =
                "SELECT id FROM %s.lead_bookings WHERE status = $1";
        """)
        self.assertEqual(self.tenant_findings(), [])

    def test_marker__missing_reason__malformed_finding_and_statement_flagged(self):
        self.write(REPO, """
            /* compliance: cross-tenant CT-SWEEP-1 */
            static const char *const Q = "DELETE FROM %s.followup_executions";
        """)
        self.assertEqual(self.tenant_findings(), [
            f"{REPO}:1: malformed compliance marker (expected /* compliance: cross-tenant <id> — <reason> */)",
            f"{REPO}:2: DELETE without a WHERE clause (tenant_id filter missing)"])

    def test_marker__id_only_as_prefix_of_listed_id__unlisted(self):
        self.write(REPO, """
            /* compliance: cross-tenant CT-SWEEP — prefix of a listed id */
            static const char *const Q = "SELECT 1";
        """)
        self.assertEqual(self.tenant_findings(), [
            f'{REPO}:1: cross-tenant marker id "CT-SWEEP" not listed in ARCHITECTURE_COMPLIANCE.md'])

    def test_tenant_filter__file_outside_repositories__not_checked(self):
        self.write(SERVICE, 'static const char *const Q = "SELECT id FROM t WHERE id = $1";\n')
        self.assertEqual(self.tenant_findings(), [])


class SqlAnalysisTests(unittest.TestCase):
    def test_sql_problems__tenant_id_only_in_returning__flagged(self):
        self.assertEqual(scan.sql_problems("UPDATE t SET a = 1 WHERE id = $1 RETURNING tenant_id"),
                         ["UPDATE whose WHERE clause lacks tenant_id"])

    def test_sql_problems__tenant_id_in_string_literal__flagged(self):
        self.assertEqual(scan.sql_problems("SELECT id FROM t WHERE note = 'tenant_id'"),
                         ["SELECT whose WHERE clause lacks tenant_id"])

    def test_sql_problems__second_union_branch_unfiltered__flagged(self):
        self.assertEqual(scan.sql_problems("SELECT a FROM t WHERE tenant_id = $1 UNION SELECT a FROM u"),
                         ["SELECT without a WHERE clause (tenant_id filter missing)"])

    def test_sql_problems__update_reading_tenant_scoped_cte__clean(self):
        sql = ("WITH c AS (SELECT id FROM t WHERE tenant_id = $1) "
               "UPDATE t SET a = 1 WHERE id IN (SELECT id FROM c)")
        self.assertEqual(scan.sql_problems(sql), [])

    def test_sql_problems__unscoped_cte__flagged_with_cte_name(self):
        sql = "WITH c AS (SELECT id FROM t WHERE id = $1) UPDATE t SET a = 1 WHERE id IN (SELECT id FROM c)"
        self.assertEqual(scan.sql_problems(sql), ["WITH: CTE c: SELECT whose WHERE clause lacks tenant_id"])

    def test_sql_problems__insert_without_column_list__flagged(self):
        self.assertEqual(scan.sql_problems("INSERT INTO t VALUES ($1, $2)"),
                         ["INSERT without a column list (tenant_id not provably set)"])

    def test_sql_problems__from_inside_function_call__not_a_table_read(self):
        self.assertEqual(scan.sql_problems("SELECT EXTRACT(EPOCH FROM now())"), [])

    def test_sql_problems__transaction_wrapping_unfiltered_update__flagged(self):
        self.assertEqual(scan.sql_problems("BEGIN; UPDATE t SET a = 1 WHERE id = $1; COMMIT"),
                         ["UPDATE whose WHERE clause lacks tenant_id"])

    def test_sql_problems__session_statements_and_log_text__ignored(self):
        for text in ("LISTEN followupd", "SET search_path TO x", "COMMIT", "ROLLBACK",
                     "update failed: could not set status", "SELECT pg_notify($1, $2)"):
            self.assertEqual(scan.sql_problems(text), [], text)


class LexerTests(unittest.TestCase):
    SOURCE = textwrap.dedent(r'''
        /* printf("a") */
        static const char *q =
            "SELECT a "   // x
            /* y */ "FROM t";
        char c = '"'; const char *e = "esc \" \\";
        puts("z");
    ''').lstrip("\n")

    def test_lex_c__adjacent_literals_across_comments__joined_at_first_line(self):
        groups = scan.string_groups(scan.lex_c(self.SOURCE))
        self.assertEqual(groups, [(3, "SELECT a FROM t"), (5, 'esc " \\'), (6, "z")])

    def test_lex_c__comments_and_literals_blanked__lines_preserved(self):
        lexed = scan.lex_c(self.SOURCE)
        self.assertEqual(len(lexed.code), len(self.SOURCE))
        self.assertEqual(lexed.code.count("\n"), self.SOURCE.count("\n"))
        calls = [(scan.line_of(lexed.code, off), call) for off, call in scan.console_calls(lexed.code)]
        self.assertEqual(calls, [(6, "puts()")])

    def test_console_calls__snprintf_and_file_fputs__not_console(self):
        code = "snprintf(b, n, x); vsnprintf(b, n, x, ap); fputs(s, f); fputs(s, stderr); write(fd, b, n);"
        self.assertEqual([call for _, call in scan.console_calls(code)], ["fputs() on stdout/stderr"])


class IdempotencyRunTests(TreeBuilder):
    def setUp(self):
        super().setUp()
        self.write(scan.IDEMPOTENCY_TEST_SRC, "int main(void) { return 0; }\n")
        self.build = os.path.join(self.root, "out")

    def fake_binary(self, script):
        self.write(os.path.join("out", scan.IDEMPOTENCY_TEST_BIN), "#!/bin/sh\n" + script,
                   mode=stat.S_IRWXU)

    def test_check_idempotency__binary_passes__no_finding(self):
        self.fake_binary("echo '[  PASSED  ] 3 test(s).'\n")
        self.assertEqual(scan.check_idempotency(self.root, self.build, True), ([], None))

    def test_check_idempotency__binary_fails__blocker_with_exit_status(self):
        self.fake_binary("echo '[  FAILED  ] 1 test(s).'\nexit 1\n")
        findings, note = scan.check_idempotency(self.root, self.build, True)
        self.assertEqual([f.why for f in findings],
                         ["idempotency tests out/tests/test_followup_execution_service failed (exit status 1)"])
        self.assertIsNone(note)

    def test_check_idempotency__binary_passes_no_test__blocker(self):
        self.fake_binary("echo '[==========] 0 test(s) run.'\n")
        findings, _ = scan.check_idempotency(self.root, self.build, True)
        self.assertEqual([f.why for f in findings],
                         ["idempotency tests out/tests/test_followup_execution_service reported no passing test"])

    def test_main__build_flag__overrides_environment(self):
        self.fake_binary("echo '[  PASSED  ] 1 test(s).'\n")
        rc, lines, _ = run_gate(self.root, "--build", self.build,
                                env_extra={"FOLLOWUPD_BUILD": os.path.join(self.root, "nowhere")})
        self.assertEqual((rc, lines), (0, expected_report(True, idempotency=["none"])))


class RepositoryGateTests(unittest.TestCase):
    def test_scan__this_repository__ready(self):
        env = dict(os.environ)
        proc = subprocess.run([sys.executable, SCANNER, REPO_ROOT], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, timeout=900)
        report = proc.stdout.decode("utf-8")
        self.assertEqual(proc.returncode, 0, report + proc.stderr.decode("utf-8"))
        self.assertTrue(report.endswith("📊 Production Readiness: ✅ READY\n"), report)


if __name__ == "__main__":
    unittest.main()
