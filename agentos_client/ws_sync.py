"""The websocket protocol (docs/websocket.md) as a blocking chat client, for scripts and threads:
the same surface as the asyncio `ChatSocket` (stream, cancel, continue, resume, the session kept,
a dropped socket reopened and the run resumed), on `websockets.sync`. The protocol itself is
agentos_client._ws_core's; this only moves frames."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from agentos_client import _ws_core
from agentos_client.errors import ConnectionFailed
from agentos_client.types import Event


class SyncChatSocket(_ws_core.ChatState[Iterator[Event]]):
    """One websocket to an agent, team or workflow, blocking. Use it as a context manager; one run
    streams at a time (`stream`), and `cancel` may be called while it does (between its events, or
    from another thread: sending is thread-safe)."""

    _ws: ClientConnection | None = None
    sleep = staticmethod(time.sleep)  # tests may replace it

    def __enter__(self) -> SyncChatSocket:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Open the socket; the token travels as a subprotocol (never in the URL)."""
        try:
            ws = connect(
                self.url,
                subprotocols=_ws_core.subprotocols(self.token),  # type: ignore[arg-type]
                open_timeout=self.open_timeout,
                max_size=None,
            )
        except (InvalidStatus, OSError, TimeoutError) as exc:
            raise _ws_core.handshake_error(self.url, exc) from exc
        # Held as its context manager would hold it (websockets >= 17.1 warns about a connection
        # used without one); `close` ends it.
        self._ws = ws.__enter__()

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def send(self, frame: dict[str, Any] | str) -> None:
        if self._ws is None:
            self.connect()
        assert self._ws is not None
        self._ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    def cancel(self, run_id: str) -> None:
        """Ask the server to stop `run_id`; the stream being read ends with `RunCancelled`."""
        self.send(self.cancel_frame(run_id))

    def _follow(self, follow: _ws_core.Follow) -> Iterator[Event]:
        while not follow.done:
            try:
                if follow.reopen:  # the socket dropped: reopen it and ask for what came after the last event
                    self.connect()
                self.send(follow.next_frame())
                assert self._ws is not None
                while not follow.done:
                    event = follow.receive(self._ws.recv())
                    if event is not None:
                        yield event
            except (*_ws_core.DROPPED, ConnectionFailed) as exc:
                self._ws = None
                self.sleep(follow.dropped(exc))
