"""The chat websocket through the real ASGI application (origin check, session and token auth,
routing) with Channels' WebsocketCommunicator; the model is the scripted OpenAI-compatible server
over a real socket, so runs stream, can be slow, and can be cancelled mid-answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from agents_app.models import Agent
from sessions_app.models import Message, Run, Session
from tests.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://testserver")


def _application() -> Any:
    from agentos_site.asgi import application

    return application


async def connect(
    agent_slug: str, *, token: str | None = None, headers: list | None = None, path: str | None = None
) -> WebsocketCommunicator:
    protocols = ["agentos", f"token.{token}"] if token else None
    comm = WebsocketCommunicator(
        _application(), path or f"/ws/agents/{agent_slug}/", headers=headers or [ORIGIN], subprotocols=protocols
    )
    connected, detail = await comm.connect(timeout=5)
    assert connected, f"refused: {detail}"
    return comm


async def until_terminal(comm: WebsocketCommunicator, timeout: float = 5) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = await comm.receive_json_from(timeout=timeout)
        frames.append(frame)
        if frame.get("event") in {"RunCompleted", "RunError", "RunCancelled"}:
            return frames


async def until(comm: WebsocketCommunicator, predicate: Any, timeout: float = 5) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = await comm.receive_json_from(timeout=timeout)
        frames.append(frame)
        if predicate(frame, frames):
            return frames


async def set_policy(agent: Agent, policy: str) -> None:
    agent.busy_session_policy = policy
    await agent.asave()  # save() also clears the process's agent cache


def names(frames: list[dict[str, Any]]) -> list[str]:
    return [f["event"] for f in frames]


# ---- connecting -------------------------------------------------------------------------------


async def test_unauthenticated_and_bad_tokens_are_refused(offline_agent):
    for protocols, path in [
        (None, "/ws/agents/offline/"),
        (["agentos", "token.not-a-token"], "/ws/agents/offline/"),
        (None, "/ws/agents/offline/?token=wrong"),
    ]:
        comm = WebsocketCommunicator(_application(), path, headers=[ORIGIN], subprotocols=protocols)
        connected, code = await comm.connect(timeout=5)
        assert (connected, code) == (False, 4401)


async def test_token_in_subprotocol_or_query_authenticates(offline_agent, token):
    comm = WebsocketCommunicator(
        _application(), "/ws/agents/offline/", headers=[ORIGIN], subprotocols=["agentos", f"token.{token}"]
    )
    connected, subprotocol = await comm.connect(timeout=5)
    assert (connected, subprotocol) == (True, "agentos")  # the token itself is never echoed
    await comm.disconnect()
    comm = WebsocketCommunicator(_application(), f"/ws/agents/offline/?token={token}", headers=[ORIGIN])
    assert (await comm.connect(timeout=5))[0]
    await comm.disconnect()


async def test_session_cookie_authenticates(offline_agent, user):
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    comm = await connect("offline", headers=[ORIGIN, (b"cookie", cookie)])
    await comm.send_json_to({"type": "run", "message": "hello"})
    frames = await until_terminal(comm)
    assert frames[-1]["event"] == "RunCompleted"
    assert await Run.objects.filter(user=user, status="completed").acount() == 1
    await comm.disconnect()


async def test_cross_origin_and_unknown_agents_are_refused(offline_agent, token):
    comm = WebsocketCommunicator(
        _application(),
        "/ws/agents/offline/",
        headers=[(b"origin", b"https://evil.example")],
        subprotocols=["agentos", f"token.{token}"],
    )
    assert (await comm.connect(timeout=5))[0] is False
    comm = WebsocketCommunicator(
        _application(), "/ws/agents/nope/", headers=[ORIGIN], subprotocols=["agentos", f"token.{token}"]
    )
    assert await comm.connect(timeout=5) == (False, 4404)
    # No Origin at all is no browser (browsers always send one): an app with its token gets in.
    comm = WebsocketCommunicator(_application(), "/ws/agents/offline/", subprotocols=["agentos", f"token.{token}"])
    assert (await comm.connect(timeout=5))[0]
    await comm.disconnect()


# ---- running ------------------------------------------------------------------------------------


async def test_a_run_streams_the_same_events_as_sse_and_is_stored(asgi, agent, token, scripted_model):
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "6*7"}, "id": "c1"}])
    scripted_model.push_text("It is 42.")
    comm = await connect(agent.slug, token=token)
    await comm.send_json_to({"type": "run", "message": "what is 6*7?"})
    frames = await until_terminal(comm)
    assert names(frames) == [
        "RunStarted",
        "ModelRequestStarted",
        "ModelRequestCompleted",
        "ToolCallStarted",
        "ToolCallCompleted",
        "ModelRequestStarted",
        "RunContent",
        "RunContent",
        "RunContent",
        "ModelRequestCompleted",
        "RunContentCompleted",
        "RunCompleted",
    ]
    assert [f["event_index"] for f in frames] == list(range(12))
    assert frames[4]["tool"]["result"] == "42"
    assert frames[-1]["content"] == "It is 42."
    run = await Run.objects.aget(pk=frames[0]["run_id"])
    assert run.status == "completed" and run.output == "It is 42."
    # Exactly what the run stored for replay, and what the SSE endpoint sends for it.
    assert run.events == frames
    r = await asgi.get(f"/api/runs/{run.pk}/events", headers=bearer(token))
    assert [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")] == frames
    await comm.disconnect()


async def test_history_continues_in_a_session(agent, token, scripted_model):
    scripted_model.push_text("Hi Ada.")
    scripted_model.push_text("You are Ada.")
    comm = await connect(agent.slug, token=token)
    await comm.send_json_to({"type": "run", "message": "my name is Ada"})
    first = await until_terminal(comm)
    await comm.send_json_to({"type": "run", "message": "who am I?", "session_id": first[0]["session_id"]})
    second = await until_terminal(comm)
    assert second[0]["session_id"] == first[0]["session_id"]
    sent = scripted_model.requests[-1]["messages"]
    assert [m["content"] for m in sent if m["role"] in ("user", "assistant")] == [
        "my name is Ada",
        "Hi Ada.",
        "who am I?",
    ]
    await comm.disconnect()


async def test_bad_frames_get_error_frames_and_the_connection_stays(offline_agent, token, other_token):
    other = await connect("offline", token=other_token)
    await other.send_json_to({"type": "run", "message": "not yours"})
    foreign_session = (await until_terminal(other))[0]["session_id"]
    await other.disconnect()

    comm = await connect("offline", token=token)
    cases = [
        ("not json", "bad_frame"),
        ("[1, 2]", "bad_frame"),
        (json.dumps({"type": "dance"}), "unknown_type"),
        (json.dumps({"no": "type"}), "unknown_type"),
        (json.dumps({"type": "run", "message": "x" * 70_000}), "frame_too_large"),
        (json.dumps({"type": "run", "message": "x" * 32_001}), "invalid_input"),
        (json.dumps({"type": "run", "message": "   "}), "invalid_input"),
        (json.dumps({"type": "run", "message": 42}), "invalid_input"),
        (json.dumps({"type": "run", "message": "hi", "session_id": "not-a-uuid"}), "unknown_session"),
        (json.dumps({"type": "run", "message": "hi", "session_id": foreign_session}), "unknown_session"),
        (json.dumps({"type": "cancel", "run_id": "00000000-0000-0000-0000-000000000000"}), "not_found"),
        (json.dumps({"type": "resume", "run_id": "nope"}), "not_found"),
        (json.dumps({"type": "resume", "run_id": foreign_session, "after_event_index": 0}), "not_found"),
        (
            json.dumps({"type": "resume", "run_id": foreign_session, "after_event_index": "x"}),
            "invalid_input",
        ),
    ]
    for text, error_type in cases:
        await comm.send_to(text_data=text)
        frame = await comm.receive_json_from(timeout=5)
        assert (frame["event"], frame["error_type"]) == ("Error", error_type), text[:80]
        assert frame["content"]
    await comm.send_to(bytes_data=b"\x00\x01")
    assert (await comm.receive_json_from(timeout=5))["error_type"] == "bad_frame"
    # The client's own id comes back with the error, to match it to what it sent.
    await comm.send_json_to({"type": "dance", "id": 7})
    assert (await comm.receive_json_from(timeout=5))["id"] == 7
    # Nothing was written, and the connection still works.
    assert await Run.objects.exclude(session_id=foreign_session).acount() == 0
    await comm.send_json_to({"type": "run", "message": "still here?"})
    assert (await until_terminal(comm))[-1]["event"] == "RunCompleted"
    await comm.disconnect()


# ---- cancel, disconnect, resume ---------------------------------------------------------------------


async def test_cancel_stops_the_run_and_keeps_the_partial_answer(agent, token, scripted_model):
    scripted_model.push_text("one two three four five six seven eight nine ten", chunk_delay=0.1)
    comm = await connect(agent.slug, token=token)
    await comm.send_json_to({"type": "run", "message": "count slowly"})
    frames = await until(comm, lambda f, fs: sum(x["event"] == "RunContent" for x in fs) == 2)
    run_id = frames[0]["run_id"]
    await comm.send_json_to({"type": "cancel", "run_id": run_id})
    rest = await until_terminal(comm)
    acks = [f for f in rest if f["event"] == "CancelRequested"]
    assert acks == [{"event": "CancelRequested", "run_id": run_id, "status": "cancelling"}]
    assert rest[-1]["event"] == "RunCancelled"
    run = await Run.objects.aget(pk=run_id)
    assert run.status == "cancelled"
    assert run.output.startswith("one two") and "ten" not in run.output
    assert [m async for m in Message.objects.filter(run=run).values_list("role", flat=True)] == ["user", "assistant"]
    # Idempotent: cancelling again changes nothing and says how it ended.
    await comm.send_json_to({"type": "cancel", "run_id": run_id})
    assert await comm.receive_json_from(timeout=5) == {
        "event": "CancelRequested",
        "run_id": run_id,
        "status": "cancelled",
    }
    await comm.disconnect()


async def test_disconnect_mid_run_loses_nothing_and_resume_continues_after_the_last_index(agent, token, scripted_model):
    scripted_model.push_text("alpha beta gamma delta epsilon zeta", chunk_delay=0.05)
    comm = await connect(agent.slug, token=token)
    await comm.send_json_to({"type": "run", "message": "greek letters"})
    seen = await until(comm, lambda f, fs: len(fs) == 3)
    await comm.disconnect()  # the tab closes mid-answer

    comm = await connect(agent.slug, token=token)
    run_id = seen[0]["run_id"]
    await comm.send_json_to({"type": "resume", "run_id": run_id, "after_event_index": seen[-1]["event_index"]})
    rest = await until_terminal(comm)
    assert [f["event_index"] for f in seen + rest] == list(range(len(seen) + len(rest)))
    assert "".join(f["content"] for f in seen + rest if f["event"] == "RunContent") == (
        "alpha beta gamma delta epsilon zeta"
    )
    assert rest[-1]["content"] == "alpha beta gamma delta epsilon zeta"
    # Later, the finished run replays from the database, from any index.
    await comm.send_json_to({"type": "resume", "run_id": run_id, "after_event_index": 4})
    replay = await until_terminal(comm)
    assert replay == (seen + rest)[5:]
    await comm.disconnect()
    run = await Run.objects.aget(pk=run_id)
    assert run.status == "completed" and run.output == "alpha beta gamma delta epsilon zeta"


async def test_a_run_left_alone_completes_and_is_stored(agent, token, scripted_model):
    scripted_model.push_text("nobody is listening to this answer", chunk_delay=0.03)
    comm = await connect(agent.slug, token=token)
    await comm.send_json_to({"type": "run", "message": "hello?"})
    started = await comm.receive_json_from(timeout=5)
    await comm.disconnect()
    for _ in range(200):
        run = await Run.objects.aget(pk=started["run_id"])
        if run.status != "running":
            break
        await asyncio.sleep(0.02)
    assert run.status == "completed" and run.output == "nobody is listening to this answer"
    assert [e["event"] for e in run.events][-1] == "RunCompleted"


# ---- a second message while the first is still answering ------------------------------------------


async def _busy_session(comm: WebsocketCommunicator, scripted_model: Any) -> dict[str, Any]:
    scripted_model.push_text("first answer is long and slow", chunk_delay=0.08)
    await comm.send_json_to({"type": "run", "message": "first"})
    return await comm.receive_json_from(timeout=5)  # RunStarted


async def test_busy_policy_reject(agent, token, scripted_model):
    await set_policy(agent, "reject")
    comm = await connect(agent.slug, token=token)
    started = await _busy_session(comm, scripted_model)
    await comm.send_json_to({"type": "run", "message": "second", "session_id": started["session_id"], "id": "b"})
    frames = await until_terminal(comm)
    errors = [f for f in frames if f["event"] == "Error"]
    assert [(e["error_type"], e["id"], e["session_id"]) for e in errors] == [
        ("session_busy", "b", started["session_id"])
    ]
    assert frames[-1]["content"] == "first answer is long and slow"
    assert await Run.objects.filter(session_id=started["session_id"]).acount() == 1
    await comm.disconnect()


async def test_busy_policy_queue_answers_in_turn_with_the_first_answer_in_history(agent, token, scripted_model):
    assert agent.busy_session_policy == "queue"  # the default
    comm = await connect(agent.slug, token=token)
    started = await _busy_session(comm, scripted_model)
    scripted_model.push_text("second answer")
    await comm.send_json_to({"type": "run", "message": "second", "session_id": started["session_id"]})
    first = await until_terminal(comm)
    second = await until_terminal(comm)
    assert first[-1]["content"] == "first answer is long and slow"
    assert (second[0]["event"], second[-1]["content"]) == ("RunStarted", "second answer")
    history = scripted_model.requests[-1]["messages"]
    assert [m["content"] for m in history if m["role"] != "system"] == [
        "first",
        "first answer is long and slow",
        "second",
    ]
    await comm.disconnect()


async def test_busy_policy_interrupt_stops_the_running_answer(agent, token, scripted_model):
    await set_policy(agent, "interrupt")
    comm = await connect(agent.slug, token=token)
    started = await _busy_session(comm, scripted_model)
    await until(comm, lambda f, fs: f["event"] == "RunContent")
    scripted_model.push_text("second answer")
    await comm.send_json_to({"type": "run", "message": "second", "session_id": started["session_id"]})
    first = await until_terminal(comm)
    second = await until_terminal(comm)
    assert first[-1]["event"] == "RunCancelled"
    assert second[-1]["content"] == "second answer"
    statuses = [s async for s in Run.objects.filter(session_id=started["session_id"]).values_list("status", flat=True)]
    assert statuses == ["cancelled", "completed"]
    await comm.disconnect()


# ---- the REST counterparts --------------------------------------------------------------------------


async def test_rest_cancel_and_resume_of_a_websocket_run(asgi, agent, token, other_token, scripted_model):
    scripted_model.push_text("slow words for the rest api to stop", chunk_delay=0.1)
    comm = await connect(agent.slug, token=token)
    await comm.send_json_to({"type": "run", "message": "go"})
    seen = await until(comm, lambda f, fs: f["event"] == "RunContent")
    run_id = seen[0]["run_id"]
    assert (await asgi.post(f"/api/runs/{run_id}/cancel", headers=bearer(other_token))).status_code == 404
    r = await asgi.post(f"/api/runs/{run_id}/cancel", headers=bearer(token))
    assert (r.status_code, r.json()) == (202, {"run_id": run_id, "status": "cancelling"})
    assert (await until_terminal(comm))[-1]["event"] == "RunCancelled"
    r = await asgi.get(f"/api/runs/{run_id}/events?after_event_index=0", headers=bearer(token))
    assert r.headers["content-type"].startswith("text/event-stream")
    replay = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert replay[0]["event_index"] == 1 and replay[-1]["event"] == "RunCancelled"
    assert (await asgi.get(f"/api/runs/{run_id}/events", headers=bearer(other_token))).status_code == 404
    bad = await asgi.get(f"/api/runs/{run_id}/events?after_event_index=-5", headers=bearer(token))
    assert bad.status_code == 400
    await comm.disconnect()


async def test_rest_run_endpoint_honours_the_busy_policy(asgi, agent, token, scripted_model):
    await set_policy(agent, "reject")
    comm = await connect(agent.slug, token=token)
    started = await _busy_session(comm, scripted_model)
    payload = {"message": "second", "session_id": started["session_id"]}
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json=payload, headers=bearer(token))
    assert r.status_code == 409, r.text
    await until_terminal(comm)
    # Queue: the REST run waits for the websocket's run, then answers with the history complete.
    await set_policy(agent, "queue")
    started = await _busy_session(comm, scripted_model)
    scripted_model.push_text("queued answer")
    payload["session_id"] = started["session_id"]
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json=payload, headers=bearer(token))
    assert (r.status_code, r.json()["content"]) == (200, "queued answer")
    assert (await until_terminal(comm))[-1]["event"] == "RunCompleted"
    assert await Session.objects.filter(pk=started["session_id"]).aexists()
    await comm.disconnect()
