"""Step 2: from now on, every row written gets created_at_new from created_at, by a trigger.

A BEFORE INSERT OR UPDATE OF created_at trigger converts the text the application writes, in the same statement:
no release has to change for it. It is in place before the copy starts, so a row written during the copy is right
whether the copy has passed it or not (migrationlab/sync.py; tests/test_proj04.py proves it).

CREATE TRIGGER takes SHARE ROW EXCLUSIVE: writes wait for it, reads go on; under a lock timeout with retries.
"""

from django.db import migrations

from migrationlab.operations import WithLockTimeout
from migrationlab.sync import SyncColumnWithTrigger


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("demoapp", "0002_add_created_at_new_nullable"),
    ]

    operations = [
        WithLockTimeout(
            SyncColumnWithTrigger(
                model_name,
                source="created_at",
                target="created_at_new",
                expression='NEW."created_at"::timestamp with time zone',  # what the risky ALTER's USING does
            ),
        )
        for model_name in ("largerecord", "smallrecord")
    ]
