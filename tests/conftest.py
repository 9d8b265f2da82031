"""Test fixtures: a real PostgreSQL 16 (the embedded one) in a temporary folder, a fresh database per test.

The tests never touch the developer's own lab (.lab/, port 5400): they get their own cluster on a free port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest

from migrationlab import lab
from migrationlab.scenarios import get_project
from migrationlab.serving import free_port, project_environment  # noqa: F401 (free_port: for the tests)


def starts_postgresql(fixture_function):
    """Declares that a fixture starts a PostgreSQL server (itself, or through the lab's CLI): every test that
    uses it, directly or through another fixture, is marked `postgres`. Put it under @pytest.fixture."""
    fixture_function.starts_postgresql = True
    return fixture_function


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


@pytest.fixture
@starts_postgresql
def own_lab(tmp_path):
    """The environment of a lab of the test's own (its home in tmp_path/lab, a free port), for a test that starts
    it through the CLI or by itself; purged afterwards."""
    env = dict(os.environ, MIGRATIONLAB_HOME=str(tmp_path / "lab"), MIGRATIONLAB_PG_PORT=str(free_port()))
    for variable in ("DATABASE_URL", "DEMO_RELEASE"):
        env.pop(variable, None)
    yield env
    subprocess.run([sys.executable, "-m", "migrationlab", "down", "--purge"], env=env, capture_output=True,
                   stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
@starts_postgresql
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


# -- What a test needs, read from its fixtures -------------------------------------------------------------------------
# Two things follow from the fixtures a test uses (item.fixturenames: every fixture it needs, directly or not):
# - whether it needs PostgreSQL: one of its fixtures starts a server (`pg`, or a lab of a module's own) and says so
#   with @starts_postgresql. Those tests are marked `postgres`; `make check` runs every other test (-m "not postgres").
# - which tests share a worker (`make test`: pytest -n 2 --dist loadscope): those that use the same instance of a
#   module-, class- or package-scoped fixture (a catalog run, a showdown, a lab, a judgement), or each worker
#   builds it again; a parametrised one is one instance per parameter. Session-scoped fixtures (the PostgreSQL
#   server) are every worker's own anyway. Every other test is a work unit of its own.
# tests/test_suite_rules.py checks both rules on the suite itself.
# pytest-xdist's own grouping (xdist_group with --dist loadgroup) does nothing under pytest 9 (it renames items
# through an attribute pytest 9 no longer reads), and the controller that schedules never sees the items: each
# worker writes the work units it collected to a file the controller names (workerinput), and the scheduler reads it.
WIDER_THAN_A_TEST = ("class", "module", "package")
WORK_UNITS = pytest.StashKey[Path]()


def fixture_definitions(item: pytest.Item):
    """(name, the definition that applies) of every fixture the test uses."""
    for name in item.fixturenames:
        definitions = item._fixtureinfo.name2fixturedefs.get(name)
        if definitions:
            yield name, definitions[-1]


def needs_postgresql(item: pytest.Item) -> bool:
    return any(getattr(definition.func, "starts_postgresql", False) for _, definition in fixture_definitions(item))


def shared_instances(item: pytest.Item) -> list[str]:
    """The instances of fixtures wider than a test that the test uses: where each lives, its name, its parameter."""
    module = item.nodeid.split("::")[0]
    where = {"module": module, "class": item.nodeid.rsplit("::", 1)[0], "package": module.rsplit("/", 1)[0]}
    params = getattr(getattr(item, "callspec", None), "indices", {})
    return [f"{where[definition.scope]}::{name}" + (f"[{params[name]}]" if name in params else "")
            for name, definition in fixture_definitions(item) if definition.scope in WIDER_THAN_A_TEST]


def work_units(items: list[pytest.Item]) -> dict[str, str]:
    """nodeid -> work unit: tests linked by a shared instance, directly or through others, share one."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    keys = {item.nodeid: shared_instances(item) or [item.nodeid] for item in items}
    for first, *others in keys.values():
        for key in others:
            parent[root(key)] = root(first)
    return {nodeid: root(linked[0]) for nodeid, linked in keys.items()}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the marks added here
def pytest_collection_modifyitems(config, items):
    for item in items:
        if needs_postgresql(item):
            item.add_marker(pytest.mark.postgres)
    written = getattr(config, "workerinput", {}).get("work_units")
    if written:
        Path(written).write_text(json.dumps(work_units(items)))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """In the controller: where this worker writes its work units."""
    if WORK_UNITS not in node.config.stash:
        node.config.stash[WORK_UNITS] = Path(tempfile.mkdtemp(prefix="work-units-"))
    folder = node.config.stash[WORK_UNITS]
    node.workerinput["work_units"] = str(folder / f"{node.gateway.id}.json")


def pytest_unconfigure(config):
    if WORK_UNITS in config.stash:
        shutil.rmtree(config.stash[WORK_UNITS], ignore_errors=True)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        units: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.units is None:  # read once every worker has collected (scheduling starts then)
                self.units = {}
                for written in sorted(config.stash[WORK_UNITS].glob("*.json")):
                    self.units.update(json.loads(written.read_text()))
            return self.units.get(nodeid, nodeid)

    return SharedFixtureScheduling(config, log)
