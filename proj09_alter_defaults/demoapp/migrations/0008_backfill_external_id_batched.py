"""Safe (b), step 2: give every existing row its own external_id, in committed batches of about 50 ms each.

gen_random_uuid() is evaluated per row of each UPDATE, so every row gets a value of its own (compare 0006, where
Django computed one uuid in Python and PostgreSQL copied it into every row). A writer that hits a row of the
batch under way waits for that batch, never for the table. The batch width adapts after every batch so that a
batch takes about 50 ms (from 1,000 ids, at most doubling from one batch to the next), on a laptop as on a big
server: a write waits on a row lock for at most about one batch. (The I/O the batches cause is another matter:
this project's README gives the slowest write measured at 10M rows.)

Safe to interrupt and re-run: it resumes at the first row still NULL, and never overwrites a value.
"""

from django.contrib.postgres.functions import RandomUUID
from django.db import migrations
from django.db.models import Q

from migrationlab.operations import BackfillInBatches


class Migration(migrations.Migration):
    atomic = False  # commit per batch: no transaction ever holds more than one batch of row locks

    dependencies = [
        ("demoapp", "0007_add_external_id_for_new_rows"),
    ]

    operations = [
        BackfillInBatches(
            model_name,
            set={"external_id": RandomUUID()},
            where=Q(external_id__isnull=True),
            batch_size=1_000,
            target_batch_seconds=0.05,
            synchronous_commit=False,  # a batch's commit does not wait for its WAL to reach the disk (the default)
            vacuum=True,  # then VACUUM (ANALYZE) the table: its dead row versions cleared now (the default)
        )
        for model_name in ("largeorder", "smallorder")
    ]
