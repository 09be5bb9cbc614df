"""A Python client of an AgentOS site's API (docs/python-client.md): `Client` (sync) and
`AsyncClient` (asyncio) for runs of agents, teams and workflows, whole or streamed as typed events
(resumed after a dropped connection), cancel, continue, sessions and memories; `ChatSocket` (asyncio) and
`SyncChatSocket` for the websocket protocol. It needs httpx and websockets only: no Django."""

from agentos_client._core import RetryPolicy
from agentos_client.aclient import AsyncClient
from agentos_client.client import Client
from agentos_client.errors import (
    AgentOSError,
    AuthenticationFailed,
    BadRequest,
    Conflict,
    ConnectionFailed,
    NotFound,
    PermissionDenied,
    RateLimited,
    RunFailed,
    ServerError,
)
from agentos_client.types import (
    Decision,
    Event,
    HookEvent,
    Memory,
    Page,
    RunCancelled,
    RunCompleted,
    RunContent,
    RunEnded,
    RunError,
    RunPaused,
    RunResult,
    RunStarted,
    Session,
    ToolCall,
    ToolEvent,
)
from agentos_client.ws import ChatSocket
from agentos_client.ws_sync import SyncChatSocket

__all__ = [
    "AgentOSError",
    "AsyncClient",
    "AuthenticationFailed",
    "BadRequest",
    "ChatSocket",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Decision",
    "Event",
    "HookEvent",
    "Memory",
    "NotFound",
    "Page",
    "PermissionDenied",
    "RateLimited",
    "RetryPolicy",
    "RunCancelled",
    "RunCompleted",
    "RunContent",
    "RunEnded",
    "RunError",
    "RunFailed",
    "RunPaused",
    "RunResult",
    "RunStarted",
    "ServerError",
    "Session",
    "SyncChatSocket",
    "ToolCall",
    "ToolEvent",
]
