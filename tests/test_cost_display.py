"""What runs cost, shown: the REST run and session shapes (JSON numbers), agno's metrics.cost on
/os, the dashboard's cost section (exact sums per component, model, user and day; staff only), the
telemetry run event (schema version 2, accepted by the collector, downgraded for an older one) and
the Prometheus counter. Runs are made with known costs through the ORM; what the engine stores is
checked against what is shown through a real run."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import httpx
import pytest
from agno.metrics import RunMetrics, SessionMetrics
from agno.os.schema import RunSchema, TeamRunSchema, TeamSessionDetailSchema
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app.models import Run, Session
from telemetry_app import selectors
from telemetry_app.api import Client as TelemetryClient
from telemetry_app.metrics import record_run
from telemetry_app.models import ReceivedEvent, TelemetryEvent
from telemetry_app.routes import ApiRoutes, PageRoutes
from telemetry_app.selectors import cost_metrics, run_metrics
from telemetry_app.services import (
    telemetry_flush,
    telemetry_record_run,
    telemetry_reset_launch,
    telemetry_sender_create,
)
from tests.conftest import bearer
from tests.factories import (
    AgentFactory,
    ModelConfigFactory,
    TeamFactory,
    UserFactory,
    WorkflowFactory,
)
from tests.test_metrics import SCRAPER, scrape, value

NOW = dt.datetime(2026, 11, 20, 12, 30, tzinfo=dt.UTC)
D = Decimal


def make_run(session, *, at, cost="0", total_cost=None, cache=0, model="", provider="openai", parent=None, **kind):
    """A finished run of `session`'s user with a known cost, created at `at`. `kind`: agent=, team=
    or workflow= (default: the session's)."""
    kind = kind or {k: getattr(session, k) for k in ("agent", "team", "workflow") if getattr(session, k)}
    run = Run.objects.create(
        session=session,
        user=session.user,
        parent_run=parent,
        status="completed",
        input="hi",
        output="ok",
        model=model,
        provider=provider if model else "",
        input_tokens=100,
        output_tokens=20,
        total_tokens=120,
        cache_read_tokens=cache,
        cost=D(cost),
        total_cost=D(total_cost if total_cost is not None else cost),
        duration=1.0,
        **kind,
    )
    Run.objects.filter(pk=run.pk).update(created_at=at)
    return run


@pytest.fixture
def costs(db, user):
    """Runs of two users over two days, with known costs:

    - alice, agent `writer` (gpt-a): r1 0.0012345 (10 cached tokens), r2 0.0000000001;
    - alice, team `crew` (gpt-a): t1 0.01 own, 0.015 with its member run m1 (agent `checker`, gpt-b) 0.005;
    - bob, workflow `flow`, yesterday: w1 0 own, 0.02 with its step run s1 (agent `writer`, gpt-a) 0.02;
    - bob, agent `checker` (gpt-b): a run that cost nothing; and one 40 days ago that cost 1 (out of every period).
    """
    bob = UserFactory(username="bob")
    gpt_a = ModelConfigFactory(model_id="gpt-a", provider="openai")
    gpt_b = ModelConfigFactory(model_id="gpt-b", provider="openai")
    writer = AgentFactory(slug="writer", name="Writer", model=gpt_a)
    checker = AgentFactory(slug="checker", name="Checker", model=gpt_b)
    crew = TeamFactory(slug="crew", name="Crew", model=gpt_a)
    flow = WorkflowFactory(slug="flow", name="Flow")
    s1 = Session.objects.create(user=user, agent=writer, name="writing")
    s2 = Session.objects.create(user=user, team=crew, name="crew chat")
    s3 = Session.objects.create(user=bob, workflow=flow)
    s4 = Session.objects.create(user=bob, agent=checker)
    today, yesterday = NOW - dt.timedelta(hours=1), NOW - dt.timedelta(hours=16)  # 20:30 on the 19th
    runs = {
        "r1": make_run(s1, at=today, cost="0.0012345", cache=10, model="gpt-a"),
        "r2": make_run(s1, at=today, cost="0.0000000001", model="gpt-a"),
        "t1": make_run(s2, at=today, cost="0.01", total_cost="0.015", model="gpt-a"),
    }
    runs["m1"] = make_run(s2, at=today, cost="0.005", model="gpt-b", parent=runs["t1"], agent=checker)
    runs["w1"] = make_run(s3, at=yesterday, cost="0", total_cost="0.02")
    runs["s1"] = make_run(s3, at=yesterday, cost="0.02", model="gpt-a", parent=runs["w1"], agent=writer)
    runs["free"] = make_run(s4, at=today, cost="0", model="gpt-b")
    make_run(s4, at=NOW - dt.timedelta(days=40), cost="1", model="gpt-b")
    return {"bob": bob, "sessions": (s1, s2, s3, s4), "runs": runs}


@pytest.fixture
def api(token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def exact(response) -> dict:
    """The body with its numbers read as decimals (what the JSON text says, not a float's repr)."""
    return json.loads(response.content, parse_float=Decimal)


# ---- REST API ------------------------------------------------------------------------------------


def test_a_run_shows_its_cost_total_cost_and_cached_tokens_as_json_numbers(api, costs):
    t1 = costs["runs"]["t1"]
    r = api.get(f"/api/runs/{t1.pk}/")
    assert r.status_code == 200
    assert r.json()["metrics"] == {
        "input_tokens": 100,
        "output_tokens": 20,
        "total_tokens": 120,
        "cache_read_tokens": 0,
        "cost": 0.01,
        "total_cost": 0.015,
        "time_to_first_token": None,
        "duration": 1.0,
    }
    assert b'"cost":0.01,"total_cost":0.015' in r.content  # numbers, not strings
    r1 = exact(api.get(f"/api/runs/{costs['runs']['r1'].pk}/"))["metrics"]
    assert (r1["cost"], r1["total_cost"], r1["cache_read_tokens"]) == (D("0.0012345"), D("0.0012345"), 10)
    tiny = exact(api.get(f"/api/runs/{costs['runs']['r2'].pk}/"))["metrics"]
    assert tiny["cost"] == D("1E-10")  # the tenth decimal place survives


def test_sessions_show_the_sum_of_their_runs_own_costs(api, costs):
    s1, s2, _, _ = costs["sessions"]
    listed = {s["session_id"]: s for s in exact(api.get("/api/sessions/"))["results"]}
    assert {k: (s["run_count"], s["cost"]) for k, s in listed.items()} == {
        str(s1.pk): (2, D("0.0012345001")),
        str(s2.pk): (2, D("0.015")),  # the team's own 0.01 and its member's 0.005, once each
    }
    detail = exact(api.get(f"/api/sessions/{s2.pk}/"))
    assert detail["cost"] == D("0.015")
    assert [(r["metrics"]["cost"], r["metrics"]["total_cost"]) for r in detail["runs"]] == [
        (D("0.01"), D("0.015")),
        (D("0.005"), D("0.005")),
    ]
    renamed = exact(api.patch(f"/api/sessions/{s2.pk}/", {"name": "renamed"}, format="json"))
    assert (renamed["name"], renamed["cost"]) == ("renamed", D("0.015"))
    ended = exact(api.post(f"/api/sessions/{s1.pk}/end"))
    assert ended["cost"] == D("0.0012345001")


def test_an_empty_session_costs_zero_and_the_list_costs_one_query_whatever_its_size(api, user, costs):
    api.get("/api/sessions/")  # warm the per-process caches (restricted runnables: agents_app.access)
    with CaptureQueriesContext(connection) as two:
        assert api.get("/api/sessions/").status_code == 200
    writer = costs["runs"]["r1"].agent
    for i in range(5):
        session = Session.objects.create(user=user, agent=writer)
        make_run(session, at=NOW, cost=f"0.{i}")
    Session.objects.create(user=user, agent=writer, name="empty")
    with CaptureQueriesContext(connection) as eight:
        body = exact(api.get("/api/sessions/"))
    assert len(two.captured_queries) == len(eight.captured_queries)
    assert body["count"] == 8
    assert {s["name"]: s["cost"] for s in body["results"]}["empty"] == 0


# ---- agno's shapes under /os --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_agnos_run_and_session_metrics_carry_cost(asgi, token, costs):
    _, s2, _, _ = costs["sessions"]
    runs = costs["runs"]
    r = await asgi.get(f"/os/sessions/{s2.pk}/runs", headers=bearer(token))
    assert r.status_code == 200
    team_run, member_run = r.json()
    team = TeamRunSchema.model_validate(team_run)
    member = RunSchema.model_validate(member_run)
    assert (team.run_id, member.run_id) == (str(runs["t1"].pk), str(runs["m1"].pk))
    # agno's RunMetrics: a team run's own calls; its member's run carries its own.
    assert RunMetrics.from_dict(team.metrics).cost == 0.01
    assert RunMetrics.from_dict(member.metrics).cost == 0.005
    assert (member.metrics["cache_read_tokens"], member.metrics["total_tokens"]) == (0, 120)
    r = await asgi.get(f"/os/sessions/{s2.pk}", headers=bearer(token))
    detail = TeamSessionDetailSchema.model_validate(r.json())
    session = SessionMetrics.from_dict(detail.metrics)
    assert (session.cost, session.total_tokens) == (0.015, 240)  # the leader's and the member's, as agno adds them
    r1 = costs["runs"]["r1"]
    r = await asgi.get(f"/os/sessions/{r1.session_id}/runs/{r1.pk}", headers=bearer(token))
    assert RunSchema.model_validate(r.json()).metrics["cache_read_tokens"] == 10


# ---- the dashboard ------------------------------------------------------------------------------


def test_cost_per_component_model_user_and_day_in_exact_sums(costs):
    m = cost_metrics(since=NOW - dt.timedelta(hours=23, minutes=30), until=NOW)
    assert (m.total, m.runs, m.priced_runs, m.cache_read_tokens) == (D("0.0362345001"), 7, 5, 10)
    assert [(r.kind, r.key, r.label, r.runs, r.cost, r.total_cost) for r in m.components] == [
        ("agent", "agent/writer", "Writer (writer)", 3, D("0.0212345001"), D("0.0212345001")),
        ("team", "team/crew", "Crew (crew)", 1, D("0.01"), D("0.015")),
        ("agent", "agent/checker", "Checker (checker)", 2, D("0.005"), D("0.005")),
        ("workflow", "workflow/flow", "Flow (flow)", 1, D("0"), D("0.02")),
    ]
    assert [(r.label, r.runs, r.cost) for r in m.models] == [
        ("gpt-a (openai)", 4, D("0.0312345001")),
        ("gpt-b (openai)", 2, D("0.005")),
        ("? (?)", 1, D("0")),  # the workflow's own run called no model
    ]
    assert [(r.label, r.runs, r.cost) for r in m.users] == [("bob", 3, D("0.02")), ("alice", 4, D("0.0162345001"))]
    assert [(r.label, r.runs, r.cost) for r in m.days] == [
        ("2026-11-19", 2, D("0.02")),
        ("2026-11-20", 5, D("0.0162345001")),
    ]
    for rows in (m.components, m.models, m.users, m.days):
        assert sum((r.cost for r in rows), D(0)) == m.total  # each call counted once
    assert m.users[0].share == pytest.approx(0.02 / 0.0362345001)
    # The period's totals (the KPI, the chart per bucket) come from the same column.
    totals = run_metrics(period="24h", now=NOW)
    assert (totals.cost, totals.cache_read_tokens) == (D("0.0362345001"), 10)
    assert sum((b.cost for b in totals.buckets), D(0)) == totals.cost
    month = cost_metrics(since=NOW - dt.timedelta(days=60), until=NOW)
    assert (month.total, len(month.days)) == (D("1.0362345001"), 61)


def test_groups_past_the_top_ones_add_up_in_an_others_row(costs, monkeypatch):
    monkeypatch.setattr(selectors, "TOP_GROUPS", 2)
    m = cost_metrics(since=NOW - dt.timedelta(hours=23), until=NOW)
    assert [(r.label, r.runs, r.cost) for r in m.components] == [
        ("Writer (writer)", 3, D("0.0212345001")),
        ("Crew (crew)", 1, D("0.01")),
        ("Others", 3, D("0.005")),
    ]
    assert sum((r.cost for r in m.components), D(0)) == m.total


def test_the_cost_section_costs_five_queries_whatever_the_number_of_runs(costs):
    with CaptureQueriesContext(connection) as few:
        cost_metrics(since=NOW - dt.timedelta(days=7), until=NOW)
    s4 = costs["sessions"][3]
    for i in range(20):
        make_run(s4, at=NOW - dt.timedelta(hours=i * 5), cost=f"0.00{i}", model=f"m{i % 3}")
    with CaptureQueriesContext(connection) as many:
        cost_metrics(since=NOW - dt.timedelta(days=7), until=NOW)
    assert len(few.captured_queries) == len(many.captured_queries) == 5


def test_staff_see_the_cost_section_with_four_decimals_and_exact_tooltips(costs, monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    client = Client()
    client.force_login(UserFactory(username="boss", is_staff=True))
    page = client.get(PageRoutes.DASHBOARD).content.decode()
    assert '<h2 id="cost">Cost</h2>' in page
    assert '<div class="value" title="0.0362345001">0.0362</div>' in page  # the KPI and the total
    assert '<td class="num" title="0.0212345001">0.0212</td>' in page  # Writer, and alice's day
    assert '<td class="num" title="0.0000000001">' not in page  # r2 is inside its agent's sum, not alone
    for table in ("cost-components", "cost-models", "cost-users", "cost-days"):
        assert f'<table id="{table}">' in page
    assert "Crew (crew)" in page and "gpt-b (openai)" in page and "2026-11-19" in page
    assert 'data-chart="cost"' in page and 'data-chart="cost_components"' in page


def test_the_cost_section_is_staff_only(costs, user):
    assert Client().get(PageRoutes.DASHBOARD).status_code == 302
    plain = Client()
    plain.force_login(user)
    r = plain.get(PageRoutes.DASHBOARD)
    assert r.status_code == 302 and r.headers["Location"].startswith("/admin/login/")


def test_the_admin_shows_run_and_session_costs(costs, staff_user):
    client = Client()
    client.force_login(staff_user)
    t1 = costs["runs"]["t1"]
    listing = client.get("/admin/sessions_app/run/").content.decode()
    assert '<span title="0.015">0.0150</span>' in listing  # t1's total cost
    page = client.get(f"/admin/sessions_app/run/{t1.pk}/change/").content.decode()
    for label, shown in (("Cost", "0.0100000000"), ("Total cost", "0.0150000000"), ("Cache read tokens", "0")):
        assert f"<label>{label}:</label>" in page
        assert f'<div class="readonly">{shown}</div>' in page
    sessions = client.get("/admin/sessions_app/session/").content.decode()
    assert '<span title="0.0012345001">0.0012</span>' in sessions
    detail = client.get(f"/admin/sessions_app/session/{costs['sessions'][1].pk}/change/").content.decode()
    assert '<span title="0.015">0.0150</span>' in detail


# ---- telemetry ----------------------------------------------------------------------------------


@pytest.fixture
def telemetry_on(settings):
    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY": True, "TELEMETRY_URL": "http://testserver"}
    telemetry_reset_launch(pending=False)
    yield settings
    telemetry_reset_launch(pending=False)


@pytest.fixture
def collector(telemetry_on):
    """The project's own collector, in-process over httpx's WSGI transport (the request signals
    must not close the test's connection, as in Django's test client)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    _sender, key = telemetry_sender_create(name="me")
    telemetry_on.AGENTOS = {**telemetry_on.AGENTOS, "TELEMETRY_API_KEY": key}
    yield TelemetryClient(
        base_url="http://testserver", api_key=key, transport=httpx.WSGITransport(app=get_wsgi_application())
    )
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _record(**extra) -> dict:
    assert telemetry_record_run(
        event_type="agent",
        run_id="run-1",
        session_id=None,
        component_id="writer",
        model="gpt-a",
        provider="openai",
        status="completed",
        input_tokens=100,
        output_tokens=20,
        time_to_first_token=0.1,
        duration=1.0,
        **extra,
    )
    return TelemetryEvent.objects.order_by("-created_at").first().payload


V1_KEYS = {
    "schema_version",
    "event_id",
    "created_at",
    "kind",
    "event_type",
    "run_id",
    "session_id",
    "component_id",
    "model",
    "provider",
    "status",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "time_to_first_token",
    "duration",
    "error_type",
    "content",
}


@pytest.mark.django_db
def test_a_run_that_cost_something_is_a_version_2_event_and_the_collector_keeps_its_cost(collector):
    priced = _record(cost=0.0012345, cache_read_tokens=7)
    assert set(priced) == V1_KEYS | {"cost", "cache_read_tokens"}
    assert (priced["schema_version"], priced["cost"], priced["cache_read_tokens"]) == (2, 0.0012345, 7)
    free = _record(cost=0.0)
    cached_only = _record(cache_read_tokens=3)
    assert (set(free), free["schema_version"]) == (V1_KEYS, 1)  # as older collectors expect it
    assert (cached_only["schema_version"], cached_only["cost"], cached_only["cache_read_tokens"]) == (2, 0.0, 3)
    result = telemetry_flush(client=collector)
    assert (result.delivered, result.rejected) == (3, 0)
    received = {e["event_id"]: e for e in ReceivedEvent.objects.values_list("payload", flat=True)}
    assert received[priced["event_id"]] == priced  # stored as sent
    assert received[free["event_id"]] == free  # a version 1 event stays one (no cost field added)


@pytest.mark.django_db
def test_for_an_older_collector_version_2_events_are_sent_as_version_1(collector, telemetry_on):
    priced = _record(cost=0.5, cache_read_tokens=7)  # buffered as version 2
    telemetry_on.AGENTOS = {**telemetry_on.AGENTOS, "TELEMETRY_MAX_SCHEMA_VERSION": 1}
    assert telemetry_flush(client=collector).delivered == 1
    sent = ReceivedEvent.objects.get().payload
    assert (set(sent), sent["schema_version"]) == (V1_KEYS, 1)
    assert {k: v for k, v in priced.items() if k in V1_KEYS and k != "schema_version"} == {
        k: v for k, v in sent.items() if k != "schema_version"
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({"schema_version": 1, "cost": 0.5}, "Value error, cost: only in schema_version 2 run events"),
        (
            {"schema_version": 1, "cache_read_tokens": 0},
            "Value error, cache_read_tokens: only in schema_version 2 run events",
        ),
        ({"schema_version": 2, "cost": -1}, "Input should be greater than or equal to 0"),
        ({"schema_version": 2, "cost": "cheap"}, "Input should be a valid number, unable to parse string as a number"),
        ({"schema_version": 4, "cost": 0.5}, "Input should be 1, 2 or 3"),
    ],
    ids=["v1-with-cost", "v1-with-cached", "negative", "not-a-number", "unknown-version"],
)
def test_the_collector_accepts_version_2_run_events_and_refuses_malformed_ones(event, error):
    _sender, key = telemetry_sender_create(name="branch")
    good = _event(schema_version=2, cost=0.25, cache_read_tokens=4)
    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    r = client.post(ApiRoutes.BATCHES, _batch(good), content_type="application/json", **headers)
    assert (r.status_code, r.json()) == (202, {"received": 1, "stored": 1, "duplicates": 0})
    assert ReceivedEvent.objects.get().payload["cost"] == 0.25
    r = client.post(ApiRoutes.BATCHES, _batch(_event(**event)), content_type="application/json", **headers)
    assert r.status_code == 400 and r.json()["code"] == "invalid"
    assert [e["msg"] for e in r.json()["errors"]] == [error]
    assert ReceivedEvent.objects.count() == 1


def _event(**fields) -> dict:
    return {
        "kind": "run_created",
        "event_id": str(uuid.uuid4()),
        "created_at": "2026-11-20T10:00:00Z",
        "event_type": "agent",
        "run_id": str(uuid.uuid4()),
        "component_id": "writer",
        "status": "completed",
    } | fields


def _batch(*events: dict) -> str:
    return json.dumps({"schema_version": 1, "site_id": "b", "sent_at": "2026-11-20T10:01:00Z", "events": events})


# ---- Prometheus ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_prometheus_counter_adds_runs_costs(asgi, settings):
    settings.AGENTOS = {**settings.AGENTOS, "METRICS_TOKEN": SCRAPER}
    labels = {"kind": "agent", "component": "writer", "model": "gpt-a"}
    before = await scrape(asgi)
    run = {"status": "completed", "error_type": "", "provider": "openai", "duration": 1.0, "time_to_first_token": None}
    record_run(kind="agent", component="writer", input_tokens=10, output_tokens=2, cost=0.25, model="gpt-a", **run)
    record_run(kind="agent", component="writer", input_tokens=10, output_tokens=2, cost=0.125, model="gpt-a", **run)
    record_run(kind="agent", component="writer", input_tokens=10, output_tokens=2, cost=0.0, model="gpt-b", **run)
    after = await scrape(asgi)
    assert value(after, "agentos_run_cost_total", **labels) - value(before, "agentos_run_cost_total", **labels) == 0.375
    assert ("agentos_run_cost_total", tuple(sorted({**labels, "model": "gpt-b"}.items()))) not in after


# ---- a real run: what is stored is what is shown --------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_priced_runs_stored_cost_is_what_the_api_the_event_and_the_counter_show(
    asgi, agent, openai_model, token, scripted_model, settings
):
    """Whatever the engine stores as the run's cost (0 until it prices calls), the run's API shape,
    its telemetry event and the Prometheus counter say the same."""
    from asgiref.sync import sync_to_async

    openai_model.input_price, openai_model.output_price = D("2.5"), D("10")
    await sync_to_async(openai_model.save)()
    settings.AGENTOS = {**settings.AGENTOS, "METRICS_TOKEN": SCRAPER, "TELEMETRY": True}
    telemetry_reset_launch(pending=False)
    labels = {"kind": "agent", "component": agent.slug, "model": "scripted-model"}
    before = await scrape(asgi)
    scripted_model.push_text("Priced words.")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 200
    run = await Run.objects.aget(pk=r.json()["run_id"])
    stored = float(run.cost)
    shown = (await asgi.get(f"/api/runs/{run.pk}/", headers=bearer(token))).json()["metrics"]
    assert (shown["cost"], shown["total_cost"], shown["cache_read_tokens"]) == (
        stored,
        float(run.total_cost),
        run.cache_read_tokens,
    )
    event = (await TelemetryEvent.objects.filter(kind="run_created").afirst()).payload
    assert event.get("cost", 0.0) == stored
    # A run with a configuration version (every run of the engine) is a version 3 event.
    assert (event["schema_version"], event["config_version"]) == (3, 1)
    after = await scrape(asgi)
    counted = value(after, "agentos_run_cost_total", **labels) - value(before, "agentos_run_cost_total", **labels)
    assert counted == pytest.approx(stored, abs=1e-12)
