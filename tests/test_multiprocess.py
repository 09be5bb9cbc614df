"""Two server processes (daphne) on the Redis channel layer and one database, as behind a load
balancer: a client of one process resumes, or cancels, a run that executes in the other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import free_port, site_env, site_shell
from tests.redis_helpers import RedisNamespace, redis_namespace

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
TERMINAL = {"RunCompleted", "RunError", "RunCancelled"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, _scripted_server: Any) -> Iterator[dict[str, Any]]:
    # The test Redis (tests/redis_helpers.py): the servers' channel layer writes under a prefix of
    # this module's own, deleted at the end.
    with redis_namespace("multiprocess") as namespace:
        yield from _servers(tmp_path_factory, _scripted_server, namespace)


def _servers(
    tmp_path_factory: pytest.TempPathFactory, _scripted_server: Any, namespace: RedisNamespace
) -> Iterator[dict[str, Any]]:
    env = site_env(tmp_path_factory.mktemp("multi") / "shared.sqlite3", namespace)
    out = site_shell(
        env,
        "from django.core.management import call_command; call_command('migrate', verbosity=0); "
        "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token; "
        "from agents_app.models import Agent, ModelConfig; "
        "u = User.objects.create_user('ada'); print(Token.objects.create(user=u).key); "
        f"m = ModelConfig.objects.create(name='scripted', provider='openai', base_url='{_scripted_server.base_url}', "
        "model_id='m', max_retries=0); a = Agent.objects.create(slug='slow', name='Slow', model=m); "
        "from agents_app.models import Team, TeamMember; "
        "t = Team.objects.create(slug='crew', name='Crew', model=m, mode='route'); "
        "TeamMember.objects.create(team=t, agent=a)",
    )
    token = out.strip().splitlines()[-1]
    procs: list[subprocess.Popen] = []
    try:
        ports = [_spawn(env, procs) for _ in range(2)]
        yield {"ports": ports, "token": token, "env": env, "procs": procs}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _spawn(env: dict[str, str], procs: list[subprocess.Popen]) -> int:
    """One more daphne process on the shared database; its port once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "agentos_site.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    procs.append(proc)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/agents/", timeout=1)
            return port
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("daphne did not start: " + proc.stderr.read().decode()[-2000:])
            time.sleep(0.1)


async def _ws(servers: dict[str, Any], which: int, path: str = "agents/slow", port: int | None = None) -> Any:
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port or servers['ports'][which]}/ws/{path}/"
    return await connect(
        url, subprotocols=["agentos", f"token.{servers['token']}"], open_timeout=5
    )  # no Origin: an app


async def _next(ws: Any, timeout: float = 10) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def _start_slow_run(servers: dict[str, Any], scripted_model: Any, words: str) -> tuple[Any, list[dict]]:
    scripted_model.push_text(words, chunk_delay=0.08)
    first = await _ws(servers, 0)
    await first.send(json.dumps({"type": "run", "message": "talk slowly"}))
    seen = [await _next(first) for _ in range(3)]  # RunStarted, ModelRequestStarted, a token, from process 0
    assert [e["event"] for e in seen] == ["RunStarted", "ModelRequestStarted", "RunContent"]
    return first, seen


async def test_a_client_of_the_other_process_resumes_the_run(servers, scripted_model):
    words = " ".join(f"w{i}" for i in range(25))
    first, seen = await _start_slow_run(servers, scripted_model, words)
    await first.close()  # the client's connection drops; its next one lands on the other process
    second = await _ws(servers, 1)
    await second.send(json.dumps({"type": "resume", "run_id": seen[0]["run_id"], "after_event_index": 2}))
    rest = []
    while not rest or rest[-1]["event"] not in TERMINAL:
        rest.append(await _next(second))
    await second.close()
    events = seen + rest
    assert [e["event_index"] for e in events] == list(range(len(events)))
    assert "".join(e["content"] for e in events if e["event"] == "RunContent") == words
    assert rest[-1]["event"] == "RunCompleted" and rest[-1]["content"] == words
    # Over REST too, from either process, once it is over.
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {servers['token']}"}) as client:
        r = await client.get(
            f"http://127.0.0.1:{servers['ports'][1]}/api/runs/{seen[0]['run_id']}/events?after_event_index=20"
        )
    replayed = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert replayed == events[21:]


