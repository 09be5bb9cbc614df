"""The Python client's evals (agentos_client, docs/python-client.md#evals) against a live server: one
daphne process on a SQLite file, seeded as a site owner would (migrate, agentos_demo), whose
embedded Celery worker (no broker) runs the eval cases on the offline model; reached through a TCP
proxy that can cut a connection mid-stream."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentos_client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    EvalCaseResult,
    NotFound,
    PermissionDenied,
)
from tests.cutting_proxy import CuttingProxy
from tests.live_server import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

SEED = (
    "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token; "
    "from agents_app.models import ModelConfig; "
    "print('member', Token.objects.create(user=User.objects.create_user('member')).key); "
    "print('offline', ModelConfig.objects.get(name='offline').pk)"
)
CALC = [{"name": "calculator", "arguments": {"expression": "6*7"}}]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db = tmp_path_factory.mktemp("client-evals") / "site.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "DJANGO_DEBUG": "false", "DJANGO_LOG_LEVEL": "ERROR"}
    for name in ("DJANGO_SETTINGS_MODULE", "REDIS_URL"):
        env.pop(name, None)

    def manage(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        ).stdout

    manage("migrate", "--noinput")
    token = re.search(r"API token for 'admin': (\w+)", manage("agentos_demo")).group(1)
    seeded = dict(re.findall(r"^(member|offline) (\w+)$", manage("shell", "-c", SEED), re.M))
    port = free_port()
    cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "agentos_site.asgi:application"]
    with serving(cmd, cwd=ROOT, env=env, probe_url=f"http://127.0.0.1:{port}/healthz"):
        proxy = CuttingProxy(port)
        try:
            yield {
                "base": proxy.base_url,
                "token": token,
                "member": seeded["member"],
                "offline": int(seeded["offline"]),
                "proxy": proxy,
            }
        finally:
            proxy.stop()


@pytest.fixture
def client(site: dict[str, Any]) -> Iterator[Client]:
    with Client(site["base"], token=site["token"]) as c:
        yield c


def test_a_suite_built_run_waited_for_read_and_compared(client, site):
    suite = client.create_eval_suite("client-maths", "Maths", agent="demo", description="From the client.")
    assert (suite.slug, suite.agent, suite.case_count, suite.last_score) == ("client-maths", "demo", 0, None)
    tools = client.create_eval_case("client-maths", "What is 6*7?", kind="reliability", expected_tool_calls=CALC)
    answer = client.create_eval_case("client-maths", "What is 6*7?", name="answers", expected_output="42")
    assert (tools.kind, tools.expected_tool_calls, answer.kind, answer.name) == (
        "reliability",
        CALC,
        "accuracy",
        "answers",
    )
    assert client.update_eval_case("client-maths", answer.case_id, name="answers 42").name == "answers 42"
    assert [c.case_id for c in client.list_eval_cases("client-maths").results] == [tools.case_id, answer.case_id]
    assert client.update_eval_suite("client-maths", name="Maths!").name == "Maths!"

    started = client.start_eval_run("client-maths", name="first", model=site["offline"])
    assert (started.status, started.cases_total, started.name) == ("queued", 2, "first")
    first = client.wait_eval_run("client-maths", started.eval_run_id)
    assert (first.status, first.score, first.progress, first.cases_passed, first.finished) == (
        "passed",
        100.0,
        1.0,
        2,
        True,
    )
    assert first.target_model and first.data["model_override"] == site["offline"]
    by_case = {r.case_id: r for r in first.results}
    assert isinstance(by_case[tools.case_id], EvalCaseResult)
    assert by_case[tools.case_id].tool_calls == CALC and by_case[tools.case_id].passed is True
    assert by_case[answer.case_id].expected == "42" and "42" in by_case[answer.case_id].actual
    assert all(r.status == "passed" and r.run_ids and r.duration > 0 for r in first.results)

    second = client.run_eval("client-maths", cases=[tools.case_id])  # start and wait in one call
    assert (second.status, second.cases_total, [r.case_id for r in second.results]) == ("passed", 1, [tools.case_id])
    comparison = client.compare_eval_runs("client-maths", first.eval_run_id, second.eval_run_id)
    assert (comparison.first.eval_run_id, comparison.second.eval_run_id) == (first.eval_run_id, second.eval_run_id)
    assert (comparison.first.cases_total, comparison.second.cases_total, comparison.second.score) == (2, 1, 100.0)
    cells = {c.case_id: c for c in comparison.cases}
    assert cells[tools.case_id].same and cells[tools.case_id].first["status"] == "passed"
    assert cells[answer.case_id].second is None and not cells[answer.case_id].same

    listed = client.list_eval_runs("client-maths").results
    assert [r.eval_run_id for r in listed] == [second.eval_run_id, first.eval_run_id]
    assert client.get_eval_suite("client-maths").last_score == 100.0
    with pytest.raises(Conflict) as caught:
        client.cancel_eval_run("client-maths", first.eval_run_id)
    assert (caught.value.code, caught.value.status) == ("eval_run_finished", 409)
    client.delete_eval_run("client-maths", second.eval_run_id)
    with pytest.raises(NotFound) as caught:
        client.get_eval_run("client-maths", second.eval_run_id)
    assert caught.value.code == "unknown_eval_run"
    client.delete_eval_case("client-maths", answer.case_id)
    with pytest.raises(NotFound):
        client.get_eval_case("client-maths", answer.case_id)
    client.delete_eval_suite("client-maths")
    with pytest.raises(NotFound) as caught:
        client.get_eval_suite("client-maths")
    assert caught.value.code == "unknown_eval_suite"


def test_bad_input_and_a_non_staff_token_are_typed_errors(client, site):
    with pytest.raises(BadRequest) as caught:
        client.create_eval_suite("targetless", "No target")
    assert (caught.value.code, caught.value.status) == ("invalid_eval", 400) and "agent" in caught.value.body
    client.create_eval_suite("bad-input", "Bad input", agent="demo")
    with pytest.raises(BadRequest) as caught:
        client.create_eval_case("bad-input", "hi", kind="reliability", expected_tool_calls=["launch_rockets"])
    assert caught.value.code == "invalid_eval"
    assert caught.value.body["expected_tool_calls"] == ["Unknown tool 'launch_rockets'."]
    with pytest.raises(BadRequest) as caught:
        client.start_eval_run("bad-input")
    assert caught.value.code == "invalid_eval" and caught.value.body["cases"] == ["The suite has no case to run."]
    client.create_eval_case("bad-input", "What is 6*7?", expected_output="42")
    with pytest.raises(BadRequest) as caught:
        client.start_eval_run("bad-input", version=999)
    assert caught.value.code == "invalid_eval" and caught.value.body["version"] == [
        "The target has no saved version 999."
    ]
    with pytest.raises(NotFound) as caught:
        client.start_eval_run("no-such-suite")
    assert caught.value.code == "unknown_eval_suite"

    with Client(site["base"], token=site["member"]) as member:
        with pytest.raises(PermissionDenied) as caught:
            member.list_eval_suites()
        assert (caught.value.code, caught.value.status) == ("permission_denied", 403)
        with pytest.raises(PermissionDenied):
            member.start_eval_run("demo-evals")
    assert [s.slug for s in client.list_eval_suites().results] == ["bad-input", "demo-evals"]


def test_the_progress_stream_cut_is_followed_again_without_a_gap_or_a_duplicate(site):
    """The stream has no index to resume after: a reconnect replays it (the finished cases, then
    the state now) and the client drops what it already yielded. Cut once while the cases run, and
    once in the replay of the finished eval run, after some of its cases."""
    proxy: CuttingProxy = site["proxy"]
    cut_at = {0: 1200, 2: 3000}  # the /events requests to cut, and after how many bytes of the answer
    streams: list[str] = []

    def cut(request: httpx.Request) -> None:
        if request.url.path.endswith("/events"):
            if len(streams) in cut_at:
                proxy.cut_next(after_bytes=cut_at[len(streams)])
            streams.append(str(request.url))

    http = httpx.Client(
        base_url=site["base"],
        headers={"Authorization": f"Bearer {site['token']}"},
        event_hooks={"request": [cut]},
        limits=httpx.Limits(max_keepalive_connections=0),  # each request on its own connection
        timeout=30,
    )
    cuts = proxy.cuts
    with Client(site["base"], token=site["token"], http=http) as c:
        started = c.start_eval_run("demo-evals")
        live = list(c.eval_events("demo-evals", started.eval_run_id))
        assert (proxy.cuts, len(streams)) == (cuts + 1, 2)
        whole = c.get_eval_run("demo-evals", started.eval_run_id)
        replay = list(c.eval_events("demo-evals", started.eval_run_id))
        assert (proxy.cuts, len(streams)) == (cuts + 2, 4)
    http.close()
    wanted = sorted(r.result_id for r in whole.results)
    for events in (live, replay):
        results = [e.result.result_id for e in events if e.event == "EvalCaseCompleted"]
        assert sorted(results) == wanted and len(results) == 4  # none missed, none twice
        progress = [(e.run.status, e.run.cases_done) for e in events if e.event == "EvalRunProgress"]
        assert len(set(progress)) == len(progress)
        assert [e.event for e in events].count("EvalRunCompleted") == 1 and events[-1].is_terminal
        assert events[-1].run.status == whole.status == "passed"
    assert [e.event for e in replay] == ["EvalCaseCompleted"] * 4 + ["EvalRunProgress", "EvalRunCompleted"]


async def test_the_async_client_creates_runs_waits_and_compares(site):
    async with AsyncClient(site["base"], token=site["token"]) as c:
        await c.create_eval_suite("async-maths", "Async maths", agent="demo")
        case = await c.create_eval_case("async-maths", "What is 6*7?", kind="reliability", expected_tool_calls=CALC)
        started = await c.start_eval_run("async-maths")
        frames = [e.event async for e in c.eval_events("async-maths", started.eval_run_id)]
        assert frames[0] in ("EvalRunProgress", "EvalCaseCompleted") and frames[-1] == "EvalRunCompleted"
        first = await c.wait_eval_run("async-maths", started.eval_run_id)
        assert (first.status, [r.case_id for r in first.results]) == ("passed", [case.case_id])
        second = await c.run_eval("async-maths", name="again")
        assert (second.status, second.name) == ("passed", "again")
        comparison = await c.compare_eval_runs("async-maths", first.eval_run_id, second.eval_run_id)
        assert [x.same for x in comparison.cases] == [True]
        with pytest.raises(BadRequest) as caught:
            await c.update_eval_case("async-maths", case.case_id, expected_tool_calls=["launch_rockets"])
        assert caught.value.code == "invalid_eval" and "expected_tool_calls" in caught.value.body
        await c.delete_eval_suite("async-maths")

        running = await c.start_eval_run("demo-evals")  # four cases, eleven target runs: cancelled long before
        assert (await c.cancel_eval_run("demo-evals", running.eval_run_id)).status == "cancelled"
        assert (await c.wait_eval_run("demo-evals", running.eval_run_id)).status == "cancelled"
