"""REST counterparts of the websocket's cancel and resume, for any run (started over REST, a
websocket or Python), served by whichever process gets the request (agents_app.runtime finds the
run wherever it executes). Also the REST run endpoint's handling of busy sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.response import Response

from agents_app.async_views import AsyncAPIView
from agents_app.engine.runner import InvalidRunInput, RunHandle
from agents_app.runtime import RunNotFound, RunUnavailable, SessionBusy, runtime
from agents_app.selectors import AgentNotFound
from agents_app.serializers import ServerSentEventSerializer
from sessions_app.services import SessionEnded, SessionNotFound


class SessionConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The session is still answering a previous message."
    default_code = "session_busy"


class SessionEndedConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The session has ended; it takes no more messages."
    default_code = "session_ended"


@dataclass(slots=True)
class DeferredStart:
    """A run whose session was busy under a "queue" or "interrupt" policy: it is prepared later, in
    the async handler, so the wait never holds the thread that serves every sync request."""

    agent_id: str
    user: Any
    message: str
    session_id: UUID | None

    async def prepare(self) -> RunHandle:
        try:
            return await runtime.prepare(
                agent_id=self.agent_id, user=self.user, message=self.message, session_id=self.session_id
            )
        except SessionBusy as exc:
            raise SessionConflict(str(exc)) from None
        except SessionEnded as exc:
            raise SessionEndedConflict(str(exc)) from None
        except AgentNotFound:
            raise NotFound(f"No agent with id {self.agent_id!r}.") from None
        except SessionNotFound:
            raise NotFound(f"No session {self.session_id} for agent {self.agent_id!r}.") from None
        except InvalidRunInput as exc:
            raise ValidationError({"message": [str(exc)]}) from None


def busy_session(exc: SessionBusy, *, agent_id: str, user: Any, data: dict[str, Any]) -> DeferredStart:
    """For the run endpoint's sync preparation: 409 under the "reject" policy, else a start to
    finish asynchronously (`await resolve_start(...)`)."""
    if exc.policy not in ("queue", "interrupt"):
        raise SessionConflict(str(exc))
    return DeferredStart(agent_id=agent_id, user=user, message=data["message"], session_id=data.get("session_id"))


async def resolve_start(handle: RunHandle | DeferredStart) -> RunHandle:
    return await handle.prepare() if isinstance(handle, DeferredStart) else handle


def sse_dict_frame(event: dict[str, Any]) -> bytes:
    """The same framing as agents_app.sse, for events that arrive as dicts (from another process
    or the database)."""
    return b"event: " + str(event.get("event", "message")).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


async def _frames(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield sse_dict_frame(event)
    except RunUnavailable as exc:
        yield (
            b"event: Error\ndata: "
            + orjson.dumps({"event": "Error", "error_type": "run_unavailable", "content": str(exc)})
            + b"\n\n"
        )
    finally:
        await events.aclose()  # type: ignore[attr-defined]


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
        try:
            result = await runtime.cancel(run_id, user=request.user)
        except RunNotFound:
            raise NotFound("No such run.") from None
        return Response({"run_id": str(run_id), "status": result}, status=status.HTTP_202_ACCEPTED)


class RunEventsApi(AsyncAPIView):
    """Resume a run's event stream after the last event a client saw."""

    permission_classes = [permissions.IsAuthenticated]

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
        from django.http import StreamingHttpResponse

        raw = request.query_params.get("after_event_index", "-1")
        try:
            after = int(raw)
        except ValueError:
            after = -2
        if after < -1:
            raise ValidationError({"after_event_index": ["Must be an integer >= -1."]})
        try:
            events = await runtime.subscribe(run_id, user=request.user, after_event_index=after)
        except RunNotFound:
            raise NotFound("No such run.") from None
        response = StreamingHttpResponse(_frames(events), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
