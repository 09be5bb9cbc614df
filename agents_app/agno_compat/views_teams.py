"""agno AgentOS's team and workflow run routes: `POST /teams/{team_id}/runs` and
`POST /workflows/{workflow_id}/runs`, with agno's form fields, SSE by default, and agno's
`TeamRunOutput` / `WorkflowRunOutput` JSON with `stream=false`. The runs are the REST API's (same
engine, runtime, storage); only the shapes differ."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.http import HttpResponse, StreamingHttpResponse
from rest_framework.exceptions import NotFound, ValidationError

from agents_app.agno_compat import serializers as s
from agents_app.agno_compat.views import AgnoView, Conflict, _apply_session_state, _parse_uuid
from agents_app.apis_teams import _BusyStart, failed_status
from agents_app.engine import events as ev
from agents_app.engine.runner import InvalidRunInput
from agents_app.engine.team import TeamRunHandle, team_result, team_run_prepare
from agents_app.engine.workflow import WorkflowRunHandle, workflow_result, workflow_run_prepare
from agents_app.runtime import runtime
from agents_app.selectors_teams import TeamNotFound, WorkflowNotFound
from sessions_app.services import SessionBusy, SessionEnded, SessionNotFound

_STATUS = {"completed": "COMPLETED", "error": "ERROR", "cancelled": "CANCELLED"}


def _prepare(request: Any, prepare: Any, key: str, component_id: str, not_found: type[Exception], what: str) -> Any:
    form = s.RunFormSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    sent_media = [f for f in s.MEDIA_FIELDS if request.data.get(f) or request.FILES.get(f)]
    if sent_media:
        raise ValidationError({sent_media[0]: ["This server does not accept media inputs."]})
    raw_session = (data.get("session_id") or "").strip()
    session_id = _parse_uuid(raw_session, f"Session with id '{raw_session}'") if raw_session else None
    kwargs = {key: component_id, "user": request.user, "message": data["message"], "session_id": session_id}

    def errors(exc: Exception) -> Exception:
        if isinstance(exc, not_found):
            return NotFound(f"{what} not found")
        if isinstance(exc, SessionNotFound):
            return NotFound(f"Session with id '{session_id}' not found")
        if isinstance(exc, InvalidRunInput):
            return ValidationError({"message": [str(exc)]})
        if isinstance(exc, SessionBusy | SessionEnded):
            return Conflict(str(exc))
        return exc

    try:
        handle = prepare(**kwargs)
    except SessionBusy:
        # The team's or workflow's busy_session_policy is applied in `post` (queue, interrupt).
        return _BusyStart(prepare, kwargs, errors), data["stream"], data.get("session_state")
    except (not_found, SessionNotFound, SessionEnded, InvalidRunInput) as exc:
        raise errors(exc) from None
    _apply_session_state(handle, data.get("session_state"))
    return handle, data["stream"], None


async def _sse(events: AsyncIterator[ev.RunEvent], name_key: str, name: str) -> AsyncIterator[bytes]:
    """The run's events; its own (not its members' or steps') get agno's `team_name` /
    `workflow_name`."""
    async for event in events:
        data = event.to_dict()
        if not data.get("parent_run_id"):
            data[name_key] = name
        yield b"event: " + event.name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _streaming(events: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _content(result: dict[str, Any]) -> Any:
    """Like agno: a run that did not complete has its partial text, else its error message."""
    if result["status"] == "completed" or result.get("content"):
        return result.get("content")
    return (result.get("error") or {}).get("message")


def team_output_json(handle: TeamRunHandle, result: dict[str, Any]) -> dict[str, Any]:
    """agno's `TeamRunOutput` (what `TeamRunOutput.from_dict` and agno's client parse), plus our
    `error: {type, message}` on failures."""
    members = []
    for member in result["member_runs"]:
        key = "team_id" if member["member_type"] == "team" else "agent_id"
        members.append(
            {
                "run_id": member["run_id"],
                key: member["member_id"],
                "session_id": result["session_id"],
                "parent_run_id": result["run_id"],
                "content": member["content"],
                "status": _STATUS.get(member["status"], "ERROR"),
            }
        )
    body: dict[str, Any] = {
        "run_id": result["run_id"],
        "team_id": result["team_id"],
        "team_name": result["team_name"],
        "session_id": result["session_id"],
        "user_id": s.user_id_of(handle.user_id),
        "input": {"input_content": handle.message},
        "content": _content(result),
        "content_type": "str",
        "model": result["model"] or None,
        "model_provider": result["model_provider"] or None,
        "metrics": result["metrics"] if result["status"] == "completed" else None,
        "member_responses": members,
        "created_at": result["created_at"],
        "status": _STATUS.get(result["status"], "ERROR"),
    }
    if "error" in result:
        body["error"] = result["error"]
    return body


def workflow_output_json(handle: WorkflowRunHandle, result: dict[str, Any]) -> dict[str, Any]:
    """agno's `WorkflowRunOutput`, with `step_results` as its `StepOutput`s."""
    steps = [
        {
            "step_name": step["step_name"],
            "step_type": step["step_type"],
            "content": step.get("content"),
            "step_run_id": step.get("run_id"),
            "success": step.get("status") == "completed",
            **({"error": result["error"]["message"]} if step.get("status") == "error" and "error" in result else {}),
        }
        for step in result["step_results"]
    ]
    body: dict[str, Any] = {
        "run_id": result["run_id"],
        "workflow_id": result["workflow_id"],
        "workflow_name": result["workflow_name"],
        "session_id": result["session_id"],
        "user_id": s.user_id_of(handle.user_id),
        "input": handle.message,
        "content": _content(result),
        "content_type": "str",
        "step_results": steps,
        "session_state": result["session_state"],
        "created_at": result["created_at"],
        "status": _STATUS.get(result["status"], "ERROR"),
    }
    if "error" in result:
        body["error"] = result["error"]
    return body


