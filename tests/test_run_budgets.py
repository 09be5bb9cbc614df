"""Per-run budgets through the real stack (issue 18, part 5): model calls, tokens and wall-clock
seconds per run, an agent's own or the site's, a team's bounding its members' work too. A run that
reaches one ends with `budget_exceeded` (422), keeping what it wrote."""

from __future__ import annotations

import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from sessions_app.models import Run
from tests.conftest import bearer, parse_sse
from tests.factories import AgentFactory, TeamFactory, TeamMemberFactory

pytestmark = pytest.mark.django_db(transaction=True)


async def _agent(openai_model: Any, **limits: Any) -> Any:
    return await sync_to_async(AgentFactory)(slug="bounded", model=openai_model, tools=["calculator"], **limits)


async def test_a_run_stops_at_its_model_call_limit(asgi, token, scripted_model, openai_model):
    agent = await _agent(openai_model, max_model_calls=2, max_tool_calls=20)
    for _ in range(3):  # a model that never stops asking for tools
        scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "1+1"}}])
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "loop"}, headers=bearer(token))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "budget_exceeded"
    assert "limit of 2 model calls" in r.json()["error"]["message"]
    assert len(scripted_model.requests) == 2  # the third call was never made
    run = await Run.objects.aget(agent=agent)
    assert (run.status, run.error_type) == ("error", "budget_exceeded")
    names = [e["event"] for e in run.events]
    assert names.count("ToolCallCompleted") == 2 and names[-1] == "RunError"


async def test_a_run_stops_when_its_tokens_go_over(asgi, token, scripted_model, openai_model):
    agent = await _agent(openai_model, max_run_tokens=5)
    scripted_model.push_text("one two three four five six seven")
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs", json={"message": "talk", "stream": True}, headers=bearer(token)
    )
    frames = parse_sse(r.text)
    assert frames[-1][0] == "RunError" and frames[-1][1]["error_type"] == "budget_exceeded"
    assert "its limit is 5" in frames[-1][1]["content"]
    run = await Run.objects.aget(agent=agent)
    # What it used is counted, and what it wrote is kept.
    assert run.output_tokens == 7 and run.output == "one two three four five six seven"


async def test_a_slow_model_is_stopped_at_the_runs_time_limit(asgi, token, scripted_model, openai_model):
    agent = await _agent(openai_model, max_run_seconds=1)
    scripted_model.push_hang(4.0, text="too late")
    started = time.monotonic()
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    elapsed = time.monotonic() - started
    assert r.status_code == 422 and r.json()["error"]["type"] == "budget_exceeded"
    assert 0.9 < elapsed < 3.0  # the model's own timeout (5 s) was not what stopped it


async def test_a_streamed_answer_is_stopped_at_the_time_limit_and_kept(asgi, token, scripted_model, openai_model):
    agent = await _agent(openai_model, max_run_seconds=1)
    words = " ".join(f"w{i}" for i in range(40))
    scripted_model.push_text(words, chunk_delay=0.05)  # two seconds of streaming
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi", "stream": True}, headers=bearer(token))
    frames = parse_sse(r.text)
    assert frames[-1][0] == "RunError" and frames[-1][1]["error_type"] == "budget_exceeded"
    streamed = "".join(f["content"] for n, f in frames if n == "RunContent")
    assert 0 < len(streamed) < len(words)
    run = await Run.objects.aget(agent=agent)
    assert run.output == streamed


async def test_a_teams_budget_counts_its_members_model_calls(asgi, token, scripted_model, openai_model):
    def make() -> Any:
        writer = AgentFactory(slug="writer", model=openai_model)
        team = TeamFactory(slug="crew", model=openai_model, mode="coordinate", max_model_calls=2)
        TeamMemberFactory(team=team, agent=writer)
        return team

    team = await sync_to_async(make)()
    scripted_model.push_tool_calls(
        [{"name": "delegate_task_to_member", "arguments": {"member_id": "writer", "task": "write"}, "id": "d1"}]
    )
    scripted_model.push_text("A draft.")  # the member: the team's second model call
    scripted_model.push_text("The team's answer.")  # the leader's third call: over the team's budget
    r = await asgi.post(f"/api/teams/{team.slug}/runs", json={"message": "go"}, headers=bearer(token))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "budget_exceeded"
    assert len(scripted_model.requests) == 2
    member = await Run.objects.aget(parent_run__isnull=False)
    assert member.status == "completed"  # the member finished within the team's budget


async def test_the_sites_default_applies_when_the_agent_sets_none(asgi, token, scripted_model, openai_model, settings):
    settings.AGENTOS = {**settings.AGENTOS, "RUN_BUDGET": {"MODEL_CALLS": 1, "TOKENS": None, "SECONDS": None}}
    agent = await _agent(openai_model)
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "2*3"}}])
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "calc"}, headers=bearer(token))
    assert r.status_code == 422 and "limit of 1 model calls" in r.json()["error"]["message"]
    # An agent's own limit wins over the site's.
    agent.max_model_calls = 5
    await agent.asave()
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "2*3"}}])
    scripted_model.push_text("6")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "calc"}, headers=bearer(token))
    assert r.status_code == 200 and r.json()["content"] == "6"


async def test_a_run_stops_at_the_sites_tool_call_limit(asgi, token, scripted_model, openai_model, settings):
    budget = {"MODEL_CALLS": 50, "TOOL_CALLS": 2, "TOKENS": None, "SECONDS": None}
    settings.AGENTOS = {**settings.AGENTOS, "RUN_BUDGET": budget}
    agent = await _agent(openai_model)
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "1+1"}}] * 2)
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "2+2"}}])
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "loop"}, headers=bearer(token))
    assert r.status_code == 422 and "limit of 2 tool calls" in r.json()["error"]["message"]
    run = await Run.objects.aget(agent=agent)
    names = [e["event"] for e in run.events]
    assert names.count("ToolCallCompleted") == 2  # the third call never ran
    # The stored messages never hold a call without its result.
    roles = [m async for m in run.messages.order_by("position").values_list("role", flat=True)]
    assert roles == ["user", "assistant", "tool", "tool"]


async def test_a_workflow_over_its_budget_is_a_422_naming_its_step(asgi, token, scripted_model, openai_model, settings):
    from tests.factories import WorkflowFactory, WorkflowStepFactory

    settings.AGENTOS = {**settings.AGENTOS, "RUN_BUDGET": {"MODEL_CALLS": 1, "TOKENS": None, "SECONDS": None}}

    def make() -> None:
        flow = WorkflowFactory(slug="flow")
        writer = AgentFactory(slug="writer", model=openai_model, max_model_calls=10)
        WorkflowStepFactory(workflow=flow, name="one", kind="agent", agent=writer, order=0)
        WorkflowStepFactory(workflow=flow, name="two", kind="agent", agent=writer, order=1)

    await sync_to_async(make)()
    r = await asgi.post("/api/workflows/flow/runs", json={"message": "go"}, headers=bearer(token))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "step_error"
    assert r.json()["step_results"][1]["error"]["type"] == "budget_exceeded"
    assert len(scripted_model.requests) == 1
