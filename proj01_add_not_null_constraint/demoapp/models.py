from django.db import models

from migrationlab.stories.users import UserRow


class User(UserRow):
    # The lesson: added nullable (0002), NULL in every row; 0003 makes it NOT NULL with a default, which is
    # what a developer writes first.
    status = models.CharField(max_length=20, default="active")

    class Meta:
        abstract = True


class SmallUser(User):
    class Meta:
        db_table = "small_user"


class LargeUser(User):
    class Meta:
        db_table = "large_user"
