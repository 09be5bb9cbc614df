"""The metrics dashboard: staff only, aggregates computed by the database (exact values on known
data), percentiles that match percentile_cont on every backend, and the page with its SVG charts,
also rendered in headless Chromium."""

from __future__ import annotations

import datetime as dt
import math
import os
import random

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions_app.models import Run, Session
from telemetry_app import aggregates
from telemetry_app.aggregates import percentiles
from telemetry_app.charts import Series, bar_chart, fmt_seconds, line_chart, nice_ceiling
from telemetry_app.models import ReceivedEvent
from telemetry_app.routes import PageRoutes
from telemetry_app.selectors import run_metrics
from telemetry_app.services import telemetry_sender_create
from tests.browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from tests.factories import AgentFactory, ModelConfigFactory, UserFactory

URL = PageRoutes.DASHBOARD
NOW = dt.datetime(2026, 11, 20, 12, 30, tzinfo=dt.UTC)


def percentile_cont(values: list[float], p: float) -> float:
    """The definition (PostgreSQL's percentile_cont): linear interpolation between ranks."""
    ordered = sorted(values)
    pos = p * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo])


def make_run(agent, user, *, at, status="completed", duration=1.0, ttft=0.1, tokens=(10, 5), model=None, session=None):
    session = session or Session.objects.create(user=user, agent=agent)
    run = Run.objects.create(
        session=session,
        agent=agent,
        user=user,
        status=status,
        input="secret",
        model=model or agent.model.model_id,
        provider=agent.model.provider,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        total_tokens=sum(tokens),
        duration=None if status == "running" else duration,
        time_to_first_token=None if status == "running" else ttft,
        error_type="model_error" if status == "error" else "",
    )
    Run.objects.filter(pk=run.pk).update(created_at=at)
    return run


