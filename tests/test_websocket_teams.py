"""The team and workflow websockets through the real ASGI application, with the scripted model
server: streaming with nested member and step events, cancel mid-member, resume, refusals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from sessions_app.models import Run
from tests.conftest import BOOKKEEPING_EVENTS, without_bookkeeping
from tests.factories import AgentFactory, TeamFactory, TeamMemberFactory, WorkflowFactory, WorkflowStepFactory

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://testserver")


def _application() -> Any:
    from agentos_site.asgi import application

    return application


async def connect(path: str, token: str) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(_application(), path, headers=[ORIGIN], subprotocols=["agentos", f"token.{token}"])
    connected, detail = await comm.connect(timeout=5)
    assert connected, f"refused: {detail}"
    return comm


async def until_end(comm: WebsocketCommunicator, timeout: float = 5) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = await comm.receive_json_from(timeout=timeout)
        frames.append(frame)
        if frame.get("event") in {
            "TeamRunCompleted",
            "TeamRunError",
            "TeamRunCancelled",
            "WorkflowCompleted",
            "WorkflowError",
            "WorkflowCancelled",
            "Error",
        } and not frame.get("parent_run_id"):
            return frames


@pytest.fixture
def team(openai_model):
    def build():
        member = AgentFactory(slug="member", name="Member", model=openai_model, instructions="You help.")
        team = TeamFactory(slug="crew", model=openai_model, mode="coordinate")
        TeamMemberFactory(team=team, agent=member)
        return team

    return build()


async def test_a_team_streams_over_its_websocket_with_member_events_nested(team, token, scripted_model):
    scripted_model.push_tool_calls(
        [{"name": "delegate_task_to_member", "arguments": {"member_id": "member", "task": "do it"}, "id": "d1"}]
    )
    scripted_model.push_text("done")
    scripted_model.push_text("all done")
    comm = await connect("/ws/teams/crew/", token)
    await comm.send_json_to({"type": "run", "message": "go"})
    frames = await until_end(comm)
    assert without_bookkeeping([f["event"] for f in frames]) == [
        "TeamRunStarted",
        "TeamToolCallStarted",
        "RunStarted",
        "RunContent",
        "RunCompleted",
        "TeamToolCallCompleted",
        "TeamRunContent",
        "TeamRunContent",
        "TeamRunCompleted",
    ]
    team_run = frames[0]["run_id"]
    assert {f["parent_run_id"] for f in frames if not f["event"].startswith("Team")} == {team_run}
    assert frames[-1]["content"] == "all done"
    # Resume from the database once it has ended, after any index.
    last = frames[-1]["event_index"]
    await comm.send_json_to({"type": "resume", "run_id": team_run, "after_event_index": last - 2})
    again = await until_end(comm)
    assert [f["event_index"] for f in again] == [last - 1, last]
    await comm.disconnect()


async def test_cancelling_a_team_mid_member_stops_both_and_keeps_them(team, token, scripted_model):
    scripted_model.push_tool_calls(
        [{"name": "delegate_task_to_member", "arguments": {"member_id": "member", "task": "slow"}, "id": "d1"}]
    )
    scripted_model.push_hang(10)
    comm = await connect("/ws/teams/crew/", token)
    await comm.send_json_to({"type": "run", "message": "go"})
    frames = []
    while not frames or frames[-1]["event"] != "RunStarted":
        frames.append(await comm.receive_json_from(timeout=5))
    team_run = frames[0]["run_id"]
    member_run = frames[-1]["run_id"]
    await comm.send_json_to({"type": "cancel", "run_id": team_run})
    rest = await until_end(comm)
    run_frames = [f for f in rest if f["event"] != "CancelRequested" and f["event"] not in BOOKKEEPING_EVENTS]
    assert [f["event"] for f in run_frames] == ["RunCancelled", "TeamRunCancelled"]
    assert run_frames[0]["parent_run_id"] == team_run and run_frames[0]["run_id"] == member_run
    statuses = {str(r.pk): r.status async for r in Run.objects.filter(pk__in=[team_run, member_run])}
    assert statuses == {team_run: "cancelled", member_run: "cancelled"}
    await comm.disconnect()


async def test_a_workflow_streams_its_steps_over_its_websocket(openai_model, token, scripted_model):
    def build():
        writer = AgentFactory(slug="writer", model=openai_model)
        workflow = WorkflowFactory(slug="flow")
        WorkflowStepFactory(workflow=workflow, name="write", kind="agent", agent=writer, order=0)
        WorkflowStepFactory(workflow=workflow, name="keep", kind="function", function="remember_output", order=1)

    await sync_to_async(build)()
    scripted_model.push_text("text")
    comm = await connect("/ws/workflows/flow/", token)
    await comm.send_json_to({"type": "run", "message": "go"})
    frames = await until_end(comm)
    frames = [f for f in frames if f["event"] not in BOOKKEEPING_EVENTS]
    assert [(f["event"], f.get("step_name")) for f in frames] == [
        ("WorkflowStarted", None),
        ("StepStarted", "write"),
        ("RunStarted", "write"),
        ("RunContent", "write"),
        ("RunCompleted", "write"),
        ("StepCompleted", "write"),
        ("StepStarted", "keep"),
        ("StepCompleted", "keep"),
        ("WorkflowCompleted", None),
    ]
    assert frames[-1]["session_state"] == {"last_output": "text"}
    await comm.disconnect()


async def test_unknown_teams_and_workflows_are_refused(token, db):
    for path in ("/ws/teams/nope/", "/ws/workflows/nope/"):
        comm = WebsocketCommunicator(_application(), path, headers=[ORIGIN], subprotocols=["agentos", f"token.{token}"])
        connected, code = await comm.connect(timeout=5)
        assert (connected, code) == (False, 4404)


async def test_an_empty_message_is_an_error_frame_and_the_socket_stays_open(team, token, scripted_model):
    comm = await connect("/ws/teams/crew/", token)
    await comm.send_json_to({"type": "run", "message": "  ", "id": 7})
    frame = await comm.receive_json_from(timeout=5)
    assert frame == {
        "event": "Error",
        "error_type": "invalid_input",
        "code": "invalid_input",
        "content": "The message must not be empty.",
        "detail": "The message must not be empty.",
        "id": 7,
    }
    await asyncio.sleep(0)
    await comm.disconnect()


async def test_cancelling_a_member_run_cancels_the_team_run_it_is_part_of(team, token, scripted_model, asgi):
    from tests.conftest import bearer

    scripted_model.push_tool_calls(
        [{"name": "delegate_task_to_member", "arguments": {"member_id": "member", "task": "slow"}, "id": "d1"}]
    )
    scripted_model.push_hang(10)
    comm = await connect("/ws/teams/crew/", token)
    await comm.send_json_to({"type": "run", "message": "go"})
    frames = []
    while not frames or frames[-1]["event"] != "RunStarted":
        frames.append(await comm.receive_json_from(timeout=5))
    member_run = frames[-1]["run_id"]
    r = await asgi.post(f"/api/runs/{member_run}/cancel", headers=bearer(token))
    assert r.status_code == 202 and r.json()["status"] == "cancelling"
    rest = [f for f in await until_end(comm) if f["event"] not in BOOKKEEPING_EVENTS]
    assert [f["event"] for f in rest] == ["RunCancelled", "TeamRunCancelled"]
    assert (await Run.objects.aget(pk=member_run)).status == "cancelled"
    await comm.disconnect()


async def test_cancelling_a_workflow_mid_parallel_step_cancels_every_branch(openai_model, token, scripted_model):
    def build():
        a = AgentFactory(slug="a", model=openai_model)
        b = AgentFactory(slug="b", model=openai_model)
        workflow = WorkflowFactory(slug="fan")
        both = WorkflowStepFactory(workflow=workflow, name="both", kind="parallel", order=0)
        WorkflowStepFactory(workflow=workflow, parent=both, name="left", kind="agent", agent=a, order=0)
        WorkflowStepFactory(workflow=workflow, parent=both, name="right", kind="agent", agent=b, order=1)

    await sync_to_async(build)()
    scripted_model.latency = 10.0
    try:
        comm = await connect("/ws/workflows/fan/", token)
        await comm.send_json_to({"type": "run", "message": "go"})
        frames = []
        while sum(f["event"] == "RunStarted" for f in frames) < 2:
            frames.append(await comm.receive_json_from(timeout=5))
        workflow_run = frames[0]["run_id"]
        await comm.send_json_to({"type": "cancel", "run_id": workflow_run})
        rest = [
            f for f in await until_end(comm) if f["event"] != "CancelRequested" and f["event"] not in BOOKKEEPING_EVENTS
        ]
    finally:
        scripted_model.latency = 0.0
    assert sorted(f["event"] for f in rest[:-1]) == ["RunCancelled", "RunCancelled"]
    assert rest[-1]["event"] == "WorkflowCancelled"
    statuses = sorted([r.status async for r in Run.objects.filter(session_id=frames[0]["session_id"])])
    assert statuses == ["cancelled", "cancelled", "cancelled"]
    await comm.disconnect()
