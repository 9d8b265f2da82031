"""Step 6 (safe): retention by partition: the whole history partition goes at once.

    ALTER TABLE large_event DETACH PARTITION large_event_history CONCURRENTLY;   -- PostgreSQL 14 and later
    DROP TABLE large_event_history;

DETACH ... CONCURRENTLY takes SHARE UPDATE EXCLUSIVE on large_event (no read or write waits for it), hides the
partition from queries that start after its first transaction, waits for the transactions that began before, and
takes ACCESS EXCLUSIVE only on the partition itself, which no query reaches any more. The DROP removes files: no
row is deleted one by one, no dead row is left behind, no VACUUM is needed, and it takes milliseconds whatever the
partition holds. (Without CONCURRENTLY, DETACH PARTITION takes ACCESS EXCLUSIVE on large_event itself.)

First, the notes of the history's events, in committed batches (DeleteInBatches, through the join to their
event): the DROP takes the events without a look at their notes, and since 0006 no constraint checks that a
note's event exists, so they would be left pointing at nothing. (The lab seeds no note: nothing to delete.)

Re-runnable (DetachPartitionConcurrently): an interrupted run leaves the partition "detach pending"; the re-run
finishes it with DETACH ... FINALIZE, then drops it. The DROP runs under a 500 ms lock_timeout, retried for up to
3 minutes (the operation's own: WithLockTimeout refuses what cannot run in a transaction, as DETACH ... CONCURRENTLY).

Rows are left: events written since 0006 are in large_event_current (2025-01-01 on). In production that is every
event since the switch: the history partition is dropped once all of it is past the retention period, weeks or
months later. In the lab, `manage.py append_rows` (a showdown actor of this step) stands for that time: it inserts
a day of events from 2025-01-01 on, which large_event_current takes; without them the log would be empty after this
step, and every /update_order/ a 404.

Reversing is a no-op: the history partition's rows are gone (reversing 0006 then leaves a plain, empty table).
"""

import datetime

from django.db import migrations
from django.db.models import Q

from migrationlab.operations import DeleteInBatches, DetachPartitionConcurrently

HISTORY_ENDS = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)  # the partition bound of 0006


class Migration(migrations.Migration):
    atomic = False  # DETACH ... CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("demoapp", "0006_partition_by_attaching_history"),
    ]

    operations = [
        DeleteInBatches("eventnote", where=Q(event__created_at__lt=HISTORY_ENDS), batch_size=1_000,
                        target_batch_seconds=0.05, pause_seconds=0.01, synchronous_commit=False, vacuum=True),
        *(DetachPartitionConcurrently(model_name, partition=f"{table}_history", lock_timeout="500ms",
                                      retry_for_seconds=180.0)
          for model_name, table in (("largeevent", "large_event"), ("smallevent", "small_event"))),
    ]
