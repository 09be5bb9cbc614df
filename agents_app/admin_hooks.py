"""The admin of hooks: the "Hooks" section of the agent form (which hooks run before and after the
model, in what order, inline or in the background) and the record of background hook executions.

Kept apart from agents_app/admin.py, which calls `install_agent_hook_fields(AgentAdmin)` at its end.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from agents_app.hooks.executions import hook_executions_retry
from agents_app.hooks.registry import POST, PRE, Hook, hook_registry
from agents_app.hooks.runner import BACKGROUND, INLINE, global_background_mode
from agents_app.models import HookExecution

_MODE_LABELS = {"": "Its default", INLINE: "Inline: the answer waits for it", BACKGROUND: "In the background"}


class HookTableWidget(forms.Widget):
    """One row per registered hook: its order before the model, its order after it (blank = not
    used), and where it runs for this agent. Hooks stored on the agent but no longer registered get a
    warning row, so nobody loses them unaware."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        self.unknown: list[str] = []

    def rows(self) -> list[tuple[str, Hook | None]]:
        return [(h.name, h) for h in hook_registry.all()] + [(name, None) for name in self.unknown]

    def value_from_datadict(self, data: Any, files: Any, name: str) -> dict[str, Any]:
        value: dict[str, Any] = {PRE: {}, POST: {}, "modes": {}}
        for hook_name, _ in self.rows():
            for phase in (PRE, POST):
                raw = data.get(f"{name}__{phase}__{hook_name}")
                if raw not in (None, ""):
                    value[phase][hook_name] = raw
            mode = data.get(f"{name}__mode__{hook_name}")
            if mode:
                value["modes"][hook_name] = mode
        return value

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return False

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> str:
        value = value if isinstance(value, dict) else {}
        orders = {phase: _orders(value.get(phase)) for phase in (PRE, POST)}
        modes = value.get("modes") or {}
        body = []
        for hook_name, item in self.rows():
            cells = [
                format_html("<td><strong>{}</strong><br><span class='help'>{}</span></td>", hook_name, item.description)
                if item is not None
                else format_html(
                    "<td><strong>⚠ {}</strong><br><span class='help'>Not registered in code: clear its order "
                    "to save, or register it again with @hook.</span></td>",
                    hook_name,
                )
            ]
            for phase in (PRE, POST):
                if item is None or phase in item.phases:
                    cells.append(
                        format_html(
                            '<td><input type="number" min="1" max="99" step="1" style="width: 4em" '
                            'name="{}__{}__{}" value="{}" aria-label="{} {}"></td>',
                            name,
                            phase,
                            hook_name,
                            orders[phase].get(hook_name, ""),
                            hook_name,
                            "order before the model" if phase == PRE else "order after the model",
                        )
                    )
                else:
                    cells.append(mark_safe("<td>—</td>"))
            if item is None:
                cells.append(mark_safe("<td>—</td>"))
            elif item.guardrail:
                cells.append(mark_safe("<td>Always inline (a guardrail)</td>"))
            else:
                default = "in the background" if item.background else "inline"
                options = format_html_join(
                    "",
                    '<option value="{}"{}>{}</option>',
                    (
                        (
                            key,
                            mark_safe(" selected") if modes.get(hook_name, "") == key else "",
                            f"Its default ({default})" if key == "" else label,
                        )
                        for key, label in _MODE_LABELS.items()
                    ),
                )
                cells.append(
                    format_html(
                        '<td><select name="{}__mode__{}" aria-label="{} runs">{}</select></td>',
                        name,
                        hook_name,
                        hook_name,
                        options,
                    )
                )
            body.append(format_html("<tr>{}</tr>", mark_safe("".join(cells))))
        if not body:
            return mark_safe("<p>No hooks are registered. Register Python functions with @hook.</p>")
        return format_html(
            '<table class="agentos-hooks"><thead><tr><th>Hook</th><th>Before the model<br>'
            "<span class='help'>order: 1, 2, …</span></th><th>After the model<br>"
            "<span class='help'>order: 1, 2, …</span></th><th>Runs</th></tr></thead><tbody>{}</tbody></table>",
            mark_safe("".join(body)),
        )


def _orders(names: Any) -> dict[str, int]:
    if isinstance(names, dict):
        return names
    return {name: index for index, name in enumerate(names or [], start=1) if isinstance(name, str)}


