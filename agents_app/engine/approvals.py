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

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from agents_app.engine.expiry import mark_continued, paused_chain, paused_runs_expire, paused_top
from agents_app.engine.pause import has_image_refs, with_images
from agents_app.engine.protocol import PreparedRun, Resume
from agents_app.engine.resume import ContinuedRunHandle, continued_agent_handle, execute_continued
from agents_app.engine.team import TeamRunHandle
from agents_app.engine.workflow import WorkflowRunHandle
from agents_app.selectors import (
    agent_get_active,
    team_get_active,
    team_members_tree,
    workflow_get_active,
    workflow_steps_tree,
)
from agents_app.tools.registry import EXTERNAL_EXECUTION, USER_INPUT, ToolArgumentsError, tool_registry
from sessions_app.errors import ConflictError, DomainError, NotFoundError
from sessions_app.images import run_image_parts
from sessions_app.models import Run, Session, ToolApproval
from sessions_app.services import run_claim_paused

__all__ = [
    "ContinuedRunHandle",
    "Decision",
    "InvalidDecision",
    "PausedRunNotFound",
    "RunNotPaused",
    "UnknownToolCall",
    "UnsupportedStepRequirement",
    "decisions_from_agno_requirements",
    "decisions_from_agno_step_requirements",
    "decisions_from_agno_tools",
    "execute_continued",
    "run_continue_prepare",
]


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


class UnsupportedStepRequirement(InvalidDecision):
    """agno's workflow continue sent a step requirement of a kind we do not have (a step's own
    confirmation, its user input, a router's route selection, an output review): our workflows
    pause only when a step's agent or team waits for a person (`requires_executor_input`)."""

    code = "unsupported_step_requirement"
    field = "step_requirements"


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
        waits = data.get("requires_confirmation") or data.get("requires_user_input")
        if not (waits or data.get("external_execution_required")) and data.get("confirmed") is None:
            # A call that ran before the pause: agno's client sends the run's whole `tools` back,
            # and agno passes over those. (A waiting call left out still fails: no decision.)
            continue
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


def decisions_from_agno_requirements(requirements: list[Any]) -> list[Decision]:
    """agno's team continue body (`requirements`: RunRequirement dicts, as its client sends them
    back after `confirm()`, `reject(note)`, `provide_user_input(...)` or
    `set_external_execution_result(...)`) as decisions: each requirement's `tool_execution`, with
    the requirement's own `confirmation`, `confirmation_note`, `user_input_schema` and
    `external_execution_result` set on it where it has them."""
    if not isinstance(requirements, list) or not all(isinstance(r, dict) for r in requirements):
        raise InvalidDecision("'requirements' must be a JSON list of run requirements.")
    tools = []
    for data in requirements:
        execution = data.get("tool_execution")
        if not isinstance(execution, dict):
            raise InvalidDecision("Each requirement needs its 'tool_execution'.")
        execution = dict(execution)
        if data.get("confirmation") is not None:
            execution["confirmed"] = data["confirmation"]
        if data.get("confirmation_note") is not None:
            execution["confirmation_note"] = data["confirmation_note"]
        if data.get("external_execution_result") is not None:
            execution["result"] = data["external_execution_result"]
        if isinstance(data.get("user_input_schema"), list):
            execution["user_input_schema"] = data["user_input_schema"]
        tools.append(execution)
    return decisions_from_agno_tools(tools)


# agno's StepRequirement kinds that are agno features we do not have, by the flag that marks each.
_OTHER_STEP_KINDS = {
    "requires_confirmation": "a step's own confirmation",
    "requires_user_input": "a step's own user input",
    "requires_route_selection": "a router's route selection",
    "requires_output_review": "a step's output review",
}


def decisions_from_agno_step_requirements(step_requirements: list[Any]) -> list[Decision]:
    """agno's workflow continue body (`step_requirements`: StepRequirement dicts, as its client
    sends them back) as decisions: each executor requirement's `executor_requirements` (the paused
    step run's RunRequirements, resolved) read as the team route reads them. Any other kind is
    refused (UnsupportedStepRequirement): a workflow here waits only for its step's agent or team."""
    if not isinstance(step_requirements, list) or not all(isinstance(r, dict) for r in step_requirements):
        raise InvalidDecision("'step_requirements' must be a JSON list of step requirements.")
    requirements: list[Any] = []
    for data in step_requirements:
        other = [label for flag, label in _OTHER_STEP_KINDS.items() if data.get(flag)]
        if other:
            raise UnsupportedStepRequirement(
                f"Step {data.get('step_name') or data.get('step_id')!r}: {', '.join(other)} is not supported here; "
                "a workflow waits only for its step's agent or team (requires_executor_input)."
            )
        if not data.get("requires_executor_input"):
            raise UnsupportedStepRequirement("Each step requirement must be an executor's (requires_executor_input).")
        executor = data.get("executor_requirements")
        if not isinstance(executor, list):
            raise InvalidDecision("An executor step requirement needs its 'executor_requirements' list.")
        requirements.extend(executor)
    return decisions_from_agno_requirements(requirements)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


# ---- continuing ---------------------------------------------------------------------------------


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


def _with_images(run_id: UUID, state: dict[str, Any]) -> dict[str, Any]:
    """A resume state whose messages refer to the run's stored images, with those images again."""
    messages = state.get("messages_sent") or []
    if not has_image_refs(messages):
        return state
    return {**state, "messages_sent": with_images(messages, run_image_parts(run_id=run_id))}


