"""Human in the loop (docs/human-in-the-loop.md): runs that pause for a person and continue, through
the real stack (ASGI HTTP and websocket, the `openai` client against the scripted model server)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from agents_app.models import Agent, AgentToolRequirement
from agents_app.tools.registry import tool, tool_registry
from sessions_app.models import Message, Run, ToolApproval
from tests.conftest import BOOKKEEPING_EVENTS, bearer, parse_sse, without_bookkeeping

pytestmark = pytest.mark.django_db(transaction=True)

# What the tools below were called with, in order (a tool that never runs leaves nothing here).
CALLS: list[tuple[str, dict[str, Any]]] = []


@tool(name="hitl_refund", requires_confirmation=True)
def hitl_refund(order_id: int, amount: float) -> str:
    """Refund an order.

    Args:
        order_id: The order.
        amount: How much to give back.
    """
    CALLS.append(("hitl_refund", {"order_id": order_id, "amount": amount}))
    return f"refunded {amount:g} on order {order_id}"


@tool(name="hitl_send_mail", requires_user_input=["to"])
def hitl_send_mail(subject: str, to: str) -> str:
    """Send an email.

    Args:
        subject: The subject line.
        to: The recipient's address.
    """
    CALLS.append(("hitl_send_mail", {"subject": subject, "to": to}))
    return f"sent {subject!r} to {to}"


@tool(name="hitl_lookup", external_execution=True)
def hitl_lookup(query: str) -> str:
    """Look something up in the customer's own system (the client runs this)."""
    CALLS.append(("hitl_lookup", {"query": query}))
    return "never called on the server"


@pytest.fixture(autouse=True)
def _no_calls() -> Any:
    CALLS.clear()
    yield
    CALLS.clear()


@pytest.fixture
def shop(openai_model: Any) -> Agent:
    return Agent.objects.create(
        slug="shop",
        name="Shop",
        model=openai_model,
        instructions="You run a shop.",
        tools=["hitl_refund", "hitl_send_mail", "hitl_lookup", "calculator"],
    )


REFUND = {"name": "hitl_refund", "arguments": {"order_id": 7, "amount": 5}, "id": "c1"}


async def start(asgi: Any, token: str, message: str = "refund order 7", **extra: Any) -> Any:
    return await asgi.post("/api/agents/shop/runs", json={"message": message, **extra}, headers=bearer(token))


async def continue_(asgi: Any, token: str, run_id: str, decisions: list[dict[str, Any]], **extra: Any) -> Any:
    return await asgi.post(
        f"/api/runs/{run_id}/continue", json={"decisions": decisions, **extra}, headers=bearer(token)
    )


def tool_messages(request: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["tool_call_id"], m["content"]) for m in request["messages"] if m["role"] == "tool"]


# ---- tool requirements ------------------------------------------------------------------------------


def test_tool_requirements_come_from_the_decorator_and_hide_user_input_fields():
    refund, mail, lookup = (tool_registry.get(n) for n in ("hitl_refund", "hitl_send_mail", "hitl_lookup"))
    assert (refund.requires_confirmation, refund.requires_user_input, refund.external_execution) == (True, False, False)
    assert (mail.requirement.kind, mail.requirement.user_input_fields) == ("user_input", ("to",))
    assert lookup.requirement.kind == "external_execution"
    # The model never sees the argument the user fills in; the validator still needs it.
    assert list(mail.parameters["properties"]) == ["subject"] and mail.parameters["required"] == ["subject"]
    assert mail.argument_names() == ["subject", "to"]
    assert tool_registry.get("calculator").requirement is None


def test_tool_requirement_options_are_checked_at_registration():
    def both(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="only one of requires_confirmation"):
        tool_registry.register(both, name="hitl_bad", requires_confirmation=True, external_execution=True)
    with pytest.raises(ValueError, match="no argument nope"):
        tool_registry.register(both, name="hitl_bad", requires_user_input=["nope"])
    assert tool_registry.get("hitl_bad") is None


# ---- pausing and continuing over REST ---------------------------------------------------------------


