"""Step 5: SET NOT NULL, then drop the helper CHECK.

With a validated CHECK (status IS NOT NULL) in place, PostgreSQL (>= 12) proves the column has no NULLs without
scanning it: the ACCESS EXCLUSIVE lock lasts a moment. Django's own AlterField would emit an UPDATE of every NULL
row first (a full scan under that lock), so the database change is written out and the model state changed
separately.
"""

from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout


def set_not_null(model_name, table):
    return migrations.SeparateDatabaseAndState(
        database_operations=[
            migrations.RunSQL(
                sql=f'ALTER TABLE "{table}" ALTER COLUMN "status" SET NOT NULL',
                reverse_sql=f'ALTER TABLE "{table}" ALTER COLUMN "status" DROP NOT NULL',
            ),
        ],
        state_operations=[
            migrations.AlterField(
                model_name=model_name,
                name="status",
                field=models.CharField(max_length=20, db_default="active"),
            ),
        ],
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("demoapp", "0006_validate_status_check"),
    ]

    operations = [
        WithLockTimeout(
            set_not_null(model_name, table),
            # Reversed, this re-adds the CHECK as a plain (validating) constraint: fine, every row passes.
            SkipIfDone(migrations.RemoveConstraint(model_name=model_name, name=f"{table}_status_not_null")),
        )
        for model_name, table in (("largeuser", "large_user"), ("smalluser", "small_user"))
    ]
