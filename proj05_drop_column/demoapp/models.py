from django.conf import settings
from django.db import models


class ProductBase(models.Model):
    """The columns both product tables share, as the release this process runs knows them.

    settings.DEMO_RELEASE comes from the environment (default: the latest release). Release 1 is the code that
    serves at the start. Release 2 no longer knows legacy_code; release 3 drops it from the database and no longer
    knows catalog_page either. See README.md.
    """

    name = models.CharField(max_length=100)
    price_cents = models.IntegerField()
    if settings.DEMO_RELEASE <= 1:
        # Dropped the safe way: from Django's state in release 2 (0002, with a database default so that release 2's
        # inserts work without it), from the database in release 3 (0003), when no running release knows it.
        legacy_code = models.CharField(max_length=20)
    if settings.DEMO_RELEASE <= 2:
        # Dropped as makemigrations writes it (0004, release 3): RemoveField drops the column at once, and
        # release 2, still serving while it runs, fails. (0 = in no printed catalog: also what the column gets
        # back, for every row, if 0004 is reversed.)
        catalog_page = models.IntegerField(default=0)
    updated_at = models.DateTimeField(null=True)

    class Meta:
        abstract = True


class SmallProduct(ProductBase):
    """10 rows: the same migration is instant here."""

    class Meta:
        db_table = "small_product"


class LargeProduct(ProductBase):
    """Millions of rows: the table the API reads and writes, and the one the lesson is about."""

    class Meta:
        db_table = "large_product"
