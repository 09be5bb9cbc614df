"""Running hooks: which hooks a run has and where each runs, and the inline ones inside the engine
(agents_app.hooks.calling makes one attempt; agents_app.hooks.executions runs background hooks).

Where a hook runs (inline, or in the background on a Celery worker) is decided per run, with this
precedence:

1. A guardrail (`@hook(guardrail=True)`) always runs inline: it gates the run, and in the
   background it could gate nothing.
2. AGENTOS["HOOKS_BACKGROUND"] (env AGENTOS_HOOKS_BACKGROUND): `always` puts every other hook in the
   background, `never` runs every hook inline, whatever agents and decorators say. `auto` (the
   default) defers to:
3. the agent's choice for that hook (`AgentHook.mode`: "inline" or "background"; for our internal
   hooks `Agent.memory_hook_mode` / `summary_hook_mode`), and where it is "default", to
4. the decorator's `background=` (default False).

An agent's hook rows may also replace the decorator's `retries` and `timeout`: the planned hook is
then the registered one with those values, for inline and background runs alike.

Inline pre-hooks run after RunStarted and before the model, in the agent's order, each seeing the
input as the previous one left it; the model sees, and the run stores as its user message, the input
as the last pre-hook left it (the original text is not kept, so a redaction hook keeps secrets out of
the database and out of later history). Inline post-hooks run after the output was validated and
before the run is stored; when an agent has any, a streamed run sends its content in one RunContent
after them (no token deltas), so a post-hook that rewrites or rejects the answer is never bypassed by
the stream.

Background hooks are recorded as HookExecution rows in the run's finishing transaction and published
to Celery after it commits: pre-hooks when the input was accepted (whatever the run's outcome), post-
hooks when the run completed. They see the input and the output as stored.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents_app import events as ev
from agents_app.hooks.calling import call_hook, failure_for
from agents_app.hooks.context import HookContext
from agents_app.hooks.errors import (
    HookError,
    HookFailure,
    HookOutputInvalid,
    HookRejected,
    InputRejected,
    OutputRejected,
)
from agents_app.hooks.registry import MEMORY_HOOK, POST, PRE, SUMMARY_HOOK, Hook, hook_registry
from agents_app.providers.base import ModelError
from agents_app.selectors import agent_hook_rows
from sessions_app.conf import agentos_settings

if TYPE_CHECKING:
    from agents_app.models import Agent

logger = logging.getLogger(__name__)

INLINE = "inline"
BACKGROUND = "background"
MODES = (INLINE, BACKGROUND)

_GLOBAL_MODES = {"auto": None, "always": True, "never": False, "true": True, "false": False}


def global_background_mode() -> bool | None:
    """AGENTOS["HOOKS_BACKGROUND"]: True (always), False (never) or None (auto)."""
    value = agentos_settings.HOOKS_BACKGROUND
    if isinstance(value, bool) or value is None:
        return value
    key = str(value).strip().lower()
    if key not in _GLOBAL_MODES:
        raise ValueError(f"AGENTOS['HOOKS_BACKGROUND'] must be auto, always or never, not {value!r}.")
    return _GLOBAL_MODES[key]


def runs_in_background(hook: Hook, mode: str) -> bool:
    """Where `hook` runs when its agent chose `mode` ("default", "inline" or "background"); the
    precedence is in this module's docstring."""
    if hook.guardrail:
        return False
    forced = global_background_mode()
    if forced is not None:
        return forced
    if mode in MODES:
        return mode == BACKGROUND
    return hook.background


@dataclass(frozen=True, slots=True)
class PlannedHook:
    name: str
    phase: str
    position: int
    hook: Hook | None  # None: the agent names a hook that no code registers
    background: bool


