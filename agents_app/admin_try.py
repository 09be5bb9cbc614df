"""The admin's "try it" page, for agents, teams and workflows alike: send a message as the admin user,
run the component through the same run path as its REST endpoint, and show the answer, the tool
calls or member/step runs, the metrics and the stored run. One mixin, so the three admins cannot
drift apart; each says only which kind it runs (`try_kind`)."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.html import format_html

from agents_app import events as ev
from agents_app.forms import TryAgentForm
from agents_app.runs import run_events
from sessions_app.errors import DomainError
from sessions_app.models import Run

logger = logging.getLogger(__name__)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _admin_url(name: str, *args: Any) -> str | None:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


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


def _content(content: Any, content_type: str) -> tuple[str, bool]:
    """The answer as the page shows it: text as is, structured output pretty-printed."""
    if isinstance(content, str) and content_type != "json":
        return content, False
    if content is None:
        return "", False
    return _pretty(content), True


def _stored_metrics(run_id: Any) -> dict[str, Any]:
    metrics = ("input_tokens", "output_tokens", "total_tokens", "time_to_first_token", "duration")
    return Run.objects.filter(pk=run_id).values(*metrics).first() or {}


def try_outcome(handle: Any, events: list[ev.RunEvent]) -> dict[str, Any]:
    """A finished run of any kind as the page shows it: its result (the REST API's JSON), an agent's
    tool calls, and a team's members' or a workflow's steps' runs as rows."""
    result = handle.result(events)
    content, is_json = _content(result.get("content"), result.get("content_type", "str"))
    error = result.get("error") or {}
    children = [_child_row(m.get("member_id", ""), m.get("member_type", ""), m) for m in result.get("member_runs", [])]
    children += [
        _child_row(f"{_step_number(s.get('step_index'))} {s.get('step_name', '')}", s.get("step_type", ""), s)
        for s in result.get("step_results") or []
    ]
    return {
        "run_id": result["run_id"],
        "session_id": result["session_id"],
        "status": result["status"],
        "content": content,
        "content_is_json": is_json,
        "error": error.get("message", ""),
        "error_type": error.get("type", ""),
        "tool_calls": _tool_calls(events),
        "children": children,
        "metrics": {k: v for k, v in (result.get("metrics") or {}).items() if k != "steps"}
        or _stored_metrics(result["run_id"]),
        "model": result.get("model", ""),
        "provider": result.get("model_provider", ""),
        "run_url": _admin_url("admin:sessions_app_run_change", result["run_id"]),
    }


def _child_row(name: str, kind: str, child: dict[str, Any]) -> dict[str, Any]:
    error = child.get("error") or {}
    content = child.get("content")
    return {
        "name": name,
        "kind": kind,
        "status": child.get("status", ""),
        "content": content if isinstance(content, str) or content is None else _pretty(content),
        "error": error.get("message", "") if isinstance(error, dict) else str(error),
        "run_url": _admin_url("admin:sessions_app_run_change", child["run_id"]) if child.get("run_id") else None,
    }


def _step_number(index: Any) -> str:
    """Step indexes count from 0 (a list for nested steps); people count from 1."""
    parts = index if isinstance(index, list) else [index]
    return ".".join(str(int(p) + 1) for p in parts if isinstance(p, int))


# By kind: the heading of the member/step table ("" for agents), and the runs changelist filter.
CHILDREN_TITLES = {"agent": "", "team": "Members", "workflow": "Steps"}
# What the page says when the conversation cannot take the message (the form keeps the session or not).
PROBLEMS = {
    "unknown_session": ("That conversation no longer exists (it may have been deleted). A new one starts now.", False),
    "session_ended": ("That conversation has ended. A new one starts now.", False),
    "session_busy": ("This conversation is still answering an earlier message. Send again in a moment.", True),
}


class TryItAdminMixin:
    """Adds `<id>/try/`, a "Try it" list column (`try_it`) and the "Try it" page to a ModelAdmin of
    agents, teams or workflows. Set `try_kind`; put "try_it" in `list_display`."""

    try_kind = "agent"
    try_template = "admin/agents_app/try.html"

    # The ModelAdmin provides these.
    opts: Any
    admin_site: Any

    def _try_url_name(self) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_try"

    def get_urls(self) -> list[URLPattern]:
        # Before the default URLs: their "<path:object_id>/" would swallow ".../try/".
        return [
            path("<path:object_id>/try/", self.admin_site.admin_view(self.try_view), name=self._try_url_name()),
            *super().get_urls(),  # type: ignore[misc]
        ]

    @admin.display(description="Try")
    def try_it(self, obj: Any) -> str:
        if not obj.is_active:
            return "-"
        url = reverse(f"admin:{self._try_url_name()}", args=[quote(obj.pk)])
        return format_html('<a href="{}">Try it</a>', url)

    def try_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Run the component as the current admin user and show what happened. Each answer carries
        the session id forward, so successive messages form one conversation."""
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined]
        if not self.has_view_permission(request, obj):  # type: ignore[attr-defined]
            raise PermissionDenied
        kind = self.try_kind
        inactive_text = f"This {kind} is inactive, so it refuses runs."
        form = TryAgentForm(request.POST if request.method == "POST" else None)
        outcome: dict[str, Any] | None = None
        problem = ""
        session_id = None
        if request.method == "POST":
            valid = form.is_valid()
            session_id = form.cleaned_data.get("session_id")
            if valid and obj.is_active:
                message = form.cleaned_data["message"]
                try:
                    handle, events = run_events(
                        kind, obj.slug, user=request.user, message=message, session_id=session_id
                    )
                except DomainError as exc:
                    if exc.code == "invalid_input":
                        form.add_error("message", exc.detail)
                    elif exc.code in PROBLEMS:
                        problem, keep = PROBLEMS[exc.code]
                        session_id = session_id if keep else None
                        form = TryAgentForm(initial={"message": message, "session_id": session_id})
                    else:  # the component is inactive (or gone) by now
                        problem = inactive_text
                except Exception as exc:  # shown to the operator trying the component, and logged
                    logger.exception("Trying %s %s from the admin failed", kind, obj.slug)
                    outcome = {"status": "error", "error_type": type(exc).__name__, "error": str(exc)}
                    outcome["message"] = message
                else:
                    outcome = try_outcome(handle, events) | {"message": message}
                    session_id = outcome["session_id"]
                    form = TryAgentForm(initial={"session_id": session_id})
        conversation = self._try_conversation(request, obj, session_id, exclude=(outcome or {}).get("run_id"))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Try {obj.name}",
            "subtitle": None,
            "opts": self.opts,
            "original": obj,
            "kind": kind,
            "inactive_text": inactive_text,
            "children_title": CHILDREN_TITLES[kind],
            "runs_url": f"{reverse('admin:sessions_app_run_changelist')}?{kind}__id__exact={obj.pk}",
            "model_name": self._try_model_name(obj),
            "has_view_permission": True,
            "form": form,
            "outcome": outcome,
            "problem": problem,
            "session_id": session_id,
            "session_url": _admin_url("admin:sessions_app_session_change", session_id) if session_id else None,
            "conversation": conversation,
            "change_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[quote(obj.pk)]),
            "try_url": request.path,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.try_template, context)

    @staticmethod
    def _try_model_name(obj: Any) -> str:
        """The model that answers (a team's leader model); workflows have none of their own."""
        model = getattr(obj, "model", None)
        return model.name if model is not None else ""

    def _try_conversation(self, request: HttpRequest, obj: Any, session_id: Any, exclude: Any = None) -> list[Run]:
        """The earlier turns of this admin user's conversation, oldest first (not member/step runs)."""
        if not session_id:
            return []
        runs = Run.objects.filter(
            session_id=session_id, session__user=request.user, parent_run__isnull=True, **{self.try_kind: obj}
        )
        if exclude:
            runs = runs.exclude(pk=exclude)
        return list(runs.only("id", "input", "output", "output_json", "status", "error", "created_at"))
