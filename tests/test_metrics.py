"""Prometheus metrics at /metrics: access, the counters a run, a model error, a websocket and a busy
session move (through the real ASGI stack), the database readings, counting a run once only, and
several processes adding up in multiprocess mode."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from prometheus_client.parser import text_string_to_metric_families

from agents_app.models import HookExecution
from sessions_app.models import Run
from tests.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent
SCRAPER = "s3cret-scraper-token"


@pytest.fixture(autouse=True)
def _metrics_token(settings: Any) -> None:
    settings.AGENTOS = {**settings.AGENTOS, "METRICS_TOKEN": SCRAPER}


async def scrape(asgi: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await asgi.get("/metrics", headers={"Authorization": f"Bearer {SCRAPER}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_need_the_token_or_a_staff_session(asgi, staff_user, user, settings):
    r = await asgi.get("/metrics")
    assert (r.status_code, r.json()["code"]) == (401, "not_authenticated")
    assert r.headers["www-authenticate"] == "Bearer"
    r = await asgi.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = await asgi.post("/metrics", headers={"Authorization": f"Bearer {SCRAPER}"})
    assert (r.status_code, r.json()["code"]) == (405, "method_not_allowed")
    await asgi.get("/metrics", headers={"Authorization": f"Bearer {SCRAPER}"})  # ok (checked in `scrape`)
    settings.AGENTOS = {**settings.AGENTOS, "METRICS_TOKEN": ""}  # no token: staff only
    r = await asgi.get("/metrics", headers={"Authorization": "Bearer "})
    assert r.status_code == 401
    settings.AGENTOS = {**settings.AGENTOS, "METRICS_ENABLED": False}
    r = await asgi.get("/metrics", headers={"Authorization": f"Bearer {SCRAPER}"})
    assert (r.status_code, r.json()["code"]) == (404, "not_found")


def test_a_staff_session_may_look(client, staff_user, user, settings):
    settings.AGENTOS = {**settings.AGENTOS, "METRICS_TOKEN": ""}
    client.force_login(user)
    assert client.get("/metrics").status_code == 401
    client.force_login(staff_user)
    r = client.get("/metrics")
    assert r.status_code == 200 and b"agentos_runs_running" in r.content


async def test_runs_tokens_and_model_errors_are_counted(asgi, agent, token, scripted_model):
    before = await scrape(asgi)
    scripted_model.push_text("Hello there.")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 200
    scripted_model.push_text("Streamed words here.")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi", "stream": True}, headers=bearer(token))
    assert r.status_code == 200
    scripted_model.push_error(500, "upstream exploded")
    r = await asgi.post(f"/api/agents/{agent.slug}/runs", json={"message": "hi"}, headers=bearer(token))
    assert r.status_code == 502
    error_type = r.json()["error"]["type"]
    after = await scrape(asgi)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"kind": "agent", "component": "helper", "status": "completed", "error_type": ""}
    assert delta("agentos_runs_total", **ok) == 2
    assert delta("agentos_runs_total", **{**ok, "status": "error", "error_type": error_type}) == 1
    assert delta("agentos_model_errors_total", provider="openai", error_type=error_type) == 1
    assert delta("agentos_run_duration_seconds_count", kind="agent") == 3
    assert delta("agentos_run_time_to_first_token_seconds_count", kind="agent") == 2
    tokens = [
        t async for t in Run.objects.filter(agent=agent, status="completed").values_list("output_tokens", flat=True)
    ]
    assert delta("agentos_run_tokens_total", kind="agent", component="helper", direction="output") == sum(tokens) > 0
    assert value(after, "agentos_runs_running") == 0


async def test_a_run_stored_twice_is_counted_once(asgi, agent, user):
    """A run taken over by another process while its owner was storing it: one count."""
    from agents_app.engine.outcome import store_run
    from agents_app.engine.runner import run_prepare
    from agents_app.runtime import _settle_interrupted
    from sessions_app.db import db_call

    handle = await db_call(run_prepare, agent_id=agent.slug, user=user, message="hi")
    await Run.objects.filter(pk=handle.run_id).aupdate(owner="d" * 32)
    before = await scrape(asgi)
    await db_call(_settle_interrupted, handle.run_id)
    await db_call(
        store_run,
        run_id=handle.run_id,
        session_id=handle.session_id,
        message="hi",
        outcome={"status": "completed", "output": "late"},
        messages=[],
        metrics={},
        events=[],
        state_set={},
        state_unset=[],
        telemetry_type="agent",
        component_id=agent.slug,
        model="",
        provider="",
    )
    after = await scrape(asgi)
    labels = {"kind": "agent", "component": agent.slug}
    interrupted = {**labels, "status": "error", "error_type": "interrupted"}
    assert value(after, "agentos_runs_total", **interrupted) - value(before, "agentos_runs_total", **interrupted) == 1
    completed = {**labels, "status": "completed", "error_type": ""}
    assert value(after, "agentos_runs_total", **completed) == value(before, "agentos_runs_total", **completed)


async def test_open_websockets_and_busy_session_waits(asgi, agent, token, scripted_model):
    from agentos_site.asgi import application

    before = await scrape(asgi)
    socket = WebsocketCommunicator(application, f"/ws/agents/{agent.slug}/", subprotocols=["agentos", f"token.{token}"])
    connected, _ = await socket.connect()
    assert connected
    during = await scrape(asgi)
    assert (
        value(during, "agentos_websockets_open", kind="agent")
        == value(before, "agentos_websockets_open", kind="agent") + 1
    )
    # A message into a busy session waits (queue policy), then starts.
    scripted_model.push_text("a slow first answer", chunk_delay=0.1)
    scripted_model.push_text("second")
    await socket.send_json_to({"type": "run", "message": "first"})
    started = await socket.receive_json_from(5)
    queued = asyncio.ensure_future(
        asgi.post(
            f"/api/agents/{agent.slug}/runs",
            json={"message": "second", "session_id": started["session_id"]},
            headers=bearer(token),
        )
    )
    assert (await asyncio.wait_for(queued, 20)).status_code == 200
    await socket.disconnect()
    after = await scrape(asgi)
    assert value(after, "agentos_websockets_open", kind="agent") == value(
        before, "agentos_websockets_open", kind="agent"
    )
    waits = value(after, "agentos_busy_session_waits_total", policy="queue", outcome="started")
    assert waits - value(before, "agentos_busy_session_waits_total", policy="queue", outcome="started") == 1
    assert value(after, "agentos_busy_session_wait_seconds_count") > value(
        before, "agentos_busy_session_wait_seconds_count"
    )


async def test_database_readings(asgi, agent, user):
    from agents_app.engine.runner import run_prepare
    from sessions_app.db import db_call

    handle = await db_call(run_prepare, agent_id=agent.slug, user=user, message="hi")
    await HookExecution.objects.acreate(run_id=handle.run_id, hook_name="track_topics", phase="pre")
    await HookExecution.objects.acreate(run_id=handle.run_id, hook_name="other", phase="pre", status="failed")
    samples = await scrape(asgi)
    assert value(samples, "agentos_runs_running") == 1
    assert value(samples, "agentos_hook_executions", status="queued") == 1
    assert value(samples, "agentos_hook_executions", status="failed") == 1
    assert value(samples, "agentos_hook_executions", status="succeeded") == 0
    assert 0 <= value(samples, "agentos_hook_queue_oldest_seconds") < 60
    assert value(samples, "agentos_telemetry_buffer_events") == 0


def test_several_processes_add_up_in_multiprocess_mode(tmp_path):
    """Two processes record runs into one PROMETHEUS_MULTIPROC_DIR; a third renders their sum."""
    shared = tmp_path / "prom"
    shared.mkdir()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'm.sqlite3'}",
        "DJANGO_LOG_LEVEL": "ERROR",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    record = (
        "from telemetry_app.metrics import record_run; "
        "[record_run(kind='agent', component='a', status='completed', error_type='', provider='openai', "
        "duration=1.0, time_to_first_token=0.2, input_tokens=3, output_tokens=5) for _ in range({n})]"
    )
    run = [sys.executable, "manage.py", "shell", "--no-imports", "-c"]
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    for n in (2, 3):
        subprocess.run([*run, record.format(n=n)], cwd=ROOT, env=env, check=True)
    out = subprocess.run(
        [*run, "from telemetry_app.metrics import render; print(render().decode())"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
    }
    labels = {"kind": "agent", "component": "a", "status": "completed", "error_type": ""}
    assert value(samples, "agentos_runs_total", **labels) == 5
    assert value(samples, "agentos_run_tokens_total", kind="agent", component="a", direction="output") == 25
    assert "agentos_runs_running" in out  # the database readings too
