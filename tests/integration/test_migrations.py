"""Integration tests for sql/migrations and sql/rollback on the LAD table lead_bookings (real PostgreSQL).

Applies the LAD table and followupd's migrations (twice) to schemas with awkward names, then checks the columns,
constraints and indexes, the NOTIFY trigger (channel, payload, which changes notify and which do not, failure
handling), the catch-up query published in sql/README.md against years of history, and that the rollback
restores the table's catalog exactly. Needs PG* in the environment; every run uses its own database.
"""
import os
import re
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgutil import (REPO_ROOT, PsqlError, TempDB, migration_files, notify_channel, quote_ident, quote_literal,
                    rollback_files)

LONG_SCHEMA = "tenänt_63_bytes_" + "x" * 46  # 'ä' is two bytes in UTF-8: 63 bytes, 62 characters
SCHEMAS = ["tenant_a", "Weird-Schema", LONG_SCHEMA]
README = os.path.join(REPO_ROOT, "sql", "README.md")
REAL_KEY_SUFFIX = "2026-11-28T16:00:00.000Z"

EXPECTED_COLUMNS = {
    # name: (type, not null, default)
    "task_name": ("text", False, None),
    "task_scheduled_at": ("timestamp with time zone", False, None),
    "task_status": ("character varying(30)", True, "'pending'::character varying"),
    "executed_at": ("timestamp with time zone", False, None),
    "execution_started_at": ("timestamp with time zone", False, None),
    "execution_attempts": ("integer", True, "0"),
    "last_execution_error": ("text", False, None),
    "schedule_attempts": ("integer", True, "0"),
    "next_attempt_at": ("timestamp with time zone", False, None),
    "idempotency_key": ("character varying(255)", False, None),
}
TASK_STATUSES = ["pending", "scheduled", "in_progress", "executed", "cancelled", "failed"]


def table(schema):
    return f"{quote_ident(schema)}.lead_bookings"


def regclass(schema):
    return f"{quote_literal(table(schema))}::regclass"


def regnamespace(schema):
    return f"{quote_literal(quote_ident(schema))}::regnamespace"


def insert_booking(booking=None, tenant=None, booking_type="follow_up", status="scheduled",
                   scheduled_at="now() + interval '5 minutes'", **extra):
    """An INSERT as the Node backend writes it (unqualified: run with the schema in search_path). The default is
    a follow-up due within the trigger's default notify window (900 s), so it notifies."""
    cols = {"id": quote_literal(booking or str(uuid.uuid4())), "tenant_id": quote_literal(tenant or str(uuid.uuid4())),
            "lead_id": "gen_random_uuid()", "booking_type": quote_literal(booking_type),
            "status": quote_literal(status), "scheduled_at": scheduled_at}
    cols.update(extra)
    return f"INSERT INTO lead_bookings ({', '.join(cols)}) VALUES ({', '.join(cols.values())});"


