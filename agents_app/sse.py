"""Server-Sent Events framing of run events: `event: <Name>` then `data: <json>`, one per frame;
with `ids`, a run event's frame starts with `id: <event_index>`, so that a browser's EventSource
resumes where it left off when it reconnects (it sends the last id as `Last-Event-ID`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from django.http import StreamingHttpResponse
from rest_framework.renderers import BaseRenderer

from agents_app.events import RunEvent
from sessions_app.errors import DomainError, ws_error_frame


def sse_frame(event: RunEvent | dict[str, Any], *, with_id: bool = False) -> bytes:
    """One frame, for an event of this process or one that arrived as a dict (another process, the database).

    `with_id`: a run event's frame gets an `id:` line, its `event_index`; a frame that is not one of
    the run's events (the `RunEnded` notice, an `Error`) gets none, so it leaves the last id as it was."""
    data = event if isinstance(event, dict) else event.to_dict()
    frame = b"event: " + str(data.get("event", "message")).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
    index = data.get("event_index")
    if with_id and isinstance(index, int):
        return b"id: %d\n" % index + frame
    return frame


async def _frames(events: AsyncIterator[Any], with_id: bool) -> AsyncIterator[bytes]:
    try:
        async for item in events:
            if isinstance(item, list):  # a batch (LiveRun.follow_batches): one write for all its frames
                yield b"".join(sse_frame(event, with_id=with_id) for event in item)
            else:
                yield sse_frame(item, with_id=with_id)
    except DomainError as exc:  # e.g. the run's process is gone: an Error frame, as on the websocket
        yield sse_frame(ws_error_frame(exc))
    finally:
        await events.aclose()  # type: ignore[attr-defined]  # stop feeding a reader that left


def sse_response(events: AsyncIterator[Any], *, ids: bool = False) -> StreamingHttpResponse:
    """The stream of `events` (each item an event, or a list of events sent in one write); `ids`
    for a stream a browser's EventSource may reconnect to (a GET)."""
    response = StreamingHttpResponse(_frames(events, ids), content_type="text/event-stream")
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


async def starting_with(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """`first`, then `rest`: the stream of an iterator whose first item was read ahead."""
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
