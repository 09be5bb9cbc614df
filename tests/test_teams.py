"""Teams through the real stack: the REST endpoint on the ASGI application, the runtime, the team
engine and the agent engine for the members, the real openai client talking to the scripted model
server over a loopback socket."""

from __future__ import annotations

from typing import Any

import pytest

from agents_app.models import Team
from sessions_app.models import Message, Run
from tests.conftest import bearer, parse_sse
from tests.factories import AgentFactory, TeamFactory, TeamMemberFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def members(openai_model):
    researcher = AgentFactory(
        slug="researcher",
        name="Researcher",
        model=openai_model,
        instructions="You research.",
        description="Finds facts",
    )
    writer = AgentFactory(slug="writer", name="Writer", model=openai_model, instructions="You write.")
    return researcher, writer


def make_team(openai_model, members, **fields: Any) -> Team:
    team = TeamFactory(slug=fields.pop("slug", "crew"), name="Crew", model=openai_model, **fields)
    for order, member in enumerate(members):
        if isinstance(member, Team):
            TeamMemberFactory(team=team, member_team=member, order=order)
        else:
            TeamMemberFactory(team=team, agent=member, order=order)
    return team


async def run_team(asgi, team_id: str, token: str, **body: Any):
    return await asgi.post(f"/api/teams/{team_id}/runs", json={"message": "hello team", **body}, headers=bearer(token))


async def test_coordinate_delegates_through_tool_calls_and_composes_the_answer(
    asgi, token, scripted_model, openai_model, members
):
    team = await _make(openai_model, members, mode="coordinate")
    scripted_model.push_tool_calls(
        [{"name": "delegate_task_to_member", "arguments": {"member_id": "researcher", "task": "find X"}, "id": "d1"}]
    )
    scripted_model.push_text("X is 42")  # the researcher
    scripted_model.push_tool_calls(
        [
            {
                "name": "delegate_task_to_member",
                "arguments": {"member_id": "writer", "task": "write about 42"},
                "id": "d2",
            }
        ]
    )
    scripted_model.push_text("A fine text about 42")  # the writer
    scripted_model.push_text("Final: X is 42, well written.")  # the leader
    r = await run_team(asgi, team.slug, token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == "Final: X is 42, well written."
    assert body["status"] == "completed" and body["team_id"] == "crew" and body["mode"] == "coordinate"
    assert [(m["member_id"], m["status"], m["content"]) for m in body["member_runs"]] == [
        ("researcher", "completed", "X is 42"),
        ("writer", "completed", "A fine text about 42"),
    ]
    # The leader saw the roster and the delegation tool; the members got their tasks, not the message.
    first = scripted_model.requests[0]
    assert "researcher (agent, Researcher): Finds facts" in first["messages"][0]["content"]
    assert [t["function"]["name"] for t in first["tools"]] == ["delegate_task_to_member"]
    assert scripted_model.requests[1]["messages"][-1] == {"role": "user", "content": "find X"}
    assert scripted_model.requests[1]["messages"][0] == {"role": "system", "content": "You research."}
    last = scripted_model.requests[-1]["messages"]
    assert [m["content"] for m in last if m["role"] == "tool"] == ["X is 42", "A fine text about 42"]
    # Stored: the team run, and two child runs under it in the same session.
    parent = await Run.objects.aget(pk=body["run_id"])
    assert parent.team_id == team.pk and parent.agent_id is None and parent.parent_run_id is None
    assert parent.status == "completed" and parent.output == "Final: X is 42, well written."
    children = [
        (str(c.parent_run_id), c.agent.slug, c.input, c.status, str(c.session_id))
        async for c in Run.objects.filter(parent_run=parent).select_related("agent").order_by("created_at")
    ]
    assert children == [
        (body["run_id"], "researcher", "find X", "completed", body["session_id"]),
        (body["run_id"], "writer", "write about 42", "completed", body["session_id"]),
    ]
    roles = [(m.role, m.content) async for m in Message.objects.filter(run=parent).order_by("position")]
    assert roles == [("user", "hello team"), ("assistant", "Final: X is 42, well written.")]


async def _make(openai_model, members, **fields: Any) -> Team:
    from asgiref.sync import sync_to_async

    return await sync_to_async(make_team)(openai_model, members, **fields)


@pytest.fixture
def answer_by_system_prompt(scripted_model):
    """Members of a collaborating team ask the model at the same time, in no fixed order: answer
    each by its system prompt instead of from the FIFO."""
    answers: dict[str, str] = {}

    def reply(body: dict[str, Any]) -> str:
        system = body["messages"][0]["content"]
        return next((text for key, text in answers.items() if key in system), "unscripted")

    scripted_model.default_reply = reply
    yield answers
    scripted_model.default_reply = scripted_model._default_reply


async def test_route_hands_the_message_to_one_member_whose_answer_is_the_teams(
    asgi, token, scripted_model, openai_model, members
):
    team = await _make(openai_model, members, mode="route")
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "writer"}, "id": "r1"}])
    scripted_model.push_text("Written by the writer.")
    r = await run_team(asgi, team.slug, token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == "Written by the writer."
    assert [m["member_id"] for m in body["member_runs"]] == ["writer"]
    assert len(scripted_model.requests) == 2  # the leader once, the member once: no synthesis call
    tools = scripted_model.requests[0]["tools"]
    assert tools[0]["function"]["name"] == "route_to_member"
    assert tools[0]["function"]["parameters"]["properties"]["member_id"]["enum"] == ["researcher", "writer"]
    # The member got the user's message itself.
    assert scripted_model.requests[1]["messages"][-1] == {"role": "user", "content": "hello team"}


async def test_route_to_an_unknown_member_is_a_clear_error(asgi, token, scripted_model, openai_model, members):
    team = await _make(openai_model, members, mode="route")
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "nobody"}, "id": "r1"}])
    r = await run_team(asgi, team.slug, token)
    assert r.status_code == 502
    body = r.json()
    assert body["status"] == "error" and body["error"]["type"] == "routing_error"
    assert "No member 'nobody'" in body["error"]["message"]
    assert body["member_runs"] == []


