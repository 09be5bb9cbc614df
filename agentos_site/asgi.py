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
from collections.abc import Awaitable
from importlib import import_module
from typing import Any

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http.cookie import parse_cookie
from servestatic import ServeStaticASGI

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")
# Django must be set up before anything imports models, hence this order.
django_asgi_app = get_asgi_application()

from channels.auth import get_user  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from agents_app.routing import websocket_urlpatterns  # noqa: E402

# Channels' origin validator, except that clients sending no Origin (apps, not browsers) get through.
from agents_app.ws_auth import AllowedHostsOriginValidator, token_from_scope  # noqa: E402
from sessions_app.affinity import pin_to_one_cpu  # noqa: E402
from sessions_app.asgi import freeze_startup_objects, pooled_sync_threads  # noqa: E402
from sessions_app.conf import agentos_settings  # noqa: E402

# One CPU for this process and its threads when AGENTOS_CPU_AFFINITY asks (the production setting,
# docs/deployment.md#one-cpu-per-process): before the server starts its threads.
pin_to_one_cpu(agentos_settings.CPU_AFFINITY, agentos_settings.CPU_LOCK_DIR)

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


async def _session_user(scope: dict[str, Any]) -> Any:
    """The user of the handshake's session cookie (AnonymousUser when none), as Channels'
    AuthMiddleware finds it (with the session's auth hash checked)."""
    cookies: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name == b"cookie":
            cookies = parse_cookie(value.decode("latin1"))
            break
    session = import_module(settings.SESSION_ENGINE).SessionStore(cookies.get(settings.SESSION_COOKIE_NAME))
    return await get_user({"session": session})


class SessionUserMiddleware:
    """scope["user"] from the session cookie: what Channels' AuthMiddlewareStack (cookie, session
    and auth middlewares) gives a websocket, in one layer and one copy of the scope, and without
    `scope["session"]` and `scope["cookies"]`, which no consumer of ours reads (nor writes: the
    chat never changes the session). Each layer of Channels' stack keeps a frame and a copy of the
    scope, the session and its cookies for as long as the socket stays open: about 4 KiB per idle
    socket (docs/benchmarks.md#idle-websockets)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # The session and cookies live in _session_user's frame, gone once the user is known.
        return await self.inner(dict(scope, user=await _session_user(scope)), receive, send)


ws_routes = URLRouter(websocket_urlpatterns)
ws_routes_with_session = SessionUserMiddleware(ws_routes)


def websocket_app(scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
    """Sockets without an API token (browsers on the site) get their user from the session cookie;
    sockets with one go straight to the routes, where the token decides who it is
    (agents_app.ws_auth: a wrong token is refused even with a session cookie), and their session
    is never read. A plain function returning the inner coroutine, so it adds no frame of its own."""
    if token_from_scope(scope) is not None:
        return ws_routes(scope, receive, send)
    return ws_routes_with_session(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(websocket_app),
    }
)

# What the first requests would import (the URLconf with every view, the model providers), then the
# objects of start-up out of the garbage collector's scans (sessions_app.asgi): no 67 ms pauses.
freeze_startup_objects(
    settings.ROOT_URLCONF, *(path.rpartition(".")[0] for path in agentos_settings.MODEL_PROVIDERS.values())
)
