"""`/healthz`, `/readyz` and agno's `/os/health` through the real ASGI application: ready on the
embedded defaults; not ready (503, with the failed check named) when the channel layer's Redis or
the broker cannot be reached, when a migration is unapplied, when no Celery worker or beat has
beaten recently though the deployment needs one; a hung dependency costs at most the timeout.

The heartbeats' Celery side runs here through the signal handlers a real worker and beat call
(a real `celery worker -B` seen by `/readyz`: tests/test_hooks_celery.py).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from agno.os.schema import HealthResponse
from celery import current_app
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test import override_settings
from django.utils import timezone

from agents_app import health
from sessions_app.models import ServerProcess
from tests.live_server import free_port

pytestmark = pytest.mark.django_db(transaction=True)

CHECK_NAMES = ["database", "migrations", "cache", "channel_layer", "broker", "worker", "beat"]


def redis_layer(url: str) -> dict[str, Any]:
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}}


@pytest.fixture(autouse=True)
def _fresh_results() -> Iterator[None]:
    health.forget_cached_results()
    yield
    health.forget_cached_results()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture
def real_broker(monkeypatch: pytest.MonkeyPatch) -> str:
    """Celery's broker URL, as the checks read it, set to a Redis nobody listens on: a deployment
    with a broker server (the check of the broker itself is excluded where a test is not about it)."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setitem(current_app.conf, "broker_url", url)
    return url


def process_row(kind: str, seconds_ago: float) -> ServerProcess:
    at = timezone.now() - timedelta(seconds=seconds_ago)
    return ServerProcess.objects.create(id=os.urandom(16).hex(), kind=kind, started_at=at, beat_at=at)


async def test_healthz_answers_without_asking_anything(asgi):
    r = await asgi.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert r.headers["content-type"] == "application/json" and r.headers["cache-control"] == "no-store"
    r = await asgi.post("/healthz")  # no CSRF token, no session: a JSON 405, not a 403 page
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed" and r.headers["allow"] == "GET, HEAD"


async def test_ready_on_the_embedded_defaults_and_os_health_says_the_same(asgi):
    r = await asgi.get("/readyz")
    body = r.json()
    assert r.status_code == 200, body
    assert body["status"] == "ok" and list(body["checks"]) == CHECK_NAMES
    statuses = {name: check["status"] for name, check in body["checks"].items()}
    assert statuses == {
        "database": "ok",
        "migrations": "ok",
        "cache": "ok",
        "channel_layer": "ok",  # in-memory, or Redis where REDIS_URL is set (CI's PostgreSQL pass)
        "broker": "skipped",  # memory://
        "worker": "ok",  # the embedded worker thread
        "beat": "skipped",
    }
    assert all(isinstance(check["latency_ms"], float) and "error" not in check for check in body["checks"].values())
    assert "detail" not in body and "code" not in body

    r = await asgi.get("/os/health")
    assert r.status_code == 200
    assert HealthResponse.model_validate(r.json()).status == "ok"  # agno's own model of the answer
    assert {name: check["status"] for name, check in r.json()["checks"].items()} == statuses


async def test_an_unreachable_redis_channel_layer_is_a_503(asgi):
    port = free_port()
    with override_settings(CHANNEL_LAYERS=redis_layer(f"redis://127.0.0.1:{port}/0")):
        r = await asgi.get("/readyz")
        os_health = await asgi.get("/os/health")
    body = r.json()
    assert r.status_code == 503, body
    assert body["status"] == "unavailable"
    assert body["detail"] == "Not ready: channel_layer." and body["code"] == "unavailable"
    layer = body["checks"]["channel_layer"]
    assert layer["status"] == "failed" and str(port) in layer["error"], layer
    assert body["checks"]["database"]["status"] == "ok"
    assert os_health.status_code == 503
    assert os_health.json()["checks"]["channel_layer"]["status"] == "failed"
    assert HealthResponse.model_validate(os_health.json()).status == "unavailable"


