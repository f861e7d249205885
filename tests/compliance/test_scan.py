"""Unit tests of the compliance gate's parts (tests/compliance/gate_*.py, rule_*.py, scan.py).

Each check is driven with small sources written to a temporary tree, or with SQL text directly; the evidence
checks with synthetic evidence (the real evidence run is exercised by test_mutations.py).  No PostgreSQL needed.
"""
import os
import shutil
import stat
import sys
import tempfile
import textwrap
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gate_bind  # noqa: E402
import gate_c  # noqa: E402
import gate_sql  # noqa: E402
import rule_console  # noqa: E402
import rule_idempotency  # noqa: E402
import rule_layering  # noqa: E402
import rule_payload  # noqa: E402
import rule_schema  # noqa: E402
import rule_tenant  # noqa: E402
import scan  # noqa: E402
from gate_tree import Finding, Section, Tree  # noqa: E402

REPO = "daemon/src/features/deals_pipeline/repositories/bookings_repository.c"
SERVICE = "daemon/src/features/deals_pipeline/services/followup_service.c"
CONTROLLER = "daemon/src/features/deals_pipeline/controllers/x_controller.c"
UUID1 = "11111111-1111-4111-8111-111111111111"
UUID2 = "22222222-2222-4222-8222-222222222222"
ISO = "2030-01-01T00:00:00.000Z"


class TreeCase(unittest.TestCase):
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

    def whys(self, section):
        return [f"{f.path}:{f.line}: {f.why}" for f in section.findings]


# -- the C lexer --------------------------------------------------------------------------------------------------
class LexerTests(unittest.TestCase):
    SOURCE = textwrap.dedent(r'''
        #define COLS "a, b"
        #define WHERE_T " WHERE tenant_id = $1"
        /* printf("a") */
        static const char *q =
            "SELECT " COLS   // x
            /* y */ " FROM t" WHERE_T;
        char c = '"'; const char *e = "esc \" \\";
        puts("z");
    ''').lstrip("\n")

    def lexed(self):
        return gate_c.lex_c(self.SOURCE)

    def test_sql_strings__literals_and_string_macros_adjacent__joined_at_first_line(self):
        lexed = self.lexed()
        values = [(s.line, s.value) for s in gate_c.sql_strings(lexed, gate_c.string_macros(lexed))]
        self.assertEqual(values, [(5, "SELECT a, b FROM t WHERE tenant_id = $1"), (7, 'esc " \\'), (8, "z")])

    def test_lex_c__comments_and_literals_blanked__offsets_and_lines_kept(self):
        lexed = self.lexed()
        self.assertEqual(len(lexed.code), len(self.SOURCE))
        self.assertEqual(lexed.code.count("\n"), self.SOURCE.count("\n"))
        self.assertNotIn("printf", lexed.code)

    def test_references__member_access_and_longer_names__not_references(self):
        code = "puts(x); s.puts(y); p->puts(z); sb_puts(w); puts_(v); (puts)(u);"
        self.assertEqual([n for _, n in gate_c.references(code, {"puts"})], ["puts", "puts"])

    def test_enclosing_call__argument_of_nested_call__innermost_call_and_arguments(self):
        code = "f(a, g(b, stderr), c);"
        self.assertEqual(gate_c.enclosing_call(code, code.index("stderr")), ("g", ["b", "stderr"]))

    def test_declared_functions__prototypes_and_pointer_typedefs__only_functions(self):
        code = ("typedef void (*cb_t)(int);\nint db_query(struct p *p, const char *sql)\n"
                "    __attribute__((warn_unused_result));\nstruct x { void (*error)(int); };\n"
                "static inline int ok(void) { return f(1); }\n")
        self.assertEqual(sorted(gate_c.declared_functions(gate_c.lex_c(code).code)), ["db_query", "ok"])