def internal_hooks(agent: Agent, *, history_overflow: bool, after: int = 0) -> list[PlannedHook]:
    """Our post-hooks the agent's memory settings call for (agents_app.memory): automatic memory
    after every completed run; a session summary when runs have left the history window. They are
    placed after the agent's `after` post-hooks."""
    wanted = []
    if agent.memory_mode == "automatic":
        wanted.append((MEMORY_HOOK, agent.memory_hook_mode))
    if agent.session_summaries and history_overflow:
        wanted.append((SUMMARY_HOOK, agent.summary_hook_mode))
    planned = []
    for offset, (name, mode) in enumerate(wanted):
        item = hook_registry.get(name)
        assert item is not None  # registered by agents_app.memory, which hook_registry always loads
        planned.append(
            PlannedHook(
                name=name, phase=POST, position=after + offset, hook=item, background=runs_in_background(item, mode)
            )
        )
    return planned


def plan_hooks(rows: list[Any]) -> list[PlannedHook]:
    """An agent's or team's hook rows (agents_app.selectors.agent_hook_rows) in order, pre then post,
    each with where it runs and the registered hook with the row's retries and timeout, if it sets
    them. The rows come with the agent or team (prefetched by the selectors), so this does not query."""
    planned: list[PlannedHook] = []
    for phase in (PRE, POST):
        in_phase = sorted((row for row in rows if row.phase == phase), key=lambda r: (r.position, r.pk or 0))
        for position, row in enumerate(in_phase):
            item = hook_registry.get(row.hook)
            if item is not None and (row.max_retries is not None or row.timeout_seconds is not None):
                item = dataclasses.replace(
                    item,
                    retries=item.retries if row.max_retries is None else row.max_retries,
                    timeout=item.timeout if row.timeout_seconds is None else float(row.timeout_seconds),
                )
            background = runs_in_background(item, row.mode) if item is not None else False
            planned.append(PlannedHook(name=row.hook, phase=phase, position=position, hook=item, background=background))
    return planned


def _as_rejection(phase: str, hook: Hook, exc: HookRejected) -> HookRejected:
    cls = InputRejected if phase == PRE else OutputRejected
    if type(exc) is cls:
        exc.hook_name = exc.hook_name or hook.name
        return exc
    return cls(exc.reason, hook_name=hook.name)


