"""The model layer through the real stack (issue 17): parser models, structured output retried
then refused, fallback models, usage and cost per model config. The `openai` client talks to the
scripted server over a real socket; every model config below points at it with its own model id,
so a test can tell from the recorded requests which config was asked."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from agents_app.models import ModelConfig, ModelFallback
from agents_app.runs import run_agent
from agents_app.testing.scripted_server import _usage
from sessions_app.models import Run
from telemetry_app.models import TelemetryEvent
from tests.conftest import bearer, parse_sse, without_bookkeeping
from tests.factories import AgentFactory, ModelConfigFactory, TeamFactory, TeamMemberFactory, WorkflowFactory
from tests.factories import WorkflowStepFactory as StepFactory

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}
MILLION = Decimal(1_000_000)


def scripted_config(server: Any, model_id: str, **fields: Any) -> ModelConfig:
    return ModelConfigFactory(
        name=fields.pop("name", model_id),
        provider=ModelConfig.Provider.OPENAI,
        base_url=server.base_url,
        model_id=model_id,
        api_key="sk-test",
        **fields,
    )


def expected_cost(config: ModelConfig, request: dict[str, Any], answer: str, cached: int = 0) -> Decimal:
    """What one call costs, from the scripted server's own token count for it."""
    usage = _usage(request, answer, None, cached)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    cached_price = config.cached_input_price if config.cached_input_price is not None else config.input_price
    total = (
        (usage["prompt_tokens"] - cached) * config.input_price
        + cached * cached_price
        + usage["completion_tokens"] * config.output_price
    )
    return (total / MILLION).quantize(Decimal("0.0000000001"))


@pytest.fixture
def priced(scripted_model: Any) -> ModelConfig:
    return scripted_config(
        scripted_model,
        "main-model",
        input_price=Decimal("2.5"),
        cached_input_price=Decimal("1.25"),
        output_price=Decimal("10"),
    )


# ---- usage and cost ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_a_run_stores_its_tokens_and_cost_priced_per_model_config(asgi, token, scripted_model, priced, stream):
    agent = await sync_to_async(AgentFactory)(slug="pricey", model=priced)
    scripted_model.push_text("Paris is the capital of France.", cached_tokens=3)
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs", json={"message": "capital?", "stream": stream}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    request = scripted_model.requests[-1]
    if stream:  # the usage of a streamed run comes from the provider's final chunk
        assert request["stream_options"] == {"include_usage": True}
        name, terminal = parse_sse(r.text)[-1]
        assert name == "RunCompleted"
        metrics = terminal["metrics"]
    else:
        metrics = r.json()["metrics"]
    cost = expected_cost(priced, request, "Paris is the capital of France.", cached=3)
    assert cost > 0
    usage = _usage(request, "Paris is the capital of France.", None, 3)
    assert metrics["cache_read_tokens"] == 3
    assert metrics["input_tokens"] == usage["prompt_tokens"]
    assert metrics["cost"] == float(cost)
    run = await Run.objects.aget(agent=agent)
    assert (run.cost, run.total_cost, run.cache_read_tokens) == (cost, cost, 3)
    assert run.model == "main-model"


