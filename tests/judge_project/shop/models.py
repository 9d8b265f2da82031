from django.db import models


class Customer(models.Model):
    name = models.CharField(max_length=100)


class Order(models.Model):
    customer_id = models.IntegerField()
    contact_email = models.CharField(max_length=200, unique=True)
    amount = models.BigIntegerField()
    created_at = models.DateTimeField()
    status = models.CharField(max_length=20)
    channel = models.CharField(max_length=20, default='web')
    region = models.CharField(max_length=20, db_default='eu', null=True)
    referrer = models.ForeignKey(Customer, null=True, on_delete=models.SET_NULL, related_name='referred')

    class Meta:
        indexes = [models.Index(fields=['amount'], name='shop_order_amount_idx')]
        constraints = [models.CheckConstraint(condition=models.Q(amount__gte=0), name='amount_non_negative'), models.UniqueConstraint(fields=['customer_id', 'created_at'], name='one_order_per_instant'), models.CheckConstraint(condition=models.Q(channel__gt=''), name='channel_not_empty')]
