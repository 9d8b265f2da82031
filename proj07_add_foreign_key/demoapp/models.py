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
    # The lesson. 0001: `customer_id = models.IntegerField()`, a customer's id by convention only.
    # 0002, first edit: `customer = models.IntegerField(db_column="customer_id")`; makemigrations asks whether
    #   customer_id was renamed to customer: yes (a no-op in the database: the column keeps its name and data).
    # 0003, second edit: the ForeignKey below; its column is customer_id, the same one. Made in one edit instead,
    #   the change becomes RemoveField + AddField, and every order loses its customer.
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