async def test_a_team_run_costs_its_leader_plus_its_members(asgi, token, scripted_model, priced):
    cheap = await sync_to_async(scripted_config)(
        scripted_model, "member-model", input_price=Decimal("0.5"), output_price=Decimal("1.5")
    )

    def make() -> Any:
        writer = AgentFactory(slug="writer", name="Writer", model=cheap)
        team = TeamFactory(slug="crew", model=priced, mode="route")
        TeamMemberFactory(team=team, agent=writer)
        return team

    team = await sync_to_async(make)()
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "writer"}, "id": "r1"}])
    scripted_model.push_text("Written by the writer.")
    r = await asgi.post(f"/api/teams/{team.slug}/runs", json={"message": "write"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    leader_request, member_request = scripted_model.requests
    leader_usage = _usage(leader_request, None, [{"name": "route_to_member", "arguments": '{"member_id": "writer"}'}])
    leader_cost = (
        (leader_usage["prompt_tokens"] * priced.input_price + leader_usage["completion_tokens"] * priced.output_price)
        / MILLION
    ).quantize(Decimal("0.0000000001"))
    member_cost = expected_cost(cheap, member_request, "Written by the writer.")
    team_run = await Run.objects.aget(team=team, parent_run__isnull=True)
    member_run = await Run.objects.aget(parent_run=team_run)
    assert (member_run.cost, member_run.total_cost) == (member_cost, member_cost)
    assert member_run.model == "member-model"
    # The team's own cost is its leader's calls; its total adds its member's, and so does its event.
    assert team_run.cost == leader_cost
    assert team_run.total_cost == leader_cost + member_cost
    assert r.json()["metrics"]["cost"] == float(leader_cost + member_cost)


async def test_a_workflow_run_costs_what_its_steps_cost(asgi, token, scripted_model, priced):
    def make() -> Any:
        writer = AgentFactory(slug="writer", model=priced)
        workflow = WorkflowFactory(slug="flow")
        StepFactory(workflow=workflow, name="write", kind="agent", agent=writer)
        return workflow

    workflow = await sync_to_async(make)()
    scripted_model.push_text("A draft.")
    r = await asgi.post(f"/api/workflows/{workflow.slug}/runs", json={"message": "go"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    step_cost = expected_cost(priced, scripted_model.requests[-1], "A draft.")
    run = await Run.objects.aget(workflow=workflow)
    assert (run.cost, run.total_cost) == (Decimal(0), step_cost)
    assert r.json()["metrics"]["cost"] == float(step_cost)


async def test_a_config_without_prices_costs_nothing(asgi, agent, token, scripted_model):
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 200
    assert r.json()["metrics"]["cost"] == 0.0
    run = await Run.objects.aget(agent=agent)
    assert run.cost == Decimal(0) and run.input_tokens > 0


# ---- fallbacks --------------------------------------------------------------------------------


async def _with_fallback(server: Any, **main: Any) -> Any:
    def make() -> Any:
        first = scripted_config(server, "main-model", max_retries=0, **main)
        backup = scripted_config(server, "backup-model", output_price=Decimal("4"))
        agent = AgentFactory(slug="sturdy", model=first)
        ModelFallback.objects.create(agent=agent, model=backup, position=0)
        return agent, backup

    return await sync_to_async(make)()


@pytest.mark.parametrize("stream", [False, True])
async def test_a_server_error_falls_back_to_the_next_model(asgi, token, scripted_model, stream, settings):
    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY": True}
    agent, backup = await _with_fallback(scripted_model)
    scripted_model.push_error(500, "upstream exploded")
    scripted_model.push_text("Answered by the backup.")
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs", json={"message": "hi", "stream": stream}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    assert [req["model"] for req in scripted_model.requests] == ["main-model", "backup-model"]
    if stream:
        frames = parse_sse(r.text)
        assert frames[0][1]["model"] == "main-model"  # RunStarted: what the run set out to use
        assert "".join(f["content"] for n, f in frames if n == "RunContent") == "Answered by the backup."
        terminal = frames[-1][1]
    else:
        terminal = r.json()
        assert terminal["content"] == "Answered by the backup."
    assert terminal["model"] == "backup-model"
    run = await Run.objects.aget(agent=agent)
    assert (run.status, run.model, run.provider) == ("completed", "backup-model", "openai")
    # Priced with the config that answered.
    assert run.cost == expected_cost(backup, scripted_model.requests[-1], "Answered by the backup.") > 0
    event = await TelemetryEvent.objects.filter(event_type="agent", payload__run_id=str(run.pk)).aget()
    assert event.payload["model"] == "backup-model"


async def test_a_timeout_falls_back_to_the_next_model(asgi, token, scripted_model):
    agent, _ = await _with_fallback(scripted_model, timeout_seconds=0.3)
    scripted_model.push_hang(2.0, text="too late")
    scripted_model.push_text("In time.")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["content"] == "In time." and r.json()["model"] == "backup-model"


async def test_a_stream_that_breaks_after_the_reader_saw_text_does_not_fall_back(asgi, token, scripted_model):
    agent, _ = await _with_fallback(scripted_model)
    scripted_model.push_stream_break("Half an answer")
    scripted_model.push_text("A whole other answer.")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi", "stream": True}, headers=bearer(token))
    frames = parse_sse(r.text)
    # Another model's answer would not continue what the reader already has: the run fails, keeping it.
    assert frames[-1][0] == "RunError" and frames[-1][1]["error_type"] == "model_unreachable"
    assert [req["model"] for req in scripted_model.requests] == ["main-model"]
    run = await Run.objects.aget(agent=agent)
    assert run.output == "Half an answer"


async def test_a_refused_key_does_not_fall_back(asgi, token, scripted_model):
    agent, _ = await _with_fallback(scripted_model)
    scripted_model.push_error(401, "bad key")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 502
    assert r.json()["error"]["type"] == "model_auth_failed"
    assert [req["model"] for req in scripted_model.requests] == ["main-model"]


async def test_when_every_model_fails_the_last_failure_is_the_runs(asgi, token, scripted_model):
    agent, _ = await _with_fallback(scripted_model)
    scripted_model.push_error(500, "down")
    scripted_model.push_error(429, "busy")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "model_rate_limited"
    run = await Run.objects.aget(agent=agent)
    assert run.status == "error" and run.model == "main-model"  # nothing answered


# ---- parser model -----------------------------------------------------------------------------


async def _with_parser(server: Any) -> Any:
    def make() -> Any:
        main = scripted_config(server, "main-model", output_price=Decimal("10"))
        parser = scripted_config(server, "parser-model", output_price=Decimal("1"))
        return AgentFactory(slug="parsed", model=main, parser_model=parser, output_schema=SCHEMA), parser

    return await sync_to_async(make)()


async def test_a_parser_model_turns_the_free_answer_into_the_schema(asgi, token, scripted_model):
    agent, parser = await _with_parser(scripted_model)
    scripted_model.push_text("Paris, home to about 2.1 million people, is the capital.")
    scripted_model.push_json({"city": "Paris", "population": 2100000})
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "capital?"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["content"] == {"city": "Paris", "population": 2100000}
    assert r.json()["content_type"] == "json"
    main_request, parser_request = scripted_model.requests
    # The main model answers freely: no schema, no schema instruction; the parser gets the schema.
    assert "response_format" not in main_request
    assert "JSON schema" not in main_request["messages"][0]["content"]
    assert parser_request["model"] == "parser-model"
    assert parser_request["response_format"]["json_schema"]["schema"] == SCHEMA
    assert parser_request["messages"][-1]["content"] == "Paris, home to about 2.1 million people, is the capital."
    assert "tools" not in parser_request
    run = await Run.objects.aget(agent=agent)
    assert run.output == "Paris, home to about 2.1 million people, is the capital."  # the raw answer is kept
    assert run.output_json == {"city": "Paris", "population": 2100000}
    # Both calls are priced, each with its own config.
    assert run.cost == expected_cost(agent.model, main_request, run.output) + expected_cost(
        parser, parser_request, '{"city": "Paris", "population": 2100000}'
    )
    names = without_bookkeeping([e["event"] for e in run.events])
    assert names == ["RunStarted", "ParserModelResponseStarted", "ParserModelResponseCompleted", "RunCompleted"]


async def test_a_parser_model_streams_the_free_answer_then_the_parsed_object(asgi, token, scripted_model):
    agent, _ = await _with_parser(scripted_model)
    scripted_model.push_text("Paris has 2.1 million people.")
    scripted_model.push_json({"city": "Paris", "population": 2100000})
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs", json={"message": "capital?", "stream": True}, headers=bearer(token)
    )
    frames = parse_sse(r.text)
    names = without_bookkeeping([n for n, _ in frames])
    assert names[0] == "RunStarted" and names[-3:] == [
        "ParserModelResponseStarted",
        "ParserModelResponseCompleted",
        "RunCompleted",
    ]
    assert "".join(f["content"] for n, f in frames if n == "RunContent") == "Paris has 2.1 million people."
    assert frames[-3][1]["model"] == "parser-model"
    assert frames[-1][1]["content"] == {"city": "Paris", "population": 2100000}
    assert [f["event_index"] for _, f in frames] == list(range(len(frames)))


async def test_a_parser_model_that_misses_the_schema_twice_ends_with_output_invalid(asgi, token, scripted_model):
    agent, _ = await _with_parser(scripted_model)
    scripted_model.push_text("Paris has 2.1 million people.")
    scripted_model.push_json({"city": "Paris"})
    scripted_model.push_json({"city": "Paris", "population": "many"})
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "capital?"}, headers=bearer(token))
    assert r.status_code == 502
    assert r.json()["error"]["type"] == "output_invalid"
    assert "parser model" in r.json()["error"]["message"] and "population" in r.json()["error"]["message"]
    retry = scripted_model.requests[2]["messages"]
    assert retry[-2]["content"] == '{"city": "Paris"}' and "'population' is a required property" in retry[-1]["content"]
    run = await Run.objects.aget(agent=agent)
    assert (run.status, run.error_type, run.output) == ("error", "output_invalid", "Paris has 2.1 million people.")


async def test_a_team_parser_model_structures_the_teams_answer(asgi, token, scripted_model):
    def make() -> Any:
        main = scripted_config(scripted_model, "main-model")
        parser = scripted_config(scripted_model, "parser-model")
        writer = AgentFactory(slug="writer", model=main)
        team = TeamFactory(slug="crew", model=main, mode="route", output_schema=SCHEMA, parser_model=parser)
        TeamMemberFactory(team=team, agent=writer)
        return team

    team = await sync_to_async(make)()
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "writer"}, "id": "r1"}])
    scripted_model.push_text("Paris: 2.1 million.")
    scripted_model.push_json({"city": "Paris", "population": 2100000})
    r = await asgi.post(f"/api/teams/{team.slug}/runs", json={"message": "go", "stream": True}, headers=bearer(token))
    frames = parse_sse(r.text)
    names = without_bookkeeping([n for n, _ in frames])
    assert "TeamParserModelResponseStarted" in names and names[-2] == "TeamParserModelResponseCompleted"
    assert frames[-1][0] == "TeamRunCompleted"
    assert frames[-1][1]["content"] == {"city": "Paris", "population": 2100000}
    assert frames[-1][1]["content_type"] == "json"
    run = await Run.objects.aget(team=team, parent_run__isnull=True)
    assert run.output == "Paris: 2.1 million." and run.output_json == {"city": "Paris", "population": 2100000}


