"""Writes of sessions, runs and messages. The run engine and the edges call these; nothing else
writes these tables."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from sessions_app import statements
from sessions_app.conf import agentos_settings
from sessions_app.errors import ConflictError, DomainError, NotFoundError
from sessions_app.images import ImageInput, image_files_delete, image_rows_create
from sessions_app.liveness import process_id
from sessions_app.models import Memory, MemoryOptimization, Message, Run, RunImage, Session, ToolApproval
from sessions_app.selectors import memory_scope_filter, session_history


class SessionNotFound(NotFoundError):
    """No such session for this user and agent (we never reveal whether it exists for another user)."""

    code = "unknown_session"
    default_detail = "No such session."


class SessionEnded(ConflictError):
    """The session was ended: it stays readable, but takes no more messages (start a new one)."""

    code = "session_ended"

    def __init__(self, message: str, *, session_id: UUID) -> None:
        super().__init__(message, session_id=session_id)
        self.session_id = session_id


class SessionBusy(ConflictError):
    """The session has a run still going. Raised before anything is written; `policy` is the agent's
    busy_session_policy, so an async caller can honour "queue" or "interrupt" (agents_app.runtime) and
    an edge can answer "reject" with a 409 or an error frame."""

    code = "session_busy"

    def __init__(self, message: str, *, session_id: UUID, policy: str, running_run_ids: list[UUID]) -> None:
        super().__init__(message, session_id=session_id)
        self.session_id = session_id
        self.policy = policy
        self.running_run_ids = running_run_ids


class SessionPaused(ConflictError):
    """The session's last run is paused, waiting for a person to decide on its tool calls
    (docs/human-in-the-loop.md), and the component's `paused_session_policy` is "reject" (with
    "expire", the run service expires the paused run and starts the new one). Nothing was written."""

    code = "session_paused"

    def __init__(self, message: str, *, session_id: UUID, policy: str, paused_run_ids: list[UUID]) -> None:
        super().__init__(message, session_id=session_id, paused_run_ids=[str(r) for r in paused_run_ids])
        self.session_id = session_id
        self.policy = policy
        self.paused_run_ids = paused_run_ids


@dataclass(slots=True)
class StartedRun:
    run: Run
    session: Session
    history: list[dict[str, Any]]
    session_created: bool
    # True when the session has (or, once this run ends, will have) completed runs outside both the
    # history window and the summary: a summary would have something to add.
    history_overflow: bool = False
    # The image files written with the run (sessions_app.images), to delete if the start is undone.
    image_files: list[str] = field(default_factory=list)


def _session_name(message: str) -> str:
    first_line = message.strip().splitlines()[0] if message.strip() else ""
    return first_line[:80]


def _running_since(now: Any) -> Any:
    """A run marked running since before this is ignored: its server process most likely died,
    and it must not block the session forever (RUN_STALE_SECONDS)."""
    return now - timedelta(seconds=float(agentos_settings.RUN_STALE_SECONDS))


def _running_runs(session_id: Any, now: Any) -> Any:
    """Runs of the session still going (see `_running_since`)."""
    since = _running_since(now)
    # (A continued paused run counts from when it was continued.)
    return Run.objects.filter(
        Q(created_at__gte=since) | Q(resumed_at__gte=since),
        session_id=session_id,
        status=Run.Status.RUNNING,
        parent_run__isnull=True,
    )


def _paused_runs(session_id: Any) -> Any:
    """The session's runs waiting for a person (a member's or step's run never pauses its session)."""
    return Run.objects.filter(session_id=session_id, status=Run.Status.PAUSED, parent_run__isnull=True)


