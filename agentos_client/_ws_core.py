"""What the async and the sync websocket chat share (docs/websocket.md): the URL, the handshake's
subprotocols and refusals, the frames, and the state of one followed stream (which frames to skip,
where to resume after a drop, when the stream ends, how long to wait before reopening). No I/O here:
`ws.ChatSocket` (asyncio) and `ws_sync.SyncChatSocket` (threads) only move frames."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed, InvalidStatus

from agentos_client import _core
from agentos_client.errors import AgentOSError, AuthenticationFailed, ConnectionFailed, error_from_frame
from agentos_client.types import Decision, Event, Kind

# What a dropped socket looks like, to either client.
DROPPED = (ConnectionClosed, OSError, TimeoutError)


def websocket_url(base_url: str, kind: Kind, component_id: str, *, prefix: str = "ws") -> str:
    """`http(s)://host/` → `ws(s)://host/ws/{kind}s/{id}/` (the site's default paths)."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = f"{parts.path.rstrip('/')}/{prefix}/{kind}s/{quote(component_id, safe='')}/"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def subprotocols(token: str | None) -> list[str]:
    """The token travels as a subprotocol (never in the URL, where logs would keep it)."""
    return ["agentos", f"token.{token}"] if token else ["agentos"]


def handshake_error(url: str, exc: Exception) -> AgentOSError:
    """A refused or failed handshake as the client's typed error."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return AuthenticationFailed(
                f"the site refused the websocket ({status}): a wrong token, or no such runnable for it",
                code="websocket_refused",
                status=status,
            )
        return ConnectionFailed(f"websocket handshake: HTTP {status}", code="connection_failed", status=status)
    return ConnectionFailed(f"could not open {url}: {exc}", code="connection_failed")


S = TypeVar("S")  # what a followed stream is: an async iterator of events, or an iterator


class ChatState(Generic[S]):
    """A chat socket's protocol state and calls, whatever does its I/O: frame ids, the session its
    next message continues, where each paused run it saw stopped (what a `continue` resumes after
    when the caller does not say), and the stream calls, each a `Follow` handed to the I/O's
    `_follow`."""

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
        self._ids = itertools.count(1)
        self.session_id: str | None = None  # the session of the last run: the next message continues it
        self.paused_at: dict[str, int] = {}  # run_id → the event_index of the pause a stream ended with

    def _follow(self, follow: Follow) -> S:
        raise NotImplementedError

    def stream(self, message: str, *, session_id: str | None = None, images: list[dict[str, Any]] | None = None) -> S:
        """Send a message (in `session_id`, else the session of this socket's last run, else a new
        one) and yield its events until its terminal one."""
        frame: dict[str, Any] = {"type": "run", "message": message, "id": next(self._ids)}
        session = session_id or self.session_id
        if session:
            frame["session_id"] = str(session)
        if images:
            frame["images"] = images
        return self._follow(Follow(self, frame, run_id=None, last=-1))

    def continue_run(
        self, run_id: str, decisions: Iterable[Decision | dict[str, Any]], *, after_event_index: int | None = None
    ) -> S:
        """Continue a paused run; its new events (from `RunContinued`). A drop, even before the
        first new event, is resumed from the pause (`after_event_index`, else the pause this socket
        saw the run end with): nothing lost or repeated. With neither, such a drop raises
        `ConnectionFailed` (the continue may have been taken: it is never sent twice)."""
        body = _core.decisions_body(decisions, stream=True)
        frame = {"type": "continue", "run_id": str(run_id), "decisions": body["decisions"], "id": next(self._ids)}
        after = after_event_index if after_event_index is not None else self.paused_at.get(str(run_id), -1)
        return self._follow(Follow(self, frame, run_id=str(run_id) if after >= 0 else None, last=after))

    def resume(self, run_id: str, *, after_event_index: int = -1) -> S:
        """A run's events after `after_event_index`, then live until it ends (past a pause that
        was continued, into the continuation's events, as over SSE)."""
        frame = {"type": "resume", "run_id": str(run_id), "after_event_index": after_event_index}
        return self._follow(Follow(self, frame, run_id=str(run_id), last=after_event_index))

    def cancel_frame(self, run_id: str) -> dict[str, Any]:
        return {"type": "cancel", "run_id": str(run_id), "id": next(self._ids)}


class Follow:
    """One stream followed over the socket, through drops: the frame to send (the request, or,
    after a drop, `resume` after the last `event_index` yielded), each frame received turned into
    an event to yield or skip, and the end. A pause the run was continued after (`continued`, as a
    replay sends it) is not the end: the continuation's events follow, as on SSE."""

    def __init__(self, chat: ChatState[Any], frame: dict[str, Any], *, run_id: str | None, last: int) -> None:
        self.chat = chat
        self.frame = frame
        self.run_id = run_id
        self.last = last
        self.failures = 0
        self.sent = False
        self.done = False

    @property
    def reopen(self) -> bool:
        """Whether the socket must be opened again first (the request went out on one that dropped)."""
        return self.sent

    def next_frame(self) -> str:
        if not self.sent:
            self.sent = True
            return json.dumps(self.frame)
        return json.dumps({"type": "resume", "run_id": self.run_id, "after_event_index": self.last})

    def receive(self, text: str | bytes) -> Event | None:
        """The event a frame carries (None: nothing to yield); an `Error` frame raised. Once it
        returns the stream's last event, `done` is set."""
        data = json.loads(text)
        name = data.get("event")
        if name == "Error":
            raise error_from_frame(data)
        if name == "CancelRequested":
            return None  # the answer to `cancel`; the run's own RunCancelled follows
        event = Event.from_dict(data)
        if self.run_id is None and event.run_id and not event.parent_run_id:
            self.run_id = event.run_id
        if event.session_id and not event.parent_run_id:
            self.chat.session_id = event.session_id
        if event.event_index is not None:
            if event.event_index <= self.last:
                return None  # seen before the drop
            self.last = event.event_index
        self.failures = 0
        if event.is_terminal or name == "RunEnded":
            self.done = True
            _core.note_pause(self.chat.paused_at, self.run_id, event)
        return event

    def dropped(self, exc: Exception) -> float:
        """After a drop (or a failed reopen): seconds to wait before reopening, or the error raised
        when the run is not known yet (a run frame must not be sent twice) or retries are spent."""
        if self.run_id is None:
            if isinstance(exc, ConnectionFailed):
                raise exc
            raise ConnectionFailed(
                f"the socket closed before the stream's first event: {exc}", code="connection_failed"
            ) from exc
        self.failures += 1
        if self.failures > self.chat.retry.stream_retries:
            if isinstance(exc, ConnectionFailed):
                raise exc
            raise ConnectionFailed(f"could not resume run {self.run_id}: {exc}", code="connection_failed") from exc
        return self.chat.retry.resume_delay(self.failures)
