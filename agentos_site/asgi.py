"""ASGI entry point: HTTP to Django; websockets through origin and auth checks to the apps' routes."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")
# Django must be set up before anything imports models, hence this order.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from agents_app.routing import websocket_urlpatterns  # noqa: E402

# Channels' origin validator, except that clients sending no Origin (apps, not browsers) get through.
from agents_app.ws_auth import AllowedHostsOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