async def test_collaborate_runs_every_member_then_the_leader_combines(
    asgi, token, scripted_model, openai_model, members, answer_by_system_prompt
):
    team = await _make(openai_model, members, mode="collaborate")
    answer_by_system_prompt.update(
        {"You research.": "Research says 42.", "You write.": "Prose says 42.", "You lead": "Together: 42."}
    )
    r = await run_team(asgi, team.slug, token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == "Together: 42."
    assert sorted((m["member_id"], m["content"]) for m in body["member_runs"]) == [
        ("researcher", "Research says 42."),
        ("writer", "Prose says 42."),
    ]
    leader = scripted_model.requests[-1]
    assert "tools" not in leader
    synthesis = leader["messages"][-1]["content"]
    assert "## researcher\nResearch says 42." in synthesis and "## writer\nProse says 42." in synthesis
    assert leader["messages"][-2] == {"role": "user", "content": "hello team"}


async def test_a_member_failing_mid_team_ends_the_run_with_a_clear_error_and_keeps_what_finished(
    asgi, token, scripted_model, openai_model, members
):
    team = await _make(openai_model, members, mode="coordinate")
    scripted_model.push_tool_calls(
        [{"name": "delegate_task_to_member", "arguments": {"member_id": "researcher", "task": "find X"}, "id": "d1"}]
    )
    scripted_model.push_text("X is 42")
    scripted_model.push_tool_calls(
        [{"name": "delegate_task_to_member", "arguments": {"member_id": "writer", "task": "write"}, "id": "d2"}]
    )
    scripted_model.push_error(500, "the writer's model broke")
    r = await run_team(asgi, team.slug, token)
    assert r.status_code == 502, r.text
    body = r.json()
    assert body["status"] == "error" and body["error"]["type"] == "member_error"
    assert body["error"]["message"].startswith("Agent 'writer' failed (model_error):")
    assert [(m["member_id"], m["status"]) for m in body["member_runs"]] == [
        ("researcher", "completed"),
        ("writer", "error"),
    ]
    assert scripted_model.pending == 0  # the leader was not asked again
    parent = await Run.objects.aget(pk=body["run_id"])
    assert parent.status == "error" and parent.error_type == "member_error"
    assert parent.output == "[researcher] X is 42"  # the partial output: what finished
    children = [
        (c.agent.slug, c.status, c.output)
        async for c in Run.objects.filter(parent_run=parent).select_related("agent").order_by("created_at")
    ]
    assert children == [("researcher", "completed", "X is 42"), ("writer", "error", "")]


async def test_a_member_timing_out_gives_the_members_status(asgi, token, scripted_model, openai_model, members):
    team = await _make(openai_model, members, mode="route")
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "writer"}, "id": "r1"}])
    scripted_model.push_error(429, "slow down", times=1)
    r = await run_team(asgi, team.slug, token)
    assert r.status_code == 503
    assert r.json()["member_runs"][0]["error"]["type"] == "model_rate_limited"


