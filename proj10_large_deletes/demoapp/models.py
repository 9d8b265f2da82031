from django.db import models


class EventBase(models.Model):
    """The columns both event tables share: an append-only log (rows are added, never changed, except that a
    consumer marks each one processed), so ids are in the order of created_at."""

    created_at = models.DateTimeField()
    kind = models.CharField(max_length=20)
    payload = models.TextField()
    processed_at = models.DateTimeField(null=True)

    class Meta:
        abstract = True


class SmallEvent(EventBase):
    """10 rows: the same migration is instant here."""

    class Meta:
        db_table = "small_event"


class LargeEvent(EventBase):
    """Millions of rows: the table the API reads and writes, and the one retention deletes from."""

    class Meta:
        db_table = "large_event"


class EventNote(models.Model):
    """A note someone attached to an event (a support agent, a fraud check). The lab seeds none: the table is empty.

    on_delete=DO_NOTHING: Django does nothing when an event is deleted, so `LargeEvent.objects.filter(...).delete()`
    stays one DELETE (with CASCADE, or SET_NULL, or PROTECT, Django's collector would first load every event to
    delete into memory: benchmarks/proj10_steps.py measures that way too). A retention job deletes the notes of old
    events itself, first.

    The foreign key is the lesson of 0002. At the start it is Django's default, a constraint in the database,
    DEFERRABLE INITIALLY DEFERRED: PostgreSQL checks every deleted event for notes when the transaction commits,
    one lookup per row, with every deleted row still locked. 0006 drops the constraint (db_constraint=False below):
    PostgreSQL cannot point a foreign key at a partitioned table's id alone."""

    event = models.ForeignKey(LargeEvent, on_delete=models.DO_NOTHING, db_constraint=False, related_name="notes")
    text = models.TextField()

    class Meta:
        db_table = "event_note"
