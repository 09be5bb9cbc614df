"""Uploading the buffer: batches to the project's own collector (in-process, through httpx's WSGI
transport), marking delivered, backoff on failure, isolating a refused event, expiry, claims that
never overlap, the management command and the Celery task."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from io import StringIO

import httpx
import orjson
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents_app.runs import run_agent
from telemetry_app import services
from telemetry_app.api import Client, UploadError
from telemetry_app.conf import RUNTIME_URLS, telemetry_base_url
from telemetry_app.models import ReceivedEvent, TelemetryEvent
from telemetry_app.services import (
    telemetry_flush,
    telemetry_record_run,
    telemetry_reset_launch,
    telemetry_sender_create,
)
from telemetry_app.tasks import FLUSH_TASK, telemetry_flush_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def telemetry_on(settings):
    settings.AGENTOS = {
        **settings.AGENTOS,
        "TELEMETRY": True,
        "TELEMETRY_URL": "http://testserver",
        "TELEMETRY_API_KEY": "",
    }
    telemetry_reset_launch(pending=False)
    yield settings
    telemetry_reset_launch(pending=False)


@pytest.fixture
def wsgi_app():
    """The site's WSGI application, called in-process. Like Django's test client, keep the request
    signals from closing the test's database connection (it holds the test transaction)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def collector(telemetry_on, wsgi_app):
    """The project's own collector, served in-process over httpx's WSGI transport."""
    _sender, key = telemetry_sender_create(name="me")
    telemetry_on.AGENTOS = {**telemetry_on.AGENTOS, "TELEMETRY_API_KEY": key}
    return Client(base_url="http://testserver", api_key=key, transport=httpx.WSGITransport(app=wsgi_app))


class Recorder:
    """A mock collector: answers with `status(batch)` and keeps every batch it saw."""

    def __init__(self, status=lambda batch: 202) -> None:
        self.batches: list[dict] = []
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.batches.append(body)
        code = self.status(body)
        return httpx.Response(code, json={"detail": "scripted"} if code >= 400 else {"stored": len(body["events"])})

    def client(self) -> Client:
        return Client(base_url="http://testserver", api_key="k", transport=httpx.MockTransport(self))


def record(n: int, **overrides) -> list[uuid.UUID]:
    for i in range(n):
        kwargs = {
            "event_type": "agent",
            "run_id": f"run-{i}",
            "session_id": None,
            "component_id": "demo",
            "model": "m",
            "provider": "offline",
            "status": "completed",
            "input_tokens": i,
            "output_tokens": 1,
            "time_to_first_token": None,
            "duration": 0.5,
        } | overrides
        assert telemetry_record_run(**kwargs)
    return list(TelemetryEvent.objects.order_by("created_at").values_list("pk", flat=True))


def test_runs_events_are_uploaded_in_one_batch_and_marked_delivered(collector, offline_agent, user):
    telemetry_reset_launch()
    results = [run_agent(agent_id=offline_agent.slug, user=user, message=f"hi {i}") for i in range(3)]
    result = telemetry_flush(client=collector)
    assert (result.batches, result.delivered, result.failed, result.error) == (1, 4, 0, "")
    assert TelemetryEvent.objects.filter(delivered_at__isnull=True).count() == 0
    sent = set(TelemetryEvent.objects.values_list("pk", flat=True))
    assert set(ReceivedEvent.objects.values_list("event_id", flat=True)) == sent
    runs = ReceivedEvent.objects.filter(kind="run_created")
    assert sorted(e.payload["run_id"] for e in runs) == sorted(r.run_id for r in results)
    assert ReceivedEvent.objects.get(kind="launch").payload["agents"] == ["offline"]
    assert telemetry_flush(client=collector).batches == 0  # nothing left to send


