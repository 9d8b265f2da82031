"""PostgreSQL as the judge of a lab project: what does each step of its scenario make the API's reads and writes
wait for? The front end of migrationlab/judgecore.py for the lab: how a migration is stopped after every statement
(the gate), judged while it waits (behind a report, at each phase of a CONCURRENTLY build) and what never, briefly
and throughout mean are written there, once.

What is the lab's own here:
  - the probes are the API's own views: the read (/list_large/) and the write (/update_order/, on a fixed row), sent
    from other connections while the migration is held;
  - in a project whose large table refers to another one (scenario.toml's referenced_table: the customers of a
    foreign key lesson), the same read and write are sent to that table too (/list_referenced/,
    /update_referenced/), and judged on their own: referenced_reads, referenced_writes;
  - a step with a long_query actor runs behind a report's transaction held open from before the step;
  - each verdict is compared with the step's claim in scenario.toml (reads, writes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.db import DatabaseError, connection
from django.test import RequestFactory

from migrationlab import web
from migrationlab.judgecore import (
    Gate, HeldTransactions, Pause, Probes, judge_gated, migrate_in_thread, strongest, verdict,
)
from migrationlab.scenarios import Project, Step


@dataclass
class Judgement:
    migration: str
    kind: str
    claimed_reads: str
    claimed_writes: str
    reads: str
    writes: str
    table_rows: int
    strongest_lock: str | None
    pauses: list[dict]
    # The referenced table's (None in a project without one): claims, verdicts, the strongest lock held on it.
    claimed_referenced_reads: str | None = None
    claimed_referenced_writes: str | None = None
    referenced_reads: str | None = None
    referenced_writes: str | None = None
    referenced_strongest_lock: str | None = None
    # A step of a project with releases (migrationlab/releases.py; None elsewhere): what the release still serving
    # answered once the step was applied ("works", "fails" or "partly"), against its claim; and after the last step
    # of a release, what that release, deployed then, answered (it must work).
    claimed_previous_release: str | None = None
    previous_release: str | None = None
    deployed_release: str | None = None

    @property
    def holds(self) -> bool:
        return (self.reads, self.writes, self.referenced_reads, self.referenced_writes) == (
            self.claimed_reads, self.claimed_writes, self.claimed_referenced_reads, self.claimed_referenced_writes) \
            and self.previous_release == self.claimed_previous_release and self.deployed_release in (None, "works")

    def as_dict(self) -> dict:
        data = asdict(self)
        data["holds"] = self.holds
        waited = lambda p: p["read_waited"] or p["write_waited"] or p["referenced_read_waited"] \
            or p["referenced_write_waited"]  # noqa: E731
        data["waits"] = [p for p in self.pauses if waited(p)]
        # The stops made while the migration waited on a transaction the judge held (a report, or the open
        # transaction a concurrent index build waits for at each phase), whether or not a probe waited.
        data["stopped_while_waiting"] = [p for p in self.pauses if p["waiting_for"]]
        del data["pauses"]
        data["statements"] = len(self.pauses)
        return data


def lab_stop(pause: Pause, large_table: str, referenced_table: str | None) -> dict:
    """One stop as the lab reports it: the large table's locks and probes, and the referenced table's."""
    large = pause.table(large_table)
    referenced = pause.tables.get(referenced_table) if referenced_table else None
    return {
        "statement": pause.statement[:200],
        "transaction": pause.transaction,
        "rows_before": max(pause.rows_before.values(), default=0),
        "rows_after": pause.work(),
        "locks": large.locks,
        "read_waited": large.read_waited,
        "write_waited": large.write_waited,
        "referenced_locks": referenced.locks if referenced else [],
        "referenced_read_waited": bool(referenced and referenced.read_waited),
        "referenced_write_waited": bool(referenced and referenced.write_waited),
        "waiting_for": pause.waiting_for,
        "phase": pause.phase,
        "lock_timeout": pause.lock_timeout if pause.waiting_for else None,
    }


class ViewSenders:
    """The API's read and write (its own views, called in-process), each from a connection of its own, as
    judgecore.waits_on sends them; with a `referenced_write_id`, the read and write of the referenced table too."""

    def __init__(self, write_id: int, read_query: str = "", referenced_write_id: int | None = None,
                 write_query: str = ""):
        self.write_id = write_id
        self.read_path = "/list_large/" + (f"?{read_query.replace('{id}', str(write_id))}" if read_query else "")
        # scenario.toml's write_query (e.g. an insert: "create=1&id={id}"), else a POST naming the row in its body.
        self.write_path = "/update_order/" + (f"?{write_query.replace('{id}', str(write_id))}" if write_query else "")
        self.referenced_write_id = referenced_write_id
        self.factory = RequestFactory()

    @staticmethod
    def _sender(view, request):
        def send(connected) -> None:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    connected(cursor.fetchone()[0])
                view(request)  # a cancelled query comes back as a 503 answer, not an exception
            except DatabaseError:
                pass
            finally:
                connection.close()
        return send

    def large(self) -> tuple:
        body = {} if "?" in self.write_path else {"id": self.write_id}
        return (self._sender(web.list_large, self.factory.get(self.read_path)),
                self._sender(web.update_order, self.factory.post(self.write_path, body)))

    def referenced(self) -> tuple:
        return (self._sender(web.list_referenced, self.factory.get("/list_referenced/")),
                self._sender(web.update_referenced,
                             self.factory.post("/update_referenced/", {"id": self.referenced_write_id})))


def _apply_step(migration: str) -> None:
    from django.core.management import call_command

    call_command("migrate", "demoapp", migration, verbosity=0)


def judge_step(project: Project, step: Step, monitor, write_id: int, table_rows: int, connect,
               referenced_write_id: int | None = None, with_report: bool = False) -> Judgement:
    """Apply one step under the gate; probe at every statement, and while it waits on a transaction we hold.

    `connect(application_name=...)` opens a connection of the judge's own (for the held transactions).
    `referenced_write_id`: the row /update_referenced/ writes, in a project with a referenced table.
    `with_report`: hold a report open beside the step even if scenario.toml gives it no long_query actor."""
    views = ViewSenders(write_id, project.read_query,
                        referenced_write_id if project.referenced_table else None, write_query=project.write_query)
    senders = {project.large_table: views.large()}
    if project.referenced_table:
        senders[project.referenced_table] = views.referenced()
    probes = Probes(monitor, senders)
    large_oid = probes.oids[project.large_table]
    gate = Gate([large_oid])
    held = HeldTransactions(connect, project.large_table)
    with_report = with_report or any(actor.kind == "long_query" for actor in step.actors)
    pauses = judge_gated(migrate_in_thread(gate, lambda: _apply_step(step.migration)), gate, monitor, probes, held,
                         step.migration, with_report=with_report)
    rows = {large_oid: table_rows}
    referenced = {}
    if project.referenced_table:
        table = project.referenced_table
        referenced = {
            "claimed_referenced_reads": step.referenced_reads,
            "claimed_referenced_writes": step.referenced_writes,
            "referenced_reads": verdict(pauses, table, "read", rows),
            "referenced_writes": verdict(pauses, table, "write", rows),
            "referenced_strongest_lock": strongest(pauses, table),
        }
    return Judgement(
        migration=step.migration,
        kind=step.kind,
        claimed_reads=step.reads,
        claimed_writes=step.writes,
        reads=verdict(pauses, project.large_table, "read", rows),
        writes=verdict(pauses, project.large_table, "write", rows),
        table_rows=table_rows,
        strongest_lock=strongest(pauses, project.large_table),
        pauses=[lab_stop(pause, project.large_table, project.referenced_table) for pause in pauses],
        **referenced,
    )
