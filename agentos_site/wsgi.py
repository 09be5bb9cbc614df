"""WSGI entry point, for management tooling only: streaming and websockets need ASGI."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")
application = get_wsgi_application()
