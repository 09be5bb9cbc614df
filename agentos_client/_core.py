"""What the sync and the async client share: request bodies, answers turned into objects or
exceptions, the SSE parser, the wait before a retry. No I/O here."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from agentos_client.errors import AgentOSError, ConnectionFailed, error_from_body, error_from_frame
from agentos_client.types import KINDS, Decision, EvalEvent, EvalRunOptions, Event, Kind, Page, RunResult

# What a dropped connection looks like to httpx: the peer closed mid-body, reset it, or went silent.
DROPPED = (httpx.TransportError,)
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the client retries. 429s: at most `max_retries` times, each after the site's
    `Retry-After` (capped: a longer wait than `max_retry_wait` is raised at once as `RateLimited`,
    never slept through). Dropped streams: resumed at most `stream_retries` times in a row (any event
    that arrives resets the count), after `backoff` seconds doubling, with jitter."""

    max_retries: int = 3
    max_retry_wait: float = 30.0
    stream_retries: int = 5
    backoff: float = 0.25

    def resume_delay(self, attempt: int) -> float:
        return min(5.0, self.backoff * 2 ** max(0, attempt - 1)) * random.uniform(0.8, 1.2)


def note_pause(paused_at: dict[str, int], run_id: str | None, event: Event) -> None:
    """Remember where a run's stream paused (its pause's `event_index`): what a later `continue`
    of it resumes a dropped stream after, without asking the site."""
    if event.is_pause and run_id and event.event_index is not None:
        paused_at[str(run_id)] = event.event_index


def continue_not_taken(event: Event, after: int) -> bool:
    """Whether a stream followed after a dropped `continue` says the continue never reached the
    site: the run still waits, with nothing after its pause."""
    return (
        event.event == "RunEnded"
        and event.data.get("status") == "paused"
        and event.data.get("last_event_index") == after
    )


def run_path(kind: Kind | str, component_id: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return f"/api/{kind}s/{quote(component_id, safe='')}/runs"


def run_body(
    message: str, *, session_id: str | None, stream: bool, images: list[dict[str, Any]] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message, "stream": stream}
    if session_id:
        body["session_id"] = str(session_id)
    if images:
        body["images"] = images
    return body


def decisions_body(decisions: Iterable[Decision | dict[str, Any]], *, stream: bool) -> dict[str, Any]:
    return {"decisions": [d.to_dict() if isinstance(d, Decision) else dict(d) for d in decisions], "stream": stream}


def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), or the body's `retry_after`."""
    value = response.headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                from datetime import UTC, datetime

                return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
            except (TypeError, ValueError):
                pass
    try:
        found = response.json().get("retry_after")
        return float(found) if found is not None else None
    except (ValueError, AttributeError, TypeError):
        return None


def json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def error_for(response: httpx.Response) -> AgentOSError:
    return error_from_body(response.status_code, json_or_text(response), retry_after=retry_after_seconds(response))


def is_run_json(body: Any) -> bool:
    """A run that started and failed is answered with its stored JSON and a 4xx/5xx status."""
    return isinstance(body, dict) and "run_id" in body and "status" in body and "code" not in body


def run_result(response: httpx.Response) -> RunResult:
    """A run's answer: its result (completed, paused, cancelled, or failed after it started), or the
    error that kept it from starting, raised."""
    body = json_or_text(response)
    if response.is_success or is_run_json(body):
        return RunResult.from_dict(body)
    raise error_for(response)


def page_of(body: Any, make: Any) -> Page:
    if isinstance(body, list):
        return Page(count=len(body), results=[make(item) for item in body])
    return Page(
        count=int(body.get("count", 0)),
        results=[make(item) for item in body.get("results", [])],
        next=body.get("next"),
        previous=body.get("previous"),
    )


def sse_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The data of each Server-Sent Events frame, from the stream's lines (`event:`, `id:`, `data:`;
    a blank line ends a frame; `:` comments ignored)."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield _frame(data)
                data = []
            continue
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:  # a last frame without its blank line: the stream was cut
        return


class SSEParser:
    """The same parser fed line by line (the async client's lines come from an async iterator)."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> dict[str, Any] | None:
        if not line:
            if self._data:
                frame, self._data = _frame(self._data), []
                return frame
            return None
        if line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
        return None


def _frame(data: list[str]) -> dict[str, Any]:
    parsed = json.loads("\n".join(data))
    return parsed if isinstance(parsed, dict) else {"event": "message", "content": parsed}


# ---- evals (docs/evals.md) ------------------------------------------------------------------------


def eval_path(suite: str | None = None, *parts: object) -> str:
    """`/api/evals/…`: the suites (`/api/evals/`), one suite (`…/{slug}/`), or under it. The site's
    routes differ in their trailing slash (routers' suites and cases have one; runs do not)."""
    if suite is None:
        return "/api/evals/"
    path = "/api/evals/" + quote(str(suite), safe="") + "".join("/" + quote(str(p), safe="") for p in parts)
    return path + "/" if not parts or parts[0] == "cases" else path


def fields(**values: Any) -> dict[str, Any]:
    """A request body or query of the values given (None: not sent, the site's default)."""
    return {k: v for k, v in values.items() if v is not None}


def eval_run_body(options: EvalRunOptions) -> dict[str, Any]:
    """`POST …/runs`: which cases (default all), a name, a model config id to answer with instead
    of the target's own, a saved configuration version of the target to run as."""
    cases = options.get("cases")
    return fields(
        cases=list(cases) if cases is not None else None,
        name=options.get("name"),
        model=options.get("model"),
        version=options.get("version"),
    )


class EvalFollow:
    """Following an eval run's progress stream through dropped connections. The stream has no
    `event_index` to resume after: a reconnect replays it (the finished cases from the database,
    then the current state), and this drops what was already yielded (a case result by its id, a
    progress frame that says nothing new), so no frame is missed or repeated."""

    def __init__(self, retry: RetryPolicy) -> None:
        self.retry = retry
        self.failures = 0
        self._results: set[Any] = set()
        self._state: tuple[Any, ...] | None = None

    def take(self, data: dict[str, Any]) -> EvalEvent | None:
        """The event of a frame, or None when it repeats one already yielded (an `Error` frame raises)."""
        name = str(data.get("event", "message"))
        if name == "Error":
            raise error_from_frame(data)
        if name == "EvalCaseCompleted":
            if data.get("id") in self._results:
                return None
            self._results.add(data.get("id"))
        elif name == "EvalRunProgress":
            state = (data.get("status"), data.get("cases_done"), data.get("score"))
            if state == self._state:
                return None
            self._state = state
        self.failures = 0
        return EvalEvent(event=name, data=data)

    def after_drop(self, error: Exception | None) -> float:
        """Seconds to wait before reconnecting, or `ConnectionFailed` when the retries are spent."""
        self.failures += 1
        if self.failures > self.retry.stream_retries:
            raise ConnectionFailed(f"could not follow the eval run: {error}", code="connection_failed") from error
        return self.retry.resume_delay(self.failures)