@pytest.fixture
def data(db):
    """Two agents on two models over the last days, with known durations and statuses."""
    user = UserFactory(username="u")
    fast = AgentFactory(slug="fast", name="Fast", model=ModelConfigFactory(model_id="small", provider="offline"))
    slow = AgentFactory(slug="slow", name="Slow", model=ModelConfigFactory(model_id="big", provider="openai"))
    session = Session.objects.create(user=user, agent=fast)
    # In the last 24 h: fast x4 at 11:xx and 10:xx, slow x3 (one error) at 09:xx, one running.
    for i, d in enumerate([0.1, 0.2, 0.3, 0.4]):
        make_run(
            fast, user, at=NOW - dt.timedelta(hours=1 + i // 2, minutes=5), duration=d, ttft=d / 2, session=session
        )
    make_run(slow, user, at=NOW - dt.timedelta(hours=3), duration=2.0, tokens=(100, 50))
    make_run(slow, user, at=NOW - dt.timedelta(hours=3), duration=4.0, tokens=(100, 50))
    make_run(slow, user, at=NOW - dt.timedelta(hours=3), status="error", duration=0.5, tokens=(100, 0))
    make_run(fast, user, at=NOW - dt.timedelta(minutes=1), status="running")
    # Three days ago (in 7d and 30d only) and forty days ago (in none).
    make_run(slow, user, at=NOW - dt.timedelta(days=3), duration=8.0, tokens=(1000, 1000))
    make_run(slow, user, at=NOW - dt.timedelta(days=40), duration=9.0)
    return {"user": user, "fast": fast, "slow": slow}


def test_the_last_24_hours_in_exact_figures(data):
    m = run_metrics(period="24h", now=NOW)
    assert (m.runs, m.completed, m.errors, m.cancelled, m.running) == (8, 6, 1, 0, 1)
    assert (m.input_tokens, m.output_tokens) == (4 * 10 + 300 + 10, 4 * 5 + 100 + 5)
    assert m.error_rate == pytest.approx(1 / 7)
    finished = [0.1, 0.2, 0.3, 0.4, 2.0, 4.0, 0.5]
    assert m.duration == pytest.approx({p: percentile_cont(finished, p) for p in (0.5, 0.95, 0.99)})
    assert m.ttft == pytest.approx({p: percentile_cont([0.05, 0.1, 0.15, 0.2, 0.1, 0.1, 0.1], p) for p in (0.5, 0.95)})
    assert len(m.buckets) == 24 and m.buckets[-1].start == NOW.replace(minute=0)
    by_hour = {b.start.hour: (b.runs, b.completed, b.errors) for b in m.buckets if b.runs}
    assert by_hour == {9: (3, 2, 1), 10: (2, 2, 0), 11: (2, 2, 0), 12: (1, 0, 0)}
    nine = next(b for b in m.buckets if b.start.hour == 9)
    assert (nine.p50, nine.p95) == pytest.approx((2.0, percentile_cont([0.5, 2.0, 4.0], 0.95)))
    assert nine.error_rate == pytest.approx(1 / 3)
    assert [(a.key, a.runs, a.errors, a.total_tokens) for a in m.agents] == [
        ("fast/Fast", 5, 0, 75),
        ("slow/Slow", 3, 1, 400),
    ]
    fast = m.agents[0]
    assert (fast.p50, fast.p95) == pytest.approx((0.25, percentile_cont([0.1, 0.2, 0.3, 0.4], 0.95)))
    assert fast.error_rate == 0 and m.agents[1].error_rate == pytest.approx(1 / 3)
    assert [(r.label, r.runs) for r in m.models] == [("small (offline)", 5), ("big (openai)", 3)]


def test_longer_periods_include_older_runs_in_their_buckets(data):
    week = run_metrics(period="7d", now=NOW)
    assert (week.runs, len(week.buckets)) == (9, 168)
    month = run_metrics(period="30d", now=NOW)
    assert (month.runs, len(month.buckets), month.period.bucket) == (9, 30, "day")
    assert month.buckets[-4].runs == 1 and month.buckets[-4].start == (NOW - dt.timedelta(days=3)).replace(
        hour=0, minute=0
    )
    assert month.input_tokens == 4 * 10 + 300 + 10 + 1000
    assert run_metrics(period="nonsense", now=NOW).period.key == "24h"


def test_the_number_of_queries_does_not_grow_with_the_data(data):
    with CaptureQueriesContext(connection) as few:
        run_metrics(period="7d", now=NOW)
    for i in range(30):
        make_run(data["slow"], data["user"], at=NOW - dt.timedelta(hours=i % 20), duration=i / 10)
    with CaptureQueriesContext(connection) as many:
        run_metrics(period="7d", now=NOW)
    assert len(few.captured_queries) == len(many.captured_queries) <= 9


@pytest.mark.django_db
@pytest.mark.parametrize("native", [True, False], ids=["native", "window-functions"])
def test_percentiles_match_percentile_cont_per_group(native, monkeypatch):
    if native and connection.vendor != "postgresql":
        pytest.skip("percentile_cont is PostgreSQL's")
    monkeypatch.setattr(aggregates, "native_percentiles", lambda using="default": native)
    user = UserFactory(username="p")
    agents = [AgentFactory(slug=f"a{i}") for i in range(3)]
    rng = random.Random(7)
    values: dict[str, list[float]] = {a.slug: [] for a in agents}
    for agent, n in zip(agents, (1, 2, 37), strict=True):
        for _ in range(n):
            d = round(rng.uniform(0, 10), 3)
            values[agent.slug].append(d)
            make_run(agent, user, at=NOW, duration=d)
    make_run(agents[0], user, at=NOW, status="running")  # NULL duration: ignored
    fractions = (0, 0.5, 0.9, 0.95, 0.99, 1)
    got = percentiles(Run.objects.all(), "duration", fractions, ["agent__slug"])
    assert set(got) == {(a.slug,) for a in agents}
    for slug, vals in values.items():
        assert got[(slug,)] == pytest.approx({p: percentile_cont(vals, p) for p in fractions})
    everything = [v for vals in values.values() for v in vals]
    overall = percentiles(Run.objects.all(), "duration", fractions)[()]
    assert overall == pytest.approx({p: percentile_cont(everything, p) for p in fractions})
    assert percentiles(Run.objects.none(), "duration", (0.5,)) == {(): {0.5: None}}


def test_charts_are_svg_with_escaped_labels_and_nice_axes():
    assert [nice_ceiling(v) for v in (0, 0.7, 1, 3, 7, 12, 999)] == [1, 1, 1, 5, 10, 20, 1000]
    svg = bar_chart(chart_id="x", title="<Runs>", labels=["a&b", "c"], series=[Series("ok", "#000", [1, 3])])
    assert svg.startswith('<svg class="chart" data-chart="x"') and svg.endswith("</svg>")
    assert "&lt;Runs&gt;" in svg and "a&amp;b" in svg and "<Runs>" not in svg
    assert svg.count('class="bar"') == 2
    empty = line_chart(chart_id="y", title="t", labels=["a"], series=[Series("s", "#000", [None])])
    assert "No data in this period" in empty
    assert fmt_seconds(0.0123) == "12 ms" and fmt_seconds(2.5) == "2.50 s"


def test_only_staff_see_the_dashboard(data):
    anonymous = Client().get(URL)
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/admin/login/")
    client = Client()
    client.force_login(UserFactory(username="plain"))
    assert client.get(URL).status_code == 302
    assert client.post(URL).status_code in (302, 405)


def test_the_page_shows_figures_and_eight_charts(data, monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    client = Client()
    client.force_login(UserFactory(username="boss", is_staff=True))
    page = client.get(URL).content.decode()
    assert page.count('<svg class="chart"') == 8
    for chart in ("runs", "tokens", "latency", "errors", "agents", "models", "cost", "cost_components"):
        assert f'data-chart="{chart}"' in page
    assert '<div class="value">8</div>' in page  # runs in the last 24 h
    assert "14.3%" in page  # 1 error / 7 finished
    assert "Fast (fast)" in page and "big (openai)" in page
    assert "secret" not in page
    assert "Collected telemetry" not in page  # alpha feature, off
    week = client.get(URL + "?period=7d").content.decode()
    assert '<div class="value">9</div>' in week and 'aria-current="page">Last 7 days' in week


def test_collected_telemetry_is_an_alpha_feature(data, settings, monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    sender, _ = telemetry_sender_create(name="branch-office")
    ReceivedEvent.objects.create(
        sender=sender,
        event_id="00000000-0000-4000-8000-000000000001",
        kind="run_created",
        event_type="agent",
        site_id="site-b",
        payload={},
        created_at=NOW - dt.timedelta(hours=1),
    )
    settings.AGENTOS = {**settings.AGENTOS, "ALPHA_FEATURES": True}
    client = Client()
    client.force_login(UserFactory(username="boss", is_staff=True))
    page = client.get(URL).content.decode()
    assert "Collected telemetry" in page and "branch-office" in page and "site-b" in page


# ---- in a real browser -----------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_dashboard_renders_its_charts_in_chromium(live_server, tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright

    user = UserFactory(username="boss", is_staff=True, is_superuser=True)
    agent = AgentFactory(slug="chart-agent", name="Chart agent")
    now = timezone.now()
    for i in range(12):
        make_run(
            agent,
            user,
            at=now - dt.timedelta(hours=i % 6, minutes=1),
            status="error" if i % 5 == 0 else "completed",
            duration=0.2 + i / 10,
            tokens=(20 + i, 10),
        )
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.on("request", lambda r: requests.append(r.url))
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "response",
                lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None,
            )
            page.goto(f"{live_server.url}{URL}?period=24h")
            page.fill("#id_username", "boss")
            page.fill("#id_password", "pw-for-tests-123")
            page.click("input[type=submit]")
            page.wait_for_url(f"**{URL}?period=24h")
            assert page.locator("h1").first.inner_text() == "Metrics"
            charts = page.locator("svg.chart")
            assert charts.count() == 8
            for name in ("runs", "tokens", "latency", "errors", "agents", "models"):
                chart = page.locator(f'svg[data-chart="{name}"]')
                assert chart.is_visible(), name
                box = chart.bounding_box()
                assert box is not None and box["width"] > 200 and box["height"] > 40, (name, box)
            assert page.locator('svg[data-chart="runs"] rect.bar').count() >= 6
            assert page.locator('svg[data-chart="latency"] polyline').count() == 2
            assert page.locator('svg[data-chart="agents"] rect.bar').count() == 1
            assert page.locator('[data-kpi="runs"] .value').inner_text() == "12"
            assert page.locator('[data-kpi="error-rate"] .value').inner_text() == "25%"
            tooltip = page.locator('svg[data-chart="runs"] rect.bar title').first.text_content()
            assert "completed" in tooltip or "error" in tooltip
            page.screenshot(
                path=os.environ.get("DASHBOARD_SCREENSHOT", str(tmp_path / "dashboard.png")), full_page=True
            )
            page.click("text=Last 30 days")
            page.wait_for_url("**period=30d")
            assert page.locator('[data-kpi="runs"] .value').inner_text() == "12"
            assert page.locator('svg[data-chart="runs"] rect.bar').count() >= 1
        finally:
            browser.close()
    assert errors == []
    assert all(url.startswith(live_server.url) for url in requests), "no CDN, no third-party request"
