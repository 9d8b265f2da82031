"""migrationlab/operations.py without a database: every keyword survives deconstruct(), each wrapper refuses what
it cannot do when the migration is loaded, and the batched operations' report says what the summary line says.

What the operations do on PostgreSQL is tested per project: tests/test_resumable.py, tests/test_faults.py,
tests/test_projects.py, tests/test_projNN.py.
"""

from __future__ import annotations

import inspect

import pytest
from django.contrib.postgres.operations import (
    AddConstraintNotValid, AddIndexConcurrently, RemoveIndexConcurrently, ValidateConstraint,
)
from django.db import migrations, models
from django.db.models import F, Q, Value

from migrationlab.operations import (
    BackfillInBatches, BatchReport, DeleteInBatches, DetachPartitionConcurrently, SkipIfDone, WithLockTimeout,
    _KeysetBatches,
)

CHECK = models.CheckConstraint(condition=Q(status__isnull=False), name="status_set")
INDEX = models.Index(fields=["email"], name="email_idx")
BATCH_KEYWORDS = {"batch_size": 2_000, "pause_seconds": 0.01, "progress_seconds": 5.0, "synchronous_commit": True,
                  "vacuum": False, "target_batch_seconds": 0.05, "min_batch_size": 500, "max_batch_size": 50_000}


def keywords(function) -> set[str]:
    return {name for name, parameter in inspect.signature(function).parameters.items()
            if parameter.kind is parameter.KEYWORD_ONLY or (parameter.default is not parameter.empty)}


def rebuilt(operation):
    name, args, kwargs = operation.deconstruct()
    return type(operation)(*args, **kwargs)


EVERY_KEYWORD = [
    BackfillInBatches("largeuser", set={"status": Value("x")}, where=Q(status__isnull=True), **BATCH_KEYWORDS),
    DeleteInBatches("largeevent", where=Q(id__lt=10), **BATCH_KEYWORDS),
    WithLockTimeout(migrations.AddField("largeuser", "x", models.IntegerField(null=True)), lock_timeout="200ms",
                    retry_for_seconds=30.0, first_backoff_seconds=0.25, max_backoff_seconds=2.0),
    SkipIfDone(AddIndexConcurrently("largeuser", INDEX), migrations.AddConstraint("largeuser", CHECK),
               drop_invalid_index=True, validate_not_valid_constraint=True),
    DetachPartitionConcurrently("largeevent", partition="large_event_history", lock_timeout="200ms",
                                retry_for_seconds=30.0),
]


def test_the_batched_operations_take_every_keyword_the_test_sets():
    assert keywords(_KeysetBatches.__init__) == set(BATCH_KEYWORDS) == set(_KeysetBatches.defaults)


@pytest.mark.parametrize("operation", EVERY_KEYWORD, ids=lambda operation: type(operation).__name__)
def test_deconstruct_keeps_every_keyword(operation):
    """Each keyword set to something else than its default comes back from deconstruct(), and so does the rest."""
    init = _KeysetBatches.__init__ if isinstance(operation, _KeysetBatches) else type(operation).__init__
    _, args, kwargs = operation.deconstruct()
    assert keywords(init) <= set(kwargs), "a keyword set to a non-default value was lost"
    again = rebuilt(operation)
    assert again.deconstruct() == operation.deconstruct()
    assert {name: getattr(again, name) for name in keywords(init)} == {
        name: getattr(operation, name) for name in keywords(init)}


def test_deconstruct_leaves_defaults_out():
    plain = BackfillInBatches("largeuser", set={"n": F("m")}, where=Q(n__isnull=True))
    assert plain.deconstruct()[2] == {"model_name": "largeuser", "set": {"n": F("m")}, "where": Q(n__isnull=True)}
    assert rebuilt(plain).synchronous_commit is False and rebuilt(plain).vacuum is True


