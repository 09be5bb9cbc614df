"""The admin of evals (docs/evals.md): suites with their cases inline, a "run now" action (the cases
run on Celery), each suite's scores over time as a chart, and a results page per eval run (per
case: input, expected, actual, score, reason, tool calls, duration). A score below the suite's
last run is flagged with a badge."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from agents_app.eval_models import (
    CASE_FIELDS,
    SUITE_FIELDS,
    EvalCase,
    EvalCaseResult,
    EvalRun,
    EvalStatus,
    EvalSuite,
)
from agents_app.evals.services import (
    case_check,
    eval_run_cancel,
    eval_run_start,
    eval_runs_compare,
    suite_check,
)
from sessions_app.errors import EvalInvalid, EvalRunFinished
from telemetry_app.charts import Series, line_chart

CHART_RUNS = 30
NONE = "\N{EN DASH}"
_STATUS_COLORS = {
    EvalStatus.PASSED: "#2e7d32",
    EvalStatus.FAILED: "#c62828",
    EvalStatus.PARTIAL: "#ef6c00",
    EvalStatus.ERROR: "#c62828",
    EvalStatus.CANCELLED: "#757575",
}


def _as_form_error(form: forms.ModelForm, exc: EvalInvalid) -> None:
    field = exc.field if exc.field in form.fields else None
    form.add_error(field, exc.detail)


class EvalSuiteForm(forms.ModelForm):
    class Meta:
        model = EvalSuite
        fields = SUITE_FIELDS

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        try:
            suite_check(**{name: data.get(name) for name in ("agent", "team", "workflow", "pinned_version")})
        except EvalInvalid as exc:
            _as_form_error(self, exc)
        return data


class EvalCaseForm(forms.ModelForm):
    class Meta:
        model = EvalCase
        fields = CASE_FIELDS

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors or data.get("DELETE"):
            return data
        suite = getattr(self.instance, "suite", None) if self.instance.suite_id else None
        try:
            data["expected_tool_calls"] = case_check(
                kind=data.get("kind", ""),
                input=data.get("input", ""),
                expected_output=data.get("expected_output", ""),
                criteria=data.get("criteria", ""),
                expected_tool_calls=data.get("expected_tool_calls"),
                suite=suite,
                threshold=data.get("threshold"),
                scoring=data.get("scoring", ""),
            )
        except EvalInvalid as exc:
            _as_form_error(self, exc)
        return data


class EvalCaseInline(admin.StackedInline):
    model = EvalCase
    form = EvalCaseForm
    extra = 0
    fields = [
        ("position", "name", "kind"),
        "input",
        "expected_output",
        "criteria",
        ("scoring", "threshold"),
        ("expected_tool_calls", "allow_additional_tool_calls"),
        ("iterations", "warmup"),
    ]


def score_badge(run: EvalRun | None) -> SafeString | str:
    if run is None:
        return NONE
    color = _STATUS_COLORS.get(run.status, "#555")
    score = NONE if run.score is None else f"{run.score:g}%"
    badge = format_html('<span style="color:{};font-weight:bold">{} {}</span>', color, run.status, score)
    if run.regressed:
        badge = format_html(
            '{} <span title="Below the last run ({}%)" style="background:#c62828;color:#fff;padding:0 4px;'
            'border-radius:3px">regressed</span>',
            badge,
            f"{run.previous_score:g}" if run.previous_score is not None else "?",
        )
    return badge


@admin.register(EvalSuite)
class EvalSuiteAdmin(admin.ModelAdmin):
    form = EvalSuiteForm
    inlines = [EvalCaseInline]
    list_display = ["slug", "name", "target_label", "schedule", "last_run"]
    list_select_related = ["agent", "team", "workflow"]
    search_fields = ["slug", "name"]
    raw_id_fields = ["agent", "team", "workflow"]
    readonly_fields = ["score_chart"]
    actions = ["run_now"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "description"]}),
        ("Target", {"fields": ["agent", "team", "workflow", "pinned_version"]}),
        ("Judging and schedule", {"fields": ["judge_model", "schedule"]}),
        ("Scores over time", {"fields": ["score_chart"]}),
    ]

    @admin.display(description="target")
    def target_label(self, suite: EvalSuite) -> str:
        return f"{suite.target_kind}: {getattr(suite.target, 'slug', '?')}"

    @admin.display(description="last eval run")
    def last_run(self, suite: EvalSuite) -> SafeString | str:
        return score_badge(suite.eval_runs.order_by("-created_at").first())

    @admin.display(description="scores")
    def score_chart(self, suite: EvalSuite) -> SafeString | str:
        if suite.pk is None:
            return NONE
        return suite_score_chart(suite)

    @admin.action(description="Run now (in the background)")
    def run_now(self, request: HttpRequest, queryset: QuerySet[EvalSuite]) -> None:
        for suite in queryset.select_related("agent", "team", "workflow"):
            try:
                run = eval_run_start(suite=suite, user=request.user, trigger=EvalRun.Trigger.ADMIN)
            except EvalInvalid as exc:
                self.message_user(request, f"{suite.slug}: {exc.detail}", messages.ERROR)
                continue
            self.message_user(request, f"{suite.slug}: eval run {run.pk} queued ({run.cases_total} cases).")


def suite_score_chart(suite: EvalSuite) -> SafeString:
    """The suite's last CHART_RUNS finished scores, oldest first (telemetry_app.charts)."""
    runs = list(
        suite.eval_runs.filter(finished_at__isnull=False, score__isnull=False)
        .order_by("-finished_at")
        .values_list("finished_at", "score")[:CHART_RUNS]
    )[::-1]
    return line_chart(
        chart_id=f"eval-suite-{suite.pk}-scores",
        title=f"{suite.name}: score (% of cases passed) per eval run",
        labels=[at.strftime("%m-%d %H:%M") for at, _ in runs],
        series=[Series("score", "#1565c0", [score for _, score in runs])],
        empty="No finished eval run yet",
    )