async def test_a_run_pauses_runs_the_free_calls_and_continues_after_approval(asgi, shop, token, scripted_model, user):
    scripted_model.push_tool_calls([REFUND, {"name": "calculator", "arguments": {"expression": "2+3"}, "id": "c2"}])
    r = await start(asgi, token)
    assert r.status_code == 200, r.text
    paused = r.json()
    assert paused["status"] == "paused" and "error" not in paused and paused["content"] is None
    assert [t["tool_call_id"] for t in paused["tools"]] == ["c1"]
    tool = paused["tools"][0]
    assert (tool["tool_name"], tool["tool_args"], tool["requires_confirmation"], tool["confirmed"]) == (
        "hitl_refund",
        {"order_id": 7, "amount": 5},
        True,
        None,
    )
    assert [q["tool_execution"]["tool_call_id"] for q in paused["requirements"]] == ["c1"]
    assert paused["requirements"][0]["id"] == tool["approval_id"]
    assert CALLS == []  # the refund waits; the calculator ran
    run = await Run.objects.aget(pk=paused["run_id"])
    assert run.status == Run.Status.PAUSED and run.resume_state["tool_calls_used"] == 2
    assert run.expires_at is not None and await Message.objects.filter(run=run).acount() == 0
    assert without_bookkeeping([e["event"] for e in run.events]) == [
        "RunStarted",
        "ToolCallStarted",
        "ToolCallCompleted",
        "RunPaused",
    ]
    approval = await ToolApproval.objects.aget(run=run)
    assert (approval.tool_call_id, approval.status, approval.requirement) == ("c1", "pending", "confirmation")

    scripted_model.push_text("Refunded 5 on order 7.")
    r = await continue_(asgi, token, paused["run_id"], [{"tool_call_id": "c1", "decision": "approve"}])
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["run_id"], done["status"], done["content"]) == (
        paused["run_id"],
        "completed",
        "Refunded 5 on order 7.",
    )
    assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]
    # The model got both results, then answered.
    assert tool_messages(scripted_model.requests[-1]) == [("c2", "5"), ("c1", "refunded 5 on order 7")]
    run = await Run.objects.aget(pk=paused["run_id"])
    assert (run.status, run.output, run.expires_at) == (Run.Status.COMPLETED, "Refunded 5 on order 7.", None)
    assert run.input_tokens == done["metrics"]["input_tokens"] > 0
    names = [e["event"] for e in run.events]
    assert without_bookkeeping(names) == [
        "RunStarted",
        "ToolCallStarted",
        "ToolCallCompleted",
        "RunPaused",
        "RunContinued",
        "ToolCallStarted",
        "ToolCallCompleted",
        "RunCompleted",
    ]
    assert [e["event_index"] for e in run.events] == list(range(len(run.events)))
    assert next(e for e in run.events if e["event"] == "RunPaused")["continued"] is True
    roles = [m async for m in Message.objects.filter(run=run).order_by("position").values_list("role", "tool_call_id")]
    assert roles == [("user", ""), ("assistant", ""), ("tool", "c2"), ("tool", "c1"), ("assistant", "")]
    approval = await ToolApproval.objects.aget(run=run)
    assert (approval.status, approval.decided_by_id, approval.channel, approval.approved_args) == (
        "approved",
        user.pk,
        "api",
        {"order_id": 7, "amount": 5},
    )


async def test_a_streamed_run_ends_with_run_paused_and_a_streamed_continue_goes_on(asgi, shop, token, scripted_model):
    scripted_model.push_tool_calls([REFUND])
    r = await start(asgi, token, stream=True)
    frames = parse_sse(r.text)
    assert without_bookkeeping([name for name, _ in frames]) == ["RunStarted", "RunPaused"]
    paused = frames[-1][1]
    assert paused["tools"][0]["tool_call_id"] == "c1" and paused["event_index"] == len(frames) - 1
    run_id = paused["run_id"]

    scripted_model.push_text("Done.")
    r = await continue_(asgi, token, run_id, [{"tool_call_id": "c1", "decision": "approve"}], stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = parse_sse(r.text)
    assert without_bookkeeping([name for name, _ in frames]) == [
        "RunContinued",
        "ToolCallStarted",
        "ToolCallCompleted",
        "RunContent",
        "RunCompleted",
    ]
    # Numbered after the paused stream's RunStarted, ModelRequestStarted/Completed and RunPaused.
    assert [data["event_index"] for _, data in frames] == list(range(4, 4 + len(frames)))
    assert frames[0][1]["tools"][0]["confirmed"] is True
    # A client resuming the run from the start gets one stream, through the old pause.
    r = await asgi.get(f"/api/runs/{run_id}/events?after_event_index=-1", headers=bearer(token))
    assert without_bookkeeping([name for name, _ in parse_sse(r.text)]) == [
        "RunStarted",
        "RunPaused",
        "RunContinued",
        "ToolCallStarted",
        "ToolCallCompleted",
        "RunContent",
        "RunCompleted",
    ]


async def test_a_rejected_call_never_runs_and_the_model_hears_why(asgi, shop, token, scripted_model):
    scripted_model.push_tool_calls([REFUND])
    run_id = (await start(asgi, token)).json()["run_id"]
    scripted_model.push_text("I did not refund it.")
    r = await continue_(
        asgi, token, run_id, [{"tool_call_id": "c1", "decision": "reject", "note": "the customer kept the item"}]
    )
    assert r.status_code == 200 and r.json()["content"] == "I did not refund it."
    assert CALLS == []
    assert tool_messages(scripted_model.requests[-1]) == [("c1", "Rejected by the user: the customer kept the item")]
    approval = await ToolApproval.objects.aget(run_id=run_id)
    assert (approval.status, approval.note, approval.approved_args) == (
        "rejected",
        "the customer kept the item",
        None,
    )
    run = await Run.objects.aget(pk=run_id)
    error = next(e for e in run.events if e["event"] == "ToolCallError")
    assert error["error"] == "Rejected by the user: the customer kept the item" and error["tool"]["confirmed"] is False


async def test_user_input_fills_the_hidden_argument_and_edits_reach_the_tool(asgi, shop, token, scripted_model):
    scripted_model.push_tool_calls([{"name": "hitl_send_mail", "arguments": {"subject": "Your refund"}, "id": "m1"}])
    paused = (await start(asgi, token, message="mail the customer")).json()
    tool = paused["tools"][0]
    assert tool["requires_user_input"] is True and tool["requires_confirmation"] is None
    assert tool["user_input_schema"] == [
        {"name": "subject", "field_type": "str", "description": "The subject line.", "value": "Your refund"},
        {"name": "to", "field_type": "str", "description": "The recipient's address.", "value": None},
    ]
    assert "to" not in json.dumps(scripted_model.requests[-1]["tools"][1]["function"]["parameters"]["properties"])
    # The hidden field must be filled.
    r = await continue_(asgi, token, paused["run_id"], [{"tool_call_id": "m1", "decision": "approve"}])
    assert r.status_code == 400 and r.json()["code"] == "invalid_decision"
    assert r.json()["decisions"] == ["Tool call 'm1' needs a value for: to."]
    assert (await Run.objects.aget(pk=paused["run_id"])).status == Run.Status.PAUSED  # nothing changed

    scripted_model.push_text("Mailed.")
    arguments = {"to": "ada@example.com", "subject": "About your refund"}
    r = await continue_(
        asgi, token, paused["run_id"], [{"tool_call_id": "m1", "decision": "approve", "arguments": arguments}]
    )
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert CALLS == [("hitl_send_mail", {"subject": "About your refund", "to": "ada@example.com"})]
    approval = await ToolApproval.objects.aget(run_id=paused["run_id"])
    assert approval.approved_args == arguments and approval.tool_args == {"subject": "Your refund"}


async def test_a_hidden_field_the_model_fills_anyway_is_still_the_users_to_fill(asgi, shop, token, scripted_model):
    # A model may send an argument its schema does not show (a prompt injection, a model that
    # ignores schemas): the user-input field stays the user's; approving without it is refused.
    call = {"name": "hitl_send_mail", "arguments": {"subject": "Hi", "to": "evil@example.com"}, "id": "m1"}
    scripted_model.push_tool_calls([call])
    paused = (await start(asgi, token, message="mail the customer")).json()
    tool = paused["tools"][0]
    assert tool["tool_args"] == {"subject": "Hi"}
    assert [f["value"] for f in tool["user_input_schema"]] == ["Hi", None]
    r = await continue_(asgi, token, paused["run_id"], [{"tool_call_id": "m1", "decision": "approve"}])
    assert (r.status_code, r.json()["code"]) == (400, "invalid_decision")
    assert CALLS == []
    approval = await ToolApproval.objects.aget(run_id=paused["run_id"])
    assert approval.tool_args == {"subject": "Hi"} and approval.status == "pending"


async def test_two_calls_under_one_id_wait_apart_and_each_needs_its_own_decision(asgi, shop, token, scripted_model):
    # Some providers repeat a tool call id. A decision names its call by id: were both to wait as
    # "c1", approving the first would run the second (a bigger refund) unseen. The repeated id gets a
    # suffix, for the person and for the model alike.
    scripted_model.push_tool_calls(
        [
            {"name": "hitl_refund", "arguments": {"order_id": 7, "amount": 5}, "id": "c1"},
            {"name": "hitl_refund", "arguments": {"order_id": 8, "amount": 500}, "id": "c1"},
        ]
    )
    paused = (await start(asgi, token)).json()
    assert [(t["tool_call_id"], t["tool_args"]["amount"]) for t in paused["tools"]] == [("c1", 5), ("c1_2", 500)]
    r = await continue_(asgi, token, paused["run_id"], [{"tool_call_id": "c1", "decision": "approve"}])
    assert (r.status_code, r.json()["code"]) == (400, "invalid_decision") and CALLS == []

    scripted_model.push_text("Refunded order 7 only.")
    decisions = [
        {"tool_call_id": "c1", "decision": "approve"},
        {"tool_call_id": "c1_2", "decision": "reject", "note": "too much"},
    ]
    r = await continue_(asgi, token, paused["run_id"], decisions)
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]
    told = scripted_model.requests[-1]["messages"]
    assert [c["id"] for c in told[-3]["tool_calls"]] == ["c1", "c1_2"]  # the model hears the ids it is told
    assert sorted((m["tool_call_id"], m["content"]) for m in told[-2:]) == [
        ("c1", "refunded 5 on order 7"),
        ("c1_2", "Rejected by the user: too much"),
    ]


async def test_an_external_result_reaches_the_model_and_the_tool_never_runs_here(asgi, shop, token, scripted_model):
    scripted_model.push_tool_calls([{"name": "hitl_lookup", "arguments": {"query": "order 7"}, "id": "x1"}])
    paused = (await start(asgi, token, message="where is order 7?")).json()
    assert paused["tools"][0]["external_execution_required"] is True
    r = await continue_(asgi, token, paused["run_id"], [{"tool_call_id": "x1", "decision": "approve"}])
    assert r.status_code == 400 and r.json()["code"] == "invalid_decision"
    scripted_model.push_text("It shipped yesterday.")
    result = {"status": "shipped", "when": "yesterday"}
    r = await continue_(
        asgi, token, paused["run_id"], [{"tool_call_id": "x1", "decision": "approve", "result": result}]
    )
    assert r.status_code == 200 and r.json()["content"] == "It shipped yesterday."
    assert CALLS == []
    assert tool_messages(scripted_model.requests[-1]) == [("x1", json.dumps(result, separators=(",", ":")))]
    approval = await ToolApproval.objects.aget(run_id=paused["run_id"])
    assert (approval.status, approval.result) == ("approved", '{"status":"shipped","when":"yesterday"}')


async def test_continue_errors_are_coded_and_change_nothing(asgi, shop, token, other_token, scripted_model):
    scripted_model.push_tool_calls([REFUND])
    run_id = (await start(asgi, token)).json()["run_id"]
    approve = [{"tool_call_id": "c1", "decision": "approve"}]

    r = await continue_(asgi, other_token, run_id, approve)
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = await continue_(asgi, token, run_id, [*approve, {"tool_call_id": "c9", "decision": "approve"}])
    assert (r.status_code, r.json()["code"]) == (400, "unknown_tool_call")
    r = await continue_(asgi, token, run_id, [])
    assert (r.status_code, r.json()["code"]) == (400, "invalid_decision")
    r = await continue_(asgi, token, run_id, [{"tool_call_id": "c1", "decision": "maybe"}])
    assert (r.status_code, r.json()["code"]) == (400, "invalid")
    r = await continue_(
        asgi, token, run_id, [{"tool_call_id": "c1", "decision": "approve", "arguments": {"amount": "lots"}}]
    )
    assert (r.status_code, r.json()["code"]) == (400, "invalid_decision")
    assert (await Run.objects.aget(pk=run_id)).status == Run.Status.PAUSED
    assert await ToolApproval.objects.filter(run_id=run_id, status="pending").acount() == 1

    scripted_model.push_text("Done.")
    assert (await continue_(asgi, token, run_id, approve)).status_code == 200
    r = await continue_(asgi, token, run_id, approve)  # a double continue
    assert (r.status_code, r.json()["code"], r.json()["status"]) == (409, "run_not_paused", "completed")
    assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]


