"""A team's pre- and post-hooks run through the same lifecycle as an agent's (engine/outcome.py):
inline ones rewrite or refuse the team's input and answer, with agno's Team*Hook* events; background
ones are recorded with the team's run and see the team in their context."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from agents_app.hooks import HookContext
from agents_app.hooks.executions import hook_execution_run
from agents_app.models import HookExecution
from agents_app.runs import run_team
from sessions_app.models import Message, Run
from tests.conftest import BOOKKEEPING_EVENTS, bearer, parse_sse, without_bookkeeping
from tests.factories import AgentFactory, ModelConfigFactory, TeamFactory, TeamMemberFactory, attach_hooks
from tests.test_hooks import register  # noqa: F401  (the fixture)


@pytest.fixture
def crew(openai_model):
    team = TeamFactory(slug="crew", name="Crew", model=openai_model, mode="coordinate")
    TeamMemberFactory(team=team, agent=AgentFactory(slug="writer", model=openai_model))
    return team


@pytest.mark.django_db(transaction=True)
async def test_inline_hooks_rewrite_a_teams_input_and_answer_and_stream_as_team_events(
    register,  # noqa: F811
    asgi,
    token,
    scripted_model,
    crew,
):
    seen: dict[str, Any] = {}

    def shout(ctx: HookContext) -> str:
        seen.update(agent=ctx.agent, team=ctx.team.slug, phase=ctx.phase)
        ctx.session_state["shouted"] = True
        return ctx.input.upper()

    def sign(ctx: HookContext) -> str:
        return f"{ctx.output} (checked by {ctx.component.name})"

    register(shout, phases=["pre"])
    register(sign, phases=["post"])
    await sync_to_async(attach_hooks)(crew, pre=["shout"], post=["sign"])
    scripted_model.push_text("All done")  # the leader answers without delegating
    r = await asgi.post("/api/teams/crew/runs", json={"message": "hello team", "stream": True}, headers=bearer(token))
    assert r.status_code == 200
    events = [data for _, data in parse_sse(r.text)]
    assert without_bookkeeping([e["event"] for e in events]) == [
        "TeamRunStarted",
        "TeamPreHookStarted",
        "TeamPreHookCompleted",
        "TeamPostHookStarted",
        "TeamPostHookCompleted",
        "TeamRunContent",  # one, after the post-hook: no token deltas that the hook could contradict
        "TeamRunCompleted",
    ]
    assert [e["event_index"] for e in events] == list(range(len(events)))
    events = [e for e in events if e["event"] not in BOOKKEEPING_EVENTS]
    assert events[2]["transformed"] is True and events[4]["transformed"] is True
    assert events[5]["content"] == events[6]["content"] == "All done (checked by Crew)"
    assert all(e["team_id"] == "crew" and "agent_id" not in e for e in events)
    assert seen == {"agent": None, "team": "crew", "phase": "pre"}
    assert scripted_model.requests[-1]["messages"][-1] == {"role": "user", "content": "HELLO TEAM"}
    run = await Run.objects.aget(team=crew)
    assert (run.input, run.output, run.status) == ("HELLO TEAM", "All done (checked by Crew)", "completed")
    user_message = await Message.objects.aget(run=run, role="user")
    assert user_message.content == "HELLO TEAM"  # the original text is not kept
    session = await sync_to_async(lambda: run.session)()
    assert session.state == {"shouted": True}


@pytest.mark.django_db(transaction=True)
async def test_a_guardrail_refuses_a_teams_message_before_its_leader_is_called(
    register,  # noqa: F811
    asgi,
    token,
    scripted_model,
    crew,
):
    register(lambda ctx: ctx.reject("Not for this team."), name="gate", guardrail=True, phases=["pre"])
    await sync_to_async(attach_hooks)(crew, pre=["gate"])
    r = await asgi.post("/api/teams/crew/runs", json={"message": "hello team"}, headers=bearer(token))
    assert r.status_code == 422
    body = r.json()
    assert (body["status"], body["error"]["type"]) == ("error", "input_rejected")
    assert "Not for this team." in body["error"]["message"]
    assert scripted_model.requests == []
    assert await Run.objects.filter(team=crew, status="error", error_type="input_rejected").aexists()


@pytest.mark.django_db
def test_a_teams_background_post_hook_is_recorded_and_sees_the_team(register, user):  # noqa: F811
    seen: list[tuple[Any, str, str]] = []

    def audit(ctx: HookContext) -> None:
        seen.append((ctx.agent, ctx.team.slug, ctx.output))

    register(audit, background=True, phases=["post"])
    offline = ModelConfigFactory(name="offline")
    team = TeamFactory(slug="solo", model=offline, mode="collaborate")
    TeamMemberFactory(team=team, agent=AgentFactory(slug="helper", model=offline))
    attach_hooks(team, post=["audit"])
    result = run_team(team_id="solo", user=user, message="what is 6*7?")
    assert result["status"] == "completed"
    (execution,) = HookExecution.objects.all()
    assert (execution.hook_name, execution.phase, execution.run.team_id) == ("audit", "post", team.pk)
    assert hook_execution_run(execution_id=execution.pk).status == "succeeded"
    assert seen == [(None, "solo", result["content"])]


@pytest.mark.django_db(transaction=True)
async def test_a_rejected_team_answer_is_neither_streamed_nor_stored_even_when_a_member_made_it(
    register,  # noqa: F811
    asgi,
    token,
    scripted_model,
    crew,
):
    register(lambda ctx: ctx.reject("Not to be said."), name="censor", phases=["post"])
    await sync_to_async(attach_hooks)(crew, post=["censor"])
    crew.mode = "route"
    await crew.asave()
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "writer"}, "id": "r"}])
    scripted_model.push_text("SECRET ANSWER")  # the member's answer is the team's, in route mode
    r = await asgi.post("/api/teams/crew/runs", json={"message": "hi", "stream": True}, headers=bearer(token))
    assert r.status_code == 200
    assert "SECRET" not in r.text
    events = [data for _, data in parse_sse(r.text)]
    assert events[-1]["event"] == "TeamRunError" and events[-1]["error_type"] == "output_rejected"
    assert [m["content"] for m in events[-1]["member_runs"]] == [None]
    run = await Run.objects.aget(team=crew)
    assert (run.status, run.error_type, run.output) == ("error", "output_rejected", "")
    assert [m async for m in Message.objects.filter(run=run).values_list("role", flat=True)] == ["user"]
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "writer"}, "id": "r"}])
    scripted_model.push_text("SECRET ANSWER")
    r = await asgi.post("/api/teams/crew/runs", json={"message": "again"}, headers=bearer(token))
    assert r.status_code == 502 and "SECRET" not in r.text  # the non-streamed answer too
