"""WSGI entry point shared by every project (DJANGO_SETTINGS_MODULE names the project)."""

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
