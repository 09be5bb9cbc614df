"""The teams and workflows REST API: read them, run them. Thin edges, like the agents API: parse,
call the team or workflow engine through the runtime, render (JSON, or Server-Sent Events)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import permissions, viewsets
from rest_framework.exceptions import NotFound, ValidationError

from agents_app.apis import ERROR_STATUS, SLUG_PATTERN, UPSTREAM_FAILURE
from agents_app.apis_runs import SessionConflict, SessionEndedConflict
from agents_app.async_views import AsyncAPIView, StrictInputMixin
from agents_app.engine.children import prepare_with_policy
from agents_app.engine.runner import InvalidRunInput
from agents_app.engine.team import TeamRunHandle, team_result, team_run_prepare
from agents_app.engine.workflow import WorkflowRunHandle, workflow_result, workflow_run_prepare
from agents_app.models import Team, Workflow
from agents_app.runtime import runtime
from agents_app.selectors_teams import TeamNotFound, WorkflowNotFound, team_list_for_user, workflow_list_for_user
from agents_app.serializers import BODY_ERRORS, RunInputSerializer, ServerSentEventSerializer, error_responses
from agents_app.serializers_teams import (
    TeamRunOutputSerializer,
    TeamSerializer,
    WorkflowRunOutputSerializer,
    WorkflowSerializer,
)
from agents_app.sse import sse_response
from sessions_app.services import SessionBusy, SessionEnded, SessionNotFound

# Failures of teams and workflows themselves (a member's or a step's failure takes its status from
# the member's own error, e.g. 504 when its model timed out).
COMPONENT_ERROR_STATUS = {
    **ERROR_STATUS,
    "delegation_depth_exceeded": 500,  # the operator nested teams deeper than the team allows
    "step_function_error": 500,  # a step function of the site's own code failed
}
CHILD_FAILURES = ("member_error", "step_error")


def failed_status(result: dict[str, Any]) -> int:
    """The HTTP status of a run that did not complete: never 200, except for a cancelled run."""
    if result["status"] in ("completed", "cancelled"):
        return 200
    error_type = result.get("error", {}).get("type", "")
    if error_type in CHILD_FAILURES:
        children = result.get("member_runs") or result.get("step_results") or []
        for child in children:
            child_type = (child.get("error") or {}).get("type", "")
            if child_type:
                return COMPONENT_ERROR_STATUS.get(child_type, UPSTREAM_FAILURE)
        return UPSTREAM_FAILURE
    return COMPONENT_ERROR_STATUS.get(error_type, UPSTREAM_FAILURE)


def _failed_responses(serializer: Any) -> dict[int, OpenApiResponse]:
    return {
        code: OpenApiResponse(serializer, description=f"The run failed ({why}); the body is the stored run.")
        for code, why in [
            (422, "a guardrail of a member refused the message"),
            (500, "internal error, a step function failed, or teams nested deeper than allowed"),
            (502, "a model failed or misbehaved, in the leader or a member or step"),
            (503, "a model server rate-limits us"),
            (504, "a model timed out"),
        ]
    }


def _run_responses(serializer: Any, what: str) -> dict[Any, Any]:
    return {
        (200, "application/json"): OpenApiResponse(
            serializer, description="The run's result; with stream=true, its events as Server-Sent Events instead."
        ),
        (200, "text/event-stream"): OpenApiResponse(
            ServerSentEventSerializer,
            description="With stream=true: one Server-Sent Event per run event, the member or step runs' own "
            "events among them (with `parent_run_id`).",
        ),
        **error_responses(
            *BODY_ERRORS,
            401,
            403,
            404,
            409,
            e400="Invalid input: missing, blank or oversized message, bad session_id or stream, malformed body.",
            e403="Cookie authentication without a CSRF token.",
            e404=f"Unknown or inactive {what}, or a session that is not yours.",
            e409="The session is still answering a previous message, or it has ended.",
        ),
        **_failed_responses(serializer),
    }


RUN_REQUEST = {
    "application/json": RunInputSerializer,
    "application/x-www-form-urlencoded": RunInputSerializer,
    "multipart/form-data": RunInputSerializer,
}


@dataclass(slots=True)
class _BusyStart:
    """The session was busy: `post` applies the busy_session_policy (without holding the thread
    that serves every sync request while it waits), then prepares the run."""

    prepare: Any
    kwargs: dict[str, Any]
    errors: Any

    async def resolve(self) -> Any:
        try:
            return await prepare_with_policy(self.prepare, **self.kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped to the same answers as the first attempt
            raise self.errors(exc) from None


def _prepare(request: Any, prepare: Any, not_found: type[Exception], what: str, key: str, component_id: str) -> Any:
    serializer = RunInputSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    kwargs = {key: component_id, "user": request.user, "message": data["message"], "session_id": data.get("session_id")}

    def errors(exc: Exception) -> Exception:
        if isinstance(exc, not_found):
            return NotFound(f"No {what} with id {component_id!r}.")
        if isinstance(exc, SessionNotFound):
            return NotFound(f"No session {data.get('session_id')} for {what} {component_id!r}.")
        if isinstance(exc, InvalidRunInput):
            return ValidationError({"message": [str(exc)]})
        if isinstance(exc, SessionBusy):
            return SessionConflict(str(exc))
        if isinstance(exc, SessionEnded):
            return SessionEndedConflict(str(exc))
        return exc

    try:
        return prepare(**kwargs), data["stream"]
    except SessionBusy:
        return _BusyStart(prepare, kwargs, errors), data["stream"]
    except (not_found, SessionNotFound, SessionEnded, InvalidRunInput) as exc:
        raise errors(exc) from None


async def _resolve(handle: Any) -> Any:
    return await handle.resolve() if isinstance(handle, _BusyStart) else handle


def _json(result: dict[str, Any]) -> HttpResponse:
    return HttpResponse(orjson.dumps(result), status=failed_status(result), content_type="application/json")


class TeamRunApi(AsyncAPIView):
    """Run a team: JSON or form body; answer as JSON or as Server-Sent Events."""

    permission_classes = [permissions.IsAuthenticated]

    def prepare_post(self, request: Any, team_id: str) -> tuple[TeamRunHandle | _BusyStart, bool]:
        return _prepare(request, team_run_prepare, TeamNotFound, "team", "team_id", team_id)

    @extend_schema(
        summary="Run a team",
        parameters=[OpenApiParameter("team_id", str, OpenApiParameter.PATH, pattern=SLUG_PATTERN)],
        request=RUN_REQUEST,
        responses=_run_responses(TeamRunOutputSerializer, "team"),
    )
    async def post(self, request: Any, team_id: str) -> Any:
        handle, stream = self.prepared
        handle = await _resolve(handle)
        if stream:
            return sse_response(runtime.launch(handle).follow())
        events = await runtime.launch(handle, stream=False).wait()
        return _json(team_result(handle, events))


class WorkflowRunApi(AsyncAPIView):
    """Run a workflow: JSON or form body; answer as JSON or as Server-Sent Events."""

    permission_classes = [permissions.IsAuthenticated]

    def prepare_post(self, request: Any, workflow_id: str) -> tuple[WorkflowRunHandle | _BusyStart, bool]:
        return _prepare(request, workflow_run_prepare, WorkflowNotFound, "workflow", "workflow_id", workflow_id)

    @extend_schema(
        summary="Run a workflow",
        parameters=[OpenApiParameter("workflow_id", str, OpenApiParameter.PATH, pattern=SLUG_PATTERN)],
        request=RUN_REQUEST,
        responses=_run_responses(WorkflowRunOutputSerializer, "workflow"),
    )
    async def post(self, request: Any, workflow_id: str) -> Any:
        handle, stream = self.prepared
        handle = await _resolve(handle)
        if stream:
            return sse_response(runtime.launch(handle).follow())
        events = await runtime.launch(handle, stream=False).wait()
        return _json(workflow_result(handle, events))


@extend_schema_view(
    list=extend_schema(summary="List teams", responses={200: TeamSerializer, **error_responses(401)}),
    retrieve=extend_schema(summary="Get a team", responses={200: TeamSerializer, **error_responses(401, 404)}),
)
class TeamViewSet(StrictInputMixin, viewsets.ReadOnlyModelViewSet):
    """Teams you can run (staff also see inactive ones). Configure them in the admin."""

    permission_classes = [permissions.IsAuthenticated]
    serializer_class = TeamSerializer
    lookup_field = "slug"
    lookup_url_kwarg = "team_id"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    queryset = Team.objects.none()

    def get_queryset(self) -> Any:
        return team_list_for_user(user=self.request.user)


@extend_schema_view(
    list=extend_schema(summary="List workflows", responses={200: WorkflowSerializer, **error_responses(401)}),
    retrieve=extend_schema(summary="Get a workflow", responses={200: WorkflowSerializer, **error_responses(401, 404)}),
)
class WorkflowViewSet(StrictInputMixin, viewsets.ReadOnlyModelViewSet):
    """Workflows you can run (staff also see inactive ones), with their steps. Configure them in the admin."""

    permission_classes = [permissions.IsAuthenticated]
    serializer_class = WorkflowSerializer
    lookup_field = "slug"
    lookup_url_kwarg = "workflow_id"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    queryset = Workflow.objects.none()

    def get_queryset(self) -> Any:
        return workflow_list_for_user(user=self.request.user)
