from django.db import models

from migrationlab.stories.users import UserRow, small_and_large


class User(UserRow):
    # The lesson: added nullable (0002), NULL in every row; 0003 makes it NOT NULL with a default, which is
    # what a developer writes first.
    status = models.CharField(max_length=20, default="active")

    class Meta:
        abstract = True


# The two tables of the story: small_user (10 rows) and large_user (millions), with the columns above.
SmallUser, LargeUser = small_and_large(User, __name__)
