"""Step 4 (safe): VALIDATE the CHECK: a full scan, but under SHARE UPDATE EXCLUSIVE (reads and writes go on)."""

from django.contrib.postgres.operations import ValidateConstraint
from django.db import migrations

from migrationlab.operations import SkipIfDone, WithLockTimeout


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("demoapp", "0004_add_history_check_not_valid"),
    ]

    operations = [
        WithLockTimeout(SkipIfDone(ValidateConstraint(model_name=model_name, name=f"{table}_history_ends")))
        for model_name, table in (("largeevent", "large_event"), ("smallevent", "small_event"))
    ]
