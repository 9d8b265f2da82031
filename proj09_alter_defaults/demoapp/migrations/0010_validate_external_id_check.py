"""Safe (b), step 4: VALIDATE the CHECK: a full scan, but under SHARE UPDATE EXCLUSIVE (reads and writes go on)."""

from django.contrib.postgres.operations import ValidateConstraint
from django.db import migrations

from migrationlab.operations import SkipIfDone, WithLockTimeout


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("demoapp", "0009_add_external_id_check_not_valid"),
    ]

    operations = [
        WithLockTimeout(SkipIfDone(ValidateConstraint(model_name=model_name, name=f"{table}_external_id_not_null")))
        for model_name, table in (("largeorder", "large_order"), ("smallorder", "small_order"))
    ]