def run_start(
    *,
    kind: str,
    component: Any,
    user: Any,
    message: str,
    session_id: UUID | None,
    history_runs: int | None,
    history_max_chars: int | None = None,
    history_max_messages: int | None = None,
    images: Sequence[ImageInput] = (),
    config_version_id: int | None = None,
) -> StartedRun:
    """Persist a running Run of an agent, a team or a workflow (`kind`, `component`) before any
    model call, so a crash can never lose the message; read the session (its state and summary) and
    its bounded history (None: none, for workflows) in the same transaction.

    A new session starts with a copy of the component's initial session state, if it has one.
    Raises SessionNotFound, SessionEnded, or SessionBusy (the session has a running run; runs of one
    session never overlap, so no run is answered from a history, or a state, another run is still
    writing; `policy` is the component's busy_session_policy), before anything is written.

    `images` (checked by sessions_app.images) are stored with the run, in the same transaction: a
    RunImage row each, uploads written through the default storage. Should the transaction fail,
    the files written are deleted; `StartedRun.image_files` names them, for a caller whose own
    enclosing transaction might still roll back.
    """
    owner = {kind: component}
    written: list[str] = []
    try:
        return _run_start(
            kind=kind,
            owner=owner,
            component=component,
            user=user,
            message=message,
            session_id=session_id,
            history_runs=history_runs,
            history_max_chars=history_max_chars,
            history_max_messages=history_max_messages,
            images=images,
            written=written,
            config_version_id=config_version_id,
        )
    except BaseException:
        image_files_delete(written)
        raise


def _run_start(
    *,
    kind: str,
    owner: dict[str, Any],
    component: Any,
    user: Any,
    message: str,
    session_id: UUID | None,
    history_runs: int | None,
    history_max_chars: int | None,
    history_max_messages: int | None,
    images: Sequence[ImageInput],
    written: list[str],
    config_version_id: int | None = None,
) -> StartedRun:
    with transaction.atomic():
        overflow = False
        history: list[dict[str, Any]] = []
        created = False
        if session_id is None:
            initial = getattr(component, "initial_session_state", None)
            state = copy.deepcopy(initial) if isinstance(initial, dict) else {}
            session = Session(user=user, name=_session_name(message), state=state, **owner)
            statements.insert([session])
            created = True
        else:
            now = timezone.now()
            # The UPDATE comes first: it locks the session row (PostgreSQL; SQLite's IMMEDIATE
            # transaction holds the write lock already) so two messages racing into one session are
            # serialized, and the busy check sees the other's committed run (sessions_app.statements).
            lock = {"session_id": session_id, "user_id": user.pk, "owner": kind, "owner_id": component.pk}
            lock.update(now=now, running_since=_running_since(now))
            found = statements.session_lock_and_read(**lock)
            if found is None:
                created = _session_create_chosen(
                    session_id=session_id, kind=kind, owner=owner, component=component, user=user, message=message
                )
                found = statements.session_lock_and_read(**lock)
                if found is None:  # deleted meanwhile
                    raise SessionNotFound(
                        f"No session {session_id} for {kind} {component.slug!r}.", session_id=session_id
                    )
            session, busy, paused = found
            if session.ended_at is not None:
                raise SessionEnded(
                    f"Session {session_id} has ended; it takes no more messages. Start a new session.",
                    session_id=session.pk,
                )
            if busy:
                running = list(_running_runs(session.pk, now).values_list("pk", flat=True))
                raise SessionBusy(
                    f"Session {session_id} is still answering a previous message.",
                    session_id=session.pk,
                    policy=getattr(component, "busy_session_policy", "reject"),
                    running_run_ids=running,
                )
            if paused:
                paused = list(_paused_runs(session.pk).values_list("pk", flat=True))
                raise SessionPaused(
                    f"Session {session_id} waits for a decision on the tool calls of run {paused[0]}: continue "
                    "or cancel that run first.",
                    session_id=session.pk,
                    policy=getattr(component, "paused_session_policy", "reject"),
                    paused_run_ids=paused,
                )
            if history_runs is not None and not created:
                window = session_history(
                    session_id=session.pk,
                    runs=history_runs,
                    max_chars=history_max_chars,
                    max_messages=history_max_messages,
                    after=session.summary_until,
                )
                history, overflow = window.messages, window.overflow
        model = getattr(component, "model", None)
        run = Run(
            session=session,
            user=user,
            status=Run.Status.RUNNING,
            input=message,
            model=model.model_id if model is not None else "",
            provider=model.provider if model is not None else "",
            owner=process_id(),
            config_version_id=config_version_id,
            **owner,
        )
        statements.insert([run])
        # The user's message is the run's `input` from here on; its Message row (position 0) is
        # written with the run's other messages when it ends, saving an INSERT per run.
        if images:
            written.extend(image_rows_create(run=run, images=images))
    return StartedRun(
        run=run,
        session=session,
        history=history,
        session_created=created,
        history_overflow=overflow,
        image_files=written,
    )


