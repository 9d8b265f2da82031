from django.db import models


class RecordBase(models.Model):
    """The columns both record tables share."""

    name = models.CharField(max_length=100)
    # The lesson: created as a CharField (0001) holding timestamps as text ('2024-01-01 00:00:01'); 0002 makes it
    # what it should have been, a DateTimeField (timestamptz), and PostgreSQL rewrites the whole table to do it.
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
