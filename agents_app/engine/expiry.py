"""Ending a paused run that nobody will continue (docs/human-in-the-loop.md): expired (its agent's
approval timeout passed, or a new message in its session expired it: an error of type
`approval_expired`) or cancelled by its user. Fail closed: its pending tool calls are marked so
and never run. Sync; the beat task (agents_app.tasks), the run service's paused-session policy and
the runtime's cancel call it, in any process.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from agents_app import events as ev
from agents_app.engine.outcome import store_run
from sessions_app.models import Run, ToolApproval
from sessions_app.services import run_claim_paused
from telemetry_app.schemas import EventType

EXPIRED_MESSAGE = "Nobody decided on its tool calls in time; they were not run."
SUPERSEDED_MESSAGE = "A new message arrived in the session before its tool calls were decided; they were not run."
CANCELLED_MESSAGE = "The paused run was cancelled; its tool calls were not run."


def mark_continued(events: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A paused run's stored events, its pauses marked `continued` (no longer the end of its stream)."""
    return [
        {**e, "continued": True} if e.get("event") in ev.PAUSE_EVENTS and not e.get("continued") else e
        for e in events or []
    ]


def paused_top(run: Run) -> Run:
    """The run a paused member's or step's run waits with: its topmost ancestor (the one to
    continue, expire or cancel; a child is never ended alone)."""
    top = run
    seen = {run.pk}
    while top.parent_run_id is not None and top.parent_run_id not in seen:
        parent = Run.objects.select_related("agent", "team", "workflow").filter(pk=top.parent_run_id).first()
        if parent is None:
            break
        seen.add(parent.pk)
        top = parent
    return top


def paused_chain(run: Run) -> list[Run]:
    """A paused run, then the paused child it waits with (`resume_state.paused_child`), and so on
    down to the agent run whose tool calls wait (a team or workflow paused by a member or step)."""
    chain = [run]
    while len(chain) < 32:
        child_id = (chain[-1].resume_state or {}).get("paused_child")
        if not child_id:
            break
        child = (
            Run.objects.select_related("agent", "team", "workflow")
            .filter(pk=child_id, parent_run_id=chain[-1].pk)
            .first()
        )
        if child is None:
            break
        chain.append(child)
    return chain


def _kind(run: Run) -> tuple[str, str, str]:
    """The run's kind, its component's slug, and its events' prefix (agno's names)."""
    if run.team_id:
        return "team", run.team.slug, "TeamRun"
    if run.workflow_id:
        return "workflow", run.workflow.slug, "Workflow"
    return "agent", run.agent.slug if run.agent else "", "Run"


def paused_run_end(
    *,
    run_id: UUID,
    cancel: bool = False,
    reason: str = EXPIRED_MESSAGE,
    decided_by_id: Any = None,
    channel: str = "expiry",
) -> bool:
    """End a paused run: expired (an error of type `approval_expired`, `reason` its message) or,
    with `cancel`, cancelled by its user. Its pending tool calls are marked so and never run
    (fail closed). A team or workflow paused by a member or step ends with it, whichever of them
    `run_id` names: every run of the paused chain ends the same way, in one transaction. Each
    keeps its counts (tokens, cost), messages and events, with a terminal event after the stored
    ones. Claimed with conditional updates, so a continue racing it wins or loses whole; True if
    this call ended it."""
    run = Run.objects.select_related("agent", "team", "workflow").filter(pk=run_id, status=Run.Status.PAUSED).first()
    if run is None:
        return False
    top = paused_top(run)
    if top.status != Run.Status.PAUSED:
        return False
    chain = paused_chain(top)
    now = timezone.now()
    started = time.perf_counter()
    if cancel:
        reason = CANCELLED_MESSAGE
    with transaction.atomic():
        for r in chain:
            events = mark_continued(r.events)
            if not run_claim_paused(run_id=r.pk, events=events, now=now):
                transaction.set_rollback(True)
                return False
        for r in reversed(chain):  # the agent run whose calls wait first, then those waiting with it
            _end_one(
                r, cancel=cancel, reason=reason, decided_by_id=decided_by_id, channel=channel, now=now, started=started
            )
    return True


