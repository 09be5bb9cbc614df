"""Reads of sessions, runs and messages, always scoped to the user who owns them."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import Count, Prefetch, QuerySet, Subquery

from sessions_app.models import Message, Run, Session


def session_list_for_user(
    *, user: Any, agent_id: str | None = None, team_id: str | None = None, workflow_id: str | None = None
) -> QuerySet[Session]:
    qs = Session.objects.filter(user=user).select_related("agent", "team", "workflow").annotate(run_count=Count("runs"))
    if agent_id:
        qs = qs.filter(agent__slug=agent_id)
    if team_id:
        qs = qs.filter(team__slug=team_id)
    if workflow_id:
        qs = qs.filter(workflow__slug=workflow_id)
    return qs.order_by("-updated_at", "-created_at")


def session_detail_for_user(*, user: Any, session_id: UUID) -> Session | None:
    """The session with its runs and their messages in three queries, or None if not the user's."""
    runs = (
        Run.objects.order_by("created_at")
        .select_related("agent", "team", "workflow")
        .prefetch_related(Prefetch("messages", queryset=Message.objects.order_by("position")))
    )
    return (
        Session.objects.filter(user=user, pk=session_id)
        .select_related("agent", "team", "workflow")
        .prefetch_related(Prefetch("runs", queryset=runs))
        .annotate(run_count=Count("runs"))
        .first()
    )


def run_get_for_user(*, user: Any, run_id: UUID) -> Run | None:
    return (
        Run.objects.filter(user=user, pk=run_id)
        .select_related("agent", "team", "workflow", "session")
        .prefetch_related(Prefetch("messages", queryset=Message.objects.order_by("position")))
        .first()
    )


def message_to_openai(role: str, content: str, tool_calls: Any, tool_call_id: str, name: str) -> dict[str, Any]:
    """A stored message in the chat format models expect, so history replays exactly."""
    if role == Message.Role.TOOL:
        return {"role": "tool", "tool_call_id": tool_call_id, "content": content}
    if role == Message.Role.ASSISTANT and tool_calls:
        return {"role": "assistant", "content": content or None, "tool_calls": tool_calls}
    return {"role": role, "content": content}


def session_history_messages(*, session_id: UUID, runs: int) -> list[dict[str, Any]]:
    """Messages of the session's last `runs` completed runs, oldest first, in one query.

    One query whatever the session's length: the last N run ids are a LIMITed subquery on an
    index, so run 1 and run 1000 of a session cost the same.
    """
    if runs <= 0:
        return []
    recent = (
        # Top-level runs only: a team's member runs and a workflow's step runs are its own business.
        Run.objects.filter(session_id=session_id, status=Run.Status.COMPLETED, parent_run__isnull=True)
        .order_by("-created_at")
        .values("id")[:runs]
    )
    rows = (
        Message.objects.filter(run_id__in=Subquery(recent))
        .order_by("run__created_at", "run_id", "position")
        .values_list("role", "content", "tool_calls", "tool_call_id", "name")
    )
    return [message_to_openai(*row) for row in rows]