def _session_create_chosen(
    *, session_id: UUID, kind: str, owner: dict[str, Any], component: Any, user: Any, message: str
) -> bool:
    """agno's client-chosen session ids: a run naming an id no session has creates that session,
    for this user and component (True). An id that is taken (by another user, or by this user's
    session of another agent, team or workflow) is SessionNotFound, the same answer as for an id
    that names nothing, so it reveals nothing about the other session. Two creators of one id race
    on the primary key: the loser's insert fails in its savepoint, and it then finds the winner's
    session if it is its own (False: an existing session), else SessionNotFound. Called inside
    `_run_start`'s transaction, after the ownership UPDATE found nothing."""
    initial = getattr(component, "initial_session_state", None)
    state = copy.deepcopy(initial) if isinstance(initial, dict) else {}
    try:
        with transaction.atomic():
            Session(pk=session_id, user=user, name=_session_name(message), state=state, **owner).save(force_insert=True)
        return True
    except IntegrityError:
        if Session.objects.filter(pk=session_id, user=user, **owner).update(updated_at=timezone.now()):
            return False
        raise SessionNotFound(
            f"No session {session_id} for {kind} {component.slug!r}.", session_id=session_id
        ) from None


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
    session_id: UUID | None = None,
    state_set: dict[str, Any] | None = None,
    state_unset: list[str] | None = None,
    usage: dict[str, Any] | None = None,
) -> bool:
    """Store what the run produced, in one transaction: the new messages and the run's outcome.
    True if stored (False: it was stored already, by a process that took it over, or deleted).

    Messages are stored even for failed runs (partial output is kept). The update is guarded by
    status=running so a run that was already finished elsewhere is not overwritten. `on_finish` (the
    run's hooks: agents_app.hooks.executions.run_finish_with_hooks) runs inside the same transaction, only
    when the run was stored. `user_message` (the run's input, as the pre-hooks left it) becomes the
    message at position 0. `state_set` / `state_unset`: the top-level session-state keys the run
    changed, merged into the session's state as it is now (session_state_merge), in the same
    transaction, so a run's state is saved exactly when its outcome is. `usage`: its `cost`,
    `total_cost` and `cache_read_tokens`, and the `model` and `provider` that answered (a fallback
    model, when the main one failed), in the same UPDATE.
    """
    extra: dict[str, Any] = {}
    if usage:
        extra = {key: usage[key] for key in ("cost", "total_cost", "cache_read_tokens", "tree_tokens") if key in usage}
        if usage.get("model"):
            extra["model"], extra["provider"] = usage["model"], usage.get("provider", "")
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
        now = timezone.now()
        updated = statements.run_update_if_running(
            run_id,
            dict(
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
                finished_at=now,
                updated_at=now,
                **extra,
            ),
        )
        # updated == 0: the run was deleted with its session meanwhile; nothing left to attach to.
        if updated and rows:
            statements.insert(rows)
        if updated and session_id is not None and (state_set or state_unset):
            session_state_merge(session_id=session_id, state_set=state_set or {}, state_unset=state_unset or [])
        if updated and on_finish is not None:
            on_finish()
    return bool(updated)


def run_pause_finish(*, finish: Callable[..., bool], pause: dict[str, Any], **kwargs: Any) -> bool:
    """`finish` (run_finish, or it with the run's hooks) for a run that pauses: in the same
    transaction, what continuing it needs (`resume_state`), when it expires, and one ToolApproval
    row per tool call awaiting a person (`approvals`: id, position, tool_call_id, tool_name,
    requirement, tool_args, user_input_fields). True if stored."""
    run_id = kwargs["run_id"]
    with transaction.atomic():
        stored = finish(**kwargs)
        if stored:
            Run.objects.filter(pk=run_id).update(resume_state=pause["resume_state"], expires_at=pause["expires_at"])
            ToolApproval.objects.bulk_create([ToolApproval(run_id=run_id, **row) for row in pause["approvals"]])
    return stored


def run_checkpoint(*, run_id: UUID, output: str, events: list[dict[str, Any]]) -> bool:
    """Save what a run has streamed so far (its partial output and events), so a crash of its
    process loses at most the time since the last checkpoint. Guarded by status=running: a
    checkpoint that arrives after the run was stored changes nothing. True if saved."""
    return bool(
        Run.objects.filter(pk=run_id, status=Run.Status.RUNNING).update(
            output=output, events=events, updated_at=timezone.now()
        )
    )