async def test_streaming_nests_member_events_with_their_ids_in_one_index_sequence(
    asgi, token, scripted_model, openai_model, members
):
    team = await _make(openai_model, members, mode="coordinate")
    scripted_model.push_tool_calls(
        [{"name": "delegate_task_to_member", "arguments": {"member_id": "researcher", "task": "find X"}, "id": "d1"}]
    )
    scripted_model.push_text("X is 42")
    scripted_model.push_text("Final answer")
    r = await run_team(asgi, team.slug, token, stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = parse_sse(r.text)
    names = [name for name, _ in frames]
    assert names == [
        "TeamRunStarted",
        "TeamModelRequestStarted",
        "TeamModelRequestCompleted",
        "TeamToolCallStarted",
        "RunStarted",
        "ModelRequestStarted",
        "RunContent",
        "RunContent",
        "RunContent",
        "ModelRequestCompleted",
        "RunContentCompleted",
        "RunCompleted",
        "TeamToolCallCompleted",
        "TeamModelRequestStarted",
        "TeamRunContent",
        "TeamRunContent",
        "TeamModelRequestCompleted",
        "TeamRunContentCompleted",
        "TeamRunCompleted",
    ]
    assert [data["event_index"] for _, data in frames] == list(range(len(frames)))
    team_run_id = frames[0][1]["run_id"]
    for name, data in frames:
        if name.startswith("Team"):
            assert data["team_id"] == "crew" and data["run_id"] == team_run_id and "agent_id" not in data
            assert "parent_run_id" not in data
        else:
            assert data["agent_id"] == "researcher" and data["parent_run_id"] == team_run_id
            assert data["run_id"] != team_run_id
    assert frames[-1][1]["content"] == "Final answer"
    assert frames[3][1]["tool"]["tool_args"] == {"member_id": "researcher", "task": "find X"}
    # The stored events replay the same stream (resume), and the member's own run has its own.
    events = await asgi.get(f"/api/runs/{team_run_id}/events?after_event_index=5", headers=bearer(token))
    assert [name for name, _ in parse_sse(events.text)] == names[6:]
    member_run_id = frames[4][1]["run_id"]
    member = await Run.objects.aget(pk=member_run_id)
    assert [e["event"] for e in member.events] == [
        "RunStarted",
        "ModelRequestStarted",
        "RunContent",
        "RunContent",
        "RunContent",
        "ModelRequestCompleted",
        "RunContentCompleted",
        "RunCompleted",
    ]


async def test_child_runs_are_visible_in_the_session_endpoint(asgi, token, scripted_model, openai_model, members):
    team = await _make(openai_model, members, mode="route")
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "researcher"}, "id": "r1"}])
    scripted_model.push_text("Found it.")
    body = (await run_team(asgi, team.slug, token)).json()
    session = (await asgi.get(f"/api/sessions/{body['session_id']}/", headers=bearer(token))).json()
    assert session["team_id"] == "crew" and session["agent_id"] is None and session["run_count"] == 2
    runs = [(r["team_id"], r["agent_id"], r["parent_run_id"], r["content"]) for r in session["runs"]]
    assert runs == [("crew", None, None, "Found it."), (None, "researcher", body["run_id"], "Found it.")]
    listed = (await asgi.get("/api/sessions/?team_id=crew", headers=bearer(token))).json()
    assert [s["session_id"] for s in listed["results"]] == [body["session_id"]]