# -- SQL: schema qualification ---------------------------------------------------------------------------------------
class QualifiedNameTests(unittest.TestCase):
    CASES = [
        ("SELECT id FROM %s.lead_bookings WHERE tenant_id = $1", []),
        ("SELECT id FROM lad_dev.lead_bookings", ['schema "lad_dev" in lad_dev.lead_bookings']),
        ('SELECT 1 FROM "Acme".leads', ['schema "Acme" in Acme.leads']),
        ("SELECT a FROM t, crm.leads l JOIN %s.x b ON b.id = l.id", ['schema "crm" in crm.leads']),
        ("UPDATE x b SET a = 1 FROM target t, billing.invoices i WHERE b.id = t.id",
         ['schema "billing" in billing.invoices']),
        ("SELECT floor(extract(epoch FROM b.scheduled_at)) FROM %s.lead_bookings b", []),
        ("ALTER TABLE tenant_b.lead_bookings ADD COLUMN x int", ['schema "tenant_b" in tenant_b.lead_bookings']),
        ("COMMENT ON COLUMN lead_bookings.x IS 'y'", []),
        ("COMMENT ON COLUMN s.lead_bookings.x IS 'y'", ['schema "s" in s.lead_bookings.x']),
        ("CREATE INDEX i ON other.t (x)", ['schema "other" in other.t']),
        ("CREATE TRIGGER t AFTER UPDATE ON lead_bookings FOR EACH ROW WHEN (OLD.a IS DISTINCT FROM NEW.a) "
         "EXECUTE FUNCTION f()", []),
        ("SELECT public.my_fn($1)", ['schema "public" in public.my_fn()']),
        ("SELECT 1 FROM pg_catalog.pg_class", []),
        ("SELECT 'x.y'::regclass", ['schema "x" in x.y (regclass)']),
        ("CREATE SCHEMA IF NOT EXISTS lad_dev", ['schema "lad_dev" named in SQL']),
        ("DO $x$ BEGIN EXECUTE 'DELETE FROM billing.invoices'; END $x$", ['schema "billing" in billing.invoices']),
        ("DO $$ BEGIN SELECT max(a) INTO v FROM archive.h; END $$", ['schema "archive" in archive.h']),
        ("SET search_path TO lad_prod", ["search_path set to the literal lad_prod"]),
        ("SET LOCAL search_path = 'tenant_a', public", ["search_path set to the literal tenant_a"]),
        ("SELECT set_config('search_path', 'acme', false)", ["search_path set to the literal acme"]),
        ("SELECT set_config('search_path', $1, false)", []),
        ("SET search_path TO ", []),
    ]

    def test_qualified_names__each_case__expected_reasons(self):
        for sql, expected in self.CASES:
            with self.subTest(sql):
                self.assertEqual([r.why for r in gate_sql.qualified_names(sql)], expected)