def run_cancel(*, run_id: UUID, reason: str, user_message: str | None = None, events: Any = None) -> None:
    """Store a run that produced nothing as cancelled (guarded by status=running, as `run_finish` is):
    a child run cancelled before it started, or a run no process has any more."""
    run_finish(
        run_id=run_id,
        status=Run.Status.CANCELLED,
        output="",
        output_json=None,
        error=reason,
        error_type="cancelled",
        messages=[],
        metrics={},
        events=events,
        user_message=user_message,
    )


def session_rename(*, session: Session, name: str) -> Session:
    session.name = name
    session.save(update_fields=["name", "updated_at"])
    return session


class SessionIdTaken(ConflictError):
    """A session created with a client-chosen id that is already taken. One answer whether the
    session is the caller's or someone else's, so it confirms nothing about another user's."""

    code = "session_exists"
    default_detail = "A session with this id already exists."


def session_create(
    *,
    user: Any,
    kind: str,
    component: Any,
    session_id: UUID | None = None,
    name: str = "",
    state: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Session:
    """An empty session of `component` (an agent, team or workflow of `kind`) for `user`, before any
    run (agno's `POST /sessions`): with the client's `session_id` when given (SessionIdTaken if it
    is taken), `state` or else the component's initial state."""
    if state is None:
        initial = getattr(component, "initial_session_state", None)
        state = copy.deepcopy(initial) if isinstance(initial, dict) else {}
    session = Session(user=user, name=name, state=state, metadata=metadata or {}, **{kind: component})
    if session_id is not None:
        session.pk = session_id
    try:
        with transaction.atomic():
            session.save(force_insert=True)
    except IntegrityError:
        raise SessionIdTaken() from None
    return session


def session_update(
    *,
    session: Session,
    name: str | None = None,
    state: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    summary: str | None = None,
) -> Session:
    """Replace what is given of a session's name, state, metadata and summary (agno's `PATCH
    /sessions/{id}`: each given field replaces the stored one; None leaves it). A summary set by
    hand covers the runs so far, as the summarizer's would."""
    fields = ["updated_at"]
    if name is not None:
        session.name, fields = name, [*fields, "name"]
    if state is not None:
        session.state, fields = state, [*fields, "state"]
    if metadata is not None:
        session.metadata, fields = metadata, [*fields, "metadata"]
    if summary is not None:
        now = timezone.now()
        session.summary, session.summary_updated_at = summary, now
        session.summary_until = now if summary else None
        fields += ["summary", "summary_updated_at", "summary_until"]
    session.save(update_fields=fields)
    return session


class NothingToFork(DomainError):
    """agno's 400 for a fork of a session with no finished run (or none up to the run named)."""

    code = "nothing_to_fork"
    default_detail = "Source session has no runs to fork."


_COPIED_RUN_FIELDS = [
    "status",
    "input",
    "output",
    "output_json",
    "error",
    "error_type",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cost",
    "total_cost",
    "tree_tokens",
    "time_to_first_token",
    "duration",
    "events",
    "finished_at",
    "created_at",
]
_FINISHED = (Run.Status.COMPLETED, Run.Status.ERROR, Run.Status.CANCELLED)


def session_fork(*, session: Session, user: Any, up_to_run_id: UUID | None = None) -> Session:
    """A new session of the same agent, team or workflow for `user`, holding copies of `session`'s
    finished runs (each with a new id, its member and step runs and its messages), so the copy can
    go on differently while the original is untouched (agno's fork). With `up_to_run_id`, only the
    runs up to and including that top-level run. Runs still going or waiting for a person are not
    copied; images stay with the original's runs (their files belong to it). NothingToFork when no
    run would be copied (also for a run not in the session)."""
    runs = list(session.runs.filter(status__in=_FINISHED).order_by("created_at"))
    top = [r for r in runs if r.parent_run_id is None]
    if up_to_run_id is not None:
        ids = [r.pk for r in top]
        if up_to_run_id not in ids:
            raise NothingToFork("That run is not a finished run of this session.")
        top = top[: ids.index(up_to_run_id) + 1]
    kept_top = {r.pk for r in top}
    by_id = {r.pk: r for r in runs}

    def root(run: Run) -> Any:
        while run.parent_run_id is not None and run.parent_run_id in by_id:
            run = by_id[run.parent_run_id]
        return run.pk if run.parent_run_id is None else None

    runs = [r for r in runs if root(r) in kept_top]
    if not runs:
        raise NothingToFork()
    owner = {kind: getattr(session, kind) for kind in ("agent", "team", "workflow") if getattr(session, f"{kind}_id")}
    with transaction.atomic():
        fork = Session.objects.create(
            user=user,
            name=session.name,
            state=copy.deepcopy(session.state),
            summary=session.summary,
            summary_until=session.summary_until,
            summary_updated_at=session.summary_updated_at,
            metadata=copy.deepcopy(session.metadata),
            **owner,
        )
        new_ids = {r.pk: uuid4() for r in runs}
        copies = [
            Run(
                pk=new_ids[r.pk],
                session=fork,
                user=user,
                agent_id=r.agent_id,
                team_id=r.team_id,
                workflow_id=r.workflow_id,
                parent_run_id=new_ids.get(r.parent_run_id),
                **{name: copy.deepcopy(getattr(r, name)) for name in _COPIED_RUN_FIELDS},
            )
            for r in runs
        ]
        # Parents before children (the foreign key), in the original order.
        copies.sort(key=lambda c: (c.parent_run_id is not None, c.created_at))
        Run.objects.bulk_create(copies)
        originals = {new_ids[r.pk]: r for r in runs}
        for c in copies:  # auto_now_add stamped them now: the original times keep the history's order
            c.created_at = originals[c.pk].created_at
        Run.objects.bulk_update(copies, ["created_at"])
        Message.objects.bulk_create(
            Message(
                run_id=new_ids[m.run_id],
                role=m.role,
                content=m.content,
                tool_calls=m.tool_calls,
                tool_call_id=m.tool_call_id,
                name=m.name,
                position=m.position,
            )
            for m in Message.objects.filter(run_id__in=list(new_ids)).order_by("run_id", "position")
        )
    return fork


def sessions_delete(*, sessions: Any) -> int:
    """Delete several sessions (a queryset, already limited to the caller's) with their runs and
    images, in one transaction; how many were deleted."""
    with transaction.atomic():
        ids = list(sessions.values_list("pk", flat=True))
        if ids:
            runs_delete(runs=Run.objects.filter(session_id__in=ids), then=Session.objects.filter(pk__in=ids).delete)
    return len(ids)


def session_delete(*, session: Session) -> None:
    """Delete the session with its runs, messages and images (their files too, once committed)."""
    runs_delete(runs=Run.objects.filter(session=session), then=session.delete)


def runs_delete(*, runs: Any, then: Callable[[], Any] | None = None) -> None:
    """Delete runs (a queryset; their member and step runs, messages and images go with them), or
    call `then` to delete what they cascade from; the runs' image files are deleted once the
    deletion is committed (Django deletes rows, never the files of a FileField)."""
    with transaction.atomic():
        files = [name for name in RunImage.objects.filter(run__in=runs).values_list("file", flat=True) if name]
        if then is not None:
            then()
        else:
            runs.delete()
        if files:
            transaction.on_commit(lambda: image_files_delete(files))


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


def session_end(*, session: Session) -> Session:
    """End a session: it keeps its runs and stays readable, but refuses new messages. Idempotent."""
    if session.ended_at is None:
        now = timezone.now()
        Session.objects.filter(pk=session.pk, ended_at__isnull=True).update(ended_at=now)
        session.ended_at = now
    return session


def session_summary_store(*, session_id: UUID, summary: str, until: Any) -> bool:
    """Keep a new summary of the session's runs created up to `until`, unless the session already
    has one that covers as much (summaries are made in the background and may finish out of order;
    each covers everything before its `until`, so the one reaching furthest wins). True if stored."""
    with transaction.atomic(savepoint=False):
        session = Session.objects.select_for_update().only("pk", "summary_until").filter(pk=session_id).first()
        if session is None or (session.summary_until is not None and session.summary_until >= until):
            return False
        Session.objects.filter(pk=session_id).update(
            summary=summary, summary_until=until, summary_updated_at=timezone.now()
        )
    return True


# ---- memories ------------------------------------------------------------------------------------

MEMORY_MAX_CHARS = 2000
TOPICS_MAX = 10
TOPIC_MAX_CHARS = 50


class MemoryInvalid(DomainError, ValueError):
    """A memory the caller asked to write is empty, too long, or has malformed topics."""

    code = "invalid_memory"


def _clean_memory(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise MemoryInvalid("A memory must be a non-empty string.")
    if "\x00" in text:
        raise MemoryInvalid("A memory cannot contain a NUL character.")
    text = text.strip()
    if len(text) > MEMORY_MAX_CHARS:
        raise MemoryInvalid(f"A memory is at most {MEMORY_MAX_CHARS} characters; this one has {len(text)}.")
    return text


def _clean_topics(topics: Any) -> list[str]:
    if topics is None:
        return []
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise MemoryInvalid("Topics must be a list of strings.")
    cleaned: list[str] = []
    for topic in topics:
        topic = topic.strip().lower()
        if topic and topic not in cleaned:
            if len(topic) > TOPIC_MAX_CHARS or "|" in topic or "\x00" in topic:
                raise MemoryInvalid(f"A topic is at most {TOPIC_MAX_CHARS} characters, without '|'.")
            cleaned.append(topic)
    if len(cleaned) > TOPICS_MAX:
        raise MemoryInvalid(f"A memory has at most {TOPICS_MAX} topics.")
    return cleaned


def memory_create(
    *,
    user: Any = None,
    user_id: Any = None,
    memory: str,
    topics: list[str] | None = None,
    agent_pk: int | None = None,
    source: str = Memory.Source.USER,
    source_run_id: UUID | None = None,
) -> Memory:
    """Write a new memory about a user (raises MemoryInvalid)."""
    return Memory.objects.create(
        user_id=user.pk if user is not None else user_id,
        agent_id=agent_pk,
        memory=_clean_memory(memory),
        topics=_clean_topics(topics),
        source=source,
        source_run_id=source_run_id,
    )


def memory_update(*, memory: Memory, text: str | None = None, topics: list[str] | None = None) -> Memory:
    """Change a memory's text and/or topics (raises MemoryInvalid)."""
    fields = ["updated_at"]
    if text is not None:
        memory.memory = _clean_memory(text)
        fields.append("memory")
    if topics is not None:
        memory.topics = _clean_topics(topics)
        fields.append("topics")
    memory.save(update_fields=fields)
    return memory


def memory_delete(*, memory: Memory) -> None:
    memory.delete()


@dataclass(slots=True)
class MemoryOperation:
    """One change the memory manager or a memory tool asks for: "add" (text, topics), "update"
    (memory_id and text and/or topics) or "delete" (memory_id)."""

    op: str
    memory_id: str | None = None
    memory: str | None = None
    topics: list[str] | None = None


def memory_apply(
    *, user_id: Any, agent_pk: int | None, operations: Iterable[MemoryOperation], source: str, run_id: UUID | None
) -> dict[str, int]:
    """Apply memory changes within one scope (a user's shared memories, or one agent's private ones),
    in one transaction, and count what was done. An id outside the scope, or an invalid text, is
    skipped, never applied: a model cannot touch another user's (or another agent's) memories."""
    done = {"added": 0, "updated": 0, "deleted": 0, "skipped": 0}
    with transaction.atomic(savepoint=False):
        scope = Memory.objects.filter(memory_scope_filter(user_id=user_id, agent_pk=agent_pk))
        for item in operations:
            try:
                if item.op == "add":
                    memory_create(
                        user_id=user_id,
                        memory=item.memory or "",
                        topics=item.topics,
                        agent_pk=agent_pk,
                        source=source,
                        source_run_id=run_id,
                    )
                    done["added"] += 1
                    continue
                target = scope.filter(pk=_as_uuid(item.memory_id)).first() if item.memory_id else None
                if target is None or item.op not in ("update", "delete"):
                    done["skipped"] += 1
                elif item.op == "update":
                    memory_update(memory=target, text=item.memory, topics=item.topics)
                    done["updated"] += 1
                else:
                    memory_delete(memory=target)
                    done["deleted"] += 1
            except MemoryInvalid:
                done["skipped"] += 1
    return done


def _as_uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value).strip())
    except ValueError:
        return None


