"""Continuing, expiring and cancelling paused runs (docs/human-in-the-loop.md), from any process:
everything a continue needs is in the database (the run's `resume_state`, its ToolApproval rows,
its stored events), nothing in the memory of the process that paused it.

* `run_continue_prepare` (sync, one transaction): check the decisions against the pending tool
  calls, claim the run with a conditional update (paused -> running: a second continue, in any
  process, finds it running and gets 409 `run_not_paused`), record each decision (who, when,
  what, the arguments approved), and return a handle of the engine's protocol that the runtime
  launches like any run. Its events continue the stored ones (same run id, `event_index` going
  on), starting with RunContinued.

Ending a paused run nobody continues (expiry, cancel) is engine/expiry.py.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from agents_app import events as ev
from agents_app.engine.expiry import mark_continued, paused_runs_expire
from agents_app.engine.pause import tool_execution
from agents_app.engine.runner import RunHandle, _Execution
from agents_app.providers.base import ToolCallRequest
from agents_app.selectors import agent_get_active
from agents_app.tools.registry import EXTERNAL_EXECUTION, USER_INPUT, ToolArgumentsError, tool_registry
from sessions_app.errors import ConflictError, DomainError, NotFoundError
from sessions_app.models import Run, Session, ToolApproval
from sessions_app.services import run_claim_paused


class RunNotPaused(ConflictError):
    """The run does not wait for a decision (it completed, failed, is running, or was continued
    by someone else a moment ago)."""

    code = "run_not_paused"

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message, status=status)


class PausedRunNotFound(NotFoundError):
    """No such run for this user (we never tell whether it exists for someone else)."""

    code = "not_found"
    default_detail = "No such run."


class InvalidDecision(DomainError, ValueError):
    """The decisions do not fit the pending tool calls: a call without a decision, a decision
    twice, arguments that do not fit the tool, an external result missing. Nothing was changed."""

    code = "invalid_decision"
    status = 400
    field = "decisions"


class UnknownToolCall(InvalidDecision):
    """A decision names a tool call the run does not wait for."""

    code = "unknown_tool_call"


@dataclass(slots=True)
class Decision:
    """A person's decision on one pending tool call: approve (with `arguments` filled in or edited,
    or an externally executed tool's `result`) or reject (with a `note` the model is told)."""

    tool_call_id: str
    approve: bool
    note: str = ""
    arguments: dict[str, Any] | None = None
    result: str | None = None


def decisions_from_agno_tools(tools: list[Any]) -> list[Decision]:
    """agno's continue body (`tools`: ToolExecution dicts, as its client sends them back) as
    decisions: `confirmed` approves or rejects (with `confirmation_note`); a user-input call's
    `user_input_schema` values (and its `tool_args`) are the arguments; an external call's
    `result` is its result. Raises InvalidDecision for a shape that is not a list of objects."""
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise InvalidDecision("'tools' must be a JSON list of tool executions.")
    decisions = []
    for data in tools:
        call_id = data.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidDecision("Each tool execution needs its 'tool_call_id'.")
        arguments = dict(data["tool_args"]) if isinstance(data.get("tool_args"), dict) else None
        schema = data.get("user_input_schema")
        if isinstance(schema, list):
            values = {
                f["name"]: f.get("value") for f in schema if isinstance(f, dict) and isinstance(f.get("name"), str)
            }
            arguments = {**(arguments or {}), **{k: v for k, v in values.items() if v is not None}}
        result = data.get("result")
        if data.get("external_execution_required") and result is not None:
            decisions.append(Decision(call_id, True, result=_as_text(result), arguments=arguments))
        elif data.get("confirmed") is False:
            decisions.append(Decision(call_id, False, note=str(data.get("confirmation_note") or "")))
        elif data.get("confirmed") is True or data.get("answered") is True or data.get("requires_user_input"):
            decisions.append(Decision(call_id, True, arguments=arguments))
        elif data.get("external_execution_required"):
            raise InvalidDecision(f"Tool call {call_id}: an externally executed call needs its 'result'.")
        else:
            raise InvalidDecision(f"Tool call {call_id}: set 'confirmed' to true or false.")
    return decisions


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


