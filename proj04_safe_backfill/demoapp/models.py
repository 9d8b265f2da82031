from django.db import models


class RecordBase(models.Model):
    """The columns both record tables share."""

    name = models.CharField(max_length=100)
    # The lesson: created as a CharField (0001) holding timestamps as text ('2024-01-01 00:00:01'). 0002-0009 make
    # it a DateTimeField (timestamptz) without a rewrite under lock: a new column, kept in step by a trigger and
    # filled in batches, takes over the name `created_at` (0008), and the old one is dropped (0009).
    created_at = models.DateTimeField()

    class Meta:
        abstract = True


class SmallRecord(RecordBase):
    """10 rows: the same migration is instant here."""

    class Meta:
        db_table = "small_record"


class LargeRecord(RecordBase):
    """Millions of rows: the table the API reads and writes, and the one the lesson is about."""

    class Meta:
        db_table = "large_record"
