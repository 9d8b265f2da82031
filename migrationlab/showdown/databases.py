"""Where a showdown's databases live: the lab's embedded PostgreSQL 16, or any PostgreSQL >= 14 given by URL.

Each project's run gets a database of its own, created here and dropped afterwards, named
`showdown_<project>_<random>`. Only databases this object created are ever dropped; on a server given by URL,
the URL's own database is only connected to, to create and drop those (the role needs CREATEDB).
"""

from __future__ import annotations

import secrets
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2

from migrationlab import lab
from migrationlab.errors import LabError
from migrationlab.scenarios import Project, all_projects
from migrationlab.showdown.processes import interrupts_deferred

OLDEST_SERVER = 140000  # pg_locks.waitstart (how long a session has waited) exists since PostgreSQL 14
MAX_IDENTIFIER = 63


def redacted(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class ShowdownDatabases:
    """Use as a context manager: entering reaches (or starts) the server; leaving drops what is left and, if the
    embedded server was started here and no lab project is serving, stops it again."""

    def __init__(self, database_url: str | None = None):
        self.database_url = database_url
        self.created: list[str] = []
        self.description = ""
        self.server_version = ""
        self._embedded = None
        self._started_here = False

    def __enter__(self) -> ShowdownDatabases:
        if self.database_url:
            self._check_url(self.database_url)
            self.admin_dsn = self.database_url
            self.description = f"PostgreSQL at {redacted(self.database_url)}"
        else:
            self._embedded = lab.embedded_server()
            self._started_here = self._embedded.start()
            self.admin_dsn = self._embedded.dsn()
            state = "started" if self._started_here else "already running"
            self.description = f"embedded PostgreSQL 16 on 127.0.0.1:{self._embedded.port} ({state})"
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
            if self._started_here and not lab.serving_projects(all_projects()):
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
            raise LabError(f"cannot connect to {redacted(self.admin_dsn)}: {_first_line(failure)}") from None
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
            raise LabError(f"the showdown needs PostgreSQL 14 or later; this server is {version}")
        return version

    def url(self, name: str) -> str:
        if self._embedded is not None:
            return self._embedded.dsn(name)
        return urlunsplit(urlsplit(self.admin_dsn)._replace(path="/" + quote(name)))

    def create(self, project: Project) -> tuple[str, str]:
        """A new, empty database for one project's run: (name, URL)."""
        while True:
            suffix = secrets.token_hex(4)
            name = f"showdown_{project.name}"[: MAX_IDENTIFIER - len(suffix) - 1] + f"_{suffix}"
            try:
                if lab.create_database(self.admin_dsn, name):
                    break
            except psycopg2.Error as failure:
                raise LabError(f"cannot create database {name}: {_first_line(failure)}") from None
        self.created.append(name)
        return name, self.url(name)

    def drop(self, name: str) -> None:
        """Drop a database this object created (its sessions ended: e.g. a migration interrupted mid-statement)."""
        if name not in self.created:
            raise LabError(f"refusing to drop {name}: the showdown did not create it")
        lab.drop_database(self.admin_dsn, name)
        self.created.remove(name)
