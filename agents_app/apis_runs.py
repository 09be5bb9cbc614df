"""REST counterparts of the websocket's cancel and resume, for any run of any kind (started over
REST, a websocket or Python), served by whichever process gets the request (agents_app.runtime finds
the run wherever it executes)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from agents_app.runtime import runtime
from agents_app.serializers import ServerSentEventSerializer
from agents_app.sse import EventStreamRenderer, sse_response
from sessions_app.api_base import AsyncAPIView

RUN_ID = OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class RunCancelApi(AsyncAPIView):
    """Stop one of my runs, wherever it executes."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        summary="Cancel one of my runs",
        description=(
            "Stops the model call and the tool loop promptly; the run is stored as `cancelled` with what it "
            "produced so far, and its stream ends with `RunCancelled`. Idempotent: for a run that has ended, "
            "nothing changes and `status` is its final status."
        ),
        parameters=[RUN_ID],
        request=None,
        responses={
            202: inline_serializer(
                "RunCancelAccepted",
                {
                    "run_id": serializers.UUIDField(),
                    "status": serializers.CharField(help_text="`cancelling`, or the final status of an ended run."),
                },
            ),
            401: OpenApiResponse(description="Not authenticated."),
            403: OpenApiResponse(description="Cookie authentication without a CSRF token."),
            404: OpenApiResponse(description="No such run of yours."),
        },
    )
    async def post(self, request: Any, run_id: UUID) -> Response:
        result = await runtime.cancel(run_id, user=request.user)
        return Response({"run_id": str(run_id), "status": result}, status=status.HTTP_202_ACCEPTED)


class RunEventsApi(AsyncAPIView):
    """Resume a run's event stream after the last event a client saw."""

    permission_classes = [permissions.IsAuthenticated]
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        summary="Stream one of my runs' events (resume)",
        description=(
            "Server-Sent Events, as the streaming run endpoint sends them: every event after "
            "`after_event_index` (-1, the default: all of them), then the live ones until the terminal "
            "event (`RunCompleted`, `RunError` or `RunCancelled`). Works for a finished run too (replayed "
            "from the database) and from any server process."
        ),
        parameters=[
            RUN_ID,
            OpenApiParameter("after_event_index", OpenApiTypes.INT, description="The last event_index you saw."),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                ServerSentEventSerializer, description="`event: <Name>` / `data: <json>`, one frame per run event."
            ),
            400: OpenApiResponse(description="after_event_index is not an integer >= -1."),
            401: OpenApiResponse(description="Not authenticated."),
            404: OpenApiResponse(description="No such run of yours."),
        },
    )
    async def get(self, request: Any, run_id: UUID) -> Any:
        raw = request.query_params.get("after_event_index", "-1")
        try:
            after = int(raw)
        except ValueError:
            after = -2
        if after < -1:
            raise ValidationError({"after_event_index": ["Must be an integer >= -1."]})
        return sse_response(await runtime.subscribe(run_id, user=request.user, after_event_index=after))
