"""Server-rendered pages: the chat page (and the login it needs). The page is plain HTML with a
small script (static/agents_app/chat.js); every URL it uses is rendered here, so the apps can be
mounted under any prefix."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from agents_app.routing import WS_AGENT_PATH
from sessions_app.conf import agentos_settings

# A placeholder the script replaces with a session id (URLs with ids cannot be reversed without one).
_SESSION_PLACEHOLDER = uuid.UUID(int=0)


@dataclass(frozen=True, slots=True)
class ChatKind:
    """One kind of component the chat page talks to. `kind` is also its query parameter
    (`?agent=<slug>`, `?team=<slug>`, `?workflow=<slug>`) and its session-list filter (`<kind>_id`)."""

    kind: str
    group: str  # the picker's group label
    ws_path: str  # where its websocket is (routes cannot be reversed)


def chat_kinds() -> list[ChatKind]:
    """The kinds in the picker's order; agents first, so `?agent=` pages look as they always did."""
    return [
        ChatKind("agent", "Agents", "/" + WS_AGENT_PATH),
        ChatKind("team", "Teams", "/" + str(agentos_settings.TEAMS_WEBSOCKET_PATH)),
        ChatKind("workflow", "Workflows", "/" + str(agentos_settings.WORKFLOWS_WEBSOCKET_PATH)),
    ]


def chat_components() -> dict[str, list[dict[str, Any]]]:
    """Every active agent, team and workflow, by kind, with what the page says about each before
    the first message: a team's members, a workflow's steps (in order)."""
    from agents_app.models import Agent, Team, TeamMember, Workflow, WorkflowStep

    agents = list(Agent.objects.filter(is_active=True).order_by("name").values("slug", "name", "description"))
    teams = list(Team.objects.filter(is_active=True).order_by("name").values("id", "slug", "name", "description"))
    members: dict[int, list[str]] = {}
    for m in (
        TeamMember.objects.filter(team__in=[t["id"] for t in teams])
        .select_related("agent", "member_team")
        .order_by("order", "pk")
    ):
        members.setdefault(m.team_id, []).append(m.agent.name if m.agent_id else m.member_team.name)
    flows = list(Workflow.objects.filter(is_active=True).order_by("name").values("id", "slug", "name", "description"))
    steps: dict[int, list[str]] = {}
    for s in WorkflowStep.objects.filter(workflow__in=[w["id"] for w in flows], parent=None).order_by("order", "pk"):
        steps.setdefault(s.workflow_id, []).append(s.name)
    return {
        "agent": [{**a, "parts": []} for a in agents],
        "team": [{**_public(t), "parts": members.get(t["id"], [])} for t in teams],
        "workflow": [{**_public(w), "parts": steps.get(w["id"], [])} for w in flows],
    }


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in ("slug", "name", "description")}


def _pick(request: HttpRequest, components: dict[str, list[dict[str, Any]]]) -> tuple[str, str]:
    """The component the URL names (`?agent=`, `?team=` or `?workflow=`, checked in that order),
    or the first one there is."""
    for kind, items in components.items():
        wanted = request.GET.get(kind, "")
        if wanted and any(item["slug"] == wanted for item in items):
            return kind, wanted
    for kind, items in components.items():
        if items:
            return kind, items[0]["slug"]
    return "", ""


@login_required(login_url="agents_pages:login")
def chat_page(request: HttpRequest) -> HttpResponse:
    """Pick an agent, a team or a workflow, see my sessions with it, chat over its websocket;
    reloading resumes a running answer.

    Context: `groups` (the picker: kind, group label, items with slug/name/description/parts),
    `current_kind` + `current_slug` (from `?agent=`/`?team=`/`?workflow=<slug>`, else the first
    component), `ws_paths` (kind -> websocket path prefix), `names` (kind -> slug -> display name,
    to label members and steps), and the session URLs and message limit."""
    components = chat_components()
    kinds = chat_kinds()
    kind, slug = _pick(request, components)
    context: dict[str, Any] = {
        "groups": [{"kind": k.kind, "label": k.group, "items": components[k.kind]} for k in kinds],
        "has_components": any(components.values()),
        "current_kind": kind,
        "current_slug": slug,
        "ws_paths": {k.kind: k.ws_path for k in kinds},
        "names": {k.kind: {c["slug"]: c["name"] for c in components[k.kind]} for k in kinds},
        "intros": {
            f"{k.kind}:{c['slug']}": {"name": c["name"], "description": c["description"], "parts": c["parts"]}
            for k in kinds
            for c in components[k.kind]
        },
        "sessions_url": reverse("sessions_app:session-list"),
        "session_url_template": reverse("sessions_app:session-detail", kwargs={"session_id": _SESSION_PLACEHOLDER}),
        "session_placeholder": str(_SESSION_PLACEHOLDER),
        "max_message_chars": int(agentos_settings.MAX_MESSAGE_CHARS),
    }
    return render(request, "agents_app/chat.html", context)
