"""Step 3: the new column's index, built with CREATE INDEX CONCURRENTLY (as in 0002, re-runnable the same way)."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

from migrationlab.operations import SkipIfDone


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("demoapp", "0003_add_handle_nullable"),
    ]

    operations = [
        SkipIfDone(
            AddIndexConcurrently(model_name=model_name, index=models.Index(fields=["handle"], name=f"{table}_handle_idx")),
            drop_invalid_index=True,
        )
        for model_name, table in (("largeuser", "large_user"), ("smalluser", "small_user"))
    ]
