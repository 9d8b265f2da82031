"""Step 1: rows written from now on get a status, so the backfill has a finite amount of work.

ALTER COLUMN ... SET DEFAULT changes only the catalog, but it needs ACCESS EXCLUSIVE: under a lock timeout with
retries it can never queue traffic behind itself for long.
"""

from django.db import migrations, models

from migrationlab.operations import WithLockTimeout


class Migration(migrations.Migration):
    atomic = False  # each lock-timeout attempt is its own short transaction

    dependencies = [
        ("demoapp", "0002_add_status_nullable"),
    ]

    operations = [
        WithLockTimeout(
            migrations.AlterField(
                model_name=model_name,
                name="status",
                field=models.CharField(max_length=20, null=True, db_default="active"),
            ),
        )
        for model_name in ("largeuser", "smalluser")
    ]
