"""The fault suite over every project: what is killed where, and what must hold afterwards (docs/reliability.md).

1. Every batched backfill and batched delete (a migration using BackfillInBatches or DeleteInBatches), killed at a
   random batch: a transaction holds a random row of those the migration changes (SELECT ... FOR UPDATE), so the
   batch covering it waits; once pg_locks shows the migration waiting for that transaction, we note which rows are
   done (and their xmin), SIGKILL the migration's process group, end its session, release the row and run `migrate`
   again. Every row must then equal an uninterrupted run's, and no row may be done twice: the rows done before the
   kill keep their xmin (the re-run did not touch them), and the re-run reports exactly the rows left to do.
   The row is drawn with random.Random from FAULTS_SEED (a fresh seed each run, printed with every failure):
   `FAULTS_SEED=N pytest tests/test_faults.py` replays a run.
2. The lab recovers from PostgreSQL killed in the middle of a step, for one step of each kind (crash_steps; all
   fourteen projects with FAULTS_LAB_EVERY_PROJECT=1): in a private lab (`up PROJECT --rows 2000`), the step waits
   at a known point (a transaction holds the small table, so the step has done its large-table half and waits), the
   lab's postmaster gets SIGKILL, the step's process fails; then `up PROJECT` again must bring PostgreSQL back
   through crash recovery with the database as it was (not re-seeded) and the web server answering, and the step,
   run again, completes.
3. Every step that changes rows or runs outside one transaction, reversed from a copy of the seeded database at
   that step: the schema must be what it was before the step, and the rows too, unless the migration's docstring
   says why its reverse cannot restore them (deleted rows are gone).
4. Each fault reaches what docs/reliability.md says: every non-atomic migration is killed between operations,
   every batched one at a random batch, PostgreSQL during a step of every kind, every project reversed to 0001.

The other faults of the issue are tested where they were built: every non-atomic migration killed between its
operations (tests/test_resumable.py), every safe step behind a held report (tests/test_lessons.py), every project
reversed to 0001 (tests/test_projects.py).
"""

from __future__ import annotations

import ast
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from migrationlab import REPO_ROOT
from migrationlab.scenarios import all_projects, get_project
from tests import test_projects
from tests.conftest import ROWS, free_port, manage, query, starts_postgresql
from tests.test_releases import get, lab
from tests.test_resumable import (
    FAILSAFE_S, MIGRATOR, holder_and_monitor, migrate_reporting, migration_killed_at_exit, non_atomic_steps, state_of,
    wait_until_waiting, wait_until_waiting_on,
)

SEED = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(1_000_000))
BATCHED = ("BackfillInBatches", "DeleteInBatches")
LAB_ROWS = 2_000
RELIABILITY = REPO_ROOT / "docs" / "reliability.md"
# What a step does, by what its migration calls (the first that applies): PostgreSQL is killed during one step of
# each kind (FAULTS_LAB_EVERY_PROJECT=1: during one step of every project).
STEP_KINDS = (
    ("partition detach", {"DetachPartitionConcurrently"}),
    ("batched delete", {"DeleteInBatches"}),
    ("batched backfill", {"BackfillInBatches"}),
    ("concurrent index", {"AddIndexConcurrently", "RemoveIndexConcurrently"}),
)


def migration_files(project) -> list[Path]:
    return sorted((project.folder / "demoapp" / "migrations").glob("[0-9][0-9][0-9][0-9]_*.py"))


def migration_file(project, migration: str) -> Path:
    return project.folder / "demoapp" / "migrations" / f"{migration}.py"


def called(call: ast.Call) -> str | None:
    """What a call calls: `RunSQL` for migrations.RunSQL(...) as for RunSQL(...)."""
    return getattr(call.func, "attr", getattr(call.func, "id", None))


def calls(path: Path) -> set[str]:
    """The names a migration's source calls (operations, functions): its code, not its docstrings."""
    return {called(node) for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)}


def step_before(project, migration: str) -> str:
    """The migration the project is at just before `migration`, one of its steps: the step before, or its start."""
    migrations = [step.migration for step in project.steps]
    index = migrations.index(migration)
    return migrations[index - 1] if index else project.start


# -- 1. killed at a random batch ------------------------------------------------------------------------------------

def batched_on_the_large_table(path: Path, large_model: str) -> set[str]:
    """The batched operations a migration calls on its project's large table: every BackfillInBatches( and
    DeleteInBatches( call but those naming another model outright (proj10's 0007 deletes the notes of the events it
    drops: rows of event_note, none of the large table's, and the lab has none to hold)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and called(node) in BATCHED:
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and str(first.value).lower() != large_model.lower():
                continue
            found.add(called(node))
    return found


def batched_steps():
    """Every migration of every project whose operations include BackfillInBatches( or DeleteInBatches( on the large
    table, found in the migration sources (each is a lesson step: the session's templates give the states around
    it)."""
    for project in all_projects():
        for path in migration_files(project):
            for operation in sorted(batched_on_the_large_table(path, project.large_model)):
                yield pytest.param(project.name, step_before(project, path.stem), path.stem, operation,
                                   id=f"{project.name}:{path.stem}")


def row_versions(database_url: str, table: str) -> dict[int, str]:
    """id -> a digest of the row's content."""
    return dict(query(database_url, f'SELECT id, md5(t::text) FROM "{table}" t'))


def xmins(database_url: str, table: str, ids) -> dict[int, str]:
    """id -> xmin (the transaction that wrote the row's current version) of the given rows."""
    return dict(query(database_url, f'SELECT id, xmin::text FROM "{table}" WHERE id = ANY(%s)', [sorted(ids)]))


def at_the_kill(holder, monitor, table: str, holder_xid: str) -> tuple[set[int], int, int, int]:
    """While the migration waits for the held row: the rows the committed batches touched, the number of the batch
    that waits, and the id range [lo, hi) it covers.

    The holder's snapshot (REPEATABLE READ, taken before the migration started) still sees every row as it was; a row
    a later transaction updated or deleted shows that transaction as its xmax. Each batch is one transaction: the
    xmax values other than the waiting batch's own are the committed batches."""
    with monitor.cursor() as cursor:
        cursor.execute("SELECT backend_xid::text, query FROM pg_stat_activity "
                       "WHERE application_name = %s AND datname = current_database()", [MIGRATOR])
        waiting_xid, statement = cursor.fetchone()
    with holder.cursor() as cursor:
        cursor.execute(f'SELECT id, xmax::text FROM "{table}" WHERE xmax::text::bigint > %s', [int(holder_xid)])
        touched = [(row_id, xmax) for row_id, xmax in cursor.fetchall() if xmax != waiting_xid]
    lo, hi = (int(re.search(rf'"id" {op} (\d+)', statement).group(1)) for op in (">=", "<"))
    return {row_id for row_id, _ in touched}, len({xmax for _, xmax in touched}) + 1, lo, hi


@pytest.mark.parametrize("name, before, migration, operation", list(batched_steps()))
def test_killed_at_a_random_batch_it_finishes_with_every_row_right_and_none_done_twice(
        name, before, migration, operation, seeded, record_property):
    project = get_project(name)
    table, tables = project.large_table, (project.large_table, project.small_table)
    reference = seeded(name, ROWS, migration)  # an uninterrupted run (the session's template), and its rows
    expected, finished = state_of(reference, tables), row_versions(reference, table)
    database = seeded(name, ROWS, before)
    untouched = row_versions(database, table)
    changed = sorted(row_id for row_id, version in untouched.items() if finished.get(row_id) != version)
    row = random.Random(f"{SEED}:{name}:{migration}").choice(changed)
    replay = f"FAULTS_SEED={SEED}: row {row} held"

    # The holder's snapshot is the table before the migration (at_the_kill reads it); it releases the row at the end.
    with holder_and_monitor(database, "REPEATABLE READ") as (holder, monitor):
        with holder.cursor() as cursor:
            cursor.execute(f'SELECT id FROM "{table}" WHERE id = %s FOR UPDATE', [row])
            cursor.execute("SELECT backend_xid::text FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            holder_xid = cursor.fetchone()[0]
        with migration_killed_at_exit(project, database, migration, monitor) as migrate:
            wait_until_waiting(monitor, migrate, "l.locktype = 'transactionid' AND l.transactionid::text = %s",
                               [holder_xid], f"row {row} of {table}, held by another transaction")
            touched, batch, lo, hi = at_the_kill(holder, monitor, table, holder_xid)
            now = row_versions(database, table)
            done = {row_id for row_id in changed if now.get(row_id) != untouched[row_id]}
            done_xmins = xmins(database, table, done)
    replay += f", killed in batch {batch} (ids {lo:,} to {hi - 1:,}) with {len(done):,} of {len(changed):,} rows done"
    record_property("killed", replay)
    print(replay)
    assert lo <= row < hi, f"{replay}: the waiting batch is the one covering the held row"
    assert done == touched, f"{replay}: the rows done are those the committed batches touched"

    applied = query(database, "SELECT name FROM django_migrations WHERE app = 'demoapp' AND name = %s", [migration])
    assert applied == [], f"{replay}: the killed migration must not be recorded as applied"
    again, reports = migrate_reporting(name, database, migration)
    assert again.returncode == 0, f"{replay}\n{again.stdout}{again.stderr}"
    assert state_of(database, tables) == expected, f"{replay}: not what an uninterrupted run leaves"
    # None done twice: the re-run did exactly the rows left, and left the others' row versions as they were.
    assert reports[table]["rows"] == len(changed) - len(done), f"{replay}\n{again.stdout}"
    if operation == "DeleteInBatches":
        assert sorted(row_versions(database, table)) == sorted(finished), f"{replay}: not the ids of the reference"
    else:
        assert xmins(database, table, done) == done_xmins, f"{replay}: the re-run rewrote rows already done"


# -- 2. PostgreSQL killed in the middle of a step ---------------------------------------------------------------------

def kind_of(project, migration: str) -> str:
    used = calls(migration_file(project, migration))
    for kind, operations in STEP_KINDS:
        if used & operations:
            return kind
    if next(step for step in project.steps if step.migration == migration).release is not None:
        return "release step"
    if "WithLockTimeout" in used:
        return "DDL under WithLockTimeout"
    return "atomic step"


def crash_candidates():
    """The steps of every project that wait at the known point: every non-atomic step (test_resumable stops each
    there), and in a project without one, its first risky step (atomic: the crash must roll it back whole)."""
    non_atomic = [tuple(param.values) for param in non_atomic_steps()]
    for project in all_projects():
        mine = [values for values in non_atomic if values[0] == project.name]
        if not mine:
            step = next(step for step in project.steps if step.kind == "risky")
            mine = [(project.name, step_before(project, step.migration), step.migration)]
        yield from mine


def crash_steps(every_project: bool = bool(os.environ.get("FAULTS_LAB_EVERY_PROJECT"))):
    """The steps during which PostgreSQL is killed: one of each kind (kind_of), in as many projects as that allows
    (first a step of a kind not yet chosen in a project not yet chosen, then the kinds left); or, every_project,
    each project's first candidate. The lab costs seconds a step: one of each kind keeps the file within budget."""
    candidates = list(crash_candidates())
    if every_project:
        chosen = [next(values for values in candidates if values[0] == project.name) for project in all_projects()]
    else:
        chosen, kinds = [], set()
        for new_project_only in (True, False):
            for values in candidates:
                kind = kind_of(get_project(values[0]), values[2])
                if kind not in kinds and not (new_project_only and any(c[0] == values[0] for c in chosen)):
                    chosen.append(values)
                    kinds.add(kind)
        chosen.sort(key=candidates.index)
    for values in chosen:
        yield pytest.param(*values, id=f"{values[0]}:{values[2]}")  # one lab, one worker: conftest.work_units


@pytest.fixture(scope="module")
@starts_postgresql
def private_lab(tmp_path_factory):
    """The environment of a lab of this module's own (one initdb for all its tests); purged at the end. Each test
    leaves its project served (`down PROJECT` would stop PostgreSQL with the last web server, and the next `up`
    would start it again), with one gunicorn worker each."""
    env = dict(os.environ, MIGRATIONLAB_HOME=str(tmp_path_factory.mktemp("crash-lab")),
               MIGRATIONLAB_PG_PORT=str(free_port()), WEB_WORKERS="1")
    for variable in ("DATABASE_URL", "DEMO_RELEASE", "MIGRATIONLAB_APPLICATION_NAME"):
        env.pop(variable, None)
    yield env
    purged = lab(env, "down", "--purge")
    assert purged.returncode == 0, purged.stdout + purged.stderr


def postmaster_pid(env) -> int:
    """The lab's PostgreSQL server process: the first line of postmaster.pid (migrationlab/embedded.py: pgdata)."""
    return int((Path(env["MIGRATIONLAB_HOME"]) / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0])


@pytest.mark.parametrize("name, before, step", list(crash_steps()))
def test_the_lab_recovers_from_postgresql_killed_in_the_middle_of_a_step(name, before, step, private_lab):
    env, project = private_lab, get_project(name)
    lesson_step = next(each for each in project.steps if each.migration == step)
    release = ["--release", str(lesson_step.release)] if lesson_step.release else []  # as its release runs it
    port = free_port()
    server_log = Path(env["MIGRATIONLAB_HOME"]) / "postgres" / "postgres.log"
    up = lab(env, "up", name, "--reset", "--rows", str(LAB_ROWS), "--port", str(port))  # a project may come twice
    assert up.returncode == 0 and f"Seeding {project.large_table} with {LAB_ROWS:,} rows" in up.stdout, up.stdout
    if before != project.start:
        done = lab(env, "manage", name, *release, "--", "migrate", "demoapp", before)
        assert done.returncode == 0, done.stdout + done.stderr
    url = lab(env, "url", name).stdout.strip()

    with holder_and_monitor(url) as (holder, monitor):
        with holder.cursor() as cursor:  # the step does its large-table half, then waits here
            cursor.execute(f'LOCK TABLE "{project.small_table}" IN ACCESS EXCLUSIVE MODE')
        migrate = subprocess.Popen(
            [sys.executable, "-m", "migrationlab", "manage", name, *release, "--", "migrate", "demoapp", step],
            cwd=REPO_ROOT, env=dict(env, MIGRATIONLAB_APPLICATION_NAME=MIGRATOR), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        try:
            wait_until_waiting_on(monitor, project.small_table, migrate)
            logged = server_log.stat().st_size
            os.kill(postmaster_pid(env), signal.SIGKILL)
            output = migrate.communicate(timeout=FAILSAFE_S)[0]  # a failsafe: it fails at once
        finally:
            if migrate.poll() is None:
                os.killpg(migrate.pid, signal.SIGKILL)
                migrate.wait()
    assert migrate.returncode != 0, f"the step went on without its database:\n{output}"
    assert query_fails(url), "PostgreSQL still answers after its postmaster was killed"

    again = lab(env, "up", name)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "PostgreSQL 16 (embedded): started" in again.stdout, again.stdout
    assert f"database {name}: exists" in again.stdout and "Seeding" not in again.stdout, again.stdout
    assert "automatic recovery in progress" in server_log.read_text()[logged:], "no crash recovery logged"
    assert get(port, "/list_large/")[0] == 200, "the web server does not answer after the recovery"

    rerun = lab(env, "manage", name, *release, "--", "migrate", "demoapp", step)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert query(url, "SELECT count(*) FROM django_migrations WHERE app = 'demoapp' AND name = %s", [step]) == [(1,)]
    status, body = get(port, "/list_large/")
    assert status == 200 and body["table"] == project.large_table, body  # (proj10's last step leaves it empty)


def query_fails(url: str) -> bool:
    try:
        query(url, "SELECT 1")
    except psycopg2.OperationalError:
        return True
    return False


# -- 3. a reverse restores what the migration changed, or its docstring says why it cannot -----------------------------

DATA_OPERATIONS = {"RunPython", "RunSQL", "BackfillInBatches", "DeleteInBatches"}
# What this test found when it was written: reverses that do not restore what their migration changed, in
# migrations whose docstring does not say so (the migrations have owners of their own). Each is expected to fail
# here, strictly: once its reverse restores, or its docstring says why it cannot, it passes, and must leave this list.
NOT_RESTORED_YET = {
    "proj01_safe_backfill:0004_backfill_status_batched": "the backfilled status stays filled",
    "proj02_rename_column:0004_backfill_reference_batched": "the copied reference stays filled",
    "proj04_safe_backfill:0004_backfill_created_at_new_batched": "the copied created_at_new stays filled",
    "proj06_large_backfills:0004_fill_email_local_part_in_batches": "the filled email_local_part stays filled",
    "proj09_alter_defaults:0008_backfill_external_id_batched": "the filled external_id stays filled",
    "proj01_safe_backfill:0006_validate_status_check": "the CHECK stays validated",
    "proj04_safe_backfill:0006_validate_created_at_new_check": "the CHECK stays validated",
    "proj07_safe_backfill:0005_validate_customer_foreign_key": "the foreign key stays validated",
    "proj09_alter_defaults:0010_validate_external_id_check": "the CHECK stays validated",
    "proj10_large_deletes:0005_validate_history_check": "the CHECK stays validated",
    "proj10_large_deletes:0006_partition_by_attaching_history": "large_event comes back without its history CHECK",
}


def data_or_non_atomic_steps():
    """Every step that changes rows or runs outside one transaction: where a reverse that does nothing
    (RunPython.noop, an operation whose backwards is empty) would go unnoticed by a plain forward-and-back run."""
    for project in all_projects():
        for step in project.steps:
            path, case = migration_file(project, step.migration), f"{project.name}:{step.migration}"
            if re.search(r"^\s*atomic\s*=\s*False\b", path.read_text(), re.M) or calls(path) & DATA_OPERATIONS:
                known = NOT_RESTORED_YET.get(case)
                yield pytest.param(project.name, step_before(project, step.migration), step.migration, id=case,
                                   marks=[pytest.mark.xfail(strict=True, reason=known)] if known else [])


def test_every_reverse_not_restored_yet_is_a_case_of_the_test():
    assert set(NOT_RESTORED_YET) <= {param.id for param in data_or_non_atomic_steps()}


def says_why_it_cannot_be_reversed(source: str) -> bool:
    """The module docstring has a sentence about reversing (e.g. "Reversing is a no-op: the deleted rows are gone")."""
    docstring = ast.get_docstring(ast.parse(source)) or ""
    sentences = re.split(r"(?<=[.!?])\s+|\n\s*\n", docstring)
    return any("revers" in sentence.lower() and len(sentence.split()) >= 4 for sentence in sentences)


@pytest.mark.parametrize("name, before, migration", list(data_or_non_atomic_steps()))
def test_a_reverse_restores_the_schema_and_the_rows_or_the_docstring_says_why_not(name, before, migration, seeded):
    project = get_project(name)
    tables = tuple(t for t in (project.large_table, project.small_table, project.referenced_table) if t)
    expected = state_of(seeded(name, ROWS, before), tables)
    database = seeded(name, ROWS, migration)
    manage(name, database, "migrate", "demoapp", before)
    reversed_ = state_of(database, tables)
    assert reversed_[len(tables):] == expected[len(tables):], f"{migration}: its reverse does not restore the schema"
    if reversed_[:len(tables)] != expected[:len(tables)]:
        assert says_why_it_cannot_be_reversed(migration_file(project, migration).read_text()), (
            f"{migration}: its reverse leaves the rows as the migration made them, and its docstring does not say why")


def test_a_reason_is_a_sentence_about_reversing():
    silent = 'from django.db import migrations\n\noperations = [migrations.RunPython(forget_everything)]\n'
    assert not says_why_it_cannot_be_reversed(silent)
    explained = '"""Drop the archive.\n\nIt cannot be reversed: the rows are gone.\n"""\n' + silent
    assert says_why_it_cannot_be_reversed(explained)
    assert not says_why_it_cannot_be_reversed('"""Drop the archive. Reversed."""\n' + silent)


# -- 4. every fault reaches what docs/reliability.md says it reaches ---------------------------------------------------

def declares_non_atomic(path: Path) -> bool:
    """The migration's class says `atomic = False` (read from its syntax, not from a pattern in its text)."""
    return any(isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "atomic" for t in node.targets)
               and isinstance(node.value, ast.Constant) and node.value.value is False
               for node in ast.walk(ast.parse(path.read_text())))


def test_every_project_folder_is_in_the_faults_parametrisations():
    """Reversed to 0001 and judged behind a report: every folder with migrations is a project the tests iterate."""
    folders = sorted(path.parent.parent.parent.name for path in REPO_ROOT.glob("proj*/demoapp/migrations/0001_*.py"))
    assert folders == [project.name for project in all_projects()] == test_projects.PROJECTS


def test_every_non_atomic_migration_is_killed_between_operations():
    killed = {(values[0], values[2]) for values in (param.values for param in non_atomic_steps())}
    non_atomic = {(project.name, path.stem) for project in all_projects() for path in migration_files(project)
                  if declares_non_atomic(path)}
    assert non_atomic == killed


def test_every_batched_migration_is_a_step_killed_at_a_random_batch():
    killed = {(values[0], values[2]) for values in (param.values for param in batched_steps())}
    batched = {(project.name, path.stem) for project in all_projects() for path in migration_files(project)
               if calls(path) & set(BATCHED)}
    steps = {(project.name, step.migration) for project in all_projects() for step in project.steps}
    assert killed <= batched <= steps
    for name, migration in batched - killed:  # only batches of rows the lab does not hold (proj10's event notes)
        project = get_project(name)
        assert not batched_on_the_large_table(migration_file(project, migration), project.large_model), migration


@pytest.mark.parametrize("every_project", [False, True])
def test_postgresql_is_killed_during_a_step_of_every_kind(every_project):
    candidates = list(crash_candidates())
    chosen = [tuple(param.values) for param in crash_steps(every_project)]
    kind = {values: kind_of(get_project(values[0]), values[2]) for values in candidates}
    assert set(chosen) <= set(candidates) and len(set(chosen)) == len(chosen)
    if every_project:
        assert [values[0] for values in chosen] == [project.name for project in all_projects()]
    else:  # one of each kind
        assert sorted(kind[values] for values in chosen) == sorted(set(kind.values()))
