"""The admin of model configs, agents, teams and workflows (members and steps edited inline, in plain
words), each with a "try it" page that runs it as the admin (agents_app/admin_try.py)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path

from agents_app import (
    admin_approvals,  # noqa: F401 - registers the approvals inbox
    admin_evals,  # noqa: F401 - registers the evals' admin
    admin_tokens,  # noqa: F401 - registers the API tokens' admin
)
from agents_app.admin_hooks import AgentHookInline, TeamHookInline, unknown_hooks
from agents_app.admin_try import TryItAdminMixin
from agents_app.admin_versions import VersionsAdminMixin
from agents_app.forms import AgentAdminForm, ModelConfigAdminForm, unknown_tools
from agents_app.models import (
    Agent,
    AgentToolRequirement,
    ModelConfig,
    ModelFallback,
    Quota,
    Team,
    TeamMember,
    Workflow,
    WorkflowStep,
)
from agents_app.quotas import usage as quota_usage
from agents_app.quotas import usage_by_user
from agents_app.secrets import key_source as describe_key_source
from agents_app.services import agent_set_active
from agents_app.tools.registry import tool_registry
from agents_app.versions import record_dependents
from agents_app.workflows.registry import step_registry
from sessions_app.money import format_cost


@admin.register(ModelConfig)
class ModelConfigAdmin(admin.ModelAdmin):
    form = ModelConfigAdminForm
    list_display = ["name", "provider", "model_id", "base_url", "key_source", "updated_at"]
    list_filter = ["provider"]
    search_fields = ["name", "model_id", "base_url"]
    readonly_fields = ["key_source", "created_at", "updated_at"]
    fieldsets = [
        (
            "Endpoint",
            {
                "description": "Where the model runs and how to reach it. Any OpenAI-compatible server works.",
                "fields": ["name", "provider", "base_url", "model_id"],
            },
        ),
        (
            "API key",
            {
                "description": (
                    "A stored key is encrypted and never shown again. With none stored, the key is read from the "
                    "environment variable (OPENAI_API_KEY for the OpenAI-compatible provider unless you name "
                    "another); local servers such as Ollama need none."
                ),
                "fields": ["key_source", "api_key", "clear_api_key", "api_key_env"],
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
        (
            "Prices (per million tokens)",
            {
                "description": "What a run's cost is made of, in one currency (USD by convention). 0: free.",
                "fields": ["input_price", "cached_input_price", "output_price"],
            },
        ),
        ("Record", {"classes": ["collapse"], "fields": ["created_at", "updated_at"]}),
    ]

    def save_model(self, request: HttpRequest, obj: ModelConfig, form: Any, change: bool) -> None:
        """A changed model config changes what its agents and teams run: each gets a version."""
        super().save_model(request, obj, form, change)
        if change:
            changed = record_dependents(obj, author=request.user)
            if changed:
                self.message_user(request, f"Recorded a new version of {changed} agent(s) or team(s) using it.")

    @admin.display(description="API key from")
    def key_source(self, obj: ModelConfig) -> str:
        """Where the key comes from ("stored", "env: OPENAI_API_KEY (set)", ...), never the key."""
        return describe_key_source(obj) if obj.pk else "-"


class ModelFallbackInline(admin.TabularInline):
    """An agent's fallback models, in order (ModelFallback)."""

    model = ModelFallback
    fk_name = "agent"
    fields = ["position", "model"]
    extra = 0
    verbose_name = "fallback model"
    verbose_name_plural = (
        "Fallback models (when the model fails in a way another could cure: the server is down or busy, "
        "times out or drops the connection, after its own retries; tried in order, lowest position first)"
    )


class TeamModelFallbackInline(ModelFallbackInline):
    fk_name = "team"


