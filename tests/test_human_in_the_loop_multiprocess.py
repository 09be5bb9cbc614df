"""Human in the loop across processes: a run pauses in one server process and is continued through
another (two daphne processes on the Redis channel layer and one database, as behind a load
balancer), over REST and the websocket. Nothing a continue needs is in the pausing process's memory."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import without_bookkeeping
from tests.live_server import site_env, site_shell
from tests.redis_helpers import redis_namespace
from tests.test_multiprocess import TERMINAL, _next, _spawn, _ws

pytestmark = pytest.mark.slow

SEED = (
    "from django.core.management import call_command; call_command('migrate', verbosity=0); "
    "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token; "
    "from agents_app.models import Agent, AgentToolRequirement, ModelConfig, Team, TeamMember; "
    "u = User.objects.create_user('ada'); print(Token.objects.create(user=u).key); "
    "m = ModelConfig.objects.create(name='scripted', provider='openai', base_url='{base_url}', "
    "model_id='m', max_retries=0); a = Agent.objects.create(slug='careful', name='Careful', model=m, "
    "tools=['calculator']); "
    "AgentToolRequirement.objects.create(agent=a, tool='calculator', requirement='confirmation'); "
    "t = Team.objects.create(slug='desk', name='Desk', model=m, mode='coordinate'); "
    "TeamMember.objects.create(team=t, agent=a)"
)
CALC = {"name": "calculator", "arguments": {"expression": "6*7"}, "id": "k1"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, _scripted_server: Any) -> Iterator[dict[str, Any]]:
    with redis_namespace("hitl") as namespace:
        env = site_env(tmp_path_factory.mktemp("hitl") / "shared.sqlite3", namespace)
        out = site_shell(env, SEED.format(base_url=_scripted_server.base_url))
        procs: list[subprocess.Popen] = []
        try:
            ports = [_spawn(env, procs) for _ in range(2)]
            yield {"ports": ports, "token": out.strip().splitlines()[-1], "procs": procs}
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def _base(servers: dict[str, Any], which: int) -> str:
    return f"http://127.0.0.1:{servers['ports'][which]}"


async def test_a_run_paused_in_one_process_is_continued_over_rest_in_the_other(servers, scripted_model):
    headers = {"Authorization": f"Bearer {servers['token']}"}
    async with httpx.AsyncClient(headers=headers, timeout=10) as client:
        scripted_model.push_tool_calls([CALC])
        r = await client.post(f"{_base(servers, 0)}/api/agents/careful/runs", json={"message": "6*7?"})
        paused = r.json()
        assert (r.status_code, paused["status"], paused["tools"][0]["tool_call_id"]) == (200, "paused", "k1")

        scripted_model.push_text("It is 42.")
        approve = {"decisions": [{"tool_call_id": "k1", "decision": "approve"}]}
        url = f"/api/runs/{paused['run_id']}/continue"
        # Both processes at once: exactly one claims the run, the other is told it is not paused.
        answers = await asyncio.gather(
            client.post(f"{_base(servers, 1)}{url}", json=approve),
            client.post(f"{_base(servers, 0)}{url}", json=approve),
        )
        assert sorted(a.status_code for a in answers) == [200, 409]
        done = next(a for a in answers if a.status_code == 200).json()
        refused = next(a for a in answers if a.status_code == 409).json()
        assert (done["status"], done["content"], refused["code"]) == ("completed", "It is 42.", "run_not_paused")
        tool_results = [m for m in scripted_model.requests[-1]["messages"] if m["role"] == "tool"]
        assert [(m["tool_call_id"], m["content"]) for m in tool_results] == [("k1", "42")]
        # Either process replays the whole run: one stream through the pause.
        r = await client.get(f"{_base(servers, 0)}/api/runs/{paused['run_id']}/events")
        names = [json.loads(line[6:])["event"] for line in r.text.splitlines() if line.startswith("data: ")]
        assert without_bookkeeping(names) == [
            "RunStarted",
            "RunPaused",
            "RunContinued",
            "ToolCallStarted",
            "ToolCallCompleted",
            "RunCompleted",
        ]


async def test_a_websocket_client_of_the_other_process_continues_the_paused_run(servers, scripted_model):
    scripted_model.push_tool_calls([CALC])
    first = await _ws(servers, 0, "agents/careful")
    await first.send(json.dumps({"type": "run", "message": "6*7?"}))
    seen = [await _next(first)]
    while seen[-1]["event"] != "RunPaused":
        seen.append(await _next(first))
    assert without_bookkeeping([e["event"] for e in seen]) == ["RunStarted", "RunPaused"]
    await first.close()

    scripted_model.push_text("Forty-two.", chunk_delay=0.05)
    second = await _ws(servers, 1, "agents/careful")
    decisions = [{"tool_call_id": "k1", "decision": "approve"}]
    await second.send(json.dumps({"type": "continue", "run_id": seen[0]["run_id"], "decisions": decisions}))
    rest: list[dict[str, Any]] = []
    while not rest or rest[-1]["event"] not in TERMINAL:
        rest.append(await _next(second))
    await second.close()
    assert without_bookkeeping([e["event"] for e in rest])[:3] == [
        "RunContinued",
        "ToolCallStarted",
        "ToolCallCompleted",
    ]
    assert rest[-1]["event"] == "RunCompleted" and rest[-1]["content"] == "Forty-two."
    assert [e["event_index"] for e in seen + rest] == list(range(len(seen) + len(rest)))


async def test_a_team_paused_by_its_member_in_one_process_is_continued_in_the_other(servers, scripted_model):
    headers = {"Authorization": f"Bearer {servers['token']}"}
    delegate = {"name": "delegate_task_to_member", "arguments": {"member_id": "careful", "task": "6*7?"}, "id": "d1"}
    async with httpx.AsyncClient(headers=headers, timeout=10) as client:
        scripted_model.push_tool_calls([delegate])
        scripted_model.push_tool_calls([CALC])
        r = await client.post(f"{_base(servers, 0)}/api/teams/desk/runs", json={"message": "6*7?"})
        paused = r.json()
        assert (r.status_code, paused["status"], paused["tools"][0]["tool_call_id"]) == (200, "paused", "k1")

        scripted_model.push_text("42.")  # the member
        scripted_model.push_text("The answer is 42.")  # the leader
        approve = {"decisions": [{"tool_call_id": "k1", "decision": "approve"}]}
        url = f"/api/runs/{paused['run_id']}/continue"
        answers = await asyncio.gather(
            client.post(f"{_base(servers, 1)}{url}", json=approve),
            client.post(f"{_base(servers, 0)}{url}", json=approve),
        )
        assert sorted(a.status_code for a in answers) == [200, 409]
        done = next(a for a in answers if a.status_code == 200).json()
        assert (done["status"], done["content"]) == ("completed", "The answer is 42.")
        assert [(m["member_id"], m["status"]) for m in done["member_runs"]] == [("careful", "completed")]
