"""The approvals inbox of the admin (docs/human-in-the-loop.md): the tool calls paused runs wait on,
across users, for staff who may decide on them (the `sessions_app.approve_tool_calls` permission;
every staff user while AGENTOS["APPROVALS_BY_STAFF"] is on, the default). Approving or rejecting
records the decision (who, when, the arguments the model chose) and continues the run, to its end or
its next pause, before the page returns. Every decision is also shown on the run's page."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from agents_app import runs
from agents_app.engine.approvals import Decision
from sessions_app.conf import agentos_settings
from sessions_app.errors import DomainError
from sessions_app.models import ToolApproval

APPROVE_PERMISSION = "sessions_app.approve_tool_calls"


def may_approve(user: Any) -> bool:
    """Whether `user` may decide on other users' paused tool calls."""
    if not (user.is_active and user.is_staff):
        return False
    return bool(agentos_settings.APPROVALS_BY_STAFF) or user.has_perm(APPROVE_PERMISSION)


class PendingFilter(admin.SimpleListFilter):
    """Pending first (the inbox); the decided ones stay listed, as the audit trail."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("all", "All"), *ToolApproval.Status.choices]

    def choices(self, changelist: Any) -> Any:
        value = self.value() or ToolApproval.Status.PENDING
        for lookup, title in self.lookup_choices:
            yield {
                "selected": value == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value() or ToolApproval.Status.PENDING
        return queryset if value == "all" else queryset.filter(status=value)


@admin.register(ToolApproval)
class ToolApprovalAdmin(admin.ModelAdmin):
    list_display = [
        "tool_name",
        "requirement",
        "arguments",
        "run_link",
        "run_user",
        "agent",
        "status",
        "expires",
        "decided_by",
        "decided_at",
        "created_at",
    ]
    list_filter = [PendingFilter, "requirement", "tool_name"]
    search_fields = ["tool_name", "tool_call_id", "run__user__username", "run__agent__slug"]
    list_select_related = ["run__user", "run__agent", "decided_by"]
    actions = ["approve", "reject"]
    ordering = ["-created_at"]
    fields = [
        "run",
        "tool_call_id",
        "tool_name",
        "requirement",
        "tool_args",
        "user_input_fields",
        "status",
        "approved_args",
        "result",
        "note",
        "decided_by",
        "decided_at",
        "channel",
        "created_at",
    ]
    readonly_fields = fields

    # Records: decided through the actions (or the API), never edited.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return may_approve(request.user) or super().has_view_permission(request, obj)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return may_approve(request.user) or super().has_module_permission(request)

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return may_approve(request.user)

    has_reject_permission = has_approve_permission

    @admin.display(description="Arguments (the model's)")
    def arguments(self, obj: ToolApproval) -> str:
        text = ", ".join(f"{k}={v!r}" for k, v in (obj.tool_args or {}).items())
        return text[:200] or "-"

    @admin.display(description="Run")
    def run_link(self, obj: ToolApproval) -> str:
        from django.urls import reverse

        url = reverse("admin:sessions_app_run_change", args=[obj.run_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.run_id)[:8])

    @admin.display(description="User", ordering="run__user__username")
    def run_user(self, obj: ToolApproval) -> str:
        return str(obj.run.user)

    @admin.display(description="Agent", ordering="run__agent__slug")
    def agent(self, obj: ToolApproval) -> str:
        return obj.run.agent.slug if obj.run.agent_id else "-"

    @admin.display(description="Expires", ordering="run__expires_at")
    def expires(self, obj: ToolApproval) -> str:
        when = obj.run.expires_at
        if when is None or obj.status != ToolApproval.Status.PENDING:
            return "-"
        return f"{when:%Y-%m-%d %H:%M}" + (" (overdue)" if when <= timezone.now() else "")

    @admin.action(
        description="Approve the selected tool calls (the model's arguments) and continue their runs",
        permissions=["approve"],
    )
    def approve(self, request: HttpRequest, queryset: Any) -> None:
        self._decide(request, queryset, approve=True)

    @admin.action(description="Reject the selected tool calls and continue their runs", permissions=["reject"])
    def reject(self, request: HttpRequest, queryset: Any) -> None:
        self._decide(request, queryset, approve=False)

    def _decide(self, request: HttpRequest, queryset: Any, *, approve: bool) -> None:
        """One continue per run; a run's pending calls are decided together (all selected, or none)."""
        selected: dict[Any, list[ToolApproval]] = defaultdict(list)
        for row in queryset.filter(status=ToolApproval.Status.PENDING).select_related("run"):
            selected[row.run_id].append(row)
        if not selected:
            self.message_user(request, "None of the selected tool calls is pending.", messages.WARNING)
            return
        for run_id, rows in selected.items():
            pending = ToolApproval.objects.filter(run_id=run_id, status=ToolApproval.Status.PENDING).count()
            if pending != len(rows):
                self.message_user(
                    request,
                    f"Run {run_id}: select all of its {pending} pending tool calls to decide on them together.",
                    messages.ERROR,
                )
                continue
            if any(r.requirement != ToolApproval.Requirement.CONFIRMATION for r in rows) and approve:
                self.message_user(
                    request,
                    f"Run {run_id}: a call needs user input or an external result; approve it through the API.",
                    messages.ERROR,
                )
                continue
            decisions = [
                Decision(tool_call_id=r.tool_call_id, approve=approve, note="" if approve else "Rejected in the admin.")
                for r in rows
            ]
            try:
                result = runs.continue_run(
                    run_id, user=request.user, decisions=decisions, channel="admin", any_users_run=True
                )
            except DomainError as exc:
                self.message_user(request, f"Run {run_id}: {exc.detail}", messages.ERROR)
                continue
            verb = "approved" if approve else "rejected"
            self.message_user(request, f"Run {run_id}: {len(rows)} call(s) {verb}; the run is {result['status']}.")