class EvalCaseResultInline(admin.TabularInline):
    model = EvalCaseResult
    extra = 0
    can_delete = False
    fields = ["position", "kind", "status", "input", "expected", "actual", "score", "reason", "tools", "duration"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="tool calls")
    def tools(self, result: EvalCaseResult) -> str:
        return json.dumps(result.tool_calls) if result.tool_calls else NONE


@admin.register(EvalRun)
class EvalRunAdmin(admin.ModelAdmin):
    list_display = ["id", "suite", "badge", "target_model", "cases_done", "cases_total", "trigger", "created_at"]
    list_filter = ["status", "regressed", "trigger"]
    list_select_related = ["suite", "created_by"]
    search_fields = ["suite__slug", "name"]
    inlines = [EvalCaseResultInline]
    actions = ["cancel", "compare"]
    readonly_fields = [
        "suite",
        "name",
        "status",
        "badge",
        "trigger",
        "created_by",
        "cases_total",
        "cases_done",
        "cases_passed",
        "score",
        "previous_score",
        "regressed",
        "judge_model",
        "target_model",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    ]
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="result")
    def badge(self, run: EvalRun) -> SafeString | str:
        return score_badge(run)

    @admin.action(description="Compare the two selected (side by side)")
    def compare(self, request: HttpRequest, queryset: QuerySet[EvalRun]) -> TemplateResponse | None:
        runs = list(queryset.select_related("suite").order_by("created_at")[:3])
        if len(runs) != 2 or runs[0].suite_id != runs[1].suite_id:
            self.message_user(request, "Select exactly two eval runs of the same suite.", messages.WARNING)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"{runs[0].suite.name}: two eval runs side by side",
            "comparison": eval_runs_compare(runs[0], runs[1]),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/agents_app/evalrun/compare.html", context)

    @admin.action(description="Cancel")
    def cancel(self, request: HttpRequest, queryset: QuerySet[EvalRun]) -> None:
        for run in queryset:
            try:
                eval_run_cancel(run)
            except EvalRunFinished as exc:
                self.message_user(request, str(exc), messages.WARNING)
