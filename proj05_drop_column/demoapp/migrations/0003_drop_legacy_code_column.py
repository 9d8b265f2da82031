"""Release 3 drops legacy_code from the database: no running release knows it any more (release 2, serving
while this runs, lost it in 0002).

The field already left Django's state in 0002, so there is no RemoveField to run: the column goes with RunSQL.
DROP COLUMN only changes the catalog, but needs ACCESS EXCLUSIVE: under WithLockTimeout, one short transaction
per table, the large table first. IF EXISTS: a run killed between the two tables can run again.

Reversed, the column comes back as 0002 left it (NOT NULL DEFAULT ''), with '' in every row: its values are gone.
"""

from django.db import migrations

from migrationlab.operations import WithLockTimeout


class Migration(migrations.Migration):
    atomic = False  # each lock-timeout attempt is its own short transaction

    dependencies = [
        ("demoapp", "0002_stop_using_legacy_code"),
    ]

    operations = [
        WithLockTimeout(
            migrations.RunSQL(
                sql=f'ALTER TABLE "{table}" DROP COLUMN IF EXISTS "legacy_code"',
                reverse_sql=f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS "legacy_code" varchar(20) NOT NULL DEFAULT \'\'',
            ),
        )
        for table in ("large_product", "small_product")
    ]
