"""Step 4: CHECK (created_at_new IS NOT NULL) NOT VALID: enforced for new writes at once, old rows not scanned."""

from django.contrib.postgres.operations import AddConstraintNotValid
from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("demoapp", "0004_backfill_created_at_new_batched"),
    ]

    operations = [
        WithLockTimeout(SkipIfDone(
            AddConstraintNotValid(
                model_name=model_name,
                constraint=models.CheckConstraint(
                    condition=models.Q(created_at_new__isnull=False), name=f"{table}_created_at_new_not_null"
                ),
            ),
        ))
        for model_name, table in (("largerecord", "large_record"), ("smallrecord", "small_record"))
    ]
