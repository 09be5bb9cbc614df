"""Server-Sent Events framing of run events: `event: <Name>` then `data: <json>`, one per frame."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from django.http import StreamingHttpResponse
from rest_framework.renderers import BaseRenderer

from agents_app.events import RunEvent
from sessions_app.errors import DomainError, ws_error_frame


def sse_frame(event: RunEvent | dict[str, Any]) -> bytes:
    """One frame, for an event of this process or one that arrived as a dict (another process, the database)."""
    data = event if isinstance(event, dict) else event.to_dict()
    return b"event: " + str(data.get("event", "message")).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _frames(events: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield sse_frame(event)
    except DomainError as exc:  # e.g. the run's process is gone: an Error frame, as on the websocket
        yield sse_frame(ws_error_frame(exc))
    finally:
        await events.aclose()  # type: ignore[attr-defined]  # stop feeding a reader that left


def sse_response(events: AsyncIterator[Any]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_frames(events), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # tell nginx not to buffer the stream
    return response


class EventStreamRenderer(BaseRenderer):
    """Lets content negotiation accept `Accept: text/event-stream` (what browsers' EventSource and
    most SSE clients send) on the views that stream; the stream itself is `sse_response`. An error
    answered before any stream starts is rendered as its JSON body."""

    media_type = "text/event-stream"
    format = "event-stream"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return b"" if data is None else orjson.dumps(data)