# -- SQL: tenant binding ---------------------------------------------------------------------------------------------
class TenantBindingTests(unittest.TestCase):
    CASES = [
        ("SELECT a FROM t WHERE id = $1 AND tenant_id = $2", []),
        ("SELECT a FROM t WHERE (id = $1 AND tenant_id = $2::uuid)", []),
        ("SELECT a FROM t WHERE $2 = tenant_id", []),
        ("SELECT a FROM t WHERE (id, tenant_id) = ($1, $2)", []),
        ("SELECT a FROM t WHERE id = $1 AND tenant_id IS NOT NULL", ["SELECT from t without tenant_id = $n"]),
        ("SELECT a FROM t WHERE id = $1 OR tenant_id = $2", ["SELECT from t without tenant_id = $n"]),
        ("SELECT a FROM t WHERE NOT tenant_id = $1", ["SELECT from t without tenant_id = $n"]),
        ("SELECT a FROM t WHERE id = $1 AND tenant_id = tenant_id", ["SELECT from t without tenant_id = $n"]),
        ("SELECT tenant_id FROM t WHERE id = $1 -- tenant_id = $2", ["SELECT from t without tenant_id = $n"]),
        ("SELECT id FROM t WHERE note = 'tenant_id = $1'", ["SELECT from t without tenant_id = $n"]),
        ("UPDATE t SET a = 1 WHERE id = $1 RETURNING tenant_id", ["UPDATE of t without tenant_id = $n"]),
        ("SELECT a FROM t WHERE tenant_id = $1 UNION SELECT a FROM u", ["SELECT from u without tenant_id = $n"]),
        ("WITH c AS (SELECT id FROM t WHERE tenant_id = $1) UPDATE t SET a = 1 WHERE id IN (SELECT id FROM c)", []),
        ("WITH c AS (SELECT id FROM t WHERE id = $1) UPDATE t SET a = 1 WHERE id IN (SELECT id FROM c)",
         ["CTE c: SELECT from t without tenant_id = $n", "UPDATE of t without tenant_id = $n"]),
        ("SELECT a FROM t x JOIN u y ON y.id = x.id WHERE x.tenant_id = $1", []),
        ("SELECT a FROM t x JOIN u y ON y.lead_id = x.id WHERE x.tenant_id = $1",
         ["SELECT from u without tenant_id = $n"]),
        ("SELECT a FROM t x, u y WHERE tenant_id = $1",
         ["SELECT from t without tenant_id = $n", "SELECT from u without tenant_id = $n"]),
        ("SELECT a FROM t WHERE tenant_id = $1 AND id = (SELECT max(id) FROM u)",
         ["SELECT from u without tenant_id = $n"]),
        ("INSERT INTO t VALUES ($1, $2)", ["INSERT into t without a column list (tenant_id not provably set)"]),
        ("INSERT INTO t (id, tenant_id) VALUES ($1, $2), ($3, $4)", []),
        ("INSERT INTO t (id, tenant_id) VALUES ($1, 'abc')",
         ["INSERT into t: tenant_id is not given as a $n parameter"]),
        ("INSERT INTO t (id, lead) VALUES ($1, $2)", ["INSERT into t whose column list lacks tenant_id"]),
        ("INSERT INTO t (id, tenant_id) SELECT id, tenant_id FROM u WHERE tenant_id = $1", []),
        ("DELETE FROM t", ["DELETE from t without tenant_id = $n"]),
        ("TRUNCATE lead_bookings", ["TRUNCATE of lead_bookings touches every tenant's rows"]),
        ("BEGIN; UPDATE t SET a = 1 WHERE id = $1; COMMIT", ["UPDATE of t without tenant_id = $n"]),
    ]

    def test_analyze__each_case__expected_problems(self):
        for sql, expected in self.CASES:
            with self.subTest(sql):
                [(_, info)] = gate_bind.analyze(sql)
                self.assertEqual(info.problems, expected)
                self.assertEqual(info.bound, not expected)

    def test_analyze__no_table_read__no_data_statement_touched(self):
        for sql in ("SELECT EXTRACT(EPOCH FROM now())", "SELECT pg_notify($1, $2)", "SELECT count(*) FROM pg_class"):
            with self.subTest(sql):
                [(_, info)] = gate_bind.analyze(sql)
                self.assertEqual((info.tables, info.problems), ([], []))

    def test_analyze__session_statements_and_log_text__not_data_statements(self):
        for text in ("LISTEN followupd", "SET search_path TO x", "update failed: could not set status"):
            with self.subTest(text):
                self.assertEqual(gate_bind.analyze(text), [])

    def test_output_columns__subquery_cast_alias_named_argument__column_names_only(self):
        sql = ("SELECT b.id AS booking, floor(extract(epoch FROM least((SELECT scheduled_at - "
               "make_interval(secs => $1::int) FROM t LIMIT 1)))) * 1000)::bigint, $2 FROM t b")
        [(_, info)] = gate_bind.analyze(sql)
        self.assertEqual(info.returns, ["id", "scheduled_at", "$param"])


