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


def small_and_large(base: type[models.Model], module: str) -> tuple[type[models.Model], type[models.Model]]:
    """The SmallUser and LargeUser models of a project, from its abstract `base` (UserRow + the lesson's column).

    Same as declaring `class SmallUser(base)` with `Meta.db_table = "small_user"`, and likewise LargeUser, in the
    project's models module: written once here, since every project of the story declares exactly these two.
    """
    return tuple(
        type(model_name, (base,), {"__module__": module, "Meta": type("Meta", (), {"db_table": table})})
        for model_name, table in TABLES.items()
    )


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
