"""The run endpoint through the real ASGI application, with the real openai client talking to the
scripted model server over a loopback socket."""

from __future__ import annotations

import pytest

from sessions_app.models import Message, Run, Session
from tests.conftest import bearer, parse_sse, without_bookkeeping

pytestmark = pytest.mark.django_db(transaction=True)


async def test_plain_run_returns_agno_shaped_json_and_persists(asgi, agent, token, scripted_model, user):
    scripted_model.push_text("Hello Ada, nice to meet you.")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "my name is Ada"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == "Hello Ada, nice to meet you."
    assert body["status"] == "completed"
    assert body["agent_id"] == "helper"
    assert body["user_id"] == user.pk
    assert body["content_type"] == "str"
    assert body["model"] == "scripted-model"
    assert set(body["metrics"]) == {
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cache_read_tokens",
        "cost",
        "time_to_first_token",
        "duration",
    }
    assert body["metrics"]["total_tokens"] == body["metrics"]["input_tokens"] + body["metrics"]["output_tokens"] > 0
    run = await Run.objects.aget(pk=body["run_id"])
    assert run.status == Run.Status.COMPLETED and run.output == "Hello Ada, nice to meet you."
    assert str(run.session_id) == body["session_id"]
    roles = [m async for m in Message.objects.filter(run=run).order_by("position").values_list("role", "content")]
    assert roles == [("user", "my name is Ada"), ("assistant", "Hello Ada, nice to meet you.")]
    sent = scripted_model.requests[-1]
    assert sent["model"] == "scripted-model"
    assert sent["messages"][0] == {"role": "system", "content": "You are a test agent."}
    assert {t["function"]["name"] for t in sent["tools"]} == {"calculator", "current_time"}


async def test_history_reaches_the_model_on_the_next_message(asgi, agent, token, scripted_model):
    scripted_model.push_text("Hi Ada.")
    scripted_model.push_text("You are Ada.")
    first = (
        await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "my name is Ada"}, headers=bearer(token))
    ).json()
    second = await asgi.post(
        f"/api/agents/{agent.slug}/runs",
        json={"message": "who am I?", "session_id": first["session_id"]},
        headers=bearer(token),
    )
    assert second.status_code == 200
    assert second.json()["session_id"] == first["session_id"]
    sent = scripted_model.requests[-1]["messages"]
    assert [(m["role"], m["content"]) for m in sent if m["role"] != "system"] == [
        ("user", "my name is Ada"),
        ("assistant", "Hi Ada."),
        ("user", "who am I?"),
    ]


async def test_history_is_bounded_to_the_agents_last_n_runs(asgi, agent, token, scripted_model):
    agent.history_runs = 2
    await agent.asave()
    session_id = None
    for i in range(4):
        scripted_model.push_text(f"answer {i}")
        payload = {"message": f"question {i}"} | ({"session_id": session_id} if session_id else {})
        session_id = (await asgi.post(f"/api/agents/{agent.slug}/runs", json=payload, headers=bearer(token))).json()[
            "session_id"
        ]
    user_messages = [m["content"] for m in scripted_model.requests[-1]["messages"] if m["role"] == "user"]
    assert user_messages == ["question 1", "question 2", "question 3"]


async def test_form_body_is_accepted(asgi, agent, token, scripted_model):
    scripted_model.push_text("form ok")
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs", data={"message": "hi", "stream": "false"}, headers=bearer(token)
    )
    assert r.status_code == 200 and r.json()["content"] == "form ok"


async def test_tool_calls_run_in_parallel_and_feed_back(asgi, agent, token, scripted_model):
    scripted_model.push_tool_calls(
        [
            {"name": "calculator", "arguments": {"expression": "6*7"}, "id": "c1"},
            {"name": "calculator", "arguments": {"expression": "2**10"}, "id": "c2"},
        ]
    )
    scripted_model.push_text("42 and 1024")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "compute"}, headers=bearer(token))
    assert r.status_code == 200 and r.json()["content"] == "42 and 1024"
    followup = scripted_model.requests[-1]["messages"]
    tool_messages = [m for m in followup if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages] == [("c1", "42"), ("c2", "1024")]
    run = await Run.objects.aget(pk=r.json()["run_id"])
    roles = [m async for m in Message.objects.filter(run=run).order_by("position").values_list("role", flat=True)]
    assert roles == ["user", "assistant", "tool", "tool", "assistant"]


async def test_a_failing_tool_gives_the_model_an_error_not_a_crash(asgi, agent, token, scripted_model):
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "1/0"}, "id": "c1"}])
    scripted_model.push_text("cannot divide by zero")
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs", json={"message": "1/0?", "stream": True}, headers=bearer(token)
    )
    frames = parse_sse(r.text)
    names = without_bookkeeping([name for name, _ in frames])
    assert names[:3] == ["RunStarted", "ToolCallStarted", "ToolCallError"]
    assert names[-1] == "RunCompleted"
    error_frame = next(data for name, data in frames if name == "ToolCallError")
    assert error_frame["tool"]["tool_name"] == "calculator"
    assert "ZeroDivisionError" in error_frame["error"]
    tool_msg = next(m for m in scripted_model.requests[-1]["messages"] if m["role"] == "tool")
    assert tool_msg["content"].startswith("Error: ZeroDivisionError")


async def test_unknown_tool_and_bad_arguments_are_reported_to_the_model(asgi, agent, token, scripted_model):
    scripted_model.push_tool_calls(
        [
            {"name": "rm_rf", "arguments": {}, "id": "c1"},
            {"name": "calculator", "arguments": {"expr": "1"}, "id": "c2"},
        ]
    )
    scripted_model.push_text("done")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "x"}, headers=bearer(token))
    assert r.status_code == 200
    contents = [m["content"] for m in scripted_model.requests[-1]["messages"] if m["role"] == "tool"]
    assert contents[0].startswith("Error: Unknown tool 'rm_rf'")
    assert "expression: Field required" in contents[1]


async def test_tool_loop_is_bounded(asgi, agent, token, scripted_model):
    agent.max_tool_calls = 2
    await agent.asave()
    for i in range(2):
        scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": f"{i}+1"}}])
    scripted_model.push_text("final answer without tools")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "loop"}, headers=bearer(token))
    assert r.status_code == 200 and r.json()["content"] == "final answer without tools"
    assert len(scripted_model.requests) == 3
    assert "tools" not in scripted_model.requests[-1]  # the last call may not call tools any more


async def test_streaming_emits_typed_events_with_increasing_index(asgi, agent, token, scripted_model):
    scripted_model.push_text("one two three four")
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs", json={"message": "count", "stream": True}, headers=bearer(token)
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    frames = parse_sse(r.text)
    assert without_bookkeeping([f[0] for f in frames]) == [
        "RunStarted",
        "RunContent",
        "RunContent",
        "RunContent",
        "RunContent",
        "RunCompleted",
    ]
    assert [f[1]["event_index"] for f in frames] == list(range(len(frames)))
    assert "".join(f[1]["content"] for f in frames if f[0] == "RunContent") == "one two three four"
    done = frames[-1][1]
    assert done["content"] == "one two three four"
    assert done["metrics"]["time_to_first_token"] is not None
    assert {f[1]["run_id"] for f in frames} == {done["run_id"]}
    run = await Run.objects.aget(pk=done["run_id"])
    assert run.status == Run.Status.COMPLETED and run.output == "one two three four"


async def test_streamed_tool_calls(asgi, agent, token, scripted_model):
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "3*3"}, "id": "t9"}])
    scripted_model.push_text("nine")
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs", json={"message": "3*3", "stream": True}, headers=bearer(token)
    )
    frames = parse_sse(r.text)
    started = next(f[1] for f in frames if f[0] == "ToolCallStarted")
    completed = next(f[1] for f in frames if f[0] == "ToolCallCompleted")
    # agno's whole ToolExecution (tests/test_agno_compat.py checks every key).
    assert {k: started["tool"][k] for k in ("tool_call_id", "tool_name", "tool_args", "result")} == {
        "tool_call_id": "t9",
        "tool_name": "calculator",
        "tool_args": {"expression": "3*3"},
        "result": None,
    }
    assert completed["tool"]["result"] == "9" and completed["content"] == "9"


async def test_model_server_error_is_a_502_with_the_run_kept(asgi, agent, token, scripted_model):
    scripted_model.push_error(500, "upstream exploded")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 502
    body = r.json()
    assert body["status"] == "error"
    assert body["error"]["type"] == "model_error"
    assert "HTTP 500" in body["error"]["message"]
    run = await Run.objects.aget(pk=body["run_id"])
    assert run.status == Run.Status.ERROR and run.error_type == "model_error"
    assert [m async for m in Message.objects.filter(run=run).values_list("role", flat=True)] == ["user"]


async def test_rate_limit_is_retried_then_succeeds(asgi, agent, token, scripted_model, openai_model):
    openai_model.max_retries = 2
    await openai_model.asave()
    scripted_model.push_error(429, "slow down", retry_after=0.01)
    scripted_model.push_text("after retry")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 200 and r.json()["content"] == "after retry"
    assert len(scripted_model.requests) == 2


async def test_rate_limit_exhausted_is_a_503(asgi, agent, token, scripted_model):
    scripted_model.push_error(429, "slow down")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 503 and r.json()["error"]["type"] == "model_rate_limited"


async def test_model_timeout_is_a_504(asgi, agent, token, scripted_model, openai_model):
    openai_model.timeout_seconds = 0.3
    await openai_model.asave()
    scripted_model.push_hang(2.0)
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 504 and r.json()["error"]["type"] == "model_timeout"


async def test_stream_broken_midway_keeps_partial_output(asgi, agent, token, scripted_model):
    scripted_model.push_stream_break("partial words here")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi", "stream": True}, headers=bearer(token))
    frames = parse_sse(r.text)
    assert frames[-1][0] == "RunError"
    assert frames[-1][1]["error_type"] in {"model_unreachable", "model_error"}
    run = await Run.objects.aget(pk=frames[-1][1]["run_id"])
    assert run.status == Run.Status.ERROR
    assert run.output == "partial words here"
    assert [m async for m in Message.objects.filter(run=run).order_by("position").values_list("role", "content")][
        -1
    ] == (
        "assistant",
        "partial words here",
    )


STRUCTURED = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


async def test_structured_output_is_requested_and_validated(asgi, agent, token, scripted_model):
    agent.output_schema = STRUCTURED
    await agent.asave()
    scripted_model.push_json({"city": "Paris", "population": 2100000})
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "capital of France"}, headers=bearer(token))
    assert r.status_code == 200
    assert r.json()["content"] == {"city": "Paris", "population": 2100000}
    assert r.json()["content_type"] == "json"
    fmt = scripted_model.requests[-1]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == STRUCTURED
    run = await Run.objects.aget(pk=r.json()["run_id"])
    assert run.output_json == {"city": "Paris", "population": 2100000}


async def test_structured_output_mismatch_is_a_clear_error(asgi, agent, token, scripted_model):
    agent.output_schema = STRUCTURED
    await agent.asave()
    for _ in range(2):  # the answer, and the one retry that shows the model its mistake
        scripted_model.push_json({"city": "Paris", "population": "lots"})
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "capital of France"}, headers=bearer(token))
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["type"] == "output_invalid"
    assert "population" in err["message"] and "not of type 'integer'" in err["message"]
    retry = scripted_model.requests[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": '{"city": "Paris", "population": "lots"}'}
    assert "population" in retry[-1]["content"] and retry[-1]["role"] == "user"
    # The answer is kept as the run's partial output; no 5xx.
    run = await Run.objects.aget(pk=r.json()["run_id"])
    assert run.status == "error" and run.error_type == "output_invalid"
    assert run.output == '{"city": "Paris", "population": "lots"}' and run.output_json is None


async def test_structured_output_mismatch_is_retried_once_with_the_error_shown(asgi, agent, token, scripted_model):
    agent.output_schema = STRUCTURED
    await agent.asave()
    scripted_model.push_json({"city": "Paris", "population": "lots"})
    scripted_model.push_json({"city": "Paris", "population": 2100000})
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "capital of France"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["content"] == {"city": "Paris", "population": 2100000}
    assert len(scripted_model.requests) == 2
    assert "not of type 'integer'" in scripted_model.requests[1]["messages"][-1]["content"]
    # Both calls are counted (the scripted server counts a word as a token: 4 + 4).
    run = await Run.objects.aget(pk=r.json()["run_id"])
    assert run.output_tokens == 8


async def test_structured_output_not_json(asgi, agent, token, scripted_model):
    agent.output_schema = STRUCTURED
    await agent.asave()
    scripted_model.push_text("sorry, no JSON today")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "x", "stream": True}, headers=bearer(token))
    frames = parse_sse(r.text)
    assert frames[-1][0] == "RunError" and frames[-1][1]["error_type"] == "output_invalid"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "message"),
        ({"message": ""}, "message"),
        ({"message": "   "}, "message"),
        ({"message": "x" * 32_001}, "message"),
        ({"message": "hi", "session_id": "not-a-uuid"}, "session_id"),
        ({"message": "hi", "stream": "maybe"}, "stream"),
        ({"message": 123}, None),
    ],
)
async def test_bad_input_is_a_400_and_writes_nothing(asgi, agent, token, payload, field):
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json=payload, headers=bearer(token))
    if field is None:  # a number is coerced to a string by DRF: accepted
        assert r.status_code == 200
        return
    assert r.status_code == 400, r.text
    assert field in r.json()
    assert await Run.objects.acount() == 0 and await Session.objects.acount() == 0


async def test_malformed_json_is_a_400(asgi, agent, token):
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs",
        content=b'{"message": "hi"',
        headers=bearer(token) | {"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "JSON parse error" in r.json()["detail"]
    assert await Run.objects.acount() == 0


async def test_unknown_agent_is_a_404(asgi, token, db):
    r = await asgi.post("/api/agents/nope/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 404 and "nope" in r.json()["detail"]


async def test_inactive_agent_is_a_404(asgi, agent, token):
    agent.is_active = False
    await agent.asave()
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 404


async def test_unauthenticated_is_a_401(asgi, agent):
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"})
    assert r.status_code == 401
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer("wrong"))
    assert r.status_code == 401


async def test_someone_elses_session_is_a_404_and_untouched(asgi, agent, token, other_token, scripted_model):
    scripted_model.push_text("secret answer")
    mine = (
        await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "my secret"}, headers=bearer(token))
    ).json()
    r = await asgi.post(
        f"/api/agents/{agent.slug}/runs",
        json={"message": "let me in", "session_id": mine["session_id"]},
        headers=bearer(other_token),
    )
    assert r.status_code == 404
    assert await Run.objects.acount() == 1
    assert len(scripted_model.requests) == 1


async def test_offline_model_calls_tools_and_remembers(asgi, offline_agent, token):
    r = await asgi.post(
        f"/api/agents/{offline_agent.slug}/runs", json={"message": "what is 6*7?"}, headers=bearer(token)
    )
    assert r.status_code == 200
    assert r.json()["content"] == "[offline demo model] I used my tools: calculator returned 42."
    again = await asgi.post(
        f"/api/agents/{offline_agent.slug}/runs",
        json={"message": "and hello", "session_id": r.json()["session_id"]},
        headers=bearer(token),
    )
    assert 'Earlier in this session you said: "what is 6*7?"' in again.json()["content"]


async def test_a_cancelled_non_streaming_run_answers_200_with_status_cancelled(asgi, agent, token, scripted_model):
    import asyncio

    scripted_model.push_hang(3.0)
    request = asyncio.ensure_future(
        asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "slow"}, headers=bearer(token))
    )
    for _ in range(200):
        run = await Run.objects.filter(status=Run.Status.RUNNING).afirst()
        if run is not None:
            break
        await asyncio.sleep(0.01)
    cancel = await asgi.post(f"/api/runs/{run.pk}/cancel", headers=bearer(token))
    assert cancel.status_code == 202
    r = await asyncio.wait_for(request, 5)
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled" and r.json()["error"]["type"] == "cancelled"
    assert (await Run.objects.aget(pk=run.pk)).status == Run.Status.CANCELLED