# ---- expiry, cancel, and new messages in a paused session -----------------------------------------


async def _overdue(run_id: str) -> None:
    await Run.objects.filter(pk=run_id).aupdate(expires_at=timezone.now() - timedelta(seconds=1))


async def test_the_beat_task_expires_overdue_runs_and_their_tools_never_run(asgi, shop, token, scripted_model):
    from agents_app.tasks import paused_runs_expire_task

    scripted_model.push_tool_calls([REFUND])
    overdue = (await start(asgi, token)).json()["run_id"]
    scripted_model.push_tool_calls([REFUND])
    waiting = (await start(asgi, token, message="another")).json()["run_id"]
    await _overdue(overdue)
    requests = len(scripted_model.requests)

    assert await sync_to_async(paused_runs_expire_task)() == 1
    assert await sync_to_async(paused_runs_expire_task)() == 0  # idempotent
    run = await Run.objects.aget(pk=overdue)
    assert (run.status, run.error_type) == (Run.Status.ERROR, "approval_expired")
    assert run.error == "Nobody decided on its tool calls in time; they were not run."
    assert [(e["event"], e["event_index"]) for e in run.events[-2:]] == [("RunPaused", 3), ("RunError", 4)]
    assert run.events[-2]["continued"] is True and run.input_tokens > 0
    approval = await ToolApproval.objects.aget(run_id=overdue)
    assert (approval.status, approval.channel, approval.decided_by_id) == ("expired", "expiry", None)
    assert (await Run.objects.aget(pk=waiting)).status == Run.Status.PAUSED
    # Nobody can approve it any more; the tool never ran and the model was never asked again.
    r = await continue_(asgi, token, overdue, [{"tool_call_id": "c1", "decision": "approve"}])
    assert (r.status_code, r.json()["code"], r.json()["status"]) == (409, "run_not_paused", "error")
    assert CALLS == [] and len(scripted_model.requests) == requests
    r = await asgi.get(f"/api/runs/{overdue}/events", headers=bearer(token))
    assert without_bookkeeping([name for name, _ in parse_sse(r.text)]) == ["RunStarted", "RunPaused", "RunError"]


async def test_with_no_beat_the_embedded_worker_expires_an_overdue_run_on_its_own(
    asgi, shop, token, scripted_model, settings
):
    """Development (no broker server, no beat): a run that pauses starts the embedded worker, whose
    sweep expires it when overdue; nobody has to continue it or send another message first."""
    import asyncio

    from agents_app import embedded_worker

    settings.AGENTOS = {**settings.AGENTOS, "HOOKS_SWEEP_INTERVAL_SECONDS": 0.2}
    embedded_worker.stop_embedded_worker()
    scripted_model.push_tool_calls([REFUND])
    run_id = (await start(asgi, token)).json()["run_id"]
    await _overdue(run_id)
    for _ in range(100):
        run = await Run.objects.aget(pk=run_id)
        if run.status != Run.Status.PAUSED:
            break
        await asyncio.sleep(0.1)
    assert (run.status, run.error_type) == (Run.Status.ERROR, "approval_expired")
    assert embedded_worker._thread is not None and embedded_worker._thread.is_alive()
    assert CALLS == []


async def test_a_continue_that_loses_the_race_to_another_is_a_409_not_a_400(
    asgi, shop, token, scripted_model, monkeypatch
):
    """Two continues at once (two processes): the loser may read the run as paused, then find its
    calls already claimed by the winner; that is the double continue's 409, not an unknown call."""
    from agents_app.engine import approvals

    scripted_model.push_tool_calls([REFUND])
    run_id = (await start(asgi, token)).json()["run_id"]
    real_chain = approvals.paused_chain

    def chain_after_the_other_claimed(run: Any) -> Any:
        # What the winner committed meanwhile: its calls decided, the run running again.
        ToolApproval.objects.filter(run_id=run.pk).update(status="approved")
        Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
        return real_chain(run)

    monkeypatch.setattr(approvals, "paused_chain", chain_after_the_other_claimed)
    r = await continue_(asgi, token, run_id, [{"tool_call_id": "c1", "decision": "approve"}])
    assert (r.status_code, r.json()["code"]) == (409, "run_not_paused")
    assert CALLS == []


async def test_an_overdue_run_is_expired_by_the_continue_that_meets_it(asgi, shop, token, scripted_model):
    scripted_model.push_tool_calls([REFUND])
    run_id = (await start(asgi, token)).json()["run_id"]
    await _overdue(run_id)
    r = await continue_(asgi, token, run_id, [{"tool_call_id": "c1", "decision": "approve"}])
    assert (r.status_code, r.json()["code"]) == (409, "run_not_paused")
    assert CALLS == [] and (await ToolApproval.objects.aget(run_id=run_id)).status == "expired"


