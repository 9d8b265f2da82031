"""Migration operations for zero-downtime changes, each with one job, named for it, usable from any project in one line.

    BackfillInBatches("largeuser", set={"status": Value("active")}, where=Q(status__isnull=True),
                      synchronous_commit=False, vacuum=True)
    DeleteInBatches("largeevent", where=Q(created_at__lt=cutoff), synchronous_commit=False, vacuum=True)
    WithLockTimeout(SkipIfDone(AddConstraintNotValid(...)))
    SkipIfDone(AddIndexConcurrently(...), drop_invalid_index=True)
    DetachPartitionConcurrently("largeevent", partition="large_event_history")

- WithLockTimeout: a short lock_timeout, retried with capped backoff; one transaction per attempt. Nothing else: it
  refuses (when the migration is loaded) an operation that cannot run in a transaction, so it never quietly runs
  something without its lock_timeout.
- SkipIfDone: skips an operation the catalog shows done (migrationlab/resumable.py), so that a re-run does only
  the rest. It refuses an operation whose being done it cannot read from the catalog; its repairs are flags the
  migration states (`drop_invalid_index`, `validate_not_valid_constraint`), off unless stated.
- BackfillInBatches, DeleteInBatches: keyset batches, a commit per batch; each run leaves a BatchReport on the
  operation (`.report`). `synchronous_commit` and `vacuum` are keyword arguments the migrations state.
- DetachPartitionConcurrently: DETACH ... CONCURRENTLY (or FINALIZE), then the DROP under a retried lock_timeout.

All need `atomic = False` on the migration: a batched operation must commit per batch, a lock-timeout retry must
roll back only its own attempt, and the CONCURRENTLY commands cannot run in a transaction at all. They refuse to run
inside an atomic migration rather than silently degrade.

What they say goes to the logger "migrationlab.operations" (INFO), which `migrate` (migrationlab's own, a subclass
of Django's: migrationlab/management/commands/migrate.py) writes to its stdout at verbosity 1 and more, and
nowhere at verbosity 0; elsewhere, attach a handler (`output_to`).
"""

from __future__ import annotations

import logging
import random
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from django.contrib.postgres.operations import NotInTransactionMixin
from django.core.management.base import CommandError
from django.db import NotSupportedError, OperationalError, migrations, transaction
from django.db.migrations.operations.base import Operation
from django.db.models import Q
from django.db.models.deletion import Collector

from migrationlab.resumable import already_done, cannot_check

LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE raised when lock_timeout expires
SLOW_BATCH_SECONDS = 0.25  # the report counts the batches slower than this
log = logging.getLogger("migrationlab.operations")


def _say(line: str) -> None:
    log.info(line)


class _Lines(logging.Handler):
    def __init__(self, write):
        super().__init__(logging.INFO)
        self.write = write

    def emit(self, record):
        self.write(record.getMessage())


@contextmanager
def output_to(write):
    """While the block runs, every line the operations say goes to `write(line)` (migrate's stdout, say), and only
    there (not also to the root logger's handlers)."""
    handler, level, propagate = _Lines(write), log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


def _non_defaults(operation, defaults: dict) -> dict:
    """The keywords whose value is not their default: what deconstruct() must keep."""
    return {name: getattr(operation, name) for name, default in defaults.items() if getattr(operation, name) != default}


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


