from django.db import models


class UserBase(models.Model):
    """The columns both user tables share."""

    name = models.CharField(max_length=100)
    email = models.EmailField()
    updated_at = models.DateTimeField(null=True)
    # The lesson: added nullable (0002), NULL in every row; 0003 makes it NOT NULL with a default, which is
    # what a developer writes first.
    status = models.CharField(max_length=20, default="active")

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
