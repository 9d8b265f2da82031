import json

from django.conf import settings
from django.core.management.base import BaseCommand
from django.test import Client

from migrationlab.scenarios import load_project


class Command(BaseCommand):
    help = (
        "Send the API's read (/list_large/) and write (/update_order/) once, in this process, as the release it runs "
        "(DEMO_RELEASE), and print their HTTP status codes as JSON. The judge runs it after a step, as the release "
        "still serving, to check the step's previous_release claim."
    )

    def add_arguments(self, parser):
        parser.add_argument("--id", type=int, required=True, metavar="ROW",
                            help="the row the requests name ({id} in scenario.toml's read_query and write_query)")

    def handle(self, *args, id, **options):
        project = load_project(settings.BASE_DIR)
        read = "/list_large/" + (f"?{project.read_query}" if project.read_query else "")
        write = "/update_order/?" + (project.write_query or "id={id}")
        # A 500 comes back as an answer (handler500's JSON), as a client of the running server would see it.
        client = Client(raise_request_exception=False, HTTP_HOST="127.0.0.1")
        answers = {
            "release": settings.DEMO_RELEASE,
            "list_large": client.get(read.replace("{id}", str(id))).status_code,
            "update_order": client.post(write.replace("{id}", str(id))).status_code,
        }
        self.stdout.write(json.dumps(answers))
