"""Which run and which request a log line was written for: context variables, and a logging filter
that copies them onto every record.

Why: a server process interleaves the log lines of many runs and requests; an operator reading JSON
logs wants every line of one run (its model errors, its hooks' failures, a takeover) or of one
request together. The ids are set where a run executes (agents_app.runtime, in the run's own task,
so they follow it through every await and every thread hop `sync_to_async` makes) and where a
request enters (the site's request-id middleware); `ContextFilter`, installed on a handler by the
site's LOGGING, adds them to each record as attributes (`run_id`, `session_id`, `agent_id` /
`team_id` / `workflow_id`, `user_id`, `request_id`), which a JSON formatter writes as fields.

Cheap by design: binding a run is skipped altogether unless a `ContextFilter` exists in the process
(the JSON log format), so runs pay nothing for it otherwise; the request id is always bound, because
it is echoed to the client whatever the log format.

Child runs (a team's members, a workflow's steps) execute inside their root run's task: their lines
carry the root run's ids (their messages name the child run where it matters).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any
from uuid import UUID

__all__ = [
    "ContextFilter",
    "bind_run",
    "clear_request_id",
    "current_request_id",
    "enabled",
    "run_context",
    "run_fields",
    "set_request_id",
]

_run: ContextVar[dict[str, Any] | None] = ContextVar("agentos_log_run", default=None)
_request_id: ContextVar[str | None] = ContextVar("agentos_log_request_id", default=None)
# True once a ContextFilter was built (by logging's dictConfig): only then are runs bound.
_enabled = False


def enabled() -> bool:
    """Whether log records get the run's ids (a ContextFilter is installed in this process)."""
    return _enabled


def run_fields(
    *, run_id: UUID | str, session_id: UUID | str, kind: str, component_id: str | None, user_id: Any
) -> dict[str, Any]:
    """The fields a run's log lines carry; `kind` is agent, team or workflow."""
    return {
        "run_id": str(run_id),
        "session_id": str(session_id),
        f"{kind}_id": component_id,
        "user_id": user_id,
    }


def bind_run(**fields: Any) -> Token[dict[str, Any] | None] | None:
    """Bind a run (`run_fields`' arguments) to the current context, for the rest of it: call it at
    the top of the task that executes the run. Returns the token to reset it with, or None when
    nothing was bound (no ContextFilter in this process)."""
    if not _enabled:
        return None
    return _run.set(run_fields(**fields))


@contextmanager
def run_context(**fields: Any) -> Iterator[None]:
    """Bind a run (`run_fields`' arguments) for the block: code that works for a run outside its
    task (a background hook in a worker, a process settling a run another process left)."""
    token = bind_run(**fields)
    try:
        yield
    finally:
        if token is not None:
            _run.reset(token)


def set_request_id(request_id: str) -> None:
    """Bind the current request's id (the request-id middleware), for the rest of the context: under
    ASGI each request has a task of its own; a WSGI thread calls `clear_request_id` after each."""
    _request_id.set(request_id)


def clear_request_id() -> None:
    """No request from here on in this context (a WSGI thread, between two requests)."""
    _request_id.set(None)


def current_request_id() -> str | None:
    return _request_id.get()


class ContextFilter(logging.Filter):
    """Adds the bound run's fields and the request id to every record that passes the handler it
    is installed on (values a record was given through `extra=` are kept). Never drops a record."""

    def __init__(self, name: str = "") -> None:
        global _enabled
        super().__init__(name)
        _enabled = True

    def filter(self, record: logging.LogRecord) -> bool:
        run = _run.get()
        if run is not None:
            attrs = record.__dict__
            for key, value in run.items():
                attrs.setdefault(key, value)
        request_id = _request_id.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True