class RunHooks:
    """The hooks of one run of an agent or a team, created by the engine only when it has hooks.
    It talks to the run through the execution the engine hands it (`event`, `hook_event`,
    `session_state`, `response_format`, `set_input`, `discard_partial`), whatever its kind."""

    def __init__(self, handle: Any, planned: list[PlannedHook]) -> None:
        self.handle = handle
        self.kind: str = handle.kind
        self.owner = handle.component  # the agent or the team
        self.pre = [p for p in planned if p.phase == PRE]
        self.post = [p for p in planned if p.phase == POST]
        self.original_input: str = handle.message
        self.input: str = handle.message
        self.input_accepted = False
        self.content: str = ""
        self.output_json: Any = None
        self._objects: tuple[Any, Any, Any] | None = None
        # The run's execution: its session_state is the run's state (an agent's tools share it).
        self.execution: Any = None
        # Database writes of successful inline hooks (HookContext.on_success), for the run's finish.
        self.deferred: list[Callable[[], Any]] = []

    @classmethod
    def for_run(cls, handle: Any) -> RunHooks | None:
        """The hooks of an agent's or a team's run (their hook rows; for agents, also the memory
        hooks their settings call for); None when there are none, so such runs pay nothing."""
        if handle.kind == "workflow":  # workflows have no hooks of their own
            return None
        owner = handle.component
        rows = agent_hook_rows(owner)
        wants_memory = handle.kind == "agent" and (owner.memory_mode == "automatic" or owner.session_summaries)
        if not (rows or wants_memory):
            return None
        planned = plan_hooks(rows)
        if handle.kind == "agent":
            after = sum(1 for p in planned if p.phase == POST)
            planned += internal_hooks(owner, history_overflow=handle.history_overflow, after=after)
        return cls(handle, planned) if planned else None

    @property
    def holds_output(self) -> bool:
        """True when inline post-hooks may rewrite or reject the answer: the engine then streams no
        token deltas, only the final content. Our internal hooks only read the answer."""
        return any(not p.background and not (p.hook and p.hook.internal) for p in self.post)

    # ---- context ---------------------------------------------------------------------------------

    async def _load(self, execution: Any) -> None:
        """Run, session and user in one query; the state is the run's (execution.session_state)."""
        self.execution = execution
        if self._objects is not None:
            return
        from sessions_app.models import Run

        run = await Run.objects.select_related("session", "user").aget(pk=self.handle.run_id)
        self._objects = (run, run.session, run.user)

    def _keep_state(self, state: dict[str, Any]) -> None:
        """Make a hook's state the run's, in place: the run's tools hold the same dict."""
        live = self.execution.session_state
        if state is not live:
            live.clear()
            live.update(state)

    def _context(self, planned: PlannedHook, attempt: int, **fields: Any) -> HookContext:
        assert self._objects is not None
        run, session, user = self._objects
        return HookContext(
            hook_name=planned.name,
            phase=planned.phase,
            background=False,
            attempt=attempt,
            agent=self.owner if self.kind == "agent" else None,
            team=self.owner if self.kind == "team" else None,
            run=run,
            session=session,
            user=user,
            input=self.input,
            session_state=copy.deepcopy(self.execution.session_state),
            **fields,
        )

    async def _call(self, planned: PlannedHook, **fields: Any) -> Any:
        """Call an inline hook with its retries. A rejection is final (and keeps the state the
        rejecting attempt wrote); an exception or a timeout is retried, with a short pause."""
        hook = planned.hook
        assert hook is not None
        failure: HookError | None = None
        for attempt in range(1, hook.max_attempts + 1):
            ctx = self._context(planned, attempt, **fields)
            try:
                result = await call_hook(hook, ctx)
            except HookRejected as exc:
                self._keep_state(ctx.session_state)
                raise _as_rejection(planned.phase, hook, exc) from None
            except Exception as exc:  # any failure of a hook is retried, then reported
                failure = failure_for(hook, exc)
                logger.warning(
                    "Hook %s (run %s) attempt %d/%d failed: %r",
                    hook.name,
                    self.handle.run_id,
                    attempt,
                    hook.max_attempts,
                    exc,
                    exc_info=not isinstance(exc, TimeoutError | HookFailure | ModelError),
                )
                if isinstance(failure, HookOutputInvalid):
                    break  # its model was already asked twice (agents_app.providers.structured)
                if attempt < hook.max_attempts:
                    await asyncio.sleep(min(0.05 * 2 ** (attempt - 1), 1.0))
                continue
            self._keep_state(ctx.session_state)
            self.deferred.extend(ctx.deferred)
            return result
        assert failure is not None
        raise failure

    def _check_registered(self) -> None:
        missing = [p.name for p in (*self.pre, *self.post) if p.hook is None]
        if missing:
            raise HookError(
                f"This {self.kind} uses hooks that no code registers: {', '.join(missing)}. "
                f"Remove them from the {self.kind} in the admin, or register them with @hook.",
                hook_name=missing[0],
            )

    # ---- the phases --------------------------------------------------------------------------------

    async def run_pre(self, execution: Any) -> AsyncIterator[ev.RunEvent]:
        """Inline pre-hooks, in order; may rewrite the input the model sees, or raise InputRejected."""
        self._check_registered()
        inline = [p for p in self.pre if not p.background]
        if inline:
            await self._load(execution)
        for planned in inline:
            yield execution.event(execution.hook_event("PreHookStarted"), pre_hook_name=planned.name)
            started = time.perf_counter()
            result = await self._call(planned)
            transformed = False
            if result is not None:
                if not isinstance(result, str) or not result.strip():
                    raise HookError(
                        f"The {planned.name} hook must return a non-empty string (the new input) or None.",
                        hook_name=planned.name,
                    )
                transformed = result != self.input
                self.input = result
            yield execution.event(
                execution.hook_event("PreHookCompleted"),
                pre_hook_name=planned.name,
                duration=time.perf_counter() - started,
                transformed=transformed,
            )
        if self.input != self.original_input:
            # build_context put the user's message last. The handle carries the run's input from now on
            # (what the run stores, and what telemetry may record), never the original text.
            execution.set_input(self.input)
        self.input_accepted = True

    async def run_post(
        self, execution: Any, content: str, output_json: Any, validate: Callable[[str], Any]
    ) -> AsyncIterator[ev.RunEvent]:
        """Inline post-hooks, in order; may rewrite the output (`self.content`, `self.output_json`) or
        raise OutputRejected. `validate` checks a rewritten JSON answer against the output schema."""
        self.content, self.output_json = content, output_json
        is_json = execution.response_format is not None
        inline = [p for p in self.post if not p.background]
        if inline:
            await self._load(execution)
        try:
            for planned in inline:
                if planned.hook is not None and planned.hook.internal:
                    async for item in self._run_internal(execution, planned, is_json):
                        yield item
                    continue
                yield execution.event(execution.hook_event("PostHookStarted"), post_hook_name=planned.name)
                started = time.perf_counter()
                current = self.output_json if is_json else self.content
                result = await self._call(
                    planned, output=copy.deepcopy(current), output_type="json" if is_json else "str"
                )
                transformed = result is not None and result != current
                if transformed:
                    self._set_output(planned, result, is_json, validate)
                yield execution.event(
                    execution.hook_event("PostHookCompleted"),
                    post_hook_name=planned.name,
                    duration=time.perf_counter() - started,
                    transformed=transformed,
                )
        except OutputRejected:
            # A rejected answer is neither returned nor stored, not even as partial output.
            execution.discard_partial()
            raise

    async def _run_internal(self, execution: Any, planned: PlannedHook, is_json: bool) -> AsyncIterator[ev.RunEvent]:
        """Automatic memory or a session summary, inline: their own events (agno's names); their
        output is ignored (they only read the answer)."""
        what = "MemoryUpdate" if planned.name == MEMORY_HOOK else "SessionSummary"
        # This kind's names: MemoryUpdateStarted for an agent, TeamMemoryUpdateStarted for a team.
        started_cls, completed_cls = execution.hook_event(what + "Started"), execution.hook_event(what + "Completed")
        yield execution.event(started_cls)
        started = time.perf_counter()
        current = self.output_json if is_json else self.content
        try:
            await self._call(planned, output=copy.deepcopy(current), output_type="json" if is_json else "str")
        except HookError as exc:
            # Remembering is not answering: the answer stands, the failure is logged (as a
            # background memory hook's would be recorded) and the next run tries again.
            logger.warning("Run %s: %s (the run goes on without it)", self.handle.run_id, exc)
        yield execution.event(completed_cls, duration=time.perf_counter() - started)

    def _set_output(self, planned: PlannedHook, result: Any, is_json: bool, validate: Callable[[str], Any]) -> None:
        if not is_json:
            if not isinstance(result, str):
                raise HookError(f"The {planned.name} hook must return a string or None.", hook_name=planned.name)
            self.content = result
            return
        try:
            text = json.dumps(result, ensure_ascii=False)
            self.output_json = validate(text)
        except (TypeError, ValueError) as exc:  # ValidationProblem (a schema miss) is a ValueError
            raise HookError(
                f"The {planned.name} hook returned an output that does not match the output schema: {exc}",
                hook_name=planned.name,
            ) from None
        self.content = text

    # ---- what the run's finishing transaction also stores -------------------------------------------

    def background_rows(self, status: str) -> list[PlannedHook]:
        rows = [p for p in self.pre if p.background and p.hook is not None] if self.input_accepted else []
        if status == "completed":
            rows += [p for p in self.post if p.background and p.hook is not None]
        return rows

    def finisher(self, status: str) -> Callable[..., Any] | None:
        """`run_finish` extended with what the hooks produced (the rewritten input, the database
        writes of successful inline hooks, background executions to record and enqueue), or None
        when there is nothing. (Session-state changes are the run's own: the engine passes them.)"""
        from agents_app.hooks.executions import run_finish_with_hooks

        background = self.background_rows(status)
        hook_input = self.input if self.input != self.original_input else None
        if not (background or self.deferred or hook_input is not None):
            return None
        return functools.partial(
            run_finish_with_hooks,
            hook_input=hook_input,
            deferred=list(self.deferred),
            background=[
                (p.name, p.phase, p.position, p.hook.max_attempts, p.hook.timeout) for p in background if p.hook
            ],
        )
