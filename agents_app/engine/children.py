"""What teams and workflows share: child runs (a member's or a step's run under its parent run),
forwarding their events into the parent's stream, running several at once, and storing the
parent run with its telemetry event.

A child run is a real run: its own Run row (`parent_run` set, same session), its own events and
messages, stored by the agent engine (or the team engine) exactly as a top-level run would be, and
its own telemetry event (an agent child records an `agent` event). The parent run records only what
it did itself (the leader's model calls), so adding up every event never counts a token twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from agents_app.conf import agentos_settings
from agents_app.db import db_call
from agents_app.engine import events as ev
from agents_app.engine.runner import InvalidRunInput, RunHandle, _Execution
from agents_app.memory import context_memories
from sessions_app.models import Run
from sessions_app.services import child_run_start, run_finish, session_state_merge
from telemetry_app.services import telemetry_record_run, telemetry_transaction


class ChildFailed(Exception):
    """A member or step run ended in an error; the parent ends with this error (what finished is kept)."""

    error_type = "member_error"

    def __init__(self, message: str, *, child_error_type: str = "") -> None:
        super().__init__(message)
        self.child_error_type = child_error_type


class ChildCancelled(Exception):
    """A member or step run was cancelled (the parent was asked to stop): the parent is cancelled too."""


class DelegationDepthExceeded(Exception):
    error_type = "delegation_depth_exceeded"


def check_message(message: Any) -> None:
    """The same input rules as an agent run (run_prepare), so every run endpoint answers alike."""
    if not isinstance(message, str) or not message.strip():
        raise InvalidRunInput("The message must not be empty.")
    limit = int(agentos_settings.MAX_MESSAGE_CHARS)
    if len(message) > limit:
        raise InvalidRunInput(f"The message is {len(message)} characters long; the limit is {limit}.")


def content_text(content: Any) -> str:
    """A child's answer as the text the next model or step reads (JSON answers as JSON text)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return json.dumps(content, default=str)


class ChildRun:
    """One member or step run: iterate `events()` for the child's own events (as dicts); afterwards
    `status`, `content`, `error` and `summary()` tell how it ended."""

    def __init__(
        self,
        *,
        parent_run_id: UUID,
        session_id: UUID,
        user_id: Any,
        message: str,
        stream: bool,
        agent: Any = None,
        team: Any = None,
        members_of: dict[int, list[Any]] | None = None,
        depth: int = 0,
        max_depth: int = 1,
        label: dict[str, Any] | None = None,
        session_state: dict[str, Any] | None = None,
    ) -> None:
        self.parent_run_id = parent_run_id
        self.session_id = session_id
        self.user_id = user_id
        self.message = message
        self.stream = stream
        self.agent = agent
        self.team = team
        self.members_of = members_of or {}
        self.depth = depth
        self.max_depth = max_depth
        self.label = label or {}
        # What an agent child starts from (its tools see it through RunContext); it stores the keys it
        # changes with the session when it ends, and `state_set`/`state_unset` tell its parent.
        self.session_state = session_state if session_state is not None else {}
        self.state_set: dict[str, Any] = {}
        self.state_unset: list[str] = []
        self.run_id: UUID | None = None
        self.status = ""
        self.content: Any = None
        self.error = ""
        self.error_type = ""
        self.metrics: dict[str, Any] = {}

    @property
    def component_type(self) -> str:
        return "team" if self.team is not None else "agent"

    @property
    def component_id(self) -> str:
        return (self.team or self.agent).slug

    def summary(self) -> dict[str, Any]:
        data = {
            "run_id": str(self.run_id) if self.run_id else None,
            "member_type": self.component_type,
            "member_id": self.component_id,
            "status": self.status,
            "content": self.content,
        }
        if self.error_type:
            data["error"] = {"type": self.error_type, "message": self.error}
        return {**self.label, **data}

    def _start_sync(self) -> tuple[Run, list[str]]:
        """One thread hop: the child's row, and (an agent child) the user's memories for its context,
        as an agent run reads them when it starts."""
        run = child_run_start(
            parent_run_id=self.parent_run_id,
            session_id=self.session_id,
            user_id=self.user_id,
            message=self.message,
            agent=self.agent,
            team=self.team,
        )
        memories = (
            context_memories(agent=self.agent, user_id=self.user_id, message=self.message)
            if self.agent is not None
            else []
        )
        return run, memories

    async def _start(self) -> tuple[Run, list[str]]:
        """Write the child's row. Its thread hop cannot be stopped halfway: if the parent is cancelled
        meanwhile, the row is still written, so store it as cancelled rather than leave it running."""
        start = asyncio.ensure_future(db_call(self._start_sync))
        try:
            return await asyncio.shield(start)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                run, _ = await start
                await db_call(
                    run_finish,
                    run_id=run.pk,
                    status=Run.Status.CANCELLED,
                    output="",
                    output_json=None,
                    error="The run was cancelled before it started.",
                    error_type="cancelled",
                    messages=[],
                    metrics={},
                    events=[],
                    user_message=self.message,
                )
            raise

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        if self.team is not None and self.depth >= self.max_depth:
            raise DelegationDepthExceeded(
                f"Team {self.team.slug!r} would run {self.depth} levels deep; the limit is {self.max_depth}."
            )
        run, memories = await self._start()
        self.run_id = run.pk
        execution: _Execution | None = None
        source: AsyncIterator[ev.RunEvent]
        if self.team is not None:
            from agents_app.engine.team import TeamRunHandle

            handle = TeamRunHandle(
                team=self.team,
                members_of=self.members_of,
                user_id=self.user_id,
                run_id=run.pk,
                session_id=self.session_id,
                message=self.message,
                history=[],
                created_at=run.created_at,
                session_created=False,
                depth=self.depth,
                max_depth=self.max_depth,
                session_state=self.session_state,
            )
            source = handle.execute_events(stream=self.stream)
        else:
            # The agent engine's own execution (what `execute` iterates), kept to read the state
            # changes the member's tools made.
            execution = _Execution(
                RunHandle(
                    agent=self.agent,
                    user_id=self.user_id,
                    run_id=run.pk,
                    session_id=self.session_id,
                    message=self.message,
                    history=[],
                    created_at=run.created_at,
                    session_created=False,
                    session_state=copy.deepcopy(self.session_state),
                    memories=memories,
                ),
                stream=self.stream,
            )
            source = execution.run()
        last: dict[str, Any] = {}
        try:
            async for item in source:
                last = item.to_dict()
                yield last
        finally:
            if execution is not None:
                self.state_set, self.state_unset = execution.state_changes()
        name = last.get("event", "")
        self.status = ev.STATUS_OF_TERMINAL.get(name, "error")
        if self.status == "completed":
            self.content = last.get("content")
            self.metrics = last.get("metrics") or {}
            return
        self.error = last.get("content") or last.get("reason") or "The run ended without an answer."
        self.error_type = last.get("error_type") or ("cancelled" if self.status == "cancelled" else "error")
        if self.status == "cancelled":
            raise ChildCancelled(self.error)
        raise ChildFailed(
            f"{self.component_type.capitalize()} {self.component_id!r} failed ({self.error_type}): {self.error}",
            child_error_type=self.error_type,
        )


