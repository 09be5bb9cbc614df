"""Agents and model configs over REST: users read, staff write; the API key never comes back."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from agents_app.models import Agent, ModelConfig
from tests.conftest import without_error_code
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


# ---- hooks, the busy-session policy, and strict write bodies ------------------------------------


def test_staff_write_hooks_and_busy_session_policy_and_read_them_back(staff_token, offline_agent):
    from agents_app.models import AgentHook

    api = client_for(staff_token)
    r = api.patch(
        "/api/agents/offline/",
        {
            "pre_hooks": [{"hook": "redact_pii"}, {"hook": "track_topics", "mode": "inline", "max_retries": 0}],
            "post_hooks": [{"hook": "output_check", "timeout_seconds": 12.5}],
            "busy_session_policy": "reject",
            "memory_hook_mode": "inline",
        },
        format="json",
    )
    assert r.status_code == 200, r.json()
    expected_pre = [
        {"hook": "redact_pii", "mode": "default", "max_retries": None, "timeout_seconds": None},
        {"hook": "track_topics", "mode": "inline", "max_retries": 0, "timeout_seconds": None},
    ]
    expected_post = [{"hook": "output_check", "mode": "default", "max_retries": None, "timeout_seconds": 12.5}]
    assert (r.json()["pre_hooks"], r.json()["post_hooks"]) == (expected_pre, expected_post)
    assert (r.json()["busy_session_policy"], r.json()["memory_hook_mode"]) == ("reject", "inline")
    read = api.get("/api/agents/offline/").json()
    assert (read["pre_hooks"], read["post_hooks"], read["busy_session_policy"]) == (
        expected_pre,
        expected_post,
        "reject",
    )
    rows = list(AgentHook.objects.filter(agent=offline_agent).values_list("phase", "position", "hook", "mode"))
    assert rows == [
        ("pre", 0, "redact_pii", "default"),
        ("pre", 1, "track_topics", "inline"),
        ("post", 0, "output_check", "default"),
    ]
    # A new list replaces the phase (reordered here); the other phase is left alone.
    r = api.patch(
        "/api/agents/offline/", {"pre_hooks": [{"hook": "track_topics"}, {"hook": "redact_pii"}]}, format="json"
    )
    assert r.status_code == 200, r.json()
    assert [h["hook"] for h in r.json()["pre_hooks"]] == ["track_topics", "redact_pii"]
    assert [h["hook"] for h in r.json()["post_hooks"]] == ["output_check"]
    offline_agent.refresh_from_db()
    assert offline_agent.busy_session_policy == "reject"
    # Created with hooks in one request.
    created = api.post(
        "/api/agents/",
        {
            "agent_id": "guarded",
            "name": "Guarded",
            "model": offline_agent.model_id,
            "pre_hooks": [{"hook": "input_check"}],
            "busy_session_policy": "interrupt",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert api.get("/api/agents/guarded/").json()["pre_hooks"] == [
        {"hook": "input_check", "mode": "default", "max_retries": None, "timeout_seconds": None}
    ]
    assert Agent.objects.get(slug="guarded").busy_session_policy == "interrupt"


@pytest.mark.parametrize(
    ("patch", "errors"),
    [
        (
            {"pre_hooks": [{"hook": "redact_pii"}, {"hook": "no_such_hook"}]},
            {
                "pre_hooks": {
                    "1": {"hook": ["Not registered as a hook that runs before the model (pre): no_such_hook."]}
                }
            },
        ),
        # output_check runs only after the model; agentos_memory is ours, planned from the memory settings.
        ({"pre_hooks": [{"hook": "output_check"}]}, None),
        ({"post_hooks": [{"hook": "agentos_memory"}]}, None),
        (
            {"pre_hooks": [{"hook": "input_check", "mode": "background"}]},
            {"pre_hooks": {"0": {"mode": ["Hook input_check is a guardrail: it always runs inline."]}}},
        ),
        (
            {"post_hooks": [{"hook": "redact_pii"}, {"hook": "redact_pii"}]},
            {"post_hooks": ["A hook can be attached only once after the model: redact_pii."]},
        ),
        ({"pre_hooks": [{"hook": "redact_pii", "max_retries": 21}]}, None),
        ({"pre_hooks": [{"hook": "redact_pii", "timeout_seconds": 0}]}, None),
        ({"pre_hooks": [{"hook": "redact_pii", "mode": "sometimes"}]}, None),
        ({"pre_hooks": [{"hook": "redact_pii", "order": 1}]}, None),
        ({"busy_session_policy": "wait"}, None),
        # A row with no hook (found by the fuzzer: a PATCH makes a row's fields optional) was a 500.
        (
            {"post_hooks": [{"mode": "inline"}, {"hook": "redact_pii"}]},
            {"post_hooks": {"0": {"hook": ["This field is required."]}}},
        ),
    ],
)
def test_invalid_hooks_are_400_and_change_nothing(staff_token, offline_agent, patch, errors):
    from agents_app.models import AgentHook

    AgentHook.objects.create(agent=offline_agent, phase="pre", position=0, hook="track_topics")
    r = client_for(staff_token).patch("/api/agents/offline/", patch, format="json")
    assert r.status_code == 400, r.json()
    (field,) = patch
    assert set(r.json()) == {field, "detail", "code"} and r.json()["code"] == "invalid"
    if errors is not None:
        body = without_error_code(r.json())
        # The registered names follow each "not registered" message; compare up to them.
        if "1" in body[field]:
            # only the hooks that may run before the model
            assert body[field]["1"]["hook"][0].endswith(" Registered: input_check, redact_pii, track_topics."), body
            body[field]["1"]["hook"] = [body[field]["1"]["hook"][0].split(" Registered:")[0]]
        assert body == errors
    assert list(AgentHook.objects.filter(agent=offline_agent).values_list("hook", flat=True)) == ["track_topics"]


@pytest.mark.parametrize(
    ("url", "body", "field", "message"),
    [
        ("/api/agents/offline/", {"name": "Renamed", "hook_modes": "inline"}, "hook_modes", "Unknown field."),
        ("/api/agents/offline/", {"name": "Renamed", "created_at": "2020-01-01T00:00:00Z"}, "created_at", None),
        ("/api/models/{model}/", {"name": "renamed", "has_api_key": False}, "has_api_key", None),
        ("/api/models/{model}/", {"name": "renamed", "id": 5}, "id", None),
        ("/api/models/{model}/", {"name": "renamed", "temprature": 0.2}, "temprature", "Unknown field."),
    ],
)
def test_unknown_or_read_only_fields_are_400_not_dropped(staff_token, offline_agent, url, body, field, message):
    r = client_for(staff_token).patch(url.format(model=offline_agent.model_id), body, format="json")
    assert r.status_code == 400, r.json()
    assert list(r.json()) == [field, "detail", "code"]
    (text,) = r.json()[field]
    assert text.startswith(message) if message else text == "This field is read-only."
    offline_agent.refresh_from_db()
    assert (offline_agent.name, offline_agent.model.name) == ("Offline", ModelConfig.objects.get().name)
    # The same through a form body; Django's CSRF token is the one extra key a form may carry.
    form = client_for(staff_token).patch(
        url.format(model=offline_agent.model_id), {**body, "csrfmiddlewaretoken": "x"}, format="multipart"
    )
    assert form.status_code == 400 and list(form.json()) == [field, "detail", "code"]


def test_unknown_fields_inside_a_hook_row_are_400(staff_token, offline_agent):
    r = client_for(staff_token).post(
        "/api/agents/",
        {"agent_id": "x", "name": "X", "model": offline_agent.model_id, "pre_hooks": [{"name": "redact_pii"}]},
        format="json",
    )
    assert r.status_code == 400
    assert without_error_code(r.json()) == {
        "pre_hooks": {
            "0": {"name": ["Unknown field. The writable fields are: hook, max_retries, mode, timeout_seconds."]}
        }
    }
    assert not Agent.objects.filter(slug="x").exists()


def test_the_schema_documents_hooks_policy_and_strict_bodies(token):
    schema = client_for(token).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]
    request = components["AgentAdminRequest"]
    assert request["additionalProperties"] is False
    assert components["PatchedAgentAdminRequest"]["additionalProperties"] is False
    assert components["ModelConfigRequest"]["additionalProperties"] is False
    assert request["properties"]["pre_hooks"]["items"] == {"$ref": "#/components/schemas/HookRowRequest"}
    row = components["HookRowRequest"]
    assert row["additionalProperties"] is False and row["required"] == ["hook"]
    assert row["properties"]["hook"]["allOf"] == [{"$ref": "#/components/schemas/HookEnum"}]
    assert components["HookEnum"]["enum"] == ["input_check", "output_check", "redact_pii", "track_topics"]
    assert row["properties"]["mode"]["allOf"] == [{"$ref": "#/components/schemas/HookModeEnum"}]
    assert request["properties"]["memory_hook_mode"]["allOf"] == [{"$ref": "#/components/schemas/HookModeEnum"}]
    assert set(row["properties"]) == {"hook", "mode", "max_retries", "timeout_seconds"}
    assert components["AgentAdmin"]["properties"]["post_hooks"]["items"] == {"$ref": "#/components/schemas/HookRow"}
    assert "busy_session_policy" in request["properties"]
