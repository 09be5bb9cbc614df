"""Continue a paused run over REST (docs/human-in-the-loop.md): a decision per pending tool call,
answered as JSON or as the continuation's events (SSE). Served by any process: the paused run's
state is in the database."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions
from rest_framework.renderers import JSONRenderer

from agents_app import runs
from agents_app.apis_runs import run_check_allowed
from agents_app.decisions import RunContinueInputSerializer, decisions_from
from agents_app.serializers import RunOutputSerializer, ServerSentEventSerializer
from agents_app.sse import EventStreamRenderer, sse_response
from sessions_app.api_base import BODY_ERRORS, AsyncAPIView, error_responses
from sessions_app.errors import run_http_status


class RunContinueApi(AsyncAPIView):
    """Continue one of my paused runs."""

    permission_classes = [permissions.IsAuthenticated]
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    def prepare_post(self, request: Any, run_id: UUID) -> tuple[Any, bool]:
        run_check_allowed(request, run_id)  # a scoped API token's runnables only
        serializer = RunContinueInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        handle = runs.continue_prepare(
            run_id, user=request.user, decisions=decisions_from(data["decisions"]), channel="api"
        )
        return handle, data["stream"]

    @extend_schema(
        summary="Continue one of my paused runs",
        description=(
            "A run that paused (status `paused`, stream ended with `RunPaused`) waits for a decision on each of its "
            "pending tool calls: approve (with arguments filled in or edited, or an externally executed call's "
            "`result`) or reject (with a note the model is told). The run then goes on as the same run: "
            "`RunContinued`, the approved calls' events, the model's answer (it may pause again). Any server "
            "process can continue it. The answer is the whole run's result, or with `stream`, the continuation's "
            "events as Server-Sent Events."
        ),
        parameters=[OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        request=RunContinueInputSerializer,
        responses={
            (200, "application/json"): OpenApiResponse(RunOutputSerializer, description="The run's result."),
            (200, "text/event-stream"): OpenApiResponse(
                ServerSentEventSerializer, description="With stream=true: the continuation's events."
            ),
            **error_responses(
                *BODY_ERRORS,
                401,
                403,
                404,
                409,
                e400="Invalid decisions: a pending call without one (`invalid_decision`), a tool call id the run does "
                "not wait for (`unknown_tool_call`), arguments the tool refuses, a missing external result.",
                e404="No such run of yours, or its agent is gone.",
                e409="The run does not wait for a decision (`run_not_paused`): it ended, expired, or was continued.",
            ),
        },
    )
    async def post(self, request: Any, run_id: UUID) -> Any:
        handle, stream = self.prepared
        if stream:
            return sse_response(runs.continue_follow(handle))
        result = await runs.wait_result(handle)
        return HttpResponse(orjson.dumps(result), status=run_http_status(result), content_type="application/json")