# -- Issue #1 --------------------------------------------------------------------------------------------------------
class SchemaRuleTests(TreeCase):
    def test_check__c_template_migration_rollback_and_readme__each_found(self):
        self.write(REPO, 'static const char *Q =\n'
                         '    "UPDATE %s.lead_bookings SET a = 1 FROM crm.leads l WHERE l.id = b.id";\n')
        self.write("sql/migrations/001_x.sql", "SET search_path TO tenant_a;\nALTER TABLE lead_bookings ADD x int;\n")
        self.write("sql/rollback/001_x.sql", "-- lad_prod is where this ran first\nDROP INDEX s1.idx;\n")
        self.write("sql/README.md", "text\n\n```sql\nSELECT 1\n  FROM acme.lead_bookings\n```\n")
        section = rule_schema.check(self.root, Tree(self.root))
        self.assertEqual(self.whys(section), [
            f'{REPO}:2: hard-coded schema "crm" in crm.leads',
            "sql/migrations/001_x.sql:1: hard-coded search_path set to the literal tenant_a",
            'sql/rollback/001_x.sql:1: known schema literal "lad_prod"',
            'sql/rollback/001_x.sql:2: hard-coded schema "s1" in s1.idx',
            'sql/README.md:5: hard-coded schema "acme" in acme.lead_bookings'])

    def test_check__search_path_in_a_connection_option__found_placeholder_not(self):
        self.write(REPO, 'static const char *Q = "SELECT id FROM %s.lead_bookings WHERE tenant_id = $1";\n'
                         'static const char *O = "-c search_path=tenant_a";\n'
                         'static const char *P = "options=\'-c search_path=%s\'";\n')
        self.write("sql/migrations/001_x.sql", "SELECT 1;\n")
        self.assertEqual(self.whys(rule_schema.check(self.root, Tree(self.root))), [
            f"{REPO}:2: hard-coded search_path set to the literal tenant_a in a connection option"])

    def test_check__no_sql_anywhere__not_checked(self):
        self.write(SERVICE, "int x;\n")
        self.assertFalse(rule_schema.check(self.root, Tree(self.root)).ok)