async def test_the_next_message_sees_the_teams_history_not_its_members_runs(
    asgi, token, scripted_model, openai_model, members
):
    team = await _make(openai_model, members, mode="route")
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "writer"}, "id": "r1"}])
    scripted_model.push_text("I am the writer.")
    first = (await run_team(asgi, team.slug, token)).json()
    scripted_model.push_text("Hello again.")
    second = await run_team(asgi, team.slug, token, session_id=first["session_id"], message="again")
    assert second.status_code == 200
    sent = scripted_model.requests[-1]["messages"]
    assert [(m["role"], m["content"]) for m in sent[1:]] == [
        ("user", "hello team"),
        ("assistant", "I am the writer."),
        ("user", "again"),
    ]


async def test_teams_nest_within_their_depth_bound(asgi, token, scripted_model, openai_model, members):
    from asgiref.sync import sync_to_async

    inner = await _make(openai_model, members[:1], slug="inner", mode="route")
    outer = await _make(openai_model, [inner], slug="outer", mode="route", max_depth=2)
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "inner"}, "id": "o1"}])
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "researcher"}, "id": "i1"}])
    scripted_model.push_text("Deep answer.")
    r = await run_team(asgi, outer.slug, token, stream=True)
    frames = parse_sse(r.text)
    assert frames[-1][0] == "TeamRunCompleted" and frames[-1][1]["content"] == "Deep answer."
    outer_id = frames[0][1]["run_id"]
    inner_started = next(d for n, d in frames if n == "TeamRunStarted" and d["team_id"] == "inner")
    assert inner_started["parent_run_id"] == outer_id
    deepest = next(d for n, d in frames if n == "RunCompleted")
    assert deepest["agent_id"] == "researcher" and deepest["parent_run_id"] == inner_started["run_id"]
    inner_run = await Run.objects.aget(pk=inner_started["run_id"])
    assert str(inner_run.parent_run_id) == outer_id

    # With a depth of 1, members must be agents: the same delegation is refused, clearly.
    outer.max_depth = 1
    await sync_to_async(outer.save)()
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "inner"}, "id": "o1"}])
    r = await run_team(asgi, outer.slug, token)
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "delegation_depth_exceeded"


async def test_member_calls_are_bounded(asgi, token, scripted_model, openai_model, members):
    team = await _make(openai_model, members, mode="coordinate", max_member_calls=2)
    for i in range(3):
        scripted_model.push_tool_calls(
            [{"name": "delegate_task_to_member", "arguments": {"member_id": "writer", "task": f"t{i}"}, "id": f"d{i}"}]
        )
        scripted_model.push_text(f"done {i}")
    r = await run_team(asgi, team.slug, token)
    body = r.json()
    # Two member runs, then the leader is asked without the tool; it still delegates: a clear error.
    assert [m["content"] for m in body["member_runs"]] == ["done 0", "done 1"]
    assert "tools" not in scripted_model.requests[4]
    assert r.status_code == 502 and body["error"]["type"] == "member_limit_exceeded"


async def test_unknown_team_bad_input_and_other_users_sessions(
    asgi, token, other_token, scripted_model, openai_model, members
):
    team = await _make(openai_model, members, mode="route")
    assert (await run_team(asgi, "nope", token)).status_code == 404
    assert (await run_team(asgi, team.slug, token, message="   ")).status_code == 400
    scripted_model.push_text("hi")
    mine = (await run_team(asgi, team.slug, token)).json()
    theirs = await run_team(asgi, team.slug, other_token, session_id=mine["session_id"])
    assert theirs.status_code == 404
    assert await Run.objects.filter(team=team).acount() == 1


async def test_teams_are_listed_for_users(asgi, token, openai_model, members):
    team = await _make(openai_model, members, mode="collaborate")
    listed = (await asgi.get("/api/teams/", headers=bearer(token))).json()
    assert [t["team_id"] for t in listed] == ["crew"]
    detail = (await asgi.get(f"/api/teams/{team.slug}/", headers=bearer(token))).json()
    assert detail["mode"] == "collaborate"
    assert [(m["member_id"], m["member_type"]) for m in detail["members"]] == [
        ("researcher", "agent"),
        ("writer", "agent"),
    ]
    assert (await asgi.get("/api/teams/")).status_code == 401


