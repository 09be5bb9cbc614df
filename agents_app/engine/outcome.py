"""The lifecycle every run shares, written once (each engine had its own end-of-run ladder, and a
fix in one was missing in the others). An engine subclasses `Execution`, writes `body()` and says
what its events, result and partial output are; here:

* pre-hooks before the body, post-hooks after it, for every kind with hooks;
* consecutive `event_index` values; events kept for the stored run;
* a domain failure ends the run with the kind's error event and its `error_type`; a cancellation
  with the cancelled event; anything else (a bug of ours) with `internal_error`;
* outcome, messages, metrics, events, state changes and the telemetry event stored in one thread hop
  and one transaction (`store_run`), shielded, before the terminal event is yielded;
* while it streams, a checkpoint of its partial output and events every RUN_CHECKPOINT_SECONDS (in
  the background, never delaying an event), so a crash of the process loses at most that window.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar
from uuid import UUID

from agents_app import events as ev
from agents_app.hooks.runner import RunHooks
from agents_app.providers.base import ModelError, ModelResponse
from agents_app.providers.registry import get_provider
from sessions_app.conf import agentos_settings
from sessions_app.db import db_call
from sessions_app.images import with_text
from sessions_app.models import Run
from sessions_app.services import run_checkpoint, run_finish
from telemetry_app.metrics import record_run
from telemetry_app.services import telemetry_record_run, telemetry_transaction

logger = logging.getLogger(__name__)


class ChildCancelled(Exception):
    """A member or step run was cancelled (the parent was asked to stop): the parent is cancelled too."""


CANCELLED_MESSAGE = "The run was cancelled."


class Execution:
    """One run while it executes. Subclasses set the class attributes and implement `body()`,
    `started_event()`, `completed_event()` and, where they differ, the hooks below."""

    kind: ClassVar[str] = "agent"
    # Its hook events are named with this prefix ("" for agents, "Team" for teams: agno's names).
    event_prefix: ClassVar[str] = ""
    telemetry_type: ClassVar[str] = "agent"
    error_cls: ClassVar[type[ev.RunEvent]] = ev.RunError
    content_cls: ClassVar[type[ev.RunEvent]] = ev.RunContent  # this kind's content deltas
    cancelled_cls: ClassVar[type[ev.RunEvent]] = ev.RunCancelled
    response_format: Any = None  # an agent's output schema, for the model and the hooks
    # Exceptions that end a run as an error with their own `error_type` (others are internal errors).
    failures: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, handle: Any, *, stream: bool) -> None:
        self.handle = handle
        self.stream = stream
        # What every event of the run carries: its run, its session, and its agent, team or workflow.
        self.ids = {
            "run_id": str(handle.run_id),
            "session_id": str(handle.session_id),
            f"{self.kind}_id": handle.component_id,
        }
        self.counter = itertools.count()
        self.log: list[ev.RunEvent] = []
        self._dicts: list[dict[str, Any]] = []  # self.log as dicts, made once per event
        every = float(agentos_settings.RUN_CHECKPOINT_SECONDS)
        self._checkpoint_every = every if every > 0 else float("inf")
        self._next_checkpoint = time.monotonic() + self._checkpoint_every
        self._checkpointing: asyncio.Future[Any] | None = None
        self.started = time.perf_counter()
        self.ttft: float | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.partial: list[str] = []
        # Set when a post-hook rejected the answer: it is neither returned nor stored, not even partly.
        self.discarded = False
        self.content: Any = ""
        self.output_json: Any = None
        # The messages sent to the model; the user's message is the last one until the model is called.
        self.messages_sent: list[dict[str, Any]] = []
        # The run's copy of the session state (hooks, and an agent's tools, change it); the keys that
        # differ from the handle's when the run ends are saved with it.
        self.session_state: dict[str, Any] = copy.deepcopy(getattr(handle, "session_state", {}))
        # Pre- and post-hooks (agents_app.hooks): None when the run has none, so it pays nothing.
        self.hooks = RunHooks.for_run(handle)
        # Inline post-hooks may rewrite or reject the answer: stream no deltas, only the final content.
        self.hold_output = self.hooks is not None and self.hooks.holds_output

    # ---- events --------------------------------------------------------------------------------

    def event(self, cls: type[ev.RunEvent], **fields: Any) -> ev.RunEvent:
        item = cls(event_index=next(self.counter), **self.ids, **fields)
        self.log.append(item)
        if time.monotonic() >= self._next_checkpoint:
            self.checkpoint()
        return item

    def forward(self, data: dict[str, Any], **label: Any) -> ev.RunEvent:
        """A child run's own event, passed on in this run's stream with `parent_run_id` (deeper
        events keep the run they belong to) and `label`, under this run's next `event_index`."""
        out = dict(data)
        if not out.get("parent_run_id"):
            out["parent_run_id"] = str(self.handle.run_id)
        for key, value in label.items():
            out.setdefault(key, value)
        item = ev.NestedEvent(
            run_id=data.get("run_id", ""), session_id=self.ids["session_id"], event_index=next(self.counter), data=out
        )
        self.log.append(item)
        if time.monotonic() >= self._next_checkpoint:
            self.checkpoint()
        return item

    def event_dicts(self) -> list[dict[str, Any]]:
        """The events so far as dicts (each converted once, for checkpoints and the final store)."""
        dicts = self._dicts
        for item in self.log[len(dicts) :]:
            dicts.append(item.to_dict())
        return dicts

    def checkpoint(self) -> None:
        """Save the partial output and the events so far, in the background (one at a time; the
        next event after a slow one's end tries again). Output that hooks hold back, or that a
        post-hook rejected, is not saved: only what a reader could have seen."""
        self._next_checkpoint = time.monotonic() + self._checkpoint_every
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        output = "" if self.discarded or self.hold_output else self.partial_output()
        saving = asyncio.ensure_future(
            db_call(run_checkpoint, run_id=self.handle.run_id, output=output, events=list(self.event_dicts()))
        )
        saving.add_done_callback(_checkpoint_done)
        self._checkpointing = saving

    def hook_event(self, name: str) -> type[ev.RunEvent]:
        """This kind's hook event class, e.g. "PreHookStarted" -> TeamPreHookStarted for a team."""
        return ev.EVENT_CLASSES[self.event_prefix + name]

    async def model_call(self, config: Any, tools: list[Any]) -> AsyncIterator[ev.RunEvent]:
        """One call of the model `config` with the messages so far, streamed as this kind's content
        deltas (unless the answer is structured or hooks hold it back); sets `self.response` and
        counts its tokens."""
        provider = get_provider(config)
        self.partial.clear()
        response: ModelResponse | None = None
        if self.stream:
            async for piece in provider.stream(
                messages=self.messages_sent, tools=tools, response_format=self.response_format
            ):
                if not isinstance(piece, str):
                    response = piece
                    continue
                self.mark_first_token()
                self.partial.append(piece)
                if self.response_format is None and not self.hold_output:
                    yield self.event(self.content_cls, content=piece)
                    # Let readers of this run send the frame now: chunks that arrived in one
                    # network read would otherwise all leave together at the end.
                    await asyncio.sleep(0)
            if response is None:
                raise ModelError("The model stream ended without a response.")
        else:
            response = await provider.complete(
                messages=self.messages_sent, tools=tools, response_format=self.response_format
            )
            self.mark_first_token()
        self.input_tokens += response.input_tokens
        self.output_tokens += response.output_tokens
        self.response = response

    def mark_first_token(self) -> None:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.started

    def metrics(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "time_to_first_token": self.ttft,
            "duration": time.perf_counter() - self.started,
        }

    def own_metrics(self) -> dict[str, Any]:
        """What the stored run and its telemetry event count: only this run's own model calls (a
        child run stores its own), so adding up stored runs never counts a token twice."""
        return self.metrics()

    # ---- what a kind says ------------------------------------------------------------------------

    def started_event(self) -> ev.RunEvent:
        raise NotImplementedError

    def body(self) -> AsyncIterator[ev.RunEvent]:
        raise NotImplementedError

    async def deliver(self) -> AsyncIterator[ev.RunEvent]:
        """After the post-hooks: what a streamed run still owes its reader (the final content, when
        the hooks held it back)."""
        return
        yield  # an async generator with nothing to yield

    def validate_output(self, text: str) -> Any:
        """A JSON answer rewritten by a post-hook, checked as the model's was (agents with a schema)."""
        return None

    def completed_event(self) -> tuple[dict[str, Any], ev.RunEvent]:
        """After `body()` finished: the stored outcome (status, output, output_json) and the terminal event."""
        raise NotImplementedError

    def error_type_of(self, exc: BaseException) -> str:
        return getattr(exc, "error_type", "model_error")

    def error_message_of(self, exc: BaseException) -> str:
        return str(exc)

    def error_fields(self) -> dict[str, Any]:
        """Extra fields of this kind's error event (a team's member runs, a workflow's failed step)."""
        return {}

    def partial_output(self) -> str:
        """What a run that did not complete keeps as its output."""
        return "".join(self.partial)

    def messages(self, outcome: dict[str, Any]) -> list[dict[str, Any]]:
        """The messages stored with the run after the user's (the agent engine keeps its tool calls)."""
        output = outcome.get("output") or ""
        return [{"role": "assistant", "content": output}] if output else []

    def state_changes(self) -> tuple[dict[str, Any], list[str]]:
        """The top-level session-state keys this run set (to new values) or deleted."""
        state, before = self.session_state, getattr(self.handle, "session_state", {})
        changed = {k: v for k, v in state.items() if k not in before or before[k] != v}
        return changed, [k for k in before if k not in state]

    def finisher(self, status: str) -> Callable[..., Any] | None:
        """`run_finish` extended with what the run's hooks produced, or None."""
        return self.hooks.finisher(status) if self.hooks is not None else None

    # ---- what hooks may change (agents_app.hooks.runner) ------------------------------------------

    def set_input(self, text: str) -> None:
        """The input as the pre-hooks left it: what the model sees, and what the run stores as its
        user message (the original text is not kept)."""
        last = self.messages_sent[-1]
        self.messages_sent[-1] = {**last, "content": with_text(last.get("content"), text)}  # images kept
        self.handle.message = text

    def discard_partial(self) -> None:
        """A rejected answer is neither returned nor stored, not even as partial output."""
        self.partial.clear()
        self.discarded = True

    def telemetry_model(self) -> tuple[str, str]:
        return "", ""

    # ---- the lifecycle ---------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[ev.RunEvent]:
        yield self.started_event()
        outcome: dict[str, Any]
        try:
            if self.hooks is not None:
                async for item in self.hooks.run_pre(self):
                    yield item
            async for item in self.body():
                yield item
            if self.hooks is not None:
                async for item in self.hooks.run_post(self, self.content, self.output_json, self.validate_output):
                    yield item
                self.content, self.output_json = self.hooks.content, self.hooks.output_json
            async for item in self.deliver():
                yield item
            outcome, terminal = self.completed_event()
        except (asyncio.CancelledError, ChildCancelled) as exc:
            if isinstance(exc, asyncio.CancelledError):
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
            outcome = self._failed(Run.Status.CANCELLED, CANCELLED_MESSAGE, "cancelled")
            terminal = self.event(self.cancelled_cls, reason=CANCELLED_MESSAGE)
        except self.failures as exc:
            error_type, message = self.error_type_of(exc), self.error_message_of(exc)
            outcome = self._failed(Run.Status.ERROR, message, error_type)
            terminal = self.event(self.error_cls, content=message, error_type=error_type, **self.error_fields())
        except Exception as exc:
            # A bug of ours: still end the run as an error so it never stays "running" forever.
            logger.exception("%s run %s failed with an internal error", self.kind.capitalize(), self.handle.run_id)
            message = f"Internal error: {type(exc).__name__}"
            outcome = self._failed(Run.Status.ERROR, message, "internal_error")
            terminal = self.event(self.error_cls, content=message, error_type="internal_error", **self.error_fields())
        # Persist before the terminal event leaves, so whoever sees it can read the stored run.
        # (A checkpoint still in flight cannot overwrite it: checkpoints only touch running runs.)
        await asyncio.shield(db_call(self._store, outcome, self.own_metrics(), self.event_dicts()))
        yield terminal

    def _failed(self, status: str, message: str, error_type: str) -> dict[str, Any]:
        output = "" if self.discarded else self.partial_output()
        return {"status": status, "output": output, "error": message, "error_type": error_type}

    def _store(self, outcome: dict[str, Any], metrics: dict[str, Any], events: list[dict[str, Any]]) -> None:
        state_set, state_unset = self.state_changes()
        model, provider = self.telemetry_model()
        store_run(
            run_id=self.handle.run_id,
            session_id=self.handle.session_id,
            message=self.handle.message,
            outcome=outcome,
            messages=self.messages(outcome),
            metrics=metrics,
            events=events,
            state_set=state_set,
            state_unset=state_unset,
            telemetry_type=self.telemetry_type,
            component_id=self.ids.get(f"{self.kind}_id", ""),
            model=model,
            provider=provider,
            finish=self.finisher(outcome["status"]) or run_finish,
        )


