"""Step 1 (risky): retention, the way it is usually written: Model.objects.filter(old).delete() in a data migration.

The migration is atomic (Django's default for PostgreSQL): the DELETE and the migration's own bookkeeping are one
transaction. The DELETE locks every row it deletes until that transaction commits, so a write to any of those rows
(here: marking an old event processed) waits for the whole migration. Reads never wait: until the commit they
still see the rows. Afterwards every deleted row is a dead row version that the table keeps until VACUUM, and
the table's files do not shrink.

What Django sends depends on the model. Nothing cascades from LargeEvent and no pre_delete/post_delete receiver
listens to it (and a migration's historical model has none anyway), so QuerySet.delete() takes its fast path: one
`DELETE FROM large_event WHERE created_at < ...`, no row loaded into Python. Give the model a receiver or a
ForeignKey pointing at it with on_delete=CASCADE, and the same line first loads every row to delete into memory
(the collector), then deletes them 100 primary keys per statement; benchmarks/proj10_steps.py measures both paths'
time and peak memory.

Reversing is a no-op: deleted rows are gone.
"""

from django.db import migrations
from django.db.models import Max


def oldest_kept(model):
    """Retention keeps the newer half of the log: the created_at of the first event in it.

    In production the cutoff is a date, e.g. timezone.now() - timedelta(days=90). The lab computes it from the
    data instead, so that the older half goes whatever the size the table was seeded with."""
    newest = model.objects.aggregate(newest=Max("id"))["newest"] or 0
    return model.objects.filter(id__gt=(newest + 1) // 2).order_by("id").values_list("created_at", flat=True).first()


def delete_older_half(apps, schema_editor):
    for model_name in ("LargeEvent", "SmallEvent"):
        model = apps.get_model("demoapp", model_name)
        cutoff = oldest_kept(model)
        if cutoff is not None:
            model.objects.filter(created_at__lt=cutoff).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("demoapp", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(delete_older_half, migrations.RunPython.noop),
    ]
