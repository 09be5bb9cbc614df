"""The admin of model configs and agents, with a "try it" page that runs an agent as the admin."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.html import format_html

from agents_app.admin_hooks import AgentHookInline, unknown_hooks
from agents_app.engine import InvalidRunInput, run_agent
from agents_app.engine import events as ev
from agents_app.forms import AgentAdminForm, ModelConfigAdminForm, TryAgentForm, unknown_tools
from agents_app.models import Agent, ModelConfig
from agents_app.selectors import AgentNotFound
from agents_app.services import agent_set_active
from sessions_app.models import Run
from sessions_app.services import SessionEnded, SessionNotFound

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


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _tool_calls(events: list[ev.RunEvent]) -> list[dict[str, Any]]:
    """One row per tool call, folded from its Started and Completed/Error events."""
    calls: dict[str, dict[str, Any]] = {}
    for event in events:
        if not isinstance(event, ev.ToolCallStarted | ev.ToolCallCompleted | ev.ToolCallError):
            continue
        tool = event.tool or {}
        key = str(tool.get("tool_call_id") or f"#{event.event_index}")
        call = calls.setdefault(
            key, {"name": tool.get("tool_name", ""), "args": None, "result": None, "error": None, "done": False}
        )
        if tool.get("tool_args") is not None and (call["args"] is None or not isinstance(event, ev.ToolCallStarted)):
            call["args"] = tool["tool_args"]
        if isinstance(event, ev.ToolCallCompleted):
            call.update(result=tool.get("result", event.content), done=True)
        elif isinstance(event, ev.ToolCallError):
            call.update(error=event.error or tool.get("result"), done=True)
    for call in calls.values():
        args = call["args"]
        call["args"] = json.dumps(args, ensure_ascii=False, default=str) if not isinstance(args, str) else args
    return list(calls.values())


def _admin_url(name: str, *args: Any) -> str | None:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
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

    @admin.display(description="Try")
    def try_it(self, obj: Agent) -> str:
        if not obj.is_active:
            return "-"
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_try", args=[quote(obj.pk)])
        return format_html('<a href="{}">Try it</a>', url)

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

    # ---- "try it" ------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        # Before the default URLs: their "<path:object_id>/" would swallow ".../try/".
        return [
            path("<path:object_id>/try/", self.admin_site.admin_view(self.try_view), name="{}_{}_try".format(*info)),
            *super().get_urls(),
        ]

    def try_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Run the agent as the current admin user and show what happened. Each answer carries the
        session id forward, so successive messages form one conversation."""
        agent = self.get_object(request, unquote(object_id))
        if agent is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, agent):
            raise PermissionDenied
        form = TryAgentForm(request.POST if request.method == "POST" else None)
        outcome: dict[str, Any] | None = None
        problem = ""
        session_id = None
        if request.method == "POST":
            valid = form.is_valid()
            session_id = form.cleaned_data.get("session_id")
            if valid and agent.is_active:
                try:
                    result = run_agent(
                        agent_id=agent.slug,
                        user=request.user,
                        message=form.cleaned_data["message"],
                        session_id=session_id,
                    )
                except AgentNotFound:
                    problem = "This agent is inactive, so it refuses runs."
                except SessionNotFound:
                    problem = "That conversation no longer exists (it may have been deleted). A new one starts now."
                    session_id = None
                    form = TryAgentForm(initial={"message": form.cleaned_data["message"]})
                except SessionEnded:
                    problem = "That conversation has ended. A new one starts now."
                    session_id = None
                    form = TryAgentForm(initial={"message": form.cleaned_data["message"]})
                except InvalidRunInput as exc:
                    form.add_error("message", str(exc))
                except Exception as exc:  # shown to the operator trying the agent, and logged
                    logger.exception("Trying agent %s from the admin failed", agent.slug)
                    outcome = {
                        "status": "error",
                        "error_type": type(exc).__name__,
                        "error": str(exc),
                        "message": form.cleaned_data["message"],
                    }
                else:
                    outcome = self._outcome(result) | {"message": form.cleaned_data["message"]}
                    session_id = result.session_id
                    form = TryAgentForm(initial={"session_id": session_id})
        conversation = self._conversation(request, agent, session_id, exclude=(outcome or {}).get("run_id"))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Try {agent.name}",
            "subtitle": None,
            "opts": self.opts,
            "original": agent,
            "has_view_permission": True,
            "form": form,
            "outcome": outcome,
            "problem": problem,
            "session_id": session_id,
            "session_url": _admin_url("admin:sessions_app_session_change", session_id) if session_id else None,
            "conversation": conversation,
            "change_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[quote(agent.pk)]),
            "try_url": request.path,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/agents_app/agent/try.html", context)

    @staticmethod
    def _outcome(result: Any) -> dict[str, Any]:
        run = Run.objects.filter(pk=result.run_id).first()
        metrics = dict(result.metrics or {})
        if not metrics and run is not None:
            metrics = {
                "input_tokens": run.input_tokens,
                "output_tokens": run.output_tokens,
                "total_tokens": run.total_tokens,
                "time_to_first_token": run.time_to_first_token,
                "duration": run.duration,
            }
        content = result.content
        is_text = isinstance(content, str) and result.content_type != "json"
        return {
            "run_id": result.run_id,
            "status": result.status,
            "content": content if is_text else (_pretty(content) if content is not None else ""),
            "content_is_json": not is_text and content is not None,
            "error": result.error,
            "error_type": result.error_type,
            "tool_calls": _tool_calls(result.events),
            "metrics": metrics,
            "model": result.model,
            "provider": result.model_provider,
            "run_url": _admin_url("admin:sessions_app_run_change", result.run_id),
        }

    @staticmethod
    def _conversation(request: HttpRequest, agent: Agent, session_id: Any, exclude: Any = None) -> list[Run]:
        """The earlier turns of this admin user's conversation, oldest first."""
        if not session_id:
            return []
        runs = Run.objects.filter(session_id=session_id, session__user=request.user, agent=agent)
        if exclude:
            runs = runs.exclude(pk=exclude)
        return list(runs.only("id", "input", "output", "output_json", "status", "error", "created_at"))


from agents_app import admin_teams  # noqa: E402,F401  (registers the team and workflow admins)
