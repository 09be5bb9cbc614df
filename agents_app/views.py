"""Server-rendered pages: the chat page (and the login it needs). The page is plain HTML with a
small script (static/agents_app/chat.js); every URL it uses is rendered here, so the apps can be
mounted under any prefix."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from agents_app.routing import WS_AGENT_PATH
from sessions_app.conf import agentos_settings

# A placeholder the script replaces with a session id (URLs with ids cannot be reversed without one).
_SESSION_PLACEHOLDER = uuid.UUID(int=0)


@login_required(login_url="agents_pages:login")
def chat_page(request: HttpRequest) -> HttpResponse:
    """Pick an agent, see my sessions, chat over the websocket; reloading resumes a running answer."""
    from agents_app.models import Agent

    agents = list(Agent.objects.filter(is_active=True).order_by("name").values("slug", "name", "description"))
    wanted = request.GET.get("agent", "")
    current = wanted if any(a["slug"] == wanted for a in agents) else (agents[0]["slug"] if agents else "")
    context: dict[str, Any] = {
        "agents": agents,
        "current_agent": current,
        "sessions_url": reverse("sessions_app:session-list"),
        "session_url_template": reverse("sessions_app:session-detail", kwargs={"session_id": _SESSION_PLACEHOLDER}),
        "session_placeholder": str(_SESSION_PLACEHOLDER),
        "ws_path": "/" + WS_AGENT_PATH,
        "max_message_chars": int(agentos_settings.MAX_MESSAGE_CHARS),
    }
    return render(request, "agents_app/chat.html", context)
