from django.db import models


class UserBase(models.Model):
    """The columns both user tables share."""

    name = models.CharField(max_length=100)
    email = models.EmailField()
    updated_at = models.DateTimeField(null=True)
    # The lesson: two columns derived from email, added nullable (0002), NULL in every row. 0003 fills
    # email_domain the way data migrations are usually written (one UPDATE, one transaction); 0004 fills
    # email_local_part the safe way (committed batches).
    email_domain = models.CharField(max_length=254, null=True)
    email_local_part = models.CharField(max_length=254, null=True)

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
