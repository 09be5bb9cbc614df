"""The one argument every hook receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from agents_app.hooks.errors import InputRejected, OutputRejected
from agents_app.hooks.registry import PRE

if TYPE_CHECKING:
    from agents_app.models import Agent, Team
    from sessions_app.models import Run, Session


@dataclass(slots=True, kw_only=True)
class HookContext:
    """What a hook sees of the run it is attached to.

    * `agent` (or, for a team's run, `team`; the other is None), `run`, `session`, `user`: the model
      instances (loaded before the first hook of the run; `run` is a snapshot: `run.status` is "running" for inline hooks). Treat them as read-only;
      from an async hook, reach the ORM through `sync_to_async`.
    * `input`: the user's message as the previous pre-hooks left it (background hooks: as stored).
    * `output`, `output_type` (post-hooks only): the answer, a string (`"str"`) or, for agents with an
      output schema, the JSON object (`"json"`).
    * `session_state`: the session's state dict. Change it in place (`ctx.session_state["k"] = v`);
      the top-level keys a hook sets or deletes are saved with the run (inline hooks) or with the
      execution's success (background hooks), merged into the state as it is then, so concurrent
      writers of other keys are not overwritten. The changes of an attempt that raised or timed out
      are discarded.
    * `background`, `attempt` (1, 2, …), `phase` ("pre" / "post"), `hook_name`.
    * `on_success(fn)`: database writes to make only if this attempt succeeds, in the transaction
      that records its success (inline hooks: the run's finishing transaction), so a retried or
      redelivered hook applies them exactly once.
    """

    hook_name: str
    phase: str
    background: bool
    attempt: int
    agent: Agent | None
    team: Team | None = None
    run: Run
    session: Session
    user: Any
    input: str
    output: Any = None
    output_type: str = "str"
    session_state: dict[str, Any] = field(default_factory=dict)
    deferred: list[Callable[[], Any]] = field(default_factory=list)

    @property
    def component(self) -> Any:
        """The agent or the team whose run this is (both have a name, a description, instructions and
        a model)."""
        return self.agent if self.agent is not None else self.team

    def on_success(self, fn: Callable[[], Any]) -> None:
        self.deferred.append(fn)

    @property
    def run_id(self) -> Any:
        return self.run.pk

    @property
    def session_id(self) -> Any:
        return self.session.pk

    @property
    def user_id(self) -> Any:
        return getattr(self.user, "pk", None)

    def reject(self, reason: str) -> NoReturn:
        """Refuse the run with `reason` (shown to the client): InputRejected before the model,
        OutputRejected after it."""
        cls = InputRejected if self.phase == PRE else OutputRejected
        raise cls(reason, hook_name=self.hook_name)
