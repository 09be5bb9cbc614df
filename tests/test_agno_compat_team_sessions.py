"""agno's non-run routes for teams and workflows over the real ASGI stack: their detail routes,
cancelling their runs, and their sessions (list, detail, runs, one run, rename, delete), each
answer parsed with agno's own schemas."""

from __future__ import annotations

import uuid

import pytest
from agno.os.routers.teams.schema import TeamResponse
from agno.os.routers.workflows.schema import WorkflowResponse
from agno.os.schema import (
    AgentSessionDetailSchema,
    RunSchema,
    SessionSchema,
    TeamRunSchema,
    TeamSessionDetailSchema,
    WorkflowRunSchema,
    WorkflowSessionDetailSchema,
)

from agents_app.models import Team
from sessions_app.models import Run, Session
from tests.conftest import bearer
from tests.factories import AgentFactory, TeamFactory, TeamMemberFactory, WorkflowFactory, WorkflowStepFactory

pytestmark = pytest.mark.django_db(transaction=True)

OS = "/os"


@pytest.fixture
def crew(openai_model):
    member = AgentFactory(slug="member", name="Member", model=openai_model)
    team = TeamFactory(
        slug="crew", name="Crew", description="Routes questions.", model=openai_model, mode="route", history_runs=3
    )
    TeamMemberFactory(team=team, agent=member)
    workflow = WorkflowFactory(slug="flow", name="Flow", description="Asks, then keeps.")
    WorkflowStepFactory(workflow=workflow, name="ask", kind="agent", agent=member, order=0)
    WorkflowStepFactory(workflow=workflow, name="keep", kind="function", function="remember_output", order=1)
    return team