@dataclass(frozen=True)
class BatchReport:
    """What one run of a batched operation did: kept on the operation (`operation.report`) after every run."""

    table: str
    verb: str  # "backfill" or "delete"
    rows: int  # rows updated or deleted by this run
    seconds: float  # the batches, from the first to the last (not the VACUUM)
    batch_seconds: tuple[float, ...] = ()
    batch_widths: tuple[int, ...] = ()  # ids each batch covered
    target_batch_seconds: float | None = None  # the adaptive width's target, or None for a fixed width
    synchronous_commit: bool = True
    vacuum_seconds: float | None = None  # the closing VACUUM (ANALYZE), None if it did not run

    @property
    def batches(self) -> int:
        return len(self.batch_seconds)

    def _ordered(self) -> list[float]:
        return sorted(self.batch_seconds) or [0.0]

    @property
    def median_seconds(self) -> float:
        ordered = self._ordered()
        return ordered[len(ordered) // 2]

    @property
    def p99_seconds(self) -> float:
        ordered = self._ordered()
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    @property
    def slowest_seconds(self) -> float:
        return self._ordered()[-1]

    @property
    def slow_batches(self) -> int:
        return sum(1 for seconds in self.batch_seconds if seconds > SLOW_BATCH_SECONDS)

    def as_dict(self) -> dict:
        """The fields and the derived numbers, for JSON."""
        derived = ("batches", "median_seconds", "p99_seconds", "slowest_seconds", "slow_batches")
        return {**asdict(self), **{name: getattr(self, name) for name in derived}}

    def summary(self) -> str:
        """The one line the operation says when it is done."""
        if not self.batches:
            return f"{self.table}: nothing to {self.verb}"
        adapted = ""
        if self.target_batch_seconds is not None:
            widths = self.batch_widths
            adapted = (f"; batch width adapted to {self.target_batch_seconds * 1000:g} ms: first {widths[0]:,}, "
                       f"median {int(statistics.median(widths)):,}, last {widths[-1]:,} ids")
        return (f"{self.table}: {self.verb} done, {self.rows:,} rows in {self.seconds:.1f} s; "
                f"{self.batches:,} batches: median {self.median_seconds * 1000:.0f} ms, "
                f"p99 {self.p99_seconds * 1000:.0f} ms, slowest batch {self.slowest_seconds * 1000:.0f} ms, "
                f"{self.slow_batches} over {SLOW_BATCH_SECONDS * 1000:.0f} ms{adapted}")


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
    - says its progress every `progress_seconds` (rows, %, rate, estimated time left) and, at the end, the
      BatchReport's summary; the report itself is left on the operation (`.report`).

    Two choices the migration states (the defaults, when it does not, in brackets):
    - `synchronous_commit` (False): False runs the batches with `SET synchronous_commit = off`, for this session
      only and reset afterwards: a commit does not wait for its WAL to reach the disk (shorter batches, less I/O
      stall for everyone else). A crash can lose the last batches' commits, never corrupt them: each batch is
      idempotent and the run resumable, so a lost batch is simply done again. True leaves the server's setting.
    - `vacuum` (True): VACUUM (ANALYZE) the table once the batches are done (see _vacuum).
    """

    reversible = True
    reduces_to_sql = True  # sqlmigrate shows what each attempt runs
    atomic = False
    verb = "backfill"
    done_word = "updated"
    follows_new_rows = True
    defaults = {"batch_size": 10_000, "pause_seconds": 0.0, "progress_seconds": 2.0, "synchronous_commit": False,
                "vacuum": True, "target_batch_seconds": None, "min_batch_size": 1_000, "max_batch_size": 100_000}

    def __init__(self, model_name: str, where, batch_size: int = 10_000, pause_seconds: float = 0.0,
                 progress_seconds: float = 2.0, synchronous_commit: bool = False, vacuum: bool = True,
                 target_batch_seconds: float | None = None, min_batch_size: int = 1_000, max_batch_size: int = 100_000):
        self.model_name = model_name
        self.where = where
        self.batch_size = batch_size
        self.pause_seconds = pause_seconds
        self.progress_seconds = progress_seconds
        self.synchronous_commit = synchronous_commit
        self.vacuum = vacuum
        self.target_batch_seconds = target_batch_seconds
        self.min_batch_size = min_batch_size
        self.max_batch_size = max_batch_size
        self.report: BatchReport | None = None  # the last run's, in this process
        BatchSizer(batch_size, target_batch_seconds, min_batch_size, max_batch_size)  # refuse bad sizes now

    def state_forwards(self, app_label, state):
        pass

    def _size_text(self) -> str:
        if self.target_batch_seconds is None:
            size = f"committed batches of {self.batch_size:,} ids"
        else:
            size = f"committed batches of about {self.target_batch_seconds * 1000:g} ms each"
        sync = "" if self.synchronous_commit else ", synchronous_commit off"
        return size + sync + (", then VACUUM (ANALYZE)" if self.vacuum else "")

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

    def _nothing(self, table: str) -> None:
        self.report = BatchReport(table, self.verb, 0, 0.0, target_batch_seconds=self.target_batch_seconds,
                                  synchronous_commit=self.synchronous_commit)
        _say(self.report.summary())

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if schema_editor.collect_sql:
            schema_editor.collected_sql.append("-- (runs as committed batches at migrate time: no single SQL statement to show)")
            return
        self._ensure_not_in_transaction(schema_editor)  # it commits per batch: "set atomic = False"
        self.report = None
        alias = schema_editor.connection.alias
        manager = model._default_manager.using(alias)
        where = self._where(model)
        if where is None:
            return self._nothing(model._meta.db_table)
        todo = manager.filter(where)
        self._check(todo, alias)
        first = todo.order_by("pk").values_list("pk", flat=True).first()
        if first is None:
            return self._nothing(model._meta.db_table)
        last = self._last(manager, todo)
        if not self.synchronous_commit:
            with schema_editor.connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit = off")  # see the class docstring
        try:
            report = self._walk(model, manager, todo, first, last, alias)
        finally:
            if not self.synchronous_commit:
                with schema_editor.connection.cursor() as cursor:
                    cursor.execute("RESET synchronous_commit")
        self.report = report
        _say(report.summary())
        if self.vacuum:
            self.report = BatchReport(**{**asdict(report), "vacuum_seconds": self._vacuum(schema_editor, report.table)})

    def _vacuum(self, schema_editor, table: str) -> float:
        """Clear the old row versions the batches left (one per row done), now rather than later: its seconds.

        Left to autovacuum, they are vacuumed just when the next step's ALTER TABLE needs its lock: the ALTER then
        waits until autovacuum is cancelled (deadlock_timeout, 1 s), and all traffic queues behind the waiting
        ALTER. VACUUM takes SHARE UPDATE EXCLUSIVE: it blocks neither reads nor writes.
        """
        started = time.monotonic()
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(f"VACUUM (ANALYZE) {schema_editor.quote_name(table)}")
        seconds = time.monotonic() - started
        _say(f"{table}: VACUUM (ANALYZE) after the {self.verb}, {seconds:.1f} s")
        return seconds

    def _walk(self, model, manager, todo, first, last, alias) -> BatchReport:
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
        return BatchReport(table, self.verb, done_rows, time.monotonic() - started, tuple(batch_seconds),
                           tuple(widths), self.target_batch_seconds, self.synchronous_commit)

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

    def __init__(self, model_name: str, set: dict, where: Q, **options):
        super().__init__(model_name, where, **options)  # the keywords of _KeysetBatches
        self.set = set

    def deconstruct(self):
        kwargs = {"model_name": self.model_name, "set": self.set, "where": self.where,
                  **_non_defaults(self, self.defaults)}
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
        kwargs = {"model_name": self.model_name, "where": self.where, **_non_defaults(self, self.defaults)}
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


def _unpacked(operations) -> list[Operation]:
    """The operations, with the database operations of a SeparateDatabaseAndState, and the operations a SkipIfDone
    wraps, in their place."""
    unpacked = []
    for operation in operations:
        if isinstance(operation, migrations.SeparateDatabaseAndState):
            unpacked.extend(_unpacked(operation.database_operations))
        elif isinstance(operation, SkipIfDone):
            unpacked.extend(_unpacked(operation.operations))
        else:
            unpacked.append(operation)
    return unpacked


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


class _Wrapper(Operation):
    """What WithLockTimeout and SkipIfDone share: operations run as one, with the project states around each."""

    reduces_to_sql = True  # sqlmigrate shows what each runs
    defaults: dict = {}

    def __init__(self, *operations: Operation):
        self.operations = list(operations)

    @property
    def reversible(self):
        return all(operation.reversible for operation in self.operations)

    def deconstruct(self):
        return type(self).__qualname__, self.operations, _non_defaults(self, self.defaults)

    def state_forwards(self, app_label, state):
        for operation in self.operations:
            operation.state_forwards(app_label, state)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self._run(app_label, schema_editor, self._steps(app_label, from_state, to_state), backwards=False)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        # Django calls database_backwards(from_state=state after this op, to_state=state before it).
        self._run(app_label, schema_editor, self._steps(app_label, to_state, from_state)[::-1], backwards=True)

    def _steps(self, app_label, from_state, to_state) -> list[tuple[Operation, object, object]]:
        """Every database operation with the states around it (forward order), SeparateDatabaseAndState unpacked."""
        steps, state = [], from_state
        for number, operation in enumerate(self.operations, start=1):
            after = to_state
            if number < len(self.operations):
                after = state.clone()
                operation.state_forwards(app_label, after)
            steps.extend(_database_steps(app_label, operation, state, after))
            state = after
        return steps

    @staticmethod
    def _apply(app_label, schema_editor, step, backwards: bool) -> None:
        operation, before, after = step
        if backwards:
            operation.database_backwards(app_label, schema_editor, after, before)
        else:
            operation.database_forwards(app_label, schema_editor, before, after)

    def _run(self, app_label, schema_editor, steps, backwards: bool) -> None:
        raise NotImplementedError


class SkipIfDone(_Wrapper):
    """Run each operation unless the catalog shows it already done: a re-run after a kill does only the rest.

    What "done" means for each kind of operation is in migrationlab/resumable.py (a constraint that exists, an index
    that exists and is valid, a column that exists, ...). An operation whose being done the catalog cannot show
    (AlterField, RunSQL other than one ADD CONSTRAINT, a trigger, ...) is refused when the migration is loaded: leave
    it outside SkipIfDone and write it so that running it twice is harmless.

    No transaction and no lock_timeout of its own: inside WithLockTimeout it checks and runs within each attempt's
    transaction; alone (AddIndexConcurrently, RemoveIndexConcurrently) each operation runs as it would unwrapped.

    Repairs, each off unless the migration states it (otherwise, finding that state stops the migration with one
    line that names the flag):
    - `drop_invalid_index=True`: an INVALID index (an interrupted CREATE INDEX CONCURRENTLY) where an AddIndex
      builds one is dropped (concurrently, outside a transaction) and built again;
    - `validate_not_valid_constraint=True`: a constraint left NOT VALID where a validating AddConstraint adds it is
      validated (VALIDATE CONSTRAINT) instead of added.
    """

    defaults = {"drop_invalid_index": False, "validate_not_valid_constraint": False}

    def __init__(self, *operations: Operation, drop_invalid_index: bool = False,
                 validate_not_valid_constraint: bool = False):
        super().__init__(*operations)
        self.drop_invalid_index = drop_invalid_index
        self.validate_not_valid_constraint = validate_not_valid_constraint
        unchecked = [why for why in map(cannot_check, _unpacked(self.operations)) if why]
        if unchecked:
            raise ValueError(f"SkipIfDone cannot tell whether it is done: {unchecked[0]}; run it outside SkipIfDone "
                             f"(harmless to run twice)")
        database_operations = _unpacked(self.operations)
        if drop_invalid_index and not any(isinstance(op, migrations.AddIndex) for op in database_operations):
            raise ValueError("SkipIfDone(drop_invalid_index=True) has no AddIndex whose INVALID index it could drop")
        if validate_not_valid_constraint and not any(isinstance(op, migrations.AddConstraint)
                                                     for op in database_operations):
            raise ValueError("SkipIfDone(validate_not_valid_constraint=True) has no AddConstraint to validate")

    def describe(self):
        inner = "; ".join(operation.describe() for operation in self.operations)
        repairs = [text for flag, text in ((self.drop_invalid_index, "an INVALID index dropped and built again"),
                                           (self.validate_not_valid_constraint, "a NOT VALID constraint validated"))
                   if flag]
        return f"{inner} (skipped if already done{''.join('; ' + text for text in repairs)})"

    def _run(self, app_label, schema_editor, steps, backwards: bool) -> None:
        for step in steps:
            operation, before, after = step
            if not schema_editor.collect_sql:
                done = already_done(operation, app_label, schema_editor, before, after, backwards,
                                    drop_invalid_index=self.drop_invalid_index,
                                    validate_not_valid_constraint=self.validate_not_valid_constraint)
                if done:
                    _say(f"already done: {done}")
                    continue
            self._apply(app_label, schema_editor, step, backwards)


class WithLockTimeout(_Wrapper):
    """Run operations under a short `lock_timeout`, retrying with capped backoff while the lock is not granted.

    An ALTER TABLE that waits for its ACCESS EXCLUSIVE lock (behind a long report) blocks every query that comes
    after it, for as long as it waits. With a 500 ms lock timeout no request queues behind it for longer than
    that: it gives up, traffic flows again, and it tries again a little later (0.5 s, 1 s, 2 s, 4 s, then every
    5 s, with jitter), for up to `retry_for_seconds` (3 minutes: it outlasts a 30 s report many times over).
    Then it stops with one line naming the session that held the table.

    The inner operations run in one transaction per attempt, all or nothing. That is all it does: it skips nothing
    (wrap what a re-run must skip in SkipIfDone), and it refuses, when the migration is loaded, an operation that
    cannot run in a transaction (AddIndexConcurrently, RemoveIndexConcurrently, DetachPartitionConcurrently, a
    batched operation): it could not set a lock_timeout for it, and will not run it without one. (Those take SHARE
    UPDATE EXCLUSIVE, which no read or write conflicts with, so nothing queues behind them; and a CREATE INDEX
    CONCURRENTLY waits, a lock wait, for every older transaction, so a timeout would throw away a finished build.)
    """

    atomic = False
    defaults = {"lock_timeout": "500ms", "retry_for_seconds": 180.0, "first_backoff_seconds": 0.5,
                "max_backoff_seconds": 5.0}

    def __init__(self, *operations: Operation, lock_timeout: str = "500ms", retry_for_seconds: float = 180.0,
                 first_backoff_seconds: float = 0.5, max_backoff_seconds: float = 5.0):
        super().__init__(*operations)
        self.lock_timeout = lock_timeout
        self.retry_for_seconds = retry_for_seconds
        self.first_backoff_seconds = first_backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        concurrent = [op for op in _unpacked(self.operations) if isinstance(op, NotInTransactionMixin)]
        if concurrent:
            raise ValueError(
                f"WithLockTimeout cannot run {type(concurrent[0]).__name__}: it cannot run in a transaction, so no "
                f"lock_timeout can be set for it; use it without WithLockTimeout (SkipIfDone makes it re-runnable)")

    def describe(self):
        inner = "; ".join(operation.describe() for operation in self.operations)
        return f"{inner} (lock_timeout {self.lock_timeout}, retried for up to {self.retry_for_seconds:g} s)"

    def _run(self, app_label, schema_editor, steps, backwards: bool) -> None:
        def body():
            for step in steps:
                self._apply(app_label, schema_editor, step, backwards)

        if schema_editor.collect_sql:
            schema_editor.collected_sql.append(f"SET LOCAL lock_timeout = '{self.lock_timeout}';")
            return body()
        if schema_editor.connection.in_atomic_block:
            raise NotSupportedError(
                f"{type(self).__name__} retries in transactions of its own: set atomic = False on the migration"
            )
        retry_under_lock_timeout(schema_editor, _tables(app_label, steps), body, self.lock_timeout,
                                 self.retry_for_seconds, self.first_backoff_seconds, self.max_backoff_seconds)


def retry_under_lock_timeout(schema_editor, tables: list[str], body, lock_timeout: str, retry_for_seconds: float,
                             first_backoff_seconds: float = 0.5, max_backoff_seconds: float = 5.0) -> None:
    """Run `body()` in a transaction under SET LOCAL lock_timeout, again after a capped, jittered backoff while the
    lock is not granted, for up to `retry_for_seconds`; then raise LockNotGranted naming who holds `tables`."""
    connection = schema_editor.connection
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        deferred = len(schema_editor.deferred_sql)
        try:
            with transaction.atomic(using=connection.alias):
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = %s", [lock_timeout])
                body()
                # Deferred statements (index or FK creation) belong to this attempt, under the same timeout.
                while len(schema_editor.deferred_sql) > deferred:
                    schema_editor.execute(schema_editor.deferred_sql.pop(deferred))
            return
        except OperationalError as failure:
            del schema_editor.deferred_sql[deferred:]  # rolled back with the attempt
            if getattr(failure.__cause__, "pgcode", None) != LOCK_NOT_AVAILABLE:
                raise
            wait = min(max_backoff_seconds, first_backoff_seconds * 2 ** (attempt - 1))
            wait *= random.uniform(0.8, 1.2)
            elapsed = time.monotonic() - started
            if elapsed + wait > retry_for_seconds:
                raise LockNotGranted(_give_up_line(connection, tables, lock_timeout, attempt, elapsed)) from failure
            _say(f"{', '.join(tables) or 'table'}: lock not granted within {lock_timeout} (attempt {attempt}, "
                 f"{elapsed:.0f} s so far); traffic goes on; retrying in {wait:.1f} s")
            time.sleep(wait)


def _give_up_line(connection, tables: list[str], lock_timeout: str, attempts: int, elapsed: float) -> str:
    """One line: which table, and which session held it (pid, application_name, for how long, doing what)."""
    gave_up = (f"gave up after {attempts} attempts in {elapsed:.0f} s, each waiting at most {lock_timeout} "
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


def _tables(app_label, steps) -> list[str]:
    """The tables the steps name (for the give-up line); RunSQL names none, its neighbours usually do."""
    tables = []
    for step, before, after in steps:
        for operation in _unpacked([step]):
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

    Re-runnable by itself: it first asks pg_inherits. Still attached: DETACH ... CONCURRENTLY. Left "detach
    pending" by a run that was interrupted while waiting: DETACH ... FINALIZE completes it. Already detached:
    nothing. Then DROP TABLE IF EXISTS, under `lock_timeout` (500 ms) retried for up to `retry_for_seconds` (180 s),
    as WithLockTimeout retries (which cannot wrap this operation: the DETACH cannot run in a transaction).

    Reversing is a no-op: the partition's rows are gone.
    """

    reversible = True
    reduces_to_sql = True
    atomic = False
    defaults = {"lock_timeout": "500ms", "retry_for_seconds": 180.0}

    def __init__(self, model_name: str, partition: str, lock_timeout: str = "500ms", retry_for_seconds: float = 180.0):
        self.model_name = model_name
        self.partition = partition
        self.lock_timeout = lock_timeout
        self.retry_for_seconds = retry_for_seconds

    def deconstruct(self):
        kwargs = {"model_name": self.model_name, "partition": self.partition, **_non_defaults(self, self.defaults)}
        return type(self).__qualname__, [], kwargs

    def state_forwards(self, app_label, state):
        pass

    def describe(self):
        return (f"Detach partition {self.partition} of {self.model_name} concurrently, then drop it "
                f"(the DROP under a {self.lock_timeout} lock_timeout, retried for up to {self.retry_for_seconds:g} s)")

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
        retry_under_lock_timeout(schema_editor, [self.partition],
                                 lambda: schema_editor.execute(f"DROP TABLE IF EXISTS {quote(self.partition)}"),
                                 self.lock_timeout, self.retry_for_seconds)
        _say(f"{table}: dropped {self.partition}, {time.monotonic() - started:.2f} s")

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass
