from django.apps import AppConfig


class MigrationLabConfig(AppConfig):
    """Installed in every project for its management commands (seed_large_table, judge_locks)."""

    name = "migrationlab"
    verbose_name = "Migration lab"
