"""The body of every project's manage.py: the settings module is named like the project folder."""

import os
import sys
from pathlib import Path


def main(manage_py: str) -> None:
    project_dir = Path(manage_py).resolve().parent
    sys.path.insert(0, str(project_dir))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"{project_dir.name}.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
