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
        {**e, "continued": True} if e.get("event") == "RunPaused" and not e.get("continued") else e
        for e in events or []
    ]


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
    (fail closed). The run keeps its counts, messages and events, with a terminal event after the
    stored ones. Claimed with a conditional update, so a continue racing it wins or loses whole;
    True if this call ended it."""
    run = Run.objects.select_related("agent").filter(pk=run_id, status=Run.Status.PAUSED).first()
    if run is None:
        return False
    now = timezone.now()
    events = mark_continued(run.events)
    ids = {"run_id": str(run.pk), "session_id": str(run.session_id), "agent_id": run.agent.slug if run.agent else ""}
    index = max((e.get("event_index", -1) for e in events), default=-1) + 1
    if cancel:
        reason = CANCELLED_MESSAGE
        terminal: ev.RunEvent = ev.RunCancelled(event_index=index, reason=reason, **ids)
        status, error_type, approval = Run.Status.CANCELLED, "cancelled", ToolApproval.Status.CANCELLED
    else:
        terminal = ev.RunError(event_index=index, content=reason, error_type="approval_expired", **ids)
        status, error_type, approval = Run.Status.ERROR, "approval_expired", ToolApproval.Status.EXPIRED
    state = run.resume_state or {}
    pending = list(ToolApproval.objects.filter(run=run, status=ToolApproval.Status.PENDING).order_by("position"))
    messages = list(state.get("new_messages") or [])
    messages += [
        {"role": "tool", "tool_call_id": p.tool_call_id, "content": reason, "name": p.tool_name} for p in pending
    ]
    started = time.perf_counter()
    with transaction.atomic():
        claimed = run_claim_paused(run_id=run_id, events=events, now=now)
        if not claimed:
            return False
        ToolApproval.objects.filter(run_id=run_id, status=ToolApproval.Status.PENDING).update(
            status=approval, decided_at=now, channel=channel, decided_by_id=decided_by_id, note=reason
        )
        cost = Decimal(str(state.get("cost") or "0"))
        store_run(
            run_id=run.pk,
            session_id=run.session_id,
            message=run.input,
            outcome={"status": status, "output": run.output, "error": reason, "error_type": error_type},
            messages=messages,
            metrics={"duration": time.perf_counter() - started},  # its telemetry: nothing more was used
            events=[*events, terminal.to_dict()],
            state_set={},
            state_unset=[],
            telemetry_type=EventType.AGENT,
            component_id=ids["agent_id"],
            model=run.model,
            provider=run.provider,
            totals={
                "metrics": {
                    "input_tokens": run.input_tokens,
                    "output_tokens": run.output_tokens,
                    "total_tokens": run.total_tokens,
                    "time_to_first_token": run.time_to_first_token,
                    "duration": run.duration,
                },
                "cost": cost,
                "total_cost": cost,
                "cache_read_tokens": run.cache_read_tokens,
                "tree_tokens": run.tree_tokens,
            },
        )
    return True


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
