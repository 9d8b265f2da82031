"""Step 3 (safe): towards retention by partition. First, a CHECK that every existing event is older than the boundary.

Retention by partition means: the log becomes a table partitioned by created_at, and the old events go with a
whole partition, in milliseconds, instead of row by row. The existing table becomes the first partition,
"history" (0006): ATTACH PARTITION would scan all of it under ACCESS EXCLUSIVE to prove that its rows belong
before the boundary, unless a validated CHECK already proves it. So: the CHECK now, NOT VALID (enforced for new
rows at once, no scan), validated in 0005 (a scan that blocks no one).

The boundary is a date after the newest event: in production the first day of a coming month, so that events
written until then still pass the CHECK. (The lab's events are seeded in 2024, and its API writes no new ones.)

The CHECK is the database's business only (SeparateDatabaseAndState): once the table is the history partition, the
model's table is the partitioned one, which has no such constraint.
"""

import datetime

from django.contrib.postgres.operations import AddConstraintNotValid
from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout

HISTORY_ENDS = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("demoapp", "0003_delete_next_quarter_in_batches"),
    ]

    operations = [
        WithLockTimeout(SkipIfDone(
            migrations.SeparateDatabaseAndState(database_operations=[
                AddConstraintNotValid(
                    model_name=model_name,
                    constraint=models.CheckConstraint(condition=models.Q(created_at__lt=HISTORY_ENDS),
                                                      name=f"{table}_history_ends"),
                ),
            ]),
        ))
        for model_name, table in (("largeevent", "large_event"), ("smallevent", "small_event"))
    ]