def test_batches_follow_the_batch_size_and_max_batches(telemetry_on):
    telemetry_on.AGENTOS = {**telemetry_on.AGENTOS, "TELEMETRY_BATCH_SIZE": 2}
    ids = record(5)
    mock = Recorder()
    result = telemetry_flush(client=mock.client(), max_batches=1)
    assert (result.batches, result.delivered) == (1, 2)
    result = telemetry_flush(client=mock.client())
    assert (result.batches, result.delivered) == (2, 3)
    assert [len(b["events"]) for b in mock.batches] == [2, 2, 1]
    assert [uuid.UUID(e["event_id"]) for b in mock.batches for e in b["events"]] == ids  # oldest first
    assert {b["site_id"] for b in mock.batches} == {services.telemetry_site_id()}


def test_a_failed_upload_keeps_the_events_and_backs_off_exponentially(telemetry_on):
    ids = record(3)
    down = Recorder(lambda b: 503)
    t0 = timezone.now()
    result = telemetry_flush(client=down.client(), now=t0)
    assert (result.delivered, result.failed) == (0, 3)
    assert result.error.startswith("HTTP 503")
    rows = list(TelemetryEvent.objects.order_by("created_at"))
    assert [r.pk for r in rows] == ids
    assert {(r.attempts, r.claim, r.delivered_at) for r in rows} == {(1, None, None)}
    first_delay = (rows[0].next_attempt_at - t0).total_seconds()
    assert 27 <= first_delay <= 33  # 30 s, +-10% jitter
    assert rows[0].last_error.startswith("HTTP 503")

    # Not due yet: no request at all.
    assert telemetry_flush(client=down.client(), now=t0 + dt.timedelta(seconds=20)).failed == 0
    assert len(down.batches) == 1

    t1 = t0 + dt.timedelta(seconds=40)
    telemetry_flush(client=down.client(), now=t1)
    second_delay = (TelemetryEvent.objects.first().next_attempt_at - t1).total_seconds()
    assert TelemetryEvent.objects.first().attempts == 2 and 54 <= second_delay <= 66

    TelemetryEvent.objects.update(attempts=30)  # the cap holds however often it failed
    t2 = t1 + dt.timedelta(hours=1)
    telemetry_flush(client=down.client(), now=t2)
    capped = (TelemetryEvent.objects.first().next_attempt_at - t2).total_seconds()
    assert 3240 <= capped <= 3960

    up = Recorder()
    result = telemetry_flush(client=up.client(), now=t2 + dt.timedelta(hours=2))
    assert (result.delivered, result.failed) == (3, 0)
    assert TelemetryEvent.objects.filter(delivered_at__isnull=True).count() == 0


def test_connection_errors_and_timeouts_are_retried(telemetry_on):
    record(2)

    def refuse(request):
        raise httpx.ConnectError("connection refused")

    client = Client(base_url="http://testserver", transport=httpx.MockTransport(refuse))
    result = telemetry_flush(client=client)
    assert result.failed == 2 and "ConnectError" in result.error
    assert TelemetryEvent.objects.filter(attempts=1).count() == 2

    def slow(request):
        raise httpx.ReadTimeout("slow")

    client = Client(base_url="http://testserver", transport=httpx.MockTransport(slow))
    result = telemetry_flush(client=client, now=timezone.now() + dt.timedelta(minutes=5))
    assert result.failed == 2 and result.error == "timed out: ReadTimeout"


def test_a_refused_event_is_isolated_and_dropped_the_rest_delivered(telemetry_on):
    ids = record(8)
    bad = str(ids[5])
    mock = Recorder(lambda b: 400 if any(e["event_id"] == bad for e in b["events"]) else 202)
    result = telemetry_flush(client=mock.client())
    assert (result.delivered, result.rejected) == (7, 1)
    assert not TelemetryEvent.objects.filter(pk=ids[5]).exists()
    assert TelemetryEvent.objects.filter(delivered_at__isnull=False).count() == 7
    delivered = [
        e["event_id"] for b in mock.batches if not any(x["event_id"] == bad for x in b["events"]) for e in b["events"]
    ]
    assert sorted(delivered) == sorted(str(i) for i in ids if str(i) != bad)