def readme_queries():
    """{name: (parameter types, sql)} for every `<!-- query name(types) -->` block in sql/README.md."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    found = re.findall(r"<!-- query (\w+)\(([^)]*)\) -->\s*```sql\n(.*?)```", text, re.S)
    return {name: (types, sql.strip()) for name, types, sql in found}


def catalog_snapshot(db, schema):
    """Everything about lead_bookings and its schema that a migration could add or change."""
    rc = regclass(schema)
    ns = regnamespace(schema)
    return {
        "columns": db.query(f"""
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
                   col_description(a.attrelid, a.attnum), a.attnum
              FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = {rc} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"""),
        "constraints": db.query(f"""
            SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint
             WHERE conrelid = {rc} ORDER BY conname"""),
        "indexes": db.query(f"""
            SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index
             WHERE indrelid = {rc} ORDER BY 1"""),
        "triggers": db.query(f"""
            SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger
             WHERE tgrelid = {rc} AND NOT tgisinternal ORDER BY tgname"""),
        "functions": db.query(f"""
            SELECT proname, pg_get_function_identity_arguments(oid) FROM pg_proc
             WHERE pronamespace = {ns} ORDER BY 1, 2"""),
        "relations": db.query(f"""
            SELECT relname, relkind FROM pg_class WHERE relnamespace = {ns} ORDER BY 1"""),
        "table_comment": db.query(f"SELECT obj_description({rc}, 'pg_class')"),
    }


class MigrationFilesTest(unittest.TestCase):
    """Static rules for the files themselves."""

    def test_file_names__numbered_and_paired__every_migration_has_a_rollback(self):
        migrations = [os.path.basename(p) for p in migration_files()]
        rollbacks = sorted(os.path.basename(p) for p in rollback_files())
        self.assertTrue(migrations)
        for name in migrations + rollbacks:
            self.assertRegex(name, r"^\d{3}_[a-z0-9_]+\.sql$")
        self.assertEqual(migrations, rollbacks)

    def test_sql_files__schema_names_or_search_path__absent(self):
        for path in migration_files() + rollback_files():
            with open(path, encoding="utf-8") as f:
                code = re.sub(r"--[^\n]*", "", f.read()).lower()
            with self.subTest(file=os.path.basename(path)):
                self.assertNotRegex(code, r"[\w\"]\s*\.\s*(lead_bookings|followupd_\w+)\b")
                self.assertNotRegex(code, r"\b(public|pg_temp|lad_dev)\s*\.")
                self.assertNotIn("search_path", code)
                self.assertNotIn("create schema", code)
                self.assertNotIn("current_schema", code)


class AppliedMigrationsTest(unittest.TestCase):
    """LAD table + migrations applied twice to three schemas with awkward names."""

    @classmethod
    def setUpClass(cls):
        cls.db = TempDB().__enter__()
        try:
            for schema in SCHEMAS:
                cls.db.apply_lad_table(schema)
                cls.db.apply_migrations(schema)
                cls.db.apply_migrations(schema)
        except BaseException:
            cls.db.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.db.__exit__(None, None, None)

    def capture(self, schema, sql, channel_schema=None):
        return self.db.capture_notifications(notify_channel(channel_schema or schema), sql, schema=schema)

    def test_long_schema__name__is_63_bytes(self):
        self.assertEqual(len(LONG_SCHEMA.encode("utf-8")), 63)
        rows = self.db.query(f"SELECT nspname FROM pg_namespace WHERE nspname = {quote_literal(LONG_SCHEMA)}")
        self.assertEqual(rows, [(LONG_SCHEMA,)])

    def test_columns__every_schema__types_nullability_defaults(self):
        for schema in SCHEMAS:
            rows = self.db.query(f"""
                SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
                  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                 WHERE a.attrelid = {regclass(schema)} AND a.attnum > 0 AND NOT a.attisdropped""")
            got = {name: (typ, notnull == "t", default) for name, typ, notnull, default in rows}
            with self.subTest(schema=schema):
                for name, expected in EXPECTED_COLUMNS.items():
                    self.assertEqual(got.get(name), expected, name)

    def test_task_status__each_allowed_value__accepted(self):
        tenant = str(uuid.uuid4())
        for status in TASK_STATUSES:
            self.db.psql(insert_booking(tenant=tenant, task_status=quote_literal(status)), schema="tenant_a")
        rows = self.db.query(f"SELECT count(*) FROM lead_bookings WHERE tenant_id = {quote_literal(tenant)}",
                             schema="tenant_a")
        self.assertEqual(rows, [(str(len(TASK_STATUSES)),)])

    def test_task_status__unknown_value__rejected_by_check(self):
        proc = self.db.psql_run(insert_booking(task_status="'done'"), schema="Weird-Schema", check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("lead_bookings_followupd_task_status_check", proc.stderr)

    def test_task_status__new_row__defaults_to_pending_with_zero_counters(self):
        booking = str(uuid.uuid4())
        self.db.psql(insert_booking(booking=booking), schema=LONG_SCHEMA)
        rows = self.db.query(f"SELECT task_status, execution_attempts, schedule_attempts, task_name, next_attempt_at "
                             f"FROM lead_bookings WHERE id = {quote_literal(booking)}", schema=LONG_SCHEMA)
        self.assertEqual(rows, [("pending", "0", "0", None, None)])

    def test_idempotency_key__real_107_char_key__stored_intact(self):
        tenant, booking = str(uuid.uuid4()), str(uuid.uuid4())
        key = f"followup:{tenant}:{booking}:{REAL_KEY_SUFFIX}"
        self.assertEqual(len(key), 107)
        self.db.psql(insert_booking(booking=booking, tenant=tenant, idempotency_key=quote_literal(key)),
                     schema="tenant_a")
        rows = self.db.query(f"SELECT idempotency_key FROM lead_bookings WHERE id = {quote_literal(booking)}",
                             schema="tenant_a")
        self.assertEqual(rows, [(key,)])

    def test_idempotency_key__256_chars__rejected(self):
        proc = self.db.psql_run(insert_booking(idempotency_key=quote_literal("k" * 256)), schema="tenant_a",
                                check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("value too long for type character varying(255)", proc.stderr)

    def test_idempotency_key__duplicate_in_same_tenant__rejected(self):
        tenant = str(uuid.uuid4())
        key = quote_literal(f"followup:{tenant}:dup")
        self.db.psql(insert_booking(tenant=tenant, idempotency_key=key), schema="Weird-Schema")
        proc = self.db.psql_run(insert_booking(tenant=tenant, idempotency_key=key), schema="Weird-Schema",
                                check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn('duplicate key value violates unique constraint "lead_bookings_followupd_idempotency_key_uq"',
                      proc.stderr)

    def test_idempotency_key__same_key_other_tenant_or_null__accepted(self):
        tenant = str(uuid.uuid4())
        key = quote_literal(f"followup:{tenant}:shared")
        self.db.psql(insert_booking(tenant=tenant, idempotency_key=key)
                     + insert_booking(idempotency_key=key)
                     + insert_booking(tenant=tenant) + insert_booking(tenant=tenant), schema="Weird-Schema")
        rows = self.db.query(f"SELECT count(*), count(idempotency_key) FROM lead_bookings "
                             f"WHERE tenant_id = {quote_literal(tenant)}", schema="Weird-Schema")
        self.assertEqual(rows, [("3", "1")])

    def test_unique_constraint__columns__tenant_id_then_idempotency_key(self):
        for schema in SCHEMAS:
            rows = self.db.query(f"""
                SELECT contype, pg_get_constraintdef(oid), convalidated FROM pg_constraint
                 WHERE conrelid = {regclass(schema)} AND conname LIKE 'lead_bookings\\_followupd\\_%'
                 ORDER BY conname""")
            with self.subTest(schema=schema):
                self.assertEqual(rows[0][0], "u")
                self.assertEqual(rows[0][1], "UNIQUE (tenant_id, idempotency_key)")
                self.assertEqual(rows[1][0], "c")
                for status in TASK_STATUSES:
                    self.assertIn(f"'{status}'", rows[1][1])
                self.assertEqual([r[2] for r in rows], ["t", "t"])

    def test_indexes__sweep_and_task__partial_on_scheduled_at_and_valid(self):
        for schema in SCHEMAS:
            rows = dict(self.db.query(f"""
                SELECT c.relname, pg_get_indexdef(i.indexrelid) || ' valid=' || i.indisvalid
                  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 WHERE i.indrelid = {regclass(schema)}"""))
            with self.subTest(schema=schema):
                sweep = rows["lead_bookings_followupd_sweep_idx"]
                self.assertRegex(sweep, r"btree \(scheduled_at\) WHERE \(?\(?task_status\)?::text = ANY")
                for status in ("pending", "failed", "in_progress"):
                    self.assertIn(f"'{status}'", sweep)
                self.assertNotIn("'scheduled'", sweep)
                task = rows["lead_bookings_followupd_task_idx"]
                self.assertIn("btree (scheduled_at) WHERE ((task_name IS NOT NULL)", task)
                self.assertIn("'cancelled'", task)
                self.assertTrue(sweep.endswith("valid=true") and task.endswith("valid=true"))

    def test_trigger_function__each_schema__own_copy_security_invoker_no_search_path(self):
        for schema in SCHEMAS:
            rows = self.db.query(f"""
                SELECT prosecdef, proconfig, l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
                 WHERE proname = 'followupd_notify_booking' AND pronamespace = {regnamespace(schema)}""")
            with self.subTest(schema=schema):
                self.assertEqual(rows, [("f", None, "plpgsql")])

    def test_triggers__each_schema__after_row_insert_update_of_delete(self):
        for schema in SCHEMAS:
            rows = dict(self.db.query(f"""
                SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger
                 WHERE tgrelid = {regclass(schema)} AND NOT tgisinternal"""))
            with self.subTest(schema=schema):
                self.assertEqual(sorted(rows), ["followupd_notify_delete", "followupd_notify_insert",
                                                "followupd_notify_update"])
                self.assertIn("AFTER UPDATE OF status, scheduled_at, booking_type", rows["followupd_notify_update"])
                for tg in rows.values():
                    self.assertIn("FOR EACH ROW", tg)
                    self.assertIn("followupd_notify_booking('follow_up,followup,auto_follow_up,auto_followup', "
                                  "'900')", tg)

    def test_notify__insert__channel_and_ids_only_payload(self):
        for schema in SCHEMAS:
            tenant, booking = str(uuid.uuid4()), str(uuid.uuid4())
            got = self.capture(schema, insert_booking(booking=booking, tenant=tenant))
            with self.subTest(schema=schema):
                self.assertEqual(len(got), 1)
                self.assertEqual(got[0].channel, notify_channel(schema))
                self.assertEqual(len(got[0].channel), 42)
                self.assertEqual(got[0].json(), {"schema": schema, "tenantId": tenant, "bookingId": booking,
                                                 "op": "INSERT"})

    def test_notify__channel__is_md5_of_schema_name_bytes(self):
        rows = self.db.query(f"SELECT 'followupd_' || md5({quote_literal(LONG_SCHEMA)})")
        self.assertEqual(rows, [(notify_channel(LONG_SCHEMA),)])

    def test_notify__insert_in_other_schema__not_on_this_schema_channel(self):
        got = self.capture("tenant_a", insert_booking(), channel_schema="Weird-Schema")
        self.assertEqual(got, [])

    def test_notify__updates_of_other_columns_or_same_values__silent(self):
        booking = str(uuid.uuid4())
        self.db.psql(insert_booking(booking=booking), schema="tenant_a")
        where = f"WHERE id = {quote_literal(booking)}"
        got = self.capture("tenant_a", f"""
            UPDATE lead_bookings SET notes = 'called the lead', updated_at = now() {where};
            UPDATE lead_bookings SET metadata = '{{"a": 1}}' {where};
            UPDATE lead_bookings SET task_status = 'scheduled', task_name = 'projects/p/locations/l/queues/q/tasks/t',
                   task_scheduled_at = scheduled_at, schedule_attempts = schedule_attempts + 1 {where};
            UPDATE lead_bookings SET task_status = 'in_progress', execution_started_at = now(),
                   execution_attempts = execution_attempts + 1 {where};
            UPDATE lead_bookings SET task_status = 'executed', executed_at = now(), last_execution_error = NULL {where};
            UPDATE lead_bookings SET status = status, scheduled_at = scheduled_at, booking_type = booking_type {where};
        """)
        self.assertEqual(got, [])

    def test_notify__update_of_status_scheduled_at_or_booking_type__one_each(self):
        tenant, booking = str(uuid.uuid4()), str(uuid.uuid4())
        self.db.psql(insert_booking(booking=booking, tenant=tenant), schema="Weird-Schema")
        where = f"WHERE id = {quote_literal(booking)}"
        got = self.capture("Weird-Schema", f"""
            UPDATE lead_bookings SET scheduled_at = scheduled_at + interval '1 minute' {where};
            UPDATE lead_bookings SET booking_type = 'auto_follow_up' {where};
            UPDATE lead_bookings SET status = 'cancelled', notes = 'lead asked' {where};
        """)
        expected = {"schema": "Weird-Schema", "tenantId": tenant, "bookingId": booking, "op": "UPDATE"}
        self.assertEqual([n.json() for n in got], [expected] * 3)

    def test_notify__delete_of_a_row_with_a_task__notifies_with_op_delete_and_its_task(self):
        tenant, booking, key = str(uuid.uuid4()), str(uuid.uuid4()), "followup:k"
        task = "projects/p/locations/l/queues/q/tasks/t"
        self.db.psql(insert_booking(booking=booking, tenant=tenant, task_name=quote_literal(task),
                                    idempotency_key=quote_literal(key), task_generation="2"), schema=LONG_SCHEMA)
        got = self.capture(LONG_SCHEMA, f"DELETE FROM lead_bookings WHERE id = {quote_literal(booking)};")
        self.assertEqual([n.json() for n in got],
                         [{"schema": LONG_SCHEMA, "tenantId": tenant, "bookingId": booking, "op": "DELETE",
                           "taskName": task, "idempotencyKey": key, "taskGeneration": 2}])

    def test_notify__delete_of_a_row_without_a_task__silent(self):
        booking = str(uuid.uuid4())
        self.db.psql(insert_booking(booking=booking), schema=LONG_SCHEMA)
        got = self.capture(LONG_SCHEMA, f"DELETE FROM lead_bookings WHERE id = {quote_literal(booking)};")
        self.assertEqual(got, [])

    def test_notify__rolled_back_insert__silent_and_row_absent(self):
        booking = str(uuid.uuid4())
        got = self.capture("tenant_a", f"BEGIN; {insert_booking(booking=booking)} ROLLBACK;")
        self.assertEqual(got, [])
        self.assertEqual(self.db.query(f"SELECT count(*) FROM lead_bookings WHERE id = {quote_literal(booking)}",
                                       schema="tenant_a"), [("0",)])

    def test_notify__multi_row_transaction__one_per_row_at_commit(self):
        tenant = str(uuid.uuid4())
        ids = [str(uuid.uuid4()) for _ in range(3)]
        got = self.capture("tenant_a", "BEGIN;" + "".join(insert_booking(booking=b, tenant=tenant) for b in ids)
                           + "COMMIT;")
        self.assertEqual([n.json()["bookingId"] for n in got], ids)

    def test_notify__insert_from_another_session__delivered_to_listener(self):
        tenant, booking = str(uuid.uuid4()), str(uuid.uuid4())
        with self.db.listener(notify_channel("Weird-Schema")) as listener:
            self.db.psql(insert_booking(booking=booking, tenant=tenant), schema="Weird-Schema")
            got = listener.wait_for(lambda n: n.json()["bookingId"] == booking)
        self.assertEqual(got.json(), {"schema": "Weird-Schema", "tenantId": tenant, "bookingId": booking,
                                      "op": "INSERT"})

    def test_readme_queries__every_published_shape__prepares(self):
        queries = readme_queries()
        self.assertIn("catch_up", queries)
        for name, (types, sql) in queries.items():
            with self.subTest(query=name):
                self.db.psql(f"PREPARE {name}({types}) AS {sql};", schema="tenant_a")


class HistoryTest(unittest.TestCase):
    """A table with years of history before followupd is installed."""

    SCHEMA = "History Tenant"  # a space: PGOPTIONS needs it escaped
    HISTORY_ROWS = 100_000
    FOLLOW_UP_TYPES = "'{follow_up,auto_follow_up}'"
    LOOKBACK_SECS = 3600
    HORIZON_SECS = 30 * 86400 - 3600

    @classmethod
    def setUpClass(cls):
        cls.db = TempDB().__enter__()
        try:
            cls.db.apply_lad_table(cls.SCHEMA)
            # Three years of history, every 15 minutes, ending 2 hours ago; mostly follow-ups.
            cls.db.psql(f"""
                INSERT INTO lead_bookings (tenant_id, lead_id, booking_type, status, scheduled_at, created_at)
                SELECT ('00000000-0000-0000-0000-' || lpad((g % 7)::text, 12, '0'))::uuid, gen_random_uuid(),
                       CASE WHEN g % 5 = 0 THEN 'meeting' ELSE 'follow_up' END,
                       CASE WHEN g % 11 = 0 THEN 'cancelled' ELSE 'scheduled' END,
                       now() - interval '2 hours' - g * interval '15 minutes',
                       now() - interval '2 hours' - g * interval '15 minutes' - interval '1 day'
                  FROM generate_series(1, {cls.HISTORY_ROWS}) g;""", schema=cls.SCHEMA)
            cls.filenode_before = cls.filenode()
            cls.db.apply_migrations(cls.SCHEMA)
            cls.filenode_after = cls.filenode()
            cls.db.psql("ANALYZE lead_bookings;", schema=cls.SCHEMA)
        except BaseException:
            cls.db.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.db.__exit__(None, None, None)

    @classmethod
    def filenode(cls):
        return cls.db.query(f"SELECT pg_relation_filenode({regclass(cls.SCHEMA)})")

    def execute(self, name, args, explain=False):
        types, sql = readme_queries()[name]
        prefix = "EXPLAIN " if explain else ""
        return self.db.query(f"PREPARE q({types}) AS {sql};\n{prefix}EXECUTE q({args});", schema=self.SCHEMA)

    def catch_up_args(self, limit=1000):
        return f"{self.FOLLOW_UP_TYPES}, {self.LOOKBACK_SECS}, {self.HORIZON_SECS}, {limit}"

    def test_migrations__table_with_history__not_rewritten(self):
        self.assertEqual(self.filenode_before, self.filenode_after)

    def test_history_rows__after_migrations__read_pending(self):
        rows = self.db.query("SELECT task_status, count(*) FROM lead_bookings WHERE created_at < now() - "
                             "interval '1 day' GROUP BY 1", schema=self.SCHEMA)
        self.assertEqual(rows, [("pending", str(self.HISTORY_ROWS))])

    def test_catch_up__history_and_ineligible_rows__never_returned(self):
        tenant = str(uuid.uuid4())
        wanted = {name: str(uuid.uuid4()) for name in ("pending_soon", "pending_just_past", "failed_retry_due",
                                                        "auto_follow_up")}
        unwanted = {name: str(uuid.uuid4()) for name in ("meeting", "cancelled", "failed_retry_later",
                                                          "failed_given_up", "scheduled", "beyond_horizon",
                                                          "before_lookback", "executed")}
        soon = "now() + interval '1 hour'"
        self.db.psql("".join([
            insert_booking(wanted["pending_soon"], tenant, scheduled_at=soon),
            insert_booking(wanted["pending_just_past"], tenant, scheduled_at="now() - interval '10 minutes'"),
            insert_booking(wanted["failed_retry_due"], tenant, scheduled_at=soon, task_status="'failed'",
                           next_attempt_at="now() - interval '1 second'"),
            insert_booking(wanted["auto_follow_up"], tenant, booking_type="auto_follow_up", scheduled_at=soon),
            insert_booking(unwanted["meeting"], tenant, booking_type="meeting", scheduled_at=soon),
            insert_booking(unwanted["cancelled"], tenant, status="cancelled", scheduled_at=soon),
            insert_booking(unwanted["failed_retry_later"], tenant, scheduled_at=soon, task_status="'failed'",
                           next_attempt_at="now() + interval '5 minutes'"),
            insert_booking(unwanted["failed_given_up"], tenant, scheduled_at=soon, task_status="'failed'"),
            insert_booking(unwanted["scheduled"], tenant, scheduled_at=soon, task_status="'scheduled'"),
            insert_booking(unwanted["executed"], tenant, scheduled_at=soon, task_status="'executed'"),
            insert_booking(unwanted["beyond_horizon"], tenant, scheduled_at="now() + interval '31 days'"),
            insert_booking(unwanted["before_lookback"], tenant, scheduled_at="now() - interval '61 minutes'"),
        ]), schema=self.SCHEMA)
        try:
            rows = self.execute("catch_up", self.catch_up_args())
            self.assertEqual(sorted(r[0] for r in rows), sorted(wanted.values()))
            self.assertEqual({r[1] for r in rows}, {tenant})
        finally:
            self.db.psql(f"DELETE FROM lead_bookings WHERE tenant_id = {quote_literal(tenant)};", schema=self.SCHEMA)

    def test_catch_up__any_window_up_to_the_recent_past__no_history_row(self):
        # Even a lookback of 1h59m (history ends 2 h ago) returns nothing on a table of pure history.
        rows = self.execute("catch_up", f"{self.FOLLOW_UP_TYPES}, {2 * 3600 - 60}, {self.HORIZON_SECS}, 1000")
        self.assertEqual(rows, [])

    def test_catch_up__100k_history__range_scans_sweep_index(self):
        plan = "\n".join(r[0] for r in self.execute("catch_up", self.catch_up_args(), explain=True))
        self.assertIn("Index Scan using lead_bookings_followupd_sweep_idx", plan)
        self.assertNotIn("Seq Scan", plan)

    def test_task_sweeps__100k_history__use_task_index(self):
        for name, args in (("cancelled_tasks", "100"), ("reschedule_sweep", f"{self.FOLLOW_UP_TYPES}, 100")):
            with self.subTest(query=name):
                plan = "\n".join(r[0] for r in self.execute(name, args, explain=True))
                self.assertIn("lead_bookings_followupd_task_idx", plan)
                self.assertNotIn("Seq Scan", plan)


class RollbackTest(unittest.TestCase):
    """Rollbacks restore the catalog exactly and keep what followupd did not add."""

    def setUp(self):
        self.db = TempDB().__enter__()
        self.addCleanup(self.db.__exit__, None, None, None)

    def test_rollback__twice_after_migrations_twice__catalog_equals_pristine(self):
        schema = "Roll Back"
        self.db.apply_lad_table(schema)
        pristine = catalog_snapshot(self.db, schema)
        self.db.apply_migrations(schema)
        self.db.apply_migrations(schema)
        self.assertNotEqual(catalog_snapshot(self.db, schema), pristine)
        self.db.apply_rollback(schema)
        self.assertEqual(catalog_snapshot(self.db, schema), pristine)
        self.db.apply_rollback(schema)
        self.assertEqual(catalog_snapshot(self.db, schema), pristine)
        # And the round trip can be repeated.
        self.db.apply_migrations(schema)
        self.db.apply_rollback(schema)
        self.assertEqual(catalog_snapshot(self.db, schema), pristine)

    def test_rollback__on_untouched_table__changes_nothing(self):
        self.db.apply_lad_table("tenant_b")
        pristine = catalog_snapshot(self.db, "tenant_b")
        self.db.apply_rollback("tenant_b")
        self.assertEqual(catalog_snapshot(self.db, "tenant_b"), pristine)

    def test_rollback__other_schema__untouched(self):
        for schema in ("tenant_a", "tenant_b"):
            self.db.apply_lad_table(schema)
            self.db.apply_migrations(schema)
        migrated = catalog_snapshot(self.db, "tenant_b")
        self.db.apply_rollback("tenant_a")
        self.assertEqual(catalog_snapshot(self.db, "tenant_b"), migrated)

    def test_rollback__column_that_existed_before__kept_with_its_comment(self):
        schema = "tenant_c"
        self.db.apply_lad_table(schema)
        self.db.psql("ALTER TABLE lead_bookings ADD COLUMN task_name TEXT;"
                     "COMMENT ON COLUMN lead_bookings.task_name IS 'LAD: set by the Node backend';", schema=schema)
        pristine = catalog_snapshot(self.db, schema)
        self.db.apply_migrations(schema)
        self.db.apply_rollback(schema)
        self.assertEqual(catalog_snapshot(self.db, schema), pristine)

    def test_migrations__existing_column_of_other_type__fail_without_changes(self):
        schema = "tenant_d"
        self.db.apply_lad_table(schema)
        self.db.psql("ALTER TABLE lead_bookings ADD COLUMN task_status INT;", schema=schema)
        pristine = catalog_snapshot(self.db, schema)
        with self.assertRaises(PsqlError) as ctx:
            self.db.apply_migrations(schema)
        self.assertIn("lead_bookings.task_status already exists as integer", str(ctx.exception))
        self.assertEqual(catalog_snapshot(self.db, schema), pristine)

    def test_seed_varchar100_key__migrated__widened_in_place_and_rollback_restores_it(self):
        schema = "Seed-Tenant"
        self.db.apply_lad_table(schema)
        self.db.psql("ALTER TABLE lead_bookings ADD COLUMN idempotency_key VARCHAR(100);"
                     "COMMENT ON COLUMN lead_bookings.idempotency_key IS 'seed key';"
                     + insert_booking(idempotency_key="'old-key'"), schema=schema)
        pristine = catalog_snapshot(self.db, schema)
        filenode = self.db.query(f"SELECT pg_relation_filenode({regclass(schema)})")
        self.db.apply_migrations(schema)
        self.db.apply_migrations(schema)
        self.assertEqual(self.db.query(f"SELECT pg_relation_filenode({regclass(schema)})"), filenode)
        self.assertEqual(self.db.query(f"SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                       f"WHERE attrelid = {regclass(schema)} AND attname = 'idempotency_key'"),
                         [("character varying(255)",)])
        tenant, booking = str(uuid.uuid4()), str(uuid.uuid4())
        long_key = quote_literal(f"followup:{tenant}:{booking}:{REAL_KEY_SUFFIX}")
        self.db.psql(insert_booking(booking, tenant, idempotency_key=long_key), schema=schema)

        # A 107-character key is stored: narrowing back would fail, so the rollback keeps the width and warns.
        proc = self.db.run(["-f", rollback_files()[-2]], schema=schema)
        self.assertIn("keeps VARCHAR(255): a stored key has 107 characters, more than 100", proc.stderr)
        self.db.psql(f"DELETE FROM lead_bookings WHERE id = {quote_literal(booking)};", schema=schema)

        self.db.apply_rollback(schema)
        self.db.apply_rollback(schema)
        self.assertEqual(catalog_snapshot(self.db, schema), pristine)
        self.assertEqual(self.db.query("SELECT idempotency_key FROM lead_bookings", schema=schema), [("old-key",)])


class NotifyFailureTest(unittest.TestCase):
    """An error inside pg_notify() must not fail the backend's INSERT."""

    def test_insert__pg_notify_raises_permission_denied__row_committed_with_warning(self):
        schema = "tenant_a"
        role = f"sql_writer_{uuid.uuid4().hex[:12]}"
        tenant, ok_booking, failing_booking = (str(uuid.uuid4()) for _ in range(3))
        with TempDB() as db:
            db.apply_lad_table(schema)
            db.apply_migrations(schema)
            db.psql(f"CREATE ROLE {role} NOLOGIN;"
                    f"GRANT USAGE ON SCHEMA {quote_ident(schema)} TO {role};"
                    f"GRANT SELECT, INSERT ON {table(schema)} TO {role};")
            try:
                channel = notify_channel(schema)
                proc = db.psql_run(f"""
                    LISTEN {channel};
                    SET ROLE {role};
                    {insert_booking(ok_booking, tenant)}
                    RESET ROLE;
                    REVOKE EXECUTE ON FUNCTION pg_notify(text, text) FROM PUBLIC;
                    SET ROLE {role};
                    {insert_booking(failing_booking, tenant)}
                    RESET ROLE;
                    NOTIFY {channel}, 'sentinel';
                """, schema=schema)
                rows = db.query(f"SELECT id FROM lead_bookings WHERE tenant_id = {quote_literal(tenant)} ORDER BY id",
                                schema=schema)
            finally:
                db.psql(f"DROP OWNED BY {role}; DROP ROLE {role};")
        notes = [line for line in proc.stdout.splitlines() if line.startswith("Asynchronous notification")]
        self.assertEqual(len(notes), 2, proc.stdout)
        self.assertIn(ok_booking, notes[0])
        self.assertIn('payload "sentinel"', notes[1])
        self.assertIn(f"WARNING:  followupd_notify_booking: notify for booking {failing_booking}", proc.stderr)
        self.assertIn("permission denied for function pg_notify", proc.stderr)
        self.assertEqual(sorted(r[0] for r in rows), sorted([ok_booking, failing_booking]))


if __name__ == "__main__":
    unittest.main()