async def test_a_team_run_left_by_a_dead_process_replays_with_a_team_terminal_event(
    asgi, token, user, openai_model, members
):
    from agents_app.engine.team import team_run_prepare
    from agents_app.runtime import _settle_cancelled, _settle_interrupted
    from sessions_app.db import db_call

    team = await _make(openai_model, members, mode="route")
    handle = await db_call(team_run_prepare, team_id=team.slug, user=user, message="hi")  # never launched
    await db_call(_settle_cancelled, handle.run_id)
    r = await asgi.get(f"/api/runs/{handle.run_id}/events", headers=bearer(token))
    frames = parse_sse(r.text)
    assert [name for name, _ in frames] == ["TeamRunCancelled"]
    assert frames[0][1]["team_id"] == "crew" and "agent_id" not in frames[0][1]
    # One whose process died is taken over as interrupted, with the team's error event.
    other = await db_call(team_run_prepare, team_id=team.slug, user=user, message="hi again")
    await db_call(_settle_interrupted, other.run_id)
    frames = parse_sse((await asgi.get(f"/api/runs/{other.run_id}/events", headers=bearer(token))).text)
    assert [(name, data["error_type"], data["event_index"]) for name, data in frames] == [
        ("TeamRunError", "interrupted", 0)
    ]


async def test_a_busy_session_is_a_409_unless_only_a_dead_process_held_it(
    asgi, token, user, scripted_model, openai_model, members
):
    from datetime import timedelta

    from django.utils import timezone

    from agents_app.engine.team import team_run_prepare
    from sessions_app.db import db_call

    team = await _make(openai_model, members, mode="route", busy_session_policy="reject")
    held = await db_call(team_run_prepare, team_id=team.slug, user=user, message="first")  # never launched
    r = await run_team(asgi, team.slug, token, session_id=str(held.session_id))
    assert r.status_code == 409  # young: its process may still be starting it
    # Older than the grace period and made by a process that is gone: the session is freed.
    await Run.objects.filter(pk=held.run_id).aupdate(created_at=timezone.now() - timedelta(seconds=30), owner="0" * 32)
    scripted_model.push_text("answered")
    r = await run_team(asgi, team.slug, token, session_id=str(held.session_id))
    assert r.status_code == 200, r.text
    held_run = await Run.objects.aget(pk=held.run_id)
    assert (held_run.status, held_run.error_type) == ("error", "interrupted")


@pytest.mark.parametrize("mode", ["route", "coordinate"])
def test_route_and_coordinate_teams_run_on_the_offline_model(user, mode):
    from agents_app.runs import run_team
    from tests.factories import ModelConfigFactory

    model = ModelConfigFactory(name="offline")
    team = TeamFactory(slug="crew", model=model, mode=mode)
    TeamMemberFactory(team=team, agent=AgentFactory(slug="maths", model=model, tools=["calculator"]), order=0)
    TeamMemberFactory(team=team, agent=AgentFactory(slug="words", model=model, tools=["text_stats"]), order=1)
    result = run_team(team_id="crew", user=user, message="ask maths: what is 6*7?")
    assert result["status"] == "completed", result
    assert [m["member_id"] for m in result["member_runs"]] == ["maths"]
    answer = "[offline demo model] I used my tools: calculator returned 42."
    if mode == "route":
        assert result["content"] == answer
    else:
        assert result["content"] == f"[offline demo model] I used my tools: delegate_task_to_member returned {answer}."


