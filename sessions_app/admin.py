"""The admin of conversations. Runs and messages are records of what happened: they can be read and
deleted here, never added or edited."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.db.models import Count, Sum
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from sessions_app.models import Memory, MemoryOptimization, Message, Run, RunImage, Session, ToolApproval
from sessions_app.money import exact_cost, format_cost
from sessions_app.services import runs_delete, session_delete, session_end


def _short(text: str, length: int = 80) -> str:
    return Truncator(" ".join((text or "").split())).chars(length)


def _pre(value: Any) -> str:
    if value in (None, "", [], {}):
        return "-"
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False, default=str),
    )


def _seconds(value: float | None) -> str:
    return f"{value:.3f} s" if value is not None else "-"


def _cost(value: Decimal | None) -> str:
    """4 decimals, the exact stored value as a tooltip."""
    return format_html('<span title="{}">{}</span>', exact_cost(value), format_cost(value))


class RecordAdminMixin:
    """No adding or editing from the admin: code writes these rows (the run engine, a worker)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _run_link(run_id: Any) -> str:
    if not run_id:
        return "-"
    url = reverse("admin:sessions_app_run_change", args=[quote(run_id)])
    return format_html('<a href="{}">{}</a>', url, str(run_id)[:8])


class _RunRowsInline(RecordAdminMixin, admin.TabularInline):
    """Runs as read-only rows: a session's turns, or a run's member and step runs."""

    model = Run
    fields = ["run_link", "ran", "status", "short_input", "short_output", "total_tokens", "run_cost", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["created_at"]

    @admin.display(description="Run")
    def run_link(self, obj: Run) -> str:
        return _run_link(obj.pk)

    @admin.display(description="Cost (own)")
    def run_cost(self, obj: Run) -> str:
        return _cost(obj.cost)

    @admin.display(description="Input")
    def short_input(self, obj: Run) -> str:
        return _short(obj.input)

    @admin.display(description="Output")
    def short_output(self, obj: Run) -> str:
        return _short(obj.output or obj.error)

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("agent", "team", "workflow")


class ChildRunInline(_RunRowsInline):
    """A team's member runs, a workflow's step runs."""

    fk_name = "parent_run"
    verbose_name = "child run"
    verbose_name_plural = "Member and step runs of this run"

    @admin.display(description="Agent or team")
    def ran(self, obj: Run) -> str:
        return f"{obj.component_type} {obj.component_id}"


class RunInline(_RunRowsInline):
    fk_name = "session"
    fields = readonly_fields = [
        "run_link",
        "ran",
        "parent_link",
        "status",
        "short_input",
        "short_output",
        "total_tokens",
        "run_cost",
        "duration_seconds",
        "created_at",
    ]
    show_change_link = False
    verbose_name_plural = "Runs (oldest first)"

    @admin.display(description="Agent, team or workflow")
    def ran(self, obj: Run) -> str:
        return f"{obj.component_type} {obj.component_id}"

    @admin.display(description="Part of")
    def parent_link(self, obj: Run) -> str:
        return _run_link(obj.parent_run_id)

    @admin.display(description="Duration")
    def duration_seconds(self, obj: Run) -> str:
        return _seconds(obj.duration)


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "user",
        "agent",
        "team",
        "workflow",
        "run_count",
        "session_cost",
        "ended_at",
        "updated_at",
    ]
    list_display_links = ["id", "name"]
    list_filter = ["agent", "team", "workflow", ("ended_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "user__username", "user__email"]
    list_select_related = ["user", "agent", "team", "workflow"]
    raw_id_fields = ["user"]
    readonly_fields = [
        "id",
        "session_cost",
        "summary",
        "summary_until",
        "summary_updated_at",
        "created_at",
        "updated_at",
    ]
    fields = [
        "id",
        "name",
        "user",
        "agent",
        "team",
        "workflow",
        "session_cost",
        "state",
        "ended_at",
        "summary",
        "summary_until",
        "summary_updated_at",
        "created_at",
        "updated_at",
    ]
    inlines = [RunInline]
    date_hierarchy = "updated_at"
    actions = ["end_sessions"]

    @admin.action(description="End selected sessions (they stay readable, but take no more messages)")
    def end_sessions(self, request: HttpRequest, queryset: Any) -> None:
        count = 0
        for session in queryset:
            if session.ended_at is None:
                session_end(session=session)
                count += 1
        self.message_user(request, f"Ended {count} session(s).", messages.SUCCESS)

    def get_readonly_fields(self, request: HttpRequest, obj: Session | None = None) -> list[str]:
        # Moving a conversation to another user or agent would rewrite history: fixed once created.
        readonly = list(super().get_readonly_fields(request, obj))
        return [*readonly, "user", "agent", "team", "workflow"] if obj is not None else readonly

    def get_queryset(self, request: HttpRequest) -> Any:
        # One join for both: the run count and the cost (every run's own cost: each call once).
        return (
            super()
            .get_queryset(request)
            .annotate(_run_count=Count("runs"), _cost=Sum("runs__cost", default=Decimal(0)))
        )

    @admin.display(description="Runs", ordering="_run_count")
    def run_count(self, obj: Session) -> int:
        return getattr(obj, "_run_count", 0)

    @admin.display(description="Cost", ordering="_cost")
    def session_cost(self, obj: Session) -> str:
        """What the session's runs cost (members' and steps' runs included, each call once)."""
        return _cost(getattr(obj, "_cost", None))

    # Deleting sessions deletes their runs' image files too (sessions_app.services.runs_delete).
    def delete_model(self, request: HttpRequest, obj: Session) -> None:
        session_delete(session=obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        runs_delete(runs=Run.objects.filter(session__in=queryset), then=queryset.delete)


def _calls_summary(tool_calls: Any) -> str:
    """`name(args)` per call, one per line: what a reader of a run wants at a glance."""
    if not isinstance(tool_calls, list) or not tool_calls:
        return "-"
    lines = []
    for call in tool_calls:
        function = (call or {}).get("function") or {}
        lines.append(f"{function.get('name', '?')}({function.get('arguments', '')})")
    return format_html('<code style="white-space: pre-wrap">{}</code>', "\n".join(lines))


class MessageInline(RecordAdminMixin, admin.TabularInline):
    model = Message
    fields = ["position", "role", "name", "content", "tool_calls_summary", "tool_call_id"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["position"]

    @admin.display(description="Tool calls")
    def tool_calls_summary(self, obj: Message) -> str:
        return _calls_summary(obj.tool_calls)


class ToolApprovalInline(RecordAdminMixin, admin.TabularInline):
    """The tool calls the run waited on and what was decided: who, when, the arguments approved."""

    model = ToolApproval
    fields = [
        "tool_call_id",
        "tool_name",
        "requirement",
        "model_args",
        "status",
        "decided_args",
        "external_result",
        "note",
        "decided_by",
        "decided_at",
        "channel",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "tool approval"
    verbose_name_plural = "Tool calls that waited for a person, and the decisions (docs/human-in-the-loop.md)"

    @admin.display(description="Model's arguments")
    def model_args(self, obj: ToolApproval) -> str:
        return _pre(obj.tool_args)

    @admin.display(description="Arguments approved")
    def decided_args(self, obj: ToolApproval) -> str:
        return _pre(obj.approved_args)

    @admin.display(description="External result")
    def external_result(self, obj: ToolApproval) -> str:
        return _short(obj.result, 200) or "-"

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("decided_by")


class RunImageInline(RecordAdminMixin, admin.TabularInline):
    """The images sent with the run's message, read-only: uploads as thumbnails (served by the
    authenticated image endpoint, which staff may read), images given by URL as links (the admin
    does not fetch them: the URL is the client's)."""

    model = RunImage
    fields = ["position", "thumbnail", "name", "mime_type", "size", "detail", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["position"]
    verbose_name_plural = "Images sent with the message"

    @admin.display(description="Image")
    def thumbnail(self, obj: RunImage) -> str:
        if not obj.file:
            return format_html('<a href="{}" rel="noopener noreferrer nofollow">{}</a>', obj.url, _short(obj.url, 60))
        url = reverse("sessions_app:run-image", kwargs={"run_id": obj.run_id, "position": obj.position})
        return format_html(
            '<a href="{}"><img src="{}" alt="{}" style="max-height: 96px; max-width: 160px"></a>', url, url, obj.name
        )


@admin.register(Run)
class RunAdmin(RecordAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "agent",
        "team",
        "workflow",
        "parent_run_short",
        "user",
        "status",
        "model",
        "total_tokens",
        "run_cost",
        "run_total_cost",
        "duration_seconds",
        "created_at",
    ]
    list_filter = ["status", "agent", "team", "workflow", "provider"]
    search_fields = ["input", "output", "user__username", "agent__slug", "team__slug", "workflow__slug", "error_type"]
    list_select_related = ["agent", "team", "workflow", "user"]
    date_hierarchy = "created_at"
    inlines = [RunImageInline, MessageInline, ToolApprovalInline, ChildRunInline]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "status",
                    "session",
                    "agent",
                    "team",
                    "workflow",
                    "config_version_link",
                    "parent_run_link",
                    "user",
                    "created_at",
                    "finished_at",
                    "expires_at",
                    "resumed_at",
                ]
            },
        ),
        ("Input and output", {"fields": ["input", "output", "output_json_pretty", "error_type", "error"]}),
        (
            "Model and metrics",
            {
                "fields": [
                    "provider",
                    "model",
                    "input_tokens",
                    "output_tokens",
                    "total_tokens",
                    "cache_read_tokens",
                    "cost",
                    "total_cost",
                    "first_token_after",
                    "duration_seconds",
                ]
            },
        ),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]

    @admin.display(description="Duration", ordering="duration")
    def duration_seconds(self, obj: Run) -> str:
        return _seconds(obj.duration)

    @admin.display(description="Cost (own)", ordering="cost")
    def run_cost(self, obj: Run) -> str:
        return _cost(obj.cost)

    @admin.display(description="Total cost", ordering="total_cost")
    def run_total_cost(self, obj: Run) -> str:
        """With its member or step runs (a team's or workflow's run)."""
        return _cost(obj.total_cost)

    @admin.display(description="Part of")
    def parent_run_short(self, obj: Run) -> str:
        return str(obj.parent_run_id)[:8] if obj.parent_run_id else "-"

    @admin.display(description="Part of (the team or workflow run)")
    def parent_run_link(self, obj: Run) -> str:
        return _run_link(obj.parent_run_id)

    @admin.display(description="Configuration version")
    def config_version_link(self, obj: Run) -> str:
        """The version of its agent's, team's or workflow's configuration it ran with (a link to it)."""
        version = obj.config_version
        if version is None:
            return "-"
        name = f"admin:agents_app_{version.kind}_version"
        try:
            url = reverse(name, args=[version.runnable_id, version.number])
        except NoReverseMatch:
            return f"version {version.number}"
        return format_html('<a href="{}">version {}</a>', url, version.number)

    @admin.display(description="First token after")
    def first_token_after(self, obj: Run) -> str:
        return _seconds(obj.time_to_first_token)

    @admin.display(description="Output JSON")
    def output_json_pretty(self, obj: Run) -> str:
        return _pre(obj.output_json)

    # Deleting runs deletes their image files too (sessions_app.services.runs_delete).
    def delete_model(self, request: HttpRequest, obj: Run) -> None:
        runs_delete(runs=Run.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        runs_delete(runs=queryset)


@admin.register(Message)
class MessageAdmin(RecordAdminMixin, admin.ModelAdmin):
    list_display = ["id", "run", "position", "role", "name", "short_content", "created_at"]
    list_filter = ["role"]
    search_fields = ["content", "name", "tool_call_id"]
    list_select_related = ["run"]
    fields = ["run", "position", "role", "name", "content", "tool_calls_pretty", "tool_call_id", "created_at"]
    readonly_fields = fields

    @admin.display(description="Content")
    def short_content(self, obj: Message) -> str:
        return _short(obj.content)

    @admin.display(description="Tool calls")
    def tool_calls_pretty(self, obj: Message) -> str:
        return _pre(obj.tool_calls)


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    """Staff manage every user's memories here; users manage their own through /api/memories/."""

    list_display = ["short_memory", "user", "agent", "topic_list", "source", "updated_at"]
    list_filter = ["source", "agent"]
    search_fields = ["memory", "user__username", "user__email", "topics_index"]
    list_select_related = ["user", "agent"]
    raw_id_fields = ["user", "source_run"]
    readonly_fields = ["id", "source_run", "created_at", "updated_at"]
    fields = ["id", "user", "agent", "memory", "topics", "source", "source_run", "created_at", "updated_at"]
    date_hierarchy = "updated_at"

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"source": Memory.Source.ADMIN, "topics": []}

    @admin.display(description="Memory", ordering="memory")
    def short_memory(self, obj: Memory) -> str:
        return _short(obj.memory)

    @admin.display(description="Topics")
    def topic_list(self, obj: Memory) -> str:
        return ", ".join(str(t) for t in obj.topics or []) or "-"


@admin.register(MemoryOptimization)
class MemoryOptimizationAdmin(admin.ModelAdmin):
    """The record of each consolidation of a user's memories (agno's optimize-memories): read-only."""

    list_display = [
        "created_at",
        "user",
        "status",
        "apply",
        "memories_before",
        "memories_after",
        "tokens_before",
        "tokens_after",
    ]
    list_filter = ["status", "apply"]
    search_fields = ["user__username", "user__email"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
