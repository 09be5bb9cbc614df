"""Server-Sent Events framing of run events: `event: <Name>` then `data: <json>`, one per frame."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from django.http import StreamingHttpResponse

from agents_app.events import RunEvent


def sse_frame(event: RunEvent) -> bytes:
    return b"event: " + event.name.encode() + b"\ndata: " + orjson.dumps(event.to_dict()) + b"\n\n"


async def _frames(events: AsyncIterator[RunEvent]) -> AsyncIterator[bytes]:
    async for event in events:
        yield sse_frame(event)


def sse_response(events: AsyncIterator[RunEvent]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_frames(events), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # tell nginx not to buffer the stream
    return response