# ---- Teams and workflows: their runs, and the member and step runs under them ----------------


def child_run_start(
    *,
    parent_run_id: UUID,
    session_id: UUID,
    user_id: Any,
    message: str,
    agent: Any = None,
    team: Any = None,
    config_version_id: int | None = None,
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
        owner=process_id(),
        config_version_id=config_version_id,
    )


def run_claim_paused(*, run_id: UUID, events: Any, now: Any) -> bool:
    """Take a paused run for this process (a continue, or its expiry): paused -> running, guarded
    by the status, so of two processes (or two requests) only one gets it. True if claimed. Call it
    inside the transaction that writes what the claim decides."""
    return bool(
        Run.objects.filter(pk=run_id, status=Run.Status.PAUSED).update(
            status=Run.Status.RUNNING,
            owner=process_id(),
            resumed_at=now,
            expires_at=None,
            events=events,
            updated_at=now,
        )
    )


# ---- memory optimization (agno's optimize-memories) -------------------------------------------------


def memory_optimization_create(*, user: Any, model_config: Any, apply: bool) -> MemoryOptimization:
    """Record a consolidation asked for; a Celery task does it (agents_app.memory.memories_optimize)."""
    return MemoryOptimization.objects.create(user=user, model_config=model_config, apply=apply)


