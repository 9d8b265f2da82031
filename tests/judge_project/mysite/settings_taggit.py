"""The sample with one real third-party app from PyPI, django-taggit (requirements/dev.txt pins it)."""

from .settings import *  # noqa: F401,F403
from .settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "taggit"]
