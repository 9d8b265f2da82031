"""The trap: a NOT NULL uuid column whose default is a Python callable, `default=uuid.uuid4`.

The AddField is what makemigrations writes; it runs under WithLockTimeout, so the locks are handled as well as in
any safe step. That is not where it goes wrong. A Python default cannot be written into the table's definition,
so Django calls uuid.uuid4() once per table, here in the migration, and sends the result as a constant:

    ALTER TABLE "large_order" ADD COLUMN "tracking_id" uuid DEFAULT '4f0c...'::uuid NOT NULL;
    ALTER TABLE "large_order" ALTER COLUMN "tracking_id" DROP DEFAULT;

A constant default is catalog only (PostgreSQL 11+): instant, no rewrite, and every existing row now has the
same tracking_id (count(DISTINCT tracking_id) = 1, tests/test_proj09.py). Rows created later through Django get
a uuid4() of their own, so the duplicates hide among the old rows. 0007-0011 show the way to a value of its own
in every row.
"""

import uuid

from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout


class Migration(migrations.Migration):
    atomic = False  # each lock-timeout attempt is its own short transaction

    dependencies = [
        ("demoapp", "0005_add_public_id_random_db_default"),
    ]

    operations = [
        WithLockTimeout(
            SkipIfDone(
                migrations.AddField(
                    model_name=model_name,
                    name="tracking_id",
                    field=models.UUIDField(default=uuid.uuid4),
                ),
            ),
        )
        for model_name in ("largeorder", "smallorder")
    ]
