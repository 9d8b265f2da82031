"""How a project is served: the same command in the container (docker-compose.yml) and on the lab (`up`)."""

from __future__ import annotations

import os
import random
import sys

from migrationlab import REPO_ROOT
from migrationlab.ports import port_is_free
from migrationlab.scenarios import Project

GUNICORN_CONFIG = REPO_ROOT / "migrationlab" / "gunicorn_conf.py"


# Below Linux's ephemeral range (32768-60999), from which every outgoing connection takes its local port: a port
# picked there (what bind(0) returns) can be taken by a database connection before the server gets to bind it.
FREE_PORTS = range(20_000, 32_768)


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on right now (not a project's own port, which `up` may hold)."""
    for port in random.sample(FREE_PORTS, 200):
        if port_is_free(port):
            return port
    raise OSError(f"no free port on 127.0.0.1 between {FREE_PORTS.start} and {FREE_PORTS.stop - 1}")


def project_environment(project: Project, database_url: str | None = None, base=None,
                        extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a project's processes run with: its settings, importable code, its database, and `extra`
    (what a caller sets for that one process: a statement timeout, an application_name, a release switch)."""
    env = dict(os.environ if base is None else base)
    env.update(extra or {})
    env["DJANGO_SETTINGS_MODULE"] = project.settings_module
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project.folder), str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def prepare_argv(project: Project) -> list[str]:
    return [sys.executable, str(project.folder / "manage.py"), "prepare_database"]


def gunicorn_argv(project: Project, bind: str) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn",
        "--config", str(GUNICORN_CONFIG),
        "--chdir", str(project.folder),
        "--bind", bind,
        "--name", project.name,
        "migrationlab.wsgi:application",
    ]
