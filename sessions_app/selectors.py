"""Reads of sessions, runs and messages, always scoped to the user who owns them."""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import reduce
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Sum

from sessions_app.access import ALL, Allowed
from sessions_app.models import Memory, Message, Run, RunImage, Session

SESSION_KINDS = ("agent", "team", "workflow")


def session_list_for_user(
    *,
    user: Any,
    agent_id: str | None = None,
    team_id: str | None = None,
    workflow_id: str | None = None,
    kind: str | None = None,
    component_id: str | None = None,
    search: str | None = None,
    allowed: Allowed = ALL,
) -> QuerySet[Session]:
    """The user's sessions, most recently updated first. `kind` ("agent", "team", "workflow"): only
    sessions of that kind; `component_id`: only sessions of the agent, team or workflow with that
    slug (of `kind` when given, else of any kind: agno's clients filter by one id for all three);
    `search`: only sessions whose name or one of whose messages (a top-level run's input) contains
    it, ignoring case (people remember what they asked, not what the session was called); only
    sessions of the runnables `allowed` (the request's scope, sessions_app.access)."""
    qs = (
        Session.objects.filter(allowed.session_q(), user=user, is_eval=False)
        .select_related("agent", "team", "workflow")
        .annotate(**_session_totals())
    )
    if any(value and "\x00" in value for value in (agent_id, team_id, workflow_id, component_id, search)):
        # No id holds a NUL character, and PostgreSQL refuses one in a query (a 500).
        return qs.none()
    for name, slug in zip(SESSION_KINDS, (agent_id, team_id, workflow_id), strict=True):
        if slug:
            qs = qs.filter(**{f"{name}__slug": slug})
    if kind:
        qs = qs.filter(_kind_filter(kind))
    if component_id:
        kinds = (kind,) if kind else SESSION_KINDS
        qs = qs.filter(reduce(operator.or_, (Q(**{f"{name}__slug": component_id}) for name in kinds)))
    if search and search.strip():
        words = search.strip()
        asked = Run.objects.filter(session=OuterRef("pk"), parent_run__isnull=True, input__icontains=words)
        qs = qs.filter(Q(name__icontains=words) | Exists(asked))
    return qs.order_by("-updated_at", "-created_at")


def _session_totals() -> dict[str, Any]:
    """A session's run count and cost (the sum of its runs' own costs: each model call once),
    annotated in the session's own query (one join, whatever the number of sessions)."""
    return {"run_count": Count("runs"), "cost": Sum("runs__cost", default=Decimal(0))}


def _kind_filter(kind: str) -> Q:
    if kind not in SESSION_KINDS:
        raise ValueError(f"Unknown session kind {kind!r}; expected one of {SESSION_KINDS}.")
    return Q(**{f"{kind}__isnull": False})


def session_detail_for_user(
    *, user: Any, session_id: UUID, kind: str | None = None, allowed: Allowed = ALL
) -> Session | None:
    """The session with its runs and their messages in three queries, or None if not the user's
    (or, with `kind`, not a session of that kind; or not of a runnable `allowed`)."""
    runs = (
        Run.objects.order_by("created_at")
        .select_related("agent", "team", "workflow", "config_version")
        .prefetch_related(Prefetch("messages", queryset=Message.objects.order_by("position")), "images")
    )
    qs = Session.objects.filter(allowed.session_q(), user=user, pk=session_id)
    if kind:
        qs = qs.filter(_kind_filter(kind))
    return (
        qs.select_related("agent", "team", "workflow")
        .prefetch_related(Prefetch("runs", queryset=runs))
        .annotate(**_session_totals())
        .first()
    )


def run_get_for_user(*, user: Any, run_id: UUID, allowed: Allowed = ALL) -> Run | None:
    """The user's run with its messages, if its session belongs to a runnable `allowed`."""
    return (
        Run.objects.filter(allowed.session_q("session__"), user=user, pk=run_id)
        .select_related("agent", "team", "workflow", "session", "config_version")
        .prefetch_related(Prefetch("messages", queryset=Message.objects.order_by("position")), "images")
        .first()
    )


