"""What a tool sees of the run that called it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from agents_app.models import Agent


@dataclass(slots=True, kw_only=True)
class RunContext:
    """Passed to a tool that declares a parameter annotated `RunContext` (or named `run_context`);
    that parameter is hidden from the model.

    `session_state` is the run's own copy of the session state: read it, change it in place. The
    top-level keys the run's tools and inline hooks set or delete are saved in the run's finishing
    transaction, merged into the state as it is then (the session row locked), so a concurrent
    writer of other keys (a background hook) is never overwritten. Runs of one session never
    overlap (Agent.busy_session_policy), so the next run always starts from this run's result.
    """

    run_id: UUID
    session_id: UUID
    user_id: Any
    agent: Agent
    session_state: dict[str, Any] = field(default_factory=dict)

    @property
    def agent_id(self) -> str:
        return self.agent.slug
