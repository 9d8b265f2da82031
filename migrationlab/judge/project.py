"""A user's Django project, imported with its own settings, its `default` database pointed at a scratch database.

Nothing here connects anywhere but the scratch database: every other database alias and the routers are removed
before Django sets up, so no code of the project can reach its real databases through Django.
"""

from __future__ import annotations

import importlib
import os
import site
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from migrationlab.errors import LabError

POSTGRES_ENGINES = ("django.db.backends.postgresql", "django.contrib.gis.db.backends.postgis")


@dataclass(frozen=True)
class Node:
    app_label: str
    name: str

    def __str__(self) -> str:
        return f"{self.app_label}.{self.name}"


def import_settings(settings_module: str, pythonpath: str | None) -> object:
    """Import the project's settings module (one line on failure); its DATABASES must use PostgreSQL."""
    if pythonpath:
        folder = Path(pythonpath).resolve()
        if not folder.is_dir():
            raise LabError(f"--pythonpath {pythonpath}: no such folder")
        sys.path.insert(0, str(folder))
    elif os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(settings_module)
    except Exception as failure:  # any error of the user's settings: one line, not their traceback
        text = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
        raise LabError(f"cannot import settings '{settings_module}': {type(failure).__name__}: {text}") from None
    databases = getattr(module, "DATABASES", None)
    if not isinstance(databases, dict) or "default" not in databases:
        raise LabError(f"settings '{settings_module}' define no DATABASES['default']")
    engine = databases["default"].get("ENGINE", "")
    if engine not in POSTGRES_ENGINES:
        raise LabError(f"the default database of '{settings_module}' is not PostgreSQL (ENGINE '{engine}'): "
                       "the judge measures what PostgreSQL does")
    return module


def setup_django(settings_module: str, scratch_url: str, engine: str) -> None:
    """Set Django up with the project's settings, `default` = the scratch database, and nothing else."""
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    from django.conf import settings

    parts = urlsplit(scratch_url)
    settings.DATABASES = {"default": {
        "ENGINE": engine,
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": {"application_name": "migrationlab-judge"},
        "CONN_MAX_AGE": 0,
    }}
    settings.DATABASE_ROUTERS = []
    import django

    try:
        django.setup()
    except Exception as failure:
        text = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
        raise LabError(f"cannot set the project up: {type(failure).__name__}: {text}") from None


def own_apps() -> set[str]:
    """The project's own apps: those not installed in site-packages (nor Django's own)."""
    from django.apps import apps

    installed = {Path(p).resolve() for p in site.getsitepackages() + [site.getusersitepackages(),
                                                                     sysconfig.get_paths()["purelib"]]}
    labels = set()
    for config in apps.get_app_configs():
        path = Path(config.path).resolve()
        if any(path.is_relative_to(folder) for folder in installed if folder.exists()):
            continue
        labels.add(config.label)
    return labels


def graph():
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    try:
        return MigrationLoader(connection, ignore_no_migrations=True).graph
    except Exception as failure:
        text = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
        raise LabError(f"cannot load the project's migrations: {text}") from None


def full_plan(migration_graph) -> list[Node]:
    """Every migration, in the order `migrate` applies them from an empty database."""
    plan, seen = [], set()
    for leaf in sorted(migration_graph.leaf_nodes()):
        for key in migration_graph.forwards_plan(leaf):
            if key not in seen:
                seen.add(key)
                plan.append(Node(*key))
    return plan


def chosen(migration_graph, plan: list[Node], app_label: str | None, migration: str | None,
           applied: set[tuple[str, str]] | None) -> list[Node]:
    """The migrations to judge, in plan order: one, an app's, production's pending ones, or the project's own."""
    from django.apps import apps

    if app_label is not None:
        if not any(c.label == app_label for c in apps.get_app_configs()):
            raise LabError(f"no installed app with label '{app_label}'")
        mine = [node for node in plan if node.app_label == app_label]
        if not mine:
            raise LabError(f"app '{app_label}' has no migrations")
        if migration is None:
            return mine
        exact = [node for node in mine if node.name == migration]
        matches = exact or [node for node in mine if node.name.startswith(migration)]
        if len(matches) != 1:
            names = ", ".join(node.name for node in matches[:5])
            raise LabError(f"'{migration}' names no migration of '{app_label}'" if not matches
                           else f"'{migration}' is ambiguous in '{app_label}': {names}")
        return matches
    if applied is not None:
        return [node for node in plan if (node.app_label, node.name) not in applied]
    labels = own_apps()
    return [node for node in plan if node.app_label in labels]
