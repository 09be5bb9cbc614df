"""Websocket routes. A host site adds them to its ASGI application, inside its session auth and
origin checks:

    from agents_app.routing import websocket_urlpatterns
    "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))

Token authentication (for clients without a session) comes with the routes: see ws_auth.py.
"""

from django.urls import path

from agents_app.conf import agentos_settings
from agents_app.consumers import AgentChatConsumer
from agents_app.consumers_teams import TeamChatConsumer, WorkflowChatConsumer
from agents_app.ws_auth import TokenAuthMiddleware

# The chat page builds its websocket URL from this (websocket routes cannot be reversed); a host
# site that serves its websockets under a prefix sets AGENTOS["WEBSOCKET_PATH"] (e.g. "ai/ws/agents/").
WS_AGENT_PATH = agentos_settings.WEBSOCKET_PATH

websocket_urlpatterns = [
    path(f"{WS_AGENT_PATH}<slug:agent_id>/", TokenAuthMiddleware(AgentChatConsumer.as_asgi()), name="agent-chat"),
    path(
        f"{agentos_settings.TEAMS_WEBSOCKET_PATH}<slug:team_id>/",
        TokenAuthMiddleware(TeamChatConsumer.as_asgi()),
        name="team-chat",
    ),
    path(
        f"{agentos_settings.WORKFLOWS_WEBSOCKET_PATH}<slug:workflow_id>/",
        TokenAuthMiddleware(WorkflowChatConsumer.as_asgi()),
        name="workflow-chat",
    ),
]
