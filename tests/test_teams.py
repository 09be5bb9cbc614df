"""Teams through the real stack: the REST endpoint on the ASGI application, the runtime, the team
engine and the agent engine for the members, the real openai client talking to the scripted model
server over a loopback socket."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents_app.models import Team
from sessions_app.models import Message, Run
from tests.conftest import bearer
from tests.factories import AgentFactory, TeamFactory, TeamMemberFactory

pytestmark = pytest.mark.django_db(transaction=True)


def parse_sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    frames = []
    for block in body.strip().split("\n\n"):
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        frames.append((lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])))
    return frames


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
