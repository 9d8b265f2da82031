"""PostgreSQL as the judge: what does each step of a scenario make the API's reads and writes wait for?

No timing is involved. The step's `migrate` runs in a thread whose database connection goes through a gate:
after every SQL statement the migration is held still, with its transaction open and every lock it has taken
so far still held (locks are only released at commit). While it is held:

  - the API's own read (the /list_large/ view) and write (the /update_order/ view, on a fixed row) are sent from
    other connections; each either completes or shows up in pg_locks waiting, with the migration's backend among
    its pg_blocking_pids. Waiting probes are cancelled, and the migration goes on;
  - in a project whose large table refers to another one (scenario.toml's referenced_table: the customers of a
    foreign key lesson), the same read and write are sent to that table too (/list_referenced/,
    /update_referenced/), and judged on their own: referenced_reads, referenced_writes;
  - the migration's own transaction reports, from pg_stat_xact_user_tables, how many rows of the large table it
    has read and written so far.

A statement that waits is therefore waiting for the rest of that transaction. How much work is that rest?
  never      - no probe ever waited on the migration;
  briefly    - probes waited only on transactions that touch at most a batch of rows (a catalog-only ALTER, or
               one backfill batch): their duration does not grow with the table;
  throughout - a probe waited on a transaction that then works through at least every row of the table.

Autocommit statements (non-atomic migrations) are each wrapped in their own transaction so that their locks are
still held when the gate stops them.

Some statements are judged while they wait, not after:
  - a step with a long_query actor: the judge holds a report's transaction open (ACCESS SHARE on the large table)
    from before the step. A statement that queues behind the report is stopped there: the probes are sent while
    it waits, then the report ends. A wait that only the report's end would finish is `throughout` (every read
    and write queues for the rest of the report); one that the statement's own lock_timeout cuts short is
    `briefly`.
  - CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction, so the gate cannot stop it halfway. But it waits
    for older transactions at known phases: the judge holds a transaction that wrote to the table (and holds a
    snapshot) when the statement starts, sees the statement wait for it (pg_blocking_pids, and the phase in
    pg_stat_progress_create_index), probes, then hands over to a fresh held transaction and ends the old one,
    for each phase that waits.
VACUUM passes the gate unwrapped: the judge sees it only after it finished.
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
CONCURRENT = re.compile(r"\bCONCURRENTLY\b", re.I)
FAILSAFE_SECONDS = 120.0  # only if PostgreSQL never answers; never reached in a passing run
POLL_SECONDS = 0.005  # how often pg_locks is asked whether the migration waits on a held transaction
PHASE_STOPS = 3  # a concurrent index build waits at three phases (writers, writers again, old snapshots)
RETRIES_WHEN_TIMED_OUT = 20  # a lock_timeout may end a wait before the probes queue: judge the next attempt


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
    # The referenced table's, in a project that has one: the locks the migration holds on it, and the probes.
    referenced_locks: list[str] = field(default_factory=list)
    referenced_read_waited: bool = False
    referenced_write_waited: bool = False
    # Stopped while waiting, not after: for whom ("report" or "open transaction"), at which phase of a concurrent
    # index build, and the lock_timeout that bounds the wait ("0" = none: it lasts as long as the other side).
    waiting_for: str | None = None
    phase: str | None = None
    lock_timeout: str | None = None


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
        data["waits"] = [asdict(p) for p in self.pauses if p.read_waited or p.write_waited
                         or p.referenced_read_waited or p.referenced_write_waited]
        # The stops made while the migration waited on a transaction the judge held (a report, or the open
        # transaction a concurrent index build waits for at each phase), whether or not a probe waited.
        data["stopped_while_waiting"] = [asdict(p) for p in self.pauses if p.waiting_for]
        del data["pauses"]
        data["statements"] = len(self.pauses)
        return data


def rows_read_and_written(cursor, table_oid: int, view: str = "pg_stat_xact_user_tables") -> tuple[int, int]:
    """Rows of the table read and written: by this transaction so far (pg_stat_xact_user_tables), or by everyone
    as far as the statistics were flushed (pg_stat_user_tables)."""
    cursor.execute(
        "SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0), n_tup_ins + n_tup_upd + n_tup_del "
        f"FROM {view} WHERE relid = %s",
        [table_oid],
    )
    row = cursor.fetchone()
    return (row[0], row[1]) if row else (0, 0)


def rows_touched(cursor, table_oid: int) -> int:
    """Rows of the table this transaction has read or written so far (the larger of the two)."""
    return max(rows_read_and_written(cursor, table_oid))


class Gate:
    """execute_wrapper of the migrating connection: run a statement, then hold still until released."""

    def __init__(self, table_oid: int):
        self.table_oid = table_oid
        self.paused: queue.Queue = queue.Queue()
        self.release = threading.Semaphore(0)
        self.running: Pause | None = None  # the statement under way (what a stop while waiting reports)
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
        if CONCURRENT.search(sql):  # let the judge open the transaction this statement will wait for
            self.paused.put(ConcurrentStatement(str(sql)))
            self.release.acquire()
        return self._run_and_pause(execute, sql, params, many, context)

    def _transaction_number(self, db) -> int:
        outer = db.atomic_blocks[0] if db.atomic_blocks else None
        if outer is None or outer is not self._outer_block:
            self._transactions += 1
            self._outer_block = outer
        return self._transactions

    def _own(self, db, sql: str):
        self._own_query = True
        try:
            with db.cursor() as cursor:
                cursor.execute(sql, [self.table_oid] if "%s" in sql else None)
                return cursor.fetchone()[0]
        finally:
            self._own_query = False

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
        lock_timeout = self._own(db, "SELECT current_setting('lock_timeout')")
        self.running = Pause(" ".join(str(sql).split())[:200], number, before, before, lock_timeout=lock_timeout)
        result = execute(sql, params, many, context)
        after = self._measure(db) if db.in_atomic_block else before
        self.running = None
        self.paused.put(Pause(" ".join(str(sql).split())[:200], number, before, after))
        self.release.acquire()
        return result


@dataclass
class ConcurrentStatement:
    """The gate is about to run a statement that cannot run in a transaction (CREATE INDEX CONCURRENTLY)."""

    statement: str


class HeldTransactions:
    """Transactions the judge holds open on the large table, for the migration to wait on.

    report  - a read in an open transaction (ACCESS SHARE), like a long report: the long_query actor;
    writer  - a transaction that has locked the table for writing (ROW EXCLUSIVE) and holds a snapshot
              (REPEATABLE READ): what a concurrent index build waits for at each of its phases.
    """

    def __init__(self, connect, table: str):
        self.connect = connect
        self.table = table
        self.open: dict[int, tuple[str, object]] = {}  # backend pid -> (kind, connection)

    def hold(self, kind: str) -> int:
        connection = self.connect(application_name=f"judge-{kind}")
        with connection.cursor() as cursor:
            if kind == "writer":
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                # ONLY: on a partitioned table, LOCK TABLE would also lock a partition being detached
                # concurrently, and queue behind the detach's ACCESS EXCLUSIVE on it (which waits for us).
                cursor.execute(f'LOCK TABLE ONLY "{self.table}" IN ROW EXCLUSIVE MODE')
            cursor.execute(f'SELECT 1 FROM "{self.table}" LIMIT 1')  # takes ACCESS SHARE (and the snapshot)
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        self.open[pid] = (kind, connection)
        return pid

    def end(self, pid: int) -> None:
        kind, connection = self.open.pop(pid)
        connection.rollback()
        connection.close()

    def end_all(self) -> None:
        for pid in list(self.open):
            self.end(pid)

    def holding_up(self, monitor, migrator_pid: int) -> tuple[int, str] | None:
        """The held transaction the migration waits for right now, if any."""
        if not self.open:
            return None
        with monitor.cursor() as cursor:
            cursor.execute("SELECT pg_blocking_pids(%s)", [migrator_pid])
            blockers = cursor.fetchone()[0] or []
        for pid in blockers:
            if pid in self.open:
                return pid, self.open[pid][0]
        return None


def waits_on(monitor, migrator_pid: int, send) -> bool:
    """Run a probe in a thread of its own and tell whether it waited on `migrator_pid` (cancelling it if it waits).

    `send(connected)` opens a connection of its own, calls connected(its backend pid), sends its query, ends
    quietly if the query is cancelled, and closes its connection."""
    backend_pid: list[int] = []
    started, done = threading.Event(), threading.Event()

    def connected(pid: int) -> None:
        backend_pid.append(pid)
        started.set()

    def run() -> None:
        try:
            send(connected)
        finally:
            started.set()
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not started.wait(FAILSAFE_SECONDS) or not backend_pid:
        raise RuntimeError("the probe could not connect")
    deadline = time.monotonic() + FAILSAFE_SECONDS
    waited = False
    with monitor.cursor() as cursor:
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


class Prober:
    """Sends the API's read and write from their own connections and tells whether they waited on `pid`; with a
    `referenced_write_id`, the read and write of the referenced table too."""

    def __init__(self, monitor, write_id: int, read_query: str = "", referenced_write_id: int | None = None,
                 write_query: str = ""):
        self.monitor = monitor
        self.write_id = write_id
        self.read_path = "/list_large/" + (f"?{read_query.replace('{id}', str(write_id))}" if read_query else "")
        # scenario.toml's write_query (e.g. an insert: "create=1&id={id}"), else a POST naming the row in its body.
        self.write_path = "/update_order/" + (f"?{write_query.replace('{id}', str(write_id))}" if write_query else "")
        self.referenced_write_id = referenced_write_id
        self.factory = RequestFactory()

    def _send(self, view, request, connected) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                connected(cursor.fetchone()[0])
            view(request)  # a cancelled query comes back as a 503 answer, not an exception
        except DatabaseError:
            pass
        finally:
            connection.close()

    def waits_on(self, migrator_pid: int, view, request) -> bool:
        return waits_on(self.monitor, migrator_pid, lambda connected: self._send(view, request, connected))

    def read(self, migrator_pid: int) -> bool:
        return self.waits_on(migrator_pid, web.list_large, self.factory.get(self.read_path))

    def write(self, migrator_pid: int) -> bool:
        body = {} if "?" in self.write_path else {"id": self.write_id}
        return self.waits_on(migrator_pid, web.update_order, self.factory.post(self.write_path, body))

    def probe(self, pause: Pause, migrator_pid: int) -> None:
        """Send every probe, one after the other, and note on `pause` which of them waited on the migration."""
        pause.read_waited = self.read(migrator_pid)
        pause.write_waited = self.write(migrator_pid)
        if self.referenced_write_id is not None:
            pause.referenced_read_waited = self.waits_on(
                migrator_pid, web.list_referenced, self.factory.get("/list_referenced/"))
            pause.referenced_write_waited = self.waits_on(
                migrator_pid, web.update_referenced,
                self.factory.post("/update_referenced/", {"id": self.referenced_write_id}))

    @staticmethod
    def waited(pause: Pause) -> bool:
        return pause.read_waited or pause.write_waited or pause.referenced_read_waited or pause.referenced_write_waited


def _verdict(pauses: list[Pause], attribute: str, table_rows: int) -> str:
    worst = "never"
    by_transaction: dict[int, list[Pause]] = {}
    for pause in pauses:
        by_transaction.setdefault(pause.transaction, []).append(pause)
    for group in by_transaction.values():
        end = group[-1].rows_after
        for pause in group:
            if getattr(pause, attribute) and pause.waiting_for:
                # Queued behind a statement that itself waits: bounded by its lock_timeout, or by the other side.
                if pause.lock_timeout in (None, "0"):
                    return "throughout"
                worst = "briefly"
                continue
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


def judge_step(project: Project, step: Step, monitor, write_id: int, table_rows: int, connect,
               referenced_write_id: int | None = None, with_report: bool = False) -> Judgement:
    """Apply one step under the gate; probe at every statement, and while it waits on a transaction we hold.

    `connect(application_name=...)` opens a connection of the judge's own (for the held transactions).
    `referenced_write_id`: the row /update_referenced/ writes, in a project with a referenced table.
    `with_report`: hold a report open beside the step even if scenario.toml gives it no long_query actor."""
    with monitor.cursor() as cursor:
        cursor.execute("SELECT %s::regclass::oid", [project.large_table])  # regclass input takes no lock
        table_oid = cursor.fetchone()[0]
        referenced_oid = None
        if project.referenced_table:
            cursor.execute("SELECT %s::regclass::oid", [project.referenced_table])
            referenced_oid = cursor.fetchone()[0]
    gate = Gate(table_oid)
    prober = Prober(monitor, write_id, project.read_query,
                    referenced_write_id if project.referenced_table else None, write_query=project.write_query)
    held = HeldTransactions(connect, project.large_table)
    failure: list[BaseException] = []
    migrator_pid: list[int] = []
    started = threading.Event()

    def migrate():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                migrator_pid.append(cursor.fetchone()[0])
            started.set()
            with connection.execute_wrapper(gate):
                _apply_step(step.migration)
        except BaseException as error:  # reported by the main thread
            failure.append(error)
        finally:
            started.set()
            connection.close()
            gate.paused.put(None)

    def locks_held(oid: int | None = table_oid) -> list[str]:
        if oid is None:
            return []
        with monitor.cursor() as cursor:
            cursor.execute("SELECT mode FROM pg_locks WHERE pid = %s AND relation = %s AND granted",
                           [migrator_pid[0], oid])
            return sorted({mode for (mode,) in cursor.fetchall()}, key=lock_strength)

    def phase() -> str | None:
        with monitor.cursor() as cursor:
            cursor.execute("SELECT phase FROM pg_stat_progress_create_index WHERE pid = %s", [migrator_pid[0]])
            row = cursor.fetchone()
        return row[0] if row else None

    if with_report or any(actor.kind == "long_query" for actor in step.actors):
        held.hold("report")  # the report runs before the step starts, as in the showdown
    thread = threading.Thread(target=migrate, name=f"migrate {step.migration}", daemon=True)
    pauses: list[Pause] = []
    stops_in_concurrent, inconclusive = 0, 0
    try:
        thread.start()
        started.wait(FAILSAFE_SECONDS)
        deadline = time.monotonic() + FAILSAFE_SECONDS
        while True:
            try:
                event = gate.paused.get(timeout=POLL_SECONDS)
            except queue.Empty:
                holder = held.holding_up(monitor, migrator_pid[0]) if migrator_pid else None
                running = gate.running
                if holder is None or running is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{step.migration}: the migration neither finished a statement nor "
                                           f"waited on the judge for {FAILSAFE_SECONDS:.0f} s")
                    continue
                pid, kind = holder
                pause = Pause(running.statement, running.transaction, running.rows_before, running.rows_before,
                              waiting_for="report" if kind == "report" else "open transaction", phase=phase(),
                              lock_timeout=running.lock_timeout)
                pause.locks = locks_held()
                pause.referenced_locks = locks_held(referenced_oid)
                prober.probe(pause, migrator_pid[0])
                still_waiting = held.holding_up(monitor, migrator_pid[0]) is not None
                if not (prober.waited(pause) or still_waiting) \
                        and inconclusive < RETRIES_WHEN_TIMED_OUT:
                    inconclusive += 1  # its lock_timeout ended the wait before the probes queued: judge the retry
                    continue
                pauses.append(pause)
                if kind == "writer" and stops_in_concurrent < PHASE_STOPS - 1:
                    held.hold("writer")  # the next phase waits for this one
                    stops_in_concurrent += 1
                held.end(pid)
                deadline = time.monotonic() + FAILSAFE_SECONDS
                continue
            deadline = time.monotonic() + FAILSAFE_SECONDS
            if event is None:
                break
            if isinstance(event, ConcurrentStatement):
                held.hold("writer")
                stops_in_concurrent = 0
                gate.release.release()
                continue
            for pid, (kind, _) in list(held.open.items()):
                if kind == "writer":  # its statement is done: nothing waits for it any more
                    held.end(pid)
            event.locks = locks_held()
            event.referenced_locks = locks_held(referenced_oid)
            prober.probe(event, migrator_pid[0])
            pauses.append(event)
            gate.release.release()
    finally:
        held.end_all()  # a report still open ends with the step
    thread.join(FAILSAFE_SECONDS)
    if failure:
        raise failure[0]
    modes = [mode for pause in pauses for mode in pause.locks]
    referenced_modes = [mode for pause in pauses for mode in pause.referenced_locks]
    referenced = {}
    if project.referenced_table:
        referenced = {
            "claimed_referenced_reads": step.referenced_reads,
            "claimed_referenced_writes": step.referenced_writes,
            "referenced_reads": _verdict(pauses, "referenced_read_waited", table_rows),
            "referenced_writes": _verdict(pauses, "referenced_write_waited", table_rows),
            "referenced_strongest_lock": max(referenced_modes, key=lock_strength) if referenced_modes else None,
        }
    return Judgement(
        migration=step.migration,
        kind=step.kind,
        claimed_reads=step.reads,
        claimed_writes=step.writes,
        reads=_verdict(pauses, "read_waited", table_rows),
        writes=_verdict(pauses, "write_waited", table_rows),
        table_rows=table_rows,
        strongest_lock=max(modes, key=lock_strength) if modes else None,
        pauses=pauses,
        **referenced,
    )
