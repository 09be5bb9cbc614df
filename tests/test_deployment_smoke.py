"""The documented deployment, run as documented: the environment, the release steps and the four
processes of docs/deployment.md ("All together", read from between its markers) on PostgreSQL and
Redis with DJANGO_DEBUG=false, then what an operator checks first.

Runs where PostgreSQL is (the suite's DATABASE_URL is postgres://, as in CI's second pass) and a
test Redis is (tests/redis_helpers.py); it makes a database of its own and drops it, and writes
Redis keys under a prefix of its own only (channel layer and broker), deleted at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import free_port
from tests.redis_helpers import redis_namespace

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "deployment.md"
pytestmark = pytest.mark.slow
METRICS_TOKEN = "smoke-metrics-" + uuid.uuid4().hex
ADMIN_PASSWORD = "smoke-admin-pw-1"


def _block(name: str) -> list[str]:
    """The lines of the fenced block between `<!-- name -->` and `<!-- /name -->` in the doc."""
    text = DOC.read_text()
    match = re.search(rf"<!-- {name} -->\s*```[a-z]*\n(.*?)```\s*<!-- /{name} -->", text, re.S)
    assert match, f"docs/deployment.md has no {name} block"
    return [line for line in match.group(1).splitlines() if line.strip()]


def _postgres_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        pytest.skip("needs PostgreSQL: run the suite with DATABASE_URL=postgres://… (CI's second pass)")
    return url


def _sql(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params or None)
        return cur.fetchall() if cur.description else []


@contextlib.contextmanager
def _database(server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the suite's server, dropped at the end."""
    name = f"agentos_smoke_{uuid.uuid4().hex[:10]}"
    base, _, _ = server_url.rpartition("/")
    _sql(f"{base}/postgres", f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        _sql(f"{base}/postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Deployment:
    """The documented processes, started with the documented environment (values of this test's)."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def release(self) -> None:
        for line in _block("deploy-release"):
            argv = shlex.split(line)
            if argv[0] in ("rm", "mkdir"):
                continue  # the metrics directory: this test made a fresh one
            if "pip" in argv[0]:
                continue  # installed already (the suite runs in the venv those requirements made)
            subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, env=self.env, check=True, capture_output=True)

    def plan(self) -> list[tuple[str, list[str]]]:
        """The documented processes, with this test's ports (chosen now) and beat schedule file."""
        planned = []
        for line in _block("deploy-processes"):
            name, _, command = line.partition(":")
            argv = shlex.split(command)
            argv[0] = str(Path(sys.executable).parent / Path(argv[0]).name)  # .venv/bin/<tool>
            if "--port" in argv:
                self.ports[name] = free_port()
                argv[argv.index("--port") + 1] = str(self.ports[name])
            if "--schedule" in argv:
                argv[argv.index("--schedule") + 1] = str(self.workdir / "celerybeat-schedule")
            planned.append((name, argv))
        return planned

    def start(self, planned: list[tuple[str, list[str]]]) -> None:
        for name, argv in planned:
            log = (self.workdir / f"{name}.log").open("wb")
            self.procs[name] = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        for name, port in self.ports.items():
            self._wait(name, f"http://127.0.0.1:{port}/healthz")

    def _wait(self, name: str, url: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            if self.procs[name].poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"{name} did not start:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def _environment(database_url: str, redis_url: str, prefix: str, workdir: Path, model_url: str) -> dict[str, str]:
    """The doc's variables, each given this test's value (and nothing the doc does not list, except
    what points the deployment at this test's model server and collector)."""
    values = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "smoke-" + uuid.uuid4().hex * 2,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "http://127.0.0.1",
        "DJANGO_LOG_FORMAT": "json",
        "AGENTOS_METRICS_TOKEN": METRICS_TOKEN,
        "AGENTOS_CPU_AFFINITY": "auto",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
    }
    documented = [line.split("=", 1)[0] for line in _block("deploy-env")]
    assert sorted(documented) == sorted(values), "the doc's environment changed: update this test"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTOS_", "DJANGO_", "CELERY_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return {
        **env,
        **values,
        # This test's own: its keys, static files, telemetry collector (this very site) and pace.
        "CHANNEL_LAYER_PREFIX": f"{prefix}layer",
        "CELERY_BROKER_KEY_PREFIX": f"{prefix}broker:",
        "DJANGO_STATIC_ROOT": str(workdir / "static"),
        "AGENTOS_CPU_LOCK_DIR": str(workdir / "cpu-locks"),
        "DJANGO_SUPERUSER_USERNAME": "admin",
        "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
        "DJANGO_SUPERUSER_EMAIL": "admin@example.com",
        "AGENTOS_TELEMETRY": "true",
        "AGENTOS_TELEMETRY_FLUSH_INTERVAL_SECONDS": "1",
        "SMOKE_MODEL_URL": model_url,
    }


def _manage(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


def _eventually(condition: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_the_documented_deployment(tmp_path: Path, _scripted_server: Any) -> None:
    server_url = _postgres_url()
    scripted = _scripted_server
    scripted.reset()
    (tmp_path / "metrics").mkdir()
    with redis_namespace("smoke") as redis, _database(server_url) as database_url:
        env = _environment(database_url, redis.url, redis.prefix, tmp_path, scripted.base_url)
        deployment = Deployment(env, tmp_path)
        deployment.release()
        _manage(env, "createsuperuser", "--noinput")
        token = _manage(
            env,
            "shell",
            "--no-imports",
            "-c",
            "import os; from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token; "
            "from agents_app.models import Agent, AgentHook, ModelConfig; "
            "u = User.objects.create_user('ada'); print(Token.objects.create(user=u).key); "
            "m = ModelConfig.objects.create(name='scripted', provider='openai', base_url=os.environ['SMOKE_MODEL_URL'], "
            "model_id='m', max_retries=0); Agent.objects.create(slug='plain', name='Plain', model=m); "
            "h = Agent.objects.create(slug='hooked', name='Hooked', model=m); "
            "AgentHook.objects.create(agent=h, phase='pre', hook='track_topics')",
        ).strip()
        sender_key = _manage(env, "telemetry_sender_create", "smoke-sender").strip()
        try:
            planned = deployment.plan()
            # The telemetry collector is this site itself (web-1).
            deployment.env = {
                **env,
                "AGENTOS_TELEMETRY_API_KEY": sender_key,
                "AGENTOS_TELEMETRY_URL": deployment.url("web-1"),
            }
            deployment.start(planned)
            _check(deployment, token, database_url, scripted)
        except BaseException:
            for name in deployment.procs:
                print(f"---- {name}\n{deployment.log(name)[-2500:]}")
            raise
        finally:
            deployment.stop_all()


def _cpus(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.startswith("Cpus_allowed_list"))


def _check(deployment: Deployment, token: str, database_url: str, scripted: Any) -> None:
    web1, web2 = deployment.url("web-1"), deployment.url("web-2")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=30, follow_redirects=False) as client:
        # Ready, once the worker and beat have written their heartbeats.
        ready = _eventually(lambda: client.get(f"{web2}/readyz").status_code == 200, "/readyz 200", timeout=40)
        assert ready
        if len(os.sched_getaffinity(0)) >= 2:
            # AGENTOS_CPU_AFFINITY=auto: each web process on one CPU of its own.
            pinned = [_cpus(deployment.procs[name].pid) for name in ("web-1", "web-2")]
            assert all(cpu.isdigit() for cpu in pinned) and pinned[0] != pinned[1], pinned
        # Static files: the admin's login page links hashed, cacheable files, served by the web process.
        login = client.get(f"{web1}/admin/login/")
        assert login.status_code == 200
        css = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login.text)
        assert css, "the admin does not link a hashed stylesheet"
        static = client.get(f"{web2}{css.group(1)}", headers={"Accept-Encoding": "gzip"})
        assert static.status_code == 200 and "immutable" in static.headers["cache-control"]
        # An admin login (CSRF cookie and token, as a browser does).
        csrf = client.cookies["csrftoken"]
        r = client.post(
            f"{web1}/admin/login/",
            data={"username": "admin", "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": csrf, "next": "/admin/"},
            headers={"Referer": f"{web1}/admin/login/"},
        )
        assert r.status_code == 302 and r.headers["location"] == "/admin/", r.text[:500]
        assert client.get(f"{web2}/admin/").status_code == 200  # the session works on the other process

    with httpx.Client(headers=headers, timeout=60) as api:
        # A background hook done by the worker: the hooked agent's run, then its judge call.
        scripted.push_text("Noted.")
        scripted.push_json({"topics": ["green tea"]})
        r = api.post(f"{web1}/api/agents/hooked/runs", json={"message": "I like green tea"})
        assert r.status_code == 200 and r.json()["content"] == "Noted.", r.text
        session_id = r.json()["session_id"]

        def hook_done() -> bool:
            rows = _sql(database_url, "SELECT status FROM agents_app_hookexecution")
            return rows == [("succeeded",)]

        _eventually(hook_done, "the background hook done by the worker")
        state = _sql(database_url, "SELECT state FROM sessions_app_session WHERE id = %s", session_id)[0][0]
        assert state["topics"] == ["green tea"]
        # A REST run on web-2, an SSE run on web-1.
        scripted.push_text("Plain answer.")
        r = api.post(f"{web2}/api/agents/plain/runs", json={"message": "hello"})
        assert r.status_code == 200 and r.json()["content"] == "Plain answer."
        scripted.push_text("Streamed answer.")
        with api.stream("POST", f"{web1}/api/agents/plain/runs", json={"message": "hi", "stream": True}) as stream:
            frames = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
        assert frames[-1]["event"] == "RunCompleted" and frames[-1]["content"] == "Streamed answer."
    # A websocket run on web-2.
    scripted.push_text("Over the socket.")
    events = asyncio.run(_websocket_run(deployment.ports["web-2"], token))
    assert events[-1]["event"] == "RunCompleted" and events[-1]["content"] == "Over the socket."

    # Telemetry: beat's flush uploads the runs' events to the collector (this site).
    def uploaded() -> bool:
        received = _sql(database_url, "SELECT count(*) FROM telemetry_app_receivedevent WHERE kind = 'run_created'")[0][
            0
        ]
        waiting = _sql(database_url, "SELECT count(*) FROM telemetry_app_telemetryevent WHERE delivered_at IS NULL")
        return received >= 4 and waiting[0][0] == 0

    _eventually(uploaded, "a telemetry upload by beat", timeout=40)

    with httpx.Client(timeout=30) as client:
        # Metrics: the four runs, counted by the processes that ran them, summed by either.
        scrape = client.get(f"{web1}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert scrape.status_code == 200
        runs = sum(
            float(line.rsplit(" ", 1)[1])
            for line in scrape.text.splitlines()
            if line.startswith("agentos_runs_total{") and 'status="completed"' in line
        )
        assert runs == 4, scrape.text[:3000]
        assert client.get(f"{web1}/metrics").status_code == 401
        # A dependency stopped: the worker. /readyz says so (its row is deleted on a warm stop).
        deployment.stop("worker")
        r = _eventually(
            lambda: (resp := client.get(f"{web1}/readyz")).status_code == 503 and resp, "/readyz 503", timeout=20
        )
        body = r.json()
        assert body["code"] == "unavailable" and body["checks"]["worker"]["status"] == "failed", body
        assert client.get(f"{web1}/readyz?exclude=worker").status_code == 200
    # Every log line of the web processes is JSON (DJANGO_LOG_FORMAT=json).
    for name in ("web-1", "web-2"):
        for line in deployment.log(name).splitlines():
            json.loads(line)


async def _websocket_run(port: int, token: str) -> list[dict[str, Any]]:
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}/ws/agents/plain/"
    async with connect(url, subprotocols=["agentos", f"token.{token}"]) as ws:
        await ws.send(json.dumps({"type": "run", "message": "over the socket"}))
        events: list[dict[str, Any]] = []
        while not events or events[-1].get("event") not in ("RunCompleted", "RunError", "RunCancelled"):
            events.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
        return events
