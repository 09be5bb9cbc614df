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
class ParserModelResponseStarted(RunEvent):
    """The parser model starts turning the answer into the output schema (agno's name)."""

    name: ClassVar[str] = "ParserModelResponseStarted"
    model: str = ""
    model_provider: str = ""


@dataclass(slots=True)
class ParserModelResponseCompleted(RunEvent):
    name: ClassVar[str] = "ParserModelResponseCompleted"
    model: str = ""
    model_provider: str = ""


@dataclass(slots=True)
class RunCompleted(RunEvent):
    """`model` and `model_provider`: the model that answered (a fallback, when the main one failed)."""

    name: ClassVar[str] = "RunCompleted"
    content: Any = None
    content_type: str = "str"
    metrics: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    model_provider: str = ""


@dataclass(slots=True)
class RunError(RunEvent):
    name: ClassVar[str] = "RunError"
    content: str = ""
    error_type: str = "error"


@dataclass(slots=True)
class RunCancelled(RunEvent):
    """`content`: what the run had produced when it was cancelled (agno sends it too)."""

    name: ClassVar[str] = "RunCancelled"
    reason: str = ""
    content: str = ""


@dataclass(slots=True)
class RunContentCompleted(RunEvent):
    """A streamed run's content is complete (agno's name); RunCompleted follows."""

    name: ClassVar[str] = "RunContentCompleted"


@dataclass(slots=True)
class ModelRequestStarted(RunEvent):
    """One call of a model starts (agno's name)."""

    name: ClassVar[str] = "ModelRequestStarted"
    model: str = ""
    model_provider: str = ""


@dataclass(slots=True)
class ModelRequestCompleted(RunEvent):
    """One call of a model ended: agno's fields, and ours: `start_time` (Unix seconds, with
    decimals), `duration` (seconds) and `cost` (this call's), which the run's trace is built from."""

    name: ClassVar[str] = "ModelRequestCompleted"
    model: str = ""
    model_provider: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    time_to_first_token: float | None = None
    reasoning_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    start_time: float = 0.0
    duration: float = 0.0
    cost: float = 0.0


@dataclass(slots=True)
class RunPaused(RunEvent):
    """The run waits for a person to decide on tool calls (docs/human-in-the-loop.md): agno's
    RunPausedEvent. `tools`: the calls awaiting a decision in agno's ToolExecution shape
    (`requires_confirmation`, `requires_user_input` with `user_input_schema`,
    `external_execution_required`); `requirements`: agno's RunRequirement shape, one per call;
    `expires_at`: when the run expires undecided (ISO 8601); `metrics`: what it used so far. The
    stream ends here; once the run is continued, the stored event gets `continued: true` and a
    replay goes on past it."""

    name: ClassVar[str] = "RunPaused"
    tools: list[dict[str, Any]] = field(default_factory=list)
    requirements: list[dict[str, Any]] = field(default_factory=list)
    expires_at: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    continued: bool = False


@dataclass(slots=True)
class RunContinued(RunEvent):
    """A paused run goes on (agno's RunContinuedEvent), first event of its continuation; `tools`:
    the decided calls (agno's ToolExecution shape: `confirmed`, `confirmation_note`, the approved
    `tool_args`, an external `result`)."""

    name: ClassVar[str] = "RunContinued"
    tools: list[dict[str, Any]] = field(default_factory=list)


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


# ---- Teams (agno's TeamRun* names): the leader's own events; members' events are NestedEvents --


@dataclass(slots=True)
class TeamEvent(RunEvent):
    """A team run's own event: `team_id` instead of `agent_id`."""

    agent_id: str = ""
    team_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = RunEvent.to_dict(self)
        del data["agent_id"]
        return data


@dataclass(slots=True)
class TeamRunStarted(TeamEvent):
    name: ClassVar[str] = "TeamRunStarted"
    model: str = ""
    model_provider: str = ""
    mode: str = ""


@dataclass(slots=True)
class TeamRunContent(TeamEvent):
    name: ClassVar[str] = "TeamRunContent"
    content: str = ""
    content_type: str = "str"


@dataclass(slots=True)
class TeamToolCallStarted(TeamEvent):
    name: ClassVar[str] = "TeamToolCallStarted"
    tool: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TeamToolCallCompleted(TeamEvent):
    name: ClassVar[str] = "TeamToolCallCompleted"
    tool: dict[str, Any] = field(default_factory=dict)
    content: str = ""


@dataclass(slots=True)
class TeamToolCallError(TeamEvent):
    name: ClassVar[str] = "TeamToolCallError"
    tool: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(slots=True)
class TeamPreHookStarted(TeamEvent):
    name: ClassVar[str] = "TeamPreHookStarted"
    pre_hook_name: str = ""


