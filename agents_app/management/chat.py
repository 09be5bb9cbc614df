"""The terminal chat and `agentos_run`: one conversation loop over two backends (the local
database through the run service, agents_app.runs, or a remote site through agentos_client), and
Rich rendering of a run's events: the answer as Markdown while it streams, tool calls, hook events,
members' and steps' answers as panels, and tokens, cost and time after each answer.

Why here, in the management package: it is an edge like the REST views (it parses input and calls
the run service), so it sits in the top layer of the import contracts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from django.core.management.base import CommandError
from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

KINDS = ("agent", "team", "workflow")
# The stream's own last event (a member's or step's carries `parent_run_id`).
TERMINAL = {
    "RunCompleted",
    "RunError",
    "RunCancelled",
    "RunPaused",
    "TeamRunPaused",
    "WorkflowPaused",
    "TeamRunCompleted",
    "TeamRunError",
    "TeamRunCancelled",
    "WorkflowCompleted",
    "WorkflowError",
    "WorkflowCancelled",
}
CANCELLED = {"RunCancelled", "TeamRunCancelled", "WorkflowCancelled"}
PAUSED = {"RunPaused", "TeamRunPaused", "WorkflowPaused"}
COMPLETED = {"RunCompleted", "TeamRunCompleted", "WorkflowCompleted"}
# A team or workflow pauses with its member's or step's waiting calls as its own `tools`.
PAUSED = {"RunPaused", "TeamRunPaused", "WorkflowPaused"}
CONTENT = {"RunContent", "TeamRunContent"}


@dataclass(slots=True)
class Runnable:
    kind: str
    component_id: str
    name: str
    description: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind} {self.component_id!r} ({self.name})"


class Backend(Protocol):
    """Where runs happen: this site's database, or a remote site's API."""

    def resolve(self, text: str) -> Runnable: ...

    def stream(
        self, runnable: Runnable, message: str, session_id: str | None, on_event: Callable[[dict], None]
    ) -> None:
        """Run and call `on_event` with each event's dict (the SSE stream's), in order."""

    def follow(self, run_id: str, after_event_index: int, on_event: Callable[[dict], None]) -> None:
        """Call `on_event` with the run's events after `after_event_index`, until it ends."""

    def cancel(self, run_id: str) -> str:
        """Stop the run: "cancelling", or the final status of a run that had ended."""
        ...

    def run(self, runnable: Runnable, message: str, session_id: str | None) -> dict[str, Any]: ...

    def sessions(self, runnable: Runnable) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def _split_kind(text: str) -> tuple[tuple[str, ...], str]:
    """`team:demo-team` names its kind; a bare name may be any of the three."""
    kind, colon, rest = text.partition(":")
    if colon and kind in KINDS:
        return (kind,), rest
    return KINDS, text


def _pick(text: str, candidates: list[Runnable]) -> Runnable:
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise CommandError(f"No active agent, team or workflow is called {text!r}.")
    found = ", ".join(f"{c.kind}:{c.component_id}" for c in candidates)
    raise CommandError(f"{text!r} names several runnables ({found}): say which, e.g. {candidates[0].kind}:{text}.")