class AgentToolRequirementForm(forms.ModelForm):
    """One override; the tool is picked from the registered ones (its code's own requirement shown)."""

    tool = forms.ChoiceField(help_text="A tool registered in code with @tool.")

    class Meta:
        model = AgentToolRequirement
        fields = ["tool", "requirement", "user_input_fields"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices: list[tuple[str, str]] = [("", "---------")]
        for name in tool_registry.names():
            item = tool_registry.get(name)
            own = item.requirement.kind if item is not None and item.requirement is not None else "none"
            choices.append((name, f"{name} (its code: {own})"))
        stored = self.instance.tool if self.instance.pk else ""
        if stored and tool_registry.get(stored) is None:
            choices.append((stored, f"⚠ {stored}: not registered in code (delete this row to save)"))
        self.fields["tool"].choices = choices


class AgentToolRequirementInline(admin.TabularInline):
    model = AgentToolRequirement
    form = AgentToolRequirementForm
    fields = ["tool", "requirement", "user_input_fields"]
    extra = 0
    verbose_name = "tool requirement"
    verbose_name_plural = (
        "Tool requirements (what a call of the tool needs from a person before it runs, replacing what its code "
        'says: confirmation, user input (fields: the arguments the user fills in, e.g. ["amount"]), external '
        "execution, or nothing)"
    )


@admin.register(Agent)
class AgentAdmin(VersionsAdminMixin, TryItAdminMixin, admin.ModelAdmin):
    try_kind = "agent"
    version_kind = "agent"
    form = AgentAdminForm
    filter_horizontal = ["allowed_users", "allowed_groups"]
    list_display = ["slug", "name", "model_name", "is_active", "tool_count", "updated_at", "try_it"]
    list_display_links = ["slug", "name"]
    list_filter = ["is_active", "model__provider"]
    search_fields = ["slug", "name", "description", "instructions"]
    list_select_related = ["model"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at", "updated_at"]
    actions = ["activate", "deactivate"]
    inlines = [ModelFallbackInline, AgentHookInline, AgentToolRequirementInline]
    fieldsets = [
        (
            None,
            {
                "description": (
                    "Who the agent is. The agent id is what apps use to call it, so change it with care. The "
                    "busy-session policy says what a message to a session whose answer is still running does."
                ),
                "fields": ["name", "slug", "description", "example_prompts", "is_active", "busy_session_policy"],
            },
        ),
        (
            "Who may use it",
            {
                "description": (
                    "Every signed-in user, or only the users and groups picked here (and staff). Anyone else gets a "
                    "404, in lists, runs, sessions, the chat page and agno's routes, as if it did not exist."
                ),
                "fields": ["access", "allowed_users", "allowed_groups"],
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
                "description": (
                    "Actions the agent can take while answering, such as calculating or looking up the time. A "
                    "tool whose calls need a person (see Tool requirements below, or the tool's code) pauses the "
                    "run until someone approves, rejects, fills in or runs the call; an undecided run expires "
                    "after the approval timeout and its pending calls never run."
                ),
                "fields": ["tools", "max_tool_calls", "approval_timeout_seconds", "paused_session_policy"],
            },
        ),
        (
            "Limits per run",
            {
                "description": (
                    "The most one run may use: model calls, tokens, seconds. A run that reaches one ends with "
                    "budget_exceeded, keeping what it wrote. Empty: the site's defaults (AGENTOS['RUN_BUDGET'])."
                ),
                "fields": ["max_model_calls", "max_run_tokens", "max_run_seconds", "rate_limit"],
            },
        ),
        (
            "Answer format",
            {
                "description": (
                    "Plain text by default; or structured data that always matches a schema. With a parser model, "
                    "the agent's model answers freely and the parser model (often a cheaper one) turns the answer "
                    "into the schema."
                ),
                "fields": ["output_schema", "parser_model"],
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


# ---- Teams and workflows -----------------------------------------------------------------------


class TeamMemberInline(admin.TabularInline):
    model = TeamMember
    fk_name = "team"
    fields = ["order", "agent", "member_team", "role"]
    extra = 1
    autocomplete_fields = ["agent"]
    verbose_name = "member"
    verbose_name_plural = "Members (an agent or another team on each line, in the order the leader sees them)"


@admin.register(Team)
class TeamAdmin(VersionsAdminMixin, TryItAdminMixin, admin.ModelAdmin):
    try_kind = "team"
    version_kind = "team"
    filter_horizontal = ["allowed_users", "allowed_groups"]
    list_display = ["slug", "name", "mode", "model", "member_count", "is_active", "updated_at", "try_it"]
    list_filter = ["mode", "is_active"]
    search_fields = ["slug", "name", "description"]
    list_select_related = ["model"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at", "updated_at"]
    inlines = [TeamMemberInline, TeamModelFallbackInline, TeamHookInline]
    fieldsets = [
        (None, {"fields": ["slug", "name", "description", "example_prompts", "is_active", "busy_session_policy"]}),
        (
            "Who may use it",
            {
                "description": (
                    "Every signed-in user, or only the users and groups picked here (and staff). Anyone else gets a "
                    "404, in lists, runs, sessions, the chat page and agno's routes, as if it did not exist."
                ),
                "fields": ["access", "allowed_users", "allowed_groups"],
            },
        ),
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
            "Answer format",
            {
                "description": (
                    "Plain text by default; or structured data that always matches a schema: the leader answers in "
                    "it, or, with a parser model, answers freely and the parser model turns the answer into it."
                ),
                "fields": ["output_schema", "parser_model"],
            },
        ),
        (
            "Limits",
            {
                "description": (
                    "Bounds that keep a team from running away: nesting depth, member runs, and the model calls, "
                    "tokens and seconds of one run, its members' included (empty: the site's defaults)."
                ),
                "fields": [
                    "max_depth",
                    "max_member_calls",
                    "max_model_calls",
                    "max_run_tokens",
                    "max_run_seconds",
                    "rate_limit",
                ],
            },
        ),
        ("Record", {"classes": ["collapse"], "fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> Any:
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
class WorkflowAdmin(VersionsAdminMixin, TryItAdminMixin, admin.ModelAdmin):
    try_kind = "workflow"
    version_kind = "workflow"
    filter_horizontal = ["allowed_users", "allowed_groups"]
    list_display = ["slug", "name", "step_count", "is_active", "updated_at", "try_it"]
    list_filter = ["is_active"]
    search_fields = ["slug", "name", "description"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at", "updated_at"]
    fields = [
        "slug",
        "name",
        "description",
        "example_prompts",
        "is_active",
        "busy_session_policy",
        "rate_limit",
        "access",
        "allowed_users",
        "allowed_groups",
        "created_at",
        "updated_at",
    ]
    inlines = [WorkflowStepInline]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).annotate(_steps=Count("steps"))

    @admin.display(description="Steps", ordering="_steps")
    def step_count(self, obj: Workflow) -> int:
        return getattr(obj, "_steps", 0)


# ---- Quotas ------------------------------------------------------------------------------------


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    """Recurring token and cost budgets (agents_app.quotas), and everyone's use ("Usage by user")."""

    list_display = ["__str__", "scope", "period", "target", "max_tokens", "max_cost", "used_now", "is_active"]
    list_filter = ["scope", "period", "is_active"]
    list_select_related = ["user", "agent", "team", "workflow"]
    raw_id_fields = ["user"]
    autocomplete_fields = ["agent"]
    fieldsets = [
        (
            None,
            {
                "description": (
                    "A run that would start over a quota is refused (429 quota_exceeded, saying when it resets); "
                    "a run that reaches one while running stops with budget_exceeded. Usage is the runs' own "
                    "tokens and cost since the start of the UTC day or month."
                ),
                "fields": ["name", "scope", "period", "is_active"],
            },
        ),
        ("Whose runs", {"fields": ["user", "agent", "team", "workflow"]}),
        ("Limits", {"fields": ["max_tokens", "max_cost"]}),
    ]

    @admin.display(description="Applies to")
    def target(self, obj: Quota) -> str:
        if obj.scope == Quota.Scope.USER:
            return obj.user.get_username() if obj.user_id else "every user, each on their own"
        if obj.scope == Quota.Scope.RUNNABLE:
            component = obj.agent or obj.team or obj.workflow
            return str(component) if component is not None else "-"
        return "the whole site"

    @admin.display(description="Used this period")
    def used_now(self, obj: Quota) -> str:
        if obj.scope == Quota.Scope.USER and not obj.user_id:
            return "per user: see Usage by user"
        row = quota_usage([obj], user=obj.user)[0]
        return f"{row['tokens']} tokens, {format_cost(row['cost'])}"

    def get_urls(self) -> list[Any]:
        usage = path("usage/", self.admin_site.admin_view(self.usage_view), name="agents_app_quota_usage")
        return [usage, *super().get_urls()]

    def usage_view(self, request: HttpRequest) -> TemplateResponse:
        """Everyone's use today and this month, most expensive first."""
        context = {
            **self.admin_site.each_context(request),
            "title": "Usage by user",
            "opts": self.model._meta,
            **usage_by_user(),
        }
        return TemplateResponse(request, "admin/agents_app/quota/usage.html", context)
