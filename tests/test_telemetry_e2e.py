"""End to end over a real socket: this process records runs and flushes them to the project's own
collector, served by daphne in another process with its own SQLite database. Then the collector
goes down: runs are unaffected, uploads fail and back off, nothing is lost; it comes back, and
every event is stored there exactly once."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from agents_app.runs import run_agent
from sessions_app.models import Run
from telemetry_app.api import Client
from telemetry_app.models import TelemetryEvent
from telemetry_app.services import telemetry_flush, telemetry_reset_launch
from tests.live_server import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class Collector:
    """A collector site: migrate a fresh SQLite file, create a sender key, serve it with daphne."""

    def __init__(self, workdir: Path) -> None:
        self.db = workdir / "collector.sqlite3"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{self.db}",
            "DJANGO_DEBUG": "false",
            "DJANGO_LOG_LEVEL": "ERROR",
            "AGENTOS_TELEMETRY": "false",
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def setup(self) -> str:
        self.manage("migrate", "--noinput")
        return self.manage("telemetry_sender_create", "e2e-sender").strip()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "agentos_site.asgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.base + "/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        pytest.fail("the collector did not start: " + self.proc.stderr.read().decode()[-2000:])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def stored(self) -> list[uuid.UUID]:
        with sqlite3.connect(self.db) as db:
            return [uuid.UUID(row[0]) for row in db.execute("SELECT event_id FROM telemetry_app_receivedevent")]


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[Collector, str]]:
    site = Collector(tmp_path)
    key = site.setup()
    site.start()
    yield site, key
    site.stop()


def test_runs_reach_a_collector_process_exactly_once_through_an_outage(collector, offline_agent, user, settings):
    site, key = collector
    settings.AGENTOS = {
        **settings.AGENTOS,
        "TELEMETRY": True,
        "TELEMETRY_URL": site.base,
        "TELEMETRY_API_KEY": key,
        "TELEMETRY_BATCH_SIZE": 4,
        "TELEMETRY_TIMEOUT_SECONDS": 5.0,
    }
    telemetry_reset_launch()

    # 1. Collector up: runs, then one flush over the socket.
    for i in range(5):
        assert run_agent(agent_id=offline_agent.slug, user=user, message=f"up {i}").status == "completed"
    result = telemetry_flush()
    assert (result.delivered, result.batches, result.failed) == (6, 2, 0)  # 5 runs + the launch event
    assert sorted(site.stored()) == sorted(TelemetryEvent.objects.values_list("pk", flat=True))

    # 2. Collector down: runs never touch the network and complete as before.
    site.stop()

    def no_network(*args, **kwargs):
        raise AssertionError("a run must not upload anything")

    original = Client.post_batch
    Client.post_batch = no_network  # type: ignore[method-assign]
    try:
        for i in range(7):
            assert run_agent(agent_id=offline_agent.slug, user=user, message=f"down {i}").status == "completed"
    finally:
        Client.post_batch = original  # type: ignore[method-assign]
    assert Run.objects.filter(status="completed").count() == 12

    failed = telemetry_flush()
    assert (failed.delivered, failed.failed) == (0, 4) and "ConnectError" in failed.error
    pending = TelemetryEvent.objects.filter(delivered_at__isnull=True)
    assert pending.count() == 7
    assert sorted(pending.values_list("attempts", flat=True)) == [0, 0, 0, 1, 1, 1, 1]
    assert telemetry_flush().failed == 3  # the 3 not yet tried are due; the failed 4 back off
    assert telemetry_flush().failed == 0  # now everything is backing off: no request at all
    assert all(e.next_attempt_at > timezone.now() for e in pending)

    # 3. Collector back (same port, same database): the next due flush delivers everything once.
    site.start()
    later = timezone.now() + dt.timedelta(minutes=5)
    back = telemetry_flush(now=later)
    assert (back.delivered, back.failed) == (7, 0)
    assert telemetry_flush(now=later).batches == 0

    # 4. A flush that died after uploading (its rows were never marked): re-sent, not re-counted.
    TelemetryEvent.objects.filter(pk__in=list(TelemetryEvent.objects.values_list("pk", flat=True)[:3])).update(
        delivered_at=None, next_attempt_at=timezone.now()
    )
    assert telemetry_flush(now=later).delivered == 3

    stored = site.stored()
    assert len(stored) == len(set(stored)) == 13
    assert set(stored) == set(TelemetryEvent.objects.values_list("pk", flat=True))
    assert TelemetryEvent.objects.filter(delivered_at__isnull=True).count() == 0