# ---- judges -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_judge_confidence_over_its_limit_is_clamped_not_a_500(agent, user, scripted_model):
    from tests.factories import attach_hooks

    attach_hooks(agent, post=["output_check"])
    agent.save()
    scripted_model.push_text("A fine answer.")
    scripted_model.push_json(
        {"is_complete": True, "is_professional": True, "is_safe": True, "concerns": [], "confidence": 1.5}
    )
    result = run_agent(agent_id=agent.slug, user=user, message="hi")
    assert result.status == "completed" and result.content == "A fine answer."
    assert len(scripted_model.requests) == 2  # no retry was needed: the value was clamped


# ---- configuring it -----------------------------------------------------------------------------


def test_staff_set_a_parser_model_and_fallbacks_over_the_api(staff_token, offline_agent):
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {staff_token}")
    backup, second, parser = (ModelConfigFactory(name=n) for n in ("backup", "second", "parser"))
    r = api.patch(
        "/api/agents/offline/",
        {"output_schema": SCHEMA, "parser_model": parser.pk, "fallback_models": [second.pk, backup.pk]},
        format="json",
    )
    assert r.status_code == 200, r.json()
    assert (r.json()["parser_model"], r.json()["fallback_models"]) == (parser.pk, [second.pk, backup.pk])
    assert list(offline_agent.fallbacks.values_list("model__name", flat=True)) == ["second", "backup"]
    assert api.get("/api/agents/offline/").json()["fallback_models"] == [second.pk, backup.pk]
    # Reordered, shortened: the whole list is replaced.
    r = api.patch("/api/agents/offline/", {"fallback_models": [backup.pk]}, format="json")
    assert r.json()["fallback_models"] == [backup.pk] and offline_agent.fallbacks.count() == 1


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"parser_model": "PARSER"}, "parser_model"),  # no output schema
        ({"fallback_models": ["MAIN"]}, "fallback_models"),  # its own model
        ({"fallback_models": ["PARSER", "PARSER"]}, "fallback_models"),  # twice
        ({"fallback_models": [999999]}, "fallback_models"),
    ],
)
def test_a_parser_or_fallback_that_cannot_work_is_a_400(staff_token, offline_agent, patch, field):
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {staff_token}")
    ids = {"PARSER": ModelConfigFactory(name="parser").pk, "MAIN": offline_agent.model_id}
    body = {k: ids.get(v, v) if not isinstance(v, list) else [ids.get(x, x) for x in v] for k, v in patch.items()}
    r = api.patch("/api/agents/offline/", body, format="json")
    assert r.status_code == 400 and field in r.json(), r.json()
    assert r.json()["code"] == "invalid"  # the API's code for a refused field (sessions_app.errors)
    assert offline_agent.fallbacks.count() == 0


def test_the_admin_edits_fallbacks_and_the_parser_model(client, staff_user, offline_agent):
    client.force_login(staff_user)
    page = client.get(f"/admin/agents_app/agent/{offline_agent.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Fallback models" in html and 'name="parser_model"' in html
    team = TeamFactory(slug="crew")
    page = client.get(f"/admin/agents_app/team/{team.pk}/change/")
    assert page.status_code == 200 and "Fallback models" in page.content.decode()
    assert 'name="output_schema"' in page.content.decode()
