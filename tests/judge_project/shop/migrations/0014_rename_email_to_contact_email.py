# Written as makemigrations writes it when it asks "Was order.email renamed to order.contact_email?" and hears yes.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('shop', '0013_remove_note'),
    ]

    operations = [
        migrations.RenameField(
            model_name='order',
            old_name='email',
            new_name='contact_email',
        ),
    ]