class LocalBackend:
    """In-process, on the local database, as `user`: the run service every edge uses (history,
    memories, hooks, limits and the user's access apply)."""

    def __init__(self, user: Any) -> None:
        from sessions_app.access import allowed_for

        self.user = user
        self.allowed = allowed_for(None, user)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run `coro` on the backend's event loop (a thread of its own, for the backend's life: the
        runs it starts live there) and wait for it. A Ctrl-C interrupts the wait only: this reader
        stops, the run goes on (to be cancelled), and KeyboardInterrupt is raised here."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="agentos-chat-runs", daemon=True).start()
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def resolve(self, text: str) -> Runnable:
        """By id (slug), then by name (case-insensitive), then by database id; `kind:` to choose."""
        from agents_app.models import Agent, Team, Workflow

        models = {"agent": Agent, "team": Team, "workflow": Workflow}
        kinds, wanted = _split_kind(text)
        for lookup in ("slug", "name__iexact", "pk"):
            if lookup == "pk" and not wanted.isdigit():
                continue
            found = [
                Runnable(kind, obj.slug, obj.name, obj.description or "")
                for kind in kinds
                for obj in models[kind].objects.filter(is_active=True, **{lookup: wanted})
                if self.allowed.permits(kind, obj.slug)
            ]
            if found:
                return _pick(text, found)
        return _pick(text, [])

    def stream(
        self, runnable: Runnable, message: str, session_id: str | None, on_event: Callable[[dict], None]
    ) -> None:
        self._call(self._stream(runnable, message, session_id, on_event))

    async def _stream(
        self, runnable: Runnable, message: str, session_id: str | None, on_event: Callable[[dict], None]
    ) -> None:
        from agents_app import runs

        handle = await runs.prepare(
            runnable.kind,
            runnable.component_id,
            user=self.user,
            message=message,
            session_id=uuid.UUID(session_id) if session_id else None,
            allowed=self.allowed,
        )
        async for event in runs.launch(handle).follow():
            on_event(event if isinstance(event, dict) else event.to_dict())

    def follow(self, run_id: str, after_event_index: int, on_event: Callable[[dict], None]) -> None:
        self._call(self._follow(run_id, after_event_index, on_event))

    async def _follow(self, run_id: str, after_event_index: int, on_event: Callable[[dict], None]) -> None:
        from agents_app import runs

        events = await runs.follow_events(uuid.UUID(run_id), user=self.user, after_event_index=after_event_index)
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for data in events:
                on_event(data)

    def cancel(self, run_id: str) -> str:
        from agents_app import runs

        return self._call(runs.acancel(uuid.UUID(run_id), user=self.user))

    def run(self, runnable: Runnable, message: str, session_id: str | None) -> dict[str, Any]:
        return self._call(self._run(runnable, message, session_id))

    async def _run(self, runnable: Runnable, message: str, session_id: str | None) -> dict[str, Any]:
        from agents_app import runs

        handle = await runs.prepare(
            runnable.kind,
            runnable.component_id,
            user=self.user,
            message=message,
            session_id=uuid.UUID(session_id) if session_id else None,
            allowed=self.allowed,
        )
        return await runs.wait_result(handle)

    def sessions(self, runnable: Runnable) -> list[dict[str, Any]]:
        from sessions_app.selectors import session_list_for_user

        rows = session_list_for_user(
            user=self.user, kind=runnable.kind, component_id=runnable.component_id, allowed=self.allowed
        )[:20]
        return [
            {
                "session_id": str(s.id),
                "name": s.name,
                "run_count": s.run_count,
                "updated_at": s.updated_at.isoformat(timespec="seconds"),
            }
            for s in rows
        ]

    def close(self) -> None:
        # Background work the runs queued (memory, summaries on the embedded worker) may be cut off
        # when the command exits: its rows are durable, and the next process's sweep sends it again.
        # (Stopping the worker cleanly here would add seconds to every `agentos_run`.)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)


class RemoteBackend:
    """A remote site through its API (agentos_client), authenticated with an API token."""

    def __init__(self, url: str, token: str) -> None:
        from agentos_client import Client

        self.client = Client(url, token=token)

    def resolve(self, text: str) -> Runnable:
        from agentos_client import NotFound

        kinds, wanted = _split_kind(text)
        for kind in kinds:  # the id first: one request
            try:
                found = self.client.get_component(kind, wanted)  # type: ignore[arg-type]
            except NotFound:
                continue
            return Runnable(
                kind, found.get(f"{kind}_id") or wanted, found.get("name") or wanted, found.get("description") or ""
            )
        matches = [
            Runnable(kind, row.get(f"{kind}_id") or row.get("id"), row.get("name") or "", row.get("description") or "")
            for kind in kinds
            for row in self.client.list_components(kind)  # type: ignore[arg-type]
            if str(row.get("name", "")).lower() == wanted.lower()
        ]
        return _pick(text, matches)

    def stream(
        self, runnable: Runnable, message: str, session_id: str | None, on_event: Callable[[dict], None]
    ) -> None:
        for event in self.client.stream(runnable.kind, runnable.component_id, message, session_id=session_id):  # type: ignore[arg-type]
            on_event(event.to_dict())

    def follow(self, run_id: str, after_event_index: int, on_event: Callable[[dict], None]) -> None:
        for event in self.client.events(run_id, after_event_index=after_event_index):
            on_event(event.to_dict())

    def cancel(self, run_id: str) -> str:
        return str(self.client.cancel_run(run_id).get("status"))

    def run(self, runnable: Runnable, message: str, session_id: str | None) -> dict[str, Any]:
        return self.client.run(runnable.kind, runnable.component_id, message, session_id=session_id).data  # type: ignore[arg-type]

    def sessions(self, runnable: Runnable) -> list[dict[str, Any]]:
        page = self.client.list_sessions(**{f"{runnable.kind}_id": runnable.component_id}, page_size=20)
        return [
            {
                "session_id": s.session_id,
                "name": s.name,
                "run_count": s.data.get("run_count"),
                "updated_at": s.data.get("updated_at"),
            }
            for s in page.results
        ]

    def close(self) -> None:
        self.client.close()


