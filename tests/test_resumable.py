"""Every non-atomic migration runs again to completion after being killed half-way, and WithLockTimeout gives up
with one line that names the session holding the table.

The kill is placed deterministically: a transaction holds ACCESS EXCLUSIVE on the small table, so the migration
does its large-table half (committed), then waits for the small table; we see it waiting in pg_locks, kill it
and its session (SIGKILL, pg_terminate_backend: no cleanup of any kind), release the lock and run `migrate` again. The schema must then be exactly
what an uninterrupted run gives, and so must every row.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import psycopg2
import pytest

from migrationlab.scenarios import all_projects, get_project
from migrationlab.serving import project_environment
from tests.conftest import ROWS, manage, query
FAILSAFE_S = 120  # only if the migration never waits where we expect it; a passing run never gets near
MIGRATOR = "migration-under-test"


def non_atomic_steps():
    for project in all_projects():
        for index, step in enumerate(project.steps):
            source = (project.folder / "demoapp" / "migrations" / f"{step.migration}.py").read_text()
            if re.search(r"^\s*atomic\s*=\s*False\b", source, re.M):
                before = project.steps[index - 1].migration if index else project.start
                yield pytest.param(project.name, before, step.migration, id=f"{project.name}:{step.migration}")


def first_table_named(project, migration: str) -> str | None:
    """Which of the project's two tables the migration's code names first ('large' or 'small'), by model or table
    name, in the order of the source (docstrings aside); None if it names neither."""
    tree = ast.parse((project.folder / "demoapp" / "migrations" / f"{migration}.py").read_text())
    names = {project.large_model.lower(): "large", project.large_table: "large",
             project.small_model.lower(): "small", project.small_table: "small"}
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    strings = sorted((node.lineno, node.col_offset, node.value) for node in ast.walk(tree)
                     if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings)
    return next((names[value.lower()] for _, _, value in strings if value.lower() in names), None)


@pytest.mark.parametrize("name, before, migration", list(non_atomic_steps()))
def test_a_non_atomic_migration_works_on_the_large_table_first(name, before, migration):
    """CLAUDE.md's rule, which the kill below relies on: with the small table held, the migration does its large
    table's part, commits it, and waits for the small table; the other way round it would wait before doing anything."""
    assert first_table_named(get_project(name), migration) == "large", (
        f"{migration}: a non-atomic migration lists the large model first, then the small one (CLAUDE.md)")


MIGRATE_REPORTING = """
import json
from importlib import import_module
from django.core.management import call_command
call_command("migrate", "demoapp", {migration!r})
operations = import_module("demoapp.migrations." + {migration!r}).Migration.operations
print("\\nREPORTS " + json.dumps([op.report.as_dict() for op in operations if getattr(op, "report", None)]))
"""


def migrate_reporting(name: str, database: str, migration: str) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    """`migrate demoapp MIGRATION` (through `manage.py shell`, the command's output as migrate writes it), and the
    BatchReport (as_dict) each batched operation of the migration left, by table: {} if it failed."""
    done = manage(name, database, "shell", "-c", MIGRATE_REPORTING.format(migration=migration), check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORTS ")]
    reports = json.loads(lines[-1].removeprefix("REPORTS ")) if lines else []
    return done, {report["table"]: report for report in reports}


def row_digest(database_url: str, table: str) -> tuple:
    """A digest of every row (the seeded data is the same in every database). A uuid column holds random values
    (gen_random_uuid(), uuid.uuid4) that no two databases share: it counts by how many rows have a value and how
    many distinct values there are."""
    uuids = [name for (name,) in query(
        database_url, "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
                      "AND atttypid = 'uuid'::regtype AND NOT attisdropped ORDER BY attnum", [f'"{table}"'])]
    counts = "".join(f', count("{name}"), count(DISTINCT "{name}")' for name in uuids)
    return query(database_url, f'SELECT md5(string_agg((to_jsonb(t) - %s::text[])::text, \',\' ORDER BY id)){counts} '
                               f'FROM "{table}" t', [uuids])[0]


def state_of(database_url: str, tables: tuple[str, ...]) -> list[tuple]:
    """Columns (type, NOT NULL, default), constraints (definition, validated), indexes (definition, valid),
    triggers (definition, function body), and a digest of every row (row_digest)."""
    rows = [row_digest(database_url, table) for table in tables]
    return rows + query(database_url, """
        SELECT 'column', c.relname, a.attname, format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull::text
               || ' ' || COALESCE(pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relname = ANY(%(tables)s) AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT 'constraint', c.relname, k.conname, pg_get_constraintdef(k.oid) || ' valid=' || k.convalidated::text
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid WHERE c.relname = ANY(%(tables)s)
        UNION ALL
        SELECT 'index', c.relname, ic.relname, pg_get_indexdef(i.indexrelid) || ' valid=' || i.indisvalid::text
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE c.relname = ANY(%(tables)s)
        UNION ALL
        SELECT 'trigger', c.relname, t.tgname, pg_get_triggerdef(t.oid) || ' ' || md5(p.prosrc)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
        WHERE c.relname = ANY(%(tables)s) AND NOT t.tgisinternal
        ORDER BY 1, 2, 3""", {"tables": list(tables)})


def wait_until_waiting(monitor, migrate: subprocess.Popen, lock: str, params: list, what: str) -> None:
    """Poll pg_locks until the migration's backend waits for a lock that `lock` (a condition on pg_locks l) picks:
    it has then done everything before that point, committed."""
    deadline = time.monotonic() + FAILSAFE_S
    with monitor.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                f"WHERE a.application_name = %s AND NOT l.granted AND {lock})", [MIGRATOR, *params],
            )
            if cursor.fetchone()[0]:
                return
            assert migrate.poll() is None, f"the migration ended before waiting for {what}: {migrate.stdout.read()}"
            assert time.monotonic() < deadline, f"the migration never waited for {what}"
            time.sleep(0.01)  # polling the catalog for a state, not waiting for time to pass


