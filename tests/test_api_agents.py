"""Agents and model configs over REST: users read, staff write; the API key never comes back."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from agents_app.models import Agent, ModelConfig
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


def client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_users_list_active_agents_without_their_instructions(token, offline_agent):
    AgentFactory(slug="hidden", is_active=False)
    r = client_for(token).get("/api/agents/")
    assert r.status_code == 200
    assert [a["agent_id"] for a in r.json()] == ["offline"]
    agent = r.json()[0]
    assert "instructions" not in agent
    assert agent["tools"] == ["calculator", "current_time", "text_stats"]
    assert agent["model"] == {"name": offline_agent.model.name, "provider": "offline", "model_id": "offline-demo"}
    assert client_for(token).get("/api/agents/hidden/").status_code == 404


def test_users_cannot_write_agents(token, offline_agent):
    api = client_for(token)
    assert api.post("/api/agents/", {"agent_id": "x"}, format="json").status_code == 403
    assert api.patch("/api/agents/offline/", {"name": "x"}, format="json").status_code == 403
    assert api.delete("/api/agents/offline/").status_code == 403
    assert api.get("/api/models/").status_code == 403


def test_staff_create_update_and_see_inactive_agents(staff_token):
    api = client_for(staff_token)
    model = api.post(
        "/api/models/",
        {
            "name": "local",
            "provider": "openai",
            "base_url": "http://127.0.0.1:11434/v1",
            "model_id": "llama3",
            "api_key": "sk-very-secret",
        },
        format="json",
    )
    assert model.status_code == 201, model.json()
    assert "api_key" not in model.json() and model.json()["has_api_key"] is True
    assert "sk-very-secret" not in api.get("/api/models/").content.decode()
    assert ModelConfig.objects.get(name="local").api_key == "sk-very-secret"

    created = api.post(
        "/api/agents/",
        {
            "agent_id": "writer",
            "name": "Writer",
            "model": model.json()["id"],
            "instructions": "Write well.",
            "tools": ["calculator"],
            "output_schema": {"type": "object", "properties": {"title": {"type": "string"}}},
            "is_active": False,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert api.get("/api/agents/writer/").json()["instructions"] == "Write well."
    updated = api.patch("/api/agents/writer/", {"history_runs": 5, "is_active": True}, format="json")
    assert updated.status_code == 200 and updated.json()["history_runs"] == 5
    assert Agent.objects.get(slug="writer").is_active


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"tools": ["no_such_tool"]}, "tools"),
        ({"output_schema": {"type": "nonsense"}}, "output_schema"),
        ({"output_schema": {"type": "array"}}, "output_schema"),
        ({"history_runs": 51}, "history_runs"),
        ({"agent_id": "bad id!"}, "agent_id"),
        ({"model": 999999}, "model"),
    ],
)
def test_invalid_agent_settings_are_400(staff_token, offline_agent, patch, field):
    r = client_for(staff_token).patch("/api/agents/offline/", patch, format="json")
    assert r.status_code == 400 and field in r.json(), r.json()


def test_agent_with_sessions_cannot_be_deleted(staff_token, offline_agent, user):
    from agents_app.runs import run_agent

    run_agent(agent_id="offline", user=user, message="hi")
    r = client_for(staff_token).delete("/api/agents/offline/")
    assert r.status_code == 400 and "deactivate" in r.json()["detail"]


def test_obtain_token_with_password(user):
    r = APIClient().post("/api/auth/token/", {"username": "alice", "password": "pw-for-tests-123"}, format="json")
    assert r.status_code == 200 and len(r.json()["token"]) == 40


def test_schema_and_docs_are_served(token):
    schema = client_for(token).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/agents/{agent_id}/runs", "/api/sessions/", "/api/sessions/{session_id}/"} <= set(paths)
    assert client_for(token).get("/api/docs/").status_code == 200
