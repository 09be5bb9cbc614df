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
import functools
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from jsonschema import Draft202012Validator

from agents_app import events as ev
from agents_app.engine.budget import BudgetExceeded, RunBudget
from agents_app.engine.pause import ChildPaused, PauseRequested
from agents_app.hooks.runner import RunHooks
from agents_app.pricing import ZERO, as_number, call_cost
from agents_app.providers.base import (
    ModelAuthError,
    ModelError,
    ModelRequestError,
    ModelResponse,
    ResponseFormat,
)
from agents_app.providers.registry import get_provider
from agents_app.providers.structured import OutputInvalid, ValidationProblem, correction, parse_checked
from agents_app.selectors import fallback_configs
from sessions_app.conf import agentos_settings
from sessions_app.db import db_call
from sessions_app.images import with_text
from sessions_app.models import Run
from sessions_app.services import run_checkpoint, run_finish, run_pause_finish
from telemetry_app.metrics import record_run
from telemetry_app.otel import export_run_trace, otel_enabled
from telemetry_app.services import telemetry_record_run, telemetry_transaction

logger = logging.getLogger(__name__)
# A streamed model call lets the run's readers send what it produced after its first chunk and then
# after every _YIELD_EVERY chunks that arrived together (see Execution._model_request).
_YIELD_EVERY = 16


class ChildCancelled(Exception):
    """A member or step run was cancelled (the parent was asked to stop): the parent is cancelled too."""


CANCELLED_MESSAGE = "The run was cancelled."

PARSER_INSTRUCTIONS = (
    "Turn the text the user gives you into a single JSON object that matches the response schema. Keep its "
    "facts and wording; do not add information that is not in the text. Answer with the JSON object only."
)

_validators: dict[tuple[str, int], tuple[Any, Draft202012Validator]] = {}


