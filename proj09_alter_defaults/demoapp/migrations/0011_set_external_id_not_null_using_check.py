"""Safe (b), step 5: SET NOT NULL, then drop the helper CHECK.

With a validated CHECK (external_id IS NOT NULL) in place, PostgreSQL (>= 12) proves the column has no NULLs
without scanning it, so ACCESS EXCLUSIVE lasts a moment. Django's own AlterField to NOT NULL would scan the table
under that lock, so the database change is written out and the model state changed separately. The end state is
the one 0005 reached for public_id in one rewriting statement: uuid NOT NULL DEFAULT gen_random_uuid(), a value of
its own in every row.
"""

from django.contrib.postgres.functions import RandomUUID
from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout


def set_not_null(model_name, table):
    return migrations.SeparateDatabaseAndState(
        database_operations=[
            migrations.RunSQL(
                sql=f'ALTER TABLE "{table}" ALTER COLUMN "external_id" SET NOT NULL',
                reverse_sql=f'ALTER TABLE "{table}" ALTER COLUMN "external_id" DROP NOT NULL',
            ),
        ],
        state_operations=[
            migrations.AlterField(
                model_name=model_name,
                name="external_id",
                field=models.UUIDField(db_default=RandomUUID()),
            ),
        ],
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("demoapp", "0010_validate_external_id_check"),
    ]

    operations = [
        WithLockTimeout(
            set_not_null(model_name, table),
            # Reversed, this re-adds the CHECK as a plain (validating) constraint: fine, every row passes.
            SkipIfDone(migrations.RemoveConstraint(model_name=model_name, name=f"{table}_external_id_not_null")),
        )
        for model_name, table in (("largeorder", "large_order"), ("smallorder", "small_order"))
    ]
