"""Step 1 (risky): fill email_domain on every row with one ORM .update(), the way data migrations are usually written.

The migration is atomic (Django's default for PostgreSQL), so the UPDATE and the migration's own bookkeeping are
one transaction. The UPDATE locks every row it writes (FOR NO KEY UPDATE) until that transaction commits: a write
to any row of the table waits for the whole migration. Reads never wait: they see the rows' previous versions.
Every row gets a new version, all of it written to the WAL, and the old versions stay in the table as dead rows
until a VACUUM clears them.

A loop of .save() calls instead of the one .update() is worse still: one UPDATE statement per row, the same locks
held just as long (benchmarks/proj06_steps.py measures it).

Reversing is a no-op: reversing 0002 drops the column anyway.
"""

from django.db import migrations
from django.db.models import Value
from django.db.models.functions import StrIndex, Substr


def fill_email_domain(apps, schema_editor):
    for model_name in ("LargeUser", "SmallUser"):
        model = apps.get_model("demoapp", model_name)
        # 'user42@example.com' -> 'example.com': everything after the @.
        model.objects.update(email_domain=Substr("email", StrIndex("email", Value("@")) + 1))


class Migration(migrations.Migration):

    dependencies = [
        ("demoapp", "0002_add_email_domain_and_local_part_nullable"),
    ]

    operations = [
        migrations.RunPython(fill_email_domain, migrations.RunPython.noop),
    ]