def test_a_batch_too_large_for_the_collector_is_split(telemetry_on):
    record(10)
    mock = Recorder(lambda b: 413 if len(b["events"]) > 3 else 202)
    result = telemetry_flush(client=mock.client())
    assert (result.delivered, result.rejected, result.failed) == (10, 0, 0)
    assert max(len(b["events"]) for b in mock.batches if len(b["events"]) <= 3) <= 3


def test_old_undelivered_events_are_dropped_and_delivered_ones_purged(telemetry_on, caplog):
    record(4)
    week_ago = timezone.now() - dt.timedelta(days=8)
    old = list(TelemetryEvent.objects.values_list("pk", flat=True)[:2])
    TelemetryEvent.objects.filter(pk=old[0]).update(created_at=week_ago)
    TelemetryEvent.objects.filter(pk=old[1]).update(created_at=week_ago, delivered_at=week_ago)
    mock = Recorder()
    result = telemetry_flush(client=mock.client())
    assert (result.expired, result.purged, result.delivered) == (1, 1, 2)
    assert TelemetryEvent.objects.count() == 2
    assert "Dropped 1 telemetry events older than 7 days" in caplog.text


def test_two_flushes_never_claim_the_same_rows(telemetry_on):
    record(5)
    now = timezone.now()
    rows_a = services._claim(size=3, now=now, lease=60).rows
    rows_b = services._claim(size=3, now=now, lease=60).rows
    rows_c = services._claim(size=3, now=now, lease=60).rows
    assert len(rows_a) == 3 and len(rows_b) == 2 and rows_c == []
    assert not {r[0] for r in rows_a} & {r[0] for r in rows_b}
    # A flush that died mid-upload: its rows come back when the lease ends.
    again = services._claim(size=10, now=now + dt.timedelta(seconds=61), lease=60).rows
    assert len(again) == 5


def test_a_lost_acknowledgement_does_not_double_count(collector):
    record(3)
    assert telemetry_flush(client=collector).delivered == 3
    TelemetryEvent.objects.update(delivered_at=None)  # as if the flush died before marking them
    body = orjson.loads(services._batch_body([e.payload for e in TelemetryEvent.objects.all()], timezone.now()))
    assert collector.post_batch(body) == {"received": 3, "stored": 0, "duplicates": 3}
    assert telemetry_flush(client=collector).delivered == 0  # still leased by the dead flush
    after_lease = timezone.now() + dt.timedelta(seconds=2 * 60 + 31)
    assert telemetry_flush(client=collector, now=after_lease).delivered == 3
    assert ReceivedEvent.objects.count() == 3


def test_a_wrong_key_keeps_the_events_for_later(collector, wsgi_app):
    record(2)
    wrong = Client(base_url="http://testserver", api_key="nope", transport=httpx.WSGITransport(app=wsgi_app))
    result = telemetry_flush(client=wrong)
    assert result.failed == 2 and result.error.startswith("HTTP 401")
    assert TelemetryEvent.objects.filter(attempts=1, delivered_at__isnull=True).count() == 2


def test_flush_does_nothing_when_telemetry_is_off():
    with CaptureQueriesContext(connection) as ctx:
        result = telemetry_flush(client=Recorder().client())
    assert result.enabled is False and ctx.captured_queries == []


def test_the_management_command_flushes_once(collector, monkeypatch):
    record(2)
    monkeypatch.setattr(Client, "from_settings", classmethod(lambda cls, transport=None: collector))
    out = StringIO()
    call_command("telemetry_flush", stdout=out)
    summary = json.loads(out.getvalue())
    assert (summary["enabled"], summary["batches"], summary["delivered"]) == (True, 1, 2)
    assert ReceivedEvent.objects.count() == 2


