"""What a step may start beside its migration (scenario.toml `actors`). A long_query lives until the project's run
ends; a previous_release until its step ends (with the deploy of the next release, if the step brings one: see
runner.py).

long_query        a report session: reads one row of the large table in a transaction, then sleeps in it for
                  `seconds`. It holds ACCESS SHARE on the table all that time, exactly like a long report,
                  without spending CPU that the measurement needs. A migration's ACCESS EXCLUSIVE queues behind
                  it, and all traffic queues behind that.
previous_release  a second gunicorn of the project, started with the actor's `env` added (what selects the release
                  still serving traffic), on its own free port; its endpoints are probed as
                  "previous_release/list_large" and "previous_release/update_order".
append_rows       `rows` new rows inserted into the large table (scenario.toml's [append], as `manage.py
                  append_rows` does), done before the step starts: time passing, what the application wrote
                  meanwhile. Nothing to stop.
"""

from __future__ import annotations

import threading

import psycopg2
from psycopg2 import sql

from migrationlab import lab
from migrationlab.errors import LabError
from migrationlab.scenarios import Actor, Project
from migrationlab.seeding import append
from migrationlab.serving import free_port

REPORT_APPLICATION = "report"
PREVIOUS_RELEASE = "previous_release"


class LongQuery:
    def __init__(self, database_url: str, table: str, seconds: float):
        self.database_url = database_url
        self.table = table
        self.seconds = seconds
        self.error: str | None = None
        self._holding = threading.Event()
        self._stopping = False
        self._connection = None
        self._thread = threading.Thread(target=self._run, name="showdown-long-query", daemon=True)

    def describe(self) -> str:
        return f"a report query holding {self.table} (ACCESS SHARE) for {self.seconds:g} s"

    def start(self) -> None:
        """Return once the report holds its lock on the table, so the migration surely queues behind it."""
        self._thread.start()
        self._holding.wait()
        if self.error:
            raise LabError(f"the long_query actor could not start: {self.error}")

    def stop(self) -> None:
        self._stopping = True
        connection = self._connection
        if connection is not None and not connection.closed:
            connection.cancel()  # ends the sleep at once; the transaction rolls back
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            self._connection = psycopg2.connect(self.database_url, application_name=REPORT_APPLICATION,
                                                connect_timeout=10)
            with self._connection.cursor() as cursor:
                cursor.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(self.table)))
                self._holding.set()
                if not self._stopping:
                    cursor.execute("SELECT pg_sleep(%s)", [self.seconds])
            self._connection.rollback()
        except psycopg2.Error as failure:
            if not self._stopping:
                self.error = str(failure).strip().splitlines()[0] if str(failure).strip() else repr(failure)
        finally:
            self._holding.set()
            if self._connection is not None:
                self._connection.close()


class PreviousRelease:
    def __init__(self, project: Project, database_url: str, env: dict[str, str], instance: str):
        self.project = project
        self.database_url = database_url
        self.env = env
        self.instance = instance
        self.port: int | None = None

    def describe(self) -> str:
        settings = " ".join(f"{name}={value}" for name, value in self.env.items()) or "no extra environment"
        return f"the previous release ({settings}) serving on 127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        lab.start_web(self.project, self.database_url, self.port, instance=self.instance, extra_env=self.env)

    def stop(self) -> None:
        lab.stop_web(self.project, instance=self.instance)


class AppendRows:
    def __init__(self, project: Project, database_url: str, rows: int):
        self.project = project
        self.database_url = database_url
        self.rows = rows
        self.seconds = 0.0

    def describe(self) -> str:
        return (f"{self.rows:,} new rows appended to {self.project.large_table} (scenario.toml [append]) "
                f"in {self.seconds:.1f} s")

    def start(self) -> None:
        try:
            connection = psycopg2.connect(self.database_url, application_name="append_rows", connect_timeout=10)
        except psycopg2.Error as failure:
            raise LabError(f"the append_rows actor could not connect: {str(failure).strip().splitlines()[0]}") from None
        try:
            self.seconds = append(connection, table=self.project.large_table, columns=self.project.append_columns,
                                  rows=self.rows)
        except psycopg2.Error as failure:
            raise LabError(f"the append_rows actor failed: {str(failure).strip().splitlines()[0]}") from None
        finally:
            connection.close()

    def stop(self) -> None:
        pass


def make_actor(actor: Actor, project: Project, database_url: str, instance: str):
    if actor.kind == "long_query":
        return LongQuery(database_url, project.large_table, actor.seconds)
    if actor.kind == "previous_release":
        return PreviousRelease(project, database_url, actor.env, instance)
    if actor.kind == "append_rows":
        return AppendRows(project, database_url, actor.rows)
    raise LabError(f"unknown actor kind '{actor.kind}'")
