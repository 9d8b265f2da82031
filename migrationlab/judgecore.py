"""The judge's core: stop a migration at known points, send a read and a write of each table from other connections,
and let PostgreSQL say whether they waited on it. It knows nothing of scenarios, of the lab's views or of Django
projects: three front ends use it, each with its own probes and its own way of running the statements:

  migrationlab/lockjudge.py   `judge_locks`: a lab project's steps, probed with the API's own views (its claims);
  migrationlab/catalog/       `catalog`: one SQL statement per operation on tables of its own;
  migrationlab/judge/         `judge`: the pending migrations of any Django project, on a scratch database.

How a migration is stopped (`Gate`, the migrating connection's execute_wrapper): after every SQL statement it is
held still, its transaction open and every lock it took still held (locks go at commit only). Autocommit
statements (non-atomic migrations) are each wrapped in a transaction of their own so that their locks are still
held at the stop. While it is held, the front end's probes run (`Probes`): each sends its query from a connection
of its own, and either completes or shows up waiting with the migration's backend among its pg_blocking_pids()
(then it is cancelled: `waits_on`). The migration's transaction also reports, from pg_stat_xact_user_tables, how
many rows of each measured table it has read and written so far.

Some statements are judged while they wait, not after (`HeldTransactions`, `StopsWhileWaiting`):
  - behind a report: a read transaction the judge holds open (ACCESS SHARE) from before the statement. A statement
    that queues behind it is stopped there, the probes are sent, then the report ends;
  - CREATE/DROP INDEX CONCURRENTLY (and DETACH PARTITION CONCURRENTLY) cannot run in a transaction, but wait for
    older transactions at known phases: the judge holds a transaction that wrote to the table and holds a snapshot
    when the statement starts, sees it wait (pg_blocking_pids; the phase in pg_stat_progress_create_index),
    probes, then hands over to a fresh held transaction for the next phase and ends the old one.

The verdict of one probe over all the stops of a migration (`verdict`):
  never      - it never waited on the migration;
  briefly    - it waited only on work that does not grow with the table: a transaction that then touched fewer
               than a tenth of the rows of every measured table (a catalog-only ALTER), one batch of a series (the
               same statement repeated, each time in a transaction of its own: a batch is bounded by its own size,
               however large the table), or a statement queued behind another whose lock_timeout bounds the wait;
  throughout - it waited on a transaction, not one batch of a series, that then touched at least a tenth of the
               rows of a measured table (a fraction of the table: it grows with it; Django's collector deleting
               half a table is one), or queued behind a statement that waits, with no lock_timeout, for as long as
               the other side runs.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass, field

from migrationlab.locks import lock_strength

NOT_IN_A_TRANSACTION = re.compile(r"\bCONCURRENTLY\b|^\s*(VACUUM|CREATE\s+DATABASE|DROP\s+DATABASE)\b", re.I)
CONCURRENT = re.compile(r"\bCONCURRENTLY\b", re.I)
FAILSAFE_SECONDS = 120.0  # only if PostgreSQL never answers; never reached in a passing run
POLL_SECONDS = 0.005  # how often pg_locks is asked whether the migration waits on a held transaction
PHASE_STOPS = 3  # a concurrent index build waits at three phases (writers, writers again, old snapshots)
RETRIES_WHEN_TIMED_OUT = 20  # a lock_timeout may end a wait before the probes queue: judge the next attempt
VERDICTS = ("never", "briefly", "throughout")
GROWS_WITH_THE_TABLE = 0.1  # a wait on a transaction that then touches this share of a table's rows: throughout
# The judged statement runs on one core: rows that a parallel worker reads would not show in the statement's own
# pg_stat_xact_user_tables (an index build of 100,000 rows would seem to scan nothing). Its time is then one core's.
ONE_CORE = ("SET max_parallel_maintenance_workers = 0", "SET max_parallel_workers_per_gather = 0")


@dataclass
class TableStop:
    """One table at one stop: the modes the migration holds on it, and whether its read and write waited."""

    locks: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)  # requested, not granted (a statement in the lock queue)
    read_waited: bool = False
    write_waited: bool = False


@dataclass
class Pause:
    """The migration, stopped right after one statement (or while it waits on a transaction the judge holds)."""

    statement: str
    transaction: int  # statements with the same number ran in the same transaction
    rows_before: dict[int, int] = field(default_factory=dict)  # rows touched per measured table oid, before it
    rows_after: dict[int, int] = field(default_factory=dict)
    tables: dict[str, TableStop] = field(default_factory=dict)
    # Stopped while waiting, not after: for whom ("report" or "open transaction"), at which phase of a concurrent
    # index build, and the lock_timeout that bounds the wait ("0" = none: it lasts as long as the other side).
    waiting_for: str | None = None
    phase: str | None = None
    lock_timeout: str | None = None
    seconds: float | None = None  # the statement's own time (None for a stop while it waits)
    # Per measured table oid, as the statement's own transaction sees it: (rows read, rows written, relfilenode),
    # before and after the statement (empty outside a transaction).
    detail_before: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    detail_after: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    probed: bool = True  # False past the front end's limit of stops: the statement ran on unprobed

    def table(self, name: str) -> TableStop:
        return self.tables.setdefault(name, TableStop())

    def waited(self) -> bool:
        return any(stop.read_waited or stop.write_waited for stop in self.tables.values())

    def work(self) -> int:
        """Rows touched by the statement's transaction so far (the most on any measured table)."""
        return max(self.rows_after.values(), default=0)


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