async def test_a_client_of_the_other_process_cancels_the_run(servers, scripted_model):
    words = " ".join(f"w{i}" for i in range(60))
    first, seen = await _start_slow_run(servers, scripted_model, words)
    run_id = seen[0]["run_id"]
    # SSE resume from process 1 while the run goes on in process 0...
    base1 = f"http://127.0.0.1:{servers['ports'][1]}"
    headers = {"Authorization": f"Bearer {servers['token']}"}
    async with httpx.AsyncClient(headers=headers, timeout=10) as client:

        async def follow() -> list[dict[str, Any]]:
            got = []
            async with client.stream("GET", f"{base1}/api/runs/{run_id}/events?after_event_index=0") as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        got.append(json.loads(line[6:]))
            return got

        follower = asyncio.ensure_future(follow())
        await asyncio.sleep(0.3)
        # ...and a websocket client of process 1 cancels it.
        second = await _ws(servers, 1)
        await second.send(json.dumps({"type": "cancel", "run_id": run_id}))
        assert await _next(second) == {"event": "CancelRequested", "run_id": run_id, "status": "cancelling"}
        await second.close()
        tail = []
        while not tail or tail[-1]["event"] not in TERMINAL:
            tail.append(await _next(first))
        assert tail[-1]["event"] == "RunCancelled"
        followed = await asyncio.wait_for(follower, 10)
        assert followed[-1]["event"] == "RunCancelled"
        assert [e["event_index"] for e in followed] == list(range(1, len(followed) + 1))
        run = (await client.get(f"{base1}/api/runs/{run_id}/")).json()
        assert run["status"] == "cancelled"
        assert run["content"].startswith("w0 w1") and not run["content"].endswith("w59")
        # Cancelling through the REST endpoint of either process is idempotent now.
        r = await client.post(f"http://127.0.0.1:{servers['ports'][0]}/api/runs/{run_id}/cancel")
        assert (r.status_code, r.json()["status"]) == (202, "cancelled")
    await first.close()


async def test_a_team_run_is_resumed_and_cancelled_from_the_other_process(servers, scripted_model):
    words = " ".join(f"w{i}" for i in range(40))
    scripted_model.push_tool_calls([{"name": "route_to_member", "arguments": {"member_id": "slow"}, "id": "r"}])
    scripted_model.push_text(words, chunk_delay=0.08)
    first = await _ws(servers, 0, "teams/crew")
    await first.send(json.dumps({"type": "run", "message": "talk slowly"}))
    seen = [await _next(first) for _ in range(8)]
    assert [e["event"] for e in seen] == [
        "TeamRunStarted",
        "TeamModelRequestStarted",
        "TeamModelRequestCompleted",
        "TeamToolCallStarted",
        "RunStarted",
        "ModelRequestStarted",
        "RunContent",
        "RunContent",
    ]
    await first.close()
    team_run, member_run = seen[0]["run_id"], seen[4]["run_id"]
    # Resumed from the other process: the member's events, then the team's end (a member's own
    # RunCompleted does not end the team's stream there either).
    second = await _ws(servers, 1, "teams/crew")
    await second.send(json.dumps({"type": "resume", "run_id": team_run, "after_event_index": 7}))
    rest = [await _next(second) for _ in range(3)]
    assert [e["event_index"] for e in rest] == [8, 9, 10]
    assert {e["parent_run_id"] for e in rest} == {team_run}
    # Cancelling the member's run from that process stops the team run in the first one.
    await second.send(json.dumps({"type": "cancel", "run_id": member_run}))
    # The acknowledgement answers the command and the run's events come from the stream's own task:
    # the cancellation can travel to process 0 and back before the acknowledgement is written, so
    # it may arrive on either side of the terminal event.
    frames: list[dict[str, Any]] = []
    while {"CancelRequested", "TeamRunCancelled"} - {f.get("event") for f in frames}:
        frames.append(await _next(second))
    await second.close()
    names = [f["event"] for f in frames]
    assert "RunCancelled" in names
    assert names.index("RunCancelled") < names.index("TeamRunCancelled")


