"""The settings every project shares. A project's settings.py imports them by name and adds its own:

    from migrationlab.settings import *

    INSTALLED_APPS = ["migrationlab", "demoapp"]
    ROOT_URLCONF = "migrationlab.web"
    DATABASES = {"default": database_from_environment()}   # migrationlab/environment.py
    MIGRATIONLAB_LARGE_MODEL = "demoapp.LargeUser"
    ...

From the environment (and the project's .env, which its settings.py loads first): DJANGO_SECRET_KEY, DJANGO_DEBUG
(DEBUG is off unless it is 1), DJANGO_ALLOWED_HOSTS.
"""

import os

# The default is only for a laptop demo; every real deployment sets DJANGO_SECRET_KEY.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY",
                            "insecure-development-only-key-set-DJANGO_SECRET_KEY-for-anything-else")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
# No redirect from /update_order to /update_order/: a client that follows it resends a POST as a GET without its
# body, and a random row gets updated. The 404 JSON names the right path instead.
APPEND_SLASH = False
# The endpoints read an id at most: a larger body is refused (413 JSON) before it is read.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
WSGI_APPLICATION = "migrationlab.wsgi.application"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

# Read by migrationlab.web and the seeder. Every project sets MIGRATIONLAB_LARGE_MODEL (the large table's model) and
# MIGRATIONLAB_WRITE_FIELD (the column /update_order/ sets); these three only where its lesson needs them:
MIGRATIONLAB_LOOKUP_FIELD = None  # /list_large/?<field>=value filters on that column (an index lesson's lookup)
MIGRATIONLAB_REFERENCED_MODEL = None  # the table the large one refers to: /list_referenced/, /update_referenced/
MIGRATIONLAB_SERVED_FIELDS = []  # the fields /list_large/ and /update_order/ read and return; empty: all of them
