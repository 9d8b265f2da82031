from django.conf import settings
from django.db import models


class OrderBase(models.Model):
    """The columns both order tables share, as the release this process runs knows them.

    settings.DEMO_RELEASE comes from the environment (default: the latest release). Release 1 is the code that
    serves at the start. Release 2 renames cust_name in Django only and moves from ref to reference (expand);
    release 3 drops ref (contract) and renames amt the way makemigrations writes it. See README.md.
    """

    # cust_name -> customer_name in Django only (0002): db_column keeps the column's name, no SQL at all.
    if settings.DEMO_RELEASE >= 2:
        customer_name = models.CharField(max_length=100, db_column="cust_name")
    else:
        cust_name = models.CharField(max_length=100)

    # ref -> reference by expand and contract: reference added (0003, kept equal to ref by a trigger), filled
    # (0004), read and written from release 2 on; ref dropped (0005, release 3) once no release reads it.
    if settings.DEMO_RELEASE >= 2:
        reference = models.CharField(max_length=20, null=True)
    else:
        ref = models.CharField(max_length=20, null=True)

    # amt -> amount as makemigrations writes it (0006, release 3): RenameField renames the column at once, and
    # release 2, still serving while it runs, fails.
    if settings.DEMO_RELEASE >= 3:
        amount = models.IntegerField()
    else:
        amt = models.IntegerField()

    updated_at = models.DateTimeField(null=True)

    class Meta:
        abstract = True


class SmallOrder(OrderBase):
    """10 rows: the same migration is instant here."""

    class Meta:
        db_table = "small_order"


class LargeOrder(OrderBase):
    """Millions of rows: the table the API reads and writes, and the one the lesson is about."""

    class Meta:
        db_table = "large_order"
