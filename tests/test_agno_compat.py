"""The agno AgentOS compatible API (/os/...) through the real ASGI application, every answer parsed
with agno's own client-side classes (the `agno` test dependency), so a shape agno's client cannot
read fails here. The live-server test with agno's AgentOSClient is test_agno_compat_client.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agno.models.response import ToolExecution
from agno.os.routers.agents.schema import AgentResponse
from agno.os.schema import (
    AgentSessionDetailSchema,
    AgentSummaryResponse,
    ConfigResponse,
    HealthResponse,
    PaginationInfo,
    RunSchema,
    SessionSchema,
)
from agno.run.agent import RunOutput, run_output_event_from_dict
from agno.run.base import RunStatus

from agents_app.models import Agent
from sessions_app.models import Message, Run, Session
from tests.conftest import bearer
from tests.conftest import parse_sse as sse_frames

pytestmark = pytest.mark.django_db(transaction=True)

OS = "/os"


async def run_form(asgi, agent_slug: str, token: str, **fields: Any):
    return await asgi.post(f"{OS}/agents/{agent_slug}/runs", data=fields, headers=bearer(token))


# ---- Discovery -------------------------------------------------------------------------------


async def test_health_needs_no_token(asgi):
    r = await asgi.get(f"{OS}/health")
    assert r.status_code == 200
    assert HealthResponse.model_validate(r.json()).status == "ok"


async def test_everything_else_needs_one_of_our_tokens(asgi, agent):
    for path in ("/config", "/agents", "/agents/helper", "/sessions"):
        r = await asgi.get(OS + path)
        assert r.status_code == 401, path
        assert r.json() == {"detail": "Authentication credentials were not provided.", "code": "not_authenticated"}
    r = await asgi.get(f"{OS}/agents", headers=bearer("not-a-token"))
    assert r.status_code == 401 and r.json() == {"detail": "Invalid token.", "code": "authentication_failed"}
    r = await run_form(asgi, agent.slug, "not-a-token", message="hi")
    assert r.status_code == 401
    assert await Run.objects.acount() == 0


async def test_agents_list_detail_and_config_parse_as_agno_models(asgi, agent, offline_agent, token):
    await Agent.objects.filter(slug=offline_agent.slug).aupdate(is_active=False)
    r = await asgi.get(f"{OS}/agents", headers=bearer(token))
    assert r.status_code == 200
    listed = r.json()
    assert [a["id"] for a in listed] == ["helper"]  # inactive agents refuse runs: not listed
    summary = AgentSummaryResponse.model_validate(listed[0])
    assert (summary.id, summary.name, summary.db_id) == ("helper", "Helper", "default")
    assert (summary.model.id, summary.model.provider) == ("scripted-model", "openai")
    detail = AgentResponse.model_validate((await asgi.get(f"{OS}/agents/helper", headers=bearer(token))).json())
    assert (detail.model.model, detail.model.provider, detail.model.name) == ("scripted-model", "openai", "scripted")
    assert [t["name"] for t in detail.tools["tools"]] == ["calculator", "current_time"]
    assert detail.system_message is None  # instructions are staff-only, as in the REST API
    config = ConfigResponse.model_validate((await asgi.get(f"{OS}/config", headers=bearer(token))).json())
    assert [a.id for a in config.agents] == ["helper"] and config.teams == [] and config.workflows == []
    assert config.databases == ["default"]
    r = await asgi.get(f"{OS}/agents/{offline_agent.slug}", headers=bearer(token))
    assert r.status_code == 404 and r.json() == {"detail": "Agent not found", "code": "unknown_agent"}


async def test_staff_see_the_agents_instructions(asgi, agent, staff_token):
    detail = AgentResponse.model_validate((await asgi.get(f"{OS}/agents/helper", headers=bearer(staff_token))).json())
    assert detail.system_message == {"instructions": "You are a test agent."}
    assert detail.sessions == {"add_history_to_context": True, "num_history_runs": 3}


async def test_teams_and_workflows_are_empty_lists_without_any(asgi, token):
    for path in ("/teams", "/workflows"):
        r = await asgi.get(OS + path, headers=bearer(token))
        assert r.status_code == 200 and r.json() == []


async def test_teams_and_workflows_are_listed_as_agno_models(asgi, agent, token):
    from agno.os.routers.teams.schema import TeamResponse
    from agno.os.routers.workflows.schema import WorkflowResponse
    from asgiref.sync import sync_to_async

    from tests.factories import TeamFactory, TeamMemberFactory, WorkflowFactory, WorkflowStepFactory

    def build() -> None:
        team = TeamFactory(slug="crew", name="Crew", model=agent.model, mode="route")
        TeamMemberFactory(team=team, agent=agent)
        workflow = WorkflowFactory(slug="flow", name="Flow")
        WorkflowStepFactory(workflow=workflow, name="ask", kind="agent", agent=agent, order=0)

    await sync_to_async(build)()
    team = TeamResponse.model_validate((await asgi.get(f"{OS}/teams", headers=bearer(token))).json()[0])
    assert (team.id, team.name, team.mode, team.model.model) == ("crew", "Crew", "route", "scripted-model")
    assert [m.id for m in team.members] == ["helper"]
    workflow = WorkflowResponse.model_validate((await asgi.get(f"{OS}/workflows", headers=bearer(token))).json()[0])
    assert (workflow.id, workflow.steps) == ("flow", [{"name": "ask", "type": "agent", "agent_id": "helper"}])
    config = ConfigResponse.model_validate((await asgi.get(f"{OS}/config", headers=bearer(token))).json())
    assert [t.id for t in config.teams] == ["crew"] and [w.id for w in config.workflows] == ["flow"]


# ---- Runs ------------------------------------------------------------------------------------


async def test_non_streaming_run_is_agnos_run_output(asgi, agent, token, user, scripted_model):
    scripted_model.push_text("Hello Ada.")
    r = await run_form(asgi, agent.slug, token, message="my name is Ada", stream="false", user_id="someone-else")
    assert r.status_code == 200, r.text
    out = RunOutput.from_dict(r.json())
    assert out.status == RunStatus.completed
    assert out.content == "Hello Ada."
    assert (out.agent_id, out.agent_name, out.model, out.model_provider) == (
        "helper",
        "Helper",
        "scripted-model",
        "openai",
    )
    assert out.user_id == str(user.pk)  # the form's user_id is ignored: the token says who it is
    assert out.input.input_content == "my name is Ada"
    assert out.metrics.total_tokens == out.metrics.input_tokens + out.metrics.output_tokens > 0
    run = await Run.objects.aget(pk=out.run_id)
    assert run.status == Run.Status.COMPLETED and str(run.session_id) == out.session_id and run.user_id == user.pk


async def test_stream_is_the_default_and_every_frame_parses_as_an_agno_event(asgi, agent, token, scripted_model):
    scripted_model.push_text("one two three")
    r = await run_form(asgi, agent.slug, token, message="count")  # no `stream`: agno streams
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    frames = sse_frames(r.text)
    assert [name for name, _ in frames] == [
        "RunStarted",
        "ModelRequestStarted",
        "RunContent",
        "RunContent",
        "RunContent",
        "ModelRequestCompleted",
        "RunContentCompleted",
        "RunCompleted",
    ]
    events = [run_output_event_from_dict(data) for _, data in frames]
    assert [type(e).__name__ for e in events] == [
        "RunStartedEvent",
        "ModelRequestStartedEvent",
        "RunContentEvent",
        "RunContentEvent",
        "RunContentEvent",
        "ModelRequestCompletedEvent",
        "RunContentCompletedEvent",
        "RunCompletedEvent",
    ]
    assert {e.agent_name for e in events} == {"Helper"} and {e.agent_id for e in events} == {"helper"}
    assert [e.event_index for e in events] == list(range(8))
    assert "".join(e.content for e in events[2:5]) == "one two three"
    assert (
        events[5].model == "scripted-model"
        and events[5].total_tokens == events[5].input_tokens + events[5].output_tokens
    )
    assert events[-1].content == "one two three" and events[-1].metrics.total_tokens > 0
    assert events[0].model == "scripted-model"


async def test_streamed_tool_calls_parse_as_agno_tool_executions(asgi, agent, token, scripted_model):
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "6*7"}, "id": "c1"}])
    scripted_model.push_text("42")
    r = await run_form(asgi, agent.slug, token, message="6*7?", stream="true")
    events = [run_output_event_from_dict(data) for _, data in sse_frames(r.text)]
    started = next(e for e in events if e.event == "ToolCallStarted")
    completed = next(e for e in events if e.event == "ToolCallCompleted")
    assert (started.tool.tool_call_id, started.tool.tool_name, started.tool.tool_args) == (
        "c1",
        "calculator",
        {"expression": "6*7"},
    )
    assert completed.tool.result == "42" and completed.tool.tool_call_error is False
    # Every key of agno's ToolExecution.to_dict(), with the call's timing in `metrics`.
    frame = next(data for name, data in sse_frames(r.text) if name == "ToolCallCompleted")
    assert set(frame["tool"]) == set(ToolExecution(tool_call_id="x").to_dict())
    timing = completed.tool.metrics
    assert timing.end_time >= timing.start_time > 0 and timing.duration >= 0


async def test_json_body_and_session_continuation(asgi, agent, token, scripted_model):
    scripted_model.push_text("Hi Ada.")
    scripted_model.push_text("You are Ada.")
    first = RunOutput.from_dict((await run_form(asgi, agent.slug, token, message="I am Ada", stream="false")).json())
    r = await asgi.post(
        f"{OS}/agents/{agent.slug}/runs",
        json={"message": "who am I?", "stream": False, "session_id": first.session_id},
        headers=bearer(token),
    )
    assert r.status_code == 200 and r.json()["session_id"] == first.session_id
    sent = [(m["role"], m["content"]) for m in scripted_model.requests[-1]["messages"] if m["role"] != "system"]
    assert sent == [("user", "I am Ada"), ("assistant", "Hi Ada."), ("user", "who am I?")]


async def test_session_state_is_merged_into_the_sessions_state(asgi, agent, token, scripted_model):
    scripted_model.push_text("ok")
    scripted_model.push_text("ok again")
    first = await run_form(
        asgi, agent.slug, token, message="hi", stream="false", session_state='{"city": "Rome", "days": 3}'
    )
    session_id = first.json()["session_id"]
    await run_form(
        asgi, agent.slug, token, message="more", stream="false", session_id=session_id, session_state='{"days": 4}'
    )
    detail = AgentSessionDetailSchema.model_validate(
        (await asgi.get(f"{OS}/sessions/{session_id}", headers=bearer(token))).json()
    )
    assert detail.session_state == {"city": "Rome", "days": 4}


async def test_session_state_of_a_queued_message_is_merged_when_it_starts(asgi, agent, token, scripted_model):
    """The session is busy: the message waits (queue policy), and its state is merged in the
    transaction that starts its run, after the running one ended, not before."""
    scripted_model.push_text("ok")
    first = await run_form(asgi, agent.slug, token, message="hi", stream="false", session_state='{"days": 3}')
    session_id = first.json()["session_id"]
    scripted_model.push_text("slow answer, word by word", chunk_delay=0.1)
    scripted_model.push_text("second")
    slow = asyncio.ensure_future(
        run_form(asgi, agent.slug, token, message="slow", stream="false", session_id=session_id)
    )
    for _ in range(100):
        if len(scripted_model.requests) == 2:
            break
        await asyncio.sleep(0.02)
    queued = await run_form(
        asgi, agent.slug, token, message="later", stream="false", session_id=session_id, session_state='{"days": 9}'
    )
    assert (await slow).status_code == 200 and queued.status_code == 200
    detail = AgentSessionDetailSchema.model_validate(
        (await asgi.get(f"{OS}/sessions/{session_id}", headers=bearer(token))).json()
    )
    assert detail.session_state == {"days": 9}


async def test_failed_run_is_not_a_200_but_its_body_is_still_a_run_output(asgi, agent, token, scripted_model):
    scripted_model.push_error(500, "upstream exploded")
    r = await run_form(asgi, agent.slug, token, message="hi", stream="false")
    assert r.status_code == 502  # agno answers 200 here; see docs/coming-from-agno.md
    out = RunOutput.from_dict(r.json())
    assert out.status == RunStatus.error and "upstream exploded" in out.content
    assert r.json()["error"]["type"] == "model_error"
    run = await Run.objects.aget(pk=out.run_id)
    assert run.status == Run.Status.ERROR


async def test_failed_streaming_run_ends_with_an_agno_run_error_event(asgi, agent, token, scripted_model):
    scripted_model.push_error(500, "upstream exploded")
    r = await run_form(asgi, agent.slug, token, message="hi")
    assert r.status_code == 200  # the stream had started; the error is its last event
    last = run_output_event_from_dict(sse_frames(r.text)[-1][1])
    assert last.event == "RunError" and "upstream exploded" in last.content and last.error_type == "model_error"


async def test_bad_input_is_a_422_in_fastapis_shape_and_writes_nothing(asgi, agent, token):
    cases = [
        ({}, ["body", "message"]),
        ({"message": "   "}, ["body", "message"]),
        ({"message": "x" * 40_000}, ["body", "message"]),
        ({"message": "hi", "stream": "maybe"}, ["body", "stream"]),
        ({"message": "hi", "session_state": "{not json"}, ["body", "session_state"]),
        ({"message": "hi", "metadata": "[1, 2]"}, ["body", "metadata"]),
        ({"message": "hi", "images": '[{"url": "http://x/y.png"}]'}, ["body", "images"]),
        ({"message": "hi", "background": "true"}, ["body", "background"]),
    ]
    for fields, loc in cases:
        r = await run_form(asgi, agent.slug, token, **fields)
        assert r.status_code == 422, (fields, r.text)
        detail = r.json()["detail"]
        assert [d["loc"] for d in detail] == [loc], fields
        assert all(isinstance(d["msg"], str) and d["msg"] for d in detail)
    assert await Run.objects.acount() == 0 and await Session.objects.acount() == 0


async def test_unknown_agent_and_sessions_that_are_not_yours_are_404(asgi, agent, token, other_token, scripted_model):
    scripted_model.push_text("mine")
    mine = RunOutput.from_dict((await run_form(asgi, agent.slug, token, message="a", stream="false")).json())
    r = await run_form(asgi, "nope", token, message="hi")
    assert r.status_code == 404 and r.json() == {"detail": "Agent not found", "code": "unknown_agent"}
    # (An unknown UUID creates that session, as agno does: tests/test_agno_parity_sessions.py.)
    for session_id in (mine.session_id, "not-a-uuid"):
        r = await run_form(asgi, agent.slug, other_token, message="hi", session_id=session_id)
        assert r.status_code == 404, session_id
        assert r.json()["detail"].startswith("Session with id")
    assert await Run.objects.acount() == 1


async def test_a_busy_session_of_a_rejecting_agent_is_a_409(asgi, agent, token, user, scripted_model):
    await Agent.objects.filter(pk=agent.pk).aupdate(busy_session_policy="reject")
    session = await Session.objects.acreate(user=user, agent=agent, name="busy")
    await Run.objects.acreate(session=session, agent=agent, user=user, status=Run.Status.RUNNING, input="earlier")
    r = await run_form(asgi, agent.slug, token, message="again", session_id=str(session.pk))
    assert r.status_code == 409 and "still answering" in r.json()["detail"]


async def test_a_busy_session_of_an_interrupting_agent_stops_the_running_run_first(
    asgi, agent, token, user, scripted_model
):
    await Agent.objects.filter(pk=agent.pk).aupdate(busy_session_policy="interrupt")
    session = await Session.objects.acreate(user=user, agent=agent, name="busy")
    # A run no process has any more (its server died): the new message cancels it, then runs.
    stuck = await Run.objects.acreate(session=session, agent=agent, user=user, status=Run.Status.RUNNING, input="x")
    scripted_model.push_text("fresh answer")
    r = await run_form(asgi, agent.slug, token, message="again", session_id=str(session.pk), stream="false")
    assert r.status_code == 200 and r.json()["content"] == "fresh answer"
    assert (await Run.objects.aget(pk=stuck.pk)).status == Run.Status.CANCELLED


# ---- Cancel ----------------------------------------------------------------------------------


async def test_cancel_checks_ownership_and_is_idempotent_on_a_finished_run(
    asgi, agent, token, other_token, scripted_model
):
    scripted_model.push_text("done")
    out = RunOutput.from_dict((await run_form(asgi, agent.slug, token, message="a", stream="false")).json())
    url = f"{OS}/agents/{agent.slug}/runs/{out.run_id}/cancel"
    assert (await asgi.post(url, headers=bearer(other_token))).status_code == 404
    assert (await asgi.post(f"{OS}/agents/offline/runs/{out.run_id}/cancel", headers=bearer(token))).status_code == 404
    assert (await asgi.post(f"{OS}/agents/{agent.slug}/runs/nope/cancel", headers=bearer(token))).status_code == 404
    r = await asgi.post(url, headers=bearer(token))
    assert r.status_code == 200 and r.json() == {}
    assert (await Run.objects.aget(pk=out.run_id)).status == Run.Status.COMPLETED


# ---- Sessions --------------------------------------------------------------------------------


async def _conversation(asgi, agent_slug: str, token: str, scripted_model, *messages: str) -> str:
    session_id = None
    for message in messages:
        scripted_model.push_text(f"re: {message}")
        fields = {"message": message, "stream": "false"} | ({"session_id": session_id} if session_id else {})
        session_id = (await run_form(asgi, agent_slug, token, **fields)).json()["session_id"]
    return session_id


async def test_session_list_is_agnos_page_and_only_mine(asgi, agent, token, other_token, scripted_model):
    other_agent = await Agent.objects.acreate(slug="second", name="Second", model=agent.model)
    first = await _conversation(asgi, agent.slug, token, scripted_model, "first question", "follow-up")
    second = await _conversation(asgi, agent.slug, token, scripted_model, "second question")
    third = await _conversation(asgi, other_agent.slug, token, scripted_model, "third question")
    r = await asgi.get(f"{OS}/sessions", headers=bearer(token))
    assert r.status_code == 200
    body = r.json()
    assert [x["session_id"] for x in body["data"]] == [third, second, first]  # created_at, newest first
    meta = PaginationInfo.model_validate(body["meta"])
    assert (meta.page, meta.limit, meta.total_count, meta.total_pages) == (1, 20, 3, 1)
    parsed = SessionSchema.from_dict(body["data"][2])
    assert (parsed.session_name, parsed.session_type, parsed.agent_id) == ("first question", "agent", "helper")
    assert parsed.created_at is not None and parsed.created_at.tzinfo is not None

    q = {"type": "agent", "component_id": "helper", "limit": 1, "page": 2, "sort_order": "asc"}
    page = (await asgi.get(f"{OS}/sessions", params=q, headers=bearer(token))).json()
    assert [x["session_id"] for x in page["data"]] == [second]
    assert page["meta"] == {"page": 2, "limit": 1, "total_pages": 2, "total_count": 2, "search_time_ms": 0}
    named = (await asgi.get(f"{OS}/sessions", params={"session_name": "THIRD"}, headers=bearer(token))).json()
    assert [x["session_id"] for x in named["data"]] == [third]
    teams = (await asgi.get(f"{OS}/sessions", params={"type": "team"}, headers=bearer(token))).json()
    assert teams["data"] == [] and teams["meta"]["total_count"] == 0
    theirs = (await asgi.get(f"{OS}/sessions", params={"user_id": "1"}, headers=bearer(other_token))).json()
    assert theirs["data"] == [] and theirs["meta"]["total_count"] == 0
    r = await asgi.get(f"{OS}/sessions", params={"limit": 0}, headers=bearer(token))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]


async def test_session_detail_and_runs_parse_as_agno_schemas(asgi, agent, token, user, scripted_model):
    session_id = await _conversation(asgi, agent.slug, token, scripted_model, "hello", "and again")
    detail = AgentSessionDetailSchema.model_validate(
        (await asgi.get(f"{OS}/sessions/{session_id}", headers=bearer(token))).json()
    )
    assert (detail.session_id, detail.agent_id, detail.user_id, detail.session_name) == (
        session_id,
        "helper",
        str(user.pk),
        "hello",
    )
    assert [(m["role"], m["content"]) for m in detail.chat_history] == [
        ("user", "hello"),
        ("assistant", "re: hello"),
        ("user", "and again"),
        ("assistant", "re: and again"),
    ]
    assert detail.total_tokens == detail.metrics["total_tokens"] > 0

    r = await asgi.get(f"{OS}/sessions/{session_id}/runs", headers=bearer(token))
    runs = [RunSchema.model_validate(x) for x in r.json()]
    assert [(x.run_input, x.content, x.status, x.run_response_format) for x in runs] == [
        ("hello", "re: hello", "COMPLETED", "text"),
        ("and again", "re: and again", "COMPLETED", "text"),
    ]
    assert [e["event"] for e in runs[0].events] == [
        "RunStarted",
        "ModelRequestStarted",
        "ModelRequestCompleted",
        "RunCompleted",
    ]
    assert runs[0].events[0]["agent_name"] == "Helper"
    one = RunSchema.model_validate(
        (await asgi.get(f"{OS}/sessions/{session_id}/runs/{runs[1].run_id}", headers=bearer(token))).json()
    )
    assert one.run_id == runs[1].run_id

    filtered = await asgi.get(f"{OS}/sessions/{session_id}/runs", params={"status": "error"}, headers=bearer(token))
    assert filtered.status_code == 200 and filtered.json() == []
    bad = await asgi.get(f"{OS}/sessions/{session_id}/runs", params={"status": "DONE"}, headers=bearer(token))
    assert bad.status_code == 422
    later = await asgi.get(
        f"{OS}/sessions/{session_id}/runs", params={"created_after": 4_000_000_000}, headers=bearer(token)
    )
    assert later.json() == []


async def test_rename_and_delete_only_my_sessions(asgi, agent, token, other_token, scripted_model):
    session_id = await _conversation(asgi, agent.slug, token, scripted_model, "hello")
    url = f"{OS}/sessions/{session_id}"
    for method, path, kwargs in (
        ("GET", url, {}),
        ("GET", url + "/runs", {}),
        ("POST", url + "/rename", {"json": {"session_name": "stolen"}}),
        ("DELETE", url, {}),
    ):
        r = await asgi.request(method, path, headers=bearer(other_token), **kwargs)
        assert r.status_code == 404, (method, path)
        assert r.json() == {"detail": f"Session with id '{session_id}' not found", "code": "not_found"}
    r = await asgi.post(url + "/rename", json={"session_name": "Trip to Rome"}, headers=bearer(token))
    assert r.status_code == 200
    assert AgentSessionDetailSchema.model_validate(r.json()).session_name == "Trip to Rome"
    assert (await Session.objects.aget(pk=session_id)).name == "Trip to Rome"
    r = await asgi.post(url + "/rename", json={}, headers=bearer(token))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "session_name"]
    r = await asgi.delete(url, headers=bearer(token))
    assert r.status_code == 204 and r.content == b""
    assert not await Session.objects.filter(pk=session_id).aexists()
    assert await Message.objects.acount() == 0
    assert (await asgi.get(url, headers=bearer(token))).status_code == 404
    assert (await asgi.get(f"{OS}/sessions/not-a-uuid", headers=bearer(token))).status_code == 404


def test_the_prefix_setting(settings):
    from agents_app.agno_compat import url_prefix

    assert url_prefix() == "os/"
    settings.AGENTOS = {**settings.AGENTOS, "AGNO_COMPAT_PREFIX": "/agno/v1/"}
    assert url_prefix() == "agno/v1/"
    settings.AGENTOS = {**settings.AGENTOS, "AGNO_COMPAT_PREFIX": ""}
    assert url_prefix() == ""
    settings.AGENTOS = {**settings.AGENTOS, "AGNO_COMPAT_PREFIX": None}
    assert url_prefix() is None


def test_not_in_our_openapi_schema():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert not [p for p in schema["paths"] if p.startswith("/os/")]
