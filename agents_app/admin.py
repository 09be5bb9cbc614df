"""The admin of model configs and agents, with a "try it" page that runs an agent as the admin
(agents_app/admin_try.py, shared with teams and workflows)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from agents_app.admin_hooks import AgentHookInline, unknown_hooks
from agents_app.admin_try import TryItAdminMixin
from agents_app.forms import AgentAdminForm, ModelConfigAdminForm, unknown_tools
from agents_app.models import Agent, ModelConfig
from agents_app.services import agent_set_active

logger = logging.getLogger(__name__)


@admin.register(ModelConfig)
class ModelConfigAdmin(admin.ModelAdmin):
    form = ModelConfigAdminForm
    list_display = ["name", "provider", "model_id", "base_url", "has_api_key", "updated_at"]
    list_filter = ["provider"]
    search_fields = ["name", "model_id", "base_url"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (
            "Endpoint",
            {
                "description": "Where the model runs and how to reach it. Any OpenAI-compatible server works.",
                "fields": ["name", "provider", "base_url", "model_id", "api_key", "clear_api_key"],
            },
        ),
        (
            "Generation settings",
            {
                "description": "Leave empty to use the model's own defaults.",
                "fields": ["temperature", "max_tokens"],
            },
        ),
        (
            "Reliability",
            {
                "description": (
                    "How long to wait for the model server, and how many times to retry when it times out, "
                    "is rate limiting or has a temporary failure."
                ),
                "fields": ["timeout_seconds", "max_retries"],
            },
        ),
        ("Record", {"classes": ["collapse"], "fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(boolean=True, description="API key", ordering="api_key")
    def has_api_key(self, obj: ModelConfig) -> bool:
        return bool(obj.api_key)


@admin.register(Agent)
class AgentAdmin(TryItAdminMixin, admin.ModelAdmin):
    try_kind = "agent"
    form = AgentAdminForm
    list_display = ["slug", "name", "model_name", "is_active", "tool_count", "updated_at", "try_it"]
    list_display_links = ["slug", "name"]
    list_filter = ["is_active", "model__provider"]
    search_fields = ["slug", "name", "description", "instructions"]
    list_select_related = ["model"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at", "updated_at"]
    actions = ["activate", "deactivate"]
    inlines = [AgentHookInline]
    fieldsets = [
        (
            None,
            {
                "description": (
                    "Who the agent is. The agent id is what apps use to call it, so change it with care. The "
                    "busy-session policy says what a message to a session whose answer is still running does."
                ),
                "fields": ["name", "slug", "description", "is_active", "busy_session_policy"],
            },
        ),
        (
            "Model and instructions",
            {
                "description": "The model that writes the answers, and what it is told before every conversation.",
                "fields": ["model", "instructions"],
            },
        ),
        (
            "Tools",
            {
                "description": "Actions the agent can take while answering, such as calculating or looking up the time.",
                "fields": ["tools", "max_tool_calls"],
            },
        ),
        (
            "Answer format",
            {
                "description": "Plain text by default; or structured data that always matches a schema.",
                "fields": ["output_schema"],
            },
        ),
        (
            "Conversation history",
            {
                "description": (
                    "How much of the earlier conversation the agent sees when it answers. With summaries on, "
                    "the runs that leave this window are summarized and the summary is sent instead."
                ),
                "fields": [
                    "history_runs",
                    "history_max_chars",
                    "session_summaries",
                    "summary_hook_mode",
                    "initial_session_state",
                ],
            },
        ),
        (
            "Memory about the user",
            {
                "description": (
                    "What the agent remembers about each user across conversations. Agentic: the model decides, "
                    "with memory tools. Automatic: after each answer a memory manager extracts memories (in "
                    "the background on a worker)."
                ),
                "fields": [
                    "memory_mode",
                    "memory_scope",
                    "memory_context_items",
                    "memory_context_chars",
                    "memory_model",
                    "memory_hook_mode",
                ],
            },
        ),
        ("Record", {"classes": ["collapse"], "fields": ["created_at", "updated_at"]}),
    ]

    # ---- list columns --------------------------------------------------------------------------

    @admin.display(description="Model", ordering="model__name")
    def model_name(self, obj: Agent) -> str:
        return f"{obj.model.name} ({obj.model.model_id})"

    @admin.display(description="Tools")
    def tool_count(self, obj: Agent) -> str:
        count = len(obj.tools) if isinstance(obj.tools, list) else 0
        unknown = len(unknown_tools(obj))
        return f"{count} ({unknown} unknown)" if unknown else str(count)

    # ---- actions -------------------------------------------------------------------------------

    @admin.action(description="Activate selected agents", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        changed = agent_set_active(agents=queryset, is_active=True)
        self.message_user(request, f"Activated {changed} agent(s).", messages.SUCCESS)

    @admin.action(description="Deactivate selected agents", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        changed = agent_set_active(agents=queryset, is_active=False)
        self.message_user(request, f"Deactivated {changed} agent(s); they now refuse runs.", messages.SUCCESS)

    # ---- change page ---------------------------------------------------------------------------

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        form = context["adminform"].form
        if request.method == "GET" and getattr(form, "unknown_tools", None):
            self.message_user(
                request,
                f"This agent lists tools that no code registers: {', '.join(form.unknown_tools)}. "
                "Runs skip them. Untick them below and save, or register them again.",
                messages.WARNING,
            )
        original = context.get("original")
        hooks = unknown_hooks(original.hooks.all()) if request.method == "GET" and original is not None else []
        if hooks:
            self.message_user(
                request,
                f"This agent has hooks that no code registers: {', '.join(hooks)}. Its runs fail until they are "
                "deleted below or registered again.",
                messages.WARNING,
            )
        return super().render_change_form(request, context, *args, **kwargs)


from agents_app import admin_teams  # noqa: E402,F401  (registers the team and workflow admins)
