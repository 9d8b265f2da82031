"""proj10_large_deletes: what the lesson claims beyond its lock claims (those are tests/test_lessons.py's).

- The batched delete, killed at a random batch (SIGKILL, its session terminated) and run again, deletes every old
  row and touches no other: the rows it keeps are the very same row versions (same xmin) as before. The kill is
  placed without timing: a transaction locks one random old row, so the batches before it commit and the one that
  holds it waits; we see it waiting in pg_locks and kill it there.
- DETACH PARTITION ... CONCURRENTLY interrupted while it waits for an older transaction leaves the partition
  "detach pending"; run again, the migration finishes it (FINALIZE) and drops it.
- What Django sends for the risky `.filter(...).delete()`: one DELETE, no row loaded, as long as nothing cascades and
  no receiver listens; with a receiver, the collector loads every row and deletes 100 primary keys per statement.
- The notes' foreign key (Django's default constraint, DEFERRABLE INITIALLY DEFERRED) is checked when the
  transaction commits, one lookup of event_note per deleted event: the long commit of the risky step, counted in
  pg_stat_xact_user_tables, not timed.
- Every retention step deletes the notes of the events it deletes, and no other note.
- Every step, run as DEMO_COMMANDS.md runs them (new events appended before 0007), leaves the API answering 200:
  after 0007 the log still holds the events written since 0006.
- DeleteInBatches refuses to run where a raw DELETE would skip a receiver or a cascade.
"""

from __future__ import annotations

import json
import random

import psycopg2
import pytest

from tests.conftest import ROWS, manage, query
from tests.test_proj06 import killed_while_waiting_for  # hold a transaction, kill the migration waiting on it

NAME = "proj10_large_deletes"
RISKY = "0002_delete_older_half_in_one_transaction"
BATCHED = "0003_delete_next_quarter_in_batches"
DETACH = "0007_detach_history_partition_concurrently"


KEPT = "SELECT count(*), md5(string_agg(id || ':' || xmin || ':' || created_at, ',' ORDER BY id)) FROM large_event"


