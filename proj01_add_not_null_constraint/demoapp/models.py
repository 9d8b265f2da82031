from django.db import models


class UserRow(models.Model):
    name = models.CharField(max_length=100)
    email = models.EmailField()
    # The lesson: added nullable (0002), every existing row NULL; 0003 makes it NOT NULL.
    status = models.CharField(max_length=20, default="active")
    updated_at = models.DateTimeField(null=True)

    class Meta:
        abstract = True


class SmallUser(UserRow):
    class Meta:
        db_table = "small_user"


class LargeUser(UserRow):
    class Meta:
        db_table = "large_user"