# RunImage.position is a PositiveSmallIntegerField: larger numbers name no image (and some
# databases refuse them in a query).
MAX_IMAGE_POSITION = 32767


def run_image_for_user(*, user: Any, run_id: UUID, position: int, allowed: Allowed = ALL) -> RunImage | None:
    """An image of one of the user's runs (staff: of any run) of a runnable `allowed`, or None."""
    if not 0 <= position <= MAX_IMAGE_POSITION:
        return None
    qs = RunImage.objects.filter(allowed.session_q("run__session__"), run_id=run_id, position=position)
    if not user.is_staff:
        qs = qs.filter(run__user=user)
    return qs.first()


def run_status_for_user(*, user: Any, run_id: UUID, allowed: Allowed = ALL) -> str | None:
    """A run's status, if it is this user's (and of a runnable `allowed`): one small query, no
    messages, no events."""
    runs = Run.objects.filter(allowed.session_q("session__"), user=user, pk=run_id)
    return runs.values_list("status", flat=True).first()


def message_to_openai(role: str, content: str, tool_calls: Any, tool_call_id: str, name: str) -> dict[str, Any]:
    """A stored message in the chat format models expect, so history replays exactly."""
    if role == Message.Role.TOOL:
        return {"role": "tool", "tool_call_id": tool_call_id, "content": content}
    if role == Message.Role.ASSISTANT and tool_calls:
        return {"role": "assistant", "content": content or None, "tool_calls": tool_calls}
    return {"role": role, "content": content}


@dataclass(slots=True)
class History:
    """The part of a session's past a run sends to its model.

    `messages`: the window's messages, oldest first: the last `runs` completed runs not covered by
    the session summary, minus the oldest of them while the window is over its message or
    character bound (whole runs are dropped, so a tool call never loses its result).
    `run_count`: how many runs the window holds. `overflow`: completed runs exist that are neither
    in the window nor in the summary, or will be once this run ends (the window is full), so a
    summary would have something to add.
    """

    messages: list[dict[str, Any]] = field(default_factory=list)
    run_count: int = 0
    overflow: bool = False
    oldest_run_created_at: datetime | None = None


def _chars(message: dict[str, Any]) -> int:
    size = len(message.get("content") or "")
    for call in message.get("tool_calls") or []:
        function = call.get("function", {})
        size += len(str(function.get("arguments", ""))) + len(str(function.get("name", "")))
    return size


_HISTORY_SQL: dict[tuple[str, bool], str] = {}


def _history_sql(vendor: str, with_after: bool) -> str:
    """The history query, written once per database vendor: the ORM spent more CPU building it
    (cloning and relabelling the subquery) than the database spent running it. Top-level runs only:
    a team's member runs and a workflow's step runs are its own business."""
    key = (vendor, with_after)
    sql = _HISTORY_SQL.get(key)
    if sql is None:
        q = connection.ops.quote_name
        message, run = q(Message._meta.db_table), q(Run._meta.db_table)
        after_clause = f" AND {q('created_at')} > %s" if with_after else ""
        sql = (
            f"SELECT m.{q('run_id')}, r.{q('created_at')}, m.{q('role')}, m.{q('content')}, m.{q('tool_calls')}, "
            f"m.{q('tool_call_id')}, m.{q('name')} FROM {message} m INNER JOIN {run} r ON r.{q('id')} = m.{q('run_id')} "
            f"WHERE m.{q('run_id')} IN (SELECT {q('id')} FROM {run} WHERE {q('session_id')} = %s AND {q('status')} = %s "
            f"AND {q('parent_run_id')} IS NULL{after_clause} "
            f"ORDER BY {q('created_at')} DESC LIMIT %s) "
            f"ORDER BY r.{q('created_at')} ASC, m.{q('run_id')} ASC, m.{q('position')} ASC"
        )
        _HISTORY_SQL[key] = sql
    return sql


