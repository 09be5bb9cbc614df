"""agno's own client against our site, for teams and workflows: a live server (runserver) in a
subprocess on a temporary SQLite file, driven by `agno.client.AgentOSClient`, `RemoteTeam` and
`RemoteWorkflow` from the `agno` package (pinned in requirements-dev.txt): their detail routes,
cancelling their runs while they stream, and their sessions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from agno.client import AgentOSClient
from agno.db.base import SessionType
from agno.os.schema import (
    RunSchema,
    TeamRunSchema,
    TeamSessionDetailSchema,
    WorkflowRunSchema,
    WorkflowSessionDetailSchema,
)
from agno.run.base import RunStatus
from agno.team import RemoteTeam
from agno.utils.http import aclose_default_clients, set_default_sync_client
from agno.workflow import RemoteWorkflow

from tests.live_server import agno_site

pytestmark = pytest.mark.slow

SEED = """
import json
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from agents_app.models import Agent, ModelConfig, Team, TeamMember, Workflow, WorkflowStep
User = get_user_model()
alice = User.objects.create_user("alice")
mallory = User.objects.create_user("mallory")
scripted = ModelConfig.objects.create(
    name="scripted", provider="openai", base_url="{base_url}", model_id="scripted-model", max_retries=0
)
member = Agent.objects.create(slug="scripted", name="Scripted", model=scripted, instructions="Be brief.")
crew = Team.objects.create(
    slug="crew", name="Crew", description="Routes questions.", model=scripted, mode="route", instructions="Route."
)
TeamMember.objects.create(team=crew, agent=member, order=0)
flow = Workflow.objects.create(slug="flow", name="Flow", description="Asks, then keeps.")
WorkflowStep.objects.create(workflow=flow, name="ask", kind="agent", agent=member, order=0)
WorkflowStep.objects.create(workflow=flow, name="keep", kind="function", function="remember_output", order=1)
print(json.dumps({{"alice": Token.objects.create(user=alice).key, "mallory": Token.objects.create(user=mallory).key}}))
"""

ROUTE = [{"name": "route_to_member", "arguments": {"member_id": "scripted"}, "id": "r1"}]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, _scripted_server) -> Iterator[dict]:
    db = tmp_path_factory.mktemp("agno-teams") / "site.sqlite3"
    with agno_site(db, SEED.format(base_url=_scripted_server.base_url)) as site:
        yield site


@pytest.fixture
async def client(site) -> AsyncIterator[AgentOSClient]:
    yield AgentOSClient(base_url=site["base"], timeout=10)
    # agno keeps global httpx clients; they must not outlive this test's event loop.
    await aclose_default_clients()


async def test_get_team_and_get_workflow(client, site):
    team = client.get_team("crew", headers=site["alice"])  # agno's sync call
    assert (team.id, team.name, team.description, team.mode, team.db_id) == (
        "crew",
        "Crew",
        "Routes questions.",
        "route",
        "default",
    )
    assert [m.id for m in team.members] == ["scripted"] and team.model.model == "scripted-model"
    assert (await client.aget_team("crew", headers=site["alice"])) == team
    workflow = await client.aget_workflow("flow", headers=site["alice"])
    assert (workflow.id, workflow.name, workflow.description) == ("flow", "Flow", "Asks, then keeps.")
    assert [step["name"] for step in workflow.steps] == ["ask", "keep"]
    assert client.get_workflow("flow", version=1, headers=site["alice"]) == workflow
    for call in (client.aget_team("nope", headers=site["alice"]), client.aget_workflow("nope", headers=site["alice"])):
        with pytest.raises(httpx.HTTPStatusError) as missing:
            await call
        assert missing.value.response.status_code == 404
        assert missing.value.response.json()["detail"] in ("Team not found", "Workflow not found")


async def test_remote_team_and_workflow_read_their_config_here(site):
    # RemoteTeam / RemoteWorkflow read their config with agno's shared sync client and no headers
    # of their own: give that client the token (agno's documented hook for a custom client).
    set_default_sync_client(httpx.Client(headers=site["alice"]))
    try:
        team = RemoteTeam(base_url=site["base"], team_id="crew", timeout=10)
        assert (team.id, team.name, team.description, team.role, team.tools, team.model) == (
            "crew",
            "Crew",
            "Routes questions.",
            None,
            None,
            None,
        )
        assert team.db is not None and team.db.id == "default"
        workflow = RemoteWorkflow(base_url=site["base"], workflow_id="flow", timeout=10)
        assert (workflow.id, workflow.name, workflow.description) == ("flow", "Flow", "Asks, then keeps.")
        assert workflow.db is not None and workflow.db.id == "default"
    finally:
        await aclose_default_clients()


async def test_cancel_a_streaming_team_run(client, site, scripted_model):
    words = " ".join(f"word{i}" for i in range(40))
    scripted_model.push_text(words, chunk_delay=0.2)  # the leader answers itself, about 8 s
    started = time.monotonic()
    events = []
    async for event in client.run_team_stream("crew", "talk slowly", headers=site["alice"]):
        events.append(event)
        if event.event == "TeamRunContent" and sum(e.event == "TeamRunContent" for e in events) == 2:
            await client.cancel_team_run("crew", event.run_id, headers=site["alice"])
    assert events[0].event == "TeamRunStarted" and events[-1].event == "TeamRunCancelled"
    assert time.monotonic() - started < 5
    partial = "".join(e.content for e in events if e.event == "TeamRunContent")
    assert words.startswith(partial) and 0 < len(partial) < len(words)

    runs = await client.get_session_runs(events[0].session_id, headers=site["alice"])
    assert [(type(r), r.status, r.content) for r in runs] == [(TeamRunSchema, "CANCELLED", partial)]
    run_id = events[0].run_id
    await client.cancel_team_run("crew", run_id, headers=site["alice"])  # finished: a no-op
    for team_id, headers in (("crew", site["mallory"]), ("other", site["alice"])):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await client.cancel_team_run(team_id, run_id, headers=headers)
        assert refused.value.response.status_code == 404
    with pytest.raises(httpx.HTTPStatusError) as wrong_kind:
        await client.cancel_workflow_run("crew", run_id, headers=site["alice"])
    assert wrong_kind.value.response.status_code == 404


async def test_cancel_a_streaming_workflow_run(client, site, scripted_model):
    words = " ".join(f"word{i}" for i in range(40))
    scripted_model.push_text(words, chunk_delay=0.2)  # the "ask" step's agent, about 8 s
    started = time.monotonic()
    events = []
    async for event in client.run_workflow_stream("flow", "go slowly", headers=site["alice"]):
        events.append(event)
        if event.event == "RunContent" and sum(e.event == "RunContent" for e in events) == 2:
            await client.cancel_workflow_run("flow", events[0].run_id, headers=site["alice"])
    assert events[0].event == "WorkflowStarted" and events[-1].event == "WorkflowCancelled"
    assert time.monotonic() - started < 5
    partial = "".join(e.content for e in events if e.event == "RunContent")
    assert words.startswith(partial) and 0 < len(partial) < len(words)

    runs = await client.get_session_runs(events[0].session_id, headers=site["alice"])
    assert [(type(r), r.run_id, r.status) for r in runs] == [(WorkflowRunSchema, events[0].run_id, "CANCELLED")]
    assert [(x["agent_id"], x["status"], x["content"]) for x in runs[0].step_executor_runs] == [
        ("scripted", "CANCELLED", partial)
    ]
    await client.cancel_workflow_run("flow", events[0].run_id, headers=site["alice"])  # finished: a no-op
    with pytest.raises(httpx.HTTPStatusError) as not_theirs:
        await client.cancel_workflow_run("flow", events[0].run_id, headers=site["mallory"])
    assert not_theirs.value.response.status_code == 404


async def test_team_sessions_with_agnos_client(client, site, scripted_model):
    scripted_model.push_tool_calls(ROUTE)
    scripted_model.push_text("Rome is lovely.")
    out = await client.run_team("crew", "Plan a trip to Rome", headers=site["alice"])
    assert out.status == RunStatus.completed and out.content == "Rome is lovely."

    page = await client.get_sessions(session_type=SessionType.TEAM, component_id="crew", headers=site["alice"])
    assert out.session_id in [s.session_id for s in page.data]
    assert {(s.session_type, s.team_id) for s in page.data} == {("team", "crew")}
    assert (await client.get_sessions(session_type=SessionType.TEAM, headers=site["mallory"])).data == []
    none_of_them = await client.get_sessions(session_type=SessionType.AGENT, component_id="crew", headers=site["alice"])
    assert none_of_them.data == []

    detail = await client.get_session(out.session_id, headers=site["alice"])  # the type detected by the server
    assert isinstance(detail, TeamSessionDetailSchema)
    assert (detail.team_id, detail.session_name) == ("crew", "Plan a trip to Rome")
    assert [(m["role"], m["content"]) for m in detail.chat_history] == [
        ("user", "Plan a trip to Rome"),
        ("assistant", "Rome is lovely."),
    ]
    runs = await client.get_session_runs(out.session_id, session_type=SessionType.TEAM, headers=site["alice"])
    assert [(type(r), r.run_id, r.parent_run_id) for r in runs] == [
        (TeamRunSchema, out.run_id, None),
        (RunSchema, out.member_responses[0].run_id, out.run_id),
    ]
    assert (runs[0].team_id, runs[0].content, runs[1].agent_id) == ("crew", "Rome is lovely.", "scripted")
    one = await client.get_session_run(out.session_id, out.run_id, headers=site["alice"])
    assert isinstance(one, TeamRunSchema) and one.run_input == "Plan a trip to Rome"

    renamed = await client.rename_session(out.session_id, "Rome, May", headers=site["alice"])
    assert isinstance(renamed, TeamSessionDetailSchema) and renamed.session_name == "Rome, May"
    with pytest.raises(httpx.HTTPStatusError) as not_theirs:
        await client.delete_session(out.session_id, headers=site["mallory"])
    assert not_theirs.value.response.status_code == 404
    await client.delete_session(out.session_id, headers=site["alice"])
    with pytest.raises(httpx.HTTPStatusError) as gone:
        await client.get_session(out.session_id, session_type=SessionType.TEAM, headers=site["alice"])
    assert gone.value.response.status_code == 404


async def test_workflow_sessions_with_agnos_client(client, site, scripted_model):
    scripted_model.push_text("an answer")
    out = await client.run_workflow("flow", "a question", headers=site["alice"])
    assert out.content == "an answer"

    page = await client.get_sessions(session_type=SessionType.WORKFLOW, headers=site["alice"])
    assert out.session_id in [s.session_id for s in page.data]
    assert {(s.session_type, s.workflow_id) for s in page.data} == {("workflow", "flow")}

    detail = await client.get_session(out.session_id, session_type=SessionType.WORKFLOW, headers=site["alice"])
    assert isinstance(detail, WorkflowSessionDetailSchema)
    assert (detail.workflow_id, detail.workflow_name, detail.session_name, detail.session_state) == (
        "flow",
        "Flow",
        "a question",
        {"last_output": "an answer"},
    )
    runs = await client.get_session_runs(out.session_id, headers=site["alice"])
    assert [(type(r), r.run_id, r.status, r.content) for r in runs] == [
        (WorkflowRunSchema, out.run_id, "COMPLETED", "an answer")
    ]
    assert [(s["step_name"], s["success"]) for s in runs[0].step_results] == [("ask", True), ("keep", True)]
    step_run = runs[0].step_results[0]["step_run_id"]
    one = await client.get_session_run(out.session_id, step_run, headers=site["alice"])
    assert isinstance(one, RunSchema) and (one.agent_id, one.parent_run_id) == ("scripted", out.run_id)

    renamed = await client.rename_session(out.session_id, "Questions", headers=site["alice"])
    assert isinstance(renamed, WorkflowSessionDetailSchema) and renamed.session_name == "Questions"
    await client.delete_session(out.session_id, headers=site["alice"])
    page = await client.get_sessions(session_type=SessionType.WORKFLOW, headers=site["alice"])
    assert out.session_id not in [s.session_id for s in page.data]


async def test_a_workflow_stream_parses_to_the_end(client, site, scripted_model):
    # Today the final WorkflowCompleted carries agent-style metrics; agno's client expects
    # `{"steps": {...}}` and raises KeyError 'steps'.
    scripted_model.push_text("streamed answer")
    events = [e async for e in client.run_workflow_stream("flow", "stream it", headers=site["alice"])]
    assert events[0].event == "WorkflowStarted" and events[-1].event == "WorkflowCompleted"
    assert events[-1].content == "streamed answer"


async def test_member_events_of_a_team_stream_carry_agent_name(client, site, scripted_model):
    scripted_model.push_tool_calls(ROUTE)
    scripted_model.push_text("member answer")
    events = [e async for e in client.run_team_stream("crew", "ask the member", headers=site["alice"])]
    assert events[-1].event == "TeamRunCompleted" and events[-1].content == "member answer"
    member_events = [e for e in events if getattr(e, "agent_id", None) == "scripted"]
    assert member_events[0].event == "RunStarted" and member_events[-1].event == "RunCompleted"
    assert {e.agent_name for e in member_events} == {"Scripted"}
