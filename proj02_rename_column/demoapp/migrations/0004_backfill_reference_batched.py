"""Expand (ref -> reference, step 2): copy ref into reference on the existing rows, one committed batch of
10,000 ids at a time. Rows written meanwhile are kept equal by the trigger of 0003.

Safe to interrupt and re-run: it resumes at the first row whose reference is still empty.
"""

from django.db import migrations
from django.db.models import F, Q

from migrationlab.operations import BackfillInBatches


class Migration(migrations.Migration):
    atomic = False  # commit per batch: no transaction ever holds more than one batch of row locks

    dependencies = [
        ("demoapp", "0003_add_reference_synced_with_ref"),
    ]

    operations = [
        BackfillInBatches(
            model_name,
            set={"reference": F("ref")},
            where=Q(reference__isnull=True, ref__isnull=False),
            batch_size=10_000,
            synchronous_commit=False,  # a batch's commit does not wait for its WAL to reach the disk (the default)
            vacuum=True,  # then VACUUM (ANALYZE) the table: its dead row versions cleared now (the default)
        )
        for model_name in ("largeorder", "smallorder")
    ]
