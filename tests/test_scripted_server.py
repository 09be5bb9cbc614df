"""Tests for the scripted OpenAI-compatible server.

They drive the server with the real ``openai`` client (sync and async) over a
loopback socket, because the point of the server is to be indistinguishable
from the real API for everything our code relies on: completions, SSE
streaming, tool calls, error mapping, timeouts and broken connections.
No Django and no database are involved.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from agents_app.testing.scripted_server import ScriptedModelServer

MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "What is two plus two?"}]
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate an arithmetic expression.",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
            },
        },
    }
]


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as srv:
        yield srv


@pytest.fixture
def client(server: ScriptedModelServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as sync_client:
        yield sync_client


def _async_client(server: ScriptedModelServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)


def _collect_tool_calls(chunks: list[Any]) -> dict[int, dict[str, str]]:
    """Accumulate streamed tool-call deltas the way a real consumer must."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or ():
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            if delta.id:
                call["id"] = delta.id
            if delta.function and delta.function.name:
                call["name"] += delta.function.name
            if delta.function and delta.function.arguments:
                call["arguments"] += delta.function.arguments
    return calls


# --------------------------------------------------------------------- text


def test_text_non_streaming(server: ScriptedModelServer, client: openai.OpenAI) -> None:
    server.push_text("Two plus two is four.")
    completion = client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-test"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Two plus two is four."
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 5
    assert server.requests == [{"model": "gpt-test", "messages": MESSAGES}]


def test_default_reply_and_fifo_order(client: openai.OpenAI, server: ScriptedModelServer) -> None:
    server.push_text("first")
    server.push_text("second")
    texts = [client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content for _ in range(3)]
    assert texts == ["first", "second", "ok"]

    server.default_reply = lambda body: f"echo {body['messages'][-1]['content']}"
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo hi"


def test_default_words() -> None:
    with (
        ScriptedModelServer(default_words=50) as srv,
        openai.OpenAI(base_url=srv.base_url, api_key="t") as cli,
    ):
        content = cli.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
    assert content is not None
    words = content.split(" ")
    assert len(words) == 50
    assert words[0] == "word1"
    assert words[-1] == "word50"


def test_text_streaming_sync(server: ScriptedModelServer, client: openai.OpenAI) -> None:
    text = "The answer,  as computed, is four.\n"
    server.push_text(text)
    chunks = list(
        client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(deltas) == text
    assert len(deltas) == len(text.split()) + 1  # one per word, plus the trailing newline
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split())
    assert server.requests[0]["stream"] is True


def test_streaming_without_usage_has_no_usage_chunk(server: ScriptedModelServer, client: openai.OpenAI) -> None:
    server.push_text("one two three")
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


@pytest.mark.asyncio
async def test_text_streaming_async_with_chunk_delay(
    server: ScriptedModelServer,
) -> None:
    server.push_text("slow and steady", chunk_delay=0.01)
    async with _async_client(server) as aclient:
        stream = await aclient.chat.completions.create(
            model="m",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "slow and steady"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


def test_push_json(server: ScriptedModelServer, client: openai.OpenAI) -> None:
    payload = {"answer": 4, "steps": ["add"], "note": "ok"}
    server.push_json(payload)
    content = client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
    assert content is not None
    assert json.loads(content) == payload


# --------------------------------------------------------------- tool calls


def test_tool_calls_non_streaming(server: ScriptedModelServer, client: openai.OpenAI) -> None:
    server.push_tool_calls(
        [
            {
                "name": "calculator",
                "arguments": {"expression": "2+2"},
                "id": "call_abc",
            },
            {"name": "calculator", "arguments": {"expression": "3*3"}},
        ],
        content="Let me compute.",
    )
    completion = client.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me compute."
    calls = choice.message.tool_calls
    assert calls is not None
    assert len(calls) == 2
    assert calls[0].id == "call_abc"
    assert calls[0].type == "function"
    assert calls[0].function.name == "calculator"
    assert json.loads(calls[0].function.arguments) == {"expression": "2+2"}
    assert calls[1].id
    assert calls[1].id != "call_abc"
    assert json.loads(calls[1].function.arguments) == {"expression": "3*3"}
    assert server.requests[0]["tools"] == TOOLS


def test_tool_calls_streaming_sync(server: ScriptedModelServer, client: openai.OpenAI) -> None:
    arguments = {"expression": "(1 + 2) * 3 - 4 / 5", "precision": 10}
    server.push_tool_calls([{"name": "calculator", "arguments": arguments, "id": "call_1"}])
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS, stream=True))

    argument_chunks = [
        c for c in chunks if c.choices and c.choices[0].delta.tool_calls and c.choices[0].delta.tool_calls[0].id is None
    ]
    assert len(argument_chunks) > 1, "arguments should be split across several chunks"
    calls = _collect_tool_calls(chunks)
    assert list(calls) == [0]
    assert calls[0]["id"] == "call_1"
    assert calls[0]["name"] == "calculator"
    assert json.loads(calls[0]["arguments"]) == arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["tool_calls"]


