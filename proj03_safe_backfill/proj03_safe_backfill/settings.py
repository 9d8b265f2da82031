"""Django settings of proj03_safe_backfill: what every project shares is in migrationlab/settings.py; what is
this project's own is below. Values come from the environment and this folder's .env (see .env.example)."""
from pathlib import Path

from dotenv import load_dotenv

from migrationlab.environment import database_from_environment

BASE_DIR = Path(__file__).resolve().parent.parent

DEMO_RELEASE = 1  # one release: this lesson does not span deploys

load_dotenv(BASE_DIR / ".env")  # before the shared settings read the environment
from migrationlab.settings import *  # noqa: E402,F403 (SECRET_KEY, DEBUG, ALLOWED_HOSTS, MIDDLEWARE, LOGGING, ...)

INSTALLED_APPS = ["migrationlab", "demoapp"]
ROOT_URLCONF = "migrationlab.web"  # the API every project serves: /list_large/, /update_order/
DATABASES = {"default": database_from_environment()}  # POSTGRES_* or DATABASE_URL

# What the shared views and the seeder work on (scenario.toml's [tables] says the same: tests/test_settings.py).
MIGRATIONLAB_LARGE_MODEL = "demoapp.LargeUser"
MIGRATIONLAB_WRITE_FIELD = "updated_at"
MIGRATIONLAB_LOOKUP_FIELD = "email"
MIGRATIONLAB_SERVED_FIELDS = ["id", "name", "email", "updated_at"]