def wait_until_waiting_on(monitor, table: str, migrate: subprocess.Popen) -> None:
    """Poll pg_locks until the migration's backend waits for a lock on `table`."""
    wait_until_waiting(monitor, migrate, "l.relation = to_regclass(%s)", [table], f"a lock on {table}")


def start_migration(project, database: str, migration: str) -> subprocess.Popen:
    """`manage.py migrate demoapp MIGRATION` in a process group of its own, its session named MIGRATOR."""
    return subprocess.Popen(
        [sys.executable, str(project.folder / "manage.py"), "migrate", "demoapp", migration],
        cwd=project.folder, env=project_environment(project, database, extra={
            "MIGRATIONLAB_APPLICATION_NAME": MIGRATOR}),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def kill_migration(migrate: subprocess.Popen, monitor) -> None:
    """SIGKILL the migration's process group, then end its session (else a waiting statement would run on): no
    cleanup of any kind."""
    os.killpg(migrate.pid, signal.SIGKILL)
    migrate.wait()
    migrate.stdout.close()
    with monitor.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid, 60000) FROM pg_stat_activity WHERE application_name = %s",
                       [MIGRATOR])


@contextmanager
def holder_and_monitor(database: str, isolation_level: str | None = None):
    """Two sessions: `holder`, whose transaction holds what the test makes it take until the end of the block (its
    close rolls it back), and `monitor`, autocommit, that watches pg_locks."""
    holder = psycopg2.connect(database, application_name="holder")
    if isolation_level:
        holder.set_session(isolation_level=isolation_level)
    monitor = psycopg2.connect(database)
    monitor.autocommit = True
    try:
        yield holder, monitor
    finally:
        holder.close()
        monitor.close()


@contextmanager
def migration_killed_at_exit(project, database: str, migration: str, monitor):
    """The migration, started (start_migration) for the block to wait on, and killed (kill_migration) when it ends."""
    migrate = start_migration(project, database, migration)
    try:
        yield migrate
    finally:
        kill_migration(migrate, monitor)


@pytest.mark.parametrize("name, before, migration", list(non_atomic_steps()))
def test_killed_half_way_it_runs_again_to_completion(name, before, migration, pg, seeded):
    project = get_project(name)
    tables = (project.large_table, project.small_table)

    # What an uninterrupted run leaves (the reference), and the state before it: copies of the session's templates.
    untouched = state_of(seeded(name, ROWS, before), tables)
    expected = state_of(seeded(name, ROWS, migration), tables)

    database = seeded(name, ROWS, before)
    with holder_and_monitor(database) as (holder, monitor):
        with holder.cursor() as cursor:
            cursor.execute(f'LOCK TABLE "{project.small_table}" IN ACCESS EXCLUSIVE MODE')
        with migration_killed_at_exit(project, database, migration, monitor) as migrate:
            wait_until_waiting_on(monitor, project.small_table, migrate)

    applied = query(database, "SELECT name FROM django_migrations WHERE app = 'demoapp' AND name = %s", [migration])
    assert applied == [], "the killed migration must not be recorded as applied"
    half_done = state_of(database, tables)
    assert half_done not in (untouched, expected), "the kill must leave the migration half-done"
    again = manage(name, database, "migrate", "demoapp", migration, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert state_of(database, tables) == expected


def test_giving_up_names_the_session_that_holds_the_table(database):
    name = "proj01_safe_backfill"
    manage(name, database, "migrate", "demoapp", "0004_backfill_status_batched")
    report = psycopg2.connect(database, application_name="report")
    try:
        with report.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM large_user")  # the report's transaction holds ACCESS SHARE
            cursor.execute("SELECT pg_backend_pid()")
            report_pid = cursor.fetchone()[0]
        done = manage(name, database, "shell", "-c", (
            "from django.contrib.postgres.operations import AddConstraintNotValid\n"
            "from django.db import connection, models\n"
            "from django.db.migrations.loader import MigrationLoader\n"
            "from migrationlab.operations import LockNotGranted, WithLockTimeout\n"
            "before = MigrationLoader(connection).project_state(('demoapp', '0004_backfill_status_batched'))\n"
            "check = models.CheckConstraint(condition=models.Q(status__isnull=False), name='status_set')\n"
            "operation = WithLockTimeout(AddConstraintNotValid('largeuser', check), retry_for_seconds=1)\n"
            "after = before.clone()\n"
            "operation.state_forwards('demoapp', after)\n"
            "try:\n"
            "    with connection.schema_editor(atomic=False) as editor:\n"
            "        operation.database_forwards('demoapp', editor, before, after)\n"
            "except LockNotGranted as stop:\n"
            "    print('\\nSTOPPED:', stop)\n"
        ))
    finally:
        report.close()
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("STOPPED:")]
    assert "each waiting at most 500ms for a lock on large_user" in line
    assert f"large_user is held by pid {report_pid} (application_name 'report', idle in transaction for" in line
    assert "AccessShareLock: SELECT pg_backend_pid()" in line