# ---- continuing ---------------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class ContinuedRunHandle(RunHandle):
    """A paused agent run, claimed (running again) with its decisions: what the engine needs to go
    on where it stopped (`resume_state`), the decided calls, and its stored events."""

    resume_state: dict[str, Any] = field(default_factory=dict)
    decided: list[dict[str, Any]] = field(default_factory=list)

    def execute_events(self, *, stream: bool) -> AsyncIterator[ev.RunEvent]:
        return execute_continued(self, stream=stream)


def _resolve(pending: list[ToolApproval], decisions: list[Decision]) -> list[tuple[ToolApproval, dict[str, Any]]]:
    """Each pending call with its decision's writes (status, approved_args, result, note); raises
    UnknownToolCall or InvalidDecision before anything is written."""
    by_id = {row.tool_call_id: row for row in pending}
    given: dict[str, Decision] = {}
    for decision in decisions:
        if decision.tool_call_id not in by_id:
            waiting = ", ".join(by_id) or "none"
            raise UnknownToolCall(
                f"The run does not wait for tool call {decision.tool_call_id!r} (it waits for: {waiting})."
            )
        if decision.tool_call_id in given:
            raise InvalidDecision(f"Tool call {decision.tool_call_id!r} has two decisions.")
        given[decision.tool_call_id] = decision
    missing = [call_id for call_id in by_id if call_id not in given]
    if missing:
        raise InvalidDecision(f"Decide on every pending tool call; no decision for: {', '.join(missing)}.")
    resolved = []
    for row in pending:
        decision = given[row.tool_call_id]
        if not decision.approve:
            resolved.append((row, {"status": ToolApproval.Status.REJECTED, "note": decision.note[:10_000]}))
            continue
        args = {**row.tool_args, **(decision.arguments or {})}
        writes: dict[str, Any] = {"status": ToolApproval.Status.APPROVED, "note": decision.note[:10_000]}
        if row.requirement == EXTERNAL_EXECUTION:
            if decision.result is None:
                raise InvalidDecision(f"Tool call {row.tool_call_id!r} is executed by the client: send its 'result'.")
            writes.update(approved_args=row.tool_args, result=decision.result)
        else:
            if row.requirement == USER_INPUT:
                blank = [name for name in row.user_input_fields if args.get(name) is None]
                if blank:
                    raise InvalidDecision(f"Tool call {row.tool_call_id!r} needs a value for: {', '.join(blank)}.")
            tool = tool_registry.get(row.tool_name)
            if tool is not None:
                try:
                    tool.validate(args)
                except ToolArgumentsError as exc:
                    raise InvalidDecision(f"Tool call {row.tool_call_id!r}: {exc}") from None
            writes["approved_args"] = args
        resolved.append((row, writes))
    return resolved


