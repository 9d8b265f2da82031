"""Step 1: the btree index on email, built with CREATE INDEX CONCURRENTLY.

The build takes SHARE UPDATE EXCLUSIVE on the table, which neither reads nor writes conflict with: traffic goes
on while it scans the table (twice) and waits for older transactions to end.

Only the btree: the endpoint looks emails up by exact value (WHERE email = %s), which a plain btree serves.
Django's db_index=True on a CharField would also build a `_like` index (varchar_pattern_ops), which serves
only LIKE 'prefix%' lookups under a non-C collation: nothing here uses it, and every write would maintain it.

Re-runnable (SkipIfDone): a valid index is left as it is; an INVALID one left by an interrupted build is dropped
concurrently and built again, the repair the migration states (drop_invalid_index=True; migrationlab/resumable.py).
No lock_timeout: WithLockTimeout cannot wrap a CONCURRENTLY build (it cannot run in a transaction), and nothing
queues behind SHARE UPDATE EXCLUSIVE anyway. Reversing drops the index concurrently.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

from migrationlab.operations import SkipIfDone


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("demoapp", "0001_initial"),
    ]

    operations = [
        SkipIfDone(
            AddIndexConcurrently(model_name=model_name, index=models.Index(fields=["email"], name=f"{table}_email_idx")),
            drop_invalid_index=True,
        )
        for model_name, table in (("largeuser", "large_user"), ("smalluser", "small_user"))
    ]
