"""Writes of sessions, runs and messages. The run engine and the edges call these; nothing else
writes these tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from sessions_app.models import Message, Run, Session
from sessions_app.selectors import session_history_messages


class SessionNotFound(LookupError):
    """No such session for this user and agent (we never reveal whether it exists for another user)."""


class SessionBusy(Exception):
    """The session has a run still going. Raised before anything is written; `policy` is the agent's
    busy_session_policy, so an async caller can honour "queue" or "interrupt" (agents_app.runtime) and
    an edge can answer "reject" with a 409 or an error frame."""

    def __init__(self, message: str, *, session_id: UUID, policy: str, running_run_ids: list[UUID]) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.policy = policy
        self.running_run_ids = running_run_ids


@dataclass(slots=True)
class StartedRun:
    run: Run
    session: Session
    history: list[dict[str, Any]]
    session_created: bool


def _session_name(message: str) -> str:
    first_line = message.strip().splitlines()[0] if message.strip() else ""
    return first_line[:80]


def _running_runs(session_id: Any, now: Any) -> Any:
    """Runs of the session still going. A run marked running for longer than RUN_STALE_SECONDS is
    ignored: its server process most likely died, and it must not block the session forever."""
    from agents_app.conf import agentos_settings

    since = now - timedelta(seconds=float(agentos_settings.RUN_STALE_SECONDS))
    return Run.objects.filter(
        session_id=session_id, status=Run.Status.RUNNING, created_at__gte=since, parent_run__isnull=True
    )


def run_start(*, agent: Any, user: Any, message: str, session_id: UUID | None, history_runs: int) -> StartedRun:
    """Persist the user's message and a running Run before any model call, so a crash can never
    lose them; read the session's history in the same transaction.

    Raises SessionBusy (nothing written) when the session already has a running run: runs of one
    session never overlap, so no run is answered from a history another run is still writing.
    """
    with transaction.atomic():
        if session_id is None:
            session = Session.objects.create(user=user, agent=agent, name=_session_name(message))
            created = True
            history: list[dict[str, Any]] = []
        else:
            now = timezone.now()
            # The UPDATE comes first: it locks the session row (PostgreSQL; SQLite's IMMEDIATE
            # transaction holds the write lock already) so two messages racing into one session are
            # serialized, and the busy check below sees the other's committed run. Same query count
            # as a plain lookup: the busy check is an EXISTS on the lookup itself.
            if not Session.objects.filter(pk=session_id, user=user, agent=agent).update(updated_at=now):
                raise SessionNotFound(f"No session {session_id} for agent {agent.slug!r}.")
            session = (
                Session.objects.filter(pk=session_id).annotate(busy=Exists(_running_runs(OuterRef("pk"), now))).get()
            )
            if session.busy:
                running = list(_running_runs(session.pk, now).values_list("pk", flat=True))
                raise SessionBusy(
                    f"Session {session_id} is still answering a previous message.",
                    session_id=session.pk,
                    policy=getattr(agent, "busy_session_policy", "reject"),
                    running_run_ids=running,
                )
            created = False
            history = session_history_messages(session_id=session.pk, runs=history_runs)
        run = Run.objects.create(
            session=session,
            agent=agent,
            user=user,
            status=Run.Status.RUNNING,
            input=message,
            model=agent.model.model_id,
            provider=agent.model.provider,
        )
        # The user's message is the run's `input` from here on; its Message row (position 0) is
        # written with the run's other messages when it ends, saving an INSERT per run.
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
    on_finish: Callable[[], None] | None = None,
    user_message: str | None = None,
) -> None:
    """Store what the run produced, in one transaction: the new messages and the run's outcome.

    Messages are stored even for failed runs (partial output is kept). The update is guarded by
    status=running so a run that was already finished elsewhere is not overwritten. `on_finish` (the
    run's hooks: agents_app.services.run_finish_with_hooks) runs inside the same transaction, only
    when the run was stored. `user_message` (the run's input, as the pre-hooks left it) becomes the
    message at position 0.
    """
    rows = [Message(run_id=run_id, role=Message.Role.USER, content=user_message, position=0)] if user_message else []
    rows += [
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
        if updated and on_finish is not None:
            on_finish()


def session_rename(*, session: Session, name: str) -> Session:
    session.name = name
    session.save(update_fields=["name", "updated_at"])
    return session


def session_delete(*, session: Session) -> None:
    session.delete()


def session_state_merge(*, session_id: UUID, state_set: dict[str, Any], state_unset: list[str]) -> bool:
    """Apply top-level key changes to a session's state, merged into the state as it is now (the row is
    locked), so a writer of other keys (a concurrent background hook) is never overwritten. Returns
    False when the session no longer exists. Call it inside the transaction that makes the change
    final (the run's finishing one, or a hook execution's success)."""
    with transaction.atomic(savepoint=False):
        session = Session.objects.select_for_update().only("pk", "state").filter(pk=session_id).first()
        if session is None:
            return False
        state = dict(session.state) if isinstance(session.state, dict) else {}
        state.update(state_set)
        for key in state_unset:
            state.pop(key, None)
        # No updated_at bump: a hook changing state must not reorder the user's session list.
        Session.objects.filter(pk=session_id).update(state=state)
    return True


# ---- Teams and workflows: their runs, and the member and step runs under them ----------------


def component_run_start(
    *, team: Any = None, workflow: Any = None, user: Any, message: str, session_id: UUID | None, history_runs: int
) -> StartedRun:
    """`run_start` for a team or a workflow (exactly one): the message and a running Run persisted
    before any model call; a busy session raises SessionBusy (policy "reject") with nothing written."""
    component = {"team": team} if team is not None else {"workflow": workflow}
    ((kind, obj),) = component.items()
    with transaction.atomic():
        if session_id is None:
            session = Session.objects.create(user=user, name=_session_name(message), **component)
            created = True
            history: list[dict[str, Any]] = []
        else:
            now = timezone.now()
            if not Session.objects.filter(pk=session_id, user=user, **component).update(updated_at=now):
                raise SessionNotFound(f"No session {session_id} for {kind} {obj.slug!r}.")
            session = Session.objects.get(pk=session_id)
            running = list(_running_runs(session.pk, now).values_list("pk", flat=True))
            if running:
                raise SessionBusy(
                    f"Session {session_id} is still answering a previous message.",
                    session_id=session.pk,
                    policy="reject",
                    running_run_ids=running,
                )
            created = False
            history = session_history_messages(session_id=session.pk, runs=history_runs) if history_runs else []
        model = getattr(obj, "model", None)
        run = Run.objects.create(
            session=session,
            user=user,
            status=Run.Status.RUNNING,
            input=message,
            model=model.model_id if model is not None else "",
            provider=model.provider if model is not None else "",
            **component,
        )
    return StartedRun(run=run, session=session, history=history, session_created=created)


def child_run_start(
    *, parent_run_id: UUID, session_id: UUID, user_id: Any, message: str, agent: Any = None, team: Any = None
) -> Run:
    """A member's or step's run under its parent run, in the parent's session. No busy check: the
    parent holds the session, and its children run inside it (some at the same time)."""
    model = (agent or team).model
    return Run.objects.create(
        session_id=session_id,
        parent_run_id=parent_run_id,
        user_id=user_id,
        agent=agent,
        team=team,
        status=Run.Status.RUNNING,
        input=message,
        model=model.model_id,
        provider=model.provider,
    )
