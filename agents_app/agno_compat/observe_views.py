"""agno's metrics and traces routes (`/metrics`, `/metrics/refresh`, `/metrics/refresh/status`,
`/traces`, `/traces/{id}`, `/traces/filter-schema`, `/trace_session_stats`, `/traces/search`):
thin edges over telemetry_app.daily (daily aggregates, refreshed by a Celery task) and
telemetry_app.traces (traces built from the stored runs). Everyone sees only their own runs'
traces and metrics, as with sessions; staff see the site-wide daily metrics (agno's admin view).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from celery import current_app
from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ParseError, ValidationError
from rest_framework.response import Response

from agents_app.agno_compat import schema as doc
from agents_app.agno_compat.serializers import page_json
from agents_app.agno_compat.views import MAX_PAGE_SIZE, AgnoView, PreparedGet, _check_db_id
from agents_app.embedded_worker import ensure_embedded_worker
from sessions_app.access import allowed_for
from telemetry_app import traces as tr
from telemetry_app.daily import (
    metrics_for,
    metrics_refresh,
    metrics_refresh_claim,
    metrics_refresh_failed,
    metrics_refresh_status,
)

logger = logging.getLogger(__name__)

METRICS_REFRESH_TASK = "telemetry_app.metrics_refresh"  # by name: agents_app imports no task module of telemetry_app


class MetricsQuerySerializer(serializers.Serializer):
    starting_date = serializers.DateField(required=False, help_text="First day (YYYY-MM-DD, UTC).")
    ending_date = serializers.DateField(required=False, help_text="Last day (YYYY-MM-DD, UTC).")
    user_id = serializers.CharField(required=False, help_text="Ignored: your own metrics (staff: the site's).")
    db_id = serializers.CharField(required=False)
    table = serializers.CharField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("starting_date"), attrs.get("ending_date")
        if start and end and start > end:
            raise ValidationError({"starting_date": ["Must not be after ending_date."]})
        return attrs


class RefreshQuerySerializer(serializers.Serializer):
    background = serializers.BooleanField(required=False, default=False)
    user_id = serializers.CharField(required=False)
    db_id = serializers.CharField(required=False)
    table = serializers.CharField(required=False)


def _page_params(q: dict[str, Any]) -> tuple[int, int]:
    return max(q.get("page") or 1, 1), min(q.get("limit") or 20, MAX_PAGE_SIZE)


class TracesQuerySerializer(serializers.Serializer):
    run_id = serializers.CharField(required=False)
    session_id = serializers.CharField(required=False)
    user_id = serializers.CharField(required=False, help_text="Ignored: your own traces.")
    agent_id = serializers.CharField(required=False)
    team_id = serializers.CharField(required=False)
    workflow_id = serializers.CharField(required=False)
    status = serializers.ChoiceField(choices=["OK", "ERROR", "UNSET"], required=False)
    start_time = serializers.DateTimeField(required=False, help_text="ISO 8601.")
    end_time = serializers.DateTimeField(required=False, help_text="ISO 8601.")
    page = serializers.IntegerField(required=False, default=1, min_value=0)
    limit = serializers.IntegerField(required=False, default=20, min_value=1)
    db_id = serializers.CharField(required=False)


class TraceQuerySerializer(serializers.Serializer):
    span_id = serializers.CharField(required=False)
    run_id = serializers.CharField(required=False)
    db_id = serializers.CharField(required=False)


class TraceSearchSerializer(serializers.Serializer):
    filter = serializers.JSONField(required=False, allow_null=True)
    group_by = serializers.ChoiceField(choices=["run", "session"], required=False, default="run")
    page = serializers.IntegerField(required=False, default=1, min_value=1)
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=100)


def _metrics_json(request: Any, q: dict[str, Any]) -> dict[str, Any]:
    page = metrics_for(
        user=request.user,
        start=q.get("starting_date"),
        end=q.get("ending_date"),
        site_wide=bool(request.user.is_staff),
    )
    return {"metrics": page.metrics, "updated_at": page.updated_at}


@doc.documented(
    get=extend_schema(
        operation_id="get_metrics",
        summary="Daily metrics",
        parameters=[MetricsQuerySerializer],
        responses={
            200: OpenApiResponse(description="agno's MetricsResponse."),
            **doc.agno_errors(401, 404, 422, e404="An unknown `db_id`."),
        },
    )
)
class MetricsView(PreparedGet, AgnoView):
    """`GET /metrics`: agno's MetricsResponse, one row per day between the dates (each inclusive)."""

    def prepare_get(self, request: Any) -> dict[str, Any]:
        q = self.query(MetricsQuerySerializer)
        _check_db_id(q.get("db_id"))
        return _metrics_json(request, q)


