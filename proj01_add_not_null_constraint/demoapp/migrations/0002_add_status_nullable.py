"""status, nullable: the demo starts here, with NULL in every row (see migrationlab/stories/users.py)."""

from django.db import migrations

from migrationlab.stories.users import add_nullable_status


class Migration(migrations.Migration):
    dependencies = [("demoapp", "0001_initial")]
    operations = add_nullable_status()
