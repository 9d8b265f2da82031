"""Step 1 (expand): the new column, timestamptz and nullable, beside the old one.

ADD COLUMN without a default changes only the catalog: no row is rewritten. It needs ACCESS EXCLUSIVE for that
moment, under a lock timeout with retries so it never queues traffic behind itself for long.
"""

from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout


class Migration(migrations.Migration):
    atomic = False  # each lock-timeout attempt is its own short transaction

    dependencies = [
        ("demoapp", "0001_initial"),
    ]

    operations = [
        WithLockTimeout(
            SkipIfDone(migrations.AddField(model_name=model_name, name="created_at_new",
                                           field=models.DateTimeField(null=True))),
        )
        for model_name in ("largerecord", "smallrecord")
    ]