@doc.documented(
    post=extend_schema(
        operation_id="refresh_metrics",
        summary="Refresh the daily metrics",
        parameters=[RefreshQuerySerializer],
        request=None,
        responses={
            200: OpenApiResponse(description="The refreshed days (agno's list of DayAggregatedMetrics)."),
            202: OpenApiResponse(description="`background=true`: started, or already running."),
            **doc.agno_errors(401, 404, 422, e404="An unknown `db_id`."),
        },
    )
)
class MetricsRefreshView(AgnoView):
    """`POST /metrics/refresh`: recompute the days that changed, now (the refreshed rows), or with
    `background=true` in a Celery task (202; poll `/metrics/refresh/status`). One at a time."""

    def prepare_post(self, request: Any) -> tuple[int, Any]:
        q = self.query(RefreshQuerySerializer)
        _check_db_id(q.get("db_id"))
        if not metrics_refresh_claim():
            return 202, {"status": "already_running", "message": "A metrics refresh is already in progress."}
        if q["background"]:
            transaction.on_commit(partial(_publish_refresh), robust=True)
            return 202, {"status": "started", "message": "Metrics refresh started in background."}
        metrics_refresh(claimed=True)
        return 200, _metrics_json(request, {})["metrics"]

    async def post(self, request: Any) -> Any:
        code, body = self.prepared
        return Response(body, status=code)


def _publish_refresh() -> None:
    """Hand the claimed refresh to Celery (the embedded worker without a broker); a broker that is
    down ends the claim as failed at once rather than leaving it "running" until it goes stale."""
    ensure_embedded_worker(current_app)
    try:
        current_app.send_task(METRICS_REFRESH_TASK, kwargs={"claimed": True})
    except Exception as exc:
        logger.exception("Could not publish the metrics refresh")
        metrics_refresh_failed(f"Could not publish the refresh: {type(exc).__name__}")


@doc.documented(
    get=extend_schema(
        operation_id="get_metrics_refresh_status",
        summary="The last metrics refresh",
        responses={
            200: OpenApiResponse(description="agno's MetricsRefreshStatusResponse."),
            **doc.agno_errors(401, 404, e404="An unknown `db_id`."),
        },
    )
)
class MetricsRefreshStatusView(PreparedGet, AgnoView):
    def prepare_get(self, request: Any) -> dict[str, Any]:
        _check_db_id(request.query_params.get("db_id"))
        return metrics_refresh_status()


# ---- traces ----------------------------------------------------------------------------------------


def _my_runs(request: Any) -> Any:
    return tr.trace_runs(user=request.user, session_q=allowed_for(request.auth, request.user).session_q("session__"))


