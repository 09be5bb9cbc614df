"""The websocket edge: chat with one agent, team or workflow at `ws/agents/<agent_id>/`,
`ws/teams/<team_id>/` or `ws/workflows/<workflow_id>/` (one consumer; the kind is given by the route).
Frames in, run events out.

Thin on purpose: the runtime starts, follows and cancels runs; this translates frames. Client
frames (JSON text):

    {"type": "run", "message": "...", "session_id": "<uuid, optional>", "images": [...], "id": <optional>}
    {"type": "cancel", "run_id": "<uuid>", "id": <optional>}
    {"type": "resume", "run_id": "<uuid>", "after_event_index": N, "id": <optional>}
    {"type": "continue", "run_id": "<uuid>", "decisions": [{"tool_call_id", "decision", ...}], "id": <optional>}

`continue` goes on with a paused run (docs/human-in-the-loop.md): a decision per pending tool call,
as `POST /api/runs/{run_id}/continue` takes them; the continuation's events follow (RunContinued
first), like a run's.

Server frames are the run events, exactly as SSE sends them (`event.to_dict()`, with `event_index`),
plus two of our own: `{"event": "Error", "error_type", "code", "content", "detail", "id"?, "run_id"?}`
for a frame we cannot act on (the connection stays open; `code` as on the REST API, sessions_app.errors),
and `{"event": "CancelRequested", "run_id", "status"}`
when a cancel was accepted. A client that loses its connection reconnects and sends `resume` with
the last `event_index` it saw; the run went on meanwhile, in whichever process runs it.

`images` (optional) is the REST API's JSON list (`{"url": ...}` or `{"data": <base64>, ...}`, each
with an optional `detail`), checked by sessions_app.images: a refused image is an `Error` frame
(`image_too_large`, `unsupported_media_type`, `invalid_image`, `too_many_images`) and nothing is
stored.

With a scoped API token (agents_app.ws_auth puts it in the scope): a socket for a runnable outside
the token's list is refused like an unknown one (4404), as are `cancel` and `resume` of another
runnable's runs (`not_found`); a read-only token may `resume` but not `run` or `cancel`
(`token_read_only`). The token is checked again before a frame once API_TOKEN_LAST_USED_SECONDS have
passed: revoked or expired, the socket gets an `Error` frame (`token_revoked` / `token_expired`)
and is closed (4401).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from uuid import UUID

import orjson
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from agents_app import runs
from agents_app.decisions import RunContinueInputSerializer, decisions_from
from agents_app.runtime import runtime
from agents_app.ws_auth import SUBPROTOCOL
from sessions_app.access import allowed_for
from sessions_app.conf import agentos_settings
from sessions_app.errors import AuthenticationError, DomainError, ws_error, ws_error_frame
from sessions_app.images import encoded_allowance, image_text_chars, images_from_json
from sessions_app.inputs import InvalidInput, parse_json
from sessions_app.selectors import run_status_for_user
from sessions_app.tokens import TokenReadOnly, token_refresh
from telemetry_app.metrics import websocket_closed, websocket_opened

logger = logging.getLogger(__name__)

# Close codes before accepting (the handshake is refused; browsers see a failed connection).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_UNKNOWN_AGENT = 4404  # (any kind: agent, team or workflow)


def max_frame_chars(*, images: bool = False) -> int:
    """A frame may carry a message of MAX_MESSAGE_CHARS plus JSON escaping and the other fields;
    with `images`, also room for its images (IMAGE_MAX_COUNT of IMAGE_MAX_BYTES, as base64 text),
    which do not count against the rest."""
    return 2 * int(agentos_settings.MAX_MESSAGE_CHARS) + 4096 + (encoded_allowance() if images else 0)


class ChatConsumer(AsyncJsonWebsocketConsumer):
    # No channel per connection: the runtime feeds events through in-process queues, so an idle
    # socket costs no channel-layer receive (on Redis, one fewer blocking command per socket).
    channel_layer_alias = "__agentos_none__"
    # Which kind of run this socket starts: set per route (`ChatConsumer.as_asgi(kind="team")`).
    kind = "agent"
    # No groups (there is no channel layer); a tuple, so that Channels does not give each socket a list.
    groups = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Channels checks as_asgi's keyword arguments against the class but does not set them.
        self.kind = kwargs.pop("kind", self.kind)
        super().__init__(*args, **kwargs)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Channels' AsyncConsumer.__call__ for a consumer without a channel layer: await the
        client's messages directly instead of through `await_many_dispatch`, which keeps a Task
        per pending receive and an `asyncio.wait` around it, about 3 KiB per idle socket
        (docs/benchmarks.md#idle-websockets). Same order and errors: one message dispatched at a
        time, StopConsumer (after disconnect) ends it."""
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:  # (a try, not contextlib.suppress: no object kept for the socket's life)
            pass

    async def connect(self) -> None:
        self.counted = False  # in the open-websockets gauge
        self.streams: dict[str, asyncio.Task[None]] = {}
        # Runs being started or continued; a dict as an ordered set (an empty set costs 216 bytes per socket).
        self.starting: dict[asyncio.Task[None], None] = {}
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        self.api_token = self.scope.get("api_token")  # a scoped API token (ws_auth), or None
        self.token_checked_at = time.monotonic()
        self.allowed = await database_sync_to_async(allowed_for)(self.api_token, self.user)
        self.component_id = self.scope["url_route"]["kwargs"][f"{self.kind}_id"]
        try:
            await database_sync_to_async(runs.component_get_active)(self.kind, self.component_id, allowed=self.allowed)
        except DomainError:
            await self.close(code=CLOSE_UNKNOWN_AGENT)
            return
        offered = self.scope.get("subprotocols") or []
        await self.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        websocket_opened(self.kind)
        self.counted = True

    async def disconnect(self, code: int) -> None:
        # Stop reading; the runs themselves go on (and are stored) whoever reads them.
        if getattr(self, "counted", False):
            websocket_closed(self.kind)
            self.counted = False
        for task in [*getattr(self, "streams", {}).values(), *getattr(self, "starting", ())]:
            task.cancel()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if text_data is None:
            await self.error("bad_frame", "Frames must be JSON text, not binary.")
            return
        if len(text_data) > max_frame_chars(images=True):
            await self.error("frame_too_large", f"Frames are limited to {max_frame_chars()} characters besides images.")
            return
        try:
            frame = parse_json(text_data, field="frame")  # strict, and no NUL, lone surrogate or deep nesting
        except InvalidInput as exc:
            await self.error("bad_frame", f"Frames must be JSON: {exc.detail}")
            return
        if not isinstance(frame, dict):
            await self.error("bad_frame", "A frame must be a JSON object with a 'type'.")
            return
        if len(text_data) - image_text_chars(frame) > max_frame_chars():
            await self.error("frame_too_large", f"Frames are limited to {max_frame_chars()} characters besides images.")
            return
        await self.receive_json(frame)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        ref = {"id": content["id"]} if "id" in content else {}
        if not await self.token_still_live(ref):
            return
        if (
            content.get("type") in ("run", "cancel", "continue")
            and self.api_token is not None
            and self.api_token.read_only
        ):
            await self.send_json(
                ws_error_frame(TokenReadOnly(f"This API token is read-only: no {content['type']}."), **ref)
            )
            return
        match content.get("type"):
            case "run":
                await self.on_run(content, ref)
            case "cancel":
                await self.on_cancel(content, ref)
            case "resume":
                await self.on_resume(content, ref)
            case "continue":
                await self.on_continue(content, ref)
            case other:
                await self.error(
                    "unknown_type", f"Unknown frame type {other!r}; use run, cancel, resume or continue.", **ref
                )

    # ---- frames ----------------------------------------------------------------------------

    async def on_run(self, frame: dict[str, Any], ref: dict[str, Any]) -> None:
        message = frame.get("message")
        if not isinstance(message, str):
            await self.error("invalid_input", "'message' must be a string.", **ref)
            return
        session_id = frame.get("session_id")
        if session_id is not None:
            session_id = _uuid(session_id)
            if session_id is None:
                await self.error("unknown_session", "No such session.", **ref)
                return
        # Its own task: a queued run may wait, and this connection must keep reading (to cancel).
        task = asyncio.ensure_future(self.start_and_stream(message, session_id, ref, frame.get("images")))
        self.starting[task] = None
        task.add_done_callback(self._started)

    def _started(self, task: asyncio.Task[None]) -> None:
        self.starting.pop(task, None)

    async def start_and_stream(
        self, message: str, session_id: UUID | None, ref: dict[str, Any], images: Any = None
    ) -> None:
        try:
            # Decoding and checking base64 images is CPU work: off the event loop when there are some.
            checked = await sync_to_async(images_from_json, thread_sensitive=False)(images) if images else []
            # Again for each run: the runnable may have been restricted since the socket opened.
            self.allowed = await database_sync_to_async(allowed_for)(self.api_token, self.user)
            handle = await runs.prepare(
                self.kind,
                self.component_id,
                user=self.user,
                message=message,
                session_id=session_id,
                images=checked,
                allowed=self.allowed,
            )
        except DomainError as exc:
            await self.send_json(ws_error_frame(exc, **ref))
            return
        live = runs.launch(handle)
        await self.stream(str(live.run_id), -1, ref)

    async def on_cancel(self, frame: dict[str, Any], ref: dict[str, Any]) -> None:
        run_id = _uuid(frame.get("run_id"))
        if run_id is None or not await self.run_allowed(run_id):
            await self.error("not_found", "No such run.", **ref)
            return
        try:
            status = await runtime.cancel(run_id, user=self.user)
        except DomainError as exc:
            await self.send_json(ws_error_frame(exc, run_id=str(run_id), **ref))
            return
        await self.send_json({"event": "CancelRequested", "run_id": str(run_id), "status": status, **ref})

    async def on_resume(self, frame: dict[str, Any], ref: dict[str, Any]) -> None:
        run_id = _uuid(frame.get("run_id"))
        after = frame.get("after_event_index", -1)
        if run_id is None or not await self.run_allowed(run_id):
            await self.error("not_found", "No such run.", **ref)
            return
        if isinstance(after, bool) or not isinstance(after, int) or after < -1:
            await self.error("invalid_input", "'after_event_index' must be an integer >= -1.", **ref)
            return
        previous = self.streams.pop(str(run_id), None)
        if previous is not None:
            previous.cancel()  # the client knows best where it is; one stream per run
        self.streams[str(run_id)] = asyncio.ensure_future(self.stream(str(run_id), after, ref))

    async def on_continue(self, frame: dict[str, Any], ref: dict[str, Any]) -> None:
        run_id = _uuid(frame.get("run_id"))
        if run_id is None or not await self.run_allowed(run_id):
            await self.error("not_found", "No such run.", **ref)
            return
        form = RunContinueInputSerializer(data={"decisions": frame.get("decisions")})
        if not form.is_valid():
            await self.error(
                "invalid_input", f"Invalid decisions: {_first_error(form.errors)}", run_id=str(run_id), **ref
            )
            return
        decisions = decisions_from(form.validated_data["decisions"])
        task = asyncio.ensure_future(self.continue_and_stream(run_id, decisions, ref))
        self.starting[task] = None
        task.add_done_callback(self._started)

    async def continue_and_stream(self, run_id: UUID, decisions: list[Any], ref: dict[str, Any]) -> None:
        try:
            handle = await database_sync_to_async(runs.continue_prepare)(
                run_id, user=self.user, decisions=decisions, channel="websocket"
            )
        except DomainError as exc:
            await self.send_json(ws_error_frame(exc, run_id=str(run_id), **ref))
            return
        runs.launch(handle)
        await self.stream(str(run_id), len(handle.prior_events) - 1, ref)

    # ---- streaming -------------------------------------------------------------------------

    async def stream(self, run_id: str, after: int, ref: dict[str, Any]) -> None:
        me = asyncio.current_task()
        if me is not None:
            self.streams.setdefault(run_id, me)  # type: ignore[arg-type]
        try:
            events = await runtime.subscribe(UUID(run_id), user=self.user, after_event_index=after)
            async with contextlib.aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    await self.send_json(event)
        except DomainError as exc:
            await self.send_json(ws_error_frame(exc, run_id=run_id, **ref))
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug of ours: tell the client rather than go silent
            logger.exception("Streaming run %s over a websocket failed", run_id)
            with contextlib.suppress(Exception):
                await self.error("internal_error", "Streaming this run failed; resume it.", run_id=run_id, **ref)
        finally:
            if me is not None and self.streams.get(run_id) is me:
                self.streams.pop(run_id, None)

    # ---- a scoped API token -----------------------------------------------------------------

    async def token_still_live(self, ref: dict[str, Any]) -> bool:
        """Check the socket's API token again once API_TOKEN_LAST_USED_SECONDS have passed (which
        also records its use): a revoked or expired one closes the socket."""
        every = float(agentos_settings.API_TOKEN_LAST_USED_SECONDS)
        if self.api_token is None or time.monotonic() - self.token_checked_at < every:
            return True
        try:
            self.api_token = await database_sync_to_async(token_refresh)(self.api_token)
        except AuthenticationError as exc:
            await self.send_json(ws_error_frame(exc, **ref))
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return False
        self.token_checked_at = time.monotonic()
        self.allowed = await database_sync_to_async(allowed_for)(self.api_token, self.user)
        return True

    async def run_allowed(self, run_id: UUID) -> bool:
        """Whether a run may be cancelled or followed with this socket's token (its runnable is in
        the token's scope): one query, for a scoped token only (the runtime checks the owner)."""
        if self.allowed.everything:
            return True
        status = await database_sync_to_async(run_status_for_user)(user=self.user, run_id=run_id, allowed=self.allowed)
        return status is not None

    async def error(self, code: str, detail: str, **extra: Any) -> None:
        await self.send_json(ws_error(code, detail, **extra))

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return orjson.dumps(content).decode()


def _first_error(errors: Any) -> str:
    """The first message of a serializer's nested errors, with where it is."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            return f"{key}: {_first_error(value)}"
    if isinstance(errors, list):
        for value in errors:
            if value:
                return _first_error(value)
    return str(errors)


def _uuid(value: Any) -> UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None
