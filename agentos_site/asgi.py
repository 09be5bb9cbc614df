"""ASGI entry point: HTTP to Django; websockets through origin and auth checks to the apps' routes.

With DEBUG off, HTTP requests for a file collected in STATIC_ROOT (`manage.py collectstatic`) are
answered by servestatic before Django sees them: the admin's, the chat page's and the API docs'
files, gzip-compressed when the client accepts it, and cached for a year under their hashed names.
Why here and not as a middleware: every other request then pays one dictionary lookup, and no
Django middleware (WhiteNoise's runs synchronously, a thread hop per request under ASGI); static
files never reach Django's request handling. With DEBUG on, `runserver` serves them from the apps'
folders, as before.
"""

import logging
import os

from django.conf import settings
from django.core.asgi import get_asgi_application
from servestatic import ServeStaticASGI

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")
# Django must be set up before anything imports models, hence this order.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from agents_app.routing import websocket_urlpatterns  # noqa: E402

# Channels' origin validator, except that clients sending no Origin (apps, not browsers) get through.
from agents_app.ws_auth import AllowedHostsOriginValidator  # noqa: E402
from sessions_app.asgi import pooled_sync_threads  # noqa: E402

# Each request's sync work (Django's request signals, sync views) on a pooled long-lived thread,
# not a new thread per request (sessions_app.asgi).
http_app = pooled_sync_threads(django_asgi_app)
if not settings.DEBUG:
    if os.path.isdir(settings.STATIC_ROOT):
        # Files with a content hash in their name are immutable (servestatic's default test).
        http_app = ServeStaticASGI(http_app, root=settings.STATIC_ROOT, prefix=settings.STATIC_URL)
    else:
        logging.getLogger(__name__).warning(
            "STATIC_ROOT (%s) does not exist: run `manage.py collectstatic` to serve static files", settings.STATIC_ROOT
        )

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
