import uuid

from django.contrib.postgres.functions import RandomUUID
from django.db import models


class OrderBase(models.Model):
    """The columns both order tables share. The comments name the migration that brought each default."""

    reference = models.CharField(max_length=20)
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    # db_default: the database fills these in for rows inserted without them.
    status = models.CharField(max_length=20, db_default="pending")  # 0002 (risky): was "new"
    currency = models.CharField(max_length=3, db_default="USD")  # 0003 (safe): was "EUR"
    updated_at = models.DateTimeField(null=True)
    channel = models.CharField(max_length=10, db_default="web")  # 0004: a constant default, instant
    public_id = models.UUIDField(db_default=RandomUUID())  # 0005 (risky): gen_random_uuid() rewrites the table
    tracking_id = models.UUIDField(default=uuid.uuid4)  # 0006 (the trap): one uuid for every existing row
    external_id = models.UUIDField(db_default=RandomUUID())  # 0007-0011 (safe): public_id's end state, no rewrite

    class Meta:
        abstract = True


class SmallOrder(OrderBase):
    """10 rows: every migration is instant here."""

    class Meta:
        db_table = "small_order"


class LargeOrder(OrderBase):
    """Millions of rows: the table the API reads and writes, and the one the lesson is about."""

    class Meta:
        db_table = "large_order"
