"""The embedded worker: background hooks with no broker server and no worker process.

With CELERY_BROKER_URL=memory:// (the default) tasks are published to Celery's in-memory transport,
and the first publish in a process starts a real Celery worker (`WorkController`, threads pool) in a
daemon thread of that process. So background hooks go through exactly the code a production worker
runs (claims, retries with backoff, time limits) and never run on the request path: the request
thread only puts a message on an in-process queue (about 1 ms).

Measured on the development machine (50 tasks, 20 ms apart): publish median 0.8 ms; publish-to-start
median 30 ms with a solo pool, 90 ms with the threads pool used here (the thread polls every 50 ms);
starting the worker takes 0.3-0.6 s, in its own thread. kombu's filesystem transport measured the same
but needs a shared writable directory, and like memory:// it loses a message whose consumer crashed
before acknowledging it; SQLAlchemy's needs another dependency. Neither buys durability we lack: the
HookExecution row is the durable record, and the sweep (when the embedded worker starts, then every
minute) re-publishes executions whose in-memory message died with its process.

Production uses Redis or RabbitMQ (CELERY_BROKER_URL) and `celery -A agentos_site worker -B`;
AGENTOS["HOOKS_EMBEDDED_WORKER"] = "true" also starts the thread with a real broker (a one-machine
deployment with Redis and no separate worker process).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from functools import partial
from typing import Any

from sessions_app.conf import agentos_settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_thread: threading.Thread | None = None
_controller: Any = None
_sweeper: threading.Thread | None = None
_ready = threading.Event()
_stopping = threading.Event()

_TRUE = {"true", "1", "yes", "on", "always"}
_FALSE = {"false", "0", "no", "off", "never"}


def embedded_worker_enabled(app: Any) -> bool:
    mode = agentos_settings.HOOKS_EMBEDDED_WORKER
    key = str(mode).strip().lower()
    if mode is True or key in _TRUE:
        return True
    if mode is False or key in _FALSE:
        return False
    return str(app.conf.broker_url or "").startswith("memory://")


def ensure_embedded_worker(app: Any) -> bool:
    """Start the worker thread if this process should have one and it is not running. Cheap after
    the first call (a flag check); never blocks on the worker's start-up."""
    global _thread
    if _thread is not None and _thread.is_alive():
        return True
    if not embedded_worker_enabled(app):
        return False
    with _lock:
        if _thread is not None and _thread.is_alive():
            return True
        _ready.clear()
        _thread = threading.Thread(target=_serve, args=(app,), name="agentos-embedded-celery-worker", daemon=True)
        _thread.start()
    return True


def wait_until_ready(timeout: float = 10.0) -> bool:
    """For tests and tools: block until the embedded worker consumes."""
    return _ready.wait(timeout)


def _sweep(app: Any) -> None:
    from django.db import connections

    try:
        # By name, as Celery beat calls it: this module imports nothing of the hook plumbing.
        app.tasks["agents_app.hook_executions_sweep"]()
    except Exception:  # a sweep failure must not stop the worker
        logger.exception("The embedded worker's sweep of stalled hook executions failed")
    try:
        # Beat's other periodic duty of agents_app: end the paused runs nobody decided on in time.
        app.tasks["agents_app.paused_runs_expire"]()
    except Exception:
        logger.exception("The embedded worker's expiry of overdue paused runs failed")
    try:
        app.tasks["agents_app.run_requests_purge"]()  # Idempotency-Keys past IDEMPOTENCY_SECONDS
    except Exception:
        logger.exception("The embedded worker's purge of old Idempotency-Keys failed")
    try:
        app.tasks["agents_app.eval_schedules_run"]()  # eval suites whose schedule is due
    except Exception:
        logger.exception("The embedded worker's start of scheduled eval suites failed")
    finally:
        connections.close_all()  # this thread's connections: hold none while asleep


def _sweep_forever(app: Any) -> None:
    """What Celery beat does in production: re-publish executions whose message was lost (here: died
    with an earlier process), now and then every HOOKS_SWEEP_INTERVAL_SECONDS."""
    while not _stopping.is_set():
        _sweep(app)
        _stopping.wait(float(agentos_settings.HOOKS_SWEEP_INTERVAL_SECONDS))


def _on_ready(app: Any, *args: Any) -> None:
    _stopping.clear()
    _ready.set()
    global _sweeper
    _sweeper = threading.Thread(target=_sweep_forever, args=(app,), name="agentos-embedded-hook-sweep", daemon=True)
    _sweeper.start()


def _serve(app: Any) -> None:
    global _controller
    try:
        _controller = app.WorkController(
            hostname=f"agentos-embedded-{os.getpid()}@{socket.gethostname()}",
            pool_cls="threads",
            concurrency=int(agentos_settings.HOOKS_EMBEDDED_CONCURRENCY),
            loglevel="WARNING",
            logfile=None,
            ready_callback=partial(_on_ready, app),
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        _controller.start()
    except Exception:  # logged; the next publish starts a new thread
        logger.exception("The embedded Celery worker stopped")


def stop_embedded_worker(timeout: float = 10.0) -> None:
    """Stop the worker thread (tests; a process that exits needs nothing: the thread is a daemon)."""
    global _thread, _controller
    with _lock:
        controller, thread = _controller, _thread
        _controller = _thread = None
    _stopping.set()  # the sweep thread ends at its next wake-up instead of outliving the worker
    if controller is not None:
        controller.stop(in_sighandler=False)
    if thread is not None:
        thread.join(timeout)
    sweeper = _sweeper
    if sweeper is not None:
        sweeper.join(timeout)  # a sweep in progress holds a connection (a test database cannot be dropped)