@pytest.mark.parametrize("concurrent", [
    AddIndexConcurrently("largeuser", INDEX),
    RemoveIndexConcurrently("largeuser", "email_idx"),
    DetachPartitionConcurrently("largeevent", partition="large_event_history"),
    BackfillInBatches("largeuser", set={"n": F("m")}, where=Q(n__isnull=True)),
    migrations.SeparateDatabaseAndState(database_operations=[AddIndexConcurrently("largeuser", INDEX)]),
    SkipIfDone(AddIndexConcurrently("largeuser", INDEX)),
], ids=lambda operation: type(operation).__name__)
def test_with_lock_timeout_refuses_what_cannot_run_in_a_transaction(concurrent):
    with pytest.raises(ValueError, match="WithLockTimeout cannot run .*: it cannot run in a transaction"):
        WithLockTimeout(concurrent)


@pytest.mark.parametrize("unchecked", [
    migrations.AlterField("largeuser", "status", models.CharField(max_length=20, null=True)),
    migrations.RunSQL('ALTER TABLE "large_user" DROP COLUMN IF EXISTS "x"', reverse_sql=migrations.RunSQL.noop),
    migrations.RunSQL('ALTER TABLE "t" ADD CONSTRAINT "c" CHECK (true); SELECT 1', reverse_sql=""),
    DetachPartitionConcurrently("largeevent", partition="large_event_history"),
], ids=lambda operation: type(operation).__name__)
def test_skip_if_done_refuses_what_the_catalog_cannot_show_done(unchecked):
    with pytest.raises(ValueError, match="SkipIfDone cannot tell whether it is done"):
        SkipIfDone(unchecked)


def test_skip_if_done_takes_what_the_catalog_shows_and_refuses_a_repair_with_nothing_to_repair():
    SkipIfDone(AddConstraintNotValid("largeuser", CHECK), ValidateConstraint("largeuser", "status_set"),
               migrations.RunSQL('ALTER TABLE "t" ADD CONSTRAINT "c" CHECK (true) NOT VALID', reverse_sql=""))
    with pytest.raises(ValueError, match="drop_invalid_index=True"):
        SkipIfDone(RemoveIndexConcurrently("largeuser", "email_idx"), drop_invalid_index=True)
    with pytest.raises(ValueError, match="validate_not_valid_constraint=True"):
        SkipIfDone(ValidateConstraint("largeuser", "status_set"), validate_not_valid_constraint=True)


def test_describe_says_every_job():
    add = migrations.AddField("largeuser", "x", models.IntegerField(null=True))
    assert WithLockTimeout(SkipIfDone(add), lock_timeout="200ms").describe().endswith(
        "(skipped if already done) (lock_timeout 200ms, retried for up to 180 s)")
    assert "an INVALID index dropped and built again" in SkipIfDone(
        AddIndexConcurrently("largeuser", INDEX), drop_invalid_index=True).describe()
    assert BackfillInBatches("largeuser", set={"n": F("m")}, where=Q(n__isnull=True)).describe() == (
        "Backfill largeuser.n in committed batches of 10,000 ids, synchronous_commit off, then VACUUM (ANALYZE)")
    assert DeleteInBatches("largeevent", where=Q(id__lt=10), synchronous_commit=True, vacuum=False).describe() == (
        "Delete rows of largeevent in committed batches of 10,000 ids")


def test_the_report_gives_the_numbers_of_its_summary():
    report = BatchReport("large_user", "backfill", 25_000, 1.5, (0.1, 0.3, 0.2), (10_000, 10_000, 5_000),
                         vacuum_seconds=0.4)
    assert (report.batches, report.median_seconds, report.slowest_seconds, report.slow_batches) == (3, 0.2, 0.3, 1)
    assert report.summary() == ("large_user: backfill done, 25,000 rows in 1.5 s; 3 batches: median 200 ms, "
                                "p99 300 ms, slowest batch 300 ms, 1 over 250 ms")
    assert report.as_dict()["rows"] == 25_000 and report.as_dict()["p99_seconds"] == 0.3
    assert BatchReport("small_user", "delete", 0, 0.0).summary() == "small_user: nothing to delete"
