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