async def test_a_hung_dependency_costs_the_timeout_not_more(asgi, silent_port, monkeypatch):
    monkeypatch.setitem(current_app.conf, "broker_url", f"redis://127.0.0.1:{silent_port}/0")
    with (
        override_settings(CHANNEL_LAYERS=redis_layer(f"redis://127.0.0.1:{silent_port}/0")),
        override_settings(AGENTOS={"HEALTH_TIMEOUT_SECONDS": 0.5}),
    ):
        started = time.monotonic()
        r = await asgi.get("/readyz?exclude=worker,beat")
        elapsed = time.monotonic() - started
    body = r.json()
    assert r.status_code == 503, body
    for name in ("channel_layer", "broker"):
        assert body["checks"][name]["status"] == "failed" and body["checks"][name]["error"] == "timed out", body
    assert (
        body["checks"]["worker"]
        == body["checks"]["beat"]
        == {"status": "skipped", "latency_ms": 0.0, "detail": "excluded"}
    )
    assert elapsed < 1.5, elapsed  # the checks run concurrently, each within the timeout


async def test_an_unreachable_broker_is_a_503(asgi, real_broker):
    r = await asgi.get("/readyz")
    body = r.json()
    assert r.status_code == 503, body
    broker = body["checks"]["broker"]
    port = real_broker.rsplit(":", 1)[1].split("/")[0]
    assert broker["status"] == "failed" and "onnection refused" in broker["error"] and port in broker["error"], broker


async def test_worker_and_beat_heartbeats_decide_with_a_real_broker(asgi, real_broker):
    # A real broker, background hooks possible, no embedded worker: a worker and beat must be beating.
    r = await asgi.get("/readyz?exclude=broker")
    body = r.json()
    assert r.status_code == 503, body
    assert body["detail"] == "Not ready: worker, beat."
    assert body["checks"]["worker"]["error"] == "no worker heartbeat in the last 6 s (never seen)"

    worker = await ServerProcess.objects.acreate(
        id="w" * 32, kind="worker", started_at=timezone.now(), beat_at=timezone.now() - timedelta(seconds=60)
    )
    await ServerProcess.objects.acreate(id="b" * 32, kind="beat", started_at=timezone.now(), beat_at=timezone.now())
    # A server process's heartbeat is not a worker's.
    await ServerProcess.objects.acreate(id="s" * 32, kind="server", started_at=timezone.now(), beat_at=timezone.now())
    r = await asgi.get("/readyz?exclude=broker")
    body = r.json()
    assert r.status_code == 503 and body["detail"] == "Not ready: worker.", body
    assert body["checks"]["worker"]["error"] == "no worker heartbeat in the last 6 s (last seen 60 s ago)"
    assert body["checks"]["beat"]["status"] == "ok" and body["checks"]["beat"]["detail"].startswith("1 beat seen")

    worker.beat_at = timezone.now()
    await worker.asave()
    r = await asgi.get("/readyz", params={"exclude": "broker"})
    assert r.status_code == 200, r.json()
    assert r.json()["checks"]["worker"]["detail"].startswith("1 worker seen, last ")
    assert r.json()["checks"]["broker"] == {"status": "skipped", "latency_ms": 0.0, "detail": "excluded"}


async def test_which_deployments_need_a_worker_and_beat(asgi, real_broker):
    # Every hook inline and telemetry off: nothing needs either.
    with override_settings(AGENTOS={"HOOKS_BACKGROUND": "never"}):
        body = (await asgi.get("/readyz?exclude=broker")).json()
    assert body["status"] == "ok", body
    assert body["checks"]["worker"]["status"] == body["checks"]["beat"]["status"] == "skipped"
    # An embedded worker in this process sweeps and runs hooks itself; telemetry still needs beat.
    with override_settings(AGENTOS={"HOOKS_EMBEDDED_WORKER": "true", "TELEMETRY": True}):
        body = (await asgi.get("/readyz?exclude=broker")).json()
    assert body["checks"]["worker"]["status"] == "ok"
    assert body["checks"]["beat"]["status"] == "failed" and body["detail"] == "Not ready: beat."
    # memory:// without the embedded worker: nothing would ever run a background hook.
    current_app.conf.broker_url = "memory://"
    with override_settings(AGENTOS={"HOOKS_EMBEDDED_WORKER": "false"}):
        body = (await asgi.get("/readyz")).json()
    assert body["detail"] == "Not ready: worker." and body["checks"]["beat"]["status"] == "skipped"