class TeamRunView(AgnoView):
    """`POST /teams/{team_id}/runs`: SSE by default (`stream` omitted means true, as in agno), or
    `TeamRunOutput` JSON with `stream=false`; a failed run is not a 200 (the REST API's status)."""

    def prepare_post(self, request: Any, team_id: str) -> tuple[TeamRunHandle | _BusyStart, bool, Any]:
        return _prepare(request, team_run_prepare, "team_id", team_id, TeamNotFound, "Team")

    async def post(self, request: Any, team_id: str) -> Any:
        handle, stream, state = self.prepared
        if isinstance(handle, _BusyStart):
            handle = await handle.resolve()
            await sync_to_async(_apply_session_state)(handle, state)
        live = runtime.launch(handle, stream=stream)
        if stream:
            return _streaming(_sse(live.follow(), "team_name", handle.team.name))
        result = team_result(handle, await live.wait())
        body = team_output_json(handle, result)
        return HttpResponse(orjson.dumps(body), status=failed_status(result), content_type="application/json")


class WorkflowRunView(AgnoView):
    """`POST /workflows/{workflow_id}/runs`: as the team route, with `WorkflowRunOutput` JSON."""

    def prepare_post(self, request: Any, workflow_id: str) -> tuple[WorkflowRunHandle | _BusyStart, bool, Any]:
        return _prepare(request, workflow_run_prepare, "workflow_id", workflow_id, WorkflowNotFound, "Workflow")

    async def post(self, request: Any, workflow_id: str) -> Any:
        handle, stream, state = self.prepared
        if isinstance(handle, _BusyStart):
            handle = await handle.resolve()
            await sync_to_async(_apply_session_state)(handle, state)
        live = runtime.launch(handle, stream=stream)
        if stream:
            return _streaming(_sse(live.follow(), "workflow_name", handle.workflow.name))
        result = workflow_result(handle, await live.wait())
        body = workflow_output_json(handle, result)
        return HttpResponse(orjson.dumps(body), status=failed_status(result), content_type="application/json")
