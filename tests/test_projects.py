"""Each project's migrations (forward, back to 0001, forward again; models match them) and its seeder."""

import re

import pytest

from migrationlab.scenarios import all_projects, get_project
from tests.conftest import ROWS, manage, query
from tests.test_resumable import migrate_reporting

PROJECTS = [p.name for p in all_projects()]


def applied(database_url):
    return [name for (name,) in query(database_url, "SELECT name FROM django_migrations WHERE app = 'demoapp' ORDER BY id")]


@pytest.mark.parametrize("name", PROJECTS)
def test_models_match_migrations(name, database):
    done = manage(name, database, "makemigrations", "--check", "--dry-run", "demoapp", check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", PROJECTS)
def test_migrations_go_forward_and_back_to_0001_with_data(name, seeded):
    project = get_project(name)
    database = seeded(name, ROWS)
    manage(name, database, "migrate", "demoapp")
    assert applied(database)[-1] == project.steps[-1].migration
    manage(name, database, "migrate", "demoapp", "0001")
    assert applied(database) == ["0001_initial"]
    manage(name, database, "migrate", "demoapp")
    assert applied(database)[-1] == project.steps[-1].migration


@pytest.mark.parametrize("name", [p.name for p in all_projects() if p.scenario == 1])
def test_proj01_lesson_ends_with_status_not_null_and_filled(name, seeded):
    database = seeded(name, ROWS)
    manage(name, database, "migrate", "demoapp")
    [(nullable,)] = query(database, "SELECT is_nullable FROM information_schema.columns "
                                    "WHERE table_name = 'large_user' AND column_name = 'status'")
    assert nullable == "NO"
    assert query(database, "SELECT count(*) FROM large_user WHERE status = 'active'") == [(ROWS,)]


def test_seed_replaces_rows_and_keeps_the_table_as_it_was(database):
    name = "proj01_safe_backfill"
    manage(name, database, "migrate", "demoapp", get_project(name).start)
    indexes = query(database, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'large_user' ORDER BY 1")
    manage(name, database, "seed_large_table", "--large-count", "12345")
    manage(name, database, "seed_large_table", "--large-count", "2500")  # replaces, never appends
    assert query(database, "SELECT count(*), min(id), max(id), count(DISTINCT email) FROM large_user") == [
        (2500, 1, 2500, 2500)
    ]
    assert query(database, "SELECT count(*) FROM small_user") == [(10,)]
    assert query(database, "SELECT count(*) FROM large_user WHERE status IS NULL") == [(2500,)]
    # the indexes dropped for the load are back, exactly as they were
    assert query(database, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'large_user' ORDER BY 1") == indexes
    # the planner knows the size (ANALYZE ran); read before the insert below, which an autovacuum's ANALYZE
    # running just then would count
    assert query(database, "SELECT reltuples::bigint FROM pg_class WHERE relname = 'large_user'") == [(2500,)]
    # and the id sequence continues after the seeded rows
    assert query(database, "INSERT INTO large_user (name, email) VALUES ('x', 'x@example.com') RETURNING id") == [(2501,)]


@pytest.mark.parametrize("bad", ["abc", "-5", "1.5"])
def test_seed_rejects_a_bad_count_in_one_line(bad, database):
    done = manage("proj01_safe_backfill", database, "seed_large_table", "--large-count", bad, check=False)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "--large-count" in done.stderr


def test_backfill_resumes_where_it_stopped_and_is_idempotent(seeded):
    name = "proj01_safe_backfill"
    database = seeded(name, ROWS)
    manage(name, database, "migrate", "demoapp", "0003_status_db_default_for_new_rows")
    # An interrupted run: the first 30,000 rows were committed, the rest not.
    query(database, "UPDATE large_user SET status = 'active' WHERE id <= 30000")
    query(database, "UPDATE large_user SET status = 'kept' WHERE id = 10")  # filled before: never overwritten
    done, reports = migrate_reporting(name, database, "0004_backfill_status_batched")
    assert done.returncode == 0, done.stdout + done.stderr
    assert reports["large_user"]["rows"] == ROWS - 30000  # only the rows still NULL, from id 30,001 on
    # What the operation says goes through migrate's stdout (its summary is the report's), and only there.
    assert f"\n    large_user: backfill done, {ROWS - 30000:,} rows in" in done.stdout
    assert "backfill" not in done.stderr
    assert query(database, "SELECT count(*) FROM large_user WHERE status IS NULL") == [(0,)]
    assert query(database, "SELECT status FROM large_user WHERE id = 10") == [("kept",)]
    # rows written during the backfill get the default for new rows
    assert query(database, "INSERT INTO large_user (name, email) VALUES ('n', 'n@example.com') RETURNING status") == [
        ("active",)
    ]


def test_migrate_at_verbosity_0_says_nothing_of_the_batches(seeded):
    name = "proj01_safe_backfill"
    database = seeded(name, ROWS)
    quiet = manage(name, database, "migrate", "demoapp", "0004_backfill_status_batched", "--verbosity", "0")
    assert quiet.stdout == "" and "large_user" not in quiet.stderr
    assert query(database, "SELECT count(*) FROM large_user WHERE status IS NULL") == [(0,)]


def test_backfill_refuses_to_run_inside_an_atomic_migration(database):
    name = "proj01_safe_backfill"
    manage(name, database, "migrate", "demoapp", "0003_status_db_default_for_new_rows")
    done = manage(name, database, "shell", "-c", (
        "from django.db import connection, transaction\n"
        "from django.db.migrations.state import ProjectState\n"
        "from django.db.migrations.loader import MigrationLoader\n"
        "from django.db.models import Q, Value\n"
        "from django.db import NotSupportedError\n"
        "from migrationlab.operations import BackfillInBatches\n"
        "state = MigrationLoader(connection).project_state(('demoapp', '0003_status_db_default_for_new_rows'))\n"
        "op = BackfillInBatches('largeuser', set={'status': Value('x')}, where=Q(status__isnull=True))\n"
        "try:\n"
        "    with connection.schema_editor(atomic=True) as editor:\n"
        "        op.database_forwards('demoapp', editor, state, state)\n"
        "except NotSupportedError as e:\n"
        "    print('refused:', e)\n"
    ))
    assert "refused: The BackfillInBatches operation cannot be executed inside a transaction" in done.stdout


def test_ddl_gives_up_on_a_held_lock_and_retries_instead_of_queueing(database):
    """WithLockTimeout: behind a long transaction, the ALTER times out, backs off, and succeeds once it is gone."""
    import subprocess
    import sys

    import psycopg2

    from migrationlab.serving import project_environment

    name = "proj01_safe_backfill"
    project = get_project(name)
    manage(name, database, "migrate", "demoapp", project.start)
    report_query = psycopg2.connect(database)  # a long report: holds ACCESS SHARE until it commits
    with report_query.cursor() as cursor:
        # Failsafe only: without lock_timeout the migration would wait for ever; this ends the report after a
        # minute, the migration then finishes without the retry message, and the test fails instead of hanging.
        cursor.execute("SET idle_in_transaction_session_timeout = '60s'")
        cursor.execute("SELECT count(*) FROM large_user")
    migrate = subprocess.Popen(
        [sys.executable, str(project.folder / "manage.py"), "migrate", "demoapp", "0003_status_db_default_for_new_rows"],
        cwd=project.folder, env=project_environment(project, database), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    output = []
    for line in migrate.stdout:  # read until the first attempt has given up
        output.append(line)
        if "(attempt 1," in line:
            break
    try:
        report_query.commit()  # the report ends; the next attempt gets the lock
    except psycopg2.Error:
        pass  # the failsafe already ended it
    report_query.close()
    output.append(migrate.stdout.read())
    assert migrate.wait() == 0, "".join(output)
    assert re.search(r"large_user: lock not granted within 500ms \(attempt 1, \d+ s so far\); traffic goes on; "
                     r"retrying in \d+\.\d s", "".join(output))
    assert query(database, "SELECT column_default FROM information_schema.columns "
                           "WHERE table_name = 'large_user' AND column_name = 'status'") == [("'active'::character varying",)]
