# The safe form of AddConstraint for a CHECK (django.contrib.postgres): NOT VALID, no scan of the rows already there.

from django.contrib.postgres.operations import AddConstraintNotValid
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('shop', '0015_add_amount_index_concurrently'),
    ]

    operations = [
        AddConstraintNotValid(
            model_name='order',
            constraint=models.CheckConstraint(condition=models.Q(channel__gt=''), name='channel_not_empty'),
        ),
    ]
