"""The approvals inbox of the admin (docs/human-in-the-loop.md): the tool calls paused runs wait on,
across users, for staff who may decide on them (the `sessions_app.approve_tool_calls` permission;
every staff user while AGENTOS["APPROVALS_BY_STAFF"] is on, the default). Approving or rejecting
records the decision (who, when, the arguments approved) and continues the run, to its end or its
next pause, before the page returns. The actions approve the model's arguments or reject; a run's
"Decide" page also fills user-input fields and gives an external call's result. A member's or
step's call continues the team or workflow run that waits with it. Every decision is also shown
on the run's page."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from agents_app import runs
from agents_app.engine.approvals import Decision
from agents_app.engine.expiry import paused_top
from agents_app.engine.pause import user_input_schema
from agents_app.tools.registry import tool_registry
from sessions_app.conf import agentos_settings
from sessions_app.errors import DomainError
from sessions_app.models import Run, ToolApproval

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
        "decide_link",
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

    def get_urls(self) -> list[URLPattern]:
        # Before the default URLs: their "<path:object_id>/" would swallow ".../decide/".
        name = f"{self.opts.app_label}_{self.opts.model_name}_decide"
        return [
            path("<path:object_id>/decide/", self.admin_site.admin_view(self.decide_view), name=name),
            *super().get_urls(),
        ]

    @admin.display(description="Decide")
    def decide_link(self, obj: ToolApproval) -> str:
        if obj.status != ToolApproval.Status.PENDING:
            return "-"
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_decide", args=[obj.pk])
        return format_html('<a href="{}">Decide…</a>', url)

    def decide_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Decide on every pending call of one run at once: approve or reject each, with a note;
        fill in a user-input call's fields; give an externally executed call's result. Then the
        run (or the team or workflow run waiting with it) goes on before the page returns."""
        if not may_approve(request.user):
            raise PermissionDenied
        row = self.get_object(request, unquote(object_id))  # None for an id that is not one (no 500)
        changelist = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        if row is None or row.status != ToolApproval.Status.PENDING:
            self.message_user(request, "That tool call is not pending any more.", messages.WARNING)
            return HttpResponseRedirect(changelist)
        pending = list(
            ToolApproval.objects.filter(run_id=row.run_id, status=ToolApproval.Status.PENDING).order_by("position")
        )
        bound = request.POST if request.method == "POST" else None
        decision_forms = [DecisionForm(bound, approval=p, prefix=f"call{i}") for i, p in enumerate(pending)]
        if bound is not None and all(f.is_valid() for f in decision_forms):
            top = paused_top(row.run)
            try:
                result = runs.continue_run(
                    top.pk,
                    user=request.user,
                    decisions=[f.as_decision() for f in decision_forms],
                    channel="admin",
                    any_users_run=True,
                )
            except DomainError as exc:
                self.message_user(request, f"Run {top.pk}: {exc.detail}", messages.ERROR)
            else:
                self.message_user(
                    request, f"Run {top.pk}: {len(pending)} call(s) decided; the run is {result['status']}."
                )
                return HttpResponseRedirect(changelist)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Decide on the tool calls of run {str(row.run_id)[:8]}",
            "run": row.run,
            "forms": decision_forms,
            "changelist_url": changelist,
        }
        return TemplateResponse(request, "admin/agents_app/tool_approval_decide.html", context)

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
        runs_of: dict[Any, Run] = {}
        for row in queryset.filter(status=ToolApproval.Status.PENDING).select_related("run"):
            selected[row.run_id].append(row)
            runs_of[row.run_id] = row.run
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
                    f"Run {run_id}: a call needs user input or an external result; approve it on its Decide page.",
                    messages.ERROR,
                )
                continue
            decisions = [
                Decision(tool_call_id=r.tool_call_id, approve=approve, note="" if approve else "Rejected in the admin.")
                for r in rows
            ]
            top = paused_top(runs_of[run_id])  # a member's or step's run goes on with its team or workflow
            try:
                result = runs.continue_run(
                    top.pk, user=request.user, decisions=decisions, channel="admin", any_users_run=True
                )
            except DomainError as exc:
                self.message_user(request, f"Run {run_id}: {exc.detail}", messages.ERROR)
                continue
            verb = "approved" if approve else "rejected"
            self.message_user(request, f"Run {run_id}: {len(rows)} call(s) {verb}; the run is {result['status']}.")


class DecisionForm(forms.Form):
    """The decision on one pending call, as the inbox's Decide page takes it: approve or reject
    (with a note); a user-input call's fields (JSON values for fields that are not text); an
    external call's result."""

    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")], widget=forms.RadioSelect)
    note = forms.CharField(required=False, max_length=10_000, widget=forms.TextInput(attrs={"size": 60}))

    def __init__(self, *args: Any, approval: ToolApproval, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.approval = approval
        self.types: dict[str, str] = {}
        if approval.requirement == ToolApproval.Requirement.USER_INPUT:
            tool = tool_registry.get(approval.tool_name)
            fields = list(approval.user_input_fields or [])
            schema = user_input_schema(tool, approval.tool_args, fields) if tool is not None else []
            for item in schema:
                name = item["name"]
                self.types[name] = item["field_type"]
                value = item["value"]
                initial = value if isinstance(value, str) or value is None else json.dumps(value)
                self.fields[f"arg_{name}"] = forms.CharField(
                    label=f"{name} ({item['field_type']})",
                    required=False,
                    initial=initial,
                    help_text=item.get("description") or ("to fill in" if name in fields else "the model's; edit it"),
                )
        elif approval.requirement == ToolApproval.Requirement.EXTERNAL_EXECUTION:
            self.fields["result"] = forms.CharField(
                required=False,
                widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                help_text="What the tool returned.",
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        approve = data.get("decision") == "approve"
        arguments: dict[str, Any] = {}
        for name, field_type in self.types.items():
            raw = data.get(f"arg_{name}")
            if raw in (None, ""):
                continue
            if field_type == "str":
                arguments[name] = raw
                continue
            try:
                arguments[name] = json.loads(raw)
            except ValueError:
                self.add_error(f"arg_{name}", f"Enter a {field_type} value (JSON).")
        data["arguments"] = arguments
        if approve and "result" in self.fields and not data.get("result"):
            self.add_error("result", "An externally executed call needs its result to be approved.")
        return data

    def as_decision(self) -> Decision:
        data = self.cleaned_data
        approve = data["decision"] == "approve"
        return Decision(
            tool_call_id=self.approval.tool_call_id,
            approve=approve,
            note=data.get("note") or ("" if approve else "Rejected in the admin."),
            arguments=(data.get("arguments") or None) if approve else None,
            result=(data.get("result") or None) if approve and "result" in self.fields else None,
        )
