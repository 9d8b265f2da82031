"""Django settings of proj05_drop_column: what every project shares is in migrationlab/settings.py; what is
this project's own is below. Values come from the environment and this folder's .env (see .env.example)."""
from pathlib import Path

from dotenv import load_dotenv

from migrationlab.environment import database_from_environment, release_from_environment

BASE_DIR = Path(__file__).resolve().parent.parent

# This lesson spans releases 1 to 3; DEMO_RELEASE picks the one this process runs (default: the latest, 3).
# It is read before .env, where DEMO_RELEASE is the release docker compose serves: manage.py on the host runs the
# latest unless DEMO_RELEASE is set in its own environment.
DEMO_RELEASE = release_from_environment("proj05_drop_column", releases=range(1, 4))

load_dotenv(BASE_DIR / ".env")  # before the shared settings read the environment
from migrationlab.settings import *  # noqa: E402,F403 (SECRET_KEY, DEBUG, ALLOWED_HOSTS, MIDDLEWARE, LOGGING, ...)

INSTALLED_APPS = ["migrationlab", "demoapp"]
ROOT_URLCONF = "migrationlab.web"  # the API every project serves: /list_large/, /update_order/
DATABASES = {"default": database_from_environment()}  # POSTGRES_* or DATABASE_URL

# What the shared views and the seeder work on (scenario.toml's [tables] says the same: tests/test_settings.py).
MIGRATIONLAB_LARGE_MODEL = "demoapp.LargeProduct"
MIGRATIONLAB_WRITE_FIELD = "updated_at"
