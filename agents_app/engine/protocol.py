"""What every kind of run (agent, team, workflow) offers to the code that runs it.

Why a protocol: the runtime (agents_app.runtime) launches, follows, cancels and recovers runs, and
the run service (agents_app.runs) prepares them with the busy-session policy and renders their
results. Neither should care which kind of run it holds, so a new capability (evals, approvals,
budgets) is written once. A prepared run is a handle: what its `prepare` function persisted (the
user's message and a running Run row) and what its engine needs to execute it.

Also here: the input rules every run endpoint shares (`check_message`), so an agent, a team and a
workflow refuse the same message the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from agents_app import events as ev
from sessions_app.conf import agentos_settings
from sessions_app.errors import DomainError
from sessions_app.inputs import InvalidInput, clean_text

KINDS = ("agent", "team", "workflow")


class InvalidRunInput(DomainError, ValueError):
    """The caller's input cannot start a run (empty or oversized message). Nothing was written."""

    code = "invalid_input"
    status = 400
    field = "message"


def check_message(message: Any) -> str:
    """The input rules of every run: a non-empty string within MAX_MESSAGE_CHARS."""
    if not isinstance(message, str) or not message.strip():
        raise InvalidRunInput("The message must not be empty.")
    try:
        clean_text(message)  # no NUL character, no lone surrogate (sessions_app.inputs)
    except InvalidInput as exc:
        raise InvalidRunInput(exc.detail) from None
    limit = int(agentos_settings.MAX_MESSAGE_CHARS)
    if len(message) > limit:
        raise InvalidRunInput(f"The message is {len(message)} characters long; the limit is {limit}.")
    return message


@dataclass(slots=True, kw_only=True)
class Resume:
    """A paused run claimed to go on (engine/approvals.py), in any process: its row's resume state
    and stored events, then either the decisions on its own waiting tool calls (an agent run) or
    the paused member or step run it resumes first (a team or workflow run: `child`, the same
    shape one level down, down to the agent run whose calls wait)."""

    run_id: UUID
    message: str
    created_at: datetime
    state: dict[str, Any]
    prior_events: list[dict[str, Any]]
    decided: list[dict[str, Any]] = field(default_factory=list)
    child: Resume | None = None


@dataclass(slots=True, kw_only=True)
class PreparedRun:
    """A prepared run of any kind: what its kind's `prepare` wrote (sync, one transaction), and what
    the runtime and the run service use whatever the kind. RunHandle (agents), TeamRunHandle and
    WorkflowRunHandle add their component (`agent`, `team`, `workflow`), what their engine needs,
    and `execute_events`; `result_fields` for what their result adds."""

    kind: ClassVar[str]
    error_cls: ClassVar[type[ev.RunEvent]]
    # The kind's own content deltas (a failed run's result keeps them as its partial answer).
    content_cls: ClassVar[type[ev.RunEvent] | None] = None
    user_id: Any
    run_id: UUID
    session_id: UUID
    message: str
    created_at: datetime
    session_created: bool = False
    # What the run's quotas still allow it (agents_app.quotas.QuotaCaps; None: no quota applies).
    quota: Any = None
    # The images sent with the message, as OpenAI image parts (sessions_app.images): the model gets
    # them with the message; the files stored with the run, to delete if its start is undone.
    images: list[dict[str, Any]] = field(default_factory=list)
    image_files: list[str] = field(default_factory=list)
    # A continued paused run (engine/approvals.py): the events it emitted before, as stored (its
    # new ones follow them); the runtime's followers see one stream.
    prior_events: list[dict[str, Any]] = field(default_factory=list)
    # A continued paused team or workflow run: where it goes on (its resume state) and the paused
    # child run it resumes first (engine/approvals.py builds it; None for a run that starts).
    resume: Resume | None = None
    # The number of the configuration version it runs with (agents_app.versions), for telemetry.
    config_version: int | None = None

    @property
    def component(self) -> Any:
        return getattr(self, self.kind)

    @property
    def component_id(self) -> str:
        return self.component.slug

    @property
    def component_name(self) -> str:
        return self.component.name

    def execute_events(self, *, stream: bool) -> AsyncIterator[ev.RunEvent]:
        """Execute the run, yielding its events; the last one is terminal, and the run is stored
        before it is yielded. Cancelling the iterating task ends it with a cancelled event."""
        raise NotImplementedError

    def error_event(self, index: int, message: str, error_type: str) -> ev.RunEvent:
        """This kind's error event, for a run that failed outside its engine."""
        return self.error_cls(
            run_id=str(self.run_id),
            session_id=str(self.session_id),
            event_index=index,
            content=message,
            error_type=error_type,
            **{f"{self.kind}_id": self.component_id},
        )

    def result(self, events: list[ev.RunEvent]) -> dict[str, Any]:
        """The whole run as the non-streaming API answers it (agno's field names): what every kind
        has, then the kind's own fields (`result_fields`); a run that did not complete has `error`."""
        terminal, started = events[-1].to_dict(), events[0].to_dict()
        status = ev.STATUS_OF_TERMINAL.get(terminal.get("event", ""), "error")
        completed = status == "completed"
        cls = self.content_cls
        partial = "".join(e.content for e in events if cls is not None and type(e) is cls)  # type: ignore[attr-defined]
        data: dict[str, Any] = {
            "run_id": str(self.run_id),
            f"{self.kind}_id": self.component_id,
            f"{self.kind}_name": self.component_name,
            "session_id": str(self.session_id),
            "user_id": self.user_id,
            "content": terminal.get("content") if completed else (partial or None),
            "content_type": terminal.get("content_type", "str") if completed else "str",
            "status": status,
            "created_at": int(self.created_at.timestamp()),
            "metrics": terminal.get("metrics") or {},
            **self.result_fields(started, terminal, completed),
        }
        if self.config_version is not None:
            data["config_version"] = self.config_version
        if status == "paused":
            # Waiting for a person: the calls awaiting a decision (agno's shapes), not an error.
            data["tools"] = terminal.get("tools") or []
            data["requirements"] = terminal.get("requirements") or []
            data["expires_at"] = terminal.get("expires_at") or None
        elif not completed:
            data["error"] = {
                "type": terminal.get("error_type") or "cancelled",
                "message": terminal.get("content") or terminal.get("reason") or "",
            }
        return data

    def result_fields(self, started: dict[str, Any], terminal: dict[str, Any], completed: bool) -> dict[str, Any]:
        """The kind's own fields of its result."""
        return {}


RunnableHandle = PreparedRun  # the name the runtime and the run service type their handles with
