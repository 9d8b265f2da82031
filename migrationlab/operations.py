"""Migration operations for zero-downtime changes, each with one job, usable from any project in one line.

    BackfillInBatches("largeuser", set={"status": Value("active")}, where=Q(status__isnull=True))
    DeleteInBatches("largeevent", where=Q(created_at__lt=cutoff))
    WithLockTimeout(AddConstraintNotValid(...))
    WithLockTimeout(DetachPartitionConcurrently("largeevent", partition="large_event_history"))

All need `atomic = False` on the migration: a batched operation must commit per batch, a lock-timeout retry must
roll back only its own attempt, and DETACH ... CONCURRENTLY cannot run in a transaction at all. They refuse to run
inside an atomic migration rather than silently degrade. All can be run again after failing at any point: the
batched ones resume at the first row still to do, WithLockTimeout skips what the catalog shows is done
(migrationlab/resumable.py), and the detach finishes an interrupted detach (FINALIZE).
"""

from __future__ import annotations

import random
import statistics
import sys
import time

from django.contrib.postgres.operations import NotInTransactionMixin
from django.core.management.base import CommandError
from django.db import NotSupportedError, OperationalError, migrations, transaction
from django.db.migrations.operations.base import Operation
from django.db.models import Q
from django.db.models.deletion import Collector

from migrationlab.resumable import already_done

LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE raised when lock_timeout expires


def _say(line: str) -> None:
    # The migrate command prints "Applying app.000N..." without a newline first: start our own lines cleanly.
    sys.stdout.write(f"\n    {line}")
    sys.stdout.flush()


class BatchSizer:
    """The width of the next keyset batch (a range of primary-key values): fixed, or adapted to a target time.

    Fixed (target_seconds=None): every batch covers `width` ids.

    Adaptive, like pt-online-schema-change's --chunk-time: after each batch the rate it achieved (ids per second)
    goes into a weighted average (`weight` for the history, 1 - weight for the newest batch, so one slow batch,
    a checkpoint say, does not halve the next), and the next batch covers rate x target_seconds ids, within
    [minimum, maximum] and never more than `max_growth` times the batch before. The same migration then runs
    batches of about the same duration on a laptop and on a large server, and on a table whose rows are wide
    or narrow; it is the range width that adapts, so sparse ids (rows deleted earlier) are walked quickly too.
    """

    def __init__(self, width: int, target_seconds: float | None = None, minimum: int = 1_000,
                 maximum: int = 100_000, weight: float = 0.75, max_growth: float = 2.0):
        if width < 1 or minimum < 1 or maximum < minimum:
            raise ValueError("batch sizes must be >= 1, and the maximum at least the minimum")
        if target_seconds is not None and target_seconds <= 0:
            raise ValueError("target_batch_seconds must be > 0")
        self.target_seconds = target_seconds
        self.minimum, self.maximum = minimum, maximum
        self.weight, self.max_growth = weight, max_growth
        self.width = width if target_seconds is None else min(max(width, minimum), maximum)
        self.rate: float | None = None  # ids per second, weighted average

    def after(self, width: int, seconds: float) -> int:
        """The batch just done covered `width` ids in `seconds`: the width of the next one."""
        if self.target_seconds is None:
            return self.width
        rate = width / max(seconds, 1e-6)
        self.rate = rate if self.rate is None else self.weight * self.rate + (1 - self.weight) * rate
        wanted = min(self.rate * self.target_seconds, width * self.max_growth)
        self.width = int(min(max(wanted, self.minimum), self.maximum))
        return self.width


