"""Test fixtures: a real PostgreSQL 16 (the embedded one) in a temporary folder, a fresh database per test.

The tests never touch the developer's own lab (.lab/, port 5400): they get their own cluster on a free port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from contextlib import contextmanager

import psycopg2
import pytest

from migrationlab import lab
from migrationlab.scenarios import get_project
from migrationlab.serving import free_port, project_environment  # noqa: F401 (free_port: for the tests)


@pytest.fixture(scope="session")
def lab_env(tmp_path_factory):
    """MIGRATIONLAB_HOME and MIGRATIONLAB_PG_PORT of a private lab, for tests that run the CLI."""
    home = tmp_path_factory.mktemp("lab")
    port = free_port()
    previous = {key: os.environ.get(key) for key in ("MIGRATIONLAB_HOME", "MIGRATIONLAB_PG_PORT")}
    os.environ["MIGRATIONLAB_HOME"] = str(home)
    os.environ["MIGRATIONLAB_PG_PORT"] = str(port)
    yield {"MIGRATIONLAB_HOME": str(home), "MIGRATIONLAB_PG_PORT": str(port)}
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def pg(lab_env):
    """The embedded PostgreSQL 16 of the private lab, started once for the session."""
    server = lab.embedded_server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def database(pg):
    """A fresh, empty database; its URL. Dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    lab.create_database(pg.dsn(), name)
    yield pg.dsn(name)
    lab.drop_database(pg.dsn(), name)


# The row count of most tests: a backfill of 10,000-row batches needs five, so "one batch" and "the whole table"
# differ, and a migration takes a second or two. One seeded template per project, copied by each test.
ROWS = 50_000

_templates: dict[tuple, str] = {}


def seeded_template(pg, project_name: str, rows: int) -> str:
    """The name of a database at the project's start migration with `rows` seeded rows, made once per session.

    Tests copy it (CREATE DATABASE ... TEMPLATE: a file copy, a fraction of a second) instead of migrating and
    seeding anew each time: the suite stays fast as projects are added. Nobody connects to a template."""
    key = (project_name, rows)
    if key not in _templates:
        name = f"template_{project_name[:40]}_{rows}"
        lab.drop_database(pg.dsn(), name)
        lab.create_database(pg.dsn(), name)
        url = pg.dsn(name)
        manage(project_name, url, "migrate", "demoapp", get_project(project_name).start)
        manage(project_name, url, "seed_large_table", "--large-count", str(rows))
        _templates[key] = name
    return _templates[key]


def migrated_template(pg, project_name: str, rows: int, migration: str) -> str:
    """The name of a template database: the seeded start, migrated to `migration` (one of the project's steps,
    or its start). Made once per session, each from the template of the step before: walking a project's steps
    costs one `migrate` per step, however many tests start from (or compare with) a step."""
    project = get_project(project_name)
    if migration == project.start:
        return seeded_template(pg, project_name, rows)
    key = (project_name, rows, migration)
    if key not in _templates:
        migrations = [step.migration for step in project.steps]
        before = project.start if migrations.index(migration) == 0 else migrations[migrations.index(migration) - 1]
        source = migrated_template(pg, project_name, rows, before)
        name = f"template_{uuid.uuid4().hex[:12]}"
        lab.create_database(pg.dsn(), name, template=source)
        manage(project_name, pg.dsn(name), "migrate", "demoapp", migration)
        _templates[key] = name
    return _templates[key]


def copy_of_seeded(pg, project_name: str, rows: int, migration: str | None = None) -> tuple[str, str]:
    """A new database copied from the seeded template (migrated to `migration`, if given): (name, URL)."""
    template = (seeded_template(pg, project_name, rows) if migration is None
                else migrated_template(pg, project_name, rows, migration))
    name = f"test_{uuid.uuid4().hex[:12]}"
    lab.create_database(pg.dsn(), name, template=template)
    return name, pg.dsn(name)


@contextmanager
def seeded_database(pg, project_name: str, rows: int):
    """A fresh database at the project's start migration, its large table seeded with `rows` rows; its URL."""
    name, url = copy_of_seeded(pg, project_name, rows)
    try:
        yield url
    finally:
        lab.drop_database(pg.dsn(), name)


@pytest.fixture
def seeded(pg):
    """seeded(project_name, rows[, migration]) -> URL of a fresh copy of the seeded start (migrated to `migration`);
    every copy dropped afterwards."""
    made = []

    def make(project_name: str, rows: int, migration: str | None = None) -> str:
        name, url = copy_of_seeded(pg, project_name, rows, migration)
        made.append(name)
        return url

    yield make
    for name in made:
        lab.drop_database(pg.dsn(), name)


def manage(project_name: str, database_url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the project's manage.py against `database_url`; output captured."""
    project = get_project(project_name)
    done = subprocess.run(
        [sys.executable, str(project.folder / "manage.py"), *args],
        cwd=project.folder, env=project_environment(project, database_url),
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def query(database_url: str, statement: str, params=None):
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(statement, params)
        rows = cursor.fetchall() if cursor.description else None
    connection.close()
    return rows


# -- Two test workers (`make test`: pytest -n 2 --dist loadscope) ------------------------------------------------------
# Tests that share an expensive fixture must run on one worker, or each worker builds it again (a catalog run, a
# showdown, a lab, a judgement). pytest-xdist's own way, the xdist_group mark with --dist loadgroup, does nothing
# under pytest 9 (it renames items through an attribute pytest 9 no longer reads), so the suite says here which
# tests go together, and every other test is a work unit of its own.
SHARED_BY_MODULE = {"test_catalog.py", "test_cli.py", "test_endpoints.py", "test_showdown_end_to_end.py"}
SHARED_BY_FUNCTION = {"test_faults.py::test_the_lab_recovers_from_postgresql_killed_in_the_middle_of_a_step"}
SHARED_BY_PARAMETER = {"test_lessons.py"}  # one judgement per project, for every test of that project
# Only the tests that use the module's shared judgement; the others (one judge run each) are units of their own.
SHARED_BY_FIXTURE = {"test_judge.py": "shop"}


def work_unit(nodeid: str) -> str:
    """The tests that must run on the same worker share a work unit: the module, the function, or the parameter."""
    path, _, rest = nodeid.partition("::")
    module = path.rsplit("/", 1)[-1]
    function, _, parameter = rest.partition("[")
    if module in SHARED_BY_MODULE:
        return path
    if f"{module}::{function}" in SHARED_BY_FUNCTION:
        return f"{path}::{function}"
    if module in SHARED_BY_PARAMETER and parameter:
        return f"{path}[{parameter}"
    if module in SHARED_BY_FIXTURE and _uses(path, function, SHARED_BY_FIXTURE[module]):
        return f"{path}::{SHARED_BY_FIXTURE[module]}"
    return nodeid


def _uses(path: str, function: str, fixture: str) -> bool:
    """Whether the test function names the fixture among its arguments (read from the module's source)."""
    import re
    from pathlib import Path

    source = (Path(__file__).parent.parent / path).read_text() if not Path(path).is_absolute() else Path(path).read_text()
    match = re.search(rf"def {re.escape(function)}\(([^)]*)\)", source)
    return bool(match and re.search(rf"\b{fixture}\b", match.group(1)))


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return SharedFixtureScheduling(config, log)