def test_batched_delete_killed_at_a_random_batch_deletes_every_old_row_and_touches_no_other(seeded):
    database = seeded(NAME, ROWS)
    manage(NAME, database, "migrate", "demoapp", RISKY)  # the older half is gone: ids (ROWS / 2, ROWS] are left
    first_kept = ROWS * 3 // 4 + 1  # the step keeps the newest quarter of the ids
    kept_before = query(database, KEPT + " WHERE id >= %s", [first_kept])
    locked_row = random.randint(ROWS // 2 + ROWS // 20, first_kept - ROWS // 20)  # past the first batch, before the last

    killed_while_waiting_for(NAME, database, BATCHED, "SELECT id FROM large_event WHERE id = %s FOR UPDATE", [locked_row])

    assert query(database, "SELECT name FROM django_migrations WHERE name = %s", [BATCHED]) == []
    [(left, below)] = query(database, "SELECT count(*) FILTER (WHERE id < %s), count(*) FILTER (WHERE id < %s) "
                                      "FROM large_event", [first_kept, locked_row])
    assert 0 < left < first_kept - ROWS // 2 - 1, "the kill must leave the delete half-done"
    assert below < locked_row - ROWS // 2 - 1, "the batches before the locked row must have committed"

    manage(NAME, database, "migrate", "demoapp", BATCHED)
    assert query(database, "SELECT count(*) FROM large_event WHERE id < %s", [first_kept]) == [(0,)]
    # The newest quarter: every row still there, each the same row version as before (no update, no re-insert).
    assert query(database, KEPT + " WHERE id >= %s", [first_kept]) == kept_before
    assert kept_before[0][0] == ROWS - first_kept + 1


def test_detach_interrupted_while_waiting_is_finished_by_the_next_run(seeded):
    database = seeded(NAME, ROWS)
    manage(NAME, database, "migrate", "demoapp", "0006_partition_by_attaching_history")
    # A report that started before the detach: DETACH ... CONCURRENTLY marks the partition "detach pending",
    # commits, and waits for it. Killed there, the partition is left pending.
    killed_while_waiting_for(
        NAME, database, DETACH, "SELECT count(*) FROM large_event WHERE id > %s", [0],
        also="EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = 'large_event_history'::regclass AND inhdetachpending)",
    )
    assert query(database, "SELECT inhdetachpending FROM pg_inherits "
                           "WHERE inhrelid = 'large_event_history'::regclass") == [(True,)]

    again = manage(NAME, database, "migrate", "demoapp", DETACH)
    assert "large_event: detached large_event_history (FINALIZE)" in again.stdout
    assert "small_event: detached small_event_history (CONCURRENTLY)" in again.stdout
    assert query(database, "SELECT to_regclass('large_event_history'), to_regclass('small_event_history')") == [
        (None, None)]
    assert query(database, "SELECT inhrelid::regclass::text FROM pg_inherits "
                           "WHERE inhparent = 'large_event'::regclass") == [("large_event_current",)]


DELETE_STATEMENTS = """
from django.core.management import call_command
from django.db import connection
from django.db.models.signals import post_delete
from django.test.utils import CaptureQueriesContext
{connect}
with CaptureQueriesContext(connection) as captured:
    call_command("migrate", "demoapp", "{risky}", verbosity=0)
deletes = [q["sql"] for q in captured.captured_queries if q["sql"].startswith('DELETE FROM "large_event"')]
loads = [q["sql"] for q in captured.captured_queries
         if q["sql"].startswith('SELECT "large_event"."id", "large_event"."created_at"')]
print("DELETES", len(deletes), "LOADS", len(loads))
"""


def test_the_risky_delete_is_one_statement_unless_a_receiver_makes_django_load_every_row(seeded):
    plain = manage(NAME, seeded(NAME, ROWS), "shell", "-c", DELETE_STATEMENTS.format(connect="", risky=RISKY))
    assert "DELETES 1 LOADS 0" in plain.stdout
    # Any post_delete receiver (here one for every sender, which a migration's historical model gets too) turns
    # the same line into the collector's path: every row to delete loaded, then deleted 100 ids per statement.
    receiver = "def audit(sender, **kwargs): pass\npost_delete.connect(audit)"
    collected = manage(NAME, seeded(NAME, ROWS), "shell", "-c", DELETE_STATEMENTS.format(connect=receiver, risky=RISKY))
    assert f"DELETES {ROWS // 2 // 100} LOADS 1" in collected.stdout


NOTES_FOREIGN_KEY = ("SELECT condeferrable, condeferred FROM pg_constraint WHERE contype = 'f' "
                     "AND conrelid = 'event_note'::regclass AND confrelid = 'large_event'::regclass")
NOTE_LOOKUPS = ("SELECT COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0) FROM pg_stat_xact_user_tables "
                "WHERE relid = 'event_note'::regclass")


def test_the_notes_foreign_key_checks_every_deleted_event_at_commit(seeded):
    """The DELETE itself looks at no note; the deferred check does, once per deleted event, when the constraints are
    checked (at commit; here SET CONSTRAINTS ALL IMMEDIATE, so that the transaction's own counters can be read)."""
    database = seeded(NAME, ROWS)
    assert query(database, NOTES_FOREIGN_KEY) == [(True, True)]
    deleted = 1_000
    with psycopg2.connect(database) as connection, connection.cursor() as cursor:
        cursor.execute("DELETE FROM large_event WHERE id <= %s", [deleted])
        cursor.execute(NOTE_LOOKUPS)
        assert cursor.fetchone() in (None, (0,)), "the DELETE itself must not look at event_note"
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(NOTE_LOOKUPS)
        assert cursor.fetchone() == (deleted,), "one lookup of event_note per deleted event"
        connection.rollback()
    connection.close()
    # A note on a deleted event: the DELETE goes through, the commit refuses.
    query(database, "INSERT INTO event_note (event_id, text) VALUES (1, 'a note')")
    connection = psycopg2.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM large_event WHERE id = 1")
        with pytest.raises(psycopg2.errors.ForeignKeyViolation):
            connection.commit()
    finally:
        connection.close()


CALL_THE_API = """
from django.test import RequestFactory
from migrationlab import web
factory = RequestFactory()
for _ in range(20):  # the curl loop's requests: /update_order/ naming no row, and /list_large/
    written = web.update_order(factory.get("/update_order/"))
    listed = web.list_large(factory.get("/list_large/"))
    print("ANSWERS", written.status_code, listed.status_code)
"""
NOTES_LEFT = "SELECT array_agg(event_id ORDER BY event_id) FROM event_note"


def test_every_step_as_the_demo_runs_it_keeps_the_api_answering_and_deletes_only_the_notes_of_deleted_events(seeded):
    """DEMO_COMMANDS.md's order: 0002 to 0006, then new events arrive (append_rows), then 0007. After each step the
    API's write and read answer 200 every time (the curl loop's definition of success). A note on an event of each
    part of the log: each retention step deletes the notes of the events it deletes, and only those."""
    database = seeded(NAME, ROWS)
    # 0002 deletes ids up to ROWS / 2, 0003 up to 3 ROWS / 4, 0007 the rest of the seed (the history partition).
    older_half, next_quarter, history = 1, ROWS * 5 // 8, ROWS * 7 // 8
    for event in (older_half, next_quarter, history):
        query(database, "INSERT INTO event_note (event_id, text) VALUES (%s, 'a note') RETURNING id", [event])
    notes_after = {
        "0002_delete_older_half_in_one_transaction": [next_quarter, history],
        "0003_delete_next_quarter_in_batches": [history],
        "0004_add_history_check_not_valid": [history],
        "0005_validate_history_check": [history],
        "0006_partition_by_attaching_history": [history],
    }
    for migration, notes in notes_after.items():
        manage(NAME, database, "migrate", "demoapp", migration)
        assert query(database, NOTES_LEFT) == [(notes,)], migration
        answers = manage(NAME, database, "shell", "-c", CALL_THE_API).stdout
        assert answers.count("ANSWERS 200 200") == 20, (migration, answers)

    appended = manage(NAME, database, "append_rows", "--rows", "1000")
    assert "Appended 1,000 rows to large_event" in appended.stdout
    assert query(database, "SELECT count(*), min(created_at) >= '2025-01-01' FROM large_event_current") == [
        (1000, True)]
    [(new_event,)] = query(database, "SELECT min(id) FROM large_event_current")
    query(database, "INSERT INTO event_note (event_id, text) VALUES (%s, 'a note') RETURNING id", [new_event])

    manage(NAME, database, "migrate", "demoapp", DETACH)
    assert query(database, NOTES_LEFT) == [([new_event],)]
    assert query(database, "SELECT count(*) FROM large_event") == [(1000,)]
    answers = manage(NAME, database, "shell", "-c", CALL_THE_API).stdout
    assert answers.count("ANSWERS 200 200") == 20, answers


def test_append_rows_refused_before_the_partition_says_why_in_one_line(seeded):
    """Events of 2025 break the history CHECK (0004): the command fails with one line, and inserts nothing."""
    database = seeded(NAME, ROWS, "0004_add_history_check_not_valid")
    before = query(database, "SELECT count(*) FROM large_event")
    refused = manage(NAME, database, "append_rows", "--rows", "10", check=False)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1].startswith("CommandError: appending to large_event failed:")
    assert "large_event_history_ends" in refused.stderr and "Traceback" not in refused.stderr
    assert query(database, "SELECT count(*) FROM large_event") == before


