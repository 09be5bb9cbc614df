"""REST counterparts of the websocket's cancel and resume, for any run of any kind (started over
REST, a websocket or Python), served by whichever process gets the request (agents_app.runtime finds
the run wherever it executes)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from agents_app.runtime import RunNotFound, runtime
from agents_app.serializers import ServerSentEventSerializer
from agents_app.sse import EventStreamRenderer, sse_response, starting_with
from sessions_app.access import allowed_for
from sessions_app.api_base import AsyncAPIView
from sessions_app.models import Run
from sessions_app.selectors import run_status_for_user

RUN_ID = OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class RunCancelApi(AsyncAPIView):
    """Stop one of my runs, wherever it executes."""

    permission_classes = [permissions.IsAuthenticated]

    def prepare_post(self, request: Any, run_id: UUID) -> None:
        run_check_allowed(request, run_id)

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

    def prepare_get(self, request: Any, run_id: UUID) -> tuple[int, bool]:
        """Where to resume, and whether this is an EventSource reconnecting to a run that has ended.

        A browser's EventSource reconnects by itself when a stream ends, with the URL it was opened
        with (often `after_event_index=-1`) and the last `id:` it got as `Last-Event-ID`: the later
        of the two wins, so it resumes where it left off instead of replaying the run."""
        after = _event_index(request.query_params.get("after_event_index", "-1"), "after_event_index")
        header = request.headers.get("Last-Event-ID", "").strip()
        if not header:
            run_check_allowed(request, run_id)
            return after, False
        after = max(after, _event_index(header, "Last-Event-ID"))
        allowed = allowed_for(request.auth, request.user)
        status = run_status_for_user(user=request.user, run_id=run_id, allowed=allowed)
        if status is None and not allowed.everything:
            raise RunNotFound()
        return after, status is not None and status != Run.Status.RUNNING

    @extend_schema(
        summary="Stream one of my runs' events (resume)",
        description=(
            "Server-Sent Events, as the streaming run endpoint sends them: every event after "
            "`after_event_index` (-1, the default: all of them), then the live ones until the terminal "
            "event (`RunCompleted`, `RunError` or `RunCancelled`). Works for a finished run too (replayed "
            "from the database) and from any server process. Each frame of a run event has an `id:` line, "
            "its `event_index`, so a browser's `EventSource` that reconnects sends it back as `Last-Event-ID` "
            "and resumes where it left off. Asked from past the end of a run that has ended, the stream is "
            "one `RunEnded` notice; for a reconnect (`Last-Event-ID`), a 204, which stops an EventSource."
        ),
        parameters=[
            RUN_ID,
            OpenApiParameter("after_event_index", OpenApiTypes.INT, description="The last event_index you saw."),
            OpenApiParameter(
                "Last-Event-ID",
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                description="Sent by EventSource on a reconnect: the last `id:` it got. The later of this "
                "and `after_event_index` is where the stream resumes.",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                ServerSentEventSerializer,
                description="`id: <event_index>` / `event: <Name>` / `data: <json>`, one frame per run event.",
            ),
            204: OpenApiResponse(description="A reconnect (`Last-Event-ID`) to a run that has ended: nothing more."),
            400: OpenApiResponse(description="after_event_index or Last-Event-ID is not an integer >= -1."),
            401: OpenApiResponse(description="Not authenticated."),
            404: OpenApiResponse(description="No such run of yours."),
        },
    )
    async def get(self, request: Any, run_id: UUID) -> Any:
        after, reconnect_to_ended_run = self.prepared
        events = await runtime.subscribe(run_id, user=request.user, after_event_index=after)
        if reconnect_to_ended_run:
            # Nothing left but the `RunEnded` notice: 204, the one answer after which an EventSource
            # stops reconnecting (a stream with the notice would have it back every few seconds).
            first = await anext(events, None)
            if first is None or (first.get("event") == "RunEnded" and "event_index" not in first):
                await events.aclose()  # type: ignore[attr-defined]
                response = HttpResponse(status=status.HTTP_204_NO_CONTENT)
                del response["Content-Type"]
                return response
            events = starting_with(first, events)
        return sse_response(events, ids=True)


def run_check_allowed(request: Any, run_id: UUID) -> None:
    """A run of a runnable outside the request's scope (a scoped API token) does not exist for it:
    the runtime's 404. One query, and only for a scoped token (the runtime checks the owner)."""
    allowed = allowed_for(request.auth, request.user)
    if not allowed.everything and run_status_for_user(user=request.user, run_id=run_id, allowed=allowed) is None:
        raise RunNotFound()


def _event_index(raw: str, name: str) -> int:
    """An event index a client sent: an integer >= -1, or a 400 on `name`."""
    try:
        value = int(raw)
    except ValueError:
        value = -2
    if value < -1:
        raise ValidationError({name: ["Must be an integer >= -1."]})
    return value