def output_validator(component: Any) -> Draft202012Validator:
    """A compiled validator per component version, so a run never recompiles a schema."""
    key = (type(component).__name__, component.pk)
    hit = _validators.get(key)
    if hit is not None and hit[0] == component.updated_at:
        return hit[1]
    validator = Draft202012Validator(component.output_schema)
    _validators[key] = (component.updated_at, validator)
    return validator


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
    # The component's output schema (agents, teams), and what the main model is asked to answer in:
    # the schema itself, or nothing when a parser model turns the free answer into it.
    output_format: ResponseFormat | None = None
    response_format: ResponseFormat | None = None
    parser: Any = None
    # Exceptions that end a run as an error with their own `error_type` (others are internal errors).
    failures: ClassVar[tuple[type[BaseException], ...]] = ()
    # A paused run's continuation (engine/approvals.py): its pre-hooks ran before it paused.
    resumed: bool = False
    # The kind's pause event when a member or step run paused it (teams, workflows; an agent pauses
    # for its own tool calls: runner._Execution.paused).
    paused_cls: ClassVar[type[ev.RunEvent] | None] = None
    # Not a member's or step's run (those set it False): its trace is exported when it ends.
    top_level: bool = True

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
        self.cache_read_tokens = 0
        # Money (agents_app.pricing): this run's own model calls, each priced with the config that
        # answered it, and what its member or step runs cost in all (teams and workflows).
        self.cost = ZERO
        self.children_cost = ZERO
        self.children_tokens = 0  # what its member or step runs used in all
        # The model config that answered the last call (a fallback, when the main model failed), and
        # the models that failed before it.
        self.answered_by: Any = None
        self.fallbacks_used: list[dict[str, str]] = []
        # Its limits (agents_app.engine.budget); a member or step run's parent budget is set by its parent.
        self.budget = RunBudget.for_component(getattr(handle, "component", None), kind=self.kind)
        caps = getattr(handle, "quota", None)
        if caps is not None:  # what the user's, the component's and the site's quotas still allow
            self.budget.quota_tokens, self.budget.quota_cost = caps.tokens, caps.cost
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
        # A continued paused run (engine/approvals.py): what it counted before its pause (`prior`,
        # its resume state: the whole run's counts so far; its row keeps them, this execution's own
        # counts are added) and the events it emitted then (its new ones are numbered after them).
        self.prior: dict[str, Any] = {}
        self.prior_events: list[dict[str, Any]] = list(getattr(handle, "prior_events", None) or [])
        # What a pause stores besides the outcome (resume state, expiry, the ToolApproval rows).
        self.pause_record: dict[str, Any] | None = None
        self.resume = getattr(handle, "resume", None)
        if self.resume is not None:
            self.resume_from(self.resume.state)
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
        """The events so far as dicts (each converted once, for checkpoints and the final store),
        after a continued run's earlier ones."""
        dicts = self._dicts
        for item in self.log[len(dicts) :]:
            dicts.append(item.to_dict())
        return [*self.prior_events, *dicts] if self.prior_events else dicts

    # ---- pausing and going on (engine/pause.py, engine/approvals.py) ------------------------------

    def resume_from(self, state: dict[str, Any]) -> None:
        """Go on from a pause: events numbered after the stored ones, the counts and the budget
        where they were (wall-clock: its active seconds; its pre-hooks do not run again)."""
        self.resumed = True
        self.prior = state
        self.counter = itertools.count(max((e.get("event_index", -1) for e in self.prior_events), default=-1) + 1)
        self.budget.model_calls = int(state.get("model_calls") or 0)
        self.budget.tokens = self._prior_tree_tokens()
        self.budget.cost = self._prior_cost("cost")
        if self.budget.deadline is not None:
            self.budget.deadline -= float(state.get("duration") or 0.0)

    def _prior_cost(self, key: str) -> Decimal:
        """What the run cost before its pause: `cost`, the whole run's (its children's included),
        or `own_cost`, its own model calls' (older states had only `cost`)."""
        value = self.prior.get(key, self.prior.get("cost"))
        return Decimal(str(value or "0"))

    def _prior_tree_tokens(self) -> int:
        p = self.prior
        return int(p.get("tree_tokens") or int(p.get("input_tokens") or 0) + int(p.get("output_tokens") or 0))

    def resume_counts(self) -> dict[str, Any]:
        """The counting part of a paused run's resume state: the whole run's so far, so the next
        continuation (in any process) goes on from them and the row keeps them in every ending."""
        metrics = self.metrics()
        return {
            "version": 1,
            "model_calls": self.budget.model_calls,
            "input_tokens": metrics["input_tokens"],
            "output_tokens": metrics["output_tokens"],
            "cache_read_tokens": metrics.get("cache_read_tokens", 0),
            "cost": str(self._prior_cost("cost") + self.cost + self.children_cost),
            "own_cost": str(self._prior_cost("own_cost") + self.cost),
            "tree_tokens": self._prior_tree_tokens() + self.input_tokens + self.output_tokens + self.children_tokens,
            "time_to_first_token": metrics["time_to_first_token"],
            "duration": metrics["duration"],
        }

    def resume_point(self, pause: ChildPaused) -> dict[str, Any]:
        """Where a team or workflow stopped when a child paused it: what its body needs to go on."""
        raise NotImplementedError

    def paused_fields(self, pause: ChildPaused) -> dict[str, Any]:
        """The kind's own fields of its pause event (a team's member runs, a workflow's step)."""
        return {}

    def paused(self, pause: PauseRequested) -> tuple[dict[str, Any], ev.RunEvent]:
        """The stored outcome and the terminal event of a run that waits for a person. Here: a
        team or workflow whose member or step run paused (the child stored itself paused, with its
        ToolApproval rows); it waits with its child, expiring with it, and lists the child's calls."""
        if not isinstance(pause, ChildPaused) or self.paused_cls is None:
            raise NotImplementedError(f"A {self.kind} run cannot pause by itself.")
        state = {**self.resume_counts(), **self.resume_point(pause), "paused_child": str(pause.child_run_id)}
        self.pause_record = {
            "expires_at": datetime.fromisoformat(pause.expires_at),
            "resume_state": state,
            "approvals": [],
        }
        outcome = {"status": Run.Status.PAUSED, "output": self.partial_output(), "error": "", "error_type": ""}
        terminal = self.event(
            self.paused_cls,
            tools=pause.tools,
            requirements=pause.requirements,
            expires_at=pause.expires_at,
            metrics=self.metrics(),
            **self.paused_fields(pause),
        )
        return outcome, terminal

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

    def model_chain(self, config: Any) -> list[Any]:
        """`config`, then, when it is the component's main model, the component's fallback models."""
        component = getattr(self.handle, "component", None)
        if component is None or getattr(component, "model_id", None) != getattr(config, "pk", None):
            return [config]
        return [config, *fallback_configs(component)]

    async def model_call(
        self, config: Any, tools: list[Any], *, response_format: Any = None
    ) -> AsyncIterator[ev.RunEvent]:
        """One call of the model `config` with the messages so far, streamed as this kind's content
        deltas (unless the answer is structured or hooks hold it back); sets `self.response` and
        counts its tokens and cost. When the model fails in a way another model could cure (5xx,
        429, a timeout, a broken connection; after its own retries) before a reader saw any of its
        text, the component's fallback models are asked in order."""
        response_format = response_format or self.response_format
        chain = self.model_chain(config)
        for position, candidate in enumerate(chain):
            self.partial.clear()
            shown = False  # a reader saw part of this answer: another model's would not continue it
            try:
                async for item in self._model_call_once(candidate, tools, response_format):
                    shown = shown or type(item) is self.content_cls
                    yield item
            except ModelError as exc:
                if shown or position == len(chain) - 1 or not fallback_cures(exc):
                    raise
                logger.warning(
                    "Run %s: model %s failed (%s); trying fallback %s",
                    self.handle.run_id,
                    candidate.name,
                    exc.error_type,
                    chain[position + 1].name,
                )
                self.fallbacks_used.append(
                    {"model": candidate.model_id, "model_provider": candidate.provider, "error_type": exc.error_type}
                )
                continue
            self.answered_by = candidate
            return

    async def _model_call_once(
        self, config: Any, tools: list[Any], response_format: ResponseFormat | None
    ) -> AsyncIterator[ev.RunEvent]:
        """One model request between agno's ModelRequestStarted and ModelRequestCompleted (the
        latter with its tokens, cost and timing: what the run's trace shows of it)."""
        labels = {"model": config.model_id, "model_provider": config.provider}
        yield self.event(self.hook_event("ModelRequestStarted"), **labels)
        began, clock = time.time(), time.perf_counter()
        first_token = self.ttft
        cost_before = self.cost
        async for item in self._model_request(config, tools, response_format):
            yield item
        response = self.response
        ttft = None if first_token is not None or self.ttft is None else self.ttft
        yield self.event(
            self.hook_event("ModelRequestCompleted"),
            **labels,
            input_tokens=response.input_tokens,
            output_tokens=response.output_tokens,
            total_tokens=response.input_tokens + response.output_tokens,
            time_to_first_token=ttft,
            cache_read_tokens=response.cache_read_tokens,
            start_time=began,
            duration=time.perf_counter() - clock,
            cost=as_number(self.cost - cost_before),
        )

    async def _model_request(
        self, config: Any, tools: list[Any], response_format: ResponseFormat | None
    ) -> AsyncIterator[ev.RunEvent]:
        self.budget.start_model_call()
        provider = get_provider(config)
        response: ModelResponse | None = None
        if self.stream:
            async for piece in provider.stream(
                messages=self.messages_sent, tools=tools, response_format=response_format
            ):
                if not isinstance(piece, str):
                    response = piece
                    continue
                self.budget.check_time()
                self.mark_first_token()
                self.partial.append(piece)
                if response_format is None and not self.hold_output:
                    yield self.event(self.content_cls, content=piece)
                    if len(self.partial) % _YIELD_EVERY == 1:
                        # Let readers of this run send the first frame now, and then a batch every
                        # _YIELD_EVERY chunks: chunks that arrived in one network read would
                        # otherwise all leave together at the end; one write per chunk, though,
                        # cost a third of the CPU of a streamed run (LiveRun.follow_batches).
                        await asyncio.sleep(0)
            if response is None:
                raise ModelError("The model stream ended without a response.")
        else:
            response = await self.within_budget(
                provider.complete(messages=self.messages_sent, tools=tools, response_format=response_format)
            )
            self.mark_first_token()
        self.account(config, response)
        self.response = response

    async def within_budget(self, call: Any) -> Any:
        """Await a model call no longer than the run's wall-clock budget allows."""
        remaining = self.budget.remaining_seconds()
        if remaining is None:
            return await call
        try:
            return await asyncio.wait_for(call, remaining)
        except TimeoutError:
            self.budget.check_time()
            raise BudgetExceeded("The run reached its time limit.") from None

    def account(self, config: Any, response: ModelResponse) -> None:
        """Count one model call's tokens and cost (priced with the config that answered it), then
        charge them to the run's budget (which may end the run: it keeps what it counted)."""
        cost_before = self.cost
        self.input_tokens += response.input_tokens
        self.output_tokens += response.output_tokens
        self.cache_read_tokens += response.cache_read_tokens
        self.cost += call_cost(
            config,
            input_tokens=response.input_tokens,
            output_tokens=response.output_tokens,
            cache_read_tokens=response.cache_read_tokens,
        )
        self.budget.charge(tokens=response.input_tokens + response.output_tokens, cost=self.cost - cost_before)

    async def structured_answer(
        self, config: Any, validate: Callable[[str], Any], *, tools: list[Any] | None = None
    ) -> AsyncIterator[ev.RunEvent]:
        """Check the answer in `self.content` with `validate` (which raises ValidationProblem); when
        it fails, ask `config` once more with the error shown, then give up with OutputInvalid (the
        run keeps the last answer as its partial output). Sets `self.output_json`."""
        try:
            self.output_json = validate(self.content)
            return
        except ValidationProblem as problem:
            self.messages_sent += [{"role": "assistant", "content": self.content}, correction(problem)]
        async for item in self.model_call(config, tools or []):
            yield item
        self.content = self.response.content
        try:
            self.output_json = validate(self.content)
        except ValidationProblem as problem:
            self.partial[:] = [self.content]
            raise OutputInvalid(f"{problem} (after one corrected retry)") from None

    def answered_labels(self) -> dict[str, str]:
        """`model` and `model_provider` of the terminal event: the model that answered."""
        model, provider = self.telemetry_model()
        return {"model": model, "model_provider": provider}

    # ---- structured output -----------------------------------------------------------------------

    def setup_output(self, component: Any) -> None:
        """Read the component's output schema and parser model (agents and teams call this)."""
        schema = getattr(component, "output_schema", None)
        if not schema:
            return
        self.output_format = ResponseFormat(name=f"{component.slug.replace('-', '_')}_output"[:64], schema=schema)
        self.parser = getattr(component, "parser_model", None)
        self.response_format = None if self.parser is not None else self.output_format
        self._validator = output_validator(component)

    def check_output(self, text: str) -> Any:
        """`text` as JSON matching the output schema; ValidationProblem (a ValueError) if not."""
        return parse_checked(text, self._validator)

    async def structure_output(self, main_model: Any) -> AsyncIterator[ev.RunEvent]:
        """After the body, with the answer in `self.content`: a component with an output schema gets
        its answer as JSON matching it, in `self.output_json` (the raw answer stays `self.content`):
        from the parser model when it has one, else from the main model's own answer (asked once
        more when it misses the schema)."""
        if self.output_format is None:
            return
        if self.parser is not None:
            async for item in self.parse_answer(self.parser):
                yield item
        else:
            async for item in self.structured_answer(main_model, self.check_output):
                yield item

    async def parse_answer(self, parser: Any) -> AsyncIterator[ev.RunEvent]:
        """The parser model turns the free answer into the schema (one corrected retry, then
        OutputInvalid, keeping the raw answer as the run's partial output)."""
        assert self.output_format is not None
        labels = {"model": parser.model_id, "model_provider": parser.provider}
        yield self.event(self.hook_event("ParserModelResponseStarted"), **labels)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": PARSER_INSTRUCTIONS},
            {"role": "user", "content": self.content},
        ]
        provider = get_provider(parser)
        for attempt in (1, 2):
            self.budget.start_model_call()
            response = await self.within_budget(
                provider.complete(messages=messages, tools=[], response_format=self.output_format)
            )
            self.account(parser, response)
            try:
                self.output_json = parse_checked(response.content, self._validator, who="The parser model's answer")
                break
            except ValidationProblem as problem:
                if attempt == 2:
                    self.partial[:] = [self.content]
                    raise OutputInvalid(f"{problem} (after one corrected retry)") from None
                messages += [{"role": "assistant", "content": response.content}, correction(problem)]
        yield self.event(self.hook_event("ParserModelResponseCompleted"), **labels)

    def mark_first_token(self) -> None:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.started

    def counts(self, *, whole: bool) -> dict[str, Any]:
        """agno's metric names; `cost` is what the run cost with its member or step runs. `whole`:
        a continued run's counts before its pause added (what it reports and its row keeps)."""
        p = self.prior if whole else {}
        input_tokens = self.input_tokens + int(p.get("input_tokens") or 0)
        output_tokens = self.output_tokens + int(p.get("output_tokens") or 0)
        ttft = p.get("time_to_first_token")
        return {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "cache_read_tokens": self.cache_read_tokens + int(p.get("cache_read_tokens") or 0),
            "cost": as_number(self.cost + self.children_cost + (self._prior_cost("cost") if whole else ZERO)),
            "time_to_first_token": ttft if ttft is not None else self.ttft,
            "duration": time.perf_counter() - self.started + float(p.get("duration") or 0.0),
        }

    def metrics(self) -> dict[str, Any]:
        """The whole run's metrics (what its events report)."""
        return self.counts(whole=True)

    def own_metrics(self) -> dict[str, Any]:
        """What this execution counted itself: its process's metrics (a child run stores its own;
        a continued run's earlier execution counted its part), so adding up never counts a token
        twice. The stored row gets the whole run's (`stored_totals`)."""
        return self.counts(whole=False)

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

    def stored_totals(self, metrics: dict[str, Any]) -> dict[str, Any] | None:
        """What the run's row (and its telemetry event) stores when it differs from what this
        execution counted: a continued run's earlier executions added, in every ending (completed,
        failed, cancelled, paused again). None: the same."""
        if not self.prior:
            return None
        whole = self.metrics()
        return {
            "metrics": whole,
            "cost": self._prior_cost("own_cost") + self.cost,
            "total_cost": self._prior_cost("cost") + self.cost + self.children_cost,
            "cache_read_tokens": whole.get("cache_read_tokens", 0),
            "tree_tokens": self._prior_tree_tokens() + self.input_tokens + self.output_tokens + self.children_tokens,
        }

    def error_type_of(self, exc: BaseException) -> str:
        return getattr(exc, "error_type", "model_error")

    def error_message_of(self, exc: BaseException) -> str:
        return str(exc)

    def cancelled_fields(self, outcome: dict[str, Any]) -> dict[str, Any]:
        """The cancelled event's fields: the reason and, as agno sends it, the partial content."""
        fields: dict[str, Any] = {"reason": CANCELLED_MESSAGE}
        if self.cancelled_cls is not ev.WorkflowCancelled:
            fields["content"] = outcome.get("output") or ""
        return fields

    def error_fields(self) -> dict[str, Any]:
        """Extra fields of this kind's error event (a team's member runs, a workflow's failed step)."""
        return {}

    def partial_output(self) -> str:
        """What a run that did not complete keeps as its output."""
        return "".join(self.partial)

    def messages(self, outcome: dict[str, Any]) -> list[dict[str, Any]]:
        """The messages stored with the run after the user's (the agent engine keeps its tool calls);
        a paused run stores them when it ends."""
        if outcome["status"] == Run.Status.PAUSED:
            return []
        output = outcome.get("output") or ""
        return [{"role": "assistant", "content": output}] if output else []

    def state_changes(self) -> tuple[dict[str, Any], list[str]]:
        """The top-level session-state keys this run set (to new values) or deleted."""
        state, before = self.session_state, getattr(self.handle, "session_state", {})
        changed = {k: v for k, v in state.items() if k not in before or before[k] != v}
        return changed, [k for k in before if k not in state]

    def finisher(self, status: str) -> Callable[..., Any] | None:
        """`run_finish` extended with what the run's hooks produced, and for a pause with what a
        continue needs (run_pause_finish), or None."""
        finish = self.hooks.finisher(status) if self.hooks is not None else None
        if status != Run.Status.PAUSED or self.pause_record is None:
            return finish
        return functools.partial(run_pause_finish, finish=finish or run_finish, pause=self.pause_record)

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
        """The model and provider the stored run and its telemetry name: the one that answered last
        (a fallback, when the main model failed), else the component's own."""
        config = self.answered_by or getattr(getattr(self.handle, "component", None), "model", None)
        return (config.model_id, config.provider) if config is not None else ("", "")

    # ---- the lifecycle ---------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[ev.RunEvent]:
        yield self.started_event()
        outcome: dict[str, Any]
        try:
            if self.hooks is not None and not self.resumed:
                async for item in self.hooks.run_pre(self):
                    yield item
            async for item in self.body():
                yield item
            content_done = self.stream and self.kind != "workflow"
            if content_done and not self.hold_output:
                # The answer has streamed (agno's RunContentCompleted, before post-hooks and memory).
                yield self.event(self.hook_event("RunContentCompleted"))
            if self.hooks is not None:
                async for item in self.hooks.run_post(self, self.content, self.output_json, self.validate_output):
                    yield item
                self.content, self.output_json = self.hooks.content, self.hooks.output_json
            async for item in self.deliver():
                yield item
            if content_done and self.hold_output:  # held back by post-hooks, delivered just now
                yield self.event(self.hook_event("RunContentCompleted"))
            outcome, terminal = self.completed_event()
        except PauseRequested as pause:
            # Tool calls wait for a person: stored paused, with what a continue needs (no post-hooks:
            # they run when the continued run completes).
            outcome, terminal = self.paused(pause)
        except (asyncio.CancelledError, ChildCancelled) as exc:
            if isinstance(exc, asyncio.CancelledError):
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
            outcome = self._failed(Run.Status.CANCELLED, CANCELLED_MESSAGE, "cancelled")
            terminal = self.event(self.cancelled_cls, **self.cancelled_fields(outcome))
        except (BudgetExceeded, *self.failures) as exc:
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
        if self.top_level and outcome["status"] != Run.Status.PAUSED and otel_enabled():
            # In the background: the trace is read back and exported off the run's path.
            exporting = asyncio.ensure_future(db_call(export_run_trace, run_id=self.handle.run_id))
            _exports.add(exporting)
            exporting.add_done_callback(_exports.discard)
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
            # A paused run writes its messages (the user's too) only when it ends.
            message=self.handle.message if outcome["status"] != Run.Status.PAUSED else "",
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
            cost=self.cost,
            total_cost=self.cost + self.children_cost,
            cache_read_tokens=self.cache_read_tokens,
            totals=self.stored_totals(metrics),
            tree_tokens=self.input_tokens + self.output_tokens + self.children_tokens,
            config_version=self.handle.config_version,
        )