def run_continue_prepare(
    *,
    run_id: UUID,
    user: Any,
    decisions: list[Decision],
    channel: str,
    agent_id: str | None = None,
    kind: str | None = None,
    any_users_run: bool = False,
    quota: Callable[[Run], Any] | None = None,
) -> PreparedRun:
    """Sync, one transaction: claim a paused run of `user`'s (any user's with `any_users_run`: an
    approver) with the decisions on all its pending tool calls, and return the handle to launch.
    The run is of any kind: a team or workflow run paused by a member or step run (down to the
    agent run whose calls wait) is claimed with the whole chain of paused runs, and its handle
    resumes them in order. Raises PausedRunNotFound (not the user's, not of `agent_id` (an agent's,
    or with `kind` a team's or workflow's slug), or a member's run: continue its parent),
    RunNotPaused, UnknownToolCall or InvalidDecision, and the component's not-found error
    (deactivated meanwhile), before anything is written."""
    runs = Run.objects.select_related("agent", "team", "workflow", "user", "config_version").filter(pk=run_id)
    if not any_users_run:
        runs = runs.filter(user=user)
    run = runs.first()
    component = run and (run.agent or run.team or run.workflow)
    run_kind = (
        "agent" if run is not None and run.agent_id else "team" if run is not None and run.team_id else "workflow"
    )
    if (
        run is None
        or component is None
        or (agent_id is not None and (component.slug != agent_id or run_kind != (kind or "agent")))
    ):
        raise PausedRunNotFound(f"No run {run_id}.")
    if run.parent_run_id is not None:
        top = paused_top(run)
        raise RunNotPaused(
            f"Run {run_id} is a member's or step's run: continue its parent run {top.pk}.",
            status=run.status,
        )
    if run.status == Run.Status.PAUSED and run.expires_at is not None and run.expires_at <= timezone.now():
        # Overdue, and no sweep ended it yet: it ends now, whatever was decided (fail closed).
        paused_runs_expire(run_ids=[run.pk])
        run.status = Run.objects.filter(pk=run.pk).values_list("status", flat=True).get()
    if run.status != Run.Status.PAUSED:
        raise RunNotPaused(f"Run {run_id} is {run.status}: it does not wait for a decision.", status=run.status)
    chain = paused_chain(run)  # the run, then each paused child down to the agent run whose calls wait
    leaf = chain[-1]
    if leaf.agent is None:
        raise RunNotPaused(f"Run {run_id} waits for no tool call.", status=run.status)
    pending = list(ToolApproval.objects.filter(run=leaf, status=ToolApproval.Status.PENDING).order_by("position"))
    try:
        resolved = _resolve(pending, decisions)
    except InvalidDecision:  # UnknownToolCall too
        # Another continue (in any process) may have claimed the run between the status read above
        # and the read of its pending calls: then the answer is the double continue's 409, not a 400.
        now_status = Run.objects.filter(pk=run.pk).values_list("status", flat=True).first()
        if now_status != Run.Status.PAUSED:
            raise RunNotPaused(
                f"Run {run_id} is {now_status}: it does not wait for a decision.", status=now_status
            ) from None
        raise
    # The components must still be active (their not-found errors; the run stays paused).
    agent_get_active(agent_id=leaf.agent.slug)
    root_component: Any = (
        agent_get_active(agent_id=run.agent.slug)
        if run_kind == "agent"
        else team_get_active(team_id=run.team.slug)
        if run_kind == "team"
        else workflow_get_active(workflow_id=run.workflow.slug)
    )
    # What the run's quotas still allow (the run service's check, which may refuse: nothing written
    # yet); the run's budget counts its earlier tokens and cost again, so they are added to the caps.
    caps = quota(run) if quota is not None else None
    state = run.resume_state or {}
    if caps is not None:
        earlier_tokens = int(
            state.get("tree_tokens") or int(state.get("input_tokens") or 0) + int(state.get("output_tokens") or 0)
        )
        earlier_cost = Decimal(str(state.get("cost") or "0"))
        caps = replace(
            caps,
            tokens=None if caps.tokens is None else caps.tokens + earlier_tokens,
            cost=None if caps.cost is None else caps.cost + earlier_cost,
        )
    now = timezone.now()
    marked = {r.pk: mark_continued(r.events) for r in chain}
    with transaction.atomic():
        for r in chain:
            if not run_claim_paused(run_id=r.pk, events=marked[r.pk], now=now):
                # Rolled back whole: a continue, expiry or cancel in another process took it first.
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
    resume: Resume | None = None
    for r in reversed(chain):  # from the agent run whose calls wait up to the run continued
        resume = Resume(
            run_id=r.pk,
            message=r.input,
            created_at=r.created_at,
            state=_with_images(r.pk, r.resume_state or {}),
            prior_events=marked[r.pk],
            decided=decided if r is leaf else [],
            child=resume,
        )
    assert resume is not None
    session_state = session_state if isinstance(session_state, dict) else {}
    handle: PreparedRun
    if run_kind == "agent":
        handle = continued_agent_handle(
            agent=root_component,
            user_id=run.user_id,
            session_id=run.session_id,
            session_state=session_state,
            resume=resume,
        )
    else:
        # A team's or workflow's run handle goes on as the same run, from the events before the pause.
        same_run: dict[str, Any] = {
            "user_id": run.user_id,
            "run_id": run.pk,
            "session_id": run.session_id,
            "message": run.input,
            "created_at": run.created_at,
            "session_state": session_state,
            "prior_events": resume.prior_events,
            "resume": resume,
        }
        if run_kind == "team":
            handle = TeamRunHandle(
                team=root_component,
                members_of=team_members_tree(root_component),
                max_depth=root_component.max_depth,
                **same_run,
            )
        else:
            steps, members = workflow_steps_tree(root_component)
            handle = WorkflowRunHandle(workflow=root_component, steps=steps, members_of=members, **same_run)
    handle.quota = caps
    # The version it started with (its telemetry event names it; the component is as it is now).
    handle.config_version = run.config_version.number if run.config_version is not None else None
    return handle
