"""A new NOT NULL column with a constant database default: instant, whatever the table's size.

The AddField is what makemigrations writes for `channel = CharField(max_length=10, db_default="web")`:

    ALTER TABLE "large_order" ADD COLUMN "channel" varchar(10) DEFAULT 'web' NOT NULL;

Since PostgreSQL 11 a constant default is stored once in the catalog (pg_attribute.attmissingval) and every
existing row reads it from there: no row is written, the table file stays the same (tests/test_proj09.py checks
its relfilenode). Only the lock queue can make it slow, so it runs under WithLockTimeout like 0003.
"""

from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout


class Migration(migrations.Migration):
    atomic = False  # each lock-timeout attempt is its own short transaction

    dependencies = [
        ("demoapp", "0003_change_currency_default_with_lock_timeout"),
    ]

    operations = [
        WithLockTimeout(
            SkipIfDone(
                migrations.AddField(
                    model_name=model_name,
                    name="channel",
                    field=models.CharField(db_default="web", max_length=10),
                ),
            ),
        )
        for model_name in ("largeorder", "smallorder")
    ]