async def _read_until_terminal(ws: Any, timeout: float) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1].get("event") not in TERMINAL:
        frames.append(await _next(ws, timeout))
    return frames


async def test_a_process_killed_mid_stream_is_taken_over(servers, scripted_model):
    """SIGKILL the process streaming a run: a resumer on another process (websocket and SSE) gets a
    terminal event at the next event_index within the takeover bound, the stored run keeps what was
    streamed (checkpoints), and the next message into the session is answered at once."""
    victim = _spawn(servers["env"], servers["procs"])
    proc = servers["procs"][-1]
    words = " ".join(f"w{i}" for i in range(300))
    scripted_model.push_text(words, chunk_delay=0.03)
    first = await _ws(servers, 0, port=victim)
    await first.send(json.dumps({"type": "run", "message": "talk slowly"}))
    seen = [await _next(first) for _ in range(3)]
    run_id, session_id = seen[0]["run_id"], seen[0]["session_id"]
    base1 = f"http://127.0.0.1:{servers['ports'][1]}"
    headers = {"Authorization": f"Bearer {servers['token']}"}
    # Followers on process 1: a websocket resumer and an SSE one.
    second = await _ws(servers, 1)
    await second.send(json.dumps({"type": "resume", "run_id": run_id, "after_event_index": 2}))
    followed = [await _next(second) for _ in range(60)]  # about 2 s of streaming: checkpoints exist
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        sse: list[dict[str, Any]] = []

        async def follow_sse() -> None:
            url = f"{base1}/api/runs/{run_id}/events?after_event_index=0"
            async with client.stream("GET", url) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        sse.append(json.loads(line[6:]))

        sse_task = asyncio.ensure_future(follow_sse())
        while len(sse) < 10:
            await asyncio.sleep(0.05)
        proc.kill()  # SIGKILL: no shutdown code runs
        killed = time.monotonic()
        rest = await _read_until_terminal(second, timeout=30)
        took_over = time.monotonic() - killed
        await asyncio.wait_for(sse_task, 30)
        await second.close()
        ws_events = seen + followed + rest
        terminal = rest[-1]
        print(f"\ntakeover after SIGKILL: {took_over:.1f} s")
        assert (terminal["event"], terminal["error_type"]) == ("RunError", "interrupted")
        # The terminal event follows the last event this resumer saw; nothing is skipped before it.
        assert [e["event_index"] for e in ws_events] == list(range(len(ws_events)))
        assert sse[-1] == {**terminal} or (sse[-1]["event"], sse[-1]["error_type"]) == ("RunError", "interrupted")
        assert sse[-1]["event_index"] > sse[-2]["event_index"]
        assert took_over < 15, took_over  # the bound is PROCESS_DEAD_SECONDS (6) + a heartbeat (2)
        # The stored run keeps what was streamed, up to its last checkpoint (at most 1 s behind).
        streamed = "".join(e["content"] for e in ws_events if e["event"] == "RunContent")
        run = (await client.get(f"{base1}/api/runs/{run_id}/")).json()
        assert run["status"] == "error" and run["content"], run
        # At most a checkpoint period behind: 1 s of 30 ms words is 34 words; 16 more for scheduling.
        behind = len(streamed.split()) - len(run["content"].split())
        assert streamed.startswith(run["content"]) and 0 <= behind <= 50, (behind, run["content"])
        # The session is free: the next message into it is answered at once.
        scripted_model.push_text("still here")
        started = time.monotonic()
        r = await client.post(
            f"{base1}/api/agents/slow/runs", json={"message": "are you there?", "session_id": session_id}
        )
        assert r.status_code == 200, r.text
        assert r.json()["content"] == "still here"
        assert time.monotonic() - started < 5
    await first.close()  # (its server is gone: this waits for the close timeout)


