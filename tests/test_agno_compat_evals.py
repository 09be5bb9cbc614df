"""agno's eval client methods against our site: a live server (runserver) on a temporary SQLite file,
its cases run on the server process's embedded Celery worker, driven by `agno.client.AgentOSClient`
(run_eval, list_eval_runs, get_eval_run, update_eval_run, delete_eval_runs), as in
tests/test_agno_compat_client.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from agno.client import AgentOSClient
from agno.db.schemas.evals import EvalFilterType, EvalType
from agno.utils.http import aclose_default_clients

from tests.live_server import agno_site

pytestmark = pytest.mark.slow

SEED = """
import json
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from agents_app.models import Agent, ModelConfig
User = get_user_model()
staff = User.objects.create_user("ops", is_staff=True)
alice = User.objects.create_user("alice")
offline = ModelConfig.objects.create(name="offline", provider="offline", model_id="offline-demo")
Agent.objects.create(slug="demo", name="Demo", model=offline, tools=["calculator"])
print(json.dumps({"staff": Token.objects.create(user=staff).key, "alice": Token.objects.create(user=alice).key}))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    db = tmp_path_factory.mktemp("agno-evals") / "site.sqlite3"
    with agno_site(db, SEED, ready=lambda response: True) as site:
        yield site


@pytest.fixture
async def client(site) -> AsyncIterator[AgentOSClient]:
    yield AgentOSClient(base_url=site["base"], timeout=60)
    await aclose_default_clients()


async def test_agno_eval_client_methods(client, site):
    staff = site["staff"]
    reliability = await client.run_eval(
        eval_type=EvalType.RELIABILITY,
        input_text="What is 6*7?",
        agent_id="demo",
        expected_tool_calls=["calculator"],
        expected_tool_call_arguments={"calculator": {"expression": "6*7"}},
        headers=staff,
    )
    assert reliability is not None and reliability.eval_type == EvalType.RELIABILITY
    assert reliability.agent_id == "demo" and reliability.model_id == "offline-demo"
    data = reliability.eval_data
    assert (data["status"], data["passed"], data["eval_status"], data["score"]) == ("passed", True, "PASSED", 100.0)
    assert data["results"][0]["tool_calls"] == [{"name": "calculator", "arguments": {"expression": "6*7"}}]

    accuracy = await client.run_eval(
        eval_type=EvalType.ACCURACY,
        input_text="What is 6*7?",
        agent_id="demo",
        expected_output="42",
        num_iterations=2,
        headers=staff,
    )
    assert accuracy.eval_data["status"] == "passed" and accuracy.eval_data["avg_score"] == 10
    performance = await client.run_eval(
        eval_type=EvalType.PERFORMANCE, input_text="hello", agent_id="demo", num_iterations=3, headers=staff
    )
    assert len(performance.eval_data["run_times"]) == 3 and performance.eval_data["p95_run_time"] > 0

    page = await client.list_eval_runs(headers=staff)
    assert [e.id for e in page.data] == [performance.id, accuracy.id, reliability.id]
    assert page.meta.total_count == 3
    only = await client.list_eval_runs(eval_types=[EvalType.ACCURACY], agent_id="demo", headers=staff)
    assert [e.id for e in only.data] == [accuracy.id]
    assert (await client.list_eval_runs(filter_type=EvalFilterType.TEAM, headers=staff)).data == []

    got = await client.get_eval_run(accuracy.id, headers=staff)
    assert got.eval_input["expected_output"] == "42" and got.eval_data["results"][0]["output"]
    renamed = await client.update_eval_run(accuracy.id, name="sums", headers=staff)
    assert renamed.name == "sums" and (await client.get_eval_run(accuracy.id, headers=staff)).name == "sums"

    await client.delete_eval_runs([reliability.id, performance.id], headers=staff)
    assert [e.id for e in (await client.list_eval_runs(headers=staff)).data] == [accuracy.id]
    with pytest.raises(httpx.HTTPStatusError) as missing:
        await client.get_eval_run(reliability.id, headers=staff)
    assert missing.value.response.status_code == 404

    # Bad input in agno's shape; staff only.
    with pytest.raises(httpx.HTTPStatusError) as unknown_tool:
        await client.run_eval(
            eval_type=EvalType.RELIABILITY,
            input_text="hi",
            agent_id="demo",
            expected_tool_calls=["warp"],
            headers=staff,
        )
    body = unknown_tool.value.response.json()
    assert unknown_tool.value.response.status_code == 422 and body["code"] == "validation_error"
    assert body["detail"][0]["loc"] == ["body", "expected_tool_calls"]
    with pytest.raises(httpx.HTTPStatusError) as no_agent:
        await client.run_eval(
            eval_type=EvalType.ACCURACY, input_text="hi", agent_id="nope", expected_output="x", headers=staff
        )
    assert no_agent.value.response.status_code == 404
    with pytest.raises(httpx.HTTPStatusError) as not_staff:
        await client.list_eval_runs(headers=site["alice"])
    assert not_staff.value.response.status_code == 403
