"""Sessions and runs of the authenticated user: listing, detail, rename, delete, isolation."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from agents_app.runs import run_agent
from sessions_app.models import Message, Run, Session
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def other_api(other_token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {other_token}")
    return client


@pytest.fixture
def conversation(offline_agent, user):
    first = run_agent(agent_id=offline_agent.slug, user=user, message="what is 2+2?")
    run_agent(agent_id=offline_agent.slug, user=user, message="thanks", session_id=first.session_id)
    return first.session_id


def test_list_my_sessions_newest_first_with_run_counts(api, offline_agent, user, conversation):
    newer = run_agent(agent_id=offline_agent.slug, user=user, message="newer one")
    r = api.get("/api/sessions/")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 2
    assert [s["session_id"] for s in body["results"]] == [newer.session_id, str(conversation)]
    assert [s["run_count"] for s in body["results"]] == [1, 2]
    assert body["results"][1]["name"] == "what is 2+2?"
    assert body["results"][1]["agent_id"] == offline_agent.slug


def test_list_filters_by_agent_and_paginates(api, offline_agent, user):
    other = AgentFactory(slug="second")
    for i in range(3):
        run_agent(agent_id=offline_agent.slug, user=user, message=f"a{i}")
    run_agent(agent_id=other.slug, user=user, message="b")
    assert api.get("/api/sessions/", {"agent_id": "second"}).json()["count"] == 1
    page = api.get("/api/sessions/", {"agent_id": offline_agent.slug, "page_size": 2}).json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert api.get("/api/sessions/", {"page": 99}).status_code == 404


def test_search_finds_sessions_by_name_or_by_a_message_and_only_mine(api, other_api, offline_agent, user, conversation):
    renamed = run_agent(agent_id=offline_agent.slug, user=user, message="plan a trip")
    api.patch(f"/api/sessions/{renamed.session_id}/", {"name": "Holiday in Lisbon"}, format="json")

    def found(client, text):
        return [s["session_id"] for s in client.get("/api/sessions/", {"search": text}).json()["results"]]

    assert found(api, "LISBON") == [renamed.session_id]  # the name, ignoring case
    assert found(api, "trip") == [renamed.session_id]  # its first message, though the name changed
    assert found(api, "THANKS") == [str(conversation)]  # a later message of the session
    assert found(api, "  2+2  ") == [str(conversation)]  # (spaces around it ignored)
    assert set(found(api, "")) == {renamed.session_id, str(conversation)}
    assert found(api, "nothing like it") == []
    assert found(api, "a\x00b") == []  # a NUL character matches nothing (and is no 500)
    assert found(other_api, "trip") == []  # another user's sessions stay invisible
    r = api.get("/api/sessions/", {"search": "trip", "agent_id": "nope"})
    assert r.status_code == 200 and r.json()["count"] == 0


def test_session_detail_has_runs_and_messages_in_order(api, conversation):
    r = api.get(f"/api/sessions/{conversation}/")
    assert r.status_code == 200
    body = r.json()
    assert [run["input"] for run in body["runs"]] == ["what is 2+2?", "thanks"]
    first = body["runs"][0]
    assert first["status"] == "completed"
    assert [m["role"] for m in first["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert first["messages"][1]["tool_calls"][0]["function"]["name"] == "calculator"
    assert first["content"] == "[offline demo model] I used my tools: calculator returned 4."
    assert first["metrics"]["total_tokens"] > 0
    assert body["state"] == {}


def test_run_detail(api, conversation):
    run = Run.objects.filter(session_id=conversation).order_by("created_at").first()
    r = api.get(f"/api/runs/{run.pk}/")
    assert r.status_code == 200 and r.json()["run_id"] == str(run.pk)
    assert r.json()["messages"][0] == {**r.json()["messages"][0], "role": "user", "content": "what is 2+2?"}


def test_rename_and_delete(api, conversation):
    r = api.patch(f"/api/sessions/{conversation}/", {"name": "Arithmetic"}, format="json")
    assert r.status_code == 200 and r.json()["name"] == "Arithmetic"
    assert Session.objects.get(pk=conversation).name == "Arithmetic"
    assert api.patch(f"/api/sessions/{conversation}/", {"name": "x" * 201}, format="json").status_code == 400
    assert api.delete(f"/api/sessions/{conversation}/").status_code == 204
    assert not Session.objects.filter(pk=conversation).exists()
    assert Run.objects.count() == 0 and Message.objects.count() == 0
    assert api.get(f"/api/sessions/{conversation}/").status_code == 404


def test_other_users_see_nothing_and_change_nothing(other_api, conversation):
    assert other_api.get("/api/sessions/").json()["count"] == 0
    assert other_api.get(f"/api/sessions/{conversation}/").status_code == 404
    assert other_api.patch(f"/api/sessions/{conversation}/", {"name": "pwned"}, format="json").status_code == 404
    assert other_api.delete(f"/api/sessions/{conversation}/").status_code == 404
    run = Run.objects.filter(session_id=conversation).first()
    assert other_api.get(f"/api/runs/{run.pk}/").status_code == 404
    assert Session.objects.get(pk=conversation).name == "what is 2+2?"


def test_unknown_and_malformed_ids_are_404(api):
    assert api.get("/api/sessions/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert api.get("/api/sessions/not-a-uuid/").status_code == 404


def test_anonymous_is_401():
    assert APIClient().get("/api/sessions/").status_code == 401