async def test_the_next_message_after_a_kill_waits_only_for_the_takeover(servers, scripted_model):
    """No resumer: the next message, sent right after its process was killed, finds the session held
    by the dead run; it takes the run over (its owner no longer answers) and is answered."""
    victim = _spawn(servers["env"], servers["procs"])
    proc = servers["procs"][-1]
    scripted_model.push_text(" ".join(f"w{i}" for i in range(300)), chunk_delay=0.03)
    first = await _ws(servers, 0, port=victim)
    await first.send(json.dumps({"type": "run", "message": "talk slowly"}))
    seen = [await _next(first) for _ in range(40)]
    proc.kill()
    killed = time.monotonic()
    await asyncio.sleep(1.5)
    scripted_model.push_text("answered")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {servers['token']}"}, timeout=60) as client:
        base1 = f"http://127.0.0.1:{servers['ports'][1]}"
        r = await client.post(
            f"{base1}/api/agents/slow/runs", json={"message": "next", "session_id": seen[0]["session_id"]}
        )
        answered = time.monotonic() - killed
        print(f"\nnext message answered {answered:.1f} s after the kill")
        assert r.status_code == 200 and r.json()["content"] == "answered", r.text
        assert answered < 15, answered
        lost = (await client.get(f"{base1}/api/runs/{seen[0]['run_id']}/")).json()
        assert lost["status"] == "error" and lost["content"].startswith("w0 w1")
    await first.close()


async def test_a_process_without_the_channel_layer_answers_clearly(servers, scripted_model):
    """One process cannot reach Redis: resuming a run of another process still streams every event
    (from the run's checkpoints), and cancelling it is a 503 with a code, not a 500."""
    dead_redis = free_port()  # nothing listens there
    broken = _spawn({**servers["env"], "REDIS_URL": f"redis://127.0.0.1:{dead_redis}/0"}, servers["procs"])
    words = " ".join(f"w{i}" for i in range(80))
    first, seen = await _start_slow_run(servers, scripted_model, words)
    run_id = seen[0]["run_id"]
    base = f"http://127.0.0.1:{broken}"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {servers['token']}"}, timeout=30) as client:
        r = await client.post(f"{base}/api/runs/{run_id}/cancel")
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "channel_layer_unavailable" and r.json()["detail"]
        ws = await _ws(servers, 0, port=broken)
        await ws.send(json.dumps({"type": "cancel", "run_id": run_id}))
        frame = await _next(ws)
        assert (frame["event"], frame["code"]) == ("Error", "channel_layer_unavailable")
        # The socket still answers, and resuming through it works.
        await ws.send(json.dumps({"type": "resume", "run_id": run_id, "after_event_index": 2}))
        rest = await _read_until_terminal(ws, timeout=30)
        await ws.close()
        events = seen + rest
        assert [e["event_index"] for e in events] == list(range(len(events)))
        assert rest[-1]["event"] == "RunCompleted" and rest[-1]["content"] == words
        r = await client.get(f"{base}/api/runs/{run_id}/events?after_event_index=-1")
        replayed = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
        assert replayed == events
    await first.close()


async def test_a_dead_broker_does_not_hold_up_a_run_with_a_background_hook(servers, scripted_model):
    """The Celery broker is unreachable from this process: a run whose agent has a background hook
    is answered as usual (publishing gives up within CELERY_BROKER_CONNECTION_TIMEOUT), and its
    hook execution stays queued for the sweep, with a warning logged."""
    env = servers["env"]
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from agents_app.models import Agent, AgentHook; a = Agent.objects.get(slug='slow'); "
            "h = Agent.objects.create(slug='hooked', name='Hooked', model=a.model); "
            "AgentHook.objects.create(agent=h, phase='pre', hook='track_topics')",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    dead_broker = free_port()
    port = _spawn(
        {
            **env,
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{dead_broker}/0",
            "AGENTOS_HOOKS_EMBEDDED_WORKER": "false",
        },
        servers["procs"],
    )
    scripted_model.push_text("answered anyway")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {servers['token']}"}, timeout=30) as client:
        started = time.monotonic()
        r = await client.post(f"http://127.0.0.1:{port}/api/agents/hooked/runs", json={"message": "tea and maps"})
        took = time.monotonic() - started
    assert r.status_code == 200 and r.json()["content"] == "answered anyway", r.text
    assert took < 8, took
    db = env["DATABASE_URL"].removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT hook_name, status FROM agents_app_hookexecution").fetchall()
    assert rows == [("track_topics", "queued")]
