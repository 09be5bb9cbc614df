"""What the API answers, as typed objects. Each keeps the JSON it was made from in `data`, so a
field this client does not name yet is still there (`event.data["…"]`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

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


# ---- evals (docs/evals.md) -------------------------------------------------------------------------

# An eval run's statuses once it has ended (queued and running are the others).
EVAL_FINISHED = frozenset({"passed", "failed", "partial", "error", "cancelled"})


class EvalRunOptions(TypedDict, total=False):
    """What `start_eval_run` and `run_eval` take: `cases` (ids; default all of the suite's), `name`,
    `model` (a model config id the target answers with instead of its own), `version` (a saved
    configuration version of the target to run as)."""

    cases: list[int]
    name: str
    model: int
    version: int


@dataclass(slots=True)
class EvalSuite:
    """A suite of eval cases on one target (`agent`, `team` or `workflow`: its slug)."""

    slug: str
    name: str
    agent: str | None
    team: str | None
    workflow: str | None
    pinned_version: int | None
    case_count: int
    last_score: float | None
    data: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSuite:
        return cls(
            slug=str(data.get("slug", "")),
            name=str(data.get("name", "")),
            agent=data.get("agent"),
            team=data.get("team"),
            workflow=data.get("workflow"),
            pinned_version=data.get("pinned_version"),
            case_count=int(data.get("case_count") or 0),
            last_score=data.get("last_score"),
            data=data,
        )


@dataclass(slots=True)
class EvalCase:
    """One case of a suite: `kind` is accuracy, agent_as_judge, reliability or performance."""

    case_id: int
    name: str
    kind: str
    input: str
    expected_output: str
    criteria: str
    expected_tool_calls: list[Any]
    iterations: int
    data: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalCase:
        return cls(
            case_id=int(data.get("id") or 0),
            name=str(data.get("name") or ""),
            kind=str(data.get("kind") or ""),
            input=str(data.get("input") or ""),
            expected_output=str(data.get("expected_output") or ""),
            criteria=str(data.get("criteria") or ""),
            expected_tool_calls=list(data.get("expected_tool_calls") or []),
            iterations=int(data.get("iterations") or 1),
            data=data,
        )


@dataclass(slots=True)
class EvalCaseResult:
    """What one case of an eval run gave: its answer (`actual`), score, verdict and why."""

    result_id: int
    case_id: int | None
    name: str
    kind: str
    status: str
    input: str
    expected: str
    actual: str
    score: float | None
    passed: bool | None
    reason: str
    tool_calls: list[Any]
    run_ids: list[str]
    duration: float | None
    data: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalCaseResult:
        return cls(
            result_id=int(data.get("id") or 0),
            case_id=data.get("case"),
            name=str(data.get("name") or ""),
            kind=str(data.get("kind") or ""),
            status=str(data.get("status") or ""),
            input=str(data.get("input") or ""),
            expected=str(data.get("expected") or ""),
            actual=str(data.get("actual") or ""),
            score=data.get("score"),
            passed=data.get("passed"),
            reason=str(data.get("reason") or ""),
            tool_calls=list(data.get("tool_calls") or []),
            run_ids=[str(r) for r in data.get("run_ids") or []],
            duration=data.get("duration"),
            data=data,
        )

    @property
    def stats(self) -> dict[str, Any]:
        return self.data.get("stats") or {}


@dataclass(slots=True)
class EvalRun:
    """One run of a suite: its status, progress, score and (read one by one) each case's result."""

    eval_run_id: str
    suite: str
    name: str
    status: str
    cases_total: int
    cases_done: int
    cases_passed: int
    progress: float
    score: float | None
    regressed: bool
    target_model: str | None
    config_version: int | None
    results: list[EvalCaseResult]
    data: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalRun:
        return cls(
            eval_run_id=str(data.get("eval_run_id") or data.get("id") or ""),
            suite=str(data.get("suite") or ""),
            name=str(data.get("name") or ""),
            status=str(data.get("status") or ""),
            cases_total=int(data.get("cases_total") or 0),
            cases_done=int(data.get("cases_done") or 0),
            cases_passed=int(data.get("cases_passed") or 0),
            progress=float(data.get("progress") or 0.0),
            score=data.get("score"),
            regressed=bool(data.get("regressed")),
            target_model=data.get("target_model"),
            config_version=data.get("config_version"),
            results=[EvalCaseResult.from_dict(r) for r in data.get("results") or []],
            data=data,
        )

    @property
    def finished(self) -> bool:
        return self.status in EVAL_FINISHED


@dataclass(slots=True)
class EvalEvent:
    """One frame of an eval run's progress stream: `EvalCaseCompleted` (`result`: a case's
    result), `EvalRunProgress` (`run`: the eval run's status, cases done, score), then
    `EvalRunCompleted` (`run`, as it ended), the last."""

    event: str
    data: dict[str, Any]

    @property
    def result(self) -> EvalCaseResult | None:
        return EvalCaseResult.from_dict(self.data) if self.event == "EvalCaseCompleted" else None

    @property
    def run(self) -> EvalRun | None:
        return None if self.event == "EvalCaseCompleted" else EvalRun.from_dict(self.data)

    @property
    def is_terminal(self) -> bool:
        return self.event == "EvalRunCompleted"


@dataclass(slots=True)
class EvalComparisonSide:
    """One eval run's totals in a comparison: the model and version it ran with, its score."""

    eval_run_id: str
    model: str
    version: int | None
    status: str
    score: float | None
    cases_passed: int
    cases_total: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalComparisonSide:
        return cls(
            eval_run_id=str(data.get("eval_run_id") or ""),
            model=str(data.get("model") or ""),
            version=data.get("version"),
            status=str(data.get("status") or ""),
            score=data.get("score"),
            cases_passed=int(data.get("cases_passed") or 0),
            cases_total=int(data.get("cases_total") or 0),
        )


@dataclass(slots=True)
class EvalComparisonCase:
    """One case on both sides: each side's `{"status", "score", "passed", "duration"}` (None when
    that side did not run it), and whether both sides agree (`same`)."""

    case_id: int | None
    name: str
    kind: str
    first: dict[str, Any] | None
    second: dict[str, Any] | None
    same: bool

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalComparisonCase:
        return cls(
            case_id=data.get("case"),
            name=str(data.get("name") or ""),
            kind=str(data.get("kind") or ""),
            first=data.get("first"),
            second=data.get("second"),
            same=bool(data.get("same")),
        )


@dataclass(slots=True)
class EvalComparison:
    """Two eval runs of one suite side by side (`compare_eval_runs`)."""

    first: EvalComparisonSide
    second: EvalComparisonSide
    cases: list[EvalComparisonCase]
    data: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalComparison:
        return cls(
            first=EvalComparisonSide.from_dict(data.get("first") or {}),
            second=EvalComparisonSide.from_dict(data.get("second") or {}),
            cases=[EvalComparisonCase.from_dict(c) for c in data.get("cases") or []],
            data=data,
        )