async def _team_run(asgi, token, scripted_model, message="hi", session_id=None) -> dict:
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "member"}, "id": "r"}])
    scripted_model.push_text(f"member: {message}")
    data = {"message": message, "stream": "false"} | ({"session_id": session_id} if session_id else {})
    r = await asgi.post(f"{OS}/teams/crew/runs", data=data, headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


async def _workflow_run(asgi, token, scripted_model, message="go", session_id=None) -> dict:
    scripted_model.push_text(f"answer to {message}")
    data = {"message": message, "stream": "false"} | ({"session_id": session_id} if session_id else {})
    r = await asgi.post(f"{OS}/workflows/flow/runs", data=data, headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


# ---- Detail routes -------------------------------------------------------------------------------


async def test_team_and_workflow_details_are_agnos_models(asgi, crew, token, staff_token):
    r = await asgi.get(f"{OS}/teams/crew", headers=bearer(token))
    assert r.status_code == 200
    team = TeamResponse.model_validate(r.json())
    assert (team.id, team.name, team.description, team.mode, team.db_id) == (
        "crew",
        "Crew",
        "Routes questions.",
        "route",
        "default",
    )
    assert (team.model.model, team.model.provider) == ("scripted-model", "openai")
    assert [(m.id, m.name) for m in team.members] == [("member", "Member")]
    assert team.system_message is None and team.sessions is None  # the leader's setup is staff's

    staff = TeamResponse.model_validate((await asgi.get(f"{OS}/teams/crew", headers=bearer(staff_token))).json())
    assert staff.system_message == {"instructions": "You lead a test team."}
    assert staff.sessions == {"add_history_to_context": True, "num_history_runs": 3}

    r = await asgi.get(f"{OS}/workflows/flow", params={"version": "2"}, headers=bearer(token))
    assert r.status_code == 200
    workflow = WorkflowResponse.model_validate(r.json())
    assert (workflow.id, workflow.name, workflow.description, workflow.db_id) == (
        "flow",
        "Flow",
        "Asks, then keeps.",
        "default",
    )
    assert workflow.steps == [
        {"name": "ask", "type": "agent", "agent_id": "member"},
        {"name": "keep", "type": "function", "function": "remember_output"},
    ]
    assert (await asgi.get(f"{OS}/teams/crew")).status_code == 401


async def test_unknown_ids_are_json_404s_in_agnos_shape(asgi, crew, token):
    await Team.objects.filter(slug="crew").aupdate(is_active=False)
    missing = str(uuid.uuid4())
    cases = [
        ("get", f"{OS}/teams/crew", {}, "Team not found"),  # inactive
        ("get", f"{OS}/teams/nope", {}, "Team not found"),
        ("get", f"{OS}/teams/no%00pe", {}, "Team not found"),
        ("get", f"{OS}/workflows/nope", {}, "Workflow not found"),
        ("get", f"{OS}/workflows/a.b", {}, "Workflow not found"),
        ("post", f"{OS}/teams/crew/runs/{missing}/cancel", {}, "Run not found"),
        ("post", f"{OS}/workflows/flow/runs/not-a-uuid/cancel", {}, "Run not found"),
        ("get", f"{OS}/sessions/{missing}", {"type": "team"}, f"Team Session with id '{missing}' not found"),
        ("get", f"{OS}/sessions/{missing}", {"type": "workflow"}, f"Workflow Session with id '{missing}' not found"),
        ("get", f"{OS}/sessions/{missing}", {}, f"Session with id '{missing}' not found"),
        ("get", f"{OS}/sessions/{missing}/runs", {"type": "team"}, f"Team Session with id '{missing}' not found"),
        ("delete", f"{OS}/sessions/{missing}", {}, f"Session with id '{missing}' not found"),
    ]
    for method, url, params, detail in cases:
        r = await getattr(asgi, method)(url, params=params, headers=bearer(token))
        code = {"Team not found": "unknown_team", "Workflow not found": "unknown_workflow"}.get(detail, "not_found")
        body = {"detail": detail, "code": code}
        assert (r.status_code, r.headers["content-type"], r.json()) == (404, "application/json", body), url


# ---- Cancel --------------------------------------------------------------------------------------


async def test_cancel_takes_the_kind_from_the_url_and_checks_the_run_is_that_components(
    asgi, crew, token, other_token, scripted_model
):
    out = await _team_run(asgi, token, scripted_model)
    team_run, member_run = out["run_id"], out["member_responses"][0]["run_id"]
    flow = await _workflow_run(asgi, token, scripted_model)
    for url, token_ in [
        (f"{OS}/teams/crew/runs/{team_run}/cancel", other_token),  # not theirs
        (f"{OS}/agents/crew/runs/{team_run}/cancel", token),  # a team's run, not an agent's
        (f"{OS}/workflows/crew/runs/{team_run}/cancel", token),
        (f"{OS}/teams/other/runs/{team_run}/cancel", token),
        (f"{OS}/teams/crew/runs/{member_run}/cancel", token),  # the member's run is the agent's
        (f"{OS}/teams/crew/runs/{flow['run_id']}/cancel", token),
    ]:
        r = await asgi.post(url, headers=bearer(token_))
        assert (r.status_code, r.json()) == (404, {"detail": "Run not found", "code": "not_found"}), url
    for url in (
        f"{OS}/teams/crew/runs/{team_run}/cancel",
        f"{OS}/agents/member/runs/{member_run}/cancel",
        f"{OS}/workflows/flow/runs/{flow['run_id']}/cancel",
    ):
        r = await asgi.post(url, headers=bearer(token))
        assert (r.status_code, r.json()) == (200, {}), url  # finished: nothing changes
    statuses = {str(r.pk): r.status async for r in Run.objects.all()}
    assert set(statuses.values()) == {Run.Status.COMPLETED}


# ---- Sessions ------------------------------------------------------------------------------------


async def test_sessions_of_every_kind_are_listed_and_filtered_by_type_and_component(
    asgi, crew, agent, token, other_token, scripted_model
):
    team_session = (await _team_run(asgi, token, scripted_model, "team question"))["session_id"]
    flow_session = (await _workflow_run(asgi, token, scripted_model, "flow question"))["session_id"]
    scripted_model.push_text("agent answer")
    r = await asgi.post(
        f"{OS}/agents/helper/runs", data={"message": "agent question", "stream": "false"}, headers=bearer(token)
    )
    agent_session = r.json()["session_id"]

    async def ids(**params) -> list[str]:
        r = await asgi.get(f"{OS}/sessions", params=params, headers=bearer(token))
        assert r.status_code == 200, r.text
        return [x["session_id"] for x in r.json()["data"]]

    assert await ids() == [agent_session, flow_session, team_session]  # every kind, newest first
    assert await ids(type="team") == [team_session]
    assert await ids(type="workflow") == [flow_session]
    assert await ids(type="agent") == [agent_session]
    assert await ids(type="team", component_id="crew") == [team_session]
    assert await ids(type="team", component_id="flow") == []
    assert await ids(component_id="flow") == [flow_session]
    assert await ids(type="workflow", session_name="FLOW") == [flow_session]

    page = (await asgi.get(f"{OS}/sessions", params={"type": "team"}, headers=bearer(token))).json()
    team_item = SessionSchema.from_dict(page["data"][0])
    assert (team_item.session_type, team_item.team_id, team_item.agent_id, team_item.session_name) == (
        "team",
        "crew",
        None,
        "team question",
    )
    assert page["meta"]["total_count"] == 1
    flow_page = (await asgi.get(f"{OS}/sessions", params={"type": "workflow"}, headers=bearer(token))).json()
    flow_item = SessionSchema.from_dict(flow_page["data"][0])
    assert (flow_item.session_type, flow_item.workflow_id) == ("workflow", "flow")
    theirs = (await asgi.get(f"{OS}/sessions", params={"type": "team"}, headers=bearer(other_token))).json()
    assert theirs["data"] == [] and theirs["meta"]["total_count"] == 0
    r = await asgi.get(f"{OS}/sessions", params={"type": "crew"}, headers=bearer(token))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "type"]


async def test_a_team_session_detail_runs_rename_and_delete(asgi, crew, user, token, other_token, scripted_model):
    first = await _team_run(asgi, token, scripted_model, "hello")
    session_id = first["session_id"]
    second = await _team_run(asgi, token, scripted_model, "again", session_id=session_id)

    for params in ({}, {"type": "team"}):
        r = await asgi.get(f"{OS}/sessions/{session_id}", params=params, headers=bearer(token))
        assert r.status_code == 200
        detail = TeamSessionDetailSchema.model_validate(r.json())
        assert (detail.session_id, detail.team_id, detail.user_id, detail.session_name) == (
            session_id,
            "crew",
            str(user.pk),
            "hello",
        )
        assert detail.team_data == {"name": "Crew", "team_id": "crew"}
        # The team's own conversation; its member's runs are in the runs list.
        assert [(m["role"], m["content"]) for m in detail.chat_history] == [
            ("user", "hello"),
            ("assistant", "member: hello"),
            ("user", "again"),
            ("assistant", "member: again"),
        ]
    stored = [r async for r in Run.objects.filter(session_id=session_id)]
    assert detail.total_tokens == detail.metrics["total_tokens"] == sum(r.total_tokens for r in stored) > 0
    for kind in ("agent", "workflow"):
        r = await asgi.get(f"{OS}/sessions/{session_id}", params={"type": kind}, headers=bearer(token))
        assert r.status_code == 404

    r = await asgi.get(f"{OS}/sessions/{session_id}/runs", headers=bearer(token))
    raw = r.json()
    assert [("team_id" in x, "agent_id" in x) for x in raw] == [(True, False), (False, True)] * 2
    team_runs = [TeamRunSchema.model_validate(x) for x in raw[::2]]
    member_runs = [RunSchema.model_validate(x) for x in raw[1::2]]
    assert [(x.run_id, x.team_id, x.run_input, x.content, x.status, x.parent_run_id) for x in team_runs] == [
        (first["run_id"], "crew", "hello", "member: hello", "COMPLETED", None),
        (second["run_id"], "crew", "again", "member: again", "COMPLETED", None),
    ]
    assert [(x.run_id, x.agent_id, x.parent_run_id, x.content) for x in member_runs] == [
        (first["member_responses"][0]["run_id"], "member", first["run_id"], "member: hello"),
        (second["member_responses"][0]["run_id"], "member", second["run_id"], "member: again"),
    ]
    assert [t["tool_name"] for t in team_runs[0].tools] == ["route_to_member"]
    own = [e for e in team_runs[0].events if not e.get("parent_run_id")]
    assert [e["event"] for e in own] == [
        "TeamRunStarted",
        "TeamModelRequestStarted",
        "TeamModelRequestCompleted",
        "TeamToolCallStarted",
        "TeamToolCallCompleted",
        "TeamRunCompleted",
    ]
    assert {e["team_name"] for e in own} == {"Crew"}
    assert [(m["role"], m["content"]) for m in team_runs[0].messages] == [
        ("user", "hello"),
        ("assistant", "member: hello"),
    ]

    created = int(team_runs[1].created_at.timestamp())
    later = (
        await asgi.get(f"{OS}/sessions/{session_id}/runs", params={"created_after": created + 1}, headers=bearer(token))
    ).json()
    assert later == []
    done = await asgi.get(f"{OS}/sessions/{session_id}/runs", params={"status": "cancelled"}, headers=bearer(token))
    assert done.json() == []

    r = await asgi.get(f"{OS}/sessions/{session_id}/runs/{second['run_id']}", headers=bearer(token))
    assert TeamRunSchema.model_validate(r.json()).run_input == "again"
    member_id = second["member_responses"][0]["run_id"]
    r = await asgi.get(f"{OS}/sessions/{session_id}/runs/{member_id}", params={"type": "team"}, headers=bearer(token))
    assert RunSchema.model_validate(r.json()).agent_id == "member"

    r = await asgi.post(f"{OS}/sessions/{session_id}/rename", json={"session_name": "Crew chat"}, headers=bearer(token))
    assert r.status_code == 200
    assert TeamSessionDetailSchema.model_validate(r.json()).session_name == "Crew chat"
    assert (await asgi.delete(f"{OS}/sessions/{session_id}", headers=bearer(other_token))).status_code == 404
    r = await asgi.delete(f"{OS}/sessions/{session_id}", params={"type": "team"}, headers=bearer(token))
    assert r.status_code == 204
    assert not await Session.objects.filter(pk=session_id).aexists()
    assert not await Run.objects.filter(session_id=session_id).aexists()


async def test_a_workflow_session_detail_runs_rename_and_delete(asgi, crew, user, token, other_token, scripted_model):
    first = await _workflow_run(asgi, token, scripted_model, "go")
    session_id = first["session_id"]
    second = await _workflow_run(asgi, token, scripted_model, "more", session_id=session_id)

    r = await asgi.get(f"{OS}/sessions/{session_id}", headers=bearer(token))
    assert r.status_code == 200
    detail = WorkflowSessionDetailSchema.model_validate(r.json())
    assert (detail.session_id, detail.workflow_id, detail.workflow_name, detail.user_id, detail.session_name) == (
        session_id,
        "flow",
        "Flow",
        str(user.pk),
        "go",
    )
    assert detail.session_state == {"last_output": "answer to more"}
    assert detail.session_data["session_state"] == detail.session_state
    assert detail.workflow_data == {"name": "Flow", "workflow_id": "flow", "description": "Asks, then keeps."}
    assert (
        await asgi.get(f"{OS}/sessions/{session_id}", params={"type": "team"}, headers=bearer(token))
    ).status_code == 404

    r = await asgi.get(f"{OS}/sessions/{session_id}/runs", params={"type": "workflow"}, headers=bearer(token))
    runs = [WorkflowRunSchema.model_validate(x) for x in r.json()]  # the step runs are inside
    assert [(x.run_id, x.workflow_id, x.run_input, x.content, x.status) for x in runs] == [
        (first["run_id"], "flow", "go", "answer to go", "COMPLETED"),
        (second["run_id"], "flow", "more", "answer to more", "COMPLETED"),
    ]
    step_run = first["step_results"][0]["step_run_id"]
    assert runs[0].step_results == [
        {"step_name": "ask", "step_type": "agent", "content": "answer to go", "step_run_id": step_run, "success": True},
        {"step_name": "keep", "step_type": "function", "content": "answer to go", "success": True},
    ]
    executor = [RunSchema.model_validate(x) for x in runs[0].step_executor_runs]
    assert [(x.run_id, x.agent_id, x.parent_run_id, x.content) for x in executor] == [
        (step_run, "member", first["run_id"], "answer to go")
    ]
    assert {e["workflow_name"] for e in runs[0].events if not e.get("parent_run_id")} == {"Flow"}

    r = await asgi.get(f"{OS}/sessions/{session_id}/runs/{second['run_id']}", headers=bearer(token))
    assert WorkflowRunSchema.model_validate(r.json()).content == "answer to more"
    r = await asgi.get(f"{OS}/sessions/{session_id}/runs/{step_run}", headers=bearer(token))
    assert RunSchema.model_validate(r.json()).agent_id == "member"
    r = await asgi.get(f"{OS}/sessions/{session_id}/runs/{uuid.uuid4()}", headers=bearer(token))
    assert r.status_code == 404

    r = await asgi.post(f"{OS}/sessions/{session_id}/rename", json={"session_name": "Flows"}, headers=bearer(token))
    assert WorkflowSessionDetailSchema.model_validate(r.json()).session_name == "Flows"
    r = await asgi.post(
        f"{OS}/sessions/{session_id}/rename",
        json={"session_name": "x"},
        params={"type": "agent"},
        headers=bearer(token),
    )
    assert r.status_code == 404
    assert (await asgi.delete(f"{OS}/sessions/{session_id}", headers=bearer(other_token))).status_code == 404
    assert (await asgi.delete(f"{OS}/sessions/{session_id}", headers=bearer(token))).status_code == 204
    assert not await Session.objects.filter(pk=session_id).aexists()


async def test_an_agent_session_still_parses_as_an_agent_session(asgi, agent, token, scripted_model):
    scripted_model.push_text("hi there")
    r = await asgi.post(f"{OS}/agents/helper/runs", data={"message": "hi", "stream": "false"}, headers=bearer(token))
    session_id = r.json()["session_id"]
    detail = AgentSessionDetailSchema.model_validate(
        (await asgi.get(f"{OS}/sessions/{session_id}", headers=bearer(token))).json()
    )
    assert (detail.agent_id, detail.session_name) == ("helper", "hi")
    r = await asgi.get(f"{OS}/sessions/{session_id}", params={"type": "team"}, headers=bearer(token))
    assert r.json() == {"detail": f"Team Session with id '{session_id}' not found", "code": "not_found"}
