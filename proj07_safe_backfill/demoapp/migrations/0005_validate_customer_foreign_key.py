"""Step 4: VALIDATE the foreign key: every existing order is checked against customers, and nobody waits.

VALIDATE CONSTRAINT takes SHARE UPDATE EXCLUSIVE on orders and ROW SHARE on customers while it scans: neither
lock conflicts with reads or writes (the talk said it blocks writes; tests/test_lessons.py has PostgreSQL show it
does not). An order pointing at no customer makes it fail, and the constraint stays NOT VALID until that row is
fixed.
"""

from django.contrib.postgres.operations import ValidateConstraint
from django.db import migrations

from migrationlab.operations import SkipIfDone, WithLockTimeout


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("demoapp", "0004_add_customer_foreign_key_not_valid"),
    ]

    operations = [
        WithLockTimeout(
            SkipIfDone(ValidateConstraint(model_name=model_name, name=f"{table}_customer_id_{suffix}_fk_customer_id")),
        )
        for model_name, table, suffix in (("largeorder", "large_order", "96b7b144"),
                                          ("smallorder", "small_order", "8c7854fc"))
    ]