@dataclass(slots=True)
class TeamPreHookCompleted(TeamEvent):
    name: ClassVar[str] = "TeamPreHookCompleted"
    pre_hook_name: str = ""
    duration: float = 0.0
    transformed: bool = False


@dataclass(slots=True)
class TeamPostHookStarted(TeamEvent):
    name: ClassVar[str] = "TeamPostHookStarted"
    post_hook_name: str = ""


@dataclass(slots=True)
class TeamPostHookCompleted(TeamEvent):
    name: ClassVar[str] = "TeamPostHookCompleted"
    post_hook_name: str = ""
    duration: float = 0.0
    transformed: bool = False


@dataclass(slots=True)
class TeamParserModelResponseStarted(TeamEvent):
    name: ClassVar[str] = "TeamParserModelResponseStarted"
    model: str = ""
    model_provider: str = ""


@dataclass(slots=True)
class TeamParserModelResponseCompleted(TeamEvent):
    name: ClassVar[str] = "TeamParserModelResponseCompleted"
    model: str = ""
    model_provider: str = ""


@dataclass(slots=True)
class TeamRunCompleted(TeamEvent):
    name: ClassVar[str] = "TeamRunCompleted"
    content: Any = None
    content_type: str = "str"
    metrics: dict[str, Any] = field(default_factory=dict)
    member_runs: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    model_provider: str = ""


@dataclass(slots=True)
class TeamRunError(TeamEvent):
    name: ClassVar[str] = "TeamRunError"
    content: str = ""
    error_type: str = "error"
    member_runs: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class TeamRunCancelled(TeamEvent):
    name: ClassVar[str] = "TeamRunCancelled"
    reason: str = ""
    content: str = ""


@dataclass(slots=True)
class TeamRunContentCompleted(TeamEvent):
    name: ClassVar[str] = "TeamRunContentCompleted"


@dataclass(slots=True)
class TeamModelRequestStarted(TeamEvent):
    name: ClassVar[str] = "TeamModelRequestStarted"
    model: str = ""
    model_provider: str = ""


@dataclass(slots=True)
class TeamModelRequestCompleted(TeamEvent):
    name: ClassVar[str] = "TeamModelRequestCompleted"
    model: str = ""
    model_provider: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    time_to_first_token: float | None = None
    reasoning_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    start_time: float = 0.0
    duration: float = 0.0
    cost: float = 0.0


@dataclass(slots=True)
class TeamMemoryUpdateStarted(TeamEvent):
    name: ClassVar[str] = "TeamMemoryUpdateStarted"


@dataclass(slots=True)
class TeamMemoryUpdateCompleted(TeamEvent):
    name: ClassVar[str] = "TeamMemoryUpdateCompleted"
    duration: float = 0.0


@dataclass(slots=True)
class TeamSessionSummaryStarted(TeamEvent):
    name: ClassVar[str] = "TeamSessionSummaryStarted"


@dataclass(slots=True)
class TeamSessionSummaryCompleted(TeamEvent):
    name: ClassVar[str] = "TeamSessionSummaryCompleted"
    duration: float = 0.0


@dataclass(slots=True)
class TeamRunPaused(TeamEvent):
    """A member (or a member of a member team) waits for a person: the team waits with it (agno's
    TeamRunPausedEvent). `tools` and `requirements` as RunPaused has them, each requirement naming
    the member run that waits (`member_run_id`, `member_agent_id`, `member_agent_name`); continue
    the team's run with a decision per `tool_call_id`."""

    name: ClassVar[str] = "TeamRunPaused"
    tools: list[dict[str, Any]] = field(default_factory=list)
    requirements: list[dict[str, Any]] = field(default_factory=list)
    expires_at: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    member_runs: list[dict[str, Any]] = field(default_factory=list)
    continued: bool = False


@dataclass(slots=True)
class TeamRunContinued(TeamEvent):
    """A paused team run goes on (agno's TeamRunContinuedEvent); `tools`: the decided calls."""

    name: ClassVar[str] = "TeamRunContinued"
    tools: list[dict[str, Any]] = field(default_factory=list)


# ---- Workflows (agno's Workflow*/Step* names) --------------------------------------------------


@dataclass(slots=True)
class WorkflowEvent(RunEvent):
    """A workflow run's own event: `workflow_id` instead of `agent_id`."""

    agent_id: str = ""
    workflow_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = RunEvent.to_dict(self)
        del data["agent_id"]
        return data


@dataclass(slots=True)
class WorkflowStarted(WorkflowEvent):
    name: ClassVar[str] = "WorkflowStarted"
    workflow_name: str = ""