@pytest.mark.asyncio
async def test_tool_calls_streaming_async(server: ScriptedModelServer) -> None:
    server.push_tool_calls(
        [
            {"name": "calculator", "arguments": {"expression": "2+2"}},
            {"name": "search", "arguments": '{"q": "x"}'},
        ],
        content="Working on it",
    )
    async with _async_client(server) as aclient:
        stream = await aclient.chat.completions.create(
            model="m",
            messages=MESSAGES,
            tools=TOOLS,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    calls = _collect_tool_calls(chunks)
    assert [calls[i]["name"] for i in sorted(calls)] == ["calculator", "search"]
    assert json.loads(calls[0]["arguments"]) == {"expression": "2+2"}
    assert json.loads(calls[1]["arguments"]) == {"q": "x"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Working on it"
    assert chunks[-1].usage is not None


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_error_statuses(
    server: ScriptedModelServer,
    client: openai.OpenAI,
    status: int,
    exc_type: type[openai.APIStatusError],
) -> None:
    server.push_error(status, "scripted failure")
    with pytest.raises(exc_type) as info:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert info.value.status_code == status
    assert "scripted failure" in str(info.value)
    assert isinstance(info.value.body, dict)
    assert info.value.body["message"] == "scripted failure"


def test_error_on_streaming_request(server: ScriptedModelServer, client: openai.OpenAI) -> None:
    server.push_error(429)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=MESSAGES, stream=True)


def test_error_times_with_retry_after_is_retried(server: ScriptedModelServer) -> None:
    server.push_error(503, times=2, retry_after=0.01)
    server.push_text("recovered")
    with openai.OpenAI(base_url=server.base_url, api_key="t", max_retries=2) as retrying:
        started = time.perf_counter()
        completion = retrying.chat.completions.create(model="m", messages=MESSAGES)
        elapsed = time.perf_counter() - started
    assert completion.choices[0].message.content == "recovered"
    assert len(server.requests) == 3
    assert elapsed < 0.5, "retry-after should override the client's exponential back-off"


def test_error_times_consumes_consecutive_requests(server: ScriptedModelServer, client: openai.OpenAI) -> None:
    server.push_error(429, times=2)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="m", messages=MESSAGES)
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "ok"


# ------------------------------------------------------- timeouts and breaks


def test_hang_triggers_client_timeout(server: ScriptedModelServer) -> None:
    server.push_hang(2.0)
    with openai.OpenAI(base_url=server.base_url, api_key="t", max_retries=0, timeout=0.2) as impatient:
        started = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):
            impatient.chat.completions.create(model="m", messages=MESSAGES)
        assert time.perf_counter() - started < 1.0
        # The server is still healthy for the next request.
        assert impatient.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "ok"


