"""The synchronous client (`Client`): REST calls and SSE streams over httpx; `chat()` opens the
websocket protocol (agentos_client.ws_sync)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, Unpack

import httpx

from agentos_client import _core
from agentos_client._core import fields as _params
from agentos_client.errors import ConnectionFailed, RateLimited, error_from_frame
from agentos_client.types import (
    Decision,
    EvalCase,
    EvalComparison,
    EvalEvent,
    EvalRun,
    EvalRunOptions,
    EvalSuite,
    Event,
    Kind,
    Memory,
    Page,
    RunResult,
    Session,
)
from agentos_client.ws_sync import SyncChatSocket


class Client:
    """A client of one AgentOS site, authenticated with an API token (a scoped `agos_…` token or a
    DRF token; docs/api.md#authentication).

    >>> with Client("http://127.0.0.1:8000", token="…") as client:
    ...     client.run_agent("demo", "what is 6*7?").content
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float | httpx.Timeout = _core.DEFAULT_TIMEOUT,
        retry: _core.RetryPolicy | None = None,
        api_path: str = "/api",
        websocket_path: str = "/ws",
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.retry = retry or _core.RetryPolicy()
        # Where the site mounts the API and the websockets (a site that embeds the apps picks its
        # own prefixes: docs/deployment.md).
        self.api_path = "/" + api_path.strip("/") if api_path.strip("/") else ""
        self.websocket_path = websocket_path.strip("/") or "ws"
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = http or httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self._owns_http = http is None
        self._paused_at: dict[str, int] = {}  # run_id → its pause's event_index, from the streams read
        self.sleep = time.sleep  # tests may replace it

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def chat(self, kind: Kind, component_id: str) -> SyncChatSocket:
        """The websocket protocol for one agent, team or workflow, blocking: `with client.chat(...) as chat`."""
        return SyncChatSocket(
            self.base_url, kind, component_id, token=self.token, retry=self.retry, prefix=self.websocket_path
        )

    # ---- plumbing ----------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, idempotent: bool = False, **kwargs: Any) -> httpx.Response:
        """One request, retried on 429 after its Retry-After (bounded), and, when `idempotent`, on a
        dropped connection."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, self._path(path), **kwargs)
            except _core.DROPPED as exc:
                attempt += 1
                if not idempotent or attempt > self.retry.stream_retries:
                    raise ConnectionFailed(f"{method} {path}: {exc}", code="connection_failed") from exc
                self.sleep(self.retry.resume_delay(attempt))
                continue
            if response.status_code != 429:
                return response
            wait = self._wait_for_429(response, attempt)
            attempt += 1
            self.sleep(wait)

    def _path(self, path: str) -> str:
        """The API's paths are written as the demo site serves them (`/api/…`)."""
        return self.api_path + path[4:] if path.startswith("/api/") else path

    def _wait_for_429(self, response: httpx.Response, attempt: int) -> float:
        """Seconds to wait before trying again, or the `RateLimited` error when retries are spent."""
        wait = _core.retry_after_seconds(response)
        error = _core.error_for(response)
        if attempt >= self.retry.max_retries or (wait or 0) > self.retry.max_retry_wait:
            raise error
        assert isinstance(error, RateLimited)
        return wait if wait is not None else min(self.retry.max_retry_wait, 2.0**attempt)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, idempotent=method == "GET", **kwargs)
        if not response.is_success:
            raise _core.error_for(response)
        return None if response.status_code == 204 else _core.json_or_text(response)

    def _open(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A streamed answer, opened: its status checked (errors answered before a stream are JSON)."""
        attempt = 0
        headers = {**kwargs.pop("headers", {}), "Accept": "text/event-stream"}
        while True:
            request = self._http.build_request(method, self._path(path), headers=headers, **kwargs)
            response = self._http.send(request, stream=True)
            if response.status_code == 429:
                response.read()
                response.close()
                wait = self._wait_for_429(response, attempt)
                attempt += 1
                self.sleep(wait)
                continue
            if not response.is_success:
                response.read()
                response.close()
                raise _core.error_for(response)
            return response

    def _follow(
        self,
        first: tuple[str, str, dict[str, Any]] | None,
        *,
        run_id: str | None = None,
        after_event_index: int = -1,
        retry_first: bool = True,
    ) -> Iterator[Event]:
        """A run's events until its terminal one, resuming after a dropped connection from the last
        `event_index` seen (`GET /api/runs/{run_id}/events?after_event_index=N`), so no event is
        missed or repeated. `first`: the request that starts the stream (a run's POST, with an
        Idempotency-Key so that a drop before its first event can be retried without a second
        run; `retry_first` False for a request that must not be sent twice); without it, the run's
        events endpoint."""
        last = after_event_index
        failures = 0
        while True:
            if first is not None and run_id is None:
                method, path, kwargs = first
            elif run_id is not None:
                method, path, kwargs = "GET", f"/api/runs/{run_id}/events", {"params": {"after_event_index": last}}
            else:  # pragma: no cover - guarded by the callers
                raise ValueError("nothing to follow")
            paused = False
            try:
                response = self._open(method, path, **kwargs)
                try:
                    if response.status_code == 204:  # nothing after `last`: the run had ended
                        return
                    for data in _core.sse_events(response.iter_lines()):
                        if data.get("event") == "Error":
                            raise error_from_frame(data)
                        event = Event.from_dict(data)
                        if run_id is None and event.run_id and not event.parent_run_id:
                            run_id = event.run_id
                        if event.event_index is not None:
                            if event.event_index <= last:
                                continue  # already seen before the drop
                            last = event.event_index
                        failures = 0
                        yield event
                        _core.note_pause(self._paused_at, run_id, event)
                        paused = event.is_pause
                        if (event.is_terminal and not paused) or event.event == "RunEnded":
                            return
                    # A clean end: after RunPaused, the run waits (a replay goes on past a pause that
                    # was continued, so a pause is the end only when the stream ends there).
                    if paused:
                        return
                finally:
                    response.close()
            except _core.DROPPED as exc:
                error: Exception = exc
            else:
                error = ConnectionFailed("the stream ended before the run did", code="connection_failed")
            if run_id is None and not retry_first:
                raise ConnectionFailed(f"the stream dropped before its first event: {error}", code="connection_failed")
            failures += 1
            if failures > self.retry.stream_retries:
                raise ConnectionFailed(f"could not resume the stream: {error}", code="connection_failed") from error
            self.sleep(self.retry.resume_delay(failures))

    # ---- runs --------------------------------------------------------------------------------

    def run(
        self,
        kind: Kind,
        component_id: str,
        message: str,
        *,
        session_id: str | None = None,
        images: list[dict[str, Any]] | None = None,
        idempotency_key: str | None = None,
    ) -> RunResult:
        """Run an agent, team or workflow to its end. A run that starts and fails is returned (its
        `status` `error`, `error` its type and message); one that cannot start raises."""
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        body = _core.run_body(message, session_id=session_id, stream=False, images=images)
        response = self._send("POST", _core.run_path(kind, component_id), json=body, headers=headers, idempotent=True)
        return _core.run_result(response)

    def stream(
        self,
        kind: Kind,
        component_id: str,
        message: str,
        *,
        session_id: str | None = None,
        images: list[dict[str, Any]] | None = None,
        idempotency_key: str | None = None,
    ) -> Iterator[Event]:
        """Run it and yield its events as they happen, through dropped connections (resumed)."""
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        body = _core.run_body(message, session_id=session_id, stream=True, images=images)
        return self._follow(("POST", _core.run_path(kind, component_id), {"json": body, "headers": headers}))

    def run_agent(self, agent_id: str, message: str, **kwargs: Any) -> RunResult:
        return self.run("agent", agent_id, message, **kwargs)

    def stream_agent(self, agent_id: str, message: str, **kwargs: Any) -> Iterator[Event]:
        return self.stream("agent", agent_id, message, **kwargs)

    def run_team(self, team_id: str, message: str, **kwargs: Any) -> RunResult:
        return self.run("team", team_id, message, **kwargs)

    def stream_team(self, team_id: str, message: str, **kwargs: Any) -> Iterator[Event]:
        return self.stream("team", team_id, message, **kwargs)

    def run_workflow(self, workflow_id: str, message: str, **kwargs: Any) -> RunResult:
        return self.run("workflow", workflow_id, message, **kwargs)

    def stream_workflow(self, workflow_id: str, message: str, **kwargs: Any) -> Iterator[Event]:
        return self.stream("workflow", workflow_id, message, **kwargs)

    def events(self, run_id: str, *, after_event_index: int = -1) -> Iterator[Event]:
        """A run's events after `after_event_index` (stored, then live until it ends), resumed
        through dropped connections."""
        return self._follow(None, run_id=str(run_id), after_event_index=after_event_index)

    def get_run(self, run_id: str) -> RunResult:
        return RunResult.from_dict(self._json("GET", f"/api/runs/{run_id}/"))

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        """Stop a run (any kind, any process): `{"run_id", "status"}`, `cancelling` or its final status."""
        return self._json("POST", f"/api/runs/{run_id}/cancel")

    def continue_run(self, run_id: str, decisions: Iterable[Decision | dict[str, Any]]) -> RunResult:
        """Continue a paused run with a decision per waiting tool call; its result."""
        response = self._send(
            "POST", f"/api/runs/{run_id}/continue", json=_core.decisions_body(decisions, stream=False)
        )
        return _core.run_result(response)

    def stream_continue(
        self, run_id: str, decisions: Iterable[Decision | dict[str, Any]], *, after_event_index: int | None = None
    ) -> Iterator[Event]:
        """Continue a paused run and yield its new events (from `RunContinued`). A connection
        dropped meanwhile, even before the first new event, is resumed from the pause (the continue
        is never sent twice): `after_event_index`, the `RunPaused` event's `event_index`, else the
        pause this client streamed, else the run's `last_event_index` read before the continue."""
        body = _core.decisions_body(decisions, stream=True)
        first = ("POST", f"/api/runs/{run_id}/continue", {"json": body})
        return self._continue_then_follow(first, str(run_id), after_event_index)

    def _pause_point(self, run_id: str) -> int | None:
        known = self._paused_at.get(run_id)
        if known is not None:
            return known
        found = self._json("GET", f"/api/runs/{run_id}/").get("last_event_index")
        return found if isinstance(found, int) else None

    def _continue_then_follow(
        self, first: tuple[str, str, dict[str, Any]], run_id: str, after: int | None
    ) -> Iterator[Event]:
        if after is None:
            after = self._pause_point(run_id)
        if after is None:  # a site that does not tell: a drop before the first event cannot be resumed
            yield from self._follow(first, retry_first=False)
            return
        method, path, kwargs = first
        last = after
        try:
            response = self._open(method, path, **kwargs)
            try:
                for data in _core.sse_events(response.iter_lines()):
                    if data.get("event") == "Error":
                        raise error_from_frame(data)
                    event = Event.from_dict(data)
                    if event.event_index is not None:
                        last = max(last, event.event_index)
                    yield event
                    _core.note_pause(self._paused_at, run_id, event)
                    if event.is_terminal:
                        return
            finally:
                response.close()
        except _core.DROPPED:
            pass
        for event in self._follow(None, run_id=run_id, after_event_index=last):
            if _core.continue_not_taken(event, after):
                raise ConnectionFailed(
                    "the connection dropped before the continue reached the site: the run still waits",
                    code="connection_failed",
                )
            yield event

    # ---- components, sessions, memories ------------------------------------------------------

    def list_components(self, kind: Kind) -> list[dict[str, Any]]:
        """Agents, teams or workflows you may run."""
        body = self._json("GET", f"/api/{kind}s/")
        return body if isinstance(body, list) else list(body.get("results", []))

    def get_component(self, kind: Kind, component_id: str) -> dict[str, Any]:
        return self._json("GET", f"/api/{kind}s/{component_id}/")

    def list_sessions(
        self,
        *,
        agent_id: str | None = None,
        team_id: str | None = None,
        workflow_id: str | None = None,
        page: int | None = None,
        page_size: int | None = None,
    ) -> Page:
        params = _params(agent_id=agent_id, team_id=team_id, workflow_id=workflow_id, page=page, page_size=page_size)
        return _core.page_of(self._json("GET", "/api/sessions/", params=params), Session.from_dict)

    def get_session(self, session_id: str) -> Session:
        return Session.from_dict(self._json("GET", f"/api/sessions/{session_id}/"))

    def rename_session(self, session_id: str, name: str) -> Session:
        return Session.from_dict(self._json("PATCH", f"/api/sessions/{session_id}/", json={"name": name}))

    def end_session(self, session_id: str) -> Session:
        return Session.from_dict(self._json("POST", f"/api/sessions/{session_id}/end"))

    def delete_session(self, session_id: str) -> None:
        self._json("DELETE", f"/api/sessions/{session_id}/")

    def list_memories(
        self,
        *,
        topic: str | None = None,
        search: str | None = None,
        agent_id: str | None = None,
        page: int | None = None,
        page_size: int | None = None,
    ) -> Page:
        params = _params(topic=topic, search=search, agent_id=agent_id, page=page, page_size=page_size)
        return _core.page_of(self._json("GET", "/api/memories/", params=params), Memory.from_dict)

    def create_memory(self, memory: str, *, topics: list[str] | None = None, agent_id: str | None = None) -> Memory:
        body = _params(memory=memory, topics=topics, agent_id=agent_id)
        return Memory.from_dict(self._json("POST", "/api/memories/", json=body))

    def get_memory(self, memory_id: str) -> Memory:
        return Memory.from_dict(self._json("GET", f"/api/memories/{memory_id}/"))

    def update_memory(self, memory_id: str, *, memory: str | None = None, topics: list[str] | None = None) -> Memory:
        body = _params(memory=memory, topics=topics)
        return Memory.from_dict(self._json("PATCH", f"/api/memories/{memory_id}/", json=body))

    def delete_memory(self, memory_id: str) -> None:
        self._json("DELETE", f"/api/memories/{memory_id}/")

    def usage(self) -> dict[str, Any]:
        return self._json("GET", "/api/usage/")

    # ---- evals (staff: docs/evals.md) ----------------------------------------------------------

    def list_eval_suites(self, *, page: int | None = None, page_size: int | None = None) -> Page:
        """Eval suites (`Page` of `EvalSuite`, each with its `last_score`)."""
        params = _core.fields(page=page, page_size=page_size)
        return _core.page_of(self._json("GET", _core.eval_path(), params=params), EvalSuite.from_dict)

    def get_eval_suite(self, suite: str) -> EvalSuite:
        return EvalSuite.from_dict(self._json("GET", _core.eval_path(suite)))

    def create_eval_suite(self, slug: str, name: str, **suite_fields: Any) -> EvalSuite:
        """A suite on one target: `agent=`, `team=` or `workflow=` (a slug); optionally
        `description`, `pinned_version`, `judge_model` (a model config id), `schedule`."""
        body = _core.fields(slug=slug, name=name, **suite_fields)
        return EvalSuite.from_dict(self._json("POST", _core.eval_path(), json=body))

    def update_eval_suite(self, suite: str, **suite_fields: Any) -> EvalSuite:
        """Change the fields given (PATCH); `None` values are not sent."""
        return EvalSuite.from_dict(self._json("PATCH", _core.eval_path(suite), json=_core.fields(**suite_fields)))

    def delete_eval_suite(self, suite: str) -> None:
        """Delete a suite with its cases and eval runs."""
        self._json("DELETE", _core.eval_path(suite))

    def list_eval_cases(self, suite: str, *, page: int | None = None, page_size: int | None = None) -> Page:
        params = _core.fields(page=page, page_size=page_size)
        return _core.page_of(self._json("GET", _core.eval_path(suite, "cases"), params=params), EvalCase.from_dict)

    def get_eval_case(self, suite: str, case_id: int) -> EvalCase:
        return EvalCase.from_dict(self._json("GET", _core.eval_path(suite, "cases", case_id)))

    def create_eval_case(self, suite: str, input: str, **case_fields: Any) -> EvalCase:
        """A case: `kind` (accuracy by default; agent_as_judge, reliability, performance) and what
        it needs: `expected_output`, `criteria`, `expected_tool_calls`; `name`, `iterations`, …"""
        body = _core.fields(input=input, **case_fields)
        return EvalCase.from_dict(self._json("POST", _core.eval_path(suite, "cases"), json=body))

    def update_eval_case(self, suite: str, case_id: int, **case_fields: Any) -> EvalCase:
        body = _core.fields(**case_fields)
        return EvalCase.from_dict(self._json("PATCH", _core.eval_path(suite, "cases", case_id), json=body))

    def delete_eval_case(self, suite: str, case_id: int) -> None:
        self._json("DELETE", _core.eval_path(suite, "cases", case_id))

    def start_eval_run(self, suite: str, **options: Unpack[EvalRunOptions]) -> EvalRun:
        """Start an eval run (the site answers at once; its cases run in the background): `cases`
        (ids; default all), `name`, `model` (a model config id the target answers with instead of
        its own), `version` (a saved version of the target to run as). `wait_eval_run` follows it."""
        body = _core.eval_run_body(options)
        return EvalRun.from_dict(self._json("POST", _core.eval_path(suite, "runs"), json=body))

    def run_eval(self, suite: str, **options: Unpack[EvalRunOptions]) -> EvalRun:
        """Start an eval run and wait for its end: the `EvalRun` with each case's result."""
        return self.wait_eval_run(suite, self.start_eval_run(suite, **options).eval_run_id)

    def list_eval_runs(self, suite: str, *, page: int | None = None, page_size: int | None = None) -> Page:
        """A suite's eval runs, newest first (`Page` of `EvalRun`, without their results)."""
        params = _core.fields(page=page, page_size=page_size)
        return _core.page_of(self._json("GET", _core.eval_path(suite, "runs"), params=params), EvalRun.from_dict)

    def get_eval_run(self, suite: str, eval_run_id: str) -> EvalRun:
        """Poll an eval run: its status, progress, score and each case's result."""
        return EvalRun.from_dict(self._json("GET", _core.eval_path(suite, "runs", eval_run_id)))

    def eval_events(self, suite: str, eval_run_id: str) -> Iterator[EvalEvent]:
        """An eval run's progress (`EvalCaseCompleted`, `EvalRunProgress`, then `EvalRunCompleted`),
        followed through dropped connections (a reconnect replays; repeats are dropped)."""
        follow = _core.EvalFollow(self.retry)
        path = _core.eval_path(suite, "runs", eval_run_id, "events")
        while True:
            error: Exception | None = None
            try:
                response = self._open("GET", path)
                try:
                    for data in _core.sse_events(response.iter_lines()):
                        event = follow.take(data)
                        if event is not None:
                            yield event
                            if event.is_terminal:
                                return
                finally:
                    response.close()
            except _core.DROPPED as exc:
                error = exc
            self.sleep(follow.after_drop(error))

    def wait_eval_run(self, suite: str, eval_run_id: str) -> EvalRun:
        """Wait for an eval run to end (following its progress stream), then read it whole."""
        for _ in self.eval_events(suite, eval_run_id):
            pass
        return self.get_eval_run(suite, eval_run_id)

    def cancel_eval_run(self, suite: str, eval_run_id: str) -> EvalRun:
        """Queued cases never run; a running case stops after its iteration (`Conflict`
        `eval_run_finished` when it has ended)."""
        return EvalRun.from_dict(self._json("POST", _core.eval_path(suite, "runs", eval_run_id, "cancel")))

    def delete_eval_run(self, suite: str, eval_run_id: str) -> None:
        """Delete an eval run (a running one is cancelled first; the target's runs stay)."""
        self._json("DELETE", _core.eval_path(suite, "runs", eval_run_id))

    def compare_eval_runs(self, suite: str, first: str, second: str) -> EvalComparison:
        """Two eval runs of the suite side by side: per case and in total (model, version, score)."""
        params = {"first": str(first), "second": str(second)}
        return EvalComparison.from_dict(self._json("GET", _core.eval_path(suite, "compare"), params=params))
