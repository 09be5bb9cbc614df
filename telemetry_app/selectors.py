"""Reads for the metrics dashboard: this site's runs (sessions_app.Run) aggregated by the database
over a period, per time bucket, per agent and per model; and (alpha) what this collector received.

Every figure is an aggregate query (COUNT/SUM/AVG with GROUP BY, TruncHour/TruncDay buckets,
percentiles via `telemetry_app.aggregates`); Python only arranges the few result rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Avg, Count, Max, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from sessions_app.models import Run
from telemetry_app.aggregates import percentiles
from telemetry_app.models import ReceivedEvent


@dataclass(frozen=True)
class Period:
    key: str
    label: str
    span: dt.timedelta
    bucket: str  # "hour" or "day"


PERIODS: dict[str, Period] = {
    p.key: p
    for p in (
        Period("24h", "Last 24 hours", dt.timedelta(hours=24), "hour"),
        Period("7d", "Last 7 days", dt.timedelta(days=7), "hour"),
        Period("30d", "Last 30 days", dt.timedelta(days=30), "day"),
    )
}
DEFAULT_PERIOD = "24h"
LATENCY_FRACTIONS = (0.5, 0.95, 0.99)
TOP_GROUPS = 12


@dataclass
class Bucket:
    start: dt.datetime
    runs: int = 0
    completed: int = 0
    errors: int = 0
    cancelled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    p50: float | None = None
    p95: float | None = None

    @property
    def error_rate(self) -> float | None:
        finished = self.completed + self.errors + self.cancelled
        return self.errors / finished if finished else None


@dataclass
class GroupRow:
    key: str
    label: str
    runs: int
    errors: int
    input_tokens: int
    output_tokens: int
    avg_duration: float | None
    p50: float | None = None
    p95: float | None = None
    finished: int = 0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.finished if self.finished else None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class RunMetrics:
    period: Period
    since: dt.datetime
    until: dt.datetime
    runs: int = 0
    completed: int = 0
    errors: int = 0
    cancelled: int = 0
    running: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    avg_duration: float | None = None
    duration: dict[float, float | None] = field(default_factory=dict)
    ttft: dict[float, float | None] = field(default_factory=dict)
    buckets: list[Bucket] = field(default_factory=list)
    agents: list[GroupRow] = field(default_factory=list)
    models: list[GroupRow] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return self.completed + self.errors + self.cancelled

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.finished if self.finished else None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def p50(self) -> float | None:
        return self.duration.get(0.5)

    @property
    def p95(self) -> float | None:
        return self.duration.get(0.95)

    @property
    def p99(self) -> float | None:
        return self.duration.get(0.99)

    @property
    def ttft_p50(self) -> float | None:
        return self.ttft.get(0.5)

    @property
    def ttft_p95(self) -> float | None:
        return self.ttft.get(0.95)


def _counts() -> dict[str, Any]:
    return {
        "runs": Count("pk"),
        "completed": Count("pk", filter=Q(status=Run.Status.COMPLETED)),
        "errors": Count("pk", filter=Q(status=Run.Status.ERROR)),
        "cancelled": Count("pk", filter=Q(status=Run.Status.CANCELLED)),
        "input_tokens": Sum("input_tokens", default=0),
        "output_tokens": Sum("output_tokens", default=0),
        "avg_duration": Avg("duration"),
    }


def _bucket_starts(period: Period, until: dt.datetime) -> list[dt.datetime]:
    step = dt.timedelta(hours=1) if period.bucket == "hour" else dt.timedelta(days=1)
    if period.bucket == "hour":
        last = until.replace(minute=0, second=0, microsecond=0)
    else:
        last = until.replace(hour=0, minute=0, second=0, microsecond=0)
    count = int(period.span / step)
    return [last - step * i for i in range(count - 1, -1, -1)]


def _group_rows(
    qs: QuerySet[Run], keys: list[str], label: Any, dur: dict[Any, dict[float, float | None]]
) -> list[GroupRow]:
    rows = []
    for row in qs.values(*keys).annotate(**_counts()).order_by("-runs", *keys)[:TOP_GROUPS]:
        key = tuple(row[k] for k in keys)
        p = dur.get(key, {})
        rows.append(
            GroupRow(
                key="/".join(str(v) for v in key),
                label=label(row),
                runs=row["runs"],
                errors=row["errors"],
                finished=row["completed"] + row["errors"] + row["cancelled"],
                input_tokens=row["input_tokens"],
                output_tokens=row["output_tokens"],
                avg_duration=row["avg_duration"],
                p50=p.get(0.5),
                p95=p.get(0.95),
            )
        )
    return rows


def run_metrics(*, period: str = DEFAULT_PERIOD, now: dt.datetime | None = None) -> RunMetrics:
    """This site's runs created in the period: totals, a series per bucket, the busiest agents and
    models; latency percentiles (p50/p95/p99 of duration, p50/p95 of time to first token) overall,
    per bucket, per agent and per model. Nine queries, whatever the number of runs."""
    chosen = PERIODS.get(period, PERIODS[DEFAULT_PERIOD])
    until = now or timezone.now()
    starts = _bucket_starts(chosen, until)
    since = starts[0]
    metrics = RunMetrics(period=chosen, since=since, until=until)
    runs = Run.objects.filter(created_at__gte=since, created_at__lte=until).order_by()
    finished = runs.exclude(status=Run.Status.RUNNING)

    totals = runs.aggregate(**_counts())
    metrics.runs = totals["runs"]
    metrics.completed = totals["completed"]
    metrics.errors = totals["errors"]
    metrics.cancelled = totals["cancelled"]
    metrics.running = metrics.runs - metrics.finished
    metrics.input_tokens = totals["input_tokens"]
    metrics.output_tokens = totals["output_tokens"]
    metrics.avg_duration = totals["avg_duration"]
    metrics.duration = percentiles(finished, "duration", LATENCY_FRACTIONS)[()]
    metrics.ttft = percentiles(finished, "time_to_first_token", (0.5, 0.95))[()]

    trunc = TruncHour if chosen.bucket == "hour" else TruncDay
    bucketed = runs.annotate(bucket=trunc("created_at", tzinfo=dt.UTC))
    by_bucket = {row["bucket"]: row for row in bucketed.values("bucket").annotate(**_counts())}
    bucket_p = percentiles(
        finished.annotate(bucket=trunc("created_at", tzinfo=dt.UTC)), "duration", (0.5, 0.95), ["bucket"]
    )
    for start in starts:
        row = by_bucket.get(start, {})
        p = bucket_p.get((start,), {})
        metrics.buckets.append(
            Bucket(
                start=start,
                runs=row.get("runs", 0),
                completed=row.get("completed", 0),
                errors=row.get("errors", 0),
                cancelled=row.get("cancelled", 0),
                input_tokens=row.get("input_tokens", 0),
                output_tokens=row.get("output_tokens", 0),
                p50=p.get(0.5),
                p95=p.get(0.95),
            )
        )

    agent_keys = ["agent__slug", "agent__name"]
    # Agent runs only (members' and steps' runs included); team and workflow runs have no agent.
    agent_p = percentiles(finished.filter(agent__isnull=False), "duration", (0.5, 0.95), agent_keys)
    metrics.agents = _group_rows(
        runs.filter(agent__isnull=False), agent_keys, lambda r: f"{r['agent__name']} ({r['agent__slug']})", agent_p
    )
    model_p = percentiles(finished, "duration", (0.5, 0.95), ["provider", "model"])
    metrics.models = _group_rows(
        runs, ["provider", "model"], lambda r: f"{r['model'] or '?'} ({r['provider'] or '?'})", model_p
    )
    return metrics


@dataclass
class CollectedRow:
    sender: str
    site_id: str
    kind: str
    event_type: str
    events: int
    last_event_at: dt.datetime | None


def collected_events(*, since: dt.datetime, until: dt.datetime) -> list[CollectedRow]:
    """(Alpha) Events this collector received from other deployments, per sender, site and type."""
    rows = (
        ReceivedEvent.objects.filter(created_at__gte=since, created_at__lte=until)
        .values("sender__name", "site_id", "kind", "event_type")
        .annotate(events=Count("pk"), last=Max("created_at"))
        .order_by("-events", "sender__name", "site_id")[:50]
    )
    return [
        CollectedRow(
            sender=r["sender__name"],
            site_id=r["site_id"],
            kind=r["kind"],
            event_type=r["event_type"],
            events=r["events"],
            last_event_at=r["last"],
        )
        for r in rows
    ]