async def test_a_member_failing_while_others_collaborate_keeps_the_others_answers(
    asgi, token, scripted_model, openai_model, answer_by_system_prompt
):
    from asgiref.sync import sync_to_async

    from tests.factories import ModelConfigFactory

    def build() -> Team:
        unreachable = ModelConfigFactory(
            name="unreachable", provider="openai", base_url="http://127.0.0.1:9/v1", api_key="x", max_retries=0
        )
        good = AgentFactory(slug="good", model=openai_model, instructions="You are good.")
        broken = AgentFactory(slug="broken", model=unreachable, instructions="You are broken.")
        return make_team(openai_model, [good, broken], mode="collaborate")

    team = await sync_to_async(build)()
    answer_by_system_prompt.update({"You are good.": "A good answer."})
    r = await run_team(asgi, team.slug, token)
    assert r.status_code == 502, r.text
    body = r.json()
    assert body["error"]["type"] == "member_error"
    assert body["error"]["message"].startswith("Agent 'broken' failed (model_unreachable):")
    assert sorted((m["member_id"], m["status"]) for m in body["member_runs"]) == [
        ("broken", "error"),
        ("good", "completed"),
    ]
    parent = await Run.objects.aget(pk=body["run_id"])
    assert parent.output == "[good] A good answer."
    # The leader was never asked to combine: only the good member reached the model server.
    assert [m["messages"][0]["content"] for m in scripted_model.requests] == ["You are good."]


async def test_a_member_agent_sees_its_users_memories_like_any_agent_run(
    asgi, token, user, scripted_model, openai_model, members
):
    from sessions_app.models import Memory

    researcher, _ = members
    researcher.memory_mode = "agentic"
    await researcher.asave()
    await Memory.objects.acreate(user=user, memory="The user plays the violin.")
    team = await _make(openai_model, members, mode="route")
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "researcher"}, "id": "r"}])
    scripted_model.push_text("Try Bach.")
    r = await run_team(asgi, team.slug, token, message="Which violin pieces suit me?")
    assert r.status_code == 200, r.text
    member_system = scripted_model.requests[1]["messages"][0]["content"]
    assert "The user plays the violin." in member_system


async def test_a_leader_naming_unknown_members_again_and_again_is_bounded(
    asgi, token, scripted_model, openai_model, members
):
    team = await _make(openai_model, members, mode="coordinate", max_member_calls=2)
    for i in range(3):
        scripted_model.push_tool_calls(
            [{"name": "delegate_task_to_member", "arguments": {"member_id": "ghost", "task": "boo"}, "id": f"g{i}"}]
        )
    r = await run_team(asgi, team.slug, token, stream=True)
    names = [name for name, _ in parse_sse(r.text)]
    assert names.count("TeamToolCallError") == 2
    assert names[-1] == "TeamRunError"
    assert parse_sse(r.text)[-1][1]["error_type"] == "member_limit_exceeded"
    assert "tools" not in scripted_model.requests[2] and len(scripted_model.requests) == 3


@pytest.mark.parametrize("policy", ["queue", "interrupt"])
async def test_a_second_message_follows_the_teams_busy_session_policy(
    asgi, token, scripted_model, openai_model, members, policy
):
    import asyncio

    team = await _make(openai_model, members, mode="route", busy_session_policy=policy)
    scripted_model.push_text("first", delay=0.5)  # the leader answers the first message slowly
    scripted_model.push_text("second")
    first = asyncio.ensure_future(run_team(asgi, team.slug, token, message="one"))
    session_id = None
    while session_id is None:  # the first run is stored (running) before the model is asked
        await asyncio.sleep(0.02)
        session_id = await Run.objects.filter(team=team).values_list("session_id", flat=True).afirst()
    second = await run_team(asgi, team.slug, token, message="two", session_id=str(session_id))
    one = (await first).json()
    assert second.status_code == 200, second.text
    assert second.json()["content"] == "second"
    if policy == "queue":
        assert one["status"] == "completed" and one["content"] == "first"
        # The second message's leader saw the first exchange: it waited for it.
        assert [m["content"] for m in scripted_model.requests[-1]["messages"][1:]] == ["one", "first", "two"]
    else:
        assert one["status"] == "cancelled"


async def test_session_filters_with_a_nul_character_find_nothing_rather_than_fail(asgi, token):
    # PostgreSQL refuses NUL in a query string literal (a 500 there); no id can hold one anyway.
    for param in ("agent_id", "team_id", "workflow_id"):
        r = await asgi.get(f"/api/sessions/?{param}=a%00b", headers=bearer(token))
        assert r.status_code == 200 and r.json()["results"] == []
