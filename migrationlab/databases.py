"""Scratch databases: created on the lab's embedded PostgreSQL 16 (started if need be) or on any PostgreSQL >= 14
given by URL, and dropped again. The showdown, the catalog and the judge each keep theirs here.

Each database is named `<prefix>_<what>_<random>`. Only databases this object created are ever dropped; on a server
given by URL, the URL's own database is only connected to, to create and drop those (the role needs CREATEDB).
"""

from __future__ import annotations

import secrets
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2

from migrationlab import lab
from migrationlab.errors import LabError
from migrationlab.processes import interrupts_deferred

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


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class ScratchDatabases:
    """Use as a context manager: entering reaches (or starts) the server; leaving drops what is left and, if the
    embedded server was started here and no lab project is serving, stops it again. `user`: who uses them, for the
    messages ("the showdown"); `prefix`: how their names start."""

    def __init__(self, database_url: str | None = None, user: str = "the showdown", prefix: str = "showdown"):
        self.database_url = database_url
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
            if self._started_here and not lab.serving_projects(lab_projects()):
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
                if lab.create_database(self.admin_dsn, name):
                    break
            except psycopg2.Error as failure:
                raise LabError(f"cannot create database {name}: {first_line(failure)}") from None
        self.created.append(name)
        return name, self.url(name)

    def drop(self, name: str) -> None:
        """Drop a database this object created (its sessions ended: e.g. a migration interrupted mid-statement)."""
        if name not in self.created:
            raise LabError(f"refusing to drop {name}: {self.user} did not create it")
        lab.drop_database(self.admin_dsn, name)
        self.created.remove(name)


def lab_projects() -> list:
    """The lab's projects beside this package (none where migrationlab is installed on its own, e.g. for judge)."""
    from migrationlab.scenarios import all_projects

    return all_projects()
