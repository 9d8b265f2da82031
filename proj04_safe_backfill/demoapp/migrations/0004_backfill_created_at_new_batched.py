"""Step 3: copy the existing rows, created_at_new = created_at::timestamptz, one committed batch of 10,000 ids at a time.

Only rows still NULL: those the trigger already wrote are right and are left alone, and an interrupted run
resumes at the first row still NULL. A writer waits at most for the batch under way.
"""

from django.db import migrations, models
from django.db.models import F, Q
from django.db.models.functions import Cast

from migrationlab.operations import BackfillInBatches


class Migration(migrations.Migration):
    atomic = False  # commit per batch

    dependencies = [
        ("demoapp", "0003_sync_created_at_new_with_trigger"),
    ]

    operations = [
        BackfillInBatches(
            model_name,
            set={"created_at_new": Cast(F("created_at"), output_field=models.DateTimeField())},
            where=Q(created_at_new__isnull=True),
            batch_size=10_000,
            synchronous_commit=False,  # a batch's commit does not wait for its WAL to reach the disk (the default)
            vacuum=True,  # then VACUUM (ANALYZE) the table: its dead row versions cleared now (the default)
        )
        for model_name in ("largerecord", "smallrecord")
    ]
