"""proj04: what the type-change lessons must prove beyond their lock claims (those: tests/test_lessons.py).

- The dual write loses nothing: rows updated and inserted while the batched copy runs, ahead of it, behind it and in
  the very batch it is copying, all end with created_at_new = created_at::timestamptz. The same run without the
  trigger (the original talk's copy) leaves exactly the rows updated behind the copy stale.
- Both releases work against the table at every step: the served code (created_at a DateTimeField) before the swap,
  and the previous release's code (created_at a CharField) after it.
- The risky ALTER rewrites the table (a new relfilenode); the safe sequence never does.

The interleaving is driven by data, not time: transactions of the test hold rows the copy will reach, the copy is
seen waiting for them in pg_locks, the test writes while it waits, then lets it go on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psycopg2
import pytest

from migrationlab.scenarios import get_project
from migrationlab.serving import project_environment
from tests.conftest import ROWS, manage, query

SAFE = "proj04_safe_backfill"
RISKY = "proj04_change_column_type"
COPIER = "copy-under-test"
FAILSAFE_S = 120  # only if the copy never waits where we expect it; a passing run never gets near

# ROWS = 50,000 rows, copied in batches of 10,000 ids: [1, 10001), [10001, 20001), ..., [40001, 50001).
FIRST_STOP = 25_000  # batch 3: the copy waits for the transaction that writes this row
SECOND_STOP = 42_000  # batch 5
MISMATCHED = "SELECT id FROM large_record WHERE created_at_new IS DISTINCT FROM created_at::timestamptz ORDER BY id"
STALE = ("SELECT id FROM large_record WHERE created_at_new IS NOT NULL "
         "AND created_at_new IS DISTINCT FROM created_at::timestamptz ORDER BY id")


def connect(database_url: str, autocommit: bool) -> psycopg2.extensions.connection:
    connection = psycopg2.connect(database_url)
    connection.autocommit = autocommit
    with connection.cursor() as cursor:
        cursor.execute("SET TimeZone = 'UTC'")  # as Django's sessions: text without a zone is read as UTC
        cursor.execute("SET statement_timeout = '60s'")  # failsafe: a write that waited on the copy fails the test
    return connection


def execute(connection, statement: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def wait_until_copy_waits_for(monitor, holder, copy: subprocess.Popen) -> None:
    """Poll pg_locks until the copy's backend waits for the holder's transaction (a row it is about to copy)."""
    holder_pid = holder.get_backend_pid()
    deadline = time.monotonic() + FAILSAFE_S
    while not execute(monitor, "SELECT 1 FROM pg_stat_activity WHERE application_name = %s "
                               "AND %s = ANY(pg_blocking_pids(pid))", [COPIER, holder_pid]):
        assert copy.poll() is None, f"the copy ended before reaching the held row: {copy.stdout.read()}"
        assert time.monotonic() < deadline, "the copy never waited for the held row"
        time.sleep(0.01)  # polling the catalog for a state, not waiting for time to pass


def write(connection, row_id: int, value: str) -> None:
    execute(connection, "UPDATE large_record SET created_at = %s WHERE id = %s", [value, row_id])


def insert(connection, value: str) -> int:
    return execute(connection, "INSERT INTO large_record (name, created_at) VALUES ('new', %s) RETURNING id", [value])[0][0]


@pytest.mark.parametrize("trigger", [True, False], ids=["with the sync trigger", "without it (the talk's copy)"])
def test_rows_written_during_the_copy_end_right_only_with_the_trigger(trigger, seeded):
    database = seeded(SAFE, ROWS)
    manage(SAFE, database, "migrate", "demoapp", "0003_sync_created_at_new_with_trigger")
    if not trigger:
        query(database, 'DROP TRIGGER "large_record_sync_created_at_new" ON large_record')
    project = get_project(SAFE)
    monitor, writer = connect(database, autocommit=True), connect(database, autocommit=True)
    first_holder, second_holder = connect(database, autocommit=False), connect(database, autocommit=False)
    copy = None
    try:
        # Two of the application's writes, each in a transaction still open: the copy will wait for each.
        write(first_holder, FIRST_STOP, "2030-01-01 00:00:01+00")
        write(second_holder, SECOND_STOP, "2030-01-01 00:00:02+00")
        copy = subprocess.Popen(
            [sys.executable, str(project.folder / "manage.py"), "migrate", "demoapp",
             "0004_backfill_created_at_new_batched"],
            cwd=project.folder, env=project_environment(project, database, extra={
                "MIGRATIONLAB_APPLICATION_NAME": COPIER}),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

        # Stop 1: batches 1-2 are committed, batch 3 waits for row 25,000.
        wait_until_copy_waits_for(monitor, first_holder, copy)
        write(writer, 5_000, "2030-01-02 00:00:01+00")  # behind the copy
        write(writer, 15_000, "2030-01-02 00:00:02+00")  # behind
        write(writer, 35_000, "2030-01-02 00:00:03+00")  # ahead (batch 4)
        write(writer, 45_000, "2030-01-02 00:00:04+00")  # ahead (batch 5)
        inserted = insert(writer, "2030-01-02 00:00:05+00")  # a new row, past the last id the copy knew
        if trigger:
            assert execute(monitor, STALE) == [], "with the trigger, a copied value is never stale"
        first_holder.commit()  # the first write commits; the copy takes batch 3 and goes on

        # Stop 2: batches 3-4 are committed, batch 5 waits for row 42,000.
        wait_until_copy_waits_for(monitor, second_holder, copy)
        write(writer, FIRST_STOP, "2030-01-03 00:00:01+00")  # behind (it was written during its own batch)
        write(writer, 35_000, "2030-01-03 00:00:02+00")  # behind now (written ahead of the copy at stop 1)
        write(writer, inserted, "2030-01-03 00:00:03+00")  # the row inserted at stop 1
        insert(writer, "2030-01-03 00:00:04+00")
        if trigger:
            assert execute(monitor, STALE) == [], "with the trigger, a copied value is never stale"
        second_holder.commit()

        output = copy.communicate(timeout=FAILSAFE_S)[0]
        assert copy.returncode == 0, output
        mismatched = [row_id for (row_id,) in execute(monitor, MISMATCHED)]
        total = execute(monitor, "SELECT count(*) FROM large_record")[0][0]
    finally:
        if copy is not None and copy.poll() is None:
            copy.kill()
            copy.communicate()
        for connection in (first_holder, second_holder, writer, monitor):
            connection.close()

    assert total == ROWS + 2
    if trigger:
        assert mismatched == []
    else:
        # The talk's copy: every row updated after its batch was copied keeps the value it had then.
        assert mismatched == [5_000, 15_000, FIRST_STOP, 35_000]


# Run in the project's Django (manage.py shell): call the two endpoints as the web server does, and a release-1
# model (created_at a CharField, as 0001 has it) reading and writing the same table.
ENDPOINTS = """
import datetime
import json
from django.db import DatabaseError, connection, models, transaction
from django.db.models.functions import Now
from django.test import RequestFactory
from migrationlab import web