def _checkpoint_done(saving: asyncio.Future[Any]) -> None:
    if not saving.cancelled() and saving.exception() is not None:
        logger.warning("Could not save a checkpoint of a run", exc_info=saving.exception())


def store_run(
    *,
    run_id: UUID,
    session_id: UUID,
    message: str,
    outcome: dict[str, Any],
    messages: list[dict[str, Any]],
    metrics: dict[str, Any],
    events: list[dict[str, Any]],
    state_set: dict[str, Any],
    state_unset: list[str],
    telemetry_type: str,
    component_id: str,
    model: str,
    provider: str,
    finish: Callable[..., Any] = run_finish,
) -> None:
    """A run's final writes and its telemetry event: one transaction (no transaction and no query
    for telemetry when it is off; recording never raises). Its metrics are counted once stored,
    once only (a run settled by another process meanwhile is not counted twice)."""
    with telemetry_transaction():
        stored = finish(
            run_id=run_id,
            status=outcome["status"],
            output=outcome.get("output") or "",
            output_json=outcome.get("output_json"),
            error=outcome.get("error", ""),
            error_type=outcome.get("error_type", ""),
            messages=messages,
            metrics=metrics,
            events=events,
            user_message=message,
            session_id=session_id,
            state_set=state_set,
            state_unset=state_unset,
        )
        telemetry_record_run(
            event_type=telemetry_type,
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
            output=outcome.get("output") or "",
        )
    if stored:
        record_run(
            kind=telemetry_type,
            component=component_id,
            status=outcome["status"],
            error_type=outcome.get("error_type", ""),
            provider=provider,
            duration=metrics.get("duration"),
            time_to_first_token=metrics.get("time_to_first_token"),
            input_tokens=metrics.get("input_tokens", 0),
            output_tokens=metrics.get("output_tokens", 0),
        )
