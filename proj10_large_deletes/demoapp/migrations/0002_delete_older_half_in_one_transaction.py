"""Step 1 (risky): retention, the way it is usually written: Model.objects.filter(old).delete() in a data migration.

The migration is atomic (Django's default for PostgreSQL): everything it deletes, and the migration's own
bookkeeping, is one transaction. The DELETE locks every row it deletes until that transaction commits, so a write
to any of those rows (here: marking an old event processed) waits for the whole migration. Reads never wait: until
the commit they still see the rows. Afterwards every deleted row is a dead row version that the table keeps until
VACUUM, and the table's files do not shrink.

What Django sends: the notes of the old events first (nothing points at EventNote: one DELETE), then the events.
EventNote.event is on_delete=DO_NOTHING and no pre_delete/post_delete receiver listens to LargeEvent (a migration's
historical model has none anyway), so QuerySet.delete() takes its fast path: one `DELETE FROM large_event WHERE
created_at < ...`, no row loaded into Python. (With on_delete=CASCADE, or a receiver, the same line would first load
every event to delete into memory, Django's collector, then delete them 100 primary keys per statement:
benchmarks/proj10_steps.py measures that way's time and memory too.)

And the commit is long. The notes' foreign key is Django's default constraint, DEFERRABLE INITIALLY DEFERRED: when
the transaction commits, PostgreSQL checks every deleted event for a note still pointing at it, one lookup per row,
even though the lab has no note at all; meanwhile every deleted row stays locked. At 10,000,000 rows the DELETE
took 8.1 s and the commit 53.0 s on a loaded 2-core machine (proj10's README, Measured).

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
        if cutoff is None:
            continue
        if model_name == "LargeEvent":  # the database refuses (at commit) to delete an event a note points at
            apps.get_model("demoapp", "EventNote").objects.filter(event__created_at__lt=cutoff).delete()
        model.objects.filter(created_at__lt=cutoff).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("demoapp", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(delete_older_half, migrations.RunPython.noop),
    ]
