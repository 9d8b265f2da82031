from django.db import models

from migrationlab.stories.users import UserRow


class User(UserRow):
    # The lesson: added nullable (0002), NULL in every row; 0003-0007 make it NOT NULL without downtime.
    # db_default: the database fills it in for rows inserted without one.
    status = models.CharField(max_length=20, db_default="active")

    class Meta:
        abstract = True


class SmallUser(User):
    class Meta:
        db_table = "small_user"


class LargeUser(User):
    class Meta:
        db_table = "large_user"
