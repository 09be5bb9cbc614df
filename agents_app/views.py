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
from agents_app.selectors import chat_components
from sessions_app.access import allowed_for
from sessions_app.conf import agentos_settings
from sessions_app.images import allowed_types
from sessions_app.images import max_bytes as image_max_bytes
from sessions_app.images import max_count as image_max_count

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
    to label members and steps), and the session URLs, the message limit and the image limits."""
    components = chat_components(allowed=allowed_for(None, request.user))
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
            f"{k.kind}:{c['slug']}": {
                "name": c["name"],
                "description": c["description"],
                "parts": c["parts"],
                "examples": c["examples"],
            }
            for k in kinds
            for c in components[k.kind]
        },
        "sessions_url": reverse("sessions_app:session-list"),
        "session_url_template": reverse("sessions_app:session-detail", kwargs={"session_id": _SESSION_PLACEHOLDER}),
        "session_placeholder": str(_SESSION_PLACEHOLDER),
        "max_message_chars": int(agentos_settings.MAX_MESSAGE_CHARS),
        # What the attach button takes (the server checks again: sessions_app.images).
        "image_max_bytes": image_max_bytes(),
        "image_max_count": image_max_count(),
        "image_types": allowed_types(),
    }
    return render(request, "agents_app/chat.html", context)