def run_continue_prepare(
    *,
    run_id: UUID,
    user: Any,
    decisions: list[Decision],
    channel: str,
    agent_id: str | None = None,
    any_users_run: bool = False,
    quota: Callable[[Run], Any] | None = None,
) -> ContinuedRunHandle:
    """Sync, one transaction: claim a paused agent run of `user`'s (any user's with
    `any_users_run`: an approver) with the decisions on all its pending tool calls, and return
    the handle to launch. Raises PausedRunNotFound (not the user's, or not of `agent_id`),
    RunNotPaused, UnknownToolCall or InvalidDecision, and the agent's AgentNotFound (deactivated
    meanwhile), before anything is written."""
    runs = Run.objects.select_related("agent", "user", "config_version").filter(pk=run_id)
    if not any_users_run:
        runs = runs.filter(user=user)
    run = runs.first()
    if run is None or (agent_id is not None and (run.agent is None or run.agent.slug != agent_id)):
        raise PausedRunNotFound(f"No run {run_id}.")
    if run.status == Run.Status.PAUSED and run.expires_at is not None and run.expires_at <= timezone.now():
        # Overdue, and no sweep ended it yet: it ends now, whatever was decided (fail closed).
        paused_runs_expire(run_ids=[run.pk])
        run.status = Run.objects.filter(pk=run.pk).values_list("status", flat=True).get()
    if run.status != Run.Status.PAUSED or run.agent is None:
        raise RunNotPaused(f"Run {run_id} is {run.status}: it does not wait for a decision.", status=run.status)
    pending = list(ToolApproval.objects.filter(run=run, status=ToolApproval.Status.PENDING).order_by("position"))
    resolved = _resolve(pending, decisions)
    agent = agent_get_active(agent_id=run.agent.slug)
    # What the run's quotas still allow (the run service's check, which may refuse: nothing written
    # yet); the run's budget counts its earlier tokens and cost again, so they are added to the caps.
    caps = quota(run) if quota is not None else None
    state = run.resume_state or {}
    if caps is not None:
        earlier_tokens = int(state.get("input_tokens") or 0) + int(state.get("output_tokens") or 0)
        earlier_cost = Decimal(str(state.get("cost") or "0"))
        caps = replace(
            caps,
            tokens=None if caps.tokens is None else caps.tokens + earlier_tokens,
            cost=None if caps.cost is None else caps.cost + earlier_cost,
        )
    now = timezone.now()
    events = mark_continued(run.events)
    with transaction.atomic():
        claimed = run_claim_paused(run_id=run_id, events=events, now=now)
        if not claimed:
            raise RunNotPaused(f"Run {run_id} was continued or ended a moment ago.", status=Run.Status.RUNNING)
        for row, writes in resolved:
            ToolApproval.objects.filter(pk=row.pk, status=ToolApproval.Status.PENDING).update(
                decided_by=user if user is not None and user.pk is not None else None,
                decided_at=now,
                channel=channel,
                **writes,
            )
        session_state = Session.objects.filter(pk=run.session_id).values_list("state", flat=True).first()
    decided = [
        {
            "approval_id": str(row.pk),
            "tool_call_id": row.tool_call_id,
            "tool_name": row.tool_name,
            "requirement": row.requirement,
            "tool_args": row.tool_args,
            "user_input_fields": row.user_input_fields,
            "created_at": int(row.created_at.timestamp()),
            **writes,
        }
        for row, writes in resolved
    ]
    return ContinuedRunHandle(
        agent=agent,
        user_id=run.user_id,
        run_id=run.pk,
        session_id=run.session_id,
        message=run.input,
        created_at=run.created_at,
        session_state=session_state if isinstance(session_state, dict) else {},
        resume_state=state,
        decided=decided,
        prior_events=events,
        quota=caps,
        # The version it started with (its telemetry event names it; the agent is as it is now).
        config_version=run.config_version.number if run.config_version is not None else None,
    )


def _rejection(note: str) -> str:
    return f"Rejected by the user: {note}" if note else "Rejected by the user."


