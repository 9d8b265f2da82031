"""Migration operations for zero-downtime changes, each with one job, usable from any project in one line.

    BackfillInBatches("largeuser", set={"status": Value("active")}, where=Q(status__isnull=True))
    WithLockTimeout(AddConstraintNotValid(...), lock_timeout="2s")

Both need `atomic = False` on the migration: a backfill must commit per batch, and a lock-timeout retry must
roll back only its own attempt. They refuse to run inside an atomic migration rather than silently degrade.
"""

from __future__ import annotations

import random
import sys
import time

from django.db import OperationalError, transaction
from django.db.migrations.operations.base import Operation
from django.db.models import Q

LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE raised when lock_timeout expires


class NeedsNonAtomicMigration(RuntimeError):
    pass


def _require_autocommit(operation: Operation, schema_editor) -> None:
    if schema_editor.connection.in_atomic_block:
        raise NeedsNonAtomicMigration(
            f"{type(operation).__name__} commits as it goes: set `atomic = False` on its migration"
        )


def _say(line: str) -> None:
    # The migrate command prints "Applying app.000N..." without a newline first: start our own lines cleanly.
    sys.stdout.write(f"\n    {line}")
    sys.stdout.flush()


class BackfillInBatches(Operation):
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
        _require_autocommit(self, schema_editor)
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


class WithLockTimeout(Operation):
    """Run operations with `SET LOCAL lock_timeout`, retrying with backoff when the lock is not granted.

    An ALTER TABLE that waits for its ACCESS EXCLUSIVE lock (behind a long query) blocks every query that comes
    after it, for as long as it waits. With a lock timeout it gives up quickly, traffic flows again, and it
    tries again a little later (1 s, 2 s, 4 s, ... with jitter). Each attempt is one short transaction.
    """

    reduces_to_sql = True  # sqlmigrate shows what each attempt runs
    atomic = False

    def __init__(self, *operations: Operation, lock_timeout: str = "2s", attempts: int = 5,
                 first_backoff_seconds: float = 1.0):
        self.operations = list(operations)
        self.lock_timeout = lock_timeout
        self.attempts = attempts
        self.first_backoff_seconds = first_backoff_seconds

    @property
    def reversible(self):
        return all(operation.reversible for operation in self.operations)

    def deconstruct(self):
        kwargs = {"lock_timeout": self.lock_timeout, "attempts": self.attempts}
        return type(self).__qualname__, self.operations, kwargs

    def state_forwards(self, app_label, state):
        for operation in self.operations:
            operation.state_forwards(app_label, state)

    def describe(self):
        inner = "; ".join(operation.describe() for operation in self.operations)
        return f"{inner} (lock_timeout {self.lock_timeout}, up to {self.attempts} attempts)"

    def _attempt(self, schema_editor, run) -> None:
        if schema_editor.collect_sql:
            schema_editor.collected_sql.append(f"SET LOCAL lock_timeout = '{self.lock_timeout}';")
            run()
            return
        _require_autocommit(self, schema_editor)
        connection = schema_editor.connection
        for attempt in range(1, self.attempts + 1):
            try:
                with transaction.atomic(using=connection.alias):
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL lock_timeout = %s", [self.lock_timeout])
                    run()
                    # Deferred statements (index or FK creation) belong to this attempt, under the same timeout.
                    while schema_editor.deferred_sql:
                        schema_editor.execute(schema_editor.deferred_sql.pop(0))
                return
            except OperationalError as failure:
                if getattr(failure.__cause__, "pgcode", None) != LOCK_NOT_AVAILABLE or attempt == self.attempts:
                    raise
                wait = self.first_backoff_seconds * 2 ** (attempt - 1) * random.uniform(0.8, 1.2)
                _say(f"lock not granted within {self.lock_timeout} (attempt {attempt}/{self.attempts}); "
                     f"retrying in {wait:.1f} s")
                time.sleep(wait)

    def _run_all(self, app_label, schema_editor, from_state, to_state, backwards: bool):
        def run():
            # Each inner operation sees the state as it was just before it (as SeparateDatabaseAndState does).
            states = [from_state]
            for operation in self.operations[:-1]:
                state = states[-1].clone()
                operation.state_forwards(app_label, state)
                states.append(state)
            states.append(to_state)
            pairs = list(zip(self.operations, states, states[1:]))
            for operation, before, after in reversed(pairs) if backwards else pairs:
                if backwards:
                    operation.database_backwards(app_label, schema_editor, after, before)
                else:
                    operation.database_forwards(app_label, schema_editor, before, after)

        self._attempt(schema_editor, run)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self._run_all(app_label, schema_editor, from_state, to_state, backwards=False)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        # Django calls database_backwards(from_state=state after this op, to_state=state before it).
        self._run_all(app_label, schema_editor, to_state, from_state, backwards=True)
