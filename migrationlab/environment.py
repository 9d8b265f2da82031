"""What a project's settings.py reads from the environment with a function: its database and its release.

The database: POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_HOST, POSTGRES_PORT (the talk's names), or
DATABASE_URL, which overrides them (the lab sets one). The release: DEMO_RELEASE, in a project whose lesson spans
releases (default: its latest).
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from migrationlab.releases import release_among
from migrationlab.scenarios import RELEASE_VARIABLE, ScenarioError


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


def release_from_environment(project: str, releases: range, environ=os.environ) -> int:
    """The release this process runs (`if settings.DEMO_RELEASE >= 2:` in models.py): DEMO_RELEASE, one of
    `releases`; unset, the latest. Anything else stops Django with one line (ImproperlyConfigured)."""
    try:
        return release_among(project, releases, environ.get(RELEASE_VARIABLE))
    except ScenarioError as problem:
        raise ImproperlyConfigured(str(problem)) from None