def fallback_cures(exc: ModelError) -> bool:
    """Whether another model may succeed where this one failed: an outage, a rate limit, a timeout
    or a broken connection. Not a refused key or request (the config is wrong), nor an answer that
    missed the schema (the output's problem, handled by a corrected retry)."""
    if isinstance(exc, ModelAuthError | ModelRequestError | OutputInvalid):
        return False
    return exc.status_code is None or exc.status_code >= 500 or exc.status_code == 429


_exports: set[asyncio.Future[Any]] = set()  # trace exports in flight (kept referenced until done)


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
    cost: Decimal = ZERO,
    total_cost: Decimal = ZERO,
    cache_read_tokens: int = 0,
    totals: dict[str, Any] | None = None,
    tree_tokens: int | None = None,
    config_version: int | None = None,
) -> None:
    """A run's final writes and its telemetry event: one transaction (no transaction and no query
    for telemetry when it is off; recording never raises). Its metrics are counted once stored,
    once only (a run settled by another process meanwhile is not counted twice). `totals`: what
    the row (and the run's telemetry event) stores instead (`metrics`, `cost`, `total_cost`,
    `cache_read_tokens`) when the run counted part of it in an earlier execution (a continued
    paused run): the process's metrics count each execution's own, the row the whole run's. A
    paused run records no telemetry event yet: one per run, when it ends."""
    row = totals or {}
    whole = row.get("metrics", metrics)
    with telemetry_transaction():
        stored = finish(
            run_id=run_id,
            status=outcome["status"],
            output=outcome.get("output") or "",
            output_json=outcome.get("output_json"),
            error=outcome.get("error", ""),
            error_type=outcome.get("error_type", ""),
            messages=messages,
            metrics=whole,
            events=events,
            user_message=message,
            session_id=session_id,
            state_set=state_set,
            state_unset=state_unset,
            usage={
                "model": model,
                "provider": provider,
                "cost": row.get("cost", cost),
                "total_cost": row.get("total_cost", total_cost),
                "cache_read_tokens": row.get("cache_read_tokens", cache_read_tokens),
                "tree_tokens": row.get(
                    "tree_tokens", metrics.get("total_tokens", 0) if tree_tokens is None else tree_tokens
                ),
            },
        )
        # One telemetry event per run, when it ends, with the whole run's counts (a paused run is
        # recorded when its continuation, expiry or cancel ends it).
        if outcome["status"] != Run.Status.PAUSED:
            telemetry_record_run(
                event_type=telemetry_type,
                run_id=run_id,
                session_id=session_id,
                component_id=component_id,
                model=model,
                provider=provider,
                status=outcome["status"],
                input_tokens=whole.get("input_tokens", 0),
                output_tokens=whole.get("output_tokens", 0),
                time_to_first_token=whole.get("time_to_first_token"),
                duration=whole.get("duration"),
                error_type=outcome.get("error_type", ""),
                input=message,
                output=outcome.get("output") or "",
                cost=as_number(row.get("cost", cost)),
                cache_read_tokens=row.get("cache_read_tokens", cache_read_tokens),
                config_version=config_version,
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
            cost=as_number(cost),
            model=model,
        )
