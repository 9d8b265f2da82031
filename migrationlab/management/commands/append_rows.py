"""`manage.py append_rows --rows N`: what the application goes on writing, in the lab: N new rows in the large table.

The rows come from the project's scenario.toml [append] (an SQL expression of i per column, as [seed]); ids come
from the table's own default. Nothing is replaced: the rows are added to the table as it is at that moment (after
proj10's 0006, the partitioned log, whose partition for 2025 on takes them). A project without [append] has none.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
import psycopg2
from django.db import connection

from migrationlab.arguments import row_count
from migrationlab.scenarios import load_project
from migrationlab.seeding import append


class Command(BaseCommand):
    help = "Insert N new rows into the large table, as scenario.toml's [append] describes them (time passing)."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=row_count, default=86_400, metavar="N",
                            help="how many rows to insert (default 86,400: in proj10, a day of events, one a second)")

    def handle(self, *args, rows, **options):
        project = load_project(settings.BASE_DIR)
        if not project.append_columns:
            raise CommandError(f"{project.name}: its scenario.toml has no [append] table: nothing to append")
        connection.ensure_connection()
        try:
            seconds = append(connection.connection, table=project.large_table, columns=project.append_columns,
                             rows=rows, progress=self.stdout.write)
        except psycopg2.Error as failure:  # a one-line error, not a traceback (e.g. a CHECK the rows break)
            connection.connection.rollback()
            first_line = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
            raise CommandError(f"appending to {project.large_table} failed: {first_line}") from failure
        self.stdout.write(self.style.SUCCESS(f"Appended {rows:,} rows to {project.large_table} in {seconds:.1f} s"))