@pytest.mark.asyncio
async def test_hang_does_not_block_other_connections(
    server: ScriptedModelServer,
) -> None:
    server.push_hang(0.5, text="late")
    server.push_text("prompt")
    async with _async_client(server) as aclient:
        slow = asyncio.create_task(aclient.chat.completions.create(model="m", messages=MESSAGES))
        while not server.requests:  # make sure the hang is consumed by the slow request
            await asyncio.sleep(0.005)
        started = time.perf_counter()
        fast = await aclient.chat.completions.create(model="m", messages=MESSAGES)
        assert time.perf_counter() - started < 0.3
        assert fast.choices[0].message.content == "prompt"
        assert not slow.done()
        assert (await slow).choices[0].message.content == "late"


def test_stream_break_sync(server: ScriptedModelServer, client: openai.OpenAI) -> None:
    server.push_stream_break("partial answer before")
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    received: list[str] = []

    def consume() -> None:
        received.extend(chunk.choices[0].delta.content or "" for chunk in stream)

    with pytest.raises(openai.APIConnectionError):
        consume()
    assert "partial answer before".startswith("".join(received))
    # The client recovers on a fresh connection.
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "ok"


@pytest.mark.asyncio
async def test_stream_break_async(server: ScriptedModelServer) -> None:
    server.push_stream_break("partial answer")
    async with _async_client(server) as aclient:
        stream = await aclient.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIConnectionError):
            async for _ in stream:
                pass


def test_stream_break_non_streaming(server: ScriptedModelServer, client: openai.OpenAI) -> None:
    server.push_stream_break("partial answer")
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=MESSAGES)


# ------------------------------------------------ concurrency and transport


@pytest.mark.asyncio
async def test_fifty_concurrent_async_requests() -> None:
    with ScriptedModelServer(default_words=50) as srv:
        async with _async_client(srv) as aclient:

            async def one(i: int) -> str:
                messages = [{"role": "user", "content": f"request {i}"}]
                if i % 2:
                    stream = await aclient.chat.completions.create(model="m", messages=messages, stream=True)
                    return "".join([c.choices[0].delta.content or "" async for c in stream])
                completion = await aclient.chat.completions.create(model="m", messages=messages)
                return completion.choices[0].message.content or ""

            results = await asyncio.gather(*(one(i) for i in range(50)))
        assert all(len(text.split()) == 50 for text in results)
        assert sorted(r["messages"][0]["content"] for r in srv.requests) == sorted(f"request {i}" for i in range(50))


def test_keep_alive_reuses_one_connection(server: ScriptedModelServer, client: openai.OpenAI) -> None:
    for _ in range(5):
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert server.connections_opened == 1


@pytest.mark.asyncio
async def test_async_stream_keeps_connection_alive(server: ScriptedModelServer) -> None:
    async with _async_client(server) as aclient:
        for _ in range(3):
            stream = await aclient.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            assert [c async for c in stream]
    assert server.connections_opened == 1


def test_routes_without_v1_models_and_404(server: ScriptedModelServer, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["scripted-model"]

    root = server.base_url.removesuffix("/v1")
    with openai.OpenAI(base_url=root, api_key="t", max_retries=0) as bare:
        server.push_text("no prefix")
        assert bare.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "no prefix"

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
    try:
        conn.request("GET", "/v1/nope")
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 404
        assert response.getheader("content-type") == "application/json"
        assert "error" in body
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=b"not json",
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        assert response.status == 400
        assert response.getheader("connection") == "keep-alive"
        response.read()
    finally:
        conn.close()
    assert server.requests == [{"model": "m", "messages": MESSAGES}]


def test_reset_clears_queue_and_requests(server: ScriptedModelServer, client: openai.OpenAI) -> None:
    server.push_text("used")
    client.chat.completions.create(model="m", messages=MESSAGES)
    server.push_text("never used")
    recorded = server.requests
    server.reset()
    assert server.requests == []
    assert recorded is server.requests
    assert server.pending == 0
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "ok"


def test_cli_prints_base_url_and_serves() -> None:
    repo_root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agents_app.testing.scripted_server",
            "--port",
            "0",
            "--words",
            "3",
        ],
        cwd=repo_root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        with openai.OpenAI(base_url=base_url, api_key="t", max_retries=0) as cli_client:
            content = cli_client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
        assert content == "word1 word2 word3"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