def batches(pauses: list[Pause]) -> set[int]:
    """The transactions that are one batch of a series: every statement in them that touched rows is one that also
    runs in another transaction (the same SQL text, a batch's range passed as parameters)."""
    transactions_of: dict[str, set[int]] = {}
    for pause in pauses:
        transactions_of.setdefault(pause.statement, set()).add(pause.transaction)
    working: dict[int, list[Pause]] = {}
    for pause in pauses:
        if pause.rows_after != pause.rows_before:
            working.setdefault(pause.transaction, []).append(pause)
    return {transaction for transaction, group in working.items()
            if all(len(transactions_of[p.statement]) > 1 for p in group)}


def verdict(pauses: list[Pause], table: str, what: str, table_rows: dict[int, int],
            one_batch: set[int] | None = None) -> str:
    """never / briefly / throughout for the `what` probe ("read" or "write") of `table` over every stop.

    `table_rows`: the rows of each measured table (by oid); a wait on a transaction that went on to touch at least
    GROWS_WITH_THE_TABLE of the rows of one of them is `throughout`, unless the transaction is one batch of a
    series (`batches` of these pauses, unless given: of the whole migration's)."""
    attribute = f"{what}_waited"
    worst = "never"
    by_transaction: dict[int, list[Pause]] = {}
    for pause in pauses:
        by_transaction.setdefault(pause.transaction, []).append(pause)
    one_batch = batches(pauses) if one_batch is None else one_batch
    for transaction, group in by_transaction.items():
        end = group[-1].rows_after
        for pause in group:
            stop = pause.tables.get(table)
            if stop is None or not getattr(stop, attribute):
                continue
            if pause.waiting_for:
                # Queued behind a statement that itself waits: bounded by its lock_timeout, or by the other side.
                if pause.lock_timeout in (None, "0"):
                    return "throughout"
                worst = "briefly"
                continue
            for oid, rows in table_rows.items():
                if (rows > 0 and transaction not in one_batch
                        and end.get(oid, 0) - pause.rows_before.get(oid, 0) >= rows * GROWS_WITH_THE_TABLE):
                    return "throughout"
            worst = "briefly"
            break
    return worst


def verdict_at(pauses: list[Pause], index: int, table: str, what: str, table_rows: dict[int, int]) -> str:
    """The verdict of one stop alone: what its waiting probe waited for (the rest of its transaction's work)."""
    pause = pauses[index]
    group = [p for p in pauses if p.transaction == pause.transaction]
    alone = [p if p is pause else Pause(p.statement, p.transaction, p.rows_before, p.rows_after) for p in group]
    return verdict(alone, table, what, table_rows, one_batch=batches(pauses))


def strongest(pauses: list[Pause], table: str) -> str | None:
    modes = [mode for pause in pauses for mode in pause.tables.get(table, TableStop()).locks]
    return max(modes, key=lock_strength) if modes else None


def locks_of(monitor, pid: int, oid: int) -> tuple[list[str], list[str]]:
    """The modes `pid` holds on the relation, and those it waits for, weakest first."""
    with monitor.cursor() as cursor:
        cursor.execute("SELECT mode, granted FROM pg_locks WHERE pid = %s AND relation = %s", [pid, oid])
        rows = cursor.fetchall()
    order = lambda modes: sorted(set(modes), key=lock_strength)  # noqa: E731
    return order(m for m, granted in rows if granted), order(m for m, granted in rows if not granted)