# -- Issue #2 --------------------------------------------------------------------------------------------------------
class TenantRuleTests(TreeCase):
    def setUp(self):
        super().setUp()
        self.write("ARCHITECTURE_COMPLIANCE.md", "Approved: `CT-SWEEP-1` (catch-up sweep).\n")

    def findings(self, source):
        self.write(REPO, source)
        return self.whys(rule_tenant.check(self.root, Tree(self.root)))

    def test_marker__five_lines_above_id_only_read__exempted_and_listed(self):
        self.write(REPO, """
            // compliance: cross-tenant CT-SWEEP-1 - sweep covers every tenant
            /* 2 */
            /* 3 */
            /* 4 */
            static const char *const Q =
                "SELECT tenant_id, id, scheduled_at FROM %s.lead_bookings WHERE status = $1";
        """)
        section = rule_tenant.check(self.root, Tree(self.root))
        self.assertTrue(section.ok, section.findings)
        self.assertIn("1 cross-tenant read exempted: Q [CT-SWEEP-1] returns tenant_id, id, scheduled_at",
                      section.evidence)

    def test_marker__six_lines_above__statement_flagged_and_marker_unused(self):
        self.assertEqual(self.findings("""
            /* compliance: cross-tenant CT-SWEEP-1 — too far away */
            /* 2 */
            /* 3 */
            /* 4 */
            /* 5 */
            static const char *const Q =
                "SELECT id FROM %s.lead_bookings WHERE status = $1";
        """), [f"{REPO}:7: Q: SELECT from lead_bookings without tenant_id = $n",
               f"{REPO}:1: cross-tenant marker CT-SWEEP-1 marks no statement (no SQL starts within 5 lines below)"])

    def test_marker__over_a_write__finding(self):
        self.assertEqual(self.findings("""
            /* compliance: cross-tenant CT-SWEEP-1 — purge */
            static const char *const Q = "DELETE FROM %s.lead_bookings WHERE status = 'x'";
        """), [f"{REPO}:2: Q: cross-tenant marker CT-SWEEP-1 on a write (DELETE lead_bookings); a marker exempts "
               "only reads"])

    def test_marker__read_returning_booking_data__finding(self):
        self.assertEqual(self.findings("""
            /* compliance: cross-tenant CT-SWEEP-1 — sweep */
            static const char *const Q = "SELECT id, lead_id, status FROM %s.lead_bookings WHERE a = $1";
        """), [f"{REPO}:2: Q: cross-tenant read CT-SWEEP-1 returns status; an exempted read returns only ids, "
               "times and counts"])

    def test_marker__aggregates_it_defines__exempted_other_values_not(self):
        self.assertEqual(self.findings("""
            /* compliance: cross-tenant CT-SWEEP-1 — counts */
            static const char *const Q = "SELECT count(*) FILTER (WHERE scheduled_at <= now()) AS waiting, min(scheduled_at) AS oldest FROM %s.lead_bookings WHERE booking_type = $1";
        """), [])
        self.assertEqual(self.findings("""
            /* compliance: cross-tenant CT-SWEEP-1 — not a count */
            static const char *const Q = "SELECT max(notes) AS waiting FROM %s.lead_bookings WHERE a = $1";
        """), [f"{REPO}:2: Q: cross-tenant read CT-SWEEP-1 returns notes; an exempted read returns only ids, "
               "times and counts"])

    def test_marker__on_a_bound_statement_and_a_catalog_read__no_finding_listed_apart(self):
        self.write(REPO, """
            /* compliance: cross-tenant CT-SWEEP-1 — not needed */
            static const char *const Q = "SELECT id FROM %s.lead_bookings WHERE tenant_id = $1";
            /* compliance: cross-tenant CT-SWEEP-1 — a catalog read */
            static const char *const C = "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid";
        """)
        section = rule_tenant.check(self.root, Tree(self.root))
        self.assertTrue(section.ok, section.findings)
        self.assertIn("markers on SQL that needs none: Q [CT-SWEEP-1], C [CT-SWEEP-1]", section.evidence)

    def test_marker__missing_reason_and_unlisted_prefix_id__findings(self):
        self.assertEqual(self.findings("""
            /* compliance: cross-tenant CT-SWEEP-1 */
            /* compliance: cross-tenant CT-SWEEP — prefix of a listed id */
            static const char *const Q = "SELECT 1";
        """), [f"{REPO}:1: malformed compliance marker (expected /* compliance: cross-tenant <id> — <reason> */)",
               f'{REPO}:2: cross-tenant marker id "CT-SWEEP" not listed in ARCHITECTURE_COMPLIANCE.md'])

    def test_check__statement_outside_repositories__checked_too(self):
        self.write(SERVICE, 'static const char *const Q = "SELECT id FROM t WHERE id = $1";\n')
        self.write(REPO, 'static const char *const R = "SELECT id FROM t WHERE tenant_id = $1";\n')
        self.assertEqual(self.whys(rule_tenant.check(self.root, Tree(self.root))),
                         [f"{SERVICE}:1: Q: SELECT from t without tenant_id = $n"])

    def test_check__statement_split_by_a_macro__analyzed_whole(self):
        self.assertEqual(self.findings("""
            #define COND " WHERE id = $1"
            static const char *const Q = "UPDATE %s.lead_bookings SET a = 1" COND;
        """), [f"{REPO}:2: Q: UPDATE of lead_bookings without tenant_id = $n"])

    def test_check__no_statement__not_checked(self):
        self.write(REPO, "int x;\n")
        self.assertFalse(rule_tenant.check(self.root, Tree(self.root)).ok)


