from django.db import models


class EventBase(models.Model):
    """The columns both event tables share."""

    device_id = models.IntegerField()
    kind = models.CharField(max_length=20)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(null=True)

    class Meta:
        abstract = True


# 0001_initial created the tables with two indexes each, declared in Meta.indexes at the time:
#     models.Index(fields=["device_id"], name="<table>_device_id_idx")             # serves /list_large/?device_id=N
#     models.Index(fields=["kind", "created_at"], name="<table>_kind_created_idx")  # used by no query
# The lesson removes both from the models: 0002 drops the unused one concurrently (the safe way), 0003 drops the
# one the lookup needs, as makemigrations writes it (the risky way). This file is the state after both steps.


class SmallEvent(EventBase):
    """10 rows: the same migrations are instant here."""

    class Meta:
        db_table = "small_event"


class LargeEvent(EventBase):
    """Millions of rows: the table the API reads and writes, and the one the lesson is about."""

    class Meta:
        db_table = "large_event"
