"""The websocket protocol (docs/websocket.md) as an asyncio chat client: send a message and read
its events, cancel, continue a paused run; a socket that drops mid-answer is reopened and the run
resumed (`resume` after the last `event_index` seen), so no event is lost or repeated. The protocol
itself (frames, resume points, the end of a stream) is agentos_client._ws_core's, shared with the
sync `SyncChatSocket`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from agentos_client import _ws_core
from agentos_client._ws_core import websocket_url
from agentos_client.errors import ConnectionFailed
from agentos_client.types import Event

__all__ = ["ChatSocket", "websocket_url"]


class ChatSocket(_ws_core.ChatState[AsyncIterator[Event]]):
    """One websocket to an agent, team or workflow. Use it as an async context manager; one run
    streams at a time (`stream`), and `cancel` may be sent while it does (from another task)."""

    _ws: ClientConnection | None = None

    async def __aenter__(self) -> ChatSocket:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the socket; the token travels as a subprotocol (never in the URL)."""
        try:
            self._ws = await connect(
                self.url,
                subprotocols=_ws_core.subprotocols(self.token),  # type: ignore[arg-type]
                open_timeout=self.open_timeout,
                max_size=None,
            )
        except (InvalidStatus, OSError, TimeoutError) as exc:
            raise _ws_core.handshake_error(self.url, exc) from exc

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def send(self, frame: dict[str, Any] | str) -> None:
        if self._ws is None:
            await self.connect()
        assert self._ws is not None
        await self._ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def cancel(self, run_id: str) -> None:
        """Ask the server to stop `run_id`; the stream being read ends with `RunCancelled`."""
        await self.send(self.cancel_frame(run_id))

    async def _follow(self, follow: _ws_core.Follow) -> AsyncIterator[Event]:
        while not follow.done:
            try:
                if follow.reopen:  # the socket dropped: reopen it and ask for what came after the last event
                    await self.connect()
                await self.send(follow.next_frame())
                assert self._ws is not None
                while not follow.done:
                    event = follow.receive(await self._ws.recv())
                    if event is not None:
                        yield event
            except (*_ws_core.DROPPED, ConnectionFailed) as exc:
                self._ws = None
                await asyncio.sleep(follow.dropped(exc))
