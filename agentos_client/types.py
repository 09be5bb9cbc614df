"""What the API answers, as typed objects. Each keeps the JSON it was made from in `data`, so a
field this client does not name yet is still there (`event.data["…"]`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["agent", "team", "workflow"]
KINDS: tuple[Kind, ...] = ("agent", "team", "workflow")

# The events that end a run's stream (its own, not a member's or step's: those carry `parent_run_id`).
TERMINAL_EVENTS = frozenset(
    {
        "RunCompleted",
        "RunError",
        "RunCancelled",
        "RunPaused",
        "TeamRunCompleted",
        "TeamRunError",
        "TeamRunCancelled",
        "TeamRunPaused",
        "WorkflowCompleted",
        "WorkflowError",
        "WorkflowCancelled",
        "WorkflowPaused",
    }
)


PAUSE_EVENTS = frozenset({"RunPaused", "TeamRunPaused", "WorkflowPaused"})


@dataclass(slots=True)
class Event:
    """One run event, as the SSE stream and the websocket send it. `event_index` is its place in the
    stream (0, 1, 2…; a member's or step's events forwarded in a team's or workflow's stream get the
    parent's sequence), what a resume starts after."""

    event: str
    event_index: int | None
    run_id: str | None
    session_id: str | None
    content: Any = None
    parent_run_id: str | None = None
    created_at: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        name = str(data.get("event", "message"))
        index = data.get("event_index")
        return _EVENT_CLASSES.get(name, Event)(
            event=name,
            event_index=index if isinstance(index, int) else None,
            run_id=data.get("run_id"),
            session_id=data.get("session_id"),
            content=data.get("content"),
            parent_run_id=data.get("parent_run_id"),
            created_at=data.get("created_at"),
            data=data,
        )

    @property
    def is_terminal(self) -> bool:
        """The stream's own last event (a member's or step's terminal event is not, nor a pause
        the run was continued after: a replay marks it `continued` and goes on with RunContinued)."""
        return self.event in TERMINAL_EVENTS and not self.parent_run_id and not self.data.get("continued")

    @property
    def is_pause(self) -> bool:
        """A pause the stream ends with: the run waits for decisions (`continue`)."""
        return self.is_terminal and self.event in PAUSE_EVENTS

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass(slots=True)
class ToolCall:
    """A tool call in `ToolCallStarted` / `ToolCallCompleted` / `ToolCallError` / `RunPaused`."""

    tool_call_id: str | None
    tool_name: str | None
    tool_args: dict[str, Any]
    result: Any = None
    error: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCall:
        return cls(
            tool_call_id=data.get("tool_call_id"),
            tool_name=data.get("tool_name"),
            tool_args=data.get("tool_args") or {},
            result=data.get("result"),
            error=bool(data.get("tool_call_error")),
            data=data,
        )


class RunStarted(Event):
    __slots__ = ()


class RunContent(Event):
    __slots__ = ()


class ToolEvent(Event):
    """`ToolCallStarted`, `ToolCallCompleted`, `ToolCallError` (and the `Team…` delegations)."""

    __slots__ = ()

    @property
    def tool(self) -> ToolCall:
        return ToolCall.from_dict(self.data.get("tool") or {})


class HookEvent(Event):
    """`PreHookStarted`, `PreHookCompleted`, `PostHookStarted`, `PostHookCompleted`."""

    __slots__ = ()


class RunCompleted(Event):
    __slots__ = ()

    @property
    def metrics(self) -> dict[str, Any]:
        return self.data.get("metrics") or {}


class RunError(Event):
    __slots__ = ()

    @property
    def error_type(self) -> str | None:
        return self.data.get("error_type")


class RunCancelled(Event):
    __slots__ = ()


class RunPaused(Event):
    """The run waits for a person to decide on `tools` (continue it with `continue_run`)."""

    __slots__ = ()

    @property
    def tools(self) -> list[ToolCall]:
        return [ToolCall.from_dict(t) for t in self.data.get("tools") or []]

    @property
    def requirements(self) -> list[dict[str, Any]]:
        return list(self.data.get("requirements") or [])


class RunEnded(Event):
    """Not one of the run's events: a resume from past the end of a run that has ended (`status`)."""

    __slots__ = ()

    @property
    def status(self) -> str | None:
        return self.data.get("status")


_EVENT_CLASSES: dict[str, type[Event]] = {
    "RunStarted": RunStarted,
    "TeamRunStarted": RunStarted,
    "WorkflowStarted": RunStarted,
    "RunContent": RunContent,
    "TeamRunContent": RunContent,
    "ToolCallStarted": ToolEvent,
    "ToolCallCompleted": ToolEvent,
    "ToolCallError": ToolEvent,
    "TeamToolCallStarted": ToolEvent,
    "TeamToolCallCompleted": ToolEvent,
    "TeamToolCallError": ToolEvent,
    "PreHookStarted": HookEvent,
    "PreHookCompleted": HookEvent,
    "PostHookStarted": HookEvent,
    "PostHookCompleted": HookEvent,
    "RunCompleted": RunCompleted,
    "TeamRunCompleted": RunCompleted,
    "WorkflowCompleted": RunCompleted,
    "RunError": RunError,
    "TeamRunError": RunError,
    "WorkflowError": RunError,
    "RunCancelled": RunCancelled,
    "TeamRunCancelled": RunCancelled,
    "WorkflowCancelled": RunCancelled,
    "RunPaused": RunPaused,
    "RunEnded": RunEnded,
}


@dataclass(slots=True)
class RunResult:
    """A whole run's answer (`POST …/runs` without streaming, `continue`, `GET /api/runs/{id}/`)."""

    run_id: str
    session_id: str | None
    status: str
    content: Any
    content_type: str | None
    metrics: dict[str, Any]
    error: dict[str, Any] | None
    data: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return cls(
            run_id=str(data.get("run_id") or data.get("id") or ""),
            session_id=data.get("session_id"),
            status=str(data.get("status") or ""),
            content=data.get("content"),
            content_type=data.get("content_type"),
            metrics=data.get("metrics") or {},
            error=data.get("error"),
            data=data,
        )

    @property
    def is_paused(self) -> bool:
        return self.status == "paused"

    def raise_for_error(self) -> RunResult:
        """This result, or `RunFailed` (its `code` the run's `error.type`) when the run failed."""
        if self.status == "error":
            from agentos_client.errors import RunFailed

            error = self.error or {}
            raise RunFailed(
                str(error.get("message") or "The run failed."),
                code=str(error.get("type") or "error"),
                result=self.data,
            )
        return self

    @property
    def tools(self) -> list[ToolCall]:
        """A paused run's tool calls (those waiting for a decision among them)."""
        return [ToolCall.from_dict(t) for t in self.data.get("tools") or []]


@dataclass(slots=True)
class Session:
    session_id: str
    name: str | None
    data: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        return cls(session_id=str(data.get("session_id") or data.get("id")), name=data.get("name"), data=data)

    @property
    def runs(self) -> list[dict[str, Any]]:
        return list(self.data.get("runs") or [])


@dataclass(slots=True)
class Memory:
    memory_id: str
    memory: str
    topics: list[str]
    data: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Memory:
        return cls(
            memory_id=str(data.get("memory_id") or data.get("id")),
            memory=str(data.get("memory", "")),
            topics=list(data.get("topics") or []),
            data=data,
        )


@dataclass(slots=True)
class Page:
    """One page of a paginated list (`count`, `next`, `previous`, `results`)."""

    count: int
    results: list[Any]
    next: str | None = None
    previous: str | None = None


@dataclass(slots=True)
class Decision:
    """A decision on one waiting tool call, for `continue_run` (human-in-the-loop.md)."""

    tool_call_id: str
    decision: Literal["approve", "reject"] = "approve"
    note: str | None = None
    arguments: dict[str, Any] | None = None
    result: Any = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"tool_call_id": self.tool_call_id, "decision": self.decision}
        for key in ("note", "arguments", "result"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        return body
