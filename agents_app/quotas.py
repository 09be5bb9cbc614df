"""Quotas: recurring token and cost budgets per user, per agent/team/workflow and for the site.

Why here, in the run service's path and not at the edges: REST, websocket, agno's routes, the admin's
"try it" and a developer's own code all start runs through `agents_app.runs`, so one check covers
them all. What it costs a run: no query when no quota is configured (the active quota rows are kept
per process for a few seconds, like agents), else one aggregate query over the period's runs.

Usage is measured from the stored runs: the sum of their own `cost` and `total_tokens` (a team's or
workflow's member and step runs are runs too, so nothing is counted twice), since the start of the
UTC day or calendar month. A run still going counts what it has stored so far (its checkpoint does
not carry tokens: it counts when it ends). What a run may still use under its quotas becomes a cap
on its budget (agents_app.engine.budget): it stops with `budget_exceeded` when it reaches the cap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections, router
from django.db.models import Count, DecimalField, F, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents_app.cache import agent_cache_get, agent_cache_put
from agents_app.models import Quota
from sessions_app.conf import agentos_settings
from sessions_app.errors import DomainError
from sessions_app.models import Run

# Kept in the agents' per-process cache (cleared, like it, whenever a quota row is saved or deleted)
# under a key no agent id can take.
_CACHE_KEY = "\x00quotas"
_COST_PLACES = Decimal("0.0000000001")


class QuotaExceeded(DomainError):
    """A quota that applies to this run is spent until its period ends."""

    code = "quota_exceeded"
    status = 429


@dataclass(slots=True, frozen=True)
class QuotaCaps:
    """What the most constrained quotas still allow one run (None: no limit of that kind)."""

    tokens: int | None
    cost: Decimal | None


def active_quotas() -> list[Quota]:
    """Every active quota (with its component's slug), read at most every AGENT_CACHE_SECONDS per
    process, like agents."""
    now = time.monotonic()
    rows = agent_cache_get(_CACHE_KEY, now)
    if rows is None:
        rows = list(Quota.objects.filter(is_active=True).select_related("agent", "team", "workflow"))
        agent_cache_put(_CACHE_KEY, rows, now + float(agentos_settings.AGENT_CACHE_SECONDS))
    return rows


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The start and end (the reset) of the UTC day or calendar month containing `now`."""
    now = now.astimezone(UTC)
    if period == Quota.Period.MONTH:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
    return start, end


def applicable(quotas: list[Quota], *, user: Any, kind: str, component_id: str) -> list[Quota]:
    """The quotas a run of `kind` `component_id` by `user` counts against."""
    out = []
    for quota in quotas:
        if quota.scope == Quota.Scope.SITE:
            out.append(quota)
        elif quota.scope == Quota.Scope.USER:
            if quota.user_id is None or quota.user_id == user.pk:
                out.append(quota)
        else:
            component = getattr(quota, kind, None)
            if component is not None and component.slug == component_id:
                out.append(quota)
    return out


def _condition(quota: Quota, user: Any, start: datetime, qn: Any, adapt: Any) -> tuple[str, list[Any]]:
    """The SQL condition (and its parameters) selecting the runs one quota counts."""
    sql, params = [f"{qn('created_at')} >= %s"], [adapt(start)]
    if quota.scope == Quota.Scope.USER:
        sql.append(f"{qn('user_id')} = %s")
        params.append(user.pk)
    elif quota.scope == Quota.Scope.RUNNABLE:
        column, value = next(
            (f"{kind}_id", getattr(quota, f"{kind}_id"))
            for kind in ("agent", "team", "workflow")
            if getattr(quota, f"{kind}_id")
        )
        sql.append(f"{qn(column)} = %s")
        params.append(value)
    return " AND ".join(sql), params


def usage(quotas: list[Quota], *, user: Any, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each quota's use in its current period, in one query: its limits, what is used, what is left,
    and when it resets.

    Written as SQL rather than an ORM aggregate: it runs before every run that has a quota, and
    compiling the ORM's filtered SUMs cost about 1 ms of CPU per run, this about a tenth of it.
    `CASE WHEN` sums are plain SQL on SQLite and PostgreSQL alike."""
    if not quotas:
        return []
    now = now or timezone.now()
    bounds = [period_bounds(q.period, now) for q in quotas]
    connection = connections[router.db_for_read(Run)]
    qn = connection.ops.quote_name
    adapt = connection.ops.adapt_datetimefield_value
    columns, params = [], []
    for quota, (start, _) in zip(quotas, bounds, strict=True):
        condition, values = _condition(quota, user, start, qn, adapt)
        # A user's or the site's use: every run's own calls (member and step runs are runs too).
        # A runnable's: its runs with their member and step runs (a workflow calls no model itself).
        tokens, cost = (
            ("tree_tokens", "total_cost") if quota.scope == Quota.Scope.RUNNABLE else ("total_tokens", "cost")
        )
        columns.append(f"COALESCE(SUM(CASE WHEN {condition} THEN {qn(tokens)} ELSE 0 END), 0)")
        columns.append(f"COALESCE(SUM(CASE WHEN {condition} THEN {qn(cost)} ELSE 0 END), 0)")
        params += values + values
    earliest = min(start for start, _ in bounds)
    sql = f"SELECT {', '.join(columns)} FROM {qn(Run._meta.db_table)} WHERE {qn('created_at')} >= %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, adapt(earliest)])
        row = cursor.fetchone()
    out = []
    for i, (quota, (_, end)) in enumerate(zip(quotas, bounds, strict=True)):
        tokens = int(row[2 * i] or 0)
        # SQLite sums a decimal column as a float: back to the 10 places the column keeps.
        cost = Decimal(str(row[2 * i + 1] or 0)).quantize(_COST_PLACES)
        out.append(
            {
                "quota": quota,
                "tokens": tokens,
                "cost": cost,
                "tokens_left": None if quota.max_tokens is None else max(quota.max_tokens - tokens, 0),
                "cost_left": None if quota.max_cost is None else max(quota.max_cost - cost, Decimal(0)),
                "resets_at": end,
            }
        )
    return out


def quota_check(*, user: Any, kind: str, component_id: str) -> QuotaCaps | None:
    """Before a run starts: QuotaExceeded when a quota that applies is spent; else what the run may
    still use (None: no quota applies, and nothing was queried)."""
    quotas = applicable(active_quotas(), user=user, kind=kind, component_id=component_id)
    if not quotas:
        return None
    rows = usage(quotas, user=user)
    spent = [r for r in rows if r["tokens_left"] == 0 or r["cost_left"] == Decimal(0)]
    if spent:
        first = min(spent, key=lambda r: r["resets_at"])
        quota, resets = first["quota"], first["resets_at"]
        raise QuotaExceeded(
            f"The {quota} is used up until {resets.isoformat()}.",
            quota=str(quota),
            resets_at=resets.isoformat(),
            retry_after=max(int((resets - timezone.now()).total_seconds()) + 1, 1),
        )
    tokens = [r["tokens_left"] for r in rows if r["tokens_left"] is not None]
    costs = [r["cost_left"] for r in rows if r["cost_left"] is not None]
    return QuotaCaps(tokens=min(tokens) if tokens else None, cost=min(costs) if costs else None)


def quota_component(quota: Quota) -> dict[str, str] | None:
    for kind in ("agent", "team", "workflow"):
        component = getattr(quota, kind)
        if component is not None:
            return {"kind": kind, "id": component.slug}
    return None


def user_usage(*, user: Any, quotas: list[Quota], now: datetime | None = None) -> dict[str, Any]:
    """What `user` used today and this month, and every quota their runs count against (per-user
    quotas for them, the site's, and the per-runnable ones), with its use: for GET /api/usage/."""
    now = now or timezone.now()
    mine = [q for q in quotas if q.scope != Quota.Scope.USER or q.user_id is None or q.user_id == user.pk]
    day, month = period_bounds(Quota.Period.DAY, now)[0], period_bounds(Quota.Period.MONTH, now)[0]
    money = DecimalField(max_digits=20, decimal_places=10)
    own = Run.objects.filter(user_id=user.pk, created_at__gte=min(day, month)).aggregate(
        day_runs=Count("pk", filter=Q(created_at__gte=day, parent_run__isnull=True)),
        day_tokens=Coalesce(Sum("total_tokens", filter=Q(created_at__gte=day)), 0),
        day_cost=Coalesce(Sum("cost", filter=Q(created_at__gte=day)), Value(Decimal(0)), output_field=money),
        month_runs=Count("pk", filter=Q(parent_run__isnull=True)),
        month_tokens=Coalesce(Sum("total_tokens"), 0),
        month_cost=Coalesce(Sum("cost"), Value(Decimal(0)), output_field=money),
    )
    return {
        "today": {"runs": own["day_runs"], "tokens": own["day_tokens"], "cost": own["day_cost"]},
        "month": {"runs": own["month_runs"], "tokens": own["month_tokens"], "cost": own["month_cost"]},
        "quotas": [
            {
                "name": str(row["quota"]),
                "scope": row["quota"].scope,
                "period": row["quota"].period,
                "component": quota_component(row["quota"]),
                "max_tokens": row["quota"].max_tokens,
                "max_cost": row["quota"].max_cost,
                "tokens": row["tokens"],
                "cost": row["cost"],
                "tokens_left": row["tokens_left"],
                "cost_left": row["cost_left"],
                "resets_at": row["resets_at"],
            }
            for row in usage(mine, user=user, now=now)
        ],
    }


def usage_by_user(*, now: datetime | None = None, limit: int = 100) -> dict[str, Any]:
    """Every user's runs, tokens and cost today and this month (UTC), the most expensive first: the
    admin's "Usage by user". One GROUP BY query."""
    now = now or timezone.now()
    day, month = period_bounds(Quota.Period.DAY, now)[0], period_bounds(Quota.Period.MONTH, now)[0]
    money = DecimalField(max_digits=20, decimal_places=10)
    rows = (
        Run.objects.filter(created_at__gte=min(day, month))
        .values("user_id", username=F(f"user__{get_user_model().USERNAME_FIELD}"))
        .annotate(
            day_runs=Count("pk", filter=Q(created_at__gte=day, parent_run__isnull=True)),
            day_tokens=Coalesce(Sum("total_tokens", filter=Q(created_at__gte=day)), 0),
            day_cost=Coalesce(Sum("cost", filter=Q(created_at__gte=day)), Value(Decimal(0)), output_field=money),
            month_runs=Count("pk", filter=Q(parent_run__isnull=True)),
            month_tokens=Coalesce(Sum("total_tokens"), 0),
            month_cost=Coalesce(Sum("cost"), Value(Decimal(0)), output_field=money),
        )
        .order_by("-month_cost", "-month_tokens", "user_id")[:limit]
    )
    return {"rows": list(rows), "day": day, "month": month}
