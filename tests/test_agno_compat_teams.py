"""agno's team and workflow run routes, parsed with agno's own classes."""

from __future__ import annotations

import pytest
from agno.run.base import RunStatus
from agno.run.team import TeamRunOutput, team_run_output_event_from_dict
from agno.run.workflow import WorkflowRunOutput

from tests.conftest import bearer
from tests.conftest import parse_sse as sse_frames
from tests.factories import AgentFactory, TeamFactory, TeamMemberFactory, WorkflowFactory, WorkflowStepFactory

pytestmark = pytest.mark.django_db(transaction=True)

OS = "/os"


@pytest.fixture
def crew(openai_model):
    def build():
        member = AgentFactory(slug="member", name="Member", model=openai_model)
        team = TeamFactory(slug="crew", name="Crew", model=openai_model, mode="route")
        TeamMemberFactory(team=team, agent=member)
        workflow = WorkflowFactory(slug="flow", name="Flow")
        WorkflowStepFactory(workflow=workflow, name="ask", kind="agent", agent=member, order=0)
        WorkflowStepFactory(workflow=workflow, name="keep", kind="function", function="remember_output", order=1)
        return team

    return build()


async def test_a_team_run_parses_as_agnos_team_run_output(asgi, token, scripted_model, crew, user):
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "member"}, "id": "r"}])
    scripted_model.push_text("member says hi")
    r = await asgi.post(f"{OS}/teams/crew/runs", data={"message": "hi", "stream": "false"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    out = TeamRunOutput.from_dict(r.json())
    assert (out.team_id, out.team_name, out.content, out.status) == (
        "crew",
        "Crew",
        "member says hi",
        RunStatus.completed,
    )
    assert out.user_id == str(user.pk) and out.input.input_content == "hi"
    assert [(m.agent_id, m.content) for m in out.member_responses] == [("member", "member says hi")]


async def test_a_team_run_streams_agnos_team_events_by_default(asgi, token, scripted_model, crew):
    scripted_model.push_text("I answer myself")
    r = await asgi.post(f"{OS}/teams/crew/runs", data={"message": "hi"}, headers=bearer(token))
    frames = sse_frames(r.text)
    assert frames[0][0] == "TeamRunStarted" and frames[-1][0] == "TeamRunCompleted"
    for _, data in frames:
        event = team_run_output_event_from_dict(dict(data))
        assert event.team_id == "crew" and event.team_name == "Crew"
    assert frames[-1][1]["content"] == "I answer myself"


async def test_a_failed_team_run_is_not_a_200(asgi, token, scripted_model, crew):
    scripted_model.push_error(500, "down")
    r = await asgi.post(f"{OS}/teams/crew/runs", data={"message": "hi", "stream": "false"}, headers=bearer(token))
    assert r.status_code == 502
    body = r.json()
    assert body["status"] == "ERROR" and body["error"]["type"] == "model_error"
    assert TeamRunOutput.from_dict(body).status == RunStatus.error


async def test_a_workflow_run_parses_as_agnos_workflow_run_output(asgi, token, scripted_model, crew):
    scripted_model.push_text("answer")
    r = await asgi.post(f"{OS}/workflows/flow/runs", data={"message": "go", "stream": "false"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    out = WorkflowRunOutput.from_dict(r.json())
    assert (out.workflow_id, out.workflow_name, out.content) == ("flow", "Flow", "answer")
    assert [(step.step_name, step.content, step.success) for step in out.step_results] == [
        ("ask", "answer", True),
        ("keep", "answer", True),
    ]
    assert out.step_results[0].step_run_id


async def test_unknown_teams_and_workflows_are_agnos_404s(asgi, token, db):
    for path in ("teams/nope/runs", "workflows/nope/runs"):
        r = await asgi.post(f"{OS}/{path}", data={"message": "hi"}, headers=bearer(token))
        assert r.status_code == 404
        assert r.json()["detail"] in ("Team not found", "Workflow not found")
