"""Expand (ref -> reference, step 1): the new column, and a trigger that keeps ref and reference equal.

Release 1 writes ref; release 2 will write reference. Until ref is dropped (0005), both may be serving at once (a
deploy is never atomic, and a rollback brings release 1 back), so the trigger copies whichever column a statement
wrote into the other one. Release 1 never learns that reference exists.

ADD COLUMN without a default only changes the catalog, under ACCESS EXCLUSIVE; CREATE TRIGGER takes SHARE ROW
EXCLUSIVE. Both run under WithLockTimeout: one short transaction per table, the large table first.
"""

from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout
from migrationlab.sync_both_ways import SyncColumnBothWays


class Migration(migrations.Migration):
    atomic = False  # each lock-timeout attempt is its own short transaction

    dependencies = [
        ("demoapp", "0002_rename_cust_name_in_django_only"),
    ]

    operations = [
        WithLockTimeout(
            SkipIfDone(
                migrations.AddField(
                    model_name=model_name,
                    name="reference",
                    field=models.CharField(max_length=20, null=True),
                ),
            ),
            SyncColumnBothWays(model_name, source="ref", target="reference"),
        )
        for model_name in ("largeorder", "smallorder")
    ]
