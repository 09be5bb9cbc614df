"""Quotas through the real stack (issue 18, part 4): recurring token and cost budgets per user, per
runnable and for the site, checked before a run starts (429 `quota_exceeded`, nothing written, no
model call) and while it runs (`budget_exceeded`), on REST, the websocket and agno's routes; a
user's usage at GET /api/usage/; everyone's in the admin."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents_app.models import ModelConfig, Quota
from agents_app.quotas import period_bounds
from agents_app.runs import run_agent
from sessions_app.models import Run, Session
from tests.conftest import bearer, parse_sse
from tests.factories import AgentFactory, ModelConfigFactory
from tests.test_websocket import connect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def priced(scripted_model: Any) -> ModelConfig:
    return ModelConfigFactory(
        name="priced",
        provider=ModelConfig.Provider.OPENAI,
        base_url=scripted_model.base_url,
        model_id="priced-model",
        api_key="sk-test",
        input_price=Decimal("1000"),
        output_price=Decimal("1000"),
    )


async def _quota(**fields: Any) -> Quota:
    return await sync_to_async(Quota.objects.create)(**fields)


async def test_a_spent_user_quota_refuses_the_next_run_before_anything_is_written(
    asgi, agent, token, user, scripted_model
):
    await _quota(scope="user", period="day", max_tokens=5)
    scripted_model.push_text("one two three four five six")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    # Under the quota when it started; it stopped when its tokens went over (6 > 5).
    assert r.status_code == 422 and r.json()["error"]["type"] == "budget_exceeded"
    runs, sessions, requests = await Run.objects.acount(), await Session.objects.acount(), len(scripted_model.requests)
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "again"}, headers=bearer(token))
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["code"] == "quota_exceeded" and "resets_at" in body
    _, reset = period_bounds("day", (await Run.objects.afirst()).created_at)
    assert body["resets_at"] == reset.isoformat()
    assert 0 < int(r.headers["Retry-After"]) <= 86_400
    # Nothing was written and the model was not called.
    assert (await Run.objects.acount(), await Session.objects.acount()) == (runs, sessions)
    assert len(scripted_model.requests) == requests


async def test_a_run_that_reaches_its_quota_while_running_stops_with_budget_exceeded(
    asgi, token, scripted_model, priced
):
    agent = await sync_to_async(AgentFactory)(slug="pricey", model=priced)
    await _quota(scope="runnable", period="month", agent=agent, max_cost=Decimal("0.001"))
    scripted_model.push_text("a rather long and therefore expensive answer")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi", "stream": True}, headers=bearer(token))
    frames = parse_sse(r.text)
    assert frames[-1][0] == "RunError" and frames[-1][1]["error_type"] == "budget_exceeded"
    assert "its quota allowed 0.001" in frames[-1][1]["content"]
    run = await Run.objects.aget(agent=agent)
    assert run.cost > Decimal("0.001") and run.output == "a rather long and therefore expensive answer"


async def test_quotas_apply_to_whom_they_name(asgi, agent, token, user, other_user, other_token, scripted_model):
    await _quota(scope="user", period="day", user=other_user, max_tokens=1)
    await sync_to_async(run_agent)(agent_id=agent.slug, user=other_user, message="spend it")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "mine"}, headers=bearer(other_token))
    assert r.status_code == 429
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "mine"}, headers=bearer(token))
    assert r.status_code == 200  # another user's quota


async def test_a_site_quota_is_refused_on_the_websocket_and_agnos_routes(asgi, agent, token, user, scripted_model):
    await _quota(scope="site", period="day", max_tokens=1)
    await sync_to_async(run_agent)(agent_id=agent.slug, user=user, message="spend it")
    comm = await connect(agent.slug, token=token)
    try:
        await comm.send_json_to({"type": "run", "message": "hello"})
        frame = await comm.receive_json_from(timeout=5)
        assert frame["event"] == "Error" and frame["code"] == "quota_exceeded" and frame["retry_after"] > 0
        await comm.send_json_to({"type": "run", "message": "still here?"})  # the socket stays open
        assert (await comm.receive_json_from(timeout=5))["code"] == "quota_exceeded"
    finally:
        await comm.disconnect()
    r = await asgi.post(f"/os/agents/{agent.slug}/runs", data={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 429 and r.json()["code"] == "quota_exceeded" and "Retry-After" in r.headers


async def test_usage_shows_my_use_and_my_quotas(asgi, token, user, other_user, scripted_model, priced):
    agent = await sync_to_async(AgentFactory)(slug="pricey", model=priced)
    await _quota(scope="user", period="day", max_tokens=10_000, name="daily tokens")
    await _quota(scope="user", period="month", user=other_user, max_tokens=1)  # not mine: not shown
    await _quota(scope="site", period="month", max_cost=Decimal("100"))
    scripted_model.push_text("four words of answer")
    result = await sync_to_async(run_agent)(agent_id=agent.slug, user=user, message="hi")
    run = await Run.objects.aget(pk=result.run_id)
    r = await asgi.get("/api/usage/", headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["today"] == {"runs": 1, "tokens": run.total_tokens, "cost": float(run.cost)}
    assert body["month"] == body["today"]
    names = [(q["name"], q["scope"], q["period"]) for q in body["quotas"]]
    assert names == [("monthly site quota", "site", "month"), ("daily tokens", "user", "day")]
    site, daily = body["quotas"]
    assert (daily["tokens"], daily["tokens_left"]) == (run.total_tokens, 10_000 - run.total_tokens)
    assert daily["max_cost"] is None and daily["cost_left"] is None
    assert site["cost"] == float(run.cost) and site["cost_left"] == float(Decimal(100) - run.cost)
    assert (await asgi.get("/api/usage/")).status_code == 401


def test_a_run_pays_no_query_without_quotas_and_one_with(offline_agent, user):
    run_agent(agent_id=offline_agent.slug, user=user, message="warm up")
    with CaptureQueriesContext(connection) as without:
        run_agent(agent_id=offline_agent.slug, user=user, message="hi")
    Quota.objects.create(scope="user", period="day", max_tokens=1_000_000)
    run_agent(agent_id=offline_agent.slug, user=user, message="warm the quota cache")
    with CaptureQueriesContext(connection) as with_quota:
        run_agent(agent_id=offline_agent.slug, user=user, message="hi")
    extra = [q["sql"] for q in with_quota.captured_queries[len(without.captured_queries) :]]
    assert len(with_quota.captured_queries) == len(without.captured_queries) + 1, extra
    assert any("SUM" in q["sql"].upper() for q in with_quota.captured_queries)


def test_the_admin_lists_quotas_and_everyones_usage(client, staff_user, offline_agent, user):
    run_agent(agent_id=offline_agent.slug, user=user, message="hi")
    Quota.objects.create(scope="user", period="day", max_tokens=100)
    Quota.objects.create(scope="runnable", period="month", agent=offline_agent, max_tokens=100)
    client.force_login(staff_user)
    page = client.get("/admin/agents_app/quota/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Usage by user" in html and "every user, each on their own" in html
    usage = client.get("/admin/agents_app/quota/usage/")
    assert usage.status_code == 200 and user.get_username() in usage.content.decode()
    run = Run.objects.get()
    assert f"<td>{run.total_tokens}</td>" in usage.content.decode()


async def test_a_workflow_quota_counts_its_steps_runs(asgi, offline_agent, token, user):
    from tests.factories import WorkflowFactory, WorkflowStepFactory

    def make() -> Any:
        flow = WorkflowFactory(slug="flow")
        WorkflowStepFactory(workflow=flow, name="one", kind="agent", agent=offline_agent)
        Quota.objects.create(scope="runnable", period="day", workflow=flow, max_tokens=10)
        return flow

    await sync_to_async(make)()
    r = await asgi.post("/api/workflows/flow/runs", json={"message": "hi"}, headers=bearer(token))
    # Its step went over the workflow's quota while running (the workflow calls no model itself).
    assert r.status_code == 422, r.text
    assert r.json()["step_results"][0]["error"]["type"] == "budget_exceeded"
    flow_run = await Run.objects.aget(workflow__slug="flow")
    step_run = await Run.objects.aget(parent_run=flow_run)
    assert flow_run.tree_tokens == step_run.total_tokens > 10
    r = await asgi.post("/api/workflows/flow/runs", json={"message": "again"}, headers=bearer(token))
    assert r.status_code == 429 and r.json()["code"] == "quota_exceeded"


async def test_usage_hides_the_quotas_of_runnables_the_user_may_not_use(asgi, offline_agent, token):
    await _quota(scope="runnable", period="day", agent=offline_agent, max_tokens=100)
    assert len((await asgi.get("/api/usage/", headers=bearer(token))).json()["quotas"]) == 1
    offline_agent.access = "restricted"
    await offline_agent.asave()
    assert (await asgi.get("/api/usage/", headers=bearer(token))).json()["quotas"] == []


async def test_agnos_429_says_when_the_quota_resets(asgi, agent, token, user, scripted_model):
    await _quota(scope="user", period="day", max_tokens=1)
    await sync_to_async(run_agent)(agent_id=agent.slug, user=user, message="spend it")
    r = await asgi.post(f"/os/agents/{agent.slug}/runs", data={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 429 and r.json()["resets_at"] and r.json()["retry_after"] > 0
