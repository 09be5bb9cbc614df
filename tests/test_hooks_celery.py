"""Background hooks on a real Celery worker process and the Redis broker: a run enqueues its hook only
after committing and answers without waiting for it; a worker killed in the middle of the hook loses
nothing (the broker redelivers the unacknowledged task, the dead attempt's claim expires, a second
worker runs the hook again) and the hook's effect on the session state is applied exactly once; a
redelivered task does nothing. A `celery worker -B` (prefork, with its embedded beat, as production
runs it) SIGKILLed as a whole mid-hook, with the production visibility timeout: the sweep of a new
worker's beat brings the hook back once the dead attempt's lease expires, within the lease plus one
sweep period, and prints the figure (`pytest tests/test_hooks_celery.py -k sigkill -s`).

Everything runs in separate processes that share a SQLite file: a producer (`manage.py shell`, as a
web process would) and the workers (`celery -A agentos_site worker`), with tests/worker_settings.py.
The broker is the test Redis (tests/redis_helpers.py: AGENTOS_TEST_REDIS_URL, else REDIS_URL), every
key under a prefix of the test's own (kombu's `global_keyprefix`), deleted at the end. Skipped without
it, except in CI (CI=true), where it must run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.redis_helpers import RedisNamespace

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(tmp_path: Path, isolated_redis: RedisNamespace) -> Iterator[dict[str, Any]]:
    client = isolated_redis.client()
    markers = tmp_path / "markers"
    markers.mkdir()
    db = tmp_path / "db.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
        "DATABASE_URL": f"sqlite:///{db}",
        "CELERY_BROKER_URL": isolated_redis.url,
        "AGENTOS_TEST_REDIS_PREFIX": isolated_redis.prefix,  # the broker's global_keyprefix
        "AGENTOS_TEST_MARKER_DIR": str(markers),
        "AGENTOS_TEST_HOOK_SLEEP": "1.5",
        "PYTHONPATH": str(ROOT),
        "DJANGO_LOG_LEVEL": "ERROR",
        "CELERY_SKIP_CHECKS": "1",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=60)
    workers: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start_worker(name: str, *options: str) -> subprocess.Popen[bytes]:
        """A `celery worker` in a process group of its own (its pool children and embedded beat
        included), so that a test can kill it as a whole; `--pool=solo` unless `options` say otherwise."""
        log = tmp_path / f"{name}.log"
        if not any(option.startswith("--pool") for option in options):
            options = ("--pool=solo", *options)
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "agentos_site", "worker", "--loglevel=INFO", *options),
                *("--without-mingle", "--without-gossip", "--without-heartbeat", f"--hostname={name}@%h"),
            ],
            cwd=ROOT,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        workers.append((process, log))
        return process

    def shell_json(script: str) -> Any:
        """Run `script` in `manage.py shell` (a producer, as a web process would be) with the stack's
        environment as it is now, and read the JSON it printed last."""
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", script],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    yield {
        "shell_json": shell_json,
        "env": env,
        "db": db,
        "markers": markers,
        "start_worker": start_worker,
        "workers": workers,
        "redis": client,
        "redis_prefix": isolated_redis.prefix,
    }
    for process, log in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        with contextlib.suppress(ProcessLookupError):  # pool children or beat that outlived their main process
            os.killpg(process.pid, signal.SIGKILL)
        print(f"---- {log.name}\n{log.read_text()[-4000:]}")
    client.close()  # `isolated_redis` deletes the test's keys


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
    run = stack["shell_json"](PRODUCE)
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

    producer = Celery(
        broker=stack["env"]["CELERY_BROKER_URL"],
        broker_transport_options={"global_keyprefix": stack["redis_prefix"]},
    )
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
import re
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
    out = stack["shell_json"](MEMORY_PRODUCE)
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


# The sweep period and lease grace of the SIGKILL test; the defaults keep it short (about 25 s).
# AGENTOS_HOOK_RECOVERY_SWEEP=15 AGENTOS_HOOK_RECOVERY_GRACE=10 measures the production defaults
# (about 30 s).
RECOVERY_SWEEP_SECONDS = float(os.environ.get("AGENTOS_HOOK_RECOVERY_SWEEP", "1"))
RECOVERY_GRACE_SECONDS = float(os.environ.get("AGENTOS_HOOK_RECOVERY_GRACE", "1"))


def _epoch(value: str) -> float:
    """A datetime column as Django stores it in SQLite (naive UTC), in seconds since the epoch."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