def nested(data: dict[str, Any], parent_run_id: UUID, **label: Any) -> dict[str, Any]:
    """A child's event as its parent forwards it: marked with the parent run (deeper events keep the
    run they belong to) and labelled (e.g. the step), without overwriting the child's own fields."""
    out = dict(data)
    if not out.get("parent_run_id"):
        out["parent_run_id"] = str(parent_run_id)
    for key, value in label.items():
        out.setdefault(key, value)
    return out


_DONE = object()


async def merge(sources: list[AsyncIterator[Any]]) -> AsyncIterator[tuple[int, Any]]:
    """Run several iterators at once and yield (which, item) as items come. Every source runs to its
    end even if another fails (its work is kept); then the first failure (by position) is raised,
    a cancellation first of all. Cancelled while waiting, it cancels the sources, still yields what
    they emit while they stop (their cancelled ends), then raises ChildCancelled."""
    queue: asyncio.Queue[tuple[int, Any, BaseException | None]] = asyncio.Queue()

    async def pump(index: int, source: AsyncIterator[Any]) -> None:
        try:
            async for item in source:
                queue.put_nowait((index, item, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which decides
            queue.put_nowait((index, _DONE, exc))
        else:
            queue.put_nowait((index, _DONE, None))

    tasks = [asyncio.ensure_future(pump(i, source)) for i, source in enumerate(sources)]
    remaining = len(tasks)
    errors: dict[int, BaseException] = {}
    try:
        while remaining:
            try:
                index, item, exc = await queue.get()
            except asyncio.CancelledError:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                while not queue.empty():
                    index, item, exc = queue.get_nowait()
                    if item is not _DONE:
                        yield index, item
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                raise ChildCancelled("The run was cancelled.") from None
            if item is _DONE:
                remaining -= 1
                if exc is not None:
                    errors[index] = exc
                continue
            yield index, item
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
    for exc in errors.values():
        if isinstance(exc, (ChildCancelled, asyncio.CancelledError)):
            raise ChildCancelled("The run was cancelled.")
    if errors:
        raise errors[min(errors)]


def store_parent_run(
    *,
    run_id: UUID,
    session_id: UUID,
    message: str,
    outcome: dict[str, Any],
    metrics: dict[str, Any],
    events: list[dict[str, Any]],
    event_type: str,
    component_id: str,
    model: str,
    provider: str,
    state: dict[str, Any] | None = None,
    state_removed: list[str] | None = None,
) -> None:
    """A team's or workflow's final writes, its session state and its telemetry event: one thread
    hop, one transaction (as the agent engine's `_store`)."""
    output = outcome.get("output") or ""
    messages = [{"role": "assistant", "content": output}] if output else []
    with telemetry_transaction():
        run_finish(
            run_id=run_id,
            status=outcome["status"],
            output=output,
            output_json=outcome.get("output_json"),
            error=outcome.get("error", ""),
            error_type=outcome.get("error_type", ""),
            messages=messages,
            metrics=metrics,
            events=events,
            user_message=message,
        )
        if state is not None:
            session_state_merge(session_id=session_id, state_set=state, state_unset=state_removed or [])
        telemetry_record_run(
            event_type=event_type,
            run_id=run_id,
            session_id=session_id,
            component_id=component_id,
            model=model,
            provider=provider,
            status=outcome["status"],
            input_tokens=metrics.get("input_tokens", 0),
            output_tokens=metrics.get("output_tokens", 0),
            time_to_first_token=metrics.get("time_to_first_token"),
            duration=metrics.get("duration"),
            error_type=outcome.get("error_type", ""),
            input=message,
            output=output,
        )


async def prepare_with_policy(prepare: Any, /, **kwargs: Any) -> Any:
    """Call a sync `team_run_prepare` / `workflow_run_prepare` on a database thread, honouring the
    team's or workflow's busy_session_policy exactly as `Runtime.prepare` does for agents (orphaned
    runs freed; queue, interrupt or reject; launched anyway if the caller goes away once written)."""
    from agents_app.runtime import runtime

    return await runtime.prepare_with(prepare, **kwargs)