class _ContinuedExecution(_Execution):
    """An agent run going on after its pause: the decided calls first (the approved ones run, the
    rejected ones and external results are told to the model), then the model loop as usual. Its
    counts add to what the run counted before (its row); its telemetry counts only its own."""

    resumed = True

    def __init__(self, handle: ContinuedRunHandle, *, stream: bool) -> None:
        super().__init__(handle, stream=stream)
        state = handle.resume_state
        self.prior = state
        self.prior_events = handle.prior_events
        self.counter = itertools.count(max((e.get("event_index", -1) for e in handle.prior_events), default=-1) + 1)
        self.messages_sent = list(state.get("messages_sent") or [])
        self.new_messages = list(state.get("new_messages") or [])
        self.tool_calls_used = int(state.get("tool_calls_used") or 0)
        self.prior_cost = Decimal(str(state.get("cost") or "0"))
        # Its budget goes on from what the run used before (wall-clock: its active seconds).
        self.budget.model_calls = int(state.get("model_calls") or 0)
        self.budget.tokens = int(state.get("input_tokens") or 0) + int(state.get("output_tokens") or 0)
        self.budget.cost = self.prior_cost
        if self.budget.deadline is not None:
            self.budget.deadline -= float(state.get("duration") or 0.0)

    def started_event(self) -> ev.RunEvent:
        return self.event(ev.RunContinued, tools=[self._execution(d) for d in self.handle.decided])

    @staticmethod
    def _execution(decided: dict[str, Any]) -> dict[str, Any]:
        approved = decided["status"] == ToolApproval.Status.APPROVED
        return tool_execution(
            tool_call_id=decided["tool_call_id"],
            tool_name=decided["tool_name"],
            tool_args=decided.get("approved_args") or decided["tool_args"],
            kind=decided["requirement"],
            schema=None,
            created_at=decided["created_at"],
            approval_id=decided["approval_id"],
            confirmed=approved,
            note=decided.get("note") or None,
            result=decided.get("result"),
        )

    async def body(self) -> AsyncIterator[ev.RunEvent]:
        async for item in self._apply_decisions():
            yield item
        async for item in super().body():
            yield item

    async def _apply_decisions(self) -> AsyncIterator[ev.RunEvent]:
        to_run: list[ToolCallRequest] = []
        for decided in self.handle.decided:
            call_id, name = decided["tool_call_id"], decided["tool_name"]
            if decided["status"] != ToolApproval.Status.APPROVED:
                text = _rejection(decided.get("note") or "")
                info = {
                    "tool_call_id": call_id,
                    "tool_name": name,
                    "tool_args": decided["tool_args"],
                    "result": None,
                    "tool_call_error": True,
                    "confirmed": False,
                    "confirmation_note": decided.get("note") or None,
                }
                yield self.event(ev.ToolCallError, tool=info, error=text)
                self._tool_message(call_id, name, text)
            elif decided["requirement"] == EXTERNAL_EXECUTION:
                result = decided.get("result") or ""
                info = {
                    "tool_call_id": call_id,
                    "tool_name": name,
                    "tool_args": decided["tool_args"],
                    "result": result,
                    "tool_call_error": False,
                    "external_execution_required": True,
                }
                yield self.event(ev.ToolCallCompleted, tool=info, content=result)
                self._tool_message(call_id, name, result)
            else:
                to_run.append(ToolCallRequest(call_id, name, json.dumps(decided["approved_args"])))
        if to_run:
            async for item in self.run_calls(to_run):
                yield item

    def _tool_message(self, call_id: str, name: str, content: str) -> None:
        self.messages_sent.append({"role": "tool", "tool_call_id": call_id, "content": content})
        self.new_messages.append({"role": "tool", "tool_call_id": call_id, "content": content, "name": name})

    # ---- its counts: the run's so far plus its own ------------------------------------------------

    def event_dicts(self) -> list[dict[str, Any]]:
        return [*self.prior_events, *super().event_dicts()]

    def own_metrics(self) -> dict[str, Any]:
        return super().metrics()

    def metrics(self) -> dict[str, Any]:
        own = super().metrics()
        prior = self.prior
        data = dict(own)
        for key in ("input_tokens", "output_tokens", "cache_read_tokens"):
            data[key] = own[key] + int(prior.get(key) or 0)
        data["total_tokens"] = data["input_tokens"] + data["output_tokens"]
        data["cost"] = float(self.prior_cost + self.cost + self.children_cost)
        if prior.get("time_to_first_token") is not None:
            data["time_to_first_token"] = prior["time_to_first_token"]
        data["duration"] = own["duration"] + float(prior.get("duration") or 0.0)
        return data

    def resume_state(self) -> dict[str, Any]:
        state = super().resume_state()
        state["cost"] = str(self.prior_cost + self.cost + self.children_cost)
        return state

    def stored_totals(self, metrics: dict[str, Any]) -> dict[str, Any] | None:
        total = self.prior_cost + self.cost
        return {
            "metrics": self.metrics(),
            "cost": total,
            "total_cost": total + self.children_cost,
            "cache_read_tokens": self.cache_read_tokens + int(self.prior.get("cache_read_tokens") or 0),
            # What quotas count: the whole run's tokens (an agent run's children: none yet).
            "tree_tokens": self.metrics()["total_tokens"] + self.children_tokens,
        }


async def execute_continued(handle: ContinuedRunHandle, *, stream: bool = False) -> AsyncIterator[ev.RunEvent]:
    """Go on with a claimed paused run, yielding its new events (RunContinued first); the last is
    terminal (or RunPaused again), and the run is stored before it is yielded."""
    async for item in _ContinuedExecution(handle, stream=stream).run():
        yield item
