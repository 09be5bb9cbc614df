"""The staff metrics dashboard (this site's runs over a chosen period, drawn as inline SVG), and the
Prometheus scrape endpoint."""

from __future__ import annotations

import hmac

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from telemetry_app.charts import Series, bar_chart, hbar_chart, line_chart
from telemetry_app.conf import alpha_features_enabled, telemetry_enabled, telemetry_settings
from telemetry_app.metrics import CONTENT_TYPE_LATEST
from telemetry_app.metrics import render as render_metrics
from telemetry_app.selectors import (
    DEFAULT_PERIOD,
    PERIODS,
    CostMetrics,
    RunMetrics,
    collected_events,
    cost_metrics,
    eval_suites_summary,
    run_metrics,
)

COLORS = {
    "completed": "#2563eb",
    "error": "#dc2626",
    "cancelled": "#9ca3af",
    "input": "#7c3aed",
    "output": "#f59e0b",
    "p50": "#0891b2",
    "p95": "#db2777",
    "agent": "#2563eb",
    "model": "#059669",
    "cost": "#b45309",
}


def _labels(metrics: RunMetrics) -> list[str]:
    if metrics.period.bucket == "day":
        return [b.start.strftime("%d %b") for b in metrics.buckets]
    if metrics.period.span.days >= 2:
        return [b.start.strftime("%d %b %H:00") for b in metrics.buckets]
    return [b.start.strftime("%H:00") for b in metrics.buckets]


def _charts(metrics: RunMetrics, costs: CostMetrics) -> dict[str, str]:
    labels = _labels(metrics)
    b = metrics.buckets
    return {
        "runs": bar_chart(
            chart_id="runs",
            title="Runs over time",
            labels=labels,
            series=[
                Series("completed", COLORS["completed"], [x.completed for x in b]),
                Series("error", COLORS["error"], [x.errors for x in b]),
                Series("cancelled", COLORS["cancelled"], [x.cancelled for x in b]),
            ],
            empty="No runs in this period",
        ),
        "tokens": bar_chart(
            chart_id="tokens",
            title="Tokens over time",
            labels=labels,
            series=[
                Series("input", COLORS["input"], [x.input_tokens for x in b]),
                Series("output", COLORS["output"], [x.output_tokens for x in b]),
            ],
            empty="No tokens in this period",
        ),
        "latency": line_chart(
            chart_id="latency",
            title="Run duration percentiles over time",
            labels=labels,
            series=[Series("p50", COLORS["p50"], [x.p50 for x in b]), Series("p95", COLORS["p95"], [x.p95 for x in b])],
            fmt="seconds",
            empty="No finished runs in this period",
        ),
        "errors": line_chart(
            chart_id="errors",
            title="Error rate over time",
            labels=labels,
            series=[Series("error rate", COLORS["error"], [x.error_rate for x in b])],
            fmt="percent",
            empty="No finished runs in this period",
        ),
        "agents": hbar_chart(
            chart_id="agents",
            title="Runs per agent",
            rows=[(row.label, row.runs) for row in metrics.agents],
            color=COLORS["agent"],
            empty="No runs in this period",
        ),
        "models": hbar_chart(
            chart_id="models",
            title="Tokens per model",
            rows=[(row.label, row.total_tokens) for row in metrics.models],
            color=COLORS["model"],
            empty="No tokens in this period",
        ),
        "cost": bar_chart(
            chart_id="cost",
            title="Cost over time",
            labels=labels,
            series=[Series("cost", COLORS["cost"], [float(x.cost) for x in b])],
            fmt="cost",
            empty="Nothing cost anything in this period",
        ),
        "cost_components": hbar_chart(
            chart_id="cost_components",
            title="Cost per agent, team or workflow",
            rows=[(f"{row.kind} {row.label}".strip(), float(row.cost)) for row in costs.components],
            color=COLORS["cost"],
            fmt="cost",
            empty="Nothing cost anything in this period",
        ),
    }


@require_GET
@staff_member_required
def dashboard(request: HttpRequest) -> TemplateResponse:
    period = request.GET.get("period", DEFAULT_PERIOD)
    if period not in PERIODS:
        period = DEFAULT_PERIOD
    metrics = run_metrics(period=period)
    costs = cost_metrics(since=metrics.since, until=metrics.until)
    alpha = alpha_features_enabled()
    context = {
        **admin.site.each_context(request),
        "title": "Metrics",
        "metrics": metrics,
        "costs": costs,
        "periods": PERIODS.values(),
        "period": period,
        "charts": _charts(metrics, costs),
        "telemetry_on": telemetry_enabled(),
        "alpha": alpha,
        "collected": collected_events(since=metrics.since, until=metrics.until) if alpha else None,
        "evals": eval_suites_summary(),
    }
    return TemplateResponse(request, "telemetry_app/dashboard.html", context)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape endpoint (GET /metrics). A scraper sends `Authorization: Bearer
    <METRICS_TOKEN>`; a staff user may look with their session. Errors are JSON with a `code`."""
    if not telemetry_settings.METRICS_ENABLED:
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    if request.method not in ("GET", "HEAD"):
        return JsonResponse(
            {"detail": f'Method "{request.method}" not allowed.', "code": "method_not_allowed"}, status=405
        )
    token = str(telemetry_settings.METRICS_TOKEN or "")
    sent = request.headers.get("Authorization", "")
    by_token = bool(token) and hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())
    user = getattr(request, "user", None)
    if not by_token and not (user is not None and user.is_active and user.is_staff):
        return JsonResponse(
            {"detail": "Send the metrics token as a Bearer token.", "code": "not_authenticated"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
