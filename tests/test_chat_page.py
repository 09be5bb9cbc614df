"""The chat page as the server renders it: one picker of agents, teams and workflows (active ones,
grouped), the component the URL names, and what the script needs (websocket paths, names, intros).
The page's behaviour in a browser is tests/test_chat_browser.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from agents_app.models import WorkflowStep
from tests.factories import AgentFactory, TeamFactory, TeamMemberFactory, WorkflowFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def components(db: Any) -> dict[str, Any]:
    helper = AgentFactory(slug="helper", name="Helper")
    AgentFactory(slug="asleep", name="Asleep", is_active=False)
    writer = AgentFactory(slug="writer", name="Writer")
    crew = TeamFactory(
        slug="crew", name="Crew", description="Two heads.", example_prompts="  Plan a trip \n\nWrite a haiku\n"
    )
    TeamMemberFactory(team=crew, agent=writer, order=1)
    TeamMemberFactory(team=crew, agent=helper, order=0)
    TeamFactory(slug="idle", name="Idle", is_active=False)
    flow = WorkflowFactory(slug="flow", name="Flow")
    gate = WorkflowStep.objects.create(workflow=flow, order=1, name="gate", kind="condition", function="state_flag")
    WorkflowStep.objects.create(workflow=flow, order=0, name="draft", kind="agent", agent=writer)
    WorkflowStep.objects.create(workflow=flow, order=0, name="inner", kind="agent", agent=writer, parent=gate)
    return {"helper": helper, "crew": crew, "flow": flow}


def _page(client: Client, query: str = "") -> tuple[str, Any]:
    response = client.get(reverse("agents_pages:chat") + query)
    assert response.status_code == 200
    return response.content.decode(), response.context


def _script_data(html: str, element_id: str) -> Any:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert match, element_id
    return json.loads(match.group(1))


def test_the_page_needs_a_sign_in(client):
    response = client.get(reverse("agents_pages:chat") + "?team=crew")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("agents_pages:login"))


def test_one_grouped_picker_of_the_active_agents_teams_and_workflows(client, user, components):
    client.force_login(user)
    html, context = _page(client)
    assert [(g["kind"], [i["slug"] for i in g["items"]]) for g in context["groups"]] == [
        ("agent", ["helper", "writer"]),
        ("team", ["crew"]),
        ("workflow", ["flow"]),
    ]
    assert (context["current_kind"], context["current_slug"]) == ("agent", "helper")  # the first one
    options = re.findall(r'<option value="([^"]+)"( selected)?>([^<]+)</option>', html)
    assert options == [
        ("agent:helper", " selected", "Helper"),
        ("agent:writer", "", "Writer"),
        ("team:crew", "", "Crew"),
        ("workflow:flow", "", "Flow"),
    ]
    assert re.findall(r'<optgroup label="([^"]+)">', html) == ["Agents", "Teams", "Workflows"]
    assert _script_data(html, "chat-ws-paths") == {
        "agent": "/ws/agents/",
        "team": "/ws/teams/",
        "workflow": "/ws/workflows/",
    }
    assert _script_data(html, "chat-names")["team"] == {"crew": "Crew"}
    intros = _script_data(html, "chat-intros")
    assert intros["team:crew"] == {
        "name": "Crew",
        "description": "Two heads.",
        "parts": ["Helper", "Writer"],
        "examples": ["Plan a trip", "Write a haiku"],  # one a line, blank lines dropped
    }
    assert intros["agent:helper"]["examples"] == []
    flow = components["flow"]
    flow.example_prompts = "\n".join(f"prompt {i}" for i in range(1, 9))
    flow.save()
    html, _ = _page(client)
    assert _script_data(html, "chat-intros")["workflow:flow"]["examples"] == [f"prompt {i}" for i in range(1, 7)]
    assert intros["workflow:flow"]["parts"] == ["draft", "gate"]  # top-level steps, in order
    # The Markdown libraries are the site's own static files (no CDN).
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts == [
        "/static/agents_app/vendor/marked/marked.umd.js",
        "/static/agents_app/vendor/dompurify/purify.min.js",
        "/static/agents_app/chat.js",
    ]


@pytest.mark.parametrize(
    ("query", "picked"),
    [
        ("?agent=writer", ("agent", "writer")),
        ("?team=crew", ("team", "crew")),
        ("?workflow=flow&session=00000000-0000-0000-0000-000000000001", ("workflow", "flow")),
        ("?team=idle", ("agent", "helper")),  # an inactive team is not offered
        ("?agent=asleep", ("agent", "helper")),
        ("?workflow=nope", ("agent", "helper")),
    ],
)
def test_the_url_names_the_component(client, user, components, query, picked):
    client.force_login(user)
    html, context = _page(client, query)
    assert (context["current_kind"], context["current_slug"]) == picked
    assert f'<option value="{picked[0]}:{picked[1]}" selected>' in html


def test_with_nothing_to_chat_with_the_composer_is_off(client, user):
    client.force_login(user)
    TeamFactory(slug="idle", is_active=False)
    html, context = _page(client, "?team=idle")
    assert (context["current_kind"], context["current_slug"]) == ("", "")
    assert "Nothing to chat with yet." in html
    assert '<select id="agent" disabled>' in html and "<option" not in html
