from django.db import models


class Customer(models.Model):
    """About 100,000 customers: the table the orders' customer_id refers to."""

    name = models.CharField(max_length=100)
    updated_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "customer"


class OrderBase(models.Model):
    """The columns both order tables share."""

    total_cents = models.IntegerField()
    updated_at = models.DateTimeField(null=True)
    # The lesson. 0001: `customer_id = models.BigIntegerField()`, a customer's id by convention only, already of
    #   the type of Customer's key (a BigAutoField), so becoming a foreign key needs no rewrite.
    # 0002: `customer = models.BigIntegerField(db_column="customer_id")`; makemigrations asks whether customer_id
    #   was renamed to customer: yes (a no-op in the database).
    # 0003-0005: the ForeignKey below, built without downtime: index concurrently, constraint NOT VALID, VALIDATE.
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT)

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
