"""Human in the loop in teams and workflows (docs/human-in-the-loop.md#teams-and-workflows): a
member's or step's run that pauses pauses its parent; continuing the parent resumes the member,
then the leader or the next steps, as one run. Through the real stack: ASGI HTTP and websocket,
the `openai` client against the scripted model server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from agents_app.models import Team
from sessions_app.models import Run, ToolApproval
from tests.conftest import bearer, parse_sse
from tests.factories import AgentFactory, TeamFactory, TeamMemberFactory
from tests.test_human_in_the_loop import CALLS, REFUND, continue_

pytestmark = pytest.mark.django_db(transaction=True)

_ = CALLS  # the tools of tests.test_human_in_the_loop are registered by importing it


@pytest.fixture(autouse=True)
def _no_calls() -> Any:
    CALLS.clear()
    yield
    CALLS.clear()


@pytest.fixture
def cashier(openai_model: Any) -> Any:
    return AgentFactory(slug="cashier", name="Cashier", model=openai_model, tools=["hitl_refund", "calculator"])


def make_team(openai_model: Any, members: list[Any], *, slug: str = "desk", mode: str = "coordinate") -> Team:
    team = TeamFactory(slug=slug, name=slug.title(), model=openai_model, mode=mode)
    for order, member in enumerate(members):
        if isinstance(member, Team):
            TeamMemberFactory(team=team, member_team=member, order=order)
        else:
            TeamMemberFactory(team=team, agent=member, order=order)
    return team


def delegate(member: str, task: str = "refund order 7", call_id: str = "d1") -> dict[str, Any]:
    return {"name": "delegate_task_to_member", "arguments": {"member_id": member, "task": task}, "id": call_id}


async def start_team(asgi: Any, token: str, slug: str = "desk", **extra: Any) -> Any:
    return await asgi.post(
        f"/api/teams/{slug}/runs", json={"message": "please refund order 7", **extra}, headers=bearer(token)
    )


def script_pause(scripted_model: Any, member: str = "cashier") -> None:
    scripted_model.push_tool_calls([delegate(member)])  # the leader delegates
    scripted_model.push_tool_calls([REFUND])  # the member calls a tool that needs approval


# ---- a paused member pauses its team ------------------------------------------------------------


async def test_a_member_that_pauses_pauses_its_team_and_a_continue_goes_on_as_one_run(
    asgi, token, scripted_model, openai_model, cashier
):
    await sync_to_async(make_team)(openai_model, [cashier])
    script_pause(scripted_model)
    r = await start_team(asgi, token)
    assert r.status_code == 200, r.text
    paused = r.json()
    assert paused["status"] == "paused" and "error" not in paused and paused["team_id"] == "desk"
    assert [t["tool_call_id"] for t in paused["tools"]] == ["c1"]
    requirement = paused["requirements"][0]
    assert requirement["member_agent_id"] == "cashier" and requirement["tool_execution"]["tool_name"] == "hitl_refund"
    member_run_id = requirement["member_run_id"]
    assert [(m["member_id"], m["status"]) for m in paused["member_runs"]] == [("cashier", "paused")]
    team_run = await Run.objects.aget(pk=paused["run_id"])
    member_run = await Run.objects.aget(pk=member_run_id)
    assert (team_run.status, member_run.status) == (Run.Status.PAUSED, Run.Status.PAUSED)
    assert member_run.parent_run_id == team_run.pk and team_run.resume_state["paused_child"] == member_run_id
    assert team_run.expires_at == member_run.expires_at
    assert team_run.events[-1]["event"] == "TeamRunPaused" and CALLS == []
    assert team_run.input_tokens > 0  # the leader's call before the pause is counted
    before = team_run.input_tokens

    # The member's run is not continued alone: the team's is.
    r = await continue_(asgi, token, member_run_id, [{"tool_call_id": "c1", "decision": "approve"}])
    assert (r.status_code, r.json()["code"]) == (409, "run_not_paused")
    assert paused["run_id"] in r.json()["detail"]

    scripted_model.push_text("Refunded 5.")  # the member, after its tool
    scripted_model.push_text("Order 7 is refunded.")  # the leader
    r = await continue_(asgi, token, paused["run_id"], [{"tool_call_id": "c1", "decision": "approve"}])
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], done["content"], done["run_id"]) == ("completed", "Order 7 is refunded.", paused["run_id"])
    assert [(m["member_id"], m["status"], m["content"]) for m in done["member_runs"]] == [
        ("cashier", "completed", "Refunded 5.")
    ]
    assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]
    # The member heard its tool's result, the leader its member's answer.
    assert scripted_model.requests[-2]["messages"][-1]["content"] == "refunded 5 on order 7"
    assert scripted_model.requests[-1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "d1",
        "content": "Refunded 5.",
    }
    team_run = await Run.objects.aget(pk=paused["run_id"])
    member_run = await Run.objects.aget(pk=member_run_id)
    assert (team_run.status, member_run.status) == (Run.Status.COMPLETED, Run.Status.COMPLETED)
    assert team_run.input_tokens > before  # the tokens before the pause kept, the leader's next call added
    assert done["metrics"]["input_tokens"] == team_run.input_tokens
    approval = await ToolApproval.objects.aget(run_id=member_run_id)
    assert (approval.status, approval.channel) == ("approved", "api")

    # One stream through the pause, replayed from the database.
    r = await asgi.get(f"/api/runs/{paused['run_id']}/events", headers=bearer(token))
    names = [name for name, _ in parse_sse(r.text)]
    assert names[0] == "TeamRunStarted" and names[-1] == "TeamRunCompleted"
    assert "TeamRunPaused" in names and names.index("TeamRunContinued") == names.index("TeamRunPaused") + 1
    assert names[names.index("TeamRunContinued") :] == [
        "TeamRunContinued",
        "RunContinued",
        "ToolCallStarted",
        "ToolCallCompleted",
        "ModelRequestStarted",  # the member's model call after its tool
        "ModelRequestCompleted",
        "RunCompleted",
        "TeamToolCallCompleted",
        "TeamModelRequestStarted",  # the leader's
        "TeamModelRequestCompleted",
        "TeamRunCompleted",
    ]  # not streamed: no content deltas

    # A second continue: 409; another user's: 404.
    r = await continue_(asgi, token, paused["run_id"], [{"tool_call_id": "c1", "decision": "approve"}])
    assert (r.status_code, r.json()["code"], r.json()["status"]) == (409, "run_not_paused", "completed")


async def test_a_streamed_team_ends_with_team_run_paused_and_its_continue_streams(
    asgi, token, scripted_model, openai_model, cashier
):
    await sync_to_async(make_team)(openai_model, [cashier])
    script_pause(scripted_model)
    r = await start_team(asgi, token, stream=True)
    events = parse_sse(r.text)
    assert [name for name, _ in events][-2:] == ["RunPaused", "TeamRunPaused"]
    paused = events[-1][1]
    assert paused["tools"][0]["tool_call_id"] == "c1" and paused["expires_at"]
    assert events[-2][1]["parent_run_id"] == paused["run_id"]  # the member's own pause, forwarded

    scripted_model.push_text("Refunded.")
    scripted_model.push_text("Done.")
    r = await continue_(asgi, token, paused["run_id"], [{"tool_call_id": "c1", "decision": "approve"}], stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    assert events[0][0] == "TeamRunContinued" and events[-1][0] == "TeamRunCompleted"
    assert events[0][1]["tools"][0]["confirmed"] is True
    assert events[0][1]["event_index"] == paused["event_index"] + 1
    assert events[-1][1]["content"] == "Done."


async def test_a_rejected_member_call_never_runs_and_the_team_goes_on(
    asgi, token, scripted_model, openai_model, cashier
):
    await sync_to_async(make_team)(openai_model, [cashier])
    script_pause(scripted_model)
    paused = (await start_team(asgi, token)).json()
    scripted_model.push_text("I could not refund it.")
    scripted_model.push_text("The refund was declined.")
    r = await continue_(
        asgi, token, paused["run_id"], [{"tool_call_id": "c1", "decision": "reject", "note": "kept the item"}]
    )
    assert r.status_code == 200 and r.json()["content"] == "The refund was declined."
    assert CALLS == []
    member_request = scripted_model.requests[-2]["messages"]
    assert member_request[-1]["content"] == "Rejected by the user: kept the item"


async def test_a_nested_team_member_pauses_both_teams_and_a_continue_resumes_them_all(
    asgi, token, scripted_model, openai_model, cashier
):
    inner = await sync_to_async(make_team)(openai_model, [cashier], slug="inner")
    await sync_to_async(make_team)(openai_model, [inner], slug="outer")
    scripted_model.push_tool_calls([delegate("inner", "see to the refund", "o1")])  # the outer leader
    scripted_model.push_tool_calls([delegate("cashier")])  # the inner leader
    scripted_model.push_tool_calls([REFUND])  # the cashier
    r = await start_team(asgi, token, slug="outer")
    paused = r.json()
    assert paused["status"] == "paused", r.text
    assert paused["requirements"][0]["member_agent_id"] == "cashier"  # the deepest member that waits
    statuses = [s async for s in Run.objects.filter(session_id=paused["session_id"]).values_list("status", flat=True)]
    assert statuses == ["paused"] * 3

    scripted_model.push_text("Refunded.")  # the cashier
    scripted_model.push_text("Inner: refunded.")  # the inner leader
    scripted_model.push_text("Outer: all done.")  # the outer leader
    r = await continue_(asgi, token, paused["run_id"], [{"tool_call_id": "c1", "decision": "approve"}])
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["content"]) == ("completed", "Outer: all done.")
    assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]
    statuses = [s async for s in Run.objects.filter(session_id=paused["session_id"]).values_list("status", flat=True)]
    assert statuses == ["completed"] * 3


async def test_expiry_of_a_paused_team_ends_the_team_and_its_member_and_never_runs_the_tool(
    asgi, token, scripted_model, openai_model, cashier
):
    from agents_app.tasks import paused_runs_expire_task

    await sync_to_async(make_team)(openai_model, [cashier])
    script_pause(scripted_model)
    paused = (await start_team(asgi, token)).json()
    member_run_id = paused["requirements"][0]["member_run_id"]
    tokens = (await Run.objects.aget(pk=paused["run_id"])).input_tokens
    past = timezone.now() - timedelta(seconds=1)
    await Run.objects.filter(pk__in=[paused["run_id"], member_run_id]).aupdate(expires_at=past)
    requests = len(scripted_model.requests)

    assert await sync_to_async(paused_runs_expire_task)() == 1  # one chain: the team with its member
    team_run = await Run.objects.aget(pk=paused["run_id"])
    member_run = await Run.objects.aget(pk=member_run_id)
    assert (team_run.status, team_run.error_type) == (Run.Status.ERROR, "approval_expired")
    assert (member_run.status, member_run.error_type) == (Run.Status.ERROR, "approval_expired")
    assert team_run.events[-1]["event"] == "TeamRunError" and member_run.events[-1]["event"] == "RunError"
    assert team_run.input_tokens == tokens  # what it counted before the pause is kept
    assert (await ToolApproval.objects.aget(run_id=member_run_id)).status == "expired"
    r = await continue_(asgi, token, paused["run_id"], [{"tool_call_id": "c1", "decision": "approve"}])
    assert (r.status_code, r.json()["code"]) == (409, "run_not_paused")
    assert CALLS == [] and len(scripted_model.requests) == requests


async def test_cancelling_a_paused_team_cancels_its_member(asgi, token, scripted_model, openai_model, cashier):
    await sync_to_async(make_team)(openai_model, [cashier])
    script_pause(scripted_model)
    paused = (await start_team(asgi, token)).json()
    r = await asgi.post(f"/api/runs/{paused['run_id']}/cancel", headers=bearer(token))
    assert r.status_code == 202
    member_run = await Run.objects.aget(pk=paused["requirements"][0]["member_run_id"])
    assert member_run.status == Run.Status.CANCELLED
    assert (await Run.objects.aget(pk=paused["run_id"])).status == Run.Status.CANCELLED
    assert (await ToolApproval.objects.aget(run_id=member_run.pk)).status == "cancelled" and CALLS == []


async def test_another_users_paused_team_run_is_not_found(
    asgi, token, other_token, scripted_model, openai_model, cashier
):
    await sync_to_async(make_team)(openai_model, [cashier])
    script_pause(scripted_model)
    paused = (await start_team(asgi, token)).json()
    r = await continue_(asgi, other_token, paused["run_id"], [{"tool_call_id": "c1", "decision": "approve"}])
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    assert (await Run.objects.aget(pk=paused["run_id"])).status == Run.Status.PAUSED


async def test_members_answering_at_once_still_refuse_such_calls(asgi, token, scripted_model, openai_model, cashier):
    await sync_to_async(make_team)(openai_model, [cashier], mode="collaborate")
    scripted_model.push_tool_calls([REFUND])  # the cashier, answering with the others
    scripted_model.push_text("Could not refund.")
    scripted_model.push_text("No refund was made.")  # the leader
    r = await start_team(asgi, token)
    assert r.json()["status"] == "completed" and CALLS == []


# ---- the websocket ----------------------------------------------------------------------------------


async def test_a_team_paused_over_the_websocket_continues_with_a_continue_frame(
    token, scripted_model, openai_model, cashier
):
    from tests.test_websocket import connect, until

    await sync_to_async(make_team)(openai_model, [cashier])
    comm = await connect("desk", token=token, path="/ws/teams/desk/")
    try:
        script_pause(scripted_model)
        await comm.send_json_to({"type": "run", "message": "please refund order 7"})
        frames = await until(comm, lambda f, _: f["event"] == "TeamRunPaused")
        run_id = frames[-1]["run_id"]
        scripted_model.push_text("Refunded.")
        scripted_model.push_text("All done.")
        await comm.send_json_to(
            {"type": "continue", "run_id": run_id, "decisions": [{"tool_call_id": "c1", "decision": "approve"}]}
        )
        frames = await until(comm, lambda f, _: f["event"] == "TeamRunCompleted")
        assert frames[0]["event"] == "TeamRunContinued" and frames[-1]["content"] == "All done."
        assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]
        assert (await ToolApproval.objects.aget(status="approved")).channel == "websocket"
    finally:
        await comm.disconnect()


# ---- workflows ---------------------------------------------------------------------------------------


async def test_a_workflow_step_that_pauses_pauses_the_workflow_and_the_next_steps_follow_the_continue(
    asgi, token, scripted_model, openai_model, cashier
):
    from tests.test_workflows import make_workflow

    writer = await sync_to_async(AgentFactory)(slug="writer", name="Writer", model=openai_model)
    await sync_to_async(make_workflow)(
        "refunds",
        [{"name": "refund", "kind": "agent", "agent": cashier}, {"name": "write", "kind": "agent", "agent": writer}],
    )
    scripted_model.push_tool_calls([REFUND])
    r = await asgi.post("/api/workflows/refunds/runs", json={"message": "refund order 7"}, headers=bearer(token))
    paused = r.json()
    assert paused["status"] == "paused", r.text
    assert paused["tools"][0]["tool_call_id"] == "c1"
    run = await Run.objects.aget(pk=paused["run_id"])
    assert run.events[-1]["event"] == "WorkflowPaused" and run.events[-1]["paused_step_name"] == "refund"

    scripted_model.push_text("Refunded 5.")  # the cashier step
    scripted_model.push_text("Dear customer, your order 7 was refunded.")  # the writer step
    r = await continue_(asgi, token, paused["run_id"], [{"tool_call_id": "c1", "decision": "approve"}], stream=True)
    events = parse_sse(r.text)
    names = [name for name, _ in events]
    assert names[0] == "StepContinued" and names[-1] == "WorkflowCompleted"
    assert names.count("StepStarted") == 1  # only the next step starts; the paused one goes on
    assert events[-1][1]["content"] == "Dear customer, your order 7 was refunded."
    assert [s["status"] for s in events[-1][1]["step_results"]] == ["completed", "completed"]
    assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]
    assert scripted_model.requests[-1]["messages"][-1]["content"] == "Refunded 5."


# ---- agno's client ------------------------------------------------------------------------------------


async def test_agnos_client_continues_a_paused_team_run(asgi, token, scripted_model, openai_model, cashier):
    import httpx
    from agno.client import AgentOSClient
    from agno.run.base import RunStatus
    from agno.team import RemoteTeam
    from agno.utils.http import aclose_default_clients, set_default_async_client

    from agentos_site.asgi import application

    await sync_to_async(make_team)(openai_model, [cashier])
    headers = bearer(token)
    set_default_async_client(httpx.AsyncClient(transport=httpx.ASGITransport(app=application), timeout=10))
    client = AgentOSClient(base_url="http://testserver/os", timeout=10)
    try:
        script_pause(scripted_model)
        out = await client.run_team("desk", "please refund order 7", headers=headers)
        assert out.status == RunStatus.paused and out.is_paused
        requirement = out.active_requirements[0]
        assert (requirement.tool_execution.tool_name, requirement.member_agent_id) == ("hitl_refund", "cashier")
        requirement.confirm()
        scripted_model.push_text("Refunded.")
        scripted_model.push_text("Order 7 is refunded.")
        done = await client.continue_team_run(
            "desk", out.run_id, requirements=[requirement], session_id=out.session_id, headers=headers
        )
        assert (done.status, done.content, done.run_id) == (RunStatus.completed, "Order 7 is refunded.", out.run_id)
        assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]
        assert (await ToolApproval.objects.aget(status="approved")).channel == "agno"
        with pytest.raises(httpx.HTTPStatusError) as again:
            await client.continue_team_run("desk", out.run_id, requirements=[requirement], headers=headers)
        assert again.value.response.status_code == 409 and again.value.response.json()["code"] == "run_not_paused"

        # RemoteTeam, streamed, with a rejection.
        remote = RemoteTeam(base_url="http://testserver/os", team_id="desk", timeout=10)
        script_pause(scripted_model)
        out = await remote.arun("refund it again", stream=False, auth_token=token)
        assert out.is_paused
        requirement = out.active_requirements[0]
        requirement.reject("not twice")
        scripted_model.push_text("Not refunded.")
        scripted_model.push_text("No second refund.")
        stream = remote.acontinue_run(out.run_id, requirements=[requirement], stream=True, auth_token=token)
        events = [e async for e in stream]
        assert events[0].event == "TeamRunContinued" and events[-1].event == "TeamRunCompleted"
        assert events[-1].content == "No second refund."
    finally:
        await aclose_default_clients()
    assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]


async def test_agnos_client_continues_a_paused_workflow_run(asgi, token, scripted_model, openai_model, cashier):
    """agno's workflow continue: the paused WorkflowRunOutput carries `step_requirements` (the step's
    executor requirements), resolved with RunRequirement's confirm()/reject() and sent back."""
    import httpx
    from agno.client import AgentOSClient
    from agno.run.base import RunStatus
    from agno.run.requirement import RunRequirement
    from agno.utils.http import aclose_default_clients, set_default_async_client
    from agno.workflow.types import StepRequirement

    from agentos_site.asgi import application
    from tests.test_workflows import make_workflow

    writer = await sync_to_async(AgentFactory)(slug="writer", name="Writer", model=openai_model)
    await sync_to_async(make_workflow)(
        "refunds",
        [{"name": "refund", "kind": "agent", "agent": cashier}, {"name": "write", "kind": "agent", "agent": writer}],
    )
    headers = bearer(token)
    set_default_async_client(httpx.AsyncClient(transport=httpx.ASGITransport(app=application), timeout=10))
    client = AgentOSClient(base_url="http://testserver/os", timeout=10)

    def resolved(step_requirements: list[Any], approve: bool) -> list[Any]:
        for step in step_requirements:
            requirements = [RunRequirement.from_dict(r) for r in step.executor_requirements]
            for requirement in (r for r in requirements if not r.is_resolved()):
                requirement.confirm() if approve else requirement.reject("not twice")
            step.executor_requirements = [r.to_dict() for r in requirements]
        return step_requirements

    try:
        scripted_model.push_tool_calls([REFUND])
        out = await client.run_workflow("refunds", "refund order 7", headers=headers)
        assert out.status == RunStatus.paused and out.is_paused and out.paused_step_name == "refund"
        [step] = out.steps_requiring_executor_resolution
        assert (step.executor_id, step.executor_type, step.step_name) == ("cashier", "agent", "refund")
        assert step.executor_requirements[0]["tool_execution"]["tool_name"] == "hitl_refund"
        assert step.executor_run_id == str((await Run.objects.aget(parent_run_id=out.run_id)).pk)

        # agno's other step requirement kinds are agno features we do not have: refused, nothing changes.
        with pytest.raises(httpx.HTTPStatusError) as other:
            await client.continue_workflow_run(
                "refunds", out.run_id, requirements=[{**step.to_dict(), "requires_confirmation": True}], headers=headers
            )
        assert other.value.response.status_code == 400
        assert other.value.response.json()["code"] == "unsupported_step_requirement"
        undecided = [{**step.to_dict()}]
        with pytest.raises(httpx.HTTPStatusError) as missing:
            await client.continue_workflow_run("refunds", out.run_id, requirements=undecided, headers=headers)
        assert (missing.value.response.status_code, missing.value.response.json()["code"]) == (400, "invalid_decision")
        with pytest.raises(httpx.HTTPStatusError) as elsewhere:
            await client.continue_workflow_run(
                "nope", out.run_id, requirements=resolved(out.step_requirements, True), headers=headers
            )
        assert elsewhere.value.response.status_code == 404

        scripted_model.push_text("Refunded 5.")  # the cashier step
        scripted_model.push_text("Dear customer, order 7 was refunded.")  # the writer step
        done = await client.continue_workflow_run(
            "refunds", out.run_id, requirements=resolved(out.step_requirements, True), headers=headers
        )
        assert (done.status, done.content, done.run_id) == (
            RunStatus.completed,
            "Dear customer, order 7 was refunded.",
            out.run_id,
        )
        assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]
        assert (await ToolApproval.objects.aget(status="approved")).channel == "agno"
        with pytest.raises(httpx.HTTPStatusError) as again:
            await client.continue_workflow_run(
                "refunds", out.run_id, requirements=resolved(out.step_requirements, True), headers=headers
            )
        assert again.value.response.status_code == 409 and again.value.response.json()["code"] == "run_not_paused"

        # Streamed: the pause event carries the step requirements; a rejection goes on.
        scripted_model.push_tool_calls([REFUND])
        events = [e async for e in client.run_workflow_stream("refunds", "refund it again", headers=headers)]
        paused = events[-1]
        assert paused.event == "WorkflowPaused" and paused.is_paused
        # agno's event keeps them as dicts (as from agno's own server): parsed with agno's class.
        steps = [StepRequirement.from_dict(d) for d in paused.step_requirements]
        assert steps[0].requires_executor_input and steps[0].needs_executor_resolution
        scripted_model.push_text("Not refunded.")
        scripted_model.push_text("No second refund.")
        stream = client.continue_workflow_run_stream(
            "refunds", paused.run_id, requirements=resolved(steps, False), headers=headers
        )
        events = [e async for e in stream]
        assert events[0].event == "StepContinued" and events[-1].event == "WorkflowCompleted"
        assert events[-1].content == "No second refund."
    finally:
        await aclose_default_clients()
    assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]


