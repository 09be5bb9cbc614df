"""agno's own client against our site: a live server (runserver, i.e. daphne) in a subprocess on a
temporary SQLite file, driven by `agno.client.AgentOSClient` and `agno.agent.RemoteAgent` from the
`agno` package (a test-only dependency, pinned in requirements-dev.txt), exactly as a team that
moves from agno's FastAPI server would keep calling it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from agno.agent import RemoteAgent
from agno.client import AgentOSClient
from agno.db.base import SessionType
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.utils.http import aclose_default_clients

from tests.live_server import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

# One process migrates the temporary database and seeds it (each manage.py start costs seconds).
SEED = """
import json
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from agents_app.models import Agent, ModelConfig
User = get_user_model()
alice = User.objects.create_user("alice")  # no password: tokens only (and no slow hashing)
mallory = User.objects.create_user("mallory")
offline = ModelConfig.objects.create(name="offline", provider="offline", model_id="offline-demo")
scripted = ModelConfig.objects.create(
    name="scripted", provider="openai", base_url="{base_url}", model_id="scripted-model", max_retries=0
)
Agent.objects.create(slug="demo", name="Demo", model=offline, tools=["calculator"])
Agent.objects.create(slug="scripted", name="Scripted", model=scripted, instructions="Be brief.")
from sessions_app.tokens import token_create
# A scoped API token of alice's (docs/api.md#api-tokens), limited to the demo agent.
scoped = token_create(user=alice, name="agno client", agents=["demo"], expires_at=None)[1]
print(json.dumps({{
    "alice": Token.objects.create(user=alice).key, "mallory": Token.objects.create(user=mallory).key, "scoped": scoped
}}))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, _scripted_server) -> Iterator[dict]:
    db = tmp_path_factory.mktemp("agno") / "site.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "DJANGO_DEBUG": "false", "DJANGO_LOG_LEVEL": "ERROR"}
    env.pop("DJANGO_SETTINGS_MODULE", None)

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )
        return done.stdout

    tokens = json.loads(manage("shell", "-c", SEED.format(base_url=_scripted_server.base_url)).strip().splitlines()[-1])
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/os"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        server.kill()
        pytest.fail("runserver did not start: " + server.stderr.read().decode()[-2000:])
    yield {
        "base": base,
        "token": tokens["alice"],
        "alice": {"Authorization": f"Bearer {tokens['alice']}"},
        "mallory": {"Authorization": f"Bearer {tokens['mallory']}"},
        "scoped_token": tokens["scoped"],
        "scoped": {"Authorization": f"Bearer {tokens['scoped']}"},
    }
    server.terminate()
    server.wait(10)


@pytest.fixture
async def client(site) -> AsyncIterator[AgentOSClient]:
    yield AgentOSClient(base_url=site["base"], timeout=10)
    # agno keeps one global httpx client; it must not outlive this test's event loop.
    await aclose_default_clients()


async def test_list_and_get_agents_and_config(client, site):
    agents = await client.list_agents(headers=site["alice"])
    assert [(a.id, a.name, a.model.id, a.model.provider) for a in agents] == [
        ("demo", "Demo", "offline-demo", "offline"),
        ("scripted", "Scripted", "scripted-model", "openai"),
    ]
    demo = await client.aget_agent("demo", headers=site["alice"])
    assert demo.name == "Demo" and [t["name"] for t in demo.tools["tools"]] == ["calculator"]
    config = client.get_config(headers=site["alice"])  # agno's sync call
    assert [a.id for a in config.agents] == ["demo", "scripted"]
    with pytest.raises(httpx.HTTPStatusError) as missing:
        await client.aget_agent("nope", headers=site["alice"])
    assert missing.value.response.status_code == 404
    with pytest.raises(httpx.HTTPStatusError) as anonymous:
        await client.list_agents()
    assert anonymous.value.response.status_code == 401


