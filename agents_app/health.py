"""Is this process ready to serve? The checks behind `/readyz` and agno's `/os/health`, and the
heartbeats of Celery workers and beat they read.

`readiness()` answers with one entry per dependency, each `ok`, `failed` or `skipped` (not
configured, or not needed by this deployment), with its latency and, when it failed, a short error:

* `database`: a round trip (`SELECT 1`) on the default database;
* `migrations`: no migration of the code this process runs is unapplied (a positive answer is kept
  for MIGRATIONS_OK_SECONDS: a process's own migrations only ever go from unapplied to applied);
* `cache`: a set and a get on Django's default cache;
* `channel_layer`: a `group_send` to a group nobody joins, a real round trip on Redis;
* `broker`: a connection to Celery's broker (skipped for `memory://`, which lives in this process);
* `worker`: some Celery worker wrote its heartbeat within PROCESS_DEAD_SECONDS, when background work
  may need one; an embedded worker (AGENTOS["HOOKS_EMBEDDED_WORKER"]) in this process counts;
* `beat`: a Celery beat wrote its heartbeat within PROCESS_DEAD_SECONDS, when the deployment needs
  one: a real broker and telemetry on, or background hooks without an embedded worker to sweep them.

The process is ready when nothing failed. The checks run concurrently, each bounded by
AGENTOS["HEALTH_TIMEOUT_SECONDS"]; one that raises or times out is `failed`, never an exception.
Blocking work (database, cache, broker) runs in threads, off the event loop.

Why heartbeats in the database for workers and beat: every server process must answer the same for
the whole deployment, whichever process a probe reaches, and the database is the one service all
of them share (as for the server processes' own heartbeats, sessions_app.liveness; the rows are the
same model with a `kind`, so the same cleanup and the same admin view apply). Celery's own means do
not fit: a broadcast `ping` costs a round trip to every worker per probe and needs the control
exchange, and its event heartbeats need a long-running receiver. A worker's heartbeat thread is
started by the `worker_ready` signal of `celery worker` (not by the embedded worker, which only
counts in its own process) and beat's by `beat_init`; beat's stops beating when its scheduler loop
has not ticked for longer than it may sleep, so a wedged beat goes stale like a dead one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections
from django.db.models import Count, Max
from django.utils import timezone

from agents_app.embedded_worker import embedded_worker_enabled
from sessions_app.conf import agentos_settings
from sessions_app.db import db_call
from sessions_app.liveness import dead_after, record_heartbeat
from sessions_app.models import ServerProcess
from telemetry_app.conf import telemetry_enabled

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKS",
    "Check",
    "Readiness",
    "celery_heartbeats_connect",
    "forget_cached_results",
    "readiness",
]

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
# The checks, in the order of the report.
CHECKS = ("database", "migrations", "cache", "channel_layer", "broker", "worker", "beat")
MIGRATIONS_OK_SECONDS = 30.0
# A group nobody joins: sending to it asks the layer's server and delivers nothing.
PROBE_GROUP = "agentos.health.probe"
ERROR_MAX_CHARS = 200

# Blocking probes (cache, broker) run in daemon threads of their own (a hung one must not hold up
# the process's exit, as an executor's thread would), at most this many at a time: while that many
# still hang, a check fails at once instead of starting another.
PROBE_THREADS = 8
_probe_threads = threading.BoundedSemaphore(PROBE_THREADS)
_migrations_ok_at: dict[str, float] = {}


@dataclass(slots=True)
class Check:
    """One dependency's state: `ok`, `failed` or `skipped`, how long the check took (ms), a short
    error when it failed, and a short note (what was found, or why it was skipped)."""

    status: str
    latency_ms: float = 0.0
    error: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "latency_ms": round(self.latency_ms, 1)}
        if self.error:
            body["error"] = self.error
        if self.detail:
            body["detail"] = self.detail
        return body


@dataclass(slots=True)
class Readiness:
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(check.status != FAILED for check in self.checks.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, check in self.checks.items() if check.status == FAILED]

    def as_dict(self) -> dict[str, Any]:
        """The JSON body: `status` ("ok" or "unavailable") and `checks`; when not ready also
        `detail` and `code`, like every error answer of the apps."""
        body: dict[str, Any] = {
            "status": "ok" if self.ready else "unavailable",
            "checks": {name: check.as_dict() for name, check in self.checks.items()},
        }
        if not self.ready:
            body["detail"] = f"Not ready: {', '.join(self.failed)}."
            body["code"] = "unavailable"
        return body


def short_error(exc: BaseException) -> str:
    """An exception as a short line for an unauthenticated answer: its type and message, cut, with
    any password in a URL masked."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    text = re.sub(r"(\w+://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return text[:ERROR_MAX_CHARS]


def forget_cached_results() -> None:
    """Forget that the migrations were found applied (tests; a process that rolled them back)."""
    _migrations_ok_at.clear()


# ---- What this deployment needs -------------------------------------------------------------------


def _celery_app() -> Any:
    # The apps never import the site: the site's Celery app is the current one in every process
    # that loaded it (agentos_site/__init__.py does), as for @shared_task.
    from celery import current_app

    return current_app


@dataclass(frozen=True, slots=True)
class _Needs:
    memory_broker: bool
    embedded_worker: bool
    background_hooks: bool
    telemetry: bool

    @property
    def worker(self) -> bool:
        # Background hooks need one; so does the telemetry upload when beat publishes it to a broker
        # (with memory:// it is cron's `telemetry_flush`, docs/telemetry.md).
        return self.background_hooks or (self.telemetry and not self.memory_broker)

    @property
    def beat(self) -> bool:
        if self.memory_broker:  # beat cannot reach an in-process queue; the embedded worker sweeps
            return False
        return self.telemetry or (self.background_hooks and not self.embedded_worker)


def _needs(app: Any) -> _Needs:
    return _Needs(
        memory_broker=str(app.conf.broker_url or "").startswith("memory://"),
        embedded_worker=embedded_worker_enabled(app),
        background_hooks=str(agentos_settings.HOOKS_BACKGROUND).strip().lower() != "never",
        telemetry=telemetry_enabled(),
    )


# ---- The checks ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _DatabaseFacts:
    """What one hop to the database found (each part may have failed on its own)."""

    database: Check
    migrations: Check
    heartbeats: dict[str, tuple[int, datetime | None]] | None = None  # kind -> (fresh count, last beat)
    heartbeats_error: str = ""


def _unapplied_migrations(alias: str) -> list[str]:
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[alias])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, backwards in plan if not backwards]


