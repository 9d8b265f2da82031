from django.db import models


class UserRow(models.Model):
    name = models.CharField(max_length=100)
    email = models.EmailField()
    # The lesson: added nullable (0002), every existing row NULL; 0003-0007 make it NOT NULL without downtime.
    # db_default: the database fills it for rows the application inserts without one.
    status = models.CharField(max_length=20, db_default="active")
    updated_at = models.DateTimeField(null=True)

    class Meta:
        abstract = True


class SmallUser(UserRow):
    class Meta:
        db_table = "small_user"


class LargeUser(UserRow):
    class Meta:
        db_table = "large_user"
