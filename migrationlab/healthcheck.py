"""The web container's healthcheck: healthy once the project serves at its start migration.

    python -m migrationlab.healthcheck PROJECT [--port 8000]

docker-compose.yml runs it inside the web container (the image has python, not curl). Healthy (exit 0) takes both:
- the server answers: GET /list_large/ on 127.0.0.1:PORT returns 200 within 3 s (the curl loop's rule) with a
  page of the project's large table, so gunicorn is up and its workers reach the database;
- demoapp is at its start migration or past it: django_migrations records scenario.toml's `start`.
`serve` migrates to the start before it starts gunicorn, but the second condition is asked of the database itself,
not inferred. Either missing: one line saying what is missing, exit 1. So `docker compose up --wait` returns once
the demo can begin, and a lesson step that blocks the API shows as unhealthy in `docker compose ps`.

It reads the database settings the way the project does (POSTGRES_* or DATABASE_URL, migrationlab/environment.py)
and imports neither Django's machinery nor gunicorn: it runs every few seconds beside the demo.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

import psycopg2

from migrationlab import REPO_ROOT
from migrationlab.scenarios import ScenarioError, get_project
from migrationlab.environment import database_from_environment

TIMEOUT_SECONDS = 3  # the curl loop's --max-time: an answer later than that is a failed request


def host_header() -> str:
    """A Host the server answers to: the first of DJANGO_ALLOWED_HOSTS (a leading-dot domain made a name)."""
    first = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")[0].strip()
    if first in ("", "*"):
        return "127.0.0.1"
    return first.lstrip(".")


def serves(port: int, large_table: str) -> str | None:
    """None if GET /list_large/ answers 200 with a page of `large_table` in time; else what went wrong."""
    url = f"http://127.0.0.1:{port}/list_large/"
    request = urllib.request.Request(url, headers={"Host": host_header()})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            table = json.loads(response.read()).get("table")
    except urllib.error.HTTPError as failure:
        return f"{url} answered {failure.code}"
    except (urllib.error.URLError, OSError) as failure:  # refused (not listening yet), timed out, reset
        reason = getattr(failure, "reason", failure)
        return f"no answer from {url} ({reason})"
    except ValueError:
        return f"{url} answered 200 but not with JSON"
    if table != large_table:
        return f"{url} answered with table {table!r}, not {large_table!r}"
    return None


def at_start(start: str) -> str | None:
    """None if django_migrations records demoapp's start migration; else what is missing."""
    settings = database_from_environment()
    options = settings["OPTIONS"]
    try:
        connection = psycopg2.connect(
            dbname=settings["NAME"], user=settings["USER"], password=settings["PASSWORD"],
            host=settings["HOST"] or None, port=settings["PORT"] or None,
            sslmode=options.get("sslmode"), connect_timeout=TIMEOUT_SECONDS,
            application_name="healthcheck", options=f"-c statement_timeout={TIMEOUT_SECONDS * 1000}",
        )
    except psycopg2.Error as failure:
        return f"database not reachable: {str(failure).strip().splitlines()[0] if str(failure).strip() else failure}"
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('django_migrations') IS NOT NULL")
            if not cursor.fetchone()[0]:
                return f"demoapp is not at its start migration {start} yet (no django_migrations table)"
            cursor.execute("SELECT 1 FROM django_migrations WHERE app = 'demoapp' AND name = %s", [start])
            if cursor.fetchone() is None:
                return f"demoapp is not at its start migration {start} yet"
    except psycopg2.Error as failure:
        return f"cannot read django_migrations: {str(failure).strip().splitlines()[0]}"
    finally:
        connection.close()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migrationlab.healthcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("project", help="the project folder the container serves, e.g. proj01_safe_backfill")
    parser.add_argument("--port", type=int, default=8000, help="the port gunicorn listens on (default 8000)")
    args = parser.parse_args(argv)
    try:
        project = get_project(args.project, REPO_ROOT)
    except ScenarioError as failure:
        print(f"unhealthy: {failure}")
        return 1
    problem = at_start(project.start) or serves(args.port, project.large_table)
    if problem:
        print(f"unhealthy: {problem}")
        return 1
    print(f"healthy: serving {project.large_table} on port {args.port}, demoapp at or past {project.start}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
