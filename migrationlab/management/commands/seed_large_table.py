from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from migrationlab.scenarios import load_project
from migrationlab.seeding import seed


def row_count(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 0:
        raise ValueError
    return value


class Command(BaseCommand):
    help = "Replace the large table's rows with N generated rows (and the small table's with 10), inside PostgreSQL."

    def add_arguments(self, parser):
        parser.add_argument("--large-count", type=row_count, default=1_000_000, metavar="N",
                            help="rows for the large table (default 1,000,000; 10_000_000 is the talk's size)")

    def handle(self, *args, large_count, **options):
        project = load_project(settings.BASE_DIR)
        referenced = (f"{project.referenced_table} with {project.referenced_rows:,} (first: {project.large_table} "
                      "refers to it), " if project.referenced_table else "")
        self.stdout.write(f"Seeding {referenced}{project.large_table} with {large_count:,} rows, "
                          f"{project.small_table} with 10")
        connection.ensure_connection()
        try:
            result = seed(
                connection.connection,
                large_table=project.large_table,
                small_table=project.small_table,
                columns=project.seed_columns,
                large_rows=large_count,
                progress=self.stdout.write,
                referenced_table=project.referenced_table,
                referenced_columns=project.referenced_seed_columns,
                referenced_rows=project.referenced_rows,
            )
        except Exception as failure:  # a one-line error, not a traceback
            connection.connection.rollback()
            raise CommandError(f"seeding failed: {str(failure).strip().splitlines()[0]}") from failure
        self.stdout.write(self.style.SUCCESS(
            f"Seeded {result.large_rows:,} rows in {result.seconds:.1f} s "
            f"({result.large_rows / max(result.seconds, 1e-9):,.0f} rows/s)"
        ))
