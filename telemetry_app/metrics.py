"""Prometheus metrics: what an operator scrapes (`GET /metrics`, telemetry_app.urls).

Two sources, each where it is correct across processes:

* **Events counted as they happen** (runs, their durations, tokens, cost, model errors, busy-session
  waits, open websockets, telemetry upload failures): prometheus-client metrics in the process
  where they happen. Several processes on one host (server workers, a Celery worker) share them
  through prometheus-client's multiprocess mode: set `PROMETHEUS_MULTIPROC_DIR` to an empty
  directory for all of them (docs/deployment.md); processes on other hosts are scraped one by one,
  as Prometheus does with pods.
* **State read at scrape time** from the database (runs going on, hook executions by status and the
  age of the oldest queued one, the telemetry buffer, live server processes): the same answer
  from every process, whoever writes it. Apps add their own readings with `register_reading`
  (agents_app adds its hook executions: this app cannot import it).

Recording costs a few microseconds per run (bench/metrics_bench.py) and no query.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable

from django.db.models import Count, Min, Q
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

logger = logging.getLogger(__name__)

__all__ = [
    "CONTENT_TYPE_LATEST",
    "record_busy_wait",
    "record_run",
    "record_telemetry_upload_failure",
    "register_reading",
    "render",
    "websocket_closed",
    "websocket_opened",
]

# Seconds: most runs take a model call or a few (0.5-30 s); streamed first tokens come sooner.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
WAIT_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 120)

RUNS = Counter(
    "agentos_runs",
    "Runs that ended, by kind (agent, team, workflow), component (its id), status and error type.",
    ["kind", "component", "status", "error_type"],
)
RUN_DURATION = Histogram(
    "agentos_run_duration_seconds", "How long runs took, start to stored end.", ["kind"], buckets=DURATION_BUCKETS
)
RUN_TTFT = Histogram(
    "agentos_run_time_to_first_token_seconds",
    "Time from a run's start to the model's first token (runs that got one).",
    ["kind"],
    buckets=TTFT_BUCKETS,
)
TOKENS = Counter(
    "agentos_run_tokens",
    "Model tokens of ended runs, by kind, component and direction.",
    ["kind", "component", "direction"],
)
COST = Counter(
    "agentos_run_cost",
    "What ended runs' own model calls cost (member and step runs count their own), by kind, component and the "
    "model that answered, in the currency of the model configs' prices.",
    ["kind", "component", "model"],
)
MODEL_ERRORS = Counter(
    "agentos_model_errors",
    "Runs that ended with a model-side error, by provider and error type.",
    ["provider", "error_type"],
)
BUSY_WAITS = Counter(
    "agentos_busy_session_waits",
    "Messages that found their session busy, by the policy applied and how it ended "
    "(started, rejected, timed_out, freed: only a dead process's run held it).",
    ["policy", "outcome"],
)
BUSY_WAIT_SECONDS = Histogram(
    "agentos_busy_session_wait_seconds", "How long a message waited for its busy session.", buckets=WAIT_BUCKETS
)
WEBSOCKETS = Gauge("agentos_websockets_open", "Open chat websockets, by kind.", ["kind"], multiprocess_mode="livesum")
TELEMETRY_UPLOAD_FAILURES = Counter(
    "agentos_telemetry_upload_failures", "Telemetry uploads that failed (the events stay buffered and are retried)."
)


def record_run(
    *,
    kind: str,
    component: str,
    status: str,
    error_type: str,
    provider: str,
    duration: float | None,
    time_to_first_token: float | None,
    input_tokens: int,
    output_tokens: int,
    cost: float = 0.0,
    model: str = "",
) -> None:
    """One ended run (called once its outcome is stored). Never raises."""
    try:
        kind = str(getattr(kind, "value", kind))
        RUNS.labels(kind, component, status, error_type or "").inc()
        if duration is not None:
            RUN_DURATION.labels(kind).observe(duration)
        if time_to_first_token is not None:
            RUN_TTFT.labels(kind).observe(time_to_first_token)
        if input_tokens:
            TOKENS.labels(kind, component, "input").inc(input_tokens)
        if output_tokens:
            TOKENS.labels(kind, component, "output").inc(output_tokens)
        if cost and cost > 0:
            COST.labels(kind, component, model or "").inc(float(cost))
        if status == "error" and error_type.startswith("model_"):
            MODEL_ERRORS.labels(provider or "", error_type).inc()
    except Exception:  # metrics must never break a run
        logger.warning("Could not record a run's metrics", exc_info=True)


def record_busy_wait(*, policy: str, outcome: str, seconds: float) -> None:
    """A message that found its session busy, once its wait ended (a rejection did not wait)."""
    BUSY_WAITS.labels(policy, outcome).inc()
    if outcome != "rejected":
        BUSY_WAIT_SECONDS.observe(seconds)


def websocket_opened(kind: str) -> None:
    WEBSOCKETS.labels(kind).inc()


def websocket_closed(kind: str) -> None:
    WEBSOCKETS.labels(kind).dec()


def record_telemetry_upload_failure() -> None:
    TELEMETRY_UPLOAD_FAILURES.inc()


# ---- readings at scrape time ------------------------------------------------------------------

Reading = Callable[[], Iterable[Metric]]
_readings: list[Reading] = []


def register_reading(reading: Reading) -> None:
    """Add a function that yields metric families read at scrape time (idempotent per function)."""
    if reading not in _readings:
        _readings.append(reading)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _core_readings() -> Iterable[Metric]:
    from django.utils import timezone

    from sessions_app import liveness
    from sessions_app.models import Run, ServerProcess
    from telemetry_app.models import TelemetryEvent

    running = Run.objects.filter(status=Run.Status.RUNNING, parent_run__isnull=True).count()
    yield _gauge("agentos_runs_running", "Top-level runs marked running now.", running)
    alive = dict(
        ServerProcess.objects.filter(beat_at__gte=liveness.alive_cutoff())
        .values_list("kind")
        .annotate(n=Count("id"))
        .order_by()
    )
    processes = GaugeMetricFamily(
        "agentos_processes_alive",
        "Processes with a fresh heartbeat, by kind: server (on a shared channel layer), worker, beat.",
        labels=["kind"],
    )
    for kind in ServerProcess.Kind.values:
        processes.add_metric([kind], alive.get(kind, 0))
    yield processes
    buffer = TelemetryEvent.objects.filter(delivered_at__isnull=True).aggregate(
        depth=Count("id"), retrying=Count("id", filter=Q(attempts__gt=0)), oldest=Min("created_at")
    )
    yield _gauge("agentos_telemetry_buffer_events", "Telemetry events waiting to be uploaded.", buffer["depth"])
    yield _gauge(
        "agentos_telemetry_buffer_retrying_events",
        "Buffered telemetry events whose upload failed at least once.",
        buffer["retrying"],
    )
    oldest = buffer["oldest"]
    age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
    yield _gauge("agentos_telemetry_buffer_oldest_seconds", "Age of the oldest buffered telemetry event.", age)


class _Readings(Collector):
    """The scrape-time readings, each guarded: a failing one is left out (and logged), not a 500."""

    def collect(self) -> Iterable[Metric]:
        started = time.perf_counter()
        for reading in [_core_readings, *_readings]:
            try:
                yield from list(reading())
            except Exception:
                logger.warning("A metrics reading failed: %s", getattr(reading, "__name__", reading), exc_info=True)
        yield _gauge(
            "agentos_metrics_readings_seconds",
            "How long the database readings of this scrape took.",
            time.perf_counter() - started,
        )


def render() -> bytes:
    """The exposition text: this process's (or, in multiprocess mode, the host's) counters, and the
    database readings."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
        registry.register(_Readings())
        return generate_latest(registry)
    registry.register(_Readings())
    return generate_latest(REGISTRY) + generate_latest(registry)
