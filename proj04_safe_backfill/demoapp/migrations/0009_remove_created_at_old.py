"""Step 8 (contract): drop the old varchar column, once no running release reads it.

DROP COLUMN changes only the catalog (the space is reclaimed as rows are rewritten), but needs ACCESS EXCLUSIVE:
under a lock timeout with retries.

Reversing adds the column back (nullable) and fills it from created_at, as text, in one UPDATE per table: the
lab's way back to 0001, a full-table write, not something to run under production traffic.
"""

from django.db import migrations

from migrationlab.operations import SkipIfDone, WithLockTimeout


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("demoapp", "0008_swap_created_at_columns"),
    ]

    operations = [
        operation
        for table, model_name in (("large_record", "largerecord"), ("small_record", "smallrecord"))
        for operation in (
            # Forwards nothing; backwards (after the column is back) the refill.
            migrations.RunSQL(
                sql=migrations.RunSQL.noop,
                reverse_sql=f'UPDATE "{table}" SET "created_at_old" = "created_at"::text WHERE "created_at_old" IS NULL',
            ),
            WithLockTimeout(SkipIfDone(migrations.RemoveField(model_name=model_name, name="created_at_old"))),
        )
    ]