class HookTableField(forms.Field):
    """Cleans the table into {"pre": [names in order], "post": [...], "modes": {name: mode}}."""

    widget = HookTableWidget

    def to_python(self, value: Any) -> dict[str, Any]:
        value = value if isinstance(value, dict) else {}
        cleaned: dict[str, Any] = {"modes": {}}
        errors: list[str] = []
        registered = [h.name for h in hook_registry.all()]
        for phase in (PRE, POST):
            picked: list[tuple[int, int, str]] = []
            for name, raw in (value.get(phase) or {}).items():
                item = hook_registry.get(name)
                if item is None:
                    errors.append(f"{name} is not registered in code: clear its order, or register it with @hook.")
                    continue
                if phase not in item.phases:
                    errors.append(f"{name} cannot run {'before' if phase == PRE else 'after'} the model.")
                    continue
                try:
                    order = int(str(raw).strip())
                    if not 1 <= order <= 99:
                        raise ValueError
                except ValueError:
                    errors.append(f"{name}: the order must be a whole number from 1 to 99.")
                    continue
                picked.append((order, registered.index(name), name))
            cleaned[phase] = [name for _, _, name in sorted(picked)]
        for name, mode in (value.get("modes") or {}).items():
            item = hook_registry.get(name)
            if item is None or mode not in (INLINE, BACKGROUND):
                continue
            if item.guardrail:
                errors.append(f"{name} is a guardrail: it always runs inline.")
                continue
            cleaned["modes"][name] = mode
        if errors:
            raise ValidationError(errors)
        return cleaned


def agent_form_with_hooks(base: type[forms.ModelForm]) -> type[forms.ModelForm]:
    """`base` (the agent's admin form) with the "hooks" table, which fills Agent.pre_hooks,
    post_hooks and hook_modes."""

    class AgentHooksAdminForm(base):  # type: ignore[valid-type, misc]
        hooks = HookTableField(
            label="Hooks",
            required=False,
            help_text=(
                "Give a hook an order number to use it: before the model, hooks see the message and may rewrite "
                "or refuse it; after the model, they see the answer and may rewrite or refuse it. Leave a box "
                "empty to not use the hook there. Inline hooks delay the answer; background hooks run after it, "
                "on a worker, retried when they fail (see Agents: Hook executions)."
            ),
        )

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            agent = self.instance
            stored = {
                PRE: agent.pre_hooks if isinstance(agent.pre_hooks, list) else [],
                POST: agent.post_hooks if isinstance(agent.post_hooks, list) else [],
                "modes": agent.hook_modes if isinstance(agent.hook_modes, dict) else {},
            }
            field = self.fields["hooks"]
            field.widget.unknown = sorted(
                {n for n in (*stored[PRE], *stored[POST]) if isinstance(n, str) and hook_registry.get(n) is None}
            )
            field.initial = stored
            forced = global_background_mode()
            if forced is not None:
                field.help_text += (
                    f" Note: this site runs every hook {'in the background' if forced else 'inline'} "
                    "(AGENTOS_HOOKS_BACKGROUND), whatever the Runs column says, except guardrails, always inline."
                )

        def clean(self) -> dict[str, Any]:
            cleaned = super().clean()
            value = cleaned.get("hooks")
            if isinstance(value, dict):
                self.instance.pre_hooks = value[PRE]
                self.instance.post_hooks = value[POST]
                # The table lists the hooks an operator attaches; keep the modes of our internal ones
                # (agentos_memory, agentos_session_summary), which it does not show.
                before = self.instance.hook_modes if isinstance(self.instance.hook_modes, dict) else {}
                internal = {name for name in before if (item := hook_registry.get(name)) and item.internal}
                self.instance.hook_modes = {**{k: before[k] for k in internal}, **value["modes"]}
            return cleaned

    AgentHooksAdminForm.__name__ = base.__name__
    AgentHooksAdminForm.__qualname__ = base.__qualname__
    return AgentHooksAdminForm


HOOKS_FIELDSET = (
    "Hooks",
    {
        "description": (
            "Checks and actions around each answer: guardrails that refuse or clean a message or an answer, and "
            "background work such as tracking the conversation's topics."
        ),
        "fields": ["hooks"],
    },
)


def install_agent_hook_fields(agent_admin: type[admin.ModelAdmin]) -> None:
    """Add the hooks table to the agent admin's form, in a "Hooks" section before "Record"."""
    agent_admin.form = agent_form_with_hooks(agent_admin.form)
    fieldsets = list(agent_admin.fieldsets or [])
    if any(title == "Hooks" for title, _ in fieldsets):
        return
    at = next((i for i, (title, _) in enumerate(fieldsets) if title == "Record"), len(fieldsets))
    fieldsets.insert(at, HOOKS_FIELDSET)
    agent_admin.fieldsets = fieldsets


@admin.register(HookExecution)
class HookExecutionAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

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
