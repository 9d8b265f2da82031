# Then VALIDATE CONSTRAINT (django.contrib.postgres): a scan under SHARE UPDATE EXCLUSIVE.

from django.contrib.postgres.operations import ValidateConstraint
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('shop', '0016_add_channel_check_not_valid'),
    ]

    operations = [
        ValidateConstraint(model_name='order', name='channel_not_empty'),
    ]