async def test_an_unapplied_migration_is_a_503(asgi):
    # The migrations this code has and the database's record of them; the positive answer is kept
    # for a while (a process's migrations only go from unapplied to applied), so forget it.
    from django.db.migrations.loader import MigrationLoader

    latest = MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes("sessions_app")[0]
    assert (await asgi.get("/readyz")).status_code == 200
    recorder = MigrationRecorder(connection)
    await _sync(recorder.record_unapplied, *latest)
    try:
        assert (await asgi.get("/readyz")).status_code == 200  # the kept answer
        health.forget_cached_results()
        r = await asgi.get("/readyz")
        body = r.json()
        assert r.status_code == 503 and body["detail"] == "Not ready: migrations.", body
        assert body["checks"]["migrations"]["error"] == f"unapplied: sessions_app.{latest[1]}"
        assert (await asgi.get("/os/health")).status_code == 503
    finally:
        await _sync(recorder.record_applied, *latest)
    health.forget_cached_results()
    assert (await asgi.get("/readyz")).status_code == 200


async def test_exclude_names_known_checks_only(asgi):
    r = await asgi.get("/readyz?exclude=workers")
    assert r.status_code == 400 and r.json()["code"] == "invalid" and "workers" in r.json()["detail"]
    r = await asgi.get("/readyz?exclude=cache&exclude=channel_layer,beat")
    checks = r.json()["checks"]
    assert [name for name, check in checks.items() if check.get("detail") == "excluded"] == [
        "cache",
        "channel_layer",
        "beat",
    ]


async def test_the_celery_signal_handlers_beat_and_a_worker_that_stops_is_gone_at_once(asgi, real_broker):
    fast = {"PROCESS_HEARTBEAT_SECONDS": 0.1}
    service = SimpleNamespace(_last_tick=time.monotonic(), effective_max_interval=1.0)
    with override_settings(AGENTOS=fast):
        health._on_worker_ready()
        health._on_beat_init(sender=service)
        try:
            await _eventually(lambda: ServerProcess.objects.filter(kind__in=["worker", "beat"]).count() == 2)
            rows = {row.kind: row async for row in ServerProcess.objects.all()}
            assert rows["worker"].pid == rows["beat"].pid == os.getpid()
            assert (await asgi.get("/readyz?exclude=broker")).status_code == 200

            # Beat's scheduler stopped ticking (wedged) for longer than it may sleep: no more beats.
            service._last_tick = time.monotonic() - 60
            await asyncio.sleep(0.3)  # a beat already under way lands
            beat_at = (await ServerProcess.objects.aget(kind="beat")).beat_at
            await asyncio.sleep(0.4)
            assert (await ServerProcess.objects.aget(kind="beat")).beat_at == beat_at
        finally:
            health._on_worker_shutdown()  # as `celery worker` calls it when it stops
            health._heartbeats.pop("beat").stop()
    assert not await ServerProcess.objects.filter(kind="worker").aexists()
    body = (await asgi.get("/readyz?exclude=broker")).json()
    assert body["checks"]["worker"]["error"] == "no worker heartbeat in the last 6 s (never seen)"


async def test_a_reachable_redis_channel_layer_is_ok(asgi, isolated_redis):
    layers = redis_layer(isolated_redis.url)
    layers["default"]["CONFIG"]["prefix"] = isolated_redis.prefix
    with override_settings(CHANNEL_LAYERS=layers):
        r = await asgi.get("/readyz")
    assert r.status_code == 200, r.json()
    assert r.json()["checks"]["channel_layer"] == {
        "status": "ok",
        "latency_ms": r.json()["checks"]["channel_layer"]["latency_ms"],
        "detail": "RedisChannelLayer",
    }


async def _sync(fn: Any, *args: Any) -> Any:
    from asgiref.sync import sync_to_async

    return await sync_to_async(fn)(*args)


async def _eventually(condition: Any, timeout: float = 5.0) -> None:
    from asgiref.sync import sync_to_async

    deadline = time.monotonic() + timeout
    while not await sync_to_async(condition)():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