factory = RequestFactory()
listed = web.list_large(factory.get('/list_large/'))
updated = web.update_order(factory.post('/update_order/', {'id': 7}))
assert listed.status_code == 200 and updated.status_code == 200, (listed.content, updated.content)

class ReleaseOneRecord(models.Model):  # the previous release's model of the same table
    name = models.CharField(max_length=100)
    created_at = models.CharField(max_length=32)

    class Meta:
        app_label = 'demoapp'
        db_table = 'large_record'
        managed = False

ReleaseOneRecord.objects.filter(pk=8).update(created_at=Now())
ReleaseOneRecord.objects.filter(pk=9).update(created_at='2030-05-05 05:05:05')
rows = list(ReleaseOneRecord.objects.filter(pk__in=[7, 8, 9]).order_by('pk').values_list('created_at', flat=True))
text_lookup = ReleaseOneRecord.objects.filter(pk=9, created_at__startswith='2030-05-05 05:05:05').exists()
with connection.cursor() as cursor:
    cursor.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                   "WHERE attrelid = 'large_record'::regclass AND attname = 'created_at'")
    column_type = cursor.fetchone()[0]
try:  # release 2 comparing created_at with a datetime
    with transaction.atomic():
        web.large_model().objects.filter(created_at__gte=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)).count()
    filter_by_datetime = 'works'
