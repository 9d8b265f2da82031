"""Step 1 (safe): drop the index nothing uses, concurrently.

Before writing this migration, prove the index is unused: after normal traffic, pg_stat_user_indexes.idx_scan of
(kind, created_at) is 0 while (device_id) counts every lookup, and EXPLAIN of the endpoint's query names the
device_id index (`manage.py index_usage --explain 42`, see README.md).

DROP INDEX CONCURRENTLY takes SHARE UPDATE EXCLUSIVE on the table, which no read or write conflicts with: it
marks the index invalid, waits for every transaction that may still use it (a long report included) and drops
it. Nothing queues behind it while it waits. It cannot run in a transaction, hence atomic = False (and no
lock_timeout: WithLockTimeout cannot wrap it). SkipIfDone: a re-run finds the index gone and skips it.

Reversing builds the index again, concurrently (CREATE INDEX CONCURRENTLY): nothing waits for that either.
"""

from django.contrib.postgres.operations import RemoveIndexConcurrently
from django.db import migrations

from migrationlab.operations import SkipIfDone


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("demoapp", "0001_initial"),
    ]

    operations = [
        SkipIfDone(RemoveIndexConcurrently(model_name=model_name, name=f"{table}_kind_created_idx"))
        for model_name, table in (("largeevent", "large_event"), ("smallevent", "small_event"))
    ]
