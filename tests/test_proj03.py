"""What the proj03 pair must prove beyond its lock claims (those are tests/test_lessons.py's).

- /list_large/?email=... is the exact lookup the index is for, and returns exactly the row asked for;
- Django's db_index=True builds two indexes (the btree and the `_like` one); the safe twin builds only the btree,
  and the lookup's plan turns from a sequential scan into an index scan;
- a CREATE INDEX CONCURRENTLY cancelled half-way leaves an INVALID index, which a plain re-run trips over, and
  which the next `migrate` drops and builds again; a valid index already there is left as it is;
- that repair happens only where the migration states it (SkipIfDone(..., drop_invalid_index=True)): without the
  flag, an INVALID index stops the run with one line that names it.

The cancel is placed deterministically: a transaction holds ROW EXCLUSIVE on the table (as an open write does), so
the build stops at its first wait ("waiting for writers before build", pg_stat_progress_create_index); there we
cancel it with pg_cancel_backend.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import psycopg2
import pytest

from migrationlab import lab
from migrationlab.scenarios import get_project
from migrationlab.serving import project_environment
from tests.conftest import free_port, manage, query
from tests.conftest import seeded_database as seeded_database_of

RISKY, SAFE = "proj03_indexes", "proj03_safe_backfill"
ROWS = 3000
FAILSAFE_S = 120  # only if the build never waits where we expect it; a passing run never gets near
MIGRATOR = "proj03-migration-under-test"
BUILD = "0002_build_email_index_concurrently"


def indexes(database_url: str, table: str = "large_user") -> dict[str, tuple[str, bool]]:
    """name -> (definition, valid) of every index on the table."""
    rows = query(database_url, "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
                               "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass", [table])
    return {name: (definition, valid) for name, definition, valid in rows}


def lookup_plan(database_url: str, email: str) -> str:
    """The plan of the endpoint's lookup (the same WHERE and ORDER BY as /list_large/?email=...)."""
    rows = query(database_url, "EXPLAIN SELECT * FROM large_user WHERE email = %s ORDER BY id LIMIT 10", [email])
    return "\n".join(line for (line,) in rows)


def applied(database_url: str, migration: str) -> bool:
    return bool(query(database_url, "SELECT 1 FROM django_migrations WHERE app = 'demoapp' AND name = %s",
                      [migration]))


# -- the endpoint's lookup ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [RISKY, SAFE])
def test_lookup_by_email_returns_exactly_that_row(name, pg):
    project = get_project(name)
    port = free_port()
    with seeded_database_of(pg, name, rows=ROWS) as url:
        lab.start_web(project, url, port, instance="test-proj03")
        try:
            def get(query_string: str) -> dict:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/list_large/?{query_string}", timeout=30) as answer:
                    return json.loads(answer.read())

            assert get("email=user5%40example.com")["rows"] == [
                {"id": 5, "name": "user 5", "email": "user5@example.com", "updated_at": None}
            ]
            assert get("email=user50%40example.com")["rows"][0]["id"] == 50  # exact: not user5, not user500
            assert get("email=nobody%40example.com")["rows"] == []
        finally:
            lab.stop_web(project, instance="test-proj03")


def test_db_index_builds_two_indexes_the_safe_twin_one_and_the_lookup_uses_an_index(pg):
    with seeded_database_of(pg, RISKY, rows=ROWS) as risky, seeded_database_of(pg, SAFE, rows=ROWS) as safe:
        for url in (risky, safe):
            assert set(indexes(url)) == {"large_user_pkey"}
            assert "Seq Scan on large_user" in lookup_plan(url, "user5@example.com")
        manage(RISKY, risky, "migrate", "demoapp", "0002_add_email_index")
        manage(SAFE, safe, "migrate", "demoapp", BUILD)

        built = sorted(definition for name, (definition, _) in indexes(risky).items() if name != "large_user_pkey")
        assert [d.split(" USING ")[1] for d in built] == ["btree (email)", "btree (email varchar_pattern_ops)"]
        assert indexes(safe)["large_user_email_idx"] == (
            "CREATE INDEX large_user_email_idx ON public.large_user USING btree (email)", True)
        assert set(indexes(safe)) == {"large_user_pkey", "large_user_email_idx"}
        assert "Index Scan using large_user_email_idx on large_user" in lookup_plan(safe, "user5@example.com")
        assert "Index Scan using large_user_email_" in lookup_plan(risky, "user5@example.com")


# -- an interrupted concurrent build --------------------------------------------------------------------------------

def start_migrate(database_url: str, migration: str) -> subprocess.Popen:
    project = get_project(SAFE)
    return subprocess.Popen(
        [sys.executable, str(project.folder / "manage.py"), "migrate", "demoapp", migration],
        cwd=project.folder,
        env=project_environment(project, database_url, extra={"MIGRATIONLAB_APPLICATION_NAME": MIGRATOR}),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
    )


def wait_for_phase(monitor, phase: str, migrate: subprocess.Popen) -> int:
    """Poll pg_stat_progress_create_index until the migration's build of the large table's index is at `phase`;
    the backend's pid."""
    deadline = time.monotonic() + FAILSAFE_S
    with monitor.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT p.pid FROM pg_stat_progress_create_index p JOIN pg_stat_activity a ON a.pid = p.pid "
                "WHERE a.application_name = %s AND p.relid = 'large_user'::regclass AND p.phase = %s",
                [MIGRATOR, phase],
            )
            row = cursor.fetchone()
            if row:
                return row[0]
            assert migrate.poll() is None, f"the migration ended before reaching '{phase}': {migrate.stdout.read()}"
            assert time.monotonic() < deadline, f"the build never reached '{phase}'"
            time.sleep(0.01)  # polling the catalog for a state, not waiting for time to pass