class _KeysetBatches(NotInTransactionMixin, Operation):
    """What a batched backfill and a batched delete share: walk the primary key in ranges [lo, lo + width), one
    autocommit statement per range (one transaction each), over the rows matching `where`.

    - keyset ranges: every batch is an index range scan, never OFFSET, never a rescan of rows already done;
    - idempotent: `where` is part of every batch, so a row is only ever done once;
    - resumable: a run starts at the first row still matching `where`, so a re-run after an interrupt (a kill,
      a deploy, Ctrl-C) goes on where the last committed batch ended;
    - each batch holds row locks on at most one range of rows for one short transaction; `pause_seconds`
      between batches leaves room for other writers, for autovacuum and for replicas to catch up;
    - batch width: fixed (`batch_size`), or adapted after every batch to take about `target_batch_seconds`
      (see BatchSizer; `batch_size` is then the first batch's width);
    - prints progress (rows, %, rate, estimated time left) and the batch times (median, p99, slowest);
    - then VACUUMs the table (see _vacuum), unless vacuum=False.
    """

    reversible = True
    reduces_to_sql = True  # sqlmigrate shows what each attempt runs
    atomic = False
    verb = "backfill"
    done_word = "updated"
    follows_new_rows = True
    defaults = {"batch_size": 10_000, "pause_seconds": 0.0, "vacuum": True, "target_batch_seconds": None,
                "min_batch_size": 1_000, "max_batch_size": 100_000}

    def __init__(self, model_name: str, where, batch_size: int = 10_000, pause_seconds: float = 0.0,
                 progress_seconds: float = 2.0, vacuum: bool = True, target_batch_seconds: float | None = None,
                 min_batch_size: int = 1_000, max_batch_size: int = 100_000):
        self.model_name = model_name
        self.where = where
        self.batch_size = batch_size
        self.pause_seconds = pause_seconds
        self.progress_seconds = progress_seconds
        self.vacuum = vacuum
        self.target_batch_seconds = target_batch_seconds
        self.min_batch_size = min_batch_size
        self.max_batch_size = max_batch_size
        BatchSizer(batch_size, target_batch_seconds, min_batch_size, max_batch_size)  # refuse bad sizes now

    def _non_default_kwargs(self) -> dict:
        return {name: getattr(self, name) for name, default in self.defaults.items() if getattr(self, name) != default}

    def state_forwards(self, app_label, state):
        pass

    def _size_text(self) -> str:
        if self.target_batch_seconds is None:
            return f"committed batches of {self.batch_size:,} ids"
        return f"committed batches of about {self.target_batch_seconds * 1000:g} ms each"

    def _where(self, model) -> Q:
        """`where`, or what a callable `where` returns for the model: evaluated once per run."""
        return self.where(model) if callable(self.where) else self.where

    def _batch(self, todo, lo: int, hi: int, alias: str) -> int:
        raise NotImplementedError

    def _last(self, manager, todo):
        """The last primary key to walk to."""
        raise NotImplementedError

    def _check(self, todo, alias: str) -> None:
        """Refuse to run if the batches would not do what the operation promises."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if schema_editor.collect_sql:
            schema_editor.collected_sql.append("-- (runs as committed batches at migrate time: no single SQL statement to show)")
            return
        self._ensure_not_in_transaction(schema_editor)  # it commits per batch: "set atomic = False"
        alias = schema_editor.connection.alias
        manager = model._default_manager.using(alias)
        where = self._where(model)
        if where is None:
            _say(f"{model._meta.db_table}: nothing to {self.verb}")
            return
        todo = manager.filter(where)
        self._check(todo, alias)
        first = todo.order_by("pk").values_list("pk", flat=True).first()
        if first is None:
            _say(f"{model._meta.db_table}: nothing to {self.verb}")
            return
        last = self._last(manager, todo)
        with schema_editor.connection.cursor() as cursor:
            # Idempotent and resumable: a batch lost to a crash is simply done again, so a commit need not wait
            # for its WAL to reach the disk (shorter batches, less I/O stall for everyone else).
            cursor.execute("SET synchronous_commit = off")
        try:
            self._walk(model, manager, todo, first, last, alias)
        finally:
            with schema_editor.connection.cursor() as cursor:
                cursor.execute("RESET synchronous_commit")
        if self.vacuum:
            self._vacuum(schema_editor, model._meta.db_table)

    def _vacuum(self, schema_editor, table: str) -> None:
        """Clear the old row versions the batches left (one per row done), now rather than later.

        Left to autovacuum, they are vacuumed just when the next step's ALTER TABLE needs its lock: the ALTER then
        waits until autovacuum is cancelled (deadlock_timeout, 1 s), and all traffic queues behind the waiting
        ALTER. VACUUM takes SHARE UPDATE EXCLUSIVE: it blocks neither reads nor writes.
        """
        started = time.monotonic()
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(f"VACUUM (ANALYZE) {schema_editor.quote_name(table)}")
        _say(f"{table}: VACUUM (ANALYZE) after the {self.verb}, {time.monotonic() - started:.1f} s")

    def _walk(self, model, manager, todo, first, last, alias):
        table = model._meta.db_table
        sizer = BatchSizer(self.batch_size, self.target_batch_seconds, self.min_batch_size, self.max_batch_size)
        started = reported = time.monotonic()
        lo, done_rows, batch_seconds, widths = first, 0, [], []
        while lo <= last:
            width = sizer.width
            hi = lo + width
            batch_started = time.monotonic()
            done_rows += self._batch(todo, lo, hi, alias)  # autocommit: one transaction
            seconds = time.monotonic() - batch_started
            batch_seconds.append(seconds)
            widths.append(width)
            sizer.after(width, seconds)
            lo = hi
            if lo > last and self.follows_new_rows:  # rows inserted meanwhile: walk on to the table's new end
                last = self._last(manager, todo)
            now = time.monotonic()
            if now - reported >= self.progress_seconds or lo > last:
                done = min(lo, last + 1) - first
                total = last + 1 - first
                rate = done / max(now - started, 1e-9)
                batches = f", batches of {width:,} ids" if self.target_batch_seconds is not None else ""
                _say(
                    f"{table}: {min(lo - 1, last):,} / {last:,} ids ({100 * done // max(total, 1)}%), "
                    f"{done_rows:,} rows {self.done_word}, {now - started:.1f} s, "
                    f"~{(total - done) / max(rate, 1e-9):.0f} s left{batches}"
                )
                reported = now
            if self.pause_seconds:
                time.sleep(self.pause_seconds)  # the throttle: time for everyone else between two batches
        slow = sum(1 for seconds in batch_seconds if seconds > 0.25)
        ordered = sorted(batch_seconds)
        median = ordered[len(ordered) // 2]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        adapted = ""
        if self.target_batch_seconds is not None:
            adapted = (f"; batch width adapted to {self.target_batch_seconds * 1000:g} ms: first {widths[0]:,}, "
                       f"median {int(statistics.median(widths)):,}, last {widths[-1]:,} ids")
        _say(f"{table}: {self.verb} done, {done_rows:,} rows in {time.monotonic() - started:.1f} s; "
             f"{len(ordered):,} batches: median {median * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
             f"slowest batch {ordered[-1] * 1000:.0f} ms, {slow} over 250 ms{adapted}")

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass


class BackfillInBatches(_KeysetBatches):
    """UPDATE a large table in keyset batches of primary-key ranges, committing after each batch.

    `set` maps columns to values or expressions (evaluated by PostgreSQL, row by row); `where` (a Q) picks the
    rows still to fill, e.g. Q(status__isnull=True). See _KeysetBatches for what every batch guarantees, and
    BatchSizer for `target_batch_seconds`.

    Reversing is a no-op: which rows were empty before cannot be known afterwards (and the migration before this
    one, reversed, drops or empties the column anyway).
    """

    def __init__(self, model_name: str, set: dict, where: Q, batch_size: int = 10_000, pause_seconds: float = 0.0,
                 progress_seconds: float = 2.0, vacuum: bool = True, target_batch_seconds: float | None = None,
                 min_batch_size: int = 1_000, max_batch_size: int = 100_000):
        super().__init__(model_name, where, batch_size, pause_seconds, progress_seconds, vacuum,
                         target_batch_seconds, min_batch_size, max_batch_size)
        self.set = set

    def deconstruct(self):
        kwargs = {"model_name": self.model_name, "set": self.set, "where": self.where, **self._non_default_kwargs()}
        return type(self).__qualname__, [], kwargs

    def describe(self):
        fields = ", ".join(self.set)
        return f"Backfill {self.model_name}.{fields} in {self._size_text()}"

    def _batch(self, todo, lo, hi, alias):
        return todo.filter(pk__gte=lo, pk__lt=hi).update(**self.set)

    def _last(self, manager, todo):
        # The whole table: rows inserted meanwhile get the column's default, but never leave a gap.
        return manager.order_by("-pk").values_list("pk", flat=True).first()


class DeleteInBatches(_KeysetBatches):
    """DELETE the rows matching `where` in keyset batches of primary-key ranges, committing after each batch.

    Each batch is one plain `DELETE ... WHERE pk >= lo AND pk < hi AND <where>`: no row is loaded into Python
    (memory stays flat however many rows go), and a writer waits at most for the batch that holds its row.
    That is exactly what Django itself sends for a queryset .delete() when nothing cascades from the model and no
    pre_delete/post_delete receiver listens to it; when something does, this operation refuses to run (a raw
    delete would skip the cascades and the signals), rather than silently lose them.

    `where`: a Q, or a function of the model returning one, called once when a run starts (e.g. a retention
    cutoff computed from the data). A re-run after an interrupt must pick the same rows: compute it from something
    the delete does not change (the newest rows, a fixed date), not from the oldest row left.

    Reversing is a no-op: the deleted rows are gone.
    """

    verb = "delete"
    done_word = "deleted"
    follows_new_rows = False  # rows appended meanwhile are new ones, not the old ones being deleted

    def deconstruct(self):
        kwargs = {"model_name": self.model_name, "where": self.where, **self._non_default_kwargs()}
        return type(self).__qualname__, [], kwargs

    def describe(self):
        return f"Delete rows of {self.model_name} in {self._size_text()}"

    def _check(self, todo, alias):
        if not Collector(using=alias).can_fast_delete(todo):
            raise CommandError(
                f"{todo.model._meta.db_table}: Django would not delete these rows with one plain DELETE (a foreign "
                f"key cascades from it, or a pre_delete/post_delete receiver listens): batched raw deletes would "
                f"skip that; delete the dependent rows first, or disconnect the receivers for the migration")

    def _batch(self, todo, lo, hi, alias):
        # QuerySet._raw_delete: the one DELETE statement Django's collector itself sends on its fast path.
        return todo.filter(pk__gte=lo, pk__lt=hi)._raw_delete(alias)

    def _last(self, manager, todo):
        # The last row to delete: nothing past it matches.
        return todo.order_by("-pk").values_list("pk", flat=True).first()


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
        if any(isinstance(operation, NotInTransactionMixin) for operation in _unpacked(self.operations)):
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


def _unpacked(operations) -> list[Operation]:
    """The operations, with the database operations of a SeparateDatabaseAndState in its place."""
    unpacked = []
    for operation in operations:
        if isinstance(operation, migrations.SeparateDatabaseAndState):
            unpacked.extend(_unpacked(operation.database_operations))
        else:
            unpacked.append(operation)
    return unpacked


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


class DetachPartitionConcurrently(NotInTransactionMixin, Operation):
    """Drop the oldest partition of a partitioned table without making reads or writes wait: time-based retention.

        ALTER TABLE <the model's table> DETACH PARTITION <partition> CONCURRENTLY;   -- PostgreSQL 14 and later
        DROP TABLE <partition>;

    DETACH ... CONCURRENTLY runs as two transactions of its own (so it cannot run in a migration's transaction).
    The first takes SHARE UPDATE EXCLUSIVE on the partitioned table and the partition (no read or write conflicts
    with it), marks the partition "detach pending" and commits: queries that start from then on no longer see the
    partition. It then waits for every transaction that began before, which may still be reading it. The second
    takes ACCESS EXCLUSIVE on the partition alone (nothing reaches it through the table any more) and finishes.
    Then the DROP removes the partition's files: no rows are deleted one by one, no dead rows are left behind, and
    no VACUUM is needed. It takes the same few milliseconds for ten rows or ten million.

    Re-runnable: it first asks pg_inherits. Still attached: DETACH ... CONCURRENTLY. Left "detach pending" by a
    run that was interrupted while waiting: DETACH ... FINALIZE completes it. Already detached: nothing. Then
    DROP TABLE IF EXISTS, under a short lock_timeout (inside WithLockTimeout, a timeout is retried).

    Reversing is a no-op: the partition's rows are gone.
    """

    reversible = True
    reduces_to_sql = True
    atomic = False

    def __init__(self, model_name: str, partition: str, lock_timeout: str = "500ms"):
        self.model_name = model_name
        self.partition = partition
        self.lock_timeout = lock_timeout

    def deconstruct(self):
        kwargs = {"model_name": self.model_name, "partition": self.partition}
        if self.lock_timeout != "500ms":
            kwargs["lock_timeout"] = self.lock_timeout
        return type(self).__qualname__, [], kwargs

    def state_forwards(self, app_label, state):
        pass

    def describe(self):
        return (f"Detach partition {self.partition} of {self.model_name} concurrently, then drop it "
                f"(the DROP under a {self.lock_timeout} lock_timeout)")

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        table = from_state.apps.get_model(app_label, self.model_name)._meta.db_table
        quote = schema_editor.quote_name
        if schema_editor.collect_sql:
            schema_editor.collected_sql.append(
                f"ALTER TABLE {quote(table)} DETACH PARTITION {quote(self.partition)} CONCURRENTLY;")
            schema_editor.collected_sql.append(f"DROP TABLE IF EXISTS {quote(self.partition)};")
            return
        self._ensure_not_in_transaction(schema_editor)
        connection = schema_editor.connection
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = to_regclass(%s) AND inhparent = to_regclass(%s)",
                [quote(self.partition), quote(table)],
            )
            row = cursor.fetchone()
        started = time.monotonic()
        if row is None:
            _say(f"{table}: {self.partition} is not a partition of it (any more): nothing to detach")
        else:
            how = "FINALIZE" if row[0] else "CONCURRENTLY"  # FINALIZE: an earlier run was interrupted while waiting
            schema_editor.execute(f"ALTER TABLE {quote(table)} DETACH PARTITION {quote(self.partition)} {how}")
            _say(f"{table}: detached {self.partition} ({how}), {time.monotonic() - started:.2f} s")
        started = time.monotonic()
        with transaction.atomic(using=connection.alias):
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = %s", [self.lock_timeout])
            schema_editor.execute(f"DROP TABLE IF EXISTS {quote(self.partition)}")
        _say(f"{table}: dropped {self.partition}, {time.monotonic() - started:.2f} s")

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass
