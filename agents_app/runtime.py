"""The per-process supervisor of live runs: launch them, follow them (resume), cancel them, from
this process or from any other.

Why it exists: a run must outlive the connection that started it (a closed tab, a phone that lost
its network), and a client that comes back, to this process or (behind a load balancer) to
another one, must be able to pick up after the last event it saw, or stop the run. agno keeps a
run's stream in the memory of the process that runs it; here nothing that another process needs
lives only in memory:

* A run executes in its own task (`launch`), so no reader can stop or lose it. Its events are kept
  in an in-memory backlog while it runs and stored with the Run row when it ends (the engine does
  that), so a finished run is replayed from the database by any process.
* Each process has one mailbox channel on the channel layer. A process that launches a run adds its
  mailbox to the group `agentos.run.<run_id>`; a process that wants to follow or cancel a run it
  does not have sends a request to that group, and the owner answers on the requester's mailbox:
  the backlog after the index asked for, then every later event, until the terminal one. Events
  cross the layer only while someone remote follows (no Redis round-trip per token otherwise), in
  batches when they come faster than the layer takes them. If nobody answers, the database decides.
* With the in-memory layer (the embedded, single-process default) there is nobody remote, so the
  channel layer is not used at all.
* Crash recovery: while a run streams, the engine checkpoints its partial output and events. With a
  shared layer each process writes a heartbeat (sessions_app.liveness), and a run whose process
  stopped beating is taken over within seconds, by any process that meets it (a resumer, a queued
  message, a cancel) or by every process's heartbeat thread: stored as `interrupted`, keeping what
  was checkpointed, with a terminal event at the next `event_index`, so every resumer gets it.
* A channel layer that fails on this process does not break resuming: the follower falls back to
  the run's checkpoints in the database. A cancel that needs the layer answers 503
  (`channel_layer_unavailable`).

The mailbox lives on a small daemon thread with its own event loop and its own instance of the
configured layer (`_Bridge`). Why not on the server's loop: channels_redis lets only one event loop
receive on a layer instance (a host's own consumers use the shared instance), and sync callers
(`run_agent` from a view, a command, a Celery task) run runs on short-lived loops of their own, which
must not own a blocking receive. Runs and their readers stay on their own loops; the bridge talks to
them with thread-safe calls.

Plain Python and the channel layer: no HTTP, no consumer code, and no kind of run in particular: it
holds handles of the engine's protocol (agents_app.engine.protocol.RunnableHandle). The run service
(agents_app.runs) prepares and launches runs; edges call it, and `subscribe` / `cancel` here.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer

from agents_app import events as ev
from agents_app.engine.expiry import paused_run_end, row_totals
from agents_app.engine.outcome import store_run
from agents_app.engine.protocol import RunnableHandle
from sessions_app import liveness, logcontext
from sessions_app.asgi import detached_context
from sessions_app.conf import agentos_settings
from sessions_app.db import db_call
from sessions_app.errors import NotFoundError, UnavailableError
from sessions_app.models import Run
from sessions_app.services import SessionBusy, run_finish
from telemetry_app.metrics import record_busy_wait

logger = logging.getLogger(__name__)

__all__ = [
    "ChannelLayerUnavailable",
    "LiveRun",
    "RunNotFound",
    "RunUnavailable",
    "Runtime",
    "SessionBusy",
    "liveness_stop",
    "runtime",
]

GROUP_PREFIX = "agentos.run."
# How long a remote request waits for the owning process to answer before the database decides.
ANSWER_TIMEOUT = 1.0
# A remote follower asks the owner again after this long without events (a dropped subscription
# is noticed); in between, it checks the owner's heartbeat every PROCESS_HEARTBEAT_SECONDS.
IDLE_TIMEOUT = 15.0
# A finished run stays in memory this long, so a client reconnecting right away is served from
# memory rather than from the database (which has every event too: the engine stores the outcome
# before the final event). Short: every retained second holds a second's runs with all their
# events (at 32 clients on the benchmark box, 5 s cost 9 MiB of RSS against 1 s: bench/ab.py).
RETAIN_SECONDS = 1.0
# Most events per message when forwarding to a remote follower that lags behind.
BATCH_LIMIT = 256
# A running run younger than this is never taken for an orphan: its process may not have joined
# the run's group yet.
ORPHAN_GRACE_SECONDS = 5.0

_STATUS_OF_TERMINAL = ev.STATUS_OF_TERMINAL


class RunNotFound(NotFoundError):
    """No such run for this user (we never tell whether it exists for someone else)."""

    code = "not_found"
    default_detail = "No such run."


class RunUnavailable(UnavailableError):
    """The run is still marked running, but no server process has it any more (it most likely died
    with its process); its events cannot be followed."""

    code = "run_unavailable"


class ChannelLayerUnavailable(UnavailableError):
    """This process cannot reach the channel layer, and the request needs the process that runs the
    run (to cancel it): a clear 503 the client may retry, never a 500."""

    code = "channel_layer_unavailable"
    default_detail = "The channel layer is unreachable from this server; try again."


INTERRUPTED_MESSAGE = "The server process running this run stopped; what it streamed until then is kept."
ORPHAN_CANCELLED_MESSAGE = "The run was cancelled; no server process had it any more."


def group_name(run_id: UUID | str) -> str:
    return f"{GROUP_PREFIX}{run_id}"


def _is_terminal(event: ev.RunEvent | dict[str, Any]) -> bool:
    return ev.is_terminal(event)


def _through_terminal(events: list[ev.RunEvent]) -> tuple[list[ev.RunEvent], bool]:
    """`events` up to and including the first terminal one, and whether there was one."""
    for index, event in enumerate(events):
        if _is_terminal(event):
            return events[: index + 1], True
    return events, False


def event_from_dict(data: dict[str, Any]) -> ev.RunEvent:
    """A run event read back as a dict (stored, or from another process) as its event object."""
    return _event_from_dict(data)


def _event_from_dict(data: dict[str, Any]) -> ev.RunEvent:
    if data.get("parent_run_id"):  # a member's or step's event inside a team or workflow stream
        return ev.NestedEvent(
            run_id=data.get("run_id", ""),
            session_id=data.get("session_id", ""),
            event_index=data.get("event_index", 0),
            data=data,
        )
    cls = ev.EVENT_CLASSES.get(data.get("event", ""), ev.RunEvent)
    names = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    return cls(**{k: v for k, v in data.items() if k in names})


# ---- what the database knows ------------------------------------------------------------------


@dataclass(slots=True)
class _RunState:
    """A run's row, enough to check ownership and to replay a finished run."""

    run_id: UUID
    user_id: Any
    session_id: UUID
    agent_id: str
    status: str
    error: str
    error_type: str
    output: str
    events: list[dict[str, Any]]
    created_at: float
    team_id: str | None = None  # a team's or a workflow's run (agent_id is then None)
    workflow_id: str | None = None
    owner: str = ""  # the process executing it (sessions_app.liveness)


def _run_state(run_id: UUID, user_id: Any = None) -> _RunState | None:
    """One query; scoped to `user_id` when given (None: ownership was checked already)."""
    runs = Run.objects.filter(pk=run_id)
    if user_id is not None:
        runs = runs.filter(user_id=user_id)
    row = runs.values_list(
        "user_id",
        "session_id",
        "agent__slug",
        "status",
        "error",
        "error_type",
        "output",
        "events",
        "created_at",
        "team__slug",
        "workflow__slug",
        "owner",
        "resumed_at",
    ).first()
    if row is None:
        return None
    (
        user,
        session_id,
        agent_id,
        status,
        error,
        error_type,
        output,
        events,
        created_at,
        team_id,
        workflow_id,
        owner,
        resumed,
    ) = row
    if resumed is not None and resumed > created_at:  # a continued paused run: its age counts from then
        created_at = resumed
    return _RunState(
        run_id=run_id,
        user_id=user,
        session_id=session_id,
        agent_id=agent_id,
        status=status,
        error=error,
        error_type=error_type,
        output=output,
        events=list(events or []),
        created_at=created_at.timestamp(),
        team_id=team_id,
        workflow_id=workflow_id,
        owner=owner,
    )


def _run_status(run_id: UUID) -> str:
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first() or Run.Status.CANCELLED


def _root_run_id(run_id: UUID) -> UUID:
    """The top-level run a member's or step's run belongs to (itself for any other run): a child run
    executes inside its root's task, so that is the run to cancel."""
    for _ in range(16):
        parent = Run.objects.filter(pk=run_id).values_list("parent_run_id", flat=True).first()
        if parent is None:
            return run_id
        run_id = parent
    return run_id


def _last_index(events: list[dict[str, Any]]) -> int:
    return max((e.get("event_index", -1) for e in events), default=-1)


def _terminal_event(state: _RunState, index: int, status: str, message: str, error_type: str) -> dict[str, Any]:
    """The kind's terminal event for a run that ended as `status`, made from its row (agno's names:
    "<prefix>Completed", "<prefix>Error", "<prefix>Cancelled")."""
    prefix, key, component = (
        ("TeamRun", "team_id", state.team_id)
        if state.team_id
        else ("Workflow", "workflow_id", state.workflow_id)
        if state.workflow_id
        else ("Run", "agent_id", state.agent_id)
    )
    ids: dict[str, Any] = {"run_id": str(state.run_id), "session_id": str(state.session_id), key: component}
    made: ev.RunEvent
    if status == Run.Status.COMPLETED:
        made = ev.EVENT_CLASSES[f"{prefix}Completed"](event_index=index, content=message, **ids)
    elif status == Run.Status.ERROR:
        made = ev.EVENT_CLASSES[f"{prefix}Error"](
            event_index=index, content=message, error_type=error_type or "error", **ids
        )
    else:
        made = ev.EVENT_CLASSES[f"{prefix}Cancelled"](
            event_index=index, reason=message or "The run was cancelled.", **ids
        )
    return made.to_dict()


def _settle(run_id: UUID, *, status: str, reason: str, error_type: str, after: int = -1) -> str:
    """Store a run that no process executes any more (its process died, or it never started) as
    ended, keeping the output and events it checkpointed, with a terminal event at the next
    `event_index` after the stored ones and after `after` (the last one a resumer saw, which may be
    past the last checkpoint), so every resumer receives it. Its telemetry event is recorded too.
    Guarded by status=running (racing settlers, or the owner finishing after all, store once).
    Returns the run's status afterwards."""
    state = _run_state(run_id)
    if state is None:
        return Run.Status.CANCELLED  # deleted with its session
    if state.status != Run.Status.RUNNING:
        return state.status
    kind = "team" if state.team_id else "workflow" if state.workflow_id else "agent"
    component_id = state.team_id or state.workflow_id or state.agent_id or ""
    # What settling logs (the takeover, a telemetry failure) is the run's, whoever settles it.
    with logcontext.run_context(
        run_id=run_id, session_id=state.session_id, kind=kind, component_id=component_id, user_id=state.user_id
    ):
        if error_type == "interrupted":
            logger.warning("Run %s was left running by a server process that stopped; taking it over", run_id)
        run = Run.objects.filter(pk=run_id).first()
        row = {"input": run.input, "model": run.model, "provider": run.provider} if run is not None else {}
        output = state.output
        terminal = _terminal_event(state, max(_last_index(state.events), after) + 1, status, reason, error_type)
        store_run(
            run_id=run_id,
            session_id=state.session_id,
            message=row.get("input", ""),
            outcome={"status": status, "output": output, "error": reason, "error_type": error_type},
            messages=[{"role": "assistant", "content": output}] if output else [],
            metrics={},
            events=[*state.events, terminal],
            state_set={},
            state_unset=[],
            telemetry_type=kind,
            component_id=component_id,
            model=row.get("model", ""),
            provider=row.get("provider", ""),
            # What its row counted keeps (a continued paused run's tokens and cost before its pause).
            totals=row_totals(run) if run is not None else None,
        )
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first() or Run.Status.CANCELLED


def _settle_interrupted(run_id: UUID, after: int = -1) -> str:
    """A run whose process stopped beating: an error of type `interrupted`."""
    return _settle(run_id, status=Run.Status.ERROR, reason=INTERRUPTED_MESSAGE, error_type="interrupted", after=after)


def _settle_cancelled(run_id: UUID) -> str:
    """A run its user asked to stop that no process has: stored cancelled, keeping its checkpoints."""
    return _settle(run_id, status=Run.Status.CANCELLED, reason=ORPHAN_CANCELLED_MESSAGE, error_type="cancelled")


def replay_stored(state: _RunState, after: int) -> list[dict[str, Any]]:
    """A run's stored events after index `after`: all of a finished run's, or a running run's
    checkpoints so far. A finished run stored without its terminal event gets one made from its
    row, so a client always learns the final state."""
    events = [e for e in state.events if e.get("event_index", -1) > after]
    if state.status == Run.Status.RUNNING:
        return events
    terminal = next((e for e in reversed(state.events) if _is_terminal(e)), None)
    if terminal is None:
        message = state.output if state.status == Run.Status.COMPLETED else state.error
        terminal = _terminal_event(state, _last_index(state.events) + 1, state.status, message, state.error_type)
        if terminal["event_index"] > after:
            events.append(terminal)
    if terminal["event_index"] <= after and state.error_type == "interrupted":
        # Its process died after streaming events it never checkpointed, and this reader saw some
        # of them: it still gets the end, numbered after the last event it saw.
        events.append({**terminal, "event_index": after + 1})
    return events


# ---- a live run -----------------------------------------------------------------------------


class _Subscriber:
    """A reader of a live run: a queue on the reader's own loop, fed from the run's loop (they
    differ for the bridge's forwarders, and for sync code that waits from a loop of its own)."""

    __slots__ = ("loop", "queue", "terminal_only")

    def __init__(self, loop: asyncio.AbstractEventLoop, *, terminal_only: bool = False) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[ev.RunEvent] = asyncio.Queue()
        self.terminal_only = terminal_only


@dataclass(eq=False)
class LiveRun:
    """A run executing in this process: its task, its events so far, and who reads them."""

    handle: RunnableHandle
    loop: asyncio.AbstractEventLoop
    events: list[ev.RunEvent] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    joined: concurrent.futures.Future[Any] | None = None  # the group_add, when others may ask for it
    _subscribers: list[_Subscriber] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def run_id(self) -> UUID:
        return self.handle.run_id

    @property
    def user_id(self) -> Any:
        return self.handle.user_id

    @property
    def done(self) -> bool:
        return bool(self.events) and _is_terminal(self.events[-1])

    def _append(self, event: ev.RunEvent) -> None:
        """On the run's loop, for every event: backlog, then fan-out. Nothing is awaited, so no
        reader can slow the run."""
        with self._lock:
            self.events.append(event)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            if sub.terminal_only and not _is_terminal(event):
                continue
            if sub.loop is self.loop:
                sub.queue.put_nowait(event)
            else:
                try:
                    sub.loop.call_soon_threadsafe(sub.queue.put_nowait, event)
                except RuntimeError:  # that loop is closed: nobody reads there any more
                    self.detach(sub)

    def attach(
        self, after: int, loop: asyncio.AbstractEventLoop, *, terminal_only: bool = False
    ) -> tuple[list[ev.RunEvent], _Subscriber | None]:
        """The backlog after `after`, and a subscriber for what comes next (None if the run has
        ended). Snapshot and registration happen under one lock: no event falls between them."""
        with self._lock:
            backlog = self.events[after + 1 :]
            sub = None
            if not self.done:
                sub = _Subscriber(loop, terminal_only=terminal_only)
                self._subscribers.append(sub)
        if terminal_only:
            backlog = [e for e in backlog if _is_terminal(e)]
        return backlog, sub

    def detach(self, sub: _Subscriber) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._subscribers.remove(sub)

    async def follow(self, after: int = -1, *, terminal_only: bool = False) -> AsyncIterator[ev.RunEvent]:
        """The events after index `after`: the backlog, then live ones, until the terminal event.
        A reader that stops early only stops reading; the run goes on."""
        async for batch in self.follow_batches(after, terminal_only=terminal_only):
            for event in batch:
                yield event

    async def follow_batches(self, after: int = -1, *, terminal_only: bool = False) -> AsyncIterator[list[ev.RunEvent]]:
        """`follow`, a list at a time: each list is what had arrived when the reader asked (never
        empty; the first event is never held back). A stream writer sends each list as one write:
        a model's chunks often come many to one network read, and one socket write per event
        was a third of the server's CPU per streamed run."""
        backlog, sub = self.attach(after, asyncio.get_running_loop(), terminal_only=terminal_only)
        try:
            backlog, ended = _through_terminal(backlog)
            if backlog:
                yield backlog
            if ended or sub is None:
                return
            queue = sub.queue
            while True:
                batch = [await queue.get()]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                # A reader that attached before the run produced `after` (it asked for "after 0"
                # while the run had not started yet) skips what it already has.
                fresh, ended = _through_terminal([event for event in batch if event.event_index > after])
                if fresh:
                    yield fresh
                if ended:
                    return
        finally:
            if sub is not None:
                self.detach(sub)

    async def wait(self) -> list[ev.RunEvent]:
        """Wait for the end of the run (never cancelling it) and return all its events."""
        async for _ in self.follow(len(self.events) - 1, terminal_only=True):
            pass
        return list(self.events)

    def cancel(self) -> None:
        """Stop the model call and the tool loop; thread-safe and idempotent. The engine stores the
        run as cancelled with what it produced so far, and emits RunCancelled."""
        if self.done or self.cancel_requested:
            return
        self.cancel_requested = True
        # Through the loop, never directly: a task cancelled before its first step would never
        # enter the engine, and the run would stay "running" in the database.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._cancel_now)

    def _cancel_now(self) -> None:
        if self.task is not None and not self.done:
            self.task.cancel()


# ---- the process's connection to the channel layer --------------------------------------------


class _Bridge:
    """The process's mailbox on the channel layer, on a daemon thread with its own loop and its
    own layer instance (see the module docstring for why)."""

    def __init__(self, runtime: Runtime, make_layer: Callable[[], Any]) -> None:
        self.runtime = runtime
        self.make_layer = make_layer
        self.loop: asyncio.AbstractEventLoop | None = None
        self.layer: Any = None
        self.channel = ""
        self._opened: concurrent.futures.Future[str] | None = None
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Requests this process made, waiting for answers: id -> (the asker's loop, its queue/future).
        self.followers: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]]]] = {}
        self.acks: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[dict[str, Any]]]] = {}
        # Remote readers of this process's runs: sub_id -> (the run, its subscriber, the sending task).
        self.forwarders: dict[str, tuple[LiveRun, _Subscriber | None, asyncio.Task[None]]] = {}

    # -- from any thread
    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        self._ensure_started()
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a layer call on the bridge; a failing layer raises ChannelLayerUnavailable."""
        try:
            return await asyncio.wrap_future(self.submit(coro))
        except ChannelFull:
            raise
        except Exception as exc:
            logger.warning("The channel layer is unreachable: %s", exc)
            raise ChannelLayerUnavailable() from exc

    async def mailbox(self) -> str:
        self._ensure_started()
        opened = self._opened
        assert opened is not None
        try:
            return await asyncio.wrap_future(opened)
        except Exception as exc:
            with self._start_lock:  # try again next time: the layer may be back
                if self._opened is opened:
                    self._opened = None
            logger.warning("The channel layer is unreachable: %s", exc)
            raise ChannelLayerUnavailable() from exc

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._run_loop, args=(self.loop,), name="agentos-runtime-bridge", daemon=True
                )
                self._thread.start()
            if self._opened is None:
                self._opened = asyncio.run_coroutine_threadsafe(self._open(), self.loop)

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.run_forever()
        finally:
            loop.close()  # in its own thread, where the layer's per-loop connections get closed

    def close(self) -> None:
        """Stop the bridge's loop and thread (for throwaway runtimes; the process's own lives on)."""
        with self._start_lock:
            loop, self.loop, self._opened = self.loop, None, None
        if loop is not None:

            async def stop() -> None:
                for task in list(self._tasks):
                    task.cancel()
                with contextlib.suppress(Exception):
                    await asyncio.gather(*self._tasks, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await self.layer.close_pools()

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(5)

    # -- on the bridge's loop
    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _open(self) -> str:
        self.layer = self.make_layer()
        if getattr(self.layer, "brpop_timeout", 0) > 2:
            # channels_redis blocks 5 s per receive, and redis-py 8 gives up reading after 5 s too, so
            # an idle receive would end in a TimeoutError; block for less than the socket allows.
            self.layer.brpop_timeout = 2
        self.channel = await self.layer.new_channel()
        self._spawn(self._receive_loop())
        return self.channel

    async def _receive_loop(self) -> None:
        failures = 0
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except Exception as exc:  # the layer is down: wait, then listen again
                if "timeout" in type(exc).__name__.lower() and not failures:
                    continue  # an idle read that timed out: nothing was lost (channels_redis keeps a backup)
                failures += 1
                logger.warning("The run mailbox could not receive (attempt %d)", failures, exc_info=failures == 1)
                await asyncio.sleep(min(0.5 * failures, 10.0))
                continue
            if failures:
                failures = 0
                self._rejoin()  # the layer may have lost the groups (a Redis restart keeps nothing)
            try:
                self._dispatch(message)
            except Exception:  # one bad message must not stop the mailbox
                logger.exception("Bad message on the run mailbox: %r", message.get("type"))

    def _rejoin(self) -> None:
        for live in list(self.runtime._live.values()):
            if live.joined is not None and not live.done:
                self._spawn(self.layer.group_add(group_name(live.run_id), self.channel))

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "agentos.events":
            self._deliver(self.followers, message["sub_id"], message, lambda target, m: target.put_nowait(m))
        elif kind == "agentos.ack":
            self._deliver(self.acks, message["req"], message, lambda target, m: target.done() or target.set_result(m))
        elif kind == "agentos.subscribe":
            self._serve_follower(message)
        elif kind == "agentos.unsubscribe":
            entry = self.forwarders.pop(message["sub_id"], None)
            if entry is not None:
                live, sub, task = entry
                if sub is not None:
                    live.detach(sub)
                task.cancel()
        elif kind in ("agentos.cancel", "agentos.ping"):
            live = self.runtime._get_live(UUID(message["run_id"]))
            if live is not None:
                if kind == "agentos.cancel":
                    live.cancel()
                reply = {"type": "agentos.ack", "req": message["req"]}
                self._spawn(self._send_quietly(message["reply_to"], reply))

    @staticmethod
    def _deliver(registry: dict[str, Any], key: str, message: dict[str, Any], put: Callable[[Any, Any], Any]) -> None:
        entry = registry.get(key)
        if entry is None:
            return
        loop, target = entry
        try:
            loop.call_soon_threadsafe(put, target, message)
        except RuntimeError:  # the asker's loop is gone
            registry.pop(key, None)

    async def _send_quietly(self, channel: str, message: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self.layer.send(channel, message)

    def _serve_follower(self, message: dict[str, Any]) -> None:
        live = self.runtime._get_live(UUID(message["run_id"]))
        if live is None:
            return  # not ours (any more): the asker falls back to the database
        assert self.loop is not None
        backlog, sub = live.attach(
            int(message.get("after", -1)), self.loop, terminal_only=bool(message.get("terminal_only"))
        )
        sub_id = message["sub_id"]
        task = self._spawn(self._forward(message["reply_to"], sub_id, backlog, sub))
        self.forwarders[sub_id] = (live, sub, task)

        def finished(_task: asyncio.Task[None]) -> None:
            self.forwarders.pop(sub_id, None)
            if sub is not None:
                live.detach(sub)

        task.add_done_callback(finished)

    async def _forward(self, reply_to: str, sub_id: str, backlog: list[ev.RunEvent], sub: _Subscriber | None) -> None:
        """Send a run's events to a remote follower: the backlog first (even empty: it tells the
        follower that an owner exists), then whatever piled up while the previous send was in
        flight, until the terminal event."""
        batch = backlog
        try:
            while True:
                await self.layer.send(
                    reply_to, {"type": "agentos.events", "sub_id": sub_id, "events": [e.to_dict() for e in batch]}
                )
                if sub is None or any(_is_terminal(e) for e in batch):
                    return
                batch = [await sub.queue.get()]
                while not sub.queue.empty() and len(batch) < BATCH_LIMIT:
                    batch.append(sub.queue.get_nowait())
        except ChannelFull:
            # The follower stopped reading; it asks again (from its last index) if it is still there.
            logger.info("A remote follower of a run is not reading; dropped it")
        except Exception:  # a broken layer must not break the run
            logger.warning("Forwarding run events to %s failed", reply_to, exc_info=True)


# ---- this process's heartbeat, and the takeover of dead processes' runs ------------------------


class _Liveness:
    """A daemon thread, one per process, started by the first runtime that shares runs with other
    processes: every PROCESS_HEARTBEAT_SECONDS it records this process's heartbeat, then settles
    the runs of processes that stopped beating. So a dead process's runs are taken over within
    PROCESS_DEAD_SECONDS plus one heartbeat period even when nobody asks for them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop = threading.Event()
        self._failures = 0
        self._beats = 0

    def ensure(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            self._pid = os.getpid()  # a forked child starts its own (the parent's is not there)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="agentos-liveness", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        stop = self._stop
        while True:
            self.tick()
            if stop.wait(float(agentos_settings.PROCESS_HEARTBEAT_SECONDS)):
                return

    def tick(self) -> None:
        """One heartbeat and one takeover pass (never raises: a database hiccup is retried next time)."""
        try:
            liveness.beat()
            for run_id in liveness.orphaned_run_ids():
                _settle_interrupted(run_id)
            self._beats += 1
            if self._beats % 1000 == 1:
                liveness.forget_dead()
            if self._failures:
                logger.warning("The process heartbeat works again after %d failures", self._failures)
            self._failures = 0
        except Exception:
            self._failures += 1
            logger.warning("The process heartbeat failed (%d in a row)", self._failures, exc_info=self._failures == 1)
        finally:
            with contextlib.suppress(Exception):
                liveness.release_connection()


_liveness = _Liveness()


def liveness_stop() -> None:
    """Stop this process's heartbeat thread (tests, before their database is dropped)."""
    _liveness.stop()


# ---- the supervisor -------------------------------------------------------------------------


class Runtime:
    """The supervisor. One per process (`runtime` below). Tests may build more, each with its own
    bridge, to play several processes in one (`Runtime(remote=True)` on a Redis layer)."""

    def __init__(self, *, layer_alias: str = "default", remote: bool | None = None) -> None:
        self.layer_alias = layer_alias
        self._remote = remote
        self._live: dict[UUID, LiveRun] = {}
        # Ended runs in the order they ended, so purging is incremental rather than a scan of every
        # run kept (thousands at a few hundred runs/s); the full scan for runs whose loop died runs
        # at most once a second.
        self._ended: collections.deque[tuple[float, UUID]] = collections.deque()
        self._last_scan = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.bridge = _Bridge(self, lambda: channel_layers.make_backend(self.layer_alias))

    def close(self) -> None:
        """Stop this runtime's connection to the channel layer (tests build throwaway runtimes)."""
        self.bridge.close()

    @property
    def remote(self) -> bool:
        """Whether other processes may exist: not with the in-memory layer (one process)."""
        if self._remote is not None:
            return self._remote
        layer = get_channel_layer(self.layer_alias)
        return layer is not None and not isinstance(layer, InMemoryChannelLayer)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        # Outside the request's thread-sensitive context: a run may outlive its request
        # (sessions_app.asgi.detached_context).
        task = asyncio.get_running_loop().create_task(coro, context=detached_context())
        self._tasks.add(task)  # a strong reference: the loop keeps only weak ones
        task.add_done_callback(self._tasks.discard)
        return task

    def _get_live(self, run_id: UUID) -> LiveRun | None:
        live = self._live.get(run_id)
        if live is not None and not live.done and live.loop.is_closed():
            # Its loop died under it (a sync caller's short-lived loop): nobody runs it any more.
            self._live.pop(run_id, None)
            return None
        return live

    def _purge(self) -> None:
        now = time.monotonic()
        cutoff = now - RETAIN_SECONDS
        ended = self._ended
        while ended and ended[0][0] < cutoff:
            _, run_id = ended.popleft()
            live = self._live.get(run_id)
            if live is not None and live.finished_at is not None and live.finished_at < cutoff:
                self._live.pop(run_id, None)
        if now - self._last_scan > 1.0:
            self._last_scan = now
            for run_id, live in list(self._live.items()):
                if not live.done and live.loop.is_closed():
                    self._live.pop(run_id, None)

    # ---- launching ---------------------------------------------------------------------------

    def launch(self, handle: RunnableHandle, *, stream: bool = True) -> LiveRun:
        """Start executing a prepared run in its own task and return at once (call it from a
        running loop). Nothing the caller does later can stop or lose the run."""
        self._purge()
        live = LiveRun(handle=handle, loop=asyncio.get_running_loop())
        if handle.prior_events:  # a continued paused run: its stream goes on after what it emitted
            live.events = [_event_from_dict(data) for data in handle.prior_events]
        self._live[handle.run_id] = live
        if self.remote:
            _liveness.ensure()
            live.joined = self.bridge.submit(self._join(live))
        live.task = self._spawn(self._pump(live, stream))
        return live

    async def _join(self, live: LiveRun) -> None:
        """On the bridge: put this process's mailbox in the run's group, so others can reach it."""
        try:
            channel = await self.bridge.mailbox()
            await self.bridge.layer.group_add(group_name(live.run_id), channel)
        except Exception:  # the run still works for readers in this process
            logger.warning("Could not register run %s on the channel layer", live.run_id, exc_info=True)

    async def _leave(self, live: LiveRun) -> None:
        """On the bridge, once the run has ended."""
        if live.joined is not None:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(live.joined)
                await self.bridge.layer.group_discard(group_name(live.run_id), self.bridge.channel)

    async def _pump(self, live: LiveRun, stream: bool) -> None:
        # This task is the run's (its children run inside it): with JSON logs, what it logs carries
        # the run's ids (sessions_app.logcontext). Never reset: the task ends with the run.
        if logcontext.enabled():
            h = live.handle
            logcontext.bind_run(
                run_id=h.run_id, session_id=h.session_id, kind=h.kind, component_id=h.component_id, user_id=h.user_id
            )
        # Nothing is awaited here outside the engine, so a cancel always lands inside `execute`,
        # which turns it into RunCancelled with the partial output stored.
        try:
            async for event in live.handle.execute_events(stream=stream):
                live._append(event)
        except asyncio.CancelledError:
            # Cancelled while the engine was already storing its outcome (that store is shielded
            # and goes on): take the end of the run from the database.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await self._recover_tail(live)
        except Exception as exc:
            logger.exception("Run %s failed outside the engine", live.run_id)
            await self._fail(live, f"Internal error: {type(exc).__name__}")
        finally:
            if not live.done:
                await self._fail(live, "The run ended without a final event.")
            live.finished_at = time.monotonic()
            self._ended.append((live.finished_at, live.run_id))
            if live.events[-1].name in ev.PAUSE_EVENTS and self._live.get(live.run_id) is live:
                # A paused run is not kept: whoever continues, expires or cancels it next (in any
                # process) changes its stored events, which readers then get from the database.
                self._live.pop(live.run_id, None)
            if live.joined is not None:
                self.bridge.submit(self._leave(live))

    async def _recover_tail(self, live: LiveRun) -> None:
        state = None
        for _ in range(100):
            state = await db_call(_run_state, live.run_id)
            if state is None or state.status != Run.Status.RUNNING:
                break
            await asyncio.sleep(0.05)
        if state is not None:
            for data in replay_stored(state, len(live.events) - 1):
                live._append(_event_from_dict(data))

    async def _fail(self, live: LiveRun, message: str) -> None:
        h = live.handle
        event = h.error_event(len(live.events), message, "internal_error")
        with contextlib.suppress(Exception):
            await db_call(
                run_finish,
                run_id=h.run_id,
                status=Run.Status.ERROR,
                output="",
                output_json=None,
                error=message,
                error_type="internal_error",
                messages=[],
                metrics={},
                events=[e.to_dict() for e in [*live.events, event]],
                user_message=h.message,
            )
        live._append(event)

    # ---- starting, with the busy-session policy ----------------------------------------------

    async def prepare_with(self, prepare: Callable[..., Any], /, **kwargs: Any) -> Any:
        """`prepare(**kwargs)` (a kind's sync preparer: agents_app.runs) on a database thread,
        honouring the component's busy_session_policy when the session has a run going: "reject"
        raises SessionBusy; "queue" waits, without blocking the loop, for the running run to end (at
        most SESSION_QUEUE_TIMEOUT_SECONDS, then SessionBusy); "interrupt" cancels it and waits for it
        to stop. The history is read only once the session is free, so it is never interleaved."""
        deadline: float | None = None
        waiting: tuple[str, float] | None = None  # (policy, since): for the busy-session metrics
        while True:
            try:
                handle = await self._prepare_once(prepare, **kwargs)
            except SessionBusy as busy:
                waiting = waiting or (busy.policy, time.monotonic())
                if await self._free_orphans(busy.running_run_ids):
                    record_busy_wait(policy=busy.policy, outcome="freed", seconds=time.monotonic() - waiting[1])
                    waiting = None
                    continue  # the session was only held by runs whose process died
                if busy.policy not in ("queue", "interrupt"):
                    record_busy_wait(policy=busy.policy, outcome="rejected", seconds=0.0)
                    raise
                timeout = float(agentos_settings.SESSION_QUEUE_TIMEOUT_SECONDS)
                deadline = deadline or time.monotonic() + timeout
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    record_busy_wait(policy=busy.policy, outcome="timed_out", seconds=time.monotonic() - waiting[1])
                    raise SessionBusy(
                        f"Session {busy.session_id} was still busy after {timeout:g} s.",
                        session_id=busy.session_id,
                        policy=busy.policy,
                        running_run_ids=busy.running_run_ids,
                    ) from None
                if busy.policy == "interrupt":
                    for run_id in busy.running_run_ids:
                        await self._cancel(run_id)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        for run_id in busy.running_run_ids:
                            await self.wait_finished(run_id)
            else:
                if waiting is not None:
                    record_busy_wait(policy=waiting[0], outcome="started", seconds=time.monotonic() - waiting[1])
                return handle

    async def _prepare_once(self, prepare: Callable[..., Any], **kwargs: Any) -> Any:
        """One preparation, safe against the caller going away: its thread hop cannot be stopped
        halfway, so if the caller is cancelled after the run was written, the run is launched anyway
        (its message was stored, so it gets its answer, and its session does not stay busy).
        Callers launch the handle they get at once, with no await in between."""
        attempt = asyncio.ensure_future(db_call(prepare, **kwargs))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            attempt.add_done_callback(self._launch_abandoned)
            raise

    def _launch_abandoned(self, attempt: asyncio.Future[RunnableHandle]) -> None:
        if not attempt.cancelled() and attempt.exception() is None:
            self.launch(attempt.result())

    async def _free_orphans(self, run_ids: list[UUID]) -> bool:
        """Settle the runs that hold a session but that no process runs any more (their process
        died); True if that freed them all. Asked only when a session is busy."""
        freed = 0
        for run_id in run_ids:
            state = await db_call(_run_state, run_id)
            if state is None or state.status != Run.Status.RUNNING:
                freed += 1
            elif not await self._owned_anywhere(state):
                await db_call(_settle_interrupted, run_id)
                freed += 1
        return freed == len(run_ids)

    async def _owned_anywhere(self, state: _RunState, *, ask: bool = True) -> bool:
        """Whether some process still executes this running run. Its owner's heartbeat decides
        (sessions_app.liveness); a beating owner is asked too, since it may have lost the run; when
        it cannot be asked (the layer is down), the heartbeat is trusted. With the in-memory layer
        this process is the only one: a run it does not have is nobody's, unless this process made
        it (someone's own `execute` loop runs it here, outside any runtime)."""
        if self._get_live(state.run_id) is not None or time.time() - state.created_at < ORPHAN_GRACE_SECONDS:
            return True
        if not self.remote:
            return state.owner == liveness.process_id()
        if not await db_call(liveness.owner_alive, state.owner, state.created_at):
            return False
        if not ask:
            return True
        try:
            return await self._ask_owner(state.run_id, "agentos.ping")
        except ChannelLayerUnavailable:
            return True

    async def _ask_owner(self, run_id: UUID, kind: str) -> bool:
        """Send a request to the process that runs `run_id`; True if it answered."""
        bridge = self.bridge
        channel = await bridge.mailbox()
        loop = asyncio.get_running_loop()
        req = uuid.uuid4().hex
        ack: asyncio.Future[dict[str, Any]] = loop.create_future()
        bridge.acks[req] = (loop, ack)
        message = {"type": kind, "run_id": str(run_id), "reply_to": channel, "req": req}
        try:
            await bridge.call(bridge.layer.group_send(group_name(run_id), message))
            await asyncio.wait_for(ack, ANSWER_TIMEOUT)
            return True
        except TimeoutError:
            return False
        finally:
            bridge.acks.pop(req, None)

    # ---- following -------------------------------------------------------------------------

    async def subscribe(self, run_id: UUID, *, user: Any, after_event_index: int = -1) -> AsyncIterator[dict[str, Any]]:
        """The run's events after `after_event_index`, as dicts, up to and including its terminal
        event, wherever the run executes: in this process (backlog, then live), in another (over
        the channel layer), or nowhere any more (from the database). Raises RunNotFound at once,
        before anything streams, when the run is not this user's.

        Close the iterator when you stop early (`contextlib.aclosing`), so the run stops feeding it.
        """
        after = min(max(int(after_event_index), -1), 2**31)  # (the channel layer carries 64-bit integers)
        live = self._get_live(run_id)
        if live is not None:
            if live.user_id != user.pk:
                raise RunNotFound(f"No run {run_id}.")
            return _with_end_notice(_as_dicts(live.follow(after)), run_id)
        state = await db_call(_run_state, run_id, user.pk)
        if state is None:
            raise RunNotFound(f"No run {run_id}.")
        return _with_end_notice(self._follow_elsewhere(state, after), run_id)

    async def _follow_elsewhere(
        self, state: _RunState, after: int, *, terminal_only: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        last = after
        poll = 0.1
        layer_up = self.remote
        while True:
            if state.status != Run.Status.RUNNING:
                for data in replay_stored(state, last):
                    if not terminal_only or _is_terminal(data):
                        yield data
                return
            live = self._get_live(state.run_id)
            if live is not None:  # launched here meanwhile (a run that waited in a queue)
                async for event in live.follow(last, terminal_only=terminal_only):
                    yield event.to_dict()
                return
            answered = False
            if layer_up:
                follower = _RemoteFollower(self, state, last, terminal_only)
                try:
                    async for data in follower:
                        yield data
                        last = data["event_index"]
                except ChannelLayerUnavailable:
                    # Follow from the run's checkpoints instead (a little behind, but never broken).
                    logger.warning("Following run %s from the database: the channel layer is down", state.run_id)
                    layer_up = False
                if follower.finished:
                    return
                answered = follower.answered and not follower.owner_gone
            elif not terminal_only:
                for data in replay_stored(state, last):
                    if data.get("event_index") != last + 1:
                        break
                    yield data
                    last = data["event_index"]
            if answered:
                poll = 0.1
            elif not await self._owned_anywhere(state, ask=layer_up):
                # Its process died: take it over now (ending it after what this reader saw).
                await db_call(_settle_interrupted, state.run_id, last)
            else:
                # It is ending right now, or it is followed from the database, or it runs outside
                # any runtime (someone's own `execute` loop). The database tells, in time.
                if time.time() - state.created_at > float(agentos_settings.RUN_STALE_SECONDS):
                    raise RunUnavailable(f"Run {state.run_id} is marked running but no server process has it.")
                await asyncio.sleep(poll)
                poll = min(poll * 2, 1.0)
            fresh = await db_call(_run_state, state.run_id)
            if fresh is None:
                return  # deleted with its session meanwhile
            state = fresh

    async def wait_finished(self, run_id: UUID) -> None:
        """Wait until a run has ended, wherever it runs (never cancels it)."""
        live = self._get_live(run_id)
        if live is not None:
            await live.wait()
            return
        state = await db_call(_run_state, run_id)
        if state is not None and state.status == Run.Status.RUNNING:
            async for _ in self._follow_elsewhere(state, -1, terminal_only=True):
                pass

    # ---- cancelling ----------------------------------------------------------------------------

    async def cancel(self, run_id: UUID, *, user: Any) -> str:
        """Ask the run to stop, wherever it runs. Idempotent: for a run that has ended, changes
        nothing and returns its status; otherwise returns "cancelling" (the run then ends with
        RunCancelled, keeping what it produced so far). Raises RunNotFound if not this user's."""
        live = self._get_live(run_id)
        if live is not None:
            if live.user_id != user.pk:
                raise RunNotFound(f"No run {run_id}.")
            if live.done:
                return _STATUS_OF_TERMINAL.get(live.events[-1].name, "error")
            live.cancel()
            return "cancelling"
        state = await db_call(_run_state, run_id, user.pk)
        if state is None:
            raise RunNotFound(f"No run {run_id}.")
        if state.status == Run.Status.PAUSED:  # nobody runs it: it ends now, its pending tool calls never run
            await db_call(paused_run_end, run_id=run_id, cancel=True, decided_by_id=user.pk, channel="cancel")
            return await db_call(_run_status, run_id)
        if state.status != Run.Status.RUNNING:
            return state.status
        root = await db_call(_root_run_id, run_id)
        if root != run_id:  # a team member's or workflow step's run: stop the whole run it is part of
            return await self.cancel(root, user=user)
        return await self._cancel(run_id)

    async def _cancel(self, run_id: UUID) -> str:
        """Cancel with no ownership check (the caller made it, or owns the run's session)."""
        live = self._get_live(run_id)
        if live is not None:
            live.cancel()
            return "cancelling"
        if self.remote:
            state = await db_call(_run_state, run_id)
            if state is None or state.status != Run.Status.RUNNING:
                return state.status if state is not None else Run.Status.CANCELLED
            owner_alive = await db_call(liveness.owner_alive, state.owner, state.created_at)
            # A beating owner must be reached: without the layer that is a 503, not a guess.
            if owner_alive and await self._ask_owner(run_id, "agentos.cancel"):
                return "cancelling"
        # No process has it. The user asked to stop it: store it as cancelled (a no-op if it
        # ended meanwhile), keeping what it checkpointed. If it still runs somewhere outside any
        # runtime, its outcome is dropped.
        return await db_call(_settle_cancelled, run_id)


async def _with_end_notice(events: AsyncIterator[dict[str, Any]], run_id: UUID) -> AsyncIterator[dict[str, Any]]:
    """`events`, then, if they held no terminal event because the reader resumed past the end of a
    finished run, one `RunEnded` notice with its final status: a client can tell "finished" from
    "nothing yet" (it is not one of the run's events: it has no `event_index`)."""
    terminal = False
    try:
        async for data in events:
            terminal = terminal or _is_terminal(data)
            yield data
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    if not terminal:
        state = await db_call(_run_state, run_id)
        if state is not None and state.status != Run.Status.RUNNING:
            last = max((e.get("event_index", -1) for e in state.events), default=-1)
            yield {
                "event": "RunEnded",
                "run_id": str(run_id),
                "session_id": str(state.session_id),
                "status": state.status,
                "last_event_index": last,
            }


async def _as_dicts(events: AsyncIterator[ev.RunEvent]) -> AsyncIterator[dict[str, Any]]:
    try:
        async for event in events:
            yield event.to_dict()
    finally:
        await events.aclose()  # type: ignore[attr-defined]


class _RemoteFollower:
    """One request to the owning process for a run's events after `last`; iterate it for them.

    Ends with the terminal event (`finished`), when nobody answers (`answered` False), or when the
    stream goes quiet or has a gap (the caller asks again from the last index: cheap, and it finds
    out whether the owner is still there)."""

    def __init__(self, runtime: Runtime, state: _RunState, after: int, terminal_only: bool) -> None:
        self.bridge = runtime.bridge
        self.state = state
        self.run_id = state.run_id
        self.last = after
        self.terminal_only = terminal_only
        self.answered = False
        self.finished = False
        self.owner_gone = False  # its process stopped beating while this follower waited

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        bridge = self.bridge
        channel = await bridge.mailbox()
        sub_id = uuid.uuid4().hex
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        bridge.followers[sub_id] = (asyncio.get_running_loop(), queue)
        group = group_name(self.run_id)
        request = {
            "type": "agentos.subscribe",
            "run_id": str(self.run_id),
            "after": self.last,
            "reply_to": channel,
            "sub_id": sub_id,
            "terminal_only": self.terminal_only,
        }
        try:
            await bridge.call(bridge.layer.group_send(group, request))
            check_every = max(0.2, float(agentos_settings.PROCESS_HEARTBEAT_SECONDS))
            quiet = 0.0
            while True:
                timeout = check_every if self.answered else ANSWER_TIMEOUT
                try:
                    message = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    if not self.answered:
                        return
                    quiet += timeout
                    state = self.state
                    if not await db_call(liveness.owner_alive, state.owner, state.created_at):
                        self.owner_gone = True
                        return
                    if quiet >= IDLE_TIMEOUT:
                        return  # ask again: the subscription may have been dropped
                    continue
                self.answered = True
                quiet = 0.0
                for data in message["events"]:
                    index = data.get("event_index", -1)
                    if index <= self.last and not _is_terminal(data):
                        continue
                    if not self.terminal_only and index != self.last + 1:
                        return  # a gap (a dropped batch): ask again from the last index
                    yield data
                    self.last = index
                    if _is_terminal(data):
                        self.finished = True
                        return
        finally:
            bridge.followers.pop(sub_id, None)
            if not self.finished:
                done = {"type": "agentos.unsubscribe", "run_id": str(self.run_id), "sub_id": sub_id}
                bridge.submit(bridge.layer.group_send(group, done)).add_done_callback(_ignore_result)


def _ignore_result(future: concurrent.futures.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so it is not logged as never retrieved


runtime = Runtime()
"""This process's supervisor."""
