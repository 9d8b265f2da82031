"""Step 6: SET NOT NULL on created_at_new, then drop the helper CHECK.

With the validated CHECK (created_at_new IS NOT NULL) in place, PostgreSQL proves the column has no NULLs without
scanning it: ACCESS EXCLUSIVE for a moment. Django's own AlterField to NOT NULL would scan under that lock, so the
database change is written out and the model state changed separately.
"""

from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout


def set_not_null(model_name, table):
    return migrations.SeparateDatabaseAndState(
        database_operations=[
            migrations.RunSQL(
                sql=f'ALTER TABLE "{table}" ALTER COLUMN "created_at_new" SET NOT NULL',
                reverse_sql=f'ALTER TABLE "{table}" ALTER COLUMN "created_at_new" DROP NOT NULL',
            ),
        ],
        state_operations=[
            migrations.AlterField(model_name=model_name, name="created_at_new", field=models.DateTimeField()),
        ],
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("demoapp", "0006_validate_created_at_new_check"),
    ]

    operations = [
        WithLockTimeout(
            set_not_null(model_name, table),
            # Reversed, this re-adds the CHECK as a plain (validating) constraint: fine, every row passes.
            SkipIfDone(migrations.RemoveConstraint(model_name=model_name, name=f"{table}_created_at_new_not_null")),
        )
        for model_name, table in (("largerecord", "large_record"), ("smallrecord", "small_record"))
    ]
