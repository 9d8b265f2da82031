"""Step 2 (safe): the next retention run, in committed batches: the older half of what is left goes.

DeleteInBatches walks the primary key in ranges and sends one plain `DELETE ... WHERE id >= lo AND id < hi AND
created_at < cutoff` per range, each its own committed transaction: a write waits at most for the batch that holds
its row, and no row is ever loaded into Python (memory stays flat). The range width adapts after every batch so
that batches take about 50 ms (as BackfillInBatches does in proj06_large_backfills); a 10 ms pause after each
batch leaves room for everyone else. Then a VACUUM makes the dead rows' space reusable (the files do not shrink:
new events fill that space).

The notes of those events go first, the same way (DeleteInBatches on EventNote, through the join to its event):
EventNote.event is on_delete=DO_NOTHING, so deleting the events would not touch them, and its foreign key
constraint would refuse, at the commit of a batch, to delete an event a note still points at. (The lab seeds no
note: that pass finds nothing.) Each batch of events then also pays that constraint's check, one lookup per
deleted row at its commit, bounded like the batch.

Safe to interrupt and re-run: the cutoff is computed from the newest events, which this step keeps, so a re-run
picks the same rows; it starts at the first row still to delete.

Reversing is a no-op: deleted rows are gone.
"""

from django.db import migrations
from django.db.models import Max, Q

from migrationlab.operations import DeleteInBatches


def first_kept(model):
    """Retention now keeps the newest quarter of the ids: the created_at of its first event.

    In production, a date (timezone.now() - timedelta(days=30)); the lab computes it from the data so that it
    works at any table size. It only looks at rows this step keeps, so every run of it gives the same cutoff."""
    newest = model.objects.aggregate(newest=Max("id"))["newest"] or 0
    return model.objects.filter(id__gt=newest * 3 // 4).order_by("id").values_list("created_at", flat=True).first()


def older_than_the_newest_quarter(model):
    cutoff = first_kept(model)
    return None if cutoff is None else Q(created_at__lt=cutoff)


def notes_of_those_events(model):
    """The notes of the LargeEvent rows that older_than_the_newest_quarter picks (same cutoff)."""
    cutoff = first_kept(model._meta.get_field("event").related_model)
    return None if cutoff is None else Q(event__created_at__lt=cutoff)


class Migration(migrations.Migration):
    atomic = False  # commit per batch: no transaction ever holds more than one batch of row locks

    dependencies = [
        ("demoapp", "0002_delete_older_half_in_one_transaction"),
    ]

    operations = [
        DeleteInBatches(
            model_name,
            where=where,  # called once when a run starts
            batch_size=1_000,  # the first batch; then resized after every batch
            target_batch_seconds=0.05,
            pause_seconds=0.01,
            synchronous_commit=False,  # a batch's commit does not wait for its WAL to reach the disk (the default)
            vacuum=True,  # then VACUUM (ANALYZE) the table: its dead row versions cleared now (the default)
        )
        for model_name, where in (("eventnote", notes_of_those_events),
                                  ("largeevent", older_than_the_newest_quarter),
                                  ("smallevent", older_than_the_newest_quarter))
    ]