async def test_a_paused_session_rejects_new_messages_or_expires_the_run_per_agent(asgi, shop, token, scripted_model):
    scripted_model.push_tool_calls([REFUND])
    paused = (await start(asgi, token)).json()
    r = await start(asgi, token, message="hello?", session_id=paused["session_id"])
    assert (r.status_code, r.json()["code"], r.json()["paused_run_ids"]) == (409, "session_paused", [paused["run_id"]])

    shop.paused_session_policy = "expire"
    await shop.asave()
    scripted_model.push_text("Hello!")
    r = await start(asgi, token, message="hello?", session_id=paused["session_id"])
    assert r.status_code == 200 and r.json()["content"] == "Hello!"
    run = await Run.objects.aget(pk=paused["run_id"])
    assert (run.status, run.error_type) == (Run.Status.ERROR, "approval_expired")
    assert (await ToolApproval.objects.aget(run_id=run.pk)).channel == "new_message"
    assert CALLS == []


async def test_a_paused_run_is_cancelled_by_its_user_only(asgi, shop, token, other_token, scripted_model):
    scripted_model.push_tool_calls([REFUND])
    run_id = (await start(asgi, token)).json()["run_id"]
    r = await asgi.post(f"/api/runs/{run_id}/cancel", headers=bearer(other_token))
    assert r.status_code == 404
    r = await asgi.post(f"/api/runs/{run_id}/cancel", headers=bearer(token))
    assert (r.status_code, r.json()["status"]) == (202, "cancelled")
    run = await Run.objects.aget(pk=run_id)
    assert (run.status, run.events[-1]["event"]) == (Run.Status.CANCELLED, "RunCancelled")
    assert (await ToolApproval.objects.aget(run_id=run_id)).status == "cancelled" and CALLS == []


# ---- the websocket -----------------------------------------------------------------------------------


async def test_a_websocket_run_pauses_and_a_continue_frame_goes_on(shop, token, scripted_model):
    from tests.test_websocket import connect, until

    comm = await connect("shop", token=token)
    try:
        scripted_model.push_tool_calls([REFUND])
        await comm.send_json_to({"type": "run", "message": "refund order 7"})
        frames = await until(comm, lambda f, _: f["event"] == "RunPaused")
        assert without_bookkeeping([f["event"] for f in frames]) == ["RunStarted", "RunPaused"]
        run_id = frames[-1]["run_id"]

        await comm.send_json_to({"type": "continue", "run_id": run_id, "decisions": [{"tool_call_id": "c1"}], "id": 1})
        error = await comm.receive_json_from(timeout=5)
        assert (error["event"], error["code"], error["id"]) == ("Error", "invalid_input", 1)
        assert error["detail"] == "Invalid decisions: decisions: 0: decision: This field is required."
        await comm.send_json_to(
            {"type": "continue", "run_id": run_id, "decisions": [{"tool_call_id": "zz", "decision": "approve"}]}
        )
        error = await comm.receive_json_from(timeout=5)
        assert (error["event"], error["code"], error["run_id"]) == ("Error", "unknown_tool_call", run_id)

        scripted_model.push_text("Refunded.")
        await comm.send_json_to(
            {"type": "continue", "run_id": run_id, "decisions": [{"tool_call_id": "c1", "decision": "approve"}]}
        )
        frames = await until(comm, lambda f, _: f["event"] == "RunCompleted")
        assert without_bookkeeping([f["event"] for f in frames]) == [
            "RunContinued",
            "ToolCallStarted",
            "ToolCallCompleted",
            "RunContent",
            "RunCompleted",
        ]
        first = frames[0]["event_index"]  # after the paused stream's RunStarted, model request, RunPaused
        assert first == 4 and [f["event_index"] for f in frames] == list(range(first, first + len(frames)))
        assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]
        approval = await ToolApproval.objects.aget(run_id=run_id)
        assert approval.channel == "websocket"
        # A resume from before the pause goes on past it (marked `continued`), as SSE does.
        await comm.send_json_to({"type": "resume", "run_id": run_id, "after_event_index": 0})
        replay = await until(comm, lambda f, _: f["event"] == "RunCompleted")
        # (The model-request events, bookkeeping, are left out: the pause is the first of the rest.)
        kept = [f for f in replay if f["event"] not in BOOKKEEPING_EVENTS]
        assert [(f["event"], f["event_index"]) for f in kept] == [
            ("RunPaused", 3),
            *[(f["event"], f["event_index"]) for f in frames if f["event"] not in BOOKKEEPING_EVENTS],
        ]
        assert [f["event_index"] for f in replay] == list(range(1, replay[-1]["event_index"] + 1))
        assert kept[0]["continued"] is True
        await comm.send_json_to(
            {"type": "continue", "run_id": run_id, "decisions": [{"tool_call_id": "c1", "decision": "approve"}]}
        )
        error = await comm.receive_json_from(timeout=5)
        assert (error["event"], error["code"]) == ("Error", "run_not_paused")
    finally:
        await comm.disconnect()


# ---- agno's client, against /os ------------------------------------------------------------------------


@pytest.fixture
async def agno_client(asgi: Any) -> Any:
    """agno's own client, its HTTP going to our ASGI application in-process (agno's global httpx
    client, swapped for one on an ASGI transport)."""
    import httpx
    from agno.client import AgentOSClient
    from agno.utils.http import aclose_default_clients, set_default_async_client

    from agentos_site.asgi import application

    set_default_async_client(httpx.AsyncClient(transport=httpx.ASGITransport(app=application), timeout=10))
    yield AgentOSClient(base_url="http://testserver/os", timeout=10)
    await aclose_default_clients()