except DatabaseError as failure:
    filter_by_datetime = str(failure).splitlines()[0]
print('RESULT ' + json.dumps({'type': column_type, 'release_one_read': [str(value) for value in rows],
                              'release_one_read_as': type(rows[0]).__name__, 'release_one_text_lookup': text_lookup,
                              'release_two_filter_by_datetime': filter_by_datetime}))
"""


def served(project_name: str, database: str) -> dict:
    done = manage(project_name, database, "shell", "-c", ENDPOINTS)
    return json.loads(done.stdout.split("RESULT ", 1)[1])


@pytest.mark.parametrize("name", [RISKY, SAFE])
def test_both_releases_read_and_write_at_every_step(name, seeded):
    database = seeded(name, 2_000)
    seen = {"start": served(name, database)}
    for step in get_project(name).steps:
        manage(name, database, "migrate", "demoapp", step.migration)
        seen[step.migration] = served(name, database)
        if name == SAFE and "0002" <= step.migration < "0008":  # while both columns exist: none is ever stale
            assert query(database, STALE) == [], step.migration
    types = [result["type"] for result in seen.values()]
    if name == SAFE:  # `created_at` changes type at the swap (0008), not before
        assert types == ["character varying(32)"] * 7 + ["timestamp with time zone"] * 2
    else:
        assert types == ["character varying(32)", "timestamp with time zone"]
    for result in seen.values():
        varchar = result["type"] == "character varying(32)"
        # release 1 reads strings from the varchar and datetimes (the driver's) from the timestamptz
        assert result["release_one_read_as"] == ("str" if varchar else "datetime")
        assert result["release_one_text_lookup"]  # created_at::text LIKE '...%' on either type
        # release 2's filters by a datetime need the timestamptz
        assert result["release_two_filter_by_datetime"] == (
            "operator does not exist: character varying >= timestamp with time zone" if varchar else "works")
    # what release 1 wrote last is what it reads back, in the new type
    assert seen[get_project(name).steps[-1].migration]["release_one_read"][2].startswith("2030-05-05 05:05:05")


def relfilenode(database: str) -> list[tuple]:
    """The files of the table and of its primary key index: a rewrite gives both new ones."""
    return query(database, "SELECT relname, relfilenode FROM pg_class "
                           "WHERE relname IN ('large_record', 'large_record_pkey') ORDER BY relname")


def test_the_risky_step_rewrites_the_table_and_the_safe_sequence_never_does(seeded):
    risky = seeded(RISKY, 2_000)
    before = relfilenode(risky)
    manage(RISKY, risky, "migrate", "demoapp")
    after = relfilenode(risky)
    assert [name for name, _ in after] == ["large_record", "large_record_pkey"]
    assert all(new != old for (_, new), (_, old) in zip(after, before))

    safe = seeded(SAFE, 2_000)
    before = relfilenode(safe)
    for step in get_project(SAFE).steps:
        manage(SAFE, safe, "migrate", "demoapp", step.migration)
        assert relfilenode(safe) == before, step.migration
    # and it ends where the risky step does: the same column, the same values
    assert query(safe, "SELECT count(*) FROM large_record WHERE created_at <> "
                       "('2024-01-01'::timestamp + id * interval '1 second') AT TIME ZONE 'UTC'") == [(0,)]
