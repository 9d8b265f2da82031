"""PostgreSQL as the judge: what does each step of a scenario make the API's reads and writes wait for?

No timing is involved. The step's `migrate` runs in a thread whose database connection goes through a gate:
after every SQL statement the migration is held still, with its transaction open and every lock it has taken
so far still held (locks are only released at commit). While it is held:

  - the API's own read (the /list_large/ view) and write (the /update_order/ view, on a fixed row) are sent from
    other connections; each either completes or shows up in pg_locks waiting, with the migration's backend among
    its pg_blocking_pids. Waiting probes are cancelled, and the migration goes on;
  - the migration's own transaction reports, from pg_stat_xact_user_tables, how many rows of the large table it
    has read and written so far.

A statement that waits is therefore waiting for the rest of that transaction. How much work is that rest?
  never      - no probe ever waited on the migration;
  briefly    - probes waited only on transactions that touch at most a batch of rows (a catalog-only ALTER, or
               one backfill batch): their duration does not grow with the table;
  throughout - a probe waited on a transaction that then works through at least every row of the table.

Autocommit statements (non-atomic migrations) are each wrapped in their own transaction so that their locks are
still held when the gate stops them. Statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY,
VACUUM) pass the gate unwrapped: the judge then sees them only after they finished.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import asdict, dataclass, field

from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory

from migrationlab import web
from migrationlab.locks import lock_strength
from migrationlab.scenarios import Project, Step

NOT_IN_A_TRANSACTION = re.compile(r"\bCONCURRENTLY\b|^\s*(VACUUM|CREATE\s+DATABASE|DROP\s+DATABASE)\b", re.I)
FAILSAFE_SECONDS = 120.0  # only if PostgreSQL never answers; never reached in a passing run


@dataclass
class Pause:
    """The migration, stopped right after one statement."""

    statement: str
    transaction: int  # statements with the same number ran in the same transaction
    rows_before: int  # rows of the large table touched by this transaction before the statement
    rows_after: int
    locks: list[str] = field(default_factory=list)  # modes the migration holds on the large table
    read_waited: bool = False
    write_waited: bool = False


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
    pauses: list[Pause]

    @property
    def holds(self) -> bool:
        return (self.reads, self.writes) == (self.claimed_reads, self.claimed_writes)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["holds"] = self.holds
        data["waits"] = [asdict(p) for p in self.pauses if p.read_waited or p.write_waited]
        del data["pauses"]
        data["statements"] = len(self.pauses)
        return data


def rows_touched(cursor, table_oid: int) -> int:
    """Rows of the table this transaction has read or written so far (the larger of the two)."""
    cursor.execute(
        "SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0), n_tup_ins + n_tup_upd + n_tup_del "
        "FROM pg_stat_xact_user_tables WHERE relid = %s",
        [table_oid],
    )
    row = cursor.fetchone()
    return max(row) if row else 0


class Gate:
    """execute_wrapper of the migrating connection: run a statement, then hold still until released."""

    def __init__(self, table_oid: int):
        self.table_oid = table_oid
        self.paused: queue.Queue = queue.Queue()
        self.release = threading.Semaphore(0)
        self._own_query = False
        self._transactions = 0
        self._outer_block = None  # the outermost Atomic of the current transaction (kept alive: ids stay unique)

    def __call__(self, execute, sql, params, many, context):
        if self._own_query:
            return execute(sql, params, many, context)
        db = context["connection"]
        if db.get_autocommit() and not NOT_IN_A_TRANSACTION.search(sql):
            with transaction.atomic(using=db.alias):
                return self._run_and_pause(execute, sql, params, many, context)
        return self._run_and_pause(execute, sql, params, many, context)

    def _transaction_number(self, db) -> int:
        outer = db.atomic_blocks[0] if db.atomic_blocks else None
        if outer is None or outer is not self._outer_block:
            self._transactions += 1
            self._outer_block = outer
        return self._transactions

    def _measure(self, db) -> int:
        if not db.in_atomic_block:
            return 0
        self._own_query = True
        try:
            with db.cursor() as cursor:
                return rows_touched(cursor, self.table_oid)
        finally:
            self._own_query = False

    def _run_and_pause(self, execute, sql, params, many, context):
        db = context["connection"]
        number = self._transaction_number(db)
        before = self._measure(db)
        result = execute(sql, params, many, context)
        after = self._measure(db) if db.in_atomic_block else before
        self.paused.put(Pause(" ".join(str(sql).split())[:200], number, before, after))
        self.release.acquire()
        return result


class Prober:
    """Sends the API's read and write from their own connections and tells whether they waited on `pid`."""

    def __init__(self, monitor, write_id: int):
        self.monitor = monitor
        self.write_id = write_id
        self.factory = RequestFactory()

    def _call(self, view, request, backend_pid: list, started: threading.Event, done: threading.Event):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backend_pid.append(cursor.fetchone()[0])
            started.set()
            view(request)  # a cancelled query comes back as a 503 answer, not an exception
        except DatabaseError:
            pass
        finally:
            started.set()
            done.set()
            connection.close()

    def waits_on(self, migrator_pid: int, view, request) -> bool:
        backend_pid: list[int] = []
        started, done = threading.Event(), threading.Event()
        thread = threading.Thread(target=self._call, args=(view, request, backend_pid, started, done), daemon=True)
        thread.start()
        if not started.wait(FAILSAFE_SECONDS) or not backend_pid:
            raise RuntimeError("the probe could not connect")
        deadline = time.monotonic() + FAILSAFE_SECONDS
        waited = False
        with self.monitor.cursor() as cursor:
            while not done.is_set():
                cursor.execute("SELECT pg_blocking_pids(%s)", [backend_pid[0]])
                blockers = cursor.fetchone()[0]
                if blockers:
                    waited = migrator_pid in blockers
                    cursor.execute("SELECT pg_cancel_backend(%s)", [backend_pid[0]])
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("a probe neither finished nor waited")
                done.wait(0.002)  # poll pg_locks; the outcome (done or waiting) does not depend on timing
        thread.join(FAILSAFE_SECONDS)
        return waited

    def read(self, migrator_pid: int) -> bool:
        return self.waits_on(migrator_pid, web.list_large, self.factory.get("/list_large/"))

    def write(self, migrator_pid: int) -> bool:
        return self.waits_on(migrator_pid, web.update_order, self.factory.post("/update_order/", {"id": self.write_id}))