def memory_optimization_claim(*, optimization_id: UUID) -> MemoryOptimization | None:
    """Take a queued consolidation for work (None when another delivery took it, or it is done):
    a redelivered task never does it twice."""
    taken = MemoryOptimization.objects.filter(pk=optimization_id, status=MemoryOptimization.Status.QUEUED).update(
        status=MemoryOptimization.Status.RUNNING
    )
    return MemoryOptimization.objects.select_related("model_config").get(pk=optimization_id) if taken else None


def memory_optimization_finish(
    *,
    optimization_id: UUID,
    scopes: dict[int | None, list[dict[str, Any]]],
    before: list[Memory],
    tokens: Callable[[str], int],
) -> MemoryOptimization:
    """Store a consolidation's result: the memories proposed per scope (agent pk, or None for the
    user's shared ones), the counts and token sizes before and after; when it applies, the scopes'
    memories are replaced by the proposed ones in the same transaction (a scope's memories that
    changed meanwhile are replaced all the same: the user asked for a consolidation of them)."""
    with transaction.atomic():
        row = MemoryOptimization.objects.select_for_update().get(pk=optimization_id)
        proposed = [(scope, m) for scope, items in scopes.items() for m in items]
        result = []
        if row.apply:
            for scope in scopes:
                Memory.objects.filter(memory_scope_filter(user_id=row.user_id, agent_pk=scope)).delete()
            for scope, item in proposed:
                memory = Memory(
                    user_id=row.user_id,
                    agent_id=scope,
                    memory=_clean_memory(item["memory"]),
                    topics=_clean_topics(item.get("topics") or []),
                    source=Memory.Source.AUTOMATIC,
                )
                memory.save()
                result.append(_memory_record(memory))
        else:
            result = [
                {
                    "memory_id": None,
                    "memory": _clean_memory(i["memory"]),
                    "topics": _clean_topics(i.get("topics") or []),
                    "agent_id": scope,
                    "updated_at": None,
                }
                for scope, i in proposed
            ]
        row.status = MemoryOptimization.Status.COMPLETED
        row.memories_before, row.memories_after = len(before), len(proposed)
        row.tokens_before = sum(tokens(m.memory) for m in before)
        row.tokens_after = sum(tokens(i["memory"]) for _, i in proposed)
        row.result, row.finished_at = result, timezone.now()
        row.save()
    return row


def _memory_record(memory: Memory) -> dict[str, Any]:
    return {
        "memory_id": str(memory.pk),
        "memory": memory.memory,
        "topics": list(memory.topics or []),
        "agent_id": memory.agent_id,
        "updated_at": memory.updated_at.isoformat() if memory.updated_at else None,
    }


def memory_optimization_fail(*, optimization_id: UUID, error: str) -> None:
    MemoryOptimization.objects.filter(pk=optimization_id).update(
        status=MemoryOptimization.Status.FAILED, error=error[:2000], finished_at=timezone.now()
    )
