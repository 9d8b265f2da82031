import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection
from django.db.migrations.recorder import MigrationRecorder

from migrationlab.scenarios import load_project
from migrationlab.seeding import seed


def row_count(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 0:
        raise ValueError
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 3600:
        raise ValueError
    return value


class Command(BaseCommand):
    help = "Replace the large table's rows with N generated rows (and the small table's with 10), inside PostgreSQL."

    def add_arguments(self, parser):
        parser.add_argument("--large-count", type=row_count, default=1_000_000, metavar="N",
                            help="rows for the large table (default 1,000,000; 10_000_000 is the talk's size)")
        parser.add_argument("--wait", type=seconds, default=120.0, metavar="SECONDS",
                            help="how long to wait for demoapp to reach its start migration, which the web "
                                 "container applies as it starts (default 120)")

    def not_ready(self, project) -> str | None:
        """None once demoapp is at (or past) its start migration and the large table exists; else what is missing."""
        try:
            connection.ensure_connection()
            applied = MigrationRecorder(connection).applied_migrations()
            tables = set(connection.introspection.table_names())
        except DatabaseError as failure:  # the database still starting, or the web container creating the tables
            connection.close()  # the next try starts from a new connection
            return f"database not ready ({str(failure).strip().splitlines()[0] if str(failure).strip() else failure})"
        if ("demoapp", project.start) not in applied:
            return f"demoapp is not at its start migration {project.start}"
        missing = [table for table in (project.referenced_table, project.large_table)
                   if table and table not in tables]
        if missing:
            return f"no table {', '.join(missing)} at demoapp's start migration"
        return None

    def wait_for_start(self, project, seconds: float) -> None:
        """The web container migrates to the start as it starts: a seed run right after `docker compose up -d` waits
        for it (bounded) instead of failing on a table that is not there yet."""
        deadline = time.monotonic() + seconds
        waiting = False
        while (problem := self.not_ready(project)) is not None:
            if time.monotonic() >= deadline:
                raise CommandError(f"gave up after {seconds:g} s: {problem} (is the web container up? "
                                   "`docker compose ps`; or run `migrate demoapp` first)")
            if not waiting:
                self.stdout.write(f"Waiting up to {seconds:g} s: {problem} yet (the web container migrates to "
                                  "it as it starts) ...")
                waiting = True
            # Another process (the web container's `serve`) is migrating: nothing to wait on but its result.
            time.sleep(0.5)

    def handle(self, *args, large_count, wait, **options):
        project = load_project(settings.BASE_DIR)
        self.wait_for_start(project, wait)
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
