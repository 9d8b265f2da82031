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


@contextmanager
def seeded_database(pg, project_name: str, rows: int):
    """A fresh database at the project's start migration, its large table seeded with `rows` rows; its URL."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    lab.create_database(pg.dsn(), name)
    url = pg.dsn(name)
    try:
        manage(project_name, url, "migrate", "demoapp", get_project(project_name).start)
        manage(project_name, url, "seed_large_table", "--large-count", str(rows))
        yield url
    finally:
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