def run_errors() -> tuple[type[BaseException], ...]:
    """What a start that cannot be made raises, on either backend: shown, not a traceback."""
    from agentos_client import AgentOSError
    from sessions_app.errors import DomainError

    return (DomainError, AgentOSError)


def error_code(exc: BaseException) -> str:
    return str(getattr(exc, "code", "error"))


# ---- rendering --------------------------------------------------------------------------------------


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def footer(event: dict[str, Any], seconds: float) -> Text:
    """Tokens, cost and time of an answer, from its terminal event."""
    metrics = event.get("metrics") or {}
    parts = []
    if metrics.get("total_tokens") is not None:
        parts.append(
            f"tokens {metrics.get('input_tokens', 0)} in / {metrics.get('output_tokens', 0)} out "
            f"({metrics.get('total_tokens')})"
        )
    cost = metrics.get("total_cost", metrics.get("cost"))
    if cost is not None:
        parts.append(f"cost {float(cost):.6f}")
    parts.append(f"time {seconds:.2f}s")
    return Text(" · ".join(parts), style="dim")


class AnswerView:
    """Renders one answer's events as they arrive: panels for what happens around the answer
    (printed above), the answer itself as live Markdown below them."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.text = ""
        self.started = time.monotonic()
        self.terminal: dict[str, Any] | None = None
        self.run_id: str | None = None  # the answer's run, once its first event came
        self.last_index = -1  # the last event_index shown: where a reader that stopped picks up
        self._lock = threading.Lock()  # events may come from a reader being stopped and its successor
        self.live = Live(Markdown(""), console=console, refresh_per_second=12, vertical_overflow="visible")

    def __enter__(self) -> AnswerView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.update(self._answer(), refresh=True)
        self.live.__exit__(None, None, None)
        if self.terminal is not None:
            self.console.print(footer(self.terminal, time.monotonic() - self.started))

    def _answer(self) -> Markdown:
        return Markdown(self.text)

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            index = event.get("event_index")
            if isinstance(index, int):
                if index <= self.last_index:
                    return  # shown already (a reader stopped after a Ctrl-C, then its successor)
                self.last_index = index
            if self.run_id is None and event.get("run_id") and not event.get("parent_run_id"):
                self.run_id = str(event["run_id"])
            self._show(event)

    def _show(self, event: dict[str, Any]) -> None:
        name = str(event.get("event", ""))
        nested = bool(event.get("parent_run_id"))
        if name in CONTENT and not nested:
            self.text += str(event.get("content") or "")
            self.live.update(self._answer())
            return
        panel = self._panel(name, event, nested)
        if panel is not None:
            self.console.print(panel)
        if name in TERMINAL and not nested:
            self.terminal = event
            if name in COMPLETED and not self.text and event.get("content") is not None:
                content = event["content"]
                self.text = content if isinstance(content, str) else "```json\n" + _short(content, 10_000) + "\n```"
            self.live.update(self._answer())

    def _panel(self, name: str, event: dict[str, Any], nested: bool) -> Panel | None:
        who = event.get("agent_name") or event.get("team_name") or event.get("step_name") or ""
        if name.endswith(("ToolCallCompleted", "ToolCallError")):
            tool = event.get("tool") or {}
            call = f"{tool.get('tool_name')}({_short(tool.get('tool_args') or {}, 200)})"
            body = Group(Text(call, style="bold"), Text("→ " + _short(tool.get("result"))))
            failed = name.endswith("Error") or tool.get("tool_call_error")
            title = "tool call" + (f" · {who}" if nested and who else "")
            return Panel(body, title=title, border_style="red" if failed else "cyan", expand=False)
        if "Hook" in name and name.endswith("Completed"):
            hook = event.get("hook_name") or event.get("hook") or name
            detail = event.get("content") or event.get("status") or "done"
            return Panel(Text(_short(detail)), title=f"hook {hook}", border_style="magenta", expand=False)
        if name == "StepCompleted":
            title = f"step {event.get('step_index')}: {event.get('step_name')}"
            return Panel(Text(_short(event.get("content") or "", 600)), title=title, border_style="blue", expand=False)
        if nested and name in COMPLETED:
            title = f"member {who}" if who else "member"
            if event.get("workflow_id"):
                return None  # a step's own answer: its StepCompleted panel shows it
            return Panel(Text(_short(event.get("content") or "", 600)), title=title, border_style="blue", expand=False)
        if name in PAUSED and not nested:
            waiting = [
                f"{t.get('tool_name')}({_short(t.get('tool_args') or {}, 200)})  id {t.get('tool_call_id')}"
                for t in event.get("tools") or []
                if t.get("requires_confirmation")
                or t.get("requires_user_input")
                or t.get("external_execution_required")
            ]
            body = "\n".join(waiting) + "\nDecide in the admin or with POST /api/runs/<run_id>/continue."
            return Panel(Text(body), title=f"paused · run {event.get('run_id')}", border_style="yellow", expand=False)
        if name.endswith("Error") and not name.endswith("ToolCallError"):
            body = f"{event.get('error_type') or 'error'}: {event.get('content') or ''}"
            return Panel(Text(body), title="error" + (f" · {who}" if nested and who else ""), border_style="red")
        if name.endswith("Cancelled") and not nested:
            return Panel(Text("The answer was stopped."), border_style="yellow", expand=False)
        return None


def sessions_table(rows: list[dict[str, Any]], current: str | None) -> Table:
    table = Table(title="Sessions", show_lines=False)
    for column in ("", "session", "name", "runs", "updated"):
        table.add_column(column)
    for row in rows:
        mark = "●" if row["session_id"] == current else ""
        table.add_row(
            mark,
            row["session_id"],
            row.get("name") or "",
            str(row.get("run_count") or 0),
            str(row.get("updated_at") or ""),
        )
    return table


HELP = "Commands: /new (a new session), /sessions (your sessions), /switch ID, /exit."


def chat_loop(
    console: Console, backend: Backend, runnable: Runnable, session_id: str | None, read: Callable[[], str]
) -> None:
    """The conversation: read a line, answer it (streamed), until /exit or end of input."""
    console.print(Panel(Text(runnable.description or runnable.name), title=runnable.label, border_style="green"))
    console.print(Text(HELP, style="dim"))
    if session_id:
        console.print(Text(f"Session {session_id}", style="dim"))
    while True:
        try:
            line = read().strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not line:
            continue
        if line.startswith("/"):
            command, _, arg = line.partition(" ")
            if command in ("/exit", "/quit"):
                return
            if command == "/new":
                session_id = None
                console.print(Text("New session: your next message starts it.", style="green"))
            elif command == "/sessions":
                rows = backend.sessions(runnable)
                console.print(sessions_table(rows, session_id) if rows else Text("No sessions yet.", style="dim"))
            elif command == "/switch":
                wanted = arg.strip()
                matches = [r["session_id"] for r in backend.sessions(runnable) if r["session_id"].startswith(wanted)]
                if wanted and len(matches) == 1:
                    session_id = matches[0]
                    console.print(Text(f"Switched to session {session_id}.", style="green"))
                else:
                    console.print(
                        Text(f"No single session of yours starts with {wanted!r}: see /sessions.", style="red")
                    )
            else:
                console.print(Text(HELP, style="dim"))
            continue
        try:
            with AnswerView(console) as view:
                try:
                    backend.stream(runnable, line, session_id, view)
                except KeyboardInterrupt:
                    cancel_answer(console, backend, view)
        except run_errors() as exc:
            console.print(Panel(Text(str(exc)), title=f"refused: {error_code(exc)}", border_style="red"))
            continue
        if view.terminal is not None and view.terminal.get("session_id"):
            session_id = view.terminal["session_id"]


def cancel_answer(console: Console, backend: Backend, view: AnswerView) -> None:
    """Ctrl-C during an answer: cancel its run (it is stored as cancelled, with what it said so
    far), show its last events up to `RunCancelled`, and say so. A second Ctrl-C meanwhile stops
    waiting (the cancel was asked already)."""
    run_id = view.run_id
    if run_id is None:
        console.print(Text("Stopped before the run started.", style="yellow"))
        return
    try:
        status = backend.cancel(run_id)
        if status == "cancelling":
            backend.follow(run_id, view.last_index, view)
    except KeyboardInterrupt:
        console.print(Text(f"Cancelling run {run_id}; not waiting for it.", style="yellow"))
        return
    except run_errors() as exc:
        console.print(Text(f"Could not cancel run {run_id}: {error_code(exc)}: {exc}", style="red"))
        return
    ended = str((view.terminal or {}).get("event", ""))
    if ended in CANCELLED or status == "cancelled":
        console.print(Text(f"Cancelled run {run_id}.", style="yellow"))
    else:
        console.print(Text(f"Run {run_id} had ended already ({status}).", style="yellow"))


def events_lines(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    for event in events:
        yield json.dumps(event, ensure_ascii=False, default=str)


def session_id_argument(value: str) -> str:
    """`--session`: a session id is a UUID; anything else is a usage error, not a traceback."""
    import argparse
    import uuid

    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a session id (a UUID).") from None


def paused_notice(result: dict[str, Any]) -> str:
    """What a script is told (on stderr) about a run that waits for a person: its waiting calls and
    how to continue it."""
    waiting = [
        f"{t.get('tool_name')} (call {t.get('tool_call_id')})"
        for t in result.get("tools") or []
        if t.get("requires_confirmation") or t.get("requires_user_input") or t.get("external_execution_required")
    ]
    run_id = result.get("run_id")
    return (
        f"paused: run {run_id} waits for a decision on {', '.join(waiting) or 'its tool calls'}; "
        f"decide in the admin or with POST /api/runs/{run_id}/continue."
    )


def add_backend_arguments(parser: Any) -> None:
    parser.add_argument("runnable", help="An agent, team or workflow: its id, its name, or kind:id (team:demo-team).")
    parser.add_argument("--session", default=None, type=session_id_argument, help="Continue this session (its id).")
    parser.add_argument("--user", default=None, help="Run as this user (local runs; default: the first superuser).")
    parser.add_argument("--url", default=None, help="Drive a remote site instead of the local database.")
    parser.add_argument("--token", default=None, help="The remote site's API token (or AGENTOS_TOKEN).")


def backend_from_options(options: dict[str, Any]) -> Backend:
    """The remote site of `--url` (with `--token` or AGENTOS_TOKEN), else the local database as
    `--user` (default: the first active superuser: what `agentos_demo` creates)."""
    import os

    if options.get("url"):
        token = options.get("token") or os.environ.get("AGENTOS_TOKEN")
        if not token:
            raise CommandError("--url needs --token (or AGENTOS_TOKEN): an API token of that site.")
        return RemoteBackend(options["url"], token)
    from django.contrib.auth import get_user_model

    User = get_user_model()
    name = options.get("user")
    if name:
        user = User.objects.filter(**{User.USERNAME_FIELD: name, "is_active": True}).first()
        if user is None:
            raise CommandError(f"No active user {name!r}.")
    else:
        user = User.objects.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if user is None:
            raise CommandError("No superuser to run as: pass --user NAME (or run agentos_demo).")
    return LocalBackend(user)


def resolve_or_fail(backend: Backend, text: str) -> Runnable:
    try:
        return backend.resolve(text)
    except run_errors() as exc:
        raise CommandError(f"{error_code(exc)}: {exc}") from exc