# ---- the admin's inbox -------------------------------------------------------------------------------


def test_the_inbox_decide_page_fills_user_input_and_external_results_and_continues_the_team(
    user, scripted_model, openai_model, client
):
    from django.urls import reverse

    from agents_app.runs import run_team
    from tests.factories import UserFactory

    clerk = AgentFactory(slug="clerk", name="Clerk", model=openai_model, tools=["hitl_send_mail", "hitl_lookup"])
    make_team(openai_model, [clerk])
    scripted_model.push_tool_calls([delegate("clerk", "mail and look up")])
    scripted_model.push_tool_calls(
        [
            {"name": "hitl_send_mail", "arguments": {"subject": "Refund"}, "id": "m1"},
            {"name": "hitl_lookup", "arguments": {"query": "order 7"}, "id": "x1"},
        ]
    )
    paused = run_team(team_id="desk", user=user, message="mail and look up")
    assert paused["status"] == "paused"
    mail = ToolApproval.objects.get(tool_call_id="m1")
    approver = UserFactory(username="approver", is_staff=True)
    client.force_login(approver)
    inbox = reverse("admin:sessions_app_toolapproval_changelist")
    assert "Decide…" in client.get(inbox).content.decode()
    page_url = reverse("admin:sessions_app_toolapproval_decide", args=[mail.pk])
    page = client.get(page_url).content.decode()
    assert "hitl_send_mail" in page and "hitl_lookup" in page and "to (str)" in page

    # An external call approved without its result is refused; nothing is decided.
    form = {"call0-decision": "approve", "call0-arg_to": "ada@example.com", "call1-decision": "approve"}
    r = client.post(page_url, form)
    assert r.status_code == 200 and "needs its result" in r.content.decode()
    assert ToolApproval.objects.filter(status="pending").count() == 2

    scripted_model.push_text("Mailed; it shipped.")  # the clerk
    scripted_model.push_text("Done: mailed Ada, order shipped.")  # the leader
    r = client.post(page_url, {**form, "call1-result": "shipped"}, follow=True)
    assert "2 call(s) decided; the run is completed." in r.content.decode()
    assert CALLS == [("hitl_send_mail", {"subject": "Refund", "to": "ada@example.com"})]
    mail.refresh_from_db()
    lookup = ToolApproval.objects.get(tool_call_id="x1")
    assert (mail.status, mail.approved_args, mail.channel, mail.decided_by) == (
        "approved",
        {"subject": "Refund", "to": "ada@example.com"},
        "admin",
        approver,
    )
    assert (lookup.status, lookup.result) == ("approved", "shipped")
    team_run = Run.objects.get(pk=paused["run_id"])
    assert (team_run.status, team_run.output) == ("completed", "Done: mailed Ada, order shipped.")