def build_phase(monitor, pid: int) -> str | None:
    with monitor.cursor() as cursor:
        cursor.execute("SELECT phase FROM pg_stat_progress_create_index WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row[0] if row else None


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


class Probes:
    """What a front end sends at each stop: per table, a read and a write, each `send(connected)` as waits_on
    takes it. The tables are probed in order; their locks are read from pg_locks first."""

    def __init__(self, monitor, senders: dict[str, tuple]):
        self.monitor = monitor
        self.senders = senders  # table -> (send read, send write)
        self.oids: dict[str, int] = {}
        with monitor.cursor() as cursor:
            for table in senders:
                cursor.execute("SELECT %s::regclass::oid", [table])  # regclass input takes no lock
                self.oids[table] = cursor.fetchone()[0]

    def note_locks(self, pause: Pause, pid: int) -> None:
        for table, oid in self.oids.items():
            stop = pause.table(table)
            stop.locks, stop.queued = locks_of(self.monitor, pid, oid)

    def probe(self, pause: Pause, pid: int) -> None:
        """Every probe, one after the other; note on `pause` which of them waited on the migration."""
        for table, (read, write) in self.senders.items():
            stop = pause.table(table)
            stop.read_waited = waits_on(self.monitor, pid, read)
            stop.write_waited = waits_on(self.monitor, pid, write)

    def stop(self, pause: Pause, pid: int) -> Pause:
        self.note_locks(pause, pid)
        self.probe(pause, pid)
        return pause


class HeldTransactions:
    """Transactions the judge holds open on a table, for the migration to wait on.

    report  - a read in an open transaction (ACCESS SHARE), like a long report;
    writer  - a transaction that has locked the table for writing (ROW EXCLUSIVE) and holds a snapshot
              (REPEATABLE READ): what a concurrent index build waits for at each of its phases.
    """

    def __init__(self, connect, tables: str | list[str]):
        self.connect = connect
        self.tables = [tables] if isinstance(tables, str) else list(tables)
        self.open: dict[int, tuple[str, object]] = {}  # backend pid -> (kind, connection)

    def hold(self, kind: str) -> int:
        connection = self.connect(application_name=f"judge-{kind}")
        with connection.cursor() as cursor:
            if kind == "writer":
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            for table in self.tables:
                if kind == "writer":
                    # ONLY: on a partitioned table, LOCK TABLE would also lock a partition being detached
                    # concurrently, and queue behind the detach's ACCESS EXCLUSIVE on it (which waits for us).
                    cursor.execute(f'LOCK TABLE ONLY "{table}" IN ROW EXCLUSIVE MODE')
                cursor.execute(f'SELECT 1 FROM "{table}" LIMIT 1')  # takes ACCESS SHARE (and the snapshot)
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        self.open[pid] = (kind, connection)
        return pid

    def end(self, pid: int) -> None:
        kind, connection = self.open.pop(pid)
        connection.rollback()
        connection.close()

    def end_writers(self) -> None:
        for pid, (kind, _) in list(self.open.items()):
            if kind == "writer":  # its statement is done: nothing waits for it any more
                self.end(pid)

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


class Failsafe:
    """Only if PostgreSQL never answers: a run that neither goes on nor waits on the judge for FAILSAFE_SECONDS
    ends with `failure(message)` raised, never reached in a passing run."""

    def __init__(self, message: str, failure=RuntimeError):
        self.message, self.failure = message, failure
        self.reset()

    def reset(self) -> None:
        self.deadline = time.monotonic() + FAILSAFE_SECONDS

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise self.failure(f"{self.message} for {FAILSAFE_SECONDS:.0f} s")


class StopsWhileWaiting:
    """Stops a statement where it waits on a transaction the judge holds: one loop for every front end.

    Call `poll(running)` while the statement runs (`running`: a Pause of the statement under way, or None when
    none is); it returns a Pause once the statement was seen waiting and probed, else None. After a stop at a phase
    of a concurrent build, a fresh writer is held for the next phase; the transaction waited on is ended, unless
    `keep_report` (a statement whose lock_timeout will give up while the report runs on)."""

    def __init__(self, monitor, held: HeldTransactions, probes: Probes, pid: int, keep_report: bool = False):
        self.monitor, self.held, self.probes, self.pid = monitor, held, probes, pid
        self.keep_report = keep_report
        self.phase_stops = 0
        self.inconclusive = 0

    def while_running(self, finished: threading.Event, statement: Pause, failsafe: Failsafe,
                      once: bool = False) -> list[Pause]:
        """The stops of a statement run elsewhere (not through a gate) until `finished`; with `once`, one stop
        (then the statement is left waiting until its own lock_timeout ends it)."""
        pauses: list[Pause] = []
        while not finished.wait(POLL_SECONDS):
            if pauses and once:
                continue
            pause = self.poll(statement)
            if pause is None:
                failsafe.check()
                continue
            pauses.append(pause)
            failsafe.reset()
        return pauses

    def started_concurrent(self) -> None:
        """A statement that cannot run in a transaction is about to start: hold the transaction it waits for."""
        self.held.hold("writer")
        self.phase_stops = 0

    def poll(self, running: Pause | None) -> Pause | None:
        holder = self.held.holding_up(self.monitor, self.pid)
        if holder is None or running is None:
            return None
        holder_pid, kind = holder
        pause = Pause(running.statement, running.transaction, dict(running.rows_before), dict(running.rows_before),
                      waiting_for="report" if kind == "report" else "open transaction",
                      phase=build_phase(self.monitor, self.pid), lock_timeout=running.lock_timeout)
        self.probes.stop(pause, self.pid)
        still_waiting = self.held.holding_up(self.monitor, self.pid) is not None
        if not (pause.waited() or still_waiting) and self.inconclusive < RETRIES_WHEN_TIMED_OUT:
            self.inconclusive += 1  # its lock_timeout ended the wait before the probes queued: judge the retry
            return None
        if kind == "writer" and self.phase_stops < PHASE_STOPS - 1:
            self.held.hold("writer")  # the next phase waits for this one
            self.phase_stops += 1
        if kind != "report" or not self.keep_report:
            self.held.end(holder_pid)
        return pause


class Gate:
    """execute_wrapper of the migrating connection: run a statement, then hold still until released.

    The judging thread reads `paused`: a Pause after every statement, a ConcurrentStatement before a statement that
    cannot run in a transaction, None when the migration ended. `measured`: the oids of the tables whose rows the
    statement's transaction reports (pg_stat_xact_user_tables)."""

    def __init__(self, measured: list[int]):
        self.measured = list(measured)
        self.paused: queue.Queue = queue.Queue()
        self.release = threading.Semaphore(0)
        self.running: Pause | None = None  # the statement under way (what a stop while waiting reports)
        self._own_query = False
        self._transactions = 0
        self._outer_block = None  # the outermost Atomic of the current transaction (kept alive: ids stay unique)

    def __call__(self, execute, sql, params, many, context):
        from django.db import transaction

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
                cursor.execute(sql)
                return cursor.fetchone()[0]
        finally:
            self._own_query = False

    def _measure(self, db) -> dict[int, tuple[int, int, int]]:
        if not db.in_atomic_block or not self.measured:
            return {}
        self._own_query = True
        try:
            with db.cursor() as cursor:
                cursor.execute(
                    "SELECT c.oid, COALESCE(s.seq_tup_read, 0) + COALESCE(s.idx_tup_fetch, 0), "
                    "COALESCE(s.n_tup_ins + s.n_tup_upd + s.n_tup_del, 0), c.relfilenode "
                    "FROM pg_class c LEFT JOIN pg_stat_xact_user_tables s ON s.relid = c.oid "
                    "WHERE c.oid = ANY(%s::oid[])", [self.measured])
                return {oid: (read, written, node) for oid, read, written, node in cursor.fetchall()}
        finally:
            self._own_query = False

    def _run_and_pause(self, execute, sql, params, many, context):
        db = context["connection"]
        number = self._transaction_number(db)
        before = self._measure(db)
        lock_timeout = self._own(db, "SELECT current_setting('lock_timeout')")
        statement = " ".join(str(sql).split())
        rows_before = {oid: max(read, written) for oid, (read, written, _) in before.items()}
        self.running = Pause(statement, number, rows_before, rows_before, lock_timeout=lock_timeout)
        started = time.perf_counter()
        result = execute(sql, params, many, context)
        seconds = time.perf_counter() - started
        after = self._measure(db) if db.in_atomic_block else before
        self.running = None
        self.paused.put(Pause(statement, number, rows_before,
                              {oid: max(read, written) for oid, (read, written, _) in after.items()},
                              lock_timeout=lock_timeout, seconds=seconds, detail_before=before, detail_after=after))
        self.release.acquire()
        return result


@dataclass
class ConcurrentStatement:
    """The gate is about to run a statement that cannot run in a transaction (CREATE INDEX CONCURRENTLY)."""

    statement: str


def judge_gated(run, gate: Gate, monitor, probes: Probes, held: HeldTransactions, label: str,
                with_report: bool = False, on_pause=None, probe_limit: int | None = None) -> list[Pause]:
    """Run `run()` (a Django migration whose connection goes through `gate`) in a thread of its own, stop it after
    every statement and while it waits on a held transaction, and probe at each stop; the stops, in order.

    `run()` must put its backend pid on `gate.pid` first (see `migrate_in_thread`). `on_pause(pause)` is called
    with every stop, e.g. to say the progress. Past `probe_limit` statements (a data migration sending one query
    per row), the statements still stop and are noted, unprobed. Raises what the migration raised."""
    failure: list[BaseException] = []
    started = threading.Event()
    gate.pid = None

    def target():
        try:
            run(started)
        except BaseException as error:  # reported by the judging thread
            failure.append(error)
        finally:
            started.set()
            gate.paused.put(None)

    if with_report:
        held.hold("report")  # the report runs before the statement starts
    thread = threading.Thread(target=target, name=f"migrate {label}", daemon=True)
    pauses: list[Pause] = []
    try:
        thread.start()
        started.wait(FAILSAFE_SECONDS)
        waiting = StopsWhileWaiting(monitor, held, probes, gate.pid) if gate.pid else None
        failsafe = Failsafe(f"{label}: the migration neither finished a statement nor waited on the judge")
        while True:
            try:
                event = gate.paused.get(timeout=POLL_SECONDS)
            except queue.Empty:
                pause = waiting.poll(gate.running) if waiting else None
                if pause is None:
                    failsafe.check()
                    continue
                pauses.append(pause)
                if on_pause:
                    on_pause(pause)
                failsafe.reset()
                continue
            failsafe.reset()
            if event is None:
                break
            if isinstance(event, ConcurrentStatement):
                waiting.started_concurrent()
                gate.release.release()
                continue
            held.end_writers()
            if probe_limit is None or len(pauses) < probe_limit:
                probes.stop(event, gate.pid)
            else:
                event.probed = False
            pauses.append(event)
            if on_pause:
                on_pause(event)
            gate.release.release()
    finally:
        held.end_all()  # a report still open ends with the migration
    thread.join(FAILSAFE_SECONDS)
    if failure:
        raise failure[0]
    return pauses


def migrate_in_thread(gate: Gate, apply, session: tuple[str, ...] = ()) -> callable:
    """The `run` of judge_gated for Django: note the default connection's backend pid, run `session` (settings of
    the migrating session, e.g. ONE_CORE), then `apply()` (e.g. call_command("migrate", ...)) with the gate on the
    connection; the connection is closed at the end."""
    from django.db import connection

    def run(started: threading.Event) -> None:
        try:
            with connection.cursor() as cursor:
                for statement in session:
                    cursor.execute(statement)
                cursor.execute("SELECT pg_backend_pid()")
                gate.pid = cursor.fetchone()[0]
            started.set()
            with connection.execute_wrapper(gate):
                apply()
        finally:
            connection.close()

    return run


def sql_sender(connect, statement: str, failures: list[str]):
    """A probe that sends one SQL statement from a connection of its own (`connect()`: an autocommit psycopg2
    connection), as waits_on takes it. A cancelled statement ends quietly; any other error is noted in `failures`
    (the front end decides what a failed probe means)."""
    import psycopg2
    from psycopg2 import errors as pg_errors

    def send(connected) -> None:
        connection = connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                connected(cursor.fetchone()[0])
                try:
                    cursor.execute(statement)
                except pg_errors.QueryCanceled:
                    pass
                except psycopg2.Error as failure:
                    failures.append(f"{statement}: {str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__}")
        finally:
            connection.close()
    return send
