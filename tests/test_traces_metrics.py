"""agno's traces and metrics routes over real runs (ASGI, the openai SDK against the scripted model
server): a trace per run with its model requests and tool calls, per-user isolation, the search
filter language, and the daily aggregates (counts, tokens, cost, models, idempotent refresh)."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from sessions_app.models import Run
from telemetry_app.daily import compute_day, metrics_refresh
from telemetry_app.models import DailyMetrics, MetricsRefresh
from telemetry_app.traces import build_traces, filter_q
from tests.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)


async def _tool_run(asgi, agent, token, scripted_model) -> dict:
    scripted_model.push_tool_calls([{"name": "calculator", "arguments": {"expression": "6*7"}, "id": "c1"}])
    scripted_model.push_text("It is 42.")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "6*7?"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def calc_agent(agent):
    agent.tools = ["calculator"]
    agent.save()
    return agent


async def test_a_run_is_a_trace_with_its_model_requests_and_tool_call(
    asgi, calc_agent, token, other_token, scripted_model
):
    run = await _tool_run(asgi, calc_agent, token, scripted_model)
    r = await asgi.get("/os/traces", headers=bearer(token))
    assert r.status_code == 200
    body = r.json()
    assert body["meta"]["total_count"] == 1 and len(body["data"]) == 1
    summary = body["data"][0]
    trace_id = run["run_id"].replace("-", "")
    assert summary["trace_id"] == trace_id and summary["run_id"] == run["run_id"]
    assert (summary["status"], summary["agent_id"], summary["input"]) == ("OK", calc_agent.slug, "6*7?")
    assert summary["total_spans"] == 4 and summary["error_count"] == 0  # run, 2 model requests, 1 tool call
    detail = (await asgi.get(f"/os/traces/{trace_id}", headers=bearer(token))).json()
    root = detail["tree"][0]
    assert root["type"] == "AGENT" and detail["output"] == "It is 42."
    assert [s["type"] for s in root["spans"]] == ["LLM", "TOOL", "LLM"]
    tool = root["spans"][1]
    assert (
        tool["name"] == "calculator"
        and tool["output"] == "42"
        and tool["metadata"]["parameters"] == {"expression": "6*7"}
    )
    llm = root["spans"][0]
    assert llm["metadata"]["model"] == "scripted-model" and llm["metadata"]["input_tokens"] > 0
    assert root["metadata"]["total_input_tokens"] == run["metrics"]["input_tokens"]
    # One span by its id; a trace by its run's UUID too.
    span = (await asgi.get(f"/os/traces/{trace_id}?span_id={tool['id']}", headers=bearer(token))).json()
    assert span["id"] == tool["id"] and "spans" not in span
    assert (await asgi.get(f"/os/traces/{run['run_id']}", headers=bearer(token))).json()["trace_id"] == trace_id
    assert (await asgi.get(f"/os/traces/{trace_id}?span_id=nope", headers=bearer(token))).status_code == 404
    # Another user sees none of it: an empty list, 404s, no session stats.
    assert (await asgi.get("/os/traces", headers=bearer(other_token))).json()["data"] == []
    assert (await asgi.get(f"/os/traces/{trace_id}", headers=bearer(other_token))).status_code == 404
    assert (await asgi.get("/os/trace_session_stats", headers=bearer(other_token))).json()["data"] == []
    stats = (await asgi.get("/os/trace_session_stats", headers=bearer(token))).json()["data"]
    assert [(s["session_id"], s["total_traces"]) for s in stats] == [(run["session_id"], 1)]
    assert (await asgi.get("/os/traces")).status_code == 401


async def test_search_filters_and_errors(asgi, calc_agent, token, scripted_model):
    ok = await _tool_run(asgi, calc_agent, token, scripted_model)
    scripted_model.push_error(400, "bad request")
    failed = await asgi.post(f"/api/agents/{calc_agent.slug}/runs", json={"message": "x"}, headers=bearer(token))
    assert failed.status_code >= 400
    failed_id = failed.json()["run_id"]

    async def search(body: dict) -> tuple[int, dict]:
        r = await asgi.post("/os/traces/search", json=body, headers=bearer(token))
        return r.status_code, r.json()

    code, body = await search({"filter": {"op": "EQ", "key": "status", "value": "ERROR"}})
    assert code == 200 and [t["run_id"] for t in body["data"]] == [failed_id]
    assert body["data"][0]["error_count"] == 1 and body["data"][0]["error"]
    code, body = await search({"filter": {"op": "NOT", "condition": {"op": "EQ", "key": "status", "value": "ERROR"}}})
    assert [t["run_id"] for t in body["data"]] == [ok["run_id"]]
    condition = {"op": "IN", "key": "run_id", "value": [ok["run_id"], failed_id]}
    code, body = await search(
        {"filter": {"op": "AND", "conditions": [condition, {"op": "CONTAINS", "key": "name", "value": "run"}]}}
    )
    assert body["meta"]["total_count"] == 2
    code, body = await search({"filter": {"op": "STARTSWITH", "key": "trace_id", "value": ok["run_id"][:8]}})
    assert [t["run_id"] for t in body["data"]] == [ok["run_id"]]
    code, body = await search({"group_by": "session"})
    assert code == 200 and sum(s["total_traces"] for s in body["data"]) == 2
    for bad in (
        {"op": "EQ", "key": "nope", "value": 1},
        {"op": "GT", "key": "status", "value": "OK"},
        {"op": "AND"},
        "x",
    ):
        code, body = await search({"filter": bad})
        assert code == 400 and body["code"], bad
    # GET filters.
    r = await asgi.get("/os/traces?status=ERROR", headers=bearer(token))
    assert [t["run_id"] for t in r.json()["data"]] == [failed_id]
    r = await asgi.get(f"/os/traces?agent_id={calc_agent.slug}&limit=1&page=2", headers=bearer(token))
    assert r.json()["meta"]["total_count"] == 2 and len(r.json()["data"]) == 1
    schema = (await asgi.get("/os/traces/filter-schema", headers=bearer(token))).json()
    assert {f["key"] for f in schema["fields"]} >= {"status", "run_id", "duration_ms"}
    assert schema["logical_operators"] == ["AND", "OR", "NOT"]


async def test_metrics_are_daily_aggregates_refreshed_idempotently(
    asgi, calc_agent, token, other_token, staff_token, scripted_model, user
):
    await _tool_run(asgi, calc_agent, token, scripted_model)
    await _tool_run(asgi, calc_agent, token, scripted_model)
    scripted_model.push_text("hello")
    r = await asgi.post(f"/api/agents/{calc_agent.slug}/runs", json={"message": "hi"}, headers=bearer(other_token))
    assert r.status_code == 200
    status = (await asgi.get("/os/metrics/refresh/status", headers=bearer(token))).json()
    assert status["status"] == "idle"
    refreshed = await asgi.post("/os/metrics/refresh", headers=bearer(token))
    assert refreshed.status_code == 200
    mine = refreshed.json()
    assert len(mine) == 1
    day = mine[0]
    runs = await sync_to_async(list)(Run.objects.filter(user=user))
    assert day["agent_runs_count"] == 2 and day["agent_sessions_count"] == 2 and day["users_count"] == 1
    assert day["token_metrics"]["input_tokens"] == sum(r.input_tokens for r in runs) > 0
    assert day["model_metrics"][0]["model_id"] == "scripted-model" and day["model_metrics"][0]["count"] == 2
    assert day["component_metrics"] == [
        {
            "type": "agent",
            "id": calc_agent.slug,
            "runs": 2,
            "errors": 0,
            "input_tokens": day["token_metrics"]["input_tokens"],
            "output_tokens": day["token_metrics"]["output_tokens"],
            "cost": day["token_metrics"]["cost"],
        }
    ]
    assert day["id"] == f"{dt.datetime.now(dt.UTC).date().isoformat()}_{user.pk}_daily"
    # Staff see the site's day (both users); the other user only theirs.
    site = (await asgi.get("/os/metrics", headers=bearer(staff_token))).json()["metrics"]
    assert site[0]["agent_runs_count"] == 3 and site[0]["users_count"] == 2
    other = (await asgi.get("/os/metrics", headers=bearer(other_token))).json()["metrics"]
    assert other[0]["agent_runs_count"] == 1 and other[0]["users_count"] == 1
    # Date filters, and bad ones.
    today = dt.datetime.now(dt.UTC).date()
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    assert (await asgi.get(f"/os/metrics?starting_date={tomorrow}", headers=bearer(token))).json()["metrics"] == []
    got = (await asgi.get(f"/os/metrics?starting_date={today}&ending_date={today}", headers=bearer(token))).json()
    assert len(got["metrics"]) == 1 and got["updated_at"]
    bad = await asgi.get(f"/os/metrics?starting_date={tomorrow}&ending_date={today}", headers=bearer(token))
    assert bad.status_code == 422
    assert (await asgi.get("/os/metrics?starting_date=yesterday", headers=bearer(token))).status_code == 422
    # Idempotent: again, the same rows (and no new ones); the state says completed.
    rows_before = await sync_to_async(lambda: sorted(DailyMetrics.objects.values_list("pk", "agent_runs_count")))()
    again = (await asgi.post("/os/metrics/refresh", headers=bearer(token))).json()
    assert again == mine
    rows_after = await sync_to_async(lambda: sorted(DailyMetrics.objects.values_list("pk", "agent_runs_count")))()
    assert rows_after == rows_before
    status = (await asgi.get("/os/metrics/refresh/status", headers=bearer(token))).json()
    assert status["status"] == "completed" and status["finished_at"]


@pytest.mark.django_db
def test_refresh_is_claimed_once_and_a_stale_claim_is_taken_over(user):
    MetricsRefresh.objects.create(pk=1, status="running", started_at=dt.datetime.now(dt.UTC))
    assert metrics_refresh() == -1  # one is running
    MetricsRefresh.objects.filter(pk=1).update(started_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert metrics_refresh() == 0  # stale: taken over; no runs, no days
    assert MetricsRefresh.objects.get(pk=1).status == "completed"


@pytest.mark.django_db
def test_member_runs_count_their_tokens_and_cost_once_and_not_as_runs(user, offline_agent):
    from sessions_app.models import Session

    session = Session.objects.create(user=user, agent=offline_agent)
    parent = Run.objects.create(
        session=session,
        agent=offline_agent,
        user=user,
        status="completed",
        input="x",
        input_tokens=10,
        output_tokens=5,
        cost=Decimal("0.5"),
        model="m1",
        provider="p",
    )
    Run.objects.create(
        session=session,
        agent=offline_agent,
        user=user,
        status="completed",
        input="y",
        parent_run=parent,
        input_tokens=3,
        output_tokens=2,
        cost=Decimal("0.25"),
        model="m2",
        provider="p",
    )
    Run.objects.create(session=session, agent=offline_agent, user=user, status="running", input="z", input_tokens=99)
    bucket = compute_day(dt.datetime.now(dt.UTC).date())[user.pk]
    assert bucket["agent_runs_count"] == 1 and bucket["agent_sessions_count"] == 1
    assert bucket["token_metrics"]["input_tokens"] == 13 and bucket["token_metrics"]["total_tokens"] == 20
    assert bucket["cost"] == Decimal("0.75")
    assert sorted(m for m, _ in bucket["models"]) == ["m1", "m2"]
    # The trace of the parent holds the member run under it (no events: one LLM span each).
    trace = build_traces([parent])[0]
    assert [s.type for s in trace.spans] == ["AGENT", "LLM", "AGENT", "LLM"]
    assert trace.spans[2].parent_id == trace.spans[0].id


def test_filter_expressions_reject_what_they_cannot_evaluate():
    from telemetry_app.traces import InvalidFilter

    for bad in (
        {"op": "EQ", "key": "duration_ms", "value": "fast"},
        {"op": "IN", "key": "run_id", "value": "x"},
        {"op": "LT", "key": "created_at", "value": "yesterday"},
    ):
        with pytest.raises(InvalidFilter):
            filter_q(bad)
    deep: dict = {"op": "EQ", "key": "status", "value": "OK"}
    for _ in range(20):
        deep = {"op": "NOT", "condition": deep}
    with pytest.raises(InvalidFilter):
        filter_q(deep)


async def test_a_finished_run_is_exported_through_opentelemetry_when_on(
    asgi, calc_agent, token, scripted_model, settings
):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from telemetry_app import otel

    exported = InMemorySpanExporter()
    otel.configure(exporter=exported, simple=True)
    try:
        run = await _tool_run(asgi, calc_agent, token, scripted_model)  # off (the default): nothing
        await asyncio.sleep(0.2)
        assert exported.get_finished_spans() == ()
        settings.AGENTOS = {**settings.AGENTOS, "OTEL_TRACES": True}
        run = await _tool_run(asgi, calc_agent, token, scripted_model)
        for _ in range(50):
            if len(exported.get_finished_spans()) >= 4:
                break
            await asyncio.sleep(0.05)
        spans = exported.get_finished_spans()
        assert sorted(s.attributes["openinference.span.kind"] for s in spans) == ["AGENT", "LLM", "LLM", "TOOL"]
        assert {format(s.context.trace_id, "032x") for s in spans} == {run["run_id"].replace("-", "")}
        root = next(s for s in spans if s.parent is None)
        assert root.attributes["agno.run.id"] == run["run_id"] and root.attributes["input.value"] == "6*7?"
        assert all(s.parent.span_id == root.context.span_id for s in spans if s is not root)
        tool = next(s for s in spans if s.attributes["openinference.span.kind"] == "TOOL")
        assert tool.attributes["tool.name"] == "calculator" and tool.end_time >= tool.start_time
    finally:
        otel.configure(exporter=InMemorySpanExporter(), simple=True).shutdown()
        otel._provider = None


@pytest.mark.django_db
def test_a_workflow_trace_nests_step_runs_under_their_steps_and_shows_hooks_and_memory(user, offline_agent):
    from sessions_app.models import Session
    from tests.factories import WorkflowFactory

    workflow = WorkflowFactory(slug="flow")
    session = Session.objects.create(user=user, workflow=workflow)
    t0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    s = int(t0.timestamp())
    run = Run.objects.create(
        session=session,
        workflow=workflow,
        user=user,
        status="error",
        input="go",
        error="step 2 broke",
        error_type="step_error",
        events=[
            {"event": "WorkflowStarted", "created_at": s},
            {"event": "StepStarted", "step_name": "write", "step_index": 0, "step_type": "agent", "created_at": s},
            {"event": "StepCompleted", "step_name": "write", "step_index": 0, "content": "draft", "created_at": s + 2},
            {
                "event": "StepStarted",
                "step_name": "check",
                "step_index": 1,
                "step_type": "function",
                "created_at": s + 3,
            },
            {"event": "WorkflowError", "created_at": s + 4},
        ],
    )
    Run.objects.filter(pk=run.pk).update(created_at=t0, finished_at=t0 + dt.timedelta(seconds=4))
    child = Run.objects.create(
        session=session,
        agent=offline_agent,
        user=user,
        status="completed",
        input="go",
        output="draft",
        parent_run=run,
        events=[
            {"event": "PreHookStarted", "pre_hook_name": "upper", "created_at": s + 1},
            {"event": "PreHookCompleted", "pre_hook_name": "upper", "duration": 0.25, "created_at": s + 1},
            {"event": "MemoryUpdateStarted", "created_at": s + 1},
            {"event": "MemoryUpdateCompleted", "duration": 0.5, "created_at": s + 1},
        ],
    )
    Run.objects.filter(pk=child.pk).update(
        created_at=t0 + dt.timedelta(seconds=1), finished_at=t0 + dt.timedelta(seconds=2)
    )
    run.refresh_from_db()
    detail = build_traces([run])[0].detail()
    assert detail["status"] == "ERROR" and detail["error"] == "step 2 broke" and "output" not in detail
    root = detail["tree"][0]
    assert root["type"] == "WORKFLOW" and root["duration"] == "4.00s"
    write, check = root["spans"]
    assert (write["type"], write["name"], write["step_type"], write["output"]) == ("STEP", "write", "agent", "draft")
    assert (check["name"], check["status"], check["error"]) == ("check", "ERROR", "step 2 broke")  # never completed
    (member,) = write["spans"]  # the step's run, under its step
    assert member["type"] == "AGENT" and member["output"] == "draft"
    hook, memory = member["spans"]
    assert (hook["type"], hook["name"], hook["duration"]) == ("HOOK", "pre_hook.upper", "250ms")
    assert (memory["type"], memory["name"], memory["duration"]) == ("MEMORY", "memory.update", "500ms")
