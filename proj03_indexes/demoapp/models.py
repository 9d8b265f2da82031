from django.db import models


class UserBase(models.Model):
    """The columns both user tables share."""

    name = models.CharField(max_length=100)
    # Looked up by exact value (/list_large/?email=...). Unindexed at the start (0001); 0002 adds db_index=True,
    # what a developer writes first.
    email = models.EmailField(db_index=True)
    updated_at = models.DateTimeField(null=True)
    # A new column with an index from the start (0003): the common trap, see README.md.
    handle = models.CharField(max_length=30, null=True, db_index=True)

    class Meta:
        abstract = True


class SmallUser(UserBase):
    """10 rows: the same migration is instant here."""

    class Meta:
        db_table = "small_user"


class LargeUser(UserBase):
    """Millions of rows: the table the API reads and writes, and the one the lesson is about."""

    class Meta:
        db_table = "large_user"