def _verdict(pauses: list[Pause], attribute: str, table_rows: int) -> str:
    worst = "never"
    by_transaction: dict[int, list[Pause]] = {}
    for pause in pauses:
        by_transaction.setdefault(pause.transaction, []).append(pause)
    for group in by_transaction.values():
        end = group[-1].rows_after
        for pause in group:
            if getattr(pause, attribute):
                work_while_waiting = end - pause.rows_before
                if work_while_waiting >= table_rows:
                    return "throughout"
                worst = "briefly"
                break
    return worst


def _apply_step(migration: str) -> None:
    from django.core.management import call_command

    call_command("migrate", "demoapp", migration, verbosity=0)


def judge_step(project: Project, step: Step, monitor, write_id: int, table_rows: int) -> Judgement:
    """Apply one step under the gate; probe at every statement."""
    with monitor.cursor() as cursor:
        cursor.execute("SELECT %s::regclass::oid", [project.large_table])  # regclass input takes no lock
        table_oid = cursor.fetchone()[0]
    gate = Gate(table_oid)
    prober = Prober(monitor, write_id)
    failure: list[BaseException] = []
    migrator_pid: list[int] = []
    finished = threading.Event()

    def migrate():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                migrator_pid.append(cursor.fetchone()[0])
            with connection.execute_wrapper(gate):
                _apply_step(step.migration)
        except BaseException as error:  # reported by the main thread
            failure.append(error)
        finally:
            connection.close()
            finished.set()
            gate.paused.put(None)

    thread = threading.Thread(target=migrate, name=f"migrate {step.migration}", daemon=True)
    thread.start()
    pauses: list[Pause] = []
    while True:
        pause = gate.paused.get(timeout=FAILSAFE_SECONDS)
        if pause is None:
            break
        with monitor.cursor() as cursor:
            cursor.execute("SELECT mode FROM pg_locks WHERE pid = %s AND relation = %s AND granted",
                           [migrator_pid[0], table_oid])
            pause.locks = sorted({mode for (mode,) in cursor.fetchall()}, key=lock_strength)
        pause.read_waited = prober.read(migrator_pid[0])
        pause.write_waited = prober.write(migrator_pid[0])
        pauses.append(pause)
        gate.release.release()
    thread.join(FAILSAFE_SECONDS)
    if failure:
        raise failure[0]
    held = [mode for pause in pauses for mode in pause.locks]
    return Judgement(
        migration=step.migration,
        kind=step.kind,
        claimed_reads=step.reads,
        claimed_writes=step.writes,
        reads=_verdict(pauses, "read_waited", table_rows),
        writes=_verdict(pauses, "write_waited", table_rows),
        table_rows=table_rows,
        strongest_lock=max(held, key=lock_strength) if held else None,
        pauses=pauses,
    )
