"""The settings every project shares. A project's settings.py is one call:

    globals().update(project_settings(__file__))

Configuration comes from the environment (and a `.env` file in the project folder): POSTGRES_DB, POSTGRES_USER,
POSTGRES_PASSWORD, POSTGRES_HOST, POSTGRES_PORT (the talk's names), or DATABASE_URL, which overrides them.
DEBUG is off unless DJANGO_DEBUG=1. DEMO_RELEASE picks the release a project with releases runs (default: its latest).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from migrationlab.releases import chosen_release
from migrationlab.scenarios import RELEASE_VARIABLE, ScenarioError, load_project

# Only for a laptop demo; every real deployment sets DJANGO_SECRET_KEY.
DEVELOPMENT_SECRET_KEY = "insecure-development-only-key-set-DJANGO_SECRET_KEY-for-anything-else"


class DatabaseUrlError(ValueError):
    pass


def parse_database_url(url: str) -> dict:
    """postgresql://user:password@host:port/dbname?sslmode=... -> a Django DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise DatabaseUrlError(f"DATABASE_URL must start with postgresql:// (got '{parts.scheme}://')")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise DatabaseUrlError("DATABASE_URL names no database")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        # ?host=/path/to/socket-dir is libpq's way of naming a Unix socket in a URL
        "HOST": query.pop("host", parts.hostname or ""),
        "PORT": str(parts.port or ""),
        "OPTIONS": query,
    }


def database_from_environment(environ=os.environ) -> dict:
    if environ.get("DATABASE_URL"):
        database = parse_database_url(environ["DATABASE_URL"])
    else:
        database = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": environ.get("POSTGRES_DB", "risky_migrations"),
            "USER": environ.get("POSTGRES_USER", "postgres"),
            "PASSWORD": environ.get("POSTGRES_PASSWORD", ""),
            "HOST": environ.get("POSTGRES_HOST", "127.0.0.1"),
            "PORT": environ.get("POSTGRES_PORT", "5432"),
            "OPTIONS": {},
        }
    # The web server sets a statement timeout so a request stuck behind a migration's lock ends as a 503
    # instead of piling up; migrations (manage.py) run without one.
    timeout_ms = environ.get("MIGRATIONLAB_STATEMENT_TIMEOUT_MS")
    if timeout_ms:
        database["OPTIONS"]["options"] = f"-c statement_timeout={int(timeout_ms)}"
    database["OPTIONS"].setdefault("application_name", environ.get("MIGRATIONLAB_APPLICATION_NAME", "django"))
    # Each gunicorn thread keeps its connection: a new one per request would cap the server at ~90 requests/s here,
    # and after a long lock it would take that much longer to work off the requests queued behind it.
    database["CONN_MAX_AGE"] = int(environ.get("DJANGO_CONN_MAX_AGE", "60"))
    database["CONN_HEALTH_CHECKS"] = True
    return database


def project_settings(settings_file: str) -> dict:
    """Everything a project's settings module needs, from its folder, its scenario.toml and the environment."""
    project_dir = Path(settings_file).resolve().parent.parent
    # The release this process runs (projects whose lesson spans releases): from the process environment only,
    # not .env, where DEMO_RELEASE is the release docker compose serves; manage.py on the host runs the latest.
    release = os.environ.get(RELEASE_VARIABLE)
    load_dotenv(project_dir / ".env")
    project = load_project(project_dir)
    try:
        release = chosen_release(project, release)
    except ScenarioError as problem:
        raise ImproperlyConfigured(str(problem)) from None
    return {
        "BASE_DIR": project_dir,
        "SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", DEVELOPMENT_SECRET_KEY),
        "DEBUG": os.environ.get("DJANGO_DEBUG") == "1",
        "ALLOWED_HOSTS": os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(","),
        "INSTALLED_APPS": ["migrationlab", "demoapp"],
        "MIDDLEWARE": ["django.middleware.common.CommonMiddleware"],
        # No redirect from /update_order to /update_order/: a client that follows it resends a POST as a GET
        # without its body, and a random row gets updated. The 404 JSON names the right path instead.
        "APPEND_SLASH": False,
        # The endpoints read an id at most: a larger body is refused (413 JSON) before it is read.
        "DATA_UPLOAD_MAX_MEMORY_SIZE": 64 * 1024,
        "ROOT_URLCONF": "migrationlab.web",
        "WSGI_APPLICATION": "migrationlab.wsgi.application",
        "DATABASES": {"default": database_from_environment()},
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "USE_TZ": True,
        "TIME_ZONE": "UTC",
        "LOGGING": {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"console": {"class": "logging.StreamHandler"}},
            "root": {"handlers": ["console"], "level": "WARNING"},
        },
        # Read by migrationlab.web and the seeder: which model is the large table, which field a write touches.
        "MIGRATIONLAB_PROJECT": project.name,
        "MIGRATIONLAB_LARGE_MODEL": f"demoapp.{project.large_model}",
        "MIGRATIONLAB_WRITE_FIELD": project.write_field,
        "MIGRATIONLAB_LOOKUP_FIELD": project.lookup_field,
        # The table the large one refers to (a foreign key lesson), or None: /list_referenced/, /update_referenced/.
        "MIGRATIONLAB_REFERENCED_MODEL": f"demoapp.{project.referenced_model}" if project.referenced_model else None,
        "MIGRATIONLAB_SERVED_FIELDS": list(project.served_fields),
        # The release whose models this process loads: `if settings.DEMO_RELEASE >= 2:` in models.py
        # (migrationlab/releases.py). 1 in a project without releases.
        "DEMO_RELEASE": release,
    }