def _database_facts(alias: str, kinds: tuple[str, ...]) -> _DatabaseFacts:
    """Sync, in one of the engine's database threads: a round trip, the migration plan, and the
    freshest heartbeats of the Celery processes this deployment needs."""
    started = time.perf_counter()
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure is the check's answer
        failed = Check(FAILED, (time.perf_counter() - started) * 1000, short_error(exc))
        return _DatabaseFacts(failed, Check(FAILED, error="database unreachable"), None, "database unreachable")
    database = Check(OK, (time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    try:
        cached = _migrations_ok_at.get(alias)
        if cached is not None and time.monotonic() - cached < MIGRATIONS_OK_SECONDS:
            migrations = Check(OK, detail=f"all applied (checked in the last {MIGRATIONS_OK_SECONDS:g} s)")
        else:
            unapplied = _unapplied_migrations(alias)
            if unapplied:
                more = f" and {len(unapplied) - 3} more" if len(unapplied) > 3 else ""
                migrations = Check(FAILED, error=f"unapplied: {', '.join(unapplied[:3])}{more}")
            else:
                _migrations_ok_at[alias] = time.monotonic()
                migrations = Check(OK, detail="all applied")
    except Exception as exc:  # noqa: BLE001
        migrations = Check(FAILED, error=short_error(exc))
    migrations.latency_ms = (time.perf_counter() - started) * 1000

    facts = _DatabaseFacts(database, migrations)
    if kinds:
        try:
            rows = (
                ServerProcess.objects.using(alias)
                .filter(kind__in=kinds, beat_at__gte=timezone.now() - timedelta(seconds=dead_after()))
                .values("kind")
                .annotate(n=Count("pk"), last=Max("beat_at"))
            )
            fresh = {row["kind"]: (row["n"], row["last"]) for row in rows}
            missing = [kind for kind in kinds if kind not in fresh]
            if missing:  # when were they last seen at all, for the error
                last = ServerProcess.objects.using(alias).filter(kind__in=missing).values("kind")
                for row in last.annotate(last=Max("beat_at")):
                    fresh[row["kind"]] = (0, row["last"])
            facts.heartbeats = fresh
        except Exception as exc:  # noqa: BLE001 - e.g. the `kind` column is not migrated yet
            facts.heartbeats_error = short_error(exc)
    return facts


def _heartbeat_check(kind: str, what: str, facts: _DatabaseFacts, latency_ms: float) -> Check:
    if facts.heartbeats is None:
        return Check(FAILED, latency_ms, facts.heartbeats_error or "database unreachable")
    count, last = facts.heartbeats.get(kind, (0, None))
    if count:
        ago = (timezone.now() - last).total_seconds() if last else 0.0
        return Check(OK, latency_ms, detail=f"{count} {what}{'s' if count > 1 else ''} seen, last {ago:.1f} s ago")
    seen = f"last seen {(timezone.now() - last).total_seconds():.0f} s ago" if last else "never seen"
    return Check(FAILED, latency_ms, f"no {what} heartbeat in the last {dead_after():g} s ({seen})")


def _cache_probe() -> str:
    from django.core.cache import caches

    cache = caches["default"]
    key = f"agentos:health:{uuid.uuid4().hex}"
    try:
        cache.set(key, "1", timeout=30)
        if cache.get(key) != "1":
            raise RuntimeError("a value set could not be read back")
    finally:
        cache.delete(key)
    return type(cache).__name__


def _broker_probe(app: Any, timeout: float) -> None:
    connection = app.connection_for_write(connect_timeout=timeout)
    try:
        connection.ensure_connection(max_retries=0, timeout=timeout)  # one attempt, no retry pause
    finally:
        connection.release()


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` in a daemon thread; awaiting it can be cancelled (a timeout), the thread then
    ends on its own whenever the call returns."""
    if not _probe_threads.acquire(blocking=False):
        raise RuntimeError(f"{PROBE_THREADS} earlier checks still hang")
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.done():  # given up on (timed out)
            return
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)

    def work() -> None:
        try:
            result, exc = fn(*args), None
        except Exception as error:  # noqa: BLE001 - handed to the awaiting coroutine
            result, exc = None, error
        finally:
            _probe_threads.release()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, exc)

    threading.Thread(target=work, name="agentos-health-probe", daemon=True).start()
    return await future


async def _timed(probe: Callable[[], Awaitable[Check]], timeout: float) -> Check:
    """Run one check within `timeout`: whatever it raises (a timeout included) makes it `failed`."""
    started = time.perf_counter()
    try:
        check = await asyncio.wait_for(probe(), timeout)
    except Exception as exc:  # noqa: BLE001 - a failing check is an answer, not an error
        return Check(FAILED, (time.perf_counter() - started) * 1000, short_error(exc))
    if not check.latency_ms:
        check.latency_ms = (time.perf_counter() - started) * 1000
    return check


async def _cache() -> Check:
    backend = await _in_thread(_cache_probe)
    return Check(OK, detail=backend)


async def _channel_layer() -> Check:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return Check(SKIPPED, detail="no CHANNEL_LAYERS configured")
    await layer.group_send(PROBE_GROUP, {"type": "health.probe"})
    return Check(OK, detail=type(layer).__name__)


async def _broker(app: Any, needs: _Needs, timeout: float) -> Check:
    if needs.memory_broker:
        return Check(SKIPPED, detail="memory:// (in this process)")
    await _in_thread(_broker_probe, app, timeout)
    return Check(OK, detail=str(app.conf.broker_url).split("://", 1)[0])


def _worker(needs: _Needs, facts: _DatabaseFacts, latency_ms: float) -> Check:
    if not needs.worker:
        return Check(SKIPPED, detail="no background work (HOOKS_BACKGROUND=never; telemetry off or flushed by cron)")
    if needs.embedded_worker:
        return Check(OK, detail="the embedded worker thread of this process")
    if needs.memory_broker:
        return Check(FAILED, error="memory:// broker and HOOKS_EMBEDDED_WORKER off: nothing runs background hooks")
    return _heartbeat_check(ServerProcess.Kind.WORKER, "worker", facts, latency_ms)


def _beat(needs: _Needs, facts: _DatabaseFacts, latency_ms: float) -> Check:
    if not needs.beat:
        return Check(SKIPPED, detail="memory:// broker" if needs.memory_broker else "no schedule needs it")
    return _heartbeat_check(ServerProcess.Kind.BEAT, "beat", facts, latency_ms)


async def readiness(*, skip: Iterable[str] = ()) -> Readiness:
    """Check every dependency concurrently (each within HEALTH_TIMEOUT_SECONDS) and report. `skip`:
    names of CHECKS reported as skipped, e.g. for a web pod's readiness probe that should not depend
    on the workers (`/readyz?exclude=worker,beat`). Never raises: if the report itself cannot be
    made, every check says why, so a probe gets a 503, not a 500."""
    try:
        return await _readiness(set(skip))
    except Exception as exc:
        logger.exception("The readiness checks failed")
        return Readiness({name: Check(FAILED, error=short_error(exc)) for name in CHECKS})


async def _readiness(skip: set[str]) -> Readiness:
    timeout = float(agentos_settings.HEALTH_TIMEOUT_SECONDS)
    app = _celery_app()
    needs = _needs(app)
    kinds = tuple(
        kind
        for kind, needed in (
            (ServerProcess.Kind.WORKER.value, needs.worker and not needs.embedded_worker and not needs.memory_broker),
            (ServerProcess.Kind.BEAT.value, needs.beat),
        )
        if needed and kind not in skip
    )

    # One hop to the database answers three checks: they share it (shielded, so that one check's
    # timeout does not cancel it for the others).
    started = time.perf_counter()
    facts_task = asyncio.ensure_future(db_call(_database_facts, DEFAULT_DB_ALIAS, kinds))

    async def facts() -> _DatabaseFacts:
        try:
            return await asyncio.shield(facts_task)
        except Exception as exc:  # noqa: BLE001 - the database thread failed before answering
            error = short_error(exc)
            return _DatabaseFacts(Check(FAILED, error=error), Check(FAILED, error=error), None, error)

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000

    async def database() -> Check:
        return (await facts()).database

    async def migrations() -> Check:
        return (await facts()).migrations

    async def broker() -> Check:
        return await _broker(app, needs, timeout)

    async def worker() -> Check:
        return _worker(needs, await facts() if ServerProcess.Kind.WORKER in kinds else _NO_FACTS, elapsed())

    async def beat() -> Check:
        return _beat(needs, await facts() if ServerProcess.Kind.BEAT in kinds else _NO_FACTS, elapsed())

    probes: dict[str, Callable[[], Awaitable[Check]]] = {
        "database": database,
        "migrations": migrations,
        "cache": _cache,
        "channel_layer": _channel_layer,
        "broker": broker,
        "worker": worker,
        "beat": beat,
    }
    names = [name for name in CHECKS if name not in skip]
    try:
        results = await asyncio.gather(*(_timed(probes[name], timeout) for name in names))
    finally:
        if not facts_task.done():
            facts_task.add_done_callback(_consume)  # still running in its thread: do not warn when it ends
    done = dict(zip(names, results, strict=True))
    return Readiness({name: done.get(name) or Check(SKIPPED, detail="excluded") for name in CHECKS})


_NO_FACTS = _DatabaseFacts(Check(SKIPPED), Check(SKIPPED), {}, "")


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


# ---- Heartbeats of Celery workers and beat -------------------------------------------------------


class _Heartbeat:
    """A daemon thread that writes this process's heartbeat row (ServerProcess, `kind`) every
    PROCESS_HEARTBEAT_SECONDS while `alive()` says so; its own thread, so its database connection is
    its own (beat embedded in a worker runs in a forked child, which must not use its parent's)."""

    def __init__(self, kind: str, alive: Callable[[], bool] = lambda: True) -> None:
        self.kind = kind
        self.alive = alive
        self.id = uuid.uuid4().hex
        self.started_at = timezone.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"agentos-{kind}-heartbeat", daemon=True)
        self._failures = 0

    def start(self) -> _Heartbeat:
        self._thread.start()
        return self

    def beat(self) -> None:
        record_heartbeat(self.id, self.kind, self.started_at)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.alive():
                    self.beat()
                if self._failures:
                    logger.warning("The %s heartbeat works again after %d failures", self.kind, self._failures)
                self._failures = 0
            except Exception:  # a database hiccup: the next beat tries again
                self._failures += 1
                logger.warning(
                    "The %s heartbeat failed (%d in a row)", self.kind, self._failures, exc_info=self._failures == 1
                )
            finally:
                close_old_connections()
            self._stop.wait(float(agentos_settings.PROCESS_HEARTBEAT_SECONDS))
        try:  # stopped: a worker that stops cleanly is gone at once, not after PROCESS_DEAD_SECONDS
            ServerProcess.objects.filter(pk=self.id).delete()
        except Exception:  # the row goes stale on its own
            logger.debug("Could not delete the %s heartbeat row", self.kind, exc_info=True)
        finally:
            connections.close_all()  # this thread's own

    def stop(self, timeout: float = 5.0) -> None:
        """Stop beating; the thread deletes the row on its way out."""
        self._stop.set()
        self._thread.join(timeout)


_heartbeats: dict[str, _Heartbeat] = {}


def _beat_ticking(service: Any) -> Callable[[], bool]:
    """Whether beat's scheduler loop ticked within the longest it may sleep (plus PROCESS_DEAD_SECONDS):
    Celery's beat service stamps `_last_tick` after every pass (Celery >= 5.6; older: assume yes)."""

    def ticking() -> bool:
        last = getattr(service, "_last_tick", None)
        if last is None:
            return True
        longest_sleep = float(
            getattr(service, "effective_max_interval", None) or getattr(service, "max_interval", 0) or 300
        )
        return time.monotonic() - last <= longest_sleep + dead_after()

    return ticking


def _on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
    # Sent by `celery worker` only (celery.apps.worker), not by the embedded WorkController.
    if "worker" not in _heartbeats:
        _heartbeats["worker"] = _Heartbeat(ServerProcess.Kind.WORKER).start()


def _on_worker_shutdown(sender: Any = None, **kwargs: Any) -> None:
    heartbeat = _heartbeats.pop("worker", None)
    if heartbeat is not None:
        heartbeat.stop()


def _on_beat_init(sender: Any = None, **kwargs: Any) -> None:
    if "beat" not in _heartbeats:
        _heartbeats["beat"] = _Heartbeat(ServerProcess.Kind.BEAT, _beat_ticking(sender)).start()


def celery_heartbeats_connect() -> None:
    """Connect the Celery signals that start the worker and beat heartbeats (agents_app's ready():
    any site's `celery worker` and `celery beat` then beat, with no code of its own)."""
    from celery import signals

    signals.worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid="agentos-health-worker-ready")
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False, dispatch_uid="agentos-health-worker-shutdown")
    signals.beat_init.connect(_on_beat_init, weak=False, dispatch_uid="agentos-health-beat-init")
