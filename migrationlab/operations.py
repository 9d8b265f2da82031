"""Migration operations for zero-downtime changes, each with one job, usable from any project in one line.

    BackfillInBatches("largeuser", set={"status": Value("active")}, where=Q(status__isnull=True))
    WithLockTimeout(AddConstraintNotValid(...))

Both need `atomic = False` on the migration: a backfill must commit per batch, and a lock-timeout retry must
roll back only its own attempt. They refuse to run inside an atomic migration rather than silently degrade.
Both can be run again after failing at any point: the backfill resumes at the first row still to do, and
WithLockTimeout skips what the catalog shows is done (migrationlab/resumable.py).
"""

from __future__ import annotations

import random
import sys
import time

from django.contrib.postgres.operations import NotInTransactionMixin
from django.core.management.base import CommandError
from django.db import NotSupportedError, OperationalError, migrations, transaction
from django.db.migrations.operations.base import Operation
from django.db.models import Q

from migrationlab.resumable import already_done

LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE raised when lock_timeout expires


def _say(line: str) -> None:
    # The migrate command prints "Applying app.000N..." without a newline first: start our own lines cleanly.
    sys.stdout.write(f"\n    {line}")
    sys.stdout.flush()


class BackfillInBatches(NotInTransactionMixin, Operation):
    """UPDATE a large table in keyset batches of primary-key ranges, committing after each batch.

    - walks `pk >= lo AND pk < lo + batch_size`: every batch is an index range scan, never OFFSET, never a rescan
      of rows already done;
    - idempotent: `where` (e.g. "status IS NULL") is part of every batch, so a row is only ever filled once;
    - resumable: it starts at the first row still matching `where`, so a re-run after an interrupt goes on
      where the last committed batch ended;
    - each batch holds row locks on at most `batch_size` rows for one short transaction; `pause_seconds`
      between batches leaves room for other writers and for replicas to catch up;
    - prints progress (rows, %, rate, estimated time left) and the batch times (median, p99, slowest);
    - then VACUUMs the table (see _vacuum), unless vacuum=False.

    Reversing is a no-op: which rows were empty before cannot be known afterwards (and the migration before this
    one, reversed, drops or empties the column anyway).
    """

    reversible = True
    reduces_to_sql = True  # sqlmigrate shows what each attempt runs
    atomic = False

    def __init__(self, model_name: str, set: dict, where: Q, batch_size: int = 10_000, pause_seconds: float = 0.0,
                 progress_seconds: float = 2.0, vacuum: bool = True):
        self.model_name = model_name
        self.set = set
        self.where = where
        self.batch_size = batch_size
        self.pause_seconds = pause_seconds
        self.progress_seconds = progress_seconds
        self.vacuum = vacuum

    def deconstruct(self):
        kwargs = {"model_name": self.model_name, "set": self.set, "where": self.where}
        if self.batch_size != 10_000:
            kwargs["batch_size"] = self.batch_size
        if self.pause_seconds:
            kwargs["pause_seconds"] = self.pause_seconds
        if not self.vacuum:
            kwargs["vacuum"] = False
        return type(self).__qualname__, [], kwargs

    def state_forwards(self, app_label, state):
        pass

    def describe(self):
        fields = ", ".join(self.set)
        return f"Backfill {self.model_name}.{fields} in committed batches of {self.batch_size:,} ids"

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if schema_editor.collect_sql:
            schema_editor.collected_sql.append("-- (runs as committed batches at migrate time: no single SQL statement to show)")
            return
        self._ensure_not_in_transaction(schema_editor)  # it commits per batch: "set atomic = False"
        manager = model._default_manager.using(schema_editor.connection.alias)
        todo = manager.filter(self.where)
        first = todo.order_by("pk").values_list("pk", flat=True).first()
        if first is None:
            _say(f"{model._meta.db_table}: nothing to backfill")
            return
        last = manager.order_by("-pk").values_list("pk", flat=True).first()
        with schema_editor.connection.cursor() as cursor:
            # Idempotent and resumable: a batch lost to a crash is simply done again, so a commit need not wait
            # for its WAL to reach the disk (shorter batches, less I/O stall for everyone else).
            cursor.execute("SET synchronous_commit = off")
        try:
            self._walk(model, manager, todo, first, last)
        finally:
            with schema_editor.connection.cursor() as cursor:
                cursor.execute("RESET synchronous_commit")
        if self.vacuum:
            self._vacuum(schema_editor, model._meta.db_table)

    def _vacuum(self, schema_editor, table: str) -> None:
        """Clear the old row versions the backfill left (one per row), now rather than later.

        Left to autovacuum, they are vacuumed just when the next step's ALTER TABLE needs its lock: the ALTER then
        waits until autovacuum is cancelled (deadlock_timeout, 1 s), and all traffic queues behind the waiting
        ALTER. VACUUM takes SHARE UPDATE EXCLUSIVE: it blocks neither reads nor writes.
        """
        started = time.monotonic()
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(f"VACUUM (ANALYZE) {schema_editor.quote_name(table)}")
        _say(f"{table}: VACUUM (ANALYZE) after the backfill, {time.monotonic() - started:.1f} s")

    def _walk(self, model, manager, todo, first, last):
        started = reported = time.monotonic()
        lo, updated, batch_seconds = first, 0, []
        while lo <= last:
            hi = lo + self.batch_size
            batch_started = time.monotonic()
            updated += todo.filter(pk__gte=lo, pk__lt=hi).update(**self.set)  # autocommit: one transaction
            batch_seconds.append(time.monotonic() - batch_started)
            lo = hi
            if lo > last:  # rows inserted meanwhile get the column's default, but never leave a gap
                last = manager.order_by("-pk").values_list("pk", flat=True).first()
            now = time.monotonic()
            if now - reported >= self.progress_seconds or lo > last:
                done = min(lo, last + 1) - first
                total = last + 1 - first
                rate = done / max(now - started, 1e-9)
                _say(
                    f"{model._meta.db_table}: {min(lo - 1, last):,} / {last:,} ids ({100 * done // max(total, 1)}%), "
                    f"{updated:,} rows updated, {now - started:.1f} s, ~{(total - done) / max(rate, 1e-9):.0f} s left"
                )
                reported = now
            if self.pause_seconds:
                time.sleep(self.pause_seconds)
        slow = sum(1 for seconds in batch_seconds if seconds > 0.25)
        batch_seconds.sort()
        median = batch_seconds[len(batch_seconds) // 2]
        p99 = batch_seconds[min(len(batch_seconds) - 1, int(len(batch_seconds) * 0.99))]
        _say(f"{model._meta.db_table}: backfill done, {updated:,} rows in {time.monotonic() - started:.1f} s; "
             f"{len(batch_seconds):,} batches: median {median * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
             f"slowest batch {batch_seconds[-1] * 1000:.0f} ms, {slow} over 250 ms")

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass


class LockNotGranted(CommandError):
    """A safe step ran out of lock-timeout retries. A CommandError: `migrate` prints its one line, no traceback."""


class WithLockTimeout(Operation):
    """Run operations under a short `lock_timeout`, retrying with capped backoff while the lock is not granted.

    An ALTER TABLE that waits for its ACCESS EXCLUSIVE lock (behind a long report) blocks every query that comes
    after it, for as long as it waits. With a 500 ms lock timeout no request queues behind it for longer than
    that: it gives up, traffic flows again, and it tries again a little later (0.5 s, 1 s, 2 s, 4 s, then every
    5 s, with jitter), for up to `retry_for_seconds` (3 minutes: it outlasts a 30 s report many times over).
    Then it stops with one line naming the session that held the table.

    Re-runnable: before each inner operation it asks the catalog whether that work is already done (see
    migrationlab/resumable.py), so a migration that failed half-way does only the rest when run again.

    The inner operations run in one transaction per attempt, all or nothing.

    Operations that cannot run in a transaction (AddIndexConcurrently, RemoveIndexConcurrently) run one by one,
    re-runnable as above, but without a lock_timeout: they take SHARE UPDATE EXCLUSIVE, which no read or write
    conflicts with, so nothing of the application ever queues behind them; and a CREATE INDEX CONCURRENTLY waits
    (a lock wait, to which lock_timeout applies) for every older transaction, so a timeout would throw away a
    finished build, leave an INVALID index, and start over.
    """

    reduces_to_sql = True  # sqlmigrate shows what each attempt runs
    atomic = False

    def __init__(self, *operations: Operation, lock_timeout: str = "500ms", retry_for_seconds: float = 180.0,
                 first_backoff_seconds: float = 0.5, max_backoff_seconds: float = 5.0):
        self.operations = list(operations)
        self.lock_timeout = lock_timeout
        self.retry_for_seconds = retry_for_seconds
        self.first_backoff_seconds = first_backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds

    @property
    def reversible(self):
        return all(operation.reversible for operation in self.operations)

    def deconstruct(self):
        defaults = {"lock_timeout": "500ms", "retry_for_seconds": 180.0, "first_backoff_seconds": 0.5,
                    "max_backoff_seconds": 5.0}
        kwargs = {name: getattr(self, name) for name, default in defaults.items() if getattr(self, name) != default}
        return type(self).__qualname__, self.operations, kwargs

    def state_forwards(self, app_label, state):
        for operation in self.operations:
            operation.state_forwards(app_label, state)

    def describe(self):
        inner = "; ".join(operation.describe() for operation in self.operations)
        if any(isinstance(operation, NotInTransactionMixin) for operation in self.operations):
            return f"{inner} (re-runnable; no lock_timeout: nothing queues behind SHARE UPDATE EXCLUSIVE)"
        return f"{inner} (lock_timeout {self.lock_timeout}, retried for up to {self.retry_for_seconds:g} s)"

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self._run(app_label, schema_editor, from_state, to_state, backwards=False)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        # Django calls database_backwards(from_state=state after this op, to_state=state before it).
        self._run(app_label, schema_editor, to_state, from_state, backwards=True)

    # -- the steps: every database operation with the states around it, SeparateDatabaseAndState unpacked --------

    def _steps(self, app_label, from_state, to_state) -> list[tuple[Operation, object, object]]:
        steps, state = [], from_state
        for number, operation in enumerate(self.operations, start=1):
            after = to_state
            if number < len(self.operations):
                after = state.clone()
                operation.state_forwards(app_label, after)
            steps.extend(_database_steps(app_label, operation, state, after))
            state = after
        return steps

    def _run(self, app_label, schema_editor, from_state, to_state, backwards: bool) -> None:
        steps = self._steps(app_label, from_state, to_state)
        if backwards:
            steps.reverse()

        def apply(step) -> None:
            operation, before, after = step
            if not schema_editor.collect_sql:
                done = already_done(operation, app_label, schema_editor, before, after, backwards)
                if done:
                    _say(f"already done: {done}")
                    return
            if backwards:
                operation.database_backwards(app_label, schema_editor, after, before)
            else:
                operation.database_forwards(app_label, schema_editor, before, after)

        concurrent = any(isinstance(operation, NotInTransactionMixin) for operation, _, _ in steps)
        if schema_editor.collect_sql:
            if not concurrent:
                schema_editor.collected_sql.append(f"SET LOCAL lock_timeout = '{self.lock_timeout}';")
            for step in steps:
                apply(step)
            return
        if schema_editor.connection.in_atomic_block:
            raise NotSupportedError(
                f"{type(self).__name__} retries in transactions of its own: set atomic = False on the migration"
            )
        tables = _tables(app_label, steps)
        if concurrent:
            for step in steps:  # each concurrent build or drop on its own, each retried on its own
                self._retry(schema_editor, tables, lambda step=step: apply(step), in_transaction=False)
        else:
            self._retry(schema_editor, tables, lambda: [apply(step) for step in steps], in_transaction=True)

    # -- attempts ---------------------------------------------------------------------------------------------

    def _retry(self, schema_editor, tables: list[str], body, in_transaction: bool) -> None:
        connection = schema_editor.connection
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            deferred = len(schema_editor.deferred_sql)
            try:
                if in_transaction:
                    with transaction.atomic(using=connection.alias):
                        with connection.cursor() as cursor:
                            cursor.execute("SET LOCAL lock_timeout = %s", [self.lock_timeout])
                        body()
                        # Deferred statements (index or FK creation) belong to this attempt, under the same timeout.
                        while len(schema_editor.deferred_sql) > deferred:
                            schema_editor.execute(schema_editor.deferred_sql.pop(deferred))
                else:
                    body()  # no lock_timeout: see the class docstring
                return
            except OperationalError as failure:
                del schema_editor.deferred_sql[deferred:]  # rolled back with the attempt
                if getattr(failure.__cause__, "pgcode", None) != LOCK_NOT_AVAILABLE:
                    raise
                wait = min(self.max_backoff_seconds, self.first_backoff_seconds * 2 ** (attempt - 1))
                wait *= random.uniform(0.8, 1.2)
                elapsed = time.monotonic() - started
                if elapsed + wait > self.retry_for_seconds:
                    raise LockNotGranted(self._give_up_line(connection, tables, attempt, elapsed)) from failure
                _say(f"{', '.join(tables) or 'table'}: lock not granted within {self.lock_timeout} (attempt {attempt}, "
                     f"{elapsed:.0f} s so far); traffic goes on; retrying in {wait:.1f} s")
                time.sleep(wait)

    def _give_up_line(self, connection, tables: list[str], attempts: int, elapsed: float) -> str:
        """One line: which table, and which session held it (pid, application_name, for how long, doing what)."""
        gave_up = (f"gave up after {attempts} attempts in {elapsed:.0f} s, each waiting at most {self.lock_timeout} "
                   f"for a lock on {', '.join(tables) or 'the table'}")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT l.relation::regclass::text, a.pid, a.application_name, a.state, "
                "       extract(epoch FROM now() - COALESCE(a.xact_start, a.query_start))::int, l.mode, "
                "       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80) "
                "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_backend_pid() "
                "  AND l.relation IN (SELECT to_regclass(quote_ident(t)) FROM unnest(%s::text[]) AS t) "
                "ORDER BY a.xact_start NULLS LAST LIMIT 1",
                [tables],
            )
            holder = cursor.fetchone()
        if holder is None:
            return f"{gave_up}; nobody holds it now: run the migration again"
        table, pid, application, state, seconds, mode, query = holder
        return (f"{gave_up}; {table} is held by pid {pid} (application_name '{application or ''}', {state} "
                f"for {seconds} s, {mode}: {query}); end that session or run the migration again later")


def _database_steps(app_label, operation: Operation, before, after) -> list[tuple[Operation, object, object]]:
    """The database operations `operation` runs, each with the states around it (as SeparateDatabaseAndState
    computes them: its state_operations do not touch the database)."""
    if not isinstance(operation, migrations.SeparateDatabaseAndState):
        return [(operation, before, after)]
    steps, state = [], before
    for database_operation in operation.database_operations:
        following = state.clone()
        database_operation.state_forwards(app_label, following)
        steps.extend(_database_steps(app_label, database_operation, state, following))
        state = following
    return steps


def _tables(app_label, steps) -> list[str]:
    """The tables the steps name (for the give-up line); RunSQL names none, its neighbours usually do."""
    tables = []
    for operation, before, after in steps:
        model_name = getattr(operation, "model_name", None)
        for state in (before, after):
            try:
                table = state.apps.get_model(app_label, model_name)._meta.db_table
            except (LookupError, TypeError, ValueError):
                continue
            if table not in tables:
                tables.append(table)
            break
    return tables