def _alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (reaped or not, a zombie runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _ready_at(log: Path) -> float | None:
    """When the worker writing `log` said it was ready (None: not yet)."""
    return time.time() if " ready." in log.read_text() else None


def test_sigkill_of_a_worker_with_beat_the_sweep_brings_its_hook_back_once_the_lease_expires(stack, tmp_path):
    """The production topology (`celery worker -B`: a prefork pool and the embedded beat, which
    schedules the sweep) killed as a whole with SIGKILL while its hook runs: no warm shutdown, no
    acknowledgement, no requeue. The broker keeps the dead delivery unacknowledged for the
    visibility timeout (the production hour here), so only the sweep can bring the hook back: a new
    worker's beat runs it, it re-publishes the execution as soon as the dead attempt's lease
    (the hook's timeout + HOOKS_LEASE_GRACE_SECONDS) has expired, and attempt 2 runs the hook to the
    end, once. Kill to redelivery is bounded by the lease plus one sweep period; the figure is printed
    (`pytest tests/test_hooks_celery.py -k sigkill -s`)."""
    env = stack["env"]
    env.update(
        AGENTOS_TEST_VISIBILITY_TIMEOUT="3600",
        AGENTOS_TEST_SWEEP_SECONDS=str(RECOVERY_SWEEP_SECONDS),
        AGENTOS_TEST_LEASE_GRACE=str(RECOVERY_GRACE_SECONDS),
        AGENTOS_TEST_HOOK_SLEEP="3",  # below the hook's 4 s timeout
    )
    worker = ("--pool=prefork", "--concurrency=2", "--beat", f"--schedule-filename={tmp_path / 'celerybeat-schedule'}")
    first = stack["start_worker"]("first", *worker)
    run = stack["shell_json"](PRODUCE)
    assert run["status"] == "completed", run
    db, markers = stack["db"], stack["markers"]
    execution_id = _query(
        db, "SELECT id FROM agents_app_hookexecution WHERE run_id = ?", run["run_id"].replace("-", "")
    )[0][0]

    _wait_for(lambda: (markers / "started-1").exists(), 60, "the first attempt to start")
    hook_pid = int(_wait_for(lambda: (markers / "started-1").read_text(), 5, "the hook's pid"))
    # The hook runs in a pool child of the worker, in the worker's process group.
    assert hook_pid != first.pid and os.getpgid(hook_pid) == first.pid
    killed_at = time.time()
    os.killpg(first.pid, signal.SIGKILL)  # the main process, its pool children and its beat at once
    first.wait(10)
    _wait_for(lambda: not _alive(hook_pid), 10, "the pool child running the hook to die")
    status, attempts, claimed, lease = _query(
        db,
        "SELECT status, attempts, started_at, lease_expires_at FROM agents_app_hookexecution WHERE id = ?",
        execution_id,
    )[0]
    assert (status, attempts) == ("running", 1)
    assert not (markers / "finished.log").exists()
    lease_seconds = _epoch(lease) - _epoch(claimed)  # the hook's timeout + HOOKS_LEASE_GRACE_SECONDS
    assert lease_seconds == pytest.approx(4.0 + RECOVERY_GRACE_SECONDS, abs=0.01)
    # The dead delivery is still held unacknowledged by the broker: it is not what brings the hook back.
    # (The broker's keys, `unacked` among them, carry the test's prefix.)
    unacked = [
        body for body in stack["redis"].hvals(f"{stack['redis_prefix']}unacked") if b"agents_app.hook_execute" in body
    ]
    assert len(unacked) == 1

    second = stack["start_worker"]("second", *worker)
    log = stack["workers"][-1][1]
    ready_at = _wait_for(lambda: _ready_at(log), 60, "the new worker to be ready")
    # Worst case: the lease runs out (or the new worker starts) just after a sweep; then one period.
    expected = max(_epoch(lease), ready_at) - killed_at + RECOVERY_SWEEP_SECONDS
    _wait_for(lambda: (markers / "started-2").exists(), 3 * expected + 10, "the second attempt to start")
    redelivered_at = (markers / "started-2").stat().st_mtime
    _wait_for(
        lambda: (
            _query(db, "SELECT status FROM agents_app_hookexecution WHERE id = ?", execution_id)[0][0] == "succeeded"
        ),
        30,
        "the execution to succeed",
    )
    finished_at = time.time()
    recovery = redelivered_at - killed_at
    print(
        f"\nhook recovery after SIGKILL of `celery worker -B`: {recovery:.1f} s from the kill to attempt 2 "
        f"(lease {lease_seconds:.0f} s = hook timeout 4 s + grace {RECOVERY_GRACE_SECONDS:g} s, it expired "
        f"{_epoch(lease) - killed_at:.1f} s after the kill; sweep every {RECOVERY_SWEEP_SECONDS:g} s; new worker "
        f"ready {ready_at - killed_at:.1f} s after the kill; expected at most {expected:.1f} s); "
        f"succeeded {finished_at - killed_at:.1f} s after the kill"
    )
    assert recovery < 3 * expected

    status, attempts, error, started = _query(
        db, "SELECT status, attempts, error, started_at FROM agents_app_hookexecution WHERE id = ?", execution_id
    )[0]
    assert (status, attempts, error) == ("succeeded", 2, "")
    assert _epoch(started) >= _epoch(lease)  # taken over only once the dead attempt's lease had expired
    assert json.loads(_query(db, "SELECT state FROM sessions_app_session")[0][0]) == {"count": 1}
    assert (markers / "finished.log").read_text().splitlines() == [f"{run['run_id']} attempt 2"]
    text = log.read_text()
    # The sweep (scheduled by the new worker's beat) re-published it, and the takeover says why.
    assert re.search(r"agents_app\.hook_executions_sweep\[[^]]+\] succeeded in [0-9.]+s: 1\b", text), text[-4000:]
    assert f"execution {execution_id}): attempt 1 of 4 never finished" in text, text[-4000:]
    assert second.poll() is None


READINESS = """
import asyncio, json
from agents_app.health import readiness
print(json.dumps(asyncio.run(readiness()).as_dict()))
"""


def test_readiness_sees_a_real_worker_and_its_beat_and_a_stopped_worker_at_once(stack, tmp_path):
    """What `/readyz` of a server process (`manage.py shell` here, on the Redis broker) reports about
    a real `celery worker -B`: not ready before it runs; its main process and its embedded beat (a
    forked child) each write a heartbeat; a warm shutdown removes the worker's at once."""
    db = stack["db"]

    def report() -> dict[str, Any]:
        return stack["shell_json"](READINESS)

    before = report()
    assert before["status"] == "unavailable" and before["detail"] == "Not ready: worker, beat.", before
    assert before["checks"]["broker"]["status"] == "ok"

    worker = stack["start_worker"]("health", "--beat", f"--schedule-filename={tmp_path / 'celerybeat-schedule'}")
    _wait_for(lambda: _query(db, "SELECT COUNT(*) FROM sessions_app_serverprocess")[0][0] == 2, 60, "two heartbeats")
    ready = report()
    assert ready["status"] == "ok", ready
    assert ready["checks"]["worker"]["detail"].startswith("1 worker seen")
    assert ready["checks"]["beat"]["detail"].startswith("1 beat seen")
    pids = dict(_query(db, "SELECT kind, pid FROM sessions_app_serverprocess"))
    assert pids["worker"] == worker.pid and pids["beat"] not in (0, worker.pid)  # beat: the worker's child

    worker.send_signal(signal.SIGTERM)  # a warm shutdown
    worker.wait(30)
    assert _query(db, "SELECT kind FROM sessions_app_serverprocess WHERE kind = 'worker'") == []
    after = report()
    assert after["checks"]["worker"]["error"].endswith("(never seen)"), after
    assert after["status"] == "unavailable"
