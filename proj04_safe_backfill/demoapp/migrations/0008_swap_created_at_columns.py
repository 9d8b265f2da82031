"""Step 7: the switch. In one short transaction per table, under a lock timeout with retries:

    DROP TRIGGER (and its function)                        nothing needs syncing any more
    RENAME COLUMN created_at     TO created_at_old         the varchar, kept for now
    RENAME COLUMN created_at_new TO created_at             the timestamptz takes the name the code uses
    ALTER COLUMN created_at_old DROP NOT NULL              rows inserted from now on leave it empty

Catalog changes only (ACCESS EXCLUSIVE for a moment). The code names only `created_at`, before and after: it reads
the varchar until this commits and the timestamptz from then on (README: which release sees what). The trigger goes
in the same transaction: its function names the columns by their old names, so after the renames it would fail.
"""

from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout
from migrationlab.sync import RemoveSyncTrigger


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("demoapp", "0007_set_created_at_new_not_null_using_check"),
    ]

    operations = [
        WithLockTimeout(
            RemoveSyncTrigger(
                model_name,
                source="created_at",
                target="created_at_new",
                expression='NEW."created_at"::timestamp with time zone',
            ),
            SkipIfDone(
                migrations.RenameField(model_name=model_name, old_name="created_at", new_name="created_at_old"),
                migrations.RenameField(model_name=model_name, old_name="created_at_new", new_name="created_at"),
            ),
            migrations.AlterField(
                model_name=model_name, name="created_at_old", field=models.CharField(max_length=32, null=True)
            ),
        )
        for model_name in ("largerecord", "smallrecord")
    ]
