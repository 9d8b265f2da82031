"""Django's migrate, with what migrationlab's operations say (progress, reports, retries) written to its stdout.

The operations log to "migrationlab.operations" (INFO); this command writes those lines where it writes its own,
as long as its verbosity is 1 or more, so that `--verbosity 0` and `call_command(..., stdout=...)` apply to them.
migrationlab comes before demoapp in INSTALLED_APPS: this command replaces django.core's for every project.
"""

from django.core.management.commands.migrate import Command as DjangoMigrate

from migrationlab.operations import output_to


class Command(DjangoMigrate):
    def handle(self, *args, **options):
        if options["verbosity"] < 1:
            return super().handle(*args, **options)

        def write(line: str) -> None:
            # migrate writes "  Applying app.000N..." without a newline first: our lines start on their own.
            self.stdout.write(f"\n    {line}", ending="")
            self.stdout.flush()

        with output_to(write):
            return super().handle(*args, **options)
