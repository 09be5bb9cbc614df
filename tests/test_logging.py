"""Logs: JSON lines that carry the run's and the request's ids (sessions_app.logcontext, configured
by agentos_site/logconfig.py), request ids echoed to the client, and each line printed once."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from agentos_site.logconfig import logging_config
from agents_app.engine.runner import run_prepare
from agents_app.hooks import hook_registry
from agents_app.runs import run_agent
from agents_app.runtime import _settle_interrupted
from sessions_app.models import Run
from tests.conftest import bearer
from tests.factories import attach_hooks
from tests.live_server import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def json_logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The site's JSON logging (DJANGO_LOG_FORMAT=json, level INFO) into a buffer; returns a reader
    of the lines written so far, each parsed. The test settings' logging is restored afterwards."""
    import agentos_site.asgi  # noqa: F401 - its django.setup() configures logging: before ours

    buffer = io.StringIO()
    config = logging_config(level="INFO", fmt="json")
    config["handlers"]["console"]["stream"] = buffer
    logging.config.dictConfig(config)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        logging.config.dictConfig(settings.LOGGING)


@pytest.fixture
def broken_hook(offline_agent: Any) -> Iterator[Any]:
    """offline_agent with an inline pre-hook that fails once, then succeeds (a warning, and the run
    completes)."""
    calls: list[int] = []

    def flaky_once(ctx: Any) -> None:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("database hiccup")

    hook_registry.register(flaky_once, retries=1)
    attach_hooks(offline_agent, pre=["flaky_once"])
    offline_agent.save()
    yield offline_agent
    hook_registry.unregister("flaky_once")


def _lines(read: Callable[[], list[dict[str, Any]]], needle: str) -> list[dict[str, Any]]:
    return [line for line in read() if needle in line["message"]]


@pytest.mark.django_db
def test_the_lines_a_run_writes_carry_its_ids(json_logs, broken_hook, user):
    result = run_agent(agent_id=broken_hook.slug, user=user, message="hi")
    assert result.status == "completed"
    [line] = _lines(json_logs, "flaky_once")
    assert (
        line["message"]
        == f"Hook flaky_once (run {result.run_id}) attempt 1/2 failed: ConnectionError('database hiccup')"
    )
    assert (line["level"], line["logger"]) == ("WARNING", "agents_app.hooks.runner")
    assert {k: line.get(k) for k in ("run_id", "session_id", "agent_id", "user_id")} == {
        "run_id": str(result.run_id),
        "session_id": str(result.session_id),
        "agent_id": broken_hook.slug,
        "user_id": user.pk,
    }
    assert "request_id" not in line and "team_id" not in line and line["time"].endswith("+00:00")


@pytest.mark.django_db
def test_a_run_taken_over_from_a_dead_process_is_logged_with_its_ids(json_logs, offline_agent, user):
    handle = run_prepare(agent_id=offline_agent.slug, user=user, message="lost")
    Run.objects.filter(pk=handle.run_id).update(owner="d" * 32, created_at=timezone.now() - timedelta(seconds=60))
    assert _settle_interrupted(handle.run_id) == "error"
    [line] = _lines(json_logs, "taking it over")
    assert line["run_id"] == str(handle.run_id) and line["session_id"] == str(handle.session_id)
    assert (line["agent_id"], line["user_id"]) == (offline_agent.slug, user.pk)
    # The ids were bound for the settling only.
    logging.getLogger("tests").warning("after")
    assert "run_id" not in _lines(json_logs, "after")[0]


@pytest.mark.django_db(transaction=True)
async def test_request_ids_are_echoed_and_carried_by_the_lines_of_the_request_and_its_run(
    json_logs, asgi, broken_hook, token
):
    r = await asgi.get("/no-such-page/", headers={"X-Request-ID": "req-42.a:b"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "req-42.a:b"
    [line] = _lines(json_logs, "Not Found: /no-such-page/")
    assert line["request_id"] == "req-42.a:b" and "run_id" not in line

    # None sent, or one that does not look like an id: a new one each time.
    ids = [(await asgi.get("/api/agents/")).headers["x-request-id"] for _ in range(2)]
    ids.append((await asgi.get("/api/agents/", headers={"X-Request-ID": "two words"})).headers["x-request-id"])
    ids.append((await asgi.get("/api/agents/", headers={"X-Request-ID": "x" * 129})).headers["x-request-id"])
    assert all(HEX32.fullmatch(i) for i in ids) and len(set(ids)) == 4

    # A run started by a request: its lines carry both.
    r = await asgi.post(
        f"/api/agents/{broken_hook.slug}/runs",
        json={"message": "hi"},
        headers={**bearer(token), "X-Request-ID": "run-req"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "run-req"
    [line] = _lines(json_logs, "flaky_once")
    assert (line["request_id"], line["run_id"], line["agent_id"]) == ("run-req", r.json()["run_id"], broken_hook.slug)


@pytest.mark.django_db
def test_the_sync_handler_echoes_request_ids_too(client, json_logs):
    r = client.get("/no-such-page/", headers={"X-Request-ID": "sync-1"})
    assert r.status_code == 404 and r["X-Request-ID"] == "sync-1"
    assert _lines(json_logs, "Not Found: /no-such-page/")[0]["request_id"] == "sync-1"
    logging.getLogger("tests").warning("between requests")
    assert "request_id" not in _lines(json_logs, "between requests")[0]


def test_a_bad_level_or_format_stops_the_process():
    with pytest.raises(ValueError, match="DJANGO_LOG_FORMAT"):
        logging_config(fmt="yaml")
    with pytest.raises(ValueError, match="DJANGO_LOG_LEVEL"):
        logging_config(level="LOUD")
    assert logging_config(level="info")["root"]["level"] == "INFO"


@pytest.mark.slow
def test_runserver_prints_each_line_once(tmp_path):
    """Django's default logging gave the `django` logger a console handler of its own while DEBUG
    is on, on top of the root's: runserver printed every request line, and every "Not Found",
    twice."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DJANGO_DEBUG": "true",
    }
    for name in ("DJANGO_SETTINGS_MODULE", "DJANGO_LOG_FORMAT", "DJANGO_LOG_LEVEL"):  # the defaults
        env.pop(name, None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    with serving(cmd, cwd=ROOT, env=env, probe_url=base + "/") as server:
        assert httpx.get(base + "/no-such-page/").status_code == 404
        time.sleep(0.5)
        server.terminate()
        server.wait(10)
        err = server.stderr.read().decode()
    assert err.count("Not Found: /no-such-page/") == 1, err
    assert len(re.findall(r"HTTP GET /no-such-page/ 404 \[", err)) == 1, err
    assert re.search(r"HTTP GET / 200 \[", err), err  # request lines still shown by default
