"""Writes of sessions, runs and messages. The run engine and the edges call these; nothing else
writes these tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from sessions_app.models import Message, Run, Session
from sessions_app.selectors import session_history_messages


class SessionNotFound(LookupError):
    """No such session for this user and agent (we never reveal whether it exists for another user)."""


@dataclass(slots=True)
class StartedRun:
    run: Run
    session: Session
    history: list[dict[str, Any]]
    session_created: bool


def _session_name(message: str) -> str:
    first_line = message.strip().splitlines()[0] if message.strip() else ""
    return first_line[:80]


def run_start(*, agent: Any, user: Any, message: str, session_id: UUID | None, history_runs: int) -> StartedRun:
    """Persist the user's message and a running Run before any model call, so a crash can never
    lose them; read the session's history in the same transaction."""
    with transaction.atomic():
        if session_id is None:
            session = Session.objects.create(user=user, agent=agent, name=_session_name(message))
            created = True
            history: list[dict[str, Any]] = []
        else:
            session = Session.objects.filter(pk=session_id, user=user, agent=agent).first()
            if session is None:
                raise SessionNotFound(f"No session {session_id} for agent {agent.slug!r}.")
            created = False
            history = session_history_messages(session_id=session.pk, runs=history_runs)
            Session.objects.filter(pk=session.pk).update(updated_at=timezone.now())
        run = Run.objects.create(
            session=session,
            agent=agent,
            user=user,
            status=Run.Status.RUNNING,
            input=message,
            model=agent.model.model_id,
            provider=agent.model.provider,
        )
        Message.objects.create(run=run, role=Message.Role.USER, content=message, position=0)
    return StartedRun(run=run, session=session, history=history, session_created=created)


def run_finish(
    *,
    run_id: UUID,
    status: str,
    output: str,
    output_json: Any,
    error: str,
    error_type: str,
    messages: list[dict[str, Any]],
    metrics: dict[str, Any],
    events: list[dict[str, Any]] | None = None,
) -> None:
    """Store what the run produced, in one transaction: the new messages and the run's outcome.

    Messages are stored even for failed runs (partial output is kept). The update is guarded by
    status=running so a run that was already finished elsewhere is not overwritten.
    """
    rows = [
        Message(
            run_id=run_id,
            role=m["role"],
            content=m.get("content") or "",
            tool_calls=m.get("tool_calls"),
            tool_call_id=m.get("tool_call_id", ""),
            name=m.get("name", ""),
            position=index,
        )
        for index, m in enumerate(messages, start=1)
    ]
    with transaction.atomic():
        updated = Run.objects.filter(pk=run_id, status=Run.Status.RUNNING).update(
            status=status,
            output=output,
            output_json=output_json,
            error=error,
            error_type=error_type,
            input_tokens=metrics.get("input_tokens", 0),
            output_tokens=metrics.get("output_tokens", 0),
            total_tokens=metrics.get("total_tokens", 0),
            time_to_first_token=metrics.get("time_to_first_token"),
            duration=metrics.get("duration"),
            events=events,
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
        # updated == 0: the run was deleted with its session meanwhile; nothing left to attach to.
        if updated and rows:
            Message.objects.bulk_create(rows)


def session_rename(*, session: Session, name: str) -> Session:
    session.name = name
    session.save(update_fields=["name", "updated_at"])
    return session


def session_delete(*, session: Session) -> None:
    session.delete()