async def test_run_without_streaming(client, site):
    out = await client.run_agent("demo", "what is 6*7?", headers=site["alice"])
    assert isinstance(out, RunOutput)
    assert out.status == RunStatus.completed
    assert out.content == "[offline demo model] I used my tools: calculator returned 42."
    assert [t.tool_name for t in out.tools] == ["calculator"] and out.tools[0].result == "42"
    assert out.agent_id == "demo" and out.session_id and out.run_id


async def test_run_streaming_and_continue_the_session(client, site, scripted_model):
    scripted_model.push_text("Nice to meet you, Ada.")
    scripted_model.push_text("You are Ada.")
    events = [e async for e in client.run_agent_stream("scripted", "I am Ada", headers=site["alice"])]
    names = [e.event for e in events]
    assert names[0] == "RunStarted" and names[-1] == "RunCompleted" and names.count("RunContent") >= 2
    assert "".join(e.content for e in events if e.event == "RunContent") == "Nice to meet you, Ada."
    assert events[-1].content == "Nice to meet you, Ada." and events[-1].metrics.total_tokens > 0
    session_id = events[0].session_id
    second = [
        e async for e in client.run_agent_stream("scripted", "who am I?", session_id=session_id, headers=site["alice"])
    ]
    assert second[-1].content == "You are Ada." and second[-1].session_id == session_id
    sent = [(m["role"], m["content"]) for m in scripted_model.requests[-1]["messages"]]
    assert sent == [
        ("system", "Be brief."),
        ("user", "I am Ada"),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "who am I?"),
    ]

    runs = await client.get_session_runs(session_id, headers=site["alice"])
    assert [(r.run_input, r.content, r.status) for r in runs] == [
        ("I am Ada", "Nice to meet you, Ada.", "COMPLETED"),
        ("who am I?", "You are Ada.", "COMPLETED"),
    ]


async def test_list_rename_and_delete_a_session(client, site, scripted_model):
    scripted_model.push_text("Rome is lovely.")
    out = await client.run_agent("scripted", "Plan a trip to Rome", headers=site["alice"])
    page = await client.get_sessions(session_type=SessionType.AGENT, component_id="scripted", headers=site["alice"])
    assert out.session_id in [s.session_id for s in page.data]
    assert page.meta.total_count == len(page.data) and page.meta.page == 1
    theirs = await client.get_sessions(headers=site["mallory"])
    assert theirs.data == [] and theirs.meta.total_count == 0

    renamed = await client.rename_session(out.session_id, "Rome, May", headers=site["alice"])
    assert renamed.session_name == "Rome, May" and renamed.agent_id == "scripted"
    again = await client.get_session(out.session_id, headers=site["alice"])
    assert again.session_name == "Rome, May"
    assert [(m["role"], m["content"]) for m in again.chat_history] == [
        ("user", "Plan a trip to Rome"),
        ("assistant", "Rome is lovely."),
    ]
    with pytest.raises(httpx.HTTPStatusError) as not_theirs:
        await client.delete_session(out.session_id, headers=site["mallory"])
    assert not_theirs.value.response.status_code == 404

    await client.delete_session(out.session_id, headers=site["alice"])
    with pytest.raises(httpx.HTTPStatusError) as gone:
        await client.get_session(out.session_id, headers=site["alice"])
    assert gone.value.response.status_code == 404


async def test_cancel_a_running_run(client, site, scripted_model):
    words = " ".join(f"word{i}" for i in range(40))
    scripted_model.push_text(words, chunk_delay=0.2)  # about 8 s if nobody stops it
    started = time.monotonic()
    events = []
    async for event in client.run_agent_stream("scripted", "talk slowly", headers=site["alice"]):
        events.append(event)
        if event.event == "RunContent" and sum(e.event == "RunContent" for e in events) == 2:
            await client.cancel_agent_run("scripted", event.run_id, headers=site["alice"])
    assert events[-1].event == "RunCancelled" and events[-1].is_cancelled
    assert time.monotonic() - started < 5
    partial = "".join(e.content for e in events if e.event == "RunContent")
    assert words.startswith(partial) and 0 < len(partial) < len(words)

    runs = await client.get_session_runs(events[0].session_id, headers=site["alice"])
    assert [(r.status, r.content) for r in runs] == [("CANCELLED", partial)]
    # Cancelling a finished run changes nothing; another user's run is not found.
    await client.cancel_agent_run("scripted", events[0].run_id, headers=site["alice"])
    with pytest.raises(httpx.HTTPStatusError) as not_theirs:
        await client.cancel_agent_run("scripted", events[0].run_id, headers=site["mallory"])
    assert not_theirs.value.response.status_code == 404


