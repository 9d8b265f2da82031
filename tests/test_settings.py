"""Every project's settings.py is a module a reader can read: the shared base imported by name
(`from migrationlab.settings import *`), then the project's own names assigned in the file. Their values agree with
scenario.toml, and they come from the environment as the Docker path and the lab expect: this folder's .env under
the process environment, DATABASE_URL over POSTGRES_*, DEBUG only with DJANGO_DEBUG=1, DEMO_RELEASE from the process
environment only. Needs no database: each project's settings are imported in a process of their own."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from migrationlab import REPO_ROOT
from migrationlab.scenarios import all_projects, get_project

PROJECTS = all_projects()
each_project = pytest.mark.parametrize("project", PROJECTS, ids=lambda project: project.name)
# Assigned in every project's settings.py, where a reader (or an IDE) sees them.
OWN_NAMES = {"BASE_DIR", "DEMO_RELEASE", "INSTALLED_APPS", "ROOT_URLCONF", "DATABASES", "MIGRATIONLAB_LARGE_MODEL",
             "MIGRATIONLAB_WRITE_FIELD"}
SHOWN = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "INSTALLED_APPS", "ROOT_URLCONF", "WSGI_APPLICATION", "DATABASES",
         "DEMO_RELEASE", "MIGRATIONLAB_LARGE_MODEL", "MIGRATIONLAB_WRITE_FIELD", "MIGRATIONLAB_LOOKUP_FIELD",
         "MIGRATIONLAB_REFERENCED_MODEL", "MIGRATIONLAB_SERVED_FIELDS")
PRINT_SETTINGS = f"""
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
print(json.dumps({{name: getattr(module, name, None) for name in {SHOWN!r}}}, default=str))
"""


def settings_file(project) -> Path:
    return project.folder / project.name / "settings.py"


def settings_of(folder: Path, name: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT):
    """The settings module of the project in `folder`, imported in a fresh Python, with `env` over a clean one."""
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "POSTGRES_", "DATABASE_URL", "DEMO_RELEASE", "MIGRATIONLAB_"))}
    base["PYTHONPATH"] = os.pathsep.join([str(folder), str(REPO_ROOT)])
    return subprocess.run([sys.executable, "-c", PRINT_SETTINGS, f"{name}.settings"], env={**base, **(env or {})},
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def loaded(done) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@each_project
def test_settings_are_assigned_in_the_file_on_a_shared_base_imported_by_name(project):
    source = settings_file(project).read_text()
    tree = ast.parse(source)
    assert "globals()" not in source
    star = [node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.names[0].name == "*"]
    assert star == ["migrationlab.settings"]
    assigned = {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
                if isinstance(target, ast.Name)}
    assert OWN_NAMES <= assigned


@each_project
def test_settings_agree_with_scenario_toml(project):
    settings = loaded(settings_of(project.folder, project.name))
    assert settings["INSTALLED_APPS"] == ["migrationlab", "demoapp"]
    assert settings["ROOT_URLCONF"] == "migrationlab.web"
    assert settings["WSGI_APPLICATION"] == "migrationlab.wsgi.application"
    assert settings["MIGRATIONLAB_LARGE_MODEL"] == f"demoapp.{project.large_model}"
    assert settings["MIGRATIONLAB_WRITE_FIELD"] == project.write_field
    assert settings["MIGRATIONLAB_LOOKUP_FIELD"] == project.lookup_field
    assert settings["MIGRATIONLAB_REFERENCED_MODEL"] == (
        f"demoapp.{project.referenced_model}" if project.referenced_model else None)
    assert settings["MIGRATIONLAB_SERVED_FIELDS"] == list(project.served_fields)
    assert settings["DEMO_RELEASE"] == project.latest_release
    # With nothing set: the talk's database on 127.0.0.1, DEBUG off, the hosts of .env.example.
    assert settings["DEBUG"] is False
    assert settings["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost"]
    database = settings["DATABASES"]["default"]
    assert (database["NAME"], database["HOST"], database["PORT"]) == ("risky_migrations", "127.0.0.1", "5432")


@pytest.fixture
def proj02_copy(tmp_path) -> Path:
    """proj02 (a project with releases) in a folder of its own, where a .env can be written."""
    project = get_project("proj02_rename_column")
    folder = tmp_path / project.name
    shutil.copytree(project.folder, folder, ignore=shutil.ignore_patterns("__pycache__", ".env"))
    return folder


def test_env_file_is_read_under_the_process_environment_and_never_for_the_release(proj02_copy, tmp_path):
    (proj02_copy / ".env").write_text("POSTGRES_PORT=5420\nPOSTGRES_PASSWORD=from-env-file\nDJANGO_DEBUG=1\n"
                                      "DJANGO_ALLOWED_HOSTS=example.test\nDEMO_RELEASE=1\n")
    # Read wherever manage.py is run from: the .env beside the project's settings, not the current folder's.
    settings = loaded(settings_of(proj02_copy, proj02_copy.name, cwd=tmp_path))
    database = settings["DATABASES"]["default"]
    assert (database["PORT"], database["PASSWORD"]) == ("5420", "from-env-file")
    assert settings["DEBUG"] is True and settings["ALLOWED_HOSTS"] == ["example.test"]
    assert settings["DEMO_RELEASE"] == 3  # .env's DEMO_RELEASE is the release docker compose serves
    # The process environment wins over .env; DATABASE_URL over every POSTGRES_*.
    settings = loaded(settings_of(proj02_copy, proj02_copy.name, cwd=tmp_path, env={
        "DJANGO_DEBUG": "0", "DEMO_RELEASE": "2", "DATABASE_URL": "postgresql://lab:secret@127.0.0.1:5400/proj02"}))
    database = settings["DATABASES"]["default"]
    assert (database["NAME"], database["USER"], database["PASSWORD"], database["PORT"]) == (
        "proj02", "lab", "secret", "5400")
    assert settings["DEBUG"] is False and settings["DEMO_RELEASE"] == 2


def test_a_bad_release_is_refused_naming_the_releases(proj02_copy):
    done = settings_of(proj02_copy, proj02_copy.name, env={"DEMO_RELEASE": "9"})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: DEMO_RELEASE must be a release of proj02_rename_column "
        "(1 to 3), got '9'")


def test_a_project_without_releases_ignores_demo_release():
    project = get_project("proj01_safe_backfill")
    assert loaded(settings_of(project.folder, project.name, env={"DEMO_RELEASE": "7"}))["DEMO_RELEASE"] == 1
