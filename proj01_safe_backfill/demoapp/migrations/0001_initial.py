"""The starting tables, shared with this project's twin (see migrationlab/stories/users.py)."""

from django.db import migrations

from migrationlab.stories.users import create_user_tables


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = create_user_tables()