# ---- what a paused run keeps ----------------------------------------------------------------------------


async def test_a_paused_run_keeps_its_images_once_and_the_continue_sends_them_again(
    asgi, token, scripted_model, openai_model, settings, tmp_path
):
    import json

    from tests.test_images import PNG, b64, data_url

    settings.MEDIA_ROOT = str(tmp_path)
    await sync_to_async(AgentFactory)(slug="shop", name="Shop", model=openai_model, tools=["hitl_refund"])
    scripted_model.push_tool_calls([REFUND])
    body = {
        "message": "refund this one",
        "images": [
            {"data": b64(PNG), "mime_type": "image/png", "detail": "high"},
            {"url": "https://example.com/a.jpg"},
        ],
    }
    paused = (await asgi.post("/api/agents/shop/runs", json=body, headers=bearer(token))).json()
    run = await Run.objects.aget(pk=paused["run_id"])
    stored = json.dumps(run.resume_state)
    assert b64(PNG) not in stored and "example.com/a.jpg" not in stored  # the run's images are stored once
    user_part = [m for m in run.resume_state["messages_sent"] if m["role"] == "user"][-1]["content"]
    assert user_part[1:] == [{"type": "run_image", "position": 0}, {"type": "run_image", "position": 1}]

    scripted_model.push_text("Refunded.")
    r = await continue_(asgi, token, paused["run_id"], [{"tool_call_id": "c1", "decision": "approve"}])
    assert r.json()["status"] == "completed"
    sent = [m for m in scripted_model.requests[-1]["messages"] if m["role"] == "user"][-1]["content"]
    assert sent == [
        {"type": "text", "text": "refund this one"},
        {"type": "image_url", "image_url": {"url": data_url(PNG), "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
    ]


def test_a_continued_run_whose_process_dies_keeps_the_tokens_and_cost_counted_before_its_pause(
    user, scripted_model, openai_model
):
    from decimal import Decimal

    from agents_app import runs
    from agents_app.engine.approvals import Decision
    from agents_app.runtime import _settle_interrupted

    openai_model.input_price = Decimal("1000")
    openai_model.output_price = Decimal("2000")
    openai_model.save()
    cashier = AgentFactory(slug="cashier", name="Cashier", model=openai_model, tools=["hitl_refund"])
    team = make_team(openai_model, [cashier])
    script_pause(scripted_model)
    paused = runs.run_team(team_id=team.slug, user=user, message="please refund order 7")
    member_run_id = paused["requirements"][0]["member_run_id"]
    before = {r.pk: (r.input_tokens, r.output_tokens, r.cost, r.total_cost) for r in Run.objects.all()}
    assert all(tokens > 0 and cost > 0 for tokens, _, cost, _ in before.values())
    # Claimed by a continue (running again), then its process dies before it stores anything.
    runs.continue_prepare(paused["run_id"], user=user, decisions=[Decision("c1", approve=True)], channel="python")
    for run_id in (member_run_id, paused["run_id"]):
        assert _settle_interrupted(run_id) == Run.Status.ERROR
    after = {r.pk: (r.input_tokens, r.output_tokens, r.cost, r.total_cost) for r in Run.objects.all()}
    assert after == before
    assert Run.objects.get(pk=paused["run_id"]).error_type == "interrupted" and CALLS == []


async def test_a_routed_member_that_pauses_answers_for_the_team_after_the_continue(
    asgi, token, scripted_model, openai_model, cashier
):
    await sync_to_async(make_team)(openai_model, [cashier], mode="route")
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "cashier"}, "id": "r1"}])
    scripted_model.push_tool_calls([REFUND])
    paused = (await start_team(asgi, token)).json()
    assert paused["status"] == "paused"
    scripted_model.push_text("Refunded 5 on order 7.")
    r = await continue_(asgi, token, paused["run_id"], [{"tool_call_id": "c1", "decision": "approve"}])
    assert (r.json()["status"], r.json()["content"]) == ("completed", "Refunded 5 on order 7.")
    assert len(CALLS) == 1


async def test_a_workflows_team_step_whose_member_pauses_pauses_the_workflow(
    asgi, token, scripted_model, openai_model, cashier
):
    from tests.test_workflows import make_workflow

    team = await sync_to_async(make_team)(openai_model, [cashier])
    await sync_to_async(make_workflow)("flow", [{"name": "desk", "kind": "team", "team": team}])
    script_pause(scripted_model)
    r = await asgi.post("/api/workflows/flow/runs", json={"message": "refund order 7"}, headers=bearer(token))
    paused = r.json()
    assert paused["status"] == "paused", r.text
    statuses = [s async for s in Run.objects.filter(session_id=paused["session_id"]).values_list("status", flat=True)]
    assert statuses == ["paused"] * 3  # the workflow, its team step, the team's member
    scripted_model.push_text("Refunded.")
    scripted_model.push_text("The desk refunded it.")
    r = await continue_(asgi, token, paused["run_id"], [{"tool_call_id": "c1", "decision": "approve"}])
    assert (r.json()["status"], r.json()["content"]) == ("completed", "The desk refunded it.")
    assert len(CALLS) == 1
