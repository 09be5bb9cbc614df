"""The Python client (agentos_client) against a live server: one daphne process on a SQLite file,
seeded as a site owner would (migrate, agentos_demo) plus agents on the scripted model server,
reached through a TCP proxy that can cut a connection mid-answer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentos_client import (
    AsyncClient,
    Client,
    Conflict,
    Decision,
    NotFound,
    RateLimited,
    RetryPolicy,
    RunCompleted,
    RunPaused,
    ToolEvent,
)
from tests.cutting_proxy import CuttingProxy
from tests.live_server import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

SEED = (
    "from agents_app.models import Agent, AgentToolRequirement, ModelConfig; "
    "m = ModelConfig.objects.create(name='scripted', provider='openai', base_url='{base_url}', "
    "model_id='m', max_retries=0); "
    "Agent.objects.create(slug='scripted', name='Scripted', model=m, tools=['calculator']); "
    "a = Agent.objects.create(slug='careful', name='Careful', model=m, tools=['calculator']); "
    "AgentToolRequirement.objects.create(agent=a, tool='calculator', requirement='confirmation'); "
    "Agent.objects.create(slug='limited', name='Limited', model=ModelConfig.objects.get(name='offline'), "
    "rate_limit='1/sec'); "
    "Agent.objects.create(slug='hourly', name='Hourly', model=ModelConfig.objects.get(name='offline'), "
    "rate_limit='1/hour')"
)
CALC = {"name": "calculator", "arguments": {"expression": "6*7"}, "id": "k1"}
WORDS = " ".join(f"word{i}" for i in range(40))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, _scripted_server: Any) -> Iterator[dict[str, Any]]:
    db = tmp_path_factory.mktemp("client") / "site.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "DJANGO_DEBUG": "false", "DJANGO_LOG_LEVEL": "ERROR"}
    for name in ("DJANGO_SETTINGS_MODULE", "REDIS_URL"):
        env.pop(name, None)

    def manage(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        ).stdout

    manage("migrate", "--noinput")
    token = re.search(r"API token for 'admin': (\w+)", manage("agentos_demo")).group(1)
    manage("shell", "-c", SEED.format(base_url=_scripted_server.base_url))
    port = free_port()
    cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "agentos_site.asgi:application"]
    with serving(cmd, cwd=ROOT, env=env, probe_url=f"http://127.0.0.1:{port}/healthz"):
        proxy = CuttingProxy(port)
        try:
            yield {"base": proxy.base_url, "direct": f"http://127.0.0.1:{port}", "token": token, "proxy": proxy}
        finally:
            proxy.stop()


@pytest.fixture
def client(site: dict[str, Any]) -> Iterator[Client]:
    with Client(site["base"], token=site["token"]) as c:
        yield c


def _content(events: list[Any]) -> str:
    return "".join(e.content for e in events if e.event == "RunContent")


def test_a_whole_run_and_its_session(client, scripted_model):
    scripted_model.push_text("Hello there.")
    result = client.run_agent("scripted", "hi")
    assert (result.status, result.content, result.metrics["total_tokens"] > 0) == ("completed", "Hello there.", True)
    scripted_model.push_text("Again.")
    again = client.run_agent("scripted", "more", session_id=result.session_id)
    assert again.session_id == result.session_id
    session = client.get_session(result.session_id)
    assert {r["run_id"] for r in session.runs} == {result.run_id, again.run_id}
    assert result.session_id in [s.session_id for s in client.list_sessions(agent_id="scripted").results]
    assert client.rename_session(result.session_id, "greetings").name == "greetings"
    client.delete_session(result.session_id)
    with pytest.raises(NotFound) as caught:
        client.get_session(result.session_id)
    assert caught.value.code == "not_found" and caught.value.status == 404


def test_a_team_and_a_workflow_whole_and_streamed(client):
    team = client.run_team("demo-team", "what is 6*7?")
    assert team.status == "completed" and [m["member_id"] for m in team.data["member_runs"]] == ["demo", "demo-writer"]
    events = list(client.stream_workflow("demo-workflow", "what is 6*7?"))
    assert events[0].event == "WorkflowStarted" and events[-1].event == "WorkflowCompleted"
    assert isinstance(events[-1], RunCompleted) and events[-1].is_terminal
    assert "calculator returned 42" in events[-1].content
    assert [e.event_index for e in events] == list(range(len(events)))


def test_a_streamed_run_yields_typed_events(client, scripted_model):
    scripted_model.push_tool_calls([CALC])
    scripted_model.push_text("It is 42.")
    events = list(client.stream_agent("scripted", "6*7?"))
    names = [e.event for e in events]
    assert names[0] == "RunStarted" and names[-1] == "RunCompleted"
    tool = next(e for e in events if e.event == "ToolCallCompleted")
    assert isinstance(tool, ToolEvent) and (tool.tool.tool_name, tool.tool.result) == ("calculator", "42")
    assert _content(events) == "It is 42." and events[-1].metrics["total_tokens"] > 0


def test_a_stream_cut_mid_answer_is_resumed_without_a_gap_or_a_duplicate(site, scripted_model):
    proxy: CuttingProxy = site["proxy"]
    scripted_model.push_text(WORDS, chunk_delay=0.02)
    cuts, seen = proxy.cuts, len(proxy.requests)
    proxy.cut_next(after_bytes=1500)  # past the headers and a few frames, well before the end
    with Client(site["base"], token=site["token"]) as fresh:
        events = list(fresh.stream_agent("scripted", "count"))
    assert proxy.cuts == cuts + 1
    requests = [line.decode() for line in proxy.requests[seen:]]
    assert requests[0].startswith("POST /api/agents/scripted/runs")
    resumed = [r for r in requests if "/events?after_event_index=" in r]
    assert resumed and int(resumed[0].split("after_event_index=")[1].split()[0]) > 0
    assert [e.event_index for e in events] == list(range(len(events)))
    assert _content(events) == WORDS and events[-1].event == "RunCompleted"


def test_a_stream_cut_before_its_first_event_is_retried_with_its_idempotency_key(site, scripted_model):
    proxy: CuttingProxy = site["proxy"]
    scripted_model.push_text("Only once.", chunk_delay=0.05)
    proxy.cut_next(after_bytes=10)  # not even the status line
    with Client(site["base"], token=site["token"]) as fresh:
        events = list(fresh.stream_agent("scripted", "once"))
        assert _content(events) == "Only once."
        runs = fresh.get_session(events[0].session_id).runs
    assert len(runs) == 1 and len(scripted_model.requests) == 1  # one run, one model call


def test_cancel_a_streamed_run(client, scripted_model):
    scripted_model.push_text(WORDS, chunk_delay=0.05)
    events = []
    for event in client.stream_agent("scripted", "go on"):
        events.append(event)
        if event.event == "RunContent" and len(events) == 3:
            assert client.cancel_run(event.run_id)["status"] in ("cancelling", "cancelled")
    assert events[-1].event == "RunCancelled"
    assert client.get_run(events[0].run_id).status == "cancelled"


def test_continue_a_paused_run_whole_and_streamed(client, scripted_model):
    scripted_model.push_tool_calls([CALC])
    paused = client.run_agent("careful", "6*7?")
    assert paused.is_paused and [t.tool_call_id for t in paused.tools] == ["k1"]
    scripted_model.push_text("It is 42.")
    done = client.continue_run(paused.run_id, [Decision("k1", "approve")])
    assert (done.status, done.content) == ("completed", "It is 42.")
    with pytest.raises(Conflict) as caught:
        client.continue_run(paused.run_id, [Decision("k1")])
    assert caught.value.code == "run_not_paused"

    scripted_model.push_tool_calls([CALC])
    first = list(client.stream_agent("careful", "again"))
    assert isinstance(first[-1], RunPaused) and first[-1].tools[0].tool_name == "calculator"
    scripted_model.push_text("Still 42.")
    rest = list(client.stream_continue(first[-1].run_id, [{"tool_call_id": "k1", "decision": "approve"}]))
    assert rest[0].event == "RunContinued" and rest[-1].event == "RunCompleted" and _content(rest) == "Still 42."
    assert [e.event_index for e in first + rest] == list(range(len(first) + len(rest)))


def test_errors_are_typed_and_carry_the_code(client, site):
    with pytest.raises(NotFound) as caught:
        client.run_agent("nope", "hi")
    assert (caught.value.code, caught.value.status) == ("unknown_agent", 404)
    from agentos_client import AuthenticationFailed, BadRequest

    with pytest.raises(BadRequest) as caught, Client(site["base"], token=site["token"]) as c:
        c.run_agent("demo", "")
    assert caught.value.code == "invalid" and "message" in caught.value.body
    with pytest.raises(AuthenticationFailed) as caught, Client(site["base"], token="wrong") as c:
        c.list_sessions()
    assert caught.value.code == "authentication_failed"


def test_a_429_is_retried_after_its_retry_after(site):
    waits: list[float] = []
    with Client(site["base"], token=site["token"]) as c:
        c.sleep = lambda seconds: (waits.append(seconds), time.sleep(seconds))  # type: ignore[assignment]
        for _ in range(3):  # on a machine so slow that a run outlasts the 1 s window, try again
            assert c.run_agent("limited", "one").status == "completed"
            assert c.run_agent("limited", "two").status == "completed"  # refused once, then after the wait
            if waits:
                break
    assert len(waits) >= 1 and all(0 < w <= 2 for w in waits)
    # A window that does not slide open during the test: no retry asked, or a wait too long to sleep.
    with Client(site["base"], token=site["token"]) as c:
        assert c.run_agent("hourly", "first").status == "completed"
    no_retry = RetryPolicy(max_retries=0)
    with Client(site["base"], token=site["token"], retry=no_retry) as c, pytest.raises(RateLimited) as caught:
        c.run_agent("hourly", "second")
    assert caught.value.code == "rate_limited" and caught.value.status == 429 and caught.value.retry_after > 60
    with Client(site["base"], token=site["token"]) as c:  # the default policy: at most 30 s of waiting
        c.sleep = lambda seconds: pytest.fail("slept")  # type: ignore[assignment]
        with pytest.raises(RateLimited):
            c.run_agent("hourly", "third")


def test_memories(client):
    memory = client.create_memory("My name is Ada.", topics=["name"])
    assert memory.memory == "My name is Ada." and memory.topics == ["name"]
    assert memory.memory_id in [m.memory_id for m in client.list_memories(topic="name").results]
    assert client.update_memory(memory.memory_id, memory="My name is Ada L.").memory == "My name is Ada L."
    client.delete_memory(memory.memory_id)
    with pytest.raises(NotFound):
        client.get_memory(memory.memory_id)


async def test_the_async_client_streams_resumes_and_cancels(site, scripted_model):
    proxy: CuttingProxy = site["proxy"]
    async with AsyncClient(site["base"], token=site["token"]) as c:
        scripted_model.push_text(WORDS, chunk_delay=0.02)
        cuts = proxy.cuts
        proxy.cut_next(after_bytes=1500)  # the client's first connection
        events = [e async for e in c.stream_agent("scripted", "count")]
        assert proxy.cuts == cuts + 1
        assert [e.event_index for e in events] == list(range(len(events))) and _content(events) == WORDS
        scripted_model.push_text("Async hello.")
        assert (await c.run_agent("scripted", "hi")).content == "Async hello."
        scripted_model.push_text(WORDS, chunk_delay=0.05)
        got = []
        async for event in c.stream_agent("scripted", "go"):
            got.append(event)
            if len(got) == 3:
                await c.cancel_run(event.run_id)
        assert got[-1].event == "RunCancelled"
        with pytest.raises(NotFound) as caught:
            await c.run_team("nope", "hi")
        assert caught.value.code == "unknown_team"

        scripted_model.push_tool_calls([CALC])
        paused = [e async for e in c.stream_agent("careful", "6*7?")]
        assert isinstance(paused[-1], RunPaused)
        scripted_model.push_text("42 it is.")
        decisions = [Decision("k1")]
        rest = [e async for e in c.stream_continue(paused[-1].run_id, decisions, after_event_index=1)]
        assert rest[0].event == "RunContinued" and _content(rest) == "42 it is."
        replay = [e async for e in c.events(paused[-1].run_id, after_event_index=0)]
        assert [e.event for e in replay] == [e.event for e in paused[1:] + rest]
        sessions = await c.list_sessions(agent_id="careful")
        assert paused[0].session_id in [s.session_id for s in sessions.results]


async def test_websocket_chat_streams_continues_the_session_cancels_and_resumes(site, scripted_model):
    proxy: CuttingProxy = site["proxy"]
    async with AsyncClient(site["base"], token=site["token"]) as c, c.chat("agent", "scripted") as chat:
        scripted_model.push_text("First answer.")
        first = [e async for e in chat.stream("hello")]
        assert first[-1].event == "RunCompleted" and _content(first) == "First answer."
        scripted_model.push_text("Second answer.")
        second = [e async for e in chat.stream("again")]
        assert second[-1].session_id == first[-1].session_id  # the socket keeps its session

        scripted_model.push_text(WORDS, chunk_delay=0.05)
        got = []
        async for event in chat.stream("long"):
            got.append(event)
            if len(got) == 3:
                await chat.cancel(event.run_id)
        assert got[-1].event == "RunCancelled"

    # A socket cut mid-answer is reopened and the run resumed from its last event_index.
    cuts = proxy.cuts
    proxy.cut_next(after_bytes=1200)  # past the handshake and a few frames
    async with AsyncClient(site["base"], token=site["token"]) as c, c.chat("agent", "scripted") as chat:
        scripted_model.push_text(WORDS, chunk_delay=0.03)
        events = [e async for e in chat.stream("count")]
    assert proxy.cuts == cuts + 1
    assert [e.event_index for e in events] == list(range(len(events))) and _content(events) == WORDS


async def test_a_websocket_resume_goes_on_past_a_pause_that_was_continued(site, scripted_model):
    """As SSE does: a pause the run was continued after is not the end of a resumed stream."""
    async with AsyncClient(site["base"], token=site["token"]) as c, c.chat("agent", "careful") as chat:
        scripted_model.push_tool_calls([CALC])
        paused = [e async for e in chat.stream("6*7?")]
        assert isinstance(paused[-1], RunPaused) and paused[-1].is_pause
        run_id = paused[-1].run_id
        scripted_model.push_text(WORDS, chunk_delay=0.03)
        # The continue's stream resumes from the pause this socket saw (no index passed).
        rest = []
        async for event in chat.continue_run(run_id, [Decision("k1", "approve")]):
            rest.append(event)
            if len(rest) == 4:  # mid-continuation: a second socket resumes from before the pause
                async with c.chat("agent", "careful") as other:
                    live = [e async for e in other.resume(run_id, after_event_index=0)]
        assert rest[0].event == "RunContinued" and rest[-1].event == "RunCompleted" and _content(rest) == WORDS
        whole = paused + rest
        assert [e.event_index for e in whole] == list(range(len(whole)))
        assert [e.event_index for e in live] == list(range(1, len(whole)))  # live: no gap, no duplicate
        assert live[-1].event == "RunCompleted" and _content(live) == WORDS
        assert live[len(paused) - 2].data.get("continued") is True  # the pause, as a replay marks it
        # Once it ended: replayed from the database, the same.
        stored = [e async for e in chat.resume(run_id, after_event_index=0)]
        assert [(e.event, e.event_index) for e in stored] == [(e.event, e.event_index) for e in live]


def test_the_sync_websocket_chat_streams_keeps_the_session_cancels_continues_and_resumes(site, scripted_model):
    from agentos_client import SyncChatSocket

    proxy: CuttingProxy = site["proxy"]
    with Client(site["base"], token=site["token"]) as c, c.chat("agent", "scripted") as chat:
        assert isinstance(chat, SyncChatSocket)
        scripted_model.push_text("First answer.")
        first = list(chat.stream("hello"))
        assert first[-1].event == "RunCompleted" and _content(first) == "First answer."
        scripted_model.push_text("Second answer.")
        second = list(chat.stream("again"))
        assert second[-1].session_id == first[-1].session_id  # the socket keeps its session
        scripted_model.push_text(WORDS, chunk_delay=0.05)
        got = []
        for event in chat.stream("long"):
            got.append(event)
            if len(got) == 3:
                chat.cancel(event.run_id)
        assert got[-1].event == "RunCancelled" and c.get_run(got[0].run_id).status == "cancelled"
        replay = list(chat.resume(got[0].run_id, after_event_index=1))
        assert [e.event_index for e in replay] == [e.event_index for e in got[2:]]

    with Client(site["base"], token=site["token"]) as c, c.chat("agent", "careful") as chat:
        scripted_model.push_tool_calls([CALC])
        paused = list(chat.stream("6*7?"))
        assert paused[-1].is_pause
        scripted_model.push_text("Sync 42.")
        rest = list(chat.continue_run(paused[-1].run_id, [Decision("k1", "approve")]))
        assert rest[0].event == "RunContinued" and _content(rest) == "Sync 42."
        assert [e.event_index for e in paused + rest] == list(range(len(paused) + len(rest)))

    # A socket cut mid-answer is reopened and the run resumed from its last event_index.
    cuts = proxy.cuts
    proxy.cut_next(after_bytes=1200)
    with Client(site["base"], token=site["token"]) as c, c.chat("agent", "scripted") as chat:
        scripted_model.push_text(WORDS, chunk_delay=0.03)
        events = list(chat.stream("count"))
    assert proxy.cuts == cuts + 1
    assert [e.event_index for e in events] == list(range(len(events))) and _content(events) == WORDS


def _client_cutting_the_continue(site: dict[str, Any], *, before_the_site: bool = False) -> Client:
    """A client whose `continue` POST is cut before its answer's first byte, or, `before_the_site`,
    before the request reaches the site (each request on a connection of its own, so the cut meets
    that one)."""
    import httpx

    proxy: CuttingProxy = site["proxy"]

    def hook(request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path.endswith("/continue"):
            if before_the_site:
                proxy.drop_next()
            else:
                proxy.cut_next(after_bytes=10)

    http = httpx.Client(
        base_url=site["base"],
        headers={"Authorization": f"Bearer {site['token']}"},
        event_hooks={"request": [hook]},
        limits=httpx.Limits(max_keepalive_connections=0),
        timeout=30,
    )
    return Client(site["base"], token=site["token"], http=http)


def test_stream_continue_recovers_a_drop_before_its_first_new_event(site, scripted_model):
    proxy: CuttingProxy = site["proxy"]
    # The client streamed the pause: it knows where to resume.
    with _client_cutting_the_continue(site) as c:
        scripted_model.push_tool_calls([CALC])
        paused = list(c.stream_agent("careful", "6*7?"))
        assert paused[-1].is_pause
        scripted_model.push_text("Recovered.", chunk_delay=0.05)
        cuts, calls = proxy.cuts, len(scripted_model.requests)
        rest = list(c.stream_continue(paused[-1].run_id, [Decision("k1", "approve")]))
        assert proxy.cuts == cuts + 1
    assert rest[0].event == "RunContinued" and _content(rest) == "Recovered."
    assert [e.event_index for e in paused + rest] == list(range(len(paused) + len(rest)))
    assert len(scripted_model.requests) == calls + 1  # continued once

    # A client that never saw the pause reads it from the run (`last_event_index`) first.
    with Client(site["base"], token=site["token"]) as c:
        scripted_model.push_tool_calls([CALC])
        paused = c.run_agent("careful", "again")
        assert paused.is_paused
    with _client_cutting_the_continue(site) as c:
        assert c.get_run(paused.run_id).data["last_event_index"] >= 1
        scripted_model.push_text("Recovered again.", chunk_delay=0.05)
        cuts = proxy.cuts
        rest = list(c.stream_continue(paused.run_id, [Decision("k1", "approve")]))
        assert proxy.cuts == cuts + 1
        replay = list(c.events(paused.run_id))
    assert rest[0].event == "RunContinued" and _content(rest) == "Recovered again."
    assert [e.event_index for e in rest] == [e.event_index for e in replay[-len(rest) :]]
    assert replay[-len(rest) - 1].event == "RunPaused" and replay[-len(rest) - 1].event_index + 1 == rest[0].event_index


def test_a_continue_that_never_reached_the_site_says_so_and_may_be_sent_again(site, scripted_model):
    from agentos_client import ConnectionFailed

    with _client_cutting_the_continue(site, before_the_site=True) as c:
        scripted_model.push_tool_calls([CALC])
        paused = list(c.stream_agent("careful", "6*7?"))
        with pytest.raises(ConnectionFailed, match="before the continue reached the site"):
            list(c.stream_continue(paused[-1].run_id, [Decision("k1", "approve")]))
        assert c.get_run(paused[-1].run_id).status == "paused"
    with Client(site["base"], token=site["token"]) as c:
        scripted_model.push_text("Second try.")
        rest = list(c.stream_continue(paused[-1].run_id, [Decision("k1", "approve")]))
    assert _content(rest) == "Second try." and rest[0].event_index == paused[-1].event_index + 1
