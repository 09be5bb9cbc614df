"""Percentiles computed by the database.

On PostgreSQL, `PercentileCont` is the native ordered-set aggregate (`percentile_cont(p) WITHIN
GROUP (ORDER BY x)`), usable in any `aggregate()` / `annotate()` with GROUP BY. Elsewhere (SQLite),
`percentiles()` ranks the rows with window functions in SQL and fetches only the (at most two)
rows around each requested rank per group, then interpolates exactly as percentile_cont does; no
query loads the full column into Python.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

from django.db import connections
from django.db.models import Aggregate, Count, F, FloatField, Q, QuerySet, Value, Window
from django.db.models.functions import RowNumber


class PercentileCont(Aggregate):
    """PostgreSQL's continuous percentile (linear interpolation between the two nearest ranks)."""

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    output_field = FloatField()
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, percentile: float, **extra: Any) -> None:
        fraction = float(percentile)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("A percentile is a fraction between 0 and 1.")
        super().__init__(expression, percentile=repr(fraction), **extra)


def native_percentiles(using: str = "default") -> bool:
    return connections[using].vendor == "postgresql"


def percentiles(
    qs: QuerySet[Any], field: str, fractions: Sequence[float], group_by: Sequence[str] = ()
) -> dict[Hashable, dict[float, float | None]]:
    """{group key: {fraction: value}} for the non-null values of `field` in `qs`, per group of the
    `group_by` fields or annotations (the key is a tuple of their values; `()` for no grouping).

    PostgreSQL: one GROUP BY query with percentile_cont. Others: one query with ROW_NUMBER() and
    COUNT() windows, filtered to the ranks that matter.
    """
    qs = qs.filter(**{f"{field}__isnull": False})
    group_by = list(group_by)
    if native_percentiles(qs.db):
        aggs = {f"_p{i}": PercentileCont(field, p) for i, p in enumerate(fractions)}
        rows = qs.order_by().values(*group_by).annotate(**aggs) if group_by else [qs.aggregate(**aggs)]
        return {
            tuple(row[g] for g in group_by): {p: row[f"_p{i}"] for i, p in enumerate(fractions)}
            for row in rows
            if not group_by or any(row[f"_p{i}"] is not None for i in range(len(fractions)))
        }
    partition = [F(g) for g in group_by] or None
    ranked = qs.order_by().annotate(
        _rn=Window(RowNumber(), partition_by=partition, order_by=F(field).asc()),
        _n=Window(Count("pk"), partition_by=partition),
    )
    # Rows whose rank (1-based) is floor(pos)+1 or ceil(pos)+1, pos = p*(n-1); widened by a hair
    # so that float rounding in the database can only add a row, never lose one.
    wanted = Q()
    for p in fractions:
        pos = Value(float(p), output_field=FloatField()) * (F("_n") - 1)
        wanted |= Q(_rn__gt=pos - 0.001, _rn__lt=pos + 2.001)
    found: dict[Hashable, dict[int, float]] = defaultdict(dict)
    sizes: dict[Hashable, int] = {}
    for row in ranked.filter(wanted).values(*group_by, "_rn", "_n", field):
        key = tuple(row[g] for g in group_by)
        found[key][row["_rn"]] = row[field]
        sizes[key] = row["_n"]
    result: dict[Hashable, dict[float, float | None]] = {}
    for key, by_rank in found.items():
        n = sizes[key]
        values: dict[float, float | None] = {}
        for p in fractions:
            pos = p * (n - 1)
            lo, hi = math.floor(pos), math.ceil(pos)
            low, high = by_rank.get(lo + 1), by_rank.get(hi + 1)
            if low is None or high is None:
                values[p] = low if high is None else high
            else:
                values[p] = low + (pos - lo) * (high - low)
        result[key] = values
    if not group_by and () not in result:
        result[()] = dict.fromkeys(fractions)
    return result