async def test_agnos_client_pauses_and_continues_a_run(agno_client, shop, token, scripted_model):
    from agno.run.base import RunStatus

    headers = bearer(token)
    scripted_model.push_tool_calls([REFUND])
    out = await agno_client.run_agent("shop", "refund order 7", headers=headers)
    assert out.status == RunStatus.paused and out.is_paused
    assert [(r.tool_execution.tool_name, r.needs_confirmation) for r in out.active_requirements] == [
        ("hitl_refund", True)
    ]
    assert [t.tool_call_id for t in out.tools] == ["c1"]
    requirement = out.active_requirements[0]
    requirement.confirm()
    scripted_model.push_text("Refunded.")
    done = await agno_client.continue_agent_run(
        "shop", out.run_id, tools=[requirement.tool_execution], session_id=out.session_id, headers=headers
    )
    assert (done.status, done.content, done.run_id) == (RunStatus.completed, "Refunded.", out.run_id)
    assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]
    assert (await ToolApproval.objects.aget(run_id=out.run_id)).channel == "agno"

    # Streamed, with a rejection; a second continue of the same run is refused.
    scripted_model.push_tool_calls([REFUND])
    events = [e async for e in agno_client.run_agent_stream("shop", "refund again", headers=headers)]
    assert without_bookkeeping([e.event for e in events]) == ["RunStarted", "RunPaused"]
    paused = events[-1]
    assert paused.is_paused and paused.tools[0].requires_confirmation is True
    requirement = paused.requirements[0]
    requirement.reject("not twice")
    scripted_model.push_text("I will not refund it twice.")
    stream = agno_client.continue_agent_run_stream(
        "shop", paused.run_id, tools=[requirement.tool_execution], session_id=paused.session_id, headers=headers
    )
    continued = [e async for e in stream]
    names = [e.event for e in continued]
    assert names[:2] == ["RunContinued", "ToolCallError"] and names[-1] == "RunCompleted"
    assert (
        set(without_bookkeeping(names[2:-1])) == {"RunContent"}
        and continued[-1].content == "I will not refund it twice."
    )
    first = continued[0].event_index
    assert first == 4 and [e.event_index for e in continued] == list(range(first, first + len(continued)))
    assert tool_messages(scripted_model.requests[-1]) == [("c1", "Rejected by the user: not twice")]
    import httpx

    with pytest.raises(httpx.HTTPStatusError) as again:
        await agno_client.continue_agent_run("shop", paused.run_id, tools=[requirement.tool_execution], headers=headers)
    assert again.value.response.status_code == 409 and again.value.response.json()["code"] == "run_not_paused"
    assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]


async def test_agnos_client_may_send_back_the_whole_tools_list_with_the_calls_that_ran(
    agno_client, shop, token, scripted_model
):
    # agno's idiom: continue with the paused run's `tools`, which hold the calls that ran before the
    # pause too; agno passes over those, so do we. A waiting call left undecided is still refused.
    headers = bearer(token)
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "2+3"}, "id": "k0"}, REFUND])
    out = await agno_client.run_agent("shop", "refund order 7 and add 2 and 3", headers=headers)
    assert [(t.tool_call_id, t.result) for t in out.tools] == [("k0", "5"), ("c1", None)]
    import httpx

    with pytest.raises(httpx.HTTPStatusError) as refused:  # only the call that ran: no decision
        await agno_client.continue_agent_run("shop", out.run_id, tools=out.tools[:1], headers=headers)
    assert refused.value.response.status_code == 400
    assert refused.value.response.json()["code"] == "invalid_decision"
    for execution in out.tools:
        if execution.requires_confirmation:
            execution.confirmed = True
    scripted_model.push_text("Refunded, and 2+3 is 5.")
    done = await agno_client.continue_agent_run(
        "shop", out.run_id, tools=out.tools, session_id=out.session_id, headers=headers
    )
    assert done.content == "Refunded, and 2+3 is 5."
    assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]


async def test_agnos_remote_agent_continues_with_user_input_and_external_results(asgi, shop, token, scripted_model):
    import httpx
    from agno.agent import RemoteAgent
    from agno.run.base import RunStatus
    from agno.utils.http import aclose_default_clients, set_default_async_client

    from agentos_site.asgi import application

    set_default_async_client(httpx.AsyncClient(transport=httpx.ASGITransport(app=application), timeout=10))
    remote = RemoteAgent(base_url="http://testserver/os", agent_id="shop", timeout=10)
    try:
        scripted_model.push_tool_calls(
            [
                {"name": "hitl_send_mail", "arguments": {"subject": "Refund"}, "id": "m1"},
                {"name": "hitl_lookup", "arguments": {"query": "order 7"}, "id": "x1"},
            ]
        )
        out = await remote.arun("mail and look up", stream=False, auth_token=token)
        assert out.status == RunStatus.paused
        mail, lookup = out.active_requirements
        assert (mail.needs_user_input, [f.name for f in mail.user_input_schema]) == (True, ["subject", "to"])
        assert lookup.needs_external_execution
        mail.provide_user_input({"to": "ada@example.com"})
        lookup.set_external_execution_result("shipped")
        scripted_model.push_text("Mailed Ada; the order shipped.")
        done = await remote.acontinue_run(
            out.run_id, requirements=[mail, lookup], stream=False, session_id=out.session_id, auth_token=token
        )
    finally:
        await aclose_default_clients()
    assert (done.status, done.content) == (RunStatus.completed, "Mailed Ada; the order shipped.")
    assert CALLS == [("hitl_send_mail", {"subject": "Refund", "to": "ada@example.com"})]
    assert tool_messages(scripted_model.requests[-1]) == [("x1", "shipped"), ("m1", "sent 'Refund' to ada@example.com")]


