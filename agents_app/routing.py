"""Websocket routes. A host site adds them to its ASGI application, inside its session auth and
origin checks:

    from agents_app.routing import websocket_urlpatterns
    "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))

Token authentication (for clients without a session) comes with the routes: see ws_auth.py.
"""

from django.urls import path

from agents_app.consumers import ChatConsumer
from agents_app.ws_auth import TokenAuthMiddleware
from sessions_app.conf import agentos_settings

# The chat page builds its websocket URL from this (websocket routes cannot be reversed); a host
# site that serves its websockets under a prefix sets AGENTOS["WEBSOCKET_PATH"] (e.g. "ai/ws/agents/").
WS_AGENT_PATH = agentos_settings.WEBSOCKET_PATH

# One consumer for every kind; the route says which.
_PATHS = {
    "agent": WS_AGENT_PATH,
    "team": agentos_settings.TEAMS_WEBSOCKET_PATH,
    "workflow": agentos_settings.WORKFLOWS_WEBSOCKET_PATH,
}
websocket_urlpatterns = [
    path(f"{prefix}<slug:{kind}_id>/", TokenAuthMiddleware(ChatConsumer.as_asgi(kind=kind)), name=f"{kind}-chat")
    for kind, prefix in _PATHS.items()
]
