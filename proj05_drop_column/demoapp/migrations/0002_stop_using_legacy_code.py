"""Release 2 stops using legacy_code: it leaves Django's state, and stays in the database with a default.

makemigrations writes RemoveField here, which would drop the column while release 1 still selects it. Instead
(SeparateDatabaseAndState):
  - state: RemoveField. Release 2's models no longer have the field: its SELECTs leave the column out, and its
    INSERTs do not name it;
  - database: the column stays (release 1 reads and writes it until release 2 replaces it) and gets DEFAULT '',
    so that release 2's INSERTs, which leave it out, satisfy its NOT NULL. SET DEFAULT only changes the catalog,
    under ACCESS EXCLUSIVE: it runs under WithLockTimeout, one short transaction per table, the large table first.
Release 3 drops the column (0003), once no running release knows it.
"""

from django.db import migrations, models

from migrationlab.operations import WithLockTimeout


def stop_using_legacy_code(model_name):
    return migrations.SeparateDatabaseAndState(
        database_operations=[
            migrations.AlterField(
                model_name=model_name,
                name="legacy_code",
                field=models.CharField(max_length=20, db_default=""),
            ),
        ],
        state_operations=[
            migrations.RemoveField(model_name=model_name, name="legacy_code"),
        ],
    )


class Migration(migrations.Migration):
    atomic = False  # each lock-timeout attempt is its own short transaction

    dependencies = [
        ("demoapp", "0001_initial"),
    ]

    operations = [
        WithLockTimeout(stop_using_legacy_code(model_name))
        for model_name in ("largeproduct", "smallproduct")
    ]