# ---- the Python API and the admin ------------------------------------------------------------------


def _paused_with_python(agent_id: str, user: Any, scripted_model: Any, calls: list[dict[str, Any]]) -> Any:
    from agents_app.runs import run_agent

    scripted_model.push_tool_calls(calls)
    result = run_agent(agent_id=agent_id, user=user, message="please")
    assert result.status == "paused" and [t["tool_call_id"] for t in result.tools] == [c["id"] for c in calls]
    return result


def test_the_python_api_pauses_and_continues(shop, user, scripted_model):
    from agents_app.engine.approvals import Decision
    from agents_app.runs import continue_run

    paused = _paused_with_python("shop", user, scripted_model, [REFUND])
    assert paused.to_dict()["requirements"][0]["tool_execution"]["tool_call_id"] == "c1"
    scripted_model.push_text("Refunded 4.")
    done = continue_run(paused.run_id, user=user, decisions=[Decision("c1", approve=True, arguments={"amount": 4})])
    assert (done["status"], done["content"]) == ("completed", "Refunded 4.")
    assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 4.0})]
    assert ToolApproval.objects.get(run_id=paused.run_id).channel == "python"


def test_an_agents_override_makes_a_plain_tool_wait_and_a_marked_one_run(
    shop, user, scripted_model, client, staff_user
):
    from django.urls import reverse

    from tests.test_admin import agent_post

    client.force_login(staff_user)
    data = agent_post(
        shop.model,
        slug="shop2",
        tools=["calculator", "hitl_refund"],
        **{
            "tool_requirements-TOTAL_FORMS": "2",
            "tool_requirements-0-tool": "calculator",
            "tool_requirements-0-requirement": "confirmation",
            "tool_requirements-0-user_input_fields": "[]",
            "tool_requirements-1-tool": "hitl_refund",
            "tool_requirements-1-requirement": "none",
            "tool_requirements-1-user_input_fields": "[]",
        },
    )
    response = client.post(reverse("admin:agents_app_agent_add"), data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert sorted(AgentToolRequirement.objects.filter(agent__slug="shop2").values_list("tool", "requirement")) == [
        ("calculator", "confirmation"),
        ("hitl_refund", "none"),
    ]
    paused = _paused_with_python(
        "shop2", user, scripted_model, [{"name": "calculator", "arguments": {"expression": "1+1"}, "id": "k1"}]
    )
    assert paused.tools[0]["requires_confirmation"] is True
    from agents_app.runs import run_agent

    scripted_model.reset()
    scripted_model.push_tool_calls([REFUND])
    scripted_model.push_text("Refunded.")
    other = run_agent(agent_id="shop2", user=user, message="refund")
    assert other.status == "completed" and CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]

    # A user-input field the tool does not have is refused, by the admin and the staff API alike.
    bad = {**data, "slug": "shop3", "tool_requirements-0-requirement": "user_input"}
    bad["tool_requirements-0-user_input_fields"] = '["nope"]'
    page = client.post(reverse("admin:agents_app_agent_add"), bad).content.decode()
    assert "Tool calculator has no argument nope (its arguments: expression)." in page


def test_the_staff_api_reads_and_replaces_tool_requirements(shop, client, staff_token):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {staff_token}"}
    rows = [{"tool": "calculator", "requirement": "user_input", "user_input_fields": ["expression"]}]
    r = client.patch(
        "/api/agents/shop/", {"tool_requirements": rows, "approval_timeout_seconds": 600}, "application/json", **headers
    )
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["tool_requirements"] == rows and body["approval_timeout_seconds"] == 600
    assert body["paused_session_policy"] == "reject"
    r = client.patch(
        "/api/agents/shop/",
        {"tool_requirements": [{"tool": "nope", "requirement": "confirmation"}]},
        "application/json",
        **headers,
    )
    assert r.status_code == 400 and r.json()["tool_requirements"] == {
        "0": {"tool": [r.json()["tool_requirements"]["0"]["tool"][0]]}
    }
    assert r.json()["tool_requirements"]["0"]["tool"][0].startswith("No registered tool 'nope'.")


def test_the_approvals_inbox_lets_staff_decide_on_other_users_runs(
    shop, user, scripted_model, client, settings, staff_user
):
    from django.urls import reverse

    from tests.factories import UserFactory

    first = _paused_with_python("shop", user, scripted_model, [REFUND])
    second = _paused_with_python("shop", user, scripted_model, [{**REFUND, "id": "c7"}])
    approver = UserFactory(username="approver", is_staff=True)  # staff, not a superuser
    client.force_login(approver)
    inbox = reverse("admin:sessions_app_toolapproval_changelist")
    page = client.get(inbox)
    assert page.status_code == 200
    assert page.content.decode().count("hitl_refund") >= 2

    scripted_model.push_text("Refunded.")
    pending = ToolApproval.objects.get(run_id=first.run_id)
    r = client.post(inbox, {"action": "approve", "_selected_action": [str(pending.pk)]}, follow=True)
    assert f"Run {first.run_id}: 1 call(s) approved; the run is completed." in r.content.decode()
    pending.refresh_from_db()
    assert (pending.status, pending.decided_by, pending.channel) == ("approved", approver, "admin")
    assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]
    assert Run.objects.get(pk=first.run_id).user == user

    scripted_model.push_text("Not refunded.")
    other = ToolApproval.objects.get(run_id=second.run_id)
    client.post(inbox, {"action": "reject", "_selected_action": [str(other.pk)]})
    other.refresh_from_db()
    assert (other.status, other.note) == ("rejected", "Rejected in the admin.")
    assert len(CALLS) == 1

    # The run's page shows the decisions (to who may read runs).
    client.force_login(staff_user)
    run_page = client.get(reverse("admin:sessions_app_run_change", args=[first.run_id])).content.decode()
    assert "Tool calls that waited for a person" in run_page and "approver" in run_page

    # A decide page for an id that is no approval's (not even a UUID) goes back to the inbox.
    for bad in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        r = client.get(reverse("admin:sessions_app_toolapproval_decide", args=[bad]))
        assert (r.status_code, r.url) == (302, inbox)

    # Without APPROVALS_BY_STAFF, staff need the permission.
    client.force_login(approver)
    settings.AGENTOS = {**settings.AGENTOS, "APPROVALS_BY_STAFF": False}
    assert client.get(inbox).status_code == 403