def _filtered_runs(request: Any, q: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The caller's runs narrowed by the query's `keys` and its time window."""
    return tr.filter_runs(
        _my_runs(request),
        **{k: q.get(k) for k in keys},
        start_time=q.get("start_time"),
        end_time=q.get("end_time"),
    )


def _paged(
    qs: Any, page: int, limit: int, started: float, rows_json: Callable[[list[Any]], list[Any]]
) -> dict[str, Any]:
    """One page of `qs` in agno's paged shape (with the search time): counted, sliced (nothing
    past the end), and its rows turned to JSON by `rows_json`."""
    total = qs.count()
    offset = (page - 1) * limit
    rows = list(qs[offset : offset + limit]) if offset < total else []
    body = page_json(rows_json(rows), page=page, limit=limit, total=total)
    body["meta"]["search_time_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return body


def _summaries(runs: list[Any]) -> list[Any]:
    return [t.summary() for t in tr.build_traces(runs)]


def _details(runs: list[Any]) -> list[Any]:
    return [t.detail() for t in tr.build_traces(runs)]


def _session_stats(rows: list[Any]) -> list[Any]:
    return [tr.session_stats_json(r) for r in rows]


@doc.documented(
    get=extend_schema(
        operation_id="get_traces",
        summary="List traces (one per run)",
        parameters=[TracesQuerySerializer],
        responses={
            200: OpenApiResponse(description="agno's page of TraceSummary."),
            **doc.agno_errors(401, 404, 422, e404="An unknown `db_id`."),
        },
    )
)
class TraceListView(PreparedGet, AgnoView):
    def prepare_get(self, request: Any) -> dict[str, Any]:
        started = time.perf_counter()
        q = self.query(TracesQuerySerializer)
        _check_db_id(q.get("db_id"))
        page, limit = _page_params(q)
        qs = _filtered_runs(request, q, ("run_id", "session_id", "agent_id", "team_id", "workflow_id", "status"))
        return _paged(qs, page, limit, started, _summaries)


@doc.documented(
    get=extend_schema(
        operation_id="get_traces_filter_schema",
        summary="The fields trace searches filter on",
        responses={200: OpenApiResponse(description="agno's FilterSchemaResponse."), **doc.agno_errors(401)},
    )
)
class TraceFilterSchemaView(PreparedGet, AgnoView):
    def prepare_get(self, request: Any) -> dict[str, Any]:
        return tr.filter_schema()


@doc.documented(
    get=extend_schema(
        operation_id="get_trace",
        summary="A trace with its span tree, or one span",
        parameters=[TraceQuerySerializer],
        responses={
            200: OpenApiResponse(description="agno's TraceDetail (or TraceNode with span_id)."),
            **doc.agno_errors(401, 404, 422, e404="Not one of your runs' traces, no such span, or an unknown `db_id`."),
        },
    )
)
class TraceDetailView(PreparedGet, AgnoView):
    def prepare_get(self, request: Any, trace_id: str) -> dict[str, Any]:
        q = self.query(TraceQuerySerializer)
        _check_db_id(q.get("db_id"))
        run_id = tr.run_id_of(trace_id) or (tr.run_id_of(q["run_id"]) if q.get("run_id") else None)
        run = _my_runs(request).filter(pk=run_id).first() if run_id is not None else None
        if run is None:
            raise NotFound("Trace not found")
        trace = tr.build_traces([run])[0]
        if q.get("span_id"):
            span = trace.span(q["span_id"])
            if span is None:
                raise NotFound("Span not found")
            return span.node(None)
        return trace.detail()


@doc.documented(
    get=extend_schema(
        operation_id="get_trace_stats",
        summary="Trace counts per session",
        parameters=[TracesQuerySerializer],
        responses={
            200: OpenApiResponse(description="agno's page of TraceSessionStats."),
            **doc.agno_errors(401, 404, 422, e404="An unknown `db_id`."),
        },
    )
)
class TraceSessionStatsView(PreparedGet, AgnoView):
    def prepare_get(self, request: Any) -> dict[str, Any]:
        started = time.perf_counter()
        q = self.query(TracesQuerySerializer)
        _check_db_id(q.get("db_id"))
        page, limit = _page_params(q)
        qs = _filtered_runs(request, q, ("agent_id", "team_id", "workflow_id"))
        return _paged(tr.session_stats(qs), page, limit, started, _session_stats)


@doc.documented(
    post=extend_schema(
        operation_id="search_traces",
        summary="Search traces with a filter expression",
        request=TraceSearchSerializer,
        responses={
            200: OpenApiResponse(description="A page of TraceDetail (group_by=run) or TraceSessionStats (session)."),
            **doc.agno_errors(400, 401, 404, 422, e404="An unknown `db_id`."),
        },
    )
)
class TraceSearchView(AgnoView):
    def prepare_post(self, request: Any) -> dict[str, Any]:
        started = time.perf_counter()
        _check_db_id(request.query_params.get("db_id"))
        body = TraceSearchSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        qs = tr.annotate_for_search(_my_runs(request))
        if data.get("filter"):
            try:
                qs = qs.filter(tr.filter_q(data["filter"]))
            except tr.InvalidFilter as exc:
                raise ParseError(f"Invalid filter expression: {exc}") from None
        page, limit = data["page"], data["limit"]
        if data["group_by"] == "session":
            return _paged(tr.session_stats(qs), page, limit, started, _session_stats)
        return _paged(qs, page, limit, started, _details)

    async def post(self, request: Any) -> Any:
        return Response(self.prepared)
