"""Step 6 (safe): retention by partition: the whole history partition goes at once.

    ALTER TABLE large_event DETACH PARTITION large_event_history CONCURRENTLY;   -- PostgreSQL 14 and later
    DROP TABLE large_event_history;

DETACH ... CONCURRENTLY takes SHARE UPDATE EXCLUSIVE on large_event (no read or write waits for it), hides the
partition from queries that start after its first transaction, waits for the transactions that began before, and
takes ACCESS EXCLUSIVE only on the partition itself, which no query reaches any more. The DROP removes files: no
row is deleted one by one, no dead row is left behind, no VACUUM is needed, and it takes milliseconds whatever the
partition holds. (Without CONCURRENTLY, DETACH PARTITION takes ACCESS EXCLUSIVE on large_event itself.)

Re-runnable (DetachPartitionConcurrently): an interrupted run leaves the partition "detach pending"; the re-run
finishes it with DETACH ... FINALIZE, then drops it.

Reversing is a no-op: the history partition's rows are gone (reversing 0006 then leaves a plain, empty table).
"""

from django.db import migrations

from migrationlab.operations import DetachPartitionConcurrently, WithLockTimeout


class Migration(migrations.Migration):
    atomic = False  # DETACH ... CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("demoapp", "0006_partition_by_attaching_history"),
    ]

    operations = [
        WithLockTimeout(DetachPartitionConcurrently(model_name, partition=f"{table}_history"))
        for model_name, table in (("largeevent", "large_event"), ("smallevent", "small_event"))
    ]
