import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, connection
from django.db.migrations.recorder import MigrationRecorder

from migrationlab.scenarios import load_project


class Command(BaseCommand):
    help = (
        "Wait for the database, then migrate demoapp to the scenario's start migration, unless it is already at or "
        "past it (a restart never applies or reverses a lesson step)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                            help="how long to wait for the database to accept connections (default 60)")

    def wait_for_database(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                connection.ensure_connection()
                return
            except OperationalError as failure:
                if time.monotonic() > deadline:
                    raise CommandError(f"database not reachable after {seconds:.0f} s: {str(failure).strip()}")
                time.sleep(1)  # polling an outside service that is starting: nothing to wait on instead

    def handle(self, *args, wait, **options):
        project = load_project(settings.BASE_DIR)
        self.wait_for_database(wait)
        applied = {name for app, name in MigrationRecorder(connection).applied_migrations() if app == "demoapp"}
        lesson_steps = {step.migration for step in project.steps}
        if applied & lesson_steps:
            self.stdout.write(f"demoapp is past its start ({', '.join(sorted(applied & lesson_steps))} applied); "
                              "leaving it as it is")
            return
        if project.start in applied:
            # Nothing to apply; and `migrate` would go on to compare the models with the latest migrations, which
            # an older release's models (DEMO_RELEASE) never match: a misleading "run makemigrations" notice.
            self.stdout.write(f"demoapp is at its start ({project.start})")
            return
        call_command("migrate", "demoapp", project.start, verbosity=1)
