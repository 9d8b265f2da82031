"""The no-Docker lab: one embedded PostgreSQL 16 for all projects, a database and a gunicorn per project.

State lives in the lab home (`.lab/` at the repo root, or $MIGRATIONLAB_HOME):
    postgres/        the cluster (pgdata, socket, log, and its superuser's password)
    run/NAME.pid     the gunicorn master serving project NAME
    run/NAME.port    the port it serves on
    run/NAME.release the release it runs (a project whose lesson spans releases: DEMO_RELEASE)
    logs/NAME.log    its output
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from psycopg2 import sql

# The lab's PostgreSQL and its databases live in databases.py; the lab's commands (cli.py) and the tests create and
# drop the lab's databases through this module too.
from migrationlab.databases import (  # noqa: F401 (create_database, drop_database)
    MAJORS, autocommit_cursor, create_database, database_exists, drop_database, embedded_server, embedded_unavailable,
    lab_home, web_pid_file, web_server_pid,
)
from migrationlab.errors import LabError, cli_command
from migrationlab.ports import require_free_port
from migrationlab.scenarios import RELEASE_VARIABLE, Project
from migrationlab.serving import prepare_argv, project_environment


def purge_lab_home(server) -> Path:
    """Stop the lab's PostgreSQL (every major's cluster) and delete all the lab keeps in its home (and the home, if
    that empties it)."""
    server.purge()
    for major in MAJORS:
        if major != server.major and embedded_unavailable(major) is None:
            other = embedded_server(major)
            if other.data_dir.exists():
                other.purge()
    home = lab_home()
    for part in ("run", "logs"):  # by name, not the whole home: MIGRATIONLAB_HOME may point at a folder with more
        shutil.rmtree(home / part, ignore_errors=True)
    try:
        home.rmdir()
    except OSError:  # not empty (what is left is not ours) or already gone
        pass
    return home


def lab_database(project: Project, major: int | None = None):
    """The running lab server (of PostgreSQL `major`: default databases.postgres_major()), once sure it holds the
    project's database."""
    server = embedded_server(major)
    up = f"{cli_command()} up{f' --postgres {major}' if major else ''} {project.name}"
    if not server.is_running():
        raise LabError(f"the lab database (PostgreSQL {server.major}) is not running; start it with: {up}")
    if not database_exists(server.dsn(), project.name):
        raise LabError(f"{project.name} has no lab database yet (PostgreSQL {server.major}); run: {up}")
    return server


def applied_migrations(database_url: str) -> set[str]:
    """The demoapp migrations applied in the database (none before its first migrate)."""
    with autocommit_cursor(database_url) as cursor:
        cursor.execute("SELECT to_regclass('django_migrations') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return set()
        cursor.execute("SELECT name FROM django_migrations WHERE app = 'demoapp'")
        return {name for (name,) in cursor.fetchall()}


def table_is_empty(database_url: str, table: str) -> bool:
    """Whether the table is empty and never held a row: what `up` seeds. One that a lesson step emptied (proj10
    drops the partition holding every row) has handed out ids, its id sequence has moved on: seeding it again
    would undo the lesson, and fail (no partition takes the old rows any more)."""
    with autocommit_cursor(database_url) as cursor:
        cursor.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table)))
        if cursor.fetchone()[0]:
            return False
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        (sequence,) = cursor.fetchone()
        if sequence is None:
            return True
        cursor.execute(sql.SQL("SELECT last_value = 1 AND NOT is_called FROM {}").format(sql.SQL(sequence)))
        return cursor.fetchone()[0]


