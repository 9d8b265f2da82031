"""Step 4: VALIDATE the CHECK: a full scan, but under SHARE UPDATE EXCLUSIVE (reads and writes go on)."""

from django.contrib.postgres.operations import ValidateConstraint
from django.db import migrations

from migrationlab.operations import SkipIfDone, WithLockTimeout


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("demoapp", "0005_add_status_check_not_valid"),
    ]

    operations = [
        WithLockTimeout(SkipIfDone(ValidateConstraint(model_name=model_name, name=f"{table}_status_not_null")))
        for model_name, table in (("largeuser", "large_user"), ("smalluser", "small_user"))
    ]
