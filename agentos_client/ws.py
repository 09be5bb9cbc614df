"""The websocket protocol (docs/websocket.md) as an asyncio chat client: send a message and read
its events, cancel, continue a paused run; a socket that drops mid-answer is reopened and the run
resumed (`resume` after the last `event_index` seen), so no event is lost or repeated."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agentos_client import _core
from agentos_client.errors import AuthenticationFailed, ConnectionFailed, error_from_frame
from agentos_client.types import Decision, Event, Kind

# Frames that end what `stream` reads: the run's own terminal events, and the resume notice.
_END = frozenset({"RunEnded"})


def websocket_url(base_url: str, kind: Kind, component_id: str, *, prefix: str = "ws") -> str:
    """`http(s)://host/` → `ws(s)://host/ws/{kind}s/{id}/` (the site's default paths)."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = f"{parts.path.rstrip('/')}/{prefix}/{kind}s/{quote(component_id, safe='')}/"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class ChatSocket:
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
        self.url = url or websocket_url(base_url, kind, component_id, prefix=prefix)
        self.token = token
        self.retry = retry or _core.RetryPolicy()
        self.open_timeout = open_timeout
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self.session_id: str | None = None  # the session of the last run: the next message continues it

    async def __aenter__(self) -> ChatSocket:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the socket; the token travels as a subprotocol (never in the URL)."""
        protocols = ["agentos", f"token.{self.token}"] if self.token else ["agentos"]
        try:
            self._ws = await connect(
                self.url,
                subprotocols=protocols,  # type: ignore[arg-type]
                open_timeout=self.open_timeout,
                max_size=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise AuthenticationFailed(
                    f"the site refused the websocket ({status}): a wrong token, or no such runnable for it",
                    code="websocket_refused",
                    status=status,
                ) from exc
            raise ConnectionFailed(
                f"websocket handshake: HTTP {status}", code="connection_failed", status=status
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise ConnectionFailed(f"could not open {self.url}: {exc}", code="connection_failed") from exc

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def send(self, frame: dict[str, Any]) -> None:
        if self._ws is None:
            await self.connect()
        assert self._ws is not None
        await self._ws.send(json.dumps(frame))

    async def cancel(self, run_id: str) -> None:
        """Ask the server to stop `run_id`; the stream being read ends with `RunCancelled`."""
        await self.send({"type": "cancel", "run_id": str(run_id), "id": next(self._ids)})

    def stream(
        self, message: str, *, session_id: str | None = None, images: list[dict[str, Any]] | None = None
    ) -> AsyncIterator[Event]:
        """Send a message (in `session_id`, else the session of this socket's last run, else a new
        one) and yield its events until its terminal one."""
        frame: dict[str, Any] = {"type": "run", "message": message, "id": next(self._ids)}
        session = session_id or self.session_id
        if session:
            frame["session_id"] = str(session)
        if images:
            frame["images"] = images
        return self._follow(frame, run_id=None, last=-1)

    def continue_run(
        self, run_id: str, decisions: Iterable[Decision | dict[str, Any]], *, after_event_index: int = -1
    ) -> AsyncIterator[Event]:
        """Continue a paused run; its new events. `after_event_index`: the `RunPaused` event's."""
        body = _core.decisions_body(decisions, stream=True)
        frame = {"type": "continue", "run_id": str(run_id), "decisions": body["decisions"], "id": next(self._ids)}
        return self._follow(frame, run_id=str(run_id), last=after_event_index)

    def resume(self, run_id: str, *, after_event_index: int = -1) -> AsyncIterator[Event]:
        """A run's events after `after_event_index`, then live until it ends."""
        frame = {"type": "resume", "run_id": str(run_id), "after_event_index": after_event_index}
        return self._follow(frame, run_id=str(run_id), last=after_event_index)

    async def _follow(self, frame: dict[str, Any], *, run_id: str | None, last: int) -> AsyncIterator[Event]:
        failures = 0
        sent = False
        while True:
            try:
                if not sent:
                    await self.send(frame)
                    sent = True
                else:  # the socket dropped: reopen it and ask for what came after `last`
                    await self.connect()
                    await self.send({"type": "resume", "run_id": run_id, "after_event_index": last})
                assert self._ws is not None
                while True:
                    data = json.loads(await self._ws.recv())
                    name = data.get("event")
                    if name == "Error":
                        raise error_from_frame(data)
                    if name == "CancelRequested":
                        continue  # the answer to `cancel`; the run's own RunCancelled follows
                    event = Event.from_dict(data)
                    if run_id is None and event.run_id and not event.parent_run_id:
                        run_id = event.run_id
                    if event.session_id and not event.parent_run_id:
                        self.session_id = event.session_id
                    if event.event_index is not None:
                        if event.event_index <= last:
                            continue
                        last = event.event_index
                    failures = 0
                    yield event
                    if event.is_terminal or name in _END:
                        return
            except (ConnectionClosed, OSError, TimeoutError) as exc:
                self._ws = None
                if run_id is None:
                    raise ConnectionFailed(
                        f"the socket closed before the run started: {exc}", code="connection_failed"
                    ) from exc
                failures += 1
                if failures > self.retry.stream_retries:
                    raise ConnectionFailed(f"could not resume run {run_id}: {exc}", code="connection_failed") from exc
                await asyncio.sleep(self.retry.resume_delay(failures))
            except ConnectionFailed:
                if run_id is None:
                    raise
                failures += 1
                if failures > self.retry.stream_retries:
                    raise
                await asyncio.sleep(self.retry.resume_delay(failures))
