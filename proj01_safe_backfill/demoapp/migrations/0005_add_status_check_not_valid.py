"""Step 3: CHECK (status IS NOT NULL) NOT VALID: enforced for new writes at once, old rows not scanned."""

from django.contrib.postgres.operations import AddConstraintNotValid
from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("demoapp", "0004_backfill_status_batched"),
    ]

    operations = [
        WithLockTimeout(SkipIfDone(
            AddConstraintNotValid(
                model_name=model_name,
                constraint=models.CheckConstraint(condition=models.Q(status__isnull=False), name=f"{table}_status_not_null"),
            ),
        ))
        for model_name, table in (("largeuser", "large_user"), ("smalluser", "small_user"))
    ]