async def test_a_continued_run_may_pause_again_and_counts_its_tool_calls_across_pauses(
    asgi, shop, token, scripted_model
):
    shop.max_tool_calls = 2
    await shop.asave()
    scripted_model.push_tool_calls([REFUND])
    run_id = (await start(asgi, token)).json()["run_id"]
    scripted_model.push_tool_calls([{**REFUND, "id": "c2", "arguments": {"order_id": 8, "amount": 1}}])
    r = await continue_(asgi, token, run_id, [{"tool_call_id": "c1", "decision": "approve"}])
    again = r.json()
    assert (r.status_code, again["status"], again["run_id"]) == (200, "paused", run_id)
    assert [t["tool_call_id"] for t in again["tools"]] == ["c2"]
    scripted_model.push_text("Both refunded.")
    done = (await continue_(asgi, token, run_id, [{"tool_call_id": "c2", "decision": "approve"}])).json()
    assert done["status"] == "completed" and done["content"] == "Both refunded."
    assert scripted_model.requests[-1].get("tools") is None  # two tool calls used: the limit, across pauses
    rows = [a async for a in ToolApproval.objects.filter(run_id=run_id).values_list("position", "tool_call_id")]
    assert rows == [(0, "c1"), (1, "c2")]
    run = await Run.objects.aget(pk=run_id)
    assert [e["event"] for e in run.events].count("RunPaused") == 2
    assert [e["event_index"] for e in run.events] == list(range(len(run.events)))
    assert len(CALLS) == 2


def test_telemetry_records_one_event_per_paused_run_with_its_whole_counts(shop, user, scripted_model, settings):
    from agents_app.engine.approvals import Decision
    from agents_app.runs import continue_run
    from telemetry_app.models import TelemetryEvent
    from telemetry_app.schemas import RunCreatedEvent
    from tests.test_telemetry_record import _run_payload

    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY": True}
    from telemetry_app.services import telemetry_reset_launch

    telemetry_reset_launch(pending=False)
    try:
        paused = _paused_with_python("shop", user, scripted_model, [REFUND])
        assert TelemetryEvent.objects.count() == 0  # recorded when the run ends
        paused_tokens = Run.objects.get(pk=paused.run_id).input_tokens
        scripted_model.push_text("Refunded.")
        continue_run(paused.run_id, user=user, decisions=[Decision("c1", approve=True)])
        run = Run.objects.get(pk=paused.run_id)
        assert run.input_tokens > paused_tokens  # the row keeps the whole run's counts
        payload = dict(TelemetryEvent.objects.get().payload)
        RunCreatedEvent.model_validate(payload)
        payload.pop("event_id"), payload.pop("created_at")
        assert payload == _run_payload(run)
    finally:
        telemetry_reset_launch(pending=False)


async def test_a_continue_honours_the_tokens_scope_and_read_only_flag_and_the_users_quotas(
    asgi, shop, user, token, scripted_model
):
    from agents_app.models import Quota
    from sessions_app.tokens import token_create

    scripted_model.push_tool_calls([REFUND])
    run_id = (await start(asgi, token)).json()["run_id"]
    approve = [{"tool_call_id": "c1", "decision": "approve"}]
    _, elsewhere = await sync_to_async(token_create)(user=user, name="other agent", agents=["other"], expires_at=None)
    _, reader = await sync_to_async(token_create)(user=user, name="reader", read_only=True, expires_at=None)
    r = await continue_(asgi, elsewhere, run_id, approve)
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = await continue_(asgi, reader, run_id, approve)
    assert (r.status_code, r.json()["code"]) == (403, "token_read_only")
    r = await asgi.post(
        f"/os/agents/shop/runs/{run_id}/continue", data={"tools": "[]", "stream": "false"}, headers=bearer(elsewhere)
    )
    assert r.status_code == 404

    used = (await Run.objects.aget(pk=run_id)).total_tokens
    quota = await sync_to_async(Quota.objects.create)(scope="user", period="day", max_tokens=used)
    r = await continue_(asgi, token, run_id, approve)
    assert (r.status_code, r.json()["code"]) == (429, "quota_exceeded")
    assert (await Run.objects.aget(pk=run_id)).status == Run.Status.PAUSED and CALLS == []

    quota.max_tokens = used + 10_000
    await quota.asave()
    scripted_model.push_text("Refunded.")
    r = await continue_(asgi, token, run_id, approve)
    assert (r.status_code, r.json()["status"]) == (200, "completed")
    assert CALLS == [("hitl_refund", {"order_id": 7, "amount": 5.0})]