# -- Issue #4 --------------------------------------------------------------------------------------------------------
class ConsoleTests(unittest.TestCase):
    CASES = [
        ('void f(void){ fprintf(stderr, "x"); }', ["fprintf() writes to the console"]),
        ('void f(void){ FILE *out = stderr; fputs("x", out); }',
         ["stderr used outside the logger (an alias of a standard stream)"]),
        ('void f(void){ syslog(LOG_ERR, "x"); }', ["syslog() writes to the console"]),
        ('void f(void){ warnx("x"); }', ["warnx() writes to the console"]),
        ("void f(void){ write(2, b, n); }", ["write(2, ...) writes to a standard stream"]),
        ("void f(void){ uv_tty_init(loop, &t, 1, 0); }", ["uv_tty_init(1, ...) writes to a standard stream"]),
        ("static int (*p)(const char *, ...) = printf;", ["printf() writes to the console"]),
        ("void f(void){ logger_init(&lg, 1, STDERR_FILENO); }", []),
        ('void f(void){ char err[3]; snprintf(err, 3, "x"); }', []),
        ("void f(const char *fmt, ...) __attribute__((format(printf, 1, 2)));", []),
        ("void f(void){ write(fd, b, n); fputs(s, file); }", []),
        ("#include <syslog.h>\n#define DBG(...) fprintf(stderr, __VA_ARGS__)\n", ["fprintf() writes to the console"]),
    ]

    def test_console_uses__each_case__expected_uses(self):
        for code, expected in self.CASES:
            with self.subTest(code):
                uses = rule_console.console_uses(gate_c.lex_c(code).code, {"logger_init"})
                self.assertEqual(sorted({why for _, why in uses} - {"fprintf() on stderr"}), expected)

    def test_console_uses__calls_in_comments_and_strings__ignored(self):
        code = '/* printf("x") */ const char *s = "puts(y)"; // fprintf(stderr, "")\n'
        self.assertEqual(rule_console.console_uses(gate_c.lex_c(code).code, set()), [])


class ConsoleRuleTests(TreeCase):
    def test_check__cli_text_functions_allowed_main_elsewhere_flagged(self):
        self.write("daemon/src/utils/log.h", "void logger_init(struct logger *lg, int level, int fd);\n")
        self.write("daemon/src/utils/log.c",
                   'void logger_init(struct logger *lg, int l, int fd) { dprintf(fd, "x"); }\n')
        self.write("daemon/src/main.c", """
            static void print_usage(FILE *out) { fprintf(out, "usage\\n"); }
            static void print_version(void) { printf("1\\n"); }
            int main(void) { print_usage(stderr); logger_init(0, 0, STDERR_FILENO); fprintf(stderr, "x"); }
        """)
        section = rule_console.check(self.root, Tree(self.root))
        self.assertEqual(self.whys(section), [
            "daemon/src/main.c:3: fprintf() writes to the console; use the logger (utils/log.h)"])

    def test_check__runtime_output_of_the_evidence_run__findings(self):
        self.write("daemon/src/utils/log.h", "void logger_init(struct logger *lg, int level, int fd);\n")
        runtime = {"daemons": 1, "json_lines": 3, "bad_stderr_lines": ["oops"], "stdout_lines": ["hello"]}
        section = rule_console.check(self.root, Tree(self.root), runtime)
        self.assertEqual([f.why for f in section.findings], [
            "the running daemon wrote to stdout: 'hello'", "the running daemon wrote a non-JSON stderr line: 'oops'"])


# -- Issue #5 --------------------------------------------------------------------------------------------------------
class LayeringTests(TreeCase):
    def setUp(self):
        super().setUp()
        self.write("daemon/src/shared/db/pool.h", "#include <libpq-fe.h>\nint pool_query(void *p, const char *sql);\n")
        self.write("daemon/src/shared/db/pool.c", '#include "shared/db/pool.h"\n'
                   "int pool_query(void *p, const char *sql) { return PQsendQuery(p, sql); }\n")
        self.write("daemon/src/shared/db/naming.h", "int channel_for(const char *schema, char *out);\n")
        self.write("daemon/src/shared/db/naming.c",
                   '#include "shared/db/naming.h"\nint channel_for(const char *s, char *o) { return 0; }\n')
        self.write("daemon/src/features/f/repositories/r.c",
                   '#include "shared/db/pool.h"\nint load(void *p) { return pool_query(p, "SELECT 1"); }\n')

    def check(self):
        return rule_layering.check(self.root, Tree(self.root))

    def test_check__controller_uses_a_pure_db_helper__clean(self):
        self.write(CONTROLLER, '#include "shared/db/naming.h"\nint g(char *o) { return channel_for("s", o); }\n')
        section = self.check()
        self.assertTrue(section.ok, section.findings)
        self.assertIn("database layer found: 2 modules (pool, r)", section.evidence)

    def test_check__include_reaching_the_pool_through_a_header__finding_names_the_path(self):
        controller = "daemon/src/features/f/controllers/x_controller.c"
        self.write("daemon/src/features/f/controllers/x_controller.h", '#include "shared/db/pool.h"\n')
        self.write(controller, '#include "features/f/controllers/x_controller.h"\n')
        self.assertIn(f"{controller}:1: includes the database layer (daemon/src/shared/db/pool.h) through "
                      "daemon/src/features/f/controllers/x_controller.h", self.whys(self.check()))

    def test_check__service_calls_pool_and_pq_without_include__findings(self):
        service = "daemon/src/features/f/services/s.c"
        self.write(service, 'int pool_query(void *, const char *);\nint h(void *p) { pool_query(p, "x"); '
                            'return PQexec(p, "SELECT 1 FROM t"); }\n')
        whys = self.whys(self.check())
        self.assertIn(f"{service}:2: calls pool_query() of the database layer (daemon/src/shared/db/pool)", whys)
        self.assertIn(f"{service}:2: uses libpq (PQexec)", whys)
        self.assertIn(f"{service}:2: PQexec() sends SQL outside features/*/repositories/ and shared/db/", whys)
        self.assertIn(f"{service}:2: holds SQL text ('SELECT 1 FROM t')", whys)