def run_manage(project: Project, database_url: str, args: list[str], capture: bool = False,
               extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`manage.py ARGS` of the project against `database_url`, with the embedded server's tools on PATH."""
    env = project_environment(project, database_url, extra=extra_env)
    from migrationlab.embedded import BIN_DIR
    env["PATH"] = os.pathsep.join([str(BIN_DIR), env.get("PATH", "")])  # dbshell finds psql 16
    return subprocess.run(
        [sys.executable, str(project.folder / "manage.py"), *args],
        cwd=project.folder, env=env, text=True, capture_output=capture, stdin=subprocess.DEVNULL if capture else None,
    )


# -- web servers ------------------------------------------------------------------------------------------------

# `instance` names a server other than the project's own (tests, showdown): its own pid and log files.

def pid_file(project: Project, instance: str | None = None) -> Path:
    return web_pid_file(instance or project.name)


def port_file(project: Project, instance: str | None = None) -> Path:
    return lab_home() / "run" / f"{instance or project.name}.port"


def log_file(project: Project, instance: str | None = None) -> Path:
    return lab_home() / "logs" / f"{instance or project.name}.log"


def release_file(project: Project, instance: str | None = None) -> Path:
    return lab_home() / "run" / f"{instance or project.name}.release"


def server_pid(project: Project, instance: str | None = None) -> int | None:
    """The pid of the gunicorn serving the project, if it runs."""
    return web_server_pid(instance or project.name)


def _kept_while_running(project: Project, instance: str | None, kept: Path) -> int | None:
    """A number kept in the run folder for the running server (None: not running, or not kept)."""
    if server_pid(project, instance) is None:
        return None
    try:
        return int(kept.read_text())
    except (FileNotFoundError, ValueError):
        return None


def served_port(project: Project, instance: str | None = None) -> int | None:
    """The port the project's running server listens on (None: not running, or started before ports were kept)."""
    return _kept_while_running(project, instance, port_file(project, instance))


def served_release(project: Project, instance: str | None = None) -> int | None:
    """The release the project's running server runs (None: not running, or a project without releases)."""
    return _kept_while_running(project, instance, release_file(project, instance))


def serving_projects(projects: list[Project]) -> list[Project]:
    return [project for project in projects if server_pid(project)]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_web(project: Project, database_url: str, port: int, ready_seconds: float = 60.0,
              instance: str | None = None, extra_env: dict[str, str] | None = None) -> int:
    """Start `python -m migrationlab serve` for the project in the background; return the gunicorn pid."""
    require_free_port(port)
    log = log_file(project, instance)
    pids = pid_file(project, instance)
    log.parent.mkdir(parents=True, exist_ok=True)
    pids.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "migrationlab", "serve", project.name, "--bind", f"127.0.0.1:{port}"],
            cwd=project.folder, env=project_environment(project, database_url, extra=extra_env),
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal that ran `up` must not stop the server
        )
    pids.write_text(str(process.pid))  # serve exec()s gunicorn: same pid
    port_file(project, instance).write_text(str(port))
    release = (extra_env or {}).get(RELEASE_VARIABLE)
    if release:
        release_file(project, instance).write_text(release)
    try:
        _wait_until_ready(process, project, port, ready_seconds, instance)
    except BaseException:  # Ctrl-C or a failed start: leave nothing running behind
        stop_web(project, instance=instance)
        raise
    return process.pid


def _wait_until_ready(process, project: Project, port: int, ready_seconds: float, instance: str | None) -> None:
    log, pids = log_file(project, instance), pid_file(project, instance)
    url = f"http://127.0.0.1:{port}/list_large/"
    deadline = time.monotonic() + ready_seconds
    while not _answers(url):
        if process.poll() is not None:
            pids.unlink(missing_ok=True)
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise LabError(f"the web server of {project.name} exited: {' '.join(tail)} (log: {log})")
        if time.monotonic() > deadline:
            raise LabError(f"the web server of {project.name} did not answer within {ready_seconds:.0f} s (log: {log})")
        time.sleep(0.2)  # polling a server that is starting up


def stop_web(project: Project, wait_seconds: float = 10.0, instance: str | None = None) -> bool:
    pid = server_pid(project, instance)
    if pid is None:
        pid_file(project, instance).unlink(missing_ok=True)
        port_file(project, instance).unlink(missing_ok=True)
        release_file(project, instance).unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, signal.SIGINT)  # gunicorn: quick shutdown of master and workers
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        try:  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pid_file(project, instance).unlink(missing_ok=True)
    port_file(project, instance).unlink(missing_ok=True)
    release_file(project, instance).unlink(missing_ok=True)
    return True


def prepare(project: Project, database_url: str) -> None:
    done = subprocess.run(prepare_argv(project), cwd=project.folder, env=project_environment(project, database_url))
    if done.returncode != 0:
        raise LabError(f"could not migrate {project.name} to its start migration {project.start}")