def _history_rows(session_id: UUID, limit: int, after: datetime | None) -> list[tuple[Any, ...]]:
    params: list[Any] = [
        Run._meta.get_field("id").get_db_prep_value(session_id, connection),
        Run.Status.COMPLETED.value,
    ]
    if after is not None:
        params.append(connection.ops.adapt_datetimefield_value(after))
    params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(_history_sql(connection.vendor, after is not None), params)
        return cursor.fetchall()


def _aware(value: Any) -> datetime:
    """A timestamp the database stored in UTC without a zone (SQLite), as Django's ORM returns it."""
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return value if value.tzinfo is not None or not settings.USE_TZ else value.replace(tzinfo=UTC)


def session_history(
    *,
    session_id: UUID,
    runs: int,
    max_chars: int | None = None,
    max_messages: int | None = None,
    after: datetime | None = None,
) -> History:
    """The session's history window, in one query whatever the session's length: the last N+1
    completed run ids are a LIMITed subquery on an index (the extra one tells whether older runs
    exist), so run 1 and run 1000 of a session cost the same. `after`: only runs created after it
    (the end of what the session summary covers)."""
    if runs <= 0:
        return History()
    grouped: dict[Any, tuple[datetime, list[dict[str, Any]]]] = {}
    for run_id, created_at, role, content, tool_calls, tool_call_id, name in _history_rows(session_id, runs + 1, after):
        if isinstance(tool_calls, str):
            tool_calls = json.loads(tool_calls)
        if not isinstance(created_at, datetime) or created_at.tzinfo is None:  # SQLite: text or naive UTC
            created_at = _aware(created_at)
        grouped.setdefault(run_id, (created_at, []))[1].append(
            message_to_openai(role, content, tool_calls, tool_call_id, name)
        )
    window = list(grouped.values())
    overflow = len(window) > runs
    window = window[-runs:]
    total_chars = sum(_chars(m) for _, messages in window for m in messages)
    total_messages = sum(len(messages) for _, messages in window)
    while window and (
        (max_chars is not None and total_chars > max_chars)
        or (max_messages is not None and total_messages > max_messages)
    ):
        _, dropped = window.pop(0)
        total_chars -= sum(_chars(m) for m in dropped)
        total_messages -= len(dropped)
        overflow = True
    return History(
        messages=[m for _, messages in window for m in messages],
        run_count=len(window),
        overflow=overflow or len(window) >= runs,
        oldest_run_created_at=window[0][0] if window else None,
    )


# ---- memories ------------------------------------------------------------------------------------

_WORD = re.compile(r"\w{3,}", re.UNICODE)
_CANDIDATES = 200


def memory_scope_filter(*, user_id: Any, agent_pk: int | None) -> Q:
    """The memories an agent with this scope reads and writes: agent_pk None for the user's shared
    memories (scope "user"), the agent's pk for its private ones (scope "agent")."""
    return Q(user_id=user_id, agent__isnull=True) if agent_pk is None else Q(user_id=user_id, agent_id=agent_pk)


def memory_list_for_user(
    *,
    user: Any,
    topic: str | None = None,
    search: str | None = None,
    agent_id: str | None = None,
    allowed: Allowed = ALL,
) -> QuerySet[Memory]:
    """The user's memories, newest first. `agent_id`: only that agent's private ones ("" or None:
    all); `topic`: memories tagged with it (exact, case-insensitive); `search`: text contains.
    With a scope (`allowed`), the private memories of agents outside it are left out."""
    qs = Memory.objects.filter(allowed.memory_q(), user=user).select_related("agent")
    if any(value and "\x00" in value for value in (topic, search, agent_id)):
        # No memory, topic or id holds a NUL character, and PostgreSQL refuses one in a query.
        return qs.none()
    if agent_id:
        qs = qs.filter(agent__slug=agent_id)
    if search:
        qs = qs.filter(memory__icontains=search)
    if topic and topic.strip():
        qs = qs.filter(topics_index__contains=f"|{topic.strip().lower()}|")
    return qs.order_by("-updated_at", "-created_at")