def _end_one(
    run: Run, *, cancel: bool, reason: str, decided_by_id: Any, channel: str, now: Any, started: float
) -> None:
    events = mark_continued(run.events)
    kind, slug, prefix = _kind(run)
    ids = {"run_id": str(run.pk), "session_id": str(run.session_id), f"{kind}_id": slug}
    index = max((e.get("event_index", -1) for e in events), default=-1) + 1
    if cancel:
        terminal: ev.RunEvent = ev.EVENT_CLASSES[f"{prefix}Cancelled"](event_index=index, reason=reason, **ids)
        status, error_type, approval = Run.Status.CANCELLED, "cancelled", ToolApproval.Status.CANCELLED
    else:
        terminal = ev.EVENT_CLASSES[f"{prefix}Error"](
            event_index=index, content=reason, error_type="approval_expired", **ids
        )
        status, error_type, approval = Run.Status.ERROR, "approval_expired", ToolApproval.Status.EXPIRED
    state = run.resume_state or {}
    pending = list(ToolApproval.objects.filter(run=run, status=ToolApproval.Status.PENDING).order_by("position"))
    messages = list(state.get("new_messages") or [])
    messages += [
        {"role": "tool", "tool_call_id": p.tool_call_id, "content": reason, "name": p.tool_name} for p in pending
    ]
    if pending:
        ToolApproval.objects.filter(run_id=run.pk, status=ToolApproval.Status.PENDING).update(
            status=approval, decided_at=now, channel=channel, decided_by_id=decided_by_id, note=reason
        )
    store_run(
        run_id=run.pk,
        session_id=run.session_id,
        message=run.input,
        outcome={"status": status, "output": run.output, "error": reason, "error_type": error_type},
        messages=messages,
        metrics={"duration": time.perf_counter() - started},  # its process's metrics: nothing more was used
        events=[*events, terminal.to_dict()],
        state_set={},
        state_unset=[],
        telemetry_type={"agent": EventType.AGENT, "team": EventType.TEAM}.get(kind, EventType.WORKFLOW),
        component_id=slug,
        model=run.model,
        provider=run.provider,
        totals=row_totals(run),
    )


def row_totals(run: Run) -> dict[str, Any]:
    """What a run's row counted so far, as `store_run`'s `totals`: a run ended without executing
    again (expired, cancelled while paused, or settled after its process died) keeps its tokens
    and cost, those of a continued run's earlier executions included."""
    return {
        "metrics": {
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "total_tokens": run.total_tokens,
            "time_to_first_token": run.time_to_first_token,
            "duration": run.duration,
        },
        "cost": run.cost if run.cost is not None else Decimal("0"),
        "total_cost": run.total_cost if run.total_cost is not None else Decimal("0"),
        "cache_read_tokens": run.cache_read_tokens,
        "tree_tokens": run.tree_tokens,
    }


def paused_runs_expire(*, run_ids: list[Any] | None = None, limit: int = 500) -> int:
    """End the paused runs whose approval timeout has passed (of `run_ids` only, when given): the
    beat task, the embedded worker's sweep, and whoever meets such a run first (a continue, a new
    message in its session), so an overdue run can never be continued even with no beat running.
    Returns how many this call ended."""
    overdue = Run.objects.filter(status=Run.Status.PAUSED, expires_at__lte=timezone.now())
    if run_ids is not None:
        overdue = overdue.filter(pk__in=run_ids)
    ended = 0
    for run_id in list(overdue.order_by("expires_at").values_list("pk", flat=True)[:limit]):
        ended += paused_run_end(run_id=run_id, reason=EXPIRED_MESSAGE, channel="expiry")
    return ended
