from django.db import models


class UserBase(models.Model):
    """The columns both user tables share."""

    name = models.CharField(max_length=100)
    # Looked up by exact value (/list_large/?email=...): served by the btree index in each table's Meta.indexes,
    # built with CREATE INDEX CONCURRENTLY (0002).
    email = models.EmailField()
    updated_at = models.DateTimeField(null=True)
    # A new column: added without an index (0003), its index built concurrently afterwards (0004).
    handle = models.CharField(max_length=30, null=True)

    class Meta:
        abstract = True


class SmallUser(UserBase):
    """10 rows: the same migration is instant here."""

    class Meta:
        db_table = "small_user"
        indexes = [
            models.Index(fields=["email"], name="small_user_email_idx"),
            models.Index(fields=["handle"], name="small_user_handle_idx"),
        ]


class LargeUser(UserBase):
    """Millions of rows: the table the API reads and writes, and the one the lesson is about."""

    class Meta:
        db_table = "large_user"
        indexes = [
            models.Index(fields=["email"], name="large_user_email_idx"),
            models.Index(fields=["handle"], name="large_user_handle_idx"),
        ]