async def test_remote_agent_runs_here(site, scripted_model):
    scripted_model.push_text("Hello from Django.")
    remote = RemoteAgent(base_url=site["base"], agent_id="scripted", timeout=10)
    try:
        out = await remote.arun("hi", stream=False, auth_token=site["token"])
    finally:
        await aclose_default_clients()
    assert out.status == RunStatus.completed and out.content == "Hello from Django."


async def test_memories_with_agnos_client(client, site):
    made = await client.create_memory(
        "The user likes green tea.", user_id="ignored", topics=["Drinks"], headers=site["alice"]
    )
    assert made.memory == "The user likes green tea." and made.topics == ["drinks"] and made.user_id != "ignored"
    other = await client.create_memory("The user runs marathons.", "ignored", topics=["sport"], headers=site["alice"])
    page = await client.list_memories(topics=["drinks"], headers=site["alice"])
    assert [m.memory_id for m in page.data] == [made.memory_id] and page.meta.total_count == 1
    found = await client.list_memories(search_content="MARATHON", headers=site["alice"])
    assert [m.memory_id for m in found.data] == [other.memory_id]
    assert (await client.list_memories(headers=site["mallory"])).data == []
    assert sorted(await client.get_memory_topics(headers=site["alice"])) == ["drinks", "sport"]

    updated = await client.update_memory(
        made.memory_id, "The user likes oolong.", "ignored", topics=["tea"], headers=site["alice"]
    )
    assert (updated.memory, updated.topics) == ("The user likes oolong.", ["tea"])
    assert (await client.get_memory(made.memory_id, headers=site["alice"])).memory == "The user likes oolong."
    for call in (
        client.get_memory(made.memory_id, headers=site["mallory"]),
        client.update_memory(made.memory_id, "hacked", "ignored", headers=site["mallory"]),
        client.delete_memory(made.memory_id, headers=site["mallory"]),
    ):
        with pytest.raises(httpx.HTTPStatusError) as not_theirs:
            await call
        assert not_theirs.value.response.status_code == 404
    await client.delete_memories([made.memory_id, other.memory_id], headers=site["mallory"])  # not theirs: no-op
    assert (await client.list_memories(headers=site["alice"])).meta.total_count == 2
    await client.delete_memory(made.memory_id, headers=site["alice"])
    await client.delete_memories([other.memory_id], headers=site["alice"])
    assert (await client.list_memories(headers=site["alice"])).data == []


async def test_agnos_client_with_a_scoped_api_token(client, site):
    """agno's client sends our scoped API tokens like any Bearer token; the token's limits hold."""
    agents = await client.list_agents(headers=site["scoped"])
    assert [a.id for a in agents] == ["demo"]
    with pytest.raises(httpx.HTTPStatusError) as outside:
        await client.aget_agent("scripted", headers=site["scoped"])
    assert outside.value.response.status_code == 404
    with pytest.raises(httpx.HTTPStatusError) as outside:
        await client.run_agent("scripted", "hi", headers=site["scoped"])
    assert outside.value.response.status_code == 404
    out = await client.run_agent("demo", "what is 6*7?", headers=site["scoped"])
    assert out.status == RunStatus.completed and out.agent_id == "demo"
    remote = RemoteAgent(base_url=site["base"], agent_id="demo", timeout=10)
    try:
        out = await remote.arun("what is 6*7?", stream=False, auth_token=site["scoped_token"])
    finally:
        await aclose_default_clients()
    assert out.status == RunStatus.completed and out.content.endswith("calculator returned 42.")
