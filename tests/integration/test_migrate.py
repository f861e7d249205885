"""`followupd --config FILE migrate [--rollback] [--sql-dir DIR]` against a real PostgreSQL: every configured schema
(one of them needing quotes), run twice, the result identical to applying the files with psql, rollback back to the
pristine catalog, the first failure named (schema, file, line) with a non-zero exit, and scripts split into
statements like psql (so CREATE INDEX CONCURRENTLY after a BEGIN/COMMIT block works).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon import BINARY, ROOT, clean_env, parse_log_lines  # noqa: E402
from pgutil import TempDB, migration_files, rollback_files, quote_ident  # noqa: E402
from stack import conninfo  # noqa: E402
from test_migrations import catalog_snapshot  # noqa: E402

SCHEMAS = ("mig_tenant_a", "Mig_Tenant_B")   # the second only works when quoted


def write_config(tmp, dbname, schemas):
    path = os.path.join(tmp, "followupd.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"[database]\nconninfo = {conninfo(dbname)}\nschemas = {','.join(schemas)}\n"
                "[queue]\nbackend = local\n[voice_agent]\nbase_url = http://127.0.0.1:9\n")
    return path


class MigrateCommandTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="followupd-migrate-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.db = TempDB(prefix="ops_migrate").__enter__()
        self.addCleanup(self.db.__exit__, None, None, None)

    def migrate(self, schemas=SCHEMAS, *args, cwd=ROOT):
        conf = write_config(self.tmp, self.db.name, schemas)
        proc = subprocess.run([BINARY, "--config", conf, "migrate", *args], cwd=cwd, env=clean_env(),
                              capture_output=True, text=True, timeout=300)
        records, bad = parse_log_lines(proc.stderr)
        self.assertEqual(bad, [], "every stderr line is one JSON object")
        self.assertEqual(proc.stdout, "", "nothing on stdout")
        for rec in records:
            self.assertNotIn(os.environ.get("PGPASSWORD", "\0") or "\0", json.dumps(rec))
        return proc.returncode, records

    def applied(self, records):
        return [(r["schema"], r["file"]) for r in records if r.get("msg") == "applied"]

    def test_migrate__two_schemas_twice__same_catalog_as_psql_and_second_run_succeeds(self):
        for schema in SCHEMAS:
            self.db.apply_lad_table(schema)
        files = [os.path.basename(p) for p in migration_files()]
        for run in (1, 2):
            code, records = self.migrate()
            self.assertEqual(code, 0, records)
            self.assertEqual(self.applied(records), [(s, f) for s in SCHEMAS for f in files], f"run {run}")
            self.assertEqual([r["schema"] for r in records if r.get("msg") == "schema done"], list(SCHEMAS))
            self.assertEqual(records[-1]["msg"], "all schemas done")
        # The same result as the documented psql procedure, in a database of its own.
        with TempDB(prefix="ops_migrate_ref") as ref:
            for schema in SCHEMAS:
                ref.apply_lad_table(schema)
                ref.apply_migrations(schema)
                self.assertEqual(catalog_snapshot(self.db, schema), catalog_snapshot(ref, schema), schema)
        # The trigger works in both schemas: the migration really ran inside each of them.
        for schema in SCHEMAS:
            self.assertEqual(self.db.query(
                f"SELECT count(*) FROM pg_trigger WHERE tgrelid = '{quote_ident(schema)}.lead_bookings'::regclass "
                "AND tgname LIKE 'followupd_notify_%'"), [("3",)])

    def test_rollback__after_migrate__pristine_catalog_twice(self):
        pristine = {}
        for schema in SCHEMAS:
            self.db.apply_lad_table(schema)
            pristine[schema] = catalog_snapshot(self.db, schema)
        self.assertEqual(self.migrate()[0], 0)
        self.assertNotEqual(catalog_snapshot(self.db, SCHEMAS[0]), pristine[SCHEMAS[0]])
        files = [os.path.basename(p) for p in rollback_files()]   # reverse file-name order
        for _ in range(2):
            code, records = self.migrate(SCHEMAS, "--rollback")
            self.assertEqual(code, 0, records)
            self.assertEqual(self.applied(records), [(s, f) for s in SCHEMAS for f in files])
            self.assertTrue(all(r["direction"] == "rollback" for r in records if r.get("msg") == "applied"))
            for schema in SCHEMAS:
                self.assertEqual(catalog_snapshot(self.db, schema), pristine[schema], schema)

    def test_migrate__schema_without_table__exit_1_names_schema_file_and_line_and_stops(self):
        self.db.apply_lad_table("mig_ok")
        self.db.psql('CREATE SCHEMA "mig_empty"')
        self.db.apply_lad_table("mig_later")
        code, records = self.migrate(("mig_ok", "mig_empty", "mig_later"))
        self.assertEqual(code, 1)
        failed = [r for r in records if r["level"] == "error"]
        self.assertEqual(len(failed), 1, records)
        self.assertEqual(failed[0]["schema"], "mig_empty")
        self.assertEqual(failed[0]["file"], "001_task_columns.sql")
        self.assertIn("mig_empty", failed[0]["msg"])
        self.assertIn("001_task_columns.sql", failed[0]["msg"])
        self.assertRegex(failed[0]["error"], r"^line \d+: .*lead_bookings")
        self.assertEqual({s for s, _ in self.applied(records)}, {"mig_ok"})   # nothing after the failure
        self.assertEqual(self.db.query("SELECT count(*) FROM information_schema.columns WHERE "
                                       "table_schema = 'mig_later' AND column_name = 'task_status'"), [("0",)])

    def test_sql_dir__psql_style_script__split_like_psql(self):
        self.db.psql("CREATE SCHEMA mig_c")
        sql = os.path.join(self.tmp, "sql")
        os.makedirs(os.path.join(sql, "migrations"))
        os.makedirs(os.path.join(sql, "rollback"))
        with open(os.path.join(sql, "migrations", "001_probe.sql"), "w") as f:
            f.write("-- semicolons in comments; strings; dollar quotes\n"
                    "BEGIN;\n"
                    "CREATE TABLE IF NOT EXISTS probe (id int, note text DEFAULT 'a;b');\n"
                    "DO $body$ BEGIN PERFORM 1; END $body$;\n"
                    "COMMIT;\n"
                    "/* outside any transaction block: */\n"
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS probe_idx ON probe (id);\n")
        with open(os.path.join(sql, "migrations", "002_broken.sql"), "w") as f:
            f.write("SELECT 1;\n\nSELECT * FROM no_such_table;\n")
        with open(os.path.join(sql, "rollback", "001_probe.sql"), "w") as f:
            f.write("DROP TABLE IF EXISTS probe;\n")
        code, records = self.migrate(("mig_c",), "--sql-dir", sql)
        self.assertEqual(code, 1)
        self.assertEqual(self.applied(records), [("mig_c", "001_probe.sql")])
        self.assertEqual([r["statements"] for r in records if r.get("msg") == "applied"], ["5"])
        failed = [r for r in records if r["level"] == "error"][0]
        self.assertEqual(failed["file"], "002_broken.sql")
        self.assertRegex(failed["error"], r'^line 3: .*"no_such_table"')
        # search_path pointed at the schema: the unqualified table and index landed in mig_c, nowhere else.
        self.assertEqual(self.db.query("SELECT schemaname, indexname FROM pg_indexes WHERE indexname = 'probe_idx'"),
                         [("mig_c", "probe_idx")])
        code, records = self.migrate(("mig_c",), "--rollback", "--sql-dir", sql)
        self.assertEqual(code, 0, records)
        self.assertEqual(self.db.query("SELECT count(*) FROM pg_tables WHERE tablename = 'probe'"), [("0",)])

    def test_sql_dir__default_is_sql_of_current_directory_from_the_source_tree(self):
        self.db.apply_lad_table("mig_d")
        code, records = self.migrate(("mig_d",))          # cwd = the repository root, no --sql-dir
        self.assertEqual(code, 0, records)
        start = [r for r in records if r.get("msg") == "starting"][0]
        self.assertEqual(start["sql_dir"], os.path.join(os.path.realpath(ROOT), "sql", "migrations"))

    def test_sql_dir__missing__exit_1_lists_what_was_tried(self):
        code, records = self.migrate(("mig_e",), "--sql-dir", os.path.join(self.tmp, "nope"))
        self.assertEqual(code, 1)
        self.assertIn(os.path.join(self.tmp, "nope"), records[-1]["tried"])
        code, records = self.migrate(("mig_e",), cwd=self.tmp)   # neither installed share dir nor ./sql
        self.assertEqual(code, 1)
        self.assertIn("./sql", records[-1]["tried"])

    def test_cli__rollback_or_sql_dir_without_migrate_or_with_check_config__usage_error(self):
        conf = write_config(self.tmp, self.db.name, ("mig_f",))
        for args in (["--rollback"], ["--sql-dir", self.tmp], ["migrate", "--check-config"], ["migrate", "extra"]):
            proc = subprocess.run([BINARY, "--config", conf, *args], env=clean_env(), capture_output=True,
                                  text=True, timeout=30)
            self.assertEqual(proc.returncode, 2, args)
            self.assertIn("Usage:", proc.stderr)


if __name__ == "__main__":
    unittest.main()
