"""Step 2 (safe): fill email_local_part on every row in committed batches that each take about 50 ms.

BackfillInBatches walks the primary key in ranges (keyset: never OFFSET, never a rescan of rows already done) and
commits each range on its own, so no transaction ever holds more than one batch of row locks: a write waits at
most for the batch that holds its row. The batch width adapts, the way pt-online-schema-change's --chunk-time
does: it starts at 1,000 ids and after every batch is resized so that batches take about 50 ms, on a laptop as on
a large server (between 1,000 and 100,000 ids, growing at most twofold from one batch to the next). A short pause
after each batch leaves room for everyone else. Progress and the batch times are printed; a VACUUM at the end
clears the dead row versions.

Safe to interrupt (Ctrl-C, a kill, a deploy) and re-run: each batch is one committed transaction, and a run
starts at the first row still NULL (`WHERE email_local_part IS NULL` is part of every batch), so no row is
missed and none is done twice.
"""

from django.db import migrations
from django.db.models import Q, Value
from django.db.models.functions import StrIndex, Substr

from migrationlab.operations import BackfillInBatches


class Migration(migrations.Migration):
    atomic = False  # commit per batch: no transaction ever holds more than one batch of row locks

    dependencies = [
        ("demoapp", "0003_fill_email_domain_in_one_transaction"),
    ]

    operations = [
        BackfillInBatches(
            model_name,
            # 'user42@example.com' -> 'user42': everything before the @.
            set={"email_local_part": Substr("email", 1, StrIndex("email", Value("@")) - 1)},
            where=Q(email_local_part__isnull=True),
            batch_size=1_000,  # the first batch; then resized after every batch
            target_batch_seconds=0.05,
            pause_seconds=0.005,  # a tenth of the target: the backfill leaves every eleventh slice of time to others
            synchronous_commit=False,  # a batch's commit does not wait for its WAL to reach the disk (the default)
            vacuum=True,  # then VACUUM (ANALYZE) the table: its dead row versions cleared now (the default)
        )
        for model_name in ("largeuser", "smalluser")
    ]
