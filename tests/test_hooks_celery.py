"""Background hooks on a real Celery worker process and the Redis broker: a run enqueues its hook only
after committing and answers without waiting for it; a worker killed in the middle of the hook loses
nothing (the broker redelivers the unacknowledged task, the dead attempt's claim expires, a second
worker runs the hook again) and the hook's effect on the session state is applied exactly once; a
redelivered task does nothing.

Everything runs in separate processes that share a SQLite file: a producer (`manage.py shell`, as a
web process would) and the workers (`celery -A agentos_site worker`), with tests/worker_settings.py.
Skipped when Redis is unreachable, except in CI (CI=true), where it must run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("AGENTOS_TEST_CELERY_REDIS", "redis://127.0.0.1:6379/11")

pytestmark = pytest.mark.slow


def _redis_or_skip() -> Any:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required in CI at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    return client


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    client = _redis_or_skip()
    client.flushdb()
    markers = tmp_path / "markers"
    markers.mkdir()
    db = tmp_path / "db.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
        "DATABASE_URL": f"sqlite:///{db}",
        "CELERY_BROKER_URL": REDIS_URL,
        "AGENTOS_TEST_MARKER_DIR": str(markers),
        "AGENTOS_TEST_HOOK_SLEEP": "1.5",
        "PYTHONPATH": str(ROOT),
        "DJANGO_LOG_LEVEL": "ERROR",
        "CELERY_SKIP_CHECKS": "1",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=60)
    workers: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start_worker(name: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"{name}.log"
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "agentos_site", "worker", "--pool=solo", "--loglevel=INFO"),
                *("--without-mingle", "--without-gossip", "--without-heartbeat", f"--hostname={name}@%h"),
            ],
            cwd=ROOT,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        workers.append((process, log))
        return process

    yield {"env": env, "db": db, "markers": markers, "start_worker": start_worker, "workers": workers, "redis": client}
    for process, log in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        print(f"---- {log.name}\n{log.read_text()[-4000:]}")
    client.flushdb()


PRODUCE = """
import json, time
from agents_app.models import Agent, AgentHook, ModelConfig
from agents_app.runs import run_agent
from django.contrib.auth import get_user_model
user = get_user_model().objects.create(username="ada")
model = ModelConfig.objects.create(name="offline", provider="offline", model_id="offline-demo")
agent = Agent.objects.create(slug="counter", name="Counter", model=model)
AgentHook.objects.create(agent=agent, phase="post", position=0, hook="slow_counter")
started = time.perf_counter()
result = run_agent(agent_id="counter", user=user, message="hello")
print(json.dumps({"elapsed": time.perf_counter() - started, "status": result.status,
                  "run_id": result.run_id, "session_id": result.session_id}))
"""


def _query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db, timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def _wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"Timed out after {timeout} s waiting for {what}")


def test_a_worker_killed_mid_hook_loses_nothing_and_the_effect_is_applied_once(stack):
    first = stack["start_worker"]("first")
    produced = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", PRODUCE],
        cwd=ROOT,
        env=stack["env"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    run = json.loads(produced.stdout.strip().splitlines()[-1])
    # The run answered without waiting for its 1.5 s hook (which only starts once the worker is up).
    assert run["status"] == "completed" and run["elapsed"] < 1.4, run
    db, markers = stack["db"], stack["markers"]
    run_id = run["run_id"].replace("-", "")
    execution_id = _query(db, "SELECT id FROM agents_app_hookexecution WHERE run_id = ?", run_id)[0][0]

    # Kill the worker in the middle of the hook (SIGKILL: no warm shutdown, no acknowledgement).
    _wait_for(lambda: (markers / "started-1").exists(), 30, "the first attempt to start")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    status, attempts = _query(db, "SELECT status, attempts FROM agents_app_hookexecution WHERE id = ?", execution_id)[0]
    assert (status, attempts) == ("running", 1)
    assert not (markers / "finished.log").exists()

    # A new worker: Redis redelivers the unacknowledged task; once the dead attempt's claim expires,
    # attempt 2 runs the hook to the end.
    stack["start_worker"]("second")
    _wait_for(
        lambda: (
            _query(db, "SELECT status FROM agents_app_hookexecution WHERE id = ?", execution_id)[0][0] == "succeeded"
        ),
        40,
        "the execution to succeed",
    )
    status, attempts, error = _query(
        db, "SELECT status, attempts, error FROM agents_app_hookexecution WHERE id = ?", execution_id
    )[0]
    assert (status, attempts, error) == ("succeeded", 2, "")
    state = json.loads(_query(db, "SELECT state FROM sessions_app_session")[0][0])
    assert state == {"count": 1}
    assert (markers / "finished.log").read_text().splitlines() == [f"{run['run_id']} attempt 2"]

    # A redelivered task (the same message again) does nothing.
    from celery import Celery

    producer = Celery(broker=REDIS_URL)
    task_id = producer.send_task("agents_app.hook_execute", args=[execution_id]).id
    log = stack["workers"][-1][1]
    _wait_for(lambda: f"[{task_id}] succeeded" in log.read_text(), 20, "the duplicate task to be processed")
    assert "'succeeded'" in next(line for line in log.read_text().splitlines() if f"[{task_id}] succeeded" in line)
    assert _query(db, "SELECT attempts FROM agents_app_hookexecution WHERE id = ?", execution_id)[0][0] == 2
    assert json.loads(_query(db, "SELECT state FROM sessions_app_session")[0][0]) == {"count": 1}
    assert len((markers / "finished.log").read_text().splitlines()) == 1
    producer.close()


MEMORY_PRODUCE = """
import json
from agents_app.models import Agent, AgentHook, ModelConfig
from agents_app.runs import run_agent
from django.contrib.auth import get_user_model
user = get_user_model().objects.create(username="ada")
model = ModelConfig.objects.create(name="offline", provider="offline", model_id="offline-demo")
Agent.objects.create(slug="mem", name="Mem", model=model, memory_mode="automatic", session_summaries=True, history_runs=1)
session_id = None
for message in ("My name is Ada.", "I like green tea.", "What should I drink?"):
    result = run_agent(agent_id="mem", user=user, message=message, session_id=session_id)
    session_id = result.session_id
print(json.dumps({"session_id": session_id, "status": result.status}))
"""


def test_automatic_memory_and_summaries_run_on_a_real_worker(stack):
    """The memory manager and the summarizer are background hooks: a real worker process on Redis
    extracts the memories and folds the runs that left the 1-run window into the summary."""
    stack["start_worker"]("memory")
    produced = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", MEMORY_PRODUCE],
        cwd=ROOT,
        env=stack["env"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = json.loads(produced.stdout.strip().splitlines()[-1])
    assert out["status"] == "completed"
    db = stack["db"]
    _wait_for(
        lambda: _query(db, "SELECT COUNT(*) FROM agents_app_hookexecution WHERE status = 'succeeded'")[0][0] == 5,
        40,
        "3 memory and 2 summary executions to succeed",
    )
    memories = sorted(row[0] for row in _query(db, "SELECT memory FROM sessions_app_memory"))
    assert memories == ['The user said: "I like green tea"', 'The user said: "My name is Ada"']
    summary, until = _query(db, "SELECT summary, summary_until FROM sessions_app_session")[0]
    assert "My name is Ada." in summary and "I like green tea." in summary and until