def memory_line(memory: Memory) -> str:
    """A memory as the model reads it: its id (for the memory tools), text and topics."""
    topics = ", ".join(str(t) for t in memory.topics or [])
    return f"- [{memory.id}] {memory.memory}" + (f" (topics: {topics})" if topics else "")


def memories_for_context(
    *, user_id: Any, agent_pk: int | None, message: str, limit: int, max_chars: int
) -> list[Memory]:
    """The memories worth sending with `message`, most relevant first, within `limit` items and
    `max_chars` characters. Relevance is lexical (shared words and topics, then recency), which
    needs no embedding model; one query on the user's most recent memories."""
    if limit <= 0 or max_chars <= 0:
        return []
    candidates = list(
        Memory.objects.filter(memory_scope_filter(user_id=user_id, agent_pk=agent_pk))
        .order_by("-updated_at")
        .only("id", "memory", "topics", "updated_at")[:_CANDIDATES]
    )
    words = {w.lower() for w in _WORD.findall(message)}

    def score(item: tuple[int, Memory]) -> tuple[int, int]:
        recency, memory = item
        text_words = {w.lower() for w in _WORD.findall(memory.memory)}
        topics = {str(t).lower() for t in memory.topics or []}
        return (-(len(words & text_words) + 2 * len(words & topics)), recency)

    chosen: list[Memory] = []
    used = 0
    for _, memory in sorted(enumerate(candidates), key=score):
        size = len(memory_line(memory)) + 1
        if used + size > max_chars:
            continue
        chosen.append(memory)
        used += size
        if len(chosen) >= limit:
            break
    return chosen


@dataclass(slots=True)
class SummaryWork:
    """What a session summary update folds in: the previous summary, a transcript of the completed
    runs that left the history window since, and the creation time of the last of them."""

    previous: str
    transcript: str
    until: datetime


_SUMMARY_RUNS = 50


def session_runs_to_summarize(
    *, session_id: UUID, window_runs: int, max_chars: int | None, max_messages: int | None, input_chars: int
) -> SummaryWork | None:
    """The runs a summary should now cover, or None when every run outside the window is covered.
    At most `input_chars` characters of transcript (and 50 runs) per update: a long backlog is
    folded in over several updates, each one's `until` covering what it read."""
    session = Session.objects.only("pk", "summary", "summary_until").filter(pk=session_id).first()
    if session is None:
        return None
    window = session_history(
        session_id=session_id,
        runs=window_runs,
        max_chars=max_chars,
        max_messages=max_messages,
        after=session.summary_until,
    )
    runs = Run.objects.filter(session_id=session_id, status=Run.Status.COMPLETED)
    if session.summary_until is not None:
        runs = runs.filter(created_at__gt=session.summary_until)
    if window.oldest_run_created_at is not None:
        runs = runs.filter(created_at__lt=window.oldest_run_created_at)
    parts: list[str] = []
    used = 0
    until: datetime | None = None
    for created_at, text, output, output_json in runs.order_by("created_at").values_list(
        "created_at", "input", "output", "output_json"
    )[:_SUMMARY_RUNS]:
        answer = output if output_json is None else json.dumps(output_json, ensure_ascii=False)
        part = f"User: {text}\nAssistant: {answer}"
        if parts and used + len(part) > input_chars:
            break
        parts.append(part[: max(input_chars - used, 0)] if not parts else part)
        used += len(part)
        until = created_at
    if until is None:
        return None
    return SummaryWork(previous=session.summary, transcript="\n\n".join(parts), until=until)
