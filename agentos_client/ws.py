"""The websocket protocol (docs/websocket.md) as an asyncio chat client: send a message and read
its events, cancel, continue a paused run; a socket that drops mid-answer is reopened and the run
resumed (`resume` after the last `event_index` seen), so no event is lost or repeated. The protocol
itself (frames, resume points, the end of a stream) is agentos_client._ws_core's, shared with the
sync `SyncChatSocket`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from agentos_client import _core, _ws_core
from agentos_client._ws_core import websocket_url
from agentos_client.errors import ConnectionFailed
from agentos_client.types import Decision, Event, Kind

__all__ = ["ChatSocket", "websocket_url"]


class ChatSocket(_ws_core.ChatState):
    """One websocket to an agent, team or workflow. Use it as an async context manager; one run
    streams at a time (`stream`), and `cancel` may be sent while it does (from another task)."""

    def __init__(
        self,
        base_url: str,
        kind: Kind,
        component_id: str,
        *,
        token: str | None,
        retry: _core.RetryPolicy | None = None,
        url: str | None = None,
        open_timeout: float = 10.0,
        prefix: str = "ws",
    ) -> None:
        super().__init__(base_url, kind, component_id, token=token, retry=retry, url=url, prefix=prefix)
        self.open_timeout = open_timeout
        self._ws: ClientConnection | None = None

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

    def stream(
        self, message: str, *, session_id: str | None = None, images: list[dict[str, Any]] | None = None
    ) -> AsyncIterator[Event]:
        """Send a message (in `session_id`, else the session of this socket's last run, else a new
        one) and yield its events until its terminal one."""
        return self._follow(self.run_follow(message, session_id, images))

    def continue_run(
        self, run_id: str, decisions: Iterable[Decision | dict[str, Any]], *, after_event_index: int | None = None
    ) -> AsyncIterator[Event]:
        """Continue a paused run; its new events. `after_event_index`: the `RunPaused` event's
        (by default, that of the pause this socket streamed)."""
        return self._follow(self.continue_follow(run_id, decisions, after_event_index))

    def resume(self, run_id: str, *, after_event_index: int = -1) -> AsyncIterator[Event]:
        """A run's events after `after_event_index`, then live until it ends (past a pause that
        was continued, into the continuation's events)."""
        return self._follow(self.resume_follow(run_id, after_event_index))

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