# -- Issue #3 --------------------------------------------------------------------------------------------------------
class IdempotencyRuleTests(TreeCase):
    def setUp(self):
        super().setUp()
        self.src = self.write("daemon/src/x.c", "int x;\n")
        self.write(rule_idempotency.EVIDENCE_RUNNER, "# same_task_twice\n")
        self.build = os.path.join(self.root, "build")
        self.binary = self.write("build/followupd", "#!/bin/sh\n", mode=stat.S_IRWXU)

    def test_freshness__binary_older_than_a_source__problem_names_the_source(self):
        os.utime(self.binary, (time.time() - 60, time.time() - 60))
        self.assertEqual(rule_idempotency.freshness_problem(self.root, self.binary),
                         "build/followupd is older than daemon/src/x.c: not built from the current sources "
                         "(run make compliance)")

    def test_freshness__binary_newer__no_problem(self):
        os.utime(self.src, (time.time() - 60, time.time() - 60))
        self.assertIsNone(rule_idempotency.freshness_problem(self.root, self.binary))

    def test_produce__runner_missing__evidence_failure(self):
        os.remove(os.path.join(self.root, rule_idempotency.EVIDENCE_RUNNER))
        ev = rule_idempotency.produce(self.root, self.build)
        self.assertEqual((ev.data, ev.failure), (None, f"{rule_idempotency.EVIDENCE_RUNNER} is missing: no evidence"))

    def test_postgres_problem__nothing_listening__problem(self):
        saved = dict(os.environ)
        self.addCleanup(lambda: (os.environ.clear(), os.environ.update(saved)))
        os.environ.update(PGHOST="127.0.0.1", PGPORT="1")
        self.assertIn("no PostgreSQL reachable through PG* (127.0.0.1:1)", rule_idempotency.postgres_problem())

    def scenario(self, **kw):
        base = {"name": "same_task_twice", "path": "callback", "what": "twice", "error": None, "deliveries": 2,
                "answers": [[200, {"status": "executed"}]], "requests": 1, "unique_calls": 1,
                "expect": {"requests": 1, "unique_calls": 1}}
        base.update(kw)
        return base

    def check(self, scenarios):
        ev = rule_idempotency.Evidence(data={"scenarios": scenarios}, binary=self.binary)
        return rule_idempotency.check(self.root, ev)

    def test_check__second_call_counted__finding_and_missing_scenarios_named(self):
        section = self.check([self.scenario(requests=2)])
        self.assertIn("tests/compliance/evidence.py:1: same_task_twice (twice): requests = 2, exactly once means 1; "
                      "answers 1x 200 executed", self.whys(section))
        self.assertIn("tests/compliance/evidence.py:1: killed_mid_call: scenario did not run", self.whys(section))

    def test_check__scenario_error__finding(self):
        section = self.check([self.scenario(error="AssertionError: boom")])
        self.assertIn("tests/compliance/evidence.py:1: same_task_twice: could not be shown: AssertionError: boom",
                      self.whys(section))

    def test_check__every_scenario_as_expected__ok(self):
        section = self.check([self.scenario(name=n) for n in rule_idempotency.REQUIRED])
        self.assertTrue(section.ok, section.findings)