@dataclass(slots=True)
class StepStarted(WorkflowEvent):
    name: ClassVar[str] = "StepStarted"
    step_name: str = ""
    step_index: Any = 0  # an int, or [outer, inner, ...] for a step inside a condition or parallel step
    step_type: str = ""


@dataclass(slots=True)
class StepCompleted(WorkflowEvent):
    name: ClassVar[str] = "StepCompleted"
    step_name: str = ""
    step_index: Any = 0
    step_type: str = ""
    content: Any = None
    content_type: str = "str"
    condition_result: bool | None = None  # condition steps: whether their steps ran


@dataclass(slots=True)
class WorkflowCompleted(WorkflowEvent):
    name: ClassVar[str] = "WorkflowCompleted"
    content: Any = None
    content_type: str = "str"
    metrics: dict[str, Any] = field(default_factory=dict)
    step_results: list[dict[str, Any]] = field(default_factory=list)
    session_state: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class WorkflowError(WorkflowEvent):
    name: ClassVar[str] = "WorkflowError"
    content: str = ""
    error_type: str = "error"
    step_name: str = ""
    step_results: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class WorkflowCancelled(WorkflowEvent):
    name: ClassVar[str] = "WorkflowCancelled"
    reason: str = ""


@dataclass(slots=True)
class WorkflowPaused(WorkflowEvent):
    """A step's agent (or team) waits for a person: the workflow waits with it (agno's
    WorkflowPausedEvent name; `tools` and `requirements` as RunPaused has them, plus the paused
    step); continue the workflow's run with a decision per `tool_call_id`. `step_requirements`:
    agno's StepRequirement shape, one for the paused step (`requires_executor_input`, its
    `executor_requirements` the step run's requirements), `pause_kind` "executor": what agno's
    client reads to continue through `/os/workflows/{id}/runs/{run_id}/continue`."""

    name: ClassVar[str] = "WorkflowPaused"
    tools: list[dict[str, Any]] = field(default_factory=list)
    requirements: list[dict[str, Any]] = field(default_factory=list)
    expires_at: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    paused_step_name: str = ""
    paused_step_index: Any = None
    step_results: list[dict[str, Any]] = field(default_factory=list)
    step_requirements: list[dict[str, Any]] = field(default_factory=list)
    pause_kind: str = "executor"
    continued: bool = False


@dataclass(slots=True)
class StepContinued(WorkflowEvent):
    """A paused workflow run goes on at its paused step (agno's StepContinuedEvent), first event of
    its continuation; `tools`: the decided calls."""

    name: ClassVar[str] = "StepContinued"
    step_name: str = ""
    step_index: Any = 0
    tools: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class NestedEvent(RunEvent):
    """A member's or step's own event, forwarded in its parent run's stream: the child run's event as
    it was (its `run_id`, `agent_id`/`team_id`, name), plus `parent_run_id` and the parent's
    `event_index`, so a client resumes the parent's stream by one index. Never the parent's end."""

    agent_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property  # type: ignore[misc]
    def name(self) -> str:  # type: ignore[override]
        return str(self.data.get("event", ""))

    def to_dict(self) -> dict[str, Any]:
        return {**self.data, "event_index": self.event_index}


STATUS_OF_TERMINAL = {
    "RunCompleted": "completed",
    "RunError": "error",
    "RunCancelled": "cancelled",
    "RunPaused": "paused",
    "TeamRunCompleted": "completed",
    "TeamRunError": "error",
    "TeamRunCancelled": "cancelled",
    "TeamRunPaused": "paused",
    "WorkflowCompleted": "completed",
    "WorkflowError": "error",
    "WorkflowCancelled": "cancelled",
    "WorkflowPaused": "paused",
}
# The kinds' pause events: the end of a paused run's stream until it is continued.
PAUSE_EVENTS = frozenset(name for name, status in STATUS_OF_TERMINAL.items() if status == "paused")
TERMINAL_EVENTS = frozenset(STATUS_OF_TERMINAL)


def is_terminal(event: RunEvent | dict[str, Any]) -> bool:
    """The event that ends its run's stream: a terminal name, and not a member's or step's own end
    forwarded in its parent's stream (those carry `parent_run_id`), nor a pause the run was
    continued after (`continued`: its stream goes on with RunContinued)."""
    if isinstance(event, dict):
        return event.get("event") in TERMINAL_EVENTS and not event.get("parent_run_id") and not event.get("continued")
    return (
        event.name in TERMINAL_EVENTS and not isinstance(event, NestedEvent) and not getattr(event, "continued", False)
    )


# Every event type, by name (to rebuild events read back from the database, and for the hooks,
# which emit the hook events of whatever kind of run they are attached to).
EVENT_CLASSES: dict[str, type[RunEvent]] = {
    cls.name: cls
    for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, RunEvent) and isinstance(cls.name, str) and cls is not RunEvent
}