REFUSED = """
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.models import Q
from django.db.models.signals import pre_delete
from migrationlab.operations import DeleteInBatches
pre_delete.connect(lambda sender, **kwargs: None, weak=False)
state = MigrationLoader(connection).project_state(("demoapp", "0001_initial"))
operation = DeleteInBatches("largeevent", where=Q(id__lte=10))
try:
    with connection.schema_editor(atomic=False) as editor:
        operation.database_forwards("demoapp", editor, state, state)
except Exception as refusal:
    print("REFUSED", type(refusal).__name__, refusal)
"""


def test_batched_delete_refuses_to_skip_a_receiver(seeded):
    database = seeded(NAME, ROWS)
    done = manage(NAME, database, "shell", "-c", REFUSED)
    assert "REFUSED CommandError large_event: Django would not delete these rows with one plain DELETE" in done.stdout
    assert query(database, "SELECT count(*) FROM large_event") == [(ROWS,)]


JUDGE_ONE_ROW = """
import psycopg2
from django.conf import settings
from django.db import connection
from migrationlab.lockjudge import judge_step
from migrationlab.scenarios import load_project
project = load_project(settings.BASE_DIR)
step = next(step for step in project.steps if step.migration == "{step}")
connection.ensure_connection()
params = connection.get_connection_params()
monitor = psycopg2.connect(**params)
monitor.autocommit = True
judgement = judge_step(project, step, monitor, write_id={row}, table_rows={rows},
                       connect=lambda **extra: psycopg2.connect(**{{**params, **extra}}))
print("VERDICT", judgement.reads, judgement.writes)
"""


def test_the_one_transaction_delete_holds_only_the_rows_it_deletes(seeded):
    """judge_locks probes a row of the older half (tests/test_lessons.py: writes throughout); a write to a row the
    delete keeps, the newest, never waits on it."""
    done = manage(NAME, seeded(NAME, ROWS), "shell", "-c", JUDGE_ONE_ROW.format(step=RISKY, row=ROWS, rows=ROWS))
    assert "VERDICT never never" in done.stdout


def test_the_detach_waits_for_older_transactions_holding_no_lock_on_the_table(seeded):
    """judge_locks holds a transaction open on large_event when the DETACH starts: the DETACH waits for it, and while
    it waits it holds no lock on large_event, and neither the API's read nor its write waits."""
    database = seeded(NAME, ROWS)
    judged = {j["migration"]: j for j in json.loads(manage(NAME, database, "judge_locks", "--json").stdout)}
    detach = judged[DETACH]
    assert detach["stopped_while_waiting"], "the judge must have seen the detach wait for its open transaction"
    for stop in detach["stopped_while_waiting"]:
        assert "DETACH PARTITION" in stop["statement"] and stop["locks"] == []
        assert not stop["read_waited"] and not stop["write_waited"]
    assert detach["waits"] == []
