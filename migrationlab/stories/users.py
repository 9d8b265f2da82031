"""Users with a `status` column added nullable: the starting point of the NOT NULL lesson (proj01 pair)."""

from django.db import migrations, models

TABLES = {"SmallUser": "small_user", "LargeUser": "large_user"}


class UserRow(models.Model):
    """The columns every user table has before the lesson; projects add `status` as their lesson needs."""

    name = models.CharField(max_length=100)
    email = models.EmailField()
    updated_at = models.DateTimeField(null=True)

    class Meta:
        abstract = True


def create_user_tables() -> list:
    """0001: small_user and large_user, as makemigrations writes them."""
    return [
        migrations.CreateModel(
            name=model_name,
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("email", models.EmailField(max_length=254)),
                ("updated_at", models.DateTimeField(null=True)),
            ],
            options={"db_table": table},
        )
        for model_name, table in TABLES.items()
    ]


def add_nullable_status() -> list:
    """0002: status added nullable (instant: no default, no rewrite); every existing row is NULL."""
    return [
        migrations.AddField(model_name=model_name.lower(), name="status", field=models.CharField(max_length=20, null=True))
        for model_name in TABLES
    ]
