"""The admin of teams and workflows: members and steps edited inline, in plain words, and a "try it"
page for each (agents_app/admin_try.py)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from agents_app.admin_hooks import TeamHookInline
from agents_app.admin_try import TryItAdminMixin
from agents_app.models import Team, TeamMember, Workflow, WorkflowStep
from agents_app.workflows.registry import step_registry


class TeamMemberInline(admin.TabularInline):
    model = TeamMember
    fk_name = "team"
    fields = ["order", "agent", "member_team", "role"]
    extra = 1
    autocomplete_fields = ["agent"]
    verbose_name = "member"
    verbose_name_plural = "Members (an agent or another team on each line, in the order the leader sees them)"


@admin.register(Team)
class TeamAdmin(TryItAdminMixin, admin.ModelAdmin):
    try_kind = "team"
    list_display = ["slug", "name", "mode", "model", "member_count", "is_active", "updated_at", "try_it"]
    list_filter = ["mode", "is_active"]
    search_fields = ["slug", "name", "description"]
    list_select_related = ["model"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at", "updated_at"]
    inlines = [TeamMemberInline, TeamHookInline]
    fieldsets = [
        (None, {"fields": ["slug", "name", "description", "is_active", "busy_session_policy"]}),
        (
            "Leader",
            {
                "description": (
                    "The leader is a model with instructions. Route: it passes the message to the one member best "
                    "placed to answer, and that answer is the team's. Coordinate: it gives members tasks, reads "
                    "their answers and writes the answer itself. Collaborate: every member answers, then the "
                    "leader combines the answers."
                ),
                "fields": ["model", "mode", "instructions", "history_runs"],
            },
        ),
        (
            "Limits",
            {
                "description": "Bounds that keep a team from running away: nesting depth and member runs per run.",
                "fields": ["max_depth", "max_member_calls"],
            },
        ),
        ("Record", {"classes": ["collapse"], "fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> Any:
        from django.db.models import Count

        return super().get_queryset(request).annotate(_members=Count("memberships"))

    @admin.display(description="Members", ordering="_members")
    def member_count(self, obj: Team) -> int:
        return getattr(obj, "_members", 0)


class WorkflowStepForm(forms.ModelForm):
    function = forms.ChoiceField(
        required=False,
        help_text="For function and condition steps: a registered step function (@step_function).",
    )

    class Meta:
        model = WorkflowStep
        fields = ["order", "name", "kind", "parent", "agent", "team", "function", "args"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["function"].choices = [("", "-"), *step_registry.choices()]


class WorkflowStepInline(admin.TabularInline):
    model = WorkflowStep
    form = WorkflowStepForm
    fk_name = "workflow"
    fields = ["order", "name", "kind", "parent", "agent", "team", "function", "args"]
    extra = 1
    verbose_name = "step"

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "parent":
            # Only this workflow's condition and parallel steps can hold steps.
            match = request.resolver_match
            object_id = match.kwargs.get("object_id") if match is not None else None
            holders = WorkflowStep.objects.filter(kind__in=[WorkflowStep.Kind.CONDITION, WorkflowStep.Kind.PARALLEL])
            kwargs["queryset"] = holders.filter(workflow_id=object_id) if object_id else holders.none()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    verbose_name_plural = (
        "Steps (run in order; each step gets the previous step's output. To put steps inside a condition or "
        "parallel step, save it first, then pick it as their parent)"
    )


@admin.register(Workflow)
class WorkflowAdmin(TryItAdminMixin, admin.ModelAdmin):
    try_kind = "workflow"
    list_display = ["slug", "name", "step_count", "is_active", "updated_at", "try_it"]
    list_filter = ["is_active"]
    search_fields = ["slug", "name", "description"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at", "updated_at"]
    fields = ["slug", "name", "description", "is_active", "busy_session_policy", "created_at", "updated_at"]
    inlines = [WorkflowStepInline]

    def get_queryset(self, request: HttpRequest) -> Any:
        from django.db.models import Count

        return super().get_queryset(request).annotate(_steps=Count("steps"))

    @admin.display(description="Steps", ordering="_steps")
    def step_count(self, obj: Workflow) -> int:
        return getattr(obj, "_steps", 0)
