"""Step 2: a new column, without an index yet.

ADD COLUMN of a nullable column without a default changes only the catalog, but it takes ACCESS EXCLUSIVE: under
a lock timeout with retries it never keeps traffic queued behind it for long. Its index comes in a migration of
its own (0004): in this one, the index build would run under the same ACCESS EXCLUSIVE lock.
"""

from django.db import migrations, models

from migrationlab.operations import SkipIfDone, WithLockTimeout


class Migration(migrations.Migration):
    atomic = False  # each lock-timeout attempt is its own short transaction

    dependencies = [
        ("demoapp", "0002_build_email_index_concurrently"),
    ]

    operations = [
        WithLockTimeout(
            SkipIfDone(migrations.AddField(model_name=model_name, name="handle",
                                           field=models.CharField(max_length=30, null=True))),
        )
        for model_name in ("largeuser", "smalluser")
    ]
