"""Step 3: the foreign key, NOT VALID: every write from now on is checked, the existing rows are not (yet).

ADD CONSTRAINT ... FOREIGN KEY takes SHARE ROW EXCLUSIVE on both tables, orders and customers: writes to either
wait for it, reads do not. Validated at once it would hold that lock while it checks every order; NOT VALID skips
the check, so it holds it for a moment, under lock_timeout with retries.

Django has no operation for a NOT VALID foreign key (AddConstraintNotValid takes CHECK constraints only): the SQL
is written out, with its reverse, and the model state becomes the ForeignKey that makemigrations writes
(SeparateDatabaseAndState). Name and DEFERRABLE INITIALLY DEFERRED are Django's own, as in the risky project.

Re-runnable: killed after the large table's constraint committed, a re-run finds it in pg_constraint and skips
it (migrationlab/resumable.py).
"""

import django.db.models.deletion
from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout


def add_foreign_key_not_valid(model_name, table, name):
    return migrations.SeparateDatabaseAndState(
        database_operations=[
            migrations.RunSQL(
                sql=f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" FOREIGN KEY ("customer_id") '
                    f'REFERENCES "customer" ("id") DEFERRABLE INITIALLY DEFERRED NOT VALID',
                reverse_sql=f'ALTER TABLE "{table}" DROP CONSTRAINT IF EXISTS "{name}"',
            ),
        ],
        state_operations=[
            migrations.AlterField(
                model_name=model_name,
                name="customer",
                field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, to="demoapp.customer"),
            ),
        ],
    )


class Migration(migrations.Migration):
    atomic = False  # each lock-timeout attempt is its own short transaction

    dependencies = [
        ("demoapp", "0003_build_customer_index_concurrently"),
    ]

    operations = [
        WithLockTimeout(
            SkipIfDone(add_foreign_key_not_valid(model_name, table, f"{table}_customer_id_{suffix}_fk_customer_id")),
        )
        for model_name, table, suffix in (("largeorder", "large_order", "96b7b144"),
                                          ("smallorder", "small_order", "8c7854fc"))
    ]
