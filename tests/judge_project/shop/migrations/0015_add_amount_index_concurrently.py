# The safe form of AddIndex (django.contrib.postgres): CREATE INDEX CONCURRENTLY cannot run in a transaction.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('shop', '0014_rename_email_to_contact_email'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='order',
            index=models.Index(fields=['amount'], name='shop_order_amount_idx'),
        ),
    ]