def test_the_celery_task_flushes_and_is_scheduled_by_beat(collector, monkeypatch):
    record(1)
    monkeypatch.setattr(Client, "from_settings", classmethod(lambda cls, transport=None: collector))
    outcome = telemetry_flush_task.apply().result  # eager: its return value (get() refuses inside a task)
    assert outcome["delivered"] == 1
    entry = next(e for e in django_settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == FLUSH_TASK)
    assert entry["schedule"] == django_settings.AGENTOS["TELEMETRY_FLUSH_INTERVAL_SECONDS"]
    assert telemetry_flush_task.name == FLUSH_TASK


def test_the_runtime_picks_the_url_and_the_override_wins(settings):
    for runtime, url in RUNTIME_URLS.items():
        settings.AGENTOS = {**settings.AGENTOS, "API_RUNTIME": runtime, "TELEMETRY_URL": ""}
        assert telemetry_base_url() == url
    settings.AGENTOS = {**settings.AGENTOS, "API_RUNTIME": "dev", "TELEMETRY_URL": "https://collector.example.org/"}
    assert telemetry_base_url() == "https://collector.example.org"
    settings.AGENTOS = {**settings.AGENTOS, "API_RUNTIME": "moon", "TELEMETRY_URL": ""}
    with pytest.raises(ValueError, match="AGENTOS_API_RUNTIME must be one of dev, stg, prd"):
        telemetry_base_url()


def test_the_client_sends_the_key_and_classifies_failures():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(int(request.url.params.get("s", "202")), text="nope")

    client = Client(base_url="http://c", api_key="secret", timeout=3, transport=httpx.MockTransport(handler))
    client._http.params = {"s": "429"}
    with pytest.raises(UploadError) as exc:
        client.post_batch({"events": []})
    assert exc.value.retryable and exc.value.status == 429
    assert seen[-1].headers["authorization"] == "Bearer secret"
    assert seen[-1].url.path == "/api/telemetry/batches"
    client._http.params = {"s": "422"}
    with pytest.raises(UploadError) as exc:
        client.post_batch(b"{}")
    assert not exc.value.retryable
    client._http.params = {"s": "202"}
    client.post_batch(b"{}", compress=True)
    assert seen[-1].headers["content-encoding"] == "gzip"
    assert client._http.timeout.read == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="real concurrency needs PostgreSQL: the in-memory SQLite test database's shared cache raises "
    "'table is locked' instead of waiting (CI runs this on PostgreSQL)",
)
def test_concurrent_flushes_upload_each_event_exactly_once(telemetry_on):
    """Four flushes in four threads (four database connections) against one collector: every
    event is uploaded once, and no two batches share an event."""
    telemetry_on.AGENTOS = {**telemetry_on.AGENTOS, "TELEMETRY_BATCH_SIZE": 7}
    ids = record(120)
    mock = Recorder()
    lock = threading.Lock()

    def guarded(request):
        with lock:
            return mock(request)

    errors: list[BaseException] = []

    def worker() -> None:
        try:
            client = Client(base_url="http://testserver", transport=httpx.MockTransport(guarded))
            for _ in range(40):
                services.telemetry_flush(client=client, max_batches=1)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    sent = [e["event_id"] for b in mock.batches for e in b["events"]]
    assert len(sent) == len(set(sent)) == 120
    assert set(sent) == {str(i) for i in ids}
    assert TelemetryEvent.objects.filter(delivered_at__isnull=True).count() == 0


def test_system_checks_warn_about_an_unusable_setup(settings):
    from telemetry_app.checks import telemetry_settings_check

    assert telemetry_settings_check() == []  # off: nothing to say
    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY": True, "API_RUNTIME": "prd", "TELEMETRY_URL": ""}
    assert [m.id for m in telemetry_settings_check()] == ["telemetry_app.W001", "telemetry_app.W002"]
    settings.AGENTOS = {**settings.AGENTOS, "TELEMETRY_URL": "http://c", "TELEMETRY_API_KEY": "k"}
    assert telemetry_settings_check() == []
    settings.AGENTOS = {**settings.AGENTOS, "API_RUNTIME": "qa"}
    assert [m.id for m in telemetry_settings_check()] == ["telemetry_app.E001"]
