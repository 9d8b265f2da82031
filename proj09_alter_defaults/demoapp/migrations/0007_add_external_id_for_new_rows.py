"""Safe (b), step 1: the new column, nullable, with the volatile default for rows inserted from now on.

Two catalog-only statements per table, in one short transaction under lock_timeout:

    ALTER TABLE "large_order" ADD COLUMN "external_id" uuid NULL;
    ALTER TABLE "large_order" ALTER COLUMN "external_id" SET DEFAULT (gen_random_uuid());

The column is added without a default, so no existing row needs a value; SET DEFAULT on an existing column
never touches existing rows, volatile or not. (ADD COLUMN ... DEFAULT gen_random_uuid() in one statement, as
0005 does, rewrites the table even when the column is nullable: every existing row must get its own value.)
Existing rows stay NULL until 0008 fills them.
"""

from django.contrib.postgres.functions import RandomUUID
from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout


class Migration(migrations.Migration):
    atomic = False  # each lock-timeout attempt is its own short transaction

    dependencies = [
        ("demoapp", "0006_add_tracking_id_python_default"),
    ]

    operations = [
        WithLockTimeout(
            SkipIfDone(
                migrations.AddField(model_name=model_name, name="external_id", field=models.UUIDField(null=True)),
            ),
            migrations.AlterField(
                model_name=model_name,
                name="external_id",
                field=models.UUIDField(null=True, db_default=RandomUUID()),
            ),
        )
        for model_name in ("largeorder", "smallorder")
    ]
