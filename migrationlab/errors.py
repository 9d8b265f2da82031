"""The error a user can fix, and the command its hints name."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


class LabError(RuntimeError):
    """Something the user can fix: the CLI prints it as one line and exits non-zero."""


def cli_command() -> str:
    """This CLI as a command that works from the current directory, for hints: the interpreter running it now
    (outside the venv a plain `python` may lack the dependencies), relative if it lies below the directory."""
    python = sys.executable
    if shutil.which("python") == python:  # an activated venv: the plain command works
        return "python -m migrationlab"
    if Path(python).is_relative_to(Path.cwd()):
        python = os.path.relpath(python)
        if os.sep not in python:  # a bare name would be looked up on PATH instead
            python = f".{os.sep}{python}"
    return f"{shlex.quote(python)} -m migrationlab"
