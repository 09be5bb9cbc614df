"""The admin of hooks: the hook rows of an agent (or team), edited inline on its page (which hooks run
before and after the model, in what order, where, with what retries and timeout), and the record of
background hook executions.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from agents_app.hooks.executions import hook_executions_retry
from agents_app.hooks.registry import hook_registry
from agents_app.hooks.runner import global_background_mode
from agents_app.models import AgentHook, HookExecution, validate_hook_list
from sessions_app.admin import RecordAdminMixin

# Positions rows are parked at while a save reorders them (see AgentHookFormSet.save_existing_objects);
# far above what an operator may enter (HOOK_MAX_POSITION).
_PARKED_POSITION = 30_000


def unknown_hooks(rows: Any) -> list[str]:
    """Hooks attached to an agent or team that no code registers (a module was removed or renamed)."""
    return sorted({row.hook for row in rows if hook_registry.get(row.hook) is None})


class AgentHookForm(forms.ModelForm):
    """One hook row; the hook is picked from the registered ones (a stored name no code registers
    stays listed, marked, so nobody loses it unaware; saving it is refused until it is removed)."""

    hook = forms.ChoiceField(help_text="A hook registered in code with @hook.")

    class Meta:
        model = AgentHook
        fields = ["phase", "position", "hook", "mode", "max_retries", "timeout_seconds"]
        labels = {"position": "Order", "max_retries": "Retries", "timeout_seconds": "Timeout (s)"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices: list[tuple[str, str]] = [("", "---------")]
        for item in hook_registry.all():
            only = " (before the model only)" if item.phases == {"pre"} else ""
            only = " (after the model only)" if item.phases == {"post"} else only
            guardrail = " [guardrail: always inline]" if item.guardrail else ""
            choices.append((item.name, f"{item.label()}{only}{guardrail}"))
        stored = self.instance.hook if self.instance.pk else ""
        if stored and hook_registry.get(stored) is None:
            choices.append((stored, f"⚠ {stored}: not registered in code (delete this row to save)"))
        self.fields["hook"].choices = choices


class AgentHookFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        """Across rows: a hook at most once per phase (the rule, and the words, of the staff API), before
        the formset's generic check of the unique constraints (positions)."""
        by_phase: dict[str, list[str]] = {}
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or self._should_delete_form(form) or not data.get("hook"):
                continue
            by_phase.setdefault(data["phase"], []).append(data["hook"])
        errors: list[str] = []
        for phase, names in by_phase.items():
            try:
                validate_hook_list(phase=phase, hooks=names)
            except ValidationError as exc:
                errors.extend(exc.messages)
        if errors:
            raise ValidationError(errors)
        super().clean()

    def save_existing_objects(self, commit: bool = True) -> list[Any]:
        """Park the rows that change or go (unique position and hook) before saving any: swapping two
        rows' order or hooks would otherwise hit the unique constraints halfway. The admin saves in
        one transaction, so nobody sees the parked values."""
        if commit:
            moving = [
                form.instance.pk
                for form in self.initial_forms
                if form.instance.pk is not None and (form.has_changed() or self._should_delete_form(form))
            ]
            for offset, pk in enumerate(moving):
                AgentHook.objects.filter(pk=pk).update(position=_PARKED_POSITION + offset, hook=f"~parked-{pk}")
        return super().save_existing_objects(commit)


class AgentHookInline(admin.TabularInline):
    model = AgentHook
    form = AgentHookForm
    formset = AgentHookFormSet
    fk_name = "agent"
    fields = ["phase", "position", "hook", "mode", "max_retries", "timeout_seconds"]
    extra = 0
    verbose_name = "hook"
    help_note = (
        "Hooks (before the model they see the message and may rewrite or refuse it; after it they see the answer "
        "and may rewrite or refuse it; each phase runs in order, lowest first. Inline hooks delay the answer; "
        "background hooks run after it, on a worker, retried when they fail: see Hook executions. Empty retries "
        "or timeout: the hook's own)"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        note = self.help_note
        forced = global_background_mode()
        if forced is not None:
            note += (
                f". Note: this site runs every hook {'in the background' if forced else 'inline'} "
                "(AGENTOS_HOOKS_BACKGROUND), whatever the mode says, except guardrails, always inline"
            )
        self.verbose_name_plural = note


class TeamHookInline(AgentHookInline):
    fk_name = "team"
    help_note = (
        "Hooks (around the team's run, as for an agent: before the leader they see the message, after it "
        "the team's answer; each phase runs in order, lowest first)"
    )


@admin.register(HookExecution)
class HookExecutionAdmin(RecordAdminMixin, admin.ModelAdmin):
    """Background hook executions: what ran, for which run, how it ended. A record: read-only, except
    the action that retries failed ones."""

    list_display = [
        "hook_name",
        "phase",
        "status",
        "attempts_display",
        "agent_display",
        "run_link",
        "duration_display",
        "short_error",
        "created_at",
    ]
    list_filter = ["status", "phase", "hook_name"]
    search_fields = ["hook_name", "error", "=run__id"]
    list_select_related = ["run__agent"]
    raw_id_fields = ["run"]
    date_hierarchy = "created_at"
    actions = ["retry_failed"]
    fields = [
        "hook_name",
        "phase",
        "position",
        "status",
        "run_link",
        "attempts",
        "max_attempts",
        "error",
        "duration",
        "created_at",
        "started_at",
        "next_attempt_at",
        "lease_expires_at",
        "finished_at",
        "updated_at",
    ]
    readonly_fields = fields

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("agents_app.change_hookexecution")

    @admin.display(description="Attempts")
    def attempts_display(self, obj: HookExecution) -> str:
        return f"{obj.attempts} / {obj.max_attempts}"

    @admin.display(description="Agent", ordering="run__agent__slug")
    def agent_display(self, obj: HookExecution) -> str:
        return obj.run.agent.slug

    @admin.display(description="Run")
    def run_link(self, obj: HookExecution) -> str:
        try:
            url = reverse("admin:sessions_app_run_change", args=[quote(obj.run_id)])
        except NoReverseMatch:  # the sessions admin is not installed
            return str(obj.run_id)
        return format_html('<a href="{}">{}</a>', url, str(obj.run_id)[:8])

    @admin.display(description="Duration", ordering="duration")
    def duration_display(self, obj: HookExecution) -> str:
        return "-" if obj.duration is None else f"{obj.duration:.2f} s"

    @admin.display(description="Error")
    def short_error(self, obj: HookExecution) -> str:
        return Truncator(obj.error).chars(80) if obj.error else "-"

    @admin.action(description="Retry selected failed executions", permissions=["retry"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[HookExecution]) -> None:
        count = hook_executions_retry(executions=queryset)
        self.message_user(request, f"Queued {count} failed execution(s) again.", messages.SUCCESS)
