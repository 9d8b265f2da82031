"""Contract (ref -> reference, the last step; release 3): drop the trigger and ref, now that no release reads ref.

Release 2, serving while this runs, never knew ref: it reads and writes reference. First the trigger (it names
ref), then the column: DROP COLUMN only changes the catalog, but needs ACCESS EXCLUSIVE, so both run under
WithLockTimeout, one short transaction per table, the large table first.

Reversed, ref comes back (nullable) with its trigger, and is filled from reference: one UPDATE per table, a
rollback path rather than the lesson.
"""

from django.db import migrations

from migrationlab.operations import SkipIfDone, WithLockTimeout
from migrationlab.sync_both_ways import RemoveSyncColumnBothWays


class Migration(migrations.Migration):
    atomic = False  # each lock-timeout attempt is its own short transaction

    dependencies = [
        ("demoapp", "0004_backfill_reference_batched"),
    ]

    operations = [
        # Nothing forwards; reversed (it runs last then), it refills the re-added ref.
        migrations.RunSQL(
            sql=migrations.RunSQL.noop,
            reverse_sql=[f'UPDATE "{table}" SET ref = reference' for table in ("large_order", "small_order")],
        ),
        *(
            WithLockTimeout(
                RemoveSyncColumnBothWays(model_name, source="ref", target="reference"),
                SkipIfDone(migrations.RemoveField(model_name=model_name, name="ref")),
            )
            for model_name in ("largeorder", "smallorder")
        ),
    ]
