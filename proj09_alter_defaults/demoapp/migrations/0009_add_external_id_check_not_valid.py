"""Safe (b), step 3: CHECK (external_id IS NOT NULL) NOT VALID: enforced for new writes at once, old rows not
scanned."""

from django.contrib.postgres.operations import AddConstraintNotValid
from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("demoapp", "0008_backfill_external_id_batched"),
    ]

    operations = [
        WithLockTimeout(SkipIfDone(
            AddConstraintNotValid(
                model_name=model_name,
                constraint=models.CheckConstraint(condition=models.Q(external_id__isnull=False),
                                                  name=f"{table}_external_id_not_null"),
            ),
        ))
        for model_name, table in (("largeorder", "large_order"), ("smallorder", "small_order"))
    ]