# -- Issue #6 --------------------------------------------------------------------------------------------------------
class PayloadRuleTests(unittest.TestCase):
    BODY = {"tenantId": UUID1, "bookingId": UUID2, "leadId": UUID1, "assignedUserId": None, "schema": "tenant_a",
            "scheduledAt": ISO, "idempotencyKey": f"followup:{UUID1}:{UUID2}:{ISO}"}

    def task(self, body=None, headers=None, hits=(), mode="oidc"):
        import json
        return {"mode": mode, "name": "projects/p/tasks/abc", "body": json.dumps(body or self.BODY),
                "headers": headers or {"Content-Type": "application/json"}, "secret_hits": list(hits)}

    def test_task_findings__clean_task__none(self):
        self.assertEqual(rule_payload.task_findings(self.task()), [])

    def test_task_findings__extra_key_bad_shape_header_secret__each_found(self):
        body = dict(self.BODY, token="abc", leadId="not-a-uuid")
        whys = [w for w, _ in rule_payload.task_findings(
            self.task(body, {"Content-Type": "x", "X-CloudTasks-Secret": "s"}, ["auth.shared_secret"]))]
        self.assertEqual(whys, [
            "task abc… (oidc mode): the create request contains the configured auth.shared_secret",
            "task abc… (oidc mode): the task carries HTTP header X-CloudTasks-Secret",
            'task abc… (oidc mode): payload leadId = "not-a-uuid" is not of its field\'s shape',
            "task abc… (oidc mode): payload key 'token' is not a task payload field (tenantId, bookingId, leadId, "
            "assignedUserId, schema, scheduledAt, idempotencyKey)"])

    def test_check__no_shared_secret_task__finding(self):
        with tempfile.TemporaryDirectory() as root:
            ev = rule_idempotency.Evidence(data={"tasks": [self.task()], "secrets_checked": ["x"]})
            section = rule_payload.check(root, ev, Tree(root))
        self.assertEqual([f.why for f in section.findings],
                         ["no task was created in shared_secret mode: its payload is unchecked"])


# -- the report ------------------------------------------------------------------------------------------------------
class ReportTests(unittest.TestCase):
    def results(self, **override):
        results = {k: Section([], f"checked {k}") for k in scan.KEYS}
        results.update(override)
        return results

    def test_format_report__all_ok__exact_shape_and_ready(self):
        text, ready = scan.format_report(self.results())
        lines = text.split("\n")
        self.assertTrue(ready)
        self.assertEqual(lines[:4], ["🔴 CRITICAL BLOCKERS (Cannot Deploy):", "", "Issue #1: Hardcoded Schema Names",
                                     "✅ checked schemas"])
        self.assertEqual(lines[4], "none")
        self.assertEqual(lines[-2:], ["📊 Production Readiness: ✅ READY", ""])

    def test_format_report__section_that_checked_nothing__not_ready(self):
        text, ready = scan.format_report(self.results(tenant=Section([], "saw nothing", checked=False)))
        self.assertFalse(ready)
        self.assertIn("Issue #2: Missing Tenant Filter\n❌ saw nothing\nnone\n", text)

    def test_format_report__findings__sorted_lines_under_the_verdict(self):
        findings = [Finding("b.c", 2, "two"), Finding("a.c", 9, "one")]
        text, ready = scan.format_report(self.results(console=Section(findings, "83 files")))
        self.assertFalse(ready)
        self.assertIn("Issue #4: console.log usage\n❌ 83 files\na.c:9: one\nb.c:2: two\n", text)
        self.assertTrue(text.endswith("📊 Production Readiness: ❌ NOT READY\n"))


if __name__ == "__main__":
    unittest.main()
