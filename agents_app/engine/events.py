"""The run-event vocabulary: one set of typed events for SSE, websockets and Python callers.

Names and field names follow agno's AgentOS so its clients work unchanged. Every event carries
`event_index` (0, 1, 2... within its run), which is what lets a client resume after a reconnect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@dataclass(slots=True)
class RunEvent:
    name: ClassVar[str] = "RunEvent"
    run_id: str
    session_id: str
    agent_id: str
    event_index: int = 0
    created_at: int = field(default_factory=lambda: int(time.time()))

    def to_dict(self) -> dict[str, Any]:
        names = _FIELD_NAMES.get(type(self))
        if names is None:
            names = _FIELD_NAMES[type(self)] = tuple(f.name for f in fields(self))
        data: dict[str, Any] = {"event": self.name}
        for key in names:
            data[key] = getattr(self, key)
        return data


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


@dataclass(slots=True)
class RunStarted(RunEvent):
    name: ClassVar[str] = "RunStarted"
    model: str = ""
    model_provider: str = ""


@dataclass(slots=True)
class RunContent(RunEvent):
    name: ClassVar[str] = "RunContent"
    content: str = ""
    content_type: str = "str"


@dataclass(slots=True)
class ToolCallStarted(RunEvent):
    name: ClassVar[str] = "ToolCallStarted"
    tool: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolCallCompleted(RunEvent):
    name: ClassVar[str] = "ToolCallCompleted"
    tool: dict[str, Any] = field(default_factory=dict)
    content: str = ""


@dataclass(slots=True)
class ToolCallError(RunEvent):
    name: ClassVar[str] = "ToolCallError"
    tool: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(slots=True)
class PreHookStarted(RunEvent):
    """An inline pre-hook starts. (The input itself is not in hook events: they are stored with the
    run, and a redaction hook must not have its input kept there.)"""

    name: ClassVar[str] = "PreHookStarted"
    pre_hook_name: str = ""


@dataclass(slots=True)
class PreHookCompleted(RunEvent):
    name: ClassVar[str] = "PreHookCompleted"
    pre_hook_name: str = ""
    duration: float = 0.0
    transformed: bool = False  # the hook rewrote the input


@dataclass(slots=True)
class PostHookStarted(RunEvent):
    name: ClassVar[str] = "PostHookStarted"
    post_hook_name: str = ""


@dataclass(slots=True)
class PostHookCompleted(RunEvent):
    name: ClassVar[str] = "PostHookCompleted"
    post_hook_name: str = ""
    duration: float = 0.0
    transformed: bool = False  # the hook rewrote the output


@dataclass(slots=True)
class RunCompleted(RunEvent):
    name: ClassVar[str] = "RunCompleted"
    content: Any = None
    content_type: str = "str"
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RunError(RunEvent):
    name: ClassVar[str] = "RunError"
    content: str = ""
    error_type: str = "error"


@dataclass(slots=True)
class RunCancelled(RunEvent):
    name: ClassVar[str] = "RunCancelled"
    reason: str = ""


@dataclass(slots=True)
class MemoryUpdateStarted(RunEvent):
    name: ClassVar[str] = "MemoryUpdateStarted"


@dataclass(slots=True)
class MemoryUpdateCompleted(RunEvent):
    name: ClassVar[str] = "MemoryUpdateCompleted"
    duration: float = 0.0


@dataclass(slots=True)
class SessionSummaryStarted(RunEvent):
    name: ClassVar[str] = "SessionSummaryStarted"


@dataclass(slots=True)
class SessionSummaryCompleted(RunEvent):
    name: ClassVar[str] = "SessionSummaryCompleted"
    duration: float = 0.0


TERMINAL_EVENTS = frozenset({"RunCompleted", "RunError", "RunCancelled"})
