"""Daily metrics: per day and user, what ran, who, how many tokens, what it cost, per model and per
agent, team or workflow; computed from the stored runs and sessions (sessions_app), never on a
run's path, and read by agno's `GET /os/metrics`.

A refresh recomputes whole days (the days with runs or sessions created or finished since the last
refresh started, or every day on the first) and replaces their rows, so it is idempotent: running
it twice, or concurrently with runs, gives the rows a later refresh would give. One refresh runs at
a time, site-wide: `metrics_refresh_claim` is a conditional update of the one `MetricsRefresh` row.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from sessions_app.models import Run, Session
from telemetry_app.models import DailyMetrics, MetricsRefresh

logger = logging.getLogger(__name__)

KINDS = ("agent", "team", "workflow")
# agno's token counters (its calculate_date_metrics); ours has no audio or reasoning counts: zero.
TOKEN_KEYS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "audio_total_tokens",
    "audio_input_tokens",
    "audio_output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
# A refresh that has been "running" this long died with its worker: another may claim it.
STALE_REFRESH = dt.timedelta(minutes=15)
REFRESH_ID = 1


def _kind_of(row: dict[str, Any]) -> str:
    return "team" if row["team_id"] else "workflow" if row["workflow_id"] else "agent"


def _utc_day(value: dt.datetime) -> dt.date:
    return value.astimezone(dt.UTC).date()


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def _num(value: Decimal | None) -> float:
    return float(value or 0)


def compute_day(day: dt.date) -> dict[int | None, dict[str, Any]]:
    """One day's buckets, per user id: counts, tokens, cost, per model and per component. Runs
    count on the day they were created; a team's member runs and a workflow's step runs count in
    the tokens, cost and models (each run's own calls, so nothing twice) but not as runs of their
    own kind (agno counts the runs its users started). Sessions count on the day they were created."""
    start, end = _day_bounds(day)
    runs = (
        Run.objects.filter(created_at__gte=start, created_at__lt=end)
        .exclude(status__in=[Run.Status.RUNNING, Run.Status.PAUSED])
        .values(
            "user_id",
            "agent_id",
            "team_id",
            "workflow_id",
            "agent__slug",
            "team__slug",
            "workflow__slug",
            "parent_run_id",
            "model",
            "provider",
            "status",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cache_read_tokens",
            "cost",
        )
    )
    buckets: dict[int | None, dict[str, Any]] = {}

    def bucket(user_id: int | None) -> dict[str, Any]:
        found = buckets.get(user_id)
        if found is None:
            found = buckets[user_id] = {
                **{f"{kind}_runs_count": 0 for kind in KINDS},
                **{f"{kind}_sessions_count": 0 for kind in KINDS},
                "token_metrics": dict.fromkeys(TOKEN_KEYS, 0),
                "cost": Decimal(0),
                "models": defaultdict(lambda: {"count": 0, "input_tokens": 0, "output_tokens": 0, "cost": Decimal(0)}),
                "components": defaultdict(
                    lambda: {"runs": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0, "cost": Decimal(0)}
                ),
            }
        return found

    for row in runs.iterator(chunk_size=2000):
        b = bucket(row["user_id"])
        kind = _kind_of(row)
        tokens = b["token_metrics"]
        tokens["input_tokens"] += row["input_tokens"]
        tokens["output_tokens"] += row["output_tokens"]
        tokens["total_tokens"] += row["input_tokens"] + row["output_tokens"]
        tokens["cache_read_tokens"] += row["cache_read_tokens"]
        b["cost"] += row["cost"] or 0
        if row["model"]:
            m = b["models"][(row["model"], row["provider"])]
            m["count"] += 1
            m["input_tokens"] += row["input_tokens"]
            m["output_tokens"] += row["output_tokens"]
            m["cost"] += row["cost"] or 0
        c = b["components"][(kind, row[f"{kind}__slug"] or "")]
        c["input_tokens"] += row["input_tokens"]
        c["output_tokens"] += row["output_tokens"]
        c["cost"] += row["cost"] or 0
        if row["parent_run_id"] is None:
            b[f"{kind}_runs_count"] += 1
            c["runs"] += 1
            c["errors"] += row["status"] == Run.Status.ERROR
    sessions = (
        Session.objects.filter(created_at__gte=start, created_at__lt=end)
        .values("user_id")
        .annotate(
            agent=Count("pk", filter=Q(agent__isnull=False)),
            team=Count("pk", filter=Q(team__isnull=False)),
            workflow=Count("pk", filter=Q(workflow__isnull=False)),
        )
    )
    for row in sessions:
        b = bucket(row["user_id"])
        for kind in KINDS:
            b[f"{kind}_sessions_count"] += row[kind]
    return buckets


def _as_row(data: dict[str, Any]) -> dict[str, Any]:
    """A bucket as DailyMetrics fields (JSON-safe breakdowns, sorted for stable output)."""
    models = [
        {
            "model_id": model_id,
            "model_provider": provider,
            "count": m["count"],
            "input_tokens": m["input_tokens"],
            "output_tokens": m["output_tokens"],
            "cost": _num(m["cost"]),
        }
        for (model_id, provider), m in sorted(data["models"].items())
    ]
    components = [
        {
            "type": kind,
            "id": slug,
            "runs": c["runs"],
            "errors": c["errors"],
            "input_tokens": c["input_tokens"],
            "output_tokens": c["output_tokens"],
            "cost": _num(c["cost"]),
        }
        for (kind, slug), c in sorted(data["components"].items())
    ]
    counts = {k: v for k, v in data.items() if k.endswith("_count")}
    return {
        **counts,
        "token_metrics": data["token_metrics"],
        "cost": data["cost"],
        "model_metrics": models,
        "component_metrics": components,
    }


def refresh_day(day: dt.date) -> int:
    """Replace the day's rows with freshly computed ones (one transaction); the number of rows."""
    buckets = compute_day(day)
    now = timezone.now()
    with transaction.atomic():
        existing = {row.user_id: row for row in DailyMetrics.objects.select_for_update().filter(date=day)}
        DailyMetrics.objects.filter(date=day).exclude(user_id__in=[u for u in buckets if u is not None]).delete()
        for user_id, data in buckets.items():
            fields = _as_row(data)
            row = existing.get(user_id)
            if row is None:
                DailyMetrics.objects.create(date=day, user_id=user_id, created_at=now, updated_at=now, **fields)
                continue
            changed = any(getattr(row, k) != v for k, v in fields.items() if k != "cost") or row.cost != fields["cost"]
            if changed:
                for key, value in fields.items():
                    setattr(row, key, value)
                row.updated_at = now
                row.save()
    return len(buckets)


def days_to_refresh(since: dt.datetime | None) -> list[dt.date]:
    """The days whose rows may have changed since `since` (a run or session created then, or a run
    that ended since: its day is its creation day); every day with a run or session when None."""
    runs = Run.objects.all()
    sessions = Session.objects.all()
    if since is not None:
        runs = runs.filter(Q(created_at__gte=since) | Q(finished_at__gte=since) | Q(updated_at__gte=since))
        sessions = sessions.filter(created_at__gte=since)
    days = set(runs.annotate(day=TruncDate("created_at", tzinfo=dt.UTC)).values_list("day", flat=True).distinct())
    days |= set(sessions.annotate(day=TruncDate("created_at", tzinfo=dt.UTC)).values_list("day", flat=True).distinct())
    # Days whose rows exist but whose runs were deleted since are recomputed by a full refresh.
    return sorted(d for d in days if d is not None)


def _state() -> MetricsRefresh:
    state, _ = MetricsRefresh.objects.get_or_create(pk=REFRESH_ID)
    return state


def metrics_refresh_claim() -> bool:
    """Mark a refresh as running, unless one is (and is not stale): whether this caller got it."""
    _state()
    now = timezone.now()
    claimable = ~Q(status=MetricsRefresh.Status.RUNNING) | Q(started_at__lt=now - STALE_REFRESH)
    return bool(
        MetricsRefresh.objects.filter(claimable, pk=REFRESH_ID).update(
            status=MetricsRefresh.Status.RUNNING, started_at=now, finished_at=None, error=""
        )
    )


def metrics_refresh_failed(error: str) -> None:
    """End a claimed refresh that could not start (its task could not be published)."""
    MetricsRefresh.objects.filter(pk=REFRESH_ID, status=MetricsRefresh.Status.RUNNING).update(
        status=MetricsRefresh.Status.FAILED, finished_at=timezone.now(), error=error[:500]
    )


def metrics_refresh(*, claimed: bool = False, full: bool = False) -> int:
    """Recompute the days that changed since the last completed refresh started (all days when
    `full` or on the first refresh); the number of days. Claims the refresh unless the caller did
    (`claimed`); a refresh that finds one running does nothing and answers -1."""
    if not claimed and not metrics_refresh_claim():
        return -1
    state = _state()
    # From the previous completed refresh's start, less a margin (a run's row is written in a
    # transaction that may have begun a little before that refresh read it).
    since = None if full or state.covered_until is None else state.covered_until - dt.timedelta(minutes=1)
    try:
        days = days_to_refresh(since)
        for day in days:
            refresh_day(day)
    except Exception as exc:
        logger.exception("The metrics refresh failed")
        MetricsRefresh.objects.filter(pk=REFRESH_ID).update(
            status=MetricsRefresh.Status.FAILED, finished_at=timezone.now(), error=str(exc)[:500]
        )
        raise
    MetricsRefresh.objects.filter(pk=REFRESH_ID, started_at=state.started_at).update(
        status=MetricsRefresh.Status.COMPLETED,
        finished_at=timezone.now(),
        days=len(days),
        covered_until=state.started_at,
    )
    return len(days)


def metrics_refresh_status() -> dict[str, Any]:
    """agno's MetricsRefreshStatusResponse: idle (never refreshed), running, completed or failed."""
    state = MetricsRefresh.objects.filter(pk=REFRESH_ID).first()
    if state is None:
        return {"status": "idle", "started_at": None, "finished_at": None, "error": None}
    return {
        "status": state.status,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "error": state.error or None,
    }


@dataclass(frozen=True, slots=True)
class MetricsPage:
    metrics: list[dict[str, Any]]
    updated_at: dt.datetime | None


def metrics_for(
    *, user: Any, start: dt.date | None = None, end: dt.date | None = None, site_wide: bool = False
) -> MetricsPage:
    """agno's MetricsResponse rows: the user's own days (agno's scoped callers), or, `site_wide`
    (staff), every user's rows added up per day (agno's aggregate_metrics_by_date)."""
    rows = DailyMetrics.objects.all() if site_wide else DailyMetrics.objects.filter(user=user)
    if start is not None:
        rows = rows.filter(date__gte=start)
    if end is not None:
        rows = rows.filter(date__lte=end)
    by_day: dict[dt.date, dict[str, Any]] = {}
    for row in rows.order_by("date", "user_id"):
        day = by_day.get(row.date)
        if day is None:
            day_id = f"{row.date.isoformat()}_daily" if site_wide else f"{row.date.isoformat()}_{user.pk}_daily"
            by_day[row.date] = day = {
                "id": day_id,
                **{f"{k}_{w}_count": 0 for k in KINDS for w in ("runs", "sessions")},
                "users_count": 0,
                "token_metrics": dict.fromkeys(TOKEN_KEYS, 0),
                "cost": Decimal(0),
                "models": defaultdict(lambda: defaultdict(float)),
                "components": defaultdict(lambda: defaultdict(float)),
                "date": dt.datetime.combine(row.date, dt.time.min, tzinfo=dt.UTC),
                "created_at": row.created_at,
                "updated_at": row.updated_at,
            }
        for kind in KINDS:
            for what in ("runs", "sessions"):
                key = f"{kind}_{what}_count"
                day[key] += getattr(row, key)
        day["users_count"] += 1 if row.user_id is not None else 0
        for key, value in (row.token_metrics or {}).items():
            day["token_metrics"][key] = day["token_metrics"].get(key, 0) + (value or 0)
        day["cost"] += row.cost
        for m in row.model_metrics or []:
            acc = day["models"][(m["model_id"], m["model_provider"])]
            for key in ("count", "input_tokens", "output_tokens", "cost"):
                acc[key] += m.get(key, 0)
        for c in row.component_metrics or []:
            acc = day["components"][(c["type"], c["id"])]
            for key in ("runs", "errors", "input_tokens", "output_tokens", "cost"):
                acc[key] += c.get(key, 0)
        day["created_at"] = min(day["created_at"], row.created_at)
        day["updated_at"] = max(day["updated_at"], row.updated_at)
    out = []
    for day in by_day.values():
        models = day.pop("models")
        components = day.pop("components")
        day["token_metrics"]["cost"] = _num(day.pop("cost"))
        day["model_metrics"] = [
            {"model_id": mid, "model_provider": prov, **_ints(acc)} for (mid, prov), acc in models.items()
        ]
        day["component_metrics"] = [
            {"type": kind, "id": slug, **_ints(acc)} for (kind, slug), acc in components.items()
        ]
        out.append(day)
    latest = max((d["updated_at"] for d in out), default=None)
    return MetricsPage(metrics=out, updated_at=latest)


def _ints(acc: dict[str, float]) -> dict[str, Any]:
    """Counters back to ints; cost stays a number with decimals."""
    return {k: (round(v, 10) if k == "cost" else int(v)) for k, v in acc.items()}
