"""Reads for the metrics dashboard: this site's runs (sessions_app.Run) aggregated by the database
over a period, per time bucket, per agent and per model; what they cost per component, model, user
and day; and (alpha) what this collector received.

Every figure is an aggregate query (COUNT/SUM/AVG with GROUP BY, TruncHour/TruncDay buckets,
percentiles via `telemetry_app.aggregates`); Python only arranges the few result rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
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


@dataclass(kw_only=True)
class Totals:
    """Run counts, tokens and latency of a set of runs (the keys `_counts()` aggregates)."""

    runs: int = 0
    completed: int = 0
    errors: int = 0
    cancelled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cost: Decimal = Decimal(0)  # the runs' own costs (Run.cost): every model call once
    avg_duration: float | None = None
    p50: float | None = None
    p95: float | None = None

    @property
    def finished(self) -> int:
        return self.completed + self.errors + self.cancelled

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.finished if self.finished else None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(kw_only=True)
class Bucket(Totals):
    start: dt.datetime


@dataclass(kw_only=True)
class GroupRow(Totals):
    key: str
    label: str


@dataclass(kw_only=True)
class RunMetrics(Totals):
    period: Period
    since: dt.datetime
    until: dt.datetime
    duration: dict[float, float | None] = field(default_factory=dict)
    ttft: dict[float, float | None] = field(default_factory=dict)
    buckets: list[Bucket] = field(default_factory=list)
    agents: list[GroupRow] = field(default_factory=list)
    models: list[GroupRow] = field(default_factory=list)

    @property
    def running(self) -> int:
        return self.runs - self.finished

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
        "cache_read_tokens": Sum("cache_read_tokens", default=0),
        "cost_sum": Sum("cost", default=Decimal(0)),  # (an annotation may not be named after a field)
        "avg_duration": Avg("duration"),
    }


def _bucket_starts(period: Period, until: dt.datetime) -> list[dt.datetime]:
    step = dt.timedelta(hours=1) if period.bucket == "hour" else dt.timedelta(days=1)
    last = until.replace(minute=0, second=0, microsecond=0)
    if period.bucket != "hour":
        last = last.replace(hour=0)
    count = int(period.span / step)
    return [last - step * i for i in range(count - 1, -1, -1)]


def _totals(row: dict[str, Any], p: dict[float, float | None]) -> dict[str, Any]:
    """`Totals` fields from a `_counts()` row (an empty row: no runs) and its percentiles."""
    fields = {k: row[k] for k in _counts() if k in row}
    if "cost_sum" in fields:
        fields["cost"] = fields.pop("cost_sum")
    return {**fields, "p50": p.get(0.5), "p95": p.get(0.95)}


def _group_rows(runs: QuerySet[Run], finished: QuerySet[Run], keys: list[str], label: Any) -> list[GroupRow]:
    """The busiest groups of `runs` by `keys`, with the duration percentiles of their finished runs."""
    dur = percentiles(finished, "duration", (0.5, 0.95), keys)
    rows = []
    for row in runs.values(*keys).annotate(**_counts()).order_by("-runs", *keys)[:TOP_GROUPS]:
        key = tuple(row[k] for k in keys)
        rows.append(GroupRow(key="/".join(map(str, key)), label=label(row), **_totals(row, dur.get(key, {}))))
    return rows


def run_metrics(*, period: str = DEFAULT_PERIOD, now: dt.datetime | None = None) -> RunMetrics:
    """This site's runs created in the period: totals, a series per bucket, the busiest agents and
    models; latency percentiles (p50/p95/p99 of duration, p50/p95 of time to first token) overall,
    per bucket, per agent and per model. Nine queries, whatever the number of runs."""
    chosen = PERIODS.get(period, PERIODS[DEFAULT_PERIOD])
    until = now or timezone.now()
    starts = _bucket_starts(chosen, until)
    since = starts[0]
    runs = Run.objects.filter(created_at__gte=since, created_at__lte=until).order_by()
    finished = runs.exclude(status=Run.Status.RUNNING)
    duration = percentiles(finished, "duration", LATENCY_FRACTIONS)[()]
    metrics = RunMetrics(
        period=chosen,
        since=since,
        until=until,
        **_totals(runs.aggregate(**_counts()), duration),
        duration=duration,
        ttft=percentiles(finished, "time_to_first_token", (0.5, 0.95))[()],
    )

    bucket = (TruncHour if chosen.bucket == "hour" else TruncDay)("created_at", tzinfo=dt.UTC)
    by_bucket = {row["bucket"]: row for row in runs.annotate(bucket=bucket).values("bucket").annotate(**_counts())}
    bucket_p = percentiles(finished.annotate(bucket=bucket), "duration", (0.5, 0.95), ["bucket"])
    metrics.buckets = [
        Bucket(start=start, **_totals(by_bucket.get(start, {}), bucket_p.get((start,), {}))) for start in starts
    ]

    # Agent runs only (members' and steps' runs included); team and workflow runs have no agent.
    agent_runs, agent_finished = runs.filter(agent__isnull=False), finished.filter(agent__isnull=False)
    agent_label = lambda r: f"{r['agent__name']} ({r['agent__slug']})"  # noqa: E731
    metrics.agents = _group_rows(agent_runs, agent_finished, ["agent__slug", "agent__name"], agent_label)
    model_label = lambda r: f"{r['model'] or '?'} ({r['provider'] or '?'})"  # noqa: E731
    metrics.models = _group_rows(runs, finished, ["provider", "model"], model_label)
    return metrics


@dataclass(kw_only=True)
class CostRow:
    """What one group of runs (a component, a model, a user or a day) cost."""

    key: str
    label: str
    kind: str = ""  # components: agent, team or workflow
    runs: int = 0
    cost: Decimal = Decimal(0)  # the runs' own costs: rows add up to the period's total
    total_cost: Decimal = Decimal(0)  # components: with their runs' member and step runs (overlaps)
    start: dt.datetime | None = None  # days
    share: float | None = None  # of the period's cost (None: the period cost nothing)


@dataclass(kw_only=True)
class CostMetrics:
    """The period's cost, and the costliest components, models and users, and every day. Each
    list holds at most TOP_GROUPS rows and an "Others" row for the rest, so every list adds up to
    `total` exactly."""

    total: Decimal
    runs: int
    priced_runs: int  # runs that cost something
    cache_read_tokens: int
    components: list[CostRow] = field(default_factory=list)
    models: list[CostRow] = field(default_factory=list)
    users: list[CostRow] = field(default_factory=list)
    days: list[CostRow] = field(default_factory=list)


def _cost_sums() -> dict[str, Any]:
    # ("amount": an annotation may not be named after a field, here Run.cost.)
    return {"runs": Count("pk"), "amount": Sum("cost", default=Decimal(0))}


def _share(cost: Decimal, total: Decimal) -> float | None:
    return float(cost / total) if total else None


def _top_rows(qs: QuerySet[Run], keys: list[str], make: Any, total: Decimal, runs: int, **extra: Any) -> list[CostRow]:
    """The costliest groups of `qs` by `keys` (one GROUP BY query, with the `extra` aggregates), and
    an "Others" row with what the rest cost (the period's totals minus the rows shown)."""
    grouped = qs.values(*keys).annotate(**_cost_sums(), **extra).order_by("-amount", "-runs", *keys)
    rows = list(grouped[: TOP_GROUPS + 1])
    shown = [make(row) for row in rows[:TOP_GROUPS]]
    if len(rows) > TOP_GROUPS:
        rest_cost = total - sum((r.cost for r in shown), Decimal(0))
        rest_runs = runs - sum(r.runs for r in shown)
        shown.append(CostRow(key="", label="Others", runs=rest_runs, cost=rest_cost))
    for row in shown:
        row.share = _share(row.cost, total)
    return shown


def _component(row: dict[str, Any]) -> CostRow:
    kind = "team" if row["team__slug"] else "workflow" if row["workflow__slug"] else "agent"
    slug, name = row[f"{kind}__slug"], row[f"{kind}__name"]
    return CostRow(
        key=f"{kind}/{slug}",
        label=f"{name} ({slug})",
        kind=kind,
        runs=row["runs"],
        cost=row["amount"],
        total_cost=row["with_children"],
    )


def cost_metrics(*, since: dt.datetime, until: dt.datetime) -> CostMetrics:
    """What this site's runs created in the period cost (Run.cost, each run's own model calls, so
    no call is counted twice), in total, per component (agent, team or workflow), per model (the
    one that answered), per user and per day (UTC). Five queries, whatever the number of runs;
    the sums are exact decimals (to the stored 10 places)."""
    runs = Run.objects.filter(created_at__gte=since, created_at__lte=until).order_by()
    totals = runs.aggregate(
        **_cost_sums(), priced=Count("pk", filter=Q(cost__gt=0)), cached=Sum("cache_read_tokens", default=0)
    )
    total, count = totals["amount"], totals["runs"]
    metrics = CostMetrics(total=total, runs=count, priced_runs=totals["priced"], cache_read_tokens=totals["cached"])

    component_keys = [f"{kind}__{f}" for kind in ("agent", "team", "workflow") for f in ("slug", "name")]
    metrics.components = _top_rows(
        runs, component_keys, _component, total, count, with_children=Sum("total_cost", default=Decimal(0))
    )
    metrics.models = _top_rows(
        runs,
        ["provider", "model"],
        lambda r: CostRow(
            key=f"{r['provider']}/{r['model']}",
            label=f"{r['model'] or '?'} ({r['provider'] or '?'})",
            runs=r["runs"],
            cost=r["amount"],
        ),
        total,
        count,
    )
    username = f"user__{get_user_model().USERNAME_FIELD}"
    metrics.users = _top_rows(
        runs,
        ["user_id", username],
        lambda r: CostRow(key=str(r["user_id"]), label=str(r[username]), runs=r["runs"], cost=r["amount"]),
        total,
        count,
    )
    day = TruncDay("created_at", tzinfo=dt.UTC)
    by_day = {row["day"]: row for row in runs.annotate(day=day).values("day").annotate(**_cost_sums())}
    first = since.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [first + dt.timedelta(days=i) for i in range((until - first).days + 1)]
    for start in starts:
        row = by_day.get(start, {"runs": 0, "amount": Decimal(0)})
        metrics.days.append(
            CostRow(
                key=start.date().isoformat(),
                label=start.strftime("%Y-%m-%d"),
                runs=row["runs"],
                cost=row["amount"],
                share=_share(row["amount"], total),
                start=start,
            )
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
        .annotate(events=Count("pk"), last_event_at=Max("created_at"))
        .order_by("-events", "sender__name", "site_id")[:50]
    )
    return [CollectedRow(sender=r.pop("sender__name"), **r) for r in rows]


@dataclass(frozen=True)
class EvalSuiteRow:
    slug: str
    name: str
    target: str
    last_status: str
    last_score: float | None
    previous_score: float | None
    regressed: bool
    last_run_at: dt.datetime | None
    trend: list[float] = field(default_factory=list)  # the last scores, oldest first


EVAL_TREND_RUNS = 10


def eval_suites_summary() -> list[EvalSuiteRow]:
    """The dashboard's Evals section: every eval suite with its last eval run's status and score and
    its last scores (the trend). The models are agents_app's, found through the app registry (this
    app imports nothing of agents_app); an empty list without them."""
    from django.apps import apps

    try:
        suite_model = apps.get_model("agents_app", "EvalSuite")
        run_model = apps.get_model("agents_app", "EvalRun")
    except LookupError:
        return []
    from django.db.models import F, Window
    from django.db.models.functions import RowNumber

    suites = list(suite_model.objects.select_related("agent", "team", "workflow").order_by("slug")[:200])
    recent: dict[int, list[dict[str, Any]]] = {}
    # The last EVAL_TREND_RUNS finished eval runs of every suite, in one query.
    ranked = (
        run_model.objects.filter(suite__in=suites, finished_at__isnull=False)
        .annotate(rank=Window(RowNumber(), partition_by=[F("suite_id")], order_by=F("finished_at").desc()))
        .filter(rank__lte=EVAL_TREND_RUNS)
        .values("suite_id", "status", "score", "previous_score", "regressed", "finished_at")
        .order_by("suite_id", "-finished_at")
    )
    for run in ranked:
        recent.setdefault(run["suite_id"], []).append(run)
    rows = []
    for suite in suites:
        runs = recent.get(suite.pk, [])
        last = runs[0] if runs else {}
        target = suite.agent or suite.team or suite.workflow
        rows.append(
            EvalSuiteRow(
                slug=suite.slug,
                name=suite.name,
                target=f"{suite.target_kind}: {getattr(target, 'slug', '?')}",
                last_status=last.get("status", ""),
                last_score=last.get("score"),
                previous_score=last.get("previous_score"),
                regressed=bool(last.get("regressed")),
                last_run_at=last.get("finished_at"),
                trend=[r["score"] for r in reversed(runs) if r["score"] is not None],
            )
        )
    return rows