def test_a_cancelled_concurrent_build_leaves_an_invalid_index_that_the_next_migrate_rebuilds(database):
    manage(SAFE, database, "migrate", "demoapp", get_project(SAFE).start)
    manage(SAFE, database, "seed_large_table", "--large-count", str(ROWS))
    writer = psycopg2.connect(database, application_name="open-write")
    monitor = psycopg2.connect(database)
    monitor.autocommit = True
    try:
        with writer.cursor() as cursor:  # a write in progress: the build must wait for it before it starts
            cursor.execute("LOCK TABLE large_user IN ROW EXCLUSIVE MODE")
            cursor.execute("SELECT pg_backend_pid()")
            writer_pid = cursor.fetchone()[0]
        migrate = start_migrate(database, BUILD)
        try:
            builder = wait_for_phase(monitor, "waiting for writers before build", migrate)
            with monitor.cursor() as cursor:
                cursor.execute("SELECT pg_blocking_pids(%s)", [builder])
                assert cursor.fetchone()[0] == [writer_pid]
                cursor.execute("SELECT pg_cancel_backend(%s)", [builder])
            output, _ = migrate.communicate(timeout=FAILSAFE_S)
        finally:
            if migrate.poll() is None:
                migrate.kill()
                migrate.communicate()
        assert migrate.returncode != 0
        assert "canceling statement due to user request" in output

        # The build left its index behind, INVALID: no query uses it, yet every write maintains it.
        assert indexes(database)["large_user_email_idx"][1] is False
        assert not applied(database, BUILD)
        # A plain re-run trips over it; IF NOT EXISTS would keep the useless index.
        with monitor.cursor() as cursor:
            with pytest.raises(psycopg2.errors.DuplicateTable, match='"large_user_email_idx" already exists'):
                cursor.execute("CREATE INDEX CONCURRENTLY large_user_email_idx ON large_user (email)")
            cursor.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS large_user_email_idx ON large_user (email)")
        assert indexes(database)["large_user_email_idx"][1] is False
        writer.rollback()  # the write ends

        again = manage(SAFE, database, "migrate", "demoapp", BUILD, check=False)
        assert again.returncode == 0, again.stdout + again.stderr
        assert indexes(database) == {
            "large_user_pkey": ("CREATE UNIQUE INDEX large_user_pkey ON public.large_user USING btree (id)", True),
            "large_user_email_idx": ("CREATE INDEX large_user_email_idx ON public.large_user USING btree (email)", True),
        }
        assert all(valid for _, valid in indexes(database, "small_user").values())
        assert set(indexes(database, "small_user")) == {"small_user_pkey", "small_user_email_idx"}
        assert applied(database, BUILD)
    finally:
        writer.close()
        monitor.close()


def test_a_valid_index_already_there_is_left_as_it_is(database):
    manage(SAFE, database, "migrate", "demoapp", get_project(SAFE).start)
    manage(SAFE, database, "seed_large_table", "--large-count", str(ROWS))
    query(database, "CREATE INDEX large_user_email_idx ON large_user (email)")
    [(before,)] = query(database, "SELECT 'large_user_email_idx'::regclass::oid")

    done = manage(SAFE, database, "migrate", "demoapp", BUILD)

    assert "already done: index large_user_email_idx already exists on large_user and is valid" in done.stdout
    assert query(database, "SELECT 'large_user_email_idx'::regclass::oid") == [(before,)]  # not rebuilt
    assert set(indexes(database, "small_user")) == {"small_user_pkey", "small_user_email_idx"}
    assert applied(database, BUILD)


WITHOUT_THE_REPAIR = """
from django.contrib.postgres.operations import AddIndexConcurrently
from django.core.management.base import CommandError
from django.db import connection, models
from django.db.migrations.loader import MigrationLoader
from migrationlab.operations import SkipIfDone
state = MigrationLoader(connection).project_state(("demoapp", "0001_initial"))
build = SkipIfDone(AddIndexConcurrently("largeuser", models.Index(fields=["email"], name="large_user_email_idx")))
try:
    with connection.schema_editor(atomic=False) as editor:
        build.database_forwards("demoapp", editor, state, state)
except CommandError as refusal:
    print("REFUSED", refusal)
"""


def test_an_invalid_index_is_repaired_only_where_the_migration_says_so(database):
    """SkipIfDone without drop_invalid_index=True stops at an INVALID index, in one line naming the flag, and leaves
    it; the migration, which states the repair, drops it and builds it again."""
    manage(SAFE, database, "migrate", "demoapp", get_project(SAFE).start)
    manage(SAFE, database, "seed_large_table", "--large-count", str(ROWS))
    query(database, "CREATE INDEX large_user_email_idx ON large_user (email)")
    query(database, "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'large_user_email_idx'::regclass")

    refused = manage(SAFE, database, "shell", "-c", WITHOUT_THE_REPAIR)
    assert ("REFUSED index large_user_email_idx on large_user is INVALID (an interrupted CREATE INDEX CONCURRENTLY): "
            "drop it, or state the repair, SkipIfDone(..., drop_invalid_index=True)") in refused.stdout
    assert indexes(database)["large_user_email_idx"][1] is False

    manage(SAFE, database, "migrate", "demoapp", BUILD)
    assert indexes(database)["large_user_email_idx"][1] is True
